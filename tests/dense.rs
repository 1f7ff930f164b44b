//! `dense_forward` and `dense_backward` against the reference on random shapes and strided
//! views, gradient modes, thread-count independence, and every argument error.

mod common;

use common::{Strided, assert_views_close, random_matrix, row_f64};
use densegrad::loss::{self, Targets};
use densegrad::{
    Activation, Arch, BlockSizes, DenseGrads, Error, GradMode, MatMut, MatRef, Matrix, Parallelism,
    dense_backward, dense_backward_with_arch, dense_forward, dense_forward_with_arch, reference,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACTIVATIONS: [Activation; 6] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.2 },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Softmax,
];

/// (m, n_in, n_out): ones, primes, sizes around powers of two, and a few samples through
/// a wide layer (the forward pass's dot-product path, post steps along rows and along
/// columns).
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 5, 3),
    (7, 1, 4),
    (5, 6, 1),
    (13, 17, 11),
    (31, 9, 33),
    (16, 8, 15),
    (0, 4, 3),
    (3, 300, 9),
    (6, 260, 4),
];

/// Lays out `matrix` transposed and padded in a buffer of NaN, so its element (i, j) sits at
/// `j·(rows + 3) + i + 2`: a column-major layout with a gap.
fn column_major_padded(matrix: &Matrix) -> Strided {
    let gap_after = matrix.rows() + 3;
    padded(matrix, 1, gap_after as isize)
}

/// Lays out `matrix` row by row in a buffer of NaN, with rows `cols + 3` apart from
/// element 2, so each row is contiguous but the matrix is not.
fn row_major_padded(matrix: &Matrix) -> Strided {
    let gap_after = matrix.cols() + 3;
    padded(matrix, gap_after as isize, 1)
}

/// Copies `matrix` into a buffer of NaN with the given strides, from element 2.
fn padded(matrix: &Matrix, row_stride: isize, col_stride: isize) -> Strided {
    let (rows, cols) = (matrix.rows(), matrix.cols());
    let last = (rows.max(1) - 1) as isize * row_stride + (cols.max(1) - 1) as isize * col_stride;
    let mut strided = Strided {
        data: vec![f32::NAN; 2 + last as usize + 4],
        offset: 2,
        rows,
        cols,
        row_stride,
        col_stride,
    };
    strided.view_mut().copy_from(matrix.as_ref()).unwrap();
    strided
}

/// Asserts `|actual − expected| ≤ 4·k·ε·(1 + |expected|)` element-wise, for results of
/// reductions of length `k`.
fn assert_close(what: &str, actual: MatRef, expected: MatRef, k: usize) {
    assert_views_close(
        what,
        actual,
        expected,
        4.0 * (k.max(1) as f32) * f32::EPSILON,
    );
}

/// Runs `dense_backward` in `GradMode::Overwrite` into outputs that start as `start`, and
/// returns the weight gradient, the bias gradient and `δ_prev`.
fn backward_overwrite(
    delta: &Matrix,
    x: &Matrix,
    w: &Matrix,
    input_activation: Activation,
    start: f32,
    par: Parallelism,
) -> (Matrix, Vec<f32>, Matrix) {
    let (m, n_in, n_out) = (x.rows(), x.cols(), w.rows());
    let mut grad_w = Matrix::from_fn(n_out, n_in, |_, _| start);
    let mut grad_b = vec![start; n_out];
    let mut input_delta = Matrix::from_fn(m, n_in, |_, _| start);
    dense_backward(
        delta.as_ref(),
        x.as_ref(),
        w.as_ref(),
        input_activation,
        DenseGrads {
            weights: grad_w.as_mut(),
            bias: &mut grad_b,
            mode: GradMode::Overwrite,
        },
        Some(input_delta.as_mut()),
        par,
    )
    .unwrap();
    (grad_w, grad_b, input_delta)
}

/// Input of a layer whose activation below is `activation`: its output on random logits.
fn layer_input(rng: &mut ChaCha8Rng, activation: Activation, m: usize, n_in: usize) -> Matrix {
    let z = random_matrix(rng, m, n_in);
    let mut x = Matrix::zeros(m, n_in);
    reference::activation_forward(activation, z.as_ref(), x.as_mut()).unwrap();
    x
}

