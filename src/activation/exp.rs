//! A vectorised `e^x` for eight `f32` lanes.
//!
//! `e^x = 2^n · e^r` with `n = round(x·log2 e)` and `r = x − n·ln 2`, so `|r| ≤ ln 2 / 2`.
//! `e^r` comes from its degree-7 Taylor polynomial, whose truncation error `r^8/8!` is below
//! `5·10⁻⁹`, well under one `f32` ulp. `2^n` is built from exponent bits in two halves, so
//! results down to the smallest subnormal come out right without a branch. The unit tests
//! measure the error against `f64::exp`.

use wide::{f32x8, i32x8};

/// Below this, `e^x` is under half the smallest subnormal (`e^−104 ≈ 6.8·10⁻⁴⁶`, half of
/// `2^−149` is `7.0·10⁻⁴⁶`), so the result rounds to 0.
const EXP_MIN: f32 = -104.0;

/// `ln(f32::MAX)`, rounded to `f32`. Larger arguments give infinity.
const EXP_MAX: f32 = 88.722_84;

/// `ln 2` split in two: the high part has 9 significant bits, so `n · LN2_HI` is exact for
/// every `|n| ≤ 150` and the reduction loses no digits (the split of Cody and Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// Taylor coefficients `1/k!` of `e^r` for `k = 2..=7`.
const INV_FACTORIALS: [f32; 6] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// Returns `e^x` in each lane: 0 below `EXP_MIN`, infinity above `EXP_MAX`, NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32x8) -> f32x8 {
    let clamped = x.max(f32x8::splat(EXP_MIN)).min(f32x8::splat(EXP_MAX));
    let n = (clamped * std::f32::consts::LOG2_E).fast_round_int();
    let n_float = f32x8::from_i32x8(n);
    let r = n_float.mul_neg_add(f32x8::splat(LN2_HI), clamped);
    let r = n_float.mul_neg_add(f32x8::splat(LN2_LO), r);

    // e^r = 1 + r + r²·(1/2! + r·(1/3! + …)), evaluated by Horner's rule.
    let mut tail = f32x8::splat(INV_FACTORIALS[5]);
    for &coefficient in INV_FACTORIALS[..5].iter().rev() {
        tail = tail.mul_add(r, f32x8::splat(coefficient));
    }
    let e_r = (r * r).mul_add(tail, r) + f32x8::ONE;

    // n lies in [−150, 128]. Each half lies in [−75, 64], where 2^half is a normal float.
    let n_low = n >> 1;
    let n_high = n - n_low;
    let result = e_r * power_of_two(n_low) * power_of_two(n_high);

    let result = x
        .simd_gt(f32x8::splat(EXP_MAX))
        .select(f32x8::splat(f32::INFINITY), result);
    x.is_nan().select(x, result)
}

/// `2^n` for integers `n` in `[−126, 127]`, built from the exponent field.
#[inline(always)]
fn power_of_two(n: i32x8) -> f32x8 {
    wide::bytemuck::cast((n + i32x8::splat(127)) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::ulps;

    fn exp_of(x: f32) -> f32 {
        exp(f32x8::splat(x)).to_array()[0]
    }

    #[test]
    fn exp_error_within_two_ulps() {
        // Every 61st f32 bit pattern in [−87, 88.7], where e^x is a normal f32.
        let negative = (0..(-87.0f32).to_bits() - (-0.0f32).to_bits()).step_by(61);
        let negative = negative.map(|k| f32::from_bits((-0.0f32).to_bits() + k));
        let positive = (0..88.7f32.to_bits()).step_by(61).map(f32::from_bits);
        let mut worst: f64 = 0.0;
        for x in negative.chain(positive) {
            let error = ulps(exp_of(x), f64::from(x).exp());
            assert!(error <= 2.0, "exp({x}): error {error} ulp");
            worst = worst.max(error);
        }
        assert!(worst > 0.0, "the loop checked no values");
    }

    #[test]
    fn exp_subnormal_results_close() {
        for x in [-87.5f32, -90.0, -95.5, -100.0, -103.0] {
            let error = (f64::from(exp_of(x)) - f64::from(x).exp()).abs();
            assert!(
                error <= f64::from(f32::from_bits(1)),
                "exp({x}): error {error:e}"
            );
        }
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp_of(-1000.0), 0.0);
        assert_eq!(exp_of(-104.5), 0.0);
        assert_eq!(exp_of(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_of(1000.0), f32::INFINITY);
        assert_eq!(exp_of(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_of(0.0), 1.0);
        assert_eq!(exp_of(-0.0), 1.0);
        assert!(exp_of(f32::NAN).is_nan());
        assert!(exp_of(88.7).is_finite());
    }
}
