//! A buffer with one strided view laid over it. The integration tests and the fuzz targets
//! both include this file (the fuzz targets by `#[path]`), so it depends on densegrad alone.

// Each includer uses only some of these items.
#![allow(dead_code)]

use densegrad::{Error, MatMut, MatRef};

/// A buffer and the `rows × cols` view laid over it: element (i, j) is
/// `data[offset + i·row_stride + j·col_stride]`.
#[derive(Clone, Debug)]
pub struct Strided {
    pub data: Vec<f32>,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Strided {
    /// Returns the view, or the constructor's error when it does not fit in `data`.
    pub fn try_view(&self) -> Result<MatRef<'_>, Error> {
        MatRef::from_strided(
            &self.data,
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }

    /// Returns the mutable view, or the constructor's error when it does not fit in `data`
    /// or two of its elements share an address.
    pub fn try_view_mut(&mut self) -> Result<MatMut<'_>, Error> {
        MatMut::from_strided(
            &mut self.data,
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }

    /// Returns the view of a layout that a test built to be valid, and panics otherwise.
    pub fn view(&self) -> MatRef<'_> {
        self.try_view()
            .expect("test layouts stay inside their slice")
    }

    /// Returns the mutable view of a layout that a test built to be valid, and panics
    /// otherwise.
    pub fn view_mut(&mut self) -> MatMut<'_> {
        self.try_view_mut()
            .expect("test layouts stay inside their slice")
    }

    /// Returns the index in `data` of the view's element (i, j), which must lie inside
    /// `data`.
    pub fn index(&self, i: usize, j: usize) -> usize {
        let index =
            self.offset as isize + i as isize * self.row_stride + j as isize * self.col_stride;
        usize::try_from(index)
            .unwrap_or_else(|_| panic!("element ({i}, {j}) is at negative index {index}"))
    }

    /// Returns, for each element of `data`, whether the view addresses it.
    pub fn in_view(&self) -> Vec<bool> {
        let mut inside = vec![false; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                inside[self.index(i, j)] = true;
            }
        }
        inside
    }
}