#[test]
fn forward_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (m, n_in, n_out) in SHAPES {
        for activation in ACTIVATIONS {
            let x = random_matrix(&mut rng, m, n_in);
            let w = random_matrix(&mut rng, n_out, n_in);
            let bias: Vec<f32> = (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut expected = Matrix::zeros(m, n_out);
            reference::dense_forward(x.as_ref(), w.as_ref(), &bias, activation, expected.as_mut())
                .unwrap();

            let what = format!("{m}×{n_in}→{n_out} {activation:?}");
            let mut out = Matrix::from_fn(m, n_out, |_, _| f32::NAN);
            dense_forward(
                x.as_ref(),
                w.as_ref(),
                &bias,
                activation,
                out.as_mut(),
                Parallelism::Sequential,
            )
            .unwrap();
            assert_close(&what, out.as_ref(), expected.as_ref(), n_in);

            // Strided input and output, and the weights as the transpose of an n_in × n_out
            // matrix.
            let wt = w.as_ref().t().to_matrix();
            let (x_strided, mut out_strided) = (column_major_padded(&x), column_major_padded(&out));
            dense_forward(
                x_strided.view(),
                wt.as_ref().t(),
                &bias,
                activation,
                out_strided.view_mut(),
                Parallelism::Sequential,
            )
            .unwrap();
            let strided_what = format!("{what}, strided");
            assert_close(&strided_what, out_strided.view(), expected.as_ref(), n_in);
        }
    }
}

#[test]
fn backward_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (m, n_in, n_out) in SHAPES {
        for input_activation in &ACTIVATIONS[..5] {
            let input_activation = *input_activation;
            let x = layer_input(&mut rng, input_activation, m, n_in);
            let w = random_matrix(&mut rng, n_out, n_in);
            let delta = random_matrix(&mut rng, m, n_out);
            let expected =
                reference::dense_backward(x.as_ref(), w.as_ref(), delta.as_ref(), input_activation)
                    .unwrap();
            let what = format!("{m}×{n_in}→{n_out} {input_activation:?}");

            // Contiguous operands; Overwrite must ignore the NaN the outputs start with.
            let par = Parallelism::Sequential;
            let (grad_w, grad_b, input_delta) =
                backward_overwrite(&delta, &x, &w, input_activation, f32::NAN, par);
            let grad_b = Matrix::from_vec(grad_b, 1, n_out).unwrap();
            let expected_b = Matrix::from_vec(expected.grad_bias.clone(), 1, n_out).unwrap();
            assert_close(
                &format!("{what}: dW"),
                grad_w.as_ref(),
                expected.grad_weights.as_ref(),
                m,
            );
            assert_close(
                &format!("{what}: db"),
                grad_b.as_ref(),
                expected_b.as_ref(),
                m,
            );
            assert_close(
                &format!("{what}: input_delta"),
                input_delta.as_ref(),
                expected.delta_prev.as_ref(),
                n_out,
            );

            // Strided operands, transposed weights, no input_delta.
            let (delta_s, x_s) = (column_major_padded(&delta), column_major_padded(&x));
            let wt = w.as_ref().t().to_matrix();
            let mut grad_w_s = column_major_padded(&Matrix::zeros(n_out, n_in));
            let mut grad_b_s = vec![0.0; n_out];
            dense_backward(
                delta_s.view(),
                x_s.view(),
                wt.as_ref().t(),
                input_activation,
                DenseGrads {
                    weights: grad_w_s.view_mut(),
                    bias: &mut grad_b_s,
                    mode: GradMode::Overwrite,
                },
                None,
                Parallelism::Sequential,
            )
            .unwrap();
            let what = format!("{what}, strided");
            assert_close(&what, grad_w_s.view(), expected.grad_weights.as_ref(), m);
        }
    }
}

#[test]
fn backward_accumulate_adds() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (m, n_in, n_out) = (9, 7, 5);
    let x = random_matrix(&mut rng, m, n_in);
    let w = random_matrix(&mut rng, n_out, n_in);
    let delta = random_matrix(&mut rng, m, n_out);
    let expected =
        reference::dense_backward(x.as_ref(), w.as_ref(), delta.as_ref(), Activation::Identity)
            .unwrap();

    let start = random_matrix(&mut rng, n_out, n_in);
    let start_bias: Vec<f32> = (0..n_out).map(|o| o as f32).collect();
    let (mut grad_w, mut grad_b) = (start.clone(), start_bias.clone());
    dense_backward(
        delta.as_ref(),
        x.as_ref(),
        w.as_ref(),
        Activation::Identity,
        DenseGrads {
            weights: grad_w.as_mut(),
            bias: &mut grad_b,
            mode: GradMode::Accumulate,
        },
        None,
        Parallelism::Sequential,
    )
    .unwrap();

    let sum = Matrix::from_fn(n_out, n_in, |o, k| {
        start.get(o, k).unwrap() + expected.grad_weights.get(o, k).unwrap()
    });
    assert_close("accumulated dW", grad_w.as_ref(), sum.as_ref(), m);
    for o in 0..n_out {
        let want = start_bias[o] + expected.grad_bias[o];
        assert!(
            (grad_b[o] - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "db[{o}]"
        );
    }
}

