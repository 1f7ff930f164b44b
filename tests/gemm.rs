//! `gemm` against `reference::gemm` on every dispatch path this CPU supports: all small
//! shapes, sizes around every tile and block edge, transposes, strides, α and β, BLAS
//! special cases, threads, and shape errors.

mod common;

use common::Strided;
use densegrad::{
    Arch, BlockSizes, Error, MatMut, MatRef, Matrix, PARALLEL_MIN_FLOPS, Packing, Parallelism,
    Shape, gemm, gemm_with_arch, gemm_with_options, reference,
};

/// Returns every dispatch path this CPU supports, each with small operands read in place
/// (the default) and with every operand packed.
fn paths() -> Vec<(Arch, Packing)> {
    Arch::supported()
        .into_iter()
        .flat_map(|arch| [(arch, Packing::Auto), (arch, Packing::Always)])
        .collect()
}

/// A small xorshift generator, so failures reproduce without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn value(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// How an input operand's elements are laid out in its slice.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    /// Stored as the transpose and viewed through `.t()`.
    ColMajor,
    /// Row-major with padding after each row, starting mid-slice.
    Padded,
    /// Rows in reverse order and columns stepping by 2 in reverse.
    Negative,
    /// Every row is the same slice row (row stride 0).
    BroadcastRows,
}

const INPUT_LAYOUTS: [Layout; 5] = [
    Layout::RowMajor,
    Layout::ColMajor,
    Layout::Padded,
    Layout::Negative,
    Layout::BroadcastRows,
];

/// Lays out a `rows × cols` input operand of random values as `layout` describes.
fn input(rng: &mut Rng, rows: usize, cols: usize, layout: Layout) -> Strided {
    let (len, offset, row_stride, col_stride) = match layout {
        Layout::RowMajor => (rows * cols, 0, cols as isize, 1),
        Layout::ColMajor => (rows * cols, 0, 1, rows.max(1) as isize),
        Layout::Padded => {
            let stride = cols + 3;
            (5 + rows * stride, 5, stride as isize, 1)
        }
        Layout::Negative => {
            let stride = 2 * cols + 1;
            let len = rows * stride + 1;
            let last = (rows.max(1) - 1) * stride + 2 * (cols.max(1) - 1);
            (len, last, -(stride as isize), -2)
        }
        Layout::BroadcastRows => (cols + 2, 1, 0, 1),
    };
    let data = (0..len).map(|_| rng.value()).collect();
    Strided {
        data,
        offset: if rows == 0 || cols == 0 { 0 } else { offset },
        rows,
        cols,
        row_stride,
        col_stride,
    }
}

/// Lays out a `rows × cols` output operand, row-major, column-major or padded mid-slice as
/// `variant` selects, and fills its slice with values.
fn output(rows: usize, cols: usize, variant: usize, fill: impl FnMut(usize) -> f32) -> Strided {
    let (len, offset, row_stride, col_stride) = match variant % 4 {
        0 => (rows * cols, 0, cols as isize, 1),
        1 => (rows * cols, 0, 1, rows.max(1) as isize),
        2 => (7 + rows * (cols + 2), 7, (cols + 2) as isize, 1),
        _ => {
            // Column-major with padded columns, rows reversed.
            let stride = rows + 1;
            (cols * stride + 1, rows.max(1) - 1, -1, stride as isize)
        }
    };
    Strided {
        data: (0..len).map(fill).collect(),
        offset: if rows == 0 || cols == 0 { 0 } else { offset },
        rows,
        cols,
        row_stride,
        col_stride,
    }
}

/// Element-wise absolute values of a view, as a row-major matrix.
fn abs(view: MatRef<'_>) -> Matrix {
    Matrix::from_fn(view.rows(), view.cols(), |i, j| {
        view.get(i, j).expect("index inside view").abs()
    })
}

/// Asserts `actual ≈ expected` within `4·(k + 2)·ε·(|α|·(|A|·|B|) + |β|·|C₀|)` element-wise.
#[allow(clippy::too_many_arguments)]
fn assert_close(
    context: &str,
    actual: &Matrix,
    expected: &Matrix,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
    c_before: &Matrix,
) {
    let (m, n, k) = (actual.rows(), actual.cols(), a.cols());
    let mut magnitude = Matrix::zeros(m, n);
    reference::gemm(
        1.0,
        abs(a).as_ref(),
        abs(b).as_ref(),
        0.0,
        magnitude.as_mut(),
    )
    .expect("shapes already checked");
    for i in 0..m {
        for j in 0..n {
            let got = actual.get(i, j).unwrap();
            let want = expected.get(i, j).unwrap();
            let c0 = if beta == 0.0 {
                0.0
            } else {
                c_before.get(i, j).unwrap().abs()
            };
            let scale = alpha.abs() * magnitude.get(i, j).unwrap() + beta.abs() * c0;
            let tolerance = 4.0 * (k as f32 + 2.0) * f32::EPSILON * scale + f32::MIN_POSITIVE;
            assert!(
                (got - want).abs() <= tolerance,
                "{context}: C[{i}, {j}] = {got}, reference {want}, tolerance {tolerance}"
            );
        }
    }
}

