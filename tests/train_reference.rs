//! `Sequential::train_step` against the reference: the forward pass, the loss, the backward
//! pass through every layer and the optimiser's update, for every loss and hidden
//! activation, on random data.

mod common;

use common::build_network;
use densegrad::layer::{Adam, Init, Loss, Optimizer, Sequential, Sgd, Targets};
use densegrad::{Activation, MatRef, Matrix, reference};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WIDTHS: [usize; 4] = [7, 9, 6, 4];
const BATCH: usize = 11;

const HIDDEN: [Activation; 5] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.1 },
    Activation::Sigmoid,
    Activation::Tanh,
];

/// The update rule of an optimiser in `f64`.
trait ReferenceUpdate {
    fn begin_step(&mut self) {}
    fn update(&mut self, index: usize, params: &mut [f64], grads: &[f64]);
}

/// SGD with momentum, Nesterov momentum and L2 weight decay, as `torch.optim.SGD` defines it.
struct ReferenceSgd {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    velocity: Vec<Vec<f64>>,
}

impl ReferenceUpdate for ReferenceSgd {
    fn update(&mut self, index: usize, params: &mut [f64], grads: &[f64]) {
        if self.velocity.len() <= index {
            self.velocity.resize(index + 1, Vec::new());
        }
        let velocity = &mut self.velocity[index];
        velocity.resize(params.len(), 0.0);
        for ((p, &g), v) in params.iter_mut().zip(grads).zip(velocity.iter_mut()) {
            let g = g + self.weight_decay * *p;
            *v = self.momentum * *v + g;
            let step = if self.nesterov {
                g + self.momentum * *v
            } else {
                *v
            };
            *p -= self.lr * step;
        }
    }
}

/// AdamW as `torch.optim.AdamW` defines it; `step` counts from 1.
struct ReferenceAdam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: f64,
    step: i32,
    moments: Vec<(Vec<f64>, Vec<f64>)>,
}

impl ReferenceUpdate for ReferenceAdam {
    fn begin_step(&mut self) {
        self.step += 1;
    }

    fn update(&mut self, index: usize, params: &mut [f64], grads: &[f64]) {
        if self.moments.len() <= index {
            self.moments.resize(index + 1, (Vec::new(), Vec::new()));
        }
        let (first, second) = &mut self.moments[index];
        first.resize(params.len(), 0.0);
        second.resize(params.len(), 0.0);
        let correction1 = 1.0 - self.beta1.powi(self.step);
        let correction2 = 1.0 - self.beta2.powi(self.step);
        for i in 0..params.len() {
            let g = grads[i];
            params[i] *= 1.0 - self.lr * self.weight_decay;
            first[i] = self.beta1 * first[i] + (1.0 - self.beta1) * g;
            second[i] = self.beta2 * second[i] + (1.0 - self.beta2) * g * g;
            let denominator = (second[i] / correction2).sqrt() + self.epsilon;
            params[i] -= self.lr * (first[i] / correction1) / denominator;
        }
    }
}

/// What the reference computes for one step: the loss and, per layer, the weight and bias
/// gradients.
struct ReferenceStep {
    loss: f64,
    grads: Vec<(Matrix, Vec<f32>)>,
}

fn reference_step(net: &Sequential, x: MatRef, targets: MatRef) -> ReferenceStep {
    let layers = net.layers();
    let last = layers.len() - 1;

    // Forward: every layer's output, the last one as logits.
    let mut outputs: Vec<Matrix> = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let input = if l == 0 { x } else { outputs[l - 1].as_ref() };
        let activation = if l == last {
            Activation::Identity
        } else {
            layer.activation()
        };
        let mut out = Matrix::zeros(x.rows(), layer.n_out());
        reference::dense_forward(
            input,
            layer.weights(),
            layer.bias(),
            activation,
            out.as_mut(),
        )
        .unwrap();
        outputs.push(out);
    }

    let logits = outputs[last].as_ref();
    let mut delta = Matrix::zeros(x.rows(), net.n_out());
    let loss = match net.loss() {
        Loss::SoftmaxCrossEntropy => {
            reference::softmax_cross_entropy(logits, targets, delta.as_mut())
        }
        Loss::BinaryCrossEntropy => {
            reference::binary_cross_entropy(logits, targets, delta.as_mut())
        }
        Loss::MeanSquaredError => reference::mean_squared_error(logits, targets, delta.as_mut()),
    }
    .unwrap();

    // Backward, from the output layer down.
    let mut grads = Vec::new();
    for l in (0..layers.len()).rev() {
        let input = if l == 0 { x } else { outputs[l - 1].as_ref() };
        let input_activation = if l == 0 {
            Activation::Identity
        } else {
            layers[l - 1].activation()
        };
        let step =
            reference::dense_backward(input, layers[l].weights(), delta.as_ref(), input_activation)
                .unwrap();
        grads.push((step.grad_weights, step.grad_bias));
        delta = step.delta_prev;
    }
    grads.reverse();
    ReferenceStep { loss, grads }
}

fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// Asserts `|actual − expected| ≤ tolerance · (1 + max |expected|)` element-wise.
fn assert_close(what: &str, actual: &[f32], expected: &[f64], tolerance: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = 1.0 + expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let error = (f64::from(a) - e).abs();
        assert!(
            error <= tolerance * scale,
            "{what}[{i}]: got {a}, expected {e} (error {error:e}, scale {scale})"
        );
    }
}

/// Returns the tolerance for a value summed over `k` terms of `f32` products.
fn tolerance(k: usize) -> f64 {
    4.0 * k as f64 * f64::from(f32::EPSILON)
}

/// Builds a `WIDTHS` network with Xavier-uniform weights drawn from `rng`.
fn network(hidden: Activation, loss: Loss, rng: &mut ChaCha8Rng) -> Sequential {
    build_network(&WIDTHS, hidden, loss, Init::XavierUniform, rng)
}

/// Runs three steps of `net` with `optimizer` on `data` and checks each against the
/// reference step and `update`, starting from the parameters the network actually has.
/// `targets` are the batch's targets as the network takes them.
fn check_steps(
    what: &str,
    net: &mut Sequential,
    optimizer: &mut dyn Optimizer,
    update: &mut dyn ReferenceUpdate,
    data: &Batch,
    targets: Targets,
) {
    let x = data.x.as_ref();
    // The longest sum behind any checked value: over the batch for the gradients, over a
    // layer's width for the errors passed down, once per layer.
    let widest = net
        .layers()
        .iter()
        .map(|layer| layer.n_in().max(layer.n_out()))
        .max();
    let k = (x.rows() + widest.unwrap_or(1)) * (net.layers().len() + 1);
    for step in 0..3 {
        let expected = reference_step(net, x, data.dense.as_ref());
        let mut expected_params: Vec<Vec<f64>> = Vec::new();
        update.begin_step();
        for (l, layer) in net.layers().iter().enumerate() {
            let mut weights = to_f64(layer.weights().to_matrix().as_slice());
            let mut bias = to_f64(layer.bias());
            let (grad_weights, grad_bias) = &expected.grads[l];
            update.update(2 * l, &mut weights, &to_f64(grad_weights.as_slice()));
            update.update(2 * l + 1, &mut bias, &to_f64(grad_bias));
            expected_params.push(weights);
            expected_params.push(bias);
        }

        let loss = net.train_step(x, targets, optimizer).unwrap();

        let what = format!("{what}, step {step}");
        assert_close(
            &format!("{what}: loss"),
            &[loss],
            &[expected.loss],
            tolerance(16),
        );
        for (l, layer) in net.layers().iter().enumerate() {
            let (grad_weights, grad_bias) = &expected.grads[l];
            assert_close(
                &format!("{what}: layer {l} grad_weights"),
                layer.grad_weights().to_matrix().as_slice(),
                &to_f64(grad_weights.as_slice()),
                tolerance(k),
            );
            assert_close(
                &format!("{what}: layer {l} grad_bias"),
                layer.grad_bias(),
                &to_f64(grad_bias),
                tolerance(k),
            );
            assert_close(
                &format!("{what}: layer {l} weights"),
                layer.weights().to_matrix().as_slice(),
                &expected_params[2 * l],
                tolerance(k),
            );
            assert_close(
                &format!("{what}: layer {l} bias"),
                layer.bias(),
                &expected_params[2 * l + 1],
                tolerance(k),
            );
        }
    }
}

struct Batch {
    x: Matrix,
    classes: Vec<usize>,
    dense: Matrix,
}

fn batch(loss: Loss, rng: &mut ChaCha8Rng) -> Batch {
    batch_of(BATCH, WIDTHS[0], WIDTHS[WIDTHS.len() - 1], loss, rng)
}

