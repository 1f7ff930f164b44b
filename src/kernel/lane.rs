//! SIMD lanes: the few vector operations the micro-kernel body needs, one type per
//! instruction set.
//!
//! A lane value can only be created through an `unsafe` constructor whose contract is that
//! the CPU supports the lane's instruction set. Every value therefore proves that support,
//! so the arithmetic on existing values is safe.

/// The widest lane of any path, in `f32` elements.
pub(crate) const MAX_WIDTH: usize = 16;

/// A vector of `WIDTH` `f32` elements.
pub(crate) trait Lane: Copy {
    /// Number of `f32` elements in one vector.
    const WIDTH: usize;

    /// Number of values of this type that the registers can hold at once.
    const REGISTERS: usize;

    /// Returns a vector of zeros.
    ///
    /// # Safety
    ///
    /// The CPU supports the lane's instruction set.
    unsafe fn zero() -> Self;

    /// Returns a vector with every element equal to `x`.
    ///
    /// # Safety
    ///
    /// The CPU supports the lane's instruction set.
    unsafe fn splat(x: f32) -> Self;

    /// Loads `WIDTH` elements from `ptr`, which need not be aligned.
    ///
    /// # Safety
    ///
    /// The CPU supports the lane's instruction set, and `ptr..ptr + WIDTH` is readable.
    unsafe fn load(ptr: *const f32) -> Self;

    /// Stores the `WIDTH` elements to `ptr`, which need not be aligned.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + WIDTH` is writable and not borrowed elsewhere.
    unsafe fn store(self, ptr: *mut f32);

    /// Loads the first `len` elements from `ptr` and sets the other lanes to zero. Memory
    /// from `ptr + len` on is not read.
    ///
    /// The default goes through a buffer on the stack; instruction sets with masked loads
    /// override it.
    ///
    /// # Safety
    ///
    /// The CPU supports the lane's instruction set, `len ≤ WIDTH`, and `ptr..ptr + len` is
    /// readable.
    #[inline(always)]
    unsafe fn load_first(ptr: *const f32, len: usize) -> Self {
        const { assert!(Self::WIDTH <= MAX_WIDTH) };
        let mut buffer = [0.0f32; MAX_WIDTH];
        // SAFETY: the caller guarantees `len ≤ WIDTH ≤ MAX_WIDTH` readable elements, and
        // the buffer is a separate local.
        unsafe { std::ptr::copy_nonoverlapping(ptr, buffer.as_mut_ptr(), len) };
        // SAFETY: the buffer has room for MAX_WIDTH ≥ WIDTH elements; the caller
        // guarantees support.
        unsafe { Self::load(buffer.as_ptr()) }
    }

    /// Stores the first `len` elements to `ptr`. Memory from `ptr + len` on is neither
    /// read nor written.
    ///
    /// # Safety
    ///
    /// `len ≤ WIDTH`, and `ptr..ptr + len` is writable and not borrowed elsewhere.
    #[inline(always)]
    unsafe fn store_first(self, ptr: *mut f32, len: usize) {
        const { assert!(Self::WIDTH <= MAX_WIDTH) };
        let mut buffer = [0.0f32; MAX_WIDTH];
        // SAFETY: the buffer has room for MAX_WIDTH ≥ WIDTH elements.
        unsafe { self.store(buffer.as_mut_ptr()) };
        // SAFETY: the caller guarantees `len ≤ WIDTH` writable elements at `ptr`.
        unsafe { std::ptr::copy_nonoverlapping(buffer.as_ptr(), ptr, len) };
    }

    /// Returns the sum of the `WIDTH` elements, added in order.
    #[inline(always)]
    fn sum(self) -> f32 {
        const { assert!(Self::WIDTH <= MAX_WIDTH) };
        let mut lanes = [0.0f32; MAX_WIDTH];
        // SAFETY: `lanes` has room for MAX_WIDTH ≥ WIDTH elements.
        unsafe { self.store(lanes.as_mut_ptr()) };
        lanes[..Self::WIDTH].iter().sum()
    }

    /// Returns the sum of the elements of each of the `N` vectors.
    ///
    /// Each sum adds the elements in the same order whatever the vector's place in `v`, so
    /// a caller may repeat a vector to fill the array. This default sums each vector with
    /// [`sum`](Lane::sum). An instruction set may instead add the vectors' halves and
    /// quarters across vectors first, so that the shuffles and adds serve several
    /// vectors at once.
    #[inline(always)]
    fn sums<const N: usize>(v: &[Self; N]) -> [f32; N] {
        let mut sums = [0.0; N];
        for (sum, vector) in sums.iter_mut().zip(v) {
            *sum = vector.sum();
        }
        sums
    }

