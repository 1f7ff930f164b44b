//! Layers with few outputs, on the kernels written for them (`kernel::NarrowBackward`
//! and `kernel::NarrowForward`) instead of GEMM calls: the backward pass of one sample
//! block in one sweep, and the forward pass as dot products split across threads by
//! samples.

use crate::Activation;
use crate::gemm::PARALLEL_MIN_FLOPS;
use crate::kernel::{
    Arch, KernelSet, NARROW_FORWARD_MAX_OUTPUTS, NARROW_MAX_OUTPUTS, NarrowBackward, NarrowForward,
};
use crate::matrix::{MatMut, MatRef};
use crate::parallel::{Parallelism, on_pool};

/// Returns whether [`forward`] takes a layer with these operands: 1 to
/// [`NARROW_FORWARD_MAX_OUTPUTS`] outputs and at least one input, with `X` and `W` in
/// contiguous rows. The output may have any layout.
pub(super) fn forward_applies(input: MatRef<'_>, weights: MatRef<'_>) -> bool {
    (1..=NARROW_FORWARD_MAX_OUTPUTS).contains(&weights.rows())
        && input.cols() > 0
        && has_contiguous_rows(input)
        && has_contiguous_rows(weights)
}

/// Computes `output ← f(input·weightsᵀ + bias)` for a layer that [`forward_applies`] to,
/// whose shapes the caller has checked (`bias` has `n_out` elements).
///
/// Products of at least [`PARALLEL_MIN_FLOPS`] split their samples into equal runs, one
/// rayon task each. Every sample is computed the same way in any run, so the results do
/// not depend on the split.
pub(super) fn forward(
    arch: Arch,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    bias: &[f32],
    activation: Activation,
    output: MatMut<'_>,
    par: Parallelism,
) {
    debug_assert!(forward_applies(input, weights));
    let (m, n_in, n_out) = (input.rows(), input.cols(), weights.rows());
    let flops = 2u64
        .saturating_mul(m as u64)
        .saturating_mul(n_in as u64)
        .saturating_mul(n_out as u64);
    let tasks = if flops < PARALLEL_MIN_FLOPS {
        1
    } else {
        par.max_threads().min(m)
    };
    let kernels = KernelSet::for_arch(arch.or_supported_below());
    let run = |input: MatRef<'_>, mut output: MatMut<'_>| {
        let args = NarrowForward {
            input: input.as_ptr(),
            input_row_stride: input.row_stride(),
            weights: weights.as_ptr(),
            weights_row_stride: weights.row_stride(),
            bias: bias.as_ptr(),
            activation,
            output: output.as_mut_ptr(),
            output_row_stride: output.row_stride(),
            output_col_stride: output.col_stride(),
            rows: input.rows(),
            cols: n_in,
            outputs: n_out,
        };
        // SAFETY: the path is supported (`or_supported_below`). The views give every
        // element of the shapes in `args` (checked by the caller), X and W with
        // contiguous rows (`forward_applies`), and `output` is an exclusive borrow.
        unsafe { kernels.narrow_forward(&args) };
    };
    on_pool(tasks, || split_samples(input, output, tasks, &run));
}

/// Runs `run` on `tasks` equal runs of samples of `input` and `output`, halving the runs
/// with rayon joins.
fn split_samples(
    input: MatRef<'_>,
    output: MatMut<'_>,
    tasks: usize,
    run: &(impl Fn(MatRef<'_>, MatMut<'_>) + Sync),
) {
    let m = input.rows();
    if tasks <= 1 || m <= 1 {
        run(input, output);
        return;
    }
    let top_tasks = tasks / 2;
    let mid = m * top_tasks / tasks;
    let n_in = input.cols();
    let split = input
        .submatrix(0, 0, mid, n_in)
        .and_then(|top| Ok((top, input.submatrix(mid, 0, m - mid, n_in)?)))
        .and_then(|inputs| Ok((inputs, output.split_rows_at(mid)?)));
    let Ok(((input_top, input_bottom), (output_top, output_bottom))) = split else {
        unreachable!("row {mid} lies inside the {m} samples");
    };
    rayon::join(
        || split_samples(input_top, output_top, top_tasks, run),
        || split_samples(input_bottom, output_bottom, tasks - top_tasks, run),
    );
}

/// Returns whether [`backward_block`] takes a block with these operands: a layer with
/// 1 to [`NARROW_MAX_OUTPUTS`] outputs and at least one input, whose matrices all have
/// contiguous rows.
pub(super) fn backward_applies(
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    grad_weights: MatRef<'_>,
    input_delta: Option<MatRef<'_>>,
) -> bool {
    let n_out = weights.rows();
    (1..=NARROW_MAX_OUTPUTS).contains(&n_out)
        && input.cols() > 0
        && [delta, input, weights, grad_weights]
            .into_iter()
            .chain(input_delta)
            .all(has_contiguous_rows)
}

/// Returns whether the elements of each row of `view` are adjacent in memory.
fn has_contiguous_rows(view: MatRef<'_>) -> bool {
    view.col_stride() == 1 || view.cols() <= 1
}

/// Computes `dW ← (dW +) δᵀ·X` (added when `accumulate`) and, when `input_delta` is
/// given, `input_delta ← (δ·W) ∘ f'(X)` for one block of samples.
///
/// The caller has checked the shapes (`δ` is `m × n_out`, `X` and `input_delta` are
/// `m × n_in`, `W` and `dW` are `n_out × n_in`) and that [`applies`] holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_block(
    arch: Arch,
    delta: MatRef<'_>,
    input: MatRef<'_>,
    weights: MatRef<'_>,
    input_activation: Activation,
    mut grad_weights: MatMut<'_>,
    accumulate: bool,
    input_delta: Option<MatMut<'_>>,
) {
    debug_assert!(backward_applies(
        delta,
        input,
        weights,
        grad_weights.as_ref(),
        input_delta.as_ref().map(MatMut::as_ref)
    ));
    let (input_delta, input_delta_row_stride) = match input_delta {
        Some(mut view) => (view.as_mut_ptr(), view.row_stride()),
        None => (core::ptr::null_mut(), 0),
    };
    let args = NarrowBackward {
        delta: delta.as_ptr(),
        delta_row_stride: delta.row_stride(),
        input: input.as_ptr(),
        input_row_stride: input.row_stride(),
        weights: weights.as_ptr(),
        weights_row_stride: weights.row_stride(),
        grad_weights: grad_weights.as_mut_ptr(),
        grad_row_stride: grad_weights.row_stride(),
        accumulate,
        input_delta,
        input_delta_row_stride,
        input_activation,
        rows: input.rows(),
        cols: input.cols(),
        outputs: weights.rows(),
    };
    let kernels = KernelSet::for_arch(arch.or_supported_below());
    // SAFETY: the path is supported (`or_supported_below`). The views give every element
    // of the shapes in `args` (checked by the caller), with contiguous rows (`backward_applies`).
    // `grad_weights` and `input_delta` are exclusive borrows, so no operand overlaps them.
    unsafe { kernels.narrow_backward(&args) };
}
