//! The Goto/BLIS loop nest around the micro-kernel, and its split across rayon tasks.
//!
//! The loops, outermost first:
//! - `jc` over `nc`-wide column panels of B and C;
//! - `pc` over `kc`-deep slices of the reduction, packing the `kc × nc` B panel;
//! - `ic` over `mc`-tall row blocks of A, packing the `mc × kc` A block;
//! - the B micro-panels (`nr` wide), then the A micro-panels (`mr` tall), one micro-kernel
//!   call per pair.
//!
//! Threads split the output rows and columns of each panel, never the reduction. Every
//! element of C therefore goes through the same sequence of operations whatever the
//! number of threads.

use std::ops::Range;

use rayon::prelude::*;

use super::Packing;
use super::blocking::{Blocking, CacheSizes};
use super::buffer::{PACKED_A, PACKED_B, with_buffer};
use super::operand::Problem;
use super::pack::{pack_a, pack_b};
use super::split::EvenSplit;
use crate::kernel::{Beta, Epilogue, KernelSet, Post, TileArgs};

/// Fraction of L2 below which B with contiguous columns is read in place instead of
/// packed, however many row tiles of A read it. The micro-kernel broadcasts B's elements
/// one by one, and each of a micro-panel's columns is then one run of adjacent elements.
///
/// Small operands then skip the copy, which would cost a large share of a small product.
/// Larger ones are packed, because their rows lie far apart in memory, and a packed panel
/// keeps the micro-kernel's reads within a few pages and cache sets. A B with contiguous
/// rows instead puts every step of a micro-panel on another cache line and uses half of
/// it: with 17 row tiles (256×512×784 AᵀB, the weight gradient of a 784→256 layer for
/// 512 samples) packing it ran 13 % faster on a Sapphire Rapids-class core.
const DIRECT_B_L2_SHARE: f64 = 0.5;

/// Largest distance in bytes between consecutive steps along k at which an operand larger
/// than L1d is read in place. Beyond it, every step of a micro-panel lands on another
/// page and misses the TLB, on every pass over the micro-panel, where packing pays the
/// misses once and in bands of rows. On a Sapphire Rapids-class core, with B's rows
/// 16 KiB apart (4096×4096×256 AᵀB), reading in place ran at 55 GFLOP/s and packing at
/// 138. With A's columns 16 KiB apart (32×4096×4096 AB, read as Cᵀ = Bᵀ·Aᵀ), reading in
/// place ran at 37 and packing at 92, and even with one pass over B (64×1024×1024 AB,
/// rows 4 KiB apart) packing gained 24 %: a B micro-panel uses a part of each cache line
/// it reads. With steps of 1 KiB (32×784×256 AB) reading in place was 11 % faster. An A
/// that C reads for one column micro-panel only is read in place whatever its steps, since
/// each of its elements is then read once: packing took 4×4096×4096 AB from 34 to 20
/// GFLOP/s.
const DIRECT_MAX_STEP_BYTES: usize = 1024;

/// Largest distance in bytes between consecutive steps along k at which an A larger than
/// L1d, with columns that start on cache lines, is read in place: less than a 4 KiB page.
/// Alternated in one process with line-aligned operands, against the limit of
/// [`DIRECT_MAX_STEP_BYTES`]: with A's columns 3136 bytes apart, 32×256×784 AB (the `δ·W`
/// of a 784→256 layer at 32 samples) 109 -> 152 GFLOP/s, and 48×512×768 AB 129 -> 153.
/// With columns that do not start on lines every vector load spans two of them, and the
/// same shapes timed level or slower in place, so those keep the smaller limit.
/// A `Vec<f32>`, and so a [`Matrix`](crate::Matrix), is rarely line-aligned. With a
/// column stride of a whole number of lines, [`DirectOperands::line_aligned_split`] still
/// brings such an A under this limit.
/// NOTE: other column strides of an unaligned A keep the smaller limit.
const DIRECT_ALIGNED_MAX_STEP_BYTES: usize = 4096 - size_of::<f32>();

/// Maximum number of `mr`-row tiles in A for which B is read in place whatever its size.
/// Each B micro-panel then serves at most this many micro-kernel calls, so packing it (a
/// full pass of reads and writes) costs more than the strided reads it saves. With
/// `kc = 512` on a Sapphire Rapids-class core, reading in place at 16 row tiles was faster
/// than packing, alternated in one process. It gained 1 to 4 % on 1024³ AB, 2 to 3 % on
/// 1024³ ABᵀ, 1 % on 1024×256×1024 AB and 2 % on the 1024→1024 forward pass at 512
/// samples. At 24 row tiles (1536³ AB) it was 1 % slower, at 32 (2048³) 2 % and at 64
/// (4096×256×4096) 2 %.
const DIRECT_B_MAX_ROW_TILES: usize = 16;

