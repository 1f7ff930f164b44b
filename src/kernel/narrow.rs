//! The backward pass of a dense layer with few outputs, in one sweep over its samples:
//! `dW ← (dW +) δᵀ·X` and `input_delta ← (δ·W) ∘ f'(X)` from the same loads of `X` and
//! broadcasts of `δ`.
//!
//! With few outputs (a classifier's last layer, 128→10), both products of the loop nest
//! have a short side: `δᵀ·X` has `n_out` rows and `δ·W` a reduction of `n_out` steps. The
//! loop nest then spends more time packing, storing and re-reading tiles for the
//! derivative than in FMAs. Here a tile of one to four vectors of columns keeps its
//! `n_out` partial sums of `dW` per vector in registers for the whole block of samples,
//! and the matching vectors of `W` too where the registers allow. Each sample then costs,
//! per vector, one load of `X`, `2·n_out` FMAs and one store of `input_delta`, with
//! `n_out` broadcasts of `δ` shared by the tile.

use super::lane::Lane;
use super::post::times_derivative;
use crate::Activation;

/// Maximum number of outputs the kernel takes: `n_out` sums and `n_out` weight vectors,
/// plus a vector of `X`, the propagated error and a broadcast, fit in the 32 ZMM registers
/// of AVX-512 up to `2·14 + 3 = 31`. Paths with fewer registers load the weights from L1
/// instead (see [`keeps_weights`]). Timed on one AVX-512 core at m = 128, in GFLOP/s
/// against the two GEMM calls: with 14 outputs the kernel was level or ahead on every path
/// (128→14: 121 against 92 on AVX-512, 40 against 40 on AVX2, 20 against 16 portable, and
/// 784→14 135 against 75). With 16 outputs the weights no longer fit, and the loop nest was
/// faster on 128→16 (101 against 92), though not on 784→16 (87 against 90).
pub(crate) const NARROW_MAX_OUTPUTS: usize = 14;

/// One call of [`narrow_backward_body`]: the gradients of `rows` samples of a layer with
/// `outputs` outputs and `cols` inputs. Every matrix has contiguous rows, `*_row_stride`
/// elements apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NarrowBackward {
    /// `δ`, `rows × outputs`.
    pub delta: *const f32,
    pub delta_row_stride: isize,
    /// `X`, the layer's input, `rows × cols`.
    pub input: *const f32,
    pub input_row_stride: isize,
    /// `W`, `outputs × cols`.
    pub weights: *const f32,
    pub weights_row_stride: isize,
    /// `dW`, `outputs × cols`, overwritten or, with `accumulate`, added to.
    pub grad_weights: *mut f32,
    pub grad_row_stride: isize,
    /// Whether `δᵀ·X` is added to `dW` (which is then read) instead of overwriting it.
    pub accumulate: bool,
    /// The propagated error, `rows × cols`, or null to skip it.
    pub input_delta: *mut f32,
    pub input_delta_row_stride: isize,
    /// The activation below the layer, whose derivative is read from `X`.
    pub input_activation: Activation,
    /// Samples.
    pub rows: usize,
    /// Inputs `n_in`: columns of `X`, `W` and `dW`.
    pub cols: usize,
    /// Outputs `n_out`, from 1 to [`NARROW_MAX_OUTPUTS`].
    pub outputs: usize,
}

/// Runs `args` (see [`NarrowBackward`]). Each element of `dW` sums its products in sample
/// order from zero before it is added to the old value, and each element of the error sums
/// its products in output order, so no result depends on the vector width.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set. `1 ≤ outputs ≤ NARROW_MAX_OUTPUTS`. Each
/// matrix of `args` has the shape given there, with readable elements, and `dW` and the
/// error (when not null) are writable, borrowed by no one else and overlap no operand.
#[inline(always)]
pub(crate) unsafe fn narrow_backward_body<L: Lane>(args: &NarrowBackward) {
    // SAFETY (every arm): the caller's contract, with the output count matched.
    unsafe {
        match args.outputs {
            1 => tiles_for_registers::<L, 1>(args),
            2 => tiles_for_registers::<L, 2>(args),
            3 => tiles_for_registers::<L, 3>(args),
            4 => tiles_for_registers::<L, 4>(args),
            5 => tiles_for_registers::<L, 5>(args),
            6 => tiles_for_registers::<L, 6>(args),
            7 => tiles_for_registers::<L, 7>(args),
            8 => tiles_for_registers::<L, 8>(args),
            9 => tiles_for_registers::<L, 9>(args),
            10 => tiles_for_registers::<L, 10>(args),
            11 => tiles_for_registers::<L, 11>(args),
            12 => tiles_for_registers::<L, 12>(args),
            13 => tiles_for_registers::<L, 13>(args),
            _ => tiles_for_registers::<L, NARROW_MAX_OUTPUTS>(args),
        }
    }
}

/// Maximum number of vectors of columns that one tile covers.
const MAX_TILE_VECTORS: usize = 4;

