//! Images derived at test time from the real photos and never stored: JPEG
//! at a chosen quality (baseline, progressive, Adobe CMYK), resized copies
//! (a 12 MP phone-size JPEG), EXIF-rotated JPEG, BMP in every uncompressed
//! 24- and 32-bit layout.

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

/// How [`bmp_with`] lays out a BMP.
#[derive(Clone, Copy, Debug)]
pub struct BmpLayout {
    /// 24 (B, G, R) or 32 (B, G, R and a fourth byte).
    pub bits: u16,
    /// Rows stored top row first (negative height) instead of bottom-up.
    pub top_down: bool,
    /// BI_BITFIELDS with the R8G8B8 masks instead of BI_RGB (32-bit only).
    pub bitfields: bool,
    /// A BITMAPV4HEADER (with an alpha mask when `bitfields`) instead of
    /// BITMAPINFOHEADER.
    pub v4: bool,
}

/// `rgb` as an uncompressed BMP laid out as `layout` says. The fourth
/// byte of 32-bit pixels varies from pixel to pixel (as alpha or padding,
/// the decoder must ignore it for an RGB result). Written by hand because
/// `image` writes one layout only.
pub fn bmp_with(rgb: &RgbImage, layout: BmpLayout) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let bpp = usize::from(layout.bits / 8);
    assert!(matches!(bpp, 3 | 4), "24 or 32 bits");
    assert!(!layout.bitfields || bpp == 4, "bitfields are 32-bit here");
    let stride = (w as usize * bpp).div_ceil(4) * 4;
    let info_len: u32 = if layout.v4 { 108 } else { 40 };
    // BITMAPINFOHEADER with BI_BITFIELDS: the three masks follow it.
    let masks_after = if layout.bitfields && !layout.v4 {
        12
    } else {
        0
    };
    let offset = 14 + info_len + masks_after;
    let data_len = stride * h as usize;
    let mut b = b"BM".to_vec();
    b.extend((offset + data_len as u32).to_le_bytes());
    b.extend([0; 4]);
    b.extend(offset.to_le_bytes());
    b.extend(info_len.to_le_bytes());
    b.extend((w as i32).to_le_bytes());
    b.extend(
        if layout.top_down {
            -(h as i32)
        } else {
            h as i32
        }
        .to_le_bytes(),
    );
    b.extend(1u16.to_le_bytes());
    b.extend(layout.bits.to_le_bytes());
    b.extend(u32::from(layout.bitfields).wrapping_mul(3).to_le_bytes());
    b.extend((data_len as u32).to_le_bytes());
    b.extend([0; 16]); // resolution, palette counts
    if layout.bitfields || layout.v4 {
        b.extend(0x00FF_0000u32.to_le_bytes());
        b.extend(0x0000_FF00u32.to_le_bytes());
        b.extend(0x0000_00FFu32.to_le_bytes());
    }
    if layout.v4 {
        let alpha: u32 = if layout.bitfields { 0xFF00_0000 } else { 0 };
        b.extend(alpha.to_le_bytes());
        b.extend(0x7352_4742u32.to_le_bytes()); // LCS_sRGB
        b.extend([0; 48]); // endpoints and gamma
    }
    assert_eq!(b.len(), offset as usize);
    let mut row = vec![0u8; stride];
    for y in 0..h {
        let y = if layout.top_down { y } else { h - 1 - y };
        for x in 0..w {
            let [r, g, bl] = rgb.get_pixel(x, y).0;
            let px = &mut row[x as usize * bpp..][..bpp];
            px[..3].copy_from_slice(&[bl, g, r]);
            if bpp == 4 {
                px[3] = (x ^ y) as u8;
            }
        }
        b.extend_from_slice(&row);
    }
    b
}

/// A phone-camera-size JPEG: `name` enlarged to 4032×3024 (12.2 MP), at
/// quality 90.
pub fn phone_jpeg(name: &str) -> Vec<u8> {
    jpeg(&resized(&decoded(name), 4032, 3024), 90)
}
