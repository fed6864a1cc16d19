//! Triton's statistics extension: `GET /v2/models/stats` (every served
//! model) and `GET /v2/models/{name}[/versions/{version}]/stats`, from the
//! counters each model's pipeline feeds (see `inference_stats`).

use axum::Json;
use axum::extract::{Path, State};
use imgclass_oip::{ModelStatistics, StatisticsResponse};
use imgclass_pipeline::Pipeline;

use crate::app::AppState;
use crate::error::ApiError;
use crate::served_model::{MODEL_VERSION, ModelPath};

fn of(state: &AppState, pipeline: &Pipeline) -> ModelStatistics {
    state
        .metrics()
        .model(pipeline.name())
        .inference
        .snapshot(pipeline.name(), MODEL_VERSION)
}

/// `GET /v2/models/stats`.
pub async fn all(State(state): State<AppState>) -> Json<StatisticsResponse> {
    let model_stats = state
        .models()
        .serving()
        .iter()
        .map(|p| of(&state, p))
        .collect();
    Json(StatisticsResponse { model_stats })
}

/// `GET /v2/models/{name}[/versions/{version}]/stats`.
pub async fn model(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<StatisticsResponse>, ApiError> {
    let pipeline = path.pipeline(&state)?;
    Ok(Json(StatisticsResponse {
        model_stats: vec![of(&state, &pipeline)],
    }))
}
