//! Crop and resize an RGB8 image — or BGR rows borrowed from a BMP body —
//! to the model's input size with an antialiasing convolution
//! (`fast_image_resize`, SIMD), as PIL does.

use std::cell::RefCell;

use fast_image_resize as fr;

use fr::pixels::{InnerPixel, U8x3, U8x4};

use super::bmp::BgrRows;
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

/// Resizes `crop` of BMP rows (see [`crop_resize_into`]) into RGB8 `dst`.
/// Channels are resized independently, so resizing B, G, R (and the unused
/// fourth byte, with no alpha weighting) and then reordering gives the
/// pixels of decoding to RGB first and resizing that.
///
/// # Panics
/// As [`crop_resize_into`].
pub(crate) fn crop_resize_bgr_into(
    src: &BgrRows<'_>,
    crop: (f64, f64, f64, f64),
    filter: ResizeFilter,
    (width, height): (u32, u32),
    dst: &mut [u8],
) {
    assert_eq!(dst.len(), width as usize * height as usize * 3);
    let options = fr::ResizeOptions::new()
        .crop(crop.0, crop.1, crop.2, crop.3)
        .resize_alg(algorithm(filter))
        .use_alpha(false);
    match src.bytes_per_pixel {
        3 => {
            resize_rows::<U8x3>(src, &options, (width, height), dst);
            for px in dst.chunks_exact_mut(3) {
                px.swap(0, 2);
            }
        }
        4 => {
            let mut bgrx = vec![0u8; width as usize * height as usize * 4];
            resize_rows::<U8x4>(src, &options, (width, height), &mut bgrx);
            for (rgb, bgrx) in dst.chunks_exact_mut(3).zip(bgrx.chunks_exact(4)) {
                rgb.copy_from_slice(&[bgrx[2], bgrx[1], bgrx[0]]);
            }
        }
        n => unreachable!("BMP rows have 3 or 4 bytes per pixel, not {n}"),
    }
}

fn resize_rows<P: fr::PixelTrait>(
    src: &BgrRows<'_>,
    options: &fr::ResizeOptions,
    (width, height): (u32, u32),
    dst: &mut [u8],
) {
    let rows = src
        .rows
        .iter()
        .map(|row| {
            fr::images::TypedImageRef::<P>::from_buffer(src.width, 1, row)
                .expect("each row holds width pixels of P")
        })
        .collect();
    let src = RowsView {
        width: src.width,
        rows,
    };
    let mut dst = fr::images::TypedImage::<P>::from_buffer(width, height, dst)
        .expect("the destination holds width × height pixels of P");
    RESIZER.with(|r| {
        r.borrow_mut()
            .resize_typed(&src, &mut dst, options)
            .expect("the crop lies inside the rows and both sides are non-empty")
    });
}

/// An image made of rows that lie anywhere (a BMP stores them bottom-up,
/// padded to 4 bytes), each a one-row `TypedImageRef`.
struct RowsView<'a, P> {
    width: u32,
    rows: Vec<fr::images::TypedImageRef<'a, P>>,
}

// SAFETY: every row is a `TypedImageRef` of `width` pixels, so each slice
// `iter_rows` yields holds at least `width` pixels, as the trait requires.
unsafe impl<P: InnerPixel> fr::ImageView for RowsView<'_, P> {
    type Pixel = P;

    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.rows.len() as u32
    }

    fn iter_rows(&self, start_row: u32) -> impl Iterator<Item = &[P]> {
        self.rows
            .get(start_row as usize..)
            .unwrap_or_default()
            .iter()
            .map(|row| row.pixels())
    }
}
