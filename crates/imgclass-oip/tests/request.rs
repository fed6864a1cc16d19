//! Infer requests built by hand the way tritonclient builds them, valid and
//! malformed, through the public API.

mod common;

use bytes::Bytes;
use common::*;
use imgclass_oip::*;
use serde_json::{Value, json};

fn opts() -> ParseOptions {
    ParseOptions::default()
}

fn parse(body: Bytes, header: Option<&[u8]>) -> Result<InferRequest, OipError> {
    match parse_infer_request(body, header, &opts())? {
        InferBody::Request(r) => Ok(r),
        InferBody::Raw(_) => panic!("not a raw request"),
    }
}

fn parse_json(v: Value) -> Result<InferRequest, OipError> {
    parse(Bytes::from(serde_json::to_vec(&v).unwrap()), None)
}

fn parse_parts(header: &Value, tails: &[&[u8]]) -> Result<InferRequest, OipError> {
    let (b, h) = body(header, tails);
    parse(b, h.as_deref())
}

#[test]
fn default_client_call_binary_bytes_in_binary_out() {
    let (b, h) = default_image_request(&[b"\x89PNG first", b"\xff\xd8 second"]);
    let r = parse(b, h.as_deref()).unwrap();
    assert_eq!(r.id.as_deref(), Some("req-1"));
    assert!(r.binary_data_output);
    let img = r.input("image").unwrap();
    assert_eq!(img.tensor.datatype(), DataType::Bytes);
    assert_eq!(img.tensor.shape(), &[2, 1]);
    let e = img.tensor.elements().unwrap();
    assert_eq!(&e[0][..], b"\x89PNG first");
    assert_eq!(&e[1][..], b"\xff\xd8 second");
    let specs = r.resolve_outputs(&["probabilities"]).unwrap();
    assert_eq!(
        specs,
        vec![OutputSpec {
            name: "probabilities".into(),
            format: OutputFormat::Binary,
            classification: None
        }]
    );
}

#[test]
fn binary_tails_go_to_binary_inputs_in_order() {
    let a = f32_le(&[1.0, 2.0, 3.0, 4.0]);
    let s = serialize_bytes(&[b"xyz"]);
    let header = json!({"inputs": [
        binary_input("a", "FP32", &[2, 2], a.len()),
        {"name": "j", "shape": [2], "datatype": "INT32", "data": [5, -6]},
        binary_input("s", "BYTES", &[1], s.len()),
        binary_input("u", "UINT8", &[3], 3),
    ]});
    let r = parse_parts(&header, &[&a, &s, &[7, 8, 9]]).unwrap();
    assert_eq!(r.inputs.len(), 4);
    assert_eq!(
        r.inputs[0].tensor.to_f32().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        &r.inputs[1].tensor.le_bytes().unwrap()[..],
        &[5, 0, 0, 0, 0xfa, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        &r.input("s").unwrap().tensor.elements().unwrap()[0][..],
        b"xyz"
    );
    assert_eq!(
        &r.input("u").unwrap().tensor.le_bytes().unwrap()[..],
        &[7, 8, 9]
    );
    assert!(!r.binary_data_output);
}

#[test]
fn json_bytes_follow_the_chosen_mode() {
    let req = json!({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                  "data": ["aGk=", {"b64": "aGk="}]}]});
    let r = parse_json(req.clone()).unwrap();
    let e = r.inputs[0].tensor.elements().unwrap();
    assert_eq!(&e[0][..], b"aGk=", "Triton: the string's own bytes");
    assert_eq!(&e[1][..], b"hi");
    let o = ParseOptions {
        json_bytes: JsonBytes::Base64,
        ..opts()
    };
    let InferBody::Request(r) =
        parse_infer_request(Bytes::from(req.to_string()), None, &o).unwrap()
    else {
        panic!()
    };
    let e = r.inputs[0].tensor.elements().unwrap();
    assert_eq!(&e[0][..], b"hi");
    assert_eq!(&e[1][..], b"hi");
}

