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
use densegrad::{Arch, MatMut, MatRef, Parallelism, peak_fma_loop};

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

/// Operand layouts: `C = A·B`, `C = Aᵀ·B` and `C = A·Bᵀ`.
#[derive(Clone, Copy)]
enum Op {
    Ab,
    AtB,
    ABt,
}

impl Op {
    const ALL: [Op; 3] = [Op::Ab, Op::AtB, Op::ABt];

    fn name(self) -> &'static str {
        match self {
            Op::Ab => "ab",
            Op::AtB => "atb",
            Op::ABt => "abt",
        }
    }
}

/// A strided operand: pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

/// The operands of one benchmark: row-major storage and the strides that give the op.
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    op: Op,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Problem {
    fn new(m: usize, k: usize, n: usize, op: Op) -> Problem {
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7 + seed) % 23) as f32 / 23.0 - 0.5)
                .collect()
        };
        Problem {
            m,
            k,
            n,
            op,
            a: fill(m * k, 1),
            b: fill(k * n, 2),
            c: vec![0.0; m * n],
        }
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// Returns A as `m × k`, stored `m × k`, or `k × m` for `atb`.
    fn a(&self) -> Strided {
        let (m, k) = (self.m as isize, self.k as isize);
        let (row_stride, col_stride) = match self.op {
            Op::AtB => (1, m),
            Op::Ab | Op::ABt => (k, 1),
        };
        Strided {
            ptr: self.a.as_ptr(),
            row_stride,
            col_stride,
        }
    }

    /// Returns B as `k × n`, stored `k × n`, or `n × k` for `abt`.
    fn b(&self) -> Strided {
        let (k, n) = (self.k as isize, self.n as isize);
        let (row_stride, col_stride) = match self.op {
            Op::ABt => (1, k),
            Op::Ab | Op::AtB => (n, 1),
        };
        Strided {
            ptr: self.b.as_ptr(),
            row_stride,
            col_stride,
        }
    }

    fn run_densegrad(&mut self, par: Parallelism) {
        let (a, b) = (self.a(), self.b());
        let a = MatRef::from_strided(&self.a, 0, self.m, self.k, a.row_stride, a.col_stride);
        let b = MatRef::from_strided(&self.b, 0, self.k, self.n, b.row_stride, b.col_stride);
        let c = MatMut::from_slice(&mut self.c, self.m, self.n);
        densegrad::gemm(1.0, a.unwrap(), b.unwrap(), 0.0, c.unwrap(), par).unwrap();
    }

    fn run_matrixmultiply(&mut self) {
        let (a, b) = (self.a(), self.b());
        // SAFETY: the strides describe `m × k` and `k × n` views inside `self.a` and
        // `self.b`, and `self.c` is a row-major `m × n` buffer.
        unsafe {
            matrixmultiply::sgemm(
                self.m,
                self.k,
                self.n,
                1.0,
                a.ptr,
                a.row_stride,
                a.col_stride,
                b.ptr,
                b.row_stride,
                b.col_stride,
                0.0,
                self.c.as_mut_ptr(),
                self.n as isize,
                1,
            );
        }
    }

    fn run_gemm(&mut self, threads: usize) {
        let (a, b) = (self.a(), self.b());
        let parallelism = if threads == 1 {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(threads)
        };
        // SAFETY: as for matrixmultiply. gemm computes `dst = α·dst + β·lhs·rhs` and takes
        // column strides before row strides; `read_dst = false` ignores the old C.
        unsafe {
            gemm::gemm(
                self.m,
                self.n,
                self.k,
                self.c.as_mut_ptr(),
                1,
                self.n as isize,
                false,
                a.ptr,
                a.col_stride,
                a.row_stride,
                b.ptr,
                b.col_stride,
                b.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }

    fn run_faer(&mut self, threads: usize) {
        let par = if threads == 1 {
            faer::Par::Seq
        } else {
            faer::Par::rayon(threads)
        };
        let (m, k, n) = (self.m, self.k, self.n);
        let a = match self.op {
            Op::AtB => faer::MatRef::from_row_major_slice(&self.a, k, m).transpose(),
            Op::Ab | Op::ABt => faer::MatRef::from_row_major_slice(&self.a, m, k),
        };
        let b = match self.op {
            Op::ABt => faer::MatRef::from_row_major_slice(&self.b, n, k).transpose(),
            Op::Ab | Op::AtB => faer::MatRef::from_row_major_slice(&self.b, k, n),
        };
        let c = faer::MatMut::from_row_major_slice_mut(&mut self.c, m, n);
        faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, 1.0, par);
    }
}

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
