//! SGEMM against the `gemm` and `faer` crates in interleaved rounds, for machines shared
//! with other work.
//!
//! Each round times densegrad, gemm, faer and the register-only FMA peak back to back, and
//! the table gives each one's median round. A burst of load from another process then
//! slows one round of every contender instead of whole benchmarks of one, as it can in a
//! criterion run, which measures each benchmark in one stretch.
//!
//! ```text
//! cargo bench --features peers --bench gemm_interleaved            # target shapes
//! cargo bench --features peers --bench gemm_interleaved -- 512x512x512 256x784x128
//! ```

use std::time::Instant;

use densegrad::{Arch, Parallelism, peak_fma_loop};

mod gemm_common;
use gemm_common::{Op, Problem};

/// Shapes (m × k × n) timed when no shape is given on the command line.
const DEFAULT_SHAPES: [(usize, usize, usize); 3] =
    [(1024, 1024, 1024), (64, 64, 64), (10, 128, 128)];

/// Rounds per shape, op and thread count.
const ROUNDS: usize = 15;

/// Floating-point operations per timed batch, about 20 ms on one core at 100 GFLOP/s.
const BATCH_FLOPS: f64 = 2e9;

/// FMA-loop iterations per timed peak batch, about 1 ms on one core.
const PEAK_ITERATIONS: u64 = 200_000;

/// Returns the seconds per call of `f`, timed over a batch of `calls` calls.
fn seconds_per_call(calls: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// Returns the peak FLOP/s of `threads` threads running the FMA loop at once.
fn peak_flops(threads: usize) -> f64 {
    let arch = Arch::selected();
    let start = Instant::now();
    let flops: u64 = if threads == 1 {
        peak_fma_loop(arch, PEAK_ITERATIONS)
    } else {
        let (left, right) = rayon::join(
            || peak_fma_loop(arch, PEAK_ITERATIONS),
            || peak_fma_loop(arch, PEAK_ITERATIONS),
        );
        left + right
    };
    flops as f64 / start.elapsed().as_secs_f64()
}

/// Returns the median of `values` (the upper one of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Parses `MxKxN` arguments; other arguments (such as cargo's `--bench`) are skipped.
fn shapes_from_args() -> Vec<(usize, usize, usize)> {
    let parsed: Vec<_> = std::env::args()
        .skip(1)
        .filter_map(|arg| {
            let dims: Vec<usize> = arg
                .split('x')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            (dims.len() == 3).then(|| (dims[0], dims[1], dims[2]))
        })
        .collect();
    if parsed.is_empty() {
        DEFAULT_SHAPES.to_vec()
    } else {
        parsed
    }
}

fn main() {
    println!(
        "| op | m×k×n | threads | densegrad GFLOP/s | gemm | faer | peak | % of peak | ÷ best peer |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (m, k, n) in shapes_from_args() {
        for threads in [1, 2] {
            for op in Op::ALL {
                let mut problem = Problem::new(m, k, n, op);
                let flops = problem.flops() as f64;
                let calls = ((BATCH_FLOPS / flops) as usize).max(1);
                let par = if threads == 1 {
                    Parallelism::Sequential
                } else {
                    Parallelism::Rayon(threads)
                };

                let (mut ours, mut gemm, mut faer, mut peak) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    ours.push(seconds_per_call(calls, || problem.run_densegrad(par)));
                    gemm.push(seconds_per_call(calls, || problem.run_gemm(threads)));
                    faer.push(seconds_per_call(calls, || problem.run_faer(threads)));
                    peak.push(peak_flops(threads));
                }
                let (ours, gemm, faer, peak) =
                    (median(ours), median(gemm), median(faer), median(peak));

                let gflops = |seconds: f64| flops / seconds / 1e9;
                let best_peer = gflops(gemm).max(gflops(faer));
                println!(
                    "| {} | {m}×{k}×{n} | {threads} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} % | {:.2} |",
                    op.name(),
                    gflops(ours),
                    gflops(gemm),
                    gflops(faer),
                    peak / 1e9,
                    100.0 * gflops(ours) / (peak / 1e9),
                    gflops(ours) / best_peer,
                );
            }
        }
    }
}
