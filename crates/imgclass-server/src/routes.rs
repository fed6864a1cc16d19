//! The router and the non-KServe handlers: the seed-compatible
//! `/classify`, health, metrics, stats, history, stored images and the page.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use imgclass_core::top_k;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::state::{AppState, Phase, Serving};
use crate::storage::{HistoryPage, StoredRecord, now_rfc3339, parse_time, valid_id};
use crate::telemetry::{RequestContext, ms_header};
use crate::{assets, auth, connection, inference, kserve, limits, openapi, telemetry, upload};

pub const IMAGE_ID: &str = "x-image-id";
pub const QUEUE_TIME: &str = "x-queue-time";
pub const INFERENCE_TIME: &str = "x-inference-time";

/// Classes kept in a stored result, whatever the client asked for.
const STORED_TOP_K: usize = 5;
const DEFAULT_TOP_K: usize = 3;
const MAX_TOP_K: usize = 20;
const DEFAULT_HISTORY: usize = 20;
const MAX_HISTORY: usize = 200;

/// The whole application. Inference, history and image routes sit behind
/// the optional API key; health, metrics, stats, the OpenAPI document and
/// the page are public.
pub fn router(state: AppState) -> Router {
    let o = state.options().clone();
    let classify = limits::with_body_limit(
        Router::new().route("/classify", post(classify)),
        o.max_body_size,
    );
    let infer = limits::with_body_limit(
        Router::new().route("/v2/models/{name}/infer", post(kserve::infer)),
        o.max_infer_body_size,
    );
    let private = Router::new()
        .route("/api/history", get(history))
        .route("/api/images/{id}", get(image))
        .merge(classify)
        .merge(infer)
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    let mut public = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/api/stats", get(stats))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{name}", get(kserve::model_metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready));
    for path in assets::paths() {
        public = public.route(path, get(assets::serve));
    }
    let app = public
        .merge(private)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Inside `observe`, so a trickled body is logged and counted as its 408.
    let mut app =
        connection::with_body_deadline(app, &o.connection, state.metrics().connections().clone())
            .layer(from_fn_with_state(state.clone(), telemetry::observe));
    if let Some(cors) = cors_layer(&o.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// CORS only when origins are configured: the page is served from the
/// same origin, so cross-origin access is an explicit decision.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let expose = [
        telemetry::REQUEST_ID,
        telemetry::TOTAL_TIME,
        IMAGE_ID,
        QUEUE_TIME,
        INFERENCE_TIME,
        "retry-after",
    ]
    .map(HeaderName::from_static);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static(telemetry::REQUEST_ID),
            ])
            .expose_headers(expose)
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// One class in the seed's response format (field order as the seed).
#[derive(Debug, Serialize, Deserialize)]
pub struct SeedPrediction {
    pub label: String,
    pub probability: f32,
    pub index: usize,
}

#[derive(Debug, Default, Deserialize)]
struct ClassifyQuery {
    top_k: Option<String>,
    model: Option<String>,
}

/// Refuses a `?model=` other than the one served.
pub(crate) fn check_model(serving: &Serving, asked: Option<&str>) -> Result<(), ApiError> {
    match asked {
        Some(name) if !name.is_empty() && name != serving.name() => Err(ApiError::ModelNotFound {
            name: name.chars().take(128).collect(),
            available: serving.name().to_string(),
        }),
        _ => Ok(()),
    }
}

fn parse_top_k(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(t) = text else {
        return Ok(DEFAULT_TOP_K);
    };
    match t.trim().parse::<usize>() {
        Ok(k) if (1..=MAX_TOP_K).contains(&k) => Ok(k),
        _ => Err(ApiError::BadRequest(format!(
            "top_k must be a whole number from 1 to {MAX_TOP_K}"
        ))),
    }
}

