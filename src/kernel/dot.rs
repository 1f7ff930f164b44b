//! Dot products of one contiguous run of `f32` with several others, the kernel of
//! products with a single row or column whose operands are both contiguous along the
//! reduction.

use super::lane::Lane;

/// Runs whose dot products with the shared run one call computes. Each vector of the
/// shared run is loaded once for all of them, so a step loads `1 + 1/DOT_RUNS` vectors
/// per FMA instead of two.
pub(crate) const DOT_RUNS: usize = 4;

/// Independent vector accumulators per run. With [`DOT_RUNS`] runs that makes eight
/// FMA chains, enough to keep two FMA pipes busy through a four-cycle latency.
const DOT_CHAINS: usize = 2;

/// Returns `Σ shared[p]·runs[r][p]` over `p < k` for each run `r`.
///
/// Every run gets the same sequence of operations. Chain `c` adds the products of the
/// vectors `c, c + DOT_CHAINS, …`. The first chain then adds those of the whole vectors
/// left after them, and the last chain that of the masked tail. The result is the sum of
/// the lanes of all chains.
/// A run's result therefore does not depend on its place among the runs or on the other
/// runs, and a caller may repeat a run to fill the array.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set, and `shared` and every run are each valid for
/// `k` reads.
#[inline(always)]
pub(crate) unsafe fn dots_body<L: Lane>(
    shared: *const f32,
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [f32; DOT_RUNS] {
    // SAFETY: the caller guarantees support for `L`.
    let mut acc = [[unsafe { L::zero() }; DOT_CHAINS]; DOT_RUNS];
    let width = L::WIDTH;

    let mut p = 0;
    while p + DOT_CHAINS * width <= k {
        for chain in 0..DOT_CHAINS {
            let offset = p + chain * width;
            // SAFETY: `offset + width ≤ k`, inside every run.
            let x = unsafe { L::load(shared.add(offset)) };
            for (acc_r, &run) in acc.iter_mut().zip(runs) {
                // SAFETY: as above.
                let y = unsafe { L::load(run.add(offset)) };
                acc_r[chain] = x.mul_add(y, acc_r[chain]);
            }
        }
        p += DOT_CHAINS * width;
    }
    while p + width <= k {
        // SAFETY: `p + width ≤ k`, inside every run.
        let x = unsafe { L::load(shared.add(p)) };
        for (acc_r, &run) in acc.iter_mut().zip(runs) {
            // SAFETY: as above.
            let y = unsafe { L::load(run.add(p)) };
            acc_r[0] = x.mul_add(y, acc_r[0]);
        }
        p += width;
    }
    if p < k {
        // SAFETY: the `k − p < width` elements from `p` are inside every run; the masked
        // loads read nothing beyond them.
        let x = unsafe { L::load_first(shared.add(p), k - p) };
        for (acc_r, &run) in acc.iter_mut().zip(runs) {
            // SAFETY: as above.
            let y = unsafe { L::load_first(run.add(p), k - p) };
            acc_r[DOT_CHAINS - 1] = x.mul_add(y, acc_r[DOT_CHAINS - 1]);
        }
    }

    // Plain loops rather than `map` or `reduce`: their closures would be compiled
    // without this function's target features, and call each vector add.
    let mut dots = [0.0; DOT_RUNS];
    for (dot, chains) in dots.iter_mut().zip(acc) {
        let mut sum = chains[0];
        for chain in &chains[1..] {
            sum = sum.add(*chain);
        }
        *dot = sum.sum();
    }
    dots
}
