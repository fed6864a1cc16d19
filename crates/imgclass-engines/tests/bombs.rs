//! Decompression bombs are refused from the header, before any buffer in
//! proportion to the claimed size exists: a counting allocator records the
//! largest single allocation made while each bomb is refused. This is the
//! only test in its binary, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};

use imgclass_core::{DecodeLimits, ImageError, Preprocessor};
use imgclass_testkit as kit;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    let out = f();
    (out, LARGEST.load(Ordering::SeqCst))
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn bombs_are_refused_before_any_large_allocation() {
    let input = kit::default_model_input();
    let p = Preprocessor::new(input, DecodeLimits::default());
    const SMALL: usize = 1 << 20;

    // The counter does see decoding: a real 2000×2000 image needs its 12 MB.
    let png = encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::new(2000, 2000)),
        image::ImageFormat::Png,
    );
    let (ok, largest) = largest_allocation_during(|| p.preprocess(&png));
    assert!(ok.is_ok());
    assert!(largest >= 2000 * 2000 * 3, "largest allocation {largest}");

    for (what, bomb, w, h) in [
        ("PNG", kit::bomb_png(100_000, 100_000), 100_000, 100_000),
        ("JPEG", kit::bomb_jpeg(65_000, 65_000), 65_000, 65_000),
        ("BMP", kit::bomb_bmp(100_000, -100_000), 100_000, 100_000),
    ] {
        let (err, largest) = largest_allocation_during(|| p.preprocess(&bomb));
        match err {
            Err(ImageError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (w, h), "{what}")
            }
            other => panic!("{what} bomb: {other:?}"),
        }
        assert!(largest < SMALL, "{what} bomb: allocated {largest} bytes");
    }
}
