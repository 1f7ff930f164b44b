//! The crate's error type.

use std::fmt;

/// A matrix shape, `rows × cols`, as printed in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Shape {
    /// Creates a shape of `rows × cols`.
    pub const fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} × {}", self.rows, self.cols)
    }
}

/// Everything that a safe function of this crate can reject.
///
/// Each variant names the operand it is about (`"a"`, `"weights"`, `"delta"`, …), so a
/// message such as `weights: expected 256 × 784, got 784 × 256` points at the argument to fix.
/// The enum is non-exhaustive: later versions may add variants.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A matrix operand has the wrong shape.
    #[error("{operand}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// The argument that is wrong.
        operand: &'static str,
        /// The shape the other operands imply.
        expected: Shape,
        /// The shape that was passed.
        actual: Shape,
    },

    /// A slice or vector operand has the wrong length.
    #[error("{operand}: expected length {expected}, got {actual}")]
    LengthMismatch {
        /// The argument that is wrong.
        operand: &'static str,
        /// The length the other operands imply.
        expected: usize,
        /// The length that was passed.
        actual: usize,
    },

    /// A view addresses an element outside its slice.
    #[error(
        "{operand}: a {shape} view at offset {offset} with strides ({row_stride}, {col_stride}) \
         addresses index {index}, outside the slice of length {len}"
    )]
    OutOfBounds {
        /// The argument that is wrong.
        operand: &'static str,
        /// The requested shape.
        shape: Shape,
        /// Offset of element (0, 0) in the slice.
        offset: usize,
        /// Distance between rows, in elements.
        row_stride: isize,
        /// Distance between columns, in elements.
        col_stride: isize,
        /// The first out-of-range index found (negative when below the start of the slice).
        index: i128,
        /// Length of the slice.
        len: usize,
    },

    /// Size or index arithmetic would overflow `usize` or `isize`.
    #[error("{operand}: the size or index arithmetic of a {shape} view overflows")]
    Overflow {
        /// The argument that is wrong.
        operand: &'static str,
        /// The requested shape.
        shape: Shape,
    },

    /// An output view whose strides make two elements share one address.
    #[error(
        "{operand}: a {shape} output view with strides ({row_stride}, {col_stride}) gives two \
         elements one address"
    )]
    OverlappingOutput {
        /// The argument that is wrong.
        operand: &'static str,
        /// The requested shape.
        shape: Shape,
        /// Distance between rows, in elements.
        row_stride: isize,
        /// Distance between columns, in elements.
        col_stride: isize,
    },

    /// Memory for an operand could not be allocated.
    #[error("{operand}: failed to allocate {bytes} bytes for a {shape} matrix")]
    AllocationFailed {
        /// The operand being allocated.
        operand: &'static str,
        /// The requested shape.
        shape: Shape,
        /// The number of bytes requested.
        bytes: u128,
    },

    /// A scalar or enum argument outside the values the function accepts.
    #[error("{operand}: {reason}")]
    InvalidArgument {
        /// The argument that is wrong.
        operand: &'static str,
        /// The problem with the value, and the values accepted.
        reason: String,
    },

    /// A value in an input is not usable, for example a NaN target or a class index out of
    /// range.
    #[error("{operand}: row {row}: {reason}")]
    InvalidValue {
        /// The argument that is wrong.
        operand: &'static str,
        /// The row (sample) that contains the bad value.
        row: usize,
        /// The problem with the value.
        reason: String,
    },
}

impl Error {
    /// Returns [`Error::ShapeMismatch`] when `actual` differs from `expected`.
    pub(crate) fn check_shape(
        operand: &'static str,
        expected: Shape,
        actual: Shape,
    ) -> Result<(), Error> {
        if expected == actual {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                operand,
                expected,
                actual,
            })
        }
    }

    /// Returns [`Error::LengthMismatch`] when `actual` differs from `expected`.
    pub(crate) fn check_len(
        operand: &'static str,
        expected: usize,
        actual: usize,
    ) -> Result<(), Error> {
        if expected == actual {
            Ok(())
        } else {
            Err(Error::LengthMismatch {
                operand,
                expected,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_mismatch_message_names_operand_and_shapes() {
        let err =
            Error::check_shape("weights", Shape::new(256, 784), Shape::new(784, 256)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "weights: expected 256 × 784, got 784 × 256"
        );
    }

    #[test]
    fn length_mismatch_message_names_operand() {
        let err = Error::check_len("bias", 10, 9).unwrap_err();
        assert_eq!(err.to_string(), "bias: expected length 10, got 9");
    }
}
