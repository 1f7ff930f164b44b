//! The safe layer API through its public interface: learning, input errors, buffer reuse,
//! thread-count independence and safetensors round trips.

mod common;

use std::collections::HashMap;

use approx::assert_relative_eq;
use common::{assert_invalid_argument, assert_shape_mismatch, build_network, random_matrix};
use densegrad::layer::{
    ARCHITECTURE_KEY, Adam, Dense, Init, Loss, Optimizer, Sequential, Sgd, Targets,
};
use densegrad::{Activation, Error, MatRef, Matrix, Parallelism};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

const XOR_X: [f32; 8] = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];

/// Builds a network `widths[0] → widths[1] → …` with He-uniform weights drawn from `seed`.
fn network(widths: &[usize], hidden: Activation, loss: Loss, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    build_network(widths, hidden, loss, Init::HeUniform, &mut rng)
}

/// Copies each layer's weight matrix and bias vector, or the pair that `pick` names, first
/// to last.
fn layer_tensors(
    net: &Sequential,
    pick: for<'a> fn(&'a Dense) -> (MatRef<'a>, &'a [f32]),
) -> Vec<Vec<f32>> {
    net.layers()
        .iter()
        .flat_map(|layer| {
            let (matrix, vector) = pick(layer);
            [matrix.to_matrix().into_vec(), vector.to_vec()]
        })
        .collect()
}

/// Returns a generator seeded with `seed`, a `rows × cols` batch drawn from it, and then
/// a class below `classes` for each row.
fn class_batch(
    seed: u64,
    rows: usize,
    cols: usize,
    classes: usize,
) -> (ChaCha8Rng, Matrix, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_matrix(&mut rng, rows, cols);
    let labels = (0..rows).map(|_| rng.random_range(0..classes)).collect();
    (rng, x, labels)
}

fn parameters(net: &Sequential) -> Vec<Vec<f32>> {
    layer_tensors(net, |layer| (layer.weights(), layer.bias()))
}

#[test]
fn xor_learns_binary_cross_entropy() {
    let x = MatRef::from_slice(&XOR_X, 4, 2).unwrap();
    let y = MatRef::from_slice(&[0.0, 1.0, 1.0, 0.0], 4, 1).unwrap();
    let mut net = network(&[2, 8, 1], Activation::Tanh, Loss::BinaryCrossEntropy, 11);
    let mut adam = Adam::new(0.05);

    let first = net.train_step(x, Targets::Dense(y), &mut adam).unwrap();
    for _ in 0..500 {
        net.train_step(x, Targets::Dense(y), &mut adam).unwrap();
    }
    let (loss, accuracy) = net.evaluate(x, Targets::Dense(y)).unwrap();

    assert!(first > 0.5, "initial loss {first}");
    assert!(loss < 0.05, "final loss {loss}");
    assert_eq!(accuracy, 1.0);
    assert_eq!(net.predict(x).unwrap(), vec![0, 1, 1, 0]);
}

#[test]
fn xor_learns_softmax_classes() {
    let x = MatRef::from_slice(&XOR_X, 4, 2).unwrap();
    let classes = [0, 1, 1, 0];
    let mut net = network(&[2, 16, 2], Activation::Relu, Loss::SoftmaxCrossEntropy, 5);
    let mut sgd = Sgd::new(0.2).with_momentum(0.9);

    for _ in 0..300 {
        net.train_step(x, Targets::Classes(&classes), &mut sgd)
            .unwrap();
    }
    let (loss, accuracy) = net.evaluate(x, Targets::Classes(&classes)).unwrap();

    assert!(loss < 0.05, "final loss {loss}");
    assert_eq!(accuracy, 1.0);
    let probabilities = net.forward(x).unwrap().to_matrix();
    for i in 0..4 {
        let sum = probabilities.get(i, 0).unwrap() + probabilities.get(i, 1).unwrap();
        assert!((sum - 1.0).abs() < 1e-6, "row {i} sums to {sum}");
    }
}

#[test]
fn xor_learns_mean_squared_error() {
    let x = MatRef::from_slice(&XOR_X, 4, 2).unwrap();
    let y = MatRef::from_slice(&[0.0, 1.0, 1.0, 0.0], 4, 1).unwrap();
    let leaky = Activation::LeakyRelu { slope: 0.01 };
    let mut net = network(&[2, 16, 1], leaky, Loss::MeanSquaredError, 3);
    let mut sgd = Sgd::new(0.1).with_momentum(0.9).with_nesterov(true);

    for _ in 0..400 {
        net.train_step(x, Targets::Dense(y), &mut sgd).unwrap();
    }
    let (loss, accuracy) = net.evaluate(x, Targets::Dense(y)).unwrap();

    assert!(loss < 0.01, "final loss {loss}");
    assert_eq!(accuracy, 1.0);
}

#[test]
fn train_step_smaller_batch_reuses_buffers() {
    let (_, x, classes) = class_batch(8, 32, 6, 3);
    let warm = {
        let mut net = network(
            &[6, 5, 3],
            Activation::Sigmoid,
            Loss::SoftmaxCrossEntropy,
            9,
        );
        let mut sgd = Sgd::new(0.0);
        net.train_step(x.as_ref(), Targets::Classes(&classes), &mut sgd)
            .unwrap();
        net
    };

    // The same last batch of 20 rows, through buffers sized for 32 and through fresh ones.
    let last = x.as_ref().submatrix(12, 0, 20, 6).unwrap();
    let mut reused = warm.clone();
    let mut fresh = network(
        &[6, 5, 3],
        Activation::Sigmoid,
        Loss::SoftmaxCrossEntropy,
        9,
    );
    let (mut sgd_reused, mut sgd_fresh) = (Sgd::new(0.1), Sgd::new(0.1));
    let loss_reused = reused
        .train_step(last, Targets::Classes(&classes[12..]), &mut sgd_reused)
        .unwrap();
    let loss_fresh = fresh
        .train_step(last, Targets::Classes(&classes[12..]), &mut sgd_fresh)
        .unwrap();

    assert_eq!(loss_reused.to_bits(), loss_fresh.to_bits());
    assert_eq!(parameters(&reused), parameters(&fresh));
}

