//! Raw strided operands of one GEMM problem, shareable across the threads of a call.

use std::ops::Range;

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

    /// Returns how many rows below the first each column starts on a cache line, when the
    /// columns are contiguous and their stride is a whole number of lines: 0 when they
    /// already do. `None` when no row does for every column.
    pub(crate) fn rows_to_line(&self) -> Option<usize> {
        let line_bytes = CACHE_LINE_F32 * size_of::<f32>();
        if self.row_stride != 1
            || !self
                .col_stride
                .unsigned_abs()
                .is_multiple_of(CACHE_LINE_F32)
        {
            return None;
        }
        let past_line = self.ptr as usize % line_bytes;
        Some((line_bytes - past_line) % line_bytes / size_of::<f32>())
    }

    /// Returns the operand that starts `rows` rows further down. Only an operand whose
    /// view has more than `rows` rows may be used.
    pub(crate) fn down_rows(self, rows: usize) -> Operand {
        Operand {
            ptr: self.ptr.wrapping_offset(rows as isize * self.row_stride),
            ..self
        }
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

    /// Returns the operand that starts `rows` rows further down, as
    /// [`Operand::down_rows`].
    pub(crate) fn down_rows(self, rows: usize) -> OutOperand {
        OutOperand {
            ptr: self.ptr.wrapping_offset(rows as isize * self.row_stride),
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

    /// Returns the product restricted to the rows `rows` of A and C, which must lie
    /// inside `0..m` and not be empty.
    pub(crate) fn rows(self, rows: Range<usize>) -> Problem {
        debug_assert!(!rows.is_empty() && rows.end <= self.m);
        Problem {
            m: rows.len(),
            a: self.a.down_rows(rows.start),
            c: self.c.down_rows(rows.start),
            post: self.post.at_tile(rows.start, 0),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the index of the first element of `data` that starts a cache line.
    fn first_on_line(data: &[f32]) -> usize {
        data.as_ptr()
            .align_offset(CACHE_LINE_F32 * size_of::<f32>())
    }

    #[test]
    fn rows_to_line_every_offset() {
        let data = vec![0.0f32; 64 * 40];
        let line_start = first_on_line(&data);
        for offset in 0..CACHE_LINE_F32 {
            // Contiguous columns two lines apart, `offset` elements past a line.
            let view = MatRef::from_strided(&data, line_start + offset, 32, 8, 1, 32).unwrap();
            let expected = (CACHE_LINE_F32 - offset) % CACHE_LINE_F32;
            assert_eq!(
                Operand::new(view).rows_to_line(),
                Some(expected),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn rows_to_line_none_for_other_layouts() {
        let data = vec![0.0f32; 64 * 40];
        let line_start = first_on_line(&data);
        // Columns 24 elements apart: a line and a half.
        let part_lines = MatRef::from_strided(&data, line_start, 24, 8, 1, 24).unwrap();
        assert_eq!(Operand::new(part_lines).rows_to_line(), None);
        // Rows contiguous instead of columns.
        let row_major = MatRef::from_strided(&data, line_start, 8, 32, 32, 1).unwrap();
        assert_eq!(Operand::new(row_major).rows_to_line(), None);
    }
}