/// Maximum number of `nr`-column micro-panels of C for which A is read in place whatever
/// its size, when its columns are contiguous. Each micro-panel reads all of A once, so a
/// packed copy is reused at most this many times, which does not repay the copy. On a
/// Zen 4 core, with k = 784 and 256 rows of A, reading in place took `n` = 1, 4, 16 and
/// 64 from 13, 43, 97 and 101 GFLOP/s to 32, 108, 111 and 112. On a Sapphire Rapids-class
/// core it gained 2.6 times at `n` = 4 and lost 2 % at `n` = 64, and with 32 micro-panels
/// (256×784×128) it lost 5 %.
const DIRECT_A_MAX_COL_TILES: usize = 8;

/// Maximum number of `mr`-row tiles of an A that fits in L1d for which it is read in place
/// although
/// its columns do not start on cache lines. Each of its vector loads then spans two
/// lines, on every column micro-panel that reads it, while a packed copy is aligned. A
/// `Vec<f32>` is rarely aligned to a line (glibc returns 16-byte alignment). With B
/// 48 bytes past a line, read as Cᵀ = Bᵀ·Aᵀ on a Sapphire Rapids-class core, packing ran
/// 256×40×256 AB at 163 GFLOP/s against 146, 512×16×512 at 130 against 110 and
/// 192×40×192 at 154 against 148, while with B on a line reading in place ran at 168 to
/// 171 against 163 for the first. At two row tiles, alignments alternated in one process
/// put packing ahead with B 16 bytes past a line: 128×10×128 at 125 GFLOP/s against 117,
/// 128×40×128 and 128×80×128 by 2 %. At one (64³) reading in place stayed 7 % faster
/// whatever the alignment.
const DIRECT_A_SPLIT_MAX_ROW_TILES: usize = 1;

/// Choice of the operands that the micro-kernels read in place instead of packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirectOperands {
    pub a: bool,
    pub b: bool,
}

impl DirectOperands {
    /// Chooses the operands of `problem` to read in place. A qualifies when its columns
    /// are contiguous and it fits in L1d (with columns on cache lines, or few row tiles),
    /// C has one column micro-panel, or its steps along k are close (within 1 KiB, or
    /// under 4 KiB when its columns start on cache lines) and C has few column
    /// micro-panels. B qualifies when its steps
    /// along k are close and A has few row tiles or B is small with contiguous columns.
    /// [`Packing::Always`] packs both.
    pub(crate) fn choose(
        problem: &Problem,
        kernels: &KernelSet,
        packing: Packing,
    ) -> DirectOperands {
        if packing == Packing::Always {
            return DirectOperands { a: false, b: false };
        }
        let caches = CacheSizes::detected();
        let direct_b_limit = (caches.l2 as f64 * DIRECT_B_L2_SHARE) as usize;
        let bytes = |rows: usize, cols: usize| rows.saturating_mul(cols) * size_of::<f32>();
        let steps_within =
            |stride: isize, max_bytes: usize| stride.unsigned_abs() <= max_bytes / size_of::<f32>();
        let close_steps = |stride: isize| steps_within(stride, DIRECT_MAX_STEP_BYTES);
        let a_step_limit = if problem.a.columns_line_aligned() {
            DIRECT_ALIGNED_MAX_STEP_BYTES
        } else {
            DIRECT_MAX_STEP_BYTES
        };
        let b_row_tiles = problem.m.div_ceil(kernels.mr());
        DirectOperands {
            // An A that fits in L1d stays there across the column micro-panels, if its
            // loads stay within cache lines or it has few row tiles. A larger one streams
            // from L2 through reads a column stride apart, and the hardware prefetchers
            // follow those worse than a packed micro-panel.
            a: problem.a.row_stride == 1
                && ((bytes(problem.m, problem.k) <= caches.l1d
                    && (problem.a.columns_line_aligned()
                        || problem.m.div_ceil(kernels.mr()) <= DIRECT_A_SPLIT_MAX_ROW_TILES))
                    || problem.n <= kernels.nr
                    || (steps_within(problem.a.col_stride, a_step_limit)
                        && problem.n <= DIRECT_A_MAX_COL_TILES * kernels.nr)),
            b: close_steps(problem.b.row_stride)
                && (b_row_tiles <= DIRECT_B_MAX_ROW_TILES
                    || (problem.b.row_stride == 1 && bytes(problem.k, problem.n) < direct_b_limit)),
        }
    }
}

