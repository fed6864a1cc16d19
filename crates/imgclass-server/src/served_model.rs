//! How a served model looks in the Open Inference Protocol: its tensor
//! names, its one version, the metadata of `GET /v2/models/{name}` and the
//! Triton model configuration of `…/config`, all read from the pipeline
//! that serves it, so every route describes the same thing.

use std::collections::BTreeMap;
use std::sync::Arc;

use imgclass_core::config::InputLayout;
use imgclass_core::engine::EngineKind;
use imgclass_oip::{
    DataType, DynamicBatching, InstanceGroup, InstanceKind, ModelConfig, ModelInput, ModelMetadata,
    ModelOutput, ModelParameter, TensorFormat, TensorMetadata, TransactionPolicy, VersionPolicy,
};
use imgclass_pipeline::Pipeline;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;

/// The output tensor: class probabilities.
pub const OUTPUT: &str = "probabilities";
/// The input of encoded images (BYTES, one image per element).
pub const BYTES_INPUT: &str = "image";
/// The input of preprocessed images (FP32 in the model's layout).
pub const FP32_INPUT: &str = "input";
/// Most images in one infer request.
pub const MAX_IMAGES_PER_REQUEST: usize = 64;
/// The one version of every model (a model home holds one per name).
pub const MODEL_VERSION: &str = "1";

/// Triton's platform and backend names for the engine serving `p`.
pub fn platform(p: &Pipeline) -> (&'static str, &'static str) {
    match p.engine().kind() {
        EngineKind::Ort => ("onnxruntime_onnx", "onnxruntime"),
        EngineKind::Tract => ("tract_onnx", "tract"),
    }
}

/// The preprocessed input's dimensions without the batch, in the model's layout.
fn image_dims(p: &Pipeline) -> Vec<i64> {
    p.model()
        .config
        .input
        .dims()
        .iter()
        .map(|&d| d as i64)
        .collect()
}

/// `GET /v2/models/{name}`: shapes with the batch dimension as `-1`.
pub fn metadata(p: &Pipeline) -> ModelMetadata {
    let mut fp32_shape = vec![-1];
    fp32_shape.extend(image_dims(p));
    ModelMetadata {
        name: p.name().to_string(),
        versions: vec![MODEL_VERSION.to_string()],
        platform: platform(p).0.to_string(),
        inputs: vec![
            TensorMetadata {
                name: BYTES_INPUT.into(),
                datatype: DataType::Bytes,
                shape: vec![-1, 1],
            },
            TensorMetadata {
                name: FP32_INPUT.into(),
                datatype: DataType::Fp32,
                shape: fp32_shape,
            },
        ],
        outputs: vec![TensorMetadata {
            name: OUTPUT.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, p.num_classes() as i64],
        }],
    }
}

/// `GET /v2/models/{name}/config`: Triton's model configuration of what
/// actually serves the model. Both inputs are `optional` because a request
/// sends exactly one of them (perf_analyzer then sends only the one its
/// input data names). `max_batch_size` is the most images one request may
/// carry; the dynamic batcher's delay is the server's batch delay; one
/// instance per engine session (each has its own worker thread).
pub fn config(p: &Pipeline, max_batch_delay: std::time::Duration) -> ModelConfig {
    let model = p.model();
    let (platform, backend) = platform(p);
    let format = match model.config.input.layout {
        InputLayout::Nchw => TensorFormat::Nchw,
        InputLayout::Nhwc => TensorFormat::Nhwc,
    };
    let input = |name: &str, data_type, format, dims| ModelInput {
        name: name.into(),
        data_type,
        format,
        dims,
        is_shape_tensor: false,
        allow_ragged_batch: false,
        optional: true,
    };
    let mut parameters = BTreeMap::new();
    parameters.insert(
        "engine_max_batch_size".to_string(),
        ModelParameter {
            string_value: p.max_batch_size().to_string(),
        },
    );
    ModelConfig {
        name: p.name().to_string(),
        platform: platform.into(),
        backend: backend.into(),
        version_policy: VersionPolicy::latest_one(),
        max_batch_size: MAX_IMAGES_PER_REQUEST as u32,
        input: vec![
            input(BYTES_INPUT, DataType::Bytes, TensorFormat::None, vec![1]),
            input(FP32_INPUT, DataType::Fp32, format, image_dims(p)),
        ],
        output: vec![ModelOutput {
            name: OUTPUT.into(),
            data_type: DataType::Fp32,
            dims: vec![p.num_classes() as i64],
            label_filename: model.config.labels.clone(),
            is_shape_tensor: false,
        }],
        dynamic_batching: Some(DynamicBatching {
            preferred_batch_size: vec![],
            max_queue_delay_microseconds: u64::try_from(max_batch_delay.as_micros())
                .unwrap_or(u64::MAX),
            preserve_ordering: false,
            priority_levels: 0,
            default_priority_level: 0,
        }),
        instance_group: vec![InstanceGroup {
            name: p.name().to_string(),
            kind: InstanceKind::Cpu,
            count: p.engine().sessions().max(1) as u32,
            gpus: vec![],
            passive: false,
            host_policy: String::new(),
        }],
        default_model_filename: model.config.onnx.clone(),
        model_transaction_policy: TransactionPolicy::default(),
        parameters,
    }
}

/// `{name}` and, on the `/versions/{version}` routes, `{version}`.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

impl ModelPath {
    /// The pipeline serving this model (see [`AppState::pipeline`]); a
    /// version other than the model's one is a 404.
    pub fn pipeline(&self, state: &AppState) -> Result<Arc<Pipeline>, ApiError> {
        let pipeline = state.pipeline(Some(&self.name))?;
        match self.version.as_deref() {
            None | Some("") | Some(MODEL_VERSION) => Ok(pipeline),
            Some(v) => Err(ApiError::NotFound(format!(
                "model {:?} has no version {:?} (it has {MODEL_VERSION:?})",
                self.name,
                v.chars().take(32).collect::<String>()
            ))),
        }
    }
}
