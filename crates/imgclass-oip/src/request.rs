//! Parsing an infer request body: JSON, JSON followed by binary tensor
//! data (`Inference-Header-Content-Length: N`), or a raw single-input body
//! (`Inference-Header-Content-Length: 0`).
//!
//! Never trusts a declared size: every shape and `binary_data_size` is
//! checked against the bytes actually present before anything is
//! allocated for it, so a request costs at most a small multiple of its
//! body in memory.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::json_data::{self, JsonBytes};
use crate::response::OutputFormat;
use crate::tensor::{Tensor, element_count};
use crate::{DataType, OipError, binary};

/// Limits and choices for parsing a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Most elements in one input tensor (checked against the declared
    /// shape before any data is read).
    pub max_elements: usize,
    /// Most bytes of tensor data in the whole request, in the binary form
    /// (what [`Tensor::binary_len`] counts).
    pub max_bytes: usize,
    /// How JSON strings in BYTES inputs become bytes.
    pub json_bytes: JsonBytes,
}

impl Default for ParseOptions {
    /// 16 Mi elements, 256 MiB, Triton's UTF-8 strings.
    fn default() -> Self {
        ParseOptions {
            max_elements: 1 << 24,
            max_bytes: 256 << 20,
            json_bytes: JsonBytes::Utf8,
        }
    }
}

/// What an infer body turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum InferBody {
    /// A JSON request, with its inputs' binary data already attached.
    Request(InferRequest),
    /// `Inference-Header-Content-Length: 0`: the whole body is the data of
    /// the model's only input; make it a request with [`InferRequest::from_raw`].
    Raw(Bytes),
}

/// A parsed, validated inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The request `id`, to echo in the response; an empty one (which
    /// perf_analyzer sends) is `None`, as Triton then answers without `id`.
    pub id: Option<String>,
    /// The inputs in request order, names unique.
    pub inputs: Vec<InputTensor>,
    /// The outputs asked for, names unique; empty means every output.
    pub outputs: Vec<RequestedOutput>,
    /// Request-level `parameters.binary_data_output`.
    pub binary_data_output: bool,
    /// The request's `parameters` as sent (priority, timeout, sequence_id,
    /// custom ones…): accepted, for the caller to use or ignore.
    pub parameters: Map<String, Value>,
}

/// One input of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub tensor: Tensor,
}

/// One entry of a request's `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    pub name: String,
    /// `parameters.binary_data`, when given.
    pub binary_data: Option<bool>,
    /// `parameters.classification`: top-k classes as BYTES (0 = not asked).
    pub classification: Option<usize>,
}

/// How one output is to be answered (see [`InferRequest::resolve_outputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub format: OutputFormat,
    /// Top-k classification asked for this output.
    pub classification: Option<usize>,
}

/// The model input a raw body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawInput<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    /// The full request shape, batch dimension included (Triton makes a raw
    /// request batch 1); at most one `-1`, deduced from the body size.
    /// BYTES takes exactly one element: the whole body.
    pub shape: &'a [i64],
}

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<WireInput>,
    #[serde(default)]
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Deserialize)]
struct WireInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Parses `Inference-Header-Content-Length`: ASCII digits, surrounding
/// spaces allowed (stricter than Triton's `stoi`, which takes `12abc`).
fn header_length(value: &[u8]) -> Result<usize, OipError> {
    let invalid = || OipError::HeaderLengthInvalid {
        value: String::from_utf8_lossy(value).into_owned(),
    };
    let text = std::str::from_utf8(value).map_err(|_| invalid())?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse().map_err(|_| invalid())
}

fn param_bool(
    params: &Map<String, Value>,
    key: &str,
    owner: &str,
) -> Result<Option<bool>, OipError> {
    match params.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| OipError::Parameter {
            what: format!("{owner} parameter {key:?}"),
            expected: "true or false",
        }),
    }
}

fn param_uint(
    params: &Map<String, Value>,
    key: &str,
    owner: &str,
) -> Result<Option<u64>, OipError> {
    match params.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| OipError::Parameter {
            what: format!("{owner} parameter {key:?}"),
            expected: "a whole number from 0",
        }),
    }
}

fn refuse_shared_memory(params: &Map<String, Value>, tensor: &str) -> Result<(), OipError> {
    if params.contains_key("shared_memory_region") {
        return Err(OipError::UnsupportedSharedMemory {
            tensor: tensor.to_string(),
        });
    }
    Ok(())
}

