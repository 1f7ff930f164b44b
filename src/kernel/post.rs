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
        // SAFETY: the caller's contract covers the bias elements.
        let value = unsafe { self.bias.add_to(value, first_row, col, valid) };
        match self.op {
            PostOp::None => value,
            PostOp::Activate(activation) => activate(activation, value),
            PostOp::Derivative {
                activation,
                input,
                row_stride,
                col_stride,
            } => {
                // SAFETY: the caller's contract covers the input elements.
                let x = unsafe {
                    load_input::<L>(input, row_stride, col_stride, first_row, col, valid)
                };
                times_derivative(activation, x, value)
            }
        }
    }

    /// Applies every step in place to a tile that the micro-kernel has stored: the `rows`
    /// contiguous elements of each of `cols` columns, `col_stride` apart, from `c`.
    ///
    /// The arithmetic per element is that of [`apply`](Self::apply), but the steps are
    /// chosen once per tile, not once per vector, so each variant runs as a short loop
    /// without branches.
    ///
    /// # Safety
    ///
    /// The CPU supports `L`. The pointers were moved to the tile with
    /// [`at_tile`](Self::at_tile), the tile lies inside the output, and the caller may read
    /// and write it.
    #[inline(always)]
    pub(crate) unsafe fn apply_to_columns<L: Lane>(
        &self,
        c: *mut f32,
        col_stride: isize,
        rows: usize,
        cols: usize,
    ) {
        let tile = ColumnTile {
            c,
            col_stride,
            rows,
            cols,
        };
        // SAFETY (all arms): the caller's contract; each closure reads only the bias
        // elements of the vector it is given.
        unsafe {
            match self.bias {
                Bias::None => self.op.apply_to_tile::<L>(tile, |value, _, _, _| value),
                Bias::Rows(ptr) => self.op.apply_to_tile::<L>(tile, |value, row, col, valid| {
                    Bias::Rows(ptr).add_to(value, row, col, valid)
                }),
                Bias::Cols(ptr) => self.op.apply_to_tile::<L>(tile, |value, row, col, valid| {
                    Bias::Cols(ptr).add_to(value, row, col, valid)
                }),
            }
        }

        if let Some(activation) = self.slice_activation() {
            for j in 0..cols {
                // SAFETY: column `j` of the tile has `rows` contiguous elements that the
                // caller lets this call write.
                let column = unsafe {
                    std::slice::from_raw_parts_mut(c.offset(j as isize * col_stride), rows)
                };
                activation.apply_slice(column);
            }
        }
    }
}

impl Bias {
    /// Adds the bias to `value`, the `valid` elements from row `first_row` in column `col`.
    ///
    /// # Safety
    ///
    /// The bias elements of those rows (row bias) or of that column (column bias) are
    /// readable, and the CPU supports `L`.
    #[inline(always)]
    unsafe fn add_to<L: Lane>(self, value: L, first_row: usize, col: usize, valid: usize) -> L {
        match self {
            Bias::None => value,
            // SAFETY: rows `first_row..first_row + valid` of the bias are readable.
            Bias::Rows(ptr) => value.add(unsafe { load_rows::<L>(ptr.add(first_row), 1, valid) }),
            // SAFETY: element `col` of the bias is readable; `L` is supported.
            Bias::Cols(ptr) => value.add(unsafe { L::splat(*ptr.add(col)) }),
        }
    }
}

/// A stored tile with contiguous columns: `rows` elements in each of `cols` columns,
/// `col_stride` apart, from `c`.
#[derive(Clone, Copy)]
struct ColumnTile {
    c: *mut f32,
    col_stride: isize,
    rows: usize,
    cols: usize,
}

impl ColumnTile {
    /// Replaces each vector of the tile with `f(vector, first_row, col, valid)`.
    ///
    /// # Safety
    ///
    /// The CPU supports `L`, the caller may read and write the tile, and `f` is safe to
    /// call for each of its vectors.
    #[inline(always)]
    unsafe fn map<L: Lane>(self, f: impl Fn(L, usize, usize, usize) -> L) {
        for j in 0..self.cols {
            let column = self.c.wrapping_offset(j as isize * self.col_stride);
            let mut first_row = 0;
            // SAFETY (both loads and stores): the rows from `first_row` lie inside the
            // column, whole vectors in the loop and `valid` elements after it.
            while first_row + L::WIDTH <= self.rows {
                unsafe {
                    let dst = column.add(first_row);
                    f(L::load(dst), first_row, j, L::WIDTH).store(dst);
                }
                first_row += L::WIDTH;
            }
            if first_row < self.rows {
                let valid = self.rows - first_row;
                unsafe {
                    let dst = column.add(first_row);
                    f(L::load_first(dst, valid), first_row, j, valid).store_first(dst, valid);
                }
            }
        }
    }
}

