//! The micro-kernels of each path: tile sizes and a table of every edge-tile size, each a
//! thin `#[target_feature]` wrapper around the generic body.

use super::columns::{ColumnSum, OuterProduct, column_sum_body, outer_product_body};
use super::dispatch::Arch;
use super::dot::{DOT_CHAINS, DOT_ROWS, DOT_RUNS, dots_body};
use super::lane::WideF32x8;
#[cfg(target_arch = "x86_64")]
use super::lane::{Avx2F32x8, Avx512F32x16};
use super::microkernel::{Epilogue, TileArgs, tile_body};
use super::narrow::{NarrowBackward, narrow_backward_body};
use super::post::Post;

/// Most columns of C for which [`KernelSet::for_columns`] may choose wider tiles. It
/// covers the few-sample shapes that were timed (7, 8, 10, 13 and 16 columns). Wider C
/// keeps the default tiles, because the wider ones were not timed there.
const WIDE_TILES_MAX_COLS: usize = 16;

/// A compiled micro-kernel of one tile size.
type TileFn = unsafe fn(&TileArgs, &Epilogue);

/// Compiled dot products: `dots(shared, runs, k)` returns `Σ shared[p]·runs[r][p]` over
/// `p < k` for each run (see [`dots_body`]).
type DotsFn = unsafe fn(*const f32, &[*const f32; DOT_RUNS], usize) -> [f32; DOT_RUNS];

/// Compiled block of dot products: `dot_block(rows, runs, k)` returns
/// `Σ rows[s][p]·runs[r][p]` over `p < k` for each row `s` and run `r`.
type DotBlockFn = unsafe fn(
    &[*const f32; DOT_ROWS],
    &[*const f32; DOT_RUNS],
    usize,
) -> [[f32; DOT_RUNS]; DOT_ROWS];

/// Builds `&[&[TileFn]]` indexed by `[vectors - 1][cols - 1]`, for B micro-panels with
/// unit column stride (`true`) or any column stride (`false`).
macro_rules! tile_table {
    ($kernel:ident; $unit:literal; [$($mv:literal),*]; $nr:tt) => {
        &[$(tile_table!(@row $kernel; $unit; $mv; $nr)),*]
    };
    (@row $kernel:ident; $unit:literal; $mv:literal; [$($nr:literal),*]) => {
        &[$($kernel::<$mv, $nr, $unit> as TileFn),*]
    };
}

/// A compiled sum of scaled columns (see [`column_sum_body`]).
type ColumnSumFn = unsafe fn(&ColumnSum);

/// A compiled outer product (see [`outer_product_body`]).
type OuterProductFn = unsafe fn(&OuterProduct);

/// A compiled post pass: `post(steps, c, col_stride, rows, cols)` applies `steps` in
/// place to a stored tile with contiguous columns (see [`Post::apply_to_columns`]).
type PostFn = unsafe fn(&Post, *mut f32, isize, usize, usize);

/// A compiled backward pass of a layer with few outputs (see [`narrow_backward_body`]).
type NarrowBackwardFn = unsafe fn(&NarrowBackward);

