//! Several models served by one process: each answers with its own labels,
//! `?model=` and `/v2/models/{name}` pick one, an unknown model is a 404
//! everywhere, and readiness waits for every configured model.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use hyper::Method;
use imgclass_core::{DEFAULT_MODEL, Engine, LoadedModel};
use imgclass_engines::{EngineChoice, EngineOptions};
use imgclass_server::{AppState, ModelLoader, ServerOptions};
use imgclass_testkit::{ALT_MODEL, ALT_PREFIX, two_model_home};

/// Loads from the two-model home with the real engine, one session each;
/// the second model takes `delay` longer, so readiness can be watched.
struct SlowSecondLoader {
    delay: Duration,
}

impl ModelLoader for SlowSecondLoader {
    fn load(
        &self,
        name: &str,
    ) -> Result<(LoadedModel, Arc<dyn Engine>), Box<dyn std::error::Error + Send + Sync>> {
        if name == ALT_MODEL {
            std::thread::sleep(self.delay);
        }
        let options = EngineOptions {
            sessions: 1,
            intra_threads: 1,
            ort_library: None,
        };
        Ok(imgclass_engines::load(
            two_model_home(),
            name,
            EngineChoice::Auto,
            &options,
        )?)
    }

    fn available(&self) -> Vec<String> {
        imgclass_core::ModelRepository::new(two_model_home()).list()
    }
}

fn infer_body(image: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(image);
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{ "name": "image", "shape": [1], "datatype": "BYTES", "data": [b64] }],
        "outputs": [{ "name": "probabilities", "parameters": { "classification": 2 } }],
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_answer_with_their_own_labels_and_readiness_waits_for_both() {
    let options = ServerOptions {
        models: vec![DEFAULT_MODEL.to_string(), ALT_MODEL.to_string()],
        ..options()
    };
    let loader = Arc::new(SlowSecondLoader {
        delay: Duration::from_millis(1500),
    });
    let state = AppState::with_loader(options, loader).unwrap();
    let server = TestServer::start(state.clone()).await;
    bounded(120, async {
        let loading = state.clone();
        let loaded = tokio::task::spawn_blocking(move || loading.load_configured());

        // The default model comes up first; the server is not ready until
        // the second one is too.
        let coffee = imgclass_testkit::photo_bytes("coffee.png");
        loop {
            let r = classify(server.addr, "", &coffee).await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = get(server.addr, "/readyz").await;
        assert_eq!(
            ready.status,
            503,
            "second model still loading: {}",
            ready.text()
        );
        assert_eq!(
            get(server.addr, &format!("/v2/models/{ALT_MODEL}/ready"))
                .await
                .status,
            503
        );
        assert_eq!(
            classify(server.addr, &format!("?model={ALT_MODEL}"), &coffee)
                .await
                .status,
            503
        );
        loaded.await.unwrap().expect("both models load");
        let ready = get(server.addr, "/readyz").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        let body = ready.json();
        assert_eq!(body["model"], DEFAULT_MODEL);
        assert_eq!(body["models"].as_array().unwrap().len(), 2);

        // `/classify` picks by `?model=`, the default without it.
        let plain = classify(server.addr, "", &coffee).await.json();
        let default = classify(server.addr, &format!("?model={DEFAULT_MODEL}"), &coffee)
            .await
            .json();
        let alt = classify(server.addr, &format!("?model={ALT_MODEL}"), &coffee).await;
        assert_eq!(alt.status, 200);
        assert_eq!(alt.header("x-model"), Some(ALT_MODEL));
        let alt = alt.json();
        assert_eq!(plain, default);
        assert_eq!(default[0]["label"], "espresso");
        assert_eq!(alt[0]["label"], format!("{ALT_PREFIX}espresso"));
        assert_eq!(alt[0]["index"], default[0]["index"]);
        assert_eq!(alt[0]["probability"], default[0]["probability"]);

        // KServe v2 routes by the path.
        let meta = get(server.addr, &format!("/v2/models/{ALT_MODEL}")).await;
        assert_eq!(meta.status, 200);
        assert_eq!(meta.json()["name"], ALT_MODEL);
        for (model, prefix) in [(DEFAULT_MODEL, ""), (ALT_MODEL, ALT_PREFIX)] {
            let r = send(
                server.addr,
                Method::POST,
                &format!("/v2/models/{model}/infer"),
                &[("content-type", "application/json")],
                infer_body(&coffee),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            assert_eq!(j["model_name"], model);
            let top = j["outputs"][0]["data"][0].as_str().unwrap().to_string();
            assert!(top.ends_with(&format!(":967:{prefix}espresso")), "{top}");
        }

        // An unknown model is a 404 with a JSON error on every route.
        for (method, path, body) in [
            (Method::GET, "/v2/models/nope".to_string(), Vec::new()),
            (Method::GET, "/v2/models/nope/ready".to_string(), Vec::new()),
            (
                Method::POST,
                "/v2/models/nope/infer".to_string(),
                infer_body(&coffee),
            ),
        ] {
            let r = send(server.addr, method, &path, &[], body).await;
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            assert!(r.error().contains("nope"), "{}", r.error());
        }
        let r = classify(server.addr, "?model=nope", &coffee).await;
        assert_eq!(r.status, 404);
        assert!(
            r.error().contains(ALT_MODEL),
            "lists what is served: {}",
            r.error()
        );

        // Metrics and stats carry the model.
        let metrics = get(server.addr, "/metrics").await.text();
        for model in [DEFAULT_MODEL, ALT_MODEL] {
            let series = format!(
                r#"imgclass_requests_total{{route="/classify",status="200",model="{model}"}}"#
            );
            assert!(sample(&metrics, &series) >= 1.0, "{series}\n{metrics}");
            assert!(
                sample(
                    &metrics,
                    &format!(r#"imgclass_batch_size_count{{model="{model}"}}"#)
                ) >= 1.0
            );
        }
        let stats = get(server.addr, "/api/stats").await.json();
        let names: Vec<&str> = stats["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec![DEFAULT_MODEL, ALT_MODEL]);
        assert_eq!(stats["model"], DEFAULT_MODEL);
    })
    .await;
    server.stop().await.unwrap();
}
