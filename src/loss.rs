//! Numerically stable losses and their gradients with respect to the logits.
//!
//! Each loss sums over the columns of a sample, averages over the `m` rows of the batch, and
//! writes `∂C/∂Z`, which carries the `1/m`, into a caller-supplied `grad` view. An empty
//! batch has loss 0. Inputs are validated before anything is written, so on error `grad` is
//! unchanged. Rows are processed 8 lanes at a time; strided rows are gathered into a buffer
//! first. Row losses are summed in `f64`.
//!
//! The cross-entropy losses take logits, the output layer's `Z` before its activation:
//! compute it with [`dense_forward`](crate::dense_forward) and [`Activation::Identity`](crate::Activation::Identity).
//! The gradient they write is then that layer's `δ` for
//! [`dense_backward`](crate::dense_backward), with no activation-derivative pass. For
//! micro-batches that should add up to the mean over a whole batch, scale each `grad` by
//! the micro-batch's share of the rows.

use wide::f32x8;

use crate::activation::lanes;
use crate::activation::{exp, exp_shifted_in_place, row_max, sigmoid_from_exp};
use crate::error::{Error, Shape};
use crate::matrix::{MatMut, MatRef};

/// The targets of a cross-entropy loss: one class index per row (softmax cross-entropy
/// only), or a dense matrix of target probabilities with the logits' shape, one-hot rows
/// included. [`mean_squared_error`] takes its targets as a matrix, and the layer API's
/// `Targets` (the same type) passes them as `Dense`.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Row `i`'s target class is `classes[i]`, which must be below the number of columns.
    Classes(&'a [usize]),
    /// Row `i`'s target distribution is row `i` of the matrix, which has the logits' shape.
    Dense(MatRef<'a>),
}

/// Computes the mean squared error `C = (1/2m) Σ ‖a − y‖²` and writes `grad ← (a − y)/m`.
///
/// ```
/// use densegrad::{Matrix, loss};
///
/// let a = Matrix::from_vec(vec![1.0, 2.0, 3.0, 4.0], 2, 2)?;
/// let y = Matrix::from_vec(vec![1.0, 0.0, 3.0, 5.0], 2, 2)?;
/// let mut grad = Matrix::zeros(2, 2);
/// let c = loss::mean_squared_error(a.as_ref(), y.as_ref(), grad.as_mut())?;
/// assert_eq!(c, (4.0 + 1.0) / (2.0 * 2.0));
/// assert_eq!(grad.as_slice(), &[0.0, 1.0, 0.0, -0.5]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `targets` or `grad` when its shape differs from
/// `predictions`', and [`Error::InvalidValue`] naming the first row whose prediction or
/// target is not finite.
pub fn mean_squared_error(
    predictions: MatRef<'_>,
    targets: MatRef<'_>,
    grad: MatMut<'_>,
) -> Result<f32, Error> {
    check_shapes(predictions, Some(targets), &grad)?;
    check_values(predictions, "predictions", Range::Finite)?;
    check_values(targets, "targets", Range::Finite)?;
    let inv_m = batch_scale(predictions.rows());

    // NOTE: a difference |a − y| above about 2.6e19 overflows the squared error, or above
    // f32::MAX the gradient, to infinity.
    let total = visit_rows(predictions, Some(targets), grad, |a, y, g| {
        let mut sum = f32x8::ZERO;
        // Padded lanes have a = y = 0, so they add nothing to the sum.
        lanes::zip_into(a, y, g, |a, y, _| {
            let diff = a - y;
            sum = (diff * 0.5).mul_add(diff, sum);
            diff * inv_m
        });
        f64::from(sum.reduce_add())
    });
    Ok(mean(total, predictions.rows()))
}

/// Computes the softmax cross-entropy from logits and writes its gradient.
///
/// With `lse_i = log Σ_j e^(z_ij)`, evaluated as `max_i + log Σ_j e^(z_ij − max_i)`, the loss
/// is `C = (1/m) Σ_i Σ_j y_ij (lse_i − z_ij)` and the gradient is
/// `grad ← ((Σ_j y_ij)·softmax(z_i) − y_i)/m`, which is `(softmax(z) − y)/m` when each
/// target row sums to 1. For [`Targets::Classes`], `y_i` is one-hot. No `exp` overflows and
/// no `log(0)` occurs for finite logits, logits of ±1000 included.
///
/// ```
/// use densegrad::{Matrix, loss::{self, Targets}};
///
/// // Equal logits: each of the 4 classes has probability 1/4, so C = ln 4.
/// let z = Matrix::zeros(1, 4);
/// let mut grad = Matrix::zeros(1, 4);
/// let c = loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[2]), grad.as_mut())?;
/// assert!((c - 4f32.ln()).abs() < 1e-6);
/// assert_eq!(grad.as_slice(), &[0.25, 0.25, -0.75, 0.25]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `targets` (dense) or `grad` when its shape differs from
///   the logits'.
/// - [`Error::LengthMismatch`] naming `targets` when there is not one class per row.
/// - [`Error::InvalidArgument`] naming `logits` when a non-empty batch has no columns.
/// - [`Error::InvalidValue`] naming the first row whose logit is not finite, whose dense
///   target is not a probability in [0, 1], or whose class index is out of range.
pub fn softmax_cross_entropy(
    logits: MatRef<'_>,
    targets: Targets<'_>,
    grad: MatMut<'_>,
) -> Result<f32, Error> {
    let Shape { rows, cols } = logits.shape();
    let dense = match targets {
        Targets::Classes(classes) => {
            Error::check_len("targets", rows, classes.len())?;
            check_shapes(logits, None, &grad)?;
            None
        }
        Targets::Dense(y) => {
            check_shapes(logits, Some(y), &grad)?;
            Some(y)
        }
    };
    if rows > 0 && cols == 0 {
        return Err(Error::InvalidArgument {
            operand: "logits",
            reason: format!(
                "a {} batch has no classes to take a softmax over",
                logits.shape()
            ),
        });
    }
    check_values(logits, "logits", Range::Finite)?;
    match targets {
        Targets::Classes(classes) => check_classes(classes, cols)?,
        Targets::Dense(y) => check_values(y, "targets", Range::Probability)?,
    }
    let inv_m = batch_scale(rows);

    let mut row = 0;
    let total = visit_rows(logits, dense, grad, |z, y, g| {
        // g ← e^(z − max), then the probabilities.
        g.copy_from_slice(z);
        let max = row_max(z);
        let sum = exp_shifted_in_place(g, max);
        let log_sum = f64::from(sum).ln();
        let sum_lanes = f32x8::splat(sum);

        let row_loss = match targets {
            Targets::Classes(classes) => {
                let class = classes[row];
                let e_class = g[class];
                lanes::map_in_place(g, 0.0, |e| e / sum_lanes * inv_m);
                g[class] = (e_class / sum - 1.0) * inv_m.to_array()[0];
                f64::from(max) - f64::from(z[class]) + log_sum
            }
            Targets::Dense(_) => {
                let target_sum = lanes::fold(y, 0.0, f32x8::ZERO, |sum, y| sum + y);
                let target_sum = f32x8::splat(target_sum.reduce_add());
                let max_lanes = f32x8::splat(max);
                let weighted_gap =
                    lanes::fold_pairs(z, y, f32x8::ZERO, |gap, z, y| y.mul_add(max_lanes - z, gap));
                lanes::zip_in_place(y, g, |y, e| (e / sum_lanes).mul_sub(target_sum, y) * inv_m);
                // Σ_j y_j (lse − z_j) = Σ_j y_j (max − z_j) + (Σ_j y_j) · log Σ_j e^(z_j − max)
                f64::from(weighted_gap.reduce_add()) + f64::from(target_sum.to_array()[0]) * log_sum
            }
        };
        row += 1;
        row_loss
    });
    Ok(mean(total, rows))
}

/// Computes the binary cross-entropy from logits and writes `grad ← (σ(z) − y)/m`.
///
/// Each element is an independent binary output with target probability `y` in `[0, 1]`.
/// The loss is `C = (1/m) Σ_i Σ_j [max(z, 0) − z·y + log(1 + e^(−|z|))]`, a form in which no
/// `exp` overflows and no `log(0)` occurs for any finite logit, ±1000 included.
///
/// ```
/// use densegrad::{Matrix, loss};
///
/// let z = Matrix::zeros(1, 1);
/// let y = Matrix::from_vec(vec![1.0], 1, 1)?;
/// let mut grad = Matrix::zeros(1, 1);
/// let c = loss::binary_cross_entropy(z.as_ref(), y.as_ref(), grad.as_mut())?;
/// assert!((c - 2f32.ln()).abs() < 1e-6);
/// assert_eq!(grad.as_slice(), &[-0.5]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `targets` or `grad` when its shape differs from the
/// logits', and [`Error::InvalidValue`] naming the first row whose logit is not finite or
/// whose target lies outside `[0, 1]` (NaN included).
pub fn binary_cross_entropy(
    logits: MatRef<'_>,
    targets: MatRef<'_>,
    grad: MatMut<'_>,
) -> Result<f32, Error> {
    check_shapes(logits, Some(targets), &grad)?;
    check_values(logits, "logits", Range::Finite)?;
    check_values(targets, "targets", Range::Probability)?;
    let inv_m = batch_scale(logits.rows());

    let total = visit_rows(logits, Some(targets), grad, |z, y, g| {
        let mut sum = f32x8::ZERO;
        lanes::zip_into(z, y, g, |z, y, valid| {
            let e = exp(-z.abs());
            // Padded lanes have z = y = 0 and would add ln 2, so they are zeroed first.
            let element_loss = z.max(f32x8::ZERO) - z * y + e.ln_1p();
            sum += lanes::zero_padding(element_loss, valid);
            (sigmoid_from_exp(z, e) - y) * inv_m
        });
        f64::from(sum.reduce_add())
    });
    Ok(mean(total, logits.rows()))
}

/// The values a loss operand accepts.
#[derive(Clone, Copy)]
pub(crate) enum Range {
    /// Any finite number.
    Finite,
    /// A probability in `[0, 1]`.
    Probability,
}

impl Range {
    /// Returns the inclusive bounds of the range. NaN fails both comparisons, so it is
    /// outside.
    fn bounds(self) -> (f32, f32) {
        match self {
            Range::Finite => (f32::MIN, f32::MAX),
            Range::Probability => (0.0, 1.0),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Range::Finite => "a finite number",
            Range::Probability => "a probability in [0, 1]",
        }
    }
}

/// Checks that `targets` (when given) and `grad` have the shape of `logits`.
fn check_shapes(
    logits: MatRef<'_>,
    targets: Option<MatRef<'_>>,
    grad: &MatMut<'_>,
) -> Result<(), Error> {
    if let Some(targets) = targets {
        Error::check_shape("targets", logits.shape(), targets.shape())?;
    }
    Error::check_shape("grad", logits.shape(), grad.shape())
}

/// Elements checked together by [`check_values`]: a fixed-size chunk that the compiler turns
/// into a few vector compares, so the check costs a small fraction of a pass over the data.
const CHECK_CHUNK: usize = 32;

/// Returns [`Error::InvalidValue`] for the first element outside `range`.
///
/// Rows with contiguous columns are scanned a chunk at a time without branches. Only a
/// row with an element outside the range is searched again, for the column to report.
pub(crate) fn check_values(
    view: MatRef<'_>,
    operand: &'static str,
    range: Range,
) -> Result<(), Error> {
    let (lo, hi) = range.bounds();
    let inside = |value: f32| lo <= value && value <= hi;
    let chunk_inside = |chunk: &[f32]| {
        chunk
            .iter()
            .fold(true, |all, &value| all & (lo <= value) & (value <= hi))
    };

    for i in 0..view.rows() {
        let row_ok = match view.row_slice(i) {
            Some(row) => row.chunks(CHECK_CHUNK).all(chunk_inside),
            None => {
                (0..view.cols()).all(|j| inside(view.get(i, j).expect("index inside the view")))
            }
        };
        if row_ok {
            continue;
        }

        let (j, value) = (0..view.cols())
            .map(|j| (j, view.get(i, j).expect("index inside the view")))
            .find(|&(_, value)| !inside(value))
            .expect("a row that failed the check has an element outside the range");
        return Err(Error::InvalidValue {
            operand,
            row: i,
            reason: format!("column {j} is {value}, expected {}", range.expected()),
        });
    }
    Ok(())
}

fn check_classes(classes: &[usize], cols: usize) -> Result<(), Error> {
    match classes.iter().position(|&class| class >= cols) {
        Some(row) => Err(Error::InvalidValue {
            operand: "targets",
            row,
            reason: format!(
                "class index {} is out of range for {cols} classes",
                classes[row]
            ),
        }),
        None => Ok(()),
    }
}

/// Calls `body(z, y, g)` on each row of `logits`, `targets` (empty rows when `None`) and
/// `grad`, and returns the sum of what it returns. Rows that are not contiguous are copied
/// into buffers, and `g` is copied back afterwards.
fn visit_rows(
    logits: MatRef<'_>,
    targets: Option<MatRef<'_>>,
    mut grad: MatMut<'_>,
    mut body: impl FnMut(&[f32], &[f32], &mut [f32]) -> f64,
) -> f64 {
    let cols = logits.cols();
    let (mut z_buffer, mut y_buffer, mut g_buffer) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = 0.0;

    for i in 0..logits.rows() {
        let z = row_or_gather(logits, i, &mut z_buffer);
        let y = match targets {
            Some(targets) => row_or_gather(targets, i, &mut y_buffer),
            None => &[],
        };
        if let Some(g) = grad.row_slice_mut(i) {
            total += body(z, y, g);
            continue;
        }
        g_buffer.resize(cols, 0.0);
        total += body(z, y, &mut g_buffer);
        for (j, &value) in g_buffer.iter().enumerate() {
            *grad.get_mut(i, j).expect("index inside grad") = value;
        }
    }
    total
}

/// Returns row `i` of `view` as a slice, copying it into `buffer` when it is strided.
fn row_or_gather<'a>(view: MatRef<'a>, i: usize, buffer: &'a mut Vec<f32>) -> &'a [f32] {
    if let Some(row) = view.row_slice(i) {
        return row;
    }
    buffer.clear();
    buffer.extend((0..view.cols()).map(|j| view.get(i, j).expect("index inside the view")));
    buffer
}

/// `1/m` as a lane vector; 0 for an empty batch, which has no rows to scale.
fn batch_scale(rows: usize) -> f32x8 {
    f32x8::splat(if rows == 0 { 0.0 } else { 1.0 / rows as f32 })
}

fn mean(total: f64, rows: usize) -> f32 {
    if rows == 0 {
        0.0
    } else {
        (total / rows as f64) as f32
    }
}