/// The micro-kernels of one path.
pub(crate) struct KernelSet {
    /// `f32` elements per vector register.
    pub lane_width: usize,
    /// Vectors per full tile column, so a full tile has `mr = max_vectors · lane_width` rows.
    pub max_vectors: usize,
    /// Columns per full tile.
    pub nr: usize,
    /// Whether packing may transpose 8 × 8 blocks with AVX, which every CPU of this path
    /// has. Without it, packing transposes 4 × 4 blocks with SSE.
    pub avx_transpose: bool,
    /// Line limits of the dot-product path (`gemm::dot`): `(lines, depth)` lets a product
    /// with at most `lines` rows or columns of C take it when the reduction has at least
    /// `depth` elements. Each path's limits were timed against its loop nest.
    pub dot_line_limits: &'static [(usize, usize)],
    /// Kernels for B micro-panels with unit column stride, by `[vectors - 1][cols - 1]`.
    unit_b_tiles: &'static [&'static [TileFn]],
    /// Kernels for B micro-panels with any column stride.
    strided_b_tiles: &'static [&'static [TileFn]],
    /// The dot products of one contiguous run with [`DOT_RUNS`] others.
    dots: DotsFn,
    /// The dot products of [`DOT_ROWS`] contiguous runs with [`DOT_RUNS`] others.
    dot_block: DotBlockFn,
    /// The post pass over a stored tile.
    post: PostFn,
    /// The sum of a few scaled columns into a column of C.
    column_sum: ColumnSumFn,
    /// The outer product of a column and a row into C. Every path uses the portable
    /// lanes for it, because it only multiplies and stores. On an AVX-512 core they wrote
    /// a C larger than L1 15 to 30 % faster than 512-bit or 256-bit lanes. 256×1×784 AᵀB
    /// ran at 24.6 GFLOP/s with AVX-512 lanes, 26.5 with AVX2 lanes and 27.8 with portable
    /// ones, and 128×1×1024 AB at 19.5, 23.2 and 25.0. That is level with the gemm
    /// crate, whose outer-product loop also stores 128 bits at a time. A C that fits in L1
    /// (10×1×128) lost 8 %.
    /// NOTE: the cause is not known, and other cores were not timed.
    outer_product: OuterProductFn,
    /// The backward pass of a layer with few outputs.
    narrow_backward: NarrowBackwardFn,
    /// The same path with wider tiles, for C with few columns, from the least wide (see
    /// [`KernelSet::for_columns`]).
    wider: &'static [&'static KernelSet],
    /// Sets with one-vector tiles for C with few rows, from the narrowest vectors (see
    /// [`KernelSet::for_rows`]).
    one_vector: &'static [&'static KernelSet],
}

