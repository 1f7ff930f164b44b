//! The loss on a network's output, and the targets it compares with.

use crate::Activation;
use crate::error::{Error, Shape};
use crate::loss::{self, Range, Targets, check_values};
use crate::matrix::{MatMut, MatRef};

/// The loss of a [`Sequential`](super::Sequential) network, each paired with the output
/// activation that cancels its derivative, so the output layer's error is `(a − y)/m`.
///
/// The loss is computed from the logits `z` of the output layer, which keeps it finite for
/// any finite input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// `C = −(1/m) Σ Σ_j y_j log softmax(z)_j`; the output layer uses
    /// [`Activation::Softmax`]. Targets are class indices or rows of probabilities.
    SoftmaxCrossEntropy,
    /// `C = −(1/m) Σ Σ_j [y_j log σ(z_j) + (1 − y_j) log(1 − σ(z_j))]`; the output layer
    /// uses [`Activation::Sigmoid`]. Targets are a matrix of values in `[0, 1]`.
    BinaryCrossEntropy,
    /// `C = (1/2m) Σ ‖z − y‖²`; the output layer uses [`Activation::Identity`]. Targets are
    /// a matrix of finite values.
    MeanSquaredError,
}

impl Loss {
    /// The activation the output layer must have for this loss.
    pub fn output_activation(self) -> Activation {
        match self {
            Loss::SoftmaxCrossEntropy => Activation::Softmax,
            Loss::BinaryCrossEntropy => Activation::Sigmoid,
            Loss::MeanSquaredError => Activation::Identity,
        }
    }

    /// The name used in saved files: `softmax_cross_entropy`, `binary_cross_entropy` or
    /// `mean_squared_error`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::SoftmaxCrossEntropy => "softmax_cross_entropy",
            Loss::BinaryCrossEntropy => "binary_cross_entropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// The loss called `name`, as [`Loss::name`] spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Loss::SoftmaxCrossEntropy,
            Loss::BinaryCrossEntropy,
            Loss::MeanSquaredError,
        ]
        .into_iter()
        .find(|loss| loss.name() == name)
    }
}

/// Returns the targets of samples `start..start + len`, which lie inside `targets`.
pub(super) fn target_rows(targets: Targets<'_>, start: usize, len: usize) -> Targets<'_> {
    match targets {
        Targets::Classes(classes) => Targets::Classes(&classes[start..start + len]),
        Targets::Dense(matrix) => Targets::Dense(
            matrix
                .submatrix(start, 0, len, matrix.cols())
                .expect("the range lies inside the targets"),
        ),
    }
}

/// Returns the class of sample `i`: its index, the column of its largest value, or, for a
/// single column, whether the value is at least 0.5.
pub(super) fn target_class(targets: Targets<'_>, i: usize) -> usize {
    match targets {
        Targets::Classes(classes) => classes[i],
        Targets::Dense(matrix) => row_class(matrix, i),
    }
}

/// Returns the predicted class of row `i` of `outputs`: the column of the largest value
/// (the first on ties), or, for a single column, 1 when the value is at least 0.5 and 0
/// otherwise.
pub(super) fn row_class(outputs: MatRef<'_>, i: usize) -> usize {
    let value = |j| outputs.get(i, j).expect("(i, j) inside the outputs");
    if outputs.cols() == 1 {
        return usize::from(value(0) >= 0.5);
    }
    let mut best = 0;
    for j in 1..outputs.cols() {
        if value(j) > value(best) {
            best = j;
        }
    }
    best
}

/// Checks `targets` against a batch of `m` samples and `n_out` outputs: the count, the
/// shape, each class index and each value.
///
/// # Errors
///
/// The target errors that [`Sequential::train_step`](super::Sequential::train_step) lists.
pub(super) fn check_targets(
    loss: Loss,
    targets: Targets<'_>,
    m: usize,
    n_out: usize,
) -> Result<(), Error> {
    match targets {
        Targets::Classes(classes) => {
            if loss != Loss::SoftmaxCrossEntropy {
                return Err(Error::InvalidArgument {
                    operand: "targets",
                    reason: format!(
                        "class indices need the softmax cross-entropy loss, not {}; pass \
                         Targets::Dense",
                        loss.name()
                    ),
                });
            }
            Error::check_len("targets", m, classes.len())?;
            for (row, &class) in classes.iter().enumerate() {
                if class >= n_out {
                    return Err(Error::InvalidValue {
                        operand: "targets",
                        row,
                        reason: format!("class index {class} is out of range for {n_out} classes"),
                    });
                }
            }
        }
        Targets::Dense(matrix) => {
            Error::check_shape("targets", Shape::new(m, n_out), matrix.shape())?;
            let range = match loss {
                Loss::BinaryCrossEntropy => Range::Probability,
                _ => Range::Finite,
            };
            check_values(matrix, "targets", range)?;
        }
    }
    Ok(())
}

/// Computes the mean loss of `logits` against checked `targets` and writes `∂C/∂Z` into
/// `delta`.
pub(super) fn loss_and_delta(
    loss: Loss,
    logits: MatRef<'_>,
    targets: Targets<'_>,
    delta: MatMut<'_>,
) -> Result<f32, Error> {
    match (loss, targets) {
        (Loss::SoftmaxCrossEntropy, _) => loss::softmax_cross_entropy(logits, targets, delta),
        (Loss::BinaryCrossEntropy, Targets::Dense(y)) => {
            loss::binary_cross_entropy(logits, y, delta)
        }
        (Loss::MeanSquaredError, Targets::Dense(y)) => loss::mean_squared_error(logits, y, delta),
        (_, Targets::Classes(_)) => Err(Error::InvalidArgument {
            operand: "targets",
            reason: format!(
                "class indices need the softmax cross-entropy loss, not {}",
                loss.name()
            ),
        }),
    }
}
