//! Overload: with a queue of one image and a deliberately slow engine, the
//! surplus of a burst is refused at once with 503 and Retry-After, and the
//! requests that were accepted all succeed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use imgclass_server::ServerOptions;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surplus_gets_503_at_once_and_accepted_requests_succeed() {
    let engine_delay = Duration::from_millis(400);
    let state = slow_state(
        ServerOptions {
            queue_capacity: 1,
            ..options()
        },
        engine_delay,
    );
    let server = TestServer::start(state).await;
    bounded(60, async {
        let bytes = jpeg_500x375("china.jpg");
        // Connections first, so the burst is not spread out by connecting.
        let mut conns = Vec::new();
        for _ in 0..12 {
            conns.push(Conn::open(server.addr).await.unwrap());
        }
        let burst: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let (ct, body) = image_form(&bytes, "china.jpg");
                    let t = Instant::now();
                    let r = c
                        .send(
                            hyper::Method::POST,
                            "/classify",
                            &[("content-type", &ct)],
                            body,
                        )
                        .await
                        .unwrap();
                    (r, t.elapsed())
                })
            })
            .collect();
        let mut ok = 0;
        let mut refused = 0;
        for h in burst {
            let (r, took) = h.await.unwrap();
            match r.status {
                200 => {
                    ok += 1;
                    assert_eq!(
                        r.json()[0]["index"],
                        698,
                        "accepted requests get the right answer"
                    );
                    assert!(
                        took >= engine_delay,
                        "a 200 cannot beat the engine: {took:?}"
                    );
                }
                503 => {
                    refused += 1;
                    assert_eq!(r.header("retry-after"), Some("1"));
                    assert!(r.error().contains("overloaded"), "{}", r.error());
                    assert!(
                        took < Duration::from_millis(250),
                        "503 must be immediate, took {took:?}"
                    );
                }
                other => panic!("unexpected {other}: {}", r.text()),
            }
        }
        // Two engine workers each hold one image and the queue holds one
        // more (fewer if a worker was slow to pick up its first image).
        assert!((1..=4).contains(&ok), "{ok} accepted");
        assert!(refused >= 8, "{refused} refused");
        assert_eq!(ok + refused, 12);
        // Once the burst is over, the server serves again.
        let r = classify(server.addr, "", &bytes).await;
        assert_eq!(r.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_went_away_is_skipped_before_inference() {
    // One engine worker, busy for 500 ms per call.
    let (model, engine) = real_model();
    let slow = SlowEngine::new(engine, Duration::from_millis(500), 1);
    let state = slow_state_with(model, slow, options());
    let server = TestServer::start(state.clone()).await;
    bounded(60, async {
        let bytes = imgclass_testkit::photo_bytes("coffee.png");
        let addr = server.addr;
        let first = tokio::spawn({
            let bytes = bytes.clone();
            async move { classify(addr, "", &bytes).await }
        });
        // The worker has taken the first image (queue empty, request in flight).
        while state.in_flight() < 1 || state.queue_depth() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;

        // A second client uploads, waits until its image is queued, then hangs up.
        let (ct, body) = image_form(&bytes, "c.png");
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /classify HTTP/1.1\r\nhost: test\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw.write_all(&body).await.unwrap();
        while state.queue_depth() < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(raw);

        assert_eq!(first.await.unwrap().status, 200);
        let deadline = Instant::now() + Duration::from_secs(5);
        let metrics = loop {
            let text = get(addr, "/metrics").await.text();
            if sample(&text, r#"imgclass_requests_dropped_total{reason="client_gone"}"#) >= 1.0 || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            sample(&metrics, r#"imgclass_requests_dropped_total{reason="client_gone"}"#),
            1.0,
            "the abandoned image was skipped"
        );
        assert_eq!(sample(&metrics, "imgclass_batch_size_count"), 1.0, "only the first image reached the engine");
    })
    .await;
}
