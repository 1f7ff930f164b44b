//! Naive, obviously correct versions of every kernel: the oracle that tests, fuzz targets and
//! benchmarks compare the optimised code with.
//!
//! Everything here is plain loops accumulating in `f64`, written for clarity and **slow**:
//! never use it for real work. It imports nothing from the optimised modules (GEMM, kernels,
//! dense layers), so a bug there cannot hide in the oracle too; it shares only the view types,
//! the error type and the [`Activation`](crate::Activation) enum.

mod gemm;

pub use gemm::gemm;
