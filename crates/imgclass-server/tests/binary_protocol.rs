//! The binary tensor data extension built by hand over real sockets, the
//! way tritonclient sends it: JSON, then each input's bytes
//! (`Inference-Header-Content-Length` gives the JSON's length), BYTES
//! elements as a 4-byte little-endian length then the bytes; binary and
//! JSON outputs; a raw body; and every malformed case a 400 (413, 404,
//! 4xx for a bad image) with `{"error": ...}`, the server serving on.

mod common;

use std::time::Duration;

use common::*;
use hyper::Method;
use imgclass_core::{DecodeLimits, Preprocessor};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INFER: &str = "/v2/models/efficientnet-lite0/infer";
const IHCL: &str = "inference-header-content-length";

/// A BYTES element in binary form.
fn element(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// JSON + tail, and the header giving the JSON's length.
async fn binary(addr: std::net::SocketAddr, path: &str, json: &Value, tail: &[u8]) -> Resp {
    let mut body = serde_json::to_vec(json).unwrap();
    let n = body.len().to_string();
    body.extend_from_slice(tail);
    send(addr, Method::POST, path, &[(IHCL, &n)], body).await
}

/// The JSON part of a response and its binary tail.
fn split(r: &Resp) -> (Value, Vec<u8>) {
    let n = match r.header(IHCL) {
        Some(v) => v.parse::<usize>().unwrap(),
        None => r.body.len(),
    };
    (
        serde_json::from_slice(&r.body[..n]).unwrap(),
        r.body[n..].to_vec(),
    )
}

fn f32s(le: &[u8]) -> Vec<f32> {
    le.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

fn image_input(size: usize, shape: Value) -> Value {
    json!({ "name": "image", "shape": shape, "datatype": "BYTES",
            "parameters": { "binary_data_size": size } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_requests_and_responses_as_tritonclient_sends_them() {
    let server = TestServer::start(ready_state(options())).await;
    let addr = server.addr;
    bounded(120, async {
        let coffee = imgclass_testkit::photo_bytes("coffee.png");
        let chelsea = imgclass_testkit::photo_bytes("chelsea.png");
        let one = element(&coffee);

        // BYTES in, binary out, no Content-Type, unused parameters ignored, id echoed.
        let request = json!({
            "id": "bin-1",
            "parameters": { "priority": 1, "timeout": 5_000_000, "sequence_id": 7, "sequence_start": true },
            "inputs": [image_input(one.len(), json!([1, 1]))],
            "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }]
        });
        let r = binary(addr, INFER, &request, &one).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let (head, tail) = split(&r);
        assert_eq!(head["id"], "bin-1");
        let out = &head["outputs"][0];
        assert_eq!(out["datatype"], "FP32");
        assert_eq!(out["shape"], json!([1, 1000]));
        assert_eq!(out["parameters"]["binary_data_size"], 4000);
        assert!(out.get("data").is_none());
        let binary_row = f32s(&tail);
        assert_eq!(binary_row.len(), 1000);
        assert!((binary_row.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        let top = argmax(&binary_row);
        assert!(expected("coffee.png").contains(&top), "{top}");

        // The same image as base64 JSON gives the same probabilities, in JSON.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&coffee);
        let r = send(addr, Method::POST, INFER, &[], serde_json::to_vec(&json!({
            "inputs": [{ "name": "image", "shape": [1], "datatype": "BYTES", "data": [b64] }] })).unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header(IHCL).is_none());
        let json_row: Vec<f32> = r.json()["outputs"][0]["data"].as_array().unwrap().iter()
            .map(|x| x.as_f64().unwrap() as f32).collect();
        let diff = json_row.iter().zip(&binary_row).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-6, "binary and JSON outputs agree ({diff})");

        // Two images, outputs not named, binary_data_output: every output binary.
        let mut tail = one.clone();
        tail.extend(element(&chelsea));
        let request = json!({
            "inputs": [image_input(tail.len(), json!([2, 1]))],
            "parameters": { "binary_data_output": true }
        });
        let r = binary(addr, INFER, &request, &tail).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (head, data) = split(&r);
        assert_eq!(head["outputs"][0]["name"], "probabilities");
        assert_eq!(head["outputs"][0]["shape"], json!([2, 1000]));
        let p = f32s(&data);
        assert!(expected("chelsea.png").contains(&argmax(&p[1000..])));

        // Binary in, JSON out (binary_data: false).
        let request = json!({
            "inputs": [image_input(one.len(), json!([1]))],
            "outputs": [{ "name": "probabilities", "parameters": { "binary_data": false } }]
        });
        let r = binary(addr, INFER, &request, &one).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header(IHCL).is_none());
        assert_eq!(r.json()["outputs"][0]["data"].as_array().unwrap().len(), 1000);

        // Classification in binary: length-prefixed "<score>:<index>:<label>".
        let request = json!({
            "inputs": [image_input(one.len(), json!([1, 1]))],
            "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true, "classification": 2 } }]
        });
        let r = binary(addr, INFER, &request, &one).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (head, data) = split(&r);
        assert_eq!(head["outputs"][0]["datatype"], "BYTES");
        assert_eq!(head["outputs"][0]["shape"], json!([1, 2]));
        let len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        let first = std::str::from_utf8(&data[4..4 + len]).unwrap();
        let index: usize = first.split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!(index, top, "{first}");
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], data.len());

        // A raw body: Inference-Header-Content-Length: 0, the body one image.
        let r = send(addr, Method::POST, INFER, &[(IHCL, "0")], coffee.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (head, data) = split(&r);
        assert_eq!(head["outputs"][0]["shape"], json!([1, 1000]));
        assert_eq!(argmax(&f32s(&data)), top);

        // FP32 binary: the photo preprocessed here, as little-endian floats.
        let (model, _) = real_model();
        let pre = Preprocessor::new(model.config.input.clone(), DecodeLimits::default());
        let tensor = pre.preprocess(&coffee).unwrap().tensor;
        let le: Vec<u8> = tensor.iter().flat_map(|x| x.to_le_bytes()).collect();
        let request = json!({
            "inputs": [{ "name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                         "parameters": { "binary_data_size": le.len() } }],
            "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }]
        });
        let r = binary(addr, "/v2/models/efficientnet-lite0/versions/1/infer", &request, &le).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let row = f32s(&split(&r).1);
        let diff = row.iter().zip(&binary_row).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "FP32 and BYTES agree ({diff})");

        // Statistics moved with every request above (7 answered requests,
        // 8 images; the warm-up is not counted).
        let s = get(addr, "/v2/models/efficientnet-lite0/stats").await.json();
        let m = &s["model_stats"][0];
        assert_eq!(m["inference_stats"]["success"]["count"], 7, "{m}");
        assert_eq!(m["inference_stats"]["fail"]["count"], 0, "{m}");
        assert_eq!(m["inference_count"], 8, "{m}");
        assert!(m["execution_count"].as_u64().unwrap() >= 6, "{m}");
        // one each per answered request, so perf_analyzer finds them equal
        for stage in ["queue", "compute_input", "compute_infer", "compute_output"] {
            assert_eq!(m["inference_stats"][stage]["count"], 7, "{stage}: {m}");
        }
        assert!(m["inference_stats"]["compute_infer"]["ns"].as_u64().unwrap() > 0);
        assert!(m["last_inference"].as_u64().unwrap() > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_binary_requests_are_json_errors() {
    let server = TestServer::start(ready_state(options())).await;
    let addr = server.addr;
    bounded(120, async {
        let coffee = imgclass_testkit::photo_bytes("coffee.png");
        let one = element(&coffee);
        let fp32 = |size: usize| json!({ "inputs": [{ "name": "input", "shape": [1, 3, 224, 224],
            "datatype": "FP32", "parameters": { "binary_data_size": size } }] });
        let truncated = element(&coffee[..coffee.len() / 3]);
        let cases: Vec<(&str, Value, Vec<u8>, u16, &str)> = vec![
            ("binary_data_size past the body", json!({ "inputs": [image_input(one.len() + 10, json!([1]))] }),
                one.clone(), 400, "only"),
            ("bytes left over", json!({ "inputs": [image_input(one.len(), json!([1]))] }),
                [&one[..], &[0u8; 8]].concat(), 400, "8 bytes of binary data follow"),
            ("BYTES element shorter than its size", json!({ "inputs": [image_input(one.len() - 8, json!([1]))] }),
                one[..one.len() - 8].to_vec(), 400, "only"),
            ("BYTES length prefix past its tensor", json!({ "inputs": [image_input(8, json!([1]))] }),
                one[..8].to_vec(), 400, "BYTES element 0"),
            ("BYTES count below the shape", json!({ "inputs": [image_input(one.len(), json!([2]))] }),
                one.clone(), 400, "BYTES element 1"),
            ("FP32 size does not match its shape", fp32(12), vec![0; 12], 400, "needs 602112 bytes"),
            ("wrong datatype", json!({ "inputs": [{ "name": "x", "shape": [1], "datatype": "INT64",
                "parameters": { "binary_data_size": 8 } }] }), vec![0; 8], 400, "unsupported datatype INT64"),
            ("unknown datatype", json!({ "inputs": [{ "name": "x", "shape": [1], "datatype": "STRING",
                "parameters": { "binary_data_size": 8 } }] }), vec![0; 8], 400, "unknown datatype"),
            ("data and binary_data_size", json!({ "inputs": [{ "name": "image", "shape": [1], "datatype": "BYTES",
                "data": ["aGk="], "parameters": { "binary_data_size": one.len() } }] }), one.clone(), 400, "exactly one of"),
            ("negative dimension", json!({ "inputs": [image_input(one.len(), json!([-1]))] }), one.clone(), 400, "negative"),
            ("unknown output", json!({ "inputs": [image_input(one.len(), json!([1]))], "outputs": [{ "name": "logits" }] }),
                one.clone(), 400, "unknown output"),
            ("binary_data not a bool", json!({ "inputs": [image_input(one.len(), json!([1]))],
                "outputs": [{ "name": "probabilities", "parameters": { "binary_data": "yes" } }] }), one.clone(), 400, "true or false"),
            ("corrupt image", json!({ "inputs": [image_input(truncated.len(), json!([1, 1]))] }),
                truncated.clone(), 422, "corrupt"),
        ];
        for (what, json, tail, status, message) in cases {
            let r = binary(addr, INFER, &json, &tail).await;
            assert_eq!(r.status, status, "{what}: {}", r.text());
            assert!(r.error().contains(message), "{what}: {:?} lacks {message:?}", r.error());
        }

        // The header: past the body, not a number.
        let body = serde_json::to_vec(&json!({ "inputs": [image_input(one.len(), json!([1]))] })).unwrap();
        for (value, message) in [("100000", "only"), ("12abc", "whole number"), ("-1", "whole number")] {
            let r = send(addr, Method::POST, INFER, &[(IHCL, value)], body.clone()).await;
            assert_eq!(r.status, 400, "{value}: {}", r.text());
            assert!(r.error().contains(message), "{value}: {}", r.error());
        }
        // Binary data without the header.
        let mut no_header = body.clone();
        no_header.extend(&one);
        let r = send(addr, Method::POST, INFER, &[], no_header).await;
        assert_eq!(r.status, 400, "{}", r.text());
        // An empty raw body.
        let r = send(addr, Method::POST, INFER, &[(IHCL, "0")], Vec::new()).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(!r.error().is_empty());
        // A raw body that is not an image.
        let r = send(addr, Method::POST, INFER, &[(IHCL, "0")], b"not an image".to_vec()).await;
        assert_eq!(r.status, 415, "{}", r.text());
        // An unknown model, with a binary body.
        let r = binary(addr, "/v2/models/nope/infer", &json!({ "inputs": [image_input(one.len(), json!([1]))] }), &one).await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.error().contains("nope"));
        let r = binary(addr, "/v2/models/efficientnet-lite0/versions/7/infer", &json!({ "inputs": [image_input(one.len(), json!([1]))] }), &one).await;
        assert_eq!(r.status, 404, "{}", r.text());

        // Still serving, and the failures were counted.
        let r = binary(addr, INFER, &json!({ "inputs": [image_input(one.len(), json!([1]))] }), &one).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let s = get(addr, "/v2/models/efficientnet-lite0/stats").await.json();
        // the corrupt image, the empty raw body and the raw text (the others never reached the model)
        assert_eq!(s["model_stats"][0]["inference_stats"]["fail"]["count"], 3, "{s}");
    })
    .await;
}

/// An unknown model is answered before the body is read: a client that
/// waits on `Expect: 100-continue` gets the 404 without sending a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_a_404_before_the_body() {
    let server = TestServer::start(ready_state(options())).await;
    bounded(30, async {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(
            b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\
              Inference-Header-Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer without the body")
                .unwrap();
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert!(!head.contains("100 Continue"), "{head}");
    })
    .await;
}
