//! The body of `POST /classify`: a multipart form with an `image` field
//! (what the seed's clients and browsers send), or the image itself with an
//! `image/*` content type (what `curl --data-binary` users send).
//!
//! The whole body is read before anything else is decided, so that every
//! answer, including 503 and 404, reaches the client instead of a reset
//! connection.

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};

use crate::error::ApiError;
use crate::storage::sanitize_filename;

/// The multipart field the seed's clients use.
pub const FIELD: &str = "image";

/// An uploaded image.
#[derive(Debug)]
pub struct Upload {
    pub bytes: Bytes,
    /// Sanitised client filename (metadata only).
    pub filename: Option<String>,
}

/// Reads the upload of `req`. The body limit comes from the route's
/// `DefaultBodyLimit`; `limit` is only used in the 413 message.
pub async fn read_upload(req: Request, limit: usize) -> Result<Upload, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let too_large = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit }
        } else {
            ApiError::BadMultipart(text)
        }
    };
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|r| too_large(r.status(), r.body_text()))?;
        let mut found: Option<Upload> = None;
        // Read every field, not only up to `image`, so the body is consumed.
        loop {
            match form.next_field().await {
                Ok(Some(field)) => {
                    let is_image = field.name() == Some(FIELD) && found.is_none();
                    let filename = field.file_name().and_then(sanitize_filename);
                    let data = field_bytes(field)
                        .await
                        .map_err(|e| too_large(e.status(), e.body_text()))?;
                    if is_image {
                        found = Some(Upload {
                            bytes: data,
                            filename,
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(too_large(e.status(), e.body_text())),
            }
        }
        // An empty file part is what a browser sends when no file was chosen.
        return found
            .filter(|u| !u.bytes.is_empty())
            .ok_or(ApiError::NoImage);
    }
    let raw =
        content_type.starts_with("image/") || content_type.starts_with("application/octet-stream");
    let form =
        content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded");
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|r| match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit },
            _ => ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text())),
        })?;
    if raw {
        if bytes.is_empty() {
            return Err(ApiError::NoImage);
        }
        return Ok(Upload {
            bytes,
            filename: None,
        });
    }
    if form || bytes.is_empty() {
        return Err(ApiError::NoImage);
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "unsupported content type {content_type:?}: send multipart/form-data with an `{FIELD}` field, \
         or the image itself with an image/* content type"
    )))
}

/// A field's data in one buffer, copied once. (`Field::bytes` grows its
/// buffer from empty by doubling: an 8 MB upload is copied about twice more
/// and briefly needs twice the memory; a field that arrives in one chunk is
/// not copied at all here.)
async fn field_bytes(mut field: Field<'_>) -> Result<Bytes, MultipartError> {
    let mut chunks = Vec::new();
    let mut len = 0;
    while let Some(chunk) = field.chunk().await? {
        len += chunk.len();
        chunks.push(chunk);
    }
    if chunks.len() <= 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut data = BytesMut::with_capacity(len);
    for chunk in &chunks {
        data.extend_from_slice(chunk);
    }
    Ok(data.freeze())
}
