//! `densegrad::gemm` against `reference::gemm` on shapes, strides, transposes, α, β and
//! dispatch paths that libFuzzer chooses.

#![no_main]

#[path = "../../tests/common/strided.rs"]
mod strided;

use arbitrary::Arbitrary;
use densegrad::{Arch, MatMut, Matrix, Parallelism, gemm_with_arch, reference};
use libfuzzer_sys::fuzz_target;
use strided::Strided;

/// Largest m, k or n: big enough to cross every tile edge and the smaller block edges,
/// small enough for thousands of runs per second.
const MAX_DIM: usize = 80;

/// Depth added to products with at most [`DEEP_MAX_LINES`] rows or columns when the input
/// requests it, so that a few rows or columns reach the dot-product blocks, which start at
/// depths from 64 to 384 depending on the number of lines and the SIMD path.
const DEEP_EXTRA: usize = 384;

/// Most rows or columns of a product that may take [`DEEP_EXTRA`]: the most that take
/// the dot-product path on any SIMD path. It keeps the reference product cheap.
const DEEP_MAX_LINES: usize = 12;

/// Layout of an input operand in its slice.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Layout {
    /// Store the transpose and view it through `.t()`.
    transposed: bool,
    /// Extra elements between rows (or columns, when transposed).
    padding: u8,
    /// Walk the rows backwards.
    reversed: bool,
    /// Repeat one row (row stride 0).
    broadcast: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    m: u8,
    k: u8,
    n: u8,
    a: Layout,
    b: Layout,
    c_column_major: bool,
    /// Row and column strides of C from 1 to 8, negated when the flag is set, used when
    /// they give every element its own address (interleaved layouts included).
    c_strides: Option<(u8, u8, bool)>,
    alpha: i8,
    beta: i8,
    arch: u8,
    threads: u8,
    seed: u32,
    /// Add [`DEEP_EXTRA`] to k when C has few rows or columns.
    deep: bool,
}

/// Creates a slice of random values for a `rows × cols` operand laid out as `layout`
/// describes, with the view over it.
fn operand(rows: usize, cols: usize, layout: Layout, seed: &mut u32) -> Strided {
    let (outer, inner) = if layout.transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let stride = inner + usize::from(layout.padding % 4);
    let mut len = outer * stride;
    let (mut outer_stride, mut offset) = (stride as isize, 0usize);
    if layout.broadcast {
        outer_stride = 0;
        len = stride;
    } else if layout.reversed && outer > 0 {
        offset = (outer - 1) * stride;
        outer_stride = -(stride as isize);
    }
    let data = (0..len.max(1))
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    let (row_stride, col_stride) = if layout.transposed {
        (1, outer_stride)
    } else {
        (outer_stride, 1)
    };
    Strided {
        data,
        offset: if rows * cols == 0 { 0 } else { offset },
        rows,
        cols,
        row_stride,
        col_stride,
    }
}

fuzz_target!(|input: Input| {
    let (m, k, n) = (
        usize::from(input.m) % (MAX_DIM + 1),
        usize::from(input.k) % (MAX_DIM + 1),
        usize::from(input.n) % (MAX_DIM + 1),
    );
    let k = if input.deep && m.min(n) <= DEEP_MAX_LINES {
        k + DEEP_EXTRA
    } else {
        k
    };
    let mut seed = input.seed;
    let (a_operand, b_operand) = (
        operand(m, k, input.a, &mut seed),
        operand(k, n, input.b, &mut seed),
    );
    let (a, b) = (a_operand.view(), b_operand.view());

    let alpha = f32::from(input.alpha) / 16.0;
    let beta = f32::from(input.beta) / 16.0;
    let c0 = Matrix::from_fn(m, n, |i, j| ((i * 31 + j * 7) % 13) as f32 / 13.0 - 0.5);
    let c0 = if beta == 0.0 {
        Matrix::from_fn(m, n, |_, _| f32::NAN)
    } else {
        c0
    };

    let mut expected = c0.clone();
    reference::gemm(alpha, a, b, beta, expected.as_mut()).expect("shapes match");

    let arch = Arch::ALL[usize::from(input.arch) % Arch::ALL.len()];
    let par = match input.threads % 3 {
        0 => Parallelism::Sequential,
        1 => Parallelism::Rayon(0),
        _ => Parallelism::Rayon(3),
    };
    if let Some(strides) = input.c_strides {
        check_strided_output(
            m,
            n,
            strides,
            (a, b),
            (alpha, beta),
            &c0,
            &expected,
            arch,
            par,
        );
        return;
    }
    let mut c_data = c0.as_slice().to_vec();
    let c = if input.c_column_major {
        // Store C's transpose row-major, so the view of C is column-major.
        c_data = c0.as_ref().t().to_matrix().into_vec();
        MatMut::from_strided(&mut c_data, 0, m, n, 1, m.max(1) as isize)
    } else {
        MatMut::from_slice(&mut c_data, m, n)
    }
    .expect("layout inside slice");
    gemm_with_arch(arch, alpha, a, b, beta, c, par).expect("shapes match");
    let actual = if input.c_column_major {
        Matrix::from_vec(c_data, n, m)
            .unwrap()
            .as_ref()
            .t()
            .to_matrix()
    } else {
        Matrix::from_vec(c_data, m, n).unwrap()
    };

    check_close(&actual, &expected, (a, b), (alpha, beta), &c0, arch);
});

