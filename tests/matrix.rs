//! Matrix views: every constructor's error path and the view API.

mod common;

use common::assert_invalid_argument;
use densegrad::{Error, MatMut, MatRef, Matrix, Shape};

const DATA: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

#[test]
fn from_slice_length_mismatch() {
    let err = MatRef::from_slice(&DATA[..5], 2, 3).unwrap_err();
    assert_eq!(err.to_string(), "view: expected length 6, got 5");
    let mut data = DATA;
    let err = MatMut::from_slice(&mut data, 3, 3).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                expected: 9,
                actual: 6,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn from_slice_overflow() {
    let err = MatRef::from_slice(&DATA, usize::MAX, 2).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    let mut data = DATA;
    let err = MatMut::from_slice(&mut data, 2, usize::MAX).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
}

#[test]
fn from_strided_out_of_bounds_above() {
    // Element (1, 2) is at 1 + 3 + 2 = 6, one past the end.
    let err = MatRef::from_strided(&DATA, 1, 2, 3, 3, 1).unwrap_err();
    assert_eq!(
        err,
        Error::OutOfBounds {
            operand: "view",
            shape: Shape::new(2, 3),
            offset: 1,
            row_stride: 3,
            col_stride: 1,
            index: 6,
            len: 6,
        }
    );
    let mut data = DATA;
    let err = MatMut::from_strided(&mut data, 0, 2, 2, 4, 2).unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { index: 6, .. }), "{err}");
}

#[test]
fn from_strided_out_of_bounds_below() {
    // Stepping back one row from offset 2 reaches index −1.
    let err = MatRef::from_strided(&DATA, 2, 2, 3, -3, 1).unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { index: -1, .. }), "{err}");
    let mut data = DATA;
    let err = MatMut::from_strided(&mut data, 1, 1, 3, 1, -1).unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { index: -1, .. }), "{err}");
}

#[test]
fn from_strided_huge_strides_rejected() {
    let err = MatRef::from_strided(&DATA, 0, 2, 2, isize::MAX, isize::MIN).unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err}");
    let err = MatRef::from_strided(&DATA, usize::MAX, 1, 1, 1, 1).unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err}");
    let err = MatRef::from_strided(&DATA, 0, usize::MAX, usize::MAX, 0, 0).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
}

#[test]
fn from_strided_message_names_layout() {
    let err = MatRef::from_strided(&DATA, 1, 2, 3, 3, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "view: a 2 × 3 view at offset 1 with strides (3, 1) addresses index 6, outside the \
         slice of length 6"
    );
}

#[test]
fn overlapping_output_rejected() {
    let mut data = DATA;
    // Rows two apart with three columns each share elements.
    let err = MatMut::from_strided(&mut data, 0, 2, 3, 2, 1).unwrap_err();
    assert_eq!(
        err,
        Error::OverlappingOutput {
            operand: "view",
            shape: Shape::new(2, 3),
            row_stride: 2,
            col_stride: 1,
        }
    );
    // A zero (broadcast) stride is fine to read but not to write.
    assert!(MatRef::from_strided(&DATA, 0, 4, 3, 0, 1).is_ok());
    let err = MatMut::from_strided(&mut data, 0, 4, 3, 0, 1).unwrap_err();
    assert!(matches!(err, Error::OverlappingOutput { .. }), "{err}");
    let err = MatMut::from_strided(&mut data, 0, 3, 1, 0, 5).unwrap_err();
    assert!(matches!(err, Error::OverlappingOutput { .. }), "{err}");

    // Interleaved strides: distinct addresses (0, 2, 3, 5) are accepted. With three rows
    // and four columns, element (2, 0) meets element (0, 3) at 6.
    let mut view = MatMut::from_strided(&mut data, 0, 2, 2, 3, 2).unwrap();
    view.for_each_mut(|i, j, x| *x = (10 * i + j) as f32);
    assert_eq!(data, [0.0, 2.0, 1.0, 10.0, 5.0, 11.0]);
    let mut wide = [0.0f32; 13];
    let err = MatMut::from_strided(&mut wide, 0, 3, 4, 3, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "view: a 3 × 4 output view with strides (3, 2) gives two elements one address"
    );
}

#[test]
fn empty_views_accepted() {
    assert!(MatRef::from_slice(&[], 0, 4).is_ok());
    assert!(MatMut::from_strided(&mut [], 3, 9, 0, 0, 0).is_ok());
    let mut empty = Matrix::zeros(9, 0);
    assert_eq!(empty.as_mut().shape(), Shape::new(9, 0));
}

