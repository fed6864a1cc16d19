//! PNG, BMP, GIF, WebP and TIFF to RGB8 through the `image` crate's
//! decoders, into one buffer: 8-bit RGB images are decoded straight into
//! it, 8-bit RGBA and grey ones are decoded into it and converted in place
//! (alpha dropped, grey repeated, as `DynamicImage::to_rgb8` does); only
//! the rare 16-bit and float images go through `DynamicImage`.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::error::ImageError;
use super::format::ImageFormat;
use super::limits::DecodeLimits;

/// Decodes a non-JPEG image at full size in its stored orientation, and
/// reports the orientation its metadata asks for.
pub(crate) fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<(RgbImage, Orientation), ImageError> {
    let corrupt = |e: image::ImageError| ImageError::corrupt(format, e);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image_format());
    reader.limits(limits.image_limits());
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = decoder.dimensions();
    let pixels = width as usize * height as usize;
    let layout = match decoder.color_type() {
        ColorType::Rgb8 => Layout::Rgb,
        ColorType::Rgba8 => Layout::Rgba,
        ColorType::L8 => Layout::Grey,
        ColorType::La8 => Layout::GreyAlpha,
        _ => {
            let img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
            return Ok((img.into_rgb8(), orientation));
        }
    };
    // The size was checked against the pixel limit, so this buffer (at
    // most 4 bytes a pixel) is within the allocation bound.
    let decoded_len = pixels * layout.bytes_per_pixel();
    debug_assert_eq!(decoder.total_bytes(), decoded_len as u64);
    let mut buf = vec![0u8; decoded_len.max(pixels * 3)];
    decoder
        .read_image(&mut buf[..decoded_len])
        .map_err(corrupt)?;
    match layout {
        Layout::Rgb => {}
        Layout::Rgba => rgba_to_rgb_in_place(&mut buf, pixels),
        Layout::Grey => grey_to_rgb_in_place(&mut buf, pixels, 1),
        Layout::GreyAlpha => grey_to_rgb_in_place(&mut buf, pixels, 2),
    }
    buf.truncate(pixels * 3);
    let rgb =
        RgbImage::from_raw(width, height, buf).expect("the buffer holds width × height RGB pixels");
    Ok((rgb, orientation))
}

/// 8-bit pixel layouts converted in place.
#[derive(Clone, Copy)]
enum Layout {
    Rgb,
    Rgba,
    Grey,
    GreyAlpha,
}

impl Layout {
    fn bytes_per_pixel(self) -> usize {
        match self {
            Layout::Rgb => 3,
            Layout::Rgba => 4,
            Layout::Grey => 1,
            Layout::GreyAlpha => 2,
        }
    }
}

/// RGBA at the start of `buf` to RGB at its start, dropping alpha.
/// Front to back: pixel `i` moves from `4i` to `3i ≤ 4i`.
fn rgba_to_rgb_in_place(buf: &mut [u8], pixels: usize) {
    for i in 0..pixels {
        let (s, d) = (4 * i, 3 * i);
        buf[d] = buf[s];
        buf[d + 1] = buf[s + 1];
        buf[d + 2] = buf[s + 2];
    }
}

/// Grey (`stride` 1) or grey + alpha (`stride` 2) at the start of `buf` to
/// RGB over all of `buf` (at least 3 bytes per pixel). Back to front:
/// pixel `i` moves from `stride·i` to `3i ≥ stride·i`, and only bytes of
/// pixels already moved get overwritten.
fn grey_to_rgb_in_place(buf: &mut [u8], pixels: usize, stride: usize) {
    for i in (0..pixels).rev() {
        let l = buf[stride * i];
        buf[3 * i..3 * i + 3].fill(l);
    }
}
