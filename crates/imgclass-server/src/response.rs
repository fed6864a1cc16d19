//! What every answer shares, seed routes and KServe alike: header names,
//! timing headers, the JSON error body, the 503 + `Retry-After` answer and
//! the record stored beside each upload.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imgclass_pipeline::{Classified, Pipeline, Timings};

use crate::storage::{StoredRecord, now_rfc3339};

pub const REQUEST_ID: &str = "x-request-id";
pub const TOTAL_TIME: &str = "x-total-time";
pub const IMAGE_ID: &str = "x-image-id";
pub const QUEUE_TIME: &str = "x-queue-time";
pub const INFERENCE_TIME: &str = "x-inference-time";
pub const MODEL: &str = "x-model";
/// `true` when the upload and its record are in the images folder (the
/// durability contract), `false` when storing failed; absent with storage off.
pub const STORED: &str = "x-image-stored";

/// How long clients are told to wait after a 503 (queue full or loading).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Classes kept in a stored result, whatever the client asked for.
pub const STORED_TOP_K: usize = 5;

/// A server fault's detail, carried from the handler to the telemetry
/// middleware (which logs it with the request id) and never sent.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

/// Why an upload was not stored, carried to the telemetry middleware
/// (which logs it with the request id) and never sent.
#[derive(Clone, Debug)]
pub struct StoreFailure(pub String);

/// What became of an answer's uploads.
#[derive(Debug)]
pub enum Stored {
    /// Storage is off.
    Off,
    /// In the images folder, as the commit policy promises.
    Yes,
    /// Storing failed (the answer says so); the detail is logged.
    No(String),
}

impl Stored {
    /// Says so in `response`: the `X-Image-Stored` header, and the failure
    /// for the log.
    pub fn mark(self, response: &mut Response) {
        let value = match self {
            Stored::Off => return,
            Stored::Yes => "true",
            Stored::No(detail) => {
                response.extensions_mut().insert(StoreFailure(detail));
                "false"
            }
        };
        response
            .headers_mut()
            .insert(STORED, HeaderValue::from_static(value));
    }
}

/// The model that handled a request, carried in the response's extensions
/// to the telemetry middleware (metrics by model).
#[derive(Clone, Debug)]
pub struct ServedModel(pub String);

/// Marks `response` (success or error) as handled by `model`.
pub fn served_by(mut response: Response, model: &str) -> Response {
    response
        .extensions_mut()
        .insert(ServedModel(model.to_string()));
    response
}

/// `{"error": message}` with `status`.
pub fn error_body(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Adds `Retry-After` (every 503 carries it).
pub fn retry_later(response: &mut Response) {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER.as_secs()),
    );
}

/// A readiness answer: 200 with `body` when ready, else 503 + `Retry-After`.
pub fn readiness(ready: bool, body: serde_json::Value) -> Response {
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        retry_later(&mut r);
        r
    }
}

/// Formats a duration in milliseconds for the timing headers.
pub fn ms_header(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1e3))
        .expect("digits are a valid header")
}

/// The queue, inference and model headers of an inference answer.
pub fn timing_headers(response: &mut Response, pipeline: &Pipeline, timings: &Timings) {
    let h = response.headers_mut();
    h.insert(QUEUE_TIME, ms_header(timings.queue));
    h.insert(INFERENCE_TIME, ms_header(timings.inference));
    if let Ok(v) = HeaderValue::from_str(pipeline.name()) {
        h.insert(MODEL, v);
    }
}

/// The sidecar record of a classified upload.
pub fn stored_record(
    pipeline: &Pipeline,
    classified: &Classified,
    filename: Option<String>,
) -> StoredRecord {
    let image = &classified.image;
    StoredRecord {
        id: image.id.clone(),
        format: image.format,
        bytes: image.bytes,
        width: image.width,
        height: image.height,
        model: pipeline.name().to_string(),
        engine: pipeline.engine().kind().as_str().to_string(),
        predictions: pipeline.top_k(&classified.probabilities, STORED_TOP_K),
        created: now_rfc3339(),
        filename,
    }
}
