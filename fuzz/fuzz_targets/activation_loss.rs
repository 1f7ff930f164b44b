//! Runs every activation (forward, in place, backward) and every loss on strided views built
//! from fuzzer bytes, and compares each result with the reference oracle.
//!
//! A returned error is fine when the oracle returns one too. A panic is a bug, and so is a
//! disagreement about whether the input is valid or a result outside the tolerance.

#![no_main]

#[path = "../../tests/common/strided.rs"]
mod strided;
#[path = "../../tests/common/tolerance.rs"]
mod tolerance;

use std::fmt::Debug;

use arbitrary::Arbitrary;
use densegrad::loss::{self, Targets};
use densegrad::{Activation, Error, Matrix, reference};
use libfuzzer_sys::fuzz_target;
use strided::Strided;
use tolerance::{
    LOSS_KINDS, LossKind, backward_tolerance, forward_tolerance, loss_tolerances, row_f64,
};

/// Largest row or column count, to keep each run fast.
const MAX_DIM: usize = 24;
/// Largest magnitude of a value: beyond it the squared error of two values could overflow
/// `f32`, and the comparison would test overflow rather than the kernels.
const MAX_VALUE: f32 = 1.0e4;

/// The layout of one view in its buffer.
#[derive(Arbitrary, Debug)]
struct LayoutSpec {
    offset: u8,
    row_stride: i8,
    col_stride: i8,
    /// Use `offset` and the buffer length as given, so the constructor may reject the view.
    raw: bool,
    /// Extra elements after the last one the view addresses.
    slack: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    activation: u8,
    slope: u16,
    operation: u8,
    rows: u8,
    cols: u8,
    first: LayoutSpec,
    second: LayoutSpec,
    output: LayoutSpec,
    values: Vec<u32>,
    classes: Vec<u8>,
}

/// Builds a buffer for `spec`, filled with values from `source` (cycled) through `map`.
fn buffer(
    spec: &LayoutSpec,
    rows: usize,
    cols: usize,
    source: &[u32],
    map: fn(u32) -> f32,
) -> Strided {
    let (row_stride, col_stride) = (isize::from(spec.row_stride), isize::from(spec.col_stride));
    let span = |n: usize, stride: isize| (n.saturating_sub(1)) as isize * stride;
    let low = span(rows, row_stride).min(0) + span(cols, col_stride).min(0);
    let high = span(rows, row_stride).max(0) + span(cols, col_stride).max(0);
    let (offset, len) = if spec.raw {
        (usize::from(spec.offset), usize::from(spec.slack))
    } else {
        let offset = usize::from(spec.offset % 4) + (-low) as usize;
        (
            offset,
            offset + high as usize + 1 + usize::from(spec.slack % 4),
        )
    };
    let data = (0..len)
        .map(|k| {
            if source.is_empty() {
                0.0
            } else {
                map(source[k % source.len()].wrapping_add(k as u32))
            }
        })
        .collect();
    Strided {
        data,
        offset,
        rows,
        cols,
        row_stride,
        col_stride,
    }
}

/// Any finite value, clamped to ±`MAX_VALUE`; NaN and infinities become 0.
fn finite_value(bits: u32) -> f32 {
    let x = f32::from_bits(bits);
    if x.is_finite() {
        x.clamp(-MAX_VALUE, MAX_VALUE)
    } else {
        0.0
    }
}

/// Maps bits to a probability in [0, 1], with 0 and 1 each chosen one time in 8.
fn probability(bits: u32) -> f32 {
    match bits % 8 {
        0 => 0.0,
        1 => 1.0,
        _ => (bits >> 8) as f32 / (1u32 << 24) as f32,
    }
}

fn assert_close(what: &str, actual: f32, expected: f64, tolerance: f64) {
    let error = (f64::from(actual) - expected).abs();
    assert!(
        error <= tolerance || f64::from(actual) == expected,
        "{what}: got {actual}, expected {expected}, error {error:e} > {tolerance:e}"
    );
}

/// Asserts that the kernel and the oracle agree on whether the input is valid.
fn assert_same_validity<T: Debug, U: Debug>(
    what: &str,
    result: &Result<T, Error>,
    oracle: &Result<U, Error>,
) {
    assert_eq!(
        result.is_ok(),
        oracle.is_ok(),
        "{what}: {result:?} vs oracle {oracle:?}"
    );
}

fn activation_of(input: &Input) -> Activation {
    match input.activation % 6 {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::LeakyRelu {
            // One slope in 8 is invalid (NaN or negative), and the rest lie in [0, 1].
            slope: match input.slope % 16 {
                0 => f32::NAN,
                1 => -0.5,
                _ => f32::from(input.slope) / f32::from(u16::MAX),
            },
        },
        3 => Activation::Sigmoid,
        4 => Activation::Tanh,
        _ => Activation::Softmax,
    }
}

fn check_forward(activation: Activation, input: &Input, rows: usize, cols: usize, in_place: bool) {
    let z = buffer(&input.first, rows, cols, &input.values, finite_value);
    let Ok(z_view) = z.try_view() else { return };
    let mut out = buffer(&input.output, rows, cols, &input.values, finite_value);
    let Ok(mut out_view) = out.try_view_mut() else {
        return;
    };

    let result = if in_place {
        out_view.copy_from(z_view).expect("shapes are equal");
        activation.forward_in_place(out_view.rb_mut())
    } else {
        activation.forward(z_view, out_view.rb_mut())
    };
    let mut expected = Matrix::zeros(rows, cols);
    let oracle = reference::activation_forward(activation, z_view, expected.as_mut());
    assert_same_validity(&format!("{activation:?} forward"), &result, &oracle);
    if result.is_err() {
        return;
    }

    let actual = out_view.as_ref().to_matrix();
    let z_values = z_view.to_matrix();
    for i in 0..rows {
        let z_row = row_f64(&z_values, i);
        for j in 0..cols {
            let e = f64::from(expected.get(i, j).unwrap());
            assert_close(
                &format!("{activation:?} forward ({i}, {j})"),
                actual.get(i, j).unwrap(),
                e,
                forward_tolerance(activation, e, &z_row, j),
            );
        }
    }
}

