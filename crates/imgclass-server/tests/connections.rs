//! Hostile and careless connections over real sockets, against the real
//! model: half-open connections, trickled bodies, idle keep-alive, the
//! connection cap, pipelining, clients that stop reading, and a drain
//! with slow clients still connected. Timeouts are short here; assertions
//! are about what happens (answered, closed, refused, counted), with
//! generous margins for when.

mod common;

use std::time::{Duration, Instant};

use common::*;
use imgclass_server::{ConnectionOptions, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_connections(connection: ConnectionOptions) -> ServerOptions {
    ServerOptions {
        connection,
        ..options()
    }
}

/// A server around the real model with these connection limits.
async fn serve(connection: ConnectionOptions) -> TestServer {
    TestServer::start(ready_state(with_connections(connection))).await
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    get(addr, "/metrics").await.text()
}

/// What a raw client saw before the server closed the connection.
struct Seen {
    bytes: Vec<u8>,
    /// The close was a FIN (end of file) rather than a reset.
    eof: bool,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads until the server closes the connection, failing the test after `secs`.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin), secs: u64) -> Seen {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let eof = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close the connection within {secs} s"));
    Seen { bytes, eof }
}

/// Reads one response with a Content-Length body from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                return String::from_utf8_lossy(&data[..end + 4 + length]).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("a response within 20 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

/// Responses with Content-Length bodies, one after another in `bytes`.
fn split_responses(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let whole = (end + 4 + length).min(rest.len());
        out.push(String::from_utf8_lossy(&rest[..whole]).into_owned());
        rest = &rest[whole..];
    }
    assert!(
        rest.is_empty(),
        "trailing bytes: {}",
        String::from_utf8_lossy(rest)
    );
    out
}

const PARTIAL_HEAD: &[u8] =
    b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; bou";

