//! The dot product of two contiguous runs of `f32`, the kernel of products with a single
//! row or column whose operands are both contiguous along the reduction.

use super::lane::Lane;

/// Independent vector accumulators of [`dot_body`]: enough to keep the FMA pipes busy
/// while each accumulator waits on the latency of its last FMA.
const DOT_CHAINS: usize = 4;

/// Returns `Σ a[p]·b[p]` over `p < k`: `DOT_CHAINS` accumulators over whole vectors, a
/// masked vector for the tail, then the sum of the accumulators' lanes.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set, and `a` and `b` are each valid for `k` reads.
#[inline(always)]
pub(crate) unsafe fn dot_body<L: Lane>(a: *const f32, b: *const f32, k: usize) -> f32 {
    // SAFETY: the caller guarantees support for `L`.
    let mut acc = [unsafe { L::zero() }; DOT_CHAINS];
    let width = L::WIDTH;

    let mut p = 0;
    while p + DOT_CHAINS * width <= k {
        for (chain, acc_c) in acc.iter_mut().enumerate() {
            let offset = p + chain * width;
            // SAFETY: `offset + width ≤ k`, inside both runs.
            let (x, y) = unsafe { (L::load(a.add(offset)), L::load(b.add(offset))) };
            *acc_c = x.mul_add(y, *acc_c);
        }
        p += DOT_CHAINS * width;
    }
    while p + width <= k {
        // SAFETY: `p + width ≤ k`, inside both runs.
        let (x, y) = unsafe { (L::load(a.add(p)), L::load(b.add(p))) };
        acc[0] = x.mul_add(y, acc[0]);
        p += width;
    }
    if p < k {
        // SAFETY: the `k − p < width` elements from `p` are inside both runs; the masked
        // loads read nothing beyond them.
        let (x, y) = unsafe {
            (
                L::load_first(a.add(p), k - p),
                L::load_first(b.add(p), k - p),
            )
        };
        acc[1] = x.mul_add(y, acc[1]);
    }

    acc[0].add(acc[1]).add(acc[2].add(acc[3])).sum()
}
