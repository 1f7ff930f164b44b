//! Activation functions and their derivatives, vectorised with `wide` lanes.
//!
//! Every kernel works on one contiguous row at a time. The view-level functions pass it row
//! slices, and copy strided rows into a buffer first. A fused GEMM epilogue can call the same
//! crate-private slice functions on a tile row, so each activation has one implementation.
//!
//! `exp` is this crate's own (see the `exp` module). `tanh` is `f32x8::tanh` from `wide`
//! 1.7, which evaluates `expm1(−2|z|)` and handles tiny and large `|z|` separately. The unit
//! tests measure both against `f64`.

mod exp;
pub(crate) mod lanes;

pub(crate) use exp::exp;

use wide::f32x8;

use crate::error::Error;
use crate::matrix::{MatMut, MatRef};

/// Elements of a strided row that the fallback path copies into its scratch buffer per pass.
/// It bounds the buffer at 1 KiB for element-wise activations, while the per-pass overhead
/// stays small. Softmax copies whole rows, because it needs the row maximum and sum.
const STRIDED_CHUNK: usize = 256;

/// An element-wise (or, for softmax, row-wise) activation function.
///
/// Every derivative is computed from the activation's *output* `a = f(z)`, which the forward
/// pass has already stored, so the backward pass never needs `z`.
///
/// ```
/// use densegrad::{Activation, Matrix};
///
/// let mut z = Matrix::from_vec(vec![-1.0, 0.0, 2.0], 1, 3)?;
/// Activation::Relu.forward_in_place(z.as_mut())?;
/// assert_eq!(z.as_slice(), &[0.0, 0.0, 2.0]);
///
/// // delta ← delta ∘ f'(a), with f'(a) = [a > 0] for ReLU.
/// let mut delta = Matrix::from_vec(vec![0.5, 0.5, 0.5], 1, 3)?;
/// Activation::Relu.backward(z.as_ref(), delta.as_mut())?;
/// assert_eq!(delta.as_slice(), &[0.0, 0.0, 0.5]);
/// # Ok::<(), densegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// `f(z) = z`.
    #[default]
    Identity,
    /// `f(z) = max(z, 0)`.
    Relu,
    /// `f(z) = z` for `z > 0`, `slope · z` otherwise.
    LeakyRelu {
        /// Gradient for negative inputs, typically 0.01. It must be finite and non-negative,
        /// because a negative slope would make the derivative ambiguous given only the output.
        slope: f32,
    },
    /// `f(z) = 1 / (1 + e^(−z))`.
    Sigmoid,
    /// `f(z) = tanh(z)`.
    Tanh,
    /// Row-wise `f(z)_j = e^(z_j) / Σ_k e^(z_k)`.
    Softmax,
}

impl Activation {
    /// Computes `out ← f(z)` element-wise, or row by row for [`Activation::Softmax`].
    ///
    /// Sigmoid and tanh evaluate `exp` only of non-positive arguments, so they never overflow
    /// for any finite input. Softmax subtracts the row maximum before exponentiating.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `out` when its shape differs from `z`'s, and
    /// [`Error::InvalidArgument`] naming `slope` for a leaky ReLU slope that is negative or
    /// not finite.
    pub fn forward(self, z: MatRef<'_>, mut out: MatMut<'_>) -> Result<(), Error> {
        Error::check_shape("out", z.shape(), out.shape())?;
        self.check()?;
        for i in 0..z.rows() {
            match (z.row_slice(i), out.row_slice_mut(i)) {
                (Some(src), Some(dst)) => dst.copy_from_slice(src),
                _ => {
                    for j in 0..z.cols() {
                        let value = z.get(i, j).expect("index inside z");
                        *out.get_mut(i, j).expect("index inside out") = value;
                    }
                }
            }
        }
        self.forward_in_place(out)
    }

