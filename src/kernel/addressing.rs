//! Addresses of a run of elements a fixed stride apart, which a kernel reads at every step
//! of a loop, such as the elements of a B micro-panel row read in place.

/// Elements that share one base pointer in [`StridedElements`]. Their addresses are
/// `base + {0, 1, 2, 3}·stride`, which x86 addressing reaches from the stride and its
/// triple in two registers, so four elements cost one pointer register.
const ELEMENTS_PER_BASE: usize = 4;

/// Maximum number of base pointers of a [`StridedElements`].
const MAX_BASES: usize = 8;

/// Maximum number of elements that a [`StridedElements`] addresses.
pub(crate) const MAX_STRIDED_ELEMENTS: usize = ELEMENTS_PER_BASE * MAX_BASES;

/// The addresses of up to [`MAX_STRIDED_ELEMENTS`] elements `stride` apart, which a loop
/// moves on together.
///
/// With `UNIT` (stride 1) that is one pointer. Otherwise it keeps one base pointer per
/// [`ELEMENTS_PER_BASE`] elements. From a single pointer, the compiler derived each
/// element's address from the previous one's, a chain of one add per element on every
/// step. That chain, not the FMAs, set the pace of one-vector tiles. In separate runs at
/// 1024 samples through a 128→10 layer on AVX-512, a `16 × 24` tile ran at about 68
/// GFLOP/s with one pointer, no faster than `16 × 6`, and at 83 with a base per four
/// columns.
pub(crate) struct StridedElements<const UNIT: bool, const N: usize> {
    bases: [*const f32; MAX_BASES],
    stride: isize,
}

impl<const UNIT: bool, const N: usize> StridedElements<UNIT, N> {
    /// Base pointers in use: one for all `N` elements when `UNIT`.
    const BASES: usize = if UNIT {
        1
    } else {
        N.div_ceil(ELEMENTS_PER_BASE)
    };

    /// Creates the addresses of the `N` elements from `first`, `stride` apart (1 when
    /// `UNIT`).
    #[inline(always)]
    pub(crate) fn new(first: *const f32, stride: isize) -> Self {
        const { assert!(N <= MAX_STRIDED_ELEMENTS) };
        let mut bases = [first; MAX_BASES];
        for (g, base) in bases.iter_mut().enumerate().take(Self::BASES) {
            *base = first.wrapping_offset((g * ELEMENTS_PER_BASE) as isize * stride);
        }
        StridedElements { bases, stride }
    }

    /// Moves every element `step` elements on.
    #[inline(always)]
    pub(crate) fn advance(&mut self, step: isize) {
        // A strided step is hidden from the optimiser, so that it cannot see every base as
        // the first plus a multiple of the stride and fold them back into one chained
        // pointer.
        let step = if UNIT {
            step
        } else {
            core::hint::black_box(step)
        };
        for base in self.bases.iter_mut().take(Self::BASES) {
            *base = base.wrapping_offset(step);
        }
    }

    /// Returns the address of element `j < N`, `offset` elements on.
    #[inline(always)]
    pub(crate) fn element(&self, j: usize, offset: isize) -> *const f32 {
        if UNIT {
            return self.bases[0].wrapping_offset(offset + j as isize);
        }
        let base = self.bases[j / ELEMENTS_PER_BASE].wrapping_offset(offset);
        base.wrapping_offset((j % ELEMENTS_PER_BASE) as isize * self.stride)
    }
}
