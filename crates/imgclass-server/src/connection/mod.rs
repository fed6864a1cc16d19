//! Client connections: accept them, cap how many are open, time out the
//! ones that dawdle, hand their requests to the router, and drain them on
//! shutdown. One job — a slow or hostile client must cost a bounded amount
//! and never hold up anybody else — split into:
//!
//! - [`listener`]: the accept loop, the cap and its refusal, the drain;
//! - [`deadline`]: each connection's phase (head, busy, idle) and the
//!   timer that closes it when the phase lasts too long;
//! - [`body`]: a request body that must keep arriving at a minimum rate,
//!   or the request is answered 408.
//!
//! Built on hyper's HTTP/1 connection directly (not `axum::serve`) because
//! the limits live around the connection: hyper's own
//! `header_read_timeout` starts whenever a connection waits for a request
//! head, which includes keep-alive idle time, so one value cannot be both a
//! short head limit (against slowloris) and a long idle limit (longer than a
//! gateway's pooled-connection timeout); here they are separate.
//!
//! ## What a connection may cost (defaults)
//!
//! | phase | limit | default | why |
//! |---|---|---|---|
//! | head: request line + headers | `--header-timeout`, whole head, from connecting or from the first byte after idling | 10 s | a real client sends its head in one packet; a slowloris holds a slot at most this long |
//! | body | `--body-timeout` plus 1 s per `--body-min-rate` bytes received | 20 s + 1 KiB/s | a 10 MiB upload at 1 KiB/s (8 kbit/s) still passes; a 1 byte/s trickle is cut at ≈ 20 s with 408 |
//! | handler | `--request-timeout` (the handlers' own) | 30 s | |
//! | response | `--send-timeout`: a write blocked this long | 30 s | a client that stops reading its answer |
//! | idle between requests | `--keep-alive-timeout` | 75 s | longer than the gateway's pooled upstream connections live idle (nginx `keepalive_timeout 60s` in deploy/), so the gateway, not the server, closes them and never races a request into a closing socket |
//! | connections open | `--max-connections` | 1024 | bounds file descriptors and buffers (≤ 64 KiB of read-ahead each) |
//! | requests per connection | `--max-requests-per-connection` | 1000 (nginx's `keepalive_requests`) | spreads long-lived client connections over replicas behind an L4 balancer |
//!
//! Pipelined HTTP/1.1 requests are answered one at a time, in order (hyper
//! reads the next head only once the previous response is written), and the
//! read-ahead buffer is capped at [`MAX_BUF_SIZE`]; so pipelining can never
//! put more than one request per connection into the service.
//!
//! ## When the cap is reached
//!
//! A new connection first makes room by closing the longest-idle kept-alive
//! connection (what nginx does with its reusable connections): idle
//! connections are the cheapest to lose, their clients reconnect. Only when
//! every open connection is busy or still sending its head is the new one
//! refused: a minimal `503` + `Retry-After` + `Connection: close`, written
//! by a small task of its own once the client's head has arrived (or after
//! 1 s), then a lingering close so the answer is not lost to a reset; the
//! accept loop never waits for it. A clear, immediate 503 rather than not
//! accepting: a gateway retries another replica at once (nginx
//! `proxy_next_upstream http_503`), where a connection left in the kernel's
//! backlog would hang until its timeout. When more than 64 refusals are
//! under way at once (a flood), further ones are closed without an answer,
//! so refusing stays cheap.
//!
//! The trade-off: connections that never finish their head cannot be told
//! apart from slow honest ones, so they are not evicted; the header timeout
//! is what frees their slots. An attacker filling the cap must keep opening
//! `max-connections / header-timeout` connections per second (≈ 100/s with
//! the defaults); while it does, new clients get the 503 at once instead
//! of hanging, and each of the attacker's sockets is closed after 10 s. A
//! service exposed to the internet still belongs behind a gateway with
//! per-client limits.

mod body;
mod deadline;
mod listener;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub(crate) use body::with_body_deadline;
pub(crate) use listener::serve;

/// Largest read-ahead buffer per connection (hyper's `max_buf_size`; its
/// default is ~400 KiB): bounds what a pipelining or garbage-sending client
/// can make the server buffer.
pub const MAX_BUF_SIZE: usize = 64 << 10;
/// Largest request head (request line + headers); beyond it hyper answers
/// 431. nginx allows 4 × 8 KiB.
pub const MAX_HEADER_SIZE: usize = 32 << 10;

/// Limits and timeouts of client connections. A zero duration turns that
/// timeout off; a zero keep-alive timeout turns keep-alive off.
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Time to receive a whole request head.
    pub header_timeout: Duration,
    /// Time allowed for a request body before its progress counts.
    pub body_timeout: Duration,
    /// Each byte of body received extends the body deadline by 1/rate s
    /// (0: the body must arrive within `body_timeout`).
    pub body_min_rate: u64,
    /// How long a response write may stay blocked on a client not reading.
    pub send_timeout: Duration,
    /// How long a connection may stay idle between requests.
    pub keep_alive_timeout: Duration,
    /// Requests served on one connection before it is closed (0: no limit).
    pub max_requests_per_connection: u64,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            body_min_rate: 1 << 10,
            send_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            max_requests_per_connection: 1000,
        }
    }
}

/// Which limit a too-slow client hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// The request head did not arrive in time; the connection was closed.
    Header = 0,
    /// The body trickled; the request was answered 408 and the connection closed.
    Body = 1,
    /// A response write stayed blocked; the connection was closed.
    Send = 2,
    /// A kept-alive connection stayed idle; it was closed.
    Idle = 3,
}

impl Timeout {
    pub const ALL: [Timeout; 4] = [Timeout::Header, Timeout::Body, Timeout::Send, Timeout::Idle];

    pub fn as_str(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Body => "body",
            Timeout::Send => "send",
            Timeout::Idle => "idle",
        }
    }
}

/// Connection counters, rendered by `metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    /// Connections holding a slot under the cap right now.
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    accept_errors: AtomicU64,
    timeouts: [AtomicU64; 4],
}

/// Name and help of the labelled timeouts counter (label `phase`).
pub(crate) const TIMEOUTS_SERIES: (&str, &str) = (
    "imgclass_connection_timeouts_total",
    "Slow clients cut off, by phase (header, body: answered 408, send, idle).",
);

impl ConnectionStats {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The unlabelled series, as (name, type, help, value).
    pub fn series(&self) -> [(&'static str, &'static str, &'static str, u64); 5] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "imgclass_connections_open",
                "gauge",
                "Client connections open.",
                self.open() as u64,
            ),
            (
                "imgclass_connections_accepted_total",
                "counter",
                "Client connections accepted.",
                get(&self.accepted),
            ),
            (
                "imgclass_connections_refused_total",
                "counter",
                "Connections answered 503 because --max-connections were open and none was idle.",
                get(&self.refused),
            ),
            (
                "imgclass_connections_evicted_total",
                "counter",
                "Idle kept-alive connections closed to make room at --max-connections.",
                get(&self.evicted),
            ),
            (
                "imgclass_accept_errors_total",
                "counter",
                "Failed accepts (e.g. out of file descriptors).",
                get(&self.accept_errors),
            ),
        ]
    }

    /// Timeouts by kind, in [`Timeout::ALL`] order.
    pub fn timeouts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Timeout::ALL.iter().map(|t| {
            (
                t.as_str(),
                self.timeouts[*t as usize].load(Ordering::Relaxed),
            )
        })
    }

    fn timed_out(&self, kind: Timeout) {
        self.timeouts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}
