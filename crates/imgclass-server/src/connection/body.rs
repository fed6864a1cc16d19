//! A request body that must keep arriving: it gets `--body-timeout` from
//! the request's arrival plus 1 s for every `--body-min-rate` bytes
//! received (Apache's `mod_reqtimeout` rule, `body=20,MinRate=...`), so a
//! large upload over a slow link passes and a trickle does not.
//!
//! The handlers read bodies through axum's extractors (multipart, bytes,
//! JSON), which turn a failing body into their own 400. So the wrapper
//! both fails the read and records that it did, and the middleware
//! around the router answers 408 with `Connection: close` whatever the
//! handler made of the failed read (the client may still be sending: the
//! connection cannot be reused).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::{ConnectionOptions, ConnectionStats, Timeout};
use crate::error::ApiError;

/// The body rule of one server.
#[derive(Debug)]
struct Rule {
    grace: Duration,
    /// Bytes per second; 0: no extension.
    min_rate: u64,
    stats: Arc<ConnectionStats>,
}

impl Rule {
    /// When a body that started at `start` and has delivered `received`
    /// bytes must have made more progress.
    fn deadline(&self, start: Instant, received: u64) -> Option<Instant> {
        let earned = if self.min_rate == 0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(received as f64 / self.min_rate as f64).ok()?
        };
        start.checked_add(self.grace.checked_add(earned)?)
    }

    fn message(&self, received: u64, took: Duration) -> String {
        let extension = if self.min_rate == 0 {
            String::new()
        } else {
            format!(" plus 1 s per {} bytes received", self.min_rate)
        };
        format!(
            "the request body arrived too slowly: {received} bytes in {:.1} s (the server allows {:.1} s{extension})",
            took.as_secs_f64(),
            self.grace.as_secs_f64()
        )
    }
}

/// Applies the body rule of `o` to every route of `router` (nothing when
/// `o.body_timeout` is zero).
pub(crate) fn with_body_deadline<S>(
    router: Router<S>,
    o: &ConnectionOptions,
    stats: Arc<ConnectionStats>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    if o.body_timeout.is_zero() {
        return router;
    }
    let rule = Arc::new(Rule {
        grace: o.body_timeout,
        min_rate: o.body_min_rate,
        stats,
    });
    router.layer(axum::middleware::from_fn_with_state(rule, enforce))
}

async fn enforce(State(rule): State<Arc<Rule>>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let expired = Arc::new(OnceLock::new());
    let req = req.map(|body| {
        Body::new(TimedBody {
            inner: body,
            rule: rule.clone(),
            start: Instant::now(),
            received: 0,
            timer: None,
            expired: expired.clone(),
        })
    });
    let response = next.run(req).await;
    match expired.get() {
        None => response,
        Some(message) => {
            rule.stats.timed_out(Timeout::Body);
            tracing::debug!(%message, "request body timed out");
            let mut response = ApiError::BodyTimeout(message.clone()).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The error a timed-out body read fails with.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TooSlow(String);

struct TimedBody {
    inner: Body,
    rule: Arc<Rule>,
    start: Instant,
    received: u64,
    /// Created at the first read that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set once, with the client's message, when the deadline passed.
    expired: Arc<OnceLock<String>>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Some(message) = this.expired.get() {
            return Poll::Ready(Some(Err(axum::Error::new(TooSlow(message.clone())))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                let Some(deadline) = this.rule.deadline(this.start, this.received) else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let message = this.rule.message(this.received, this.start.elapsed());
                let _ = this.expired.set(message.clone());
                Poll::Ready(Some(Err(axum::Error::new(TooSlow(message)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_buys_time_at_the_minimum_rate() {
        let rule = Rule {
            grace: Duration::from_secs(20),
            min_rate: 1024,
            stats: Arc::default(),
        };
        let start = Instant::now();
        assert_eq!(
            rule.deadline(start, 0),
            Some(start + Duration::from_secs(20))
        );
        assert_eq!(
            rule.deadline(start, 10 * 1024),
            Some(start + Duration::from_secs(30))
        );
        let fixed = Rule {
            min_rate: 0,
            ..rule
        };
        assert_eq!(
            fixed.deadline(start, 1 << 30),
            Some(start + Duration::from_secs(20))
        );
        let endless = Rule {
            grace: Duration::MAX,
            ..fixed
        };
        assert_eq!(endless.deadline(start, 0), None);
        assert!(
            endless
                .message(3, Duration::from_secs(2))
                .contains("3 bytes in 2.0 s")
        );
    }
}
