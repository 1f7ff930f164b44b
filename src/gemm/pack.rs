//! Packing: copying a block of A or B into the contiguous micro-panel layout that the
//! micro-kernel streams through. Packing reads through any strides, so transposed,
//! strided and reversed operands cost no copy beyond this one.

use super::operand::Operand;
use crate::kernel::{CACHE_LINE_F32, prefetch};

/// Packs the `rows × depth` block of `a` at (`row`, `col`) as one A micro-panel of
/// `padded_rows` rows: element (i, p) goes to `dst[p·padded_rows + i]`, and rows
/// `rows..padded_rows` are zero. `avx` lets rows that are contiguous be transposed in
/// 8 × 8 blocks with AVX instead of 4 × 4 blocks with SSE.
///
/// # Safety
///
/// The block lies inside `a`'s view, `rows ≤ padded_rows`, and `dst` is valid for
/// `depth · padded_rows` writes. With `avx`, the CPU supports AVX.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack_a(
    a: &Operand,
    row: usize,
    col: usize,
    rows: usize,
    depth: usize,
    padded_rows: usize,
    dst: *mut f32,
    avx: bool,
) {
    // SAFETY (every pointer below): (row + i, col + p) with `i < rows` and `p < depth` is
    // inside the block, so inside the view, and `p·padded_rows + i` with
    // `i < padded_rows` is inside `dst`.
    let dst_at = |i: usize, p: usize| unsafe { dst.add(p * padded_rows + i) };
    let src_at = |i: usize, p: usize| unsafe { a.at(row + i, col + p) };

    let mut first_p = 0;
    if a.row_stride == 1 {
        for p in 0..depth {
            if p + PACK_A_PREFETCH_DISTANCE < depth {
                prefetch_run(src_at(0, p + PACK_A_PREFETCH_DISTANCE), rows);
            }
            // SAFETY: the column's `rows` elements are adjacent and inside the view, and
            // the destination has room for `padded_rows ≥ rows`.
            unsafe { copy_short(src_at(0, p), dst_at(0, p), rows) };
        }
        first_p = depth;
    } else if a.col_stride == 1 {
        // Rows are contiguous: transpose square blocks in registers.
        let side = if avx {
            WIDE_TRANSPOSE_SIDE
        } else {
            TRANSPOSE_SIDE
        };
        let (full_rows, full_depth) = (rows / side * side, depth / side * side);
        for p in (0..full_depth).step_by(side) {
            for i in (0..full_rows).step_by(side) {
                // SAFETY: source line `s` is row `i + s` from column `p`, and destination
                // line `q` is column `p + q` from row `i`. Each has `side` elements in
                // range. With `avx`, the caller guarantees AVX.
                unsafe {
                    if avx {
                        transpose_8x8(src_at(i, p), a.row_stride, dst_at(i, p), padded_rows);
                    } else {
                        transpose_4x4(|s| src_at(i + s, p), |q| dst_at(i, p + q));
                    }
                }
            }
            for i in full_rows..rows {
                for q in p..p + side {
                    // SAFETY: see the closures.
                    unsafe { *dst_at(i, q) = *src_at(i, q) };
                }
            }
        }
        first_p = full_depth;
    }
    for p in first_p..depth {
        for i in 0..rows {
            // SAFETY: see the closures.
            unsafe { *dst_at(i, p) = *src_at(i, p) };
        }
    }

    if rows < padded_rows {
        for p in 0..depth {
            // SAFETY: rows `rows..padded_rows` of column `p` are inside `dst`.
            unsafe { zero_short(dst_at(rows, p), padded_rows - rows) };
        }
    }
}