/// Element count of a declared shape, bounded by the limit.
fn checked_shape(
    input: &str,
    shape: &[i64],
    opts: &ParseOptions,
) -> Result<(Vec<usize>, usize), OipError> {
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| OipError::NegativeDimension {
            input: input.to_string(),
            shape: shape.to_vec(),
        })?;
    let count = element_count(&dims).ok_or_else(|| OipError::ShapeOverflow {
        input: input.to_string(),
        shape: shape.to_vec(),
    })?;
    if count > opts.max_elements {
        return Err(OipError::TooLarge {
            what: "the input's element count",
            size: count,
            limit: opts.max_elements,
        });
    }
    Ok((dims, count))
}

/// Adds `t`'s size to the request total and checks the limit.
fn account(total: &mut usize, t: &Tensor, opts: &ParseOptions) -> Result<(), OipError> {
    *total = total.saturating_add(t.binary_len());
    if *total > opts.max_bytes {
        return Err(OipError::TooLarge {
            what: "the request's tensor data in bytes",
            size: *total,
            limit: opts.max_bytes,
        });
    }
    Ok(())
}

/// Parses an infer request body. `header_length` is the raw value of the
/// `Inference-Header-Content-Length` header, if the request had one.
pub fn parse_infer_request(
    body: Bytes,
    header_length_value: Option<&[u8]>,
    opts: &ParseOptions,
) -> Result<InferBody, OipError> {
    let (json, mut tail) = match header_length_value {
        None => (body, Bytes::new()),
        Some(v) => {
            let n = header_length(v)?;
            if n == 0 {
                return Ok(InferBody::Raw(body));
            }
            if n > body.len() {
                return Err(OipError::HeaderPastBody {
                    header: n,
                    body: body.len(),
                });
            }
            (body.slice(..n), body.slice(n..))
        }
    };
    let has_header = header_length_value.is_some();
    let wire: WireRequest =
        serde_json::from_slice(&json).map_err(|e| OipError::Json(e.to_string()))?;

    let parameters = wire.parameters.unwrap_or_default();
    if let Some(reserved) = parameters.keys().find(|k| k.starts_with("triton_")) {
        return Err(OipError::ReservedParameter {
            name: reserved.clone(),
        });
    }
    let binary_data_output =
        param_bool(&parameters, "binary_data_output", "request")?.unwrap_or(false);

    let mut seen = HashSet::new();
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    let mut total = 0usize;
    for w in wire.inputs {
        if !seen.insert(w.name.clone()) {
            return Err(OipError::DuplicateInput { input: w.name });
        }
        let name = w.name;
        let datatype = DataType::parse(&w.datatype).ok_or_else(|| OipError::UnknownDatatype {
            input: name.clone(),
            datatype: w.datatype.clone(),
        })?;
        let params = w.parameters.unwrap_or_default();
        refuse_shared_memory(&params, &name)?;
        let binary_size = param_uint(&params, "binary_data_size", &format!("input {name:?}"))?;
        let (shape, count) = checked_shape(&name, &w.shape, opts)?;
        let tensor = match (binary_size, &w.data) {
            (Some(declared), None) => {
                let declared = usize::try_from(declared).unwrap_or(usize::MAX);
                if declared > 0 && !has_header {
                    return Err(OipError::BinaryWithoutHeader { input: name });
                }
                if declared > tail.len() {
                    return Err(OipError::BinaryPastBody {
                        input: name,
                        declared,
                        available: tail.len(),
                    });
                }
                let data = tail.split_to(declared);
                binary::decode(&name, datatype, shape, count, data)?
            }
            (None, Some(data)) => {
                json_data::decode(&name, datatype, shape, count, data, opts.json_bytes)?
            }
            (Some(_), Some(_)) => {
                return Err(OipError::DataSource {
                    input: name,
                    found: "it has both",
                });
            }
            (None, None) => {
                return Err(OipError::DataSource {
                    input: name,
                    found: "it has neither",
                });
            }
        };
        account(&mut total, &tensor, opts)?;
        inputs.push(InputTensor { name, tensor });
    }
    if !tail.is_empty() {
        return Err(OipError::TrailingBinary { extra: tail.len() });
    }

    let mut outputs = Vec::new();
    let mut seen = HashSet::new();
    for w in wire.outputs.unwrap_or_default() {
        if !seen.insert(w.name.clone()) {
            return Err(OipError::DuplicateOutput { output: w.name });
        }
        let params = w.parameters.unwrap_or_default();
        refuse_shared_memory(&params, &w.name)?;
        let owner = format!("output {:?}", w.name);
        let binary_data = param_bool(&params, "binary_data", &owner)?;
        let classification = param_uint(&params, "classification", &owner)?
            .filter(|&k| k > 0)
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX));
        outputs.push(RequestedOutput {
            name: w.name,
            binary_data,
            classification,
        });
    }

    Ok(InferBody::Request(InferRequest {
        id: wire.id.filter(|id| !id.is_empty()),
        inputs,
        outputs,
        binary_data_output,
        parameters,
    }))
}

