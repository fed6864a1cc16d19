//! The HTTP/1.1 client: hyper's low-level connection API plus a small pool.
//!
//! hyper-util's pooled client would do, but a load generator sends one kind of
//! request to one address, so a stack of idle connections behind a mutex is
//! all the pooling needed and keeps the per-request cost close to oha's.
//! Plain http only: TLS belongs to the gateway, and keeping it out keeps the
//! build small.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::LoadtestError;
use crate::record::{ErrorKind, ServerTiming, Top1};

/// Where requests go, resolved once before the run.
#[derive(Debug, Clone)]
pub struct Target {
    /// Addresses the host resolved to, tried in order on each new connection.
    pub addrs: Vec<SocketAddr>,
    /// `Host` header value (the URL's authority).
    pub host: HeaderValue,
    /// Origin-form request target: base path of the URL + `--path` (+ query).
    pub uri: Uri,
    /// Display form of the full URL, for reports.
    pub display: String,
}

/// `--url` and `--path`, split into what a [`Target`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    /// Origin-form request target: base path + `--path` (+ the URL's query).
    pub target: String,
}

impl UrlParts {
    /// The full URL requests go to.
    pub fn display(&self) -> String {
        format!("http://{}{}", self.authority, self.target)
    }
}

/// Splits `--url` and `--path` without resolving the host. A URL without a
/// scheme is taken as `http://`.
pub fn parse_url(url: &str, path: &str) -> Result<UrlParts, LoadtestError> {
    let invalid = |reason: &str| LoadtestError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = with_scheme.parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported: point the load test at the service's plain http port",
            ));
        }
        _ => return Err(invalid("only http:// URLs are supported")),
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let base = uri.path().trim_end_matches('/');
    let sub = if path.starts_with('/') || path.is_empty() {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut target = format!("{base}{sub}");
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = uri.query() {
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(q);
    }
    Ok(UrlParts {
        host: host.to_string(),
        port,
        authority: authority.as_str().to_string(),
        target,
    })
}

impl Target {
    /// Parses the URL and resolves its host.
    pub async fn resolve(url: &str, path: &str) -> Result<Self, LoadtestError> {
        let parts = parse_url(url, path)?;
        let UrlParts {
            host,
            port,
            authority,
            target,
        } = &parts;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|source| LoadtestError::Resolve {
                host: host.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(LoadtestError::Resolve {
                host: host.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            });
        }
        let invalid = |reason: String| LoadtestError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        Ok(Self {
            addrs,
            host: HeaderValue::from_str(authority).map_err(|e| invalid(e.to_string()))?,
            uri: target
                .parse()
                .map_err(|e| invalid(format!("path {target:?}: {e}")))?,
            display: parts.display(),
        })
    }
}

/// What the client observed for one request.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    pub bytes_received: u64,
    pub top1: Option<Top1>,
    pub server: ServerTiming,
}