#[test]
fn transpose_swaps_shape_and_strides() {
    let a = MatRef::from_slice(&DATA, 2, 3).unwrap();
    let at = a.t();
    assert_eq!(at.shape(), Shape::new(3, 2));
    assert_eq!((at.row_stride(), at.col_stride()), (1, 3));
    for i in 0..2 {
        for j in 0..3 {
            assert_eq!(at.get(j, i), a.get(i, j));
        }
    }
    assert_eq!(at.t().to_matrix(), a.to_matrix());
}

#[test]
fn get_outside_shape_is_none() {
    let a = MatRef::from_slice(&DATA, 2, 3).unwrap();
    assert_eq!(a.get(1, 2), Some(6.0));
    assert_eq!(a.get(2, 0), None);
    assert_eq!(a.get(0, 3), None);
}

#[test]
fn rows_iter_both_ends() {
    let a = MatRef::from_slice(&DATA, 3, 2).unwrap();
    let rows = a.rows_iter();
    assert_eq!(rows.len(), 3);
    let firsts: Vec<f32> = a.rows_iter().map(|row| row.get(0, 0).unwrap()).collect();
    assert_eq!(firsts, [1.0, 3.0, 5.0]);
    let reversed: Vec<f32> = a
        .rows_iter()
        .rev()
        .map(|row| row.get(0, 1).unwrap())
        .collect();
    assert_eq!(reversed, [6.0, 4.0, 2.0]);
    assert!(a.rows_iter().all(|row| row.shape() == Shape::new(1, 2)));
}

#[test]
fn to_matrix_of_strided_view() {
    // Columns 2 and 0 of the 2 × 3 matrix, reversed: strides (3, −2) from offset 2.
    let a = MatRef::from_strided(&DATA, 2, 2, 2, 3, -2).unwrap();
    assert_eq!(a.to_matrix().as_slice(), &[3.0, 1.0, 6.0, 4.0]);
}

#[test]
fn row_slice_only_when_contiguous() {
    let a = MatRef::from_slice(&DATA, 2, 3).unwrap();
    assert_eq!(a.row_slice(1), Some(&DATA[3..6]));
    assert_eq!(a.row_slice(2), None);
    assert_eq!(a.t().row_slice(0), None);
    let column = MatRef::from_strided(&DATA, 0, 3, 1, 2, 7).unwrap();
    assert_eq!(column.row_slice(1), Some(&DATA[2..3]));

    let mut data = DATA;
    let mut m = MatMut::from_slice(&mut data, 3, 2).unwrap();
    m.row_slice_mut(2).unwrap().copy_from_slice(&[9.0, 8.0]);
    assert_eq!(data[4..], [9.0, 8.0]);
}

#[test]
fn as_slice_only_when_row_major() {
    let a = MatRef::from_slice(&DATA, 2, 3).unwrap();
    assert_eq!(a.as_slice(), Some(&DATA[..]));
    assert_eq!(a.t().as_slice(), None);
    assert_eq!(
        a.submatrix(1, 0, 1, 3).unwrap().as_slice(),
        Some(&DATA[3..6])
    );
    assert_eq!(a.submatrix(0, 1, 2, 2).unwrap().as_slice(), None);

    // One column with unit row steps, and one element whatever its strides.
    let column = MatRef::from_strided(&DATA, 1, 3, 1, 1, 5).unwrap();
    assert_eq!(column.as_slice(), Some(&DATA[1..4]));
    let single = MatRef::from_strided(&DATA, 4, 1, 1, -3, 7).unwrap();
    assert_eq!(single.as_slice(), Some(&DATA[4..5]));

    let padded = MatRef::from_strided(&DATA, 0, 2, 2, 3, 1).unwrap();
    assert_eq!(padded.as_slice(), None);
    let broadcast = MatRef::from_strided(&DATA, 0, 2, 3, 0, 1).unwrap();
    assert_eq!(broadcast.as_slice(), None);
    let empty = MatRef::from_slice(&[], 0, 4).unwrap();
    assert_eq!(empty.as_slice(), Some(&[][..]));
}

#[test]
fn as_mut_slice_writes_through() {
    let mut data = DATA;
    let mut m = MatMut::from_slice(&mut data, 3, 2).unwrap();
    m.as_mut_slice().unwrap()[5] = 9.0;
    assert!(m.rb_mut().t().as_mut_slice().is_none());
    assert_eq!(data[5], 9.0);
}