/// Runs forward and backward of a layer large enough to split, with `par` in a pool of
/// `threads`.
fn run_in_pool(
    threads: usize,
    par: Parallelism,
    x: &Matrix,
    w: &Matrix,
    delta: &Matrix,
) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let (m, n_out) = (x.rows(), w.rows());
        let bias = vec![0.1; n_out];
        let mut out = Matrix::zeros(m, n_out);
        dense_forward(
            x.as_ref(),
            w.as_ref(),
            &bias,
            Activation::Tanh,
            out.as_mut(),
            par,
        )
        .unwrap();
        let (grad_w, grad_b, input_delta) =
            backward_overwrite(delta, x, w, Activation::Sigmoid, 0.0, par);
        vec![
            out.into_vec(),
            grad_w.into_vec(),
            grad_b,
            input_delta.into_vec(),
        ]
    })
}

#[test]
fn results_thread_count_independent() {
    fn view(values: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
        MatRef::from_slice(values, rows, cols).unwrap()
    }
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // The second shape is large enough for the GEMM to split its tiles across threads,
    // the third spans two sample blocks, which run as chunks with partial gradients, and
    // the fourth has blocks of 256 samples, so four chunks run in groups. The last has
    // few outputs, whose kernel takes blocks of 512 samples: five chunks.
    let shapes = [
        (67, 97, 61),
        (700, 257, 130),
        (1100, 257, 130),
        (1024, 4076, 20),
        (2100, 33, 10),
    ];
    for (m, n_in, n_out) in shapes {
        let x = Matrix::from_fn(m, n_in, |_, _| rng.random_range(0.0..1.0));
        let w = random_matrix(&mut rng, n_out, n_in);
        let delta = random_matrix(&mut rng, m, n_out);

        let one = run_in_pool(1, Parallelism::Rayon(0), &x, &w, &delta);
        // The one-thread gradients, split into the chunks the shape calls for, match the
        // reference.
        let expected =
            reference::dense_backward(x.as_ref(), w.as_ref(), delta.as_ref(), Activation::Sigmoid)
                .unwrap();
        let what = format!("{m}×{n_in}→{n_out}");
        assert_close(
            &format!("{what}: dW"),
            view(&one[1], n_out, n_in),
            expected.grad_weights.as_ref(),
            m,
        );
        assert_close(
            &format!("{what}: db"),
            view(&one[2], 1, n_out),
            view(&expected.grad_bias, 1, n_out),
            m,
        );
        assert_close(
            &format!("{what}: input_delta"),
            view(&one[3], m, n_in),
            expected.delta_prev.as_ref(),
            n_out,
        );
        // Whole pools, and fewer threads than the pool has (the chunks then run in as
        // many groups as `Rayon(n)` allows).
        let settings = [
            (2, Parallelism::Rayon(0)),
            (3, Parallelism::Rayon(0)),
            (8, Parallelism::Rayon(0)),
            (8, Parallelism::Rayon(2)),
            (8, Parallelism::Rayon(3)),
        ];
        for (threads, par) in settings {
            let many = run_in_pool(threads, par, &x, &w, &delta);
            for (name, (a, b)) in ["output", "dW", "db", "input_delta"]
                .iter()
                .zip(one.iter().zip(&many))
            {
                let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "{m}×{n_in}→{n_out}: {name} differs with {par:?} in {threads} threads"
                );
            }
        }
    }
}

/// Shapes (m, n_in, n_out) around the tile and block edges of `arch`. They include tiles one
/// row or column past a full one, and batches spanning several sample blocks. A reduction one
/// past the longest single slice checks that the epilogue's bias and activation wait for the
/// last slice.
fn edge_shapes(arch: Arch) -> Vec<(usize, usize, usize)> {
    let sizes = BlockSizes::for_arch(arch);
    vec![
        (sizes.mr + 1, sizes.one_slice_depth + 1, 2 * sizes.nr + 1),
        (2 * sizes.mr - 1, 2, sizes.nr - 1),
        (3, 2 * sizes.one_slice_depth + 3, 2 * sizes.mr + 5),
        (sizes.nr + 1, sizes.mr - 1, sizes.kc + 1),
        (1100, 3, 37),
        (1030, 700, 5),
    ]
}