/// Draws `m` random samples of `n_in` features with targets for `n_out` outputs.
fn batch_of(m: usize, n_in: usize, n_out: usize, loss: Loss, rng: &mut ChaCha8Rng) -> Batch {
    let x = Matrix::from_fn(m, n_in, |_, _| rng.random_range(-2.0..2.0));
    let classes: Vec<usize> = (0..m).map(|_| rng.random_range(0..n_out)).collect();
    let dense = match loss {
        Loss::SoftmaxCrossEntropy => reference::one_hot(&classes, n_out).unwrap(),
        Loss::BinaryCrossEntropy => Matrix::from_fn(m, n_out, |_, _| rng.random_range(0.0..1.0)),
        Loss::MeanSquaredError => Matrix::from_fn(m, n_out, |_, _| rng.random_range(-1.0..1.0)),
    };
    Batch { x, classes, dense }
}

const LOSSES: [Loss; 3] = [
    Loss::SoftmaxCrossEntropy,
    Loss::BinaryCrossEntropy,
    Loss::MeanSquaredError,
];

#[test]
fn train_step_sgd_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for loss in LOSSES {
        for hidden in HIDDEN {
            for nesterov in [false, true] {
                let data = batch(loss, &mut rng);
                let mut net = network(hidden, loss, &mut rng);
                let mut sgd = Sgd::new(0.3)
                    .with_momentum(0.9)
                    .with_nesterov(nesterov)
                    .with_weight_decay(0.01);
                let mut expected = ReferenceSgd {
                    lr: 0.3,
                    momentum: 0.9,
                    nesterov,
                    weight_decay: 0.01,
                    velocity: Vec::new(),
                };
                let what = format!("{loss:?}, hidden {hidden:?}, nesterov {nesterov}");
                check_steps(
                    &what,
                    &mut net,
                    &mut sgd,
                    &mut expected,
                    &data,
                    Targets::Dense(data.dense.as_ref()),
                );
            }
        }
    }
}

#[test]
fn train_step_plain_sgd_class_targets_match_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    for hidden in HIDDEN {
        let data = batch(Loss::SoftmaxCrossEntropy, &mut rng);
        let mut net = network(hidden, Loss::SoftmaxCrossEntropy, &mut rng);
        let mut sgd = Sgd::new(0.5);
        let mut expected = ReferenceSgd {
            lr: 0.5,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            velocity: Vec::new(),
        };
        check_steps(
            &format!("classes, hidden {hidden:?}"),
            &mut net,
            &mut sgd,
            &mut expected,
            &data,
            Targets::Classes(&data.classes),
        );
    }
}

#[test]
fn train_step_adam_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    for loss in LOSSES {
        for hidden in HIDDEN {
            let data = batch(loss, &mut rng);
            let mut net = network(hidden, loss, &mut rng);
            let mut adam = Adam::new(0.01).with_weight_decay(0.1);
            let mut expected = ReferenceAdam {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.1,
                step: 0,
                moments: Vec::new(),
            };
            check_steps(
                &format!("Adam, {loss:?}, hidden {hidden:?}"),
                &mut net,
                &mut adam,
                &mut expected,
                &data,
                Targets::Dense(data.dense.as_ref()),
            );
        }
    }
}

#[test]
fn train_step_random_shapes_match_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    for case in 0..24 {
        let depth = rng.random_range(1..=3);
        let widths: Vec<usize> = (0..=depth).map(|_| rng.random_range(1..=13)).collect();
        let m = rng.random_range(1..=17);
        let loss = LOSSES[rng.random_range(0..LOSSES.len())];
        let hidden = HIDDEN[rng.random_range(0..HIDDEN.len())];

        let n_out = widths[widths.len() - 1];
        let data = batch_of(m, widths[0], n_out, loss, &mut rng);
        let mut net = build_network(&widths, hidden, loss, Init::XavierUniform, &mut rng);
        let mut sgd = Sgd::new(0.2).with_momentum(0.5);
        let mut expected = ReferenceSgd {
            lr: 0.2,
            momentum: 0.5,
            nesterov: false,
            weight_decay: 0.0,
            velocity: Vec::new(),
        };
        check_steps(
            &format!("case {case}: {widths:?}, m {m}, {loss:?}, hidden {hidden:?}"),
            &mut net,
            &mut sgd,
            &mut expected,
            &data,
            Targets::Dense(data.dense.as_ref()),
        );
    }
}
