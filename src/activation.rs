//! Activation functions and their derivatives, vectorised with `wide` lanes.

/// An element-wise (or, for softmax, row-wise) activation function.
///
/// Every derivative is computed from the activation's *output* `a = f(z)`, which the forward
/// pass has already stored, so the backward pass never needs `z`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// `f(z) = z`.
    #[default]
    Identity,
    /// `f(z) = max(z, 0)`.
    Relu,
    /// `f(z) = z` for `z > 0`, `slope · z` otherwise.
    LeakyRelu {
        /// Gradient for negative inputs, typically 0.01.
        slope: f32,
    },
    /// `f(z) = 1 / (1 + e^(−z))`.
    Sigmoid,
    /// `f(z) = tanh(z)`.
    Tanh,
    /// Row-wise `f(z)_j = e^(z_j) / Σ_k e^(z_k)`.
    Softmax,
}
