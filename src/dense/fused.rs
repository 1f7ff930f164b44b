//! The fused drivers behind `dense_forward` and `dense_backward`: GEMM calls whose
//! epilogue adds the bias and applies the activation or its derivative, on blocks of
//! samples that stay in cache between the products that read them.
//!
//! Threads come from the GEMM, which splits each product's output tiles and never its
//! reduction, and in the backward pass also from chunks of the batch with partial
//! gradients. Block and chunk sizes depend only on the layer's shape, and partials are
//! added in a fixed order, so every result is bitwise the same for any thread count.

use std::cell::RefCell;
use std::ops::Range;

use super::GradMode;
use super::narrow;
use crate::Activation;
use crate::error::Error;
use crate::gemm::gemm_fused;
use crate::kernel::{Arch, Bias, Post, PostOp};
use crate::matrix::{MatMut, MatRef};
use crate::parallel::Parallelism;

/// Bytes of `δ` and `X` (or of the output rows for softmax) that one sample block may
/// occupy: 4 MiB, an estimate of one core's share of a current x86 L3. A block that stays
/// in L3 is read from memory once for its three products, while larger blocks re-stream
/// the weights and the weight gradient less often.
const SAMPLE_BLOCK_BYTES: usize = 4 << 20;

/// Minimum number of samples in a block. Each block re-reads and re-writes the whole
/// weight gradient, so `dW = δᵀ·X` does `2·samples` flops per gradient element it moves,
/// and 256 samples keep that product compute-bound even when the gradient comes from
/// memory.
const MIN_SAMPLE_BLOCK: usize = 256;

/// Maximum number of samples in a block. More gains nothing once the gradient traffic is
/// amortised.
const MAX_SAMPLE_BLOCK: usize = 1024;

/// Number of samples per block of a layer that the few-output kernel takes (see
/// `narrow::applies`). Its blocks keep nothing in cache for the next product but the
/// sums of `dW` in registers, so shorter blocks cost little, and they let a batch of
/// 1024 split into two chunks for two threads. On two threads, 1024 samples through a
/// 128→10 layer ran at 222 to 232 GFLOP/s in blocks of 512, 101 to 210 in blocks of 256
/// and 120 in one block of 1024. One thread ran at 119 to 128 in every case.
const NARROW_SAMPLE_BLOCK: usize = 512;

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

/// Fewest samples per chunk of the batch that gets its own partial gradient. Below twice
/// this, a call keeps one chunk and draws its threads from the GEMM alone.
const MIN_CHUNK_SAMPLES: usize = 256;

/// Maximum number of chunks, which bounds the extra additions of the final reduction.
const MAX_CHUNKS: usize = 8;

/// Maximum size of the partial gradients of one call. 16 MiB keeps layers up to about
/// 2048 × 2048 splittable, and larger ones fall back to one chunk of one sample block.
const MAX_PARTIAL_BYTES: usize = 16 << 20;

/// Bytes of one chunk's partial gradients, `dW` and `db`.
fn partial_bytes(n_in: usize, n_out: usize) -> usize {
    (n_out.saturating_mul(n_in) + n_out).max(1) * size_of::<f32>()
}

/// Number of chunks the batch is split into, from the shape alone.
fn chunk_count(m: usize, n_in: usize, n_out: usize, blocks: usize) -> usize {
    let by_memory = 1 + MAX_PARTIAL_BYTES / partial_bytes(n_in, n_out);
    (m / MIN_CHUNK_SAMPLES)
        .clamp(1, MAX_CHUNKS)
        .min(by_memory)
        .min(blocks.max(1))
}

thread_local! {
    /// Partial gradients of the chunks after the first, kept by the calling thread and
    /// reused, so a warm call does not allocate them.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The operands that every chunk of one backward call reads.
#[derive(Clone, Copy)]
struct Layer<'a> {
    arch: Arch,
    delta: MatRef<'a>,
    input: MatRef<'a>,
    weights: MatRef<'a>,
    input_activation: Activation,
    /// Samples per block.
    block_rows: usize,
}

