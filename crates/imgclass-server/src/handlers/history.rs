//! Stored results and images: `/api/history` and `/api/images/{id}`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::query;
use crate::storage::{HistoryPage, parse_time, valid_id};

const DEFAULT_HISTORY: usize = 20;
const MAX_HISTORY: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /api/history?limit=N&before=T`: newest stored results first, from
/// every replica sharing the images folder.
pub async fn history(
    State(state): State<AppState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = query::bounded("limit", q.limit.as_deref(), DEFAULT_HISTORY, 1, MAX_HISTORY)?;
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
pub async fn image(
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