impl DirectOperands {
    /// Returns the row from which A's columns start on cache lines, when A as given is
    /// packed but from that row on would be read in place. That takes an A larger than
    /// L1d whose column stride is a whole number of lines, so that every column lies
    /// equally far off its line (see
    /// [`Operand::rows_to_line`](super::operand::Operand::rows_to_line)). The rows above
    /// it then run as a product of their own. The `δ·W` product of a layer with at most 48
    /// samples (8 column micro-panels of `64 × 6` tiles) reads W this way, with columns
    /// 3136 bytes apart for 784 inputs.
    ///
    /// Alternated in one process on a Sapphire Rapids-class core with unaligned operands,
    /// in GFLOP/s (ranges over the runs): 32×256×784 AB 119 → 144 on one thread and
    /// 148–169 → 199–202 on two. 16×256×784 AB 95 → 144, 48×512×768 AB 127 → 143. The
    /// 784→256 backward pass at 32 samples 136–138 → 141–145 on one thread, and
    /// 195–229 → 244–260 on two.
    /// For an A that fits in L1d the product of the first rows cost more than the aligned
    /// reads saved (128×40×128 AB 144 → 104 GFLOP/s), so that case stays packed.
    pub(crate) fn line_aligned_split(
        problem: &Problem,
        kernels: &KernelSet,
        packing: Packing,
    ) -> Option<usize> {
        let first = problem.a.rows_to_line()?;
        let a_bytes = problem.m.saturating_mul(problem.k) * size_of::<f32>();
        if first == 0
            || first >= problem.m
            || a_bytes <= CacheSizes::detected().l1d
            || DirectOperands::choose(problem, kernels, packing).a
        {
            return None;
        }
        let rest = problem.rows(first..problem.m);
        DirectOperands::choose(&rest, kernels, packing)
            .a
            .then_some(first)
    }
}

/// Most columns of C for which a short reduction keeps packed A blocks of `mc` rows
/// instead of taller ones. Such a C has a few column micro-panels, so each packed block
/// serves few kernel calls and a taller one saves little, while its larger L2 footprint
/// evicts what a fused backward pass reads next. The `δ·W` product of a 784→256 layer at
/// 32 samples (read as a C of 784 × 32) packs all of W otherwise. With this limit, on a
/// Sapphire Rapids-class core, the whole backward pass went from 150 to 164 GFLOP/s, and
/// at 64 samples from 175 to 182. At 128 samples (128 columns) both ways timed level.
const FEW_COLS_MAX: usize = 64;

/// Rows of B that packing copies into every micro-panel of a task before it moves on,
/// when B's rows are its far-apart dimension (unit column stride). Copying one
/// micro-panel at a time walks down all of its rows, and when B's rows lie a page or more
/// apart each row of each micro-panel missed the TLB. Against bands of 16 rows, 32 timed
/// 1.00 to 1.08 times as fast on 1024×1024×64 AᵀB and 4096×4096×256 AᵀB; 64 was slower on
/// 64×1024×1024. A B with contiguous columns is packed one micro-panel at a time, which
/// reads each of its columns in order: bands made 1024³ AB 5 % slower, as each band read
/// a piece of every column.
const PACK_B_BAND_ROWS: usize = 32;

/// Largest reduction slice, per column of C, for which tasks split the columns of a C
/// with contiguous columns (see `Nest::splits_columns`).
const COL_SPLIT_DEPTH_PER_COL: usize = 2;

/// Minimum number of column micro-panels per task for a column split, which keeps the
/// tasks' shares within a quarter of each other.
const COL_SPLIT_MIN_TILES_PER_TASK: usize = 4;

/// A pointer into an operand or a packing buffer that the tasks of one call share. Each
/// task writes only its own micro-panels, and tasks read only after the writes have
/// joined.
#[derive(Clone, Copy)]
struct SharedPtr(*mut f32);

// SAFETY: see the type's documentation. The memory outlives the parallel region.
unsafe impl Send for SharedPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedPtr {}

impl SharedPtr {
    /// Returns the pointer. Closures that call this method capture the whole `Sync`
    /// wrapper rather than its field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Location of the current `kc × nc` panel of B.
#[derive(Clone, Copy)]
enum BPanel {
    /// Packed: micro-panel `j..j + w` starts at `ptr + depth·j` and has `w` elements per
    /// row.
    Packed { ptr: SharedPtr, depth: usize },
    /// Read in place: element (p, j) of the panel is at `ptr + p·row_stride + j·col_stride`.
    Direct {
        ptr: SharedPtr,
        row_stride: isize,
        col_stride: isize,
    },
}

impl BPanel {
    /// Start, row stride and column stride of the micro-panel of columns `cols` (relative
    /// to the panel).
    fn micro_panel(self, cols: &Range<usize>) -> (*const f32, isize, isize) {
        match self {
            BPanel::Packed { ptr, depth } => (
                ptr.get().wrapping_add(depth * cols.start).cast_const(),
                cols.len() as isize,
                1,
            ),
            BPanel::Direct {
                ptr,
                row_stride,
                col_stride,
            } => (
                ptr.get()
                    .wrapping_offset(cols.start as isize * col_stride)
                    .cast_const(),
                row_stride,
                col_stride,
            ),
        }
    }
}

/// One `gemm` call's loop nest: the problem, its kernels and block sizes.
struct Nest<'a> {
    problem: &'a Problem,
    kernels: &'static KernelSet,
    blocking: Blocking,
    /// Read A in place: its columns are contiguous and it is small.
    direct_a: bool,
    /// Read B in place: it is small.
    direct_b: bool,
}

