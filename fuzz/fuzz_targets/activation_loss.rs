//! Runs every activation (forward, in place, backward) and every loss on strided views built
//! from fuzzer bytes, and compares each result with the reference oracle.
//!
//! A returned error is fine when the oracle returns one too. A panic is a bug, and so is a
//! disagreement about whether the input is valid or a result outside the tolerance.

#![no_main]

use arbitrary::Arbitrary;
use densegrad::loss::{self, Targets};
use densegrad::{Activation, Error, MatMut, MatRef, Matrix, reference};
use libfuzzer_sys::fuzz_target;

/// Largest row or column count, to keep each run fast.
const MAX_DIM: usize = 24;
/// Largest magnitude of a value: beyond it the squared error of two values could overflow
/// `f32`, and the comparison would test overflow rather than the kernels.
const MAX_VALUE: f32 = 1.0e4;
const EPS: f64 = f32::EPSILON as f64;
/// Absolute slack for results that may be subnormal.
const SUBNORMAL_SLACK: f64 = 1e-37;

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

/// A buffer and the view parameters to lay over it.
struct Buffer {
    data: Vec<f32>,
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl Buffer {
    /// Builds a buffer for `spec`, filled with values from `source` (cycled) through `map`.
    fn new(
        spec: &LayoutSpec,
        rows: usize,
        cols: usize,
        source: &[u32],
        map: fn(u32) -> f32,
    ) -> Self {
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
        Self {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    fn view(&self) -> Result<MatRef<'_>, Error> {
        MatRef::from_strided(
            &self.data,
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }

    fn view_mut(&mut self) -> Result<MatMut<'_>, Error> {
        MatMut::from_strided(
            &mut self.data,
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
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

fn max_of(row: &[f64]) -> f64 {
    row.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn check_forward(activation: Activation, input: &Input, rows: usize, cols: usize, in_place: bool) {
    let z = Buffer::new(&input.first, rows, cols, &input.values, finite_value);
    let Ok(z_view) = z.view() else { return };
    let mut out = Buffer::new(&input.output, rows, cols, &input.values, finite_value);
    let Ok(mut out_view) = out.view_mut() else {
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
    assert_eq!(
        result.is_ok(),
        oracle.is_ok(),
        "{result:?} vs oracle {oracle:?}"
    );
    if result.is_err() {
        return;
    }

    let actual = out_view.as_ref().to_matrix();
    let z_values = z_view.to_matrix();
    for i in 0..rows {
        let z_row: Vec<f64> = (0..cols)
            .map(|j| f64::from(z_values.get(i, j).unwrap()))
            .collect();
        for j in 0..cols {
            let e = f64::from(expected.get(i, j).unwrap());
            let tolerance = match activation {
                Activation::Identity | Activation::Relu | Activation::LeakyRelu { .. } => 0.0,
                Activation::Sigmoid | Activation::Tanh => 8.0 * EPS * e.abs() + SUBNORMAL_SLACK,
                Activation::Softmax => {
                    let shift = (z_row[j] - max_of(&z_row)).abs();
                    (8.0 + cols as f64 + shift) * EPS * e.abs() + SUBNORMAL_SLACK
                }
            };
            assert_close(
                &format!("{activation:?} forward ({i}, {j})"),
                actual.get(i, j).unwrap(),
                e,
                tolerance,
            );
        }
    }
}

fn check_backward(activation: Activation, input: &Input, rows: usize, cols: usize) {
    let mut output = Buffer::new(&input.first, rows, cols, &input.values, finite_value);
    // Half the runs take the derivative at a real forward output.
    if input.operation & 0x80 != 0 {
        let Ok(view) = output.view() else { return };
        let mut a = Matrix::zeros(rows, cols);
        if reference::activation_forward(activation, view, a.as_mut()).is_ok() {
            let Ok(mut target) = output.view_mut() else {
                return;
            };
            target.copy_from(a.as_ref()).expect("shapes are equal");
        }
    }
    let Ok(a_view) = output.view() else { return };
    let mut delta = Buffer::new(&input.second, rows, cols, &input.values, finite_value);
    let Ok(mut delta_view) = delta.view_mut() else {
        return;
    };
    let mut expected = delta_view.as_ref().to_matrix();
    let d_values = expected.clone();

    let result = activation.backward(a_view, delta_view.rb_mut());
    let oracle = reference::activation_backward(activation, a_view, expected.as_mut());
    assert_eq!(
        result.is_ok(),
        oracle.is_ok(),
        "{result:?} vs oracle {oracle:?}"
    );
    if result.is_err() {
        return;
    }

    let actual = delta_view.as_ref().to_matrix();
    let a_values = a_view.to_matrix();
    for i in 0..rows {
        let a: Vec<f64> = (0..cols)
            .map(|j| f64::from(a_values.get(i, j).unwrap()))
            .collect();
        let d: Vec<f64> = (0..cols)
            .map(|j| f64::from(d_values.get(i, j).unwrap()))
            .collect();
        for j in 0..cols {
            let e = f64::from(expected.get(i, j).unwrap());
            let tolerance = match activation {
                Activation::Identity | Activation::Relu | Activation::LeakyRelu { .. } => 0.0,
                // One rounding each for 1 ± a and two products: no cancellation, because
                // 1 − a is exact wherever it is small.
                Activation::Sigmoid | Activation::Tanh => 8.0 * EPS * e.abs() + SUBNORMAL_SLACK,
                Activation::Softmax => {
                    let dot: f64 = a.iter().zip(&d).map(|(a, d)| (a * d).abs()).sum();
                    4.0 * EPS * a[j].abs() * (d[j].abs() + (cols as f64 + 4.0) * dot)
                        + SUBNORMAL_SLACK
                }
            };
            assert_close(
                &format!("{activation:?} backward ({i}, {j})"),
                actual.get(i, j).unwrap(),
                e,
                tolerance,
            );
        }
    }
}

fn check_loss(input: &Input, rows: usize, cols: usize) {
    let kind = (input.operation >> 2) % 4;
    let target_map = if kind == 0 { finite_value } else { probability };
    let logits = Buffer::new(&input.first, rows, cols, &input.values, finite_value);
    let Ok(z) = logits.view() else { return };
    let targets = Buffer::new(&input.second, rows, cols, &input.values, target_map);
    let Ok(y) = targets.view() else { return };
    let mut grad = Buffer::new(&input.output, rows, cols, &input.values, finite_value);
    let Ok(mut grad_view) = grad.view_mut() else {
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
        0 => (
            loss::mean_squared_error(z, y, grad_view.rb_mut()),
            reference::mean_squared_error(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
        1 => {
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
        2 => (
            loss::softmax_cross_entropy(z, Targets::Dense(y), grad_view.rb_mut()),
            reference::softmax_cross_entropy(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
        _ => (
            loss::binary_cross_entropy(z, y, grad_view.rb_mut()),
            reference::binary_cross_entropy(z, y, expected_grad.as_mut()),
            y.to_matrix(),
        ),
    };
    assert_eq!(
        result.is_ok(),
        oracle.is_ok(),
        "loss {kind}: {result:?} vs oracle {oracle:?}"
    );
    let (Ok(actual), Ok(expected)) = (result, oracle) else {
        return;
    };
    assert!(actual.is_finite(), "loss {kind} is {actual}");

    let m = rows.max(1) as f64;
    let length = cols as f64 + 8.0;
    let z_values = z.to_matrix();
    let actual_grad = grad_view.as_ref().to_matrix();
    let mut magnitude = 0.0;
    for i in 0..rows {
        let z_row: Vec<f64> = (0..cols)
            .map(|j| f64::from(z_values.get(i, j).unwrap()))
            .collect();
        let y_row: Vec<f64> = (0..cols)
            .map(|j| f64::from(y_matrix.get(i, j).unwrap()))
            .collect();
        let max_abs = z_row.iter().map(|z| z.abs()).fold(0.0, f64::max);
        let target_sum: f64 = y_row.iter().map(|y| y.abs()).sum();
        magnitude += match kind {
            0 => 0.0,
            3 => z_row.iter().map(|z| z.abs() + 1.0).sum(),
            _ => (target_sum + 1.0) * (2.0 * max_abs + (cols as f64).ln() + 1.0),
        };
        for j in 0..cols {
            let tolerance = match kind {
                0 => 4.0 * EPS * (z_row[j] - y_row[j]).abs() / m,
                3 => 8.0 * EPS * (1.0 + y_row[j]) / m,
                _ => 4.0 * EPS * length * (target_sum + y_row[j].abs() + 1.0) / m,
            } + SUBNORMAL_SLACK;
            let a = actual_grad.get(i, j).unwrap();
            assert!(a.is_finite(), "loss {kind}: grad ({i}, {j}) is {a}");
            assert_close(
                &format!("loss {kind} grad ({i}, {j})"),
                a,
                f64::from(expected_grad.get(i, j).unwrap()),
                tolerance,
            );
        }
    }
    let tolerance = 4.0 * EPS * length * (magnitude / m + expected.abs()) + SUBNORMAL_SLACK;
    assert_close(&format!("loss {kind}"), actual, expected, tolerance);
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