/// Returns whether the weights of a one-vector tile stay in registers for `outputs`
/// outputs: `outputs` sums and `outputs` weights, a load of `X`, an error and a broadcast
/// of `δ`. Otherwise each FMA loads its weight from L1, which costs less than letting the
/// compiler spill the sums of `dW`. On AVX2 (16 registers), a 128→10 layer ran at 47
/// GFLOP/s with every weight in a register, below the loop nest's 55.
const fn keeps_weights(outputs: usize, registers: usize) -> bool {
    2 * outputs + 3 <= registers
}

/// Returns the vectors of columns per tile for `outputs` outputs: as many as the
/// registers hold with their sums, weights (see [`keeps_weights`]), loads of `X` and
/// errors, up to [`MAX_TILE_VECTORS`]. With few outputs, one vector would leave each sum
/// of `dW` a chain of one FMA per sample, bound by the FMA's latency rather than its
/// throughput.
const fn tile_vectors(outputs: usize, registers: usize) -> usize {
    // Per vector: the sums (and weights), a load of X and an error. Once per tile: a
    // broadcast of δ, and a loaded weight when the weights are not kept.
    let (per_vector, once) = if keeps_weights(outputs, registers) {
        (2 * outputs + 2, 1)
    } else {
        (outputs + 2, 2)
    };
    let mut vectors = MAX_TILE_VECTORS;
    while vectors > 1 && vectors * per_vector + once > registers {
        vectors -= 1;
    }
    vectors
}

/// Runs [`column_tiles`] with the tile width that [`tile_vectors`] gives.
///
/// # Safety
///
/// As for [`narrow_backward_body`], with `N == args.outputs`.
#[inline(always)]
unsafe fn tiles_for_registers<L: Lane, const N: usize>(args: &NarrowBackward) {
    // SAFETY (every arm): the caller's contract.
    unsafe {
        match tile_vectors(N, L::REGISTERS) {
            1 => column_tiles::<L, N, 1>(args),
            2 => column_tiles::<L, N, 2>(args),
            3 => column_tiles::<L, N, 3>(args),
            _ => column_tiles::<L, N, MAX_TILE_VECTORS>(args),
        }
    }
}

/// Runs tiles of `V` vectors of columns, then tiles of one vector for the columns left,
/// the last of them partial.
///
/// # Safety
///
/// As for [`narrow_backward_body`], with `N == args.outputs`.
#[inline(always)]
unsafe fn column_tiles<L: Lane, const N: usize, const V: usize>(args: &NarrowBackward) {
    let mut col = 0;
    while col + V * L::WIDTH <= args.cols {
        // SAFETY: columns `col..col + V·WIDTH` lie inside the matrices.
        unsafe { column_tile::<L, N, V>(args, col, L::WIDTH) };
        col += V * L::WIDTH;
    }
    while col < args.cols {
        let width = (args.cols - col).min(L::WIDTH);
        // SAFETY: columns `col..col + width` lie inside the matrices.
        unsafe { column_tile::<L, N, 1>(args, col, width) };
        col += width;
    }
}

/// Runs the `V` vectors of columns from `col` through every sample, the last vector
/// `width` columns wide.
///
/// # Safety
///
/// As for [`narrow_backward_body`], with `N == args.outputs`, `1 ≤ width ≤ WIDTH`, `width
/// == WIDTH` unless `V == 1`, and `col + (V − 1)·WIDTH + width ≤ cols`.
#[inline(always)]
unsafe fn column_tile<L: Lane, const N: usize, const V: usize>(
    args: &NarrowBackward,
    col: usize,
    width: usize,
) {
    // SAFETY: the caller guarantees the CPU's support for `L`.
    let zero = unsafe { L::zero() };
    let mut weights = [[zero; V]; N];
    let mut tile = Tile {
        args,
        col,
        width,
        weights: None,
    };
    if keeps_weights(N, L::REGISTERS) {
        for (o, row) in weights.iter_mut().enumerate() {
            for (v, w) in row.iter_mut().enumerate() {
                let src = tile.at(args.weights, o, args.weights_row_stride, v);
                // SAFETY: row `o < outputs` of W has the tile's columns.
                *w = unsafe { load_cols(src, width) };
            }
        }
        tile.weights = Some(&weights);
    }

    // One pass over the samples, with the derivative chosen once per tile.
    let mut sums = [[zero; V]; N];
    // SAFETY (every arm): the caller's contract.
    unsafe {
        match (args.input_delta.is_null(), args.input_activation) {
            (true, _) => tile.sweep::<NO_ERROR>(&mut sums, 0.0),
            (false, Activation::Relu) => tile.sweep::<RELU>(&mut sums, 0.0),
            (false, Activation::LeakyRelu { slope }) => tile.sweep::<LEAKY_RELU>(&mut sums, slope),
            (false, Activation::Sigmoid) => tile.sweep::<SIGMOID>(&mut sums, 0.0),
            (false, Activation::Tanh) => tile.sweep::<TANH>(&mut sums, 0.0),
            (false, Activation::Identity | Activation::Softmax) => {
                tile.sweep::<IDENTITY>(&mut sums, 0.0)
            }
        }
    }

    for (o, row) in sums.iter().enumerate() {
        for (v, &sum) in row.iter().enumerate() {
            let dst = tile
                .at(args.grad_weights, o, args.grad_row_stride, v)
                .cast_mut();
            let value = if args.accumulate {
                // SAFETY: row `o` of dW has the tile's columns, readable when
                // accumulating.
                unsafe { load_cols::<L>(dst, width) }.add(sum)
            } else {
                sum
            };
            // SAFETY: as above, and the caller lets this call write dW.
            unsafe { store_cols(value, dst, width) };
        }
    }
}