/// `n` connections that stop in the middle of their request head.
async fn slow_heads(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PARTIAL_HEAD).await.unwrap();
        out.push(s);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_never_starve_an_upload_and_are_closed_after_the_header_timeout() {
    const HALF_OPEN: usize = 256;
    let header_timeout = Duration::from_secs(4);
    let server = serve(ConnectionOptions {
        header_timeout,
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(90, async {
        let began = Instant::now();
        let mut half_open = Vec::new();
        for i in 0..HALF_OPEN {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // Half never send a byte, half stop in the middle of the head.
            if i % 2 == 1 {
                s.write_all(PARTIAL_HEAD).await.unwrap();
            }
            half_open.push(s);
        }
        let r = classify(addr, "", &imgclass_testkit::photo_bytes("chelsea.png")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let top = r.json()[0]["index"].as_u64().unwrap() as usize;
        assert!(expected("chelsea.png").contains(&top));
        let text = metrics(addr).await;
        assert!(
            sample(&text, "imgclass_connections_open") >= (HALF_OPEN + 1) as f64,
            "the upload was answered while every half-open connection was held: {}",
            sample(&text, "imgclass_connections_open")
        );

        for (i, s) in half_open.iter_mut().enumerate() {
            let seen = read_to_close(s, 30).await;
            assert!(
                seen.eof && seen.bytes.is_empty(),
                "connection {i}: {}",
                seen.text()
            );
        }
        assert!(
            began.elapsed() >= header_timeout,
            "closed before the header timeout: {:?}",
            began.elapsed()
        );
        // A connection task counts its timeout just after its socket is
        // closed, so the last few may lag the clients' end of file briefly.
        let settled = Instant::now();
        loop {
            let text = metrics(addr).await;
            let timeouts = sample(
                &text,
                r#"imgclass_connection_timeouts_total{phase="header"}"#,
            );
            let open = sample(&text, "imgclass_connections_open");
            if (timeouts, open) == (HALF_OPEN as f64, 1.0) {
                break;
            }
            assert!(
                settled.elapsed() < Duration::from_secs(5),
                "{timeouts} header timeouts (want {HALF_OPEN}), {open} open (want only the scrape's)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_with_408() {
    let server = serve(ConnectionOptions {
        body_timeout: Duration::from_secs(1),
        body_min_rate: 1024,
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(90, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(
            format!(
                "POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 100000\r\n\r\n--{BOUNDARY}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let reader = tokio::spawn(async move { read_to_close(&mut rd, 60).await });
        let began = Instant::now();
        // One byte every 200 ms: the 100 kB body would take over 5 hours.
        while !reader.is_finished() && began.elapsed() < Duration::from_secs(60) {
            if wr.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seen = reader.await.unwrap();
        let text = seen.text();
        if !text.is_empty() {
            assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
            assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
            assert!(text.contains("arrived too slowly"), "{text}");
        }
        let text = metrics(addr).await;
        assert_eq!(
            sample(&text, r#"imgclass_connection_timeouts_total{phase="body"}"#),
            1.0
        );
        assert_eq!(
            sample(&text, r#"imgclass_requests_total{route="/classify",status="408"}"#),
            1.0,
            "the request is counted as its 408"
        );
        // The server is fine afterwards.
        let r = classify(addr, "", &imgclass_testkit::photo_bytes("coffee.png")).await;
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_above_the_minimum_rate_takes_longer_than_the_body_timeout_and_succeeds() {
    let body_timeout = Duration::from_secs(1);
    let server = serve(ConnectionOptions {
        body_timeout,
        body_min_rate: 4 << 10,
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(90, async {
        let photo = jpeg_500x375("china.jpg");
        let (ct, body) = image_form(&photo, "china.jpg");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // 20 pieces, one every 100 ms: the body takes twice the 1 s body
        // timeout, at ≥ 5 KiB/s for a body over 10 KiB (the minimum is 4 KiB/s).
        assert!(body.len() > 10 << 10, "{} bytes", body.len());
        let chunks: Vec<_> = body.chunks(body.len().div_ceil(20)).collect();
        let began = Instant::now();
        for chunk in chunks {
            s.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let response = read_response(&mut s).await;
        assert!(began.elapsed() > body_timeout);
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        assert!(response.contains("\"index\":698"), "{response}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let server = serve(ConnectionOptions {
        keep_alive_timeout: Duration::from_secs(1),
        // Much longer, so only the idle timeout can close the connection.
        header_timeout: Duration::from_secs(60),
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(60, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            let r = read_response(&mut s).await;
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r}");
        }
        let idle = Instant::now();
        let seen = read_to_close(&mut s, 30).await;
        assert!(seen.eof && seen.bytes.is_empty(), "{}", seen.text());
        // The idle clock starts as the response is written, a moment
        // before the client has read it.
        assert!(
            idle.elapsed() >= Duration::from_millis(900),
            "{:?}",
            idle.elapsed()
        );
        let text = metrics(addr).await;
        assert_eq!(
            sample(&text, r#"imgclass_connection_timeouts_total{phase="idle"}"#),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"imgclass_connection_timeouts_total{phase="header"}"#
            ),
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_clearly_and_recovers() {
    const CAP: usize = 8;
    let server = serve(ConnectionOptions {
        max_connections: CAP,
        header_timeout: Duration::from_secs(2),
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(90, async {
        // Slow heads fill the cap; they cannot be told from slow honest
        // clients, so they are not evicted.
        let mut slow = slow_heads(addr, CAP).await;
        // Accepted in order after them: refused, clearly, with nothing left open.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let seen = read_to_close(&mut s, 20).await;
        let text = seen.text();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("\r\nretry-after: 1\r\n"), "{text}");
        assert!(lower.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.contains(r#"{"error":"#), "{text}");
        assert!(seen.eof, "closed cleanly after the answer");
        // A real HTTP client reads the same answer rather than a reset.
        let r = get(addr, "/healthz").await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            r.error().contains("too many open connections"),
            "{}",
            r.error()
        );

        // The header timeout frees the slots; then clients are served again.
        for s in &mut slow {
            assert!(read_to_close(s, 30).await.eof);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let r = loop {
            let r = classify(addr, "", &imgclass_testkit::photo_bytes("coffee.png")).await;
            if r.status == 200 || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(r.status, 200, "{}", r.text());
        let text = metrics(addr).await;
        assert!(sample(&text, "imgclass_connections_refused_total") >= 2.0);
        assert_eq!(
            sample(
                &text,
                r#"imgclass_connection_timeouts_total{phase="header"}"#
            ),
            CAP as f64
        );
        assert_eq!(sample(&text, "imgclass_connections_evicted_total"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    const CAP: usize = 4;
    let server = serve(ConnectionOptions {
        max_connections: CAP,
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(60, async {
        let mut idle = Vec::new();
        for _ in 0..CAP {
            let mut c = Conn::open(addr).await.unwrap();
            let r = c
                .send(hyper::Method::GET, "/healthz", &[], Vec::new())
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            idle.push(c);
            // Distinct idle times, so "the longest idle" is the first.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every slot is taken by an idle connection: a new client is served
        // (and keeps its connection, so the scrape below must evict too).
        let mut upload = Conn::open(addr).await.unwrap();
        let r = upload
            .classify(&imgclass_testkit::photo_bytes("rocket.jpg"), "rocket.jpg")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let text = metrics(addr).await;
        assert_eq!(sample(&text, "imgclass_connections_refused_total"), 0.0);
        assert_eq!(
            sample(&text, "imgclass_connections_evicted_total"),
            2.0,
            "one for the upload, one for the scrape"
        );
        // The oldest two were the ones closed; the newest is still usable.
        assert!(
            idle[0]
                .send(hyper::Method::GET, "/healthz", &[], Vec::new())
                .await
                .is_err()
        );
        let r = idle[CAP - 1]
            .send(hyper::Method::GET, "/healthz", &[], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_up_to_the_per_connection_limit() {
    let server = serve(ConnectionOptions {
        max_requests_per_connection: 3,
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(60, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut burst = Vec::new();
        for path in ["/healthz", "/readyz", "/v2/health/live", "/healthz"] {
            burst
                .extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        }
        s.write_all(&burst).await.unwrap();
        // The third answer says `Connection: close` and the server closes;
        // the fourth request is not answered.
        let seen = read_to_close(&mut s, 20).await;
        let responses = split_responses(&seen.bytes);
        assert_eq!(responses.len(), 3, "{}", seen.text());
        assert!(
            responses[0].contains(r#"{"status":"ok"}"#),
            "{}",
            responses[0]
        );
        assert!(
            responses[1].contains(r#""status":"ready""#),
            "{}",
            responses[1]
        );
        assert!(
            responses[2].contains(r#"{"live":true}"#),
            "{}",
            responses[2]
        );
        for (i, r) in responses.iter().enumerate() {
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            assert_eq!(
                r.to_ascii_lowercase().contains("connection: close"),
                i == 2,
                "only the last allowed response closes: {r}"
            );
        }
        assert!(seen.eof);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let server = serve(ConnectionOptions {
        send_timeout: Duration::from_secs(1),
        ..ConnectionOptions::default()
    })
    .await;
    let addr = server.addr;
    bounded(60, async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        // Far more answer than the socket buffers hold, and never read.
        let mut burst = Vec::new();
        for _ in 0..1000 {
            burst.extend_from_slice(b"GET /openapi.json HTTP/1.1\r\nHost: test\r\n\r\n");
        }
        s.write_all(&burst).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let timed_out = loop {
            let n = sample(
                &metrics(addr).await,
                r#"imgclass_connection_timeouts_total{phase="send"}"#,
            );
            if n > 0.0 || Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(timed_out, 1.0);
        // What was written reaches the client, then the connection ends.
        let seen = read_to_close(&mut s, 20).await;
        assert!(seen.text().starts_with("HTTP/1.1 200 "));
        assert!(seen.text().matches("HTTP/1.1 200 ").count() < 1000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_not_held_up_by_half_open_connections() {
    let header_timeout = Duration::from_secs(2);
    let state = ready_state(ServerOptions {
        shutdown_grace: Duration::from_secs(60),
        ..with_connections(ConnectionOptions {
            header_timeout,
            ..ConnectionOptions::default()
        })
    });
    let server = TestServer::start(state).await;
    let addr = server.addr;
    bounded(40, async {
        let mut half_open = slow_heads(addr, 16).await;
        let mut idle = Conn::open(addr).await.unwrap();
        let r = idle
            .send(hyper::Method::GET, "/healthz", &[], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        // Well within the 60 s grace: the idle connection closes at once,
        // the half-open ones at their header timeout.
        let began = Instant::now();
        server.stop().await.expect("serve returns Ok");
        assert!(began.elapsed() < Duration::from_secs(30));
        for s in &mut half_open {
            assert!(read_to_close(s, 5).await.eof);
        }
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    })
    .await;
}
