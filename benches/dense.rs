//! The fused dense-layer kernels beside the same work composed from separate GEMM calls,
//! on this crate's GEMM and on the peers `matrixmultiply`, `gemm` (x86-v4) and `faer`.
//!
//! IDs are `dense_backward/<n_in>x<n_out>/m<m>/<impl>/<threads>t` and
//! `dense_forward/<n_in>x<n_out>/m<m>/<impl>/<threads>t`. The throughput unit is
//! floating-point operations, so criterion's `elem/s` reads as FLOP/s: `4·m·n_in·n_out`
//! for the backward pass (it computes `δ_prev`) and `2·m·n_in·n_out` for the forward
//! pass. Element-wise work is not counted.
//!
//! `fused` is `dense_backward` or `dense_forward`. Every other `<impl>` is a composite
//! built on that implementation's GEMM. The backward composite computes `dW = δᵀ·X` and
//! `δ·W` by two GEMM calls, then the ReLU derivative (`Activation::backward`, branch-free)
//! and the bias column sums as separate passes. The forward composite computes `X·Wᵀ`,
//! then a bias-and-ReLU pass. `unfused` is the composite on this crate's `gemm`.
//!
//! Run everything (about 10 minutes on 2 cores), or pass a filter:
//!
//! ```text
//! cargo bench --features peers --bench dense
//! cargo bench --features peers --bench dense -- 'dense_backward/784x256/m128/'
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use densegrad::{Activation, DenseGrads, GradMode, MatMut, MatRef, dense_backward, dense_forward};

mod gemm_common;
use gemm_common::{
    View, densegrad_product, faer_product, gemm_product, matrixmultiply_product, parallelism,
};

/// Layers as (n_in, n_out).
const LAYERS: [(usize, usize); 4] = [(784, 256), (256, 128), (128, 10), (4096, 4096)];

/// Batch sizes.
const BATCHES: [usize; 4] = [32, 128, 256, 1024];

/// Calls from this many floating-point operations on use flat sampling.
const FLAT_SAMPLING_MIN_FLOPS: u64 = 1 << 30;

/// A GEMM implementation that computes `C ← A·B` on row-major storage with strides.
#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Densegrad,
    MatrixMultiply,
    Gemm,
    Faer,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Densegrad => "unfused",
            Impl::MatrixMultiply => "matrixmultiply",
            Impl::Gemm => "gemm",
            Impl::Faer => "faer",
        }
    }
}

/// Computes `c ← a·b` through `imp`, with `c` a row-major `a.rows × b.cols` buffer.
fn multiply(imp: Impl, threads: usize, a: View, b: View, c: &mut [f32]) {
    match imp {
        Impl::Densegrad => densegrad_product(a, b, c, parallelism(threads)),
        Impl::MatrixMultiply => matrixmultiply_product(a, b, c),
        Impl::Gemm => gemm_product(a, b, c, threads),
        Impl::Faer => faer_product(a, b, c, threads),
    }
}

/// The operands of one layer and batch, row-major.
struct Layer {
    m: usize,
    n_in: usize,
    n_out: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    delta: Vec<f32>,
    out: Vec<f32>,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    input_delta: Vec<f32>,
}

impl Layer {
    fn new(m: usize, n_in: usize, n_out: usize) -> Layer {
        // A fixed, cheap pattern in [−1, 1): values do not change the speed.
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        Layer {
            m,
            n_in,
            n_out,
            // The input is a ReLU output: about half zeros.
            x: fill(m * n_in, 1).into_iter().map(|v| v.max(0.0)).collect(),
            w: fill(n_out * n_in, 2),
            bias: fill(n_out, 3),
            delta: fill(m * n_out, 4),
            out: vec![0.0; m * n_out],
            grad_w: vec![0.0; n_out * n_in],
            grad_b: vec![0.0; n_out],
            input_delta: vec![0.0; m * n_in],
        }
    }

    fn backward_flops(&self) -> u64 {
        4 * (self.m * self.n_in * self.n_out) as u64
    }

    fn fused_backward(&mut self, threads: usize) {
        let (m, n_in, n_out) = (self.m, self.n_in, self.n_out);
        dense_backward(
            MatRef::from_slice(&self.delta, m, n_out).unwrap(),
            MatRef::from_slice(&self.x, m, n_in).unwrap(),
            MatRef::from_slice(&self.w, n_out, n_in).unwrap(),
            Activation::Relu,
            DenseGrads {
                weights: MatMut::from_slice(&mut self.grad_w, n_out, n_in).unwrap(),
                bias: &mut self.grad_b,
                mode: GradMode::Overwrite,
            },
            Some(MatMut::from_slice(&mut self.input_delta, m, n_in).unwrap()),
            parallelism(threads),
        )
        .unwrap();
    }

