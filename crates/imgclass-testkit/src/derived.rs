//! Images derived at test time from the real photos and never stored: JPEG
//! at a chosen quality (baseline, progressive, Adobe CMYK), resized copies
//! (a 12 MP phone-size JPEG), EXIF-rotated JPEG, BMP.

use std::io::Cursor;

use fast_image_resize as fr;
use image::RgbImage;

use crate::photo_bytes;

/// A photo decoded to RGB8 (full size, upright).
pub fn decoded(name: &str) -> RgbImage {
    image::load_from_memory(&photo_bytes(name))
        .expect("decode photo")
        .to_rgb8()
}

/// The largest centred part of `rgb` with the aspect ratio of
/// `width`:`height`, resized (Catmull-Rom) to exactly that size.
pub fn resized(rgb: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let r = (f64::from(w) / f64::from(width)).min(f64::from(h) / f64::from(height));
    let (cw, ch) = (f64::from(width) * r, f64::from(height) * r);
    let src = fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3)
        .expect("an RgbImage matches its size");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let options = fr::ResizeOptions::new()
        .crop((f64::from(w) - cw) / 2.0, (f64::from(h) - ch) / 2.0, cw, ch)
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom));
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("U8x3 to U8x3");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("sized buffer")
}

/// `rgb` enlarged `factor` times in each direction.
pub fn times(rgb: &RgbImage, factor: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    resized(rgb, w * factor, h * factor)
}

/// Baseline JPEG (4:2:0) from `image`'s encoder.
pub fn jpeg(rgb: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(rgb)
        .expect("encode JPEG");
    out.into_inner()
}

fn jpeg_encoder_with(
    pixels: &[u8],
    (w, h): (u32, u32),
    color: jpeg_encoder::ColorType,
    quality: u8,
    progressive: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_progressive(progressive);
    let (w, h) = (
        u16::try_from(w).expect("JPEG width"),
        u16::try_from(h).expect("JPEG height"),
    );
    enc.encode(pixels, w, h, color).expect("encode JPEG");
    out
}

/// Progressive JPEG (spectral selection and successive approximation).
pub fn progressive_jpeg(rgb: &RgbImage, quality: u8) -> Vec<u8> {
    jpeg_encoder_with(
        rgb.as_raw(),
        rgb.dimensions(),
        jpeg_encoder::ColorType::Rgb,
        quality,
        true,
    )
}

/// Adobe CMYK JPEG (values stored inverted, as Photoshop writes them) with
/// full black generation; decoders turn it back into `rgb`.
pub fn cmyk_jpeg(rgb: &RgbImage, quality: u8) -> Vec<u8> {
    // jpeg-encoder takes ink amounts (255 = full ink) and inverts them.
    let cmyk: Vec<u8> = rgb
        .pixels()
        .flat_map(|p| {
            let max = p.0.iter().copied().max().unwrap_or(0).max(1);
            let ink = |c: u8| 255 - (u32::from(c) * 255 / u32::from(max)) as u8;
            [ink(p[0]), ink(p[1]), ink(p[2]), 255 - max]
        })
        .collect();
    jpeg_encoder_with(
        &cmyk,
        rgb.dimensions(),
        jpeg_encoder::ColorType::Cmyk,
        quality,
        false,
    )
}

/// `jpeg` with an EXIF APP1 segment right after SOI whose orientation tag is
/// `orientation` (1–8).
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut app1 = b"Exif\0\0MM\0\x2A\0\0\0\x08".to_vec();
    app1.extend(1u16.to_be_bytes()); // one IFD entry:
    app1.extend(0x0112u16.to_be_bytes()); // Orientation,
    app1.extend(3u16.to_be_bytes()); // SHORT,
    app1.extend(1u32.to_be_bytes()); // one value,
    app1.extend(orientation.to_be_bytes());
    app1.extend([0, 0]);
    app1.extend(0u32.to_be_bytes()); // and no next IFD.
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(
        u16::try_from(app1.len() + 2)
            .expect("short segment")
            .to_be_bytes(),
    );
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// The pixels a camera stores, with EXIF orientation 6 ("rotate 90°
/// clockwise to view"), for a scene that looks like `upright`.
pub fn stored_for_orientation_6(upright: &RgbImage) -> RgbImage {
    image::imageops::rotate270(upright)
}

/// Uncompressed 24-bit BMP.
pub fn bmp(rgb: &RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    rgb.write_to(&mut out, image::ImageFormat::Bmp)
        .expect("encode BMP");
    out.into_inner()
}

/// A phone-camera-size JPEG: `name` enlarged to 4032×3024 (12.2 MP), at
/// quality 90.
pub fn phone_jpeg(name: &str) -> Vec<u8> {
    jpeg(&resized(&decoded(name), 4032, 3024), 90)
}
