//! JPEG: header (size, EXIF orientation), truncation check, and decoding
//! to RGB8 at full size or DCT-scaled to 1/2, 1/4 or 1/8.
//!
//! Two decoders, each where it measured fastest:
//! - full size: `zune-jpeg` (pure Rust, SIMD; the decoder inside `image`,
//!   called directly on the borrowed body instead of through `image`, which
//!   copies it and parses the header three times);
//! - reduced sizes: libjpeg-turbo's code as vendored by `mozjpeg-sys`
//!   (through the maintained `mozjpeg` crate), compiled by `cc` with the C
//!   compiler Rust already needs for linking (and tract-linalg for its
//!   kernels) — no system library, cmake or nasm, so a fresh machine builds
//!   it. Its scaled IDCTs compute only the (8/d)×(8/d) low frequencies of
//!   each block, DC alone at 1/8.
//!
//! Measured with a one-off harness (thread CPU time, medians of 31, a
//! 2-vCPU AMD EPYC shared with other work) on a 4032×3024 quality-90 JPEG: zune-jpeg full size 67.7 ms; at 1/8
//! `jpeg-decoder` (pure Rust, the only pure-Rust decoder with DCT scaling;
//! zune-jpeg has none) 48.6 ms, mozjpeg 31.5 ms, Debian's SIMD
//! libjpeg-turbo 27.6 ms; progressive: 192 / 108 / 72 ms. At full size
//! zune-jpeg beats the SIMD-less C build twofold (500×375: 1.39 vs
//! 2.75 ms), hence the split. Both handle baseline and progressive, grey,
//! YCbCr, RGB, CMYK and YCCK; neither starts threads.

use image::RgbImage;
use image::metadata::Orientation;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use super::error::ImageError;
use super::format::ImageFormat;
use super::pixel_buffer;

/// What a JPEG header says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JpegHeader {
    /// Stored size (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
}

fn corrupt(detail: impl std::fmt::Display) -> ImageError {
    ImageError::corrupt(ImageFormat::Jpeg, detail)
}

fn zune_options() -> DecoderOptions {
    // The limits are ours, checked from the header before decoding.
    DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
}

/// Reads the markers up to the first scan: size and EXIF orientation.
/// Allocates nothing in proportion to the claimed size.
pub(crate) fn read_header(bytes: &[u8]) -> Result<JpegHeader, ImageError> {
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), zune_options());
    decoder.decode_headers().map_err(corrupt)?;
    let (width, height) = decoder.dimensions().expect("the headers were decoded");
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    Ok(JpegHeader {
        width: width as u32,
        height: height as u32,
        orientation,
    })
}

/// A complete JPEG has an end-of-image marker (FF D9) after its last
/// start-of-scan. Entropy-coded data cannot contain FF D9 (0xFF is stuffed),
/// so a missing marker means the file was cut short; both decoders would
/// silently fill the rest with grey.
pub(crate) fn has_end(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(p) => bytes[p..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Decodes at 1/`denominator` (1, 2, 4 or 8) of the `stored` size, in the
/// stored orientation: ⌈width/d⌉×⌈height/d⌉ pixels, and the d actually
/// used (1 when the scaled decoder refused the file and the full-size
/// decoder, which is more lenient, accepted it).
pub(crate) fn decode(
    bytes: &[u8],
    stored: (u32, u32),
    denominator: u32,
) -> Result<(RgbImage, u32), ImageError> {
    if !has_end(bytes) {
        return Err(corrupt("the data ends before the end-of-image marker"));
    }
    if denominator > 1 {
        match decode_scaled(bytes, stored, denominator) {
            Ok(rgb) => return Ok((rgb, denominator)),
            Err(e) => {
                tracing::debug!(error = %e, "scaled JPEG decoding failed; decoding at full size")
            }
        }
    }
    Ok((decode_full(bytes, stored)?, 1))
}

fn decode_full(bytes: &[u8], (width, height): (u32, u32)) -> Result<RgbImage, ImageError> {
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), zune_options());
    decoder.decode_headers().map_err(corrupt)?;
    let len = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt("the image is too large for this machine"))?;
    let mut buf = pixel_buffer::take(len);
    decoder.decode_into(&mut buf).map_err(corrupt)?;
    RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| corrupt("the decoder returned fewer pixels than the header declares"))
}

