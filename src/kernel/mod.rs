//! SIMD micro-kernels per instruction set, and the run-time dispatch between them.
//!
//! One generic body ([`microkernel::tile_body`]) is compiled once per instruction set
//! inside a thin `#[target_feature]` wrapper, for every tile size from `1 × 1` up to the
//! path's full `MR × NR`, so edge tiles run a kernel of their own size. The dot products
//! (`dot`), the sums of scaled columns (`columns`) and the post pass (`post`) are compiled
//! the same way. [`Arch`] selects the path at run time, and `vectorize` compiles plain
//! element-wise loops, such as the optimisers' updates, for its vector width.

mod addressing;
mod columns;
mod dispatch;
mod dot;
mod lane;
mod microkernel;
mod narrow;
mod peak;
mod post;
mod sets;
mod vectorize;

pub(crate) use columns::{COLUMN_GROUP, ColumnSum, OuterProduct};
pub use dispatch::Arch;
pub(crate) use dot::{DOT_ROWS, DOT_RUNS};
pub(crate) use microkernel::{Beta, CACHE_LINE_F32, Epilogue, TileArgs, prefetch};
pub(crate) use narrow::{NARROW_MAX_OUTPUTS, NarrowBackward};
pub use peak::peak_fma_loop;
pub(crate) use post::{Bias, Post, PostOp};
pub(crate) use sets::KernelSet;
pub(crate) use vectorize::with_arch_features;
