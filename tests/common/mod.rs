//! Helpers shared by the integration tests: strided layouts, value strategies and
//! tolerances.

#![allow(dead_code)]

mod strided;
mod tolerance;

pub use strided::Strided;
// Some test binaries use none of the tolerances.
#[allow(unused_imports)]
pub use tolerance::*;

use densegrad::layer::{Dense, Init, Loss, Sequential};
use densegrad::{Activation, Error, Matrix};
use proptest::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Proptest settings: `cases` cases, and no regression files, because proptest cannot
/// place them for tests outside `src/`.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Value written into the gaps of a strided buffer. A kernel that reads a gap gets NaN, and
/// one that writes a gap changes this bit pattern.
pub const GAP: f32 = f32::from_bits(0x7fc0_dead);

/// How a `rows × cols` view is laid out in its buffer.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// Row-major with `pad` unused elements after each row.
    RowMajor { pad: usize },
    /// Column-major (a transposed view) with `pad` unused elements after each column.
    ColMajor { pad: usize },
    /// Rows stored last to first: a negative row stride.
    ReversedRows { pad: usize },
    /// Columns stored last to first, every other element: column stride −2.
    ReversedGappedCols,
    /// Every row is the same row of the buffer: row stride 0. Valid for inputs only.
    BroadcastRow,
}

impl Layout {
    /// Returns `(buffer length, offset, row stride, column stride)`.
    pub fn strides(self, rows: usize, cols: usize) -> (usize, usize, isize, isize) {
        let (r, c) = (rows as isize, cols as isize);
        match self {
            Layout::RowMajor { pad } => {
                let rs = c + pad as isize;
                ((rows * (cols + pad)).max(1), 0, rs, 1)
            }
            Layout::ColMajor { pad } => {
                let cs = r + pad as isize;
                ((cols * (rows + pad)).max(1), 0, 1, cs)
            }
            Layout::ReversedRows { pad } => {
                let rs = c + pad as isize;
                let offset = (rows.saturating_sub(1)) * (cols + pad);
                ((rows * (cols + pad)).max(1), offset, -rs, 1)
            }
            Layout::ReversedGappedCols => {
                let rs = 2 * c + 1;
                let offset = 2 * cols.saturating_sub(1);
                ((rows * (2 * cols + 1)).max(1), offset, rs, -2)
            }
            Layout::BroadcastRow => (cols.max(1), 0, 0, 1),
        }
    }
}

impl Strided {
    /// Lays out `values` (row-major, `rows × cols`) in `layout`, with [`GAP`] in the gaps.
    /// For [`Layout::BroadcastRow`] every row is stored at the same place, so only the last
    /// row of `values` remains.
    pub fn new(values: &Matrix, layout: Layout) -> Self {
        let (rows, cols) = (values.rows(), values.cols());
        let (len, offset, row_stride, col_stride) = layout.strides(rows, cols);
        let mut strided = Self {
            data: vec![GAP; len],
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        };
        for i in 0..rows {
            for j in 0..cols {
                let index = strided.index(i, j);
                strided.data[index] = values.get(i, j).unwrap();
            }
        }
        strided
    }

    /// Asserts that every element outside the view still contains [`GAP`].
    pub fn assert_gaps_untouched(&self) {
        for (index, (&value, inside)) in self.data.iter().zip(self.in_view()).enumerate() {
            if !inside {
                assert_eq!(
                    value.to_bits(),
                    GAP.to_bits(),
                    "gap element {index} was written"
                );
            }
        }
    }
}

/// Layouts valid for an input view: the output layouts and, one time in 8,
/// [`Layout::BroadcastRow`].
pub fn input_layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        7 => output_layout(),
        1 => Just(Layout::BroadcastRow),
    ]
}

/// Layouts valid for an output view (no two elements share an address).
pub fn output_layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => Just(Layout::RowMajor { pad: 0 }),
        1 => (1usize..4).prop_map(|pad| Layout::RowMajor { pad }),
        1 => (0usize..3).prop_map(|pad| Layout::ColMajor { pad }),
        1 => (0usize..3).prop_map(|pad| Layout::ReversedRows { pad }),
        1 => Just(Layout::ReversedGappedCols),
    ]
}

/// Moderate values, edge values and extremes: ±1000, ±88.8 (where `e^z` leaves the `f32`
/// range), signed zeros and subnormals.
pub fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -10.0f32..10.0,
        1 => -100.0f32..100.0,
        1 => prop::sample::select(vec![
            1000.0f32, -1000.0, 88.8, -88.8, 88.72, -87.4, 0.0, -0.0, 1e-40, -1e-42,
            f32::MIN_POSITIVE, 1e-30, 20.0, -20.0,
        ]),
    ]
}

/// Generates a `rows × cols` matrix whose elements come from `element`.
pub fn matrix_of(
    rows: usize,
    cols: usize,
    element: impl Strategy<Value = f32>,
) -> impl Strategy<Value = Matrix> {
    prop::collection::vec(element, rows * cols)
        .prop_map(move |data| Matrix::from_vec(data, rows, cols).unwrap())
}

/// Shapes with 0, 1, primes and sizes around the 8-lane width.
pub fn shape() -> impl Strategy<Value = (usize, usize)> {
    let dim = prop_oneof![
        Just(0usize),
        Just(1),
        2usize..12,
        prop::sample::select(vec![7usize, 8, 9, 15, 16, 17, 31, 64, 67]),
    ];
    (dim.clone(), dim)
}

/// Asserts `|actual − expected| ≤ tolerance` for element (i, j), with a message naming both.
pub fn assert_close(what: &str, i: usize, j: usize, actual: f32, expected: f64, tolerance: f64) {
    let error = (f64::from(actual) - expected).abs();
    assert!(
        error <= tolerance || (actual.is_nan() && expected.is_nan()),
        "{what} ({i}, {j}): got {actual}, expected {expected}, error {error:e} > {tolerance:e}"
    );
}

/// Returns a `rows × cols` matrix of values drawn uniformly from [−1, 1).
pub fn random_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Matrix {
    Matrix::from_fn(rows, cols, |_, _| rng.random_range(-1.0..1.0))
}

/// Builds a network `widths[0] → widths[1] → …` with `hidden` between layers, the output
/// activation that `loss` needs, and weights that `init` draws from `rng`.
pub fn build_network(
    widths: &[usize],
    hidden: Activation,
    loss: Loss,
    init: Init,
    rng: &mut ChaCha8Rng,
) -> Sequential {
    let last = widths.len() - 2;
    let layers = (0..=last)
        .map(|l| {
            let activation = if l == last {
                loss.output_activation()
            } else {
                hidden
            };
            Dense::new(widths[l], widths[l + 1], activation, init, rng).unwrap()
        })
        .collect();
    Sequential::new(layers, loss).unwrap()
}

/// Asserts that `err` is [`Error::ShapeMismatch`] naming `operand`.
pub fn assert_shape_mismatch(err: &Error, operand: &str) {
    assert!(
        matches!(err, Error::ShapeMismatch { operand: o, .. } if *o == operand),
        "expected a shape mismatch of `{operand}`, got {err}"
    );
}

/// Asserts that `err` is [`Error::InvalidArgument`] naming `operand`.
pub fn assert_invalid_argument(err: &Error, operand: &str) {
    assert!(
        matches!(err, Error::InvalidArgument { operand: o, .. } if *o == operand),
        "expected an invalid `{operand}`, got {err}"
    );
}