/// The `kc`-deep slice of one `nc`-wide column panel that the tasks work on together.
struct PanelStep {
    /// First column of the panel.
    jc: usize,
    /// First index of the reduction slice.
    pc: usize,
    /// Length of the reduction slice.
    depth: usize,
    /// The panel's columns, split into micro-panels of at most `nr`.
    col_tiles: EvenSplit,
    epilogue: Epilogue,
}

/// Computes the non-empty `problem` with `threads` rayon tasks (1: on the calling thread),
/// reading the operands that `direct` names in place.
///
/// # Safety
///
/// `kernels` is for a path this CPU supports, and `problem` describes views that are valid
/// for the whole call: `a` is `m × k`, `b` is `k × n`, and `c` is `m × n` with distinct
/// element addresses and no other live borrow.
pub(crate) unsafe fn run(
    problem: &Problem,
    kernels: &'static KernelSet,
    blocking: Blocking,
    direct: DirectOperands,
    threads: usize,
) {
    let nest = Nest {
        problem,
        kernels,
        blocking,
        direct_a: direct.a,
        direct_b: direct.b,
    };
    let nc = nest.blocking.nc;

    let slices = nest.blocking.reduction_slices(problem.k);
    for jc in (0..problem.n).step_by(nc) {
        let width = nc.min(problem.n - jc);
        for slice in 0..slices.parts() {
            let Range { start: pc, end } = slices.part(slice);
            let depth = end - pc;
            let beta = if pc == 0 { problem.beta } else { Beta::One };
            let step = PanelStep {
                jc,
                pc,
                depth,
                col_tiles: EvenSplit::by_max_len(width, kernels.nr),
                epilogue: Epilogue {
                    alpha: problem.alpha,
                    beta,
                    // The bias and activation act on the finished sum only.
                    post: if pc + depth == problem.k {
                        problem.post
                    } else {
                        Post::NONE
                    },
                },
            };

            if nest.direct_b {
                // SAFETY: (pc, jc) is inside B (pc < k, jc < n).
                let ptr = unsafe { problem.b.at(pc, jc) };
                let panel = BPanel::Direct {
                    ptr: SharedPtr(ptr.cast_mut()),
                    row_stride: problem.b.row_stride,
                    col_stride: problem.b.col_stride,
                };
                // SAFETY: the caller's contract; the panel lies inside B.
                unsafe { nest.multiply_panel(&step, panel, threads) };
            } else {
                with_buffer(&PACKED_B, depth * width, |buffer| {
                    let ptr = SharedPtr(buffer.as_mut_ptr());
                    // SAFETY: the buffer has room for `depth · width` elements.
                    unsafe { nest.pack_panel(&step, ptr, threads) };
                    let panel = BPanel::Packed { ptr, depth };
                    // SAFETY: the caller's contract; the panel is packed.
                    unsafe { nest.multiply_panel(&step, panel, threads) };
                });
            }
        }
    }
}

/// Returns how many parallel regions [`run`] starts for `problem` on `threads` tasks: one
/// per `kc × nc` panel for the kernels, and one more per panel to pack B when B is
/// packed. 0 on one thread.
pub(crate) fn parallel_regions(
    problem: &Problem,
    blocking: Blocking,
    direct: DirectOperands,
    threads: usize,
) -> usize {
    if threads <= 1 {
        return 0;
    }
    let panels = problem.n.div_ceil(blocking.nc) * blocking.reduction_slices(problem.k).parts();
    let per_panel = if direct.b { 1 } else { 2 };
    panels * per_panel
}

