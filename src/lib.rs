//! Fast CPU kernels for training dense (fully connected) neural-network layers.
//!
//! `densegrad` provides the pieces that backpropagation through a feed-forward network spends
//! its time in. A cache-blocked SGEMM ([`gemm`]) runs a SIMD micro-kernel chosen at run time
//! for the CPU. On it stand one dense layer's forward and backward pass ([`dense_forward`],
//! [`dense_backward`]), activations and their derivatives, numerically stable losses, and a
//! safe [`layer`] API (`Dense`, `Sequential`, `Sgd`, `Adam`). Every optimised
//! kernel is pinned in tests to a slow, obviously correct twin in [`reference`](mod@crate::reference).
//!
//! # Conventions
//!
//! - Elements are `f32`. A batch has **one sample per row**: inputs are `m × n_in`, weights
//!   `n_out × n_in` (PyTorch's `Linear` layout), so a layer computes `Z = X·Wᵀ + b`.
//! - Matrices are passed as strided views, [`MatRef`] and [`MatMut`]; a transpose is a view
//!   ([`MatRef::t`]), never a copy. Constructors check every index, so safe code cannot read or
//!   write out of bounds.
//! - Errors are values: a bad shape returns an [`Error`] that names the operand and both
//!   shapes. Kernels return errors for bad shapes, strides and arguments instead of
//!   panicking. They compute on NaN and infinity as IEEE arithmetic does (ReLU maps NaN to
//!   0). The [`layer`] API also checks values: a NaN input, a class index out of range or
//!   non-finite logits are an error that names the row. The owned [`Matrix::zeros`] panics on
//!   a size that overflows, as `vec!` does, and [`Matrix::try_zeros`] returns an error
//!   instead.
//!
//! # Example
//!
//! ```
//! use densegrad::{Error, MatRef, Matrix, Parallelism, gemm};
//!
//! fn main() -> Result<(), Error> {
//!     // Two samples with three features each, through a layer of two neurons.
//!     let x = MatRef::from_slice(&[1.0, 2.0, 3.0, -1.0, 0.5, 2.0], 2, 3)?;
//!     let w = MatRef::from_slice(&[0.1, 0.2, 0.3, -0.3, 0.2, 0.1], 2, 3)?;
//!
//!     // Z = X·Wᵀ: the weights' transpose is a view, not a copy.
//!     let mut z = Matrix::zeros(2, 2);
//!     gemm(1.0, x, w.t(), 0.0, z.as_mut(), Parallelism::Sequential)?;
//!     assert!((z.get(0, 0).unwrap() - 1.4).abs() < 1e-6);
//!
//!     // A wrong shape is an error that names the operand, not a panic.
//!     let err = gemm(1.0, x, w, 0.0, z.as_mut(), Parallelism::Sequential).unwrap_err();
//!     assert_eq!(err.to_string(), "b: expected 3 × 2, got 2 × 3");
//!     Ok(())
//! }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod activation;
mod dense;
mod error;
mod gemm;
#[cfg(feature = "idx")]
pub mod idx;
#[cfg(feature = "ndarray")]
pub mod interop;
mod kernel;
pub mod layer;
pub mod loss;
mod matrix;
#[cfg(feature = "idx")]
pub mod mnist;
mod parallel;
pub mod reference;

pub use activation::Activation;
pub use dense::{DenseGrads, GradMode, dense_backward, dense_forward};
#[doc(hidden)]
pub use dense::{dense_backward_with_arch, dense_forward_with_arch};
pub use error::{Error, Shape};
pub use gemm::gemm;
#[doc(hidden)]
pub use gemm::{BlockSizes, PARALLEL_MIN_FLOPS, Packing, gemm_with_arch, gemm_with_options};
#[doc(hidden)]
pub use kernel::{Arch, peak_fma_loop};
pub use loss::Targets;
pub use matrix::{MatMut, MatRef, Matrix, RowsIter};
pub use parallel::Parallelism;

/// The `rand` crate at the version whose generators [`layer::Dense::new`] and the MNIST
/// helpers take. Use it (and [`rand_chacha`]) through `densegrad` to get generators that
/// fit, whatever `rand` version a project depends on itself.
pub use rand;
/// The ChaCha generators of the `rand` version that [`rand`] re-exports. The trainer and
/// the examples seed `rand_chacha::ChaCha8Rng`.
pub use rand_chacha;

/// Returns the name of the SIMD path the kernels run on: `"avx512"`, `"avx2"` or
/// `"portable"`.
///
/// The path is chosen once, on first use, as the fastest one this CPU supports, unless the
/// environment variable `DENSEGRAD_ARCH` names a slower one (for tests and comparisons).
/// The name is matched ignoring case and surrounding blanks, and an empty value counts as
/// unset. A path the CPU lacks falls back to the fastest supported one below it. Any other
/// value falls back to the fastest path. Both print one warning to standard error.
///
/// ```
/// let path = densegrad::simd_path();
/// assert!(["avx512", "avx2", "portable"].contains(&path));
/// ```
pub fn simd_path() -> &'static str {
    kernel::Arch::selected().name()
}