fn check_backward(activation: Activation, input: &Input, rows: usize, cols: usize) {
    let mut output = buffer(&input.first, rows, cols, &input.values, finite_value);
    // Half the runs take the derivative at a real forward output.
    if input.operation & 0x80 != 0 {
        let Ok(view) = output.try_view() else { return };
        let mut a = Matrix::zeros(rows, cols);
        if reference::activation_forward(activation, view, a.as_mut()).is_ok() {
            let Ok(mut target) = output.try_view_mut() else {
                return;
            };
            target.copy_from(a.as_ref()).expect("shapes are equal");
        }
    }
    let Ok(a_view) = output.try_view() else {
        return;
    };
    let mut delta = buffer(&input.second, rows, cols, &input.values, finite_value);
    let Ok(mut delta_view) = delta.try_view_mut() else {
        return;
    };
    let mut expected = delta_view.as_ref().to_matrix();
    let d_values = expected.clone();

    let result = activation.backward(a_view, delta_view.rb_mut());
    let oracle = reference::activation_backward(activation, a_view, expected.as_mut());
    assert_same_validity(&format!("{activation:?} backward"), &result, &oracle);
    if result.is_err() {
        return;
    }

    let actual = delta_view.as_ref().to_matrix();
    let a_values = a_view.to_matrix();
    for i in 0..rows {
        let (a, d) = (row_f64(&a_values, i), row_f64(&d_values, i));
        for j in 0..cols {
            let e = f64::from(expected.get(i, j).unwrap());
            assert_close(
                &format!("{activation:?} backward ({i}, {j})"),
                actual.get(i, j).unwrap(),
                e,
                backward_tolerance(activation, e, &a, &d, j),
            );
        }
    }
}

fn check_loss(input: &Input, rows: usize, cols: usize) {
    let kind = LOSS_KINDS[usize::from((input.operation >> 2) % 4)];
    let target_map = if kind == LossKind::MeanSquared {
        finite_value
    } else {
        probability
    };
    let logits = buffer(&input.first, rows, cols, &input.values, finite_value);
    let Ok(z) = logits.try_view() else { return };
    let targets = buffer(&input.second, rows, cols, &input.values, target_map);
    let Ok(y) = targets.try_view() else { return };
    let mut grad = buffer(&input.output, rows, cols, &input.values, finite_value);
    let Ok(mut grad_view) = grad.try_view_mut() else {
        return;
    };
    let classes: Vec<usize> = (0..rows)
        .map(|i| {
            input
                .classes
                .get(i)
                .map_or(0, |&c| usize::from(c) % (cols + 1))
        })
        .collect();

    let mut expected_grad = Matrix::zeros(rows, cols);
    let (result, oracle, y_matrix) = match kind {
        LossKind::MeanSquared => (
            loss::mean_squared_error(z, y, grad_view.rb_mut()),
            reference::mean_squared_error(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
        LossKind::SoftmaxClasses => {
            let one_hot = reference::one_hot(&classes, cols);
            let result =
                loss::softmax_cross_entropy(z, Targets::Classes(&classes), grad_view.rb_mut());
            let Ok(one_hot) = one_hot else {
                assert!(result.is_err(), "class out of range accepted: {classes:?}");
                return;
            };
            let oracle =
                reference::softmax_cross_entropy(z, one_hot.as_ref(), expected_grad.as_mut());
            (result, oracle, one_hot)
        }
        LossKind::SoftmaxDense => (
            loss::softmax_cross_entropy(z, Targets::Dense(y), grad_view.rb_mut()),
            reference::softmax_cross_entropy(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
        LossKind::Binary => (
            loss::binary_cross_entropy(z, y, grad_view.rb_mut()),
            reference::binary_cross_entropy(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
    };
    assert_same_validity(&format!("{kind:?} loss"), &result, &oracle);
    let (Ok(actual), Ok(expected)) = (result, oracle) else {
        return;
    };
    assert!(actual.is_finite(), "{kind:?} loss is {actual}");

    let (loss_tolerance, grad_tolerance) =
        loss_tolerances(kind, &z.to_matrix(), &y_matrix, expected);
    let actual_grad = grad_view.as_ref().to_matrix();
    for i in 0..rows {
        for j in 0..cols {
            let a = actual_grad.get(i, j).unwrap();
            assert!(a.is_finite(), "{kind:?} loss: grad ({i}, {j}) is {a}");
            assert_close(
                &format!("{kind:?} loss grad ({i}, {j})"),
                a,
                f64::from(expected_grad.get(i, j).unwrap()),
                grad_tolerance[i * cols + j],
            );
        }
    }
    assert_close(&format!("{kind:?} loss"), actual, expected, loss_tolerance);
}

fuzz_target!(|input: Input| {
    let rows = usize::from(input.rows) % (MAX_DIM + 1);
    let cols = usize::from(input.cols) % (MAX_DIM + 1);
    let activation = activation_of(&input);
    match input.operation % 4 {
        0 => check_forward(activation, &input, rows, cols, false),
        1 => check_forward(activation, &input, rows, cols, true),
        2 => check_backward(activation, &input, rows, cols),
        _ => check_loss(&input, rows, cols),
    }
});
