//! Cache-blocked GEMM: blocking sizes, packing and the loop nest.