/// Packs the `depth × cols` block of `b` at (`row`, `col`) as one B micro-panel: element
/// (p, j) goes to `dst[p·cols + j]`.
///
/// # Safety
///
/// The block lies inside `b`'s view, and `dst` is valid for `depth · cols` writes.
pub(crate) unsafe fn pack_b(
    b: &Operand,
    row: usize,
    col: usize,
    depth: usize,
    cols: usize,
    dst: *mut f32,
) {
    // SAFETY (every pointer below): (row + p, col + j) with `p < depth` and `j < cols` is
    // inside the block, so inside the view, and `p·cols + j` is inside `dst`.
    let dst_at = |p: usize, j: usize| unsafe { dst.add(p * cols + j) };
    let src_at = |p: usize, j: usize| unsafe { b.at(row + p, col + j) };

    let mut first_p = 0;
    if b.col_stride == 1 {
        // SAFETY (every arm): each row's `cols` elements are adjacent and inside the view,
        // and the destination is a packing buffer, disjoint from the source.
        unsafe {
            match cols {
                6 => copy_rows::<6>(src_at, dst_at, depth),
                8 => copy_rows::<8>(src_at, dst_at, depth),
                12 => copy_rows::<12>(src_at, dst_at, depth),
                _ => {
                    for p in 0..depth {
                        copy_short(src_at(p, 0), dst_at(p, 0), cols);
                    }
                }
            }
        }
        first_p = depth;
    } else if b.row_stride == 1 {
        // Columns are contiguous: transpose 4 × 4 blocks in registers.
        let (full_depth, full_cols) = (round_down(depth), round_down(cols));
        for p in (0..full_depth).step_by(TRANSPOSE_SIDE) {
            for j in (0..full_cols).step_by(TRANSPOSE_SIDE) {
                // SAFETY: source line `s` is column `j + s` from row `p`, and destination
                // line `q` is row `p + q` from column `j`. Each has 4 elements in range.
                unsafe { transpose_4x4(|s| src_at(p, j + s), |q| dst_at(p + q, j)) };
            }
            for j in full_cols..cols {
                for q in p..p + TRANSPOSE_SIDE {
                    // SAFETY: see the closures.
                    unsafe { *dst_at(q, j) = *src_at(q, j) };
                }
            }
        }
        first_p = full_depth;
    }
    for p in first_p..depth {
        for j in 0..cols {
            // SAFETY: see the closures.
            unsafe { *dst_at(p, j) = *src_at(p, j) };
        }
    }
}

/// Copies row `p` of a B micro-panel, `N` adjacent elements from `src_at(p, 0)`, to
/// `dst_at(p, 0)` for every `p < depth`, as one fixed-size move per row. With
/// [`copy_short`], whose chunk loop costs more instructions than the moves for rows this
/// short, 1024×1024×64 AᵀB spent 40 % of its time packing B. With this copy for the
/// AVX-512 tile widths it ran at 118 GFLOP/s instead of 107 on one core.
///
/// # Safety
///
/// For every `p < depth`, `src_at(p, 0)` is valid for `N` reads, `dst_at(p, 0)` for `N`
/// writes, and the two do not overlap.
#[inline(always)]
unsafe fn copy_rows<const N: usize>(
    src_at: impl Fn(usize, usize) -> *const f32,
    dst_at: impl Fn(usize, usize) -> *mut f32,
    depth: usize,
) {
    for p in 0..depth {
        // SAFETY: the caller guarantees both ranges.
        unsafe { copy_chunk::<N>(src_at(p, 0), dst_at(p, 0)) };
    }
}

/// Columns ahead that [`pack_a`] prefetches when A's columns are contiguous.
/// Such columns lie a whole row of the matrix apart, often several pages, which the
/// hardware prefetcher does not follow, so each column's copy waited on its loads.
const PACK_A_PREFETCH_DISTANCE: usize = 8;

/// Hints the cache lines of the `len` adjacent elements from `ptr`.
#[inline(always)]
fn prefetch_run(ptr: *const f32, len: usize) {
    for offset in (0..len).step_by(CACHE_LINE_F32) {
        prefetch(ptr.wrapping_add(offset));
    }
    // A run that does not start on a cache line ends in one more line.
    prefetch(ptr.wrapping_add(len.saturating_sub(1)));
}

/// Side of the square blocks that packing transposes in registers.
const TRANSPOSE_SIDE: usize = 4;

/// Rounds `len` down to a multiple of [`TRANSPOSE_SIDE`].
fn round_down(len: usize) -> usize {
    len / TRANSPOSE_SIDE * TRANSPOSE_SIDE
}

/// Side of the square blocks that packing transposes with AVX.
const WIDE_TRANSPOSE_SIDE: usize = 8;

