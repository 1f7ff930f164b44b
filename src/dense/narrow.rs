//! The backward pass of one sample block of a layer with few outputs, on the kernel that
//! computes both products and the derivative in one sweep (`kernel::NarrowBackward`)
//! instead of two GEMM calls.

use crate::Activation;
use crate::kernel::{Arch, KernelSet, NARROW_MAX_OUTPUTS, NarrowBackward};
use crate::matrix::{MatMut, MatRef};

/// Returns whether [`backward_block`] takes a block with these operands: a layer with
/// 1 to [`NARROW_MAX_OUTPUTS`] outputs and at least one input, whose matrices all have
/// contiguous rows.
pub(super) fn applies(
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
    debug_assert!(applies(
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
    // of the shapes in `args` (checked by the caller), with contiguous rows (`applies`).
    // `grad_weights` and `input_delta` are exclusive borrows, so no operand overlaps them.
    unsafe { kernels.narrow_backward(&args) };
}
