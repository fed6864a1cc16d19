//! Each connection's phase and the timer that ends it.
//!
//! A connection is always in one phase: waiting for (the rest of) a request
//! head, busy with a request (from its parsed head to its response body
//! being written), or idle between requests. The socket wrapper
//! [`Watched`] notices the first byte after an idle spell and writes that
//! stay blocked; the service marks the start and end of each request
//! ([`Tracker::start_request`]); [`drive`] polls the hyper connection and,
//! after every poll, arms one timer for the earliest limit of the current
//! phase. Everything but eviction happens on the connection's own task, so
//! the phase is re-read after every state change without extra wake-ups.
//!
//! While busy there is no connection deadline: the body has its own
//! (see `body`), the handlers have `--request-timeout`, and a blocked
//! response write has `--send-timeout`.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::{ConnectionOptions, Timeout};

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct Tracker {
    origin: Instant,
    phase: AtomicU8,
    /// When the current phase began, in ns since `origin`.
    since: AtomicU64,
    /// 0 while writes flow; else 1 + ns since `origin` when a write first
    /// returned `Pending`.
    blocked: AtomicU64,
    /// Requests between their head and the end of their response.
    active: AtomicUsize,
    requests: AtomicU64,
    /// Whether this connection still counts against the cap; an eviction
    /// takes the slot over for the new connection.
    holds_slot: AtomicBool,
    evict: Notify,
}

