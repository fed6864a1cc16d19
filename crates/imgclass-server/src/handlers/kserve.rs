//! KServe v2 / Open Inference Protocol (REST): server and model metadata,
//! health, and infer.
//!
//! Infer takes one input, either
//! - `BYTES`: encoded images as base64 strings (or `{"b64": "..."}`), shape `[N]` or `[N, 1]`; or
//! - `FP32`: images already preprocessed to the model's input, shape `[N, 3, H, W]` (NCHW models).
//!
//! It answers `probabilities` (FP32 `[N, classes]`), or, when the requested
//! output carries `"parameters": {"classification": k}`, BYTES `[N, k]`
//! strings `"<prob>:<index>:<label>"` as Triton's classification extension.
//! Errors use the protocol's `{"error": "..."}` form.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use imgclass_pipeline::{Deadline, Pipeline, Scored, Timings};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ApiError;
use crate::response::{Stored, readiness, served_by, stored_record, timing_headers};
use crate::telemetry::RequestContext;

/// The output tensor name.
pub const OUTPUT: &str = "probabilities";
/// The input names advertised in metadata (any name is accepted).
pub const BYTES_INPUT: &str = "image";
pub const FP32_INPUT: &str = "input";
/// Most images in one infer request.
pub const MAX_IMAGES_PER_REQUEST: usize = 64;
const MODEL_VERSION: &str = "1";

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

/// `GET /v2`.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "imgclass",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["classification"],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// `GET /v2/health/ready`.
pub async fn ready(State(state): State<AppState>) -> Response {
    readiness(state.is_ready(), json!({ "ready": state.is_ready() }))
}

/// `GET /v2/models/{name}/ready`: this model is served and the server is
/// not draining; 404 for a model this server does not have.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ready = match state.pipeline(Some(&name)) {
        Ok(_) => state.phase() != crate::app::Phase::Draining,
        Err(ApiError::NotReady) => false,
        Err(e) => return Err(e),
    };
    Ok(readiness(ready, json!({ "name": name, "ready": ready })))
}

/// `GET /v2/models/{name}`.
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let pipeline = state.pipeline(Some(&name))?;
    let [a, b, c] = pipeline.model().config.input.dims();
    let platform = match pipeline.engine().kind() {
        imgclass_core::engine::EngineKind::Ort => "onnxruntime_onnx",
        imgclass_core::engine::EngineKind::Tract => "tract_onnx",
    };
    Ok(Json(json!({
        "name": pipeline.name(),
        "versions": [MODEL_VERSION],
        "platform": platform,
        "inputs": [
            { "name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1] },
            { "name": FP32_INPUT, "datatype": "FP32", "shape": [-1, a, b, c] },
        ],
        "outputs": [
            { "name": OUTPUT, "datatype": "FP32", "shape": [-1, pipeline.num_classes()] },
        ],
    })))
}

/// Row-major flattening of nested JSON arrays (the protocol allows both).
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Images in a request from its declared shape.
fn batch_of(shape: &[i64]) -> Result<usize, ApiError> {
    let n = *shape
        .first()
        .ok_or_else(|| bad("input shape must not be empty"))?;
    if n < 1 || n as usize > MAX_IMAGES_PER_REQUEST {
        return Err(bad(format!(
            "the batch dimension must be from 1 to {MAX_IMAGES_PER_REQUEST}, got {n}"
        )));
    }
    Ok(n as usize)
}

/// Decodes a BYTES element: a base64 string or `{"b64": "..."}`.
fn decode_image(v: &Value, i: usize) -> Result<Bytes, ApiError> {
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Object(m) => m.get("b64").and_then(Value::as_str).ok_or_else(|| {
            bad(format!(
                "image {i}: expected a base64 string or {{\"b64\": \"...\"}}"
            ))
        })?,
        _ => return Err(bad(format!("image {i}: expected a base64 string"))),
    };
    let t = text.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(t).ok())
        .map(Bytes::from)
        .ok_or_else(|| bad(format!("image {i} is not valid base64")))
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: state.options().max_infer_body_size,
        },
        _ => bad(format!("cannot read the request body: {}", r.body_text())),
    })?;
    let request: InferRequest = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("invalid inference request: {e}")))?;
    let pipeline = state.pipeline(Some(&name))?;
    let answer = answer(&state, &pipeline, ctx, request).await;
    Ok(served_by(answer.into_response(), pipeline.name()))
}