/// Computes the backward pass for checked shapes and activation; see `dense_backward`.
///
/// The batch is cut into chunks of whole sample blocks, by shape alone. The first chunk
/// adds into the caller's gradients, and each later one overwrites its own partial
/// gradient. The partials are then added in chunk order, so the sums do not depend on
/// which thread ran which chunk.
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
    input_delta: Option<MatMut<'_>>,
    par: Parallelism,
) -> Result<(), Error> {
    let (m, n_in, n_out) = (input.rows(), input.cols(), weights.rows());
    if mode == GradMode::Overwrite && (m == 0 || n_out == 0 || n_in == 0) {
        grad_weights.fill(0.0);
        grad_bias.fill(0.0);
    }
    // Equal blocks: 1024 samples with at most 1008 per block become 512 + 512, not
    // 1008 + 16, so that chunks of whole blocks stay balanced.
    //
    // A layer too large for partial gradients takes the batch as one block. Each block
    // streams the weights and the weight gradient through memory again, which for such
    // layers costs more than reading the block's own rows of δ and X twice: 4096→4096 at
    // m = 1024 in four blocks measured 0.93 × the unfused pair of GEMM calls.
    let narrow_layer = narrow::applies(
        delta,
        input,
        weights,
        grad_weights.as_ref(),
        input_delta.as_ref().map(MatMut::as_ref),
    );
    let blocks = if partial_bytes(n_in, n_out) > MAX_PARTIAL_BYTES {
        1
    } else if narrow_layer {
        m.div_ceil(NARROW_SAMPLE_BLOCK)
    } else {
        m.div_ceil(sample_block_rows(n_in + n_out))
    };
    let block_rows = m.div_ceil(blocks.max(1)).max(1);
    let layer = Layer {
        arch,
        delta,
        input,
        weights,
        input_activation,
        block_rows,
    };

    let chunks = chunk_count(m, n_in, n_out, blocks);
    if chunks == 1 {
        return layer.accumulate(0..m, grad_weights, grad_bias, mode, input_delta, par);
    }

    // Chunk c covers sample blocks [c·blocks/chunks, (c+1)·blocks/chunks).
    let chunk_rows = |c: usize| (c * blocks / chunks * block_rows).min(m);
    let partial_len = n_out * n_in + n_out;
    // At most `groups` tasks run at once, each a run of consecutive chunks, so `Rayon(n)`
    // never keeps more than n threads busy, whatever the pool's size.
    let groups = par.max_threads().min(chunks);
    let first_group_end = (chunks / groups).max(1);
    let run = |partials: &mut [f32]| -> Result<(), Error> {
        let (first_input_delta, rest_input_delta) =
            split_rows(input_delta, chunk_rows(first_group_end))?;
        let (first_partials, rest_partials) =
            partials.split_at_mut((first_group_end - 1) * partial_len);
        let (first, rest) = join(
            groups > 1,
            || {
                // The first group: chunk 0 into the caller's gradients, then the group's
                // other chunks into their partials.
                let (chunk_zero_delta, group_delta) = split_rows(first_input_delta, chunk_rows(1))?;
                layer.accumulate(
                    0..chunk_rows(1),
                    grad_weights.rb_mut(),
                    grad_bias,
                    mode,
                    chunk_zero_delta,
                    Parallelism::Sequential,
                )?;
                layer.accumulate_partials(
                    1..first_group_end,
                    &chunk_rows,
                    first_partials,
                    group_delta,
                    1,
                )
            },
            || {
                layer.accumulate_partials(
                    first_group_end..chunks,
                    &chunk_rows,
                    rest_partials,
                    rest_input_delta,
                    groups - 1,
                )
            },
        );
        first.and(rest)?;

        // Fixed order for every element: chunk 1, then 2, and so on. Bands of rows of
        // `dW` may go to different threads, which changes no sum.
        add_partial_weights(grad_weights.rb_mut(), 0, partials, partial_len, groups);
        for partial in partials.chunks_exact(partial_len) {
            for (sum, &p) in grad_bias.iter_mut().zip(&partial[n_out * n_in..]) {
                *sum += p;
            }
        }
        Ok(())
    };
    with_partials((chunks - 1) * partial_len, run)
}

