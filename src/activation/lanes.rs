//! Loops that run a lane function over contiguous `f32` slices, 8 lanes at a time.
//!
//! The body of a slice is read as whole `[f32; 8]` arrays, and the tail (fewer than 8
//! elements) is copied into a padded vector, so every element goes through the same lane
//! function. The slices passed together have equal lengths.

use wide::f32x8;

/// Lanes in one SIMD vector.
pub(crate) const LANES: usize = 8;

/// Loads a tail of fewer than 8 elements, filling the missing lanes with `pad`.
#[inline(always)]
fn load_tail(values: &[f32], pad: f32) -> f32x8 {
    let mut lanes = [pad; LANES];
    lanes[..values.len()].copy_from_slice(values);
    f32x8::new(lanes)
}

/// Stores the first `out.len()` lanes of `v`.
#[inline(always)]
fn store_tail(v: f32x8, out: &mut [f32]) {
    out.copy_from_slice(&v.to_array()[..out.len()]);
}

/// Replaces each element `x` of `row` by `f(x)`. Padded tail lanes hold `pad`.
#[inline(always)]
pub(crate) fn map_in_place(row: &mut [f32], pad: f32, mut f: impl FnMut(f32x8) -> f32x8) {
    let (body, tail) = row.as_chunks_mut::<LANES>();
    for chunk in body {
        *chunk = f(f32x8::new(*chunk)).to_array();
    }
    if !tail.is_empty() {
        let result = f(load_tail(tail, pad));
        store_tail(result, tail);
    }
}

/// Replaces each element `o` of `out` by `f(x, o)`, `x` being the element of `x` at the same
/// index. Padded tail lanes hold 0.
#[inline(always)]
pub(crate) fn zip_in_place(x: &[f32], out: &mut [f32], mut f: impl FnMut(f32x8, f32x8) -> f32x8) {
    debug_assert_eq!(x.len(), out.len());
    let (x_body, x_tail) = x.as_chunks::<LANES>();
    let (out_body, out_tail) = out.as_chunks_mut::<LANES>();
    for (x, out) in x_body.iter().zip(out_body) {
        *out = f(f32x8::new(*x), f32x8::new(*out)).to_array();
    }
    if !out_tail.is_empty() {
        let result = f(load_tail(x_tail, 0.0), load_tail(out_tail, 0.0));
        store_tail(result, out_tail);
    }
}

/// Writes `out ← f(x, y, valid)` element-wise, where `valid` is the number of real lanes: 8,
/// or fewer in the tail, whose padded lanes hold 0.
#[inline(always)]
pub(crate) fn zip_into(
    x: &[f32],
    y: &[f32],
    out: &mut [f32],
    mut f: impl FnMut(f32x8, f32x8, usize) -> f32x8,
) {
    debug_assert_eq!(x.len(), out.len());
    debug_assert_eq!(y.len(), out.len());
    let (x_body, x_tail) = x.as_chunks::<LANES>();
    let (y_body, y_tail) = y.as_chunks::<LANES>();
    let (out_body, out_tail) = out.as_chunks_mut::<LANES>();
    for ((x, y), out) in x_body.iter().zip(y_body).zip(out_body) {
        *out = f(f32x8::new(*x), f32x8::new(*y), LANES).to_array();
    }
    if !out_tail.is_empty() {
        let result = f(
            load_tail(x_tail, 0.0),
            load_tail(y_tail, 0.0),
            out_tail.len(),
        );
        store_tail(result, out_tail);
    }
}

/// Folds `row` into an accumulator vector, `acc ← f(acc, x)`. Padded tail lanes hold `pad`.
#[inline(always)]
pub(crate) fn fold(
    row: &[f32],
    pad: f32,
    init: f32x8,
    mut f: impl FnMut(f32x8, f32x8) -> f32x8,
) -> f32x8 {
    let (body, tail) = row.as_chunks::<LANES>();
    let mut acc = init;
    for chunk in body {
        acc = f(acc, f32x8::new(*chunk));
    }
    if !tail.is_empty() {
        acc = f(acc, load_tail(tail, pad));
    }
    acc
}

/// Folds two rows into an accumulator vector, `acc ← f(acc, x, y)`. Padded tail lanes hold 0.
#[inline(always)]
pub(crate) fn fold_pairs(
    x: &[f32],
    y: &[f32],
    init: f32x8,
    mut f: impl FnMut(f32x8, f32x8, f32x8) -> f32x8,
) -> f32x8 {
    debug_assert_eq!(x.len(), y.len());
    let (x_body, x_tail) = x.as_chunks::<LANES>();
    let (y_body, y_tail) = y.as_chunks::<LANES>();
    let mut acc = init;
    for (x, y) in x_body.iter().zip(y_body) {
        acc = f(acc, f32x8::new(*x), f32x8::new(*y));
    }
    if !x_tail.is_empty() {
        acc = f(acc, load_tail(x_tail, 0.0), load_tail(y_tail, 0.0));
    }
    acc
}

/// Sets the lanes from `valid` on to 0, so padded tail lanes drop out of a sum.
#[inline(always)]
pub(crate) fn zero_padding(v: f32x8, valid: usize) -> f32x8 {
    if valid >= LANES {
        return v;
    }
    let mut lanes = v.to_array();
    lanes[valid..].fill(0.0);
    f32x8::new(lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_in_place_every_length() {
        for len in 0..20 {
            let mut row: Vec<f32> = (0..len).map(|i| i as f32).collect();
            map_in_place(&mut row, f32::NAN, |x| x * 2.0);
            let expected: Vec<f32> = (0..len).map(|i| 2.0 * i as f32).collect();
            assert_eq!(row, expected, "length {len}");
        }
    }

    #[test]
    fn fold_pads_tail() {
        let row = [1.0, 5.0, 2.0, 3.0, 4.0, 0.0, -1.0, 2.5, 9.0, 1.0];
        let max = fold(
            &row,
            f32::NEG_INFINITY,
            f32x8::splat(f32::NEG_INFINITY),
            |a, x| a.max(x),
        );
        assert_eq!(
            max.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max),
            9.0
        );
        let sum = fold_pairs(&row, &row, f32x8::ZERO, |acc, x, y| x.mul_add(y, acc));
        assert_eq!(sum.reduce_add(), row.iter().map(|x| x * x).sum::<f32>());
    }

    #[test]
    fn zip_into_reports_valid_lanes() {
        let x = [1.0; 11];
        let mut out = [0.0; 11];
        let mut seen = Vec::new();
        zip_into(&x, &x, &mut out, |x, y, valid| {
            seen.push(valid);
            zero_padding(x + y, valid)
        });
        assert_eq!(seen, [8, 3]);
        assert_eq!(out, [2.0; 11]);
    }
}
