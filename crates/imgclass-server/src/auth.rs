//! Optional API key: `Authorization: Bearer <key>` on inference, history
//! and image routes. Health, readiness, metrics, the OpenAPI document and
//! the page stay public so probes and scrapers need no secret.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// Compares two secrets in time independent of where they differ (and of
/// their lengths: both are hashed first).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The bearer token of a request, if it has one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The middleware: passes everything when no key is configured.
pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = state.options().api_key.as_deref() {
        let ok = bearer(&req).is_some_and(|token| same_secret(token, key));
        if !ok {
            // Read the upload first so the client sees the 401, not a reset.
            crate::limits::drain(req.into_body()).await;
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cret "));
        assert!(!same_secret("", "x"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
    }
}
