//! Strided matrix views over `f32` slices, and an owned row-major [`Matrix`].
//!
//! A view is a pointer to element (0, 0), a shape and two signed strides in elements, so
//! element (i, j) lives at `ptr + i·row_stride + j·col_stride`. A transpose swaps the shape and
//! the strides and copies nothing. Constructors prove that every addressed element lies inside
//! the slice, so safe code built on views can never read or write out of bounds, and kernels
//! may use unchecked pointer arithmetic inside a view's shape.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Error, Shape};

/// Operand name used by the view constructors in their errors.
const VIEW: &str = "view";

/// Checks that a `rows × cols` view at `offset` with the given strides addresses only indices
/// in `0..len`, and that `rows · cols` fits `usize`.
///
/// Every address is `offset + i·row_stride + j·col_stride`, a sum whose extreme values are
/// reached at the corners, so checking the two extreme corners checks every element. The
/// arithmetic runs in `i128` with checked operations, so it cannot wrap.
fn check_layout(
    operand: &'static str,
    len: usize,
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
) -> Result<(), Error> {
    let shape = Shape::new(rows, cols);
    let overflow = || Error::Overflow { operand, shape };

    rows.checked_mul(cols).ok_or_else(overflow)?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }

    let row_span = (rows as i128 - 1)
        .checked_mul(row_stride as i128)
        .ok_or_else(overflow)?;
    let col_span = (cols as i128 - 1)
        .checked_mul(col_stride as i128)
        .ok_or_else(overflow)?;
    let lowest = offset as i128 + row_span.min(0) + col_span.min(0);
    let highest = offset as i128 + row_span.max(0) + col_span.max(0);

    let out_of_bounds = |index| Error::OutOfBounds {
        operand,
        shape,
        offset,
        row_stride,
        col_stride,
        index,
        len,
    };
    if lowest < 0 {
        return Err(out_of_bounds(lowest));
    }
    if highest >= len as i128 {
        return Err(out_of_bounds(highest));
    }
    Ok(())
}

/// Checks that no two elements of a `rows × cols` view share an address.
///
/// Elements (i, j) and (i + di, j + dj) share one when `di·row_stride + dj·col_stride = 0`.
/// The signs of the strides do not matter, since `di` and `dj` range over both signs.
/// With steps `r` and `c` (the strides' sizes), both non-zero and `g = gcd(r, c)`, the
/// smallest such pair is `|di| = c/g` and `|dj| = r/g`, so the addresses are distinct
/// exactly when `c/g ≥ rows` or `r/g ≥ cols`. A zero step repeats one address along an
/// axis longer than one.
fn check_no_overlap(
    operand: &'static str,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
) -> Result<(), Error> {
    let overlap = Error::OverlappingOutput {
        operand,
        shape: Shape::new(rows, cols),
        row_stride,
        col_stride,
    };

    // An empty view has no elements, so none can share an address.
    let (row_step, col_step) = (row_stride.unsigned_abs(), col_stride.unsigned_abs());
    let distinct = rows == 0
        || cols == 0
        || match (rows > 1, cols > 1) {
            (false, false) => true,
            (true, false) => row_step != 0,
            (false, true) => col_step != 0,
            (true, true) if row_step == 0 || col_step == 0 => false,
            (true, true) => {
                let g = gcd(row_step, col_step);
                col_step / g >= rows || row_step / g >= cols
            }
        };
    if distinct { Ok(()) } else { Err(overlap) }
}

/// Returns the greatest common divisor of two non-zero numbers.
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Address of element (0, 0): the slice start plus `offset` for a non-empty view, the slice
/// start for an empty one, which is never dereferenced.
fn origin(data: *const f32, offset: usize, rows: usize, cols: usize) -> NonNull<f32> {
    let base = if rows == 0 || cols == 0 {
        data
    } else {
        // SAFETY: `check_layout` proved that element (0, 0), at `offset`, is inside the slice.
        unsafe { data.add(offset) }
    };
    // SAFETY: slice pointers are never null, and an in-bounds offset keeps it non-null.
    unsafe { NonNull::new_unchecked(base.cast_mut()) }
}

