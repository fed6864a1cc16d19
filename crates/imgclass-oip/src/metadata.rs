//! Server and model metadata (`GET /v2`, `GET /v2/models/{name}`).

use serde::{Deserialize, Serialize};

use crate::DataType;

/// Extension names a server lists in [`ServerMetadata::extensions`], as Triton spells them.
pub mod extension {
    /// Binary tensor data in infer requests and responses.
    pub const BINARY_TENSOR_DATA: &str = "binary_tensor_data";
    /// `parameters.classification` on requested outputs.
    pub const CLASSIFICATION: &str = "classification";
    /// `GET /v2/models/{name}/config`.
    pub const MODEL_CONFIGURATION: &str = "model_configuration";
    /// `POST /v2/repository/index`, `…/models/{name}/load`, `…/unload`.
    pub const MODEL_REPOSITORY: &str = "model_repository";
    /// `GET /v2/models[/{name}]/stats`.
    pub const STATISTICS: &str = "statistics";
}

/// `GET /v2`. perf_analyzer reads `extensions` and fails without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// One tensor in model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: DataType,
    /// `-1` for a variable dimension; the batch dimension included when
    /// the model batches (Triton tooling skips it when `max_batch_size > 0`).
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_form() {
        let m = ModelMetadata {
            name: "m".into(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![TensorMetadata {
                name: "image".into(),
                datatype: DataType::Bytes,
                shape: vec![-1, 1],
            }],
            outputs: vec![],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"name": "m", "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}], "outputs": []})
        );
        let s = ServerMetadata {
            name: "imgclass".into(),
            version: "0.1.0".into(),
            extensions: vec![extension::BINARY_TENSOR_DATA.into()],
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap()["extensions"],
            json!(["binary_tensor_data"])
        );
    }
}
