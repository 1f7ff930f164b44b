//! The oracle's own checks: shape errors of the dense layer, the finite-difference step, and
//! one-hot targets.

mod common;

use common::assert_invalid_argument;
use densegrad::{Activation, Error, Matrix, reference};

#[test]
fn dense_forward_shape_errors() {
    let x = Matrix::zeros(4, 3);
    let weights = Matrix::zeros(2, 3);
    let mut out = Matrix::zeros(4, 2);

    let wrong_weights = Matrix::zeros(2, 4);
    let err = reference::dense_forward(
        x.as_ref(),
        wrong_weights.as_ref(),
        &[0.0; 2],
        Activation::Relu,
        out.as_mut(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "weights: expected 2 × 3, got 2 × 4");

    let err = reference::dense_forward(
        x.as_ref(),
        weights.as_ref(),
        &[0.0; 3],
        Activation::Relu,
        out.as_mut(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "bias: expected length 2, got 3");

    let mut wrong_out = Matrix::zeros(2, 4);
    let err = reference::dense_forward(
        x.as_ref(),
        weights.as_ref(),
        &[0.0; 2],
        Activation::Relu,
        wrong_out.as_mut(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "out: expected 4 × 2, got 2 × 4");
}

#[test]
fn dense_backward_shape_errors() {
    let x = Matrix::zeros(4, 3);
    let weights = Matrix::zeros(2, 3);
    let delta = Matrix::zeros(4, 3);
    let err = reference::dense_backward(
        x.as_ref(),
        weights.as_ref(),
        delta.as_ref(),
        Activation::Identity,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "delta: expected 4 × 2, got 4 × 3");
}

#[test]
fn dense_backward_softmax_input() {
    // With a softmax below, delta_prev is the softmax Jacobian-vector product of δ·W.
    let x = Matrix::from_vec(vec![0.25, 0.75], 1, 2).unwrap();
    let weights = Matrix::from_vec(vec![1.0, 0.0], 1, 2).unwrap();
    let delta = Matrix::from_vec(vec![1.0], 1, 1).unwrap();
    let grads = reference::dense_backward(
        x.as_ref(),
        weights.as_ref(),
        delta.as_ref(),
        Activation::Softmax,
    )
    .unwrap();
    assert_eq!(grads.delta_prev.as_slice(), &[0.1875, -0.1875]);
    assert_eq!(grads.grad_weights.as_slice(), &[0.25, 0.75]);
    assert_eq!(grads.grad_bias, [1.0]);
}

#[test]
fn numerical_gradient_step_errors() {
    let f = |x: &[f32]| f64::from(x[0]);
    for step in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = reference::numerical_gradient(f, &[1.0], step).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    operand: "step",
                    ..
                }
            ),
            "step {step}: {err}"
        );
    }
    // 1e30 ± 1e-2 rounds back to 1e30, so the step cannot move the coordinate.
    let err = reference::numerical_gradient(f, &[0.0, 1e30], 1e-2).unwrap_err();
    assert!(err.to_string().contains("coordinate 1"), "{err}");
}

#[test]
fn numerical_gradient_of_quadratic() {
    let f = |x: &[f32]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
    let grad = reference::numerical_gradient(f, &[1.0, -2.0, 0.5], 1e-2).unwrap();
    for (g, expected) in grad.iter().zip([2.0, -4.0, 1.0]) {
        assert!((g - expected).abs() < 1e-5, "{g} vs {expected}");
    }
}

#[test]
fn one_hot_rows_and_range() {
    let y = reference::one_hot(&[2, 0], 3).unwrap();
    assert_eq!(y.as_slice(), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    let err = reference::one_hot(&[0, 3], 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "targets: row 1: class index 3 is out of range for 3 classes"
    );
}

#[test]
fn activation_oracle_rejects_negative_slope() {
    let z = Matrix::zeros(1, 1);
    let mut out = Matrix::zeros(1, 1);
    let err = reference::activation_forward(
        Activation::LeakyRelu { slope: -0.1 },
        z.as_ref(),
        out.as_mut(),
    )
    .unwrap_err();
    assert_invalid_argument(&err, "slope");
}