/// One product checked against the reference.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_layout: Layout,
    b_layout: Layout,
    c_variant: usize,
    alpha: f32,
    beta: f32,
    par: Parallelism,
}

impl Case {
    fn simple(m: usize, k: usize, n: usize) -> Case {
        Case {
            m,
            k,
            n,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
            c_variant: 0,
            alpha: 1.0,
            beta: 0.0,
            par: Parallelism::Sequential,
        }
    }

    /// Runs the case on `arch` and compares with the reference.
    fn check(self, (arch, packing): (Arch, Packing), rng: &mut Rng) {
        let a = input(rng, self.m, self.k, self.a_layout);
        let b = input(rng, self.k, self.n, self.b_layout);
        let c_values: Vec<f32> = (0..self.m * self.n + 64).map(|_| rng.value()).collect();
        let mut c = output(self.m, self.n, self.c_variant, |index| {
            c_values[index % c_values.len()]
        });
        let mut expected = output(self.m, self.n, self.c_variant, |index| {
            c_values[index % c_values.len()]
        });
        let c_before = c.view().to_matrix();

        gemm_with_options(
            arch,
            packing,
            self.alpha,
            a.view(),
            b.view(),
            self.beta,
            c.view_mut(),
            self.par,
        )
        .expect("shapes match");
        reference::gemm(
            self.alpha,
            a.view(),
            b.view(),
            self.beta,
            expected.view_mut(),
        )
        .expect("shapes match");

        let context = format!("{arch:?} {packing:?} {self:?}");
        assert_close(
            &context,
            &c.view().to_matrix(),
            &expected.view().to_matrix(),
            a.view(),
            b.view(),
            self.alpha,
            self.beta,
            &c_before,
        );
        // Elements of the slice outside the view are untouched.
        let in_view = c.in_view();
        for (index, (got, want)) in c.data.iter().zip(&expected.data).enumerate() {
            if !in_view[index] {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{context}: slice element {index} changed"
                );
            }
        }
    }
}

const SCALARS: [f32; 4] = [0.0, 1.0, -0.5, 2.3];

#[test]
fn shapes_all_small() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for path in paths() {
        let mut index = 0usize;
        for m in 0..=20 {
            for n in 0..=20 {
                for k in 0..=20 {
                    index += 1;
                    let case = Case {
                        a_layout: INPUT_LAYOUTS[index % 5],
                        b_layout: INPUT_LAYOUTS[(index / 5) % 5],
                        c_variant: index / 25,
                        alpha: [1.0, -0.5, 2.3][index % 3],
                        beta: SCALARS[(index / 3) % 4],
                        ..Case::simple(m, k, n)
                    };
                    case.check(path, &mut rng);
                }
            }
        }
    }
}