impl InferRequest {
    /// Makes a raw body (see [`InferBody::Raw`]) a request for `input`.
    /// As in Triton, every output is then answered in binary.
    pub fn from_raw(
        data: Bytes,
        input: RawInput<'_>,
        opts: &ParseOptions,
    ) -> Result<Self, OipError> {
        let raw = |reason: String| OipError::Raw {
            input: input.name.to_string(),
            reason,
        };
        if data.len() > opts.max_bytes {
            return Err(OipError::TooLarge {
                what: "the raw body in bytes",
                size: data.len(),
                limit: opts.max_bytes,
            });
        }
        let wildcards = input.shape.iter().filter(|&&d| d == -1).count();
        if wildcards > 1 || input.shape.iter().any(|&d| d < -1) {
            return Err(raw(format!(
                "its shape {:?} cannot be deduced from the body (at most one -1)",
                input.shape
            )));
        }
        let known: Vec<usize> = input
            .shape
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .collect();
        let known_count =
            element_count(&known).ok_or_else(|| raw("its shape is too large".into()))?;
        let tensor = match input.datatype.element_size() {
            None => {
                if wildcards > 0 || known_count != 1 {
                    return Err(raw(format!(
                        "a BYTES raw input takes exactly one element, but the shape is {:?}",
                        input.shape
                    )));
                }
                Tensor::from_bytes(known, vec![data])?
            }
            Some(size) => {
                let row = known_count
                    .checked_mul(size)
                    .ok_or_else(|| raw("its shape is too large".into()))?;
                let deduced = data.len().checked_div(row);
                let fits = match (wildcards, deduced) {
                    (0, _) => row == data.len(),
                    (_, Some(n)) => n * row == data.len(),
                    (_, None) => data.is_empty(),
                };
                if !fits {
                    return Err(raw(format!(
                        "{} bytes are not a whole number of {:?} {} tensors",
                        data.len(),
                        input.shape,
                        input.datatype
                    )));
                }
                let shape: Vec<usize> = input
                    .shape
                    .iter()
                    .map(|&d| {
                        if d == -1 {
                            deduced.unwrap_or(0)
                        } else {
                            d as usize
                        }
                    })
                    .collect();
                let count = element_count(&shape).unwrap_or(usize::MAX);
                if count > opts.max_elements {
                    return Err(OipError::TooLarge {
                        what: "the input's element count",
                        size: count,
                        limit: opts.max_elements,
                    });
                }
                Tensor::from_le_bytes(input.datatype, shape, data)?
            }
        };
        Ok(InferRequest {
            id: None,
            inputs: vec![InputTensor {
                name: input.name.to_string(),
                tensor,
            }],
            outputs: Vec::new(),
            binary_data_output: true,
            parameters: Map::new(),
        })
    }

    /// The input named `name`.
    pub fn input(&self, name: &str) -> Option<&InputTensor> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// How each output is to be answered, given the model's output names:
    /// the requested ones (each must exist) or, when none were named,
    /// all of them. An output is binary when it asks `binary_data: true`,
    /// or does not say and the request set `binary_data_output: true`.
    pub fn resolve_outputs(&self, model_outputs: &[&str]) -> Result<Vec<OutputSpec>, OipError> {
        let default = if self.binary_data_output {
            OutputFormat::Binary
        } else {
            OutputFormat::Json
        };
        if self.outputs.is_empty() {
            return Ok(model_outputs
                .iter()
                .map(|n| OutputSpec {
                    name: n.to_string(),
                    format: default,
                    classification: None,
                })
                .collect());
        }
        self.outputs
            .iter()
            .map(|o| {
                if !model_outputs.contains(&o.name.as_str()) {
                    return Err(OipError::UnknownOutput {
                        output: o.name.clone(),
                        available: format!("{model_outputs:?}"),
                    });
                }
                let format = match o.binary_data {
                    Some(true) => OutputFormat::Binary,
                    Some(false) => OutputFormat::Json,
                    None => default,
                };
                Ok(OutputSpec {
                    name: o.name.clone(),
                    format,
                    classification: o.classification,
                })
            })
            .collect()
    }
}