/// The shape and stride getters and the transpose that [`MatRef`] and [`MatMut`] share,
/// written once.
macro_rules! view_accessors {
    () => {
        /// Number of rows.
        pub fn rows(&self) -> usize {
            self.rows
        }

        /// Number of columns.
        pub fn cols(&self) -> usize {
            self.cols
        }

        /// The shape, `rows × cols`.
        pub fn shape(&self) -> Shape {
            Shape::new(self.rows, self.cols)
        }

        /// Distance in elements from one row to the next.
        pub fn row_stride(&self) -> isize {
            self.row_stride
        }

        /// Distance in elements from one column to the next.
        pub fn col_stride(&self) -> isize {
            self.col_stride
        }

        /// Returns `true` when the view has no elements.
        pub fn is_empty(&self) -> bool {
            self.rows == 0 || self.cols == 0
        }

        /// Returns the transposed view, `cols × rows`, without copying.
        #[must_use]
        pub fn t(self) -> Self {
            Self {
                rows: self.cols,
                cols: self.rows,
                row_stride: self.col_stride,
                col_stride: self.row_stride,
                ..self
            }
        }
    };
}

/// A read-only `rows × cols` view of `f32` elements with signed strides.
///
/// Element (i, j) is `data[offset + i·row_stride + j·col_stride]` of the slice the view was
/// made from. Strides may be zero (broadcast) or negative (reversed). The view is `Copy`, like
/// the shared slice it borrows.
///
/// ```
/// use densegrad::MatRef;
///
/// let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let a = MatRef::from_slice(&data, 2, 3)?;
/// assert_eq!(a.get(1, 0), Some(4.0));
///
/// let at = a.t();
/// assert_eq!((at.rows(), at.cols()), (3, 2));
/// assert_eq!(at.get(0, 1), Some(4.0));
/// # Ok::<(), densegrad::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    ptr: NonNull<f32>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    _borrow: PhantomData<&'a [f32]>,
}

// SAFETY: a `MatRef` is a shared borrow of `f32` values, like `&[f32]`, which is Send and Sync.
unsafe impl Send for MatRef<'_> {}
// SAFETY: as above; no method writes through the pointer.
unsafe impl Sync for MatRef<'_> {}

impl<'a> MatRef<'a> {
    /// Creates a row-major view of a contiguous `rows × cols` slice.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when `data.len() != rows · cols`, and [`Error::Overflow`]
    /// when `rows · cols` overflows `usize`.
    pub fn from_slice(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, Error> {
        let len = checked_len(rows, cols)?;
        Error::check_len(VIEW, len, data.len())?;
        Self::from_strided(data, 0, rows, cols, cols as isize, 1)
    }

    /// Creates a view whose element (i, j) is `data[offset + i·row_stride + j·col_stride]`.
    ///
    /// Any strides are accepted, zero and negative included, as long as every element of the
    /// `rows × cols` view lies inside `data`. An empty view (`rows` or `cols` zero) is always
    /// valid.
    ///
    /// ```
    /// use densegrad::MatRef;
    ///
    /// // The rows of a 2 × 3 matrix in reverse order: start at row 1 and step back.
    /// let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let reversed = MatRef::from_strided(&data, 3, 2, 3, -3, 1)?;
    /// assert_eq!(reversed.get(0, 0), Some(4.0));
    /// assert_eq!(reversed.get(1, 2), Some(3.0));
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when an element falls outside `data`, and [`Error::Overflow`]
    /// when the shape or index arithmetic overflows.
    pub fn from_strided(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Result<Self, Error> {
        check_layout(VIEW, data.len(), offset, rows, cols, row_stride, col_stride)?;
        Ok(Self {
            ptr: origin(data.as_ptr(), offset, rows, cols),
            rows,
            cols,
            row_stride,
            col_stride,
            _borrow: PhantomData,
        })
    }

    view_accessors!();

    /// Returns element (i, j), or `None` when the index is outside the shape.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        if i < self.rows && j < self.cols {
            // SAFETY: the index is inside the shape, which the constructor proved in bounds.
            Some(unsafe { *self.ptr_at(i, j) })
        } else {
            None
        }
    }

