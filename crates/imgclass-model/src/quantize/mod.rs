//! Static int8 quantization of an fp32 ONNX classifier, in Rust.
//!
//! The output is a QDQ model (QuantizeLinear/DequantizeLinear pairs around
//! every Conv, Add and the Gemm) that ONNX Runtime fuses into integer
//! kernels (QLinearConv, QLinearAdd, …):
//!
//! - weights: int8, per output channel (axis 0), symmetric (zero point 0,
//!   scale = max|w| / 127);
//! - biases: int32 with scale = s_input · s_weight[c], zero point 0,
//!   corrected for the mean shift the weights' rounding causes
//!   ([`qdq::bias_shift`], with input means measured in calibration),
//!   with weight scales raised where a bias would not fit in int32
//!   ([`qdq::bias_scale_floor`]);
//! - activations: **uint8**, asymmetric, one scale per tensor. uint8
//!   activations with int8 weights (U8S8) is the combination ONNX Runtime's
//!   x86 integer kernels are built for (S8S8 is converted or slower there);
//!   asymmetric ranges do not waste half the levels on ReLU6 outputs.
//!   A ReLU6 (Clip 0..6) after a Conv is folded into the Conv's output
//!   quantization: the uint8 range [0, r ≤ 6] clamps exactly as the Clip did.
//!
//! Activation ranges come from [`calibrate`]: the fp32 model runs on real
//! photos (preprocessed by the model's own [`Preprocessor`]) in ONNX
//! Runtime with every activation to quantize exposed as an extra output.
//! See [`Method`] for how a range is chosen from what was seen.
//!
//! Deterministic: the same model, photos and method give a byte-identical
//! file (single-threaded calibration without graph rewrites, fixed photo
//! order, order-independent statistics, a deterministic encoder).

mod calibrate;
mod gptq;
mod hessian;
mod qdq;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use imgclass_core::{ImageError, ModelConfig, Preprocessor};

pub use calibrate::Method;

use crate::onnx::{self, DecodeError, Message};

/// Revision of the quantizer, recorded in the `model.toml` it writes
/// (`engine.quantizer`). Raise it whenever the same inputs would give a
/// different file, so that installed `-int8` models are made again.
/// 2: bias steps large enough for every int32 bias (see `qdq`).
/// 3: weights rounded with error feedback by default (see `gptq`).
pub const REVISION: u32 = 3;

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The graph has a shape the quantizer does not handle.
    #[error("cannot quantize this graph: {0}")]
    Graph(String),
    #[error("calibration run failed: {0}")]
    Engine(#[from] imgclass_core::EngineError),
    #[error("calibration photo {name}: {source}")]
    Photo { name: String, source: ImageError },
    #[error("no calibration photos")]
    NoPhotos,
}

/// How weights are rounded to their int8 steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rounding {
    /// Each weight to its nearest step.
    Nearest,
    /// With error feedback from the calibration inputs' second moments
    /// (GPTQ; see `gptq`): the rounding that changes each Conv/Gemm
    /// output least on the calibration photos.
    #[default]
    Gptq,
}

impl FromStr for Rounding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nearest" => Ok(Rounding::Nearest),
            "gptq" => Ok(Rounding::Gptq),
            other => Err(format!(
                "unknown weight rounding {other:?}: use gptq or nearest"
            )),
        }
    }
}

impl std::fmt::Display for Rounding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rounding::Nearest => "nearest",
            Rounding::Gptq => "gptq",
        })
    }
}

/// How to quantize.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub method: Method,
    pub rounding: Rounding,
    /// The ONNX Runtime library the calibration runs on.
    pub ort_library: PathBuf,
}

/// What a quantization did.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeReport {
    pub method: Method,
    pub rounding: Rounding,
    /// Weights rounded with error feedback (the others: to nearest).
    pub fed_back: usize,
    /// Calibration photos, in the order they were run.
    pub photos: Vec<String>,
    /// Nodes given quantized inputs, by op type.
    pub convs: usize,
    pub gemms: usize,
    pub adds: usize,
    /// Activation tensors with a QuantizeLinear/DequantizeLinear pair.
    pub activations: usize,
    /// ReLU6/Relu nodes folded into the preceding quantized output.
    pub folded_activations: usize,
    pub onnx_bytes: usize,
}

