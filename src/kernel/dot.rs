//! Dot products of one or a few contiguous runs of `f32` with several others, the kernel
//! of products with few rows or columns whose operands are both contiguous along the
//! reduction.

use super::lane::Lane;

/// Runs whose dot products with the shared run one call computes. Each vector of the
/// shared run is loaded once for all of them, so a step loads `1 + 1/DOT_RUNS` vectors
/// per FMA instead of two.
pub(crate) const DOT_RUNS: usize = 4;

/// Rows of A that [`dots_body`] takes at once on the few-row path: a block of
/// `DOT_ROWS × DOT_RUNS` dot products keeps 16 accumulators, and each step loads one vector
/// per row and per run for 16 FMAs.
pub(crate) const DOT_ROWS: usize = 4;

/// Independent vector accumulators per dot product with one shared run. With
/// [`DOT_RUNS`] runs that makes eight FMA chains, enough to keep two FMA pipes busy
/// through a four-cycle latency. A block of [`DOT_ROWS`] shared runs has 16 chains with
/// one accumulator each.
pub(crate) const DOT_CHAINS: usize = 2;

/// Returns `Σ shared[s][p]·runs[r][p]` over `p < k` for each shared run `s` and run `r`,
/// with `CHAINS` accumulators per pair.
///
/// Every pair gets the same sequence of operations. Chain `c` adds the products of the
/// vectors `c, c + CHAINS, …`. The first chain then adds those of the whole vectors left
/// after them, and the last chain that of the masked tail. The result is the sum of the
/// lanes of all chains. A block of [`DOT_ROWS`] shared runs sums its 16 pairs' lanes
/// together through [`Lane::sums`], which adds every pair's lanes in the same order.
/// A pair's result therefore depends only on its two runs, `k`, `SHARED` and `CHAINS`,
/// and a caller may repeat a run or a shared run to fill the arrays.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set, and every shared run and every run is valid
/// for `k` reads.
#[inline(always)]
pub(crate) unsafe fn dots_body<L: Lane, const SHARED: usize, const CHAINS: usize>(
    shared: &[*const f32; SHARED],
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [[f32; DOT_RUNS]; SHARED] {
    // SAFETY: the caller guarantees support for `L`.
    let mut acc = [[[unsafe { L::zero() }; CHAINS]; DOT_RUNS]; SHARED];
    let width = L::WIDTH;

    let mut p = 0;
    while p + CHAINS * width <= k {
        for chain in 0..CHAINS {
            // SAFETY: `p + chain·width + width ≤ k`, inside every run.
            unsafe { accumulate(&mut acc, chain, shared, runs, p + chain * width, width) };
        }
        p += CHAINS * width;
    }
    while p + width <= k {
        // SAFETY: `p + width ≤ k`, inside every run.
        unsafe { accumulate(&mut acc, 0, shared, runs, p, width) };
        p += width;
    }
    if p < k {
        // SAFETY: the `k − p < width` elements from `p` are inside every run, and the
        // masked loads read nothing beyond them.
        unsafe { accumulate(&mut acc, CHAINS - 1, shared, runs, p, k - p) };
    }

    // Plain loops rather than `map` or `reduce`: their closures would be compiled
    // without this function's target features, and call each vector add.
    // SAFETY: the caller guarantees support for `L`.
    let mut totals = [[unsafe { L::zero() }; DOT_RUNS]; SHARED];
    for (totals_s, acc_s) in totals.iter_mut().zip(&acc) {
        for (total, chains) in totals_s.iter_mut().zip(acc_s) {
            let mut sum = chains[0];
            for chain in &chains[1..] {
                sum = sum.add(*chain);
            }
            *total = sum;
        }
    }
    let mut dots = [[0.0; DOT_RUNS]; SHARED];
    if SHARED == DOT_ROWS {
        let mut flat = [totals[0][0]; DOT_ROWS * DOT_RUNS];
        for s in 0..SHARED {
            for r in 0..DOT_RUNS {
                flat[s * DOT_RUNS + r] = totals[s][r];
            }
        }
        let sums = L::sums(&flat);
        for s in 0..SHARED {
            for r in 0..DOT_RUNS {
                dots[s][r] = sums[s * DOT_RUNS + r];
            }
        }
    } else {
        for s in 0..SHARED {
            dots[s] = L::sums(&totals[s]);
        }
    }
    dots
}

/// Adds the products of the `len ≤ L::WIDTH` elements from `offset` of every shared run
/// and every run to chain `chain` of their accumulators. Each run's vector is loaded once
/// for all shared runs. Plain loops and functions, not closures, so that everything is
/// inlined with the caller's target features.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set, and `offset + len` elements are readable from
/// every shared run and every run.
#[inline(always)]
unsafe fn accumulate<L: Lane, const SHARED: usize, const CHAINS: usize>(
    acc: &mut [[[L; CHAINS]; DOT_RUNS]; SHARED],
    chain: usize,
    shared: &[*const f32; SHARED],
    runs: &[*const f32; DOT_RUNS],
    offset: usize,
    len: usize,
) {
    // Index loops over constant bounds, which LLVM unrolls fully, so the accumulators
    // stay in registers. Iterators over the nested arrays left them on the stack, with a
    // store after every FMA (4×784×256 A·Bᵀ at 68 GFLOP/s instead of 107).
    // SAFETY: the caller guarantees support for `L`.
    let mut y = [unsafe { L::zero() }; DOT_RUNS];
    for r in 0..DOT_RUNS {
        // SAFETY: the caller's contract.
        y[r] = unsafe { load_part(runs[r], offset, len) };
    }
    for s in 0..SHARED {
        // SAFETY: the caller's contract.
        let x: L = unsafe { load_part(shared[s], offset, len) };
        for r in 0..DOT_RUNS {
            acc[s][r][chain] = x.mul_add(y[r], acc[s][r][chain]);
        }
    }
}

/// Loads the `len ≤ L::WIDTH` elements from `offset` of `ptr`, the rest of the vector
/// zero when `len` is short.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set, and `offset + len` elements are readable from
/// `ptr`.
#[inline(always)]
unsafe fn load_part<L: Lane>(ptr: *const f32, offset: usize, len: usize) -> L {
    // SAFETY: the caller guarantees the elements and support for `L`; a short tail is
    // read through a mask, which reads nothing beyond it.
    unsafe {
        if len == L::WIDTH {
            L::load(ptr.add(offset))
        } else {
            L::load_first(ptr.add(offset), len)
        }
    }
}
