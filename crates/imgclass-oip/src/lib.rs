//! The KServe v2 / Open Inference Protocol REST wire format the way
//! Triton and its client (`tritonclient.http`) speak it, as a pure codec:
//! no HTTP server, no async; the caller passes bodies and header values.
//!
//! - [`parse_infer_request`]: an infer body (JSON, JSON + binary tensor
//!   data after `Inference-Header-Content-Length` bytes, or a raw
//!   single-input body) → a validated [`InferRequest`], every size checked
//!   against the bytes present ([`OipError`] otherwise, one variant per
//!   mistake, each a 400 at the HTTP layer).
//! - [`InferResponse::encode`]: outputs → JSON or JSON + binary body and
//!   the `Inference-Header-Content-Length` value; [`classification`] makes
//!   Triton's `"<score>:<index>:<label>"` strings.
//! - Typed JSON documents: [`ServerMetadata`], [`ModelMetadata`],
//!   [`ModelConfig`] (`/config`), [`StatisticsResponse`] (`/stats`),
//!   [`RepositoryModel`] / [`IndexRequest`] / [`ControlRequest`] (repository).
//!
//! An axum handler would use it like this:
//!
//! ```
//! use bytes::Bytes;
//! use imgclass_oip::*;
//!
//! fn infer(body: Bytes, header: Option<&[u8]>) -> Result<EncodedResponse, OipError> {
//!     let opts = ParseOptions { json_bytes: JsonBytes::Base64, ..ParseOptions::default() };
//!     let request = match parse_infer_request(body, header, &opts)? {
//!         InferBody::Request(r) => r,
//!         InferBody::Raw(data) => InferRequest::from_raw(
//!             data,
//!             RawInput { name: "image", datatype: DataType::Bytes, shape: &[1, 1] },
//!             &opts,
//!         )?,
//!     };
//!     let specs = request.resolve_outputs(&["probabilities"])?;
//!     let image = request.input("image").and_then(|i| i.tensor.elements());
//!     let n = image.map_or(1, |e| e.len());
//!     let scores = vec![0.5_f32; n * 3]; // the model's [n, 3] output
//!     let outputs = specs
//!         .into_iter()
//!         .map(|s| {
//!             let tensor = match s.classification {
//!                 Some(k) => classification(&scores, 3, k, |_| None)?,
//!                 None => Tensor::from_f32(vec![n, 3], &scores)?,
//!             };
//!             Ok(InferOutput { name: s.name, tensor, format: s.format })
//!         })
//!         .collect::<Result<_, OipError>>()?;
//!     let response = InferResponse {
//!         model_name: "m".into(),
//!         model_version: "1".into(),
//!         id: request.id.clone(),
//!         outputs,
//!     };
//!     // Body; when header_length is Some, send it as
//!     // Inference-Header-Content-Length with content_type().
//!     Ok(response.encode())
//! }
//! let json = br#"{"id":"7","inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":["aGk="]}]}"#;
//! let out = infer(Bytes::from_static(json), None).unwrap();
//! assert_eq!(out.header_length, None);
//! assert!(std::str::from_utf8(&out.body).unwrap().contains("\"id\":\"7\""));
//! ```

mod binary;
mod config;
mod datatype;
mod error;
mod json_data;
mod metadata;
mod repository;
mod request;
mod response;
mod stats;
mod tensor;

pub use config::{
    DynamicBatching, InstanceGroup, InstanceKind, LatestVersions, ModelConfig, ModelInput,
    ModelOutput, ModelParameter, TensorFormat, TransactionPolicy, VersionPolicy,
};
pub use datatype::DataType;
pub use error::OipError;
pub use json_data::JsonBytes;
pub use metadata::{ModelMetadata, ServerMetadata, TensorMetadata, extension};
pub use repository::{ControlRequest, IndexRequest, ModelState, RepositoryModel};
pub use request::{
    InferBody, InferRequest, InputTensor, OutputSpec, ParseOptions, RawInput, RequestedOutput,
    parse_infer_request,
};
pub use response::{
    EncodedResponse, INFERENCE_HEADER_CONTENT_LENGTH, InferOutput, InferResponse, OutputFormat,
    classification,
};
pub use stats::{
    BatchStatistics, DurationStat, InferStatistics, MemoryUsage, ModelStatistics,
    StatisticsResponse,
};
pub use tensor::Tensor;
