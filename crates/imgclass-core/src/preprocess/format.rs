//! Which image format a body is, from its first bytes.

use serde::{Deserialize, Serialize};

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

    /// The `image` crate's name for this format.
    pub(crate) fn to_image_format(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Bmp => image::ImageFormat::Bmp,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::Webp => image::ImageFormat::WebP,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
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
