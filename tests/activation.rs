//! Activation kernels against the reference oracle: random shapes, strided and transposed
//! views, extreme values, and finite-difference checks of every derivative.

mod common;

use common::*;
use densegrad::{Activation, MatMut, Matrix, reference};
use proptest::prelude::*;

const ALL: [Activation; 7] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.01 },
    Activation::LeakyRelu { slope: 0.0 },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Softmax,
];

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(ALL.to_vec())
}

fn forward_case() -> impl Strategy<Value = (Activation, Matrix, Layout, Layout)> {
    (activation(), shape(), input_layout(), output_layout()).prop_flat_map(
        |(activation, (rows, cols), input, output)| {
            (
                Just(activation),
                matrix_of(rows, cols, value()),
                Just(input),
                Just(output),
            )
        },
    )
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn forward_matches_oracle((activation, z, z_layout, out_layout) in forward_case()) {
        let z = Strided::new(&z, z_layout);
        let (rows, cols) = (z.rows, z.cols);
        let mut out = Strided::new(&Matrix::zeros(rows, cols), out_layout);
        activation.forward(z.view(), out.view_mut()).unwrap();

        let mut expected = Matrix::zeros(rows, cols);
        reference::activation_forward(activation, z.view(), expected.as_mut()).unwrap();
        let actual = out.view().to_matrix();
        let z_values = z.view().to_matrix();
        for i in 0..rows {
            let z_row = row_f64(&z_values, i);
            for j in 0..cols {
                let e = f64::from(expected.get(i, j).unwrap());
                let a = actual.get(i, j).unwrap();
                prop_assert!(a.is_finite(), "{activation:?} ({i}, {j}) is {a}");
                assert_close("forward", i, j, a, e, forward_tolerance(activation, e, &z_row, j));
            }
        }
        out.assert_gaps_untouched();
    }

    #[test]
    fn forward_in_place_matches_out_of_place((activation, z, _, layout) in forward_case()) {
        let mut expected = Matrix::zeros(z.rows(), z.cols());
        activation.forward(z.as_ref(), expected.as_mut()).unwrap();

        let mut in_place = Strided::new(&z, layout);
        activation.forward_in_place(in_place.view_mut()).unwrap();
        prop_assert_eq!(in_place.view().to_matrix(), expected);
        in_place.assert_gaps_untouched();
    }

    #[test]
    fn backward_matches_oracle(
        (activation, z, delta, a_layout, d_layout) in forward_case().prop_flat_map(
            |(activation, z, a_layout, d_layout)| {
                let (rows, cols) = (z.rows(), z.cols());
                (Just(activation), Just(z), matrix_of(rows, cols, value()), Just(a_layout), Just(d_layout))
            },
        )
    ) {
        // The derivative is taken at a real forward output.
        let mut a = Matrix::zeros(z.rows(), z.cols());
        reference::activation_forward(activation, z.as_ref(), a.as_mut()).unwrap();
        let a = Strided::new(&a, a_layout);
        let mut actual = Strided::new(&delta, d_layout);
        activation.backward(a.view(), actual.view_mut()).unwrap();

        let mut expected = delta.clone();
        reference::activation_backward(activation, a.view(), expected.as_mut()).unwrap();
        let actual_values = actual.view().to_matrix();
        let a_values = a.view().to_matrix();
        for i in 0..delta.rows() {
            let (a_row, d_row) = (row_f64(&a_values, i), row_f64(&delta, i));
            for j in 0..delta.cols() {
                let e = f64::from(expected.get(i, j).unwrap());
                let tolerance = backward_tolerance(activation, e, &a_row, &d_row, j);
                assert_close("backward", i, j, actual_values.get(i, j).unwrap(), e, tolerance);
            }
        }
        actual.assert_gaps_untouched();
    }

    #[test]
    fn derivative_matches_finite_differences(
        activation in activation(),
        (rows, cols) in (1usize..3, 1usize..7),
        seed in any::<u64>(),
    ) {
        check_derivative(activation, rows, cols, seed);
    }
}

