//! Crop and resize an RGB8 image to the model's input size with an
//! antialiasing convolution (`fast_image_resize`, SIMD), as PIL does.

use std::cell::RefCell;

use fast_image_resize as fr;

use crate::config::ResizeFilter;

thread_local! {
    /// The resizer keeps its scratch buffers between calls on one thread.
    static RESIZER: RefCell<fr::Resizer> = RefCell::new(fr::Resizer::new());
}

fn algorithm(filter: ResizeFilter) -> fr::ResizeAlg {
    match filter {
        ResizeFilter::Nearest => fr::ResizeAlg::Nearest,
        ResizeFilter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
        // Catmull-Rom is the cubic with a = −0.5 and support 2, the kernel
        // of PIL's BICUBIC; fast_image_resize widens it by the shrink
        // factor like PIL, so it antialiases.
        ResizeFilter::Bicubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
        ResizeFilter::Lanczos3 => fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3),
    }
}

/// Resizes `crop` (left, top, width, height in `src` pixels, fractional
/// allowed) of `src` to `width`×`height` RGB8 pixels in `dst`.
///
/// # Panics
/// When `dst` is not `width`·`height`·3 bytes or the crop is empty.
pub(crate) fn crop_resize_into(
    src: &image::RgbImage,
    crop: (f64, f64, f64, f64),
    filter: ResizeFilter,
    (width, height): (u32, u32),
    dst: &mut [u8],
) {
    assert_eq!(dst.len(), width as usize * height as usize * 3);
    let (w, h) = src.dimensions();
    let src = fr::images::ImageRef::new(w, h, src.as_raw(), fr::PixelType::U8x3)
        .expect("an RgbImage buffer always matches its dimensions");
    let mut dst = fr::images::Image::from_slice_u8(width, height, dst, fr::PixelType::U8x3)
        .expect("the destination length was checked above");
    let options = fr::ResizeOptions::new()
        .crop(crop.0, crop.1, crop.2, crop.3)
        .resize_alg(algorithm(filter));
    RESIZER.with(|r| {
        r.borrow_mut()
            .resize(&src, &mut dst, &options)
            .expect("source, crop and destination are all U8x3 and non-empty")
    });
}
