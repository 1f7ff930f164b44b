//! Sums of scaled columns, `c ← β·c + Σ_q x_q·a_q`: the kernel of products whose C has one
//! column (a matrix times a vector) or whose reduction has one step (an outer product).
//! Each column of A is read once, front to back, where the loop nest would read it in
//! short runs, one for each row tile.

use super::lane::Lane;
use super::microkernel::Beta;

/// Columns of A that one call adds into C. Each vector of C is then loaded and stored once
/// for four FMAs, and the four columns are four streams that the hardware prefetchers
/// follow.
pub(crate) const COLUMN_GROUP: usize = 4;

/// One call of [`column_sum_body`]: `c[i] ← start(c[i]) + Σ_{q < columns} a_q[i]·coeffs[q]`
/// for `i < rows`, with column `a_q` at `a + q·a_col_stride` and `start` given by `beta`:
/// 0 without reading `c`, `c[i]`, or `β·c[i]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnSum {
    /// The first column of A: `rows` adjacent elements.
    pub a: *const f32,
    /// Elements between the starts of adjacent columns of A.
    pub a_col_stride: isize,
    /// The scale of each column; `columns` of them are used.
    pub coeffs: [f32; COLUMN_GROUP],
    /// Columns of A to add, from 1 to [`COLUMN_GROUP`].
    pub columns: usize,
    /// The first element of C: `rows` adjacent elements.
    pub c: *mut f32,
    /// Elements per column.
    pub rows: usize,
    /// The start value of C (see the type).
    pub beta: Beta,
}

/// Runs `args` (see [`ColumnSum`]). The products of each element are added in the order
/// of the columns, after the start value, so an element's result does not depend on
/// `rows` or on where its vector begins.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set. `1 ≤ columns ≤ COLUMN_GROUP`. Each of the
/// `columns` columns of A has `rows` readable elements, and the `rows` elements of C are
/// writable, readable unless `beta` is [`Beta::Zero`], and borrowed by no one else.
#[inline(always)]
pub(crate) unsafe fn column_sum_body<L: Lane>(args: &ColumnSum) {
    // SAFETY (every arm): the caller's contract, with the column count matched.
    unsafe {
        match args.columns {
            1 => sum_with_start::<L, 1>(args),
            2 => sum_with_start::<L, 2>(args),
            3 => sum_with_start::<L, 3>(args),
            _ => sum_with_start::<L, COLUMN_GROUP>(args),
        }
    }
}

/// One call of [`outer_product_body`]: column `j` of C, for `j < cols`, becomes
/// `start(c_j) + a·(α·b[j·b_stride])`, with `start` given by `beta` as in [`ColumnSum`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct OuterProduct {
    /// The column of A: `rows` adjacent elements.
    pub a: *const f32,
    /// The row of B: `cols` elements, `b_stride` apart.
    pub b: *const f32,
    /// Elements between adjacent elements of B's row.
    pub b_stride: isize,
    /// The scale of the product.
    pub alpha: f32,
    /// The first element of C: `cols` columns of `rows` adjacent elements.
    pub c: *mut f32,
    /// Elements between the starts of adjacent columns of C.
    pub c_col_stride: isize,
    /// Elements per column.
    pub rows: usize,
    /// Columns of C.
    pub cols: usize,
    /// The start value of C, as in [`ColumnSum`].
    pub beta: Beta,
}

/// Runs `args` (see [`OuterProduct`]), [`OUTER_GROUP`] columns of C at a time and then
/// one at a time. Each element is `start + a_i·(α·b_j)`, computed the same way in either
/// loop.
///
/// # Safety
///
/// The CPU supports `L`'s instruction set. A's column has `rows` readable elements, B's
/// row `cols` readable elements, and each of C's `cols` columns `rows` elements that are
/// writable, readable unless `beta` is [`Beta::Zero`], and borrowed by no one else.
#[inline(always)]
pub(crate) unsafe fn outer_product_body<L: Lane>(args: &OuterProduct) {
    let mut j = 0;
    while j + OUTER_GROUP <= args.cols {
        // SAFETY: columns `j..j + OUTER_GROUP` lie inside C and B's row.
        unsafe { outer_group_with_start::<L, OUTER_GROUP>(args, j) };
        j += OUTER_GROUP;
    }
    while j < args.cols {
        // SAFETY: column `j` lies inside C and B's row.
        unsafe { outer_group_with_start::<L, 1>(args, j) };
        j += 1;
    }
}

