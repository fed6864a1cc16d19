//! Triton's model configuration as `GET /v2/models/{name}/config` returns
//! it: the JSON form of `ModelConfig` from Triton's `model_config.proto`,
//! snake_case field names, enums as their names (`TYPE_FP32`, `KIND_CPU`),
//! 64-bit integers as JSON numbers (Triton converts protobuf's strings
//! back), every field present. Only the parts a non-Triton server can
//! truthfully fill are modelled; each one that tooling reads is here:
//! perf_analyzer reads `max_batch_size`, `input[].name/optional/
//! is_shape_tensor`, `output[].name`, `dynamic_batching` /
//! `sequence_batching` (scheduler kind), `model_transaction_policy.decoupled`
//! and `platform`, and refuses an input or output the metadata lacks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DataType;

/// `GET /v2/models/{name}/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub name: String,
    /// E.g. `onnxruntime_onnx`.
    pub platform: String,
    /// E.g. `onnxruntime`.
    pub backend: String,
    pub version_policy: VersionPolicy,
    /// Largest batch one request may carry; 0 = the model does not batch
    /// (then `dims` include every dimension).
    pub max_batch_size: u32,
    pub input: Vec<ModelInput>,
    pub output: Vec<ModelOutput>,
    /// Present when requests are batched together by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
    pub instance_group: Vec<InstanceGroup>,
    pub default_model_filename: String,
    pub model_transaction_policy: TransactionPolicy,
    /// Free-form `{"key": {"string_value": "…"}}` parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, ModelParameter>,
}

/// `{"latest": {"num_versions": 1}}`: the server serves the newest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPolicy {
    pub latest: LatestVersions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestVersions {
    pub num_versions: u32,
}

impl VersionPolicy {
    /// Serve the newest version only.
    pub fn latest_one() -> Self {
        VersionPolicy {
            latest: LatestVersions { num_versions: 1 },
        }
    }
}

/// Tensor layout of an image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorFormat {
    #[serde(rename = "FORMAT_NONE")]
    None,
    #[serde(rename = "FORMAT_NHWC")]
    Nhwc,
    #[serde(rename = "FORMAT_NCHW")]
    Nchw,
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    pub name: String,
    #[serde(with = "crate::datatype::config_name")]
    pub data_type: DataType,
    pub format: TensorFormat,
    /// Without the batch dimension when `max_batch_size > 0`; `-1` = variable.
    pub dims: Vec<i64>,
    pub is_shape_tensor: bool,
    pub allow_ragged_batch: bool,
    /// A request may leave this input out (perf_analyzer then sends it only
    /// when its input data names it).
    pub optional: bool,
}

/// One model output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub name: String,
    #[serde(with = "crate::datatype::config_name")]
    pub data_type: DataType,
    pub dims: Vec<i64>,
    /// File of class labels for the classification extension ("" = none).
    pub label_filename: String,
    pub is_shape_tensor: bool,
}

/// The dynamic batcher's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<u32>,
    pub max_queue_delay_microseconds: u64,
    pub preserve_ordering: bool,
    pub priority_levels: u64,
    pub default_priority_level: u64,
}

/// Where model instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceKind {
    #[serde(rename = "KIND_AUTO")]
    Auto,
    #[serde(rename = "KIND_GPU")]
    Gpu,
    #[serde(rename = "KIND_CPU")]
    Cpu,
    #[serde(rename = "KIND_MODEL")]
    Model,
}

/// A group of identical model instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceGroup {
    pub name: String,
    pub kind: InstanceKind,
    pub count: u32,
    pub gpus: Vec<i32>,
    pub passive: bool,
    pub host_policy: String,
}

/// `{"decoupled": false}`: one response per request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransactionPolicy {
    pub decoupled: bool,
}

/// One free-form model parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelParameter {
    pub string_value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_form_matches_triton() {
        let c = ModelConfig {
            name: "efficientnet-lite0".into(),
            platform: "onnxruntime_onnx".into(),
            backend: "onnxruntime".into(),
            version_policy: VersionPolicy::latest_one(),
            max_batch_size: 64,
            input: vec![ModelInput {
                name: "input".into(),
                data_type: DataType::Fp32,
                format: TensorFormat::Nchw,
                dims: vec![3, 224, 224],
                is_shape_tensor: false,
                allow_ragged_batch: false,
                optional: true,
            }],
            output: vec![ModelOutput {
                name: "probabilities".into(),
                data_type: DataType::Fp32,
                dims: vec![1000],
                label_filename: "labels.txt".into(),
                is_shape_tensor: false,
            }],
            dynamic_batching: Some(DynamicBatching {
                preferred_batch_size: vec![],
                max_queue_delay_microseconds: 2000,
                preserve_ordering: false,
                priority_levels: 0,
                default_priority_level: 0,
            }),
            instance_group: vec![InstanceGroup {
                name: "efficientnet-lite0".into(),
                kind: InstanceKind::Cpu,
                count: 2,
                gpus: vec![],
                passive: false,
                host_policy: String::new(),
            }],
            default_model_filename: "model.onnx".into(),
            model_transaction_policy: TransactionPolicy::default(),
            parameters: BTreeMap::new(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(v["input"][0]["format"], "FORMAT_NCHW");
        assert_eq!(v["input"][0]["dims"], json!([3, 224, 224]));
        assert_eq!(v["dynamic_batching"]["max_queue_delay_microseconds"], 2000);
        assert_eq!(v["instance_group"][0]["kind"], "KIND_CPU");
        assert_eq!(v["version_policy"], json!({"latest": {"num_versions": 1}}));
        assert_eq!(v["model_transaction_policy"], json!({"decoupled": false}));
        let back: ModelConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);

        let mut s = c.clone();
        s.input[0].data_type = DataType::Bytes;
        s.dynamic_batching = None;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["input"][0]["data_type"], "TYPE_STRING");
        assert!(v.get("dynamic_batching").is_none());
    }
}
