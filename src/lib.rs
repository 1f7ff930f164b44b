//! Fast CPU kernels for training dense (fully connected) neural-network layers.
//!
//! `densegrad` provides the pieces that backpropagation through a feed-forward network spends
//! its time in: a cache-blocked SGEMM whose SIMD micro-kernel is chosen at run time for the
//! CPU, activations and their derivatives, and numerically stable losses. Every optimised
//! kernel is pinned in tests to a slow, obviously correct twin in [`reference`](mod@crate::reference).
//!
//! # Conventions
//!
//! - Elements are `f32`. A batch holds **one sample per row**: inputs are `m × n_in`, weights
//!   `n_out × n_in` (PyTorch's `Linear` layout), so a layer computes `Z = X·Wᵀ + b`.
//! - Matrices are passed as strided views, [`MatRef`] and [`MatMut`]; a transpose is a view
//!   ([`MatRef::t`]), never a copy. Constructors check every index, so safe code cannot read or
//!   write out of bounds.
//! - Errors are values: a bad shape returns an [`Error`] that names the operand and both
//!   shapes. Safe functions do not panic on bad input.
//!
//! # Example
//!
//! ```
//! use densegrad::{reference, Activation, MatMut, MatRef, Matrix};
//!
//! // Two samples with three features each, through a layer of two neurons.
//! let x = MatRef::from_slice(&[1.0, 2.0, 3.0, -1.0, 0.5, 2.0], 2, 3)?;
//! let w = MatRef::from_slice(&[0.1, 0.2, 0.3, -0.3, 0.2, 0.1], 2, 3)?;
//!
//! // Z = X·Wᵀ: the weights' transpose is a view, not a copy.
//! let mut z = Matrix::zeros(2, 2);
//! reference::gemm(1.0, x, w.t(), 0.0, z.as_mut())?;
//! assert!((z.get(0, 0).unwrap() - 1.4).abs() < 1e-6);
//! # let _ = Activation::Relu;
//! # let _: Option<MatMut> = None;
//! # Ok::<(), densegrad::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod activation;
mod dense;
mod error;
mod gemm;
#[cfg(feature = "idx")]
pub mod idx;
mod kernel;
pub mod layer;
pub mod loss;
mod matrix;
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