/// Columns of C that [`outer_product_body`] writes together, so that each vector of A's
/// column is loaded once for four stores. On one AVX-512 core, with the portable lanes,
/// 256×1×784 AᵀB ran at 29.1 GFLOP/s against 27.1 one column at a time, and 4096×1×64 AB
/// at 29.1 against 26.1.
/// NOTE: a C of 1 to 4 MiB, beyond L2, was faster one column at a time (1024×1×1024 AB
/// 15.1 against 12.7), but a 64 MiB one far slower (4096×1×4096 AB 6.5 against 10.5).
const OUTER_GROUP: usize = 4;

/// Runs [`outer_group`] with the start that `args.beta` names.
///
/// # Safety
///
/// As for [`outer_group`].
#[inline(always)]
unsafe fn outer_group_with_start<L: Lane, const G: usize>(args: &OuterProduct, first: usize) {
    // SAFETY (every arm): the caller's contract.
    unsafe {
        match args.beta {
            Beta::Zero => outer_group::<L, G, START_ZERO>(args, first),
            Beta::One => outer_group::<L, G, START_C>(args, first),
            Beta::Other(_) => outer_group::<L, G, START_SCALED_C>(args, first),
        }
    }
}

/// Writes columns `first..first + G` of C for [`outer_product_body`], with start `START`.
///
/// # Safety
///
/// As for [`outer_product_body`], with `first + G ≤ cols` and `START` matching
/// `args.beta`.
#[inline(always)]
unsafe fn outer_group<L: Lane, const G: usize, const START: u8>(args: &OuterProduct, first: usize) {
    let beta = match args.beta {
        Beta::Other(beta) => beta,
        Beta::Zero | Beta::One => 1.0,
    };
    // SAFETY: the caller guarantees support for `L` and that elements `first..first + G`
    // of B's row are readable.
    let (coeffs, beta) = unsafe {
        let coeffs: [L; G] = core::array::from_fn(|q| {
            let b = args.b.offset((first + q) as isize * args.b_stride);
            L::splat(args.alpha * *b)
        });
        (coeffs, L::splat(beta))
    };
    let columns: [*mut f32; G] = core::array::from_fn(|q| {
        args.c
            .wrapping_offset((first + q) as isize * args.c_col_stride)
    });

    let mut i = 0;
    while i + L::WIDTH <= args.rows {
        // SAFETY: elements `i..i + WIDTH` lie inside A's column and these columns of C.
        unsafe { outer_vectors::<L, G, START, true>(args, &coeffs, beta, &columns, i, L::WIDTH) };
        i += L::WIDTH;
    }
    if i < args.rows {
        let valid = args.rows - i;
        // SAFETY: elements `i..rows` lie inside A's column and these columns of C.
        unsafe { outer_vectors::<L, G, START, false>(args, &coeffs, beta, &columns, i, valid) };
    }
}

/// Writes the vectors from element `i` of `columns` for [`outer_group`]: whole when
/// `FULL`, else their first `valid` elements.
///
/// # Safety
///
/// As for [`outer_group`], and elements `i..i + valid` lie inside A's column and each of
/// `columns`, with `valid == WIDTH` when `FULL`.
#[inline(always)]
unsafe fn outer_vectors<L: Lane, const G: usize, const START: u8, const FULL: bool>(
    args: &OuterProduct,
    coeffs: &[L; G],
    beta: L,
    columns: &[*mut f32; G],
    i: usize,
    valid: usize,
) {
    // SAFETY (every access): elements `i..i + valid` lie inside A's column and each of
    // `columns`, and the masked forms touch no element beyond them. `beta` proves support
    // for `L`.
    unsafe {
        let a = load::<L, FULL>(args.a.add(i), valid);
        for (column, coeff) in columns.iter().zip(coeffs) {
            let dst = column.add(i);
            // Without C, the product alone: on lanes without FMA an add of zero would
            // cost an instruction per vector.
            let out = match START {
                START_ZERO => a.mul(*coeff),
                START_C => a.mul_add(*coeff, load::<L, FULL>(dst, valid)),
                _ => a.mul_add(*coeff, load::<L, FULL>(dst, valid).mul(beta)),
            };
            if FULL {
                out.store(dst);
            } else {
                out.store_first(dst, valid);
            }
        }
    }
}

