//! KServe v2 / Open Inference Protocol: metadata, a BYTES batch of three
//! photos and an FP32 tensor agree with `/classify`, the classification
//! extension's format, and errors in the protocol's form.

mod common;

use base64::Engine as _;
use common::*;
use hyper::Method;
use imgclass_core::{DecodeLimits, Preprocessor};
use serde_json::{Value, json};

const MODEL: &str = "efficientnet-lite0";
const INFER: &str = "/v2/models/efficientnet-lite0/infer";

async fn infer(addr: std::net::SocketAddr, body: &Value) -> Resp {
    send(
        addr,
        Method::POST,
        INFER,
        &[("content-type", "application/json")],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_health() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(60, async {
        let v = get(server.addr, "/v2").await.json();
        assert_eq!(v["name"], "imgclass");
        let extensions = v["extensions"].as_array().unwrap();
        for e in [
            "binary_tensor_data",
            "classification",
            "model_configuration",
            "model_repository",
            "statistics",
        ] {
            assert!(extensions.contains(&json!(e)), "{e} in {extensions:?}");
        }
        assert_eq!(
            get(server.addr, "/v2/health/live").await.json()["live"],
            true
        );
        assert_eq!(
            get(server.addr, "/v2/health/ready").await.json()["ready"],
            true
        );
        let m = get(server.addr, &format!("/v2/models/{MODEL}"))
            .await
            .json();
        assert_eq!(m["name"], MODEL);
        assert_eq!(m["inputs"][0]["datatype"], "BYTES");
        assert_eq!(m["inputs"][0]["shape"], json!([-1, 1]));
        assert_eq!(m["inputs"][1]["datatype"], "FP32");
        assert_eq!(m["inputs"][1]["shape"], json!([-1, 3, 224, 224]));
        assert_eq!(m["outputs"][0]["shape"], json!([-1, 1000]));
        let r = get(server.addr, &format!("/v2/models/{MODEL}/ready")).await;
        assert_eq!((r.status, r.json()["ready"].clone()), (200, json!(true)));
        let r = get(server.addr, "/v2/models/nope").await;
        assert_eq!(r.status, 404);
        assert!(r.error().contains("nope"));
        assert_eq!(get(server.addr, "/v2/models/nope/ready").await.status, 404);
        let v1 = get(server.addr, &format!("/v2/models/{MODEL}/versions/1")).await;
        assert_eq!((v1.status, v1.json()["name"].clone()), (200, json!(MODEL)));
        assert_eq!(
            get(server.addr, &format!("/v2/models/{MODEL}/versions/2"))
                .await
                .status,
            404
        );

        // Triton's model configuration of what serves the model.
        let c = get(server.addr, &format!("/v2/models/{MODEL}/config")).await;
        assert_eq!(c.status, 200, "{}", c.text());
        let c = c.json();
        assert_eq!(c["name"], MODEL);
        assert_eq!(c["platform"], "onnxruntime_onnx");
        assert_eq!(c["backend"], "onnxruntime");
        assert_eq!(c["max_batch_size"], 64);
        assert_eq!(
            c["input"][0],
            json!({"name": "image", "data_type": "TYPE_STRING", "format": "FORMAT_NONE",
            "dims": [1], "is_shape_tensor": false, "allow_ragged_batch": false, "optional": true})
        );
        assert_eq!(c["input"][1]["data_type"], "TYPE_FP32");
        assert_eq!(c["input"][1]["format"], "FORMAT_NCHW");
        assert_eq!(c["input"][1]["dims"], json!([3, 224, 224]));
        assert_eq!(c["output"][0]["dims"], json!([1000]));
        assert_eq!(c["output"][0]["label_filename"], "labels.txt");
        assert_eq!(c["dynamic_batching"]["max_queue_delay_microseconds"], 0);
        // the test engine has two sessions
        assert_eq!(c["instance_group"][0]["count"], 2);
        assert_eq!(c["instance_group"][0]["kind"], "KIND_CPU");
        assert_eq!(get(server.addr, "/v2/models/nope/config").await.status, 404);
        assert_eq!(get(server.addr, "/v2/models/nope/stats").await.status, 404);
        let s = get(server.addr, "/v2/models/stats").await.json();
        assert_eq!(s["model_stats"][0]["name"], MODEL);
        assert_eq!(s["model_stats"][0]["version"], "1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_batch_and_fp32_tensor_agree_with_classify() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(120, async {
        let names = ["coffee.png", "chelsea.png", "rocket.jpg"];
        let photos: Vec<Vec<u8>> = names.iter().map(|n| imgclass_testkit::photo_bytes(n)).collect();
        let mut classify_top = Vec::new();
        for (name, bytes) in names.iter().zip(&photos) {
            let r = classify(server.addr, "?top_k=1", bytes).await;
            assert_eq!(r.status, 200, "{name}");
            let top = r.json()[0]["index"].as_u64().unwrap() as usize;
            assert!(expected(name).contains(&top), "{name}: {top}");
            classify_top.push(top);
        }

        // (a) BYTES: base64-encoded images, batch of 3.
        let b64: Vec<String> = photos
            .iter()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
            .collect();
        let request = json!({
            "id": "batch-1",
            "inputs": [{ "name": "image", "shape": [3], "datatype": "BYTES", "data": b64 }]
        });
        let r = infer(server.addr, &request).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-inference-time").is_some());
        let v = r.json();
        assert_eq!(v["model_name"], MODEL);
        assert_eq!(v["id"], "batch-1");
        let out = &v["outputs"][0];
        assert_eq!(out["name"], "probabilities");
        assert_eq!(out["datatype"], "FP32");
        assert_eq!(out["shape"], json!([3, 1000]));
        let data: Vec<f64> = out["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(data.len(), 3000);
        let bytes_rows: Vec<&[f64]> = data.chunks(1000).collect();
        for (i, row) in bytes_rows.iter().enumerate() {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-3, "row {i} sums to 1");
            assert_eq!(argmax(row), classify_top[i], "{}: BYTES top-1 = /classify top-1", names[i]);
        }

        // (b) FP32: the same first photo, preprocessed here with the model's own settings.
        let (model, _) = real_model();
        let pre = Preprocessor::new(model.config.input.clone(), DecodeLimits::default());
        let tensor = pre.preprocess(&photos[0]).unwrap().tensor;
        let request = json!({
            "inputs": [{ "name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": tensor }]
        });
        let r = infer(server.addr, &request).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let row: Vec<f64> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(argmax(&row), classify_top[0], "FP32 top-1 = /classify top-1");
        let max_diff = row.iter().zip(bytes_rows[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(max_diff < 1e-4, "FP32 and BYTES give the same probabilities (diff {max_diff})");

        // Nested data and [N, 1] shape are accepted too.
        let nested = json!({
            "inputs": [{ "name": "image", "shape": [2, 1], "datatype": "BYTES",
                         "data": [[b64[1].clone()], [{ "b64": b64[2].clone() }]] }]
        });
        let r = infer(server.addr, &nested).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["outputs"][0]["shape"], json!([2, 1000]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_extension_format() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(60, async {
        let (model, _) = real_model();
        let photos = ["chelsea.png", "china.jpg"];
        let data: Vec<String> = photos
            .iter()
            .map(|n| {
                base64::engine::general_purpose::STANDARD.encode(imgclass_testkit::photo_bytes(n))
            })
            .collect();
        let request = json!({
            "inputs": [{ "name": "image", "shape": [2], "datatype": "BYTES", "data": data }],
            "outputs": [{ "name": "probabilities", "parameters": { "classification": 3 } }]
        });
        let r = infer(server.addr, &request).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let out = &r.json()["outputs"][0];
        assert_eq!(out["datatype"], "BYTES");
        assert_eq!(out["shape"], json!([2, 3]));
        let strings: Vec<&str> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(strings.len(), 6);
        for (i, chunk) in strings.chunks(3).enumerate() {
            let mut last = f64::INFINITY;
            for (j, s) in chunk.iter().enumerate() {
                // "<prob>:<index>:<label>"; labels may contain ':' in general, so split twice only.
                let mut parts = s.splitn(3, ':');
                let prob: f64 = parts.next().unwrap().parse().unwrap();
                let index: usize = parts.next().unwrap().parse().unwrap();
                let label = parts.next().unwrap();
                assert!((0.0..=1.0).contains(&prob) && prob <= last, "{s}");
                last = prob;
                assert_eq!(label, model.labels.get(index), "{s}");
                if j == 0 {
                    assert!(expected(photos[i]).contains(&index), "{}: {s}", photos[i]);
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_json_with_the_right_status() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(60, async {
        let good = base64::engine::general_purpose::STANDARD.encode(imgclass_testkit::photo_bytes("coffee.png"));
        let text = base64::engine::general_purpose::STANDARD.encode(b"plain text, not an image");
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            ("no inputs field", json!({}), 400, "invalid inference request"),
            ("two inputs", json!({ "inputs": [
                { "name": "a", "shape": [1], "datatype": "BYTES", "data": [good.clone()] },
                { "name": "b", "shape": [1], "datatype": "BYTES", "data": [good.clone()] }] }), 400, "exactly one input"),
            ("unsupported datatype", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "INT8", "data": [1] }] }), 400, "unsupported datatype INT8"),
            ("unknown datatype", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "FLOAT", "data": [1] }] }), 400, "unknown datatype"),
            ("shape/data mismatch", json!({ "inputs": [{ "name": "a", "shape": [2], "datatype": "BYTES", "data": [good.clone()] }] }), 400, "needs 2 elements, the data has 1"),
            ("bad base64", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "BYTES", "data": ["@@@"] }] }), 400, "base64"),
            ("not an image", json!({ "inputs": [{ "name": "a", "shape": [2], "datatype": "BYTES", "data": [good.clone(), text] }] }), 415, "image 1"),
            ("wrong FP32 shape", json!({ "inputs": [{ "name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": vec![0.0; 192] }] }), 400, "[1, 3, 224, 224]"),
            ("unknown output", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "BYTES", "data": [good.clone()] }],
                                       "outputs": [{ "name": "logits" }] }), 400, "unknown output"),
            ("classification not a count", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "BYTES", "data": [good.clone()] }],
                                       "outputs": [{ "name": "probabilities", "parameters": { "classification": "3" } }] }), 400, "classification"),
            ("batch too large", json!({ "inputs": [{ "name": "a", "shape": [65], "datatype": "BYTES", "data": vec![good.clone(); 65] }] }), 400, "batch dimension"),
            ("BYTES [1, 2]", json!({ "inputs": [{ "name": "a", "shape": [1, 2], "datatype": "BYTES", "data": [good.clone(), good.clone()] }] }), 400, "[N] or [N, 1]"),
            ("FP32 not finite", json!({ "inputs": [{ "name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": vec![1e39; 150528] }] }), 400, "FP32"),
            ("shared memory", json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "BYTES", "parameters": { "shared_memory_region": "r" } }] }), 400, "shared memory"),
        ];
        for (what, body, status, message) in cases {
            let r = infer(server.addr, &body).await;
            assert_eq!(r.status, status, "{what}: {}", r.text());
            assert!(r.error().contains(message), "{what}: {:?} lacks {message:?}", r.error());
        }
        let r = send(server.addr, Method::POST, INFER, &[("content-type", "application/json")], b"{not json".to_vec()).await;
        assert_eq!(r.status, 400);
        let r = send(server.addr, Method::POST, "/v2/models/nope/infer", &[], b"{\"inputs\": []}".to_vec()).await;
        assert_eq!(r.status, 404);
        let ok = infer(server.addr, &json!({ "inputs": [{ "name": "a", "shape": [1], "datatype": "BYTES", "data": [good] }] })).await;
        assert_eq!(ok.status, 200, "a good request after the bad ones");
    })
    .await;
}