    /// Returns row `i` as a contiguous slice, or `None` when `i` is out of range or the
    /// columns are not contiguous (`col_stride != 1` with more than one column).
    pub fn row_slice(&self, i: usize) -> Option<&'a [f32]> {
        if i >= self.rows || (self.col_stride != 1 && self.cols > 1) {
            return None;
        }
        if self.cols == 0 {
            return Some(&[]);
        }
        // SAFETY: the row's `cols` elements are adjacent (stride 1) and inside the borrowed
        // slice, which the constructor proved; the borrow lives for 'a.
        Some(unsafe { std::slice::from_raw_parts(self.ptr_at(i, 0), self.cols) })
    }

    /// Returns all elements in row-major order as one slice, or `None` when they are not
    /// adjacent in that order in memory. They are when the columns are adjacent
    /// (`col_stride == 1`, or one column) and the rows `cols` elements apart
    /// (`row_stride == cols`, or one row). So a transposed, padded, reversed or broadcast
    /// view with more than one row and column gives `None`. An empty view gives an empty
    /// slice.
    ///
    /// ```
    /// use densegrad::MatRef;
    ///
    /// let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let a = MatRef::from_slice(&data, 2, 3)?;
    /// assert_eq!(a.as_slice(), Some(&data[..]));
    /// assert_eq!(a.t().as_slice(), None);
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    pub fn as_slice(&self) -> Option<&'a [f32]> {
        if self.rows == 0 || self.cols == 0 {
            return Some(&[]);
        }
        if !is_row_major(self.rows, self.cols, self.row_stride, self.col_stride) {
            return None;
        }
        // SAFETY: the `rows · cols` elements are adjacent in row-major order and inside the
        // borrowed slice, which the constructor proved; the borrow lives for 'a.
        Some(unsafe { std::slice::from_raw_parts(self.ptr_at(0, 0), self.rows * self.cols) })
    }

    /// Returns the `rows × cols` sub-view that starts at (`row`, `col`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `submatrix` when the sub-view does not fit inside
    /// this view.
    pub fn submatrix(
        self,
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self, Error> {
        check_sub(self.shape(), row, col, rows, cols)?;
        let ptr = if rows == 0 || cols == 0 {
            self.ptr
        } else {
            // SAFETY: (row, col) lies inside the shape (checked above), so it is in bounds.
            unsafe { NonNull::new_unchecked(self.ptr_at(row, col).cast_mut()) }
        };
        Ok(Self {
            ptr,
            rows,
            cols,
            ..self
        })
    }

    /// Returns an iterator over the rows, each a `1 × cols` view.
    pub fn rows_iter(self) -> RowsIter<'a> {
        RowsIter {
            mat: self,
            front: 0,
            back: self.rows,
        }
    }

    /// Copies the view into an owned row-major [`Matrix`].
    pub fn to_matrix(&self) -> Matrix {
        let mut data = Vec::with_capacity(self.rows * self.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                // SAFETY: (i, j) is inside the shape.
                data.push(unsafe { *self.ptr_at(i, j) });
            }
        }
        Matrix {
            data,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Creates a view from a pointer to element (0, 0), a shape and strides, for adapters
    /// of other array types.
    ///
    /// # Safety
    ///
    /// `ptr` is non-null, and for every `i < rows`, `j < cols` the element at
    /// `ptr + i·row_stride + j·col_stride` lies in one allocation, is valid for reads and is
    /// not written for `'a`. Every offset `i·row_stride + j·col_stride` fits `isize`.
    #[cfg(feature = "ndarray")]
    pub(crate) unsafe fn from_raw_parts(
        ptr: *const f32,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Self {
        Self {
            // SAFETY: the caller passes a non-null pointer.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut()) },
            rows,
            cols,
            row_stride,
            col_stride,
            _borrow: PhantomData,
        }
    }

    /// Pointer to element (0, 0). It is dangling-but-aligned for an empty view.
    #[allow(
        dead_code,
        reason = "the GEMM kernels, built on another branch, take raw pointers"
    )]
    pub(crate) fn as_ptr(&self) -> *const f32 {
        self.ptr.as_ptr()
    }

    /// Pointer to element (i, j).
    ///
    /// # Safety
    ///
    /// `i < rows` and `j < cols`. The constructor proved every such element in bounds, and
    /// `|i·row_stride|`, `|j·col_stride|` are at most the slice length, so no arithmetic wraps.
    #[inline(always)]
    pub(crate) unsafe fn ptr_at(&self, i: usize, j: usize) -> *const f32 {
        let delta = i as isize * self.row_stride + j as isize * self.col_stride;
        // SAFETY: the caller keeps (i, j) inside the shape; see the function's contract.
        unsafe { self.ptr.as_ptr().offset(delta) }
    }
}

impl fmt::Debug for MatRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MatRef {} (strides {}, {}) ",
            self.shape(),
            self.row_stride,
            self.col_stride
        )?;
        f.debug_list()
            .entries(self.rows_iter().map(RowDebug))
            .finish()
    }
}