/// `POST /classify`: the seed's endpoint.
async fn classify(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = Query::<ClassifyQuery>::try_from_uri(req.uri());
    // Read the body before deciding anything else (see `upload`).
    let upload = upload::read_upload(req, state.options().max_body_size).await?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let serving = state.serving()?.clone();
    check_model(&serving, query.model.as_deref())?;
    let k = parse_top_k(query.top_k.as_deref())?;
    let deadline = ctx.arrived + state.options().request_timeout;

    let admitted = inference::admit(&serving, 1)?;
    let prepared =
        inference::prepare(&state, &serving, upload.bytes.clone(), deadline, None).await?;
    let inference::Prepared {
        id,
        format,
        width,
        height,
        tensor,
    } = prepared;
    let scored = inference::infer(&state, &serving, vec![tensor], deadline).await?;
    drop(admitted);
    let (queue_time, inference_time) = inference::timings(&scored);
    let probabilities = &scored[0].probabilities;
    let labels = &serving.model.labels;

    if let Some(store) = state.store() {
        let record = StoredRecord {
            id: id.clone(),
            format,
            bytes: upload.bytes.len(),
            width,
            height,
            model: serving.name().to_string(),
            engine: serving.engine.kind().as_str().to_string(),
            predictions: top_k(probabilities, STORED_TOP_K, labels),
            created: now_rfc3339(),
            filename: upload.filename,
        };
        store.submit(upload.bytes, record).await;
    }

    let body: Vec<SeedPrediction> = top_k(probabilities, k, labels)
        .into_iter()
        .map(|p| SeedPrediction {
            label: p.label,
            probability: p.probability,
            index: p.index,
        })
        .collect();
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    h.insert(
        IMAGE_ID,
        HeaderValue::from_str(&id).expect("hex is a valid header"),
    );
    h.insert(QUEUE_TIME, ms_header(queue_time));
    h.insert(INFERENCE_TIME, ms_header(inference_time));
    Ok(response)
}

/// Liveness: the process answers. Never depends on the model.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the model is loaded, warmed up, and the server is not draining.
async fn readyz(State(state): State<AppState>) -> Response {
    let phase = state.phase();
    let status = match phase {
        Phase::Loading => "loading",
        Phase::Ready => "ready",
        Phase::Failed => "failed",
        Phase::Draining => "draining",
    };
    let body = Json(serde_json::json!({
        "status": status,
        "model": state.loaded().map(|s| s.name().to_string()),
    }));
    if phase == Phase::Ready {
        (StatusCode::OK, body).into_response()
    } else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::error::RETRY_AFTER.as_secs()),
        );
        r
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state
        .metrics()
        .render(state.queue_depth(), state.is_ready());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(
        state
            .metrics()
            .stats(state.queue_depth(), state.uptime(), state.is_ready()),
    )
    .into_response()
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document_text(),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /api/history?limit=N&before=T`: newest stored results first, from
/// every replica sharing the images folder.
async fn history(
    State(state): State<AppState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_HISTORY,
        Some(t) => match t.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_HISTORY}"
                )));
            }
        },
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            ApiError::BadRequest("before must be an RFC 3339 time or Unix milliseconds".into())
        })?),
    };
    let storage = state
        .storage()
        .ok_or_else(|| ApiError::NotFound("storage is off on this server".into()))?
        .clone();
    let page = tokio::task::spawn_blocking(move || storage.history(limit, before))
        .await
        .map_err(|e| ApiError::internal(format!("history task: {e}")))?
        .map_err(|e| ApiError::internal(format!("reading the images folder: {e}")))?;
    Ok(Json(page))
}

/// `GET /api/images/{id}`: a stored upload. Only a sha256 maps to a path.
async fn image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::BadRequest(
            "invalid image id: expected 64 lowercase hex digits (the sha256 of the image)".into(),
        ));
    }
    let storage = state
        .storage()
        .ok_or_else(|| ApiError::NotFound("storage is off on this server".into()))?
        .clone();
    let found = tokio::task::spawn_blocking(move || {
        storage
            .find_image(&id)
            .map(|(path, format)| std::fs::read(path).map(|bytes| (bytes, format)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("image task: {e}")))?;
    let (bytes, format) = match found {
        None => return Err(ApiError::NotFound("no stored image with this id".into())),
        Some(read) => {
            read.map_err(|e| ApiError::internal(format!("reading a stored image: {e}")))?
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.mime()),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_bounded() {
        assert_eq!(parse_top_k(None).unwrap(), 3);
        assert_eq!(parse_top_k(Some("20")).unwrap(), 20);
        for bad in ["0", "21", "-1", "three", ""] {
            assert!(parse_top_k(Some(bad)).is_err(), "{bad}");
        }
    }
}