#[test]
fn requested_outputs_and_their_formats() {
    let base = json!({"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]});
    let r = parse_json(json!({
        "inputs": [base],
        "outputs": [
            {"name": "p", "parameters": {"binary_data": false, "classification": 3}},
            {"name": "q"},
        ],
        "parameters": {"binary_data_output": true},
    }))
    .unwrap();
    let specs = r.resolve_outputs(&["p", "q"]).unwrap();
    assert_eq!(specs[0].format, OutputFormat::Json);
    assert_eq!(specs[0].classification, Some(3));
    assert_eq!(
        specs[1].format,
        OutputFormat::Binary,
        "binary_data_output applies"
    );
    let e = r.resolve_outputs(&["p"]).unwrap_err();
    assert!(
        matches!(e, OipError::UnknownOutput { ref output, .. } if output == "q"),
        "{e}"
    );

    // classification 0 is "not asked", as the client never sends it
    let r = parse_json(json!({"inputs": [base], "outputs": [
        {"name": "p", "parameters": {"classification": 0, "binary_data": true}}]}))
    .unwrap();
    let s = r.resolve_outputs(&["p"]).unwrap();
    assert_eq!(
        (s[0].classification, s[0].format),
        (None, OutputFormat::Binary)
    );

    for bad in [
        json!({"name": "p", "parameters": {"binary_data": "yes"}}),
        json!({"name": "p", "parameters": {"classification": -1}}),
        json!({"name": "p", "parameters": {"classification": 2.5}}),
    ] {
        let e = parse_json(json!({"inputs": [base], "outputs": [bad]})).unwrap_err();
        assert!(matches!(e, OipError::Parameter { .. }), "{e}");
    }
    let e = parse_json(json!({"inputs": [base], "outputs": [{"name": "p"}, {"name": "p"}]}))
        .unwrap_err();
    assert!(matches!(e, OipError::DuplicateOutput { .. }), "{e}");
}

#[test]
fn unused_parameters_are_accepted_and_kept() {
    let r = parse_json(json!({
        "id": "abc",
        "model_name": "ignored",
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0],
                    "parameters": {"custom": 1}}],
        "parameters": {"priority": 1, "timeout": 1000, "sequence_id": 7,
                        "sequence_start": true, "sequence_end": false, "mine": "x"},
    }))
    .unwrap();
    assert_eq!(r.id.as_deref(), Some("abc"));
    assert_eq!(r.parameters["priority"], 1);
    assert_eq!(r.parameters["mine"], "x");

    let e = parse_json(json!({"inputs": [], "parameters": {"triton_enable": true}})).unwrap_err();
    assert!(matches!(e, OipError::ReservedParameter { .. }), "{e}");
    let e = parse_json(json!({"inputs": [], "parameters": {"binary_data_output": 1}})).unwrap_err();
    assert!(matches!(e, OipError::Parameter { .. }), "{e}");
    let r = parse_json(json!({"inputs": [], "id": ""})).unwrap();
    assert_eq!(r.id, None, "perf_analyzer's empty id is no id");
    let e = parse_json(json!({"inputs": [], "id": 5})).unwrap_err();
    assert!(matches!(e, OipError::Json(_)), "{e}");
}

#[test]
fn header_length_values() {
    let (b, h) = default_image_request(&[b"img"]);
    let n = String::from_utf8(h.unwrap()).unwrap();
    assert!(parse(b.clone(), Some(format!(" {n} ").as_bytes())).is_ok());
    for bad in ["abc", "-1", "12abc", "", "+5", "99999999999999999999999"] {
        let e = parse(b.clone(), Some(bad.as_bytes())).unwrap_err();
        assert!(
            matches!(e, OipError::HeaderLengthInvalid { .. }),
            "{bad}: {e}"
        );
    }
    let e = parse(b.clone(), Some(b"\xff")).unwrap_err();
    assert!(matches!(e, OipError::HeaderLengthInvalid { .. }), "{e}");
    let past = (b.len() + 1).to_string();
    let e = parse(b.clone(), Some(past.as_bytes())).unwrap_err();
    assert!(matches!(e, OipError::HeaderPastBody { .. }), "{e}");
    assert!(
        e.to_string().contains("Inference-Header-Content-Length"),
        "{e}"
    );
    // a header length that cuts the JSON short
    let short = (n.parse::<usize>().unwrap() - 3).to_string();
    let e = parse(b.clone(), Some(short.as_bytes())).unwrap_err();
    assert!(matches!(e, OipError::Json(_)), "{e}");
    // a header length that runs into the binary data
    let long = (n.parse::<usize>().unwrap() + 2).to_string();
    let e = parse(b, Some(long.as_bytes())).unwrap_err();
    assert!(matches!(e, OipError::Json(_)), "{e}");
}