/// Runs the product into a C with the strides of `strides` where those give distinct
/// addresses, checks the view against `expected`, and checks that no element of the
/// buffer outside the view changed.
#[allow(clippy::too_many_arguments)]
fn check_strided_output(
    m: usize,
    n: usize,
    (row_step, col_step, negated): (u8, u8, bool),
    (a, b): (densegrad::MatRef<'_>, densegrad::MatRef<'_>),
    (alpha, beta): (f32, f32),
    c0: &Matrix,
    expected: &Matrix,
    arch: Arch,
    par: Parallelism,
) {
    const SENTINEL: f32 = -12345.0;
    let (row_step, col_step) = (usize::from(row_step % 8) + 1, usize::from(col_step % 8) + 1);
    let sign = if negated { -1 } else { 1 };
    let (row_stride, col_stride) = (sign * row_step as isize, col_step as isize);
    let len = m.saturating_sub(1) * row_step + n.saturating_sub(1) * col_step + 1;
    let offset = if negated {
        m.saturating_sub(1) * row_step
    } else {
        0
    };
    let at = |i: usize, j: usize| {
        (offset as isize + i as isize * row_stride + j as isize * col_stride) as usize
    };

    let mut c_data = vec![SENTINEL; len];
    let Ok(mut c) = MatMut::from_strided(&mut c_data, offset, m, n, row_stride, col_stride) else {
        return;
    };
    c.for_each_mut(|i, j, x| *x = c0.get(i, j).unwrap());
    gemm_with_arch(arch, alpha, a, b, beta, c, par).expect("shapes match");

    let actual = Matrix::from_fn(m, n, |i, j| c_data[at(i, j)]);
    let mut inside = vec![false; len];
    for i in 0..m {
        for j in 0..n {
            inside[at(i, j)] = true;
        }
    }
    for (index, (&value, &inside)) in c_data.iter().zip(&inside).enumerate() {
        assert!(
            inside || value == SENTINEL,
            "element {index} outside C changed to {value}"
        );
    }
    check_close(&actual, expected, (a, b), (alpha, beta), c0, arch);
}

/// Asserts that every element of `actual` is within the rounding bound of `expected`.
fn check_close(
    actual: &Matrix,
    expected: &Matrix,
    (a, b): (densegrad::MatRef<'_>, densegrad::MatRef<'_>),
    (alpha, beta): (f32, f32),
    c0: &Matrix,
    arch: Arch,
) {
    let (m, n, k) = (actual.rows(), actual.cols(), a.cols());
    for i in 0..m {
        for j in 0..n {
            let magnitude: f32 = (0..k)
                .map(|p| (a.get(i, p).unwrap() * b.get(p, j).unwrap()).abs())
                .sum::<f32>()
                * alpha.abs()
                + if beta == 0.0 {
                    0.0
                } else {
                    beta.abs() * c0.get(i, j).unwrap().abs()
                };
            let tolerance = 4.0 * (k as f32 + 2.0) * f32::EPSILON * magnitude + f32::MIN_POSITIVE;
            let (got, want) = (actual.get(i, j).unwrap(), expected.get(i, j).unwrap());
            assert!(
                (got - want).abs() <= tolerance,
                "{arch:?} {m}x{k}x{n} C[{i}, {j}] = {got}, reference {want}"
            );
        }
    }
}
