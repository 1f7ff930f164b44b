//! Naive, obviously correct versions of every kernel: the oracle that tests, fuzz targets and
//! benchmarks compare the optimised code with.
//!
//! Everything here is plain loops accumulating in `f64`, written for clarity and **slow**:
//! never use it for real work. It imports nothing from the optimised modules (GEMM, kernels,
//! activations, losses, dense layers), so a bug there cannot hide in the oracle too. It shares
//! only the view types, the error type and the [`Activation`](crate::Activation) enum.

mod activation;
mod dense;
mod gemm;
mod gradcheck;
mod loss;

pub use activation::{activation_backward, activation_forward};
pub use dense::{DenseGradients, dense_backward, dense_forward};
pub use gemm::gemm;
pub use gradcheck::numerical_gradient;
pub use loss::{binary_cross_entropy, mean_squared_error, one_hot, softmax_cross_entropy};