    /// Returns `self · b + c`, fused where the instruction set has FMA.
    fn mul_add(self, b: Self, c: Self) -> Self;

    /// Returns `self · b`.
    fn mul(self, b: Self) -> Self;

    /// Returns `self + b`.
    fn add(self, b: Self) -> Self;

    /// Returns `self − b`.
    fn sub(self, b: Self) -> Self;

    /// Returns, per element, `if_positive` where `self > 0` and `otherwise` elsewhere
    /// (NaN and both zeros are not positive).
    fn select_positive(self, if_positive: Self, otherwise: Self) -> Self;
}

/// Portable lanes on the `wide` crate: eight `f32` in whatever registers the build's target
/// features allow (two SSE2 registers on a default x86-64 build, NEON on aarch64).
#[derive(Clone, Copy)]
pub(crate) struct WideF32x8(wide::f32x8);

impl Lane for WideF32x8 {
    const WIDTH: usize = 8;

    /// Each value takes two of the 16 SSE registers of a default x86-64 build.
    const REGISTERS: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(wide::f32x8::ZERO)
    }

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(wide::f32x8::splat(x))
    }

    #[inline(always)]
    unsafe fn load(ptr: *const f32) -> Self {
        // SAFETY: the caller guarantees that eight elements from `ptr` are readable;
        // `read_unaligned` has no alignment requirement.
        Self(wide::f32x8::new(unsafe {
            ptr.cast::<[f32; 8]>().read_unaligned()
        }))
    }

    #[inline(always)]
    unsafe fn store(self, ptr: *mut f32) {
        // SAFETY: the caller guarantees that eight elements from `ptr` are writable.
        unsafe { ptr.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Self(self.0.mul_add(b.0, c.0))
    }

    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        Self(self.0 * b.0)
    }

    #[inline(always)]
    fn add(self, b: Self) -> Self {
        Self(self.0 + b.0)
    }

    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        Self(self.0 - b.0)
    }

    #[inline(always)]
    fn select_positive(self, if_positive: Self, otherwise: Self) -> Self {
        Self(
            self.0
                .simd_gt(wide::f32x8::ZERO)
                .select(if_positive.0, otherwise.0),
        )
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2F32x8, Avx512F32x16};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m256, __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    use core::arch::x86_64::{
        __m256i, __mmask16, _mm256_cmpgt_epi32, _mm256_maskload_ps, _mm256_maskstore_ps,
        _mm256_set1_epi32, _mm256_setr_epi32, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
    };
    use core::arch::x86_64::{
        _CMP_GT_OQ, _mm256_add_ps, _mm256_blendv_ps, _mm256_cmp_ps, _mm256_sub_ps, _mm512_add_ps,
        _mm512_cmp_ps_mask, _mm512_mask_blend_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps,
        _mm512_sub_ps,
    };
    use core::arch::x86_64::{_mm256_permute2f128_ps, _mm256_shuffle_ps};

    use super::Lane;

    /// Returns the AVX-512 mask whose first `len ≤ 16` bits are set.
    #[inline(always)]
    fn avx512_first_mask(len: usize) -> __mmask16 {
        // `len ≤ 16`, so the shift stays inside `u32` and the result inside 16 bits.
        ((1u32 << len) - 1) as __mmask16
    }

    /// Eight `f32` in an AVX register, with FMA. Values exist only on CPUs with AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2F32x8(__m256);

    impl Lane for Avx2F32x8 {
        const WIDTH: usize = 8;
        const REGISTERS: usize = 16;

        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller guarantees AVX support.
            Self(unsafe { _mm256_setzero_ps() })
        }

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the caller guarantees AVX support.
            Self(unsafe { _mm256_set1_ps(x) })
        }

        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> Self {
            // SAFETY: the caller guarantees AVX support and eight readable elements.
            Self(unsafe { _mm256_loadu_ps(ptr) })
        }

        #[inline(always)]
        unsafe fn store(self, ptr: *mut f32) {
            // SAFETY: `self` exists, so the CPU has AVX; the caller guarantees eight
            // writable elements.
            unsafe { _mm256_storeu_ps(ptr, self.0) }
        }

        #[inline(always)]
        unsafe fn load_first(ptr: *const f32, len: usize) -> Self {
            // SAFETY: the caller guarantees AVX support and `len` readable elements; the
            // masked load reads (and may fault on) only the lanes whose mask is set.
            Self(unsafe { _mm256_maskload_ps(ptr, avx2_first_mask(len)) })
        }

        #[inline(always)]
        unsafe fn store_first(self, ptr: *mut f32, len: usize) {
            // SAFETY: `self` exists, so the CPU has AVX; the caller guarantees `len`
            // writable elements, and the masked store touches only those.
            unsafe { _mm256_maskstore_ps(ptr, avx2_first_mask(len), self.0) }
        }

        #[inline(always)]
        fn sums<const N: usize>(v: &[Self; N]) -> [f32; N] {
            let mut sums = [0.0; N];
            if N == 4 {
                let mut lanes = [0.0f32; 8];
                // SAFETY: `v` has 4 vectors, whose existence proves AVX, and `lanes` has
                // room for 8 elements.
                unsafe {
                    _mm256_storeu_ps(
                        lanes.as_mut_ptr(),
                        transposed_sums4_avx(v[0].0, v[1].0, v[2].0, v[3].0),
                    )
                };
                for (index, sum) in sums.iter_mut().enumerate() {
                    *sum = lanes[4 * (index % 2) + index / 2];
                }
                return sums;
            }
            if !N.is_multiple_of(8) {
                for (sum, vector) in sums.iter_mut().zip(v) {
                    *sum = vector.sum();
                }
                return sums;
            }
            for first in (0..N).step_by(8) {
                let mut registers = [v[first].0; 8];
                for (offset, register) in registers.iter_mut().enumerate() {
                    *register = v[first + offset].0;
                }
                let mut lanes = [0.0f32; 8];
                // SAFETY: `v` has at least 8 vectors, whose existence proves AVX, and
                // `lanes` has room for 8 elements.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), transposed_sums8(&registers)) };
                for offset in 0..8 {
                    sums[first + offset] = lanes[4 * (offset % 2) + offset / 2];
                }
            }
            sums
        }

        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so a constructor ran under the promise of AVX2 and FMA.
            Self(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }

        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm256_mul_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm256_add_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm256_sub_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn select_positive(self, if_positive: Self, otherwise: Self) -> Self {
            // SAFETY: as for `mul_add`. The ordered compare is false for NaN.
            unsafe {
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, _mm256_setzero_ps());
                Self(_mm256_blendv_ps(otherwise.0, if_positive.0, positive))
            }
        }
    }

    /// Adds the elements of 8 vectors of 8 in three rounds that halve the partial sums of
    /// every vector, with 14 shuffles and 7 adds in all. Every vector's elements are added
    /// in the same tree: element `l` with `l + 4`, then those partials `k` with `k + 2`,
    /// then the last two. Lane `4c + j` of the result is the sum of vector `2j + c`.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX.
    #[inline(always)]
    unsafe fn transposed_sums8(v: &[__m256; 8]) -> __m256 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            // Round 1: 128-bit halves. The low half of `halves[i]` contains the 4 partials
            // of v[2i], the high half those of v[2i + 1].
            let mut halves = [v[0]; 4];
            for i in 0..4 {
                halves[i] = add_halves(v[2 * i], v[2 * i + 1]);
            }
            // Round 2: half c of `quarters[i]` contains two partials of v[4i + c], then
            // two of v[4i + 2 + c].
            let quarters = [
                add_pairs_of_lanes(halves[0], halves[1]),
                add_pairs_of_lanes(halves[2], halves[3]),
            ];
            // Round 3: lane j of half c contains the sum of v[2j + c].
            add_adjacent_lanes(quarters[0], quarters[1])
        }
    }

    /// Adds the elements of 4 vectors in the tree of [`transposed_sums8`], so a vector's
    /// sum does not depend on which of the two functions adds it. Lane `4c + j` of the
    /// result, for `j < 2`, is the sum of vector `2j + c`.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX.
    #[inline(always)]
    unsafe fn transposed_sums4_avx(v0: __m256, v1: __m256, v2: __m256, v3: __m256) -> __m256 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            let quarters = add_pairs_of_lanes(add_halves(v0, v1), add_halves(v2, v3));
            add_adjacent_lanes(quarters, quarters)
        }
    }

    /// Returns the low 128-bit halves of `a` and `b` plus their high halves: `a`'s four
    /// partial sums in the low half, `b`'s in the high half.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX.
    #[inline(always)]
    unsafe fn add_halves(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        }
    }

    /// Returns, within each 128-bit half, elements 0 and 1 of `a` and of `b` plus elements
    /// 2 and 3: element `k` added to element `k + 2`, `a`'s first.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX.
    #[inline(always)]
    unsafe fn add_pairs_of_lanes(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            _mm256_add_ps(
                _mm256_shuffle_ps::<0b01_00_01_00>(a, b),
                _mm256_shuffle_ps::<0b11_10_11_10>(a, b),
            )
        }
    }

    /// Returns, within each 128-bit half, elements 0 and 2 of `a` and of `b` plus elements
    /// 1 and 3: adjacent pairs added, `a`'s first.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX.
    #[inline(always)]
    unsafe fn add_adjacent_lanes(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the caller guarantees AVX.
        unsafe {
            _mm256_add_ps(
                _mm256_shuffle_ps::<EVEN>(a, b),
                _mm256_shuffle_ps::<ODD>(a, b),
            )
        }
    }

    /// Returns the AVX mask whose first `len` lanes are set (all bits of the lane) and the
    /// others clear.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX2.
    #[inline(always)]
    unsafe fn avx2_first_mask(len: usize) -> __m256i {
        // SAFETY: the caller guarantees AVX2; the compare yields all-ones where the lane
        // index is below `len`.
        unsafe {
            let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), index)
        }
    }

    /// Sixteen `f32` in an AVX-512 register. Values exist only on CPUs with AVX-512F.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512F32x16(__m512);

    /// Adds the elements of 16 vectors in four rounds, each of which halves the partial
    /// sums of every vector with two shuffles and one add per pair of registers. That is
    /// 15 adds and 30 shuffles in all, where summing each vector alone takes 15 dependent
    /// scalar adds per vector. Every vector's elements are added in the same tree: element
    /// `l` with `l + 8`, then those partials `k` with `k + 4`, then adjacent pairs, then
    /// the two halves. Lane `4c + j` of the result is the sum of vector `4j + c`.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F (`v` proves it unless empty, and it has 16 vectors).
    #[inline(always)]
    unsafe fn transposed_sums16(v: &[__m512; 16]) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe {
            // Plain index loops, not `array::from_fn`: its closures would be compiled
            // without the caller's target features.
            // Round 1: 256-bit halves. Chunks (128 bits) 0 and 1 of `halves[i]` contain
            // the 8 partials of v[2i], and chunks 2 and 3 those of v[2i + 1].
            let mut halves = [v[0]; 8];
            for i in 0..8 {
                halves[i] = add_chunks::<0b01_00_01_00, 0b11_10_11_10>(v[2 * i], v[2 * i + 1]);
            }
            // Round 2: chunk c of `quarters[i]` contains the 4 partials of v[4i + c].
            let mut quarters = [v[0]; 4];
            for i in 0..4 {
                quarters[i] = add_chunks::<EVEN, ODD>(halves[2 * i], halves[2 * i + 1]);
            }
            // Round 3: chunk c of `pairs[i]` contains two partials of v[8i + c], then two
            // of v[8i + 4 + c].
            let mut pairs = [v[0]; 2];
            for i in 0..2 {
                pairs[i] = add_lanes(quarters[2 * i], quarters[2 * i + 1]);
            }
            // Round 4: lane j of chunk c contains the sum of v[4j + c].
            add_lanes(pairs[0], pairs[1])
        }
    }

    /// Adds the elements of 4 vectors in the tree of [`transposed_sums16`], so a vector's
    /// sum does not depend on which of the two functions adds it. Lane `4c` of the result
    /// is the sum of vector `c`.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F.
    #[inline(always)]
    unsafe fn transposed_sums4(v0: __m512, v1: __m512, v2: __m512, v3: __m512) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe {
            let quarters = add_chunks::<EVEN, ODD>(
                add_chunks::<0b01_00_01_00, 0b11_10_11_10>(v0, v1),
                add_chunks::<0b01_00_01_00, 0b11_10_11_10>(v2, v3),
            );
            let pairs = add_lanes(quarters, quarters);
            add_lanes(pairs, pairs)
        }
    }

    /// Shuffle selector of parts 0 and 2 of each operand (128-bit chunks or elements).
    const EVEN: i32 = 0b10_00_10_00;
    /// Shuffle selector of parts 1 and 3 of each operand.
    const ODD: i32 = 0b11_01_11_01;

    /// Returns the sum of the two 128-bit chunk shuffles `LOW` and `HIGH` of `a` and `b`.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F.
    #[inline(always)]
    unsafe fn add_chunks<const LOW: i32, const HIGH: i32>(a: __m512, b: __m512) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<LOW>(a, b),
                _mm512_shuffle_f32x4::<HIGH>(a, b),
            )
        }
    }

    /// Returns, within each 128-bit chunk, elements 0 and 2 of `a` and of `b` plus
    /// elements 1 and 3: adjacent pairs added, `a`'s first.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F.
    #[inline(always)]
    unsafe fn add_lanes(a: __m512, b: __m512) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_ps::<EVEN>(a, b),
                _mm512_shuffle_ps::<ODD>(a, b),
            )
        }
    }

    impl Lane for Avx512F32x16 {
        const WIDTH: usize = 16;
        const REGISTERS: usize = 32;

        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller guarantees AVX-512F support.
            Self(unsafe { _mm512_setzero_ps() })
        }

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the caller guarantees AVX-512F support.
            Self(unsafe { _mm512_set1_ps(x) })
        }

        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> Self {
            // SAFETY: the caller guarantees AVX-512F support and sixteen readable elements.
            Self(unsafe { _mm512_loadu_ps(ptr) })
        }

        #[inline(always)]
        unsafe fn store(self, ptr: *mut f32) {
            // SAFETY: `self` exists, so the CPU has AVX-512F; the caller guarantees sixteen
            // writable elements.
            unsafe { _mm512_storeu_ps(ptr, self.0) }
        }

        #[inline(always)]
        unsafe fn load_first(ptr: *const f32, len: usize) -> Self {
            // SAFETY: the caller guarantees AVX-512F support and `len` readable elements;
            // masked-off lanes are neither read nor able to fault.
            Self(unsafe { _mm512_maskz_loadu_ps(avx512_first_mask(len), ptr) })
        }

        #[inline(always)]
        unsafe fn store_first(self, ptr: *mut f32, len: usize) {
            // SAFETY: `self` exists, so the CPU has AVX-512F; the caller guarantees `len`
            // writable elements, and the masked store touches only those.
            unsafe { _mm512_mask_storeu_ps(ptr, avx512_first_mask(len), self.0) }
        }

        #[inline(always)]
        fn sums<const N: usize>(v: &[Self; N]) -> [f32; N] {
            if N == 4 {
                let mut lanes = [0.0f32; 16];
                // SAFETY: `v` has 4 vectors, whose existence proves AVX-512F, and `lanes`
                // has room for 16 elements.
                unsafe {
                    _mm512_storeu_ps(
                        lanes.as_mut_ptr(),
                        transposed_sums4(v[0].0, v[1].0, v[2].0, v[3].0),
                    )
                };
                let mut sums = [0.0; N];
                for (index, sum) in sums.iter_mut().enumerate() {
                    *sum = lanes[4 * index];
                }
                return sums;
            }
            if N != 16 {
                let mut sums = [0.0; N];
                for (sum, vector) in sums.iter_mut().zip(v) {
                    *sum = vector.sum();
                }
                return sums;
            }
            let mut registers = [v[0].0; 16];
            for (register, vector) in registers.iter_mut().zip(v) {
                *register = vector.0;
            }
            let mut lanes = [0.0f32; 16];
            // SAFETY: `v` has 16 vectors, whose existence proves AVX-512F, and `lanes` has
            // room for 16 elements.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), transposed_sums16(&registers)) };
            let mut sums = [0.0; N];
            for (index, sum) in sums.iter_mut().enumerate() {
                *sum = lanes[4 * (index % 4) + index / 4];
            }
            sums
        }

        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so a constructor ran under the promise of AVX-512F.
            Self(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }

        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm512_mul_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm512_add_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            // SAFETY: as for `mul_add`.
            Self(unsafe { _mm512_sub_ps(self.0, b.0) })
        }

        #[inline(always)]
        fn select_positive(self, if_positive: Self, otherwise: Self) -> Self {
            // SAFETY: as for `mul_add`. The ordered compare is false for NaN.
            unsafe {
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, _mm512_setzero_ps());
                Self(_mm512_mask_blend_ps(positive, otherwise.0, if_positive.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Arch;

    /// Loads and stores every prefix length of one vector of `L` inside a guarded buffer:
    /// loaded lanes past `len` are zero, and a store leaves every element past `len` as it
    /// was.
    ///
    /// # Safety
    ///
    /// The CPU supports `L`.
    unsafe fn check_prefixes<L: Lane>() {
        let source: Vec<f32> = (0..L::WIDTH).map(|i| i as f32 + 1.0).collect();
        for len in 0..=L::WIDTH {
            // SAFETY: `len ≤ WIDTH` elements of `source` are readable; the caller
            // guarantees support.
            let loaded = unsafe { L::load_first(source.as_ptr(), len) };
            let mut lanes = [f32::NAN; MAX_WIDTH];
            // SAFETY: `lanes` has room for MAX_WIDTH ≥ WIDTH elements.
            unsafe { loaded.store(lanes.as_mut_ptr()) };
            for (i, &lane) in lanes.iter().enumerate().take(L::WIDTH) {
                let want = if i < len { source[i] } else { 0.0 };
                assert_eq!(
                    lane.to_bits(),
                    want.to_bits(),
                    "load_first len {len} lane {i}"
                );
            }

            let mut target = vec![-1.0f32; L::WIDTH + 1];
            // SAFETY: `len ≤ WIDTH` elements of `target` are writable.
            unsafe { loaded.store_first(target.as_mut_ptr(), len) };
            for (i, &value) in target.iter().enumerate() {
                let want = if i < len { source[i] } else { -1.0 };
                assert_eq!(value, want, "store_first len {len} element {i}");
            }
        }
    }

    /// Checks [`Lane::sums`] of 16 vectors against each vector's own sum, on integer
    /// values whose sums are exact in any order. Then checks that one vector whose sum
    /// depends on the order of the additions gets the same result in every slot, and in a
    /// group of 4 as in a group of 16.
    ///
    /// # Safety
    ///
    /// The CPU supports `L`.
    unsafe fn check_sums<L: Lane>() {
        let values: Vec<f32> = (0..16 * L::WIDTH)
            .map(|i| (i * 7 % 23) as f32 - 11.0)
            .collect();
        // SAFETY: vector `i` reads `WIDTH` elements of `values` from `i · WIDTH`, and the
        // caller guarantees support.
        let vectors: [L; 16] =
            core::array::from_fn(|i| unsafe { L::load(values.as_ptr().add(i * L::WIDTH)) });
        let sums = L::sums(&vectors);
        for (i, (sum, vector)) in sums.iter().zip(&vectors).enumerate() {
            assert_eq!(sum.to_bits(), vector.sum().to_bits(), "vector {i}");
        }

        let cancelling: Vec<f32> = (0..L::WIDTH)
            .map(|i| [1e8, 1.0, -1e8, 0.5][i % 4] * (1 + i / 4) as f32)
            .collect();
        // SAFETY: as above.
        let vector = unsafe { L::load(cancelling.as_ptr()) };
        let sums = L::sums(&[vector; 16]);
        for (slot, sum) in sums.iter().enumerate() {
            assert_eq!(sum.to_bits(), sums[0].to_bits(), "slot {slot}");
        }

        // Four vectors: the same sums as in a group of 16.
        let four = [vectors[0], vectors[5], vector, vectors[15]];
        let sums_of_four = L::sums(&four);
        let all = L::sums(&vectors);
        let in_sixteen = [all[0], all[5], sums[0], all[15]];
        for (i, (sum, want)) in sums_of_four.iter().zip(in_sixteen).enumerate() {
            assert_eq!(sum.to_bits(), want.to_bits(), "vector {i} of four");
        }
    }

    /// Runs the generic check `$check::<L>()` for every lane type this CPU supports.
    macro_rules! on_every_lane {
        ($check:ident) => {{
            // SAFETY: the portable lane runs on every CPU.
            unsafe { $check::<WideF32x8>() };
            #[cfg(target_arch = "x86_64")]
            {
                if Arch::Avx2.is_supported() {
                    // SAFETY: AVX2 and FMA were detected.
                    unsafe { $check::<Avx2F32x8>() };
                }
                if Arch::Avx512.is_supported() {
                    // SAFETY: AVX-512F was detected.
                    unsafe { $check::<Avx512F32x16>() };
                }
            }
        }};
    }

    #[test]
    fn lane_sums_every_path() {
        on_every_lane!(check_sums);
    }

    #[test]
    fn lane_prefix_load_store_every_path() {
        on_every_lane!(check_prefixes);
    }
}