impl Exchange {
    fn failed(kind: ErrorKind, status: Option<u16>) -> Self {
        Self {
            status,
            error: Some(kind),
            ..Self::default()
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 client for one [`Target`].
pub struct Client {
    target: Target,
    headers: HeaderMap,
    timeout: Duration,
    idle: Mutex<Vec<Sender>>,
}

impl Client {
    /// `content_type` is the multipart type shared by all payloads.
    pub fn new(
        target: Target,
        content_type: &str,
        api_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, LoadtestError> {
        let bad =
            |what: &str| LoadtestError::InvalidArgs(format!("{what} is not a valid header value"));
        let mut headers = HeaderMap::new();
        headers.insert(HOST, target.host.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).map_err(|_| bad("the content type"))?,
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("imgclass-loadtest/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(key) = api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| bad("--api-key"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Self {
            target,
            headers,
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A client for the same target with its own, empty connection pool: a
    /// connection's task runs on the runtime that opened it, so each load
    /// thread gets its own pool.
    pub fn fork(&self) -> Self {
        Self {
            target: self.target.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one upload and reads the whole answer, within the timeout.
    ///
    /// On timeout the request future is dropped, which makes hyper close that
    /// connection: a late answer can never be read by the next request.
    pub async fn send(&self, body: Bytes) -> Exchange {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(exchange) => exchange,
            Err(_) => Exchange::failed(ErrorKind::Timeout, None),
        }
    }

    async fn exchange(&self, body: Bytes) -> Exchange {
        let mut retried = false;
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Ok(s) => s,
                Err(kind) => return Exchange::failed(kind, None),
            };
            let response = match sender.send_request(self.request(body.clone())).await {
                Ok(r) => r,
                // A kept-alive connection the server closed while idle fails
                // before the request is written ("canceled"): the server never
                // saw it, so one retry on a fresh connection is safe and keeps
                // a keep-alive race from being counted as a server failure.
                Err(e) if reused && !retried && e.is_canceled() => {
                    retried = true;
                    continue;
                }
                Err(e) => return Exchange::failed(classify(&e), None),
            };
            let status = response.status().as_u16();
            let server = server_timing(response.headers());
            let bytes = match response.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Exchange::failed(classify(&e), Some(status)),
            };
            self.checkin(sender);
            let error = ErrorKind::from_status(status);
            let top1 = if error.is_none() { top1(&bytes) } else { None };
            return Exchange {
                status: Some(status),
                error,
                bytes_received: bytes.len() as u64,
                top1,
                server,
            };
        }
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.target.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// An idle connection that is still usable, or a new one.
    async fn checkout(&self) -> Result<(Sender, bool), ErrorKind> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok((sender, true));
                    }
                }
                None => return self.connect().await.map(|s| (s, false)),
            }
        }
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, ErrorKind> {
        let mut stream = None;
        for addr in &self.target.addrs {
            if let Ok(s) = TcpStream::connect(addr).await {
                stream = Some(s);
                break;
            }
        }
        let stream = stream.ok_or(ErrorKind::Connect)?;
        // Small requests and answers: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            // Errors surface on the request that was using the connection.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Maps a hyper error to the kind recorded in the CSV.
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_parse() || e.is_parse_status() {
        return ErrorKind::Protocol;
    }
    if e.is_incomplete_message()
        || e.is_canceled()
        || e.is_closed()
        || e.is_body_write_aborted()
        || e.is_shutdown()
    {
        return ErrorKind::Closed;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            return match io.kind() {
                Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::BrokenPipe
                | Io::UnexpectedEof => ErrorKind::Closed,
                Io::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            };
        }
        source = s.source();
    }
    ErrorKind::Other
}

/// Reads `X-Queue-Time`, `X-Inference-Time`, `X-Total-Time` (milliseconds,
/// tolerating a trailing `ms`).
fn server_timing(headers: &HeaderMap) -> ServerTiming {
    // Static names: looking up by `&str` would parse the name every time.
    static QUEUE: HeaderName = HeaderName::from_static("x-queue-time");
    static INFERENCE: HeaderName = HeaderName::from_static("x-inference-time");
    static TOTAL: HeaderName = HeaderName::from_static("x-total-time");
    let ms = |name: &HeaderName| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .trim_end_matches("ms")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    };
    ServerTiming {
        queue_ms: ms(&QUEUE),
        inference_ms: ms(&INFERENCE),
        total_ms: ms(&TOTAL),
    }
}

/// The most probable entry of a `[{"label": ..., "probability": ...}, ...]`
/// answer; `None` for anything else (the service is not the only thing one
/// may load-test).
pub fn top1(body: &[u8]) -> Option<Top1> {
    #[derive(serde::Deserialize)]
    struct Prediction {
        label: String,
        probability: f64,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'[' {
        return None;
    }
    let predictions: Vec<Prediction> = serde_json::from_slice(body).ok()?;
    predictions
        .into_iter()
        .filter(|p| p.probability.is_finite())
        .max_by(|a, b| a.probability.total_cmp(&b.probability))
        .map(|p| Top1 {
            label: p.label,
            probability: p.probability,
        })
}

/// Shared client handle for the tasks of a run.
pub type SharedClient = Arc<Client>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = |u: &str, path: &str| {
            parse_url(u, path).map(|p| (p.host, p.port, p.authority, p.target))
        };
        let parts =
            |h: &str, port, a: &str, t: &str| (h.to_string(), port, a.to_string(), t.to_string());
        assert_eq!(
            p("http://127.0.0.1:8080", "/classify").unwrap(),
            parts("127.0.0.1", 8080, "127.0.0.1:8080", "/classify")
        );
        assert_eq!(
            p("localhost", "classify").unwrap(),
            parts("localhost", 80, "localhost", "/classify")
        );
        assert_eq!(
            p("http://[::1]:9000/api/?top_k=1", "/classify").unwrap(),
            parts("::1", 9000, "[::1]:9000", "/api/classify?top_k=1")
        );
        assert_eq!(
            parse_url("http://h:1/", "/classify").unwrap().display(),
            "http://h:1/classify"
        );
        assert!(matches!(
            p("https://example.invalid", "/classify"),
            Err(LoadtestError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn top1_picks_highest() {
        let body = br#" [{"label":"cup","probability":0.2,"index":968},{"label":"espresso","probability":0.7}]"#;
        assert_eq!(
            top1(body),
            Some(Top1 {
                label: "espresso".into(),
                probability: 0.7
            })
        );
        assert_eq!(top1(b"OK"), None);
        assert_eq!(top1(b"[]"), None);
        assert_eq!(top1(b"{\"error\":\"x\"}"), None);
    }

    #[test]
    fn timing_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-queue-time", HeaderValue::from_static("0.25"));
        h.insert("x-total-time", HeaderValue::from_static("12.5ms"));
        h.insert("x-inference-time", HeaderValue::from_static("nope"));
        let t = server_timing(&h);
        assert_eq!(t.queue_ms, Some(0.25));
        assert_eq!(t.total_ms, Some(12.5));
        assert_eq!(t.inference_ms, None);
    }
}