/// The start value of C, as a const parameter of [`sum_columns`] and [`outer_group`].
const START_ZERO: u8 = 0;
const START_C: u8 = 1;
const START_SCALED_C: u8 = 2;

/// Runs [`sum_columns`] with the start that `args.beta` names.
///
/// # Safety
///
/// As for [`column_sum_body`], with `K` columns.
#[inline(always)]
unsafe fn sum_with_start<L: Lane, const K: usize>(args: &ColumnSum) {
    // SAFETY (every arm): the caller's contract.
    unsafe {
        match args.beta {
            Beta::Zero => sum_columns::<L, K, START_ZERO>(args),
            Beta::One => sum_columns::<L, K, START_C>(args),
            Beta::Other(_) => sum_columns::<L, K, START_SCALED_C>(args),
        }
    }
}

/// Runs the loop of [`column_sum_body`] for `K` columns and start `START`: whole vectors,
/// then a masked one for the last `rows % WIDTH` elements. The steps are functions rather than
/// closures, which are compiled without the target features of the path's wrapper.
///
/// # Safety
///
/// As for [`column_sum_body`], with `K` columns and `START` matching `args.beta`.
#[inline(always)]
unsafe fn sum_columns<L: Lane, const K: usize, const START: u8>(args: &ColumnSum) {
    let beta = match args.beta {
        Beta::Other(beta) => beta,
        Beta::Zero | Beta::One => 1.0,
    };
    // SAFETY: the caller guarantees support for `L`.
    let (coeffs, beta) = unsafe {
        let coeffs: [L; K] = core::array::from_fn(|q| L::splat(args.coeffs[q]));
        (coeffs, L::splat(beta))
    };

    let mut i = 0;
    while i + L::WIDTH <= args.rows {
        // SAFETY: elements `i..i + WIDTH` lie inside C and each column.
        unsafe { sum_vector::<L, K, START, true>(args, &coeffs, beta, i, L::WIDTH) };
        i += L::WIDTH;
    }
    if i < args.rows {
        // SAFETY: elements `i..rows` lie inside C and each column.
        unsafe { sum_vector::<L, K, START, false>(args, &coeffs, beta, i, args.rows - i) };
    }
}

/// Writes the vector of C from element `i`: whole when `FULL`, else its first `valid`
/// elements, through masked loads and stores.
///
/// # Safety
///
/// As for [`sum_columns`], and elements `i..i + valid` lie inside C and each column,
/// with `valid == WIDTH` when `FULL`.
#[inline(always)]
unsafe fn sum_vector<L: Lane, const K: usize, const START: u8, const FULL: bool>(
    args: &ColumnSum,
    coeffs: &[L; K],
    beta: L,
    i: usize,
    valid: usize,
) {
    // SAFETY (every access): elements `i..i + valid` lie inside C and each column, and
    // the masked forms touch no element beyond them; `beta` proves support for `L`.
    unsafe {
        let dst = args.c.add(i);
        let mut sum = match START {
            START_ZERO => L::zero(),
            START_C => load::<L, FULL>(dst, valid),
            _ => load::<L, FULL>(dst, valid).mul(beta),
        };
        for (q, coeff) in coeffs.iter().enumerate() {
            let column = args.a.wrapping_offset(q as isize * args.a_col_stride);
            sum = load::<L, FULL>(column.add(i), valid).mul_add(*coeff, sum);
        }
        if FULL {
            sum.store(dst);
        } else {
            sum.store_first(dst, valid);
        }
    }
}

/// Loads a whole vector when `FULL`, else the first `valid` elements.
///
/// # Safety
///
/// The CPU supports `L`, and `valid` elements from `ptr` are readable, `WIDTH` when `FULL`.
#[inline(always)]
unsafe fn load<L: Lane, const FULL: bool>(ptr: *const f32, valid: usize) -> L {
    // SAFETY: the caller's contract.
    unsafe {
        if FULL {
            L::load(ptr)
        } else {
            L::load_first(ptr, valid)
        }
    }
}