/// Prints one row of a view as a list.
struct RowDebug<'a>(MatRef<'a>);

impl fmt::Debug for RowDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries((0..self.0.cols).filter_map(|j| self.0.get(0, j)))
            .finish()
    }
}

/// Iterator over the rows of a [`MatRef`], each a `1 × cols` view. See [`MatRef::rows_iter`].
#[derive(Clone, Debug)]
pub struct RowsIter<'a> {
    mat: MatRef<'a>,
    front: usize,
    back: usize,
}

impl<'a> RowsIter<'a> {
    fn row(&self, i: usize) -> MatRef<'a> {
        self.mat
            .submatrix(i, 0, 1, self.mat.cols)
            .expect("row index below the row count")
    }
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = MatRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        let row = self.row(self.front);
        self.front += 1;
        Some(row)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.back - self.front;
        (remaining, Some(remaining))
    }
}

impl DoubleEndedIterator for RowsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(self.row(self.back))
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

/// A mutable `rows × cols` view of `f32` elements with signed strides.
///
/// The same addressing as [`MatRef`], but no two elements may share an address, so writing
/// one element never changes another. Zero strides are therefore rejected on any axis longer
/// than one.
///
/// ```
/// use densegrad::MatMut;
///
/// let mut data = [0.0; 6];
/// let mut c = MatMut::from_slice(&mut data, 2, 3)?;
/// c.set(1, 2, 7.0)?;
/// assert_eq!(c.get(1, 2), Some(7.0));
/// assert_eq!(data[5], 7.0);
/// # Ok::<(), densegrad::Error>(())
/// ```
pub struct MatMut<'a> {
    ptr: NonNull<f32>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `MatMut` is a unique borrow of `f32` values, like `&mut [f32]`, which is Send.
unsafe impl Send for MatMut<'_> {}
// SAFETY: shared access (`&MatMut`) only reads, like `&&mut [f32]`, which is Sync.
unsafe impl Sync for MatMut<'_> {}

impl<'a> MatMut<'a> {
    /// Creates a row-major mutable view of a contiguous `rows × cols` slice.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when `data.len() != rows · cols`, and [`Error::Overflow`]
    /// when `rows · cols` overflows `usize`.
    pub fn from_slice(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, Error> {
        let len = checked_len(rows, cols)?;
        Error::check_len(VIEW, len, data.len())?;
        Self::from_strided(data, 0, rows, cols, cols as isize, 1)
    }

    /// Creates a mutable view whose element (i, j) is
    /// `data[offset + i·row_stride + j·col_stride]`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when an element falls outside `data`, [`Error::Overflow`] when
    /// the shape or index arithmetic overflows, and [`Error::OverlappingOutput`] when two
    /// elements share an address. That happens with a zero stride on an axis longer than
    /// one, or with strides whose multiples meet inside the view. For example, strides 2
    /// and 1 put elements (0, 2) and (1, 0) of a 2 × 3 view at one address. Interleaved
    /// strides with distinct addresses, such as 3 and 2 on a 2 × 2 view, are accepted.
    ///
    /// ```
    /// use densegrad::{Error, MatMut};
    ///
    /// // Every other element of the first two rows of a 3 × 4 row-major buffer.
    /// let mut data = [0.0f32; 12];
    /// let mut view = MatMut::from_strided(&mut data, 0, 2, 2, 4, 2)?;
    /// view.fill(1.0);
    /// assert_eq!(data[..8], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    ///
    /// // Rows two apart with three columns would write elements (0, 2) and (1, 0) at once.
    /// let err = MatMut::from_strided(&mut data, 0, 2, 3, 2, 1).unwrap_err();
    /// assert!(matches!(err, Error::OverlappingOutput { .. }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_strided(
        data: &'a mut [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Result<Self, Error> {
        check_layout(VIEW, data.len(), offset, rows, cols, row_stride, col_stride)?;
        check_no_overlap(VIEW, rows, cols, row_stride, col_stride)?;
        Ok(Self {
            ptr: origin(data.as_mut_ptr(), offset, rows, cols),
            rows,
            cols,
            row_stride,
            col_stride,
            _borrow: PhantomData,
        })
    }

    view_accessors!();