#[test]
fn evaluate_chunks_match_one_batch() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x = random_matrix(&mut rng, 50, 4);
    let y = Matrix::from_fn(50, 2, |_, _| rng.random_range(0.0..1.0));
    let mut net = network(&[4, 7, 2], Activation::Tanh, Loss::BinaryCrossEntropy, 4);
    let (whole_loss, whole_accuracy) = net
        .evaluate(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();

    // After a step on 8 rows, evaluate works through the 50 rows in chunks of 8.
    let mut chunked = net.clone();
    let first = x.as_ref().submatrix(0, 0, 8, 4).unwrap();
    let first_y = y.as_ref().submatrix(0, 0, 8, 2).unwrap();
    chunked
        .train_step(first, Targets::Dense(first_y), &mut Sgd::new(0.0))
        .unwrap();
    let (chunked_loss, chunked_accuracy) = chunked
        .evaluate(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();

    assert!((whole_loss - chunked_loss).abs() <= 1e-6 * whole_loss.abs().max(1.0));
    assert_eq!(whole_accuracy, chunked_accuracy);
}

#[test]
fn train_step_thread_count_independent() {
    let (_, x, classes) = class_batch(2, 96, 80, 10);

    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = network(
                &[80, 96, 64, 10],
                Activation::Relu,
                Loss::SoftmaxCrossEntropy,
                6,
            )
            .with_parallelism(Parallelism::Rayon(0));
            let mut adam = Adam::new(1e-3);
            let losses: Vec<u32> = (0..3)
                .map(|_| {
                    net.train_step(x.as_ref(), Targets::Classes(&classes), &mut adam)
                        .unwrap()
                        .to_bits()
                })
                .collect();
            (losses, parameters(&net))
        })
    };

    let (losses_1, params_1) = run(1);
    for threads in [2, 3] {
        let (losses, params) = run(threads);
        assert_eq!(losses, losses_1, "losses with {threads} threads");
        assert_eq!(params, params_1, "parameters with {threads} threads");
    }
}

#[test]
fn safetensors_round_trip_predicts_same() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let x = random_matrix(&mut rng, 10, 5);
    let leaky = Activation::LeakyRelu { slope: 0.05 };
    let mut net = network(&[5, 6, 4, 3], leaky, Loss::SoftmaxCrossEntropy, 12);
    let classes: Vec<usize> = (0..10).map(|i| i % 3).collect();
    net.train_step(x.as_ref(), Targets::Classes(&classes), &mut Sgd::new(0.5))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    std::fs::write(&path, net.to_safetensors().unwrap()).unwrap();
    let mut loaded = Sequential::from_safetensors(&std::fs::read(&path).unwrap()).unwrap();

    assert_eq!(loaded.loss(), Loss::SoftmaxCrossEntropy);
    assert_eq!(loaded.layers()[0].activation(), leaky);
    assert_eq!(parameters(&loaded), parameters(&net));
    let expected = net.forward(x.as_ref()).unwrap().to_matrix();
    let actual = loaded.forward(x.as_ref()).unwrap().to_matrix();
    assert_eq!(actual, expected);
}

#[test]
fn safetensors_names_shapes_pytorch_layout() {
    let net = network(&[7, 4, 2], Activation::Relu, Loss::MeanSquaredError, 1);
    let bytes = net.to_safetensors().unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();

    let mut names = file.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight"
        ]
    );
    let weight = file.tensor("layers.0.weight").unwrap();
    assert_eq!(weight.dtype(), Dtype::F32);
    assert_eq!(weight.shape(), [4, 7]);
    assert_eq!(file.tensor("layers.1.bias").unwrap().shape(), [2]);
    let first = f32::from_le_bytes(weight.data()[..4].try_into().unwrap());
    assert_eq!(first, net.layers()[0].weights().get(0, 0).unwrap());

    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().as_ref().unwrap();
    assert_eq!(metadata["format"], "pt");
    assert!(metadata[ARCHITECTURE_KEY].contains("\"mean_squared_error\""));
}

/// Serialises `tensors` (name, dtype, shape, bytes) with the given metadata.
fn safetensors_bytes(
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

fn load_error(net: &mut Sequential, bytes: &[u8]) -> String {
    match net.load_safetensors(bytes) {
        Err(Error::InvalidArgument { operand, reason }) => {
            assert_eq!(operand, "safetensors");
            reason
        }
        other => panic!("expected an InvalidArgument error, got {other:?}"),
    }
}

#[test]
fn load_safetensors_rejects_wrong_tensors() {
    let mut net = network(&[3, 2], Activation::Relu, Loss::MeanSquaredError, 1);
    let before = parameters(&net);
    let weight = vec![0u8; 6 * 4];
    let bias = vec![0u8; 2 * 4];

    let transposed = safetensors_bytes(
        &[
            ("layers.0.weight", Dtype::F32, vec![3, 2], weight.clone()),
            ("layers.0.bias", Dtype::F32, vec![2], bias.clone()),
        ],
        None,
    );
    let reason = load_error(&mut net, &transposed);
    assert_eq!(
        reason,
        "tensor layers.0.weight has shape [3, 2], expected [2, 3]"
    );

    let missing = safetensors_bytes(
        &[("layers.0.weight", Dtype::F32, vec![2, 3], weight.clone())],
        None,
    );
    assert_eq!(
        load_error(&mut net, &missing),
        "tensor layers.0.bias is missing"
    );

    let half = safetensors_bytes(
        &[
            ("layers.0.weight", Dtype::F16, vec![2, 3], vec![0u8; 6 * 2]),
            ("layers.0.bias", Dtype::F32, vec![2], bias.clone()),
        ],
        None,
    );
    assert_eq!(
        load_error(&mut net, &half),
        "tensor layers.0.weight has dtype F16, expected F32"
    );

    let extra = safetensors_bytes(
        &[
            ("layers.0.weight", Dtype::F32, vec![2, 3], weight.clone()),
            ("layers.0.bias", Dtype::F32, vec![2], bias.clone()),
            ("layers.1.weight", Dtype::F32, vec![2, 3], weight),
        ],
        None,
    );
    assert!(load_error(&mut net, &extra).starts_with("unexpected tensor layers.1.weight"));

    let garbage = load_error(&mut net, b"not a safetensors file");
    assert!(
        garbage.starts_with("the bytes are not a valid safetensors file ("),
        "{garbage}"
    );
    let Err(Error::InvalidArgument { reason, .. }) =
        Sequential::from_safetensors(b"not a safetensors file")
    else {
        panic!("from_safetensors accepted bytes that are not a safetensors file");
    };
    assert!(
        reason.starts_with("the bytes are not a valid safetensors file ("),
        "{reason}"
    );
    assert_eq!(
        parameters(&net),
        before,
        "a failed load changed the parameters"
    );
}

#[test]
fn from_safetensors_needs_architecture() {
    let weight = vec![0u8; 6 * 4];
    let bias = vec![0u8; 2 * 4];
    let tensors = [
        ("layers.0.weight", Dtype::F32, vec![2, 3], weight),
        ("layers.0.bias", Dtype::F32, vec![2], bias),
    ];

    let bare = safetensors_bytes(&tensors, None);
    let err = Sequential::from_safetensors(&bare).unwrap_err();
    assert!(
        err.to_string().contains("no densegrad.architecture entry"),
        "{err}"
    );

    let unknown_loss = HashMap::from([(
        ARCHITECTURE_KEY.to_string(),
        r#"{"loss":"hinge","layers":[{"n_in":3,"n_out":2,"activation":"identity"}]}"#.to_string(),
    )]);
    let err =
        Sequential::from_safetensors(&safetensors_bytes(&tensors, Some(unknown_loss))).unwrap_err();
    assert!(err.to_string().contains("unknown loss \"hinge\""), "{err}");

    // Metadata that claims a larger layer than the file contains is rejected before allocating.
    let too_wide = HashMap::from([(
        ARCHITECTURE_KEY.to_string(),
        r#"{"loss":"mean_squared_error","layers":[{"n_in":3000000,"n_out":2000000,"activation":"identity"}]}"#
            .to_string(),
    )]);
    let err =
        Sequential::from_safetensors(&safetensors_bytes(&tensors, Some(too_wide))).unwrap_err();
    assert!(
        err.to_string()
            .contains("architecture metadata says [2000000, 3000000]"),
        "{err}"
    );
}

#[test]
fn sequential_new_rejects_bad_architectures() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut dense = |n_in, n_out, activation| {
        Dense::new(n_in, n_out, activation, Init::XavierUniform, &mut rng).unwrap()
    };

    let err = Sequential::new(vec![], Loss::MeanSquaredError).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "layers",
            ..
        }
    ));

    let widths = vec![
        dense(3, 4, Activation::Relu),
        dense(5, 2, Activation::Identity),
    ];
    let err = Sequential::new(widths, Loss::MeanSquaredError).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layers: layer 1 has 5 inputs, but layer 0 has 4 outputs"
    );

    let hidden_softmax = vec![
        dense(3, 4, Activation::Softmax),
        dense(4, 2, Activation::Softmax),
    ];
    let err = Sequential::new(hidden_softmax, Loss::SoftmaxCrossEntropy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("layers: layer 0 is a hidden layer with softmax")
    );

    let mismatch = vec![dense(3, 2, Activation::Identity)];
    let err = Sequential::new(mismatch, Loss::SoftmaxCrossEntropy).unwrap_err();
    assert_eq!(
        err.to_string(),
        "loss: softmax_cross_entropy needs the last layer's activation to be Softmax, got Identity"
    );
}

