//! Bytes to tensor: sniff, check limits from the header, decode (JPEG at
//! the smallest DCT scale the model's crop allows), orient, centre-crop,
//! resize and normalise.
//!
//! The order matters for safety: the format and dimensions come from the
//! header alone, so a decompression bomb (a tiny file claiming 100000×100000
//! pixels) is refused before any pixel buffer is allocated.
//!
//! One job per module: `format` sniffs, `probe` reads headers under the
//! `limits`, `geometry` places the crop and picks the JPEG scale, `jpeg`
//! and `decode` produce RGB8, `bmp` addresses the rows of uncompressed BMPs
//! in place (resized straight from the body, never decoded whole), `orient`
//! turns it upright, `resize` and `normalise` make the model input. This
//! module only strings them together.

mod bmp;
mod decode;
mod error;
mod format;
mod geometry;
mod jpeg;
mod limits;
mod normalise;
mod orient;
mod pixel_buffer;
mod probe;
mod resize;
mod tiff_ifd;

use std::time::{Duration, Instant};

use image::RgbImage;
use image::metadata::Orientation;

use crate::config::InputConfig;

pub use error::ImageError;
pub use format::ImageFormat;
pub use geometry::{JPEG_SCALE_DENOMINATORS, crop_box, jpeg_scale_denominator};
pub use limits::DecodeLimits;

/// A decoded image ready for the model.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    /// The model input for this image, in the model's layout.
    pub tensor: Vec<f32>,
    pub format: ImageFormat,
    /// Size of the image after EXIF orientation, at full resolution (not
    /// the reduced size a JPEG may have been decoded at).
    pub width: u32,
    pub height: u32,
}

/// What [`Preprocessor::preprocess_into`] learnt about an image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Size after EXIF orientation, at full resolution.
    pub width: u32,
    pub height: u32,
    /// The image was decoded at 1/`scale_denominator` of its size (JPEG
    /// DCT scaling: 1, 2, 4 or 8; always 1 for other formats).
    pub scale_denominator: u32,
    /// Time spent in each stage, for metrics.
    pub timings: StageTimings,
}

/// Wall time spent in each preprocessing stage on the calling thread.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimings {
    /// Header, decoding (at the chosen scale) and orientation.
    pub decode: Duration,
    /// Crop and resize to the model's input size.
    pub resize: Duration,
    /// RGB8 to the model's float input.
    pub normalise: Duration,
}

/// An image decoded for one model: upright, possibly at a reduced size.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub format: ImageFormat,
    /// The pixels, upright, ⌈width/d⌉×⌈height/d⌉ for d = `scale_denominator`.
    pub image: RgbImage,
    /// Full-resolution size after EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub scale_denominator: u32,
}

/// An image ready for the model's crop and resize
/// ([`Preprocessor::source_for_model`]).
#[derive(Debug)]
pub struct Source<'a>(SourceKind<'a>);

#[derive(Debug)]
enum SourceKind<'a> {
    Decoded(Decoded),
    /// Rows of an uncompressed BMP, borrowed from the upload.
    Bmp(bmp::BgrRows<'a>),
}

impl Source<'_> {
    pub fn format(&self) -> ImageFormat {
        match &self.0 {
            SourceKind::Decoded(d) => d.format,
            SourceKind::Bmp(_) => ImageFormat::Bmp,
        }
    }

    /// Full-resolution width after EXIF orientation.
    pub fn width(&self) -> u32 {
        match &self.0 {
            SourceKind::Decoded(d) => d.width,
            SourceKind::Bmp(rows) => rows.width,
        }
    }

    /// Full-resolution height after EXIF orientation.
    pub fn height(&self) -> u32 {
        match &self.0 {
            SourceKind::Decoded(d) => d.height,
            SourceKind::Bmp(rows) => rows.height,
        }
    }

    /// See [`ImageInfo::scale_denominator`].
    pub fn scale_denominator(&self) -> u32 {
        match &self.0 {
            SourceKind::Decoded(d) => d.scale_denominator,
            SourceKind::Bmp(_) => 1,
        }
    }

    /// The pixels were never decoded: the resizer reads the model's crop
    /// from the upload's own rows (uncompressed 24- and 32-bit BMP).
    pub fn is_in_place(&self) -> bool {
        matches!(self.0, SourceKind::Bmp(_))
    }
}

