//! Products with a single row or column of C whose operands are both contiguous along the
//! reduction, such as one sample through a dense layer (`x·Wᵀ`). Each element of C is one
//! dot product, so each operand is read once and nothing is packed.

use super::operand::Problem;
use crate::kernel::{Beta, KernelSet, Post};

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
/// # Safety
///
/// `kernels` is for a path this CPU supports. `problem` describes views that are valid for
/// the whole call, with distinct elements of C and no other live borrow of C. The
/// pointers of its element-wise steps are readable for C's shape.
pub(crate) unsafe fn run(problem: &Problem, kernels: &KernelSet) {
    for i in 0..problem.m {
        for j in 0..problem.n {
            // SAFETY: row `i` of A and column `j` of B are inside their views. Each is `k`
            // adjacent elements, because `applies` checked the unit strides. The caller
            // guarantees support for the path.
            let dot = unsafe { kernels.dot(problem.a.at(i, 0), problem.b.at(0, j), problem.k) };
            // SAFETY: (i, j) is inside C, which only this call writes.
            let c = unsafe { &mut *problem.c.at(i, j) };
            let product = problem.alpha * dot;
            let value = match problem.beta {
                Beta::Zero => product,
                Beta::One => product + *c,
                Beta::Other(beta) => product + beta * *c,
            };
            *c = if problem.post == Post::NONE {
                value
            } else {
                // SAFETY: the caller guarantees the steps' pointers for (i, j).
                unsafe { problem.post.apply_scalar(value, i, j) }
            };
        }
    }
}