#[test]
fn dense_new_rejects_bad_arguments() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = Dense::new(0, 3, Activation::Relu, Init::HeUniform, &mut rng).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "n_in",
            ..
        }
    ));
    let err = Dense::new(3, 0, Activation::Relu, Init::HeUniform, &mut rng).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "n_out",
            ..
        }
    ));
    let negative = Activation::LeakyRelu { slope: -0.1 };
    let err = Dense::new(3, 2, negative, Init::HeUniform, &mut rng).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "activation",
            ..
        }
    ));
    let err =
        Dense::from_parameters(Matrix::zeros(2, 3), vec![0.0; 3], Activation::Relu).unwrap_err();
    assert_eq!(err.to_string(), "bias: expected length 2, got 3");
}

#[test]
fn dense_new_reproducible_within_bound() {
    let draw = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Dense::new(50, 20, Activation::Relu, Init::HeUniform, &mut rng).unwrap()
    };
    let (a, b, c) = (draw(4), draw(4), draw(5));
    assert_eq!(a, b);
    assert_ne!(a.weights().to_matrix(), c.weights().to_matrix());

    let bound = Init::HeUniform.bound(50, 20);
    assert!((bound - (6.0f32 / 50.0).sqrt()).abs() < 1e-7);
    let weights = a.weights().to_matrix().into_vec();
    assert!(weights.iter().all(|w| w.abs() <= bound));
    let max = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    assert!(
        max > 0.9 * bound,
        "1000 draws should come near the bound; max {max}"
    );
    assert!((Init::XavierUniform.bound(50, 20) - (6.0f32 / 70.0).sqrt()).abs() < 1e-7);
}

/// Runs one step of `net` and returns the error, checking that the parameters did not
/// change.
fn step_error(net: &mut Sequential, x: MatRef, targets: Targets, sgd: &mut Sgd) -> Error {
    let before = parameters(net);
    let err = net.train_step(x, targets, sgd).unwrap_err();
    assert_eq!(
        parameters(net),
        before,
        "a failed step changed the parameters: {err}"
    );
    err
}

#[test]
fn train_step_input_errors_name_row() {
    let mut net = network(&[3, 4, 2], Activation::Relu, Loss::SoftmaxCrossEntropy, 0);
    let mut sgd = Sgd::new(0.1);
    let good = [0.5f32; 9];
    let x = MatRef::from_slice(&good, 3, 3).unwrap();

    let wide = [0.0f32; 12];
    let err = step_error(
        &mut net,
        MatRef::from_slice(&wide, 3, 4).unwrap(),
        Targets::Classes(&[0, 1, 0]),
        &mut sgd,
    );
    assert_eq!(err.to_string(), "x: expected 3 × 3, got 3 × 4");

    let mut nan = good;
    nan[7] = f32::NAN;
    let err = step_error(
        &mut net,
        MatRef::from_slice(&nan, 3, 3).unwrap(),
        Targets::Classes(&[0, 1, 0]),
        &mut sgd,
    );
    assert_eq!(
        err.to_string(),
        "x: row 2: column 1 is NaN, expected a finite number"
    );

    let err = step_error(&mut net, x, Targets::Classes(&[0, 2, 0]), &mut sgd);
    assert_eq!(
        err.to_string(),
        "targets: row 1: class index 2 is out of range for 2 classes"
    );

    let err = step_error(&mut net, x, Targets::Classes(&[0, 1]), &mut sgd);
    assert_eq!(err.to_string(), "targets: expected length 3, got 2");

    let mut y = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0];
    y[5] = f32::INFINITY;
    let err = step_error(
        &mut net,
        x,
        Targets::Dense(MatRef::from_slice(&y, 3, 2).unwrap()),
        &mut sgd,
    );
    assert_eq!(
        err.to_string(),
        "targets: row 2: column 1 is inf, expected a finite number"
    );

    let err = step_error(
        &mut net,
        x,
        Targets::Dense(MatRef::from_slice(&y[..4], 2, 2).unwrap()),
        &mut sgd,
    );
    assert_eq!(err.to_string(), "targets: expected 3 × 2, got 2 × 2");

    let empty = MatRef::from_slice(&[], 0, 3).unwrap();
    let err = step_error(&mut net, empty, Targets::Classes(&[]), &mut sgd);
    assert!(matches!(err, Error::InvalidArgument { operand: "x", .. }));
}