async fn answer(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    ctx: RequestContext,
    request: InferRequest,
) -> Result<Response, ApiError> {
    let classification = requested_classification(&request, pipeline.num_classes())?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "expected exactly one input, got {}",
            request.inputs.len()
        )));
    };
    let n = batch_of(&input.shape)?;
    let mut values = Vec::new();
    flatten(&input.data, &mut values);
    let deadline = Deadline::from(ctx.arrived, state.options().request_timeout);

    let admitted = pipeline.admit(n)?;
    let mut stored = Stored::Off;
    let scored: Vec<Scored> = match input.datatype.as_str() {
        "BYTES" => {
            if input.shape.len() > 2 || input.shape.get(1).is_some_and(|&d| d != 1) {
                return Err(bad(format!(
                    "BYTES input {:?} must have shape [N] or [N, 1]",
                    input.name
                )));
            }
            if values.len() != n {
                return Err(bad(format!(
                    "shape says {n} images but data has {}",
                    values.len()
                )));
            }
            let images = values
                .iter()
                .enumerate()
                .map(|(i, v)| decode_image(v, i))
                .collect::<Result<Vec<_>, _>>()?;
            let classified = pipeline
                .classify_all(&admitted, images.clone(), deadline)
                .await?;
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
        "FP32" => {
            let tensors = fp32_tensors(pipeline, input, n, &values)?;
            pipeline.infer_tensors(&admitted, tensors, deadline).await?
        }
        other => {
            return Err(bad(format!(
                "unsupported datatype {other:?}: send BYTES (encoded images) or FP32 (preprocessed)"
            )));
        }
    };
    drop(admitted);

    let classes = pipeline.num_classes();
    let output = match classification {
        Some(k) => {
            let data: Vec<String> = scored
                .iter()
                .flat_map(|s| {
                    pipeline
                        .top_k(&s.probabilities, k)
                        .into_iter()
                        .map(|p| format!("{:.6}:{}:{}", p.probability, p.index, p.label))
                })
                .collect();
            json!({ "name": OUTPUT, "datatype": "BYTES", "shape": [n, k], "data": data })
        }
        None => {
            let data: Vec<f32> = scored
                .iter()
                .flat_map(|s| s.probabilities.iter().copied())
                .collect();
            json!({ "name": OUTPUT, "datatype": "FP32", "shape": [n, classes], "data": data })
        }
    };
    let mut body = json!({
        "model_name": pipeline.name(),
        "model_version": MODEL_VERSION,
        "outputs": [output],
    });
    if let Some(id) = request.id {
        body["id"] = Value::String(id);
    }
    let mut response = Json(body).into_response();
    let timings = Timings::slowest(scored.iter().map(|s| &s.timings));
    timing_headers(&mut response, pipeline, &timings);
    stored.mark(&mut response);
    Ok(response)
}

/// The `classification` parameter of the requested output, if any.
fn requested_classification(
    request: &InferRequest,
    classes: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(outputs) = &request.outputs else {
        return Ok(None);
    };
    let mut k = None;
    for o in outputs {
        if o.name != OUTPUT {
            return Err(bad(format!(
                "unknown output {:?}: this model has {OUTPUT:?}",
                o.name
            )));
        }
        if let Some(v) = o.parameters.get("classification") {
            let n = v
                .as_u64()
                .filter(|&n| n >= 1 && n as usize <= classes)
                .ok_or_else(|| {
                    bad(format!(
                        "classification must be a whole number from 1 to {classes}"
                    ))
                })?;
            k = Some(n as usize);
        }
    }
    Ok(k)
}

/// Checks an FP32 input against the model's shape and splits it per image.
fn fp32_tensors(
    pipeline: &Pipeline,
    input: &InputTensor,
    n: usize,
    values: &[&Value],
) -> Result<Vec<Vec<f32>>, ApiError> {
    let dims = pipeline.model().config.input.dims();
    let want: Vec<i64> = std::iter::once(n as i64)
        .chain(dims.iter().map(|&d| d as i64))
        .collect();
    if input.shape != want {
        return Err(bad(format!(
            "FP32 input {:?} must have shape {want:?} (the model's preprocessed input), got {:?}",
            input.name, input.shape
        )));
    }
    let per_image: usize = dims.iter().product();
    if values.len() != n * per_image {
        return Err(bad(format!(
            "shape {want:?} needs {} values, data has {}",
            n * per_image,
            values.len()
        )));
    }
    let mut flat = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let x = v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(format!("FP32 value {i} is not a finite number")))?;
        flat.push(x as f32);
    }
    Ok(flat.chunks_exact(per_image).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_data_flattens_row_major() {
        let v = json!([[1, 2], [3, [4, 5]]]);
        let mut out = Vec::new();
        flatten(&v, &mut out);
        let got: Vec<i64> = out.iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn base64_variants_decode() {
        let std = json!("aGk/Pz8+");
        assert_eq!(&decode_image(&std, 0).unwrap()[..], b"hi???>");
        let url = json!("aGk_Pz8-");
        assert_eq!(&decode_image(&url, 0).unwrap()[..], b"hi???>");
        assert_eq!(&decode_image(&json!({"b64": "aGk"}), 0).unwrap()[..], b"hi");
        assert!(
            decode_image(&json!("***"), 3)
                .unwrap_err()
                .to_string()
                .contains("image 3")
        );
        assert!(decode_image(&json!(7), 0).is_err());
    }

    #[test]
    fn batch_dimension_is_bounded() {
        assert_eq!(batch_of(&[3]).unwrap(), 3);
        assert!(batch_of(&[]).is_err());
        assert!(batch_of(&[0]).is_err());
        assert!(batch_of(&[1000]).is_err());
    }
}
