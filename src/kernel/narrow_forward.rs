//! The forward pass of a dense layer with few outputs: `output ← f(X·Wᵀ + b)` as dot
//! products of rows of `X` with rows of `W`, a few samples at a time.
//!
//! With few outputs, `X·Wᵀ` has a C of few columns, and the loop nest spends its time
//! packing `X` through a transposing copy for tiles it fills only in part. Here a group
//! of samples keeps one vector of partial sums per (sample, output) pair in registers
//! while it walks along the inputs. Each step loads one vector of each sample and of
//! each row of `W`. The sums of a sample's outputs are then reduced across lanes, the
//! bias added and the activation applied to the whole row at once, so softmax needs no
//! second pass either.

use super::lane::Lane;
use super::narrow_backward::load_cols;
use crate::Activation;

/// Maximum number of outputs the kernel takes. Each sample ends with its outputs reduced
/// across lanes and finished one by one, which more outputs do not repay: on one AVX-512
/// core at m = 128, in GFLOP/s against the loop nest, 128→10 ran at 61 against 51, 784→10
/// at 78 against 75 and 256→4 at 67 against 49, but 128→12 at 42 against 54 and 784→14 at
/// 71 against 73. With AVX2, 128→14 ran at 53 against 60.
pub(crate) const NARROW_FORWARD_MAX_OUTPUTS: usize = 10;

/// One call of [`narrow_forward_body`]: `rows` samples through a layer with `outputs`
/// outputs and `cols` inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NarrowForward {
    /// `X`, `rows × cols` with contiguous rows.
    pub input: *const f32,
    pub input_row_stride: isize,
    /// `W`, `outputs × cols` with contiguous rows.
    pub weights: *const f32,
    pub weights_row_stride: isize,
    /// The bias, `outputs` elements.
    pub bias: *const f32,
    /// The activation, applied to each finished row (softmax included).
    pub activation: Activation,
    /// The output, `rows × outputs`, with any strides.
    pub output: *mut f32,
    pub output_row_stride: isize,
    pub output_col_stride: isize,
    /// Samples.
    pub rows: usize,
    /// Inputs `n_in`.
    pub cols: usize,
    /// Outputs `n_out`, from 1 to [`NARROW_FORWARD_MAX_OUTPUTS`].
    pub outputs: usize,
}

/// Runs `args` (see [`NarrowForward`]). A sample's outputs depend only on its own row of
/// `X`, never on the samples it is grouped with, so any split of the rows gives the same
/// bits.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set. `1 ≤ outputs ≤ NARROW_FORWARD_MAX_OUTPUTS` and
/// `cols ≥ 1`. `X`, `W` and the bias have readable elements for the shapes in `args`, and
/// the output's elements are distinct, writable and borrowed by no one else.
#[inline(always)]
pub(crate) unsafe fn narrow_forward_body<L: Lane>(args: &NarrowForward) {
    // SAFETY (every arm): the caller's contract, with the output count matched.
    unsafe {
        match args.outputs {
            1 => groups_for_registers::<L, 1>(args),
            2 => groups_for_registers::<L, 2>(args),
            3 => groups_for_registers::<L, 3>(args),
            4 => groups_for_registers::<L, 4>(args),
            5 => groups_for_registers::<L, 5>(args),
            6 => groups_for_registers::<L, 6>(args),
            7 => groups_for_registers::<L, 7>(args),
            8 => groups_for_registers::<L, 8>(args),
            9 => groups_for_registers::<L, 9>(args),
            _ => groups_for_registers::<L, NARROW_FORWARD_MAX_OUTPUTS>(args),
        }
    }
}

/// Maximum number of samples in one group.
const MAX_GROUP_ROWS: usize = 4;

/// Returns the samples per group for `outputs` outputs: as many as the registers hold
/// with their `outputs` sums each, one loaded vector each and a loaded weight, up to
/// [`MAX_GROUP_ROWS`]. Each weight vector loaded serves every sample of the group.
const fn group_rows(outputs: usize, registers: usize) -> usize {
    let rows = (registers - 1) / (outputs + 1);
    if rows == 0 {
        1
    } else if rows > MAX_GROUP_ROWS {
        MAX_GROUP_ROWS
    } else {
        rows
    }
}

/// Runs [`row_groups`] with the group size that [`group_rows`] gives.
///
/// # Safety
///
/// As for [`narrow_forward_body`], with `N == args.outputs`.
#[inline(always)]
unsafe fn groups_for_registers<L: Lane, const N: usize>(args: &NarrowForward) {
    // SAFETY (every arm): the caller's contract.
    unsafe {
        match group_rows(N, L::REGISTERS) {
            1 => row_groups::<L, N, 1>(args),
            2 => row_groups::<L, N, 2>(args),
            3 => row_groups::<L, N, 3>(args),
            _ => row_groups::<L, N, MAX_GROUP_ROWS>(args),
        }
    }
}