/// Compares `dense_forward_with_arch` with the reference, on contiguous and on
/// column-major padded views.
fn check_forward(arch: Arch, rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) {
    let (m, n_in, n_out) = shape;
    let x = random_matrix(rng, m, n_in);
    let w = random_matrix(rng, n_out, n_in);
    let bias: Vec<f32> = (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect();
    for activation in ACTIVATIONS {
        let mut expected = Matrix::zeros(m, n_out);
        reference::dense_forward(x.as_ref(), w.as_ref(), &bias, activation, expected.as_mut())
            .unwrap();
        let what = format!("{arch:?} {m}×{n_in}→{n_out} {activation:?}");

        let mut out = Matrix::from_fn(m, n_out, |_, _| f32::NAN);
        let par = Parallelism::Sequential;
        dense_forward_with_arch(
            arch,
            x.as_ref(),
            w.as_ref(),
            &bias,
            activation,
            out.as_mut(),
            par,
        )
        .unwrap();
        assert_close(&what, out.as_ref(), expected.as_ref(), n_in);

        let (x_strided, mut out_strided) = (column_major_padded(&x), column_major_padded(&out));
        dense_forward_with_arch(
            arch,
            x_strided.view(),
            w.as_ref(),
            &bias,
            activation,
            out_strided.view_mut(),
            par,
        )
        .unwrap();
        let what = format!("{what}, strided");
        assert_close(&what, out_strided.view(), expected.as_ref(), n_in);
    }
}

/// Compares `dense_backward_with_arch` with the reference for every element-wise input
/// activation, in both gradient modes, with transposed and padded `δ` and `X`.
fn check_backward(arch: Arch, rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) {
    check_backward_in(arch, rng, shape, column_major_padded);
}

/// Compares `dense_backward_with_arch` with the reference, with `δ`, `X` and every output
/// laid out by `layout`, in both gradient modes, and without `input_delta`.
fn check_backward_in(
    arch: Arch,
    rng: &mut ChaCha8Rng,
    shape: (usize, usize, usize),
    layout: fn(&Matrix) -> Strided,
) {
    let (m, n_in, n_out) = shape;
    for input_activation in &ACTIVATIONS[..5] {
        let input_activation = *input_activation;
        let x = layer_input(rng, input_activation, m, n_in);
        let w = random_matrix(rng, n_out, n_in);
        let delta = random_matrix(rng, m, n_out);
        let expected =
            reference::dense_backward(x.as_ref(), w.as_ref(), delta.as_ref(), input_activation)
                .unwrap();
        let what = format!("{arch:?} {m}×{n_in}→{n_out} {input_activation:?}");

        let (delta_s, x_s) = (layout(&delta), layout(&x));
        let backward = |grad_w: &mut Strided,
                        grad_b: &mut [f32],
                        mode: GradMode,
                        input_delta: Option<&mut Strided>| {
            dense_backward_with_arch(
                arch,
                delta_s.view(),
                x_s.view(),
                w.as_ref(),
                input_activation,
                DenseGrads {
                    weights: grad_w.view_mut(),
                    bias: grad_b,
                    mode,
                },
                input_delta.map(|view| view.view_mut()),
                Parallelism::Sequential,
            )
            .unwrap();
        };

        for (mode, start) in [(GradMode::Overwrite, f32::NAN), (GradMode::Accumulate, 0.5)] {
            // A padded weight gradient, so partial gradients are added through strides.
            let mut grad_w = layout(&Matrix::from_fn(n_out, n_in, |_, _| start));
            let mut grad_b = vec![start; n_out];
            let mut input_delta = layout(&Matrix::from_fn(m, n_in, |_, _| f32::NAN));
            backward(&mut grad_w, &mut grad_b, mode, Some(&mut input_delta));

            let offset = if mode == GradMode::Accumulate {
                start
            } else {
                0.0
            };
            let want_w = Matrix::from_fn(n_out, n_in, |o, k| {
                expected.grad_weights.get(o, k).unwrap() + offset
            });
            let want_b = Matrix::from_fn(1, n_out, |_, o| expected.grad_bias[o] + offset);
            let grad_b = Matrix::from_vec(grad_b, 1, n_out).unwrap();
            let what = format!("{what} {mode:?}");
            assert_close(&format!("{what}: dW"), grad_w.view(), want_w.as_ref(), m);
            assert_close(&format!("{what}: db"), grad_b.as_ref(), want_b.as_ref(), m);
            assert_close(
                &format!("{what}: input_delta"),
                input_delta.view(),
                expected.delta_prev.as_ref(),
                n_out,
            );
        }

        // A first layer: no input_delta, so dW and db alone, over NaN.
        let mut grad_w = layout(&Matrix::from_fn(n_out, n_in, |_, _| f32::NAN));
        let mut grad_b = vec![f32::NAN; n_out];
        backward(&mut grad_w, &mut grad_b, GradMode::Overwrite, None);
        let what = format!("{what} without input_delta");
        let want_w = expected.grad_weights.as_ref();
        let want_b = Matrix::from_vec(expected.grad_bias.clone(), 1, n_out).unwrap();
        let grad_b = Matrix::from_vec(grad_b, 1, n_out).unwrap();
        assert_close(&format!("{what}: dW"), grad_w.view(), want_w, m);
        assert_close(&format!("{what}: db"), grad_b.as_ref(), want_b.as_ref(), m);
    }
}

#[test]
fn narrow_layers_match_reference() {
    // Layers with 1 to 14 outputs whose matrices have contiguous rows take a kernel of
    // their own, which sweeps the samples once for both products. Every output count up
    // to one past that limit, inputs around one and two vectors of every path, and
    // batches of one sample and of two sample blocks.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let batches = [
        (1, 16),
        (7, 1),
        (5, 7),
        (9, 8),
        (6, 9),
        (3, 15),
        (4, 17),
        (11, 33),
        (1100, 10),
    ];
    for arch in Arch::supported() {
        for n_out in 1..=15 {
            for (m, n_in) in batches {
                check_backward_in(arch, &mut rng, (m, n_in, n_out), row_major_padded);
            }
        }
    }
}