#[test]
fn shapes_tile_and_block_edges() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for path in paths() {
        let sizes = BlockSizes::for_arch(path.0);
        let (mr, nr, kc, mc) = (sizes.mr, sizes.nr, sizes.kc, sizes.mc);
        let mut edges = vec![mr - 1, mr, mr + 1, nr - 1, nr, nr + 1, 127, 128, 129];
        edges.extend([2 * mr - 1, 2 * mr + 1, 3 * nr + 1]);
        for (index, &edge) in edges.iter().enumerate() {
            let layout = INPUT_LAYOUTS[index % 4];
            for (m, k, n) in [
                (edge, 9, 13),
                (11, edge, 7),
                (5, 17, edge),
                (edge, edge, edge),
            ] {
                let case = Case {
                    a_layout: layout,
                    b_layout: INPUT_LAYOUTS[(index + 1) % 4],
                    c_variant: index,
                    beta: 2.3,
                    ..Case::simple(m, k, n)
                };
                case.check(path, &mut rng);
            }
        }
        // A reduction runs in one slice up to `one_slice_depth`, and in slices of at most
        // `kc` beyond it.
        let one_slice = sizes.one_slice_depth;
        for depth in [
            kc - 1,
            kc,
            kc + 1,
            one_slice,
            one_slice + 1,
            2 * one_slice + 1,
        ] {
            Case {
                beta: -0.5,
                ..Case::simple(19, depth, 21)
            }
            .check(path, &mut rng);
            Case {
                c_variant: 0,
                ..Case::simple(mr + 3, depth, nr + 2)
            }
            .check(path, &mut rng);
        }
        // A full `kc` depth: shorter reductions get taller A blocks than `mc`, unless C
        // has few columns, as with 2·nr + 1 and a short depth.
        for rows in [mc - 1, mc, mc + 1] {
            Case {
                c_variant: 1,
                ..Case::simple(rows, kc, 2 * nr + 1)
            }
            .check(path, &mut rng);
            Case {
                c_variant: 0,
                ..Case::simple(2 * nr + 1, kc, rows)
            }
            .check(path, &mut rng);
            Case {
                c_variant: 1,
                ..Case::simple(rows, 37, 2 * nr + 1)
            }
            .check(path, &mut rng);
        }
        // A column-major C keeps its orientation, and a row-major one is transposed, so
        // both reach a second `nc` panel.
        for columns in [sizes.nc, sizes.nc + 1] {
            Case {
                c_variant: 1,
                ..Case::simple(3, 5, columns)
            }
            .check(path, &mut rng);
            Case {
                c_variant: 0,
                ..Case::simple(columns, 5, 3)
            }
            .check(path, &mut rng);
        }
    }
}

#[test]
fn transposes_all_four() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for path in paths() {
        for (m, k, n) in [(37, 53, 29), (64, 64, 64), (5, 130, 97), (100, 3, 50)] {
            for a_layout in [Layout::RowMajor, Layout::ColMajor] {
                for b_layout in [Layout::RowMajor, Layout::ColMajor] {
                    for c_variant in 0..4 {
                        let case = Case {
                            a_layout,
                            b_layout,
                            c_variant,
                            alpha: -0.5,
                            beta: 1.0,
                            ..Case::simple(m, k, n)
                        };
                        case.check(path, &mut rng);
                    }
                }
            }
        }
    }
}

#[test]
fn strides_negative_zero_padded() {
    let mut rng = Rng(0x0ddb_a11c_afe0_f00d);
    for path in paths() {
        for a_layout in INPUT_LAYOUTS {
            for b_layout in INPUT_LAYOUTS {
                for c_variant in 0..4 {
                    Case {
                        a_layout,
                        b_layout,
                        c_variant,
                        beta: -0.5,
                        ..Case::simple(45, 38, 51)
                    }
                    .check(path, &mut rng);
                }
            }
        }
    }
}

#[test]
fn scalars_alpha_beta_grid() {
    let mut rng = Rng(0xfeed_beef_1234_0001);
    for path in paths() {
        for alpha in SCALARS {
            for beta in SCALARS {
                for (m, k, n) in [(33, 20, 17), (1, 1, 1), (50, 70, 9)] {
                    Case {
                        alpha,
                        beta,
                        c_variant: 2,
                        ..Case::simple(m, k, n)
                    }
                    .check(path, &mut rng);
                }
            }
        }
    }
}

#[test]
fn shapes_tall_and_skinny() {
    let mut rng = Rng(0x5eed_0000_0000_0042);
    for path in paths() {
        for (m, k, n) in [
            (1, 4096, 1),
            (4096, 1, 64),
            (10, 128, 128),
            (128, 128, 10),
            (3, 300, 2),
            // B larger than half of L2 with few rows of C: the turned problem reads it in
            // place as its A operand instead of packing it.
            (1, 784, 256),
            (4, 1000, 300),
            (64, 784, 256),
        ] {
            for a_layout in [Layout::RowMajor, Layout::ColMajor] {
                Case {
                    a_layout,
                    beta: 1.0,
                    ..Case::simple(m, k, n)
                }
                .check(path, &mut rng);
            }
        }
    }
}

#[test]
fn shapes_few_columns_every_tile_set() {
    // C with at most 16 columns takes the tile set that covers them in the fewest
    // micro-panels (on AVX-512: 64 × 6, 48 × 8 or 32 × 12). The rows straddle each set's
    // `mr` and its multiples, and each shape also runs turned, so that either C layout
    // puts the few columns on the loop nest's column side.
    check_turned_grid(
        0x5eed_0000_0000_0c12,
        &[31, 33, 47, 49, 63, 65, 129],
        &[7, 8, 9, 10, 11, 12, 13, 16],
        &[9, 300],
        4,
    );
}