#[test]
fn train_step_target_errors_per_loss() {
    let x = MatRef::from_slice(&[0.1f32, 0.2, 0.3, 0.4], 2, 2).unwrap();
    let mut sgd = Sgd::new(0.1);

    let mut bce = network(&[2, 1], Activation::Identity, Loss::BinaryCrossEntropy, 0);
    let y = MatRef::from_slice(&[0.0f32, 1.5], 2, 1).unwrap();
    let err = step_error(&mut bce, x, Targets::Dense(y), &mut sgd);
    assert_eq!(
        err.to_string(),
        "targets: row 1: column 0 is 1.5, expected a probability in [0, 1]"
    );
    let err = step_error(&mut bce, x, Targets::Classes(&[0, 1]), &mut sgd);
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "targets",
            ..
        }
    ));

    let mut mse = network(&[2, 1], Activation::Identity, Loss::MeanSquaredError, 0);
    let err = step_error(&mut mse, x, Targets::Classes(&[0, 0]), &mut sgd);
    assert!(matches!(
        err,
        Error::InvalidArgument {
            operand: "targets",
            ..
        }
    ));
    let y = MatRef::from_slice(&[f32::NAN, 1.5], 2, 1).unwrap();
    let err = step_error(&mut mse, x, Targets::Dense(y), &mut sgd);
    assert!(matches!(
        err,
        Error::InvalidValue {
            operand: "targets",
            row: 0,
            ..
        }
    ));
}

#[test]
fn train_step_optimizer_errors() {
    let x = MatRef::from_slice(&[0.1f32, 0.2], 1, 2).unwrap();
    let y = MatRef::from_slice(&[0.5f32], 1, 1).unwrap();
    let mut net = network(&[2, 1], Activation::Identity, Loss::MeanSquaredError, 0);
    let before = parameters(&net);

    let cases: [(Sgd, &str); 4] = [
        (Sgd::new(f32::NAN), "learning_rate"),
        (Sgd::new(0.1).with_momentum(1.0), "momentum"),
        (Sgd::new(0.1).with_nesterov(true), "nesterov"),
        (Sgd::new(0.1).with_weight_decay(-1.0), "weight_decay"),
    ];
    for (mut sgd, operand) in cases {
        let err = net.train_step(x, Targets::Dense(y), &mut sgd).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { operand: o, .. } if o == operand),
            "{operand}: {err}"
        );
    }

    let adam_cases: [(Adam, &str); 4] = [
        (Adam::new(-1.0), "learning_rate"),
        (Adam::new(0.1).with_betas(0.9, 1.0), "beta2"),
        (Adam::new(0.1).with_epsilon(0.0), "epsilon"),
        (
            Adam::new(0.1).with_weight_decay(f32::INFINITY),
            "weight_decay",
        ),
    ];
    for (mut adam, operand) in adam_cases {
        let err = net.train_step(x, Targets::Dense(y), &mut adam).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { operand: o, .. } if o == operand),
            "{operand}: {err}"
        );
        assert_eq!(adam.steps(), 0);
    }
    assert_eq!(parameters(&net), before);
}

#[test]
fn forward_and_predict_input_errors() {
    let mut net = network(&[3, 2], Activation::Relu, Loss::SoftmaxCrossEntropy, 0);
    let narrow = MatRef::from_slice(&[0.0f32; 4], 2, 2).unwrap();
    assert_eq!(
        net.forward(narrow).unwrap_err().to_string(),
        "x: expected 2 × 3, got 2 × 2"
    );
    assert!(net.predict(narrow).is_err());
    let mut x = [0.0f32; 6];
    x[3] = f32::NEG_INFINITY;
    let x = MatRef::from_slice(&x, 2, 3).unwrap();
    let err = net.predict(x).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidValue {
            operand: "x",
            row: 1,
            ..
        }
    ));
    let err = net.evaluate(x, Targets::Classes(&[0, 1])).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidValue {
            operand: "x",
            row: 1,
            ..
        }
    ));

    let empty = MatRef::from_slice(&[], 0, 3).unwrap();
    assert_eq!(net.forward(empty).unwrap().rows(), 0);
    assert!(net.predict(empty).unwrap().is_empty());
}