    /// Returns a read-only view of the same elements.
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            ptr: self.ptr,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            _borrow: PhantomData,
        }
    }

    /// Reborrows the view mutably for a shorter lifetime, so it can be passed to a function
    /// and used again afterwards.
    pub fn rb_mut(&mut self) -> MatMut<'_> {
        MatMut {
            ptr: self.ptr,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            _borrow: PhantomData,
        }
    }

    /// Returns element (i, j), or `None` when the index is outside the shape.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        self.as_ref().get(i, j)
    }

    /// Returns a mutable reference to element (i, j), or `None` when the index is outside the
    /// shape.
    pub fn get_mut(&mut self, i: usize, j: usize) -> Option<&mut f32> {
        if i < self.rows && j < self.cols {
            // SAFETY: the index is inside the shape, so in bounds, and `&mut self` makes the
            // reference unique for its lifetime.
            Some(unsafe { &mut *self.ptr_at_mut(i, j) })
        } else {
            None
        }
    }

    /// Sets element (i, j) to `value`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the index is outside the shape.
    pub fn set(&mut self, i: usize, j: usize, value: f32) -> Result<(), Error> {
        let shape = self.shape();
        let element = self.get_mut(i, j).ok_or_else(|| Error::InvalidArgument {
            operand: "index",
            reason: format!("({i}, {j}) is outside the {shape} view"),
        })?;
        *element = value;
        Ok(())
    }

    /// Returns row `i` as a contiguous mutable slice, or `None` when `i` is out of range or
    /// the columns are not contiguous (`col_stride != 1` with more than one column).
    pub fn row_slice_mut(&mut self, i: usize) -> Option<&mut [f32]> {
        if i >= self.rows || (self.col_stride != 1 && self.cols > 1) {
            return None;
        }
        if self.cols == 0 {
            return Some(&mut []);
        }
        // SAFETY: the row's elements are adjacent, in bounds and not aliased by any other
        // live reference, because `&mut self` is unique.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr_at_mut(i, 0), self.cols) })
    }

    /// Returns all elements in row-major order as one mutable slice, or `None` when they
    /// are not adjacent in that order in memory: the condition of [`MatRef::as_slice`].
    /// The slice borrows this view, so bind a view returned by a method to a variable
    /// first.
    ///
    /// ```
    /// use densegrad::MatMut;
    ///
    /// let mut data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let mut a = MatMut::from_slice(&mut data, 2, 3)?;
    /// a.as_mut_slice().unwrap()[4] = 0.5;
    /// assert!(a.rb_mut().t().as_mut_slice().is_none());
    /// assert_eq!(data[4], 0.5);
    ///
    /// // Two rows of 2 elements, 3 apart: the third element of each row is padding.
    /// let mut padded = MatMut::from_strided(&mut data, 0, 2, 2, 3, 1)?;
    /// assert!(padded.as_mut_slice().is_none());
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    pub fn as_mut_slice(&mut self) -> Option<&mut [f32]> {
        self.rb_mut().into_mut_slice()
    }

    /// Turns the view into one slice of its elements in row-major order, borrowed for the
    /// whole lifetime of the data, or returns `None` under the condition of
    /// [`MatMut::as_mut_slice`]. It consumes the view, so it also works on a view that a
    /// method returns, such as
    /// [`Matrix::as_mut`] or [`layer::Dense::weights_mut`](crate::layer::Dense::weights_mut).
    ///
    /// ```
    /// use densegrad::Matrix;
    ///
    /// let mut m = Matrix::zeros(2, 3);
    /// let row_major = m.as_mut().into_mut_slice().unwrap();
    /// row_major[5] = 1.0;
    /// assert_eq!(m.get(1, 2), Some(1.0));
    /// assert!(m.as_mut().t().into_mut_slice().is_none());
    /// ```
    pub fn into_mut_slice(self) -> Option<&'a mut [f32]> {
        if self.rows == 0 || self.cols == 0 {
            return Some(&mut []);
        }
        if !is_row_major(self.rows, self.cols, self.row_stride, self.col_stride) {
            return None;
        }
        // SAFETY: `ptr` is element (0, 0), and the `rows · cols` elements from it are
        // adjacent in row-major order and in bounds. The view held the only live
        // reference to them for `'a`, and it is consumed here, so the slice is the only one.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.rows * self.cols) })
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.for_each_mut(|_, _, element| *element = value);
    }

    /// Calls `f` with the row, the column and a mutable reference to each element, row by
    /// row, whatever the strides. For a view with contiguous rows,
    /// [`MatMut::as_mut_slice`] gives the same elements as one slice.
    ///
    /// ```
    /// use densegrad::Matrix;
    ///
    /// // Clamp a transposed view of the upper-left 2 × 2 block into [-1, 1].
    /// let mut m = Matrix::from_vec(vec![3.0, -0.5, 9.0, -2.0, 0.25, 7.0], 2, 3)?;
    /// let mut block = m.as_mut().submatrix_mut(0, 0, 2, 2)?.t();
    /// block.for_each_mut(|_, _, x| *x = x.clamp(-1.0, 1.0));
    /// assert_eq!(m.as_slice(), &[1.0, -0.5, 9.0, -1.0, 0.25, 7.0]);
    ///
    /// // The indices are those of the view: (i, j) of the transpose is (j, i) of `m`.
    /// let mut transposed = m.as_mut().t();
    /// transposed.for_each_mut(|i, j, x| *x = (10 * i + j) as f32);
    /// assert_eq!(m.get(1, 2), Some(21.0));
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    pub fn for_each_mut(&mut self, mut f: impl FnMut(usize, usize, &mut f32)) {
        for i in 0..self.rows {
            for j in 0..self.cols {
                // SAFETY: (i, j) is inside the shape, and `&mut self` borrows the view
                // uniquely, so this is the only reference to the element while `f` runs.
                f(i, j, unsafe { &mut *self.ptr_at_mut(i, j) });
            }
        }
    }

    /// Copies `src` element by element into this view.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `src` when the shapes differ.
    pub fn copy_from(&mut self, src: MatRef<'_>) -> Result<(), Error> {
        Error::check_shape("src", self.shape(), src.shape())?;
        for i in 0..self.rows {
            for j in 0..self.cols {
                // SAFETY: (i, j) is inside both shapes, which are equal.
                unsafe { *self.ptr_at_mut(i, j) = *src.ptr_at(i, j) };
            }
        }
        Ok(())
    }

    /// Returns the mutable `rows × cols` sub-view that starts at (`row`, `col`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `submatrix` when the sub-view does not fit inside
    /// this view.
    pub fn submatrix_mut(
        mut self,
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self, Error> {
        check_sub(self.shape(), row, col, rows, cols)?;
        let ptr = if rows == 0 || cols == 0 {
            self.ptr
        } else {
            // SAFETY: (row, col) lies inside the shape (checked above), so it is in bounds.
            unsafe { NonNull::new_unchecked(self.ptr_at_mut(row, col)) }
        };
        Ok(Self {
            ptr,
            rows,
            cols,
            ..self
        })
    }

    /// Splits the view into rows `0..mid` and `mid..rows`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `mid > rows`.
    pub fn split_rows_at(mut self, mid: usize) -> Result<(Self, Self), Error> {
        if mid > self.rows {
            return Err(Error::InvalidArgument {
                operand: "mid",
                reason: format!(
                    "split point {mid} is invalid for a view of {} rows: it must be at most {}",
                    self.rows, self.rows
                ),
            });
        }
        let bottom_ptr = if mid == self.rows || self.cols == 0 {
            self.ptr
        } else {
            // SAFETY: row `mid` exists (mid < rows) and the view has a column.
            unsafe { NonNull::new_unchecked(self.ptr_at_mut(mid, 0)) }
        };
        let top = Self {
            rows: mid,
            ..self.shallow_copy()
        };
        let bottom = Self {
            ptr: bottom_ptr,
            rows: self.rows - mid,
            ..self
        };
        // The two halves address disjoint rows of a view without overlap, so they may both
        // be written.
        Ok((top, bottom))
    }

    /// Copies the fields; callers make sure the copies address disjoint elements.
    fn shallow_copy(&self) -> Self {
        Self {
            ptr: self.ptr,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            _borrow: PhantomData,
        }
    }

    /// Creates a mutable view from a pointer to element (0, 0), a shape and strides, for
    /// adapters of other array types.
    ///
    /// # Safety
    ///
    /// As [`MatRef::from_raw_parts`], and no other reference reads or writes the elements
    /// for `'a`.
    ///
    /// # Errors
    ///
    /// [`Error::OverlappingOutput`] naming `operand` when two elements share an address.
    #[cfg(feature = "ndarray")]
    pub(crate) unsafe fn from_raw_parts_mut(
        operand: &'static str,
        ptr: *mut f32,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Result<Self, Error> {
        check_no_overlap(operand, rows, cols, row_stride, col_stride)?;
        Ok(Self {
            // SAFETY: the caller passes a non-null pointer.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            rows,
            cols,
            row_stride,
            col_stride,
            _borrow: PhantomData,
        })
    }

    /// Pointer to element (0, 0). It is dangling-but-aligned for an empty view.
    #[allow(
        dead_code,
        reason = "the GEMM kernels, built on another branch, take raw pointers"
    )]
    pub(crate) fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr.as_ptr()
    }

    /// Mutable pointer to element (i, j).
    ///
    /// # Safety
    ///
    /// `i < rows` and `j < cols`; see [`MatRef::ptr_at`].
    #[inline(always)]
    pub(crate) unsafe fn ptr_at_mut(&mut self, i: usize, j: usize) -> *mut f32 {
        let delta = i as isize * self.row_stride + j as isize * self.col_stride;
        // SAFETY: the caller keeps (i, j) inside the shape; see the function's contract.
        unsafe { self.ptr.as_ptr().offset(delta) }
    }
}