#[test]
fn shapes_few_rows_one_vector_tiles() {
    // C with at most one vector of rows, contiguous columns and a reduction of at most
    // 256 takes one-vector tiles with many columns on the x86 paths (8 × 12 up to 8 rows,
    // and on AVX-512 16 × 24 up to 16). The rows run up to one past a vector of every path, the columns
    // straddle 24 and its double, and B comes packed, strided in place (column-major or
    // reversed) and padded, so both ways of addressing B's columns run. Each shape also
    // runs turned, and C's layouts include contiguous columns.
    check_turned_grid(
        0x5eed_0000_0000_1a24,
        &[1, 7, 8, 9, 15, 16, 17],
        &[23, 24, 25, 47, 49],
        &[3, 9, 130],
        5,
    );
}

/// Checks every `rows × depth × columns` product of the grid and its turned twin
/// `columns × depth × rows` on every path. A cycles through the first `a_layouts` input
/// layouts, B through the first four, and C's layout and β change from case to case.
fn check_turned_grid(
    seed: u64,
    rows: &[usize],
    columns: &[usize],
    depths: &[usize],
    a_layouts: usize,
) {
    let mut rng = Rng(seed);
    for path in paths() {
        let mut index = 0usize;
        for &row_count in rows {
            for &column_count in columns {
                for &depth in depths {
                    for (m, n) in [(row_count, column_count), (column_count, row_count)] {
                        index += 1;
                        Case {
                            a_layout: INPUT_LAYOUTS[index % a_layouts],
                            b_layout: INPUT_LAYOUTS[(index / a_layouts) % 4],
                            c_variant: index,
                            beta: SCALARS[index % 4],
                            ..Case::simple(m, depth, n)
                        }
                        .check(path, &mut rng);
                    }
                }
            }
        }
    }
}

/// Checks each (m, k, n) with A's rows and B's columns contiguous, as the dot-product path
/// needs, on every path, C layout and a few α and β.
fn check_contiguous_along_k(rng: &mut Rng, shapes: &[(usize, usize, usize)]) {
    for arch in Arch::supported() {
        let path = (arch, Packing::Auto);
        for &(m, k, n) in shapes {
            for c_variant in 0..4 {
                for (alpha, beta) in [(1.0, 0.0), (-0.5, 1.0), (2.3, -0.5)] {
                    Case {
                        a_layout: Layout::RowMajor,
                        b_layout: Layout::ColMajor,
                        c_variant,
                        alpha,
                        beta,
                        ..Case::simple(m, k, n)
                    }
                    .check(path, rng);
                }
            }
        }
    }
}

#[test]
fn dot_path_single_row_or_column() {
    // One row or one column of C takes the dot-product path: depths around the vector and
    // chain widths.
    let mut rng = Rng(0x5eed_0000_0000_0d07);
    let mut shapes = Vec::new();
    for k in [16, 17, 31, 63, 64, 65, 100, 784] {
        shapes.extend([(1, k, 1), (1, k, 7), (1, k, 40), (9, k, 1)]);
    }
    check_contiguous_along_k(&mut rng, &shapes);
}

#[test]
fn dot_path_few_rows_or_columns() {
    // A few rows or columns of C take the dot-product path in blocks of 4 × 4, the last
    // block repeating a row or column. On AVX-512 that is up to 4 of them from a depth of
    // 64, 8 from 192 and 12 from 256, on AVX2 4 from 192 and 8 from 384, on the portable
    // path 4 from 128. The shapes lie at, past and just below each of those limits, in
    // lines and in depth.
    let mut rng = Rng(0x5eed_0000_0000_0d08);
    let shapes = [
        (4, 63, 9),
        (3, 64, 5),
        (4, 65, 7),
        (4, 127, 9),
        (4, 128, 6),
        (5, 128, 8),
        (5, 191, 9),
        (4, 191, 11),
        (3, 192, 10),
        (8, 192, 6),
        (2, 256, 7),
        (3, 257, 5),
        (12, 255, 13),
        (9, 256, 12),
        (12, 300, 17),
        (13, 300, 9),
        (4, 300, 9),
        (6, 300, 4),
        (6, 383, 9),
        (7, 384, 9),
        (9, 384, 8),
        (8, 2048, 6),
        (5, 2055, 8),
        (11, 784, 10),
    ];
    check_contiguous_along_k(&mut rng, &shapes);
}

