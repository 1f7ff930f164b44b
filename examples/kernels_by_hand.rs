//! A two-layer classifier trained with the kernels alone, as a crate that keeps its own
//! parameters would use them. Each step runs `dense_forward` for each layer, the loss on
//! the output layer's logits, `dense_backward` from the top down, and an SGD step written
//! by hand.
//!
//! - The output layer runs with `Activation::Identity`, because
//!   `loss::softmax_cross_entropy` takes logits; the gradient the loss writes is that
//!   layer's `δ`.
//! - The first layer gets no `input_delta`: its input is data.
//! - Each step splits its batch into two micro-batches and adds their gradients with
//!   `GradMode::Accumulate`. Each loss divides by its own rows, so each `δ` is scaled by
//!   its micro-batch's share of the batch first.
//!
//! The data are three Gaussian blobs in 8 dimensions. Run with
//! `cargo run --release --example kernels_by_hand`.

use densegrad::loss::{self, Targets};
use densegrad::{
    Activation, DenseGrads, Error, GradMode, MatMut, MatRef, Matrix, Parallelism, dense_backward,
    dense_forward,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Features per sample, hidden units and classes.
const N_IN: usize = 8;
const HIDDEN: usize = 32;
const CLASSES: usize = 3;
/// Samples per step, split into two micro-batches of these sizes.
const MICRO_BATCHES: [usize; 2] = [40, 24];
const STEPS: usize = 300;
const LEARNING_RATE: f32 = 0.2;

/// One dense layer's parameters and gradients.
#[derive(Clone)]
struct Layer {
    weights: Matrix,
    bias: Vec<f32>,
    grad_weights: Matrix,
    grad_bias: Vec<f32>,
}

impl Layer {
    fn new(n_in: usize, n_out: usize, rng: &mut ChaCha8Rng) -> Layer {
        let limit = (6.0 / (n_in + n_out) as f32).sqrt();
        Layer {
            weights: Matrix::from_fn(n_out, n_in, |_, _| rng.random_range(-limit..limit)),
            bias: vec![0.0; n_out],
            grad_weights: Matrix::zeros(n_out, n_in),
            grad_bias: vec![0.0; n_out],
        }
    }

    /// Writes (or with `GradMode::Accumulate` adds) this layer's gradients for `delta` and
    /// its `input`, and the error of the layer below into `input_delta` when given.
    fn backward(
        &mut self,
        delta: MatRef<'_>,
        input: MatRef<'_>,
        input_activation: Activation,
        input_delta: Option<MatMut<'_>>,
        mode: GradMode,
    ) -> Result<(), Error> {
        let grads = DenseGrads {
            weights: self.grad_weights.as_mut(),
            bias: &mut self.grad_bias,
            mode,
        };
        let par = Parallelism::Sequential;
        dense_backward(
            delta,
            input,
            self.weights.as_ref(),
            input_activation,
            grads,
            input_delta,
            par,
        )
    }

    /// Takes one SGD step with the gradients the backward passes left.
    fn step(&mut self) {
        let pairs = self
            .weights
            .as_mut_slice()
            .iter_mut()
            .zip(self.grad_weights.as_slice());
        for (w, g) in pairs.chain(self.bias.iter_mut().zip(&self.grad_bias)) {
            *w -= LEARNING_RATE * g;
        }
    }
}

/// Returns `rows` samples of the blobs and their classes.
fn blobs(rows: usize, rng: &mut ChaCha8Rng) -> (Matrix, Vec<usize>) {
    let classes: Vec<usize> = (0..rows).map(|_| rng.random_range(0..CLASSES)).collect();
    let x = Matrix::from_fn(rows, N_IN, |i, j| {
        let centre = if j % CLASSES == classes[i] { 1.0 } else { 0.0 };
        centre + rng.random_range(-1.0..1.0)
    });
    (x, classes)
}

/// Runs both layers on `x` and returns the hidden activations and the output logits.
fn forward(layers: &[Layer; 2], x: MatRef<'_>) -> Result<(Matrix, Matrix), Error> {
    let hidden = layer_forward(&layers[0], x, Activation::Relu)?;
    let logits = layer_forward(&layers[1], hidden.as_ref(), Activation::Identity)?;
    Ok((hidden, logits))
}

/// Returns `activation(input·Wᵀ + b)` for one layer, one row per sample.
fn layer_forward(
    layer: &Layer,
    input: MatRef<'_>,
    activation: Activation,
) -> Result<Matrix, Error> {
    let mut output = Matrix::zeros(input.rows(), layer.weights.rows());
    dense_forward(
        input,
        layer.weights.as_ref(),
        &layer.bias,
        activation,
        output.as_mut(),
        Parallelism::Sequential,
    )?;
    Ok(output)
}

/// Adds one micro-batch's gradients, scaled by `share` of the batch, to both layers, or
/// writes them with `mode` = `Overwrite`. Returns the micro-batch's mean loss.
fn accumulate(
    layers: &mut [Layer; 2],
    x: MatRef<'_>,
    classes: &[usize],
    share: f32,
    mode: GradMode,
) -> Result<f32, Error> {
    let (hidden, logits) = forward(layers, x)?;

    // δ of the output layer: the loss gradient, which carries this micro-batch's 1/m,
    // scaled to the whole batch.
    let mut delta = Matrix::zeros(x.rows(), CLASSES);
    let loss =
        loss::softmax_cross_entropy(logits.as_ref(), Targets::Classes(classes), delta.as_mut())?;
    delta.as_mut().for_each_mut(|_, _, d| *d *= share);

    // The output layer, which also writes δ of the hidden layer: (δ·W) ∘ ReLU'(hidden).
    let mut hidden_delta = Matrix::zeros(x.rows(), HIDDEN);
    let [first, second] = layers;
    second.backward(
        delta.as_ref(),
        hidden.as_ref(),
        Activation::Relu,
        Some(hidden_delta.as_mut()),
        mode,
    )?;

    // The first layer: its input is data, so it needs no δ below it.
    first.backward(hidden_delta.as_ref(), x, Activation::Identity, None, mode)?;
    Ok(loss)
}

/// Writes the gradients of the batch `x` into both layers, one micro-batch of
/// [`MICRO_BATCHES`] after the other, and returns the batch's mean loss.
fn batch_gradients(
    layers: &mut [Layer; 2],
    x: MatRef<'_>,
    classes: &[usize],
) -> Result<f32, Error> {
    let batch = x.rows();
    let mut loss = 0.0;
    let mut first_row = 0;
    for (index, rows) in MICRO_BATCHES.into_iter().enumerate() {
        let part = x.submatrix(first_row, 0, rows, N_IN)?;
        let share = rows as f32 / batch as f32;
        let mode = if index == 0 {
            GradMode::Overwrite
        } else {
            GradMode::Accumulate
        };
        let part_classes = &classes[first_row..first_row + rows];
        loss += share * accumulate(layers, part, part_classes, share, mode)?;
        first_row += rows;
    }
    Ok(loss)
}

/// Returns the share of rows whose largest logit is at their class.
fn accuracy(layers: &[Layer; 2], x: MatRef<'_>, classes: &[usize]) -> Result<f32, Error> {
    let (_, logits) = forward(layers, x)?;
    let correct = classes
        .iter()
        .enumerate()
        .filter(|&(i, &class)| {
            let row = logits.as_ref().row_slice(i).unwrap_or_default();
            row.iter().all(|&z| z <= row[class])
        })
        .count();
    Ok(correct as f32 / classes.len() as f32)
}

fn main() -> Result<(), Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut layers = [
        Layer::new(N_IN, HIDDEN, &mut rng),
        Layer::new(HIDDEN, CLASSES, &mut rng),
    ];
    let batch: usize = MICRO_BATCHES.iter().sum();
    let (test_x, test_classes) = blobs(500, &mut rng);

    println!("step  loss   test accuracy");
    for step in 0..STEPS {
        let (x, classes) = blobs(batch, &mut rng);
        let loss = batch_gradients(&mut layers, x.as_ref(), &classes)?;
        for layer in &mut layers {
            layer.step();
        }
        if step % 50 == 0 || step == STEPS - 1 {
            let test = accuracy(&layers, test_x.as_ref(), &test_classes)?;
            println!("{step:4}  {loss:.3}  {:5.1} %", 100.0 * test);
        }
    }

    let test = accuracy(&layers, test_x.as_ref(), &test_classes)?;
    assert!(test > 0.9, "test accuracy {test}");

    // The scaled micro-batches add up to the gradient of the whole batch.
    let (x, classes) = blobs(batch, &mut rng);
    let mut whole = layers.clone();
    accumulate(&mut whole, x.as_ref(), &classes, 1.0, GradMode::Overwrite)?;
    batch_gradients(&mut layers, x.as_ref(), &classes)?;
    let largest_difference = layers
        .iter()
        .zip(&whole)
        .flat_map(|(split, whole)| {
            let weights = split
                .grad_weights
                .as_slice()
                .iter()
                .zip(whole.grad_weights.as_slice());
            weights.chain(split.grad_bias.iter().zip(&whole.grad_bias))
        })
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "largest difference between split and whole-batch gradients: {largest_difference:.1e}"
    );
    assert!(largest_difference < 1e-5);
    Ok(())
}

/// `cargo test` runs the example, so its assertions guard the usage it shows.
#[test]
fn example_learns_and_accumulates() {
    main().unwrap();
}