#[test]
fn single_sample_matches_reference() {
    // One sample through a layer, or a layer with one output, takes the dot-product path
    // with the bias and activation applied element by element. A layer with one input
    // takes it for the backward pass, with the derivative applied the same way.
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for arch in Arch::supported() {
        let shapes = [
            (1, 16, 1),
            (1, 17, 33),
            (1, 40, 7),
            (1, 784, 10),
            (9, 40, 1),
            (1, 1, 33),
            (5, 1, 40),
        ];
        for shape in shapes {
            check_forward(arch, &mut rng, shape);
            check_backward(arch, &mut rng, shape);
        }
    }
}

#[test]
fn paths_match_reference_at_edges() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for arch in Arch::supported() {
        for shape in edge_shapes(arch) {
            check_forward(arch, &mut rng, shape);
            check_backward(arch, &mut rng, shape);
        }
    }
}

/// Lays out `matrix` with both strides above one (rows 2 apart, columns `2·rows + 1`
/// apart), so no tile of it has contiguous columns.
fn doubly_strided(matrix: &Matrix) -> Strided {
    let (rows, cols) = (matrix.rows(), matrix.cols());
    let mut strided = Strided {
        data: vec![f32::NAN; (2 * rows + 1) * cols.max(1)],
        offset: 0,
        rows,
        cols,
        row_stride: 2,
        col_stride: (2 * rows + 1) as isize,
    };
    strided.view_mut().copy_from(matrix.as_ref()).unwrap();
    strided
}

/// Asserts that `actual` and `expected` hold the same bits.
fn assert_bitwise(what: &str, actual: MatRef, expected: MatRef) {
    for i in 0..expected.rows() {
        for j in 0..expected.cols() {
            let (a, e) = (actual.get(i, j).unwrap(), expected.get(i, j).unwrap());
            assert_eq!(
                a.to_bits(),
                e.to_bits(),
                "{what}: ({i}, {j}) is {a}, expected {e}"
            );
        }
    }
}

#[test]
fn backward_weight_offsets_bitwise_equal() {
    // The `δ·W` product reads W in place when its columns (W's rows) start on cache lines.
    // With a row stride of a whole number of lines, the rows above the first line run as a
    // product of their own, so that the rest qualifies wherever the buffer starts. W at
    // each of the 16 element offsets in a line must give the same bits for `δ_prev`,
    // derivative included, and the first must match the reference.
    const LINE: usize = 16;
    let (m, n_in, n_out) = (20, 272, 96);
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let x = layer_input(&mut rng, Activation::Relu, m, n_in);
    let w = random_matrix(&mut rng, n_out, n_in);
    let delta = random_matrix(&mut rng, m, n_out);
    let expected =
        reference::dense_backward(x.as_ref(), w.as_ref(), delta.as_ref(), Activation::Relu)
            .unwrap();

    for arch in Arch::supported() {
        let mut first: Option<Matrix> = None;
        for offset in 0..LINE {
            let mut w_data = vec![f32::NAN; offset];
            w_data.extend_from_slice(w.as_slice());
            let w_view =
                MatRef::from_strided(&w_data, offset, n_out, n_in, n_in as isize, 1).unwrap();
            let mut grad_w = Matrix::zeros(n_out, n_in);
            let mut grad_b = vec![0.0; n_out];
            let mut input_delta = Matrix::from_fn(m, n_in, |_, _| f32::NAN);
            dense_backward_with_arch(
                arch,
                delta.as_ref(),
                x.as_ref(),
                w_view,
                Activation::Relu,
                DenseGrads {
                    weights: grad_w.as_mut(),
                    bias: &mut grad_b,
                    mode: GradMode::Overwrite,
                },
                Some(input_delta.as_mut()),
                Parallelism::Sequential,
            )
            .unwrap();

            let what = format!("{arch:?} W at offset {offset}: input_delta");
            match &first {
                None => {
                    let want = expected.delta_prev.as_ref();
                    assert_close(&what, input_delta.as_ref(), want, n_out);
                    first = Some(input_delta);
                }
                Some(first) => assert_bitwise(&what, input_delta.as_ref(), first.as_ref()),
            }
        }
    }
}

