//! Bytes to tensor: sniff, check limits from the header, decode, orient,
//! convert to RGB, centre-crop, resize and normalise.
//!
//! The order matters for safety: the format and dimensions come from the
//! header alone, so a decompression bomb (a tiny file claiming 100000×100000
//! pixels) is refused before any pixel buffer is allocated.

use std::cell::RefCell;
use std::io::Cursor;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader};
use serde::{Deserialize, Serialize};

use crate::config::{InputConfig, InputLayout, ResizeFilter};

/// Image formats we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Bmp,
    Gif,
    Webp,
    Tiff,
}

impl ImageFormat {
    /// File extension used when storing an image of this format.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
            ImageFormat::Tiff => "tiff",
        }
    }

    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Bmp => "image/bmp",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Tiff => "image/tiff",
        }
    }

    /// Format from a file extension (case-insensitive), for finding images in folders.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" | "jpe" | "jfif" => ImageFormat::Jpeg,
            "png" => ImageFormat::Png,
            "bmp" | "dib" => ImageFormat::Bmp,
            "gif" => ImageFormat::Gif,
            "webp" => ImageFormat::Webp,
            "tif" | "tiff" => ImageFormat::Tiff,
            _ => return None,
        })
    }

    /// Sniffs the format from the first bytes. `Err` carries the name of a
    /// recognised but unsupported format, if any.
    pub fn sniff(bytes: &[u8]) -> Result<Self, Option<&'static str>> {
        match image::guess_format(bytes) {
            Ok(image::ImageFormat::Jpeg) => Ok(ImageFormat::Jpeg),
            Ok(image::ImageFormat::Png) => Ok(ImageFormat::Png),
            Ok(image::ImageFormat::Bmp) => Ok(ImageFormat::Bmp),
            Ok(image::ImageFormat::Gif) => Ok(ImageFormat::Gif),
            Ok(image::ImageFormat::WebP) => Ok(ImageFormat::Webp),
            Ok(image::ImageFormat::Tiff) => Ok(ImageFormat::Tiff),
            Ok(other) => Err(Some(
                other.extensions_str().first().copied().unwrap_or("unknown"),
            )),
            Err(_) => Err(sniff_other(bytes)),
        }
    }
}

/// Names a few common formats `image` does not know, for a clearer error.
fn sniff_other(bytes: &[u8]) -> Option<&'static str> {
    let head = &bytes[..bytes.len().min(64)];
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(match &head[8..12] {
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => "heic",
            b"avif" | b"avis" => "avif",
            _ => "iso-bmff",
        });
    }
    if head.starts_with(b"%PDF") {
        return Some("pdf");
    }
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if text.contains("<svg") || text.trim_start().starts_with("<?xml") {
        return Some("svg");
    }
    None
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Why an image was refused. Every variant is the sender's problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("{}", unsupported_message(.detected))]
    Unsupported { detected: Option<String> },
    #[error("the image is {bytes} bytes, over the limit of {limit} bytes")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("the image is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("the image has zero size ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("the {format} image is corrupt or truncated: {detail}")]
    Corrupt { format: ImageFormat, detail: String },
}

fn unsupported_message(detected: &Option<String>) -> String {
    match detected {
        Some(f) => format!("{f} images are not supported; send JPEG, PNG, BMP, GIF, WebP or TIFF"),
        None => "not a supported image; send JPEG, PNG, BMP, GIF, WebP or TIFF".to_string(),
    }
}

/// What may be decoded. Checked before any pixel buffer exists.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest width × height accepted.
    pub max_pixels: u64,
    /// Largest encoded size accepted.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 40_000_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A decoded image ready for the model.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    /// The model input for this image, in the model's layout.
    pub tensor: Vec<f32>,
    pub format: ImageFormat,
    /// Size of the decoded image after EXIF orientation.
    pub width: u32,
    pub height: u32,
}

/// Turns encoded images into model inputs for one model's input spec.
/// Cheap to clone; safe to share between threads.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    input: InputConfig,
    limits: DecodeLimits,
}

thread_local! {
    static RESIZER: RefCell<fr::Resizer> = RefCell::new(fr::Resizer::new());
}

impl Preprocessor {
    pub fn new(input: InputConfig, limits: DecodeLimits) -> Self {
        Preprocessor { input, limits }
    }

    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    pub fn input(&self) -> &InputConfig {
        &self.input
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        3 * self.input.width as usize * self.input.height as usize
    }

