//! The accept loop: accept, apply the cap, hand each connection to hyper
//! on its own task under its deadlines, and on shutdown stop accepting and
//! drain.
//!
//! The loop itself never waits on a client: per connection it sets
//! `TCP_NODELAY`, takes a slot (or evicts an idle connection, or writes the
//! refusal without blocking) and spawns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::deadline::{End, TrackedBody, Tracker, Watched, drive};
use super::{ConnectionOptions, ConnectionStats, MAX_BUF_SIZE, MAX_HEADER_SIZE};
use crate::response::RETRY_AFTER;

/// Refused connections being answered at once; past this many, a refused
/// connection is closed without an answer (a flood must not turn the
/// refusals themselves into a cost).
const MAX_REFUSING: usize = 64;
/// How long a refused connection is given to send its request head, and
/// then to read the answer and close.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// Most bytes read from a refused connection before closing it.
const REFUSAL_READ: usize = 1 << 20;
/// Pause after an accept error that is not about one connection (out of
/// file descriptors, out of memory), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` under the limits of `o` until `shutdown`
/// completes; then stops accepting, closes the listener, lets every open
/// connection finish its current request (idle ones close at once) and
/// returns when all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    o: ConnectionOptions,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.keep_alive(!o.keep_alive_timeout.is_zero())
        // Our own head timer (see `deadline`): hyper's would include idle time.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF_SIZE)
        .max_header_size(MAX_HEADER_SIZE);
    let shared = Arc::new(Shared {
        http,
        app,
        options: o,
        stats,
        open: Mutex::new(HashMap::new()),
        refusing: AtomicUsize::new(0),
        refusal: refusal(),
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id: u64 = 0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    if accept_error(&shared.stats, e) {
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // Responses are small and written at once; never let Nagle hold one back.
        let _ = stream.set_nodelay(true);
        if !shared.take_slot() {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            shared.refuse(stream);
            continue;
        }
        next_id += 1;
        let tracker = Arc::new(Tracker::new());
        shared.open().insert(next_id, tracker.clone());
        let watched = graceful.watcher();
        let shared = shared.clone();
        let id = next_id;
        tokio::spawn(async move {
            let service = ConnService {
                app: shared.app.clone(),
                tracker: tracker.clone(),
                max_requests: shared.options.max_requests_per_connection,
            };
            let conn = shared
                .http
                .serve_connection(TokioIo::new(Watched::new(stream, tracker.clone())), service);
            let end = drive(watched.watch(conn), &tracker, &shared.options).await;
            match end {
                End::Closed(Ok(())) | End::Evicted => {}
                End::Closed(Err(e)) => {
                    tracing::debug!(error = %e, "connection ended with an error")
                }
                End::TimedOut(kind) => {
                    shared.stats.timed_out(kind);
                    tracing::debug!(phase = kind.as_str(), "connection timed out; closed");
                }
            }
            shared.open().remove(&id);
            if tracker.release_slot() {
                shared.stats.open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What every connection task shares.
struct Shared {
    http: http1::Builder,
    app: Router,
    options: ConnectionOptions,
    stats: Arc<ConnectionStats>,
    /// Open connections by id, to find an idle one to evict.
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
    /// Refused connections being answered.
    refusing: AtomicUsize,
    refusal: Box<[u8]>,
}

impl Shared {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracker>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot under the cap for a new connection: a free one, or the
    /// one of the longest-idle connection, which is closed. Only the accept
    /// loop takes slots, so the check-then-add cannot race another taker.
    fn take_slot(&self) -> bool {
        if self.stats.open() < self.options.max_connections {
            self.stats.open.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        loop {
            let victim = self
                .open()
                .values()
                .filter_map(|t| t.idle_since().map(|since| (since, t.clone())))
                .min_by_key(|(since, _)| *since);
            let Some((_, victim)) = victim else {
                return false;
            };
            // A victim that ended (or was evicted) meanwhile has no slot to
            // give; look again.
            if victim.evict() {
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
    }

    /// Answers a connection over the cap with the refusal, on a task of
    /// its own: after the request head (so that clients which treat bytes
    /// arriving before their request as a broken connection, hyper's among
    /// them, read a 503), then a lingering close so the answer is not lost
    /// to a reset. Bounded in time, bytes and number at once.
    fn refuse(self: &Arc<Self>, stream: TcpStream) {
        if self.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut buf = vec![0u8; 16 << 10];
            let mut seen = 0;
            let _ = tokio::time::timeout(REFUSAL_WAIT, async {
                while seen < buf.len() {
                    match stream.read(&mut buf[seen..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen += n,
                    }
                    if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            let _ = tokio::time::timeout(REFUSAL_WAIT, async {
                stream.write_all(&shared.refusal).await?;
                stream.shutdown().await?;
                let mut read = 0;
                while read < REFUSAL_READ {
                    match stream.read(&mut buf).await? {
                        0 => break,
                        n => read += n,
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            shared.refusing.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The whole answer to a connection over the cap, built once.
fn refusal() -> Box<[u8]> {
    let body = r#"{"error":"the server has too many open connections; retry shortly"}"#;
    let text = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        RETRY_AFTER.as_secs(),
        body.len()
    );
    text.into_bytes().into_boxed_slice()
}

/// Whether the loop should pause after accept error `e`: errors about one
/// connection (reset before we took it) are skipped at once; others (no
/// file descriptors left) are counted, logged and waited out.
fn accept_error(stats: &ConnectionStats, e: std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return false;
    }
    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
    true
}

/// The router as one connection's hyper service: marks each request's
/// start and end on the tracker, and asks to close the connection with
/// the last response it may serve.
struct ConnService {
    app: Router,
    tracker: Arc<Tracker>,
    max_requests: u64,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let (turn, n) = self.tracker.start_request();
        let last = self.max_requests != 0 && n >= self.max_requests;
        let app = self.app.clone();
        Box::pin(async move {
            let mut response = app.oneshot(req).await?;
            if last {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| TrackedBody::new(body, turn)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let bytes = refusal();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("too many"));
    }
}
