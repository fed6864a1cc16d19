//! Building an infer response body: JSON outputs, binary outputs after the
//! JSON, and classification outputs.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;

use crate::json_data::{JsonData, has_json_form};
use crate::tensor::Tensor;
use crate::{DataType, OipError};

/// The HTTP header giving the JSON part's length when binary data follows.
pub const INFERENCE_HEADER_CONTENT_LENGTH: &str = "Inference-Header-Content-Length";

/// How an output travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// In the JSON as `data`.
    Json,
    /// After the JSON, its size in `parameters.binary_data_size`.
    Binary,
}

/// One output of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferOutput {
    pub name: String,
    pub tensor: Tensor,
    /// FP16/BF16 have no JSON form and are always sent as binary.
    pub format: OutputFormat,
}

/// An inference response, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    /// The request's `id`, echoed.
    pub id: Option<String>,
    pub outputs: Vec<InferOutput>,
}

/// An encoded response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResponse {
    pub body: Bytes,
    /// The JSON part's length, for [`INFERENCE_HEADER_CONTENT_LENGTH`], when
    /// binary output data follows it; `None` for a JSON-only body.
    pub header_length: Option<usize>,
}

impl EncodedResponse {
    /// `application/octet-stream` with binary data (as Triton), else `application/json`.
    pub fn content_type(&self) -> &'static str {
        if self.header_length.is_some() {
            "application/octet-stream"
        } else {
            "application/json"
        }
    }
}

#[derive(Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<WireOutput<'a>>,
}

#[derive(Serialize)]
struct WireOutput<'a> {
    name: &'a str,
    datatype: DataType,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

impl InferOutput {
    fn is_binary(&self) -> bool {
        self.format == OutputFormat::Binary || !has_json_form(self.tensor.datatype())
    }
}

impl InferResponse {
    /// Encodes the response: the JSON object, then the binary outputs'
    /// data in output order.
    pub fn encode(&self) -> EncodedResponse {
        let outputs = self
            .outputs
            .iter()
            .map(|o| {
                let binary = o.is_binary();
                WireOutput {
                    name: &o.name,
                    datatype: o.tensor.datatype(),
                    shape: o.tensor.shape(),
                    parameters: binary.then(|| BinaryParams {
                        binary_data_size: o.tensor.binary_len(),
                    }),
                    data: (!binary).then_some(JsonData(&o.tensor)),
                }
            })
            .collect();
        let wire = WireResponse {
            model_name: &self.model_name,
            model_version: &self.model_version,
            id: self.id.as_deref(),
            outputs,
        };
        let mut body = serde_json::to_vec(&wire).expect("outputs with a JSON form serialize");
        let header = body.len();
        let mut any_binary = false;
        for o in self.outputs.iter().filter(|o| o.is_binary()) {
            any_binary = true;
            o.tensor.write_binary(&mut body);
        }
        EncodedResponse {
            body: Bytes::from(body),
            header_length: any_binary.then_some(header),
        }
    }
}

