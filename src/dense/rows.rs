//! The row loops of the unfused dense kernels: dot products for the forward pass and
//! `axpy` updates for the gradients, on blocks of rows.
//!
//! Each element is computed with the same operations in the same order whichever block or
//! thread it falls in, so results do not depend on how the rows are split.

use super::GradMode;
use crate::matrix::{MatMut, MatRef};

/// Rows handled together when their elements are contiguous: each row of the other operand
/// that is loaded from cache then feeds this many rows, so it is read a quarter as often.
const ROW_BLOCK: usize = 4;

/// Number of accumulators in a dot product: eight `f32` lanes fill one AVX register, and
/// independent sums let the compiler vectorise a reduction it may not reorder.
const DOT_LANES: usize = 8;

/// Writes `output ← input·weightsᵀ + bias`.
pub(super) fn forward_rows(
    input: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    mut output: MatMut<'_>,
) {
    let m = input.rows();
    let mut first = 0;
    if has_contiguous_rows(weights) {
        while first + ROW_BLOCK <= m {
            let Some(rows) = row_block(input, first) else {
                break;
            };
            for (o, &b) in bias.iter().enumerate() {
                let w = weights.row_slice(o).expect("contiguous weight rows");
                let sums = dot_block(rows, w);
                for (r, sum) in sums.into_iter().enumerate() {
                    *output
                        .get_mut(first + r, o)
                        .expect("(i, o) inside the output") = b + sum;
                }
            }
            first += ROW_BLOCK;
        }
    }

    for i in first..m {
        for (o, &b) in bias.iter().enumerate() {
            let z = b + dot(input, i, weights, o);
            *output.get_mut(i, o).expect("(i, o) inside the output") = z;
        }
    }
}

/// Writes or adds `grad_weights ← deltaᵀ·input` and `grad_bias ←` the column sums of
/// `delta`, where `delta` contains the columns of the output neurons this block owns.
pub(super) fn parameter_grads(
    delta: MatRef<'_>,
    input: MatRef<'_>,
    mut grad_weights: MatMut<'_>,
    grad_bias: &mut [f32],
    mode: GradMode,
) {
    if mode == GradMode::Overwrite {
        grad_weights.fill(0.0);
        grad_bias.fill(0.0);
    }
    let (m, n_out) = (delta.rows(), delta.cols());

    let mut first = 0;
    if has_contiguous_rows(input) && has_contiguous_rows(grad_weights.as_ref()) {
        while first + ROW_BLOCK <= n_out {
            let block = grad_weights
                .rb_mut()
                .submatrix_mut(first, 0, ROW_BLOCK, input.cols())
                .expect("the block lies inside grad_weights");
            let mut rows = RowBlockMut::split(block);
            let mut grad_rows = rows.slices();
            for i in 0..m {
                let x = input.row_slice(i).expect("contiguous input rows");
                let mut alphas = [0.0; ROW_BLOCK];
                for (r, alpha) in alphas.iter_mut().enumerate() {
                    *alpha = delta.get(i, first + r).expect("(i, o) inside delta");
                    grad_bias[first + r] += *alpha;
                }
                axpy_block(alphas, x, &mut grad_rows);
            }
            first += ROW_BLOCK;
        }
    }

    for (o, bias_o) in grad_bias.iter_mut().enumerate().skip(first) {
        for i in 0..m {
            let delta_io = delta.get(i, o).expect("(i, o) inside delta");
            axpy(delta_io, input, i, &mut grad_weights, o);
            *bias_o += delta_io;
        }
    }
}

/// Writes `input_delta ← delta·weights`, before the activation derivative.
pub(super) fn propagate_rows(delta: MatRef<'_>, weights: MatRef<'_>, mut input_delta: MatMut<'_>) {
    input_delta.fill(0.0);
    let (m, n_out) = (delta.rows(), delta.cols());

    let mut first = 0;
    if has_contiguous_rows(weights) && has_contiguous_rows(input_delta.as_ref()) {
        while first + ROW_BLOCK <= m {
            let block = input_delta
                .rb_mut()
                .submatrix_mut(first, 0, ROW_BLOCK, weights.cols())
                .expect("the block lies inside input_delta");
            let mut rows = RowBlockMut::split(block);
            let mut delta_rows = rows.slices();
            for o in 0..n_out {
                let w = weights.row_slice(o).expect("contiguous weight rows");
                let mut alphas = [0.0; ROW_BLOCK];
                for (r, alpha) in alphas.iter_mut().enumerate() {
                    *alpha = delta.get(first + r, o).expect("(i, o) inside delta");
                }
                axpy_block(alphas, w, &mut delta_rows);
            }
            first += ROW_BLOCK;
        }
    }

    for i in first..m {
        for o in 0..n_out {
            let delta_io = delta.get(i, o).expect("(i, o) inside delta");
            axpy(delta_io, weights, o, &mut input_delta, i);
        }
    }
}