// The kinds of sweep, as const parameters so that each compiles to its own loop.
// NO_ERROR skips the propagated error, for a first layer. The others write the error
// times the derivative of one activation.
const NO_ERROR: u8 = 0;
const IDENTITY: u8 = 1;
const RELU: u8 = 2;
const LEAKY_RELU: u8 = 3;
const SIGMOID: u8 = 4;
const TANH: u8 = 5;

/// One column tile of a call: `V` vectors of columns from `col`, the last `width` wide.
struct Tile<'a, L, const N: usize, const V: usize> {
    args: &'a NarrowBackward,
    col: usize,
    width: usize,
    /// The tile's weights, when they stay in registers (see [`keeps_weights`]).
    weights: Option<&'a [[L; V]; N]>,
}

impl<L: Lane, const N: usize, const V: usize> Tile<'_, L, N, V> {
    /// Returns element `col + v·WIDTH` of row `row` of a matrix with contiguous rows.
    #[inline(always)]
    fn at(&self, base: *const f32, row: usize, row_stride: isize, v: usize) -> *const f32 {
        base.wrapping_offset(row as isize * row_stride + (self.col + v * L::WIDTH) as isize)
    }

    /// Adds every sample's products to `sums` and, unless `ERROR` is [`NO_ERROR`], writes
    /// its propagated error times the derivative that `ERROR` names (with `slope` for
    /// leaky ReLU). Each loaded vector of X serves both products and the derivative.
    ///
    /// # Safety
    ///
    /// As for [`column_tile`].
    #[inline(always)]
    unsafe fn sweep<const ERROR: u8>(&self, sums: &mut [[L; V]; N], slope: f32) {
        let args = self.args;
        let activation = match ERROR {
            RELU => Activation::Relu,
            LEAKY_RELU => Activation::LeakyRelu { slope },
            SIGMOID => Activation::Sigmoid,
            TANH => Activation::Tanh,
            _ => Activation::Identity,
        };
        // SAFETY: the caller guarantees the CPU's support for `L`.
        let zero = unsafe { L::zero() };

        for i in 0..args.rows {
            let mut x = [zero; V];
            for (v, x) in x.iter_mut().enumerate() {
                let src = self.at(args.input, i, args.input_row_stride, v);
                // SAFETY: sample `i < rows` of X has the tile's columns.
                *x = unsafe { load_cols(src, self.width) };
            }
            let delta_row = args
                .delta
                .wrapping_offset(i as isize * args.delta_row_stride);
            let mut back = [zero; V];
            for o in 0..N {
                // SAFETY: element (i, o) of δ is readable, and the CPU supports `L`.
                let d = unsafe { L::splat(*delta_row.add(o)) };
                for v in 0..V {
                    sums[o][v] = d.mul_add(x[v], sums[o][v]);
                    if ERROR == NO_ERROR {
                        continue;
                    }
                    let w = match self.weights {
                        Some(weights) => weights[o][v],
                        // SAFETY: row `o < outputs` of W has the tile's columns.
                        None => unsafe {
                            load_cols(
                                self.at(args.weights, o, args.weights_row_stride, v),
                                self.width,
                            )
                        },
                    };
                    back[v] = d.mul_add(w, back[v]);
                }
            }
            if ERROR == NO_ERROR {
                continue;
            }
            for v in 0..V {
                let error = times_derivative(activation, x[v], back[v]);
                let dst = self.at(args.input_delta, i, args.input_delta_row_stride, v);
                // SAFETY: sample `i` of the error has the tile's columns, which the caller
                // lets this call write.
                unsafe { store_cols(error, dst.cast_mut(), self.width) };
            }
        }
    }
}

/// Loads the `width` elements from `ptr`, with zeros in the other lanes.
///
/// # Safety
///
/// The CPU supports `L`, `width ≤ WIDTH`, and the `width` elements are readable.
#[inline(always)]
unsafe fn load_cols<L: Lane>(ptr: *const f32, width: usize) -> L {
    // SAFETY: the caller's contract.
    unsafe {
        if width == L::WIDTH {
            L::load(ptr)
        } else {
            L::load_first(ptr, width)
        }
    }
}

/// Stores the first `width` elements of `value` to `ptr`.
///
/// # Safety
///
/// `width ≤ WIDTH`, and the `width` elements are writable and borrowed by no one else.
#[inline(always)]
unsafe fn store_cols<L: Lane>(value: L, ptr: *mut f32, width: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if width == L::WIDTH {
            value.store(ptr)
        } else {
            value.store_first(ptr, width)
        }
    }
}