/// Triton's classification extension for a `[batch, classes]` score
/// tensor: a BYTES `[batch, min(k, classes)]` tensor of
/// `"<score>:<index>[:<label>]"`, highest score first, the score written
/// as C's `%f` (six decimals) as Triton does. Equal scores keep index
/// order; NaN ranks last.
pub fn classification<'l>(
    scores: &[f32],
    classes: usize,
    k: usize,
    label: impl Fn(usize) -> Option<Cow<'l, str>>,
) -> Result<Tensor, OipError> {
    if classes == 0 || k == 0 || !scores.len().is_multiple_of(classes) {
        return Err(OipError::Tensor {
            tensor: "classification".into(),
            reason: format!(
                "{} scores are not rows of {classes} classes, or top-{k} was asked",
                scores.len()
            ),
        });
    }
    let take = k.min(classes);
    let batch = scores.len() / classes;
    let mut elements = Vec::with_capacity(batch * take);
    let mut order: Vec<usize> = Vec::with_capacity(classes);
    for row in scores.chunks_exact(classes) {
        order.clear();
        order.extend(0..classes);
        // Descending; NaN last; ties by index (a stable sort keeps them).
        order.sort_by(|&a, &b| {
            let (x, y) = (row[a], row[b]);
            y.partial_cmp(&x)
                .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
        });
        for &i in &order[..take] {
            let text = match label(i) {
                Some(l) => format!("{:.6}:{i}:{l}", row[i]),
                None => format!("{:.6}:{i}", row[i]),
            };
            elements.push(Bytes::from(text));
        }
    }
    Tensor::from_bytes(vec![batch, take], elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn split(e: &EncodedResponse) -> (Value, &[u8]) {
        let n = e.header_length.unwrap_or(e.body.len());
        (serde_json::from_slice(&e.body[..n]).unwrap(), &e.body[n..])
    }

    fn response(outputs: Vec<InferOutput>) -> InferResponse {
        InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("42".into()),
            outputs,
        }
    }

    #[test]
    fn json_response() {
        let t = Tensor::from_f32(vec![1, 2], &[0.25, 0.75]).unwrap();
        let e = response(vec![InferOutput {
            name: "p".into(),
            tensor: t,
            format: OutputFormat::Json,
        }])
        .encode();
        assert_eq!(e.header_length, None);
        assert_eq!(e.content_type(), "application/json");
        let (v, tail) = split(&e);
        assert!(tail.is_empty());
        assert_eq!(
            v,
            json!({"model_name": "m", "model_version": "1", "id": "42", "outputs": [
                {"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}]})
        );
    }

    #[test]
    fn binary_outputs_follow_the_json_in_order() {
        let a = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
        let b = Tensor::from_bytes(vec![1], vec![Bytes::from_static(b"xy")]).unwrap();
        let c = Tensor::from_f32(vec![1], &[3.0]).unwrap();
        let e = response(vec![
            InferOutput {
                name: "a".into(),
                tensor: a,
                format: OutputFormat::Binary,
            },
            InferOutput {
                name: "json".into(),
                tensor: c,
                format: OutputFormat::Json,
            },
            InferOutput {
                name: "b".into(),
                tensor: b,
                format: OutputFormat::Binary,
            },
        ])
        .encode();
        assert_eq!(e.content_type(), "application/octet-stream");
        let (v, tail) = split(&e);
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(v["outputs"][1]["data"], json!([3.0]));
        assert_eq!(v["outputs"][2]["parameters"]["binary_data_size"], 6);
        let mut want = Vec::new();
        want.extend(1f32.to_le_bytes());
        want.extend(2f32.to_le_bytes());
        want.extend(b"\x02\0\0\0xy");
        assert_eq!(tail, &want[..]);
    }

    #[test]
    fn half_precision_is_sent_as_binary() {
        let t =
            Tensor::from_le_bytes(DataType::Fp16, vec![1], Bytes::from_static(&[0, 0x3c])).unwrap();
        let e = response(vec![InferOutput {
            name: "h".into(),
            tensor: t,
            format: OutputFormat::Json,
        }])
        .encode();
        let (v, tail) = split(&e);
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 2);
        assert_eq!(tail, &[0, 0x3c]);
    }

    #[test]
    fn classification_strings() {
        let labels = ["cat", "dog", "fish"];
        let t = classification(&[0.1, 0.7, 0.2, 0.5, 0.5, f32::NAN], 3, 2, |i| {
            labels.get(i).map(|l| Cow::Borrowed(*l))
        })
        .unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        let e: Vec<&[u8]> = t.elements().unwrap().iter().map(|b| &b[..]).collect();
        assert_eq!(
            e,
            vec![
                &b"0.700000:1:dog"[..],
                b"0.200000:2:fish",
                b"0.500000:0:cat",
                b"0.500000:1:dog"
            ]
        );
        // k is capped by the class count; no labels
        let t = classification(&[3.3, 1.1], 2, 10, |_| None).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(&t.elements().unwrap()[0][..], b"3.300000:0");
        assert!(classification(&[1.0, 2.0, 3.0], 2, 1, |_| None).is_err());
        assert!(classification(&[1.0], 1, 0, |_| None).is_err());
    }
}
