//! Reference forward and backward pass of one dense layer, one sample per row, in `f64`.

use super::activation::{check_activation, scalar_backward, scalar_forward, softmax_row};
use crate::Activation;
use crate::error::{Error, Shape};
use crate::matrix::{MatMut, MatRef, Matrix};

/// Computes `out ← f(X·Wᵀ + b)` for inputs `x: m × n_in`, `weights: n_out × n_in` and
/// `bias` of length `n_out`.
///
/// `Z` stays in `f64` until the activation has been applied, so each output element is
/// rounded to `f32` once.
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `weights` when its column count differs from `x`'s, or
///   `out` when it is not `m × n_out`.
/// - [`Error::LengthMismatch`] naming `bias` when its length is not `n_out`.
/// - [`Error::InvalidArgument`] naming `slope` for a negative or non-finite leaky ReLU slope.
pub fn dense_forward(
    x: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    activation: Activation,
    mut out: MatMut<'_>,
) -> Result<(), Error> {
    let (m, n_in, n_out) = (x.rows(), x.cols(), weights.rows());
    Error::check_shape("weights", Shape::new(n_out, n_in), weights.shape())?;
    Error::check_len("bias", n_out, bias.len())?;
    Error::check_shape("out", Shape::new(m, n_out), out.shape())?;
    check_activation(activation)?;

    for i in 0..m {
        let z: Vec<f64> = (0..n_out)
            .map(|o| {
                let dot: f64 = (0..n_in)
                    .map(|k| f64::from(at(x, i, k)) * f64::from(at(weights, o, k)))
                    .sum();
                dot + f64::from(bias[o])
            })
            .collect();
        let a = match activation {
            Activation::Softmax => softmax_row(&z),
            _ => z
                .iter()
                .map(|&z_o| scalar_forward(activation, z_o))
                .collect(),
        };
        for (o, value) in a.into_iter().enumerate() {
            *out.get_mut(i, o).expect("index inside out") = value as f32;
        }
    }
    Ok(())
}

/// The gradients that one dense layer's backward pass produces.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGradients {
    /// `∂C/∂W = δᵀ·X`, `n_out × n_in`.
    pub grad_weights: Matrix,
    /// `∂C/∂b`, the column sums of `δ`, length `n_out`.
    pub grad_bias: Vec<f32>,
    /// `∂C/∂Z` of the layer below, `(δ·W) ∘ f'(X)`, `m × n_in`.
    pub delta_prev: Matrix,
}

/// Computes the backward pass of a dense layer from its input `x: m × n_in`, its
/// `weights: n_out × n_in` and `delta = ∂C/∂Z: m × n_out`.
///
/// `delta` already includes this layer's activation derivative and the loss's `1/m`.
/// `input_activation` is the activation that produced `x` in the layer below; its derivative
/// is read from `x`, as in [`activation_backward`](super::activation_backward). Pass
/// [`Activation::Identity`] when `x` is the network's input, which makes `delta_prev` the
/// plain `δ·W`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `weights` when its column count differs from `x`'s, or
/// `delta` when it is not `m × n_out`; [`Error::InvalidArgument`] naming `slope` for an
/// invalid leaky ReLU slope.
pub fn dense_backward(
    x: MatRef<'_>,
    weights: MatRef<'_>,
    delta: MatRef<'_>,
    input_activation: Activation,
) -> Result<DenseGradients, Error> {
    let (m, n_in, n_out) = (x.rows(), x.cols(), weights.rows());
    Error::check_shape("weights", Shape::new(n_out, n_in), weights.shape())?;
    Error::check_shape("delta", Shape::new(m, n_out), delta.shape())?;
    check_activation(input_activation)?;

    let grad_weights = Matrix::from_fn(n_out, n_in, |o, k| {
        (0..m)
            .map(|i| f64::from(at(delta, i, o)) * f64::from(at(x, i, k)))
            .sum::<f64>() as f32
    });
    let grad_bias = (0..n_out)
        .map(|o| (0..m).map(|i| f64::from(at(delta, i, o))).sum::<f64>() as f32)
        .collect();

    let mut delta_prev = Matrix::zeros(m, n_in);
    for i in 0..m {
        let back: Vec<f64> = (0..n_in)
            .map(|k| {
                (0..n_out)
                    .map(|o| f64::from(at(delta, i, o)) * f64::from(at(weights, o, k)))
                    .sum()
            })
            .collect();
        let a: Vec<f64> = (0..n_in).map(|k| f64::from(at(x, i, k))).collect();
        let values: Vec<f64> = match input_activation {
            Activation::Softmax => {
                let dot: f64 = a.iter().zip(&back).map(|(a_k, d_k)| a_k * d_k).sum();
                a.iter()
                    .zip(&back)
                    .map(|(a_k, d_k)| a_k * (d_k - dot))
                    .collect()
            }
            _ => a
                .iter()
                .zip(&back)
                .map(|(&a_k, &d_k)| scalar_backward(input_activation, a_k, d_k))
                .collect(),
        };
        for (k, value) in values.into_iter().enumerate() {
            delta_prev.as_mut().set(i, k, value as f32)?;
        }
    }

    Ok(DenseGradients {
        grad_weights,
        grad_bias,
        delta_prev,
    })
}

fn at(view: MatRef<'_>, i: usize, j: usize) -> f32 {
    view.get(i, j).expect("index inside the view")
}
