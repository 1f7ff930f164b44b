//! Forward and backward pass of one dense layer, `A = f(X·Wᵀ + b)`, one sample per row.
//!
//! Both passes run on the blocked GEMM, with the bias, the activation and the activation's
//! derivative applied in the micro-kernel epilogue (see the `fused` module).

use crate::Activation;
use crate::error::{Error, Shape};
use crate::kernel::Arch;
use crate::matrix::{MatMut, MatRef};
use crate::parallel::Parallelism;

mod fused;
mod narrow;

/// Whether [`dense_backward`] replaces or adds to the parameter gradients it writes. The
/// default is `Overwrite`. `input_delta` is overwritten in both modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GradMode {
    /// Overwrite the gradients. Their previous contents are never read, so NaN or garbage in
    /// them cannot reach the result.
    #[default]
    Overwrite,
    /// Add to the existing gradients, to accumulate over several micro-batches. A loss
    /// writes `δ` with the `1/m` of its own rows, so for the mean over the whole batch
    /// scale each micro-batch's `δ` by its share of the rows, `m_micro / m`.
    /// [`Sequential::accumulate_gradients`](crate::layer::Sequential::accumulate_gradients)
    /// does this for a whole network.
    Accumulate,
}

/// The parameter gradients that [`dense_backward`] writes.
#[derive(Debug)]
pub struct DenseGrads<'a> {
    /// `∂C/∂W = δᵀ·X`, `n_out × n_in`.
    pub weights: MatMut<'a>,
    /// `∂C/∂b`, the column sums of `δ`, length `n_out`.
    pub bias: &'a mut [f32],
    /// Whether to overwrite or accumulate.
    pub mode: GradMode,
}

/// Computes the forward pass `output ← f(input·weightsᵀ + bias)` of a dense layer.
///
/// `input` is `m × n_in` (one sample per row), `weights` is `n_out × n_in` (PyTorch's
/// `Linear` layout), `bias` has `n_out` elements and `output` is `m × n_out`. Softmax is
/// applied per row. `output`'s previous contents are never read. Results do not depend on
/// `par`.
///
/// For an output layer trained with softmax or binary cross-entropy, run this pass with
/// [`Activation::Identity`] and give the logits to [`loss::softmax_cross_entropy`] or
/// [`loss::binary_cross_entropy`]: they take logits, and the gradient they write is this
/// layer's `δ` for [`dense_backward`]. [`Activation::Softmax`] and [`Activation::Sigmoid`]
/// here give the probabilities, for prediction.
///
/// [`loss::softmax_cross_entropy`]: crate::loss::softmax_cross_entropy
/// [`loss::binary_cross_entropy`]: crate::loss::binary_cross_entropy
///
/// ```
/// use densegrad::{dense_forward, Activation, MatMut, MatRef, Parallelism};
///
/// let x = [1.0, 2.0];
/// let w = [0.5, -1.0, 1.0, 1.0];
/// let mut out = [0.0; 2];
/// dense_forward(
///     MatRef::from_slice(&x, 1, 2)?,
///     MatRef::from_slice(&w, 2, 2)?,
///     &[0.0, 0.5],
///     Activation::Relu,
///     MatMut::from_slice(&mut out, 1, 2)?,
///     Parallelism::Sequential,
/// )?;
/// assert_eq!(out, [0.0, 3.5]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `weights` when its column count differs from
///   `input`'s, or `output` when it is not `m × n_out`.
/// - [`Error::LengthMismatch`] naming `bias` when it does not have `n_out` elements.
/// - [`Error::InvalidArgument`] naming `activation` for a leaky ReLU slope that is negative
///   or not finite.
pub fn dense_forward(
    input: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    activation: Activation,
    output: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    dense_forward_with_arch(
        Arch::selected(),
        input,
        weights,
        bias,
        activation,
        output,
        par,
    )
}

/// [`dense_forward`] on a given micro-kernel path, for tests and benchmarks that compare
/// paths in one process. A path the CPU lacks is replaced by the fastest supported one
/// below it.
///
/// # Errors
///
/// As for [`dense_forward`].
#[doc(hidden)]
pub fn dense_forward_with_arch(
    arch: Arch,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    activation: Activation,
    output: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    let n_out = agreed_width(&[weights.rows(), bias.len(), output.cols()]);
    let (m, n_in) = (input.rows(), input.cols());
    Error::check_shape("weights", Shape::new(n_out, n_in), weights.shape())?;
    Error::check_len("bias", n_out, bias.len())?;
    Error::check_shape("output", Shape::new(m, n_out), output.shape())?;
    check_slope("activation", activation)?;
    fused::forward(arch, input, weights, bias, activation, output, par)
}

