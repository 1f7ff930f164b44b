//! Cache-blocked GEMM: blocking sizes, packing and the loop nest.

mod blocking;
mod buffer;
mod columns;
mod dot;
mod nest;
mod operand;
mod pack;
mod split;

use crate::error::Error;
use crate::kernel::{Arch, Beta, KernelSet, Post};
use crate::matrix::{MatMut, MatRef, gemm_dims};
use crate::parallel::Parallelism;
use blocking::Blocking;
use nest::DirectOperands;
use operand::{Operand, OutOperand, Problem};

#[doc(hidden)]
/// Products below this many floating-point operations (`2·m·n·k`) run on the calling
/// thread whatever the [`Parallelism`]: waking a sleeping rayon worker costs tens of
/// microseconds, and `2²³` flops take about that long on one AVX-512 core.
pub const PARALLEL_MIN_FLOPS: u64 = 1 << 23;

/// Computes `C ← α·A·B + β·C` with a cache-blocked, SIMD kernel chosen for this CPU.
///
/// `a` is `m × k`, `b` is `k × n` and `c` is `m × n`. Transposes are views ([`MatRef::t`]),
/// so `Aᵀ·B`, `A·Bᵀ` and `Aᵀ·Bᵀ` need no flags, and any strides work, negative included,
/// with no copy beyond the packing every product does. `a` and `b` may also have zero
/// strides (a row or column repeated), while [`MatMut`] rejects strides that give two
/// elements of `c` one address.
///
/// BLAS semantics: with `β = 0`, `C` is never read, so NaN or garbage in it cannot reach the
/// result. With `k = 0` or `α = 0`, `A` and `B` are not read and `C ← β·C`. An empty `m`
/// or `n` returns at once.
///
/// Each element of C is summed in `f32`. A reduction of up to a few hundred steps is
/// summed in one slice, and a longer one in slices whose sums are added to C in turn. The
/// slice lengths follow from the L1d size (one slice up to 816 steps, else slices of at
/// most 512, with 48 KiB and the AVX-512 tiles). The rounding error therefore grows with
/// `k` as for any `f32` GEMM.
///
/// The micro-kernel path (AVX-512F, AVX2+FMA or portable) is detected on the first call;
/// the environment variable `DENSEGRAD_ARCH=avx512|avx2|portable` forces one. With
/// [`Parallelism::Rayon`], products of at least 2²³ floating-point operations (`2·m·n·k`)
/// split their output blocks across tasks of the current rayon pool (calling from inside a rayon task is fine),
/// and the result is bitwise equal to the sequential one. The address of a buffer within a
/// cache line decides whether an operand is read in place or packed, never the
/// arithmetic, so the bits do not depend on it either. The same values in another
/// layout (a strided or transposed view instead of a contiguous one) may take another
/// kernel, which adds the products in another order: the results then agree to rounding,
/// not bit for bit. For example, one row times a matrix sums each element in one chain on
/// some layouts and, more accurately, in several partial sums on others.
///
/// Packing buffers are kept per thread and never shrink, so a warm thread does not
/// allocate. They grow with the largest product the thread has run. The block of A is
/// sized for half the L2 cache, and the panel of B for a quarter of the L3 cache, at most
/// 4096 columns wide. On a core with 2 MiB of L2 and a large L3 that is about 0.5 MiB and
/// 8 MiB. A thread's buffers are freed when it exits.
///
/// ```
/// use densegrad::{gemm, MatMut, MatRef, Parallelism};
///
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
/// let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 × 2
/// let mut c = [f32::NAN; 4];
/// gemm(
///     1.0,
///     MatRef::from_slice(&a, 2, 3)?,
///     MatRef::from_slice(&b, 3, 2)?,
///     0.0,
///     MatMut::from_slice(&mut c, 2, 2)?,
///     Parallelism::Sequential,
/// )?;
/// assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `b` when `b.rows() != a.cols()` (the expected shape is
/// `a.cols() × c.cols()`), or `c` when `c` is not `a.rows() × b.cols()`. Nothing is written
/// then.
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    gemm_with_arch(Arch::selected(), alpha, a, b, beta, c, par)
}