    fn composite_backward(&mut self, imp: Impl, threads: usize) {
        let (m, n_in, n_out) = (self.m, self.n_in, self.n_out);
        let delta = View::row_major(&self.delta, m, n_out);
        let x = View::row_major(&self.x, m, n_in);
        let w = View::row_major(&self.w, n_out, n_in);
        multiply(imp, threads, delta.t(), x, &mut self.grad_w);
        multiply(imp, threads, delta, w, &mut self.input_delta);
        Activation::Relu
            .backward(
                MatRef::from_slice(&self.x, m, n_in).unwrap(),
                MatMut::from_slice(&mut self.input_delta, m, n_in).unwrap(),
            )
            .unwrap();
        self.grad_b.fill(0.0);
        for row in self.delta.chunks_exact(n_out) {
            for (sum, &d) in self.grad_b.iter_mut().zip(row) {
                *sum += d;
            }
        }
    }

    fn fused_forward(&mut self, threads: usize) {
        let (m, n_in, n_out) = (self.m, self.n_in, self.n_out);
        dense_forward(
            MatRef::from_slice(&self.x, m, n_in).unwrap(),
            MatRef::from_slice(&self.w, n_out, n_in).unwrap(),
            &self.bias,
            Activation::Relu,
            MatMut::from_slice(&mut self.out, m, n_out).unwrap(),
            parallelism(threads),
        )
        .unwrap();
    }

    fn composite_forward(&mut self, imp: Impl, threads: usize) {
        let (m, n_in, n_out) = (self.m, self.n_in, self.n_out);
        let x = View::row_major(&self.x, m, n_in);
        let w = View::row_major(&self.w, n_out, n_in);
        multiply(imp, threads, x, w.t(), &mut self.out);
        for row in self.out.chunks_exact_mut(n_out) {
            for (z, &b) in row.iter_mut().zip(&self.bias) {
                *z = (*z + b).max(0.0);
            }
        }
    }
}

/// Short measurements, so that every layer, batch, implementation and thread count fits
/// in about ten minutes.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, flops: u64) {
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(10)
        .throughput(Throughput::Elements(flops))
        .sampling_mode(if flops >= FLAT_SAMPLING_MIN_FLOPS {
            SamplingMode::Flat
        } else {
            SamplingMode::Auto
        });
}

/// The implementations run at `threads`: matrixmultiply is built without its
/// `threading` feature, so it runs on one thread only.
fn composites(threads: usize) -> Vec<Impl> {
    let mut all = vec![Impl::Densegrad, Impl::Gemm, Impl::Faer];
    if threads == 1 {
        all.push(Impl::MatrixMultiply);
    }
    all
}

fn backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_backward");
    for (n_in, n_out) in LAYERS {
        for m in BATCHES {
            let mut layer = Layer::new(m, n_in, n_out);
            configure(&mut group, layer.backward_flops());
            let id = |name: &str, threads: usize| format!("{n_in}x{n_out}/m{m}/{name}/{threads}t");
            for threads in [1, 2] {
                group.bench_function(id("fused", threads), |bench| {
                    bench.iter(|| layer.fused_backward(threads))
                });
                for imp in composites(threads) {
                    group.bench_function(id(imp.name(), threads), |bench| {
                        bench.iter(|| layer.composite_backward(imp, threads))
                    });
                }
            }
            black_box((&layer.grad_w, &layer.grad_b, &layer.input_delta));
        }
    }
    group.finish();
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_forward");
    for (n_in, n_out) in LAYERS {
        for m in BATCHES {
            let mut layer = Layer::new(m, n_in, n_out);
            configure(&mut group, layer.backward_flops() / 2);
            let id = |name: &str, threads: usize| format!("{n_in}x{n_out}/m{m}/{name}/{threads}t");
            for threads in [1, 2] {
                group.bench_function(id("fused", threads), |bench| {
                    bench.iter(|| layer.fused_forward(threads))
                });
                for imp in [Impl::Densegrad, Impl::Gemm] {
                    group.bench_function(id(imp.name(), threads), |bench| {
                        bench.iter(|| layer.composite_forward(imp, threads))
                    });
                }
            }
            black_box(&layer.out);
        }
    }
    group.finish();
}

criterion_group!(benches, backward, forward);
criterion_main!(benches);