/// Turns encoded images into model inputs for one model's input spec.
/// Cheap to clone; safe to share between threads.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    input: InputConfig,
    limits: DecodeLimits,
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

    /// Reads format and stored size (before EXIF orientation) from the
    /// header only, enforcing the limits.
    pub fn probe(&self, bytes: &[u8]) -> Result<(ImageFormat, u32, u32), ImageError> {
        let h = probe::read(bytes, &self.limits)?;
        Ok((h.format, h.width, h.height))
    }

    /// Decodes to full-resolution RGB8 with EXIF orientation applied, after
    /// [`Self::probe`]'s checks. For inspection and reference; the model
    /// path ([`Self::preprocess_into`]) decodes JPEG at a reduced size.
    pub fn decode(&self, bytes: &[u8]) -> Result<(ImageFormat, RgbImage), ImageError> {
        let d = self.decode_at(bytes, |_, _| 1)?;
        Ok((d.format, d.image))
    }

    /// Decodes for this model: JPEG at the largest DCT reduction whose
    /// centre crop still covers the model input one to one
    /// ([`jpeg_scale_denominator`]), other formats at full size; upright.
    pub fn decode_for_model(&self, bytes: &[u8]) -> Result<Decoded, ImageError> {
        self.decode_at(bytes, |w, h| jpeg_scale_denominator(w, h, &self.input))
    }

    /// `denominator` gets the oriented full size of a JPEG.
    fn decode_at(
        &self,
        bytes: &[u8],
        denominator: impl FnOnce(u32, u32) -> u32,
    ) -> Result<Decoded, ImageError> {
        let header = probe::read(bytes, &self.limits)?;
        self.decode_with_header(bytes, header, denominator)
    }

    fn decode_with_header(
        &self,
        bytes: &[u8],
        header: probe::Header,
        denominator: impl FnOnce(u32, u32) -> u32,
    ) -> Result<Decoded, ImageError> {
        let (stored, orientation, d) = match header.format {
            ImageFormat::Jpeg => {
                let o = header.orientation.unwrap_or(Orientation::NoTransforms);
                let (w, h) = orient::oriented_size(header.width, header.height, o);
                let stored = (header.width, header.height);
                let (rgb, d) = jpeg::decode(bytes, stored, denominator(w, h))?;
                (rgb, o, d)
            }
            format => {
                let (rgb, o) = decode::decode(bytes, format, &self.limits)?;
                (rgb, o, 1)
            }
        };
        let (width, height) = orient::oriented_size(header.width, header.height, orientation);
        Ok(Decoded {
            format: header.format,
            image: orient::apply(stored, orientation),
            width,
            height,
            scale_denominator: d,
        })
    }

    /// Centre-crops and resizes a decoded image to the model's input size:
    /// `out` gets width × height interleaved RGB8 pixels.
    ///
    /// # Panics
    /// When `out` is not `3 · input.width · input.height` bytes.
    pub fn resize_into(&self, decoded: &Decoded, out: &mut [u8]) {
        let full_size = (decoded.width, decoded.height);
        self.resize_image(&decoded.image, full_size, decoded.scale_denominator, out);
    }

    /// Resizes the model's crop of an upright image that is `full_size`
    /// at full resolution and `image` at 1/`denominator` of it.
    fn resize_image(
        &self,
        image: &RgbImage,
        full_size: (u32, u32),
        denominator: u32,
        out: &mut [u8],
    ) {
        let crop = geometry::model_crop(full_size.0, full_size.1, &self.input);
        resize::crop_resize_into(
            image,
            geometry::scale_crop(crop, denominator),
            self.input.resize_filter,
            (self.input.width, self.input.height),
            out,
        );
    }

    /// Normalises model-size RGB8 pixels (from [`Self::resize_into`]) into
    /// `out` in the model's layout.
    ///
    /// # Panics
    /// When either length is not [`Self::image_len`].
    pub fn normalise_into(&self, rgb: &[u8], out: &mut [f32]) {
        assert_eq!(out.len(), self.image_len(), "output must hold one image");
        normalise::normalise_into(rgb, self.input.layout, &self.input.normalization, out);
    }

    /// The whole pipeline, writing the model input for one image straight
    /// into `out` — e.g. one image's slot of a batch buffer — with no
    /// intermediate tensor. `out` is left unspecified on error.
    ///
    /// # Panics
    /// When `out.len()` is not [`Self::image_len`].
    pub fn preprocess_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<ImageInfo, ImageError> {
        assert_eq!(out.len(), self.image_len(), "output must hold one image");
        let t0 = Instant::now();
        let source = self.source_for_model(bytes)?;
        let t1 = Instant::now();
        let mut rgb = vec![0u8; self.image_len()];
        self.resize_source_into(&source, &mut rgb);
        let t2 = Instant::now();
        self.normalise_into(&rgb, out);
        let t3 = Instant::now();
        let info = ImageInfo {
            format: source.format(),
            width: source.width(),
            height: source.height(),
            scale_denominator: source.scale_denominator(),
            timings: StageTimings {
                decode: t1 - t0,
                resize: t2 - t1,
                normalise: t3 - t2,
            },
        };
        if let SourceKind::Decoded(decoded) = source.0 {
            pixel_buffer::give_back(decoded.image.into_raw());
        }
        Ok(info)
    }

    /// What the model path resizes from, after [`Self::probe`]'s checks:
    /// an uncompressed 24- or 32-bit BMP as rows of `bytes` itself (no
    /// decoding: the resizer reads only the crop), anything else as
    /// [`Self::decode_for_model`] decodes it.
    pub fn source_for_model<'a>(&self, bytes: &'a [u8]) -> Result<Source<'a>, ImageError> {
        let header = probe::read(bytes, &self.limits)?;
        if header.format == ImageFormat::Bmp
            && let Some(rows) = bmp::bgr_rows(bytes)?
        {
            return Ok(Source(SourceKind::Bmp(rows)));
        }
        let decoded = self.decode_with_header(bytes, header, |w, h| {
            jpeg_scale_denominator(w, h, &self.input)
        })?;
        Ok(Source(SourceKind::Decoded(decoded)))
    }

    /// [`Self::resize_into`] for a [`Source`].
    ///
    /// # Panics
    /// When `out` is not `3 · input.width · input.height` bytes.
    pub fn resize_source_into(&self, source: &Source<'_>, out: &mut [u8]) {
        match &source.0 {
            SourceKind::Decoded(decoded) => self.resize_into(decoded, out),
            // BMP has no orientation metadata: the stored rows are upright.
            SourceKind::Bmp(rows) => resize::crop_resize_bgr_into(
                rows,
                geometry::model_crop(rows.width, rows.height, &self.input),
                self.input.resize_filter,
                (self.input.width, self.input.height),
                out,
            ),
        }
    }

    /// The whole pipeline: bytes to a model input.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Preprocessed, ImageError> {
        let mut tensor = vec![0f32; self.image_len()];
        let info = self.preprocess_into(bytes, &mut tensor)?;
        Ok(Preprocessed {
            tensor,
            format: info.format,
            width: info.width,
            height: info.height,
        })
    }

    /// Centre-crops, resizes and normalises a full-resolution upright RGB
    /// image (e.g. from [`Self::decode`]).
    pub fn rgb_to_tensor(&self, rgb: &RgbImage) -> Vec<f32> {
        let mut small = vec![0u8; self.image_len()];
        self.resize_image(rgb, rgb.dimensions(), 1, &mut small);
        let mut tensor = vec![0f32; self.image_len()];
        self.normalise_into(&small, &mut tensor);
        tensor
    }
}

#[cfg(test)]
mod tests;