/// Copies an 8 × 8 block transposed: element `q` of source line `s` (at
/// `src + s·src_stride`) goes to element `s` of destination line `q` (at
/// `dst + q·dst_stride`). It stays a call rather than inlined code, because the packing
/// loop is also compiled for CPUs without AVX. One block is 64 elements, so the call is
/// a small part of its cost.
///
/// # Safety
///
/// The CPU supports AVX. For `s, q < 8`, the 8 adjacent elements of each source line are
/// readable and those of each destination line writable, and no destination line
/// overlaps a source line.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize) {
    use core::arch::x86_64::{
        _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };

    // SAFETY: the caller guarantees AVX and the 8 lines on each side.
    unsafe {
        let line = |s: usize| _mm256_loadu_ps(src.offset(s as isize * src_stride));
        let (r0, r1, r2, r3) = (line(0), line(1), line(2), line(3));
        let (r4, r5, r6, r7) = (line(4), line(5), line(6), line(7));

        // Pairs of lines interleaved: t0 = (r0₀ r1₀ r0₁ r1₁ | r0₄ r1₄ r0₅ r1₅), and so on.
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));

        // Four lines' element q in each 128-bit half: s0 = (column 0 | column 4) of lines
        // 0 to 3, s4 the same of lines 4 to 7.
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);

        // Low halves give columns 0 to 3, high halves columns 4 to 7.
        let store = |q: usize, v| _mm256_storeu_ps(dst.add(q * dst_stride), v);
        store(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
        store(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
        store(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
        store(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
        store(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
        store(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
        store(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
        store(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
    }
}

/// Copies an 8 × 8 block transposed; see the x86-64 version.
///
/// # Safety
///
/// As for the x86-64 version, except for AVX.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose_8x8(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize) {
    for s in 0..WIDE_TRANSPOSE_SIDE {
        for q in 0..WIDE_TRANSPOSE_SIDE {
            // SAFETY: the caller guarantees both lines.
            unsafe {
                *dst.add(q * dst_stride + s) = *src.offset(s as isize * src_stride + q as isize)
            };
        }
    }
}

/// Copies a 4 × 4 block transposed: element `q` of source line `s` goes to element `s` of
/// destination line `q`.
///
/// # Safety
///
/// For `s, q < 4`, `src(s)` points at 4 readable adjacent elements and `dst(q)` at 4
/// writable adjacent elements, none of them overlapping a source line.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_4x4(src: impl Fn(usize) -> *const f32, dst: impl Fn(usize) -> *mut f32) {
    use core::arch::x86_64::{
        _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
    };

    // SAFETY: the caller guarantees the lines; SSE is part of the x86-64 baseline.
    unsafe {
        let (s0, s1, s2, s3) = (
            _mm_loadu_ps(src(0)),
            _mm_loadu_ps(src(1)),
            _mm_loadu_ps(src(2)),
            _mm_loadu_ps(src(3)),
        );
        let low01 = _mm_unpacklo_ps(s0, s1);
        let low23 = _mm_unpacklo_ps(s2, s3);
        let high01 = _mm_unpackhi_ps(s0, s1);
        let high23 = _mm_unpackhi_ps(s2, s3);
        _mm_storeu_ps(dst(0), _mm_movelh_ps(low01, low23));
        _mm_storeu_ps(dst(1), _mm_movehl_ps(low23, low01));
        _mm_storeu_ps(dst(2), _mm_movelh_ps(high01, high23));
        _mm_storeu_ps(dst(3), _mm_movehl_ps(high23, high01));
    }
}

/// Copies a 4 × 4 block transposed: element `q` of source line `s` goes to element `s` of
/// destination line `q`.
///
/// # Safety
///
/// As for the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn transpose_4x4(src: impl Fn(usize) -> *const f32, dst: impl Fn(usize) -> *mut f32) {
    for s in 0..TRANSPOSE_SIDE {
        for q in 0..TRANSPOSE_SIDE {
            // SAFETY: the caller guarantees both lines.
            unsafe { *dst(q).add(s) = *src(s).add(q) };
        }
    }
}

/// Elements per chunk of [`copy_short`]: one 64-byte cache line.
const COPY_CHUNK: usize = 16;

/// Copies `len` elements, a micro-panel column or row of at most a few dozen, in fixed-size
/// chunks that compile to inline vector moves instead of a `memcpy` call per column. The
/// tail goes in chunks of 8, 4, 2 and 1, so a row of an 8-wide B micro-panel is one
/// 32-byte move rather than 8 scalar ones.
///
/// # Safety
///
/// `src` is valid for `len` reads, `dst` for `len` writes, and the two do not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const f32, dst: *mut f32, len: usize) {
    let mut i = 0;
    while i + COPY_CHUNK <= len {
        // SAFETY: `i + COPY_CHUNK ≤ len`, inside both ranges.
        unsafe { copy_chunk::<COPY_CHUNK>(src.add(i), dst.add(i)) };
        i += COPY_CHUNK;
    }
    if i + 8 <= len {
        // SAFETY: `i + 8 ≤ len`, inside both ranges.
        unsafe { copy_chunk::<8>(src.add(i), dst.add(i)) };
        i += 8;
    }
    if i + 4 <= len {
        // SAFETY: `i + 4 ≤ len`, inside both ranges.
        unsafe { copy_chunk::<4>(src.add(i), dst.add(i)) };
        i += 4;
    }
    // The last three elements without a loop, which LLVM would turn into a `memcpy` call.
    if i + 2 <= len {
        // SAFETY: `i + 2 ≤ len`, inside both ranges.
        unsafe { copy_chunk::<2>(src.add(i), dst.add(i)) };
        i += 2;
    }
    if i < len {
        // SAFETY: `i < len`, inside both ranges.
        unsafe { *dst.add(i) = *src.add(i) };
    }
}

/// Sets `len` elements to zero, the padding rows of an A micro-panel column, with the
/// chunks of [`copy_short`]. A plain loop became a `memset` call per column: 10×128×100
/// AᵀB, whose last row tile has 4 of 16 rows, spent 6 % of its time in those calls.
/// Copying the zeros from a static array instead timed 11 % slower there.
///
/// # Safety
///
/// `dst` is valid for `len` writes.
#[inline(always)]
unsafe fn zero_short(dst: *mut f32, len: usize) {
    let mut i = 0;
    while i + COPY_CHUNK <= len {
        // SAFETY: `i + COPY_CHUNK ≤ len`, inside the range.
        unsafe { zero_chunk::<COPY_CHUNK>(dst.add(i)) };
        i += COPY_CHUNK;
    }
    if i + 8 <= len {
        // SAFETY: `i + 8 ≤ len`, inside the range.
        unsafe { zero_chunk::<8>(dst.add(i)) };
        i += 8;
    }
    if i + 4 <= len {
        // SAFETY: `i + 4 ≤ len`, inside the range.
        unsafe { zero_chunk::<4>(dst.add(i)) };
        i += 4;
    }
    if i + 2 <= len {
        // SAFETY: `i + 2 ≤ len`, inside the range.
        unsafe { zero_chunk::<2>(dst.add(i)) };
        i += 2;
    }
    if i < len {
        // SAFETY: `i < len`, inside the range.
        unsafe { *dst.add(i) = 0.0 };
    }
}

/// Writes `N` zeros as one fixed-size (unaligned) array store.
///
/// # Safety
///
/// `dst` is valid for `N` writes.
#[inline(always)]
unsafe fn zero_chunk<const N: usize>(dst: *mut f32) {
    // SAFETY: the caller guarantees the range; unaligned accesses are allowed.
    unsafe { dst.cast::<[f32; N]>().write_unaligned([0.0; N]) };
}

/// Copies `N` elements as one fixed-size (unaligned) array move.
///
/// # Safety
///
/// `src` is valid for `N` reads, `dst` for `N` writes, and the two do not overlap.
#[inline(always)]
unsafe fn copy_chunk<const N: usize>(src: *const f32, dst: *mut f32) {
    // SAFETY: the caller guarantees both ranges; unaligned accesses are allowed.
    unsafe {
        let chunk = src.cast::<[f32; N]>().read_unaligned();
        dst.cast::<[f32; N]>().write_unaligned(chunk);
    }
}
