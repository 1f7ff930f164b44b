//! The threading setting that decides how a kernel may split its work across threads.

/// The threading a kernel call may use. The default is `Sequential`.
///
/// Results never depend on this setting: every kernel splits its work into blocks whose
/// sizes depend only on the problem's shape, and combines them in a fixed order, so
/// `Sequential` and `Rayon(n)` give bitwise equal results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Parallelism {
    /// Run on the calling thread only.
    #[default]
    Sequential,
    /// Split large problems across up to `n` tasks of the current rayon pool; `0` means the
    /// size of that pool. Small problems still run on the calling thread.
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
