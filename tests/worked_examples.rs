//! The worked examples of backpropagation through small networks, with their exact values.

use densegrad::loss::{self, Targets};
use densegrad::{Activation, MatRef, Matrix, reference};

const TOLERANCE: f32 = 1e-6;

fn matrix(rows: usize, cols: usize, data: &[f32]) -> Matrix {
    Matrix::from_vec(data.to_vec(), rows, cols).unwrap()
}

fn assert_values(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= TOLERANCE,
            "{what}[{index}]: got {a}, expected {e}"
        );
    }
}

/// x = [1, 2] → ReLU layer W¹ → identity layer W² → ŷ, loss ½(y − ŷ)² with y = 5.
#[test]
fn two_layer_network() {
    let x = matrix(1, 2, &[1.0, 2.0]);
    let w1 = matrix(2, 2, &[0.1, 0.4, 0.3, 0.6]);
    let w2 = matrix(1, 2, &[0.5, 0.7]);
    let y = matrix(1, 1, &[5.0]);

    let mut z1 = Matrix::zeros(1, 2);
    reference::dense_forward(
        x.as_ref(),
        w1.as_ref(),
        &[0.0; 2],
        Activation::Identity,
        z1.as_mut(),
    )
    .unwrap();
    assert_values("z1", z1.as_slice(), &[0.9, 1.5]);
    let mut a1 = Matrix::zeros(1, 2);
    Activation::Relu.forward(z1.as_ref(), a1.as_mut()).unwrap();

    let mut y_hat = Matrix::zeros(1, 1);
    reference::dense_forward(
        a1.as_ref(),
        w2.as_ref(),
        &[0.0],
        Activation::Identity,
        y_hat.as_mut(),
    )
    .unwrap();
    assert_values("y_hat", y_hat.as_slice(), &[1.5]);

    let mut delta2 = Matrix::zeros(1, 1);
    let c = loss::mean_squared_error(y_hat.as_ref(), y.as_ref(), delta2.as_mut()).unwrap();
    assert_values("C", &[c], &[6.125]);
    assert_values("dC/dy_hat", delta2.as_slice(), &[-3.5]);

    let layer2 =
        reference::dense_backward(a1.as_ref(), w2.as_ref(), delta2.as_ref(), Activation::Relu)
            .unwrap();
    assert_values("grad W2", layer2.grad_weights.as_slice(), &[-3.15, -5.25]);
    assert_values("delta1", layer2.delta_prev.as_slice(), &[-1.75, -2.45]);

    // The same delta¹ from the optimised ReLU derivative: (δ²·W²) ∘ [a¹ > 0].
    let mut delta1 = Matrix::zeros(1, 2);
    reference::gemm(1.0, delta2.as_ref(), w2.as_ref(), 0.0, delta1.as_mut()).unwrap();
    Activation::Relu
        .backward(a1.as_ref(), delta1.as_mut())
        .unwrap();
    assert_values("delta1 via Activation", delta1.as_slice(), &[-1.75, -2.45]);

    let layer1 = reference::dense_backward(
        x.as_ref(),
        w1.as_ref(),
        delta1.as_ref(),
        Activation::Identity,
    )
    .unwrap();
    assert_values(
        "grad W1",
        layer1.grad_weights.as_slice(),
        &[-1.75, -3.5, -2.45, -4.9],
    );
}

/// δ aᵀ for δ = [0.2, −0.1] and a = [0.5, 0.3, 0.7].
#[test]
fn outer_product() {
    let delta = matrix(1, 2, &[0.2, -0.1]);
    let a = matrix(1, 3, &[0.5, 0.3, 0.7]);
    let expected = [0.1, 0.06, 0.14, -0.05, -0.03, -0.07];

    let mut product = Matrix::zeros(2, 3);
    reference::gemm(1.0, delta.as_ref().t(), a.as_ref(), 0.0, product.as_mut()).unwrap();
    assert_values("δ aᵀ", product.as_slice(), &expected);

    // The weight gradient of a one-sample batch is the same outer product.
    let weights = Matrix::zeros(2, 3);
    let layer = reference::dense_backward(
        a.as_ref(),
        weights.as_ref(),
        delta.as_ref(),
        Activation::Identity,
    )
    .unwrap();
    assert_values("grad W", layer.grad_weights.as_slice(), &expected);
}

