//! Block sizes `kc`, `mc` and `nc` derived from the data cache sizes of this CPU.

use std::sync::OnceLock;

use super::split::EvenSplit;
use crate::kernel::KernelSet;

/// Data cache sizes in bytes, per core for L1 and L2, per package for L3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheSizes {
    pub l1d: usize,
    pub l2: usize,
    pub l3: usize,
}

impl CacheSizes {
    /// Sizes used when the system does not report them. They are at or below the caches
    /// of common x86-64 and aarch64 server and desktop cores, so blocks sized from them
    /// fit, at the price of some speed on larger caches.
    pub(crate) const FALLBACK: CacheSizes = CacheSizes {
        l1d: 32 * 1024,
        l2: 256 * 1024,
        l3: 4 * 1024 * 1024,
    };

    /// Returns the sizes of CPU 0's caches, read once from Linux sysfs, with
    /// [`FALLBACK`](Self::FALLBACK) for any level that is not reported.
    pub(crate) fn detected() -> CacheSizes {
        static DETECTED: OnceLock<CacheSizes> = OnceLock::new();
        *DETECTED.get_or_init(read_sysfs)
    }
}

/// Reads `/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`.
fn read_sysfs() -> CacheSizes {
    let mut sizes = CacheSizes::FALLBACK;
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else {
        return sizes;
    };

    for entry in entries.flatten() {
        let dir = entry.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(bytes) = parse_cache_size(&size) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => sizes.l1d = bytes,
            ("2", "Unified" | "Data") => sizes.l2 = bytes,
            ("3", "Unified" | "Data") => sizes.l3 = bytes,
            _ => {}
        }
    }
    sizes
}

/// Parses a sysfs cache size such as `32K`, `1024K` or `32M`.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, ch)| !ch.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let value: usize = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1024,
        "M" => 1024 * 1024,
        "G" => 1024 * 1024 * 1024,
        _ => return None,
    };
    value.checked_mul(scale).filter(|&bytes| bytes > 0)
}

/// Block sizes of the loop nest, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocking {
    /// Maximum depth of a packed panel (the reduction length per micro-kernel call) when
    /// the reduction is split into slices.
    pub kc: usize,
    /// Maximum reduction length that runs as one slice, at least `kc`.
    pub one_slice_depth: usize,
    /// Rows of a packed A block, a multiple of the kernel's `mr`.
    pub mc: usize,
    /// Columns of a packed B panel, a multiple of the kernel's `nr`.
    pub nc: usize,
}

/// Fraction of L1d given to one `kc × nr` B micro-panel, which stays in L1 while the
/// micro-kernel sweeps the A micro-panels past it. The rest is left for the streaming A
/// column and the C tile. With 48 KiB of L1d and `64 × 6` tiles on a Sapphire
/// Rapids-class core, this quarter (kc = 512) against half (kc = 1024), alternated in one
/// process: 1024³ AB 176 -> 185 GFLOP/s, 2048³ AᵀB 163 -> 175, 4096×4096×256 AᵀB 129 ->
/// 149, 64×1024×1024 AB 113 -> 123, and the 4096→4096 backward pass at 32 samples 86 ->
/// 92. A share of 0.4 (kc = 816, slices of 683) was 3 to 6 % slower than the quarter on
/// the last three.
const B_MICRO_PANEL_L1_SHARE: f64 = 0.25;
/// Fraction of L1d that the B micro-panel of a whole reduction may take for it to run as
/// one slice instead of slices of at most `kc`. Each further slice writes C once more. On
/// the core above, one slice of 784 (the first layer of an MNIST network) ran the
/// 784→256 forward pass 2 to 3 % faster than two of 392, and 256×784×128 AB 2 % faster.
/// A reduction of 1024 (half of L1d) was slower in one slice.
const ONE_SLICE_L1_SHARE: f64 = 0.4;
/// Fraction of L2 given to one `mc × kc` packed A block, which stays in L2 across the
/// columns of the B panel.
const A_BLOCK_L2_SHARE: f64 = 0.5;
/// Fraction of L3 given to one `kc × nc` packed B panel; L3 is shared by all cores.
const B_PANEL_L3_SHARE: f64 = 0.25;
/// Bounds on `kc`: below 64 the C tile's load and store dominate each call, and above
/// 1024 a kernel call outgrows any L1.
const KC_RANGE: (usize, usize) = (64, 1024);
/// Upper bound on `mc`. Taller A blocks gained nothing measurable, and they were slower
/// where the B panel is one `32 × 12` micro-panel wide. There, on one AVX-512 core,
/// 10×4096×4096 ABᵀ ran at 35 GFLOP/s with the 512 rows of the L2 share and at 39 with
/// 256. The `48 × 8` tiles timed the same with 336 and 240 rows.
const MC_MAX: usize = 256;
/// Upper bound on `nc`, which keeps the packed B panel below 16 MiB.
const NC_MAX: usize = 4096;

