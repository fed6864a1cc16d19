//! Metrics move as requests are served; `/api/stats` summarises them.

mod common;

use common::*;
use imgclass_server::ServerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_requests_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let state = ready_state(ServerOptions {
        images_dir: Some(dir.path().to_path_buf()),
        ..options()
    });
    let server = TestServer::start(state.clone()).await;
    bounded(60, async {
        let before = get(server.addr, "/metrics").await;
        assert_eq!(before.status, 200);
        assert!(
            before
                .header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let before = before.text();

        for name in ["coffee.png", "chelsea.png", "china.jpg"] {
            assert_eq!(
                classify(server.addr, "", &imgclass_testkit::photo_bytes(name))
                    .await
                    .status,
                200
            );
        }
        assert_eq!(classify(server.addr, "", b"not an image").await.status, 415);
        state.storage_idle().await;

        let after = get(server.addr, "/metrics").await.text();
        let delta = |series: &str| sample(&after, series) - sample(&before, series);
        assert_eq!(
            delta(r#"imgclass_requests_total{route="/classify",status="200"}"#),
            3.0
        );
        assert_eq!(
            delta(r#"imgclass_requests_total{route="/classify",status="415"}"#),
            1.0
        );
        assert_eq!(
            delta(r#"imgclass_request_duration_seconds_count{route="/classify"}"#),
            4.0
        );
        assert!(delta("imgclass_batch_size_count") >= 1.0);
        assert_eq!(
            delta("imgclass_batch_size_sum"),
            3.0,
            "three images went through the engine"
        );
        assert!(delta("imgclass_inference_duration_seconds_count") >= 1.0);
        assert_eq!(delta("imgclass_queue_duration_seconds_count"), 3.0);
        assert_eq!(delta("imgclass_images_stored_total"), 3.0);
        assert!(
            sample(
                &before,
                r#"imgclass_requests_total{route="/metrics",status="200"}"#
            ) == 0.0
        );
        assert_eq!(
            sample(
                &after,
                r#"imgclass_requests_total{route="/metrics",status="200"}"#
            ),
            1.0
        );
        assert_eq!(sample(&after, "imgclass_queue_depth"), 0.0);
        assert!(after.contains(r#"imgclass_model_info{model="efficientnet-lite0",engine="#));
        assert!(after.contains("# TYPE imgclass_request_duration_seconds histogram"));
        assert!(after.contains("imgclass_ready 1"));

        let stats = get(server.addr, "/api/stats").await.json();
        assert_eq!(stats["ready"], true);
        assert_eq!(stats["model"], "efficientnet-lite0");
        assert!(stats["engine"].as_str().is_some());
        assert!(stats["requests_per_second"].as_f64().unwrap() > 0.0);
        let p50 = stats["latency_ms"]["p50"].as_f64().unwrap();
        let p99 = stats["latency_ms"]["p99"].as_f64().unwrap();
        assert!(p50 > 0.0 && p99 >= p50, "{stats}");
        assert!(stats["mean_batch_size"].as_f64().unwrap() >= 1.0);
        assert_eq!(stats["images_stored"], 3);
        assert_eq!(stats["queue_depth"], 0);
        // Uptime moves with the clock (reported in tenths of a second).
        let first = stats["uptime_seconds"].as_f64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        let later = get(server.addr, "/api/stats").await.json()["uptime_seconds"]
            .as_f64()
            .unwrap();
        assert!(later >= first + 0.2, "{first} then {later}");
    })
    .await;
}
