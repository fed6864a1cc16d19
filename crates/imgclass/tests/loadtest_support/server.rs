//! A scriptable HTTP/1.1 test server on 127.0.0.1, written on raw tokio
//! sockets so a test can make it misbehave in ways a framework would not let
//! it: close the connection after reading a request, stall past the client's
//! timeout, or process requests one at a time so that one stall delays
//! everything queued behind it.
//!
//! Shared by the integration tests and the `vs_oha` example.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with the n-th request it reads (n from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 200 with a JSON classification and timing headers.
    Ok,
    /// This status with a JSON error body.
    Status(u16),
    /// Drop the connection without answering.
    Close,
    /// Sleep, then answer 200 (usually to a client that gave up).
    Stall(Duration),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub n: u64,
    pub action: Action,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub field: Option<String>,
    pub filename: Option<String>,
    pub part_type: Option<String>,
    pub body_len: usize,
}

pub type Policy = Arc<dyn Fn(u64) -> Action + Send + Sync>;

/// How the server runs.
#[derive(Clone, Copy)]
pub struct Options {
    /// tokio worker threads.
    pub threads: usize,
    /// One request at a time across all connections.
    pub serial: bool,
    /// Keep a [`Seen`] per request (off for benchmarks).
    pub log: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: 1,
            serial: false,
            log: true,
        }
    }
}

pub const OK_BODY: &[u8] =
    br#"[{"label":"tabby","probability":0.75,"index":281},{"label":"tiger cat","probability":0.2,"index":282}]"#;

/// A running server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub count: Arc<AtomicU64>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(policy: impl Fn(u64) -> Action + Send + Sync + 'static, options: Options) -> Self {
        let policy: Policy = Arc::new(policy);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = connections.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = State {
            policy,
            seen: seen.clone(),
            count: count.clone(),
            serial: Arc::new(tokio::sync::Mutex::new(())),
            options,
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(options.threads.max(1))
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(stream, state.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Self {
            addr,
            seen,
            count,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct State {
    policy: Policy,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicU64>,
    serial: Arc<tokio::sync::Mutex<()>>,
    options: Options,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn quoted_param(s: &str, name: &str) -> Option<String> {
    let start = s.find(&format!("{name}=\""))? + name.len() + 2;
    let end = s[start..].find('"')? + start;
    Some(s[start..end].to_string())
}

async fn connection(mut stream: TcpStream, state: State) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Request head.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let path = request_line.next().unwrap_or("").to_string();
        let mut content_length = 0usize;
        let (mut content_type, mut authorization) = (None, None);
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = v.parse().unwrap_or(0),
                "content-type" => content_type = Some(v),
                "authorization" => authorization = Some(v),
                _ => {}
            }
        }
        // Body.
        while buf.len() < head_end + content_length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let n = state.count.fetch_add(1, Ordering::SeqCst) + 1;
        let action = (state.policy)(n);
        if state.options.log {
            let body = &buf[head_end..head_end + content_length];
            let part_head = find(body, b"\r\n\r\n")
                .map(|e| String::from_utf8_lossy(&body[..e]).into_owned())
                .unwrap_or_default();
            let part_type = part_head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Content-Type: ").map(str::to_string));
            state.seen.lock().unwrap().push(Seen {
                n,
                action,
                method,
                path,
                content_type,
                authorization,
                field: quoted_param(&part_head, "name"),
                filename: quoted_param(&part_head, "filename"),
                part_type,
                body_len: content_length,
            });
        }
        buf.drain(..head_end + content_length);

        let _serial = if state.options.serial {
            Some(state.serial.lock().await)
        } else {
            None
        };
        let response = match action {
            Action::Close => return,
            Action::Stall(d) => {
                tokio::time::sleep(d).await;
                ok_response()
            }
            Action::Ok => ok_response(),
            Action::Status(code) => {
                let body = format!("{{\"error\":\"status {code}\"}}");
                format!(
                    "HTTP/1.1 {code} Test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        };
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

fn ok_response() -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-queue-time: 0.5\r\nx-inference-time: 1.25\r\nx-total-time: 2.0\r\ncontent-length: {}\r\n\r\n",
        OK_BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(OK_BODY);
    r
}
