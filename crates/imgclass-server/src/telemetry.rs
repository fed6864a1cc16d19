//! Per-request bookkeeping around every route: a request id (the client's
//! `X-Request-Id` when it is sane, else a fresh one), the arrival time the
//! handlers measure their deadline from, metrics by route template and
//! model, the `X-Request-Id` and `X-Total-Time` response headers, one
//! access log line, and the log line of a server fault with its detail
//! and the request id.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::response::{
    InternalDetail, REQUEST_ID, ServedModel, StoreFailure, TOTAL_TIME, ms_header,
};

/// Routes that run the model; `/api/stats` summarises these.
pub const INFERENCE_ROUTES: &[&str] = &[
    "/classify",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
];
/// Probes and scrapes log at debug level so they do not drown the log.
const QUIET_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v2/health/live",
    "/v2/health/ready",
];

/// Inserted into each request's extensions: handlers measure their
/// deadline from the arrival, not from when they start running.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext {
    pub arrived: Instant,
}

/// A new request id: 16 hex digits from a per-process random key and a
/// counter, unique within the process and unguessable across processes.
fn new_request_id() -> String {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// A client's id is reused only if it is short and plain (it goes into
/// logs and headers).
fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| v.to_string())
}

/// The middleware.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let id = client_request_id(&req).unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    req.extensions_mut().insert(RequestContext { arrived });

    let metrics = state.metrics().clone();
    let mut response = {
        let _in_flight = metrics.in_flight();
        next.run(req).await
    };

    let elapsed = arrived.elapsed();
    let status = response.status().as_u16();
    let inference = INFERENCE_ROUTES.contains(&route.as_str());
    let model = response.extensions_mut().remove::<ServedModel>();
    let model = model.as_ref().map(|m| m.0.as_str());
    metrics.observe_request(&route, status, model, elapsed, inference && status == 200);
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        tracing::error!(%method, %path, status, request_id = %id, %detail, "internal error");
    }
    if let Some(StoreFailure(detail)) = response.extensions_mut().remove::<StoreFailure>() {
        tracing::error!(%method, %path, status, request_id = %id, %detail, "upload not stored");
    }
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    headers.insert(TOTAL_TIME, ms_header(elapsed));
    let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    if QUIET_ROUTES.contains(&route.as_str()) {
        tracing::debug!(target: "imgclass::access", %method, %path, status, ms, request_id = %id);
    } else {
        tracing::info!(target: "imgclass::access", %method, %path, status, ms, request_id = %id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_checked() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        let req = |v: &str| {
            Request::builder()
                .header(REQUEST_ID, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            client_request_id(&req("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert_eq!(client_request_id(&req("bad id; drop")), None);
        assert_eq!(client_request_id(&req(&"x".repeat(65))), None);
    }
}