#[test]
fn binary_sizes_must_add_up() {
    let a = f32_le(&[1.0, 2.0, 3.0]);
    // binary_data_size disagrees with shape × datatype
    let e = parse_parts(
        &json!({"inputs": [binary_input("a", "FP32", &[2, 2], a.len())]}),
        &[&a],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            OipError::BinarySize {
                expected: 16,
                declared: 12,
                ..
            }
        ),
        "{e}"
    );
    // declares more than the body has
    let e = parse_parts(
        &json!({"inputs": [binary_input("a", "FP32", &[4], 16)]}),
        &[&a],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            OipError::BinaryPastBody {
                declared: 16,
                available: 12,
                ..
            }
        ),
        "{e}"
    );
    // bytes left over after every input
    let e = parse_parts(
        &json!({"inputs": [binary_input("a", "FP32", &[2], 8)]}),
        &[&a],
    )
    .unwrap_err();
    assert!(matches!(e, OipError::TrailingBinary { extra: 4 }), "{e}");
    // binary data but no header (the whole body is then JSON)
    let e = parse_json(json!({"inputs": [binary_input("a", "FP32", &[3], 12)]})).unwrap_err();
    assert!(matches!(e, OipError::BinaryWithoutHeader { .. }), "{e}");
    // an empty BYTES tensor needs no header
    let r = parse_json(json!({"inputs": [binary_input("s", "BYTES", &[0], 0)]})).unwrap();
    assert_eq!(r.inputs[0].tensor.element_count(), 0);
    // a header with no binary inputs and binary data after the JSON
    let e = parse_parts(
        &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        &[&a],
    )
    .unwrap_err();
    assert!(matches!(e, OipError::TrailingBinary { extra: 12 }), "{e}");
    // a BYTES element whose length runs past its tensor
    let mut s = serialize_bytes(&[b"abcd"]);
    s[0] = 9;
    let e = parse_parts(
        &json!({"inputs": [binary_input("s", "BYTES", &[1], s.len())]}),
        &[&s],
    )
    .unwrap_err();
    assert!(matches!(e, OipError::BytesElement { index: 0, .. }), "{e}");
    // more BYTES elements declared than the data holds
    let s = serialize_bytes(&[b"abcd"]);
    let e = parse_parts(
        &json!({"inputs": [binary_input("s", "BYTES", &[2], s.len())]}),
        &[&s],
    )
    .unwrap_err();
    assert!(matches!(e, OipError::BytesElement { .. }), "{e}");
}

#[test]
fn data_source_must_be_exactly_one() {
    let e = parse_json(json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}))
        .unwrap_err();
    assert!(matches!(e, OipError::DataSource { .. }), "{e}");
    let e = parse_parts(
        &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
                             "parameters": {"binary_data_size": 4}}]}),
        &[&[0; 4]],
    )
    .unwrap_err();
    assert!(matches!(e, OipError::DataSource { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
        "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::UnsupportedSharedMemory { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "outputs": [{"name": "p", "parameters": {"shared_memory_region": "r"}}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::UnsupportedSharedMemory { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
        "parameters": {"binary_data_size": "4"}}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::Parameter { .. }), "{e}");
}