/// [`gemm`] on a given micro-kernel path, for tests and benchmarks that compare paths in
/// one process. A path the CPU lacks is replaced by the fastest supported one below it.
///
/// # Errors
///
/// As for [`gemm`].
#[doc(hidden)]
pub fn gemm_with_arch(
    arch: Arch,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    gemm_with_options(arch, Packing::Auto, alpha, a, b, beta, c, par)
}

/// Whether small operands may be read in place instead of packed.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// Read operands smaller than half of L2 in place when their layout allows it.
    Auto,
    /// Pack every operand, so tests reach the packing code with small shapes.
    Always,
}

/// [`gemm_with_arch`] with a choice of [`Packing`].
///
/// # Errors
///
/// As for [`gemm`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn gemm_with_options(
    arch: Arch,
    packing: Packing,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
    par: Parallelism,
) -> Result<(), Error> {
    let (m, k, n) = gemm_dims(a, b, c.as_ref())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 || alpha == 0.0 {
        scale(&mut c, beta);
        return Ok(());
    }

    let problem = Problem {
        m,
        n,
        k,
        alpha,
        beta: Beta::new(beta),
        a: Operand::new(a),
        b: Operand::new(b),
        c: OutOperand::new(c),
        post: Post::NONE,
    };
    // SAFETY: the problem was built from views whose shapes `gemm_dims` checked: `a` and
    // `b` are borrowed for the call, and `c` is a unique borrow whose elements have
    // distinct addresses (`MatMut` guarantees both). It has no element-wise steps.
    unsafe { run(problem, arch, packing, par) };
    Ok(())
}

/// Runs a non-empty `problem` on the dot-product path when it applies, or else through the
/// loop nest in the cheaper orientation, with as many threads as its size and `par` allow.
///
/// # Safety
///
/// `problem` describes views that are valid for the whole call, with distinct elements of
/// C and no other live borrow of C, and the pointers of its element-wise steps are
/// readable for C's shape.
unsafe fn run(mut problem: Problem, arch: Arch, packing: Packing, par: Parallelism) {
    let kernels = KernelSet::for_arch(arch.or_supported_below());
    let threads = thread_count(&problem, par);
    if packing == Packing::Auto && dot::applies(&problem, kernels) {
        // SAFETY: the path is supported (`or_supported_below`); the caller guarantees the
        // views.
        unsafe { dot::run(&problem, kernels, threads) };
        return;
    }
    if packing == Packing::Auto
        && let Some(oriented) = columns::oriented(&problem, kernels)
    {
        // SAFETY: as above, and `oriented` came from `columns::oriented`.
        unsafe { columns::run(&oriented, kernels, threads) };
        return;
    }

    let blocking = Blocking::for_kernels(kernels);
    let mut direct = DirectOperands::choose(&problem, kernels, packing);
    let transposed = problem.t();
    let transposed_direct = DirectOperands::choose(&transposed, kernels, packing);
    let cost = orientation_cost(&problem, kernels, blocking, direct);
    if orientation_cost(&transposed, kernels, blocking, transposed_direct) < cost {
        problem = transposed;
        direct = transposed_direct;
    }
    let fitted = fitted_kernels(&problem, kernels);
    let (kernels, blocking) = if core::ptr::eq(fitted, kernels) {
        (kernels, blocking)
    } else {
        direct = DirectOperands::choose(&problem, fitted, packing);
        (fitted, Blocking::for_kernels(fitted))
    };

    // Where A is packed only because its columns start off cache lines, the rows above
    // the first line run as a product of their own and the rest is read in place. Both
    // parts take the same kernels and blocks, so every element of C gets the same
    // arithmetic as without the split, wherever the buffers start.
    match DirectOperands::line_aligned_split(&problem, kernels, packing) {
        None => {
            // SAFETY: the caller guarantees the views and the element-wise steps' pointers.
            unsafe { run_nest(&problem, kernels, blocking, direct, threads) };
        }
        Some(first) => {
            for rows in [0..first, first..problem.m] {
                let part = problem.rows(rows);
                let direct = DirectOperands::choose(&part, kernels, packing);
                // SAFETY: as above, and the two parts write disjoint rows of C.
                unsafe { run_nest(&part, kernels, blocking, direct, thread_count(&part, par)) };
            }
        }
    }
}

