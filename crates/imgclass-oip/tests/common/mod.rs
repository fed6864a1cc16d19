//! Requests built the way tritonclient 2.73's `_get_inference_request` and
//! `InferInput.set_data_from_numpy` build them.

#![allow(dead_code)]

use bytes::Bytes;
use serde_json::{Value, json};

/// BYTES elements in binary form (tritonclient's `serialize_byte_tensor`).
pub fn serialize_bytes(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in items {
        out.extend_from_slice(&(i.len() as u32).to_le_bytes());
        out.extend_from_slice(i);
    }
    out
}

pub fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A binary input's JSON, as the client writes it.
pub fn binary_input(name: &str, datatype: &str, shape: &[i64], size: usize) -> Value {
    json!({"name": name, "shape": shape, "datatype": datatype,
           "parameters": {"binary_data_size": size}})
}

/// The body and the Inference-Header-Content-Length value of a request
/// whose JSON is `header` followed by `tails`.
pub fn body(header: &Value, tails: &[&[u8]]) -> (Bytes, Option<Vec<u8>>) {
    let json = serde_json::to_vec(header).unwrap();
    if tails.is_empty() {
        return (Bytes::from(json), None);
    }
    let n = json.len();
    let mut b = json;
    for t in tails {
        b.extend_from_slice(t);
    }
    (Bytes::from(b), Some(n.to_string().into_bytes()))
}

/// A valid request with one binary BYTES input of `images` and no outputs
/// named (so `binary_data_output: true`): the client's default infer call.
pub fn default_image_request(images: &[&[u8]]) -> (Bytes, Option<Vec<u8>>) {
    let data = serialize_bytes(images);
    let header = json!({
        "id": "req-1",
        "inputs": [binary_input("image", "BYTES", &[images.len() as i64, 1], data.len())],
        "parameters": {"binary_data_output": true},
    });
    body(&header, &[&data])
}
