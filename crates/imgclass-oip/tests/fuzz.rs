//! Property tests: whatever bytes and header value arrive, parsing returns
//! a request or a typed error, never panics; a valid request survives any
//! truncation, byte flip or header change as one or the other; and a
//! request that parses has tensors agreeing with their shapes.

mod common;

use bytes::Bytes;
use common::*;
use imgclass_oip::*;
use proptest::prelude::*;
use serde_json::json;

fn opts() -> ParseOptions {
    ParseOptions {
        max_elements: 1 << 16,
        max_bytes: 1 << 20,
        json_bytes: JsonBytes::Base64,
    }
}

/// Checks the invariants of a successful parse.
fn check(body: Bytes, header: Option<&[u8]>) {
    let body_len = body.len();
    match parse_infer_request(body, header, &opts()) {
        Ok(InferBody::Request(r)) => {
            for i in &r.inputs {
                let t = &i.tensor;
                assert_eq!(
                    t.element_count(),
                    t.shape().iter().product::<usize>(),
                    "{}",
                    i.name
                );
            }
            let _ = r.resolve_outputs(&["probabilities"]);
        }
        Ok(InferBody::Raw(data)) => {
            assert_eq!(data.len(), body_len);
            let _ = InferRequest::from_raw(
                data,
                RawInput {
                    name: "x",
                    datatype: DataType::Fp32,
                    shape: &[1, -1],
                },
                &opts(),
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A valid request mixing every input form the client produces.
fn valid_request() -> (Vec<u8>, usize) {
    let img = serialize_bytes(&[b"\x89PNG\r\n\x1a\nfake", b"\xff\xd8\xff"]);
    let fp = f32_le(&[0.5, -1.0, 2.0, 3.5]);
    let header = json!({
        "id": "f",
        "inputs": [
            binary_input("image", "BYTES", &[2, 1], img.len()),
            {"name": "j", "shape": [2], "datatype": "BYTES", "data": ["aGk=", {"b64": "aGk="}]},
            binary_input("input", "FP32", &[1, 4], fp.len()),
            {"name": "k", "shape": [2, 2], "datatype": "INT16", "data": [[1, 2], [3, -4]]},
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true, "classification": 2}}],
        "parameters": {"priority": 1},
    });
    let (b, h) = body(&header, &[&img, &fp]);
    let n: usize = String::from_utf8(h.unwrap()).unwrap().parse().unwrap();
    (b.to_vec(), n)
}

#[test]
fn the_valid_request_parses() {
    let (b, n) = valid_request();
    let InferBody::Request(r) =
        parse_infer_request(Bytes::from(b), Some(n.to_string().as_bytes()), &opts()).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.inputs.len(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512),
                       header in proptest::option::of(0usize..600)) {
        let h = header.map(|n| n.to_string());
        check(Bytes::from(body), h.as_deref().map(str::as_bytes));
    }

    #[test]
    fn mutated_valid_requests(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        header_delta in -8i64..8,
    ) {
        let (mut b, n) = valid_request();
        for (at, byte) in &flips {
            let i = at.index(b.len());
            b[i] = *byte;
        }
        if truncate {
            b.truncate(cut.index(b.len() + 1));
        }
        let h = (n as i64 + header_delta).to_string();
        check(Bytes::from(b), Some(h.as_bytes()));
    }

    #[test]
    fn arbitrary_json_shapes_and_sizes(
        dims in proptest::collection::vec(-2i64..1_000_000_000_000, 0..4),
        size in proptest::option::of(0u64..u64::MAX),
        datatype in prop::sample::select(vec!["BYTES", "FP32", "UINT8", "BOOL", "FP16", "INT64", "X"]),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut input = json!({"name": "x", "shape": dims, "datatype": datatype});
        if let Some(s) = size {
            input["parameters"] = json!({"binary_data_size": s});
        } else {
            input["data"] = json!([1, 2, 3]);
        }
        let (b, h) = body(&json!({"inputs": [input]}), &[&tail]);
        check(b.clone(), h.as_deref());
        check(b, None);
    }
}
