//! Central finite differences, to check analytic gradients.

use crate::error::Error;

/// Estimates the gradient of `f` at `point` by central differences,
/// `∂f/∂x_i ≈ (f(x + h·e_i) − f(x − h·e_i)) / ((x_i + h) − (x_i − h))`.
///
/// The denominator is the distance between the two `f32` points actually evaluated, so the
/// rounding of `x_i ± step` does not bias the estimate. The truncation error is
/// `O(step²)`, so a step near `1e-2` for values of order 1 balances it against `f32`
/// rounding in `f`.
///
/// ```
/// use densegrad::reference::numerical_gradient;
///
/// // f(x) = x0² + 3·x1 has gradient (2·x0, 3).
/// let f = |x: &[f32]| f64::from(x[0]).powi(2) + 3.0 * f64::from(x[1]);
/// let grad = numerical_gradient(f, &[1.5, -2.0], 1e-2)?;
/// assert!((grad[0] - 3.0).abs() < 1e-4);
/// assert!((grad[1] - 3.0).abs() < 1e-4);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming `step` when it is not positive and finite, or when
/// `x_i + step` and `x_i − step` round to the same `f32` for some coordinate.
pub fn numerical_gradient(
    mut f: impl FnMut(&[f32]) -> f64,
    point: &[f32],
    step: f32,
) -> Result<Vec<f64>, Error> {
    if !(step.is_finite() && step > 0.0) {
        return Err(Error::InvalidArgument {
            operand: "step",
            reason: format!("{step} must be positive and finite"),
        });
    }

    let mut x = point.to_vec();
    let mut grad = Vec::with_capacity(point.len());
    for i in 0..point.len() {
        let (plus, minus) = (point[i] + step, point[i] - step);
        let width = f64::from(plus) - f64::from(minus);
        if width == 0.0 || !width.is_finite() {
            return Err(Error::InvalidArgument {
                operand: "step",
                reason: format!(
                    "{step} is too small to move coordinate {i}, whose value is {}",
                    point[i]
                ),
            });
        }

        x[i] = plus;
        let f_plus = f(&x);
        x[i] = minus;
        let f_minus = f(&x);
        x[i] = point[i];
        grad.push((f_plus - f_minus) / width);
    }
    Ok(grad)
}
