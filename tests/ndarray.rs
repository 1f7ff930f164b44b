//! Zero-copy conversions between ndarray views and `MatRef`/`MatMut`, strides included.
#![cfg(feature = "ndarray")]

use densegrad::{MatMut, MatRef};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

fn sample() -> Array2<f32> {
    Array2::from_shape_fn((5, 7), |(i, j)| (10 * i + j) as f32)
}

/// Checks that `view` shows the same elements at the same addresses as `array`.
fn assert_same_elements(view: MatRef, array: &ArrayView2<f32>) {
    assert_eq!((view.rows(), view.cols()), array.dim());
    for i in 0..view.rows() {
        for j in 0..view.cols() {
            assert_eq!(view.get(i, j), Some(array[[i, j]]), "element ({i}, {j})");
        }
    }
}

#[test]
fn array_view_to_mat_ref_strided() {
    let a = sample();
    let views = [
        a.view(),
        a.t(),
        a.slice(s![1..4, ..;2]),
        a.slice(s![..;-1, ..]),
        a.slice(s![..;-2, ..;-3]),
        a.slice(s![2..2, ..]),
    ];
    for view in views {
        let mat = MatRef::from(view);
        assert_same_elements(mat, &view);
        let strides = view.strides();
        if !mat.is_empty() {
            assert_eq!(
                (mat.row_stride(), mat.col_stride()),
                (strides[0], strides[1])
            );
        }
    }
}

#[test]
fn array_view_to_mat_ref_no_copy() {
    let a = sample();
    let mat = MatRef::from(a.view());
    assert_eq!(mat.row_slice(2).unwrap().as_ptr(), &a[[2, 0]] as *const f32);
}

#[test]
fn broadcast_view_to_mat_ref() {
    let row = ndarray::arr1(&[1.0f32, 2.0, 3.0]);
    let broadcast = row.broadcast((4, 3)).unwrap();
    let mat = MatRef::from(broadcast);
    assert_eq!(mat.row_stride(), 0);
    assert_same_elements(mat, &broadcast);
}

#[test]
fn mat_ref_to_array_view_round_trip() {
    let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let cases = [
        MatRef::from_slice(&data, 4, 6).unwrap(),
        MatRef::from_slice(&data, 4, 6).unwrap().t(),
        MatRef::from_strided(&data, 23, 3, 4, -6, -1).unwrap(),
        MatRef::from_strided(&data, 5, 2, 3, 8, -2).unwrap(),
        MatRef::from_strided(&data, 2, 3, 4, 0, 1).unwrap(),
        MatRef::from_strided(&data, 0, 0, 4, 6, 1).unwrap(),
    ];
    for mat in cases {
        let array: ArrayView2<f32> = mat.into();
        assert_same_elements(mat, &array);
        let back = MatRef::from(array);
        if !mat.is_empty() {
            assert_eq!(
                (back.row_stride(), back.col_stride()),
                (mat.row_stride(), mat.col_stride())
            );
        }
        assert_same_elements(back, &array);
    }
}

#[test]
fn array_view_mut_writes_through() {
    let mut a = sample();
    {
        let mut mat = MatMut::try_from(a.slice_mut(s![..;-2, 1..;3])).unwrap();
        assert_eq!((mat.rows(), mat.cols()), (3, 2));
        mat.set(0, 0, -1.0).unwrap();
        mat.set(2, 1, -2.0).unwrap();
    }
    assert_eq!(a[[4, 1]], -1.0);
    assert_eq!(a[[0, 4]], -2.0);
    assert_eq!(a.iter().filter(|&&v| v < 0.0).count(), 2);
}

#[test]
fn mat_mut_to_array_view_mut_writes_through() {
    let mut data = [0.0f32; 12];
    {
        let mat = MatMut::from_strided(&mut data, 11, 3, 4, -4, -1).unwrap();
        let mut array: ArrayViewMut2<f32> = mat.into();
        assert_eq!(array.dim(), (3, 4));
        array[[0, 0]] = 5.0;
        array[[2, 3]] = 7.0;
        array[[1, 2]] = 6.0;
    }
    assert_eq!(data[11], 5.0);
    assert_eq!(data[0], 7.0);
    assert_eq!(data[5], 6.0);
}