/// Sigmoid output with z = [2.2, −1.5], y = [1, 0] and loss ½‖a − y‖².
#[test]
fn sigmoid_output_layer() {
    let z = matrix(1, 2, &[2.2, -1.5]);
    let y = matrix(1, 2, &[1.0, 0.0]);

    let mut a = Matrix::zeros(1, 2);
    Activation::Sigmoid.forward(z.as_ref(), a.as_mut()).unwrap();
    assert_values("a", a.as_slice(), &[0.900250, 0.182426]);

    let mut derivative = matrix(1, 2, &[1.0, 1.0]);
    Activation::Sigmoid
        .backward(a.as_ref(), derivative.as_mut())
        .unwrap();
    assert_values("σ'", derivative.as_slice(), &[0.089800, 0.149146]);

    let mut delta = Matrix::zeros(1, 2);
    loss::mean_squared_error(a.as_ref(), y.as_ref(), delta.as_mut()).unwrap();
    Activation::Sigmoid
        .backward(a.as_ref(), delta.as_mut())
        .unwrap();
    assert_values("δ", delta.as_slice(), &[-0.0089576, 0.0272081]);
}

/// Cross-entropy of probabilities `a` against one-hot targets. The losses take logits:
/// `ln a` are logits whose softmax is `a` when `a` sums to 1, and `ln(a / (1 − a))` is the
/// logit whose sigmoid is `a`.
#[test]
fn cross_entropy_values() {
    for (probabilities, expected) in [
        ([0.7f32, 0.2, 0.1], 0.356675),
        ([0.2, 0.7, 0.1], 1.609438),
        ([0.8, 0.1, 0.1], 0.223144),
    ] {
        let logits: Vec<f32> = probabilities.iter().map(|a| a.ln()).collect();
        let logits = MatRef::from_slice(&logits, 1, 3).unwrap();
        let mut grad = Matrix::zeros(1, 3);
        let c = loss::softmax_cross_entropy(logits, Targets::Classes(&[0]), grad.as_mut()).unwrap();
        assert_values("cross-entropy", &[c], &[expected]);
    }

    // −ln 0.1 = ln 10 = 2.302585.
    for (a, expected) in [(0.9f32, 0.105361), (0.1, std::f32::consts::LN_10)] {
        let logit = matrix(1, 1, &[(a / (1.0 - a)).ln()]);
        let y = matrix(1, 1, &[1.0]);
        let mut grad = Matrix::zeros(1, 1);
        let c = loss::binary_cross_entropy(logit.as_ref(), y.as_ref(), grad.as_mut()).unwrap();
        assert_values("binary cross-entropy", &[c], &[expected]);
    }
}

/// The weight gradient of a batch equals the mean of the per-sample weight gradients.
#[test]
fn batch_gradient_is_mean_of_samples() {
    let x = matrix(3, 2, &[1.0, 2.0, -0.5, 0.25, 3.0, -1.0]);
    let y = matrix(3, 2, &[1.0, 0.0, 0.0, 1.0, 0.5, 0.5]);
    let weights = matrix(2, 2, &[0.1, 0.4, -0.3, 0.6]);
    let bias = [0.05, -0.02];

    let gradient = |x: &Matrix, y: &Matrix| {
        let mut a = Matrix::zeros(x.rows(), 2);
        reference::dense_forward(
            x.as_ref(),
            weights.as_ref(),
            &bias,
            Activation::Sigmoid,
            a.as_mut(),
        )
        .unwrap();
        let mut delta = Matrix::zeros(x.rows(), 2);
        loss::mean_squared_error(a.as_ref(), y.as_ref(), delta.as_mut()).unwrap();
        Activation::Sigmoid
            .backward(a.as_ref(), delta.as_mut())
            .unwrap();
        reference::dense_backward(
            x.as_ref(),
            weights.as_ref(),
            delta.as_ref(),
            Activation::Identity,
        )
        .unwrap()
    };

    let batch = gradient(&x, &y);
    let mut mean_weights = [0.0f32; 4];
    let mut mean_bias = [0.0f32; 2];
    for i in 0..3 {
        let sample_x = matrix(1, 2, &x.as_slice()[2 * i..2 * i + 2]);
        let sample_y = matrix(1, 2, &y.as_slice()[2 * i..2 * i + 2]);
        let sample = gradient(&sample_x, &sample_y);
        for (mean, g) in mean_weights.iter_mut().zip(sample.grad_weights.as_slice()) {
            *mean += g / 3.0;
        }
        for (mean, g) in mean_bias.iter_mut().zip(&sample.grad_bias) {
            *mean += g / 3.0;
        }
    }
    assert_values("grad W", batch.grad_weights.as_slice(), &mean_weights);
    assert_values("grad b", &batch.grad_bias, &mean_bias);
}