    /// Reads format and size from the header only, enforcing the limits.
    pub fn probe(&self, bytes: &[u8]) -> Result<(ImageFormat, u32, u32), ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        if bytes.len() > self.limits.max_bytes {
            return Err(ImageError::TooManyBytes {
                bytes: bytes.len(),
                limit: self.limits.max_bytes,
            });
        }
        let format = ImageFormat::sniff(bytes).map_err(|d| ImageError::Unsupported {
            detected: d.map(str::to_string),
        })?;
        let corrupt = |e: image::ImageError| ImageError::Corrupt {
            format,
            detail: e.to_string(),
        };
        // Fixed-offset headers are read directly: some decoders want more
        // than the header before they report a size, and a bomb must be
        // refused no matter what follows it.
        let (width, height) = match fixed_header_size(format, bytes) {
            Some(size) => size,
            None => ImageReader::with_format(Cursor::new(bytes), to_image_format(format))
                .into_dimensions()
                .map_err(corrupt)?,
        };
        self.check_size(width, height)?;
        Ok((format, width, height))
    }

    fn check_size(&self, width: u32, height: u32) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::ZeroSized { width, height });
        }
        if u64::from(width) * u64::from(height) > self.limits.max_pixels {
            return Err(ImageError::TooLarge {
                width,
                height,
                limit: self.limits.max_pixels,
            });
        }
        Ok(())
    }

    /// Decodes to RGB8 with EXIF orientation applied, after [`Self::probe`].
    pub fn decode(&self, bytes: &[u8]) -> Result<(ImageFormat, image::RgbImage), ImageError> {
        let (format, _, _) = self.probe(bytes)?;
        let corrupt = |e: image::ImageError| ImageError::Corrupt {
            format,
            detail: e.to_string(),
        };
        if format == ImageFormat::Jpeg && !jpeg_has_end(bytes) {
            return Err(ImageError::Corrupt {
                format,
                detail: "the data ends before the end-of-image marker".into(),
            });
        }
        let mut reader = ImageReader::with_format(Cursor::new(bytes), to_image_format(format));
        let mut limits = image::Limits::default();
        // Headroom over the pixel limit for the decoder's own buffers
        // (16-bit RGBA is 8 bytes per pixel).
        limits.max_alloc = Some(self.limits.max_pixels.saturating_mul(8) + (64 << 20));
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(corrupt)?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
        img.apply_orientation(orientation);
        let rgb = match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
        Ok((format, rgb))
    }

    /// The whole pipeline: bytes to a model input.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Preprocessed, ImageError> {
        let (format, rgb) = self.decode(bytes)?;
        let (width, height) = rgb.dimensions();
        let tensor = self.rgb_to_tensor(&rgb);
        Ok(Preprocessed {
            tensor,
            format,
            width,
            height,
        })
    }

    /// Centre-crops, resizes and normalises an RGB image.
    pub fn rgb_to_tensor(&self, rgb: &image::RgbImage) -> Vec<f32> {
        let (tw, th) = (self.input.width, self.input.height);
        let (w, h) = rgb.dimensions();
        let (left, top, cw, ch) = crop_box(w, h, tw, th, self.input.crop_fraction);
        let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
        let alg = match self.input.resize_filter {
            ResizeFilter::Nearest => fr::ResizeAlg::Nearest,
            ResizeFilter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
            ResizeFilter::Bicubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
            ResizeFilter::Lanczos3 => fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3),
        };
        let options = fr::ResizeOptions::new()
            .crop(left, top, cw, ch)
            .resize_alg(alg);
        let src = fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3)
            .expect("an RgbImage buffer always matches its dimensions");
        RESIZER.with(|r| {
            r.borrow_mut()
                .resize(&src, &mut dst, &options)
                .expect("source, crop and destination are all U8x3 and non-empty")
        });
        normalise(dst.buffer(), tw as usize, th as usize, &self.input)
    }
}

/// The centred crop, in source pixels: the largest box with the target's
/// aspect ratio, scaled by `fraction`. For a square target this is
/// `fraction` × the short side.
pub fn crop_box(w: u32, h: u32, tw: u32, th: u32, fraction: f32) -> (f64, f64, f64, f64) {
    let (w, h, tw, th) = (w as f64, h as f64, tw as f64, th as f64);
    let r = (w / tw).min(h / th);
    let cw = (tw * r * fraction as f64).max(1.0);
    let ch = (th * r * fraction as f64).max(1.0);
    ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
}