impl Blocking {
    /// Chooses the block sizes for `kernels` on caches of the given sizes.
    pub(crate) fn new(kernels: &KernelSet, caches: CacheSizes) -> Blocking {
        const F32: usize = size_of::<f32>();
        let (mr, nr) = (kernels.mr(), kernels.nr);

        let depth_for_share = |share: f64| {
            let depth = (caches.l1d as f64 * share) as usize / (nr * F32);
            round_down(depth.clamp(KC_RANGE.0, KC_RANGE.1), 8)
        };
        let kc = depth_for_share(B_MICRO_PANEL_L1_SHARE);
        let one_slice_depth = depth_for_share(ONE_SLICE_L1_SHARE).max(kc);

        let mc = (caches.l2 as f64 * A_BLOCK_L2_SHARE) as usize / (kc * F32);
        let mc = round_down(mc.min(MC_MAX), mr).max(mr);

        let nc = (caches.l3 as f64 * B_PANEL_L3_SHARE) as usize / (kc * F32);
        let nc = round_down(nc.min(NC_MAX), nr).max(nr);

        Blocking {
            kc,
            mc,
            nc,
            one_slice_depth,
        }
    }

    /// Returns the slices of a reduction of length `k`: one slice up to
    /// `one_slice_depth`, and otherwise slices of even depth, at most `kc` each (k = 1100
    /// with kc = 512 becomes 367 + 367 + 366).
    pub(crate) fn reduction_slices(&self, k: usize) -> EvenSplit {
        if k <= self.one_slice_depth {
            EvenSplit::by_max_len(k, k.max(1))
        } else {
            EvenSplit::by_max_len(k, self.kc)
        }
    }

    /// Returns the block sizes for `kernels` on this CPU, from [`CacheSizes::detected`].
    pub(crate) fn for_kernels(kernels: &KernelSet) -> Blocking {
        Blocking::new(kernels, CacheSizes::detected())
    }
}

fn round_down(value: usize, multiple: usize) -> usize {
    value / multiple * multiple
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Arch;

    #[test]
    fn cache_size_parse_units() {
        assert_eq!(parse_cache_size("32K\n"), Some(32 * 1024));
        assert_eq!(parse_cache_size("32M"), Some(32 * 1024 * 1024));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("12Q"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("0K"), None);
    }

    #[test]
    fn blocking_multiples_of_tile() {
        for arch in Arch::supported() {
            let kernels = KernelSet::for_arch(arch);
            for caches in [
                CacheSizes::FALLBACK,
                CacheSizes::detected(),
                CacheSizes {
                    l1d: 1024,
                    l2: 1024,
                    l3: 1024,
                },
            ] {
                let blocking = Blocking::new(kernels, caches);
                assert!((KC_RANGE.0..=KC_RANGE.1).contains(&blocking.kc));
                assert!(blocking.one_slice_depth >= blocking.kc);
                assert_eq!(blocking.mc % kernels.mr(), 0);
                assert!(blocking.mc >= kernels.mr());
                assert!(blocking.mc <= MC_MAX.max(kernels.mr()));
                assert_eq!(blocking.nc % kernels.nr, 0);
                assert!(blocking.nc >= kernels.nr);
            }
        }
    }
}
