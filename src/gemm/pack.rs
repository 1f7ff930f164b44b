//! Packing: copying a block of A or B into the contiguous micro-panel layout that the
//! micro-kernel streams through. Packing reads through any strides, so transposed,
//! strided and reversed operands cost no copy beyond this one.

use super::operand::Operand;

/// Packs the `rows × depth` block of `a` at (`row`, `col`) as one A micro-panel of
/// `padded_rows` rows: element (i, p) goes to `dst[p·padded_rows + i]`, and rows
/// `rows..padded_rows` are zero.
///
/// # Safety
///
/// The block lies inside `a`'s view, `rows ≤ padded_rows`, and `dst` is valid for
/// `depth · padded_rows` writes.
pub(crate) unsafe fn pack_a(
    a: &Operand,
    row: usize,
    col: usize,
    rows: usize,
    depth: usize,
    padded_rows: usize,
    dst: *mut f32,
) {
    for p in 0..depth {
        // SAFETY: `p < depth`, so the destination column is inside `dst`.
        let dst_col = unsafe { dst.add(p * padded_rows) };
        if a.row_stride == 1 {
            // SAFETY: the column's `rows` elements are adjacent and inside the view, and the
            // destination is a packing buffer with room for `padded_rows ≥ rows`.
            unsafe { copy_short(a.at(row, col + p), dst_col, rows) };
        } else {
            for i in 0..rows {
                // SAFETY: (row + i, col + p) is inside the block, so inside the view.
                unsafe { *dst_col.add(i) = *a.at(row + i, col + p) };
            }
        }
        for i in rows..padded_rows {
            // SAFETY: `i < padded_rows`, inside the destination column.
            unsafe { *dst_col.add(i) = 0.0 };
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
    let mut first_p = 0;
    if b.row_stride == 1 && cols == TRANSPOSE_BLOCK {
        // Columns are contiguous: transpose 8 × 8 blocks in registers instead of gathering
        // one element at a time.
        while first_p + TRANSPOSE_BLOCK <= depth {
            // SAFETY: the block's rows `first_p..first_p + 8` lie inside the micro-panel.
            unsafe { transpose_block(b, row + first_p, col, dst.add(first_p * cols)) };
            first_p += TRANSPOSE_BLOCK;
        }
    }

    for p in first_p..depth {
        // SAFETY: `p < depth`, so the destination row is inside `dst`.
        let dst_row = unsafe { dst.add(p * cols) };
        if b.col_stride == 1 {
            // SAFETY: the row's `cols` elements are adjacent and inside the view; the
            // destination is a packing buffer, disjoint from the source.
            unsafe { copy_short(b.at(row + p, col), dst_row, cols) };
        } else {
            for j in 0..cols {
                // SAFETY: (row + p, col + j) is inside the block, so inside the view.
                unsafe { *dst_row.add(j) = *b.at(row + p, col + j) };
            }
        }
    }
}

/// Side of the square blocks that [`pack_b`] transposes when B's columns are contiguous.
const TRANSPOSE_BLOCK: usize = 8;

/// Writes the 8 × 8 block of `b` at (`row`, `col`), whose columns are contiguous, to `dst`
/// row by row: element (p, j) goes to `dst[p·8 + j]`.
///
/// # Safety
///
/// The block lies inside `b`'s view, `b.row_stride == 1`, and `dst` is valid for 64 writes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_block(b: &Operand, row: usize, col: usize, dst: *mut f32) {
    use core::arch::x86_64::{
        _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
    };

    // Four 4 × 4 transposes with SSE, which every x86-64 CPU has.
    for first_col in [0, 4] {
        for first_p in [0, 4] {
            // SAFETY: columns `col + first_col + j` have 4 adjacent elements from row
            // `row + first_p` inside the view, and the 4 destination rows of 4 elements lie
            // inside the 64-element block at `dst`. SSE is part of the x86-64 baseline.
            unsafe {
                let load = |j: usize| _mm_loadu_ps(b.at(row + first_p, col + first_col + j));
                let (c0, c1, c2, c3) = (load(0), load(1), load(2), load(3));
                let low01 = _mm_unpacklo_ps(c0, c1);
                let low23 = _mm_unpacklo_ps(c2, c3);
                let high01 = _mm_unpackhi_ps(c0, c1);
                let high23 = _mm_unpackhi_ps(c2, c3);
                let rows = [
                    _mm_movelh_ps(low01, low23),
                    _mm_movehl_ps(low23, low01),
                    _mm_movelh_ps(high01, high23),
                    _mm_movehl_ps(high23, high01),
                ];
                for (q, dst_row) in rows.into_iter().enumerate() {
                    let at = (first_p + q) * TRANSPOSE_BLOCK + first_col;
                    _mm_storeu_ps(dst.add(at), dst_row);
                }
            }
        }
    }
}

/// Writes the 8 × 8 block of `b` at (`row`, `col`) to `dst` row by row: element (p, j) goes
/// to `dst[p·8 + j]`.
///
/// # Safety
///
/// The block lies inside `b`'s view, and `dst` is valid for 64 writes.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn transpose_block(b: &Operand, row: usize, col: usize, dst: *mut f32) {
    for p in 0..TRANSPOSE_BLOCK {
        for j in 0..TRANSPOSE_BLOCK {
            // SAFETY: (row + p, col + j) is inside the block, and `p·8 + j < 64`.
            unsafe { *dst.add(p * TRANSPOSE_BLOCK + j) = *b.at(row + p, col + j) };
        }
    }
}

/// Elements per chunk of [`copy_short`]: one 64-byte cache line.
const COPY_CHUNK: usize = 16;

/// Copies `len` elements, a micro-panel column or row of at most a few dozen, in fixed-size
/// chunks that compile to inline vector moves instead of a `memcpy` call per column.
///
/// # Safety
///
/// `src` is valid for `len` reads, `dst` for `len` writes, and the two do not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const f32, dst: *mut f32, len: usize) {
    let mut i = 0;
    while i + COPY_CHUNK <= len {
        // SAFETY: `i + COPY_CHUNK ≤ len`, inside both ranges; unaligned accesses are fine.
        unsafe {
            let chunk = src.add(i).cast::<[f32; COPY_CHUNK]>().read_unaligned();
            dst.add(i)
                .cast::<[f32; COPY_CHUNK]>()
                .write_unaligned(chunk);
        }
        i += COPY_CHUNK;
    }
    while i < len {
        // SAFETY: `i < len`, inside both ranges.
        unsafe { *dst.add(i) = *src.add(i) };
        i += 1;
    }
}
