//! The one generic micro-kernel body: an `MR × NR` tile of `C` from an `A` micro-panel and a
//! `B` micro-panel, followed by the epilogue that writes the tile.
//!
//! Each instruction set instantiates this body with its own [`Lane`] type and tile sizes, so
//! the paths cannot drift apart. Element (i, j) of the tile is always the same chain of
//! fused multiply-adds over `p = 0..k`, followed by the same epilogue arithmetic, wherever
//! the tile sits and whatever its size. This is what makes threaded results bitwise equal
//! to sequential ones.

use super::addressing::StridedElements;
use super::lane::{Lane, MAX_WIDTH as MAX_LANE_WIDTH};
use super::post::Post;

/// Operands of one micro-kernel call.
///
/// The tile has `vectors · WIDTH` rows (`MV` vectors) and `NR` columns, of which only the
/// top-left `rows × cols` block is written.
pub(crate) struct TileArgs {
    /// Reduction length.
    pub k: usize,
    /// Element (i, p) of the A micro-panel is at `a + p·a_k_stride + i`.
    pub a: *const f32,
    /// Distance in elements between consecutive `p` in the A micro-panel.
    pub a_k_stride: isize,
    /// Element (p, j) of the B micro-panel is at `b + p·b_k_stride + j·b_col_stride`.
    pub b: *const f32,
    /// Distance in elements between consecutive `p` in the B micro-panel.
    pub b_k_stride: isize,
    /// Distance in elements between consecutive `j` in the B micro-panel: 1 when packed.
    pub b_col_stride: isize,
    /// Element (0, 0) of the C tile.
    pub c: *mut f32,
    /// Distance in elements between rows of C.
    pub c_row_stride: isize,
    /// Distance in elements between columns of C.
    pub c_col_stride: isize,
    /// Rows of the tile that lie inside C, at most `MV · WIDTH`.
    pub rows: usize,
    /// Columns of the tile that lie inside C, at most `NR`.
    pub cols: usize,
}

/// The scaling of the existing `C` in `C ← α·A·B + β·C`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Beta {
    /// `β = 0`: `C` is overwritten and never read.
    Zero,
    /// `β = 1`: the product is added to `C`, as every `kc` block after the first does.
    One,
    /// Any other `β`.
    Other(f32),
}

impl Beta {
    /// Classifies `beta`.
    pub(crate) fn new(beta: f32) -> Self {
        if beta == 0.0 {
            Beta::Zero
        } else if beta == 1.0 {
            Beta::One
        } else {
            Beta::Other(beta)
        }
    }
}

/// The store step of the micro-kernel: how the accumulated `A·B` tile is combined with `C`
/// while it is still in registers.
///
/// Later fused layer kernels extend this type (bias, activation) instead of copying the
/// kernel. Every such step must stay element-wise, so that a tile's position does not
/// change its results.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Epilogue {
    /// The scale `α` of the product.
    pub alpha: f32,
    /// Scaling of the existing `C`.
    pub beta: Beta,
    /// Bias, activation or derivative applied after `α·A·B + β·C`; [`Post::NONE`] on every
    /// reduction slice but the last.
    pub post: Post,
}

impl Epilogue {
    /// Returns `α·acc + β·c`, calling `load_c` only when `β ≠ 0`.
    #[inline(always)]
    fn combine<L: Lane>(self, alpha: L, acc: L, load_c: impl FnOnce() -> L) -> L {
        match self.beta {
            Beta::Zero => acc.mul(alpha),
            Beta::One => acc.mul_add(alpha, load_c()),
            Beta::Other(beta) => {
                // SAFETY: `alpha` is a value of `L`, so the CPU supports the lane.
                let beta = unsafe { L::splat(beta) };
                acc.mul_add(alpha, load_c().mul(beta))
            }
        }
    }
}

