//! SIMD micro-kernels per instruction set, and the run-time dispatch between them.