/// Compares `backward` with central differences of `L(z) = Σ w ∘ f(z)` for random `z` and
/// weights `w`, so `∂L/∂z = w ∘ f'(z)` (a Jacobian-vector product for softmax).
fn check_derivative(activation: Activation, rows: usize, cols: usize, seed: u64) {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: deterministic values in [−1, 1) without another dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    // Keep |z| ≥ 0.1 so the step of 0.01 never crosses the kink of ReLU at 0.
    let z: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let x = 3.0 * next();
            if x.abs() < 0.1 {
                x.signum() * 0.1 + x
            } else {
                x
            }
        })
        .collect();
    let weights = Matrix::from_fn(rows, cols, |_, _| next());

    let loss = |z: &[f32]| -> f64 {
        let z = Matrix::from_vec(z.to_vec(), rows, cols).unwrap();
        let mut a = Matrix::zeros(rows, cols);
        activation.forward(z.as_ref(), a.as_mut()).unwrap();
        a.as_slice()
            .iter()
            .zip(weights.as_slice())
            .map(|(&a, &w)| f64::from(a) * f64::from(w))
            .sum()
    };
    let numerical = reference::numerical_gradient(loss, &z, 1e-2).unwrap();

    let z_matrix = Matrix::from_vec(z.clone(), rows, cols).unwrap();
    let mut a = Matrix::zeros(rows, cols);
    activation.forward(z_matrix.as_ref(), a.as_mut()).unwrap();
    let mut analytic = weights.clone();
    activation.backward(a.as_ref(), analytic.as_mut()).unwrap();

    for (index, (&exact, &estimate)) in analytic.as_slice().iter().zip(&numerical).enumerate() {
        let error = (f64::from(exact) - estimate).abs();
        assert!(
            error <= 2e-3 * (1.0 + estimate.abs()),
            "{activation:?} element {index}: backward {exact}, finite difference {estimate}"
        );
    }
}

#[test]
fn sigmoid_tanh_extremes_finite() {
    let z = Matrix::from_vec(vec![1000.0, -1000.0, 88.8, -88.8, 1e-40, -0.0], 1, 6).unwrap();
    for activation in [Activation::Sigmoid, Activation::Tanh] {
        let mut a = Matrix::zeros(1, 6);
        activation.forward(z.as_ref(), a.as_mut()).unwrap();
        assert!(
            a.as_slice().iter().all(|a| a.is_finite()),
            "{activation:?}: {a:?}"
        );
    }
}

#[test]
fn softmax_rows_sum_to_one() {
    let z = Matrix::from_fn(3, 37, |i, j| (i as f32 - 1.0) * 1000.0 + j as f32 * 0.37);
    let mut a = Matrix::zeros(3, 37);
    Activation::Softmax.forward(z.as_ref(), a.as_mut()).unwrap();
    for row in a.as_ref().rows_iter() {
        let sum: f64 = (0..37).map(|j| f64::from(row.get(0, j).unwrap())).sum();
        assert!((sum - 1.0).abs() < 40.0 * EPS, "row sum {sum}");
    }
}

#[test]
fn forward_shape_mismatch_names_out() {
    let z = Matrix::zeros(2, 3);
    let mut out = Matrix::zeros(3, 2);
    let err = Activation::Relu
        .forward(z.as_ref(), out.as_mut())
        .unwrap_err();
    assert_eq!(err.to_string(), "out: expected 2 × 3, got 3 × 2");
}

#[test]
fn backward_shape_mismatch_names_delta() {
    let a = Matrix::zeros(2, 3);
    let mut delta = Matrix::zeros(2, 4);
    let err = Activation::Tanh
        .backward(a.as_ref(), delta.as_mut())
        .unwrap_err();
    assert_shape_mismatch(&err, "delta");
}

#[test]
fn leaky_relu_nan_slope_rejected() {
    let z = Matrix::zeros(1, 1);
    let mut out = Matrix::zeros(1, 1);
    let slope = Activation::LeakyRelu { slope: f32::NAN };
    let err = slope.forward(z.as_ref(), out.as_mut()).unwrap_err();
    assert_invalid_argument(&err, "slope");
    let err = slope.backward(z.as_ref(), out.as_mut()).unwrap_err();
    assert_invalid_argument(&err, "slope");
}

#[test]
fn relu_backward_zero_at_signed_zeros() {
    let mut data = [0.0f32, -0.0, 2.0];
    let a = MatMut::from_slice(&mut data, 1, 3).unwrap();
    let mut delta = Matrix::from_vec(vec![1.0, 1.0, 1.0], 1, 3).unwrap();
    Activation::Relu
        .backward(a.as_ref(), delta.as_mut())
        .unwrap();
    assert_eq!(delta.as_slice(), &[0.0, 0.0, 1.0]);
}