/// Runs `f` on `len` elements of this thread's partial-gradient workspace, or of a fresh
/// buffer when the workspace is in use (a nested call from a rayon task).
fn with_partials<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut f = Some(f);
    let result = PARTIALS.try_with(|cell| {
        let mut buffer = cell.try_borrow_mut().ok()?;
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        let f = f.take().expect("`f` is taken once");
        Some(f(&mut buffer[..len]))
    });
    match (result, f) {
        (Ok(Some(value)), _) => value,
        (_, Some(f)) => f(&mut vec![0.0; len]),
        (_, None) => unreachable!("`f` ran but returned no value"),
    }
}

/// Splits an optional view before row `mid`, into the rows above and the rows from `mid`.
fn split_rows(
    view: Option<MatMut<'_>>,
    mid: usize,
) -> Result<(Option<MatMut<'_>>, Option<MatMut<'_>>), Error> {
    match view {
        Some(view) => {
            let (top, bottom) = view.split_rows_at(mid)?;
            Ok((Some(top), Some(bottom)))
        }
        None => Ok((None, None)),
    }
}

/// Runs `a` and `b`, in parallel through `rayon::join` when `parallel` is set.
fn join<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if parallel {
        rayon::join(a, b)
    } else {
        (a(), b())
    }
}

/// Minimum number of rows of `dW` per task when the partial gradients are added in
/// parallel. A band of 32 rows of a 784-input layer is 100 KiB per partial, enough to
/// outweigh a rayon join.
const MIN_REDUCE_ROWS: usize = 32;

/// Adds to `sums`, rows `first_row..` of `dW`, the same rows of each partial gradient in
/// `partials` (each `partial_len` long, `dW` row-major first), in partial order. Bands of
/// rows are split across at most `tasks` rayon tasks.
fn add_partial_weights(
    mut sums: MatMut<'_>,
    first_row: usize,
    partials: &[f32],
    partial_len: usize,
    tasks: usize,
) {
    let (rows, cols) = (sums.rows(), sums.cols());
    if tasks > 1 && rows >= 2 * MIN_REDUCE_ROWS {
        let mid = rows / 2;
        let top_tasks = tasks / 2;
        if let Ok((top, bottom)) = sums.rb_mut().split_rows_at(mid) {
            join(
                true,
                || add_partial_weights(top, first_row, partials, partial_len, top_tasks),
                || {
                    let bottom_tasks = tasks - top_tasks;
                    add_partial_weights(
                        bottom,
                        first_row + mid,
                        partials,
                        partial_len,
                        bottom_tasks,
                    )
                },
            );
            return;
        }
    }

    for partial in partials.chunks_exact(partial_len) {
        add_into(
            &mut sums,
            &partial[first_row * cols..(first_row + rows) * cols],
        );
    }
}

/// Adds the row-major `partial` to `sums` element by element.
fn add_into(sums: &mut MatMut<'_>, partial: &[f32]) {
    let cols = sums.cols();
    if cols == 0 {
        return;
    }
    for (i, partial_row) in partial.chunks_exact(cols).enumerate() {
        if let Some(row) = sums.row_slice_mut(i) {
            for (sum, &p) in row.iter_mut().zip(partial_row) {
                *sum += p;
            }
            continue;
        }
        for (j, &p) in partial_row.iter().enumerate() {
            if let Some(sum) = sums.get_mut(i, j) {
                *sum += p;
            }
        }
    }
}