#[test]
fn into_mut_slice_outlives_view() {
    let mut data = DATA;
    let slice = MatMut::from_slice(&mut data, 2, 3)
        .unwrap()
        .into_mut_slice()
        .unwrap();
    slice[1] = -2.0;
    assert_eq!(data[1], -2.0);

    let mut data = DATA;
    let transposed = MatMut::from_slice(&mut data, 2, 3).unwrap().t();
    assert!(transposed.into_mut_slice().is_none());
    let padded = MatMut::from_strided(&mut data, 0, 2, 2, 3, 1).unwrap();
    assert!(padded.into_mut_slice().is_none());
    let row = MatMut::from_strided(&mut data, 3, 1, 3, 100, 1).unwrap();
    assert_eq!(row.into_mut_slice().unwrap(), &[4.0, 5.0, 6.0]);
    let empty = MatMut::from_slice(&mut [], 3, 0).unwrap();
    assert_eq!(empty.into_mut_slice().unwrap(), &[] as &[f32]);
}

#[test]
fn split_rows_at_halves_write_apart() {
    let mut data = DATA;
    let m = MatMut::from_slice(&mut data, 3, 2).unwrap();
    let (mut top, mut bottom) = m.split_rows_at(1).unwrap();
    assert_eq!((top.rows(), bottom.rows()), (1, 2));
    top.fill(0.0);
    bottom.set(1, 1, -1.0).unwrap();
    assert_eq!(data, [0.0, 0.0, 3.0, 4.0, 5.0, -1.0]);

    let m = MatMut::from_slice(&mut data, 3, 2).unwrap();
    let err = m.split_rows_at(4).unwrap_err();
    assert_invalid_argument(&err, "mid");
    assert_eq!(
        err.to_string(),
        "mid: split point 4 is invalid for a view of 3 rows: it must be at most 3"
    );
}

#[test]
fn submatrix_bounds() {
    let a = MatRef::from_slice(&DATA, 2, 3).unwrap();
    let sub = a.submatrix(0, 1, 2, 2).unwrap();
    assert_eq!(sub.to_matrix().as_slice(), &[2.0, 3.0, 5.0, 6.0]);
    let err = a.submatrix(1, 1, 2, 1).unwrap_err();
    assert_invalid_argument(&err, "submatrix");
    let err = a.submatrix(0, usize::MAX, 1, 2).unwrap_err();
    assert_invalid_argument(&err, "submatrix");

    let mut data = DATA;
    let m = MatMut::from_slice(&mut data, 2, 3).unwrap();
    let mut corner = m.submatrix_mut(1, 2, 1, 1).unwrap();
    corner.set(0, 0, 0.5).unwrap();
    assert_eq!(data[5], 0.5);
}

#[test]
fn set_and_copy_errors() {
    let mut data = DATA;
    let mut m = MatMut::from_slice(&mut data, 2, 3).unwrap();
    assert!(matches!(
        m.set(2, 0, 1.0),
        Err(Error::InvalidArgument { .. })
    ));
    let wrong = MatRef::from_slice(&DATA, 3, 2).unwrap();
    let err = m.copy_from(wrong).unwrap_err();
    assert_eq!(err.to_string(), "src: expected 2 × 3, got 3 × 2");
    m.copy_from(wrong.t()).unwrap();
    assert_eq!(data, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
}

#[test]
fn matrix_from_vec_length_checked() {
    let err = Matrix::from_vec(vec![0.0; 5], 2, 3).unwrap_err();
    assert_eq!(err.to_string(), "data: expected length 6, got 5");
    let m = Matrix::from_fn(2, 2, |i, j| (10 * i + j) as f32);
    assert_eq!(
        m.as_ref().t().to_matrix().as_slice(),
        &[0.0, 10.0, 1.0, 11.0]
    );
}

#[test]
fn for_each_mut_visits_strided_views() {
    // A 2 × 3 view with negative row stride and column stride 2 in a buffer of 12,
    // compared with the same visits through `get_mut`.
    let mut data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let mut expected = data.clone();
    let mut view = MatMut::from_strided(&mut data, 6, 2, 3, -6, 2).unwrap();
    let mut visits = Vec::new();
    view.for_each_mut(|i, j, x| {
        visits.push((i, j, *x));
        *x = -*x - 100.0;
    });

    let mut reference = MatMut::from_strided(&mut expected, 6, 2, 3, -6, 2).unwrap();
    let mut expected_visits = Vec::new();
    for i in 0..2 {
        for j in 0..3 {
            let x = reference.get_mut(i, j).unwrap();
            expected_visits.push((i, j, *x));
            *x = -*x - 100.0;
        }
    }
    assert_eq!(visits, expected_visits);
    assert_eq!(data, expected);
}

#[test]
fn for_each_mut_empty_calls_nothing() {
    let mut data = DATA;
    for (rows, cols) in [(0, 3), (2, 0)] {
        let mut view = MatMut::from_slice(&mut data[..rows * cols], rows, cols).unwrap();
        view.for_each_mut(|i, j, _| panic!("visited ({i}, {j}) of an empty view"));
    }
    assert_eq!(data, DATA);
}