impl fmt::Debug for MatMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatMut of ")?;
        self.as_ref().fmt(f)
    }
}

/// Checks the shapes of `C ← A·B`: `a` is `m × k`, `b` must be `k × n` and `c` `m × n`.
/// Returns `(m, k, n)`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming `b` or `c`; `a` fixes `m` and `k`, so it is never blamed.
pub(crate) fn gemm_dims(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: MatRef<'_>,
) -> Result<(usize, usize, usize), Error> {
    let (m, k) = (a.rows(), a.cols());
    // When B's rows do not match A, C's width is the better guess for the B that fits: a
    // weight matrix passed without `.t()` then gets the transposed shape as its fix.
    if b.rows() != k {
        Error::check_shape("b", Shape::new(k, c.cols()), b.shape())?;
    }
    let n = b.cols();
    Error::check_shape("c", Shape::new(m, n), c.shape())?;
    Ok((m, k, n))
}

/// Checks that a `rows × cols` block at (`row`, `col`) fits inside `shape`.
fn check_sub(shape: Shape, row: usize, col: usize, rows: usize, cols: usize) -> Result<(), Error> {
    let fits = row.checked_add(rows).is_some_and(|end| end <= shape.rows)
        && col.checked_add(cols).is_some_and(|end| end <= shape.cols);
    if fits {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            operand: "submatrix",
            reason: format!(
                "a {} block at ({row}, {col}) does not fit inside the {shape} view",
                Shape::new(rows, cols)
            ),
        })
    }
}