impl Tracker {
    /// A connection just accepted: it owes the server a request head.
    pub fn new() -> Self {
        Tracker {
            origin: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            holds_slot: AtomicBool::new(true),
            evict: Notify::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn at(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }

    fn enter(&self, phase: u8) {
        self.since.store(self.now_ns(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// A request head was parsed: the request runs until the returned
    /// guard is dropped (with its response body). Returns the request's
    /// number on this connection, from 1.
    pub fn start_request(self: &Arc<Self>) -> (Turn, u64) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.phase.store(BUSY, Ordering::Relaxed);
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        (Turn(self.clone()), n)
    }

    /// Idle, not writing, still holding a slot, and since when (for
    /// choosing whom to evict).
    pub fn idle_since(&self) -> Option<Instant> {
        let idle = self.phase.load(Ordering::Relaxed) == IDLE
            && self.blocked.load(Ordering::Relaxed) == 0
            && self.holds_slot.load(Ordering::Acquire);
        idle.then(|| self.at(self.since.load(Ordering::Relaxed)))
    }

    /// Gives up this connection's slot (true if it still had one) and
    /// tells its task to close it.
    pub fn evict(&self) -> bool {
        let had = self.holds_slot.swap(false, Ordering::AcqRel);
        if had {
            self.evict.notify_one();
        }
        had
    }

    /// Gives up the slot when the connection ends (true if it still had one).
    pub fn release_slot(&self) -> bool {
        self.holds_slot.swap(false, Ordering::AcqRel)
    }

    /// The earliest limit of the current phase, if any.
    fn deadline(&self, o: &ConnectionOptions) -> Option<(Instant, Timeout)> {
        let since = self.at(self.since.load(Ordering::Relaxed));
        let phase = match self.phase.load(Ordering::Relaxed) {
            HEAD if !o.header_timeout.is_zero() => since
                .checked_add(o.header_timeout)
                .map(|t| (t, Timeout::Header)),
            IDLE if !o.keep_alive_timeout.is_zero() => since
                .checked_add(o.keep_alive_timeout)
                .map(|t| (t, Timeout::Idle)),
            _ => None,
        };
        let blocked = self.blocked.load(Ordering::Relaxed);
        let send = (blocked != 0 && !o.send_timeout.is_zero())
            .then(|| self.at(blocked - 1).checked_add(o.send_timeout))
            .flatten()
            .map(|t| (t, Timeout::Send));
        match (phase, send) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn bytes_arrived(&self) {
        // The first byte after an idle spell starts the next head's clock.
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }

    fn wrote(&self, blocked: bool) {
        let current = self.blocked.load(Ordering::Relaxed);
        if blocked && current == 0 {
            self.blocked.store(self.now_ns() + 1, Ordering::Relaxed);
        } else if !blocked && current != 0 {
            self.blocked.store(0, Ordering::Relaxed);
        }
    }
}

/// One request in progress; dropping it (with the response body) turns
/// the connection idle when no other request is in progress.
#[derive(Debug)]
pub(crate) struct Turn(Arc<Tracker>);

impl Drop for Turn {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.enter(IDLE);
        }
    }
}

/// A response body that holds its request's [`Turn`] until hyper has
/// written it (or given up on it).
pub(crate) struct TrackedBody {
    inner: Body,
    _turn: Turn,
}

impl TrackedBody {
    pub fn new(inner: Body, turn: Turn) -> Self {
        TrackedBody { inner, _turn: turn }
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client socket, reporting reads and blocked writes to its tracker.
pub(crate) struct Watched {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl Watched {
    pub fn new(stream: TcpStream, tracker: Arc<Tracker>) -> Self {
        Watched { stream, tracker }
    }

    fn track<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.tracker.wrote(r.is_pending());
        r
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.tracker.bytes_arrived();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.track(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.track(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        this.track(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// hyper finished it (client closed, `Connection: close`, drain, error).
    Closed(Result<(), hyper::Error>),
    /// A phase lasted too long; the socket is closed.
    TimedOut(Timeout),
    /// Closed to make room for a new connection at the cap.
    Evicted,
}

/// Runs `conn` until it ends, a phase limit passes, or it is evicted.
/// Dropping the connection closes the socket at once.
pub(crate) async fn drive<F>(conn: F, tracker: &Tracker, o: &ConnectionOptions) -> End
where
    F: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut evicted = std::pin::pin!(tracker.evict.notified());
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Closed(r));
        }
        if evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Evicted);
        }
        // Computed after the poll above, so from the phase it left behind.
        let Some((deadline, kind)) = tracker.deadline(o) else {
            return Poll::Pending;
        };
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(End::TimedOut(kind)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConnectionOptions {
        ConnectionOptions {
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(30),
            ..ConnectionOptions::default()
        }
    }

    #[test]
    fn each_phase_has_its_own_limit() {
        let o = opts();
        let t = Arc::new(Tracker::new());
        let since = |t: &Tracker| t.at(t.since.load(Ordering::Relaxed));
        assert_eq!(
            t.deadline(&o),
            Some((t.origin + Duration::from_secs(10), Timeout::Header)),
            "a new connection owes a head"
        );
        let (turn, n) = t.start_request();
        assert_eq!(n, 1);
        assert_eq!(t.deadline(&o), None, "no connection deadline while busy");
        assert_eq!(t.idle_since(), None);
        t.bytes_arrived();
        assert_eq!(t.deadline(&o), None, "body bytes do not start a head");
        drop(turn);
        assert_eq!(
            t.deadline(&o),
            Some((since(&t) + Duration::from_secs(75), Timeout::Idle))
        );
        assert!(t.idle_since().is_some());
        assert!(t.evict());
        assert_eq!(
            t.idle_since(),
            None,
            "an evicted connection is not chosen again"
        );
        t.wrote(false);
        t.bytes_arrived();
        assert_eq!(
            t.deadline(&o),
            Some((since(&t) + Duration::from_secs(10), Timeout::Header)),
            "the next head's clock starts at its first byte"
        );
        // A write blocked since the connection opened.
        t.blocked.store(1, Ordering::Relaxed);
        assert_eq!(
            t.deadline(&o).unwrap().1,
            Timeout::Header,
            "the earlier limit"
        );
        let quick = ConnectionOptions {
            send_timeout: Duration::from_secs(2),
            ..o.clone()
        };
        assert_eq!(
            t.deadline(&quick),
            Some((t.origin + Duration::from_secs(2), Timeout::Send))
        );
        t.wrote(true);
        assert_eq!(
            t.blocked.load(Ordering::Relaxed),
            1,
            "a longer block keeps its start"
        );
        t.wrote(false);
        assert_eq!(t.deadline(&quick).unwrap().1, Timeout::Header);
    }

    #[test]
    fn zero_turns_a_limit_off_and_huge_values_do_not_overflow() {
        let t = Arc::new(Tracker::new());
        let off = ConnectionOptions {
            header_timeout: Duration::ZERO,
            keep_alive_timeout: Duration::ZERO,
            ..opts()
        };
        assert_eq!(t.deadline(&off), None);
        let huge = ConnectionOptions {
            header_timeout: Duration::MAX,
            ..opts()
        };
        assert_eq!(t.deadline(&huge), None);
        drop(t.start_request());
        assert_eq!(t.deadline(&off), None, "no keep-alive, no idle limit");
    }

    #[test]
    fn an_evicted_connection_gives_its_slot_once() {
        let t = Tracker::new();
        assert!(t.evict());
        assert!(!t.evict());
        assert!(!t.release_slot(), "the slot went to the new connection");
        let t = Tracker::new();
        assert!(t.release_slot());
        assert!(!t.evict());
    }
}
