//! Health, readiness, metrics, live stats and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::{AppState, Phase};
use crate::metrics::ModelView;
use crate::openapi;
use crate::response::readiness;

/// Liveness: the process answers. Never depends on the models.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: every configured model is loaded and warmed up, and the
/// server is not draining.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let phase = state.phase();
    let status = match phase {
        Phase::Loading => "loading",
        Phase::Ready => "ready",
        Phase::Failed => "failed",
        Phase::Draining => "draining",
    };
    let models: Vec<serde_json::Value> = state
        .configured()
        .iter()
        .map(|name| {
            serde_json::json!({
                "name": name,
                "ready": state.serving(name).is_some(),
            })
        })
        .collect();
    readiness(
        phase == Phase::Ready,
        serde_json::json!({
            "status": status,
            "model": state.default_model().filter(|m| state.serving(m).is_some()),
            "models": models,
        }),
    )
}

/// The served models, the default first, as metrics and stats show them.
fn views(state: &AppState) -> Vec<ModelView> {
    let mut pipelines = state.models().serving();
    let default = state.default_model();
    pipelines.sort_by_key(|p| Some(p.name()) != default.as_deref());
    pipelines
        .iter()
        .map(|p| ModelView {
            name: p.name().to_string(),
            engine: p.engine().kind().as_str().to_string(),
            engine_detail: p.engine().describe(),
            queue_depth: p.depth(),
        })
        .collect()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(&views(&state), state.is_ready());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn stats(State(state): State<AppState>) -> Response {
    Json(
        state
            .metrics()
            .stats(&views(&state), state.uptime(), state.is_ready()),
    )
    .into_response()
}

pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document_text(),
    )
        .into_response()
}