/// Returns `true` when every row of `view` is a contiguous slice.
fn has_contiguous_rows(view: MatRef<'_>) -> bool {
    view.col_stride() == 1 || view.cols() <= 1
}

/// Returns rows `first..first + ROW_BLOCK` of `view` as slices, or `None` when they are not
/// contiguous.
fn row_block(view: MatRef<'_>, first: usize) -> Option<[&[f32]; ROW_BLOCK]> {
    let mut rows = [&[][..]; ROW_BLOCK];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = view.row_slice(first + r)?;
    }
    Some(rows)
}

/// `ROW_BLOCK` rows of a mutable view, split into one view each so that their slices can
/// be borrowed at the same time.
struct RowBlockMut<'a>([MatMut<'a>; ROW_BLOCK]);

impl<'a> RowBlockMut<'a> {
    fn split(block: MatMut<'a>) -> Self {
        let (first, rest) = block.split_rows_at(1).expect("a block has 4 rows");
        let (second, rest) = rest.split_rows_at(1).expect("a block has 4 rows");
        let (third, fourth) = rest.split_rows_at(1).expect("a block has 4 rows");
        Self([first, second, third, fourth])
    }

    fn slices(&mut self) -> [&mut [f32]; ROW_BLOCK] {
        let [a, b, c, d] = &mut self.0;
        [a, b, c, d].map(|row| row.row_slice_mut(0).expect("contiguous rows"))
    }
}

/// Returns the dot products of each of `rows` with `w`, each summed exactly as [`dot`]
/// sums it.
fn dot_block(rows: [&[f32]; ROW_BLOCK], w: &[f32]) -> [f32; ROW_BLOCK] {
    let mut lanes = [[0.0f32; DOT_LANES]; ROW_BLOCK];
    let w_chunks = w.chunks_exact(DOT_LANES);
    let w_tail = w_chunks.remainder();
    for (c, wc) in w_chunks.enumerate() {
        let start = c * DOT_LANES;
        for (r, row) in rows.iter().enumerate() {
            let xc = &row[start..start + DOT_LANES];
            for lane in 0..DOT_LANES {
                lanes[r][lane] += xc[lane] * wc[lane];
            }
        }
    }

    let tail_start = w.len() - w_tail.len();
    let mut sums = [0.0; ROW_BLOCK];
    for (r, row) in rows.iter().enumerate() {
        let tail: f32 = row[tail_start..]
            .iter()
            .zip(w_tail)
            .map(|(p, q)| p * q)
            .sum();
        sums[r] = lanes[r].iter().sum::<f32>() + tail;
    }
    sums
}

/// Returns the dot product of row `i` of `a` and row `j` of `b`, which have equal lengths.
fn dot(a: MatRef<'_>, i: usize, b: MatRef<'_>, j: usize) -> f32 {
    if let (Some(x), Some(y)) = (a.row_slice(i), b.row_slice(j)) {
        let mut lanes = [0.0f32; DOT_LANES];
        let (x_chunks, y_chunks) = (x.chunks_exact(DOT_LANES), y.chunks_exact(DOT_LANES));
        let (x_tail, y_tail) = (x_chunks.remainder(), y_chunks.remainder());
        for (xc, yc) in x_chunks.zip(y_chunks) {
            for lane in 0..DOT_LANES {
                lanes[lane] += xc[lane] * yc[lane];
            }
        }
        let tail: f32 = x_tail.iter().zip(y_tail).map(|(p, q)| p * q).sum();
        return lanes.iter().sum::<f32>() + tail;
    }
    (0..a.cols())
        .map(|k| a.get(i, k).expect("k inside a") * b.get(j, k).expect("k inside b"))
        .sum()
}

/// Adds `alphas[r]` times `x` to each row `ys[r]`.
fn axpy_block(alphas: [f32; ROW_BLOCK], x: &[f32], ys: &mut [&mut [f32]; ROW_BLOCK]) {
    let [y0, y1, y2, y3] = ys;
    let [a0, a1, a2, a3] = alphas;
    let rows = y0
        .iter_mut()
        .zip(y1.iter_mut())
        .zip(y2.iter_mut())
        .zip(y3.iter_mut());
    for ((((e0, e1), e2), e3), &s) in rows.zip(x) {
        *e0 += a0 * s;
        *e1 += a1 * s;
        *e2 += a2 * s;
        *e3 += a3 * s;
    }
}

/// Adds `alpha` times row `i` of `x` to row `j` of `y`; the rows have equal lengths.
fn axpy(alpha: f32, x: MatRef<'_>, i: usize, y: &mut MatMut<'_>, j: usize) {
    let cols = y.cols();
    if let (Some(src), Some(dst)) = (x.row_slice(i), y.row_slice_mut(j)) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += alpha * s;
        }
        return;
    }
    for k in 0..cols {
        let s = x.get(i, k).expect("k inside x");
        *y.get_mut(j, k).expect("k inside y") += alpha * s;
    }
}