/// Computes the backward pass of a dense layer: the parameter gradients and, when
/// `input_delta` is given, the error of the layer below.
///
/// `delta` is `∂C/∂Z` of this layer, `m × n_out`, and already contains this layer's
/// activation derivative and the loss's `1/m`. `input` is the layer's input `X`, `m × n_in`,
/// which is the output of the layer below, and `input_activation` is the activation that
/// produced it. The function writes
///
/// - `grads.weights ← δᵀ·X` (`n_out × n_in`) and `grads.bias ←` the column sums of `δ`, or
///   adds them with [`GradMode::Accumulate`];
/// - `input_delta ← (δ·W) ∘ f'(X)` (`m × n_in`), with `f'` read from `X`, in either mode:
///   its previous contents are never read. Pass `None` for the first layer, whose input
///   needs no error, and [`Activation::Identity`] when `X` is raw data.
///
/// Results do not depend on `par`.
///
/// ```
/// use densegrad::{dense_backward, Activation, DenseGrads, GradMode, MatMut, MatRef, Parallelism};
///
/// // One sample, two inputs, one output.
/// let delta = [2.0];
/// let x = [1.0, -3.0];
/// let w = [0.5, 0.25];
/// let (mut grad_w, mut grad_b, mut input_delta) = ([0.0; 2], [0.0], [0.0; 2]);
/// dense_backward(
///     MatRef::from_slice(&delta, 1, 1)?,
///     MatRef::from_slice(&x, 1, 2)?,
///     MatRef::from_slice(&w, 1, 2)?,
///     Activation::Identity,
///     DenseGrads {
///         weights: MatMut::from_slice(&mut grad_w, 1, 2)?,
///         bias: &mut grad_b,
///         mode: GradMode::Overwrite,
///     },
///     Some(MatMut::from_slice(&mut input_delta, 1, 2)?),
///     Parallelism::Sequential,
/// )?;
/// assert_eq!(grad_w, [2.0, -6.0]);
/// assert_eq!(grad_b, [2.0]);
/// assert_eq!(input_delta, [1.0, 0.5]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `weights` when its column count differs from
///   `input`'s, `delta` when it is not `m × n_out`, `grads.weights` when it is not
///   `n_out × n_in`, or `input_delta` when it is not `m × n_in`.
/// - [`Error::LengthMismatch`] naming `grads.bias` when it does not have `n_out` elements.
/// - [`Error::InvalidArgument`] naming `input_activation` when it is
///   [`Activation::Softmax`], whose Jacobian is not diagonal, or a leaky ReLU with a
///   negative or non-finite slope.
pub fn dense_backward(
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    input_activation: Activation,
    grads: DenseGrads<'_>,
    input_delta: Option<MatMut<'_>>,
    par: Parallelism,
) -> Result<(), Error> {
    dense_backward_with_arch(
        Arch::selected(),
        delta,
        input,
        weights,
        input_activation,
        grads,
        input_delta,
        par,
    )
}

/// [`dense_backward`] on a given micro-kernel path; see [`dense_forward_with_arch`].
///
/// # Errors
///
/// As for [`dense_backward`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn dense_backward_with_arch(
    arch: Arch,
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    input_activation: Activation,
    grads: DenseGrads<'_>,
    input_delta: Option<MatMut<'_>>,
    par: Parallelism,
) -> Result<(), Error> {
    let n_out = agreed_width(&[
        weights.rows(),
        delta.cols(),
        grads.weights.rows(),
        grads.bias.len(),
    ]);
    let (m, n_in) = (input.rows(), input.cols());
    Error::check_shape("weights", Shape::new(n_out, n_in), weights.shape())?;
    Error::check_shape("delta", Shape::new(m, n_out), delta.shape())?;
    Error::check_shape(
        "grads.weights",
        Shape::new(n_out, n_in),
        grads.weights.shape(),
    )?;
    Error::check_len("grads.bias", n_out, grads.bias.len())?;
    if let Some(input_delta) = &input_delta {
        Error::check_shape("input_delta", Shape::new(m, n_in), input_delta.shape())?;
    }
    if input_activation == Activation::Softmax {
        return Err(Error::InvalidArgument {
            operand: "input_activation",
            reason: "softmax has no element-wise derivative, so the gradient cannot be \
                     propagated through it; use softmax only on the output layer"
                .to_string(),
        });
    }
    check_slope("input_activation", input_activation)?;

    let DenseGrads {
        weights: grad_weights,
        bias: grad_bias,
        mode,
    } = grads;
    fused::backward(
        arch,
        delta,
        input,
        weights,
        input_activation,
        grad_weights,
        grad_bias,
        mode,
        input_delta,
        par,
    )
}

/// Rejects a leaky ReLU slope that is negative or not finite. With a negative slope, the
/// output's sign no longer shows which side of zero the input was on, so `f'` cannot be
/// read from the output.
pub(crate) fn check_slope(operand: &'static str, activation: Activation) -> Result<(), Error> {
    if let Activation::LeakyRelu { slope } = activation
        && !(slope.is_finite() && slope >= 0.0)
    {
        return Err(Error::InvalidArgument {
            operand,
            reason: format!("leaky ReLU slope {slope} must be finite and non-negative"),
        });
    }
    Ok(())
}

/// Returns the layer width `n_out` that most operands agree on, the first listed on a tie.
///
/// Every operand that carries `n_out` votes, so the one that disagrees is the one an error
/// names: weights passed transposed give "weights: expected 256 × 784, got 784 × 256" rather
/// than blaming the bias and output that match each other.
fn agreed_width(widths: &[usize]) -> usize {
    let votes = |width: usize| widths.iter().filter(|&&w| w == width).count();
    widths
        .iter()
        .copied()
        .fold((0, 0), |(best, best_votes), width| {
            let count = votes(width);
            if count > best_votes {
                (width, count)
            } else {
                (best, best_votes)
            }
        })
        .0
}
