//! A register-only FMA loop: the ceiling that GEMM throughput is measured against.

use std::hint::black_box;

use super::dispatch::Arch;
#[cfg(target_arch = "x86_64")]
use super::lane::{Avx2F32x8, Avx512F32x16};
use super::lane::{Lane, WideF32x8};

/// Independent FMA chains in the loop: more than FMA latency (4 cycles on current x86
/// cores) times FMA pipes (2), so the loop is bound by throughput, not latency.
const PEAK_CHAINS: usize = 12;

/// Runs `iterations` rounds of independent fused multiply-adds on `arch`'s lanes, touching
/// no memory, and returns the number of floating-point operations performed (two per
/// element of each FMA).
///
/// Timing this call gives the machine's peak `f32` throughput on that path. A path the CPU
/// lacks is replaced by the fastest supported one below it.
pub fn peak_fma_loop(arch: Arch, iterations: u64) -> u64 {
    let arch = arch.or_supported_below();
    let (width, checksum) = match arch {
        // SAFETY: the portable lanes run on every CPU.
        Arch::Portable => (8, unsafe { fma_chains::<WideF32x8>(iterations) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported_below` returned a path this CPU supports.
        Arch::Avx2 => (8, unsafe { fma_chains_avx2(iterations) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Arch::Avx512 => (16, unsafe { fma_chains_avx512(iterations) }),
        #[cfg(not(target_arch = "x86_64"))]
        Arch::Avx2 | Arch::Avx512 => unreachable!("no such path on this target"),
    };
    black_box(checksum);
    iterations * (PEAK_CHAINS * width * 2) as u64
}

/// # Safety
///
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iterations: u64) -> f32 {
    // SAFETY: the caller guarantees AVX2 and FMA.
    unsafe { fma_chains::<Avx2F32x8>(iterations) }
}

/// # Safety
///
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(iterations: u64) -> f32 {
    // SAFETY: the caller guarantees AVX-512F.
    unsafe { fma_chains::<Avx512F32x16>(iterations) }
}

/// # Safety
///
/// The CPU supports `L`'s instruction set.
#[inline(always)]
unsafe fn fma_chains<L: Lane>(iterations: u64) -> f32 {
    // SAFETY: the caller guarantees support for `L`.
    let (scale, step) = unsafe { (L::splat(black_box(0.999_999)), L::splat(black_box(1e-7))) };
    // SAFETY: as above.
    let mut chains = [unsafe { L::splat(black_box(1.0)) }; PEAK_CHAINS];
    for _ in 0..iterations {
        for chain in &mut chains {
            *chain = chain.mul_add(scale, step);
        }
    }

    let mut sum = [0.0f32; 16];
    for chain in chains {
        // SAFETY: `lanes` has room for 16 ≥ L::WIDTH elements.
        let mut lanes = [0.0f32; 16];
        unsafe { chain.store(lanes.as_mut_ptr()) };
        for (total, lane) in sum.iter_mut().zip(lanes) {
            *total += lane;
        }
    }
    sum.iter().sum()
}
