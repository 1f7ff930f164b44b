//! Operands and peer calls shared by the SGEMM benchmarks: one product in the `ab`, `atb`
//! or `abt` layout, runnable through densegrad, matrixmultiply, gemm and faer.

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

/// A strided operand: pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
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

    /// Returns A as `m × k`, stored `m × k`, or `k × m` for `atb`.
    fn a(&self) -> Strided {
        let (m, k) = (self.m as isize, self.k as isize);
        let (row_stride, col_stride) = match self.op {
            Op::AtB => (1, m),
            Op::Ab | Op::ABt => (k, 1),
        };
        Strided {
            ptr: self.a.as_ptr(),
            row_stride,
            col_stride,
        }
    }

    /// Returns B as `k × n`, stored `k × n`, or `n × k` for `abt`.
    fn b(&self) -> Strided {
        let (k, n) = (self.k as isize, self.n as isize);
        let (row_stride, col_stride) = match self.op {
            Op::ABt => (1, k),
            Op::Ab | Op::AtB => (n, 1),
        };
        Strided {
            ptr: self.b.as_ptr(),
            row_stride,
            col_stride,
        }
    }

    pub fn run_densegrad(&mut self, par: Parallelism) {
        let (a, b) = (self.a(), self.b());
        let a = MatRef::from_strided(&self.a, 0, self.m, self.k, a.row_stride, a.col_stride);
        let b = MatRef::from_strided(&self.b, 0, self.k, self.n, b.row_stride, b.col_stride);
        let c = MatMut::from_slice(&mut self.c, self.m, self.n);
        densegrad::gemm(1.0, a.unwrap(), b.unwrap(), 0.0, c.unwrap(), par).unwrap();
    }

    pub fn run_matrixmultiply(&mut self) {
        let (a, b) = (self.a(), self.b());
        // SAFETY: the strides describe `m × k` and `k × n` views inside `self.a` and
        // `self.b`, and `self.c` is a row-major `m × n` buffer.
        unsafe {
            matrixmultiply::sgemm(
                self.m,
                self.k,
                self.n,
                1.0,
                a.ptr,
                a.row_stride,
                a.col_stride,
                b.ptr,
                b.row_stride,
                b.col_stride,
                0.0,
                self.c.as_mut_ptr(),
                self.n as isize,
                1,
            );
        }
    }

    pub fn run_gemm(&mut self, threads: usize) {
        let (a, b) = (self.a(), self.b());
        let parallelism = if threads == 1 {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(threads)
        };
        // SAFETY: as for matrixmultiply. gemm computes `dst = α·dst + β·lhs·rhs` and takes
        // column strides before row strides; `read_dst = false` ignores the old C.
        unsafe {
            gemm::gemm(
                self.m,
                self.n,
                self.k,
                self.c.as_mut_ptr(),
                1,
                self.n as isize,
                false,
                a.ptr,
                a.col_stride,
                a.row_stride,
                b.ptr,
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

    pub fn run_faer(&mut self, threads: usize) {
        let par = if threads == 1 {
            faer::Par::Seq
        } else {
            faer::Par::rayon(threads)
        };
        let (m, k, n) = (self.m, self.k, self.n);
        let a = match self.op {
            Op::AtB => faer::MatRef::from_row_major_slice(&self.a, k, m).transpose(),
            Op::Ab | Op::ABt => faer::MatRef::from_row_major_slice(&self.a, m, k),
        };
        let b = match self.op {
            Op::ABt => faer::MatRef::from_row_major_slice(&self.b, n, k).transpose(),
            Op::Ab | Op::AtB => faer::MatRef::from_row_major_slice(&self.b, k, n),
        };
        let c = faer::MatMut::from_row_major_slice_mut(&mut self.c, m, n);
        faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, 1.0, par);
    }
}
