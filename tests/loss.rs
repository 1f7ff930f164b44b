//! Loss kernels against the reference oracle: random shapes, strided gradients, extreme
//! logits, batch averaging, finite differences and every error path.

mod common;

use common::*;
use densegrad::loss::{self, Targets};
use densegrad::{Error, MatMut, MatRef, Matrix, reference};
use proptest::prelude::*;

/// One loss problem: logits (or predictions), targets as a matrix, and class indices when
/// the targets are one-hot.
#[derive(Clone, Debug)]
struct Case {
    kind: LossKind,
    logits: Matrix,
    targets: Matrix,
    classes: Vec<usize>,
}

impl Case {
    /// Runs the optimised loss, writing into `grad`.
    fn run(&self, logits: MatRef<'_>, targets: MatRef<'_>, grad: MatMut<'_>) -> Result<f32, Error> {
        match self.kind {
            LossKind::MeanSquared => loss::mean_squared_error(logits, targets, grad),
            LossKind::SoftmaxClasses => {
                loss::softmax_cross_entropy(logits, Targets::Classes(&self.classes), grad)
            }
            LossKind::SoftmaxDense => {
                loss::softmax_cross_entropy(logits, Targets::Dense(targets), grad)
            }
            LossKind::Binary => loss::binary_cross_entropy(logits, targets, grad),
        }
    }

    /// Runs the oracle on the same inputs.
    fn run_reference(&self, logits: MatRef<'_>, grad: MatMut<'_>) -> f64 {
        let targets = self.targets.as_ref();
        match self.kind {
            LossKind::MeanSquared => reference::mean_squared_error(logits, targets, grad),
            LossKind::SoftmaxClasses | LossKind::SoftmaxDense => {
                reference::softmax_cross_entropy(logits, targets, grad)
            }
            LossKind::Binary => reference::binary_cross_entropy(logits, targets, grad),
        }
        .unwrap()
    }
}

