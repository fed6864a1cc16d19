//! KServe v2 / Open Inference Protocol (REST) as Triton's client speaks
//! it: server and model metadata, health, and infer. The wire format is
//! the `imgclass-oip` codec's; this module only maps it onto the model.
//!
//! Infer takes one input, chosen by its datatype (any name is accepted):
//! - `BYTES`: encoded images, shape `[N]` or `[N, 1]` — as binary tensor
//!   data (4-byte little-endian length, then the bytes; tritonclient's
//!   default), as base64 strings or `{"b64": "..."}` in JSON, or as a raw
//!   body of one image with `Inference-Header-Content-Length: 0`;
//! - `FP32`: images already preprocessed to the model's input, shape
//!   `[N, 3, H, W]` (NCHW models), binary or JSON.
//!
//! It answers `probabilities` (FP32 `[N, classes]`), or with
//! `"parameters": {"classification": k}` on the output BYTES `[N, k]`
//! strings `"<prob>:<index>:<label>"` (Triton's classification extension);
//! in binary when the output asks `binary_data: true` or the request sets
//! `binary_data_output: true`, in JSON otherwise. The request `id` is
//! echoed; request parameters this server does not use (priority, timeout,
//! sequence…) are accepted and ignored. Errors use the protocol's
//! `{"error": "..."}` form.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use imgclass_oip::{
    DataType, INFERENCE_HEADER_CONTENT_LENGTH, InferBody, InferOutput, InferRequest, InferResponse,
    InputTensor, JsonBytes, ParseOptions, RawInput, ServerMetadata, Tensor, classification,
    extension, parse_infer_request,
};
use imgclass_pipeline::{Deadline, Pipeline, Scored, Timings};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;
use crate::limits;
use crate::response::{Stored, readiness, served_by, stored_record, timing_headers};
use crate::served_model::{
    self, BYTES_INPUT, MAX_IMAGES_PER_REQUEST, MODEL_VERSION, ModelPath, OUTPUT,
};
use crate::telemetry::RequestContext;

/// The protocol extensions this server implements, as `GET /v2` lists them.
pub const EXTENSIONS: [&str; 5] = [
    extension::BINARY_TENSOR_DATA,
    extension::CLASSIFICATION,
    extension::MODEL_CONFIGURATION,
    extension::MODEL_REPOSITORY,
    extension::STATISTICS,
];

/// `GET /v2`.
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "imgclass".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    })
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// `GET /v2/health/ready`.
pub async fn ready(State(state): State<AppState>) -> Response {
    readiness(state.is_ready(), json!({ "ready": state.is_ready() }))
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`: this model is served
/// and the server is not draining; 404 for a model this server does not have.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let ready = match path.pipeline(&state) {
        Ok(_) => state.phase() != crate::app::Phase::Draining,
        Err(ApiError::NotReady) => false,
        Err(e) => return Err(e),
    };
    Ok(readiness(
        ready,
        json!({ "name": path.name, "ready": ready }),
    ))
}

/// `GET /v2/models/{name}[/versions/{version}]`.
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let pipeline = path.pipeline(&state)?;
    Ok(Json(served_model::metadata(&pipeline)).into_response())
}

/// `GET /v2/models/{name}[/versions/{version}]/config`: Triton's model
/// configuration (see [`served_model::config`]).
pub async fn model_config(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let pipeline = path.pipeline(&state)?;
    let config = served_model::config(&pipeline, state.options().max_batch_delay);
    Ok(Json(config).into_response())
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`. The model is looked
/// up before the body is read: an unknown one is a 404 whose body is
/// discarded unread (drained, so the client sees the answer).
pub async fn infer(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<ModelPath>,
    request: Request,
) -> Result<Response, ApiError> {
    let pipeline = match path.pipeline(&state) {
        Ok(p) => p,
        Err(e) => {
            limits::discard(request).await;
            return Err(e);
        }
    };
    let header_length = request
        .headers()
        .get(INFERENCE_HEADER_CONTENT_LENGTH)
        .map(|v| v.as_bytes().to_vec());
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|r| match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
                limit: state.options().max_infer_body_size,
            },
            _ => ApiError::BadRequest(format!("cannot read the request body: {}", r.body_text())),
        })?;
    let answer = async {
        let request = parse(&state, &pipeline, body, header_length.as_deref())?;
        answer(&state, &pipeline, ctx, request).await
    }
    .await;
    Ok(served_by(answer.into_response(), pipeline.name()))
}

/// The codec's limits for this model: at most a full request of
/// preprocessed images per input, and the infer body limit in bytes. JSON
/// strings of BYTES inputs are base64 (images are binary; tritonclient
/// base64-encodes them itself when asked for JSON).
fn parse_options(state: &AppState, pipeline: &Pipeline) -> ParseOptions {
    ParseOptions {
        max_elements: MAX_IMAGES_PER_REQUEST * pipeline.engine().image_len().max(1),
        max_bytes: state.options().max_infer_body_size,
        json_bytes: JsonBytes::Base64,
    }
}

