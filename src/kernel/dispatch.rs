//! Run-time choice of the instruction set, detected once and cached.

use std::sync::OnceLock;

/// Environment variable that forces a path: `avx512`, `avx2` or `portable`.
pub const ARCH_ENV_VAR: &str = "DENSEGRAD_ARCH";

/// A micro-kernel path, one per instruction set.
///
/// Ordered from the most portable to the fastest, so `Arch::Portable < Arch::Avx512`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// `wide` lanes with whatever target features the build enables; runs everywhere.
    Portable,
    /// 256-bit AVX2 and FMA (x86-64 only).
    Avx2,
    /// 512-bit AVX-512F (x86-64 only).
    Avx512,
}

impl Arch {
    /// Every path, from the most portable to the fastest.
    pub const ALL: [Arch; 3] = [Arch::Portable, Arch::Avx2, Arch::Avx512];

    /// Returns the path that [`gemm`](crate::gemm) uses: the fastest one this CPU supports,
    /// or the one `DENSEGRAD_ARCH` names. The choice is made on the first call and cached.
    ///
    /// A path the CPU cannot run falls back to the fastest supported path below it, and an
    /// unknown name falls back to the fastest path. Both print one warning to standard
    /// error.
    pub fn selected() -> Arch {
        static SELECTED: OnceLock<Arch> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let request = std::env::var(ARCH_ENV_VAR).ok();
            select(request.as_deref())
        })
    }

    /// Returns `true` when this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Arch::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Arch::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            // The AVX-512 path also runs AVX2 kernels (one-vector tiles of 8 rows), so it
            // requires AVX2 and FMA as well.
            #[cfg(target_arch = "x86_64")]
            Arch::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && Arch::Avx2.is_supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            Arch::Avx2 | Arch::Avx512 => false,
        }
    }

    /// Returns the paths this CPU supports, from the most portable to the fastest.
    pub fn supported() -> Vec<Arch> {
        Arch::ALL
            .into_iter()
            .filter(|arch| arch.is_supported())
            .collect()
    }

    /// Returns this path if the CPU supports it, else the fastest supported path below it.
    pub fn or_supported_below(self) -> Arch {
        Arch::ALL
            .into_iter()
            .rev()
            .find(|arch| *arch <= self && arch.is_supported())
            .unwrap_or(Arch::Portable)
    }

    /// Returns the name that `DENSEGRAD_ARCH` accepts for this path.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Portable => "portable",
            Arch::Avx2 => "avx2",
            Arch::Avx512 => "avx512",
        }
    }

    /// Parses a `DENSEGRAD_ARCH` value, ignoring case and surrounding blanks.
    pub fn from_name(name: &str) -> Option<Arch> {
        let name = name.trim();
        Arch::ALL
            .into_iter()
            .find(|arch| arch.name().eq_ignore_ascii_case(name))
    }
}

/// Chooses the path for a `DENSEGRAD_ARCH` value (or its absence).
fn select(request: Option<&str>) -> Arch {
    let fastest = Arch::Avx512.or_supported_below();
    let Some(request) = request.filter(|value| !value.trim().is_empty()) else {
        return fastest;
    };

    match Arch::from_name(request) {
        Some(arch) if arch.is_supported() => arch,
        Some(arch) => {
            let fallback = arch.or_supported_below();
            eprintln!(
                "densegrad: {ARCH_ENV_VAR}={request} is not supported by this CPU; \
                 using {} instead",
                fallback.name()
            );
            fallback
        }
        None => {
            eprintln!(
                "densegrad: invalid {ARCH_ENV_VAR}={request:?}; expected avx512, avx2 or \
                 portable; using {}",
                fastest.name()
            );
            fastest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_unset_is_fastest() {
        assert_eq!(select(None), Arch::Avx512.or_supported_below());
        assert_eq!(select(Some("  ")), Arch::Avx512.or_supported_below());
    }

    #[test]
    fn select_portable_always_honoured() {
        assert_eq!(select(Some("portable")), Arch::Portable);
        assert_eq!(select(Some(" PORTABLE ")), Arch::Portable);
    }

    #[test]
    fn select_unknown_falls_back() {
        assert_eq!(select(Some("sse9")), Arch::Avx512.or_supported_below());
    }

    #[test]
    fn select_named_path_capped_by_cpu() {
        for arch in Arch::ALL {
            let chosen = select(Some(arch.name()));
            assert!(chosen <= arch);
            assert!(chosen.is_supported());
            assert_eq!(chosen == arch, arch.is_supported());
        }
    }
}
