//! Why an image was refused.

use super::format::ImageFormat;

/// Why an image was refused. Every variant is the sender's problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("{}", unsupported_message(.detected))]
    Unsupported { detected: Option<String> },
    /// Reachable from `imgclass classify`, which reads files whole; the
    /// server bounds every body before it gets here, so there it cannot fire.
    #[error("the image is {bytes} bytes, over the limit of {limit} bytes")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("the image is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("the image has zero size ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("the {format} image is corrupt or truncated: {detail}")]
    Corrupt { format: ImageFormat, detail: String },
}

impl ImageError {
    /// A decoder's complaint about a `format` image.
    pub(crate) fn corrupt(format: ImageFormat, detail: impl std::fmt::Display) -> Self {
        ImageError::Corrupt {
            format,
            detail: detail.to_string(),
        }
    }
}

fn unsupported_message(detected: &Option<String>) -> String {
    match detected {
        Some(f) => format!("{f} images are not supported; send JPEG, PNG, BMP, GIF, WebP or TIFF"),
        None => "not a supported image; send JPEG, PNG, BMP, GIF, WebP or TIFF".to_string(),
    }
}