#[test]
fn train_step_overflowing_logits_rejected() {
    let weights = Matrix::from_vec(vec![f32::MAX, f32::MAX, 0.0, 0.0], 2, 2).unwrap();
    let layer = Dense::from_parameters(weights, vec![0.0; 2], Activation::Softmax).unwrap();
    let mut net = Sequential::new(vec![layer], Loss::SoftmaxCrossEntropy).unwrap();
    let before = parameters(&net);
    let x = MatRef::from_slice(&[0.5f32, 0.5, 1.0, 1.0], 2, 2).unwrap();
    let mut adam = Adam::new(0.1);

    let err = net
        .train_step(x, Targets::Classes(&[0, 1]), &mut adam)
        .unwrap_err();

    assert!(
        matches!(
            err,
            Error::InvalidValue {
                operand: "logits",
                row: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(adam.steps(), 0);
    assert_eq!(parameters(&net), before);
}

#[test]
fn overflowing_loss_rejected_unchanged() {
    // Finite outputs near 1e20 whose squared error is beyond f32 (row 1), and a single
    // row of logits 6e38 apart, whose cross-entropy is. Each way of computing gradients
    // rejects the batch before the backward pass, so parameters and gradients stay.
    let identity = Matrix::from_vec(vec![1.0, 0.0, 0.0, 1.0], 2, 2).unwrap();
    let x = MatRef::from_slice(&[0.5f32, 0.5, 1e20, -1e20, 1.0, 1.0], 3, 2).unwrap();
    let y = MatRef::from_slice(&[0.0f32; 6], 3, 2).unwrap();
    let x_logits = MatRef::from_slice(&[3e38f32, -3e38], 1, 2).unwrap();
    let cases = [
        (
            Loss::MeanSquaredError,
            Activation::Identity,
            x,
            Targets::Dense(y),
            1,
        ),
        (
            Loss::SoftmaxCrossEntropy,
            Activation::Softmax,
            x_logits,
            Targets::Classes(&[1]),
            0,
        ),
    ];
    for (loss, activation, x, targets, row) in cases {
        let layer = Dense::from_parameters(identity.clone(), vec![0.0; 2], activation).unwrap();
        let mut net = Sequential::new(vec![layer], loss).unwrap();
        let (before, gradients_before) = (parameters(&net), gradients(&net));
        let mut sgd = Sgd::new(0.1);
        let errors = [
            net.train_step(x, targets, &mut sgd).unwrap_err(),
            net.compute_gradients(x, targets).unwrap_err(),
            net.accumulate_gradients(x, targets, x.rows()).unwrap_err(),
        ];
        for err in errors {
            assert!(
                matches!(err, Error::InvalidValue { operand: "loss", row: r, .. } if r == row),
                "{loss:?}: {err}"
            );
            assert!(err.to_string().contains("beyond the f32 range"), "{err}");
        }
        assert_eq!(parameters(&net), before);
        assert_eq!(gradients(&net), gradients_before);
    }
}

#[test]
fn evaluate_overflowing_logits_name_batch_row() {
    let weights = Matrix::from_vec(vec![f32::MAX, f32::MAX, 0.0, 0.0], 2, 2).unwrap();
    let layer = Dense::from_parameters(weights, vec![0.0; 2], Activation::Softmax).unwrap();
    let mut net = Sequential::new(vec![layer], Loss::SoftmaxCrossEntropy).unwrap();
    let small = MatRef::from_slice(&[0.0f32, 0.0], 1, 2).unwrap();
    net.train_step(small, Targets::Classes(&[0]), &mut Sgd::new(0.0))
        .unwrap();

    // The buffers hold one row, so evaluate works row by row; row 2 overflows.
    let x = MatRef::from_slice(&[0.0f32, 0.0, 0.5, 0.5, 1.0, 1.0], 3, 2).unwrap();
    let err = net.evaluate(x, Targets::Classes(&[0, 0, 0])).unwrap_err();

    assert!(
        matches!(
            err,
            Error::InvalidValue {
                operand: "logits",
                row: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn train_step_other_network_optimizer_unchanged() {
    // Tensors 0 and 1 have the same lengths in both networks, and tensor 2 does not, so
    // only a check of every tensor before the first update leaves the parameters as
    // they were.
    let x = MatRef::from_slice(&[0.1f32, 0.2], 1, 2).unwrap();
    let y_one = MatRef::from_slice(&[0.5f32], 1, 1).unwrap();
    let y_two = MatRef::from_slice(&[0.5f32, -0.5], 1, 2).unwrap();
    let mut first = network(&[2, 3, 1], Activation::Relu, Loss::MeanSquaredError, 1);
    let mut second = network(&[2, 3, 2], Activation::Relu, Loss::MeanSquaredError, 2);

    let mut adam = Adam::new(0.01);
    let mut sgd = Sgd::new(0.1).with_momentum(0.9);
    first
        .train_step(x, Targets::Dense(y_one), &mut adam)
        .unwrap();
    first
        .train_step(x, Targets::Dense(y_one), &mut sgd)
        .unwrap();
    let before = parameters(&second);

    let mut rejects = |optimizer: &mut dyn Optimizer| {
        let err = second
            .train_step(x, Targets::Dense(y_two), optimizer)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    operand: "params",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(parameters(&second), before);
    };
    rejects(&mut adam);
    rejects(&mut sgd);
    assert_eq!(adam.steps(), 1);
}

#[test]
fn optimizer_update_rejects_bad_tensors() {
    let optimizers: [Box<dyn Optimizer>; 2] = [
        Box::new(Sgd::new(0.1).with_momentum(0.9)),
        Box::new(Adam::new(0.01)),
    ];
    for mut optimizer in optimizers {
        optimizer.begin_step().unwrap();
        let mut params = vec![1.0; 4];

        let err = optimizer.update(0, &mut params, &[0.5; 2]).unwrap_err();
        assert_eq!(err.to_string(), "grads: expected length 4, got 2");
        assert_eq!(params, [1.0; 4]);

        let err = optimizer
            .update(usize::MAX, &mut params, &[0.5; 4])
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument {
                operand: "index",
                ..
            }
        ));
        assert_eq!(params, [1.0; 4]);

        optimizer.update(0, &mut params, &[0.5; 4]).unwrap();
        let updated = params.clone();
        let mut other = vec![1.0; 3];
        let err = optimizer.update(0, &mut other, &[0.5; 3]).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument {
                operand: "params",
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("params: tensor 0 has 3 elements, but this optimiser's state"),
            "{err}"
        );
        assert_eq!(other, [1.0; 3]);
        assert_ne!(updated, [1.0; 4]);
    }
}

#[test]
fn dense_new_too_large_is_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = Dense::new(
        usize::MAX / 2,
        3,
        Activation::Relu,
        Init::HeUniform,
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Overflow {
            operand: "weights",
            ..
        }
    ));
}

#[test]
fn safetensors_bytes_repeatable() {
    let net = network(&[5, 4, 3], Activation::Tanh, Loss::SoftmaxCrossEntropy, 8);
    let first = net.to_safetensors().unwrap();
    for _ in 0..20 {
        assert_eq!(net.to_safetensors().unwrap(), first);
    }
    let copy = Sequential::from_safetensors(&first).unwrap();
    assert_eq!(copy.to_safetensors().unwrap(), first);
}

#[test]
fn predict_non_finite_outputs_name_row() {
    let layers = |output_bias: f32| {
        let hidden = Dense::from_parameters(
            Matrix::from_fn(4, 3, |i, j| (i + j) as f32 + 1.0),
            vec![0.0; 4],
            Activation::Relu,
        )
        .unwrap();
        let output = Dense::from_parameters(
            Matrix::from_fn(2, 4, |i, j| (i * 4 + j) as f32 * 0.1 - 0.3),
            vec![0.0, output_bias],
            Activation::Softmax,
        )
        .unwrap();
        Sequential::new(vec![hidden, output], Loss::SoftmaxCrossEntropy).unwrap()
    };
    let x = Matrix::from_fn(3, 3, |i, j| (i * 3 + j) as f32);

    // Finite parameters and inputs predict.
    assert_eq!(layers(0.0).predict(x.as_ref()).unwrap().len(), 3);

    // A NaN bias: argmax over NaN outputs would silently name class 0.
    let err = layers(f32::NAN).predict(x.as_ref()).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidValue {
            operand: "outputs",
            row: 0,
            ..
        }
    ));

    // A finite input so large that row 2 overflows in the hidden layer.
    let mut huge = x.clone();
    for j in 0..3 {
        huge.as_mut().set(2, j, 1e38).unwrap();
    }
    let err = layers(0.0).predict(huge.as_ref()).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidValue {
            operand: "outputs",
            row: 2,
            ..
        }
    ));
}

/// Builds a fresh optimiser for a test that runs it on several threads.
type MakeOptimizer = fn() -> Box<dyn Optimizer + Send>;