    /// Computes `z ← f(z)` in place; see [`Activation::forward`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `slope` for a leaky ReLU slope that is negative or
    /// not finite.
    pub fn forward_in_place(self, z: MatMut<'_>) -> Result<(), Error> {
        self.check()?;
        // An element-wise activation may walk a column-major view by columns instead.
        let mut z = if self != Activation::Softmax && z.col_stride() != 1 && z.row_stride() == 1 {
            z.t()
        } else {
            z
        };

        let mut row_buffer = Vec::new();
        for i in 0..z.rows() {
            if let Some(row) = z.row_slice_mut(i) {
                self.apply_slice(row);
                continue;
            }
            let cols = z.cols();
            let chunk = if self == Activation::Softmax {
                cols
            } else {
                cols.min(STRIDED_CHUNK)
            };
            row_buffer.resize(chunk, 0.0);
            for start in (0..cols).step_by(chunk.max(1)) {
                let len = chunk.min(cols - start);
                let buffer = &mut row_buffer[..len];
                for (j, slot) in (start..).zip(buffer.iter_mut()) {
                    *slot = z.get(i, j).expect("index inside z");
                }
                self.apply_slice(buffer);
                for (j, &value) in (start..).zip(buffer.iter()) {
                    *z.get_mut(i, j).expect("index inside z") = value;
                }
            }
        }
        Ok(())
    }

    /// Computes `delta ← delta ∘ f'(z)` from the forward output `output = f(z)`.
    ///
    /// The derivatives are ReLU `[a > 0]` (0 at `a = 0` and at `a = −0`), leaky ReLU
    /// `a > 0 ? 1 : slope`, sigmoid `a(1 − a)`, tanh `1 − a²` and identity 1. Softmax is not
    /// element-wise: its Jacobian is `∂a_j/∂z_k = a_j([j = k] − a_k)`, so each row gets the
    /// exact Jacobian-vector product `delta_j ← a_j (delta_j − Σ_k delta_k a_k)`.
    ///
    /// ```
    /// use densegrad::{Activation, Matrix};
    ///
    /// // A softmax output and the gradient of the loss with respect to it.
    /// let a = Matrix::from_vec(vec![0.25, 0.75], 1, 2)?;
    /// let mut delta = Matrix::from_vec(vec![1.0, 0.0], 1, 2)?;
    /// Activation::Softmax.backward(a.as_ref(), delta.as_mut())?;
    /// // Σ_k delta_k a_k = 0.25, so delta = [0.25·0.75, 0.75·(−0.25)].
    /// assert_eq!(delta.as_slice(), &[0.1875, -0.1875]);
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `delta` when its shape differs from `output`'s, and
    /// [`Error::InvalidArgument`] naming `slope` for a leaky ReLU slope that is negative or
    /// not finite.
    pub fn backward(self, output: MatRef<'_>, delta: MatMut<'_>) -> Result<(), Error> {
        Error::check_shape("delta", output.shape(), delta.shape())?;
        self.check()?;
        // An element-wise derivative may walk two column-major views by columns instead.
        let walk_columns = self != Activation::Softmax
            && delta.col_stride() != 1
            && delta.row_stride() == 1
            && output.row_stride() == 1;
        let (output, mut delta) = if walk_columns {
            (output.t(), delta.t())
        } else {
            (output, delta)
        };

        let (mut output_buffer, mut delta_buffer) = (Vec::new(), Vec::new());
        for i in 0..output.rows() {
            if let (Some(a), Some(d)) = (output.row_slice(i), delta.row_slice_mut(i)) {
                self.backward_slice(a, d);
                continue;
            }
            let cols = output.cols();
            let chunk = if self == Activation::Softmax {
                cols
            } else {
                cols.min(STRIDED_CHUNK)
            };
            output_buffer.resize(chunk, 0.0);
            delta_buffer.resize(chunk, 0.0);
            for start in (0..cols).step_by(chunk.max(1)) {
                let len = chunk.min(cols - start);
                let (a, d) = (&mut output_buffer[..len], &mut delta_buffer[..len]);
                for (j, (a_j, d_j)) in (start..).zip(a.iter_mut().zip(d.iter_mut())) {
                    *a_j = output.get(i, j).expect("index inside output");
                    *d_j = delta.get(i, j).expect("index inside delta");
                }
                self.backward_slice(a, d);
                for (j, &value) in (start..).zip(d.iter()) {
                    *delta.get_mut(i, j).expect("index inside delta") = value;
                }
            }
        }
        Ok(())
    }