/// Runs `gemm_with_arch` into a fresh row-major C filled with `c_fill`.
fn run_filled(arch: Arch, alpha: f32, a: &Matrix, b: &Matrix, beta: f32, c_fill: f32) -> Matrix {
    let mut c = Matrix::from_fn(a.rows(), b.cols(), |_, _| c_fill);
    gemm_with_arch(
        arch,
        alpha,
        a.as_ref(),
        b.as_ref(),
        beta,
        c.as_mut(),
        Parallelism::Sequential,
    )
    .expect("shapes match");
    c
}

#[test]
fn beta_zero_ignores_nan_and_inf() {
    let mut rng = Rng(7);
    let a = Matrix::from_fn(23, 31, |_, _| rng.value());
    let b = Matrix::from_fn(31, 19, |_, _| rng.value());
    // One row of C over a row-major A and a column of B: the dot-product path.
    let row = Matrix::from_fn(1, 31, |_, _| rng.value());
    let column = Matrix::from_fn(31, 1, |_, _| rng.value());
    for arch in Arch::supported() {
        for poison in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for alpha in [1.0, 0.0] {
                for (a, b) in [(&a, &b), (&row, &column)] {
                    let c = run_filled(arch, alpha, a, b, 0.0, poison);
                    assert!(
                        c.as_slice().iter().all(|x| x.is_finite()),
                        "{arch:?} {poison} α={alpha} {}×{}",
                        a.rows(),
                        b.cols()
                    );
                }
            }
        }
    }
}

#[test]
fn alpha_zero_skips_a_and_b() {
    let a = Matrix::from_fn(6, 5, |_, _| f32::NAN);
    let b = Matrix::from_fn(5, 4, |_, _| f32::INFINITY);
    for arch in Arch::supported() {
        let c = run_filled(arch, 0.0, &a, &b, 2.0, 1.5);
        assert!(c.as_slice().iter().all(|&x| x == 3.0), "{arch:?}: {c:?}");
    }
}

#[test]
fn depth_zero_scales_c() {
    let a = Matrix::zeros(4, 0);
    let b = Matrix::zeros(0, 3);
    for arch in Arch::supported() {
        assert!(
            run_filled(arch, 1.0, &a, &b, -0.5, 4.0)
                .as_slice()
                .iter()
                .all(|&x| x == -2.0)
        );
        assert!(
            run_filled(arch, 1.0, &a, &b, 0.0, f32::NAN)
                .as_slice()
                .iter()
                .all(|&x| x == 0.0)
        );
        assert!(
            run_filled(arch, 1.0, &a, &b, 1.0, 4.0)
                .as_slice()
                .iter()
                .all(|&x| x == 4.0)
        );
    }
}

#[test]
fn empty_output_writes_nothing() {
    let a = Matrix::from_fn(0, 5, |_, _| 1.0);
    let b = Matrix::from_fn(5, 3, |_, _| 1.0);
    let mut c = Matrix::zeros(0, 3);
    gemm(
        1.0,
        a.as_ref(),
        b.as_ref(),
        0.0,
        c.as_mut(),
        Parallelism::Rayon(0),
    )
    .unwrap();
    let mut data = [9.0f32; 4];
    let a = Matrix::from_fn(2, 5, |_, _| 1.0);
    let b = Matrix::from_fn(5, 0, |_, _| 1.0);
    let c = MatMut::from_strided(&mut data, 0, 2, 0, 2, 1).unwrap();
    gemm(1.0, a.as_ref(), b.as_ref(), 0.0, c, Parallelism::Sequential).unwrap();
    assert_eq!(data, [9.0; 4]);
}

/// Runs `gemm` (α = 1, β = 0) on operands whose shapes do not match, and returns its error.
fn shape_error(a: &Matrix, b: &Matrix, c: &mut Matrix) -> Error {
    gemm(
        1.0,
        a.as_ref(),
        b.as_ref(),
        0.0,
        c.as_mut(),
        Parallelism::Sequential,
    )
    .unwrap_err()
}

