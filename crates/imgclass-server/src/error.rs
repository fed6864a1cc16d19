//! Every error the service can answer with, and the one place that maps
//! each kind to an HTTP status and a JSON body `{"error": "..."}`, including
//! the pipeline's [`PipelineError`].
//!
//! Messages are written for the client: they say what was wrong with the
//! request and never echo internals (paths, engine errors, panics). A
//! server fault is answered with a generic 500; its detail travels in the
//! response's extensions to the telemetry middleware, which logs it with
//! the request id and strips it.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use imgclass_core::ImageError;
use imgclass_oip::OipError;
use imgclass_pipeline::PipelineError;

use crate::response::{self, InternalDetail, StoreFailure};

/// An answer that is not a success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The seed's message, kept verbatim for its clients.
    #[error("No image file provided")]
    NoImage,
    #[error("malformed multipart body: {0}")]
    BadMultipart(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A malformed Open Inference Protocol request (the codec's message).
    #[error(transparent)]
    Protocol(#[from] OipError),
    /// The request conflicts with work in progress (a model already loading).
    #[error("{0}")]
    Conflict(String),
    /// An image was refused; `index` names it within a batch.
    #[error("{}", image_message(*.index, .error))]
    Image {
        index: Option<usize>,
        error: ImageError,
    },
    #[error("model {name:?} is not served here (available: {available})")]
    ModelNotFound { name: String, available: String },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the model is still loading; retry shortly")]
    NotReady,
    #[error("the server is overloaded (queue full); retry shortly")]
    QueueFull,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the request took longer than {0:?}")]
    Timeout(Duration),
    /// The body arrived too slowly (see `connection`).
    #[error("{0}")]
    BodyTimeout(String),
    #[error("missing or wrong API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// A service this answer depends on (the deployment's Prometheus)
    /// failed; the message says which and why.
    #[error("{0}")]
    BadGateway(String),
    /// Under `--require-store`, the upload could not be stored; `detail`
    /// is logged with the request id, never sent.
    #[error(
        "the upload could not be stored (the images folder is full or not writable) and this server answers only stored uploads; nothing was kept"
    )]
    NotStored { detail: String },
    /// A server fault; `detail` is logged, never sent.
    #[error("internal error")]
    Internal { detail: String },
}

fn image_message(index: Option<usize>, error: &ImageError) -> String {
    match index {
        Some(i) => format!("image {i}: {error}"),
        None => error.to_string(),
    }
}

impl ApiError {
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal {
            detail: detail.into(),
        }
    }

    /// The status of each kind, in one place.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoImage | ApiError::BadMultipart(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Protocol(e) if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Protocol(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Image { error, .. } => match error {
                // An empty file part is what a browser sends when no file was chosen.
                ImageError::Empty => StatusCode::BAD_REQUEST,
                ImageError::Unsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ImageError::TooManyBytes { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ImageError::TooLarge { .. }
                | ImageError::ZeroSized { .. }
                | ImageError::Corrupt { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::ModelNotFound { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady | ApiError::QueueFull | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::NotStored { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The client-facing message.
    pub fn message(&self) -> String {
        match self {
            // Keep the seed's exact message for a missing or empty upload.
            ApiError::Image {
                error: ImageError::Empty,
                index: None,
            } => ApiError::NoImage.to_string(),
            other => other.to_string(),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(error: ImageError) -> Self {
        ApiError::Image { index: None, error }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::QueueFull => ApiError::QueueFull,
            PipelineError::Closed => ApiError::ShuttingDown,
            PipelineError::Timeout(budget) => ApiError::Timeout(budget),
            PipelineError::Image { index, error } => ApiError::Image { index, error },
            PipelineError::Tensor(message) => ApiError::BadRequest(message),
            PipelineError::Internal(detail) => ApiError::Internal { detail },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = response::error_body(status, &self.message());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response::retry_later(&mut response);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        match self {
            ApiError::Internal { detail } => {
                response.extensions_mut().insert(InternalDetail(detail));
            }
            ApiError::NotStored { detail } => {
                response.extensions_mut().insert(StoreFailure(detail));
            }
            _ => {}
        }
        response
    }
}

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot use the images folder {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] imgclass_pipeline::LifecycleError),
    #[error("--prometheus-url / --prometheus-selector: {0}")]
    Prometheus(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_never_500() {
        let cases = [
            (ApiError::NoImage, 400),
            (
                ApiError::Image {
                    index: None,
                    error: ImageError::Empty,
                },
                400,
            ),
            (ApiError::TooLarge { limit: 1 }, 413),
            (
                ApiError::Image {
                    index: None,
                    error: ImageError::Unsupported { detected: None },
                },
                415,
            ),
            (
                ApiError::Image {
                    index: Some(2),
                    error: ImageError::TooLarge {
                        width: 1,
                        height: 1,
                        limit: 0,
                    },
                },
                422,
            ),
            (ApiError::QueueFull, 503),
            (ApiError::Timeout(Duration::from_secs(1)), 504),
            (ApiError::BodyTimeout("slow".into()), 408),
            (
                ApiError::NotStored {
                    detail: "EROFS".into(),
                },
                507,
            ),
            (ApiError::Unauthorized, 401),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
        }
        assert_eq!(
            ApiError::Image {
                index: None,
                error: ImageError::Empty
            }
            .message(),
            "No image file provided"
        );
        assert!(ApiError::internal("secret path /x").message() == "internal error");
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let r = ApiError::QueueFull.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::Unauthorized.into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn pipeline_errors_map_to_statuses_and_internal_detail_is_kept_for_the_log() {
        let cases = [
            (PipelineError::QueueFull, 503),
            (PipelineError::Closed, 503),
            (PipelineError::Timeout(Duration::from_secs(2)), 504),
            (PipelineError::Tensor("tensor 0 has 3 values".into()), 400),
            (
                PipelineError::Image {
                    index: Some(1),
                    error: ImageError::ZeroSized {
                        width: 0,
                        height: 1,
                    },
                },
                422,
            ),
            (PipelineError::Internal("engine exploded".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e.clone()).status().as_u16(), status, "{e:?}");
        }
        let r = ApiError::from(PipelineError::Internal("secret".into())).into_response();
        assert_eq!(
            r.extensions().get::<InternalDetail>().map(|d| d.0.as_str()),
            Some("secret")
        );
    }
}
