//! Tolerances for comparing kernels with the reference oracle. The integration tests and the
//! fuzz targets both include this file (the fuzz targets by `#[path]`), so it depends on
//! densegrad alone.

// Each includer uses only some of these items.
#![allow(dead_code)]

use densegrad::{Activation, MatRef, Matrix};

/// Machine epsilon of `f32`.
pub const EPS: f64 = f32::EPSILON as f64;

/// Absolute slack for results that may be subnormal, where relative error means little.
pub const SUBNORMAL_SLACK: f64 = 1e-37;

/// Tolerance of `f(z)_j` against the oracle's `expected`, given the row `z`.
pub fn forward_tolerance(activation: Activation, expected: f64, z: &[f64], j: usize) -> f64 {
    let cols = z.len();
    match activation {
        // Selections and one multiplication are correctly rounded, so they match exactly.
        Activation::Identity | Activation::Relu | Activation::LeakyRelu { .. } => 0.0,
        Activation::Sigmoid | Activation::Tanh => 8.0 * EPS * expected.abs() + SUBNORMAL_SLACK,
        // Each probability divides by a sum of `cols` terms. Rounding `z_j − max` in f32
        // costs up to |z_j − max|·ε of relative error after exponentiation.
        Activation::Softmax => {
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (8.0 + cols as f64 + (z[j] - max).abs()) * EPS * expected.abs() + SUBNORMAL_SLACK
        }
    }
}

/// Tolerance of `delta ∘ f'(a)` at (i, j), given the row's outputs `a` and deltas `d`.
pub fn backward_tolerance(
    activation: Activation,
    expected: f64,
    a: &[f64],
    d: &[f64],
    j: usize,
) -> f64 {
    match activation {
        Activation::Identity | Activation::Relu | Activation::LeakyRelu { .. } => 0.0,
        // One rounding each for 1 ± a and two products: no cancellation, because 1 − a is
        // exact wherever it is small.
        Activation::Sigmoid | Activation::Tanh => 8.0 * EPS * expected.abs() + SUBNORMAL_SLACK,
        Activation::Softmax => {
            // a_j (d_j − Σ_k d_k a_k): the dot product's error grows with the row length.
            let dot_magnitude: f64 = a.iter().zip(d).map(|(a, d)| (a * d).abs()).sum();
            let cols = a.len() as f64;
            4.0 * EPS * a[j].abs() * (d[j].abs() + (cols + 4.0) * dot_magnitude) + SUBNORMAL_SLACK
        }
    }
}

/// Returns row `i` of `matrix` in `f64`.
pub fn row_f64(matrix: &Matrix, i: usize) -> Vec<f64> {
    (0..matrix.cols())
        .map(|j| f64::from(matrix.get(i, j).unwrap()))
        .collect()
}

/// A loss and the form of its targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    MeanSquared,
    /// Softmax cross-entropy with class indices as targets.
    SoftmaxClasses,
    /// Softmax cross-entropy with a dense matrix of target probabilities.
    SoftmaxDense,
    Binary,
}

/// Every loss kind. The fuzz target picks one by its index.
pub const LOSS_KINDS: [LossKind; 4] = [
    LossKind::MeanSquared,
    LossKind::SoftmaxClasses,
    LossKind::SoftmaxDense,
    LossKind::Binary,
];

/// Returns the tolerances of a loss against the oracle's `expected_loss` and of its gradient
/// elements (row-major), scaled by the row length and by the magnitudes that rounding errors
/// are proportional to. `targets` is the one-hot matrix for [`LossKind::SoftmaxClasses`].
pub fn loss_tolerances(
    kind: LossKind,
    logits: &Matrix,
    targets: &Matrix,
    expected_loss: f64,
) -> (f64, Vec<f64>) {
    let (rows, cols) = (logits.rows(), logits.cols());
    let m = rows.max(1) as f64;
    let length = cols as f64 + 8.0;

    let mut magnitude = 0.0;
    let mut grad = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        let (z, y) = (row_f64(logits, i), row_f64(targets, i));
        let max = z.iter().map(|z| z.abs()).fold(0.0, f64::max);
        let target_sum: f64 = y.iter().map(|y| y.abs()).sum();
        magnitude += match kind {
            LossKind::MeanSquared => 0.0,
            LossKind::Binary => z.iter().map(|z| z.abs() + 1.0).sum(),
            _ => (target_sum + 1.0) * (2.0 * max + (cols as f64).ln() + 1.0),
        };
        for j in 0..cols {
            let tolerance = match kind {
                LossKind::MeanSquared => 4.0 * EPS * (z[j] - y[j]).abs() / m,
                LossKind::Binary => 8.0 * EPS * (1.0 + y[j]) / m,
                _ => 4.0 * EPS * length * (target_sum + y[j].abs() + 1.0) / m,
            };
            grad.push(tolerance + SUBNORMAL_SLACK);
        }
    }
    let loss = 4.0 * EPS * length * (magnitude / m + expected_loss.abs()) + SUBNORMAL_SLACK;
    (loss, grad)
}

/// Asserts that `actual` has the shape of `expected` and that every element is within
/// `tolerance · (1 + |expected|)` of it.
pub fn assert_views_close(what: &str, actual: MatRef, expected: MatRef, tolerance: f32) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    for i in 0..actual.rows() {
        for j in 0..actual.cols() {
            let (a, e) = (actual.get(i, j).unwrap(), expected.get(i, j).unwrap());
            assert!(
                (a - e).abs() <= tolerance * (1.0 + e.abs()),
                "{what} ({i}, {j}): got {a}, expected {e}"
            );
        }
    }
}