#[test]
fn errors_name_operand_and_shapes() {
    let a = Matrix::zeros(3, 4);
    let b = Matrix::zeros(5, 2);
    let mut c = Matrix::zeros(3, 2);
    let err = shape_error(&a, &b, &mut c);
    assert_eq!(
        err,
        Error::ShapeMismatch {
            operand: "b",
            expected: Shape::new(4, 2),
            actual: Shape::new(5, 2)
        }
    );

    let b = Matrix::zeros(4, 2);
    let mut c = Matrix::from_fn(2, 3, |_, _| 7.0);
    let err = shape_error(&a, &b, &mut c);
    assert_eq!(
        err,
        Error::ShapeMismatch {
            operand: "c",
            expected: Shape::new(3, 2),
            actual: Shape::new(2, 3)
        }
    );
    assert!(
        c.as_slice().iter().all(|&x| x == 7.0),
        "a failed call wrote C"
    );
    assert_eq!(err.to_string(), "c: expected 3 × 2, got 2 × 3");

    // A weight matrix passed without `.t()`: the expected B takes C's width, so the
    // message shows the transposed shape that fits.
    let (x, w) = (Matrix::zeros(2, 3), Matrix::zeros(2, 3));
    let mut z = Matrix::zeros(2, 2);
    let err = shape_error(&x, &w, &mut z);
    assert_eq!(err.to_string(), "b: expected 3 × 2, got 2 × 3");

    // `a` fixes m and k: a wrong `a` shows up as a mismatch of `b` or `c`.
    let a = Matrix::zeros(2, 4);
    let mut c = Matrix::zeros(3, 2);
    let err = shape_error(&a, &b, &mut c);
    assert!(matches!(err, Error::ShapeMismatch { operand: "c", .. }));
}

#[test]
fn oracle_matrixmultiply_sample() {
    let mut rng = Rng(99);
    for arch in Arch::supported() {
        for (m, k, n) in [(64, 64, 64), (97, 130, 61), (10, 128, 128), (200, 33, 7)] {
            let a = input(&mut rng, m, k, Layout::Padded);
            let b = input(&mut rng, k, n, Layout::ColMajor);
            let c0: Vec<f32> = (0..m * n).map(|_| rng.value()).collect();
            let (alpha, beta) = (1.5, -0.5);

            let mut ours = c0.clone();
            let c = MatMut::from_slice(&mut ours, m, n).unwrap();
            gemm_with_arch(
                arch,
                alpha,
                a.view(),
                b.view(),
                beta,
                c,
                Parallelism::Sequential,
            )
            .unwrap();

            let mut theirs = c0.clone();
            // SAFETY: the pointers and strides describe the views above, which lie inside
            // their slices, and `theirs` is a contiguous row-major m × n buffer.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a.data.as_ptr().add(a.offset),
                    a.row_stride,
                    a.col_stride,
                    b.data.as_ptr().add(b.offset),
                    b.row_stride,
                    b.col_stride,
                    beta,
                    theirs.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            for (index, (x, y)) in ours.iter().zip(&theirs).enumerate() {
                let tolerance = 4.0 * (k as f32 + 2.0) * f32::EPSILON * (2.0 * k as f32 + 1.0);
                assert!(
                    (x - y).abs() <= tolerance,
                    "{arch:?} {m}x{k}x{n} [{index}]: {x} vs {y}"
                );
            }
        }
    }
}

/// Runs one product sequentially and with `par`, and returns both results.
fn sequential_and_parallel(
    (arch, packing): (Arch, Packing),
    m: usize,
    k: usize,
    n: usize,
    par: Parallelism,
) -> (Matrix, Matrix) {
    let mut rng = Rng((m * 31 + k * 17 + n) as u64 | 1);
    let a = Matrix::from_fn(m, k, |_, _| rng.value());
    let b = Matrix::from_fn(n, k, |_, _| rng.value());
    let c0 = Matrix::from_fn(m, n, |_, _| rng.value());
    let run = |par| {
        let mut c = c0.clone();
        let (a, b) = (a.as_ref(), b.as_ref().t());
        gemm_with_options(arch, packing, 0.7, a, b, 1.3, c.as_mut(), par).unwrap();
        c
    };
    (run(Parallelism::Sequential), run(par))
}

/// Asserts that a parallel result equals the sequential one bit for bit.
fn assert_same_bits(sequential: &Matrix, parallel: &Matrix, context: &str) {
    let bits = |m: &Matrix| m.as_slice().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(sequential) == bits(parallel),
        "{context} differs from sequential"
    );
}

#[test]
fn threads_bitwise_equal_sequential() {
    let flops = |m: usize, k: usize, n: usize| 2 * (m * k * n) as u64;
    let shapes = [
        (256, 128, 256),
        (20, 700, 700),
        (700, 700, 20),
        (203, 611, 97),
        (4, 4096, 600),
        (600, 2048, 8),
        (700, 1024, 10),
        (12, 1024, 700),
        // A short reduction for many columns, which tasks split by columns of C.
        (601, 16, 907),
    ];
    for &(m, k, n) in &shapes {
        assert!(
            flops(m, k, n) >= PARALLEL_MIN_FLOPS,
            "{m}x{k}x{n} would stay sequential"
        );
    }
    for path in paths() {
        for &(m, k, n) in &shapes {
            // `usize::MAX` is a plausible way to ask for no limit.
            for par in [
                Parallelism::Rayon(0),
                Parallelism::Rayon(2),
                Parallelism::Rayon(3),
                Parallelism::Rayon(usize::MAX),
            ] {
                let (sequential, parallel) = sequential_and_parallel(path, m, k, n, par);
                assert_same_bits(
                    &sequential,
                    &parallel,
                    &format!("{path:?} {m}x{k}x{n} {par:?}"),
                );
            }
        }
    }
}

