//! Converts the EfficientNet-Lite PyTorch checkpoints (Lite0, Lite1,
//! Lite2) to ONNX, in pure Rust.
//!
//! Why in-tree instead of `torch.onnx.export`: the service must be able to
//! produce its model from the pinned, hash-checked checkpoint with nothing
//! but this binary — no Python, torch or onnx packages at run time. The
//! pieces are small and separately tested:
//!
//! - [`pickle`]: an inert pickle VM (records calls, never executes them);
//! - [`torch`]: the legacy `torch.save` layout (pickles + raw storages);
//! - [`efficientnet`]: the Lite scaling rules, architecture check,
//!   BatchNorm folding, graph building;
//! - [`crate::onnx`]: a minimal protobuf writer for the ONNX messages.

mod efficientnet;
mod pickle;
mod torch;

use std::collections::BTreeMap;

pub use efficientnet::{LITE0, LITE1, LITE2, LiteVariant, VARIANTS, detect_variant};

use crate::onnx::Message;

/// What a conversion produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertReport {
    /// Learned values in the ONNX initializers, after BatchNorm folding
    /// (conv weights, folded biases, FC weight and bias; the two ReLU6
    /// bounds are not counted).
    pub parameters: usize,
    /// Nodes in the ONNX graph.
    pub nodes: usize,
    /// Size of the serialized `ModelProto`.
    pub onnx_bytes: usize,
}

/// Why a checkpoint could not be read or converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A pickle inside the checkpoint is malformed or uses an unsupported opcode.
    #[error("pickle: {0}")]
    Pickle(String),
    /// The file is not laid out like a legacy torch checkpoint (bad magic,
    /// truncated storage, out-of-bounds view, …).
    #[error("checkpoint format: {0}")]
    Format(String),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor exists but has the wrong shape for the EfficientNet-Lite variant.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor's values cannot be used (e.g. a negative BatchNorm variance).
    #[error("invalid values in `{name}`: {reason}")]
    InvalidValue { name: String, reason: String },
    /// Valid input this converter deliberately does not handle (zip-format
    /// checkpoints, other architectures, exotic storage types).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// A dense row-major float tensor from a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a legacy torch checkpoint (the bytes of the .pth file) into name -> tensor.
///
/// Views are materialised contiguous (strides and offsets honoured). Integer
/// and half-precision storages are converted to `f32`; in a state dict that
/// only affects BatchNorm's `num_batches_tracked` counters.
pub fn read_legacy_checkpoint(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, ConvertError> {
    torch::read(bytes)
}

/// Builds the ONNX model of EfficientNet-Lite variant `variant` from its
/// checkpoint; returns the serialized ModelProto.
///
/// The model takes `input` float32 `[batch, 3, S, S]` (S = the variant's
/// image size; already normalised, NCHW) and returns `logits` float32
/// `[batch, 1000]`; it uses opset 13 and IR version 8.
pub fn efficientnet_lite_to_onnx(
    bytes: &[u8],
    variant: &LiteVariant,
) -> Result<(Vec<u8>, ConvertReport), ConvertError> {
    let tensors = read_legacy_checkpoint(bytes)?;
    let built = efficientnet::build(&tensors, variant)?;
    let onnx = built.model.to_bytes();
    let report = ConvertReport {
        parameters: built.parameters,
        nodes: built.nodes,
        onnx_bytes: onnx.len(),
    };
    tracing::debug!(
        ?report,
        tensors = tensors.len(),
        variant = variant.name,
        "converted the checkpoint to ONNX"
    );
    Ok((onnx, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::tests::{Value, decode};

    /// Field `n` of a decoded message, which must be length-delimited.
    fn sub(fields: &[(u32, Value)], n: u32) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|(f, _)| *f == n)
            .map(|(_, v)| match v {
                Value::Bytes(b) => b.clone(),
                other => panic!("field {n} is {other:?}"),
            })
            .collect()
    }

    /// Builds a synthetic Lite0 checkpoint file and converts it end to end,
    /// then checks the ModelProto header fields through an independent decoder.
    #[test]
    fn converts_synthetic_checkpoint_end_to_end() {
        let sd = efficientnet::tests::synthetic_state_dict();
        let fixture = torch::tests::Fixture {
            tensors: sd
                .iter()
                .map(|(k, t)| {
                    let mut stride = vec![1; t.shape.len()];
                    for d in (0..t.shape.len().saturating_sub(1)).rev() {
                        stride[d] = stride[d + 1] * t.shape[d + 1];
                    }
                    torch::tests::FixtureTensor::new(k, &t.shape, &stride, 0, k)
                })
                .collect(),
            storages: sd
                .iter()
                .map(|(k, t)| (k.clone(), t.data.clone()))
                .collect(),
        };
        let bytes = fixture.to_bytes();
        assert_eq!(read_legacy_checkpoint(&bytes).unwrap(), sd);

        let (model, report) = efficientnet_lite_to_onnx(&bytes, &LITE0).unwrap();
        assert_eq!(report.nodes, 94);
        assert_eq!(report.onnx_bytes, model.len());

        let top = decode(&model);
        assert_eq!(top[0], (1, Value::Varint(8)), "ir_version");
        assert_eq!(top[1], (2, Value::Bytes(b"imgclass".to_vec())));
        let opsets = sub(&top, 8);
        assert_eq!(opsets.len(), 1);
        assert_eq!(
            decode(&opsets[0]),
            [(1, Value::Bytes(vec![])), (2, Value::Varint(13))]
        );
        let graph = decode(&sub(&top, 7)[0]);
        assert_eq!(sub(&graph, 1).len(), 94, "nodes");
        assert_eq!(sub(&graph, 5).len(), 2 + 49 * 2 + 2, "initializers");
        let input = decode(&sub(&graph, 11)[0]);
        assert_eq!(input[0], (1, Value::Bytes(b"input".to_vec())));
        let output = decode(&sub(&graph, 12)[0]);
        assert_eq!(output[0], (1, Value::Bytes(b"logits".to_vec())));
    }
}
