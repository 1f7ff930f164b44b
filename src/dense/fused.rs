//! The fused drivers behind `dense_forward` and `dense_backward`: GEMM calls whose
//! epilogue adds the bias and applies the activation or its derivative, on blocks of
//! samples that stay in cache between the products that read them.
//!
//! Threads come from the GEMM, which splits each product's output tiles and never its
//! reduction. The sample blocks are processed in order and their sizes depend only on
//! the layer's shape, so every result is bitwise the same for any thread count.

use super::GradMode;
use crate::Activation;
use crate::error::Error;
use crate::gemm::gemm_fused;
use crate::kernel::{Arch, Bias, Post, PostOp};
use crate::matrix::{MatMut, MatRef};
use crate::parallel::Parallelism;

/// Bytes of `δ` and `X` (or of the output rows for softmax) that one sample block may
/// occupy. 512 KiB is half of a 1 MiB L2, a common size on current x86 server cores,
/// which leaves the other half for the packed weight panels.
const SAMPLE_BLOCK_BYTES: usize = 512 * 1024;

/// Fewest samples in a block. Each block re-reads and re-writes the whole weight
/// gradient, so `dW = δᵀ·X` does `2·samples` flops per gradient element it moves; 128
/// samples keep that product compute-bound even when the gradient comes from memory.
const MIN_SAMPLE_BLOCK: usize = 128;

/// Most samples in a block; more gains nothing once the gradient traffic is amortised.
const MAX_SAMPLE_BLOCK: usize = 1024;

/// Number of samples per block for a layer whose samples occupy `row_elements` floats
/// across the operands that a block reads. Depends on the shape only, never on threads.
fn sample_block_rows(row_elements: usize) -> usize {
    let row_bytes = row_elements.max(1) * size_of::<f32>();
    (SAMPLE_BLOCK_BYTES / row_bytes).clamp(MIN_SAMPLE_BLOCK, MAX_SAMPLE_BLOCK)
}

/// Computes `output ← f(input·weightsᵀ + bias)` for checked shapes and activation.
pub(super) fn forward(
    arch: Arch,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    activation: Activation,
    mut output: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    let (m, n_in, n_out) = (input.rows(), input.cols(), weights.rows());
    if m == 0 || n_out == 0 {
        return Ok(());
    }
    if n_in == 0 {
        // No product, so no epilogue: every row is the bias.
        for i in 0..m {
            for (o, &b) in bias.iter().enumerate() {
                output.set(i, o, b)?;
            }
        }
        return activation.forward_in_place(output);
    }

    let bias = Bias::Cols(bias.as_ptr());
    if activation != Activation::Softmax {
        let op = match activation {
            Activation::Identity => PostOp::None,
            other => PostOp::Activate(other),
        };
        // SAFETY: `bias` has `n_out` elements, one per column of `output` (checked by the
        // caller), and is borrowed for the call.
        return unsafe {
            gemm_fused(
                arch,
                input,
                weights.t(),
                0.0,
                output,
                par,
                Post { bias, op },
            )
        };
    }

    // Softmax needs whole rows: finish a block of rows, then normalise it while it is
    // still in cache.
    let block_rows = sample_block_rows(n_out);
    for first in (0..m).step_by(block_rows) {
        let rows = block_rows.min(m - first);
        let block_input = input.submatrix(first, 0, rows, n_in)?;
        let mut block_output = output.rb_mut().submatrix_mut(first, 0, rows, n_out)?;
        let post = Post {
            bias,
            op: PostOp::None,
        };
        // SAFETY: as above.
        unsafe {
            gemm_fused(
                arch,
                block_input,
                weights.t(),
                0.0,
                block_output.rb_mut(),
                par,
                post,
            )?;
        }
        Activation::Softmax.forward_in_place(block_output)?;
    }
    Ok(())
}

/// The backward pass for checked shapes and activation; see `dense_backward`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    arch: Arch,
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    input_activation: Activation,
    mut grad_weights: MatMut<'_>,
    grad_bias: &mut [f32],
    mode: GradMode,
    mut input_delta: Option<MatMut<'_>>,
    par: Parallelism,
) -> Result<(), Error> {
    let (m, n_in, n_out) = (input.rows(), input.cols(), weights.rows());
    if mode == GradMode::Overwrite {
        grad_bias.fill(0.0);
        if m == 0 || n_out == 0 || n_in == 0 {
            grad_weights.fill(0.0);
        }
    }

    let block_rows = sample_block_rows(n_in + n_out);
    for first in (0..m).step_by(block_rows) {
        let rows = block_rows.min(m - first);
        let block_delta = delta.submatrix(first, 0, rows, n_out)?;
        let block_input = input.submatrix(first, 0, rows, n_in)?;

        // dW ← (dW +) δᵀ·X over this block's samples.
        let beta = if first == 0 && mode == GradMode::Overwrite {
            0.0
        } else {
            1.0
        };
        // SAFETY: `Post::NONE` holds no pointers.
        unsafe {
            gemm_fused(
                arch,
                block_delta.t(),
                block_input,
                beta,
                grad_weights.rb_mut(),
                par,
                Post::NONE,
            )?;
        }

        add_column_sums(block_delta, grad_bias);

        if let Some(input_delta) = input_delta.as_mut() {
            let block_input_delta = input_delta.rb_mut().submatrix_mut(first, 0, rows, n_in)?;
            propagate(
                arch,
                block_delta,
                block_input,
                weights,
                input_activation,
                block_input_delta,
                par,
            )?;
        }
    }
    Ok(())
}

/// Writes `input_delta ← (δ·W) ∘ f'(X)` for one block of samples, the derivative applied
/// in the epilogue.
fn propagate(
    arch: Arch,
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    input_activation: Activation,
    mut input_delta: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    if delta.cols() == 0 {
        // δ·W is an empty sum, so the error is 0 whatever f'(X).
        input_delta.fill(0.0);
        return Ok(());
    }
    let op = match input_activation {
        Activation::Identity => PostOp::None,
        activation => PostOp::Derivative {
            activation,
            input: input.as_ptr(),
            row_stride: input.row_stride(),
            col_stride: input.col_stride(),
        },
    };
    let post = Post {
        bias: Bias::None,
        op,
    };
    // SAFETY: `input` has the shape of `input_delta` (checked by the caller) and is
    // borrowed for the call, so every (i, j) of `input_delta` names a readable element.
    unsafe { gemm_fused(arch, delta, weights, 0.0, input_delta, par, post) }
}

/// Adds the column sums of `delta` to `sums`, row by row, so the order of the additions
/// is the same for any block size.
fn add_column_sums(delta: MatRef<'_>, sums: &mut [f32]) {
    for i in 0..delta.rows() {
        if let Some(row) = delta.row_slice(i) {
            for (sum, &d) in sums.iter_mut().zip(row) {
                *sum += d;
            }
            continue;
        }
        for (o, sum) in sums.iter_mut().enumerate() {
            *sum += delta.get(i, o).unwrap_or(0.0);
        }
    }
}