#[test]
fn threads_nested_in_rayon_tasks() {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let path = (Arch::selected(), Packing::Always);
    let (expected, _) = sequential_and_parallel(path, 150, 200, 180, Parallelism::Sequential);
    let results: Vec<Matrix> = pool.install(|| {
        (0..6)
            .into_par_iter()
            .map(|_| sequential_and_parallel(path, 150, 200, 180, Parallelism::Rayon(0)).1)
            .collect()
    });
    for result in results {
        assert_eq!(result, expected);
    }
}

#[test]
fn arch_fallback_stays_supported() {
    for arch in Arch::ALL {
        assert!(arch.or_supported_below().is_supported());
        assert!(arch.or_supported_below() <= arch);
    }
    assert!(Arch::supported().contains(&Arch::Portable));
    assert!(Arch::selected().is_supported());
}

#[test]
fn strides_huge_on_single_lines() {
    // A view with one row (or one column) may have any row (column) stride, since that
    // stride never moves to a second element. Strides of 2^62 elements must not overflow
    // the byte counts of the dispatch. Shapes: a dot product, an outer product and a
    // vector times a matrix.
    const HUGE: isize = 1 << 62;
    let mut rng = Rng(0x5eed_0ff1_e1d0);
    for (m, k, n) in [(1, 40, 1), (5, 1, 7), (1, 33, 20)] {
        let a_data: Vec<f32> = (0..m * k).map(|_| rng.value()).collect();
        let b_data: Vec<f32> = (0..k * n).map(|_| rng.value()).collect();
        let a_plain = MatRef::from_slice(&a_data, m, k).unwrap();
        let b_plain = MatRef::from_slice(&b_data, k, n).unwrap();
        let huge_strides = |data, rows, cols| match (rows, cols) {
            (1, _) => MatRef::from_strided(data, 0, 1, cols, HUGE, 1).unwrap(),
            (_, 1) => MatRef::from_strided(data, 0, rows, 1, 1, HUGE).unwrap(),
            _ => MatRef::from_slice(data, rows, cols).unwrap(),
        };
        let (a, b) = (huge_strides(&a_data, m, k), huge_strides(&b_data, k, n));

        for path in paths() {
            let mut expected = Matrix::zeros(m, n);
            reference::gemm(1.0, a_plain, b_plain, 0.0, expected.as_mut()).unwrap();
            let mut c_data = vec![f32::NAN; m * n];
            let c_view = if m == 1 {
                MatMut::from_strided(&mut c_data, 0, 1, n, HUGE, 1).unwrap()
            } else {
                MatMut::from_slice(&mut c_data, m, n).unwrap()
            };
            gemm_with_options(
                path.0,
                path.1,
                1.0,
                a,
                b,
                0.0,
                c_view,
                Parallelism::Sequential,
            )
            .unwrap();
            let actual = Matrix::from_vec(c_data, m, n).unwrap();
            let context = format!("{path:?} {m}x{k}x{n}");
            let c_before = Matrix::zeros(m, n);
            assert_close(&context, &actual, &expected, a, b, 1.0, 0.0, &c_before);
        }
    }
}

#[test]
fn vector_products_every_path() {
    // Matrix–vector products (one row of C, B row-major, so each column of Cᵀ sums whole
    // rows of B) and outer products (k = 1): most take the column path under
    // `Packing::Auto`, and all take the loop nest under `Packing::Always`. Sizes straddle
    // the vector widths, the groups of 4 columns and the chunks of 4096 rows.
    let mut rng = Rng(0x0c01_5e77_ab1e_0001);
    let matrix_vector = [1, 2, 3, 4, 5, 7, 8, 9, 33]
        .into_iter()
        .flat_map(|k| [1, 15, 16, 17, 65, 4095, 4097].map(|n| (1, k, n)));
    let outer = [1, 15, 17, 100]
        .into_iter()
        .flat_map(|m| [1, 3, 64, 200].map(|n| (m, 1, n)));
    let shapes: Vec<_> = matrix_vector.chain(outer).chain([(1, 300, 100)]).collect();
    for path in paths() {
        for &(m, k, n) in &shapes {
            for (alpha, beta) in [(1.0, 0.0), (2.3, 1.0), (-0.5, -0.5)] {
                for (a_layout, b_layout) in [
                    (Layout::RowMajor, Layout::RowMajor),
                    (Layout::ColMajor, Layout::Negative),
                ] {
                    Case {
                        a_layout,
                        b_layout,
                        alpha,
                        beta,
                        ..Case::simple(m, k, n)
                    }
                    .check(path, &mut rng);
                }
            }
        }
    }
}

