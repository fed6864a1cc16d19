//! The one error type of the crate. Every variant is a client mistake: the
//! HTTP layer answers each with 400 and `{"error": "<Display>"}`, except
//! [`OipError::TooLarge`] (413 fits) and the `Unsupported…` variants
//! (400 as well: the request asks for a protocol feature this server does
//! not offer).

use thiserror::Error;

use crate::DataType;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OipError {
    #[error("Inference-Header-Content-Length must be a whole number of bytes, got {value:?}")]
    HeaderLengthInvalid { value: String },

    #[error(
        "Inference-Header-Content-Length is {header} but the request body has only {body} bytes"
    )]
    HeaderPastBody { header: usize, body: usize },

    #[error("invalid inference request JSON: {0}")]
    Json(String),

    #[error("{what} must be {expected}")]
    Parameter {
        what: String,
        expected: &'static str,
    },

    #[error("parameter {name:?}: keys starting with \"triton_\" are reserved and must not be sent")]
    ReservedParameter { name: String },

    #[error("{tensor:?} uses shared memory, which this server does not offer")]
    UnsupportedSharedMemory { tensor: String },

    #[error("input {input:?} is given twice")]
    DuplicateInput { input: String },

    #[error("output {output:?} is requested twice")]
    DuplicateOutput { output: String },

    #[error("unknown output {output:?}: the model has {available}")]
    UnknownOutput { output: String, available: String },

    #[error("input {input:?} has unknown datatype {datatype:?}")]
    UnknownDatatype { input: String, datatype: String },

    #[error(
        "input {input:?} must give exactly one of \"data\" or parameters.binary_data_size, {found}"
    )]
    DataSource { input: String, found: &'static str },

    #[error("input {input:?} has a negative dimension in shape {shape:?}")]
    NegativeDimension { input: String, shape: Vec<i64> },

    #[error("input {input:?}: shape {shape:?} has too many elements")]
    ShapeOverflow { input: String, shape: Vec<i64> },

    #[error("input {input:?}: shape {shape:?} needs {expected} elements, the data has {found}")]
    ElementCount {
        input: String,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },

    #[error(
        "input {input:?}: shape {shape:?} of {datatype} needs {expected} bytes, binary_data_size says {declared}"
    )]
    BinarySize {
        input: String,
        datatype: DataType,
        shape: Vec<usize>,
        expected: usize,
        declared: usize,
    },

    #[error(
        "input {input:?} declares binary_data_size {declared} but only {available} bytes of binary data are left after the JSON"
    )]
    BinaryPastBody {
        input: String,
        declared: usize,
        available: usize,
    },

    #[error(
        "input {input:?} has binary data but the request has no Inference-Header-Content-Length header"
    )]
    BinaryWithoutHeader { input: String },

    #[error(
        "{extra} bytes of binary data follow the inputs' binary_data_size total; every byte after the JSON must belong to an input"
    )]
    TrailingBinary { extra: usize },

    #[error("input {input:?}: BYTES element {index}: {reason}")]
    BytesElement {
        input: String,
        index: usize,
        reason: String,
    },

    #[error("input {input:?}: {datatype} element {index} in \"data\" must be {expected}")]
    JsonValue {
        input: String,
        datatype: DataType,
        index: usize,
        expected: &'static str,
    },

    #[error("input {input:?}: {datatype} cannot be sent as JSON; send it as binary data")]
    JsonUnsupported { input: String, datatype: DataType },

    #[error("{what} is {size}, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },

    #[error("raw request for input {input:?}: {reason}")]
    Raw { input: String, reason: String },

    #[error("tensor {tensor:?}: {reason}")]
    Tensor { tensor: String, reason: String },
}

impl OipError {
    /// True for [`OipError::TooLarge`], which the HTTP layer may answer with 413.
    pub fn is_too_large(&self) -> bool {
        matches!(self, OipError::TooLarge { .. })
    }

    /// The protocol's error body, `{"error": "<message>"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.to_string() })
    }
}
