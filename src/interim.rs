//! Stand-ins for the activation and loss functions that `activation.rs` and `loss.rs` will
//! provide, so the dense kernels and the layer API can be built before those modules land.
//!
//! NOTE: temporary; delete this file once `Activation::forward_in_place`, `Activation::backward`
//! and the loss functions exist, and call those instead.

use crate::Activation;
use crate::error::Error;
use crate::matrix::{MatMut, MatRef};

/// Applies `activation` to every row of `z` in place.
pub(crate) fn forward_in_place(activation: Activation, mut z: MatMut<'_>) {
    for i in 0..z.rows() {
        let cols = z.cols();
        match activation {
            Activation::Softmax => {
                let mut max = f32::NEG_INFINITY;
                for j in 0..cols {
                    max = max.max(z.get(i, j).unwrap_or(0.0));
                }
                let mut sum = 0.0f32;
                for j in 0..cols {
                    let e = (z.get(i, j).unwrap_or(0.0) - max).exp();
                    sum += e;
                    let _ = z.set(i, j, e);
                }
                for j in 0..cols {
                    let e = z.get(i, j).unwrap_or(0.0);
                    let _ = z.set(i, j, e / sum);
                }
            }
            _ => {
                for j in 0..cols {
                    let value = scalar_forward(activation, z.get(i, j).unwrap_or(0.0));
                    let _ = z.set(i, j, value);
                }
            }
        }
    }
}

/// Multiplies `delta` element-wise by `f'` read from the activation output `output`.
/// Softmax is not handled: callers reject it.
pub(crate) fn backward(activation: Activation, output: MatRef<'_>, mut delta: MatMut<'_>) {
    for i in 0..delta.rows() {
        for j in 0..delta.cols() {
            let a = output.get(i, j).unwrap_or(0.0);
            let derivative = match activation {
                Activation::Identity | Activation::Softmax => 1.0,
                Activation::Relu => f32::from(u8::from(a > 0.0)),
                Activation::LeakyRelu { slope } => {
                    if a > 0.0 {
                        1.0
                    } else {
                        slope
                    }
                }
                Activation::Sigmoid => a * (1.0 - a),
                Activation::Tanh => 1.0 - a * a,
            };
            if let Some(d) = delta.get_mut(i, j) {
                *d *= derivative;
            }
        }
    }
}

fn scalar_forward(activation: Activation, z: f32) -> f32 {
    match activation {
        Activation::Identity | Activation::Softmax => z,
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu { slope } => {
            if z > 0.0 {
                z
            } else {
                slope * z
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Tanh => z.tanh(),
    }
}

/// Softmax cross-entropy from logits against class indices; writes `(softmax(z) − y)/m`.
pub(crate) fn softmax_cross_entropy_classes(
    logits: MatRef<'_>,
    classes: &[usize],
    mut grad: MatMut<'_>,
) -> Result<f32, Error> {
    grad.copy_from(logits)?;
    forward_in_place(Activation::Softmax, grad.rb_mut());
    let m = logits.rows() as f32;
    let mut total = 0.0f64;
    for (i, &class) in classes.iter().enumerate() {
        let p = grad.get(i, class).unwrap_or(1.0);
        total -= f64::from(p.max(f32::MIN_POSITIVE).ln());
        if let Some(g) = grad.get_mut(i, class) {
            *g -= 1.0;
        }
    }
    scale(grad, 1.0 / m);
    Ok((total / f64::from(m)) as f32)
}

/// Softmax cross-entropy from logits against dense targets.
pub(crate) fn softmax_cross_entropy(
    logits: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f32, Error> {
    grad.copy_from(logits)?;
    forward_in_place(Activation::Softmax, grad.rb_mut());
    let m = logits.rows() as f32;
    let mut total = 0.0f64;
    for i in 0..logits.rows() {
        for j in 0..logits.cols() {
            let y = targets.get(i, j).unwrap_or(0.0);
            let p = grad.get(i, j).unwrap_or(1.0);
            total -= f64::from(y) * f64::from(p.max(f32::MIN_POSITIVE).ln());
            if let Some(g) = grad.get_mut(i, j) {
                *g = p - y;
            }
        }
    }
    scale(grad, 1.0 / m);
    Ok((total / f64::from(m)) as f32)
}

/// Binary cross-entropy from logits; writes `(σ(z) − y)/m`.
pub(crate) fn binary_cross_entropy(
    logits: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f32, Error> {
    let m = logits.rows() as f32;
    let mut total = 0.0f64;
    for i in 0..logits.rows() {
        for j in 0..logits.cols() {
            let z = logits.get(i, j).unwrap_or(0.0);
            let y = targets.get(i, j).unwrap_or(0.0);
            total += f64::from(z.max(0.0) - z * y + (-z.abs()).exp().ln_1p());
            let _ = grad.set(i, j, (scalar_forward(Activation::Sigmoid, z) - y) / m);
        }
    }
    Ok((total / f64::from(m)) as f32)
}

/// Mean squared error `(1/2m) Σ ‖z − y‖²`; writes `(z − y)/m`.
pub(crate) fn mean_squared_error(
    predictions: MatRef<'_>,
    targets: MatRef<'_>,
    mut grad: MatMut<'_>,
) -> Result<f32, Error> {
    let m = predictions.rows() as f32;
    let mut total = 0.0f64;
    for i in 0..predictions.rows() {
        for j in 0..predictions.cols() {
            let diff = predictions.get(i, j).unwrap_or(0.0) - targets.get(i, j).unwrap_or(0.0);
            total += 0.5 * f64::from(diff * diff);
            let _ = grad.set(i, j, diff / m);
        }
    }
    Ok((total / f64::from(m)) as f32)
}

fn scale(mut grad: MatMut<'_>, factor: f32) {
    for i in 0..grad.rows() {
        for j in 0..grad.cols() {
            if let Some(g) = grad.get_mut(i, j) {
                *g *= factor;
            }
        }
    }
}