/// Quantizes the fp32 ONNX model `fp32`, calibrating on `photos` (name,
/// encoded image) preprocessed by `preprocessor`. Returns the QDQ model.
pub fn quantize(
    fp32: &[u8],
    preprocessor: &Preprocessor,
    photos: &[(String, Vec<u8>)],
    options: &QuantizeOptions,
) -> Result<(Vec<u8>, QuantizeReport), QuantizeError> {
    if photos.is_empty() {
        return Err(QuantizeError::NoPhotos);
    }
    let model = onnx::decode_model(fp32)?;
    let plan = qdq::plan(&model)?;
    let inputs = photos
        .iter()
        .map(|(name, bytes)| {
            preprocessor
                .preprocess(bytes)
                .map(|p| p.tensor)
                .map_err(|source| QuantizeError::Photo {
                    name: name.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let input = &model.graph.inputs[0];
    let shape = input_shape(input, preprocessor)?;
    // Second moments cost a pass over every patch: gathered only for
    // the rounding that uses them.
    let wanted = match options.rounding {
        Rounding::Gptq => plan.readers.as_slice(),
        Rounding::Nearest => &[],
    };
    let calibration = calibrate::calibrate(
        &model,
        &plan.activations,
        &plan.channels(),
        wanted
            .iter()
            .map(|(_, x, g)| (x.clone(), hessian::Hessian::new(g.clone())))
            .collect(),
        &inputs,
        &shape,
        options.method,
        &options.ort_library,
    )?;
    let hessians: HashMap<usize, hessian::Hessian> = wanted
        .iter()
        .map(|(node, _, _)| *node)
        .zip(calibration.hessians)
        .collect();
    let (quantized, fed_back) = qdq::rewrite(
        &model,
        &plan,
        &calibration.seen,
        &hessians,
        (options.method, options.rounding),
        photos.len(),
    )?;
    let bytes = quantized.to_bytes();
    let report = QuantizeReport {
        method: options.method,
        rounding: options.rounding,
        fed_back,
        photos: photos.iter().map(|(n, _)| n.clone()).collect(),
        convs: plan.count("Conv"),
        gemms: plan.count("Gemm"),
        adds: plan.count("Add"),
        activations: plan.activations.len(),
        folded_activations: plan.folded.len(),
        onnx_bytes: bytes.len(),
    };
    Ok((bytes, report))
}

/// The batch-1 input shape: the graph's, with the batch set to 1, checked
/// against what the preprocessor produces.
fn input_shape(
    input: &onnx::ValueInfo,
    preprocessor: &Preprocessor,
) -> Result<Vec<usize>, QuantizeError> {
    let cfg = preprocessor.input();
    let expected = match cfg.layout {
        imgclass_core::InputLayout::Nchw => [1, 3, cfg.height as usize, cfg.width as usize],
        imgclass_core::InputLayout::Nhwc => [1, cfg.height as usize, cfg.width as usize, 3],
    };
    if let Some(dims) = &input.dims {
        let fits = dims.len() == 4
            && dims.iter().zip(expected).skip(1).all(|(d, e)| match d {
                onnx::Dim::Value(v) => *v as usize == e,
                onnx::Dim::Param(_) => true,
            });
        if !fits {
            return Err(QuantizeError::Graph(format!(
                "input {:?} has shape {dims:?}, but model.toml describes {expected:?}",
                input.name
            )));
        }
    }
    Ok(expected.to_vec())
}

/// The `model.toml` of a model quantized from one described by `base`:
/// the same preprocessing and labels, a new name and description, and
/// ONNX Runtime as the preferred engine (it runs QDQ as integer kernels).
pub fn int8_config(base: &ModelConfig, name: &str, report: &QuantizeReport) -> ModelConfig {
    let mut cfg = base.clone();
    cfg.name = name.into();
    cfg.onnx = "model.onnx".into();
    cfg.description = format!(
        "{} quantized to int8 by imgclass (static QDQ: per-channel symmetric int8 weights ({} rounding), uint8 activations, {} calibration on {} photos)",
        base.name,
        report.rounding,
        report.method,
        report.photos.len()
    );
    cfg.engine.preferred = Some("ort".into());
    cfg.engine.quantized = true;
    cfg.engine.quantizer = Some(REVISION);
    cfg
}