#[test]
fn optimizer_update_threads_bitwise_equal() {
    // 300 007 parameters: more than four 64 K chunks, and not a multiple of any split.
    let len = 300_007;
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let start: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    let grads: Vec<Vec<f32>> = (0..3)
        .map(|_| (0..len).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let optimizers: Vec<(&str, MakeOptimizer)> = vec![
        ("sgd", || Box::new(Sgd::new(0.1).with_weight_decay(0.01))),
        ("momentum", || Box::new(Sgd::new(0.1).with_momentum(0.9))),
        ("nesterov", || {
            Box::new(Sgd::new(0.1).with_momentum(0.9).with_nesterov(true))
        }),
        ("adam", || Box::new(Adam::new(0.01).with_weight_decay(0.01))),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();

    for (name, make) in optimizers {
        let run = |par: Parallelism| {
            let mut optimizer = make();
            let mut params = start.clone();
            for step_grads in &grads {
                optimizer.begin_step().unwrap();
                pool.install(|| optimizer.update_with(0, &mut params, step_grads, par))
                    .unwrap();
            }
            params
        };
        let sequential = run(Parallelism::Sequential);
        assert_ne!(sequential, start, "{name}: the steps changed nothing");
        for par in [Parallelism::Rayon(2), Parallelism::Rayon(0)] {
            let threaded = run(par);
            let same = sequential
                .iter()
                .zip(&threaded)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{name} with {par:?} differs from the sequential update"
            );
        }
    }
}

#[test]
fn optimizer_skipped_index_rejected() {
    let mut sgd = Sgd::new(0.1).with_momentum(0.9);
    sgd.begin_step().unwrap();
    let mut params = [1.0; 4];

    let fresh = sgd.update(3, &mut params, &[0.5; 4]).unwrap_err();
    assert!(matches!(
        fresh,
        Error::InvalidArgument {
            operand: "index",
            ..
        }
    ));
    assert!(
        fresh.to_string().contains("has seen no tensors yet"),
        "{fresh}"
    );
    assert_eq!(params, [1.0; 4]);

    sgd.update(0, &mut params, &[0.5; 4]).unwrap();
    let after_one = sgd.update(2, &mut params, &[0.5; 4]).unwrap_err();
    assert!(
        after_one.to_string().contains("has seen tensors 0 to 0"),
        "{after_one}"
    );
}

#[test]
fn parameters_mut_sets_every_layer() {
    let mut net = network(&[3, 4, 2], Activation::Relu, Loss::MeanSquaredError, 5);
    let shapes: Vec<_> = net
        .parameters_mut()
        .map(|(weights, bias)| (weights.rows(), weights.cols(), bias.len()))
        .collect();
    assert_eq!(shapes, [(4, 3, 4), (2, 4, 2)]);

    // Hidden unit i computes relu(x·w_i + b_i) with w_i = (i, -1, 0.5) and b_i = -0.25·i;
    // output o sums the hidden units times (o + 1) and adds 0.5.
    for (l, (weights, bias)) in net.parameters_mut().enumerate() {
        let cols = weights.cols();
        for (index, w) in weights.into_mut_slice().unwrap().iter_mut().enumerate() {
            let (row, col) = (index / cols, index % cols);
            *w = match l {
                0 => [row as f32, -1.0, 0.5][col],
                _ => (row + 1) as f32,
            };
        }
        for (row, b) in bias.iter_mut().enumerate() {
            *b = if l == 0 { -0.25 * row as f32 } else { 0.5 };
        }
    }

    let x = [1.0, 2.0, 4.0, -1.0, 0.0, 3.0];
    let expected: Vec<f32> = x
        .chunks(3)
        .flat_map(|sample| {
            let hidden: f32 = (0..4)
                .map(|i| {
                    let z = i as f32 * sample[0] - sample[1] + 0.5 * sample[2] - 0.25 * i as f32;
                    z.max(0.0)
                })
                .sum();
            [hidden + 0.5, 2.0 * hidden + 0.5]
        })
        .collect();
    let output = net
        .forward(MatRef::from_slice(&x, 2, 3).unwrap())
        .unwrap()
        .to_matrix();
    assert_eq!(output.as_slice(), &expected[..]);
}

fn gradients(net: &Sequential) -> Vec<Vec<f32>> {
    layer_tensors(net, |layer| (layer.grad_weights(), layer.grad_bias()))
}

#[test]
fn compute_then_apply_equals_train_step() {
    let (_, x, classes) = class_batch(21, 12, 5, 3);
    let targets = Targets::Classes(&classes);

    let optimizers: [fn() -> Box<dyn Optimizer>; 2] = [
        || Box::new(Sgd::new(0.1).with_momentum(0.9).with_weight_decay(1e-3)),
        || Box::new(Adam::new(0.01)),
    ];
    for make_optimizer in optimizers {
        let mut stepped = network(&[5, 7, 3], Activation::Relu, Loss::SoftmaxCrossEntropy, 4);
        let mut split = stepped.clone();
        let (mut first, mut second) = (make_optimizer(), make_optimizer());
        for _ in 0..5 {
            let loss = stepped
                .train_step(x.as_ref(), targets, first.as_mut())
                .unwrap();
            let split_loss = split.compute_gradients(x.as_ref(), targets).unwrap();
            assert_eq!(split_loss.to_bits(), loss.to_bits());
            assert_eq!(gradients(&split), gradients(&stepped));

            split.apply_gradients(second.as_mut()).unwrap();
            assert_eq!(parameters(&split), parameters(&stepped));
        }
    }
}

/// Returns a 6 × 4 batch and its 6 × 2 targets drawn from `data_seed`, and a 4 → 5 → 2
/// network for the mean squared error with weights drawn from `net_seed`.
fn mean_squared_setup(data_seed: u64, net_seed: u64) -> (Matrix, Matrix, Sequential) {
    let mut rng = ChaCha8Rng::seed_from_u64(data_seed);
    let x = random_matrix(&mut rng, 6, 4);
    let y = random_matrix(&mut rng, 6, 2);
    let net = network(
        &[4, 5, 2],
        Activation::Tanh,
        Loss::MeanSquaredError,
        net_seed,
    );
    (x, y, net)
}

#[test]
fn compute_gradients_changes_no_parameter() {
    let (x, y, mut net) = mean_squared_setup(22, 6);
    let before = parameters(&net);

    net.compute_gradients(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();
    assert_eq!(parameters(&net), before);
    assert!(gradients(&net).iter().flatten().any(|&g| g != 0.0));

    // Bad targets: an error, and the gradients of the last call stay.
    let computed = gradients(&net);
    let short = y.as_ref().submatrix(0, 0, 5, 2).unwrap();
    let err = net
        .compute_gradients(x.as_ref(), Targets::Dense(short))
        .unwrap_err();
    assert_shape_mismatch(&err, "targets");
    assert_eq!(gradients(&net), computed);
    assert_eq!(parameters(&net), before);
}

#[test]
fn gradients_mut_adds_half_batches() {
    // The mean loss of 8 rows has the mean of the two half batches' gradients, up to
    // rounding. Written back, that mean drives one plain SGD update.
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let x = random_matrix(&mut rng, 8, 3);
    let y = random_matrix(&mut rng, 8, 2);
    let mut net = network(&[3, 4, 2], Activation::Sigmoid, Loss::MeanSquaredError, 8);
    let half = |rows: std::ops::Range<usize>| {
        (
            x.as_ref().submatrix(rows.start, 0, 4, 3).unwrap(),
            Targets::Dense(y.as_ref().submatrix(rows.start, 0, 4, 2).unwrap()),
        )
    };

    net.compute_gradients(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();
    let whole = gradients(&net);
    let (x0, t0) = half(0..4);
    net.compute_gradients(x0, t0).unwrap();
    let first = gradients(&net);
    let (x1, t1) = half(4..8);
    net.compute_gradients(x1, t1).unwrap();

    for ((grad_weights, grad_bias), (first_weights, first_bias)) in net
        .gradients_mut()
        .zip(first.chunks(2).map(|c| (&c[0], &c[1])))
    {
        let grad_weights = grad_weights.into_mut_slice().unwrap();
        for (g, f) in grad_weights.iter_mut().zip(first_weights) {
            *g = 0.5 * (*g + f);
        }
        for (g, f) in grad_bias.iter_mut().zip(first_bias) {
            *g = 0.5 * (*g + f);
        }
    }
    let mean = gradients(&net);
    for (m, w) in mean.iter().flatten().zip(whole.iter().flatten()) {
        assert!((m - w).abs() <= 1e-6 * (1.0 + w.abs()), "{m} against {w}");
    }

    let before = parameters(&net);
    net.apply_gradients(&mut Sgd::new(0.5)).unwrap();
    for ((p, b), g) in parameters(&net)
        .iter()
        .flatten()
        .zip(before.iter().flatten())
        .zip(mean.iter().flatten())
    {
        assert!(
            (p - (b - 0.5 * g)).abs() <= 1e-6,
            "{p} against {b} − 0.5·{g}"
        );
    }
}

#[test]
fn apply_gradients_other_network_optimizer_unchanged() {
    let x = MatRef::from_slice(&[0.1f32, 0.2], 1, 2).unwrap();
    let y = MatRef::from_slice(&[0.5f32], 1, 1).unwrap();
    let mut first = network(&[2, 3, 1], Activation::Relu, Loss::MeanSquaredError, 1);
    let mut second = network(&[2, 4, 1], Activation::Relu, Loss::MeanSquaredError, 2);
    let mut adam = Adam::new(0.01);
    first.train_step(x, Targets::Dense(y), &mut adam).unwrap();

    second.compute_gradients(x, Targets::Dense(y)).unwrap();
    let before = parameters(&second);
    let err = second.apply_gradients(&mut adam).unwrap_err();
    assert_invalid_argument(&err, "params");
    assert_eq!(parameters(&second), before);
    assert_eq!(adam.steps(), 1);
}

#[test]
fn load_safetensors_zeroes_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let x = random_matrix(&mut rng, 5, 3);
    let y = random_matrix(&mut rng, 5, 2);
    let mut net = network(&[3, 4, 2], Activation::Relu, Loss::MeanSquaredError, 9);
    let saved = net.to_safetensors().unwrap();
    let saved_parameters = parameters(&net);

    net.train_step(x.as_ref(), Targets::Dense(y.as_ref()), &mut Sgd::new(0.1))
        .unwrap();
    assert!(gradients(&net).iter().flatten().any(|&g| g != 0.0));
    net.load_safetensors(&saved).unwrap();

    assert_eq!(parameters(&net), saved_parameters);
    assert!(gradients(&net).iter().flatten().all(|&g| g == 0.0));
}

#[test]
fn sequential_eq_ignores_forward_buffers() {
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let x = random_matrix(&mut rng, 4, 3);
    let mut first = network(&[3, 4, 2], Activation::Tanh, Loss::MeanSquaredError, 10);
    let second = first.clone();

    first.forward(x.as_ref()).unwrap();
    assert_eq!(first, second);

    first.parameters_mut().next().unwrap().1[0] += 1.0;
    assert_ne!(first, second);
}

/// Builds a network and computes its gradients on one batch of random data.
fn network_with_gradients(seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_matrix(&mut rng, 9, 4);
    let y = random_matrix(&mut rng, 9, 3);
    let mut net = network(&[4, 6, 3], Activation::Tanh, Loss::MeanSquaredError, seed);
    net.compute_gradients(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();
    net
}

/// Returns the L2 norm of every gradient, summed one value at a time in `f64`.
fn naive_norm(net: &Sequential) -> f64 {
    let mut sum = 0.0f64;
    for g in gradients(net).iter().flatten() {
        sum += f64::from(*g).powi(2);
    }
    sum.sqrt()
}

#[test]
fn gradient_norm_matches_naive_sum() {
    let mut net = network_with_gradients(31);
    let norm = net.gradient_norm();
    assert!(norm > 0.0);
    assert_relative_eq!(norm, naive_norm(&net), max_relative = 1e-6);

    // Gradients of 1e30 square to more than f32::MAX, but the norm is finite.
    for (grad_weights, grad_bias) in net.gradients_mut() {
        for g in grad_weights
            .into_mut_slice()
            .unwrap()
            .iter_mut()
            .chain(grad_bias)
        {
            *g = 1e30;
        }
    }
    let count = gradients(&net).iter().flatten().count();
    let expected = 1e30 * (count as f64).sqrt();
    assert_relative_eq!(net.gradient_norm(), expected, max_relative = 1e-6);
}

#[test]
fn clip_gradient_norm_scales_large_gradients() {
    let mut net = network_with_gradients(32);
    let before = gradients(&net);
    let norm = net.gradient_norm();
    let max_norm = (0.25 * norm) as f32;

    assert_eq!(net.clip_gradient_norm(max_norm).unwrap(), norm);
    assert_relative_eq!(
        net.gradient_norm(),
        f64::from(max_norm),
        max_relative = 1e-5
    );
    for (clipped, original) in gradients(&net)
        .iter()
        .flatten()
        .zip(before.iter().flatten())
    {
        assert_relative_eq!(*clipped, 0.25 * original, max_relative = 1e-5);
    }
}

#[test]
fn clip_gradient_norm_keeps_small_gradients() {
    let mut net = network_with_gradients(33);
    let before = gradients(&net);
    let norm = net.gradient_norm();

    // The f32 limit rounded up, so that the norm is at most the limit.
    let limit = (norm as f32).next_up();
    assert_eq!(net.clip_gradient_norm(limit).unwrap(), norm);
    assert_eq!(net.clip_gradient_norm(2.0 * limit).unwrap(), norm);
    assert_eq!(gradients(&net), before);
}

#[test]
fn clip_gradient_norm_above_f32_max() {
    // Two gradients of 3e38 are finite, but their norm, 4.2e38, is above f32::MAX: it is
    // still returned, and the gradients are still clipped.
    let mut net = network_with_gradients(36);
    for (grad_weights, grad_bias) in net.gradients_mut() {
        grad_weights.into_mut_slice().unwrap().fill(0.0);
        grad_bias.fill(0.0);
    }
    let (grad_weights, _) = net.gradients_mut().next().unwrap();
    grad_weights.into_mut_slice().unwrap()[..2].fill(3e38);

    let norm = net.clip_gradient_norm(1.0).unwrap();
    assert_relative_eq!(norm, 3e38 * 2f64.sqrt(), max_relative = 1e-6);
    assert_relative_eq!(net.gradient_norm(), 1.0, max_relative = 1e-6);
    let first = &gradients(&net)[0];
    assert_relative_eq!(first[0], 0.5f32.sqrt(), max_relative = 1e-6);
    assert_relative_eq!(first[1], 0.5f32.sqrt(), max_relative = 1e-6);
}

#[test]
fn clip_gradient_norm_non_finite_unchanged() {
    let mut net = network_with_gradients(34);
    let (_, grad_bias) = net.gradients_mut().next_back().unwrap();
    grad_bias[1] = f32::INFINITY;
    let before = gradients(&net);

    assert_eq!(net.clip_gradient_norm(1.0).unwrap(), f64::INFINITY);
    assert_eq!(gradients(&net), before);

    let (_, grad_bias) = net.gradients_mut().next().unwrap();
    grad_bias[0] = f32::NAN;
    assert!(net.clip_gradient_norm(1.0).unwrap().is_nan());
    let after = gradients(&net);
    assert!(after[1][0].is_nan());
    assert_eq!(after[0], before[0]);
    assert_eq!(after[2..], before[2..]);
}

#[test]
fn clip_gradient_norm_bad_max_norm() {
    let mut net = network_with_gradients(35);
    let before = gradients(&net);
    for max_norm in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = net.clip_gradient_norm(max_norm).unwrap_err();
        assert_invalid_argument(&err, "max_norm");
        assert_eq!(gradients(&net), before);
    }
}

#[test]
fn accumulate_gradients_one_part_equals_compute() {
    // A micro-batch that is the whole batch, added to zeroed gradients, gives the
    // gradients of compute_gradients bit for bit.
    let (_, x, classes) = class_batch(31, 9, 4, 3);
    let targets = Targets::Classes(&classes);
    let mut computed = network(&[4, 6, 3], Activation::Relu, Loss::SoftmaxCrossEntropy, 31);
    let mut accumulated = computed.clone();

    let loss = computed.compute_gradients(x.as_ref(), targets).unwrap();
    accumulated.compute_gradients(x.as_ref(), targets).unwrap();
    accumulated.zero_gradients();
    assert!(gradients(&accumulated).iter().flatten().all(|&g| g == 0.0));
    let part_loss = accumulated
        .accumulate_gradients(x.as_ref(), targets, 9)
        .unwrap();
    assert_eq!(part_loss.to_bits(), loss.to_bits());
    assert_eq!(gradients(&accumulated), gradients(&computed));
}

#[test]
fn accumulate_gradients_parts_match_whole_batch() {
    // 37 rows in parts of 16, 16 and 5, for each loss and on one and two threads: the
    // summed gradients match those of the whole batch, and the weighted losses its loss.
    let (m, n_in, n_out) = (37, 5, 3);
    let parts = [(0, 16), (16, 16), (32, 5)];
    let (mut rng, x, classes) = class_batch(32, m, n_in, n_out);
    let y = random_matrix(&mut rng, m, n_out);
    let probabilities = Matrix::from_fn(m, n_out, |i, j| 0.5 + 0.5 * y.get(i, j).unwrap());

    for loss in [
        Loss::SoftmaxCrossEntropy,
        Loss::BinaryCrossEntropy,
        Loss::MeanSquaredError,
    ] {
        let targets_of = |rows: (usize, usize)| match loss {
            Loss::SoftmaxCrossEntropy => Targets::Classes(&classes[rows.0..rows.0 + rows.1]),
            Loss::BinaryCrossEntropy => Targets::Dense(
                probabilities
                    .as_ref()
                    .submatrix(rows.0, 0, rows.1, n_out)
                    .unwrap(),
            ),
            Loss::MeanSquaredError => {
                Targets::Dense(y.as_ref().submatrix(rows.0, 0, rows.1, n_out).unwrap())
            }
        };
        for par in [Parallelism::Sequential, Parallelism::Rayon(2)] {
            let mut whole = network(&[n_in, 8, n_out], Activation::Tanh, loss, 33);
            whole.set_parallelism(par);
            let mut net = whole.clone();
            let whole_loss = whole
                .compute_gradients(x.as_ref(), targets_of((0, m)))
                .unwrap();

            net.zero_gradients();
            let mut loss_sum = 0.0f64;
            for rows in parts {
                let part = x.as_ref().submatrix(rows.0, 0, rows.1, n_in).unwrap();
                let part_loss = net.accumulate_gradients(part, targets_of(rows), m).unwrap();
                loss_sum += f64::from(part_loss) * rows.1 as f64 / m as f64;
            }
            let context = format!("{loss:?} {par:?}");
            assert_relative_eq!(loss_sum as f32, whole_loss, max_relative = 1e-5);
            for (g, w) in gradients(&net)
                .iter()
                .flatten()
                .zip(gradients(&whole).iter().flatten())
            {
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{context}: {g} against {w}"
                );
            }
        }
    }
}

#[test]
fn accumulate_gradients_bad_input_changes_nothing() {
    let (x, y, mut net) = mean_squared_setup(34, 34);
    net.compute_gradients(x.as_ref(), Targets::Dense(y.as_ref()))
        .unwrap();
    let (before, computed) = (parameters(&net), gradients(&net));

    let err = net
        .accumulate_gradients(x.as_ref(), Targets::Dense(y.as_ref()), 5)
        .unwrap_err();
    assert_invalid_argument(&err, "total_rows");
    assert!(
        err.to_string().contains("5 is fewer than the 6 rows"),
        "{err}"
    );

    let short = y.as_ref().submatrix(0, 0, 5, 2).unwrap();
    let err = net
        .accumulate_gradients(x.as_ref(), Targets::Dense(short), 12)
        .unwrap_err();
    assert_shape_mismatch(&err, "targets");

    let empty = x.as_ref().submatrix(0, 0, 0, 4).unwrap();
    let no_targets = y.as_ref().submatrix(0, 0, 0, 2).unwrap();
    let err = net
        .accumulate_gradients(empty, Targets::Dense(no_targets), 12)
        .unwrap_err();
    assert_invalid_argument(&err, "x");

    assert_eq!(gradients(&net), computed);
    assert_eq!(parameters(&net), before);
}
