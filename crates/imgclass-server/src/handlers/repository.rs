//! The model repository extension: `POST /v2/repository/index` lists every
//! model this server could serve (what its loader finds in the model home,
//! and every model asked for since start) with its state; `POST
//! /v2/repository/models/{name}/load` and `…/unload` change what is served.
//!
//! - Load runs on a blocking thread (never on the async runtime) and the
//!   request waits for it, as Triton's does; the model is served once it
//!   is loaded and warmed up. A failed load leaves whatever was serving
//!   untouched (400 with the reason, as Triton); a second load of the same
//!   model while one runs is a 409.
//! - Unload stops new requests at once, lets the queued images be answered
//!   (within the request timeout: nothing queued can wait longer), then
//!   drops the pipeline. Unloading a model that is not loaded succeeds.
//! - `/classify?model=`, `/v2/models/{name}…` and the stats follow at once.
//! - An unknown model is a 404, answered before the body is read.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use imgclass_oip::{ControlRequest, IndexRequest, ModelState, RepositoryModel};
use imgclass_pipeline::{LifecycleError, ModelState as Lifecycle};

use crate::app::AppState;
use crate::error::ApiError;
use crate::limits;
use crate::served_model::MODEL_VERSION;

/// Control bodies are small JSON documents.
const MAX_CONTROL_BODY: usize = 1 << 20;

/// Every model the server knows of, sorted by name, with its state.
fn index(state: &AppState) -> Vec<RepositoryModel> {
    let mut all: std::collections::BTreeMap<String, Lifecycle> = state
        .models()
        .loader()
        .map(|l| l.available())
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n, Lifecycle::Unavailable("not loaded".into())))
        .collect();
    all.extend(state.models().states());
    all.into_iter()
        .map(|(name, s)| {
            let (state, reason) = match s {
                Lifecycle::Ready => (ModelState::Ready, String::new()),
                Lifecycle::Loading => (ModelState::Loading, String::new()),
                Lifecycle::Unavailable(reason) => (ModelState::Unavailable, reason),
            };
            RepositoryModel {
                version: (state == ModelState::Ready).then(|| MODEL_VERSION.to_string()),
                name,
                state,
                reason,
            }
        })
        .collect()
}

/// A model this server has heard of: one its loader can load, or one it
/// serves or served.
fn known(state: &AppState, name: &str) -> bool {
    state.models().state(name).is_some()
        || state
            .models()
            .loader()
            .is_some_and(|l| l.available().iter().any(|n| n == name))
}

async fn body_of(request: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), MAX_CONTROL_BODY)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: MAX_CONTROL_BODY,
        })
}

/// `POST /v2/repository/index` (body empty or `{"ready": bool}`).
pub async fn repository_index(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    let body = body_of(request).await?;
    let only_ready = IndexRequest::parse(&body)?.ready;
    let mut models = index(&state);
    if only_ready {
        models.retain(|m| m.state == ModelState::Ready);
    }
    Ok(Json(models))
}

/// The model's index entry, for the answer to load and unload.
fn entry(state: &AppState, name: &str) -> RepositoryModel {
    index(state)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or(RepositoryModel {
            name: name.to_string(),
            version: None,
            state: ModelState::Unknown,
            reason: String::new(),
        })
}

/// Reads a control body after checking the model is known (else 404, the
/// body drained unread).
async fn control(
    state: &AppState,
    name: &str,
    request: Request,
) -> Result<ControlRequest, ApiError> {
    if !known(state, name) {
        limits::discard(request).await;
        return Err(state.model_not_found(name));
    }
    let body = body_of(request).await?;
    Ok(ControlRequest::parse(&body)?)
}

/// `POST /v2/repository/models/{name}/load`.
pub async fn load(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<RepositoryModel>, ApiError> {
    let control = control(&state, &name, request).await?;
    let overrides = control.overrides();
    if !overrides.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "this server loads models only from its model home; it cannot take {overrides:?}"
        )));
    }
    state.models().load(&name).await.map_err(|e| match e {
        LifecycleError::Busy { .. } => ApiError::Conflict(e.to_string()),
        LifecycleError::Load { .. } | LifecycleError::NoLoader => {
            ApiError::BadRequest(e.to_string())
        }
        LifecycleError::NotLoaded { .. } => ApiError::internal(e.to_string()),
    })?;
    tracing::info!(model = %name, "loaded through the repository API");
    Ok(Json(entry(&state, &name)))
}

/// `POST /v2/repository/models/{name}/unload`.
pub async fn unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<RepositoryModel>, ApiError> {
    let control = control(&state, &name, request).await?;
    // No ensembles here: a model has no dependents, so the flag only needs to be valid.
    control.unload_dependents()?;
    match state
        .models()
        .unload(&name, state.options().request_timeout)
        .await
    {
        Ok(()) => tracing::info!(model = %name, "unloaded through the repository API"),
        Err(LifecycleError::NotLoaded { .. }) => {}
        Err(e) => return Err(ApiError::internal(e.to_string())),
    }
    Ok(Json(entry(&state, &name)))
}
