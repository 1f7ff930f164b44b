//! Products with few rows or columns of C whose operands are both contiguous along the
//! reduction, such as a few samples through a dense layer (`X·Wᵀ`). Each element of C is
//! one dot product of a row of A with a column of B, read where they lie: nothing is
//! packed, where the loop nest would pack one operand through a transposing copy.

use std::ops::Range;

use rayon::prelude::*;

use super::operand::Problem;
use super::split::EvenSplit;
use crate::kernel::{Beta, DOT_ROWS, DOT_RUNS, KernelSet, Post};

/// Shortest reduction for which the dot-product path is taken: below one AVX-512 vector
/// the loop nest's micro-kernel is as fast, and its tests cover those depths.
const DOT_MIN_DEPTH: usize = 16;

/// Returns whether `problem` has few rows or columns of C for its depth (one row or
/// column from [`DOT_MIN_DEPTH`], more up to the kernel set's
/// [`dot_line_limits`](KernelSet::dot_line_limits)) over operands contiguous along k: A's
/// rows and B's columns each a run of adjacent elements.
///
/// The loop nest would fill at most that many of a tile's rows and pack the other operand
/// through a transposing copy. This path instead ends each block of 4 × 4 dot products
/// with 16 horizontal sums, which short reductions do not repay.
pub(crate) fn applies(problem: &Problem, kernels: &KernelSet) -> bool {
    let k = problem.k;
    let max_lines = kernels
        .dot_line_limits
        .iter()
        .filter(|&&(_, depth)| k >= depth)
        .map(|&(lines, _)| lines)
        .max()
        .unwrap_or(1);
    problem.m.min(problem.n) <= max_lines
        && k >= DOT_MIN_DEPTH
        && problem.a.col_stride == 1
        && problem.b.row_stride == 1
}

/// Computes `C ← α·A·B + β·C` for a problem that [`applies`], one dot product per element
/// of C, then the problem's element-wise steps. With `β = 0`, C is never read. Up to
/// `threads` rayon tasks take contiguous groups of columns; each element is computed the
/// same way whatever the split.
///
/// The problem is first turned so that C has no more rows than columns. A single row goes
/// to the kernel with [`DOT_RUNS`] columns of B at a time, so each of its vectors is
/// loaded once per group. More rows go [`DOT_ROWS`] at a time. The last group repeats its
/// last column or row, whose result the kernel computes the same way.
///
/// # Safety
///
/// `kernels` is for a path this CPU supports. `problem` describes views that are valid for
/// the whole call, with distinct elements of C and no other live borrow of C. The
/// pointers of its element-wise steps are readable for C's shape.
pub(crate) unsafe fn run(problem: &Problem, kernels: &KernelSet, threads: usize) {
    // Cᵀ = Bᵀ·Aᵀ writes the same elements with the same arithmetic.
    let problem = if problem.m > problem.n {
        problem.t()
    } else {
        *problem
    };
    let n = problem.n;

    // When C's rows or columns are contiguous, the element-wise steps run afterwards in
    // one vector pass over each. Element by element they cost about 20 cycles each, an
    // estimate from timing one sample through a 256-output layer.
    let has_post = problem.post != Post::NONE;
    let rows_contiguous = problem.c.col_stride == 1;
    let post_pass = has_post && (rows_contiguous || problem.c.row_stride == 1);

    let groups = n.div_ceil(DOT_RUNS);
    let tasks = EvenSplit::into_parts(groups, threads.clamp(1, groups));
    let task = |index: usize| {
        let range = tasks.part(index);
        let cols = range.start * DOT_RUNS..(range.end * DOT_RUNS).min(n);
        // SAFETY: tasks write disjoint columns of C; the rest is the caller's contract.
        unsafe { run_columns(&problem, kernels, cols, post_pass) };
    };
    if tasks.parts() == 1 {
        task(0);
    } else {
        (0..tasks.parts()).into_par_iter().for_each(task);
    }
}

/// Computes columns `cols` of C for [`run`], whose problem has no more rows than columns,
/// and with `post_pass`, applies the element-wise steps to them in vector passes over C's
/// contiguous rows or columns.
///
/// # Safety
///
/// The contract of [`run`], and no other task writes these columns of C.
unsafe fn run_columns(problem: &Problem, kernels: &KernelSet, cols: Range<usize>, post_pass: bool) {
    let (m, k) = (problem.m, problem.k);
    let has_post = problem.post != Post::NONE;
    let rows_contiguous = problem.c.col_stride == 1;

    let store = |i: usize, j: usize, dot: f32| {
        // SAFETY: (i, j) is inside C, and only this task writes it.
        let c = unsafe { &mut *problem.c.at(i, j) };
        let product = problem.alpha * dot;
        let value = match problem.beta {
            Beta::Zero => product,
            Beta::One => product + *c,
            Beta::Other(beta) => product + beta * *c,
        };
        *c = if !has_post || post_pass {
            value
        } else {
            // SAFETY: the caller guarantees the steps' pointers for (i, j).
            unsafe { problem.post.apply_scalar(value, i, j) }
        };
    };
    // SAFETY (both): row `i < m` of A and column `j < n` of B are inside their views, and
    // `applies` checked that each is `k` adjacent elements.
    let row = |i: usize| unsafe { problem.a.at(i, 0) };
    let col = |j: usize| unsafe { problem.b.at(0, j) };

    // Columns of B in the outer loop: each group stays in L1 while the rows of A, fewer
    // and shorter in total, pass by.
    for first_col in cols.clone().step_by(DOT_RUNS) {
        let last_col = (first_col + DOT_RUNS).min(cols.end) - 1;
        let runs: [*const f32; DOT_RUNS] =
            core::array::from_fn(|r| col((first_col + r).min(last_col)));
        if m == 1 {
            // SAFETY: A's row and every run are `k` readable elements (see above), and
            // the caller guarantees support for the path.
            let dots = unsafe { kernels.dots(row(0), &runs, k) };
            for (j, dot) in (first_col..=last_col).zip(dots) {
                store(0, j, dot);
            }
            continue;
        }
        for first_row in (0..m).step_by(DOT_ROWS) {
            let last_row = (first_row + DOT_ROWS).min(m) - 1;
            let rows: [*const f32; DOT_ROWS] =
                core::array::from_fn(|s| row((first_row + s).min(last_row)));
            // SAFETY: as above.
            let dots = unsafe { kernels.dot_block(&rows, &runs, k) };
            for (i, dots_i) in (first_row..=last_row).zip(dots) {
                for (j, dot) in (first_col..=last_col).zip(dots_i) {
                    store(i, j, dot);
                }
            }
        }
    }

    if post_pass {
        // Each contiguous line as one column of adjacent rows: a row of C is a column of
        // Cᵀ.
        let lines = if rows_contiguous { 0..m } else { cols.clone() };
        for line in lines {
            let (at, len) = if rows_contiguous {
                ((line, cols.start), cols.len())
            } else {
                ((0, line), m)
            };
            let post = problem.post.at_tile(at.0, at.1);
            let post = if rows_contiguous { post.t() } else { post };
            // SAFETY: the line's `len` elements are adjacent, inside C, written above and
            // written by this task alone. The caller guarantees the steps' pointers for
            // them and support for the path.
            unsafe { kernels.apply_post(&post, problem.c.at(at.0, at.1), 0, len, 1) };
        }
    }
}
