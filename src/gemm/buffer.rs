//! Packing buffers aligned to cache lines, kept per thread and reused across calls.

use std::cell::RefCell;
use std::thread::LocalKey;

/// `f32` elements per 64-byte cache line.
const LINE_ELEMENTS: usize = 16;

/// One 64-byte cache line of `f32`; a vector of these is a 64-byte aligned `f32` buffer.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([f32; LINE_ELEMENTS]);

/// A growable `f32` buffer whose start is aligned to 64 bytes. It never shrinks, so once a
/// thread has run its largest problem, packing allocates nothing.
#[derive(Default)]
pub(crate) struct PackBuffer {
    lines: Vec<CacheLine>,
}

impl PackBuffer {
    /// Returns the first `len` elements, growing the buffer when it is shorter. The contents
    /// are unspecified: packing overwrites every element it later reads.
    fn prefix_mut(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(LINE_ELEMENTS);
        if self.lines.len() < lines {
            self.lines.resize(lines, CacheLine([0.0; LINE_ELEMENTS]));
        }
        // SAFETY: the vector contains at least `len` initialised `f32` (each `CacheLine` is
        // `repr(C)` around an `f32` array, without padding), and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), len) }
    }
}

thread_local! {
    /// The packed A block of the thread's current macro-kernel.
    pub(crate) static PACKED_A: RefCell<PackBuffer> = RefCell::default();
    /// The packed B panel of a `gemm` call running on this thread, shared with its tasks.
    pub(crate) static PACKED_B: RefCell<PackBuffer> = RefCell::default();
}

/// Runs `f` on `len` elements of the thread's buffer `key`.
///
/// The buffer can already be in use on this thread, because a rayon worker that waits for
/// its tasks may run another task that calls `gemm`. Then, or while the thread shuts down,
/// `f` gets a fresh allocation instead.
pub(crate) fn with_buffer<R>(
    key: &'static LocalKey<RefCell<PackBuffer>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut f = Some(f);
    let result = key.try_with(|cell| {
        let mut buffer = cell.try_borrow_mut().ok()?;
        let f = f.take().expect("`f` is taken once");
        Some(f(buffer.prefix_mut(len)))
    });
    match (result, f) {
        (Ok(Some(value)), _) => value,
        (_, Some(f)) => f(PackBuffer::default().prefix_mut(len)),
        (_, None) => unreachable!("`f` ran but returned no value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_aligned_and_reused() {
        let first = with_buffer(&PACKED_A, 100, |buf| {
            assert_eq!(buf.len(), 100);
            assert_eq!(buf.as_ptr() as usize % 64, 0);
            buf.as_ptr() as usize
        });
        let second = with_buffer(&PACKED_A, 50, |buf| buf.as_ptr() as usize);
        assert_eq!(first, second);
    }

    #[test]
    fn buffer_nested_use_gets_fresh() {
        with_buffer(&PACKED_A, 10, |outer| {
            outer.fill(1.0);
            with_buffer(&PACKED_A, 10, |inner| {
                assert_ne!(inner.as_ptr(), outer.as_ptr());
                inner.fill(2.0);
            });
            assert!(outer.iter().all(|&x| x == 1.0));
        });
    }
}