#[test]
fn datatypes_and_shapes_are_checked() {
    for dt in ["FLOAT", "fp32", "STRING", ""] {
        let e = parse_json(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": dt, "data": [1]}]}),
        )
        .unwrap_err();
        assert!(matches!(e, OipError::UnknownDatatype { .. }), "{dt}: {e}");
    }
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [2, -1], "datatype": "FP32", "data": [1, 2]}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::NegativeDimension { .. }), "{e}");
    let big = i64::MAX;
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [big, big], "datatype": "FP32", "data": []}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::ShapeOverflow { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::ElementCount { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, "a"]}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::JsonValue { index: 1, .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::JsonUnsupported { .. }), "{e}");
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [1.5], "datatype": "FP32", "data": [1]}]}),
    )
    .unwrap_err();
    assert!(matches!(e, OipError::Json(_)), "{e}");
    let e = parse_json(json!({"inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}))
    .unwrap_err();
    assert!(matches!(e, OipError::DuplicateInput { .. }), "{e}");
    // binary FP16 is fine
    let r = parse_parts(
        &json!({"inputs": [binary_input("h", "FP16", &[2], 4)]}),
        &[&[0, 0x3c, 0, 0x40]],
    )
    .unwrap();
    assert_eq!(r.inputs[0].tensor.datatype(), DataType::Fp16);
}

#[test]
fn limits_are_enforced_before_reading_data() {
    let small = ParseOptions {
        max_elements: 4,
        max_bytes: 16,
        json_bytes: JsonBytes::Utf8,
    };
    // a declared shape over the element limit fails without any data
    let header = json!({"inputs": [binary_input("a", "FP32", &[1_000_000_000], 4_000_000_000)]});
    let (b, h) = body(&header, &[&[0; 4]]);
    let e = parse_infer_request(b, h.as_deref(), &small).unwrap_err();
    assert!(e.is_too_large(), "{e}");
    // total tensor bytes over the limit
    let a = f32_le(&[1.0; 4]);
    let header = json!({"inputs": [binary_input("a", "FP32", &[4], 16), binary_input("b", "FP32", &[1], 4)]});
    let (b, h) = body(&header, &[&a, &a[..4]]);
    let e = parse_infer_request(b, h.as_deref(), &small).unwrap_err();
    assert!(
        matches!(
            e,
            OipError::TooLarge {
                size: 20,
                limit: 16,
                ..
            }
        ),
        "{e}"
    );
    // a declared binary_data_size of 2^63 is refused, not allocated
    let header = json!({"inputs": [binary_input("a", "UINT8", &[4], 1usize << 63)]});
    let (b, h) = body(&header, &[&[1, 2, 3, 4]]);
    let e = parse_infer_request(b, h.as_deref(), &opts()).unwrap_err();
    assert!(matches!(e, OipError::BinaryPastBody { .. }), "{e}");
}

#[test]
fn raw_bodies() {
    let raw = Bytes::from_static(b"\x89PNG raw image");
    let (b, _) = (raw.clone(), ());
    let InferBody::Raw(data) = parse_infer_request(b, Some(b"0"), &opts()).unwrap() else {
        panic!("raw")
    };
    let image = RawInput {
        name: "image",
        datatype: DataType::Bytes,
        shape: &[1, 1],
    };
    let r = InferRequest::from_raw(data.clone(), image, &opts()).unwrap();
    assert!(
        r.binary_data_output,
        "Triton answers raw requests in binary"
    );
    assert_eq!(r.inputs[0].tensor.shape(), &[1, 1]);
    assert_eq!(r.inputs[0].tensor.elements().unwrap()[0], raw);

    let fp = RawInput {
        name: "x",
        datatype: DataType::Fp32,
        shape: &[1, -1],
    };
    let r = InferRequest::from_raw(Bytes::from(f32_le(&[1.0, 2.0, 3.0])), fp, &opts()).unwrap();
    assert_eq!(r.inputs[0].tensor.shape(), &[1, 3]);
    let e = InferRequest::from_raw(Bytes::from_static(&[0; 7]), fp, &opts()).unwrap_err();
    assert!(matches!(e, OipError::Raw { .. }), "{e}");
    let fixed = RawInput {
        shape: &[1, 3],
        ..fp
    };
    assert!(InferRequest::from_raw(Bytes::from(f32_le(&[1.0, 2.0, 3.0])), fixed, &opts()).is_ok());
    assert!(InferRequest::from_raw(Bytes::from(f32_le(&[1.0, 2.0])), fixed, &opts()).is_err());
    for shape in [&[-1, -1][..], &[1, -2], &[-1]] {
        let e = InferRequest::from_raw(
            Bytes::from_static(&[0; 8]),
            RawInput { shape, ..image },
            &opts(),
        );
        assert!(matches!(e, Err(OipError::Raw { .. })), "{shape:?}");
    }
    let e = InferRequest::from_raw(
        Bytes::from_static(&[0; 8]),
        RawInput {
            shape: &[2],
            ..image
        },
        &opts(),
    );
    assert!(matches!(e, Err(OipError::Raw { .. })));
    let tiny = ParseOptions {
        max_bytes: 4,
        ..opts()
    };
    let e = InferRequest::from_raw(Bytes::from_static(&[0; 8]), image, &tiny).unwrap_err();
    assert!(e.is_too_large());
}

/// A response read back the way tritonclient's `InferResult` reads it.
#[test]
fn responses_read_back_like_the_client() {
    let (b, h) = default_image_request(&[b"one"]);
    let req = parse(b, h.as_deref()).unwrap();
    let specs = req.resolve_outputs(&["probabilities"]).unwrap();
    let scores = [0.1f32, 0.6, 0.3];
    let response = InferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        id: req.id.clone(),
        outputs: specs
            .into_iter()
            .map(|s| InferOutput {
                name: s.name,
                tensor: Tensor::from_f32(vec![1, 3], &scores).unwrap(),
                format: s.format,
            })
            .collect(),
    };
    let enc = response.encode();
    let n = enc.header_length.expect("binary output");
    let head: Value = serde_json::from_slice(&enc.body[..n]).unwrap();
    assert_eq!(head["id"], "req-1");
    let out = &head["outputs"][0];
    assert_eq!(out["datatype"], "FP32");
    assert_eq!(out["shape"], json!([1, 3]));
    let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
    assert_eq!(&enc.body[n..n + size], &f32_le(&scores)[..]);
    assert_eq!(enc.body.len(), n + size);
}

#[test]
fn errors_become_protocol_json() {
    let e = parse_json(
        json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1]}]}),
    )
    .unwrap_err();
    let v = e.to_json();
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("\"x\"") && msg.contains("needs 3 elements"),
        "{msg}"
    );
    assert!(!e.is_too_large());
    let e = parse(Bytes::from_static(b"not json"), None).unwrap_err();
    assert!(
        e.to_string().starts_with("invalid inference request JSON"),
        "{e}"
    );
}
