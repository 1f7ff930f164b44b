//! Reference matrix product.

use crate::error::Error;
use crate::matrix::{MatMut, MatRef, gemm_dims};

/// Computes `C ← α·A·B + β·C` with BLAS semantics, accumulating each dot product in `f64`.
///
/// With `β = 0`, `C` is not read, so NaN or garbage in it cannot reach the result. With
/// `α = 0` or `k = 0`, `A` and `B` are not read and `C ← β·C`. Empty `m` or `n` do nothing.
///
/// ```
/// use densegrad::{reference, MatMut, MatRef};
///
/// let a = [1.0, 2.0, 3.0, 4.0];
/// let b = [5.0, 6.0, 7.0, 8.0];
/// let mut c = [f32::NAN; 4];
/// reference::gemm(
///     1.0,
///     MatRef::from_slice(&a, 2, 2)?,
///     MatRef::from_slice(&b, 2, 2)?,
///     0.0,
///     MatMut::from_slice(&mut c, 2, 2)?,
/// )?;
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `b` when `b.rows() != a.cols()`, or `c` when `c` is not
/// `a.rows() × b.cols()`.
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
) -> Result<(), Error> {
    let (m, k, n) = gemm_dims(a, b, c.as_ref())?;

    for i in 0..m {
        for j in 0..n {
            let mut dot = 0.0f64;
            let products = if alpha == 0.0 { 0 } else { k };
            for p in 0..products {
                let a_ip = a.get(i, p).expect("index inside a");
                let b_pj = b.get(p, j).expect("index inside b");
                dot += f64::from(a_ip) * f64::from(b_pj);
            }

            let mut value = f64::from(alpha) * dot;
            if beta != 0.0 {
                let c_ij = c.get(i, j).expect("index inside c");
                value += f64::from(beta) * f64::from(c_ij);
            }
            *c.get_mut(i, j).expect("index inside c") = value as f32;
        }
    }
    Ok(())
}
