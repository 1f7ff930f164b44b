//! A warm sequential `gemm` call allocates nothing: packing buffers are reused per thread.
//! The counting allocator is global to this test binary, so the file has a single test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use densegrad::{Arch, Matrix, Packing, Parallelism, gemm_with_options};

/// The system allocator, counting allocations.
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn warm_call_allocates_nothing() {
    // Large enough to pack both operands in several blocks.
    let a = Matrix::from_fn(300, 700, |i, j| ((i + j) % 5) as f32);
    let b = Matrix::from_fn(700, 200, |i, j| ((i * j) % 3) as f32);
    let mut c = Matrix::zeros(300, 200);

    for arch in Arch::supported() {
        for packing in [Packing::Auto, Packing::Always] {
            let mut run = || {
                let (a, b) = (a.as_ref(), b.as_ref());
                gemm_with_options(
                    arch,
                    packing,
                    1.0,
                    a,
                    b,
                    0.5,
                    c.as_mut(),
                    Parallelism::Sequential,
                )
                .unwrap();
            };
            run();
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            run();
            let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert_eq!(
                during, 0,
                "{arch:?} {packing:?}: a warm call allocated {during} times"
            );
        }
    }
}
