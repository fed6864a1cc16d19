//! Format and size from the header alone, with the limits enforced, so a
//! decompression bomb (a tiny file claiming 100000×100000 pixels) is refused
//! before any pixel buffer is allocated.

use std::io::Cursor;

use image::ImageReader;
use image::metadata::Orientation;

use super::error::ImageError;
use super::format::ImageFormat;
use super::jpeg;
use super::limits::DecodeLimits;
use super::tiff_ifd;

/// What the header says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub format: ImageFormat,
    /// Stored size (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// Known from the header for JPEG; other formats' decoders report it.
    pub orientation: Option<Orientation>,
}

/// Reads the header of `bytes`, refusing what `limits` forbid.
pub(crate) fn read(bytes: &[u8], limits: &DecodeLimits) -> Result<Header, ImageError> {
    limits.check_bytes(bytes.len())?;
    let format = ImageFormat::sniff(bytes).map_err(|d| ImageError::Unsupported {
        detected: d.map(str::to_string),
    })?;
    let header = if format == ImageFormat::Jpeg {
        let j = jpeg::read_header(bytes)?;
        Header {
            format,
            width: j.width,
            height: j.height,
            orientation: Some(j.orientation),
        }
    } else {
        if format == ImageFormat::Tiff {
            tiff_ifd::check_first_directory(bytes, limits.max_alloc())
                .map_err(|e| ImageError::corrupt(format, e))?;
        }
        // Fixed-offset headers are read directly: some decoders want more
        // than the header before they report a size, and a bomb must be
        // refused no matter what follows it.
        let (width, height) = match fixed_header_size(format, bytes) {
            Some(size) => size,
            None => ImageReader::with_format(Cursor::new(bytes), format.to_image_format())
                .into_dimensions()
                .map_err(|e| ImageError::corrupt(format, e))?,
        };
        Header {
            format,
            width,
            height,
            orientation: None,
        }
    };
    limits.check_size(header.width, header.height)?;
    Ok(header)
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