fn case() -> impl Strategy<Value = Case> {
    let kind = prop::sample::select(LOSS_KINDS.to_vec());
    (kind, shape()).prop_flat_map(|(kind, (rows, cols))| {
        // A softmax needs at least one class.
        let cols = if kind == LossKind::MeanSquared || kind == LossKind::Binary {
            cols
        } else {
            cols.max(1)
        };
        let target = match kind {
            LossKind::MeanSquared => value().boxed(),
            LossKind::Binary | LossKind::SoftmaxDense => {
                prop_oneof![3 => 0.0f32..=1.0, 1 => prop::sample::select(vec![0.0f32, 1.0])].boxed()
            }
            LossKind::SoftmaxClasses => Just(0.0f32).boxed(),
        };
        (
            Just(kind),
            matrix_of(rows, cols, value()),
            matrix_of(rows, cols, target),
            prop::collection::vec(0..cols.max(1), rows),
        )
            .prop_map(|(kind, logits, targets, classes)| {
                let targets = if kind == LossKind::SoftmaxClasses {
                    reference::one_hot(&classes, logits.cols()).unwrap()
                } else {
                    targets
                };
                Case {
                    kind,
                    logits,
                    targets,
                    classes,
                }
            })
    })
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn loss_matches_oracle(
        case in case(),
        logits_layout in input_layout(),
        targets_layout in input_layout(),
        grad_layout in output_layout(),
    ) {
        let (rows, cols) = (case.logits.rows(), case.logits.cols());
        // A broadcast layout stores only one row, so the case's matrices are read back from
        // the views rather than used directly.
        let logits = Strided::new(&case.logits, logits_layout);
        let targets = Strided::new(&case.targets, targets_layout);
        let case = Case {
            logits: logits.view().to_matrix(),
            targets: if case.kind == LossKind::SoftmaxClasses { case.targets.clone() } else { targets.view().to_matrix() },
            ..case
        };
        let mut grad = Strided::new(&Matrix::zeros(rows, cols), grad_layout);
        let actual = case.run(logits.view(), targets.view(), grad.view_mut()).unwrap();

        let mut expected_grad = Matrix::zeros(rows, cols);
        let expected = case.run_reference(case.logits.as_ref(), expected_grad.as_mut());
        let (loss_tolerance, grad_tolerance) =
            loss_tolerances(case.kind, &case.logits, &case.targets, expected);

        prop_assert!(actual.is_finite(), "{:?}: loss {actual}", case.kind);
        assert_close("loss", 0, 0, actual, expected, loss_tolerance);
        let actual_grad = grad.view().to_matrix();
        for i in 0..rows {
            for j in 0..cols {
                let a = actual_grad.get(i, j).unwrap();
                prop_assert!(a.is_finite(), "{:?}: grad ({i}, {j}) is {a}", case.kind);
                let tolerance = grad_tolerance[i * cols + j];
                assert_close("grad", i, j, a, f64::from(expected_grad.get(i, j).unwrap()), tolerance);
            }
        }
        grad.assert_gaps_untouched();
    }

    #[test]
    fn batch_doubled_same_gradients(case in case(), inputs in 1usize..5) {
        let (rows, cols) = (case.logits.rows(), case.logits.cols());
        let doubled = Case {
            logits: concat_rows(&case.logits, &case.logits),
            targets: concat_rows(&case.targets, &case.targets),
            classes: [case.classes.clone(), case.classes.clone()].concat(),
            ..case.clone()
        };
        let mut delta = Matrix::zeros(rows, cols);
        let single_loss = case.run(case.logits.as_ref(), case.targets.as_ref(), delta.as_mut()).unwrap();
        let mut doubled_delta = Matrix::zeros(2 * rows, cols);
        let doubled_loss = doubled
            .run(doubled.logits.as_ref(), doubled.targets.as_ref(), doubled_delta.as_mut())
            .unwrap();
        prop_assert!((single_loss - doubled_loss).abs() <= 1e-6 * single_loss.abs().max(1e-30));

        // The layer gets the same weight and bias gradients: each row's delta halves
        // and every row appears twice.
        let x = Matrix::from_fn(rows, inputs, |i, k| (i as f32 - k as f32) * 0.25 + 0.5);
        let weights = Matrix::zeros(cols, inputs);
        let single = reference::dense_backward(x.as_ref(), weights.as_ref(), delta.as_ref(), densegrad::Activation::Identity).unwrap();
        let doubled_x = concat_rows(&x, &x);
        let both = reference::dense_backward(doubled_x.as_ref(), weights.as_ref(), doubled_delta.as_ref(), densegrad::Activation::Identity).unwrap();
        // Sums of deltas may cancel, so the tolerance scales with the sums of magnitudes.
        let abs = |m: &Matrix| Matrix::from_fn(m.rows(), m.cols(), |i, j| m.get(i, j).unwrap().abs());
        let magnitude = reference::dense_backward(abs(&x).as_ref(), weights.as_ref(), abs(&delta).as_ref(), densegrad::Activation::Identity).unwrap();
        let pairs = single.grad_weights.as_slice().iter().zip(both.grad_weights.as_slice());
        for ((a, b), scale) in pairs.zip(magnitude.grad_weights.as_slice()) {
            prop_assert!(f64::from((a - b).abs()) <= 4.0 * EPS * f64::from(*scale) + SUBNORMAL_SLACK, "grad_weights {a} vs {b}");
        }
        for ((a, b), scale) in single.grad_bias.iter().zip(&both.grad_bias).zip(&magnitude.grad_bias) {
            prop_assert!(f64::from((a - b).abs()) <= 4.0 * EPS * f64::from(*scale) + SUBNORMAL_SLACK, "grad_bias {a} vs {b}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences(
        kind in prop::sample::select(LOSS_KINDS.to_vec()),
        (rows, cols) in (1usize..4, 1usize..6),
        seed in any::<u64>(),
    ) {
        check_gradient(kind, rows, cols, seed);
    }
}

fn concat_rows(top: &Matrix, bottom: &Matrix) -> Matrix {
    let data = [top.as_slice(), bottom.as_slice()].concat();
    Matrix::from_vec(data, top.rows() + bottom.rows(), top.cols()).unwrap()
}

/// Compares each loss's gradient with central differences of the loss itself.
fn check_gradient(kind: LossKind, rows: usize, cols: usize, seed: u64) {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: deterministic values in [0, 1) without another dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let logits: Vec<f32> = (0..rows * cols).map(|_| 6.0 * next() - 3.0).collect();
    let classes: Vec<usize> = (0..rows)
        .map(|_| (next() * cols as f32) as usize % cols)
        .collect();
    let targets = match kind {
        LossKind::SoftmaxClasses => reference::one_hot(&classes, cols).unwrap(),
        _ => Matrix::from_fn(rows, cols, |_, _| next()),
    };
    let case = Case {
        kind,
        logits: Matrix::from_vec(logits.clone(), rows, cols).unwrap(),
        targets,
        classes,
    };

    let loss = |z: &[f32]| -> f64 {
        let z = Matrix::from_vec(z.to_vec(), rows, cols).unwrap();
        let mut grad = Matrix::zeros(rows, cols);
        f64::from(
            case.run(z.as_ref(), case.targets.as_ref(), grad.as_mut())
                .unwrap(),
        )
    };
    let numerical = reference::numerical_gradient(loss, &logits, 1e-2).unwrap();
    let mut analytic = Matrix::zeros(rows, cols);
    case.run(
        case.logits.as_ref(),
        case.targets.as_ref(),
        analytic.as_mut(),
    )
    .unwrap();

    for (index, (&exact, &estimate)) in analytic.as_slice().iter().zip(&numerical).enumerate() {
        let error = (f64::from(exact) - estimate).abs();
        assert!(
            error <= 2e-3 * (1.0 + estimate.abs()),
            "{kind:?} element {index}: gradient {exact}, finite difference {estimate}"
        );
    }
}

fn matrix(rows: usize, cols: usize, data: &[f32]) -> Matrix {
    Matrix::from_vec(data.to_vec(), rows, cols).unwrap()
}

#[test]
fn softmax_extreme_logits_exact() {
    let z = matrix(2, 2, &[1000.0, -1000.0, 1000.0, -1000.0]);
    let mut grad = Matrix::zeros(2, 2);
    let c =
        loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[0, 1]), grad.as_mut()).unwrap();
    // Row 0 is certain and right (loss 0), row 1 certain and wrong (loss 2000).
    assert_eq!(c, 1000.0);
    assert_eq!(grad.as_slice(), &[0.0, 0.0, 0.5, -0.5]);
}