/// Computes the `MV·WIDTH × NR` tile `A·B` over `k` and writes it through the epilogue.
///
/// `UNIT_B_COLS` compiles the common case `b_col_stride == 1` (packed B, or B read in
/// place with contiguous rows) with constant offsets. Otherwise the stride is read from
/// `t`, so B can be read in place whatever its layout.
///
/// # Safety
///
/// - The CPU supports `L`'s instruction set (the `#[target_feature]` wrapper that inlines
///   this body is only called after run-time detection).
/// - For every `p < k`, the `MV · WIDTH` elements at `a + p·a_k_stride` and the `NR`
///   elements at `b + p·b_k_stride + j·b_col_stride` are readable, and
///   `b_col_stride == 1` when `UNIT_B_COLS`.
/// - `rows ≤ MV · WIDTH`, `cols ≤ NR`, and the `rows × cols` block of C at `c` with the
///   given strides is writable, has distinct addresses and is not borrowed elsewhere.
#[inline(always)]
pub(crate) unsafe fn tile_body<
    L: Lane,
    const MV: usize,
    const NR: usize,
    const UNIT_B_COLS: bool,
>(
    t: &TileArgs,
    epilogue: &Epilogue,
) {
    let b_col_stride = if UNIT_B_COLS { 1 } else { t.b_col_stride };
    if t.k >= PREFETCH_C_MIN_DEPTH {
        prefetch_c_tile::<L, MV, NR>(t);
    }

    // SAFETY (all constructors below): the caller guarantees support for `L`.
    let mut acc = [[unsafe { L::zero() }; MV]; NR];
    let mut a = t.a;
    let (a_step, b_step) = (t.a_k_stride, t.b_k_stride);
    let mut b = StridedElements::<UNIT_B_COLS, NR>::new(t.b, b_col_stride);

    // Each accumulator still gets its FMAs in the order p = 0, 1, …, k − 1, so the
    // unrolling does not change any result. Wrapping offsets: after the last step the
    // pointers may point past a direct (unpacked) operand's slice, but they are never
    // read there.
    for _ in 0..t.k / K_UNROLL {
        for u in 0..K_UNROLL as isize {
            // SAFETY: the caller guarantees that these rows of the panels are readable.
            unsafe {
                fma_step::<L, MV, NR, UNIT_B_COLS>(
                    &mut acc,
                    a.wrapping_offset(u * a_step),
                    &b,
                    u * b_step,
                )
            };
        }
        a = a.wrapping_offset(K_UNROLL as isize * a_step);
        b.advance(K_UNROLL as isize * b_step);
    }
    for _ in 0..t.k % K_UNROLL {
        // SAFETY: as above.
        unsafe { fma_step::<L, MV, NR, UNIT_B_COLS>(&mut acc, a, &b, 0) };
        a = a.wrapping_offset(a_step);
        b.advance(b_step);
    }

    // SAFETY: the caller's contract on C carries over.
    unsafe { store_tile::<L, MV, NR>(&acc, t, *epilogue) }
}

/// Steps of the reduction per iteration of the micro-kernel's loop. Two steps halve the
/// pointer updates and loop branches between the FMAs: on one AVX-512 core, 1024³ AB went
/// from 167 to 174 GFLOP/s and 256×784×128 AB from 164 to 177 (medians of 9 alternated
/// runs). Four and eight steps were no faster than two, and slower on 64³.
const K_UNROLL: usize = 2;

/// Adds the outer product of one A micro-panel column and one B micro-panel row to the
/// accumulators. `b` addresses a row of the B micro-panel, and the step reads the row
/// `offset` elements on from it.
///
/// # Safety
///
/// The CPU supports `L`, and the `MV · WIDTH` elements at `a` and the `NR` elements of
/// the row are readable.
#[inline(always)]
unsafe fn fma_step<L: Lane, const MV: usize, const NR: usize, const UNIT_B_COLS: bool>(
    acc: &mut [[L; MV]; NR],
    a: *const f32,
    b: &StridedElements<UNIT_B_COLS, NR>,
    offset: isize,
) {
    // SAFETY: the caller guarantees that the column is readable.
    let a_col: [L; MV] = core::array::from_fn(|v| unsafe { L::load(a.add(v * L::WIDTH)) });
    for (j, acc_col) in acc.iter_mut().enumerate() {
        // SAFETY: the caller guarantees that the row is readable.
        let b_pj = unsafe { L::splat(*b.element(j, offset)) };
        for (acc_v, a_v) in acc_col.iter_mut().zip(a_col) {
            *acc_v = a_v.mul_add(b_pj, *acc_v);
        }
    }
}

