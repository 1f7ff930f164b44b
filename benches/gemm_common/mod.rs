//! Operands and peer calls shared by the GEMM benchmarks: `C ← A·B` on strided views through
//! densegrad, matrixmultiply, gemm and faer, and one product in the `ab`, `atb` or `abt`
//! layout.

// Each benchmark binary uses only some of these items.
#![allow(dead_code)]

use densegrad::{MatMut, MatRef, Parallelism};

/// Operand layouts: `C = A·B`, `C = Aᵀ·B` and `C = A·Bᵀ`.
#[derive(Clone, Copy)]
pub enum Op {
    Ab,
    AtB,
    ABt,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Ab, Op::AtB, Op::ABt];

    pub fn name(self) -> &'static str {
        match self {
            Op::Ab => "ab",
            Op::AtB => "atb",
            Op::ABt => "abt",
        }
    }
}

/// A strided `rows × cols` view of a slice: element (i, j) at
/// `data[i·row_stride + j·col_stride]`. The constructors keep every element inside `data`,
/// which the raw-pointer peer calls below rely on.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> View<'a> {
    /// Views `data` as a row-major `rows × cols` matrix.
    ///
    /// # Panics
    ///
    /// Panics if `data` does not have `rows · cols` elements.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> View<'a> {
        assert_eq!(data.len(), rows * cols, "row-major view of {rows} × {cols}");
        View {
            data,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// Returns the transpose: the same elements with rows and columns swapped.
    pub fn t(self) -> View<'a> {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn mat_ref(self) -> MatRef<'a> {
        MatRef::from_strided(
            self.data,
            0,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
        .unwrap()
    }
}

/// The operands of one benchmark: row-major storage and the strides that give the op.
pub struct Problem {
    m: usize,
    k: usize,
    n: usize,
    op: Op,
    a: Vec<f32>,
    b: Vec<f32>,
    pub c: Vec<f32>,
}

impl Problem {
    pub fn new(m: usize, k: usize, n: usize, op: Op) -> Problem {
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7 + seed) % 23) as f32 / 23.0 - 0.5)
                .collect()
        };
        Problem {
            m,
            k,
            n,
            op,
            a: fill(m * k, 1),
            b: fill(k * n, 2),
            c: vec![0.0; m * n],
        }
    }

    pub fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// Returns A as an `m × k` view (stored `k × m` for `atb`), B as a `k × n` view (stored
    /// `n × k` for `abt`), and C.
    fn operands(&mut self) -> (View<'_>, View<'_>, &mut [f32]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let a = match self.op {
            Op::AtB => View::row_major(&self.a, k, m).t(),
            Op::Ab | Op::ABt => View::row_major(&self.a, m, k),
        };
        let b = match self.op {
            Op::ABt => View::row_major(&self.b, n, k).t(),
            Op::Ab | Op::AtB => View::row_major(&self.b, k, n),
        };
        (a, b, &mut self.c)
    }

    pub fn run_densegrad(&mut self, par: Parallelism) {
        let (a, b, c) = self.operands();
        densegrad_product(a, b, c, par);
    }

    pub fn run_matrixmultiply(&mut self) {
        let (a, b, c) = self.operands();
        matrixmultiply_product(a, b, c);
    }

    pub fn run_gemm(&mut self, threads: usize) {
        let (a, b, c) = self.operands();
        gemm_product(a, b, c, threads);
    }

    pub fn run_faer(&mut self, threads: usize) {
        let (a, b, c) = self.operands();
        faer_product(a, b, c, threads);
    }
}

/// Returns densegrad's parallelism for `threads` threads.
pub fn parallelism(threads: usize) -> Parallelism {
    if threads == 1 {
        Parallelism::Sequential
    } else {
        Parallelism::Rayon(threads)
    }
}

/// Asserts that `c` is a row-major buffer for the product `a·b`, and returns (m, k, n).
fn product_dims(a: View, b: View, c: &[f32]) -> (usize, usize, usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions of a·b");
    assert_eq!(c.len(), a.rows * b.cols, "length of c for a·b");
    (a.rows, a.cols, b.cols)
}

/// Computes `c ← a·b` with `densegrad::gemm`, where `c` is a row-major `a.rows × b.cols`
/// buffer. The other products below take `c` in the same form.
pub fn densegrad_product(a: View, b: View, c: &mut [f32], par: Parallelism) {
    let (m, _, n) = product_dims(a, b, c);
    let c = MatMut::from_slice(c, m, n).unwrap();
    densegrad::gemm(1.0, a.mat_ref(), b.mat_ref(), 0.0, c, par).unwrap();
}

/// Computes `c ← a·b` with `matrixmultiply::sgemm`, which runs on one thread here because the
/// crate is built without its `threading` feature.
pub fn matrixmultiply_product(a: View, b: View, c: &mut [f32]) {
    let (m, k, n) = product_dims(a, b, c);
    // SAFETY: `View`'s constructors keep every element of `a` and `b` inside their slices,
    // and `product_dims` checked that `c` is a row-major `m × n` buffer.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride,
            a.col_stride,
            b.data.as_ptr(),
            b.row_stride,
            b.col_stride,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Computes `c ← a·b` with `gemm::gemm` (the `gemm` crate) on `threads` threads.
pub fn gemm_product(a: View, b: View, c: &mut [f32], threads: usize) {
    let (m, k, n) = product_dims(a, b, c);
    let parallelism = if threads == 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: as for `matrixmultiply_product`. gemm computes `dst = α·dst + β·lhs·rhs` and
    // takes column strides before row strides, and `read_dst = false` ignores the old C.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Computes `c ← a·b` with faer's `matmul` on `threads` threads.
pub fn faer_product(a: View, b: View, c: &mut [f32], threads: usize) {
    let (m, k, n) = product_dims(a, b, c);
    let par = if threads == 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(threads)
    };
    // SAFETY: `View`'s constructors keep every element of `a` and `b` inside their slices,
    // which stay borrowed while faer reads them.
    let (a, b) = unsafe {
        (
            faer::MatRef::from_raw_parts(a.data.as_ptr(), m, k, a.row_stride, a.col_stride),
            faer::MatRef::from_raw_parts(b.data.as_ptr(), k, n, b.row_stride, b.col_stride),
        )
    };
    let c = faer::MatMut::from_row_major_slice_mut(c, m, n);
    faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, 1.0, par);
}