#[test]
fn binary_extreme_logits_exact() {
    let z = matrix(1, 4, &[1000.0, -1000.0, 1000.0, -1000.0]);
    let y = matrix(1, 4, &[1.0, 0.0, 0.0, 1.0]);
    let mut grad = Matrix::zeros(1, 4);
    let c = loss::binary_cross_entropy(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap();
    assert_eq!(c, 2000.0);
    assert_eq!(grad.as_slice(), &[0.0, 0.0, 1.0, -1.0]);
}

#[test]
fn empty_batch_zero_loss() {
    let z = Matrix::zeros(0, 3);
    let mut grad = Matrix::zeros(0, 3);
    let c = loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[]), grad.as_mut()).unwrap();
    assert_eq!(c, 0.0);
    let c = loss::mean_squared_error(z.as_ref(), z.as_ref(), grad.as_mut()).unwrap();
    assert_eq!(c, 0.0);
}

#[test]
fn class_out_of_range_names_row() {
    let z = Matrix::zeros(3, 4);
    let mut grad = Matrix::zeros(3, 4);
    let err = loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[0, 3, 4]), grad.as_mut())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "targets: row 2: class index 4 is out of range for 4 classes"
    );
}

#[test]
fn nan_target_names_row() {
    let z = Matrix::zeros(2, 2);
    let y = matrix(2, 2, &[0.0, 1.0, 0.5, f32::NAN]);
    let mut grad = matrix(2, 2, &[7.0; 4]);
    for err in [
        loss::mean_squared_error(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap_err(),
        loss::softmax_cross_entropy(z.as_ref(), Targets::Dense(y.as_ref()), grad.as_mut())
            .unwrap_err(),
        loss::binary_cross_entropy(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::InvalidValue {
                    operand: "targets",
                    row: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Validation runs before anything is written.
    assert_eq!(grad.as_slice(), &[7.0; 4]);
}

#[test]
fn non_finite_logit_names_row() {
    let z = matrix(3, 1, &[0.0, 1.0, f32::INFINITY]);
    let y = Matrix::zeros(3, 1);
    let mut grad = Matrix::zeros(3, 1);
    let errors = [
        loss::mean_squared_error(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap_err(),
        loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[0, 0, 0]), grad.as_mut())
            .unwrap_err(),
        loss::binary_cross_entropy(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap_err(),
    ];
    assert!(matches!(
        errors[0],
        Error::InvalidValue {
            operand: "predictions",
            row: 2,
            ..
        }
    ));
    assert!(matches!(
        errors[1],
        Error::InvalidValue {
            operand: "logits",
            row: 2,
            ..
        }
    ));
    assert!(matches!(
        errors[2],
        Error::InvalidValue {
            operand: "logits",
            row: 2,
            ..
        }
    ));
}

#[test]
fn binary_target_outside_unit_interval() {
    let z = Matrix::zeros(1, 2);
    let y = matrix(1, 2, &[0.5, 1.5]);
    let mut grad = Matrix::zeros(1, 2);
    let err = loss::binary_cross_entropy(z.as_ref(), y.as_ref(), grad.as_mut()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "targets: row 0: column 1 is 1.5, expected a probability in [0, 1]"
    );
}

#[test]
fn shape_mismatches_name_operand() {
    let z = Matrix::zeros(2, 3);
    let wrong = Matrix::zeros(3, 2);
    let mut grad = Matrix::zeros(2, 3);
    let mut wrong_grad = Matrix::zeros(2, 2);

    let err = loss::mean_squared_error(z.as_ref(), wrong.as_ref(), grad.as_mut()).unwrap_err();
    assert_eq!(err.to_string(), "targets: expected 2 × 3, got 3 × 2");
    let err = loss::binary_cross_entropy(z.as_ref(), z.as_ref(), wrong_grad.as_mut()).unwrap_err();
    assert_eq!(err.to_string(), "grad: expected 2 × 3, got 2 × 2");
    let err =
        loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[0]), grad.as_mut()).unwrap_err();
    assert_eq!(err.to_string(), "targets: expected length 2, got 1");
    let err =
        loss::softmax_cross_entropy(z.as_ref(), Targets::Dense(wrong.as_ref()), grad.as_mut())
            .unwrap_err();
    assert_shape_mismatch(&err, "targets");
}

#[test]
fn softmax_without_classes_rejected() {
    let z = Matrix::zeros(2, 0);
    let mut grad = Matrix::zeros(2, 0);
    let err = loss::softmax_cross_entropy(z.as_ref(), Targets::Classes(&[0, 0]), grad.as_mut())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                operand: "logits",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn softmax_cross_entropy_rejects_negative_target() {
    let logits = [0.5, -1.0, 2.0];
    let targets = [-1.0, 0.0, 2.0];
    let mut grad = [7.0; 3];
    let err = loss::softmax_cross_entropy(
        MatRef::from_slice(&logits, 1, 3).unwrap(),
        Targets::Dense(MatRef::from_slice(&targets, 1, 3).unwrap()),
        MatMut::from_slice(&mut grad, 1, 3).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidValue {
                operand: "targets",
                row: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(grad, [7.0; 3]);
}

#[test]
fn value_check_finds_every_position() {
    // 70 columns span two full scan chunks and a partial one; the transposed view takes the
    // strided path. Every bad value at every position must be reported where it is, and the
    // largest finite values and the bounds of [0, 1] must pass.
    let (rows, cols) = (3, 70);
    let not_finite = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let bad_probabilities = [f32::NAN, -0.01, 1.01, f32::INFINITY];
    let mut grad = Matrix::zeros(rows, cols);

    for transposed in [false, true] {
        fn view(data: &Matrix, transposed: bool) -> MatRef<'_> {
            if transposed {
                MatRef::from_slice(data.as_slice(), data.cols(), data.rows())
                    .unwrap()
                    .t()
            } else {
                data.as_ref()
            }
        }
        let mut good = Matrix::from_fn(rows, cols, |i, j| ((i * cols + j) % 3) as f32 * 0.5);
        *good.as_mut().get_mut(0, 0).unwrap() = f32::MAX;
        *good.as_mut().get_mut(1, 0).unwrap() = f32::MIN;
        let zeros_and_ones = Matrix::from_fn(rows, cols, |i, j| ((i + j) % 2) as f32);
        loss::mean_squared_error(
            view(&good, transposed),
            view(&good, transposed),
            grad.as_mut(),
        )
        .unwrap();
        loss::binary_cross_entropy(
            view(&zeros_and_ones, transposed),
            view(&zeros_and_ones, transposed),
            grad.as_mut(),
        )
        .unwrap();

        type LossFn = fn(MatRef, MatRef, MatMut) -> Result<f32, Error>;
        let cases: [(&[f32], LossFn, &str); 2] = [
            (&not_finite, loss::mean_squared_error, "a finite number"),
            (
                &bad_probabilities,
                loss::binary_cross_entropy,
                "a probability in [0, 1]",
            ),
        ];
        for (bad_values, loss_fn, expected) in cases {
            for row in 0..rows {
                for col in 0..cols {
                    for &value in bad_values {
                        let mut y = zeros_and_ones.clone();
                        let index = if transposed {
                            col * rows + row
                        } else {
                            row * cols + col
                        };
                        y.as_mut_slice()[index] = value;
                        let err = loss_fn(
                            view(&zeros_and_ones, transposed),
                            view(&y, transposed),
                            grad.as_mut(),
                        )
                        .unwrap_err();
                        assert_eq!(
                            err.to_string(),
                            format!(
                                "targets: row {row}: column {col} is {value}, expected {expected}"
                            )
                        );
                    }
                }
            }
        }
    }
}
