//! `DENSEGRAD_ARCH` forces the dispatch path. The choice is cached on the first call, so
//! this file has a single test and sets the variable before anything reads it.

use densegrad::{Arch, Matrix, Parallelism, gemm, reference};

#[test]
fn arch_env_forces_portable() {
    // SAFETY: this binary runs one test, so no other thread reads or writes the
    // environment while it is changed.
    unsafe { std::env::set_var("DENSEGRAD_ARCH", "portable") };
    assert_eq!(Arch::selected(), Arch::Portable);

    let a = Matrix::from_fn(37, 29, |i, j| (i as f32 - j as f32) / 16.0);
    let b = Matrix::from_fn(29, 41, |i, j| ((i * j) % 7) as f32 / 8.0);
    let mut c = Matrix::zeros(37, 41);
    let mut expected = Matrix::zeros(37, 41);
    gemm(
        1.0,
        a.as_ref(),
        b.as_ref(),
        0.0,
        c.as_mut(),
        Parallelism::Sequential,
    )
    .unwrap();
    reference::gemm(1.0, a.as_ref(), b.as_ref(), 0.0, expected.as_mut()).unwrap();
    for (got, want) in c.as_slice().iter().zip(expected.as_slice()) {
        assert!((got - want).abs() <= 1e-4, "{got} vs {want}");
    }
}