/// Returns `rows · cols`, or [`Error::Overflow`].
fn checked_len(rows: usize, cols: usize) -> Result<usize, Error> {
    rows.checked_mul(cols).ok_or(Error::Overflow {
        operand: VIEW,
        shape: Shape::new(rows, cols),
    })
}

/// An owned, row-major, contiguous `rows × cols` matrix.
///
/// ```
/// use densegrad::Matrix;
///
/// let mut m = Matrix::zeros(2, 3);
/// m.as_mut().set(0, 1, 5.0)?;
/// assert_eq!(m.as_slice(), &[0.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
/// assert_eq!(m.as_ref().t().get(1, 0), Some(5.0));
/// # Ok::<(), densegrad::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Matrix {
    /// Creates a `rows × cols` matrix of zeros.
    ///
    /// # Panics
    ///
    /// When `rows · cols` overflows `usize` or the allocation fails, as `vec!` does.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        let len = rows
            .checked_mul(cols)
            .unwrap_or_else(|| panic!("a {} matrix overflows usize", Shape::new(rows, cols)));
        Self {
            data: vec![0.0; len],
            rows,
            cols,
        }
    }

    /// Creates a `rows × cols` matrix of zeros, returning an error where [`Matrix::zeros`]
    /// would panic or abort; `operand` names the matrix in the error.
    ///
    /// # Errors
    ///
    /// [`Error::Overflow`] when `rows · cols` elements overflow `usize` or `isize` bytes, and
    /// [`Error::AllocationFailed`] when the allocator cannot provide them.
    pub fn try_zeros(operand: &'static str, rows: usize, cols: usize) -> Result<Self, Error> {
        let shape = Shape::new(rows, cols);
        let len = rows
            .checked_mul(cols)
            .filter(|len| {
                len.checked_mul(size_of::<f32>())
                    .is_some_and(|b| b <= isize::MAX as usize)
            })
            .ok_or(Error::Overflow { operand, shape })?;

        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| Error::AllocationFailed {
                operand,
                shape,
                bytes: len as u128 * size_of::<f32>() as u128,
            })?;
        data.resize(len, 0.0);
        Ok(Self { data, rows, cols })
    }

    /// Creates a matrix whose element (i, j) is `f(i, j)`.
    ///
    /// # Panics
    ///
    /// When `rows · cols` overflows `usize` or the allocation fails.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f32) -> Self {
        let mut m = Self::zeros(rows, cols);
        for i in 0..rows {
            for j in 0..cols {
                m.data[i * cols + j] = f(i, j);
            }
        }
        m
    }

    /// Wraps a row-major vector of `rows · cols` elements.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when `data.len() != rows · cols`, and [`Error::Overflow`]
    /// when `rows · cols` overflows `usize`.
    pub fn from_vec(data: Vec<f32>, rows: usize, cols: usize) -> Result<Self, Error> {
        let len = checked_len(rows, cols)?;
        Error::check_len("data", len, data.len())?;
        Ok(Self { data, rows, cols })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The shape, `rows × cols`.
    pub fn shape(&self) -> Shape {
        Shape::new(self.rows, self.cols)
    }

    /// Returns element (i, j), or `None` when the index is outside the shape.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        (i < self.rows && j < self.cols).then(|| self.data[i * self.cols + j])
    }

    /// Returns a read-only row-major view.
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef::from_slice(&self.data, self.rows, self.cols)
            .expect("a Matrix's length is rows · cols")
    }

    /// Returns a mutable row-major view.
    pub fn as_mut(&mut self) -> MatMut<'_> {
        MatMut::from_slice(&mut self.data, self.rows, self.cols)
            .expect("a Matrix's length is rows · cols")
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Returns the row-major element vector.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

