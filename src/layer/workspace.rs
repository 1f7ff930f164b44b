//! The buffers a network's forward and backward passes write into, kept between calls.

use super::dense::Dense;
use crate::matrix::{MatMut, MatRef, Matrix};

/// Per-layer outputs and errors for batches of up to `rows` samples.
///
/// The buffers are allocated for the first batch and reused for every batch of at most that
/// many rows, through views over their first rows, so training allocates nothing once warm.
/// A larger batch reallocates them once, for its own size.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Workspace {
    rows: usize,
    /// Output of layer `l`, `rows × n_out(l)`: `f(Z)` for hidden layers, and the logits `Z`
    /// of the output layer while training.
    outputs: Vec<Matrix>,
    /// `∂C/∂Z` of layer `l`, `rows × n_out(l)`.
    deltas: Vec<Matrix>,
}

impl Workspace {
    /// Number of samples the buffers hold; 0 before the first batch.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Makes room for batches of `rows` samples through `layers`, allocating only when the
    /// buffers are smaller or the architecture changed.
    pub(super) fn reserve(&mut self, layers: &[Dense], rows: usize) {
        let fits = rows <= self.rows
            && self.outputs.len() == layers.len()
            && self
                .outputs
                .iter()
                .zip(layers)
                .all(|(output, layer)| output.cols() == layer.n_out());
        if fits {
            return;
        }
        let rows = rows.max(self.rows);
        self.outputs = layers
            .iter()
            .map(|layer| Matrix::zeros(rows, layer.n_out()))
            .collect();
        self.deltas = self.outputs.clone();
        self.rows = rows;
    }

    /// Output of layer `l` for the first `m` samples.
    pub(super) fn output(&self, l: usize, m: usize) -> MatRef<'_> {
        first_rows(&self.outputs[l], m)
    }

    /// Input of layer `l` (`x` for the first) and its output, for the first `m` samples.
    pub(super) fn input_and_output<'a>(
        &'a mut self,
        x: MatRef<'a>,
        l: usize,
        m: usize,
    ) -> (MatRef<'a>, MatMut<'a>) {
        let (below, rest) = self.outputs.split_at_mut(l);
        let input = match below.last() {
            Some(previous) => first_rows(previous, m),
            None => x,
        };
        (input, first_rows_mut(&mut rest[0], m))
    }

    /// Output of the last layer, and its error, for the first `m` samples.
    pub(super) fn logits_and_delta(&mut self, m: usize) -> (MatRef<'_>, MatMut<'_>) {
        let last = self.outputs.len() - 1;
        (
            first_rows(&self.outputs[last], m),
            first_rows_mut(&mut self.deltas[last], m),
        )
    }

    /// Output of the last layer for the first `m` samples, mutably.
    pub(super) fn last_output_mut(&mut self, m: usize) -> MatMut<'_> {
        let last = self.outputs.len() - 1;
        first_rows_mut(&mut self.outputs[last], m)
    }

    /// Everything the backward pass of layer `l` reads and writes, for the first `m`
    /// samples: its error, its input (`x` for the first layer), and the error of the layer
    /// below, which the first layer does not have.
    pub(super) fn backward_operands<'a>(
        &'a mut self,
        x: MatRef<'a>,
        l: usize,
        m: usize,
    ) -> (MatRef<'a>, MatRef<'a>, Option<MatMut<'a>>) {
        let (deltas_below, deltas_rest) = self.deltas.split_at_mut(l);
        let delta = first_rows(&deltas_rest[0], m);
        let input = match l {
            0 => x,
            _ => first_rows(&self.outputs[l - 1], m),
        };
        let input_delta = deltas_below
            .last_mut()
            .map(|below| first_rows_mut(below, m));
        (delta, input, input_delta)
    }
}

fn first_rows(matrix: &Matrix, m: usize) -> MatRef<'_> {
    matrix
        .as_ref()
        .submatrix(0, 0, m, matrix.cols())
        .expect("the workspace has at least m rows")
}

fn first_rows_mut(matrix: &mut Matrix, m: usize) -> MatMut<'_> {
    let cols = matrix.cols();
    matrix
        .as_mut()
        .submatrix_mut(0, 0, m, cols)
        .expect("the workspace has at least m rows")
}