impl KernelSet {
    /// The kernels of `arch`, which must be supported (see [`Arch::or_supported_below`]).
    pub(crate) fn for_arch(arch: Arch) -> &'static KernelSet {
        debug_assert!(arch.is_supported());
        match arch {
            Arch::Portable => &PORTABLE,
            #[cfg(target_arch = "x86_64")]
            Arch::Avx2 => &AVX2,
            #[cfg(target_arch = "x86_64")]
            Arch::Avx512 => &AVX512,
            #[cfg(not(target_arch = "x86_64"))]
            Arch::Avx2 | Arch::Avx512 => &PORTABLE,
        }
    }

    /// Returns the kernels of this path for a product whose C has `cols` columns: when C
    /// has at most [`WIDE_TILES_MAX_COLS`] columns, the set whose tiles cover them in the
    /// fewest micro-panels (the taller tiles on a tie), and `self` otherwise. Each
    /// micro-panel of C is one more pass over the rows of A, which a product with few
    /// columns reads from L2 or memory. At 8×784×256 AB (read as Cᵀ, with 8 columns), two
    /// passes of `64 × 6` tiles ran at 144 GFLOP/s and one pass of `48 × 8` tiles at 210.
    pub(crate) fn for_columns(&'static self, cols: usize) -> &'static KernelSet {
        if cols > WIDE_TILES_MAX_COLS {
            return self;
        }
        let mut best = self;
        for &set in self.wider {
            if cols.div_ceil(set.nr) < cols.div_ceil(best.nr) {
                best = set;
            }
        }
        best
    }

    /// Returns the kernels of this path for a product whose C has `rows` rows: the set of
    /// one-vector tiles with the narrowest vectors that hold the rows, and `self` when
    /// no such set does. Taller tiles would only add padding rows there, and one-vector
    /// tiles leave the registers to more columns, so each loaded vector of A serves more
    /// FMAs.
    pub(crate) fn for_rows(&'static self, rows: usize) -> &'static KernelSet {
        self.one_vector
            .iter()
            .find(|set| rows <= set.lane_width)
            .copied()
            .unwrap_or(self)
    }

    /// Rows of a full tile.
    pub(crate) fn mr(&self) -> usize {
        self.max_vectors * self.lane_width
    }

    /// Returns `Σ shared[p]·runs[r][p]` over `p < k` for each run `r`. A run's result
    /// does not depend on the other runs, so a run may be repeated to fill the array.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and `shared`
    /// and every run are each valid for `k` reads.
    #[inline]
    pub(crate) unsafe fn dots(
        &self,
        shared: *const f32,
        runs: &[*const f32; DOT_RUNS],
        k: usize,
    ) -> [f32; DOT_RUNS] {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.dots)(shared, runs, k) }
    }

    /// Returns `Σ rows[s][p]·runs[r][p]` over `p < k` for each row `s` and run `r`. A
    /// pair's result depends only on its two runs and `k`, so rows and runs may be
    /// repeated to fill the arrays.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and every
    /// row and run is valid for `k` reads.
    #[inline]
    pub(crate) unsafe fn dot_block(
        &self,
        rows: &[*const f32; DOT_ROWS],
        runs: &[*const f32; DOT_RUNS],
        k: usize,
    ) -> [[f32; DOT_RUNS]; DOT_ROWS] {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.dot_block)(rows, runs, k) }
    }

    /// Applies `post` in place to the stored `rows × cols` tile at `c`, whose columns are
    /// contiguous and `col_stride` apart.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and the
    /// contract of [`Post::apply_to_columns`] holds.
    #[inline]
    pub(crate) unsafe fn apply_post(
        &self,
        post: &Post,
        c: *mut f32,
        col_stride: isize,
        rows: usize,
        cols: usize,
    ) {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.post)(post, c, col_stride, rows, cols) }
    }

    /// Runs `args`: adds a few scaled columns of A into a column of C.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and the
    /// contract of [`column_sum_body`] holds for `args`.
    #[inline]
    pub(crate) unsafe fn column_sum(&self, args: &ColumnSum) {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.column_sum)(args) }
    }

    /// Runs `args`: writes the outer product of a column of A and a row of B into C.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and the
    /// contract of [`outer_product_body`] holds for `args`.
    #[inline]
    pub(crate) unsafe fn outer_product(&self, args: &OuterProduct) {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.outer_product)(args) }
    }

    /// Runs `args`: the gradients of a block of samples of a layer with few outputs.
    ///
    /// # Safety
    ///
    /// `self` came from [`KernelSet::for_arch`] with a path the CPU supports, and the
    /// contract of [`narrow_backward_body`] holds for `args`.
    #[inline]
    pub(crate) unsafe fn narrow_backward(&self, args: &NarrowBackward) {
        // SAFETY: the caller upholds the contract, and the CPU supports the path.
        unsafe { (self.narrow_backward)(args) }
    }

    /// Runs the kernel for a tile of `vectors` vectors by `t.cols` columns.
    ///
    /// # Safety
    ///
    /// - `self` came from [`KernelSet::for_arch`] with a path the CPU supports.
    /// - `1 ≤ vectors ≤ max_vectors`, `1 ≤ t.cols ≤ nr` and `t.rows ≤ vectors · lane_width`.
    /// - `t` satisfies the contract of the micro-kernel body: for every `p < t.k`,
    ///   `vectors · lane_width` rows of the A micro-panel and `t.cols` elements of the B
    ///   micro-panel row are readable, and the `rows × cols` block of C is writable and
    ///   unaliased.
    #[inline]
    pub(crate) unsafe fn run(&self, vectors: usize, t: &TileArgs, epilogue: &Epilogue) {
        debug_assert!((1..=self.max_vectors).contains(&vectors));
        debug_assert!((1..=self.nr).contains(&t.cols));
        debug_assert!(t.rows <= vectors * self.lane_width);
        let tiles = if t.b_col_stride == 1 {
            self.unit_b_tiles
        } else {
            self.strided_b_tiles
        };
        let kernel = tiles[vectors - 1][t.cols - 1];
        // SAFETY: the caller upholds the kernel's contract, and the CPU supports the path.
        unsafe { kernel(t, epilogue) }
    }
}

