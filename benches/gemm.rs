//! SGEMM throughput of densegrad beside matrixmultiply, gemm and faer, and the register-only
//! FMA peak that bounds them all.
//!
//! IDs are `sgemm/<op>/<m>x<k>x<n>/<impl>/<threads>t` and `peak/<arch>/<threads>t`; the
//! throughput unit is floating-point operations (`2·m·n·k` per product), so criterion's
//! `elem/s` reads as FLOP/s. Every operand is a row-major `Vec<f32>`; `atb` stores A as
//! `k × m` and multiplies its transpose, `abt` stores B as `n × k`.
//!
//! Run everything (about 15 minutes on 2 cores), or pass a filter:
//!
//! ```text
//! cargo bench --features peers --bench gemm
//! cargo bench --features peers --bench gemm -- 'sgemm/ab/1024x1024x1024/'
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use densegrad::{Arch, Parallelism, peak_fma_loop};

mod gemm_common;
use gemm_common::{Op, Problem};

/// Square sizes, then layer shapes (m × k × n) of dense networks.
const SHAPES: [(usize, usize, usize); 11] = [
    (64, 64, 64),
    (128, 128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (256, 784, 128),
    (128, 256, 128),
    (10, 128, 128),
    (4096, 4096, 256),
    (1024, 1024, 64),
];

/// Products from this many floating-point operations on use flat sampling.
const FLAT_SAMPLING_MIN_FLOPS: u64 = 1 << 30;

/// Sets short measurements, so that the full matrix of shapes, ops, peers and threads fits
/// in about fifteen minutes.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(10);
}

fn sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    configure(&mut group);
    for (m, k, n) in SHAPES {
        for op in Op::ALL {
            let mut problem = Problem::new(m, k, n, op);
            group.throughput(Throughput::Elements(problem.flops()));
            // Products of a GFLOP or more take tens of milliseconds: flat sampling runs
            // each of the 10 samples the same few iterations instead of a ramp of up to 10.
            group.sampling_mode(if problem.flops() >= FLAT_SAMPLING_MIN_FLOPS {
                SamplingMode::Flat
            } else {
                SamplingMode::Auto
            });
            let id =
                |name: &str, threads: usize| format!("{}/{m}x{k}x{n}/{name}/{threads}t", op.name());
            for threads in [1, 2] {
                let par = if threads == 1 {
                    Parallelism::Sequential
                } else {
                    Parallelism::Rayon(threads)
                };
                group.bench_function(id("densegrad", threads), |bench| {
                    bench.iter(|| problem.run_densegrad(par))
                });
                group.bench_function(id("gemm", threads), |bench| {
                    bench.iter(|| problem.run_gemm(threads))
                });
                group.bench_function(id("faer", threads), |bench| {
                    bench.iter(|| problem.run_faer(threads))
                });
            }
            // matrixmultiply is built without its `threading` feature: one thread only.
            group.bench_function(id("matrixmultiply", 1), |bench| {
                bench.iter(|| problem.run_matrixmultiply())
            });
            black_box(&problem.c);
        }
    }
    group.finish();
}

/// Iterations of the FMA loop per measurement call: long enough (about 1 ms) that timer
/// overhead is negligible.
const PEAK_ITERATIONS: u64 = 200_000;

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("peak");
    configure(&mut group);
    for arch in Arch::supported() {
        let flops = peak_fma_loop(arch, 1);
        group.throughput(Throughput::Elements(flops * PEAK_ITERATIONS));
        group.bench_function(format!("{}/1t", arch.name()), |bench| {
            bench.iter(|| peak_fma_loop(arch, black_box(PEAK_ITERATIONS)))
        });

        // Two threads, each running the loop: the two-core ceiling.
        group.throughput(Throughput::Elements(2 * flops * PEAK_ITERATIONS));
        group.bench_function(format!("{}/2t", arch.name()), |bench| {
            bench.iter_custom(|iters| {
                let start = Instant::now();
                rayon::join(
                    || {
                        (0..iters).for_each(|_| {
                            peak_fma_loop(arch, black_box(PEAK_ITERATIONS));
                        })
                    },
                    || {
                        (0..iters).for_each(|_| {
                            peak_fma_loop(arch, black_box(PEAK_ITERATIONS));
                        })
                    },
                );
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, peak, sgemm);
criterion_main!(benches);
