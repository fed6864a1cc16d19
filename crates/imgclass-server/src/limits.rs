//! Request body limits.
//!
//! Two layers per limited route: axum's `DefaultBodyLimit`, set explicitly
//! (axum's default is 2 MB), which the multipart, bytes and JSON extractors
//! enforce while reading; and an early check of `Content-Length` that
//! answers 413 before the handler runs.
//!
//! The early check reads and discards the oversized body (bounded in size
//! and time) before answering. Answering while the client is still sending
//! makes the server close a socket with unread data, which resets the
//! connection, and many clients then report "connection reset" instead of
//! the 413. Clients that sent `Expect: 100-continue` have not sent the body
//! yet, so they are answered at once.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;

/// Largest oversized body read and discarded; beyond it the connection is closed.
const DRAIN_MAX: u64 = 256 << 20;
/// Longest time spent discarding an oversized body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies `limit` bytes to every route of `router`.
pub fn with_body_limit<S>(router: Router<S>, limit: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            reject_declared_oversize,
        ))
}

async fn reject_declared_oversize(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(length) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    if !expects_continue(&req) && length <= DRAIN_MAX {
        drain(req.into_body()).await;
    }
    let mut response = ApiError::TooLarge { limit }.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn expects_continue(req: &Request) -> bool {
    req.headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Before answering a request whose body will not be used (unknown
/// model): a client waiting on `Expect: 100-continue` has not sent it and
/// never will, anyone else gets it drained so the answer arrives intact.
pub(crate) async fn discard(req: Request) {
    if !expects_continue(&req) {
        drain(req.into_body()).await;
    }
}

/// Reads and discards a body the server will not use, bounded in size and
/// time, so that an early answer (401, 413) reaches the client intact.
pub(crate) async fn drain(body: axum::body::Body) {
    let mut body = body;
    let mut seen: u64 = 0;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}