/// Runs `problem` through the loop nest on `threads` tasks.
///
/// # Safety
///
/// `kernels` is for a path this CPU supports, and `problem` meets the contract of [`run`].
unsafe fn run_nest(
    problem: &Problem,
    kernels: &'static KernelSet,
    blocking: Blocking,
    direct: DirectOperands,
    threads: usize,
) {
    // A call of one parallel region starts it from here: handing the whole call to the
    // pool first adds a second hand-over, and 256×128×256 AB on two threads ran 8 %
    // slower that way. With several regions, one hand-over serves them all.
    let call = move || {
        // SAFETY: the caller guarantees the path, the views and the element-wise steps'
        // pointers, and they stay valid while this call waits for the pool.
        unsafe { nest::run(problem, kernels, blocking, direct, threads) };
    };
    if nest::parallel_regions(problem, blocking, direct, threads) > 1 {
        crate::parallel::on_pool(threads, call);
    } else {
        call();
    }
}

/// `C ← A·B + β·C` followed by the element-wise `post` steps in the micro-kernel
/// epilogue, for the fused dense-layer kernels. `post`'s pointers refer to element (0, 0)
/// of `c`. Threading, orientation and bitwise thread independence are as for [`gemm`].
///
/// Returns without applying `post` when `A·B` is empty (`k = 0`, or `m` or `n` is 0), so
/// the caller handles `k = 0` itself.
///
/// # Safety
///
/// `post`'s pointers are readable for `c`'s shape during the call: a row bias for `m`
/// elements, a column bias for `n`, and a derivative input for every (i, j) of `c` at
/// its strides.
///
/// # Errors
///
/// As for [`gemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_fused(
    arch: Arch,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
    par: Parallelism,
    post: Post,
) -> Result<(), Error> {
    let (m, k, n) = gemm_dims(a, b, c.as_ref())?;
    if m == 0 || n == 0 || k == 0 {
        return Ok(());
    }

    let problem = Problem {
        m,
        n,
        k,
        alpha: 1.0,
        beta: Beta::new(beta),
        a: Operand::new(a),
        b: Operand::new(b),
        c: OutOperand::new(c),
        post,
    };
    // SAFETY: as in `gemm_with_options`; the caller guarantees `post`'s pointers.
    unsafe { run(problem, arch, Packing::Auto, par) };
    Ok(())
}

/// Tile and block sizes of one micro-kernel path on this CPU, in elements.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    /// Rows of a full micro-kernel tile.
    pub mr: usize,
    /// Columns of a full micro-kernel tile.
    pub nr: usize,
    /// Maximum depth of a packed panel when the reduction is split into slices.
    pub kc: usize,
    /// Maximum reduction length that runs as one slice.
    pub one_slice_depth: usize,
    /// Rows of a packed A block.
    pub mc: usize,
    /// Columns of a packed B panel.
    pub nc: usize,
}

impl BlockSizes {
    /// Returns the sizes that [`gemm_with_arch`] uses for `arch` (after falling back to a
    /// supported path), so tests can aim at every tile and block edge.
    pub fn for_arch(arch: Arch) -> BlockSizes {
        let kernels = KernelSet::for_arch(arch.or_supported_below());
        let blocking = Blocking::for_kernels(kernels);
        BlockSizes {
            mr: kernels.mr(),
            nr: kernels.nr,
            kc: blocking.kc,
            one_slice_depth: blocking.one_slice_depth,
            mc: blocking.mc,
            nc: blocking.nc,
        }
    }
}

/// Maximum reduction length for which a C with few rows takes one-vector tiles. With longer
/// reductions they lost to the default tiles, probably because their 24 columns of B, read
/// in place, then stream through L1 at once. On one AVX-512 core, 1024×k×10 and 1024×k×16
/// `ab` in GFLOP/s, `16 × 24` tiles against `16 × 6`: 90 and 75, 144 and 118 at k = 128;
/// 76 and 74, 135 and 119 at k = 256; 70 and 74, 130 and 118 at k = 320; 42 and 70, 66
/// and 115 at k = 1024.
// NOTE: timed only with B's columns `k` elements apart (a row-major operand read in
// place), and the cause is not measured; other strides may move the limit.
const ONE_VECTOR_MAX_DEPTH: usize = 256;

