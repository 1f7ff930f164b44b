//! Element-wise work that the epilogue applies to a finished tile before it stores it: a
//! bias, an activation, or the derivative of an activation read from a second matrix.
//!
//! The fused dense-layer kernels use these steps so that `f(X·Wᵀ + b)` and
//! `(δ·W) ∘ f'(X)` never take a second sweep over the output. Every step depends only on
//! the element's value and its (row, column) in the output, never on where the tile
//! starts or how large it is, so tiled and threaded results stay bitwise equal.

use super::lane::{Lane, MAX_WIDTH as MAX_LANE_WIDTH, WideF32x8};
use crate::Activation;

/// A bias added to every element of a row or of a column of the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bias {
    /// No bias.
    None,
    /// Element `i` is added to row `i`; the pointer is the tile's (or the matrix's) row 0.
    Rows(*const f32),
    /// Element `j` is added to column `j`; the pointer is the tile's (or the matrix's)
    /// column 0.
    Cols(*const f32),
}

/// The element-wise function applied after the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PostOp {
    /// Store the value as it is.
    None,
    /// Apply the activation (never softmax, which needs whole rows).
    Activate(Activation),
    /// Multiply by the activation's derivative `f'(x)`, where `x = f(z)` is element
    /// (i, j) of a second matrix with the output's shape: `input + i·row_stride +
    /// j·col_stride`. Never softmax, whose Jacobian is not diagonal.
    Derivative {
        activation: Activation,
        input: *const f32,
        row_stride: isize,
        col_stride: isize,
    },
}

/// The steps that follow `α·A·B + β·C` in the epilogue of the last reduction slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Post {
    /// Bias added first.
    pub bias: Bias,
    /// Function applied to the biased value.
    pub op: PostOp,
}

// SAFETY: the pointers in a `Post` are only read, and point into operands that the GEMM
// call borrows for its whole duration, so tasks of the call may share them.
unsafe impl Send for Post {}
// SAFETY: as above.
unsafe impl Sync for Post {}

impl Post {
    /// No work: the plain GEMM store.
    pub(crate) const NONE: Post = Post {
        bias: Bias::None,
        op: PostOp::None,
    };

    /// The same steps for the transposed output `Cᵀ`.
    pub(crate) fn t(self) -> Post {
        let bias = match self.bias {
            Bias::None => Bias::None,
            Bias::Rows(ptr) => Bias::Cols(ptr),
            Bias::Cols(ptr) => Bias::Rows(ptr),
        };
        let op = match self.op {
            PostOp::Derivative {
                activation,
                input,
                row_stride,
                col_stride,
            } => PostOp::Derivative {
                activation,
                input,
                row_stride: col_stride,
                col_stride: row_stride,
            },
            other => other,
        };
        Post { bias, op }
    }

    /// The steps for the tile whose element (0, 0) is element (`row`, `col`) of the
    /// output: the pointers move to that element.
    pub(crate) fn at_tile(self, row: usize, col: usize) -> Post {
        let bias = match self.bias {
            Bias::None => Bias::None,
            Bias::Rows(ptr) => Bias::Rows(ptr.wrapping_add(row)),
            Bias::Cols(ptr) => Bias::Cols(ptr.wrapping_add(col)),
        };
        let op = match self.op {
            PostOp::Derivative {
                activation,
                input,
                row_stride,
                col_stride,
            } => PostOp::Derivative {
                activation,
                input: input.wrapping_offset(row as isize * row_stride + col as isize * col_stride),
                row_stride,
                col_stride,
            },
            other => other,
        };
        Post { bias, op }
    }

    /// Whether the steps do nothing, as in [`Post::NONE`].
    #[inline(always)]
    pub(crate) fn is_none(&self) -> bool {
        matches!((self.bias, self.op), (Bias::None, PostOp::None))
    }

    /// The activation that cannot run on lanes of `L` (sigmoid and tanh need `exp`) and is
    /// applied with [`Activation::apply_slice`] to the stored values instead.
    #[inline(always)]
    pub(crate) fn slice_activation(&self) -> Option<Activation> {
        match self.op {
            PostOp::Activate(activation @ (Activation::Sigmoid | Activation::Tanh)) => {
                Some(activation)
            }
            _ => None,
        }
    }