#[test]
fn epilogue_paths_bitwise_equal() {
    // A contiguous output applies the bias, activation and derivative in a pass over the
    // stored full row tiles, and inside the kernel for a partial one. An output without a
    // unit stride applies them inside the kernel everywhere. Both must give the same bits.
    // 50 outputs are three full AVX-512 vectors and a partial one, 40 samples two full
    // vectors and a partial one. One sample takes the dot-product path, which applies the
    // steps in a pass over a contiguous output row and element by element otherwise.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (n_in, n_out) = (37, 50);
    for (arch, m) in Arch::supported()
        .into_iter()
        .flat_map(|arch| [(arch, 40), (arch, 1)])
    {
        for activation in &ACTIVATIONS[..5] {
            let activation = *activation;
            let what = format!("{arch:?} m = {m} {activation:?}");
            let x = layer_input(&mut rng, activation, m, n_in);
            let w = random_matrix(&mut rng, n_out, n_in);
            let bias: Vec<f32> = (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect();
            let par = Parallelism::Sequential;

            let mut out = Matrix::zeros(m, n_out);
            let mut out_strided = doubly_strided(&out);
            for view in [out.as_mut(), out_strided.view_mut()] {
                dense_forward_with_arch(arch, x.as_ref(), w.as_ref(), &bias, activation, view, par)
                    .unwrap();
            }
            assert_bitwise(&format!("{what} forward"), out_strided.view(), out.as_ref());

            let delta = random_matrix(&mut rng, m, n_out);
            let mut input_delta = Matrix::zeros(m, n_in);
            let mut input_delta_strided = doubly_strided(&input_delta);
            for view in [input_delta.as_mut(), input_delta_strided.view_mut()] {
                let mut grad_w = Matrix::zeros(n_out, n_in);
                let mut grad_b = vec![0.0; n_out];
                let grads = DenseGrads {
                    weights: grad_w.as_mut(),
                    bias: &mut grad_b,
                    mode: GradMode::Overwrite,
                };
                dense_backward_with_arch(
                    arch,
                    delta.as_ref(),
                    x.as_ref(),
                    w.as_ref(),
                    activation,
                    grads,
                    Some(view),
                    par,
                )
                .unwrap();
            }
            assert_bitwise(
                &format!("{what} input_delta"),
                input_delta_strided.view(),
                input_delta.as_ref(),
            );
        }
    }
}

/// Parameters of a three-layer network 5 → 7 (tanh) → 6 (sigmoid) → 4 (softmax), as
/// (weights, bias) per layer.
struct Network {
    layers: Vec<(Matrix, Vec<f32>)>,
}

const NETWORK_SIZES: [usize; 4] = [5, 7, 6, 4];
const HIDDEN: [Activation; 2] = [Activation::Tanh, Activation::Sigmoid];

impl Network {
    fn parameters(&self) -> Vec<f32> {
        let mut all = Vec::new();
        for (w, b) in &self.layers {
            all.extend_from_slice(w.as_slice());
            all.extend_from_slice(b);
        }
        all
    }

    fn from_parameters(values: &[f32]) -> Network {
        let mut layers = Vec::new();
        let mut rest = values;
        for pair in NETWORK_SIZES.windows(2) {
            let (n_in, n_out) = (pair[0], pair[1]);
            let (w, tail) = rest.split_at(n_in * n_out);
            let (b, tail) = tail.split_at(n_out);
            layers.push((
                Matrix::from_vec(w.to_vec(), n_out, n_in).unwrap(),
                b.to_vec(),
            ));
            rest = tail;
        }
        Network { layers }
    }

    /// Returns every layer's input and the logits of the last layer.
    fn forward(&self, x: &Matrix) -> (Vec<Matrix>, Matrix) {
        let mut inputs = vec![x.clone()];
        for (l, (w, b)) in self.layers.iter().enumerate() {
            let activation = HIDDEN.get(l).copied().unwrap_or(Activation::Identity);
            let input = inputs.last().unwrap();
            let mut out = Matrix::zeros(x.rows(), w.rows());
            let par = Parallelism::Sequential;
            dense_forward(input.as_ref(), w.as_ref(), b, activation, out.as_mut(), par).unwrap();
            inputs.push(out);
        }
        let logits = inputs.pop().unwrap();
        (inputs, logits)
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let m = 3;
    let x = random_matrix(&mut rng, m, NETWORK_SIZES[0]);
    let classes = [2, 0, 3];
    let mut layers = Vec::new();
    for pair in NETWORK_SIZES.windows(2) {
        let bias = (0..pair[1]).map(|_| rng.random_range(-0.5..0.5)).collect();
        layers.push((random_matrix(&mut rng, pair[1], pair[0]), bias));
    }
    let network = Network { layers };

    // Analytic gradients: the loss gives δ of the logits, then one backward call per layer.
    let (inputs, logits) = network.forward(&x);
    let mut delta = Matrix::zeros(m, NETWORK_SIZES[3]);
    loss::softmax_cross_entropy(logits.as_ref(), Targets::Classes(&classes), delta.as_mut())
        .unwrap();
    let mut analytic = vec![Vec::new(); 3];
    for l in (0..3).rev() {
        let (w, _) = &network.layers[l];
        let input_activation = if l == 0 {
            Activation::Identity
        } else {
            HIDDEN[l - 1]
        };
        let par = Parallelism::Sequential;
        let (grad_w, grad_b, input_delta) =
            backward_overwrite(&delta, &inputs[l], w, input_activation, 0.0, par);
        analytic[l] = grad_w.into_vec();
        analytic[l].extend(grad_b);
        delta = input_delta;
    }
    let analytic: Vec<f32> = analytic.concat();

    // The same loss in f64 from the logits, by log-sum-exp.
    let cost = |values: &[f32]| {
        let (_, logits) = Network::from_parameters(values).forward(&x);
        let mut total = 0.0;
        for (i, &class) in classes.iter().enumerate() {
            let row = row_f64(&logits, i);
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = row.iter().map(|z| (z - max).exp()).sum::<f64>().ln() + max;
            total += log_sum - row[class];
        }
        total / m as f64
    };
    let numeric = reference::numerical_gradient(cost, &network.parameters(), 1e-2).unwrap();

    assert_eq!(analytic.len(), numeric.len());
    for (p, (&a, &n)) in analytic.iter().zip(&numeric).enumerate() {
        let a = f64::from(a);
        assert!(
            (a - n).abs() <= 2e-3 + 2e-2 * n.abs(),
            "parameter {p}: analytic {a}, finite difference {n}"
        );
    }
}

#[test]
fn forward_errors_name_operand() {
    let (x, w) = (Matrix::zeros(4, 3), Matrix::zeros(2, 3));
    let mut out = Matrix::zeros(4, 2);
    let par = Parallelism::Sequential;
    let relu = Activation::Relu;

    let w_bad = Matrix::zeros(2, 4);
    let err = dense_forward(
        x.as_ref(),
        w_bad.as_ref(),
        &[0.0; 2],
        relu,
        out.as_mut(),
        par,
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "weights: expected 2 × 3, got 2 × 4"
    );

    let err = dense_forward(x.as_ref(), w.as_ref(), &[0.0; 3], relu, out.as_mut(), par);
    assert_eq!(
        err.unwrap_err().to_string(),
        "bias: expected length 2, got 3"
    );

    let mut out_bad = Matrix::zeros(2, 4);
    let err = dense_forward(
        x.as_ref(),
        w.as_ref(),
        &[0.0; 2],
        relu,
        out_bad.as_mut(),
        par,
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "output: expected 4 × 2, got 2 × 4"
    );

    let leaky = Activation::LeakyRelu { slope: f32::NAN };
    let err = dense_forward(x.as_ref(), w.as_ref(), &[0.0; 2], leaky, out.as_mut(), par);
    assert!(matches!(
        err,
        Err(Error::InvalidArgument {
            operand: "activation",
            ..
        })
    ));
}

#[test]
fn backward_errors_name_operand() {
    let (x, w, delta) = (
        Matrix::zeros(4, 3),
        Matrix::zeros(2, 3),
        Matrix::zeros(4, 2),
    );
    let par = Parallelism::Sequential;
    let identity = Activation::Identity;
    let mut grad_w = Matrix::zeros(2, 3);
    let mut grad_b = [0.0; 2];
    let mut input_delta = Matrix::zeros(4, 3);
    let call = |delta: MatRef,
                w: MatRef,
                activation: Activation,
                grad_w: MatMut,
                grad_b: &mut [f32],
                input_delta: Option<MatMut>| {
        let grads = DenseGrads {
            weights: grad_w,
            bias: grad_b,
            mode: GradMode::Overwrite,
        };
        dense_backward(delta, x.as_ref(), w, activation, grads, input_delta, par)
            .unwrap_err()
            .to_string()
    };

    let w_bad = Matrix::zeros(2, 5);
    let err = call(
        delta.as_ref(),
        w_bad.as_ref(),
        identity,
        grad_w.as_mut(),
        &mut grad_b,
        None,
    );
    assert_eq!(err, "weights: expected 2 × 3, got 2 × 5");

    let delta_bad = Matrix::zeros(3, 2);
    let err = call(
        delta_bad.as_ref(),
        w.as_ref(),
        identity,
        grad_w.as_mut(),
        &mut grad_b,
        None,
    );
    assert_eq!(err, "delta: expected 4 × 2, got 3 × 2");

    let mut grad_w_bad = Matrix::zeros(3, 2);
    let err = call(
        delta.as_ref(),
        w.as_ref(),
        identity,
        grad_w_bad.as_mut(),
        &mut grad_b,
        None,
    );
    assert_eq!(err, "grads.weights: expected 2 × 3, got 3 × 2");

    let err = call(
        delta.as_ref(),
        w.as_ref(),
        identity,
        grad_w.as_mut(),
        &mut [0.0; 3],
        None,
    );
    assert_eq!(err, "grads.bias: expected length 2, got 3");

    let mut input_delta_bad = Matrix::zeros(4, 2);
    let err = call(
        delta.as_ref(),
        w.as_ref(),
        identity,
        grad_w.as_mut(),
        &mut grad_b,
        Some(input_delta_bad.as_mut()),
    );
    assert_eq!(err, "input_delta: expected 4 × 3, got 4 × 2");

    let err = call(
        delta.as_ref(),
        w.as_ref(),
        Activation::Softmax,
        grad_w.as_mut(),
        &mut grad_b,
        Some(input_delta.as_mut()),
    );
    assert!(
        err.starts_with("input_activation: softmax has no element-wise derivative"),
        "{err}"
    );

    let leaky = Activation::LeakyRelu { slope: -1.0 };
    let err = call(
        delta.as_ref(),
        w.as_ref(),
        leaky,
        grad_w.as_mut(),
        &mut grad_b,
        None,
    );
    assert!(
        err.starts_with("input_activation: leaky ReLU slope -1"),
        "{err}"
    );
}

#[test]
fn forward_transposed_weights_named() {
    let x = Matrix::zeros(2, 784);
    let w_transposed = Matrix::zeros(784, 256);
    let mut out = Matrix::zeros(2, 256);
    let err = dense_forward(
        x.as_ref(),
        w_transposed.as_ref(),
        &[0.0; 256],
        Activation::Relu,
        out.as_mut(),
        Parallelism::Sequential,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "weights: expected 256 × 784, got 784 × 256"
    );
}

#[test]
fn single_sample_huge_row_strides() {
    // A one-row view may have any row stride. With 2^62 for every batch operand the
    // results equal those of contiguous views, bit for bit.
    const HUGE: isize = 1 << 62;
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (n_in, n_out) = (37, 20);
    let x = layer_input(&mut rng, Activation::Relu, 1, n_in);
    let w = random_matrix(&mut rng, n_out, n_in);
    let bias: Vec<f32> = (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect();
    let delta = random_matrix(&mut rng, 1, n_out);
    let one_row = |data| MatRef::from_strided(data, 0, 1, data.len(), HUGE, 1).unwrap();

    let mut expected = Matrix::zeros(1, n_out);
    let mut output = vec![f32::NAN; n_out];
    for (input, out) in [
        (x.as_ref(), expected.as_mut()),
        (
            one_row(x.as_slice()),
            MatMut::from_strided(&mut output, 0, 1, n_out, HUGE, 1).unwrap(),
        ),
    ] {
        dense_forward(
            input,
            w.as_ref(),
            &bias,
            Activation::Tanh,
            out,
            Parallelism::Sequential,
        )
        .unwrap();
    }
    assert_bitwise(
        "output",
        MatRef::from_slice(&output, 1, n_out).unwrap(),
        expected.as_ref(),
    );

    let (grad_w, grad_b, input_delta) = backward_overwrite(
        &delta,
        &x,
        &w,
        Activation::Relu,
        0.0,
        Parallelism::Sequential,
    );
    let mut strided_w = Matrix::zeros(n_out, n_in);
    let mut strided_b = vec![0.0; n_out];
    let mut strided_delta = vec![f32::NAN; n_in];
    dense_backward(
        one_row(delta.as_slice()),
        one_row(x.as_slice()),
        w.as_ref(),
        Activation::Relu,
        DenseGrads {
            weights: strided_w.as_mut(),
            bias: &mut strided_b,
            mode: GradMode::Overwrite,
        },
        Some(MatMut::from_strided(&mut strided_delta, 0, 1, n_in, HUGE, 1).unwrap()),
        Parallelism::Sequential,
    )
    .unwrap();
    assert_bitwise("grad_weights", strided_w.as_ref(), grad_w.as_ref());
    assert_eq!(strided_b, grad_b);
    let strided_delta = MatRef::from_slice(&strided_delta, 1, n_in).unwrap();
    assert_bitwise("input_delta", strided_delta, input_delta.as_ref());
}