impl Layer<'_> {
    /// Overwrites one partial gradient per chunk in `chunks`, each a slice of `partials`
    /// containing `dW` row-major then `db`, and writes the chunks' rows of `input_delta`,
    /// whose first row is the first sample of `chunks.start`. The chunks run as `groups`
    /// runs of consecutive chunks, one rayon task each.
    fn accumulate_partials(
        &self,
        chunks: Range<usize>,
        chunk_rows: &(impl Fn(usize) -> usize + Sync),
        partials: &mut [f32],
        mut input_delta: Option<MatMut<'_>>,
        groups: usize,
    ) -> Result<(), Error> {
        let (n_in, n_out) = (self.input.cols(), self.weights.rows());
        let partial_len = n_out * n_in + n_out;
        if groups <= 1 || chunks.len() <= 1 {
            let first_row = chunk_rows(chunks.start);
            for (chunk, partial) in chunks.zip(partials.chunks_exact_mut(partial_len)) {
                let rows = chunk_rows(chunk)..chunk_rows(chunk + 1);
                let (partial_weights, partial_bias) = partial.split_at_mut(n_out * n_in);
                let partial_weights = MatMut::from_slice(partial_weights, n_out, n_in)?;
                let chunk_delta = match input_delta.as_mut() {
                    Some(view) => Some(view.rb_mut().submatrix_mut(
                        rows.start - first_row,
                        0,
                        rows.len(),
                        n_in,
                    )?),
                    None => None,
                };
                self.accumulate(
                    rows,
                    partial_weights,
                    partial_bias,
                    GradMode::Overwrite,
                    chunk_delta,
                    Parallelism::Sequential,
                )?;
            }
            return Ok(());
        }

        let left_groups = groups / 2;
        let mid = chunks.start + chunks.len() * left_groups / groups;
        let (left, right) = partials.split_at_mut((mid - chunks.start) * partial_len);
        let (left_delta, right_delta) =
            split_rows(input_delta, chunk_rows(mid) - chunk_rows(chunks.start))?;
        let (left_result, right_result) = join(
            true,
            || {
                self.accumulate_partials(
                    chunks.start..mid,
                    chunk_rows,
                    left,
                    left_delta,
                    left_groups,
                )
            },
            || {
                let right_groups = groups - left_groups;
                self.accumulate_partials(
                    mid..chunks.end,
                    chunk_rows,
                    right,
                    right_delta,
                    right_groups,
                )
            },
        );
        left_result.and(right_result)
    }

    /// Computes the gradients of the samples `rows`, one sample block after another, and
    /// adds them to (or with [`GradMode::Overwrite`] writes them into) `grad_weights` and
    /// `grad_bias`. `input_delta` contains exactly these rows.
    fn accumulate(
        &self,
        rows: Range<usize>,
        mut grad_weights: MatMut<'_>,
        grad_bias: &mut [f32],
        mode: GradMode,
        mut input_delta: Option<MatMut<'_>>,
        par: Parallelism,
    ) -> Result<(), Error> {
        let (n_in, n_out) = (self.input.cols(), self.weights.rows());
        if mode == GradMode::Overwrite {
            grad_bias.fill(0.0);
            if rows.is_empty() {
                grad_weights.fill(0.0);
            }
        }

        for first in rows.clone().step_by(self.block_rows) {
            let block_len = self.block_rows.min(rows.end - first);
            let block_delta = self.delta.submatrix(first, 0, block_len, n_out)?;
            let block_input = self.input.submatrix(first, 0, block_len, n_in)?;

            let mut block_input_delta = match input_delta.as_mut() {
                Some(view) => {
                    Some(
                        view.rb_mut()
                            .submatrix_mut(first - rows.start, 0, block_len, n_in)?,
                    )
                }
                None => None,
            };
            let accumulate = first != rows.start || mode == GradMode::Accumulate;
            add_column_sums(block_delta, grad_bias);

            if narrow::applies(
                block_delta,
                block_input,
                self.weights,
                grad_weights.as_ref(),
                block_input_delta.as_ref().map(MatMut::as_ref),
            ) {
                narrow::backward_block(
                    self.arch,
                    block_delta,
                    block_input,
                    self.weights,
                    self.input_activation,
                    grad_weights.rb_mut(),
                    accumulate,
                    block_input_delta,
                );
                continue;
            }

            // dW ← (dW +) δᵀ·X over this block's samples.
            let beta = if accumulate { 1.0 } else { 0.0 };
            // SAFETY: `Post::NONE` contains no pointers.
            unsafe {
                gemm_fused(
                    self.arch,
                    block_delta.t(),
                    block_input,
                    beta,
                    grad_weights.rb_mut(),
                    par,
                    Post::NONE,
                )?;
            }

            if let Some(block_input_delta) = block_input_delta.take() {
                propagate(
                    self.arch,
                    block_delta,
                    block_input,
                    self.weights,
                    self.input_activation,
                    block_input_delta,
                    par,
                )?;
            }
        }
        Ok(())
    }
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