fn normalise(rgb: &[u8], w: usize, h: usize, input: &InputConfig) -> Vec<f32> {
    let affine = input.normalization.affine();
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    match input.layout {
        InputLayout::Nchw => {
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c] as f32 * affine[c].0 + affine[c].1;
                }
            }
        }
        InputLayout::Nhwc => {
            for (o, (x, c)) in out.iter_mut().zip(rgb.iter().zip((0..3).cycle())) {
                *o = *x as f32 * affine[c].0 + affine[c].1;
            }
        }
    }
    out
}

/// Width and height from formats whose header puts them at a fixed place:
/// PNG (IHDR), GIF (logical screen) and BMP (BITMAPINFOHEADER and later).
fn fixed_header_size(format: ImageFormat, b: &[u8]) -> Option<(u32, u32)> {
    let be32 = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let le16 = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
    };
    let le32 = |o: usize| {
        b.get(o..o + 4)
            .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    match format {
        ImageFormat::Png if b.get(12..16) == Some(b"IHDR") => Some((be32(16)?, be32(20)?)),
        ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
        // Height is negative for top-down bitmaps; 12-byte OS/2 headers are left to the decoder.
        ImageFormat::Bmp if le32(14)? >= 40 => {
            Some((le32(18)?.unsigned_abs(), le32(22)?.unsigned_abs()))
        }
        _ => None,
    }
}