/// Runs groups of `R` samples, then one sample at a time for the rest.
///
/// # Safety
///
/// As for [`narrow_forward_body`], with `N == args.outputs`.
#[inline(always)]
unsafe fn row_groups<L: Lane, const N: usize, const R: usize>(args: &NarrowForward) {
    let mut row = 0;
    while row + R <= args.rows {
        // SAFETY: samples `row..row + R` lie inside X and the output.
        unsafe { row_group::<L, N, R>(args, row) };
        row += R;
    }
    while row < args.rows {
        // SAFETY: sample `row` lies inside X and the output.
        unsafe { row_group::<L, N, 1>(args, row) };
        row += 1;
    }
}

/// Computes and stores the outputs of the `R` samples from `first_row`.
///
/// # Safety
///
/// As for [`narrow_forward_body`], with `N == args.outputs` and `first_row + R ≤ rows`.
#[inline(always)]
unsafe fn row_group<L: Lane, const N: usize, const R: usize>(
    args: &NarrowForward,
    first_row: usize,
) {
    // SAFETY: the caller guarantees the CPU's support for `L`.
    let zero = unsafe { L::zero() };
    let mut sums = [[zero; N]; R];
    let full_cols = args.cols / L::WIDTH * L::WIDTH;
    for col in (0..full_cols).step_by(L::WIDTH) {
        // SAFETY: columns `col..col + WIDTH` lie inside X and W.
        unsafe { add_step::<L, N, R>(args, first_row, col, L::WIDTH, &mut sums) };
    }
    if full_cols < args.cols {
        let width = args.cols - full_cols;
        // SAFETY: columns `full_cols..cols` lie inside X and W.
        unsafe { add_step::<L, N, R>(args, first_row, full_cols, width, &mut sums) };
    }

    for (r, row_sums) in sums.iter().enumerate() {
        let mut z = [0.0f32; NARROW_FORWARD_MAX_OUTPUTS];
        let z = &mut z[..N];
        for (first, out) in (0..N).step_by(4).zip(z.chunks_mut(4)) {
            // Four vectors per cross-lane sum; the last group repeats its last vector,
            // whose sum does not depend on its place.
            let group: [L; 4] = core::array::from_fn(|g| row_sums[(first + g).min(N - 1)]);
            out.copy_from_slice(&L::sums(&group)[..out.len()]);
        }
        for (o, value) in z.iter_mut().enumerate() {
            // SAFETY: the bias has `outputs` elements.
            *value += unsafe { *args.bias.add(o) };
        }
        // ReLU and leaky ReLU in line, with the arithmetic of their lanes: a call of
        // `apply_slice` per sample cost more than the sample's products.
        match args.activation {
            Activation::Identity => {}
            Activation::Relu => {
                for value in z.iter_mut() {
                    *value = if *value > 0.0 { *value } else { 0.0 };
                }
            }
            Activation::LeakyRelu { slope } => {
                for value in z.iter_mut() {
                    *value = if *value > 0.0 { *value } else { *value * slope };
                }
            }
            activation => activation.apply_slice(z),
        }

        let row = (first_row + r) as isize * args.output_row_stride;
        for (o, &value) in z.iter().enumerate() {
            let dst = args
                .output
                .wrapping_offset(row + o as isize * args.output_col_stride);
            // SAFETY: element (first_row + r, o) lies inside the output, which the caller
            // lets this call write.
            unsafe { *dst = value };
        }
    }
}

/// Adds the products of the `width` columns from `col` to the sums of the `R` samples
/// from `first_row`.
///
/// # Safety
///
/// As for [`row_group`], with `1 ≤ width ≤ WIDTH` and `col + width ≤ cols`.
#[inline(always)]
unsafe fn add_step<L: Lane, const N: usize, const R: usize>(
    args: &NarrowForward,
    first_row: usize,
    col: usize,
    width: usize,
    sums: &mut [[L; N]; R],
) {
    // SAFETY: the caller guarantees the CPU's support for `L`.
    let mut x = [unsafe { L::zero() }; R];
    for (r, x) in x.iter_mut().enumerate() {
        let offset = (first_row + r) as isize * args.input_row_stride + col as isize;
        // SAFETY: sample `first_row + r` of X has the columns `col..col + width`.
        *x = unsafe { load_cols(args.input.wrapping_offset(offset), width) };
    }
    for o in 0..N {
        let offset = o as isize * args.weights_row_stride + col as isize;
        // SAFETY: row `o < outputs` of W has the columns `col..col + width`.
        let w: L = unsafe { load_cols(args.weights.wrapping_offset(offset), width) };
        for (row_sums, &x) in sums.iter_mut().zip(&x) {
            row_sums[o] = x.mul_add(w, row_sums[o]);
        }
    }
}
