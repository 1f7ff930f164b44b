//! Products with a single row or column of C whose operands are both contiguous along the
//! reduction, such as one sample through a dense layer (`x·Wᵀ`). Each element of C is one
//! dot product, so each operand is read once and nothing is packed.

use super::operand::Problem;
use crate::kernel::{Beta, DOT_RUNS, KernelSet, Post};

/// Shortest reduction for which the dot-product path is taken: below one AVX-512 vector
/// the loop nest's micro-kernel is as fast, and its tests cover those depths.
const DOT_MIN_DEPTH: usize = 16;

/// Returns whether `problem` is one row or one column of C over operands contiguous along
/// k: A's rows and B's columns each a run of adjacent elements. The micro-kernel would
/// instead pack one of them through a transposing copy and fill one column of its tiles.
pub(crate) fn applies(problem: &Problem) -> bool {
    (problem.m == 1 || problem.n == 1)
        && problem.k >= DOT_MIN_DEPTH
        && problem.a.col_stride == 1
        && problem.b.row_stride == 1
}

/// Computes `C ← α·A·B + β·C` for a problem that [`applies`] on the calling thread, one
/// dot product per element of C, then the problem's element-wise steps. With `β = 0`, C
/// is never read.
///
/// The run that all elements share (A's row or B's column) goes to the kernel with
/// [`DOT_RUNS`] of the others at a time, so each of its vectors is loaded once per group.
/// The last group repeats its last run, whose result the kernel computes the same way.
///
/// # Safety
///
/// `kernels` is for a path this CPU supports. `problem` describes views that are valid for
/// the whole call, with distinct elements of C and no other live borrow of C. The
/// pointers of its element-wise steps are readable for C's shape.
pub(crate) unsafe fn run(problem: &Problem, kernels: &KernelSet) {
    // One row of C: A's row against each column of B. Otherwise one column: B's column
    // against each row of A. Element `e` of C is then (0, e) or (e, 0).
    let one_row = problem.m == 1;
    let count = if one_row { problem.n } else { problem.m };
    let position = |e: usize| if one_row { (0, e) } else { (e, 0) };
    // SAFETY (both): (0, 0) and, for `e < count`, row `e` of A or column `e` of B are
    // inside their views, and `applies` checked that each is `k` adjacent elements.
    let shared = unsafe {
        if one_row {
            problem.a.at(0, 0)
        } else {
            problem.b.at(0, 0)
        }
    };
    let run_at = |e: usize| unsafe {
        if one_row {
            problem.b.at(0, e)
        } else {
            problem.a.at(e, 0)
        }
    };

    // When the line of C is contiguous, the element-wise steps run afterwards in one
    // vector pass over it. Element by element they cost about 20 cycles each, an estimate
    // from timing one sample through a 256-output layer.
    let line_stride = if one_row {
        problem.c.col_stride
    } else {
        problem.c.row_stride
    };
    let post_pass = problem.post != Post::NONE && line_stride == 1;

    for first in (0..count).step_by(DOT_RUNS) {
        let last = (first + DOT_RUNS).min(count) - 1;
        let runs: [*const f32; DOT_RUNS] = core::array::from_fn(|r| run_at((first + r).min(last)));
        // SAFETY: every run and the shared run are `k` readable elements (see above), and
        // the caller guarantees support for the path.
        let dots = unsafe { kernels.dots(shared, &runs, problem.k) };

        for (e, dot) in (first..=last).zip(dots) {
            let (i, j) = position(e);
            // SAFETY: (i, j) is inside C, which only this call writes.
            let c = unsafe { &mut *problem.c.at(i, j) };
            let product = problem.alpha * dot;
            let value = match problem.beta {
                Beta::Zero => product,
                Beta::One => product + *c,
                Beta::Other(beta) => product + beta * *c,
            };
            *c = if problem.post == Post::NONE || post_pass {
                value
            } else {
                // SAFETY: the caller guarantees the steps' pointers for (i, j).
                unsafe { problem.post.apply_scalar(value, i, j) }
            };
        }
    }

    if post_pass {
        // The line as one column of `count` contiguous rows: a row of C is a column of Cᵀ.
        let post = if one_row {
            problem.post.t()
        } else {
            problem.post
        };
        // SAFETY: the line's `count` elements from (0, 0) are adjacent, inside C, written
        // above and written by this call alone. The caller guarantees the steps'
        // pointers for them and support for the path.
        unsafe { kernels.apply_post(&post, problem.c.at(0, 0), 0, count, 1) };
    }
}
