//! Raw strided operands of one GEMM problem, shareable across the threads of a call.

use crate::kernel::{Beta, CACHE_LINE_F32, Post};
use crate::matrix::{MatMut, MatRef};

/// A read-only strided matrix: element (i, j) is at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand {
    ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Operand {
    pub(crate) fn new(view: MatRef<'_>) -> Operand {
        Operand {
            ptr: view.as_ptr(),
            row_stride: view.row_stride(),
            col_stride: view.col_stride(),
        }
    }

    /// Returns the operand with rows and columns swapped.
    pub(crate) fn t(self) -> Operand {
        Operand {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Returns whether every column starts on a cache line: the first element's address
    /// is a multiple of the line size, and the column stride a multiple of its elements.
    /// Vector loads down such a column, at whole vectors from its start, never span two
    /// lines.
    pub(crate) fn columns_line_aligned(&self) -> bool {
        let line_bytes = CACHE_LINE_F32 * size_of::<f32>();
        (self.ptr as usize).is_multiple_of(line_bytes)
            && self
                .col_stride
                .unsigned_abs()
                .is_multiple_of(CACHE_LINE_F32)
    }

    /// Pointer to element (i, j).
    ///
    /// # Safety
    ///
    /// (i, j) lies inside the view this operand was made from.
    #[inline(always)]
    pub(crate) unsafe fn at(&self, i: usize, j: usize) -> *const f32 {
        let delta = i as isize * self.row_stride + j as isize * self.col_stride;
        // SAFETY: the caller keeps (i, j) in the view, whose elements are all in bounds.
        unsafe { self.ptr.offset(delta) }
    }
}

/// The output matrix of a problem, with the same addressing as [`Operand`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutOperand {
    ptr: *mut f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl OutOperand {
    pub(crate) fn new(mut view: MatMut<'_>) -> OutOperand {
        OutOperand {
            ptr: view.as_mut_ptr(),
            row_stride: view.row_stride(),
            col_stride: view.col_stride(),
        }
    }

    /// Returns the operand with rows and columns swapped.
    pub(crate) fn t(self) -> OutOperand {
        OutOperand {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Pointer to element (i, j).
    ///
    /// # Safety
    ///
    /// (i, j) lies inside the view this operand was made from.
    #[inline(always)]
    pub(crate) unsafe fn at(&self, i: usize, j: usize) -> *mut f32 {
        let delta = i as isize * self.row_stride + j as isize * self.col_stride;
        // SAFETY: the caller keeps (i, j) in the view, whose elements are all in bounds.
        unsafe { self.ptr.offset(delta) }
    }
}

/// `C ← α·A·B + β·C` with `A: m × k`, `B: k × n`, `C: m × n`, all non-empty.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: Beta,
    pub a: Operand,
    pub b: Operand,
    pub c: OutOperand,
    /// Element-wise steps after the product, applied once the whole reduction is summed.
    pub post: Post,
}

// SAFETY: a `Problem` is built from views borrowed for the whole `gemm` call: `a` and `b`
// are only read, and the tasks of a call write disjoint blocks of `c`, whose elements
// have distinct addresses (`MatMut` rejects overlapping views).
unsafe impl Send for Problem {}
// SAFETY: as above.
unsafe impl Sync for Problem {}

impl Problem {
    /// Returns the same product transposed, `Cᵀ ← α·Bᵀ·Aᵀ + β·Cᵀ`, which writes the same
    /// elements with the same arithmetic.
    pub(crate) fn t(self) -> Problem {
        Problem {
            m: self.n,
            n: self.m,
            a: self.b.t(),
            b: self.a.t(),
            c: self.c.t(),
            post: self.post.t(),
            ..self
        }
    }
}
