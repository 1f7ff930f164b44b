//! The threading setting that decides how a kernel may split its work across threads.

/// The threading a kernel call may use. The default is `Sequential`.
///
/// Results never depend on this setting: every kernel splits its work into blocks whose
/// sizes depend only on the problem's shape, and combines them in a fixed order, so
/// `Sequential` and `Rayon(n)` give bitwise equal results. That holds for the same
/// operands in the same layout on the same SIMD path ([`simd_path`](crate::simd_path)) and
/// the same cache sizes, wherever the buffers start in memory. Another layout or path may
/// add the products in another order and round differently. So may a CPU with another L1d
/// or L2 size, since the block sizes follow from them.
///
/// What splits:
/// - [`gemm`](crate::gemm) splits products of at least 2²³ floating-point operations
///   (`2·m·n·k`) across blocks of C; smaller ones run on the calling thread.
/// - [`dense_forward`](crate::dense_forward) is one such product, split the same way.
/// - [`dense_backward`](crate::dense_backward) splits a batch of at least 512 samples into
///   chunks of at least 256, each with partial gradients that are added in a fixed
///   order. A smaller batch, or a layer whose partial gradients would pass 16 MiB, runs
///   as one chunk whose products split as `gemm`'s do.
/// - The optimisers of the layer API split their updates above 2 × 65,536 parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Parallelism {
    /// Run on the calling thread only.
    #[default]
    Sequential,
    /// Split large problems across up to `n` tasks of the current rayon pool; `0` means the
    /// size of that pool. Small problems still run on the calling thread. Any `n` is
    /// accepted: a kernel uses no more tasks than its work splits into, so `usize::MAX`
    /// sets no limit.
    Rayon(usize),
}

impl Parallelism {
    /// The number of tasks this setting allows, at least 1.
    pub fn max_threads(self) -> usize {
        match self {
            Parallelism::Sequential => 1,
            Parallelism::Rayon(0) => rayon::current_num_threads().max(1),
            Parallelism::Rayon(n) => n,
        }
    }
}

/// Runs `op` on a worker thread of the current rayon pool when `threads > 1` and the
/// calling thread is not one, and on the calling thread otherwise.
///
/// A parallel region that a thread outside the pool starts hands its tasks to the pool,
/// wakes the workers and puts the caller to sleep until they finish. On a 2-core VM of a
/// Sapphire Rapids-class host that took 11 to 25 µs per region of two tasks, against
/// about 2.5 µs for a region started from a worker (a loop of rayon joins of equal
/// work). A kernel with several regions pays the hand-over once inside `op`.
pub(crate) fn on_pool<R: Send>(threads: usize, op: impl FnOnce() -> R + Send) -> R {
    if threads > 1 && rayon::current_thread_index().is_none() {
        rayon::scope(|_| op())
    } else {
        op()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_threads_zero_means_pool_size() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| Parallelism::Rayon(0).max_threads()), 3);
        assert_eq!(Parallelism::Rayon(5).max_threads(), 5);
        assert_eq!(Parallelism::Sequential.max_threads(), 1);
    }
}