/// Dot-path line limits (see [`KernelSet::dot_line_limits`]) of the portable path, which
/// sums each dot product on its own. Timed on a Sapphire Rapids-class core forced to the
/// portable path (`wide` on SSE2), against the loop nest in GFLOP/s: 4×128×128 26 and 19,
/// 4×784×256 35 and 19, 8×256×256 32 and 36, 8×384×384 33 and 37, 8×784×256 36 and 37.
/// Eight rows fill the loop nest's one-vector tiles, so products with 5 rows or more stay
/// on the loop nest. With 12 rows the path was ahead from k = 384 (12×512×512 34 and 28),
/// but a limit of 12 lines would also take the 8-row shapes above.
// NOTE: timed on x86-64 only. On aarch64 the `wide` lanes are NEON, which may move these
// limits.
const PORTABLE_DOT_LIMITS: &[(usize, usize)] = &[(4, 128)];

/// Dot-path line limits of AVX2, whose blocks sum 8 dot products at a time across the
/// vectors. On a Sapphire Rapids-class core forced to AVX2, against the loop nest in
/// GFLOP/s: 4×192×192 46 and 40, 4×128×128 38 and 39, 8×384×384 56 and 50, 8×256×256 60
/// and 64, and 12×256×256 51 and 71. With 12 rows at depths of 512 and 784 the two were
/// level within the noise of the runs (59 to 70 against 64 to 71), so 12 rows stay on
/// the loop nest. The 16 accumulators of a block fill the 16 YMM registers, so the path
/// needs longer reductions than on AVX-512.
#[cfg(target_arch = "x86_64")]
const AVX2_DOT_LIMITS: &[(usize, usize)] = &[(4, 192), (8, 384)];

/// Dot-path line limits of AVX-512, whose blocks sum all 16 dot products in one reduction
/// across the vectors. On a Sapphire Rapids-class core, against the loop nest in GFLOP/s:
/// 4×96×96 52 and 41, 4×64×128 39 and 39; 8×192×192 80 and 68, 5×192×256 56 and 50;
/// 12×256×256 92 and 79, 9×384×256 77 and 68, 12×784×256 111 and 84. With 16 rows the
/// loop nest's tiles fill up (16×784×256 112 and 118), and with 10 rows a depth of 128 is
/// too short (63 and 75).
#[cfg(target_arch = "x86_64")]
const AVX512_DOT_LIMITS: &[(usize, usize)] = &[(4, 64), (8, 192), (12, 256)];

/// Portable: `8 × 6` tiles of `wide` lanes, 6 accumulators of two SSE registers each on a
/// default x86-64 build, which leaves room for the A column and a broadcast in 16
/// registers.
static PORTABLE: KernelSet = KernelSet {
    lane_width: 8,
    max_vectors: 1,
    nr: 6,
    avx_transpose: false,
    dot_line_limits: PORTABLE_DOT_LIMITS,
    unit_b_tiles: tile_table!(portable_tile; true; [1]; [1, 2, 3, 4, 5, 6]),
    strided_b_tiles: tile_table!(portable_tile; false; [1]; [1, 2, 3, 4, 5, 6]),
    dots: portable_dots,
    dot_block: portable_dot_block,
    post: portable_post,
    column_sum: portable_column_sum,
    outer_product: portable_outer_product,
    narrow_backward: portable_narrow_backward,
    wider: &[],
    one_vector: &[],
};

