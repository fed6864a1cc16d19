//! `POST /classify`: the seed-compatible endpoint.

use axum::extract::{Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use imgclass_pipeline::{Deadline, Pipeline};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;
use crate::query;
use crate::response::{IMAGE_ID, served_by, stored_record, timing_headers};
use crate::telemetry::RequestContext;
use crate::upload::{self, Upload};

const DEFAULT_TOP_K: usize = 3;
const MAX_TOP_K: usize = 20;

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

/// `POST /classify[?top_k=K][&model=NAME]`.
pub async fn classify(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = Query::<ClassifyQuery>::try_from_uri(req.uri());
    // Read the body before deciding anything else (see `upload`).
    let upload = upload::read_upload(req, state.options().max_body_size).await?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let pipeline = state.pipeline(query.model.as_deref())?;
    let answer = answer(&state, &pipeline, ctx, upload, query.top_k.as_deref()).await;
    Ok(served_by(answer.into_response(), pipeline.name()))
}

async fn answer(
    state: &AppState,
    pipeline: &Pipeline,
    ctx: RequestContext,
    upload: Upload,
    top_k: Option<&str>,
) -> Result<Response, ApiError> {
    let k = query::bounded("top_k", top_k, DEFAULT_TOP_K, 1, MAX_TOP_K)?;
    let deadline = Deadline::from(ctx.arrived, state.options().request_timeout);
    let admitted = pipeline.admit(1)?;
    let classified = pipeline
        .classify(&admitted, upload.bytes.clone(), deadline)
        .await?;
    drop(admitted);

    // Answered only once stored (see `commit`), so a 200 is in the folder.
    let record = stored_record(pipeline, &classified, upload.filename);
    let stored = state.store_uploads(vec![(upload.bytes, record)]).await?;

    let body: Vec<SeedPrediction> = pipeline
        .top_k(&classified.probabilities, k)
        .into_iter()
        .map(|p| SeedPrediction {
            label: p.label,
            probability: p.probability,
            index: p.index,
        })
        .collect();
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        IMAGE_ID,
        HeaderValue::from_str(&classified.image.id).expect("hex is a valid header"),
    );
    timing_headers(&mut response, pipeline, &classified.timings);
    stored.mark(&mut response);
    Ok(response)
}
