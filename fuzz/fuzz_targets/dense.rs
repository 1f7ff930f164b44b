//! `dense_forward` and `dense_backward` against the reference on layer shapes, layouts,
//! activations, gradient modes and dispatch paths that libFuzzer chooses.

#![no_main]

#[path = "../../tests/common/tolerance.rs"]
mod tolerance;

use arbitrary::Arbitrary;
use densegrad::{
    Activation, Arch, DenseGrads, GradMode, MatRef, Matrix, Parallelism, dense_backward_with_arch,
    dense_forward_with_arch, reference,
};
use libfuzzer_sys::fuzz_target;
use tolerance::assert_views_close;

/// Largest batch or layer width: past every tile edge of every path, small enough for
/// thousands of runs per second.
const MAX_DIM: usize = 70;

#[derive(Arbitrary, Debug)]
struct Input {
    m: u8,
    n_in: u8,
    n_out: u8,
    activation: u8,
    /// Store X and δ transposed and view them through `.t()`.
    transposed: bool,
    accumulate: bool,
    with_input_delta: bool,
    arch: u8,
    threads: u8,
    seed: u32,
}

/// A `rows × cols` matrix of values in [−1, 1) from a linear congruential generator.
fn random(rows: usize, cols: usize, seed: &mut u32) -> Matrix {
    Matrix::from_fn(rows, cols, |_, _| {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    })
}

/// Asserts `|actual − expected| ≤ 8·(k + 2)·ε·(1 + |expected|)` element-wise, for results of
/// reductions of length `k`.
fn assert_close(what: &str, actual: MatRef, expected: MatRef, k: usize) {
    assert_views_close(
        what,
        actual,
        expected,
        8.0 * (k as f32 + 2.0) * f32::EPSILON,
    );
}

fuzz_target!(|input: Input| {
    let (m, n_in, n_out) = (
        usize::from(input.m) % (MAX_DIM + 1),
        usize::from(input.n_in) % (MAX_DIM + 1),
        usize::from(input.n_out) % (MAX_DIM + 1),
    );
    let activation = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
    ][usize::from(input.activation) % 6];
    let arch = Arch::ALL[usize::from(input.arch) % Arch::ALL.len()];
    let par = match input.threads % 3 {
        0 => Parallelism::Sequential,
        1 => Parallelism::Rayon(0),
        _ => Parallelism::Rayon(3),
    };
    let mut seed = input.seed;
    let (x, w, delta) = (
        random(m, n_in, &mut seed),
        random(n_out, n_in, &mut seed),
        random(m, n_out, &mut seed),
    );
    let bias: Vec<f32> = random(1, n_out, &mut seed).into_vec();
    let (x_t, delta_t) = (x.as_ref().t().to_matrix(), delta.as_ref().t().to_matrix());
    let (x_view, delta_view) = if input.transposed {
        (x_t.as_ref().t(), delta_t.as_ref().t())
    } else {
        (x.as_ref(), delta.as_ref())
    };
    let what = format!("{arch:?} {m}×{n_in}→{n_out} {activation:?}");

    let mut expected = Matrix::zeros(m, n_out);
    reference::dense_forward(x.as_ref(), w.as_ref(), &bias, activation, expected.as_mut())
        .expect("valid layer");
    let mut out = Matrix::from_fn(m, n_out, |_, _| f32::NAN);
    dense_forward_with_arch(
        arch,
        x_view,
        w.as_ref(),
        &bias,
        activation,
        out.as_mut(),
        par,
    )
    .expect("valid layer");
    assert_close(
        &format!("{what} forward"),
        out.as_ref(),
        expected.as_ref(),
        n_in,
    );

    // The backward pass takes the activation of the layer below; softmax is rejected there.
    let input_activation = if activation == Activation::Softmax {
        Activation::Identity
    } else {
        activation
    };
    let mut layer_input = Matrix::zeros(m, n_in);
    reference::activation_forward(input_activation, x.as_ref(), layer_input.as_mut())
        .expect("valid activation");
    let layer_input_t = layer_input.as_ref().t().to_matrix();
    let input_view = if input.transposed {
        layer_input_t.as_ref().t()
    } else {
        layer_input.as_ref()
    };
    let want = reference::dense_backward(
        layer_input.as_ref(),
        w.as_ref(),
        delta.as_ref(),
        input_activation,
    )
    .expect("valid layer");

    let (mode, start) = if input.accumulate {
        (GradMode::Accumulate, 0.25)
    } else {
        (GradMode::Overwrite, f32::NAN)
    };
    let mut grad_w = Matrix::from_fn(n_out, n_in, |_, _| start);
    let mut grad_b = vec![start; n_out];
    let mut input_delta = Matrix::from_fn(m, n_in, |_, _| f32::NAN);
    dense_backward_with_arch(
        arch,
        delta_view,
        input_view,
        w.as_ref(),
        input_activation,
        DenseGrads {
            weights: grad_w.as_mut(),
            bias: &mut grad_b,
            mode,
        },
        input.with_input_delta.then(|| input_delta.as_mut()),
        par,
    )
    .expect("valid layer");

    let offset = if input.accumulate { start } else { 0.0 };
    let want_w = Matrix::from_fn(n_out, n_in, |o, k| {
        want.grad_weights.get(o, k).unwrap() + offset
    });
    let want_b = Matrix::from_fn(1, n_out, |_, o| want.grad_bias[o] + offset);
    let grad_b = Matrix::from_vec(grad_b, 1, n_out).unwrap();
    assert_close(&format!("{what} dW"), grad_w.as_ref(), want_w.as_ref(), m);
    assert_close(&format!("{what} db"), grad_b.as_ref(), want_b.as_ref(), m);
    if input.with_input_delta {
        let what = format!("{what} input_delta");
        assert_close(&what, input_delta.as_ref(), want.delta_prev.as_ref(), n_out);
    }
});