/// # Safety
///
/// The caller upholds the contract of [`dots_body`]. The portable path runs on every CPU.
unsafe fn portable_dots(
    shared: *const f32,
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [f32; DOT_RUNS] {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { dots_body::<WideF32x8, 1, DOT_CHAINS>(&[shared], runs, k)[0] }
}

/// # Safety
///
/// The caller upholds the contract of [`dots_body`]. The portable path runs on every CPU.
unsafe fn portable_dot_block(
    rows: &[*const f32; DOT_ROWS],
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [[f32; DOT_RUNS]; DOT_ROWS] {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { dots_body::<WideF32x8, DOT_ROWS, 1>(rows, runs, k) }
}

/// # Safety
///
/// The contract of [`Post::apply_to_columns`]; the portable path runs on every CPU.
unsafe fn portable_post(post: &Post, c: *mut f32, col_stride: isize, rows: usize, cols: usize) {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { post.apply_to_columns::<WideF32x8>(c, col_stride, rows, cols) }
}

/// # Safety
///
/// The contract of [`column_sum_body`]; the portable path runs on every CPU.
unsafe fn portable_column_sum(args: &ColumnSum) {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { column_sum_body::<WideF32x8>(args) }
}

/// # Safety
///
/// The contract of [`outer_product_body`]; the portable path runs on every CPU.
unsafe fn portable_outer_product(args: &OuterProduct) {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { outer_product_body::<WideF32x8>(args) }
}

/// # Safety
///
/// The contract of [`narrow_backward_body`]; the portable path runs on every CPU.
unsafe fn portable_narrow_backward(args: &NarrowBackward) {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { narrow_backward_body::<WideF32x8>(args) }
}

/// # Safety
///
/// The contract of [`tile_body`]; the portable path runs on every CPU.
unsafe fn portable_tile<const MV: usize, const NR: usize, const UNIT_B_COLS: bool>(
    t: &TileArgs,
    epilogue: &Epilogue,
) {
    // SAFETY: `wide` lanes need no run-time feature; the caller upholds the rest.
    unsafe { tile_body::<WideF32x8, MV, NR, UNIT_B_COLS>(t, epilogue) }
}

/// AVX2: `16 × 6` tiles, 12 accumulators plus two A vectors and a broadcast in the 16 YMM
/// registers.
#[cfg(target_arch = "x86_64")]
static AVX2: KernelSet = KernelSet {
    one_vector: &[&AVX2_ONE_VECTOR],
    ..AVX2_SHARED
};

/// The AVX2 kernels with `16 × 6` tiles, whose other kernels every AVX2 set shares.
#[cfg(target_arch = "x86_64")]
const AVX2_SHARED: KernelSet = KernelSet {
    lane_width: 8,
    max_vectors: 2,
    nr: 6,
    avx_transpose: true,
    dot_line_limits: AVX2_DOT_LIMITS,
    unit_b_tiles: tile_table!(avx2_tile; true; [1, 2]; [1, 2, 3, 4, 5, 6]),
    strided_b_tiles: tile_table!(avx2_tile; false; [1, 2]; [1, 2, 3, 4, 5, 6]),
    dots: avx2_dots,
    dot_block: avx2_dot_block,
    post: avx2_post,
    column_sum: avx2_column_sum,
    outer_product: portable_outer_product,
    narrow_backward: avx2_narrow_backward,
    wider: &[],
    one_vector: &[],
};

/// AVX2 with `8 × 12` tiles, for C with at most 8 rows (see [`KernelSet::for_rows`]):
/// 12 accumulators, the loaded vector of A and a broadcast in the 16 YMM registers, where
/// `16 × 6` tiles would leave half or more of every FMA on padding rows.
#[cfg(target_arch = "x86_64")]
static AVX2_ONE_VECTOR: KernelSet = KernelSet {
    max_vectors: 1,
    nr: 12,
    unit_b_tiles: tile_table!(avx2_tile; true; [1]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    strided_b_tiles: tile_table!(avx2_tile; false; [1]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    ..AVX2_SHARED
};

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the caller upholds the contract of [`dots_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_dots(
    shared: *const f32,
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [f32; DOT_RUNS] {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { dots_body::<Avx2F32x8, 1, DOT_CHAINS>(&[shared], runs, k)[0] }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the caller upholds the contract of [`dots_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_dot_block(
    rows: &[*const f32; DOT_ROWS],
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [[f32; DOT_RUNS]; DOT_ROWS] {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { dots_body::<Avx2F32x8, DOT_ROWS, 1>(rows, runs, k) }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the contract of [`column_sum_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_column_sum(args: &ColumnSum) {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { column_sum_body::<Avx2F32x8>(args) }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the contract of [`Post::apply_to_columns`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_post(post: &Post, c: *mut f32, col_stride: isize, rows: usize, cols: usize) {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { post.apply_to_columns::<Avx2F32x8>(c, col_stride, rows, cols) }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the contract of [`narrow_backward_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_narrow_backward(args: &NarrowBackward) {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { narrow_backward_body::<Avx2F32x8>(args) }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA, and the contract of [`tile_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile<const MV: usize, const NR: usize, const UNIT_B_COLS: bool>(
    t: &TileArgs,
    epilogue: &Epilogue,
) {
    // SAFETY: the caller guarantees AVX2 and FMA, and the rest of the contract.
    unsafe { tile_body::<Avx2F32x8, MV, NR, UNIT_B_COLS>(t, epilogue) }
}

/// AVX-512: `64 × 6` tiles, 24 accumulators plus four A vectors and a broadcast in the 32
/// ZMM registers. 24 independent FMA chains cover the FMA latency (4 cycles) times two
/// FMA pipes with room to spare. On a Sapphire Rapids-class core these tiles beat `48 × 8`
/// ones (also 24 accumulators) by 2 to 14 % on most shapes timed, among them 64³,
/// 256×784×128, 1024×1024×64 and 4×784×256, and timed 0.97 to 1.02 times them on 1024³.
/// Each step loads 4 vectors and 6 broadcasts for 24 FMAs, where `48 × 8` loads 3 and 8.
#[cfg(target_arch = "x86_64")]
static AVX512: KernelSet = KernelSet {
    wider: &[&AVX512_WIDE, &AVX512_WIDER],
    one_vector: &[&AVX2_ONE_VECTOR, &AVX512_ONE_VECTOR],
    ..AVX512_SHARED
};

/// The AVX-512 kernels with `64 × 6` tiles, whose other kernels every AVX-512 set shares.
#[cfg(target_arch = "x86_64")]
const AVX512_SHARED: KernelSet = KernelSet {
    lane_width: 16,
    max_vectors: 4,
    nr: 6,
    avx_transpose: true,
    dot_line_limits: AVX512_DOT_LIMITS,
    unit_b_tiles: tile_table!(avx512_tile; true; [1, 2, 3, 4]; [1, 2, 3, 4, 5, 6]),
    strided_b_tiles: tile_table!(avx512_tile; false; [1, 2, 3, 4]; [1, 2, 3, 4, 5, 6]),
    dots: avx512_dots,
    dot_block: avx512_dot_block,
    post: avx512_post,
    column_sum: avx512_column_sum,
    outer_product: portable_outer_product,
    narrow_backward: avx512_narrow_backward,
    wider: &[],
    one_vector: &[],
};

/// AVX-512 with `48 × 8` tiles, also 24 accumulators, for C with few columns (see
/// [`KernelSet::for_columns`]).
#[cfg(target_arch = "x86_64")]
static AVX512_WIDE: KernelSet = KernelSet {
    max_vectors: 3,
    nr: 8,
    unit_b_tiles: tile_table!(avx512_tile; true; [1, 2, 3]; [1, 2, 3, 4, 5, 6, 7, 8]),
    strided_b_tiles: tile_table!(avx512_tile; false; [1, 2, 3]; [1, 2, 3, 4, 5, 6, 7, 8]),
    ..AVX512_SHARED
};

/// AVX-512 with `32 × 12` tiles, also 24 accumulators, which cover 9 to 12 columns of C
/// in one pass (see [`KernelSet::for_columns`]). Each step loads 2 vectors and 12
/// broadcasts for 24 FMAs.
#[cfg(target_arch = "x86_64")]
static AVX512_WIDER: KernelSet = KernelSet {
    max_vectors: 2,
    nr: 12,
    unit_b_tiles: tile_table!(avx512_tile; true; [1, 2]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    strided_b_tiles: tile_table!(avx512_tile; false; [1, 2]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    ..AVX512_SHARED
};

/// AVX-512 with `16 × 24` tiles, for C with 9 to 16 rows, such as `Cᵀ = W·Xᵀ` for a
/// layer with few outputs (see [`KernelSet::for_rows`]; 8 rows or fewer take AVX2's
/// `8 × 12` tiles). Each step loads one vector of A
/// and 24 broadcasts of B for 24 FMAs, and the 24 accumulators leave room for the loaded
/// vector. Forward pass of a 128→10 layer on one core, GFLOP/s against `16 × 6` tiles in
/// alternated runs: 76.5 and 65.0 at m = 1024, 67.1 and 56.4 at m = 128, 50.7 and 44.2 at
/// m = 32. In separate runs, 28 columns ran at 29 GFLOP/s and
/// 16 columns at 76 against 83.
#[cfg(target_arch = "x86_64")]
static AVX512_ONE_VECTOR: KernelSet = KernelSet {
    max_vectors: 1,
    nr: 24,
    unit_b_tiles: tile_table!(avx512_tile; true; [1]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]),
    strided_b_tiles: tile_table!(avx512_tile; false; [1]; [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]),
    ..AVX512_SHARED
};

/// # Safety
///
/// The CPU supports AVX-512F, and the caller upholds the contract of [`dots_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_dots(
    shared: *const f32,
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [f32; DOT_RUNS] {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { dots_body::<Avx512F32x16, 1, DOT_CHAINS>(&[shared], runs, k)[0] }
}

/// # Safety
///
/// The CPU supports AVX-512F, and the caller upholds the contract of [`dots_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_dot_block(
    rows: &[*const f32; DOT_ROWS],
    runs: &[*const f32; DOT_RUNS],
    k: usize,
) -> [[f32; DOT_RUNS]; DOT_ROWS] {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { dots_body::<Avx512F32x16, DOT_ROWS, 1>(rows, runs, k) }
}

/// # Safety
///
/// The CPU supports AVX-512F, and the contract of [`column_sum_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_column_sum(args: &ColumnSum) {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { column_sum_body::<Avx512F32x16>(args) }
}

/// # Safety
///
/// The CPU supports AVX-512F, and the contract of [`Post::apply_to_columns`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_post(post: &Post, c: *mut f32, col_stride: isize, rows: usize, cols: usize) {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { post.apply_to_columns::<Avx512F32x16>(c, col_stride, rows, cols) }
}

/// # Safety
///
/// The CPU supports AVX-512F, and the contract of [`narrow_backward_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_narrow_backward(args: &NarrowBackward) {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { narrow_backward_body::<Avx512F32x16>(args) }
}

/// # Safety
///
/// The CPU supports AVX-512F, and the contract of [`tile_body`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_tile<const MV: usize, const NR: usize, const UNIT_B_COLS: bool>(
    t: &TileArgs,
    epilogue: &Epilogue,
) {
    // SAFETY: the caller guarantees AVX-512F, and the rest of the contract.
    unsafe { tile_body::<Avx512F32x16, MV, NR, UNIT_B_COLS>(t, epilogue) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_columns_fewest_micro_panels() {
        for arch in Arch::supported() {
            let default = KernelSet::for_arch(arch);
            for cols in 1..=40 {
                let chosen = default.for_columns(cols);
                let passes = |set: &KernelSet| cols.div_ceil(set.nr);
                if cols > WIDE_TILES_MAX_COLS {
                    assert!(core::ptr::eq(chosen, default), "{arch:?} {cols} columns");
                    continue;
                }
                for &set in default.wider {
                    assert!(passes(chosen) <= passes(set), "{arch:?} {cols} columns");
                }
                assert!(passes(chosen) <= passes(default), "{arch:?} {cols} columns");
                if passes(chosen) == passes(default) {
                    assert!(core::ptr::eq(chosen, default), "{arch:?} {cols}: tie kept");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn for_columns_avx512_tile_widths() {
        // Columns of C and the `nr` of the AVX-512 set that covers them. From 13 columns
        // `48 × 8` and `32 × 12` tiles both take two passes, and the taller ones win.
        let expected = [
            (6, 6),
            (7, 8),
            (8, 8),
            (9, 12),
            (10, 12),
            (12, 12),
            (13, 8),
            (16, 8),
            (17, 6),
            (256, 6),
        ];
        for (cols, nr) in expected {
            assert_eq!(AVX512.for_columns(cols).nr, nr, "{cols} columns");
        }
    }
}
