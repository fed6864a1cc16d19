//! What may be decoded: byte and pixel limits, checked from the header
//! before any pixel buffer exists, and the allocation bound handed to the
//! decoders themselves.

use super::error::ImageError;

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

impl DecodeLimits {
    /// Refuses empty and oversized bodies.
    pub(crate) fn check_bytes(&self, len: usize) -> Result<(), ImageError> {
        if len == 0 {
            return Err(ImageError::Empty);
        }
        if len > self.max_bytes {
            return Err(ImageError::TooManyBytes {
                bytes: len,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Refuses zero-sized images and images over the pixel limit.
    pub(crate) fn check_size(&self, width: u32, height: u32) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::ZeroSized { width, height });
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(ImageError::TooLarge {
                width,
                height,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }

    /// Largest single allocation a decoder may make: headroom over the pixel
    /// limit for the decoders' own buffers (16-bit RGBA is 8 bytes per pixel).
    pub(crate) fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(64 << 20)
    }

    /// The same bound in the `image` crate's terms.
    pub(crate) fn image_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(self.max_alloc());
        limits
    }
}