/// Returns whether a non-empty `rows × cols` view with these strides stores its elements
/// adjacent in row-major order: unit column steps (or one column), and rows `cols` apart
/// (or one row).
fn is_row_major(rows: usize, cols: usize, row_stride: isize, col_stride: isize) -> bool {
    (cols == 1 || col_stride == 1) && (rows == 1 || row_stride == cols as isize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_empty_views_always_valid() {
        assert!(MatRef::from_strided(&[], 7, 0, 5, 100, -100).is_ok());
        assert!(MatRef::from_strided(&[], 0, 5, 0, 1, 1).is_ok());
    }

    #[test]
    fn layout_negative_strides_reach_start() {
        let data = [0.0; 6];
        assert!(MatRef::from_strided(&data, 5, 2, 3, -3, -1).is_ok());
        assert!(MatRef::from_strided(&data, 4, 2, 3, -3, -1).is_err());
    }

    #[test]
    fn overlap_check_matches_brute_force() {
        for rows in 0..6 {
            for cols in 0..6 {
                for row_stride in -7isize..=7 {
                    for col_stride in -7isize..=7 {
                        let mut addresses: Vec<isize> = (0..rows as isize)
                            .flat_map(|i| {
                                (0..cols as isize).map(move |j| i * row_stride + j * col_stride)
                            })
                            .collect();
                        addresses.sort_unstable();
                        let distinct = addresses.windows(2).all(|pair| pair[0] != pair[1]);
                        let checked =
                            check_no_overlap("c", rows, cols, row_stride, col_stride).is_ok();
                        assert_eq!(
                            checked, distinct,
                            "{rows} × {cols} with strides ({row_stride}, {col_stride})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn overlap_condition_cases() {
        assert!(check_no_overlap("c", 2, 2, 2, 1).is_ok());
        assert!(check_no_overlap("c", 2, 2, 1, 2).is_ok());
        assert!(check_no_overlap("c", 2, 3, 2, 1).is_err());
        assert!(check_no_overlap("c", 2, 2, 3, 2).is_ok());
        assert!(check_no_overlap("c", 3, 3, 3, 2).is_ok());
        assert!(check_no_overlap("c", 3, 4, 3, 2).is_err());
        assert!(check_no_overlap("c", 2, 3, 0, 1).is_err());
        assert!(check_no_overlap("c", 1, 3, 0, 1).is_ok());
        assert!(check_no_overlap("c", 3, 1, 1, 0).is_ok());
        assert!(check_no_overlap("c", 3, 2, -2, -1).is_ok());
        assert!(check_no_overlap("c", 2, 0, 0, 1).is_ok());
    }
}