fn decode_scaled(
    bytes: &[u8],
    (width, height): (u32, u32),
    denominator: u32,
) -> Result<RgbImage, ImageError> {
    // libjpeg reports errors by unwinding out of its error handler (the
    // `mozjpeg` crate's design; this needs `panic = "unwind"`, the default
    // profile setting); catch that here and turn it into an error.
    let run = std::panic::AssertUnwindSafe(|| decode_with_libjpeg(bytes, denominator));
    let rgb = match std::panic::catch_unwind(run) {
        Ok(result) => result.map_err(corrupt)?,
        Err(payload) => Err(corrupt(
            payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg refused the data"),
        ))?,
    };
    let want = (width.div_ceil(denominator), height.div_ceil(denominator));
    if rgb.dimensions() != want {
        return Err(corrupt(format!(
            "decoded {:?} at 1/{denominator}, expected {want:?}",
            rgb.dimensions()
        )));
    }
    Ok(rgb)
}

fn decode_with_libjpeg(bytes: &[u8], denominator: u32) -> std::io::Result<RgbImage> {
    use mozjpeg::ColorSpace;
    let mut dec = mozjpeg::Decompress::new_mem(bytes)?;
    // Numerator over 8: 8/d gives 1/d.
    dec.scale(u8::try_from(8 / denominator).expect("denominator is 2, 4 or 8"));
    // libjpeg cannot turn CMYK into RGB: take CMYK (from CMYK or YCCK data)
    // and convert it below.
    let cmyk = matches!(
        dec.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    let mut started = if cmyk {
        dec.to_colorspace(ColorSpace::JCS_CMYK)?
    } else {
        dec.rgb()?
    };
    let (w, h) = (started.width(), started.height());
    let channels = if cmyk { 4 } else { 3 };
    let mut pixels = pixel_buffer::take(w * h * channels);
    started.read_scanlines_into(&mut pixels)?;
    started.finish()?;
    if cmyk {
        pixels = adobe_cmyk_to_rgb(&pixels);
    }
    let size = |n: usize| u32::try_from(n).expect("JPEG sizes fit in 16 bits");
    Ok(RgbImage::from_raw(size(w), size(h), pixels).expect("the buffer holds w × h RGB pixels"))
}

/// libjpeg's CMYK output is Adobe's stored form (inverted: 255 = no ink,
/// also for YCCK), so R = C·K/255; rounded the way zune-jpeg does, so both
/// decoders agree.
fn adobe_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mul = |a: u8, b: u8| {
        let t = u32::from(a) * u32::from(b) + 128;
        ((t + (t >> 8)) >> 8) as u8
    };
    cmyk.chunks_exact(4)
        .flat_map(|p| [mul(p[0], p[3]), mul(p[1], p[3]), mul(p[2], p[3])])
        .collect()
}

#[cfg(test)]
mod end_marker_tests {
    use super::has_end;

    #[test]
    fn the_end_marker_must_follow_the_last_scan() {
        let sos = [0xFF, 0xDA];
        let eoi = [0xFF, 0xD9];
        let file = |parts: &[&[u8]]| parts.concat();
        assert!(has_end(&file(&[
            &[0xFF, 0xD8],
            &sos,
            &[1, 0xFF, 0, 2],
            &eoi
        ])));
        // Two scans (progressive): only the last one counts.
        assert!(has_end(&file(&[&sos, &[1], &sos, &[2], &eoi])));
        assert!(!has_end(&file(&[&sos, &[1], &eoi, &sos, &[2]])));
        // Cut short: no end marker, or no scan at all.
        assert!(!has_end(&file(&[&[0xFF, 0xD8], &sos, &[1, 2, 3]])));
        assert!(!has_end(&file(&[&[0xFF, 0xD8], &eoi])));
        assert!(!has_end(&[]));
    }
}
