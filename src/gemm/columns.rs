//! Products whose C is built column by column from whole columns of A: a matrix times a
//! vector (C has one column) and an outer product (the reduction has one step). A dense
//! layer's backward pass on one sample computes one of each, `δ·W` and `δᵀ·X`.
//!
//! The loop nest would run one micro-kernel call per tile of C, most of whose work is then
//! the call and its stores, and it would read each column of A in runs of one tile's rows.
//! Here each column of C is one pass of [`KernelSet::column_sum`] per group of columns of
//! A, which reads them front to back.

use std::ops::Range;

use rayon::prelude::*;

use super::operand::Problem;
use super::split::EvenSplit;
use crate::kernel::{Beta, COLUMN_GROUP, ColumnSum, KernelSet, OuterProduct, Post};

/// Rows of C that a matrix–vector product sums in one pass over the columns of A: 16 KiB
/// of C, which stays in L1 while [`COLUMN_GROUP`] columns of A stream past it.
const CHUNK_ROWS: usize = 4096;

/// Returns `problem` or its transpose, whichever is a product that this path serves
/// better than the loop nest, with A's columns and C's columns contiguous. It returns
/// `None` when neither is, and the one with the longer columns of C when both are.
///
/// A matrix times a vector qualifies when C's column is longer than one full tile of the
/// loop nest, or ends in a partial vector, which the loop nest would pack. A column of
/// whole vectors that one tile covers stays on the loop nest, which keeps its sums in
/// registers: 1×1024×64 AB ran at 48 GFLOP/s there and at 34 here. 1×300×100 AB ran at
/// 20 on the loop nest and at 38 here. Every outer
/// product qualifies. On one AVX-512 core, with C row-major, the shapes timed whose
/// columns have 128 rows or fewer ran 1.13 to 1.24 times as fast here as on the loop
/// nest: 256×1×64 AB at 22.2 GFLOP/s against 18.5. Those whose C outgrows L2 ran 1.02 to
/// 1.09 times as fast: 1024×1×1024 AB at 12.4 against 12.2.
pub(crate) fn oriented(problem: &Problem, kernels: &KernelSet) -> Option<Problem> {
    let serves = |p: &Problem| {
        let contiguous = p.a.row_stride == 1 && p.c.row_stride == 1;
        let matrix_vector =
            p.n == 1 && (p.m > kernels.mr() || !p.m.is_multiple_of(kernels.lane_width));
        contiguous && (matrix_vector || p.k == 1)
    };
    [*problem, problem.t()]
        .into_iter()
        .filter(serves)
        .max_by_key(|p| p.m)
}

/// Computes `C ← α·A·B + β·C` for a problem from [`oriented`], then the problem's
/// element-wise steps, with up to `threads` rayon tasks. With `β = 0`, C is never read.
/// Every element is computed the same way whatever the split, since the columns of A are
/// added to it in the same groups and order wherever its row or column falls.
///
/// # Safety
///
/// `kernels` is for a path this CPU supports. `problem` came from [`oriented`] and
/// describes views that are valid for the whole call, with distinct elements of C and no
/// other live borrow of C. The pointers of its element-wise steps are readable for C's
/// shape.
pub(crate) unsafe fn run(problem: &Problem, kernels: &KernelSet, threads: usize) {
    // Tasks take columns of an outer product, or rows of a matrix–vector product in
    // multiples of [`ROWS_ALIGN`].
    let (len, line_len) = if problem.k == 1 {
        (problem.n, 1)
    } else {
        (problem.m, ROWS_ALIGN)
    };
    let lines = len.div_ceil(line_len);
    let tasks = EvenSplit::into_parts(lines, threads.clamp(1, lines));
    let task = |index: usize| {
        let part = tasks.part(index);
        let range = part.start * line_len..(part.end * line_len).min(len);
        // SAFETY: tasks write disjoint columns or rows of C; the rest is the caller's
        // contract.
        unsafe {
            if problem.k == 1 {
                outer_product_columns(problem, kernels, range);
            } else {
                for first_row in range.clone().step_by(CHUNK_ROWS) {
                    let rows = first_row..(first_row + CHUNK_ROWS).min(range.end);
                    matrix_vector_rows(problem, kernels, rows);
                }
            }
        }
    };
    if tasks.parts() == 1 {
        task(0);
    } else {
        (0..tasks.parts()).into_par_iter().for_each(task);
    }
}