    /// Rejects a leaky ReLU slope that is negative or not finite.
    fn check(self) -> Result<(), Error> {
        match self {
            Activation::LeakyRelu { slope } if !slope.is_finite() || slope < 0.0 => {
                Err(Error::InvalidArgument {
                    operand: "slope",
                    reason: format!("leaky ReLU slope {slope} must be finite and non-negative"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Applies the activation in place to one contiguous row; softmax treats `row` as one
    /// whole row. The caller has validated the activation.
    ///
    /// Each arm runs its own loop, so the lane function is inlined into it.
    pub(crate) fn apply_slice(self, row: &mut [f32]) {
        let zero = f32x8::ZERO;
        match self {
            Activation::Identity => {}
            Activation::Relu => lanes::map_in_place(row, 0.0, |z| z.simd_gt(zero).select(z, zero)),
            Activation::LeakyRelu { slope } => {
                lanes::map_in_place(row, 0.0, |z| z.simd_gt(zero).select(z, z * slope));
            }
            Activation::Sigmoid => lanes::map_in_place(row, 0.0, sigmoid_lanes),
            Activation::Tanh => lanes::map_in_place(row, 0.0, f32x8::tanh),
            Activation::Softmax => softmax_slice(row),
        }
    }

    /// Computes `delta ← delta ∘ f'(output)` on one contiguous row; softmax treats the slices
    /// as one whole row. The slices have equal lengths and the caller has validated the
    /// activation.
    pub(crate) fn backward_slice(self, output: &[f32], delta: &mut [f32]) {
        debug_assert_eq!(output.len(), delta.len());
        let (zero, one) = (f32x8::ZERO, f32x8::ONE);
        match self {
            Activation::Identity => {}
            Activation::Relu => {
                lanes::zip_in_place(output, delta, |a, d| a.simd_gt(zero).select(d, zero));
            }
            Activation::LeakyRelu { slope } => {
                lanes::zip_in_place(output, delta, |a, d| a.simd_gt(zero).select(d, d * slope));
            }
            Activation::Sigmoid => lanes::zip_in_place(output, delta, |a, d| d * (a * (one - a))),
            // (1 − a)(1 + a) rather than 1 − a², which loses digits when |a| is near 1.
            Activation::Tanh => {
                lanes::zip_in_place(output, delta, |a, d| d * ((one - a) * (one + a)));
            }
            Activation::Softmax => softmax_backward_slice(output, delta),
        }
    }
}

/// `σ(z)` computed from `e^(−|z|)`, which cannot overflow; see [`sigmoid_from_exp`].
#[inline(always)]
pub(crate) fn sigmoid_lanes(z: f32x8) -> f32x8 {
    sigmoid_from_exp(z, exp(-z.abs()))
}

/// `σ(z)` given `e = e^(−|z|)`, which lies in (0, 1]: `σ(z) = 1/(1 + e)` for `z ≥ 0` and
/// `e/(1 + e)` for `z < 0`.
#[inline(always)]
pub(crate) fn sigmoid_from_exp(z: f32x8, e: f32x8) -> f32x8 {
    let positive = f32x8::ONE / (f32x8::ONE + e);
    z.simd_lt(f32x8::ZERO).select(e * positive, positive)
}

/// Returns the maximum of a row, `−∞` for an empty one.
pub(crate) fn row_max(row: &[f32]) -> f32 {
    let negative_infinity = f32x8::splat(f32::NEG_INFINITY);
    let max = lanes::fold(row, f32::NEG_INFINITY, negative_infinity, |max, x| {
        max.max(x)
    });
    max.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces each element `x` by `e^(x − shift)` and returns the sum of the new values.
pub(crate) fn exp_shifted_in_place(row: &mut [f32], shift: f32) -> f32 {
    let shift = f32x8::splat(shift);
    let mut sum = f32x8::ZERO;
    // Padding with −∞ makes the unused lanes e^(−∞) = 0, which leaves the sum unchanged.
    lanes::map_in_place(row, f32::NEG_INFINITY, |x| {
        let e = exp(x - shift);
        sum += e;
        e
    });
    sum.reduce_add()
}

/// Softmax of one row in place: subtract the maximum, exponentiate, divide by the sum.
fn softmax_slice(row: &mut [f32]) {
    if row.is_empty() {
        return;
    }
    let max = row_max(row);
    let sum = f32x8::splat(exp_shifted_in_place(row, max));
    lanes::map_in_place(row, 0.0, |e| e / sum);
}

/// `delta_j ← a_j (delta_j − Σ_k delta_k a_k)` on one row.
fn softmax_backward_slice(a: &[f32], delta: &mut [f32]) {
    let dot = lanes::fold_pairs(a, delta, f32x8::ZERO, |dot, a, d| a.mul_add(d, dot));
    let dot = f32x8::splat(dot.reduce_add());
    lanes::zip_in_place(a, delta, |a, d| a * (d - dot));
}

/// Distance in units in the last place between an `f32` result and the exact value.
#[cfg(test)]
fn ulps(actual: f32, exact: f64) -> f64 {
    let rounded = exact as f32;
    let ulp = f64::from(f32::from_bits(rounded.abs().to_bits() + 1) - rounded.abs());
    (f64::from(actual) - exact).abs() / ulp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes_of(x: f32) -> f32x8 {
        f32x8::splat(x)
    }

    #[test]
    fn tanh_error_within_four_ulps() {
        let mut worst: f64 = 0.0;
        for bits in (0u32..20.0f32.to_bits()).step_by(97) {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                let exact = f64::from(x).tanh();
                worst = worst.max(ulps(lanes_of(x).tanh().to_array()[0], exact));
            }
        }
        assert!(worst <= 4.0, "tanh: worst error {worst} ulp");
    }

    #[test]
    fn sigmoid_extremes_finite() {
        for (z, expected) in [(1000.0, 1.0), (-1000.0, 0.0), (88.8, 1.0), (0.0, 0.5)] {
            let a = sigmoid_lanes(lanes_of(z)).to_array()[0];
            assert_eq!(a, expected, "sigmoid({z})");
        }
        let tiny = sigmoid_lanes(lanes_of(-88.8)).to_array()[0];
        assert!(tiny > 0.0, "sigmoid(-88.8) = {tiny}");
        assert!(tiny < 1e-38, "sigmoid(-88.8) = {tiny}");
    }

    #[test]
    fn relu_derivative_zero_at_signed_zeros() {
        let mut delta = [1.0; 3];
        Activation::Relu.backward_slice(&[0.0, -0.0, 1e-45], &mut delta);
        assert_eq!(delta, [0.0, 0.0, 1.0]);
    }

    #[test]
    fn leaky_relu_bad_slope_rejected() {
        for slope in [f32::NAN, f32::INFINITY, -0.5] {
            let mut data = [1.0];
            let z = MatMut::from_slice(&mut data, 1, 1).unwrap();
            let err = Activation::LeakyRelu { slope }.forward_in_place(z);
            assert!(
                matches!(
                    err,
                    Err(Error::InvalidArgument {
                        operand: "slope",
                        ..
                    })
                ),
                "slope {slope}: {err:?}"
            );
        }
    }

    #[test]
    fn softmax_row_extremes() {
        let mut row = [1000.0, -1000.0, 1000.0, 0.0];
        Activation::Softmax.apply_slice(&mut row);
        assert_eq!(row, [0.5, 0.0, 0.5, 0.0]);
    }
}
