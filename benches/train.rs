//! One training step of a 784-256-128-10 network (ReLU, softmax cross-entropy, SGD with
//! momentum 0.9) at batch 32, 128 and 1024, on one and two threads.
//!
//! IDs are `train_step/784-256-128-10/b<batch>/densegrad/<threads>t`. Criterion reports the
//! time per step and, from the throughput, samples per second. `scripts/bench-peers.sh` runs
//! this bench beside the numpy and JAX versions of the same step.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use densegrad::layer::{Dense, Init, Loss, Sequential, Sgd, Targets};
use densegrad::{Activation, Matrix, Parallelism};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WIDTHS: [usize; 4] = [784, 256, 128, 10];
const BATCHES: [usize; 3] = [32, 128, 1024];
const THREADS: [usize; 2] = [1, 2];

fn network(rng: &mut ChaCha8Rng, parallelism: Parallelism) -> Sequential {
    let layers = vec![
        Dense::new(WIDTHS[0], WIDTHS[1], Activation::Relu, Init::HeUniform, rng).unwrap(),
        Dense::new(WIDTHS[1], WIDTHS[2], Activation::Relu, Init::HeUniform, rng).unwrap(),
        Dense::new(
            WIDTHS[2],
            WIDTHS[3],
            Activation::Softmax,
            Init::XavierUniform,
            rng,
        )
        .unwrap(),
    ];
    Sequential::new(layers, Loss::SoftmaxCrossEntropy)
        .unwrap()
        .with_parallelism(parallelism)
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step/784-256-128-10");
    group.sample_size(20);
    for batch in BATCHES {
        let mut rng = ChaCha8Rng::seed_from_u64(batch as u64);
        // Pixel-like inputs in [0, 1] and random labels.
        let x = Matrix::from_fn(batch, WIDTHS[0], |_, _| rng.random_range(0.0..1.0));
        let classes: Vec<usize> = (0..batch).map(|_| rng.random_range(0..WIDTHS[3])).collect();
        group.throughput(Throughput::Elements(batch as u64));

        for threads in THREADS {
            let mut net = network(&mut rng, Parallelism::Rayon(threads));
            let mut sgd = Sgd::new(0.01).with_momentum(0.9);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let id = BenchmarkId::new(format!("b{batch}/densegrad"), format!("{threads}t"));
            // Each step enters the pool once, as a caller outside it would; the kernels'
            // splits then run on its workers.
            group.bench_function(id, |b| {
                b.iter(|| {
                    pool.install(|| {
                        let targets = Targets::Classes(&classes);
                        black_box(net.train_step(x.as_ref(), targets, &mut sgd).unwrap())
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