/// Rows per unit of a matrix–vector product's split across tasks: a multiple of every
/// path's vector width, so that only the last task has a masked vector.
const ROWS_ALIGN: usize = 64;

/// Writes columns `cols` of C for an outer product (`k = 1`): `α·b_j` times A's column,
/// plus `β·C`, then the element-wise steps.
///
/// # Safety
///
/// The contract of [`run`] with `k = 1` and `cols` inside C, and no other task writes
/// these columns.
unsafe fn outer_product_columns(problem: &Problem, kernels: &KernelSet, cols: Range<usize>) {
    if cols.is_empty() {
        return;
    }
    let args = OuterProduct {
        // SAFETY: (0, 0) is inside A.
        a: unsafe { problem.a.at(0, 0) },
        // SAFETY: `cols` is a non-empty range of columns inside B, which has one row.
        b: unsafe { problem.b.at(0, cols.start) },
        b_stride: problem.b.col_stride,
        alpha: problem.alpha,
        // SAFETY: the same column is inside C.
        c: unsafe { problem.c.at(0, cols.start) },
        c_col_stride: problem.c.col_stride,
        rows: problem.m,
        cols: cols.len(),
        beta: problem.beta,
    };
    // SAFETY: A's column and each of these columns of C are `m` adjacent elements
    // (`oriented`), and only this task writes the latter.
    unsafe { kernels.outer_product(&args) };

    // Tested once here: a comparison per column took 17 % of 4096×1×64 AB.
    if problem.post != Post::NONE {
        for j in cols {
            // SAFETY: as above, and the caller guarantees the steps' pointers.
            unsafe { apply_post(problem, kernels, 0..problem.m, j) };
        }
    }
}

/// Writes `rows` of C for a matrix times a vector (`n = 1`): the columns of A scaled by
/// `α·b`, [`COLUMN_GROUP`] at a time, plus `β·C`, then the element-wise steps.
///
/// # Safety
///
/// The contract of [`run`] with `n = 1`, `rows` inside C, and no other task writes them.
unsafe fn matrix_vector_rows(problem: &Problem, kernels: &KernelSet, rows: Range<usize>) {
    for first_col in (0..problem.k).step_by(COLUMN_GROUP) {
        let columns = COLUMN_GROUP.min(problem.k - first_col);
        let mut coeffs = [0.0; COLUMN_GROUP];
        for (q, coeff) in coeffs.iter_mut().enumerate().take(columns) {
            // SAFETY: (first_col + q, 0) is inside B, since `first_col + q < k`.
            *coeff = problem.alpha * unsafe { *problem.b.at(first_col + q, 0) };
        }
        let args = ColumnSum {
            // SAFETY: (rows.start, first_col) is inside A: `rows` is a non-empty range of
            // C's rows, which A shares, and `first_col < k`.
            a: unsafe { problem.a.at(rows.start, first_col) },
            a_col_stride: problem.a.col_stride,
            coeffs,
            columns,
            // SAFETY: (rows.start, 0) is inside C, whose one column has these rows.
            c: unsafe { problem.c.at(rows.start, 0) },
            rows: rows.len(),
            beta: if first_col == 0 {
                problem.beta
            } else {
                Beta::One
            },
        };
        // SAFETY: these rows of A's columns and of C's column are adjacent elements
        // inside them (`oriented`), and only this task writes the latter.
        unsafe { kernels.column_sum(&args) };
    }
    // SAFETY: as above, and the caller guarantees the steps' pointers.
    unsafe { apply_post(problem, kernels, rows, 0) };
}

/// Applies the problem's element-wise steps to `rows` of C's column `j`, which the caller
/// has written.
///
/// # Safety
///
/// The rows lie inside C's column `j`, whose elements are adjacent, and only this task
/// writes them. The steps' pointers are readable for them, and `kernels` is supported.
unsafe fn apply_post(problem: &Problem, kernels: &KernelSet, rows: Range<usize>, j: usize) {
    if problem.post == Post::NONE || rows.is_empty() {
        return;
    }
    let post = problem.post.at_tile(rows.start, j);
    // SAFETY: the caller's contract.
    unsafe { kernels.apply_post(&post, problem.c.at(rows.start, j), 0, rows.len(), 1) };
}
