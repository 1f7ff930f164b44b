//! Reference losses and their gradients with respect to the logits, in `f64`.
//!
//! Each loss sums over the columns of a sample and averages over the `m` rows of the batch,
//! and writes `∂C/∂Z`, which carries the `1/m`, into `grad`. An empty batch has loss 0.

use super::activation::softmax_row;
use crate::error::{Error, Shape};
use crate::matrix::{MatMut, MatRef, Matrix};

/// Computes `C = (1/2m) Σ ‖a − y‖²` and writes `grad ← (a − y)/m`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `targets` or `grad` when its shape differs from
/// `predictions`', and [`Error::InvalidValue`] naming the first row whose prediction or
/// target is not finite.
pub fn mean_squared_error(
    predictions: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f64, Error> {
    check_operands(predictions, targets, grad.as_ref())?;
    check_finite("predictions", predictions)?;
    check_finite("targets", targets)?;
    let Shape { rows, cols } = predictions.shape();
    let m = rows as f64;

    let mut total = 0.0;
    for i in 0..rows {
        for j in 0..cols {
            let diff = f64::from(at(predictions, i, j)) - f64::from(at(targets, i, j));
            total += 0.5 * diff * diff;
            set(&mut grad, i, j, diff / m);
        }
    }
    Ok(mean(total, rows))
}

/// Computes the softmax cross-entropy `C = (1/m) Σ_i Σ_j y_ij (lse_i − z_ij)` from logits,
/// where `lse_i = log Σ_j e^(z_ij)`, and writes `grad ← ((Σ_j y_ij)·softmax(z_i) − y_i)/m`.
///
/// For targets that sum to 1 per row (one-hot or probabilities) the gradient is the familiar
/// `(softmax(z) − y)/m`. Build one-hot targets from class indices with [`one_hot`].
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `targets` or `grad`, [`Error::InvalidArgument`] naming
/// `logits` when a non-empty batch has no columns, and [`Error::InvalidValue`] naming the
/// first row whose logit is not finite or whose target lies outside `[0, 1]`.
pub fn softmax_cross_entropy(
    logits: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f64, Error> {
    check_operands(logits, targets, grad.as_ref())?;
    check_has_classes(logits)?;
    check_finite("logits", logits)?;
    check_probabilities("targets", targets)?;
    let Shape { rows, cols } = logits.shape();
    let m = rows as f64;

    let mut total = 0.0;
    for i in 0..rows {
        let z: Vec<f64> = (0..cols).map(|j| f64::from(at(logits, i, j))).collect();
        let y: Vec<f64> = (0..cols).map(|j| f64::from(at(targets, i, j))).collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + z.iter().map(|&z_j| (z_j - max).exp()).sum::<f64>().ln();
        let target_sum: f64 = y.iter().sum();
        let probabilities = softmax_row(&z);

        for j in 0..cols {
            total += y[j] * (lse - z[j]);
            set(&mut grad, i, j, (target_sum * probabilities[j] - y[j]) / m);
        }
    }
    Ok(mean(total, rows))
}

/// Computes the binary cross-entropy from logits,
/// `C = (1/m) Σ_i Σ_j [max(z, 0) − z·y + log(1 + e^(−|z|))]`, and writes
/// `grad ← (σ(z) − y)/m`. Each column is an independent binary output.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `targets` or `grad`, and [`Error::InvalidValue`] naming
/// the first row whose logit is not finite or whose target lies outside `[0, 1]` (NaN
/// included).
pub fn binary_cross_entropy(
    logits: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f64, Error> {
    check_operands(logits, targets, grad.as_ref())?;
    check_finite("logits", logits)?;
    check_probabilities("targets", targets)?;
    let Shape { rows, cols } = logits.shape();
    let m = rows as f64;

    let mut total = 0.0;
    for i in 0..rows {
        for j in 0..cols {
            let z = f64::from(at(logits, i, j));
            let y = f64::from(at(targets, i, j));
            total += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
            let sigmoid = if z >= 0.0 {
                1.0 / (1.0 + (-z).exp())
            } else {
                z.exp() / (1.0 + z.exp())
            };
            set(&mut grad, i, j, (sigmoid - y) / m);
        }
    }
    Ok(mean(total, rows))
}

/// Returns the one-hot `classes.len() × cols` matrix whose row `i` has a 1 in column
/// `classes[i]`.
///
/// # Errors
///
/// [`Error::InvalidValue`] naming `targets` and the first row whose class index is not below
/// `cols`.
pub fn one_hot(classes: &[usize], cols: usize) -> Result<Matrix, Error> {
    let mut targets = Matrix::zeros(classes.len(), cols);
    for (row, &class) in classes.iter().enumerate() {
        if class >= cols {
            return Err(Error::InvalidValue {
                operand: "targets",
                row,
                reason: format!("class index {class} is out of range for {cols} classes"),
            });
        }
        targets.as_mut().set(row, class, 1.0)?;
    }
    Ok(targets)
}

fn check_operands(logits: MatRef<'_>, targets: MatRef<'_>, grad: MatRef<'_>) -> Result<(), Error> {
    Error::check_shape("targets", logits.shape(), targets.shape())?;
    Error::check_shape("grad", logits.shape(), grad.shape())
}

fn check_has_classes(logits: MatRef<'_>) -> Result<(), Error> {
    if logits.rows() > 0 && logits.cols() == 0 {
        return Err(Error::InvalidArgument {
            operand: "logits",
            reason: format!(
                "a {} batch has no classes to take a softmax over",
                logits.shape()
            ),
        });
    }
    Ok(())
}

fn check_finite(operand: &'static str, view: MatRef<'_>) -> Result<(), Error> {
    for i in 0..view.rows() {
        for j in 0..view.cols() {
            let value = at(view, i, j);
            if !value.is_finite() {
                return Err(Error::InvalidValue {
                    operand,
                    row: i,
                    reason: format!("column {j} is {value}, expected a finite number"),
                });
            }
        }
    }
    Ok(())
}

fn check_probabilities(operand: &'static str, view: MatRef<'_>) -> Result<(), Error> {
    for i in 0..view.rows() {
        for j in 0..view.cols() {
            let value = at(view, i, j);
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::InvalidValue {
                    operand,
                    row: i,
                    reason: format!("column {j} is {value}, expected a probability in [0, 1]"),
                });
            }
        }
    }
    Ok(())
}

fn at(view: MatRef<'_>, i: usize, j: usize) -> f32 {
    view.get(i, j).expect("index inside the view")
}

fn set(view: &mut MatMut<'_>, i: usize, j: usize, value: f64) {
    *view.get_mut(i, j).expect("index inside grad") = value as f32;
}

fn mean(total: f64, rows: usize) -> f64 {
    if rows == 0 { 0.0 } else { total / rows as f64 }
}