impl Nest<'_> {
    /// Rows per packed A block for a reduction slice of `depth`: `mc` for a full slice,
    /// and more for a shorter one, so that the block keeps the L2 footprint that `mc`
    /// was chosen for. With one block for all the rows, the micro-kernel walks down each
    /// column of C before the next, instead of writing a band of `mc` rows across every
    /// column: 4096×32×4096, the weight gradient of a 4096→4096 layer at 32 samples,
    /// writes a 64 MiB C, and the bands touched a new page at every tile. A C with at
    /// most [`FEW_COLS_MAX`] columns keeps `mc` rows.
    fn block_rows(&self, depth: usize) -> usize {
        let Blocking { kc, mc, .. } = self.blocking;
        let mr = self.kernels.mr();
        if self.problem.n <= FEW_COLS_MAX {
            return mc;
        }
        let scaled = mc.saturating_mul(kc) / depth.max(1);
        (scaled / mr * mr).max(mc)
    }

    /// Packs the B panel of `step` into `dst`, split over `threads` tasks.
    ///
    /// # Safety
    ///
    /// `dst` is valid for `depth · width` writes and not otherwise in use.
    unsafe fn pack_panel(&self, step: &PanelStep, dst: SharedPtr, threads: usize) {
        let tiles = step.col_tiles;
        // Bands of rows across all of the task's micro-panels, so that the source rows of
        // a band are read while their pages are still in the TLB.
        let band_rows = if self.problem.b.col_stride == 1 {
            PACK_B_BAND_ROWS
        } else {
            step.depth.max(1)
        };
        let pack_tiles = |range: Range<usize>| {
            for first_row in (0..step.depth).step_by(band_rows) {
                let rows = band_rows.min(step.depth - first_row);
                for tile in range.clone() {
                    let cols = tiles.part(tile);
                    // SAFETY: the band of the micro-panel lies inside B, and inside `dst`
                    // (the micro-panel's columns are within the panel's width, its rows
                    // within the depth, and row p of the micro-panel starts at
                    // `p·cols.len()`). Tasks pack disjoint micro-panels.
                    unsafe {
                        pack_b(
                            &self.problem.b,
                            step.pc + first_row,
                            step.jc + cols.start,
                            rows,
                            cols.len(),
                            dst.get()
                                .add(step.depth * cols.start + first_row * cols.len()),
                        );
                    }
                }
            }
        };

        let tasks = threads.min(tiles.parts());
        if tasks <= 1 {
            pack_tiles(0..tiles.parts());
        } else {
            let split = EvenSplit::into_parts(tiles.parts(), tasks);
            (0..tasks)
                .into_par_iter()
                .for_each(|task| pack_tiles(split.part(task)));
        }
    }

    /// Multiplies all rows of A (for the step's reduction slice) by the B panel, split
    /// over a grid of up to `threads` tasks.
    ///
    /// # Safety
    ///
    /// The contract of [`run`], and `panel` contains the step's B panel.
    unsafe fn multiply_panel(&self, step: &PanelStep, panel: BPanel, threads: usize) {
        // One task takes the whole panel without the grid's arithmetic, which showed in
        // profiles of products of a few microseconds.
        if threads == 1 {
            // SAFETY: the caller's contract; one task writes all of C.
            unsafe {
                self.multiply_block(step, panel, 0..self.problem.m, 0..step.col_tiles.parts())
            };
            return;
        }

        // Rows split in whole vectors: 256 rows on two tasks become 128 + 128, where
        // whole 48-row tiles would give 144 + 112.
        let width = self.kernels.lane_width;
        let row_units = self.problem.m.div_ceil(width);
        let col_units = step.col_tiles.parts();
        let (row_tasks, col_tasks) = if self.splits_columns(step, threads) {
            (1, threads)
        } else {
            choose_grid(threads, row_units, col_units, self.kernels.max_vectors)
        };

        let row_split = EvenSplit::into_parts(row_units, row_tasks);
        let col_split = EvenSplit::into_parts(col_units, col_tasks);
        let task = |index: usize| {
            let units = row_split.part(index / col_tasks);
            let rows = units.start * width..(units.end * width).min(self.problem.m);
            let tiles = col_split.part(index % col_tasks);
            // SAFETY: tasks cover disjoint blocks of C: distinct row ranges or distinct
            // column tiles. The rest is the caller's contract.
            unsafe { self.multiply_block(step, panel, rows, tiles) };
        };

        if row_tasks * col_tasks == 1 {
            task(0);
        } else {
            (0..row_tasks * col_tasks).into_par_iter().for_each(task);
        }
    }

    /// Returns whether `threads` tasks split the step's columns of C rather than its rows:
    /// when C's columns are contiguous, the reduction slice is short against the number
    /// of columns, and every task gets several column micro-panels.
    ///
    /// Row tasks then write the two ends of every column of C, and C's traffic is large
    /// against the FMAs of a short slice. Column tasks each write a region of their own,
    /// but each packs all of A, which costs more the longer the slice. On a Sapphire
    /// Rapids-class core, two threads, C a `Vec` 16 bytes past a cache line, in GFLOP/s
    /// (rows, then columns): 512×16×512 AB 60 and 215, 1024×16×1024 96 and 181,
    /// 500×100×500 262 and 306, 128×256×128 223 and 248, 1024³ 314 and 330, and the
    /// 256→128 backward pass at m = 256 195 and 261. Boundaries moved to cache lines
    /// took 512×16×512 only to 98, since each core's prefetchers still fetch the other's
    /// half of the columns. Rows stayed ahead with a long slice for few columns:
    /// 128×1024×1024 AB (read as 1024 rows and 128 columns of Cᵀ) 257 and 203,
    /// 64×256×1024 216 and 206, 32×4096×4096 161 and 108. The rule takes columns for
    /// 4096×4096×256 AB, which timed 2 to 4 % slower that way in two runs (365 and 349)
    /// and level in a third.
    fn splits_columns(&self, step: &PanelStep, threads: usize) -> bool {
        threads > 1
            && self.problem.c.row_stride == 1
            && step.depth <= COL_SPLIT_DEPTH_PER_COL * self.problem.n
            && step.col_tiles.parts() >= COL_SPLIT_MIN_TILES_PER_TASK.saturating_mul(threads)
    }

    /// Multiplies rows `rows` of A by the micro-panels `tiles` of the B panel, packing A
    /// in `mc`-row blocks into this thread's buffer.
    ///
    /// # Safety
    ///
    /// As for [`multiply_panel`](Self::multiply_panel), and no other task writes this
    /// block of C.
    unsafe fn multiply_block(
        &self,
        step: &PanelStep,
        panel: BPanel,
        rows: Range<usize>,
        tiles: Range<usize>,
    ) {
        let (width, max_vectors) = (self.kernels.lane_width, self.kernels.max_vectors);
        let problem = self.problem;
        let depth = step.depth;

        // Even `mc` blocks in units of `mr`: 256 rows with 48-row tiles and mc = 240
        // become 144 + 112, not 240 + 16.
        let mr = self.kernels.mr();
        let blocks = EvenSplit::by_max_len(rows.len().div_ceil(mr), self.block_rows(depth) / mr);
        for block in 0..blocks.parts() {
            let units = blocks.part(block);
            let ic = rows.start + units.start * mr;
            let block_rows = (units.len() * mr).min(rows.end - ic);
            let vectors = block_rows.div_ceil(width);
            let row_tiles = EvenSplit::by_max_len(vectors, max_vectors);

            // A row tile: its height in vectors, its first row relative to `ic`, its padded
            // rows, the rows inside C, and whether the kernel reads it packed.
            let row_tile = |t: usize| {
                let units = row_tiles.part(t);
                let start = units.start * width;
                let padded = units.len() * width;
                let valid = padded.min(block_rows - start);
                let packed = !self.direct_a || valid < padded;
                RowTile {
                    vectors: units.len(),
                    start,
                    padded,
                    valid,
                    packed,
                }
            };

            let has_post = !step.epilogue.post.is_none();
            let pass_rows = if has_post && problem.c.row_stride == 1 {
                let last = row_tile(row_tiles.parts() - 1);
                if last.valid == last.padded || row_tiles.parts() > 1 {
                    block_rows
                } else {
                    last.start
                }
            } else {
                0
            };
            let mut epilogue = step.epilogue;
            with_buffer(&PACKED_A, depth * vectors * width, |buffer| {
                let packed_a = buffer.as_mut_ptr();
                let pack = |tile: &RowTile| {
                    let RowTile {
                        start,
                        padded,
                        valid,
                        ..
                    } = *tile;
                    // SAFETY: the block lies inside A, and the micro-panel's `depth · padded`
                    // elements from `depth · start` lie inside the buffer of
                    // `depth · vectors · width`.
                    unsafe {
                        pack_a(
                            &problem.a,
                            ic + start,
                            step.pc,
                            valid,
                            depth,
                            padded,
                            packed_a.add(depth * start),
                            self.kernels.avx_transpose,
                        );
                    }
                };
                // A block smaller than a full `mc × kc` one (a small product) packs each row
                // tile right before its first kernel call, which then finds it in L1.
                // Alternated in one process on one core: 128³ AB 2 to 4 % faster, 256³ 1 to
                // 2 %, 10×128×128 ABᵀ (a transposing pack) 6 to 12 %. Full blocks pack
                // first, since packing them lazily made 2048³ AB and the 4096→4096 backward
                // pass at 32 samples 1 to 2 % slower.
                let lazy = block_rows * depth < self.blocking.mc * self.blocking.kc;
                if !lazy {
                    for t in 0..row_tiles.parts() {
                        let tile = row_tile(t);
                        if tile.packed {
                            pack(&tile);
                        }
                    }
                }

                for tile in tiles.clone() {
                    let cols = step.col_tiles.part(tile);
                    let (b, b_k_stride, b_col_stride) = panel.micro_panel(&cols);
                    // SAFETY: (ic, jc + cols.start) is inside C.
                    let c_panel = unsafe { problem.c.at(ic, step.jc + cols.start) };
                    for t in 0..row_tiles.parts() {
                        let row = row_tile(t);
                        if lazy && tile == tiles.start && row.packed {
                            pack(&row);
                        }
                        let (a, a_k_stride) = if row.packed {
                            (
                                packed_a.wrapping_add(depth * row.start).cast_const(),
                                row.padded as isize,
                            )
                        } else {
                            // SAFETY: (ic + start, pc) is inside A.
                            let a = unsafe { problem.a.at(ic + row.start, step.pc) };
                            (a, problem.a.col_stride)
                        };
                        let args = TileArgs {
                            k: depth,
                            a,
                            a_k_stride,
                            b,
                            b_k_stride,
                            b_col_stride,
                            // SAFETY: the tile's first element, `start` rows below the
                            // micro-panel's, is inside C.
                            c: unsafe { c_panel.offset(row.start as isize * problem.c.row_stride) },
                            c_row_stride: problem.c.row_stride,
                            c_col_stride: problem.c.col_stride,
                            rows: row.valid,
                            cols: cols.len(),
                        };
                        // A plain product leaves `epilogue` as it was built before the
                        // loops. Copying a freshly built `Post` into it on every tile showed
                        // in a profile as a stall: wide loads of narrower stores, which
                        // store forwarding cannot serve.
                        if has_post {
                            epilogue.post = if row.start < pass_rows {
                                Post::NONE
                            } else {
                                step.epilogue
                                    .post
                                    .at_tile(ic + row.start, step.jc + cols.start)
                            };
                        }
                        // SAFETY: A's micro-panel has `padded` readable rows for each of the
                        // `depth` steps: packed, or read in place when all `padded` rows lie
                        // inside A. B's micro-panel has `cols.len()` readable columns per
                        // step. The C tile lies inside C and only this task writes it, and
                        // the post step's bias and input cover C's shape.
                        unsafe { self.kernels.run(row.vectors, &args, &epilogue) };
                    }

                    if pass_rows > 0 {
                        let post = step.epilogue.post.at_tile(ic, step.jc + cols.start);
                        // SAFETY: the block's first `pass_rows` rows and the micro-panel's
                        // columns lie inside C, only this task writes them, their columns
                        // are contiguous, and the kernels above have stored them.
                        unsafe {
                            self.kernels.apply_post(
                                &post,
                                c_panel,
                                problem.c.col_stride,
                                pass_rows,
                                cols.len(),
                            );
                        }
                    }
                }
            });
        }
    }
}

