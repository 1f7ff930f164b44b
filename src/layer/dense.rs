//! One dense layer: its parameters, activation and parameter gradients.

use rand::Rng;

use super::init::Init;
use crate::Activation;
use crate::dense::check_slope;
use crate::error::{Error, Shape};
use crate::matrix::{MatMut, MatRef, Matrix};

/// A dense (fully connected) layer `a = f(W·x + b)` with its parameter gradients.
///
/// The weights are `n_out × n_in`, PyTorch's `Linear` layout. The gradients are those of the
/// last [`Sequential::train_step`](super::Sequential::train_step) or
/// [`Sequential::compute_gradients`](super::Sequential::compute_gradients), as
/// [`Sequential::gradients_mut`](super::Sequential::gradients_mut) may have changed them. They
/// are zero before the first, and after parameters are loaded from safetensors.
///
/// ```
/// use densegrad::Activation;
/// use densegrad::layer::{Dense, Init};
/// use densegrad::rand::SeedableRng;
/// use densegrad::rand_chacha::ChaCha8Rng;
///
/// let mut rng = ChaCha8Rng::seed_from_u64(7);
/// let layer = Dense::new(784, 256, Activation::Relu, Init::HeUniform, &mut rng)?;
/// assert_eq!(layer.weights().shape(), densegrad::Shape::new(256, 784));
/// assert!(layer.bias().iter().all(|&b| b == 0.0));
/// # Ok::<(), densegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub(super) weights: Matrix,
    pub(super) bias: Vec<f32>,
    pub(super) activation: Activation,
    pub(super) grad_weights: Matrix,
    pub(super) grad_bias: Vec<f32>,
}

impl Dense {
    /// Creates a layer of `n_out` neurons over `n_in` inputs, with weights drawn by `init`
    /// from `rng` and zero biases.
    ///
    /// Pass a seeded generator such as `rand_chacha::ChaCha8Rng` for reproducible weights.
    /// `R` is a generator of rand 0.9; [`crate::rand`] and [`crate::rand_chacha`] re-export
    /// that version, so a project that depends on another rand still has one that fits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `n_in` or `n_out` when it is zero, or `activation`
    /// for a leaky ReLU slope that is negative or not finite; [`Error::Overflow`] or
    /// [`Error::AllocationFailed`] naming `weights` when `n_out × n_in` is too large to
    /// allocate.
    pub fn new<R: Rng + ?Sized>(
        n_in: usize,
        n_out: usize,
        activation: Activation,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, Error> {
        check_width("n_in", n_in)?;
        check_width("n_out", n_out)?;
        check_slope("activation", activation)?;

        let mut weights = Matrix::try_zeros("weights", n_out, n_in)?;
        init.fill(weights.as_mut_slice(), n_in, n_out, rng)?;
        Self::from_parameters(weights, vec![0.0; n_out], activation)
    }

    /// Creates a layer from given weights (`n_out × n_in`) and bias (`n_out` elements).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `weights` when it has no rows or no columns, or
    /// `activation` for an invalid leaky ReLU slope; [`Error::LengthMismatch`] naming `bias`
    /// when its length differs from the number of rows of `weights`.
    pub fn from_parameters(
        weights: Matrix,
        bias: Vec<f32>,
        activation: Activation,
    ) -> Result<Self, Error> {
        let Shape { rows, cols } = weights.shape();
        if rows == 0 || cols == 0 {
            return Err(Error::InvalidArgument {
                operand: "weights",
                reason: format!(
                    "a {} weight matrix has no neurons or no inputs",
                    weights.shape()
                ),
            });
        }
        Error::check_len("bias", rows, bias.len())?;
        check_slope("activation", activation)?;
        Ok(Self {
            weights,
            bias,
            activation,
            grad_weights: Matrix::try_zeros("grad_weights", rows, cols)?,
            grad_bias: vec![0.0; rows],
        })
    }

    /// Number of inputs, the width of the layer below.
    pub fn n_in(&self) -> usize {
        self.weights.cols()
    }

    /// Number of neurons, the width of this layer's output.
    pub fn n_out(&self) -> usize {
        self.weights.rows()
    }

    /// The activation function.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The weights, `n_out × n_in`, row-major, so [`MatRef::as_slice`] always returns
    /// them.
    pub fn weights(&self) -> MatRef<'_> {
        self.weights.as_ref()
    }

    /// The weights, mutably, to set them by hand. Row-major like [`Dense::weights`].
    pub fn weights_mut(&mut self) -> MatMut<'_> {
        self.weights.as_mut()
    }

    /// The bias, one element per neuron.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The bias, mutably.
    pub fn bias_mut(&mut self) -> &mut [f32] {
        &mut self.bias
    }

    /// Returns the weights and the bias, mutably at the same time, for code that sets or
    /// changes both. The weights are row-major like [`Dense::weights`]. Values are not
    /// checked: see [`Sequential::parameters_mut`](super::Sequential::parameters_mut) for
    /// what a NaN does and how optimiser state carries over.
    ///
    /// ```
    /// use densegrad::Activation;
    /// use densegrad::layer::{Dense, Init};
    /// use densegrad::rand::SeedableRng;
    /// use densegrad::rand_chacha::ChaCha8Rng;
    ///
    /// let mut layer = Dense::new(3, 2, Activation::Relu, Init::HeUniform, &mut ChaCha8Rng::seed_from_u64(0))?;
    /// let (weights, bias) = layer.parameters_mut();
    /// weights.into_mut_slice().unwrap().fill(0.5);
    /// bias.fill(-1.0);
    /// assert_eq!(layer.weights().as_slice().unwrap(), &[0.5; 6]);
    /// assert_eq!(layer.bias(), &[-1.0, -1.0]);
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    pub fn parameters_mut(&mut self) -> (MatMut<'_>, &mut [f32]) {
        (self.weights.as_mut(), &mut self.bias)
    }

    /// `∂C/∂W` of the last computed batch, `n_out × n_in`, row-major like
    /// [`Dense::weights`], or the sum of the micro-batches that
    /// [`Sequential::accumulate_gradients`](super::Sequential::accumulate_gradients) added.
    pub fn grad_weights(&self) -> MatRef<'_> {
        self.grad_weights.as_ref()
    }

    /// `∂C/∂b` of the last computed batch, one element per neuron, or the sum of the
    /// micro-batches added since the gradients were last zeroed.
    pub fn grad_bias(&self) -> &[f32] {
        &self.grad_bias
    }
}

fn check_width(operand: &'static str, width: usize) -> Result<(), Error> {
    if width == 0 {
        return Err(Error::InvalidArgument {
            operand,
            reason: "a dense layer needs at least one input and one neuron; got 0".to_string(),
        });
    }
    Ok(())
}