/// Body (and `Inference-Header-Content-Length`) → a request. A raw body is
/// one encoded image for the BYTES input.
fn parse(
    state: &AppState,
    pipeline: &Pipeline,
    body: Bytes,
    header_length: Option<&[u8]>,
) -> Result<InferRequest, ApiError> {
    let opts = parse_options(state, pipeline);
    Ok(match parse_infer_request(body, header_length, &opts)? {
        InferBody::Request(r) => r,
        InferBody::Raw(data) => InferRequest::from_raw(
            data,
            RawInput {
                name: BYTES_INPUT,
                datatype: DataType::Bytes,
                shape: &[1, 1],
            },
            &opts,
        )?,
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Images in a request from its input's shape.
fn batch_of(input: &InputTensor) -> Result<usize, ApiError> {
    let n = *input
        .tensor
        .shape()
        .first()
        .ok_or_else(|| bad(format!("input {:?}: shape must not be empty", input.name)))?;
    if !(1..=MAX_IMAGES_PER_REQUEST).contains(&n) {
        return Err(bad(format!(
            "input {:?}: the batch dimension must be from 1 to {MAX_IMAGES_PER_REQUEST}, got {n}",
            input.name
        )));
    }
    Ok(n)
}

async fn answer(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    ctx: RequestContext,
    request: InferRequest,
) -> Result<Response, ApiError> {
    let outputs = request.resolve_outputs(&[OUTPUT])?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "expected exactly one input (BYTES {BYTES_INPUT:?} or FP32 {:?}), got {}",
            served_model::FP32_INPUT,
            request.inputs.len()
        )));
    };
    let n = batch_of(input)?;
    let deadline = Deadline::from(ctx.arrived, state.options().request_timeout);
    let mut stored = Stored::Off;
    let scored: Vec<Scored> = match input.tensor.datatype() {
        DataType::Bytes => {
            let images = bytes_images(input)?;
            let admitted = pipeline.admit(n)?;
            let classified = pipeline
                .classify_all(&admitted, images.clone(), deadline)
                .await?;
            drop(admitted);
            // Answered only once stored (see `commit`).
            let records = classified.iter().map(|c| stored_record(pipeline, c, None));
            stored = state
                .store_uploads(images.into_iter().zip(records).collect())
                .await?;
            classified
                .into_iter()
                .map(|c| Scored {
                    probabilities: c.probabilities,
                    timings: c.timings,
                })
                .collect()
        }
        DataType::Fp32 => {
            let tensors = fp32_tensors(pipeline, input, n)?;
            let admitted = pipeline.admit(n)?;
            pipeline.infer_tensors(&admitted, tensors, deadline).await?
        }
        other => {
            return Err(bad(format!(
                "input {:?}: unsupported datatype {other}: send BYTES (encoded images) or FP32 (preprocessed)",
                input.name
            )));
        }
    };

    let classes = pipeline.num_classes();
    let scores: Vec<f32> = scored
        .iter()
        .flat_map(|s| s.probabilities.iter().copied())
        .collect();
    let labels = &pipeline.model().labels;
    let outputs = outputs
        .into_iter()
        .map(|spec| {
            let tensor = match spec.classification {
                Some(k) => classification(&scores, classes, k, |i| Some(labels.get(i)))?,
                None => Tensor::from_f32(vec![n, classes], &scores)?,
            };
            Ok(InferOutput {
                name: spec.name,
                tensor,
                format: spec.format,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let encoded = InferResponse {
        model_name: pipeline.name().to_string(),
        model_version: MODEL_VERSION.to_string(),
        id: request.id.clone(),
        outputs,
    }
    .encode();
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoded.content_type()),
        )],
        encoded.body,
    )
        .into_response();
    if let Some(length) = encoded.header_length {
        response
            .headers_mut()
            .insert(INFERENCE_HEADER_CONTENT_LENGTH, HeaderValue::from(length));
    }
    let timings = Timings::slowest(scored.iter().map(|s| &s.timings));
    timing_headers(&mut response, pipeline, &timings);
    stored.mark(&mut response);
    Ok(response)
}

/// The encoded images of a BYTES input of shape `[N]` or `[N, 1]`.
fn bytes_images(input: &InputTensor) -> Result<Vec<Bytes>, ApiError> {
    let shape = input.tensor.shape();
    if shape.len() > 2 || shape.get(1).is_some_and(|&d| d != 1) {
        return Err(bad(format!(
            "BYTES input {:?} must have shape [N] or [N, 1], got {shape:?}",
            input.name
        )));
    }
    Ok(input.tensor.elements().unwrap_or_default().to_vec())
}

/// Checks an FP32 input against the model's shape and splits it per image.
fn fp32_tensors(
    pipeline: &Pipeline,
    input: &InputTensor,
    n: usize,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let dims = pipeline.model().config.input.dims();
    let want: Vec<usize> = std::iter::once(n).chain(dims.iter().copied()).collect();
    if input.tensor.shape() != want.as_slice() {
        return Err(bad(format!(
            "FP32 input {:?} must have shape {want:?} (the model's preprocessed input), got {:?}",
            input.name,
            input.tensor.shape()
        )));
    }
    let values = input
        .tensor
        .to_f32()
        .ok_or_else(|| ApiError::internal("an FP32 tensor without FP32 values"))?;
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!(
            "FP32 input {:?}: value {i} is not a finite number",
            input.name
        )));
    }
    let per_image: usize = dims.iter().product();
    Ok(values
        .chunks_exact(per_image)
        .map(<[f32]>::to_vec)
        .collect())
}