/// One row tile of a packed A block, as `Nest::multiply_block` walks them.
#[derive(Clone, Copy)]
struct RowTile {
    /// Height in vectors of the lane width.
    vectors: usize,
    /// First row, relative to the block's.
    start: usize,
    /// Rows including the padding up to whole vectors.
    padded: usize,
    /// Rows inside C.
    valid: usize,
    /// The kernel reads the tile from the packed block, not from A in place.
    packed: bool,
}

/// Chooses how many tasks split the rows (in vectors) and the columns (in
/// micro-panels) of a panel: the grid of at most `threads` tasks with the best product of
/// load balance, thread use and tile fill. Tile fill is the share of accumulators that a
/// task's row tiles of at most `max_vectors` vectors use. For example, with tiles of up to
/// 3 vectors, 8 vectors on two row tasks leave each task tiles of 2 + 2 vectors out of 3;
/// a column split keeps tiles of 3 + 3 + 2. Ties go to more row tasks, which share the packed B panel
/// without packing any A block twice.
fn choose_grid(
    threads: usize,
    row_units: usize,
    col_units: usize,
    max_vectors: usize,
) -> (usize, usize) {
    let balance =
        |units: usize, parts: usize| units as f64 / (parts * units.div_ceil(parts)) as f64;
    let tile_fill =
        |vectors: usize| vectors as f64 / (vectors.div_ceil(max_vectors) * max_vectors) as f64;
    let mut best = (1, 1);
    let mut best_score = 0.0;
    for row_tasks in (1..=threads.min(row_units)).rev() {
        let col_tasks = (threads / row_tasks).min(col_units);
        let used = (row_tasks * col_tasks) as f64 / threads as f64;
        let fill = tile_fill(row_units.div_ceil(row_tasks));
        let score = balance(row_units, row_tasks) * balance(col_units, col_tasks) * used * fill;
        if score > best_score + 1e-9 {
            best = (row_tasks, col_tasks);
            best_score = score;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::operand::{Operand, OutOperand};
    use crate::kernel::Arch;
    use crate::matrix::{MatMut, MatRef};

    /// Returns the plain product `C ← A·B` of the given views, with no post steps.
    fn plain_problem(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>) -> Problem {
        Problem {
            m: a.rows(),
            n: b.cols(),
            k: a.cols(),
            alpha: 1.0,
            beta: Beta::Zero,
            a: Operand::new(a),
            b: Operand::new(b),
            c: OutOperand::new(c),
            post: Post::NONE,
        }
    }

    /// Returns whether `choose` reads in place an `m × k` A with contiguous columns
    /// `col_stride` elements apart that starts `offset` elements past a cache line, in a
    /// product with `n` columns of C.
    fn reads_a_in_place(
        kernels: &KernelSet,
        (m, k, n): (usize, usize, usize),
        col_stride: usize,
        offset: usize,
    ) -> bool {
        let line = crate::kernel::CACHE_LINE_F32;
        let data = vec![0.0f32; col_stride * k + 2 * line];
        let start = data.as_ptr().align_offset(line * size_of::<f32>()) + offset;
        let a = MatRef::from_strided(&data, start, m, k, 1, col_stride as isize).unwrap();
        let b_data = vec![0.0f32; k * n];
        let mut c_data = vec![0.0f32; m * n];
        let problem = plain_problem(
            a,
            MatRef::from_slice(&b_data, k, n).unwrap(),
            MatMut::from_slice(&mut c_data, m, n).unwrap(),
        );
        DirectOperands::choose(&problem, kernels, Packing::Auto).a
    }

    #[test]
    fn parallel_regions_per_panel() {
        let blocking = Blocking {
            kc: 64,
            one_slice_depth: 64,
            mc: 64,
            nc: 96,
        };
        let (m, k, n) = (32, 130, 200);
        let a = vec![0.0f32; m * k];
        let b = vec![0.0f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let problem = plain_problem(
            MatRef::from_slice(&a, m, k).unwrap(),
            MatRef::from_slice(&b, k, n).unwrap(),
            MatMut::from_slice(&mut c, m, n).unwrap(),
        );
        let packed = DirectOperands { a: false, b: false };
        let direct_b = DirectOperands { a: false, b: true };
        // 3 column panels of at most 96 and 3 reduction slices of at most 64.
        assert_eq!(parallel_regions(&problem, blocking, packed, 2), 18);
        assert_eq!(parallel_regions(&problem, blocking, direct_b, 2), 9);
        assert_eq!(parallel_regions(&problem, blocking, packed, 1), 0);
    }

    #[test]
    fn direct_a_unaligned_row_tiles() {
        let kernels = KernelSet::for_arch(Arch::Portable);
        let mr = kernels.mr();
        // 4 KiB, well inside any L1d, with columns a whole number of lines apart.
        // Many column micro-panels of C.
        let (few, many, k) = (DIRECT_A_SPLIT_MAX_ROW_TILES * mr, 4 * mr, 1024 / (4 * mr));
        let n = 16 * kernels.nr;
        assert!(reads_a_in_place(kernels, (many, k, n), many, 0));
        assert!(!reads_a_in_place(kernels, (many, k, n), many, 3));
        assert!(reads_a_in_place(kernels, (few, k, n), few, 0));
        assert!(reads_a_in_place(kernels, (few, k, n), few, 3));
    }

    #[test]
    fn direct_a_far_steps_need_aligned_columns() {
        let kernels = KernelSet::for_arch(Arch::Portable);
        let line = crate::kernel::CACHE_LINE_F32;
        // An A too large for L1d, and a C of few column micro-panels.
        let shape = (256, 64, 4 * kernels.nr);
        let reads_in_place =
            |stride: usize, offset: usize| reads_a_in_place(kernels, shape, stride, offset);
        let near = DIRECT_MAX_STEP_BYTES / size_of::<f32>();
        let far = DIRECT_ALIGNED_MAX_STEP_BYTES / size_of::<f32>() / line * line;
        assert!(reads_in_place(near, 0));
        assert!(reads_in_place(near, 3));
        assert!(reads_in_place(far, 0));
        assert!(!reads_in_place(far, 3));
        assert!(!reads_in_place(far + line, 0));
    }

    #[test]
    fn grid_prefers_rows() {
        assert_eq!(choose_grid(2, 22, 128, 3), (2, 1));
        assert_eq!(choose_grid(2, 64, 128, 3), (2, 1));
    }

    #[test]
    fn grid_columns_when_rows_few() {
        assert_eq!(choose_grid(2, 1, 128, 3), (1, 2));
        assert_eq!(choose_grid(2, 3, 128, 3), (1, 2));
    }

    #[test]
    fn grid_columns_when_row_split_thins_tiles() {
        // 8 vectors: 4 + 4 on two row tasks run tiles of 2 + 2 out of 3.
        assert_eq!(choose_grid(2, 8, 128, 3), (1, 2));
        // 6 vectors: 3 + 3 fill their tiles, so rows still win.
        assert_eq!(choose_grid(2, 6, 128, 3), (2, 1));
    }

    #[test]
    fn grid_single_tile_one_task() {
        assert_eq!(choose_grid(4, 1, 1, 3), (1, 1));
        assert_eq!(choose_grid(1, 50, 50, 3), (1, 1));
    }
}
