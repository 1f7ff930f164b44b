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

    /// Returns whether the steps do nothing, as in [`Post::NONE`].
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
        let (bias_kind, bias) = match self.bias {
            Bias::None => (BIAS_NONE, core::ptr::null()),
            Bias::Rows(ptr) => (BIAS_ROWS, ptr),
            Bias::Cols(ptr) => (BIAS_COLS, ptr),
        };
        let mut args = StepArgs {
            bias,
            slope: 0.0,
            input: core::ptr::null(),
            row_stride: 0,
            col_stride: 0,
        };
        let op_kind = match self.op {
            PostOp::Activate(Activation::Relu) => OP_RELU,
            PostOp::Activate(Activation::LeakyRelu { slope }) => {
                args.slope = slope;
                OP_LEAKY_RELU
            }
            PostOp::None | PostOp::Activate(_) => OP_NONE,
            PostOp::Derivative {
                activation,
                input,
                row_stride,
                col_stride,
            } => {
                (args.input, args.row_stride, args.col_stride) = (input, row_stride, col_stride);
                match activation {
                    Activation::Relu => OP_RELU_DERIVATIVE,
                    Activation::LeakyRelu { slope } => {
                        args.slope = slope;
                        OP_LEAKY_RELU_DERIVATIVE
                    }
                    Activation::Sigmoid => OP_SIGMOID_DERIVATIVE,
                    Activation::Tanh => OP_TANH_DERIVATIVE,
                    Activation::Identity | Activation::Softmax => OP_NONE,
                }
            }
        };
        // SAFETY (all arms): the caller's contract covers the tile, the bias and the input.
        unsafe {
            match bias_kind {
                BIAS_ROWS => tile.map_with_bias::<L, BIAS_ROWS>(op_kind, args),
                BIAS_COLS => tile.map_with_bias::<L, BIAS_COLS>(op_kind, args),
                _ => tile.map_with_bias::<L, BIAS_NONE>(op_kind, args),
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

// The bias and the function of the post pass, as const parameters: each combination
// compiles to its own loop. Closures would not do: they are compiled without the target
// features of the path's wrapper, so their vector operations became calls (an AVX2
// backward pass of a 128→10 layer took 42 µs instead of 13).
const BIAS_NONE: u8 = 0;
const BIAS_ROWS: u8 = 1;
const BIAS_COLS: u8 = 2;
const OP_NONE: u8 = 0;
const OP_RELU: u8 = 1;
const OP_LEAKY_RELU: u8 = 2;
const OP_RELU_DERIVATIVE: u8 = 3;
const OP_LEAKY_RELU_DERIVATIVE: u8 = 4;
const OP_SIGMOID_DERIVATIVE: u8 = 5;
const OP_TANH_DERIVATIVE: u8 = 6;

/// The run-time operands of the post pass's steps; the const parameters select the ones
/// that are used.
#[derive(Clone, Copy)]
struct StepArgs {
    /// Element 0 of the row or column bias.
    bias: *const f32,
    /// Slope of leaky ReLU.
    slope: f32,
    /// Element (0, 0) of the derivative input, and its strides.
    input: *const f32,
    row_stride: isize,
    col_stride: isize,
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
    /// Runs the loop of function `op` with bias `BIAS`.
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map).
    #[inline(always)]
    unsafe fn map_with_bias<L: Lane, const BIAS: u8>(self, op: u8, args: StepArgs) {
        // SAFETY (all arms): the caller's contract.
        unsafe {
            match op {
                OP_RELU => self.map::<L, BIAS, OP_RELU>(args),
                OP_LEAKY_RELU => self.map::<L, BIAS, OP_LEAKY_RELU>(args),
                OP_RELU_DERIVATIVE => self.map::<L, BIAS, OP_RELU_DERIVATIVE>(args),
                OP_LEAKY_RELU_DERIVATIVE => self.map::<L, BIAS, OP_LEAKY_RELU_DERIVATIVE>(args),
                OP_SIGMOID_DERIVATIVE => self.map::<L, BIAS, OP_SIGMOID_DERIVATIVE>(args),
                OP_TANH_DERIVATIVE => self.map::<L, BIAS, OP_TANH_DERIVATIVE>(args),
                _ => self.map::<L, BIAS, OP_NONE>(args),
            }
        }
    }

    /// Replaces each vector of the tile with [`step`]`::<L, BIAS, OP>` of it.
    ///
    /// # Safety
    ///
    /// The CPU supports `L`, the caller may read and write the tile, and `args` has
    /// readable bias and input elements for every element of the tile.
    #[inline(always)]
    unsafe fn map<L: Lane, const BIAS: u8, const OP: u8>(self, args: StepArgs) {
        for j in 0..self.cols {
            let column = self.c.wrapping_offset(j as isize * self.col_stride);
            let mut first_row = 0;
            // SAFETY (both loads and stores): the rows from `first_row` lie inside the
            // column, whole vectors in the loop and `valid` elements after it. The caller
            // guarantees `args`.
            while first_row + L::WIDTH <= self.rows {
                unsafe {
                    let dst = column.add(first_row);
                    let out = step::<L, BIAS, OP>(L::load(dst), args, first_row, j, L::WIDTH);
                    out.store(dst);
                }
                first_row += L::WIDTH;
            }
            if first_row < self.rows {
                let valid = self.rows - first_row;
                unsafe {
                    let dst = column.add(first_row);
                    let out =
                        step::<L, BIAS, OP>(L::load_first(dst, valid), args, first_row, j, valid);
                    out.store_first(dst, valid);
                }
            }
        }
    }
}

/// Applies the bias `BIAS` and the function `OP` to `value`, the `valid` elements from row
/// `first_row` in column `col`: the arithmetic of [`Post::apply`].
///
/// # Safety
///
/// The CPU supports `L`, and `args` has readable bias and input elements for those
/// elements.
#[inline(always)]
unsafe fn step<L: Lane, const BIAS: u8, const OP: u8>(
    value: L,
    args: StepArgs,
    first_row: usize,
    col: usize,
    valid: usize,
) -> L {
    let bias = match BIAS {
        BIAS_ROWS => Bias::Rows(args.bias),
        BIAS_COLS => Bias::Cols(args.bias),
        _ => Bias::None,
    };
    // SAFETY: the caller guarantees the bias elements.
    let value = unsafe { bias.add_to(value, first_row, col, valid) };
    let slope = args.slope;
    match OP {
        OP_RELU => activate(Activation::Relu, value),
        OP_LEAKY_RELU => activate(Activation::LeakyRelu { slope }, value),
        _ => {
            let activation = match OP {
                OP_RELU_DERIVATIVE => Activation::Relu,
                OP_LEAKY_RELU_DERIVATIVE => Activation::LeakyRelu { slope },
                OP_SIGMOID_DERIVATIVE => Activation::Sigmoid,
                OP_TANH_DERIVATIVE => Activation::Tanh,
                _ => return value,
            };
            // SAFETY: the caller guarantees the input elements.
            let x = unsafe {
                load_input::<L>(
                    args.input,
                    args.row_stride,
                    args.col_stride,
                    first_row,
                    col,
                    valid,
                )
            };
            times_derivative(activation, x, value)
        }
    }
}

/// Returns `f(value)` for the activations that run on lanes, ReLU and leaky ReLU. Every other
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

/// Returns `value · f'(z)`, with `f'` computed from `x = f(z)`.
#[inline(always)]
pub(super) fn times_derivative<L: Lane>(activation: Activation, x: L, value: L) -> L {
    // SAFETY (all): `value` exists, so the CPU supports `L`.
    let one = unsafe { L::splat(1.0) };
    match activation {
        // Adding +0 turns −0 into +0, and keeps LLVM from storing this select as a masked
        // store of zeros over the loaded value. With AVX2 that store is VMASKMOVPS: on Zen 4
        // it made the AVX2 backward pass of a 128→10 layer take 17.0 µs instead of 10.7.
        Activation::Relu => {
            let zero = unsafe { L::zero() };
            x.select_positive(value, zero).add(zero)
        }
        Activation::LeakyRelu { slope } => {
            x.select_positive(value, value.mul(unsafe { L::splat(slope) }))
        }
        Activation::Sigmoid => value.mul(x.mul(one.sub(x))),
        // (1 − x)(1 + x) rather than 1 − x², which loses digits when |x| is near 1.
        Activation::Tanh => value.mul(one.sub(x).mul(one.add(x))),
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