/// A complete JPEG has an end-of-image marker (FF D9) after its last
/// start-of-scan. Entropy-coded data cannot contain FF D9 (0xFF is stuffed),
/// so a missing marker means the file was cut short; some decoders would
/// silently fill the rest with grey.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(p) => bytes[p..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn to_image_format(f: ImageFormat) -> image::ImageFormat {
    match f {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Normalization;

    fn input(layout: InputLayout) -> InputConfig {
        InputConfig {
            name: None,
            width: 4,
            height: 4,
            layout,
            crop_fraction: 1.0,
            resize_filter: ResizeFilter::Bilinear,
            normalization: Normalization::ScaleOffset {
                scale: 1.0 / 128.0,
                offset: -127.0 / 128.0,
            },
        }
    }

    fn encode(img: &DynamicImage, f: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, f).unwrap();
        out.into_inner()
    }

    #[test]
    fn crop_box_is_centred_fraction_of_short_side() {
        let (l, t, w, h) = crop_box(500, 375, 224, 224, 0.875);
        assert!((w - 328.125).abs() < 1e-9 && (h - 328.125).abs() < 1e-9);
        assert!((l - 85.9375).abs() < 1e-9 && (t - 23.4375).abs() < 1e-9);
        // Non-square target keeps its aspect ratio.
        let (_, _, w, h) = crop_box(1000, 1000, 200, 100, 1.0);
        assert_eq!((w, h), (1000.0, 500.0));
    }

    #[test]
    fn solid_colour_normalises_exactly_in_both_layouts() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            10,
            7,
            image::Rgb([255, 127, 0]),
        ));
        let png = encode(&img, image::ImageFormat::Png);
        let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
        let t = p.preprocess(&png).unwrap();
        assert_eq!((t.width, t.height, t.format), (10, 7, ImageFormat::Png));
        assert_eq!(t.tensor.len(), 48);
        assert!(t.tensor[..16].iter().all(|&v| v == 1.0));
        assert!(t.tensor[16..32].iter().all(|&v| v == 0.0));
        assert!(t.tensor[32..].iter().all(|&v| v == -127.0 / 128.0));
        let p = Preprocessor::new(input(InputLayout::Nhwc), DecodeLimits::default());
        let t = p.preprocess(&png).unwrap();
        assert_eq!(&t.tensor[..3], &[1.0, 0.0, -127.0 / 128.0]);
    }

    #[test]
    fn every_supported_format_and_pixel_type_decodes() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            9,
            5,
            image::Rgba([10, 20, 30, 40]),
        ));
        let grey16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            9,
            5,
            image::Luma([65535u16]),
        ));
        let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
        for (img, f, want) in [
            (&rgba, image::ImageFormat::Png, ImageFormat::Png),
            (&grey16, image::ImageFormat::Png, ImageFormat::Png),
            (&rgba, image::ImageFormat::Bmp, ImageFormat::Bmp),
            (&rgba, image::ImageFormat::Gif, ImageFormat::Gif),
            (&rgba, image::ImageFormat::Tiff, ImageFormat::Tiff),
            (&rgba, image::ImageFormat::WebP, ImageFormat::Webp),
        ] {
            let bytes = encode(img, f);
            let t = p
                .preprocess(&bytes)
                .unwrap_or_else(|e| panic!("{f:?}: {e}"));
            assert_eq!(t.format, want);
            assert_eq!((t.width, t.height), (9, 5));
        }
        let jpeg = encode(
            &DynamicImage::ImageRgb8(rgba.to_rgb8()),
            image::ImageFormat::Jpeg,
        );
        assert_eq!(p.preprocess(&jpeg).unwrap().format, ImageFormat::Jpeg);
    }

    #[test]
    fn bad_inputs_get_typed_errors() {
        let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
        assert_eq!(p.preprocess(b"").unwrap_err(), ImageError::Empty);
        assert!(matches!(
            p.preprocess(b"hello, this is text").unwrap_err(),
            ImageError::Unsupported { detected: None }
        ));
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(
            p.preprocess(heic).unwrap_err(),
            ImageError::Unsupported {
                detected: Some("heic".into())
            }
        );
        let img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])));
        let jpeg = encode(&img, image::ImageFormat::Jpeg);
        let cut = &jpeg[..jpeg.len() - 40];
        assert!(matches!(
            p.preprocess(cut).unwrap_err(),
            ImageError::Corrupt {
                format: ImageFormat::Jpeg,
                ..
            }
        ));
        let png = encode(&img, image::ImageFormat::Png);
        assert!(matches!(
            p.preprocess(&png[..png.len() / 2]).unwrap_err(),
            ImageError::Corrupt { .. }
        ));
        let small = Preprocessor::new(
            input(InputLayout::Nchw),
            DecodeLimits {
                max_pixels: 100,
                max_bytes: 1 << 20,
            },
        );
        assert!(matches!(
            small.preprocess(&png).unwrap_err(),
            ImageError::TooLarge {
                width: 64,
                height: 64,
                ..
            }
        ));
        let tiny = Preprocessor::new(
            input(InputLayout::Nchw),
            DecodeLimits {
                max_pixels: 1 << 20,
                max_bytes: 10,
            },
        );
        assert!(matches!(
            tiny.preprocess(&png).unwrap_err(),
            ImageError::TooManyBytes { .. }
        ));
    }

    #[test]
    fn bomb_header_is_refused_without_decoding() {
        // A valid PNG signature and IHDR claiming 100000×100000, then nothing.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
        assert!(matches!(
            p.preprocess(&png).unwrap_err(),
            ImageError::TooLarge {
                width: 100_000,
                height: 100_000,
                ..
            }
        ));
    }

    /// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (6).
    fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
        let jpeg = encode(img, image::ImageFormat::Jpeg);
        let mut tiff = b"MM\0\x2A\0\0\0\x08".to_vec();
        tiff.extend(1u16.to_be_bytes()); // one IFD entry
        tiff.extend(0x0112u16.to_be_bytes()); // Orientation
        tiff.extend(3u16.to_be_bytes()); // SHORT
        tiff.extend(1u32.to_be_bytes());
        tiff.extend(orientation.to_be_bytes());
        tiff.extend([0, 0]);
        tiff.extend(0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend([0xFF, 0xE1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Left half red, right half blue, 40×20.
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        }));
        let p = Preprocessor::new(input(InputLayout::Nchw), DecodeLimits::default());
        let (_, plain) = p.decode(&jpeg_with_orientation(&img, 1)).unwrap();
        assert_eq!(plain.dimensions(), (40, 20));
        let (_, rotated) = p.decode(&jpeg_with_orientation(&img, 6)).unwrap();
        assert_eq!(rotated.dimensions(), (20, 40));
        // Rotated 90° clockwise: the left (red) half is now on top.
        assert!(rotated.get_pixel(10, 5)[0] > 200 && rotated.get_pixel(10, 5)[2] < 60);
        assert!(rotated.get_pixel(10, 35)[2] > 200 && rotated.get_pixel(10, 35)[0] < 60);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
