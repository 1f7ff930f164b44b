//! Throughput of the AVX-512 `64 × 6` micro-kernel's inner loop on this core when
//! everything it reads sits in L1d, beside the register-only FMA loop of the `peak` bench.
//!
//! Per reduction step the loop loads four vectors of a packed A micro-panel and broadcasts
//! six elements of a B micro-panel, for 24 FMAs into accumulators that stay in registers,
//! as the crate's micro-kernel does. Both micro-panels fit in L1d, so neither a cache miss
//! nor packing nor C's epilogue enters the figure: it bounds what a kernel of this shape
//! reaches on this core. Variants keep B or A in registers, to show which reads cost, and
//! move A 16 bytes off a cache line, as a `Vec<f32>` read in place often is.
//!
//! Each round times every variant back to back; the table gives medians of the rounds.
//!
//! ```text
//! cargo bench --bench tile_ceiling
//! ```

// The constants and helpers serve the x86-64 `main` only.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::time::Instant;

/// Rounds of the table.
const ROUNDS: usize = 15;

/// Reduction steps per timed loop, about 15 ms on one core.
const STEPS: usize = 4_000_000;

/// Reduction steps of the micro-panels before the loop wraps to the first: 64 steps of A
/// (16 KiB) and B (1.5 KiB) fit in L1d together.
const PANEL_STEPS: usize = 64;

/// Iterations of the register-only FMA loop per timed batch, about 1 ms on one core.
const PEAK_ITERATIONS: u64 = 200_000;

#[cfg(target_arch = "x86_64")]
mod fed {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };

    use super::PANEL_STEPS;

    /// Vectors of 16 lanes per A step.
    pub const MV: usize = 4;
    /// Columns of B per step.
    pub const NR: usize = 6;

    /// Runs `steps` steps of the tile loop over the micro-panels `a` (`MV · 16` floats per
    /// step) and `b` (`NR` per step), wrapping every [`PANEL_STEPS`]. Without `LOAD_A` the
    /// A vectors of the first step stay in registers; without `BROADCAST_B`, B's.
    /// Returns the sum of the accumulators, so that the loop cannot be removed.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F (the function checks the lengths of `a` and `b`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_loop<const LOAD_A: bool, const BROADCAST_B: bool>(
        a: &[f32],
        b: &[f32],
        steps: usize,
    ) -> f32 {
        assert!(a.len() >= PANEL_STEPS * MV * 16);
        assert!(b.len() >= PANEL_STEPS * NR);
        let (a, b) = (a.as_ptr(), b.as_ptr());
        // SAFETY (every load below): `p < PANEL_STEPS`, so each read lies inside the
        // slices checked above; the caller guarantees AVX-512F.
        let load_a = |p: usize| -> [__m512; MV] {
            core::array::from_fn(|v| unsafe { _mm512_loadu_ps(a.add((p * MV + v) * 16)) })
        };
        let broadcast_b = |p: usize| -> [__m512; NR] {
            core::array::from_fn(|j| unsafe { _mm512_set1_ps(*b.add(p * NR + j)) })
        };
        let (first_a, first_b) = (load_a(0), broadcast_b(0));

        let mut acc = [[_mm512_setzero_ps(); MV]; NR];
        let mut p = 0;
        for _ in 0..steps {
            let a_col = if LOAD_A { load_a(p) } else { first_a };
            let b_row = if BROADCAST_B { broadcast_b(p) } else { first_b };
            for (acc_col, b_pj) in acc.iter_mut().zip(b_row) {
                for (acc_v, a_v) in acc_col.iter_mut().zip(a_col) {
                    *acc_v = _mm512_fmadd_ps(a_v, b_pj, *acc_v);
                }
            }
            p = if p + 1 == PANEL_STEPS { 0 } else { p + 1 };
        }

        let mut sum = _mm512_setzero_ps();
        for acc_v in acc.into_iter().flatten() {
            sum = _mm512_add_ps(sum, acc_v);
        }
        _mm512_reduce_add_ps(sum)
    }
}

/// Returns the median of `values` (the upper one of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(target_arch = "x86_64")]
fn main() {
    use densegrad::{Arch, peak_fma_loop};
    use fed::{MV, NR, tile_loop};

    if !std::arch::is_x86_feature_detected!("avx512f") {
        println!("this CPU has no AVX-512F; the tile loop is the AVX-512 kernel's");
        return;
    }

    // A buffer that starts on a cache line, and a view of it 16 bytes further.
    let len = PANEL_STEPS * MV * 16;
    let storage = vec![0.001f32; len + 32];
    let to_line = storage.as_ptr().align_offset(64);
    let a_on_line = &storage[to_line..to_line + len];
    let a_off_line = &storage[to_line + 4..to_line + 4 + len];
    let b = vec![0.001f32; PANEL_STEPS * NR];

    type Loop = unsafe fn(&[f32], &[f32], usize) -> f32;
    let variants: [(&str, Loop, &[f32]); 4] = [
        (
            "A and B read, A on a line",
            tile_loop::<true, true>,
            a_on_line,
        ),
        (
            "A and B read, A 16 bytes off",
            tile_loop::<true, true>,
            a_off_line,
        ),
        (
            "A read, B in registers",
            tile_loop::<true, false>,
            a_on_line,
        ),
        (
            "B read, A in registers",
            tile_loop::<false, true>,
            a_on_line,
        ),
    ];

    let tile_flops = (STEPS * MV * NR * 16 * 2) as f64;
    let mut peak = Vec::new();
    let mut fed: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let flops = peak_fma_loop(Arch::Avx512, PEAK_ITERATIONS);
        peak.push(flops as f64 / start.elapsed().as_secs_f64() / 1e9);
        for ((_, run, a), times) in variants.iter().zip(&mut fed) {
            let start = Instant::now();
            // SAFETY: AVX-512F was detected above, and `tile_loop` checks the slices' lengths.
            std::hint::black_box(unsafe { run(a, &b, STEPS) });
            times.push(tile_flops / start.elapsed().as_secs_f64() / 1e9);
        }
    }

    let peak = median(peak);
    println!("Medians of {ROUNDS} rounds, one thread, GFLOP/s:\n");
    println!("| loop | GFLOP/s | ÷ register-only peak |");
    println!("|---|---:|---:|");
    println!("| register-only FMA loop (`peak`) | {peak:.1} | 1.00 |");
    for ((name, _, _), times) in variants.iter().zip(fed) {
        let gflops = median(times);
        println!(
            "| 64 × 6 tile, {name} | {gflops:.1} | {:.2} |",
            gflops / peak
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("the tile loop is the AVX-512 kernel's, for x86-64 only");
}
