//! Zero-copy conversions between `ndarray`'s 2-D `f32` views and [`MatRef`]/[`MatMut`], with
//! the strides carried over, negative and zero ones included (feature `ndarray`).
//!
//! ```
//! use densegrad::{MatMut, MatRef};
//! use ndarray::{s, Array2, ArrayView2};
//!
//! let mut a = Array2::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f32);
//!
//! // Every other column, in reverse order: a strided view, converted without a copy.
//! let view: MatRef = a.slice(s![.., ..;-2]).into();
//! assert_eq!(view.get(1, 0), Some(13.0));
//! let back: ArrayView2<f32> = view.into();
//! assert_eq!(back[[1, 1]], 11.0);
//!
//! let mut out = MatMut::try_from(a.view_mut())?;
//! out.set(2, 3, -1.0)?;
//! assert_eq!(a[[2, 3]], -1.0);
//! # Ok::<(), densegrad::Error>(())
//! ```

use ::ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder};

use crate::error::Error;
use crate::matrix::{MatMut, MatRef};

impl<'a> From<ArrayView2<'a, f32>> for MatRef<'a> {
    fn from(view: ArrayView2<'a, f32>) -> Self {
        let (rows, cols) = view.dim();
        let strides = view.strides();
        // SAFETY: an ArrayView2 has a non-null pointer, and every element at
        // `ptr + i·stride0 + j·stride1` inside its shape is readable and not written while
        // the borrow 'a lasts. Its offsets fit `isize`.
        unsafe { MatRef::from_raw_parts(view.as_ptr(), rows, cols, strides[0], strides[1]) }
    }
}

impl<'a> TryFrom<ArrayViewMut2<'a, f32>> for MatMut<'a> {
    type Error = Error;

    /// Converts a mutable ndarray view.
    ///
    /// # Errors
    ///
    /// [`Error::OverlappingOutput`] naming `view` when two elements share an address, which
    /// only an ndarray view built with `unsafe` code can do.
    fn try_from(mut view: ArrayViewMut2<'a, f32>) -> Result<Self, Error> {
        let (rows, cols) = view.dim();
        let (row_stride, col_stride) = (view.strides()[0], view.strides()[1]);
        let ptr = view.as_mut_ptr();
        // SAFETY: as for `MatRef` above, and the ArrayViewMut2 was a unique borrow for 'a,
        // which moves into the returned view.
        unsafe { MatMut::from_raw_parts_mut("view", ptr, rows, cols, row_stride, col_stride) }
    }
}

impl<'a> From<MatRef<'a>> for ArrayView2<'a, f32> {
    fn from(view: MatRef<'a>) -> Self {
        let (rows, cols) = (view.rows(), view.cols());
        let (row_stride, col_stride) = (view.row_stride(), view.col_stride());
        let lowest = lowest_offset(rows, cols, row_stride, col_stride);
        let shape = (rows, cols).strides((row_stride.unsigned_abs(), col_stride.unsigned_abs()));
        // SAFETY: the view's constructor proved every element in bounds of one slice, so the
        // element with the lowest address, `lowest` elements from (0, 0), is in bounds too;
        // ndarray wants non-negative strides from it, and the axes with negative strides are
        // turned back around below. The borrow 'a carries over.
        let mut array = unsafe {
            let base = view.as_ptr().offset(lowest);
            ArrayView2::from_shape_ptr(shape, base)
        };
        invert_negative_axes(&mut array, row_stride, col_stride);
        array
    }
}

impl<'a> From<MatMut<'a>> for ArrayViewMut2<'a, f32> {
    fn from(mut view: MatMut<'a>) -> Self {
        let (rows, cols) = (view.rows(), view.cols());
        let (row_stride, col_stride) = (view.row_stride(), view.col_stride());
        let lowest = lowest_offset(rows, cols, row_stride, col_stride);
        let shape = (rows, cols).strides((row_stride.unsigned_abs(), col_stride.unsigned_abs()));
        // SAFETY: as for `ArrayView2` above; the elements have distinct addresses (a MatMut
        // invariant) and the unique borrow 'a moves into the returned view.
        let mut array = unsafe {
            let base = view.as_mut_ptr().offset(lowest);
            ArrayViewMut2::from_shape_ptr(shape, base)
        };
        invert_negative_axes(&mut array, row_stride, col_stride);
        array
    }
}

/// Offset in elements from element (0, 0) to the element with the lowest address; 0 for an
/// empty view, whose pointer is never dereferenced.
fn lowest_offset(rows: usize, cols: usize, row_stride: isize, col_stride: isize) -> isize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    let row_part = (rows as isize - 1) * row_stride.min(0);
    let col_part = (cols as isize - 1) * col_stride.min(0);
    row_part + col_part
}

fn invert_negative_axes<S: ::ndarray::RawData>(
    array: &mut ::ndarray::ArrayBase<S, ::ndarray::Ix2>,
    row_stride: isize,
    col_stride: isize,
) {
    if row_stride < 0 {
        array.invert_axis(Axis(0));
    }
    if col_stride < 0 {
        array.invert_axis(Axis(1));
    }
}
