//! Reference activations: forward pass and derivative from the output, in `f64`.

use crate::Activation;
use crate::error::{Error, Shape};
use crate::matrix::{MatMut, MatRef};

/// Computes `out ← f(z)` element-wise, or row-wise for [`Activation::Softmax`].
///
/// Each element is evaluated in `f64` and rounded once to `f32`. Sigmoid uses
/// `1 / (1 + e^(−z))` for `z ≥ 0` and `e^z / (1 + e^z)` otherwise, so no `exp` overflows.
/// Softmax subtracts the row maximum before exponentiating.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `out` when its shape differs from `z`'s, and
/// [`Error::InvalidArgument`] naming `slope` for a leaky ReLU slope that is negative or not
/// finite.
pub fn activation_forward(
    activation: Activation,
    z: MatRef<'_>,
    mut out: MatMut<'_>,
) -> Result<(), Error> {
    Error::check_shape("out", z.shape(), out.shape())?;
    check_activation(activation)?;
    let Shape { rows, cols } = z.shape();

    for i in 0..rows {
        let row: Vec<f64> = (0..cols).map(|j| f64::from(at(z, i, j))).collect();
        let values = match activation {
            Activation::Softmax => softmax_row(&row),
            _ => row.iter().map(|&x| scalar_forward(activation, x)).collect(),
        };
        for (j, value) in values.into_iter().enumerate() {
            *out.get_mut(i, j).expect("index inside out") = value as f32;
        }
    }
    Ok(())
}

/// Computes `delta ← delta ∘ f'(z)` from the forward output `output = f(z)`.
///
/// The element-wise derivatives are ReLU `[a > 0]` (so 0 at `a = 0` and `a = −0`), leaky
/// ReLU `a > 0 ? 1 : slope`, sigmoid `a(1 − a)`, tanh `1 − a²` and identity `1`. Softmax is
/// not element-wise: each row gets the Jacobian-vector product
/// `delta_j ← a_j (delta_j − Σ_k delta_k a_k)`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `delta` when its shape differs from `output`'s, and
/// [`Error::InvalidArgument`] naming `slope` for a leaky ReLU slope that is negative or not
/// finite.
pub fn activation_backward(
    activation: Activation,
    output: MatRef<'_>,
    mut delta: MatMut<'_>,
) -> Result<(), Error> {
    Error::check_shape("delta", output.shape(), delta.shape())?;
    check_activation(activation)?;
    let Shape { rows, cols } = output.shape();

    for i in 0..rows {
        let a: Vec<f64> = (0..cols).map(|j| f64::from(at(output, i, j))).collect();
        let d: Vec<f64> = (0..cols)
            .map(|j| f64::from(delta.get(i, j).expect("index inside delta")))
            .collect();
        let values: Vec<f64> = match activation {
            Activation::Softmax => {
                let dot: f64 = a.iter().zip(&d).map(|(a_k, d_k)| a_k * d_k).sum();
                a.iter()
                    .zip(&d)
                    .map(|(a_j, d_j)| a_j * (d_j - dot))
                    .collect()
            }
            _ => a
                .iter()
                .zip(&d)
                .map(|(&a_j, &d_j)| scalar_backward(activation, a_j, d_j))
                .collect(),
        };
        for (j, value) in values.into_iter().enumerate() {
            *delta.get_mut(i, j).expect("index inside delta") = value as f32;
        }
    }
    Ok(())
}

/// Rejects a leaky ReLU slope that is negative or not finite. A negative slope would flip the
/// sign of negative inputs, so the derivative could no longer be read from the output.
pub(super) fn check_activation(activation: Activation) -> Result<(), Error> {
    match activation {
        Activation::LeakyRelu { slope } if !slope.is_finite() || slope < 0.0 => {
            Err(Error::InvalidArgument {
                operand: "slope",
                reason: format!("leaky ReLU slope {slope} must be finite and non-negative"),
            })
        }
        _ => Ok(()),
    }
}

fn at(view: MatRef<'_>, i: usize, j: usize) -> f32 {
    view.get(i, j).expect("index inside the view")
}

pub(super) fn scalar_forward(activation: Activation, z: f64) -> f64 {
    match activation {
        Activation::Identity | Activation::Softmax => z,
        Activation::Relu => {
            if z > 0.0 {
                z
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { slope } => {
            if z > 0.0 {
                z
            } else {
                f64::from(slope) * z
            }
        }
        Activation::Sigmoid => {
            if z >= 0.0 {
                1.0 / (1.0 + (-z).exp())
            } else {
                let e = z.exp();
                e / (1.0 + e)
            }
        }
        Activation::Tanh => z.tanh(),
    }
}

pub(super) fn scalar_backward(activation: Activation, a: f64, delta: f64) -> f64 {
    let derivative = match activation {
        Activation::Identity | Activation::Softmax => 1.0,
        Activation::Relu => {
            if a > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { slope } => {
            if a > 0.0 {
                1.0
            } else {
                f64::from(slope)
            }
        }
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
    };
    delta * derivative
}

/// Softmax of one row, with the row maximum subtracted first.
pub(super) fn softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