/// Shortest reduction for which the micro-kernel prefetches its C tile. A shorter FMA loop
/// ends before the prefetched lines arrive, and the prefetches only take load slots: on
/// one AVX-512 core, skipping them took 128×10×128 from 4.05 to 3.74 µs and
/// 1024×32×1024 from 714 to 680 µs, while at k = 128 both ways timed the same.
const PREFETCH_C_MIN_DEPTH: usize = 128;

/// Asks the CPU to bring a full tile of C with contiguous columns into cache while the
/// reduction runs, so that the epilogue's loads and stores do not wait for memory.
/// Edge tiles and other strides are left to the hardware prefetcher.
#[inline(always)]
fn prefetch_c_tile<L: Lane, const MV: usize, const NR: usize>(t: &TileArgs) {
    if t.c_row_stride != 1 || t.rows != MV * L::WIDTH || t.cols != NR {
        return;
    }
    for j in 0..NR {
        let column = t.c.wrapping_offset(j as isize * t.c_col_stride);
        for line in (0..MV * L::WIDTH).step_by(CACHE_LINE_F32) {
            prefetch(column.wrapping_add(line));
        }
        // A column that does not start on a cache line ends in one more line.
        prefetch(column.wrapping_add(MV * L::WIDTH - 1));
    }
}

/// `f32` elements per 64-byte cache line.
pub(crate) const CACHE_LINE_F32: usize = 16;

