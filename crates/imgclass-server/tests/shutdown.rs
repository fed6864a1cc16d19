//! Graceful shutdown with a real SIGTERM to this test process (its own test
//! binary, so no other test sees the signal): every request accepted before
//! the signal gets its 200, new connections are refused afterwards, and
//! `serve` returns Ok.

mod common;

use std::time::Duration;

use common::*;
use hyper::Method;
use imgclass_server::ServerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_answers_every_accepted_request() {
    // Listening for SIGTERM before anything else replaces the default action
    // (terminate), so the signal can only reach the server's handler.
    let mut guard =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = slow_state(
        ServerOptions {
            shutdown_grace: Duration::from_secs(20),
            images_dir: Some(dir.path().to_path_buf()),
            ..options()
        },
        Duration::from_millis(400),
    );
    let mut server =
        TestServer::start_with(state.clone(), imgclass_server::shutdown_signal()).await;
    bounded(60, async {
        let photos = ["coffee.png", "chelsea.png", "rocket.jpg", "china.jpg"];
        let burst = 10;
        let mut conns = Vec::new();
        for _ in 0..burst {
            conns.push(Conn::open(server.addr).await.unwrap());
        }
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                let name = photos[i % photos.len()];
                tokio::spawn(async move {
                    let (ct, body) = image_form(&imgclass_testkit::photo_bytes(name), name);
                    let r = c
                        .send(Method::POST, "/classify", &[("content-type", &ct)], body)
                        .await;
                    (name, r)
                })
            })
            .collect();
        // Every request of the burst is being handled: then the signal.
        while state.in_flight() < burst as i64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let _ = guard.recv().await;

        for t in tasks {
            let (name, r) = t.await.unwrap();
            let r = r.unwrap_or_else(|e| panic!("{name}: accepted request lost: {e}"));
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            let top = r.json()[0]["index"].as_u64().unwrap() as usize;
            assert!(expected(name).contains(&top), "{name}: {top}");
        }
        server
            .join()
            .await
            .expect("serve returns Ok after draining");
        assert!(
            tokio::net::TcpStream::connect(server.addr).await.is_err(),
            "the listener is closed after shutdown"
        );
        // Storage writes of the accepted requests finished too.
        let page = imgclass_server::Storage::open(dir.path())
            .unwrap()
            .history(100, None)
            .unwrap();
        assert_eq!(page.items.len(), photos.len());
    })
    .await;
}