/// Returns the kernels for `problem` as oriented: one-vector tiles for a C with few rows
/// whose columns are contiguous and a reduction of at most [`ONE_VECTOR_MAX_DEPTH`],
/// otherwise wider tiles for a C with few columns (see [`KernelSet::for_columns`]), or
/// `kernels` itself. One-vector tiles lost to the default tiles where C took the scalar
/// staging path: 16×128×1024 `abt` ran at 50 GFLOP/s against 60.
fn fitted_kernels(problem: &Problem, kernels: &'static KernelSet) -> &'static KernelSet {
    if problem.k <= ONE_VECTOR_MAX_DEPTH && problem.c.row_stride == 1 {
        let by_rows = kernels.for_rows(problem.m);
        if !core::ptr::eq(by_rows, kernels) {
            return by_rows;
        }
    }
    kernels.for_columns(problem.n)
}

/// Estimates the cycles that `problem`, computed as given, spends on packing, stores and
/// vector FMAs, to choose between computing `C` and `Cᵀ = Bᵀ·Aᵀ`.
///
/// Three costs differ between the two. Packing is a plain copy, or a transposing one for
/// A without contiguous columns and B without contiguous rows. A `C` without contiguous
/// columns takes the scalar staging path. The FMAs count in vectors of the tiles that
/// run, so rows padded up to a whole vector, and the narrower vectors of one-vector tiles
/// for few rows, cost more. The per-element cycle counts are estimates from profiles on
/// one Zen 4 core; they only need the right order of magnitude.
fn orientation_cost(
    problem: &Problem,
    kernels: &'static KernelSet,
    blocking: Blocking,
    direct: DirectOperands,
) -> f64 {
    const COPY_CYCLES: f64 = 0.25;
    const TRANSPOSE_CYCLES: f64 = 0.35;
    const STAGED_STORE_CYCLES: f64 = 2.5;

    let (m, n, k) = (problem.m as f64, problem.n as f64, problem.k as f64);
    let pack_cycles = |direct: bool, contiguous: bool| match (direct, contiguous) {
        (true, _) => 0.0,
        (false, true) => COPY_CYCLES,
        (false, false) => TRANSPOSE_CYCLES,
    };
    let a_cost = m * k * pack_cycles(direct.a, problem.a.row_stride == 1);
    let b_cost = k * n * pack_cycles(direct.b, problem.b.col_stride == 1);

    let c_cost = if problem.c.row_stride == 1 {
        0.0
    } else {
        let slices = blocking.reduction_slices(problem.k).parts() as f64;
        m * n * slices * STAGED_STORE_CYCLES
    };

    // One vector FMA per cycle, an estimate for current x86 cores, in the vectors of the
    // tiles that `run` takes. Without one-vector tiles both orientations have the same
    // vectors, and the two costs differ by the padding rows alone.
    let width = fitted_kernels(problem, kernels).lane_width;
    let fma_cost = problem.m.div_ceil(width) as f64 * n * k;

    a_cost + b_cost + c_cost + fma_cost
}

/// Returns the number of rayon tasks for `problem`, 1 below [`PARALLEL_MIN_FLOPS`].
fn thread_count(problem: &Problem, par: Parallelism) -> usize {
    let flops = 2u64
        .saturating_mul(problem.m as u64)
        .saturating_mul(problem.n as u64)
        .saturating_mul(problem.k as u64);
    if flops < PARALLEL_MIN_FLOPS {
        1
    } else {
        par.max_threads()
    }
}

/// `C ← β·C`, without reading `C` when `β = 0`.
fn scale(c: &mut MatMut<'_>, beta: f32) {
    match Beta::new(beta) {
        Beta::Zero => c.fill(0.0),
        Beta::One => {}
        Beta::Other(beta) => {
            for i in 0..c.rows() {
                for j in 0..c.cols() {
                    if let Some(element) = c.get_mut(i, j) {
                        *element *= beta;
                    }
                }
            }
        }
    }
}
