//! The KServe v2 infer body parser ([`imgclass_oip::parse_infer_request`]):
//! JSON, JSON + binary tensor data, and raw bodies. Complements the
//! codec's own property tests (crates/imgclass-oip/tests/fuzz.rs: random
//! bytes and flips of one synthetic request) with mutations of requests
//! carrying real photos and with structured requests checked against what
//! they must parse to.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use imgclass_oip::{InferBody, JsonBytes, OipError, ParseOptions, parse_infer_request};
use serde_json::{Value, json};

/// The limits of the cases.
pub const OPTIONS: ParseOptions = ParseOptions {
    max_elements: 1 << 20,
    max_bytes: 8 << 20,
    json_bytes: JsonBytes::Base64,
};

/// A body and its `Inference-Header-Content-Length` value, as one byte
/// string for the driver: the value (or none) on the first line.
pub fn pack(header: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    let mut out = match header {
        Some(h) => [b"H", h].concat(),
        None => b"-".to_vec(),
    };
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The inverse of [`pack`] (also for mutated packs).
pub fn unpack(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (line, body) = (&data[..nl], data.get(nl + 1..).unwrap_or(&[]));
    match line.first() {
        Some(b'H') => (Some(&line[1..]), body),
        _ => (None, body),
    }
}

/// The invariants of any body: every parsed tensor agrees with its shape
/// and the limits; a refusal is the typed error its cause calls for.
pub fn check(header: Option<&[u8]>, body: &[u8]) -> Result<InferBody, OipError> {
    let result = parse_infer_request(Bytes::copy_from_slice(body), header, &OPTIONS);
    let header_number = header
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .map(|t| t.parse::<usize>());
    match &result {
        Ok(InferBody::Request(r)) => {
            let mut total = 0usize;
            for i in &r.inputs {
                let t = &i.tensor;
                assert_eq!(t.element_count(), t.shape().iter().product::<usize>());
                assert!(t.element_count() <= OPTIONS.max_elements, "{}", i.name);
                total += t.binary_len();
            }
            assert!(
                total <= OPTIONS.max_bytes.max(body.len()),
                "{total} bytes of tensors"
            );
        }
        Ok(InferBody::Raw(data)) => {
            assert_eq!(
                header_number,
                Some(Ok(0)),
                "raw only for a header length of 0"
            );
            assert_eq!(data.len(), body.len());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match header_number {
                _ if header.is_none() => {}
                None | Some(Err(_)) => assert!(
                    matches!(e, OipError::HeaderLengthInvalid { .. }),
                    "a bad header length gives HeaderLengthInvalid, not {e:?}"
                ),
                Some(Ok(n)) if n > body.len() => assert!(
                    matches!(e, OipError::HeaderPastBody { .. }),
                    "a header length past the body gives HeaderPastBody, not {e:?}"
                ),
                Some(Ok(_)) => {}
            }
        }
    }
    result
}

/// Datatypes a generated input may declare (real, unsupported and junk).
const DATATYPES: [&str; 8] = [
    "FP32", "BYTES", "INT64", "UINT8", "BOOL", "FP16", "fp32", "TENSOR",
];

/// One generated input tensor.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    pub name: u8,
    pub datatype: u8,
    pub shape: Vec<i16>,
    pub data: Data,
}

/// Where and how an input's data travels.
#[derive(Arbitrary, Debug, Clone)]
pub enum Data {
    /// A flat JSON array of numbers.
    Numbers(Vec<f32>),
    /// JSON strings (base64 of images for BYTES).
    Strings(Vec<String>),
    /// A nested JSON array.
    Nested(Vec<Vec<f32>>),
    /// Binary data after the JSON, with a declared size that may lie.
    Binary {
        bytes: Vec<u8>,
        declared: Option<u16>,
    },
}

/// A generated request.
#[derive(Arbitrary, Debug, Clone)]
pub struct Request {
    pub id: Option<String>,
    pub inputs: Vec<Input>,
    pub classification: Option<u8>,
}

impl Request {
    /// The body and header value, as a client would send them.
    pub fn encode(&self) -> (Option<Vec<u8>>, Vec<u8>) {
        let mut tail = Vec::new();
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| {
                let mut v = json!({
                    "name": format!("in{}", i.name % 4),
                    "datatype": DATATYPES[i.datatype as usize % DATATYPES.len()],
                    "shape": i.shape,
                });
                match &i.data {
                    Data::Numbers(n) => v["data"] = json!(finite(n)),
                    Data::Strings(s) => v["data"] = json!(s),
                    Data::Nested(n) => {
                        v["data"] = Value::Array(n.iter().map(|r| json!(finite(r))).collect())
                    }
                    Data::Binary { bytes, declared } => {
                        let size = declared.map_or(bytes.len(), usize::from);
                        v["parameters"] = json!({ "binary_data_size": size });
                        tail.extend_from_slice(bytes);
                    }
                }
                v
            })
            .collect();
        let mut request = json!({ "inputs": inputs });
        if let Some(id) = &self.id {
            request["id"] = json!(id);
        }
        if let Some(k) = self.classification {
            request["outputs"] =
                json!([{ "name": "probabilities", "parameters": { "classification": k } }]);
        }
        let mut body = serde_json::to_vec(&request).expect("JSON");
        if tail.is_empty() {
            return (None, body);
        }
        let header = body.len().to_string().into_bytes();
        body.extend_from_slice(&tail);
        (Some(header), body)
    }

    /// Whether the request is one that must parse: distinct names, FP32
    /// with a flat array of numbers matching a non-negative shape.
    fn must_parse(&self) -> bool {
        let mut names = std::collections::HashSet::new();
        !self.inputs.is_empty()
            && self.classification.is_none()
            && self.inputs.iter().all(|i| {
                let count: i64 = i.shape.iter().map(|&d| i64::from(d)).product();
                names.insert(i.name % 4)
                    && DATATYPES[i.datatype as usize % DATATYPES.len()] == "FP32"
                    && !i.shape.is_empty()
                    && i.shape.iter().all(|&d| d > 0)
                    && matches!(&i.data, Data::Numbers(n)
                        if n.iter().all(|v| v.is_finite()) && n.len() as i64 == count)
            })
    }
}

fn finite(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect()
}

/// A structured case: `request` encoded, checked, and when it must parse,
/// parsed to exactly its values.
pub fn check_request(request: &Request) {
    let (header, body) = request.encode();
    let result = check(header.as_deref(), &body);
    if request.must_parse() {
        let Ok(InferBody::Request(r)) = &result else {
            panic!("{request:?} must parse, got {result:?}");
        };
        for (want, got) in request.inputs.iter().zip(&r.inputs) {
            let Data::Numbers(n) = &want.data else {
                unreachable!()
            };
            assert_eq!(got.tensor.to_f32().as_deref(), Some(&n[..]));
        }
    }
}

/// The `cargo fuzz` entry point: a structured request from the bytes.
pub fn fuzz_one(bytes: &[u8]) {
    if let Ok(request) = Request::arbitrary(&mut Unstructured::new(bytes)) {
        check_request(&request);
    }
}