    /// Returns `value`, element (`row`, `col`) of the output, after every step: the bias,
    /// then the activation or the derivative. Paths that produce C element by element use
    /// it, and its arithmetic is that of [`apply`](Self::apply) on one lane.
    ///
    /// # Safety
    ///
    /// The pointers refer to element (0, 0) of the output, and (`row`, `col`) lies inside
    /// it, so the bias and derivative input elements they name are readable.
    pub(crate) unsafe fn apply_scalar(&self, value: f32, row: usize, col: usize) -> f32 {
        // SAFETY: portable lanes run on every CPU; the caller guarantees the element.
        let out = unsafe { self.apply(WideF32x8::splat(value), row, col, 1) };
        let mut lanes = [0.0f32; MAX_LANE_WIDTH];
        // SAFETY: `lanes` has room for MAX_LANE_WIDTH ≥ 8 elements.
        unsafe { out.store(lanes.as_mut_ptr()) };
        if let Some(activation) = self.slice_activation() {
            activation.apply_slice(&mut lanes[..1]);
        }
        lanes[0]
    }

    /// Applies the bias and the lane-level function to `value`, the `valid` elements of
    /// the tile from row `first_row` in column `col`.
    ///
    /// # Safety
    ///
    /// The pointers were moved to the tile with [`at_tile`](Self::at_tile), and the
    /// `valid` rows from `first_row` in column `col` lie inside the output, so the bias and
    /// derivative input elements they name are readable.
    #[inline(always)]
    pub(crate) unsafe fn apply<L: Lane>(
        &self,
        value: L,
        first_row: usize,
        col: usize,
        valid: usize,
    ) -> L {
        // SAFETY: `value` exists, so the CPU supports `L`.
        let zero = unsafe { L::zero() };
        let value = match self.bias {
            Bias::None => value,
            // SAFETY: rows `first_row..first_row + valid` of the bias are readable.
            Bias::Rows(ptr) => value.add(unsafe { load_rows::<L>(ptr.add(first_row), 1, valid) }),
            // SAFETY: element `col` of the bias is readable; `L` is supported.
            Bias::Cols(ptr) => value.add(unsafe { L::splat(*ptr.add(col)) }),
        };

        match self.op {
            PostOp::None => value,
            PostOp::Activate(Activation::Relu) => value.select_positive(value, zero),
            PostOp::Activate(Activation::LeakyRelu { slope }) => {
                // SAFETY: `L` is supported.
                let slope = unsafe { L::splat(slope) };
                value.select_positive(value, value.mul(slope))
            }
            PostOp::Activate(_) => value,
            PostOp::Derivative {
                activation,
                input,
                row_stride,
                col_stride,
            } => {
                let column = input.wrapping_offset(col as isize * col_stride);
                let first = column.wrapping_offset(first_row as isize * row_stride);
                // SAFETY: the `valid` elements of the input tile are readable.
                let x = unsafe { load_rows::<L>(first, row_stride, valid) };
                // SAFETY: `L` is supported.
                let one = unsafe { L::splat(1.0) };
                match activation {
                    Activation::Relu => x.select_positive(value, zero),
                    Activation::LeakyRelu { slope } => {
                        // SAFETY: `L` is supported.
                        let slope = unsafe { L::splat(slope) };
                        x.select_positive(value, value.mul(slope))
                    }
                    Activation::Sigmoid => value.mul(x.mul(one.sub(x))),
                    // (1 − x)(1 + x) rather than 1 − x², which loses digits when |x| is
                    // near 1.
                    Activation::Tanh => value.mul(one.sub(x).mul(one.add(x))),
                    Activation::Identity | Activation::Softmax => value,
                }
            }
        }
    }
}

/// Loads `valid ≤ WIDTH` elements `ptr + i·stride`, with zeros in the other lanes.
///
/// # Safety
///
/// The CPU supports `L`, and the `valid` elements are readable.
#[inline(always)]
unsafe fn load_rows<L: Lane>(ptr: *const f32, stride: isize, valid: usize) -> L {
    if stride == 1 {
        // SAFETY: the caller guarantees `valid` readable adjacent elements.
        return unsafe {
            if valid == L::WIDTH {
                L::load(ptr)
            } else {
                L::load_first(ptr, valid)
            }
        };
    }
    let mut gathered = [0.0f32; MAX_LANE_WIDTH];
    for (i, slot) in gathered.iter_mut().enumerate().take(valid.min(L::WIDTH)) {
        // SAFETY: element `i < valid` is readable.
        *slot = unsafe { *ptr.offset(i as isize * stride) };
    }
    // SAFETY: the buffer has MAX_LANE_WIDTH ≥ WIDTH elements.
    unsafe { L::load(gathered.as_ptr()) }
}