#[test]
fn vector_products_threads_bitwise_equal() {
    // Above the threading threshold a matrix–vector product splits its rows and an outer
    // product its columns across tasks; each element must come out the same.
    let mut rng = Rng(0x7ead_5e77_ab1e_0002);
    for (m, k, n) in [(1, 2048, 2100), (2100, 1, 2048)] {
        assert!(2 * (m * k * n) as u64 >= PARALLEL_MIN_FLOPS);
        let a = Matrix::from_fn(m, k, |_, _| rng.value());
        let b = Matrix::from_fn(k, n, |_, _| rng.value());
        let c0 = Matrix::from_fn(m, n, |_, _| rng.value());
        for arch in Arch::supported() {
            let run = |par| {
                let mut c = c0.clone();
                gemm_with_arch(arch, 0.7, a.as_ref(), b.as_ref(), 1.3, c.as_mut(), par).unwrap();
                c
            };
            let sequential = run(Parallelism::Sequential);
            for par in [Parallelism::Rayon(2), Parallelism::Rayon(3)] {
                let parallel = run(par);
                assert_same_bits(
                    &sequential,
                    &parallel,
                    &format!("{arch:?} {m}x{k}x{n} {par:?}"),
                );
            }
        }
    }
}

#[test]
fn operands_line_offsets_bitwise_equal() {
    // Whether A is read in place or packed depends on where its columns start within a
    // cache line, and on its row tiles. So the same product from operands at each of the
    // 16 element offsets in a line may take either route. Both add the products of each
    // element in the same order: every offset must give the same bits, and the first
    // must match the reference. The first shapes have one, two and four row tiles of the
    // AVX-512 kernels, with A small enough for L1d. In the last two (the `δ·W` products
    // of 784→256 and 272→96 layers), A is larger than L1d with columns a whole number of
    // lines apart, and its rows above the first line run as a product of their own.
    const LINE: usize = 16;
    let mut rng = Rng(0xa119_0ff5_e7a1_0003);
    let shapes = [
        (64, 64, 64),
        (128, 10, 128),
        (256, 40, 256),
        (200, 24, 72),
        (32, 256, 784),
        (20, 96, 272),
    ];
    for (m, k, n) in shapes {
        let a = Matrix::from_fn(m, k, |_, _| rng.value());
        let b = Matrix::from_fn(k, n, |_, _| rng.value());
        // Both operands at `offset` elements into slices of their own, row-major.
        let shifted = |matrix: &Matrix, offset: usize| {
            let mut data = vec![f32::NAN; offset];
            data.extend_from_slice(matrix.as_slice());
            data
        };
        for arch in Arch::supported() {
            let mut first: Option<Matrix> = None;
            for offset in 0..LINE {
                let (a_data, b_data) = (shifted(&a, offset), shifted(&b, offset));
                let a_view = MatRef::from_strided(&a_data, offset, m, k, k as isize, 1).unwrap();
                let b_view = MatRef::from_strided(&b_data, offset, k, n, n as isize, 1).unwrap();
                let mut c = Matrix::from_fn(m, n, |_, _| f32::NAN);
                gemm_with_arch(
                    arch,
                    1.0,
                    a_view,
                    b_view,
                    0.0,
                    c.as_mut(),
                    Parallelism::Sequential,
                )
                .unwrap();
                let context = format!("{arch:?} {m}x{k}x{n} offset {offset}");
                match &first {
                    None => {
                        let mut expected = Matrix::zeros(m, n);
                        reference::gemm(1.0, a.as_ref(), b.as_ref(), 0.0, expected.as_mut())
                            .unwrap();
                        let c_before = Matrix::zeros(m, n);
                        assert_close(&context, &c, &expected, a_view, b_view, 1.0, 0.0, &c_before);
                        first = Some(c);
                    }
                    Some(first) => assert_same_bits(first, &c, &context),
                }
            }
        }
    }
}