/// The matrix that a [`PostOp::Derivative`] reads `x = f(z)` from.
#[derive(Clone, Copy)]
struct DerivativeInput {
    input: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl ColumnTile {
    /// Replaces each vector `v` of the tile with `f(x, bias(v, …))`, where `x` contains
    /// the same elements of `input`.
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map), and `input` has readable elements for every element of
    /// the tile.
    #[inline(always)]
    unsafe fn map_derivative<L: Lane>(
        self,
        input: DerivativeInput,
        bias: impl Fn(L, usize, usize, usize) -> L,
        f: impl Fn(L, L) -> L,
    ) {
        // SAFETY: the caller's contract, for the tile and for `input`.
        unsafe {
            self.map::<L>(|v, row, col, valid| {
                let x = load_input::<L>(
                    input.input,
                    input.row_stride,
                    input.col_stride,
                    row,
                    col,
                    valid,
                );
                f(x, bias(v, row, col, valid))
            })
        }
    }
}

impl PostOp {
    /// Replaces each vector `v` of `tile` with this function of `bias(v, first_row, col,
    /// valid)`, with one loop per function. Sigmoid and tanh activations are left to
    /// [`Activation::apply_slice`].
    ///
    /// # Safety
    ///
    /// As for [`Post::apply_to_columns`], and `bias` is safe to call for each vector.
    #[inline(always)]
    unsafe fn apply_to_tile<L: Lane>(
        self,
        tile: ColumnTile,
        bias: impl Fn(L, usize, usize, usize) -> L,
    ) {
        // SAFETY (every arm): the caller's contract.
        unsafe {
            match self {
                PostOp::Activate(Activation::Relu) => tile.map::<L>(|v, row, col, valid| {
                    activate(Activation::Relu, bias(v, row, col, valid))
                }),
                PostOp::Activate(Activation::LeakyRelu { slope }) => {
                    tile.map::<L>(|v, row, col, valid| {
                        activate(Activation::LeakyRelu { slope }, bias(v, row, col, valid))
                    })
                }
                PostOp::None | PostOp::Activate(_) => tile.map::<L>(&bias),
                PostOp::Derivative {
                    activation,
                    input,
                    row_stride,
                    col_stride,
                } => {
                    // One loop per activation, each with the derivative's formula fixed.
                    let input = DerivativeInput {
                        input,
                        row_stride,
                        col_stride,
                    };
                    match activation {
                        Activation::Relu => tile.map_derivative::<L>(input, &bias, |x, v| {
                            times_derivative(Activation::Relu, x, v)
                        }),
                        Activation::LeakyRelu { slope } => {
                            tile.map_derivative::<L>(input, &bias, |x, v| {
                                times_derivative(Activation::LeakyRelu { slope }, x, v)
                            })
                        }
                        Activation::Sigmoid => tile.map_derivative::<L>(input, &bias, |x, v| {
                            times_derivative(Activation::Sigmoid, x, v)
                        }),
                        Activation::Tanh => tile.map_derivative::<L>(input, &bias, |x, v| {
                            times_derivative(Activation::Tanh, x, v)
                        }),
                        Activation::Identity | Activation::Softmax => tile.map::<L>(&bias),
                    }
                }
            }
        }
    }
}

/// `f(value)` for the activations that run on lanes, ReLU and leaky ReLU. Every other
/// activation returns `value`: sigmoid and tanh are applied to stored slices instead.
#[inline(always)]
fn activate<L: Lane>(activation: Activation, value: L) -> L {
    // SAFETY (both): `value` exists, so the CPU supports `L`.
    match activation {
        Activation::Relu => value.select_positive(value, unsafe { L::zero() }),
        Activation::LeakyRelu { slope } => {
            value.select_positive(value, value.mul(unsafe { L::splat(slope) }))
        }
        _ => value,
    }
}

/// `value · f'(z)`, with `f'` computed from `x = f(z)`.
#[inline(always)]
fn times_derivative<L: Lane>(activation: Activation, x: L, value: L) -> L {
    // SAFETY (all): `value` exists, so the CPU supports `L`.
    let one = || unsafe { L::splat(1.0) };
    match activation {
        Activation::Relu => x.select_positive(value, unsafe { L::zero() }),
        Activation::LeakyRelu { slope } => {
            x.select_positive(value, value.mul(unsafe { L::splat(slope) }))
        }
        Activation::Sigmoid => value.mul(x.mul(one().sub(x))),
        // (1 − x)(1 + x) rather than 1 − x², which loses digits when |x| is near 1.
        Activation::Tanh => value.mul(one().sub(x).mul(one().add(x))),
        Activation::Identity | Activation::Softmax => value,
    }
}

/// Loads the `valid` elements of the derivative input from row `first_row` in column
/// `col`, with zeros in the other lanes.
///
/// # Safety
///
/// The CPU supports `L`, and those elements are readable.
#[inline(always)]
unsafe fn load_input<L: Lane>(
    input: *const f32,
    row_stride: isize,
    col_stride: isize,
    first_row: usize,
    col: usize,
    valid: usize,
) -> L {
    let first = input.wrapping_offset(col as isize * col_stride + first_row as isize * row_stride);
    // SAFETY: the caller guarantees the elements.
    unsafe { load_rows::<L>(first, row_stride, valid) }
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
