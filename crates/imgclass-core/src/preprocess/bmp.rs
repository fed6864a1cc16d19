//! Uncompressed 24- and 32-bit BMP pixels addressed in place in the upload,
//! so the resizer reads the model's crop straight from the body: no decode
//! into a full-size RGB buffer (8.3 MB for a 1920×1440 photo) and no pass
//! over the rows outside the crop.
//!
//! The `image` crate's BMP decoder validates the headers (signature, header
//! kind, sizes, planes, bit depth, compression, bit masks); it has no crop
//! or row access, so the few fixed-offset fields needed to address rows
//! (pixel data offset, bit depth, compression, masks) are read here. Every
//! other layout — palettes, RLE, 16-bit, other masks, OS/2 headers, files
//! shorter than their rows — returns `None` and is decoded by `image` in
//! full ([`super::decode`]), which also produces its error messages.

use std::io::Cursor;

use image::ImageDecoder;
use image::codecs::bmp::BmpDecoder;

use super::error::ImageError;
use super::format::ImageFormat;

/// Byte order of the stored pixels: every layout taken here stores blue,
/// green, red (then alpha or padding for 32-bit), which is what the `image`
/// decoder maps to R, G, B (dropping the fourth byte).
#[derive(Debug)]
pub(crate) struct BgrRows<'a> {
    pub width: u32,
    pub height: u32,
    /// 3 (BGR) or 4 (BGRA / BGRX).
    pub bytes_per_pixel: usize,
    /// Top row first, each exactly `width · bytes_per_pixel` bytes.
    pub rows: Vec<&'a [u8]>,
}

const BI_RGB: u32 = 0;
const BI_BITFIELDS: u32 = 3;
/// File header (14 bytes) + the BITMAPINFOHEADER part every later header
/// starts with (40 bytes): the masks of BI_BITFIELDS follow at this offset.
const MASKS_OFFSET: usize = 14 + 40;

/// The rows of `bytes` when it is a BMP laid out as [`BgrRows`] describes;
/// `None` for any other BMP. Errors are the decoder's verdict on the header.
pub(crate) fn bgr_rows(bytes: &[u8]) -> Result<Option<BgrRows<'_>>, ImageError> {
    let decoder = BmpDecoder::new(Cursor::new(bytes))
        .map_err(|e| ImageError::corrupt(ImageFormat::Bmp, e))?;
    let (width, height) = decoder.dimensions();
    let le16 = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]))
    };
    let le32 = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    // The decoder accepted the headers, so these fields exist unless the
    // header is the 12-byte OS/2 kind, which is left to it.
    let (Some(offset), Some(header_len), Some(raw_height), Some(bits), Some(compression)) =
        (le32(10), le32(14), le32(22), le16(28), le32(30))
    else {
        return Ok(None);
    };
    if header_len < 40 {
        return Ok(None);
    }
    let bytes_per_pixel = match (bits, compression) {
        (24, BI_RGB) => 3,
        (32, BI_RGB) => 4,
        (32, BI_BITFIELDS)
            if (
                le32(MASKS_OFFSET),
                le32(MASKS_OFFSET + 4),
                le32(MASKS_OFFSET + 8),
            ) == (Some(0x00FF_0000), Some(0x0000_FF00), Some(0x0000_00FF)) =>
        {
            4
        }
        _ => return Ok(None),
    };
    let top_down = (raw_height as i32) < 0;
    let row_len = width as usize * bytes_per_pixel;
    // Rows are padded to a multiple of 4 bytes.
    let stride = row_len.div_ceil(4) * 4;
    let start = offset as usize;
    let fits = (stride as u64)
        .checked_mul(u64::from(height))
        .and_then(|n| n.checked_add(start as u64))
        .is_some_and(|end| end <= bytes.len() as u64);
    if !fits {
        return Ok(None);
    }
    let row = |i: usize| &bytes[start + i * stride..start + i * stride + row_len];
    let h = height as usize;
    let rows = if top_down {
        (0..h).map(row).collect()
    } else {
        (0..h).rev().map(row).collect()
    };
    Ok(Some(BgrRows {
        width,
        height,
        bytes_per_pixel,
        rows,
    }))
}