/// Hints that the cache line containing `ptr` will be used soon. Never faults and never
/// changes memory, so any address is allowed.
#[inline(always)]
pub(crate) fn prefetch(ptr: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of SSE, which every x86-64 CPU has, and a prefetch never
    // faults whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Writes the accumulated tile into C through the epilogue.
///
/// Full tiles with contiguous columns and no post step go straight from the registers.
/// Other tiles spill the accumulators to a buffer first, and strided columns also stage
/// each vector, with the same vector arithmetic per element.
///
/// # Safety
///
/// As for [`tile_body`], for the C operand.
#[inline(always)]
unsafe fn store_tile<L: Lane, const MV: usize, const NR: usize>(
    acc: &[[L; MV]; NR],
    t: &TileArgs,
    epilogue: Epilogue,
) {
    const { assert!(L::WIDTH <= MAX_LANE_WIDTH) };
    // SAFETY: the caller guarantees support for `L`.
    let alpha = unsafe { L::splat(epilogue.alpha) };
    let contiguous = t.c_row_stride == 1;

    // Tiles with all NR columns, contiguous columns and a plain store (no post step, β of
    // 0 or 1) go straight from the registers, in loops that LLVM unrolls. Only the last
    // vector of each column can be partial, and it is masked. Their arithmetic is that of
    // `store_vector`, so a result does not depend on which loop stores its tile.
    let full_vectors_below = (MV - 1) * L::WIDTH;
    if contiguous
        && t.rows > full_vectors_below
        && t.rows <= MV * L::WIDTH
        && t.cols == NR
        && epilogue.post.is_none()
    {
        let last_valid = t.rows - full_vectors_below;
        let unit_alpha = epilogue.alpha == 1.0;
        match epilogue.beta {
            // SAFETY (both arms): the tile has NR contiguous columns of `rows` elements,
            // and the last vector of each has `last_valid` of them. The caller's contract
            // on C holds, and `acc` proves support for `L`.
            Beta::Zero => unsafe {
                return store_plain_tile::<L, MV, NR, false>(acc, t, alpha, unit_alpha, last_valid);
            },
            Beta::One => unsafe {
                return store_plain_tile::<L, MV, NR, true>(acc, t, alpha, unit_alpha, last_valid);
            },
            Beta::Other(_) => {}
        }
    }

    // Every other tile: first spill the accumulators with constant indices, then store
    // the vectors inside the tile with run-time bounds. The constant indices let the
    // accumulation loop above keep the accumulators in registers, because a loop over
    // `acc` with run-time indices puts them in memory, with a store per step. The spill buffer is
    // left uninitialised, because a zeroed one cost a memset on every call.
    let mut spilled = core::mem::MaybeUninit::<[[[f32; MAX_LANE_WIDTH]; MV]; NR]>::uninit();
    let spill_base = spilled.as_mut_ptr().cast::<f32>();
    let slot = |j: usize, v: usize| spill_base.wrapping_add((j * MV + v) * MAX_LANE_WIDTH);
    for (j, acc_col) in acc.iter().enumerate() {
        for (v, acc_v) in acc_col.iter().enumerate() {
            // SAFETY: slot (j, v) has room for MAX_LANE_WIDTH ≥ WIDTH elements.
            unsafe { acc_v.store(slot(j, v)) };
        }
    }

    for j in 0..t.cols {
        // Wrapping: with strided columns only the elements named below are accessed.
        let column = t.c.wrapping_offset(j as isize * t.c_col_stride);
        for v in 0..MV {
            let first_row = v * L::WIDTH;
            if first_row >= t.rows {
                break;
            }
            let valid = (t.rows - first_row).min(L::WIDTH);
            // SAFETY: slot (j, v) contains the WIDTH elements stored above.
            let acc_v = unsafe { L::load(slot(j, v)) };
            // SAFETY: rows `first_row..first_row + valid` of column `j < cols` lie inside
            // the tile, which the caller lets this call read and write.
            unsafe {
                if contiguous {
                    store_vector(epilogue, alpha, acc_v, column, first_row, j, valid);
                } else {
                    store_vector_strided(epilogue, alpha, acc_v, t, first_row, j, valid);
                }
            }
        }
        if contiguous {
            // SAFETY: the column's `rows` elements are contiguous, inside the tile, and
            // only this call writes them.
            unsafe { activate_column(epilogue, column, t.rows) };
        }
    }
}

/// Writes a tile of NR contiguous columns as `α·acc`, or as `α·acc + C` when `ADD_C`
/// (β = 1). With `unit_alpha` (α = 1) it skips the multiply, which gives the same bits:
/// `acc·1` is `acc`, and the fused `acc·1 + C` rounds once, as `acc + C` does. That saved
/// 2 to 3 % at 128×10×128, whose 24 multiplies per tile compete with its 240 FMAs. The last of the MV vectors of each column has `last_valid` rows inside the
/// tile, and a partial one is masked. A short row tile at the bottom of C then stores
/// from the registers. Through the spill buffer, 128×10×126 AB took half again as long
/// as 128×10×128. `ADD_C` is a const parameter rather than a
/// closure because closures are compiled without the target features of the path's
/// wrapper, so their vector operations may become calls.
///
/// # Safety
///
/// `t.cols == NR`, `0 < last_valid ≤ WIDTH`, `t.rows == (MV − 1)·WIDTH + last_valid`,
/// the tile's columns are contiguous, and the caller may read and write it.
#[inline(always)]
unsafe fn store_plain_tile<L: Lane, const MV: usize, const NR: usize, const ADD_C: bool>(
    acc: &[[L; MV]; NR],
    t: &TileArgs,
    alpha: L,
    unit_alpha: bool,
    last_valid: usize,
) {
    for (j, acc_col) in acc.iter().enumerate() {
        // SAFETY: column `j < NR` of the tile lies inside C.
        let column = unsafe { t.c.offset(j as isize * t.c_col_stride) };
        for (v, &acc_v) in acc_col.iter().enumerate() {
            // SAFETY: the vector's rows from `v·WIDTH` lie inside the tile: all WIDTH of
            // them, or the first `last_valid` of the last vector, which the masked forms
            // keep to.
            unsafe {
                let dst = column.add(v * L::WIDTH);
                let partial = v == MV - 1 && last_valid < L::WIDTH;
                let out = match (ADD_C, partial, unit_alpha) {
                    (false, _, true) => acc_v,
                    (false, _, false) => acc_v.mul(alpha),
                    (true, false, true) => acc_v.add(L::load(dst)),
                    (true, false, false) => acc_v.mul_add(alpha, L::load(dst)),
                    (true, true, true) => acc_v.add(L::load_first(dst, last_valid)),
                    (true, true, false) => acc_v.mul_add(alpha, L::load_first(dst, last_valid)),
                };
                if partial {
                    out.store_first(dst, last_valid);
                } else {
                    out.store(dst);
                }
            }
        }
    }
}

/// Combines one accumulated vector with C and writes rows `first_row..first_row + valid`
/// of a contiguous tile column, masking the vector when `valid < WIDTH`.
///
/// # Safety
///
/// `valid ≤ WIDTH`, and the `valid` elements from `column + first_row` lie in column `j`
/// of the tile, which the caller may read and write.
#[inline(always)]
unsafe fn store_vector<L: Lane>(
    epilogue: Epilogue,
    alpha: L,
    acc_v: L,
    column: *mut f32,
    first_row: usize,
    j: usize,
    valid: usize,
) {
    // SAFETY: the caller guarantees the `valid` elements; the masked forms touch no
    // element beyond them.
    unsafe {
        let dst = column.add(first_row);
        let out = epilogue.combine(alpha, acc_v, || {
            if valid == L::WIDTH {
                L::load(dst)
            } else {
                L::load_first(dst, valid)
            }
        });
        let out = epilogue.post.apply(out, first_row, j, valid);
        if valid == L::WIDTH {
            out.store(dst);
        } else {
            out.store_first(dst, valid);
        }
    }
}

/// [`store_vector`] for a column whose rows are `c_row_stride` apart: the elements go
/// through a staging vector one by one.
///
/// # Safety
///
/// `valid ≤ WIDTH`, and rows `first_row..first_row + valid` of column `j` lie inside the
/// tile of `t`, which the caller may read and write.
#[inline(always)]
unsafe fn store_vector_strided<L: Lane>(
    epilogue: Epilogue,
    alpha: L,
    acc_v: L,
    t: &TileArgs,
    first_row: usize,
    j: usize,
    valid: usize,
) {
    let c_at = |i: usize| {
        let offset = (first_row + i) as isize * t.c_row_stride + j as isize * t.c_col_stride;
        t.c.wrapping_offset(offset)
    };
    let mut staging = [0.0f32; MAX_LANE_WIDTH];
    let out = epilogue.combine(alpha, acc_v, || {
        for (i, slot) in staging.iter_mut().enumerate().take(valid) {
            // SAFETY: row `first_row + i` of column `j` lies inside the tile.
            *slot = unsafe { *c_at(i) };
        }
        // SAFETY: the staging buffer has room for MAX_LANE_WIDTH ≥ WIDTH elements, and
        // `acc_v` proves support for `L`.
        unsafe { L::load(staging.as_ptr()) }
    });
    // SAFETY: the rows `first_row..first_row + valid` of column `j` lie in C.
    let out = unsafe { epilogue.post.apply(out, first_row, j, valid) };
    // SAFETY: as above.
    unsafe { out.store(staging.as_mut_ptr()) };
    if let Some(activation) = epilogue.post.slice_activation() {
        activation.apply_slice(&mut staging[..valid]);
    }
    for (i, &value) in staging.iter().enumerate().take(valid) {
        // SAFETY: row `first_row + i` of column `j` lies inside the tile, which the caller
        // lets this function write.
        unsafe { *c_at(i) = value };
    }
}

/// Applies the epilogue's slice activation (sigmoid or tanh, which need `exp`) to the
/// `rows` stored elements of a contiguous tile column.
///
/// # Safety
///
/// The `rows` elements from `column` are inside the tile and only this call writes them.
#[inline(always)]
unsafe fn activate_column(epilogue: Epilogue, column: *mut f32, rows: usize) {
    if let Some(activation) = epilogue.post.slice_activation() {
        // SAFETY: the caller guarantees the elements.
        activation.apply_slice(unsafe { std::slice::from_raw_parts_mut(column, rows) });
    }
}
