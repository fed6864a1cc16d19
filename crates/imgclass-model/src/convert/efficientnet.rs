//! Builds the EfficientNet-Lite inference graph (Lite0, Lite1, Lite2) from
//! a state dict.
//!
//! The architecture follows Google's Lite rules (see DESIGN.md, "The
//! model"): B0's stage table scaled by a width and a depth multiplier, with
//! the stem (32) and head (1280) fixed and the repeats of the first and last
//! stages not scaled. Every tensor's shape is derived from those rules and
//! checked against the checkpoint; what shapes cannot say (strides, input
//! size) comes from the variant. A different model (B0 with squeeze-excite,
//! another Lite size) is rejected with a precise error — naming the Lite
//! variant the shapes do match — instead of producing a silently wrong graph.
//!
//! BatchNorm is folded into the preceding convolution, leaving only
//! Conv/Clip/Add/GlobalAveragePool/Flatten/Gemm — ops every engine (ONNX
//! Runtime, tract) runs well, with no BN numerics left to disagree on.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConvertError, Tensor};
use crate::onnx::{Attribute, Dim, FLOAT, Graph, Model, Node, TensorData, ValueInfo};

/// The TF checkpoint's BatchNorm epsilon. Not PyTorch's default 1e-5: some
/// running variances are exactly 0, where the difference is large.
pub const BN_EPS: f64 = 1e-3;
const IN_CHANNELS: usize = 3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
const NUM_CLASSES: usize = 1000;

pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";
const BATCH_DIM: &str = "batch";
const RELU6_MIN: &str = "relu6_min";
const RELU6_MAX: &str = "relu6_max";

/// One stage of MBConv blocks: (repeats, kernel, stride, expand ratio, output
/// channels): B0's table, which Lite0 keeps at width/depth multiplier 1.0.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// The expected shape of one MBConv block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub expand: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl BlockSpec {
    fn hidden(&self) -> usize {
        self.in_channels * self.expand
    }

    /// Identity shortcut only where the shapes allow it.
    fn residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

/// One member of the family: Google's (width, depth) multipliers and the
/// input resolution it was trained at (SAME padding depends on it, so the
/// graph fixes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteVariant {
    pub name: &'static str,
    /// As written in the ONNX file's description (Lite0's is unchanged
    /// since the first converter, so existing conversions stay identical).
    pub title: &'static str,
    pub width: f64,
    pub depth: f64,
    pub image_size: usize,
}

pub const LITE0: LiteVariant = LiteVariant {
    name: "efficientnet-lite0",
    title: "EfficientNet-Lite0",
    width: 1.0,
    depth: 1.0,
    image_size: 224,
};
pub const LITE1: LiteVariant = LiteVariant {
    name: "efficientnet-lite1",
    title: "EfficientNet-Lite1",
    width: 1.0,
    depth: 1.1,
    image_size: 240,
};
pub const LITE2: LiteVariant = LiteVariant {
    name: "efficientnet-lite2",
    title: "EfficientNet-Lite2",
    width: 1.1,
    depth: 1.2,
    image_size: 260,
};
/// The variants the converter knows.
pub const VARIANTS: [LiteVariant; 3] = [LITE0, LITE1, LITE2];

/// Google's `round_filters`: scale, round to a multiple of 8, never more
/// than 10% below the scaled value.
pub fn round_filters(filters: usize, width: f64) -> usize {
    const DIVISOR: usize = 8;
    if width == 1.0 {
        return filters;
    }
    let scaled = filters as f64 * width;
    let mut rounded = DIVISOR.max((scaled + DIVISOR as f64 / 2.0) as usize / DIVISOR * DIVISOR);
    if (rounded as f64) < 0.9 * scaled {
        rounded += DIVISOR;
    }
    rounded
}

/// The MBConv blocks of a variant: only a stage's first block strides and
/// changes channels; Lite keeps the first and last stages' repeats.
pub fn lite_blocks(v: &LiteVariant) -> Vec<BlockSpec> {
    let mut blocks = Vec::new();
    let mut in_channels = STEM_CHANNELS;
    for (i, (repeats, kernel, stride, expand, out)) in STAGES.into_iter().enumerate() {
        let repeats = if i == 0 || i == STAGES.len() - 1 {
            repeats
        } else {
            (v.depth * repeats as f64).ceil() as usize
        };
        let out = round_filters(out, v.width);
        for r in 0..repeats {
            blocks.push(BlockSpec {
                in_channels,
                out_channels: out,
                expand,
                kernel,
                stride: if r == 0 { stride } else { 1 },
            });
            in_channels = out;
        }
    }
    blocks
}

/// TF "SAME" padding along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamePad {
    pub output: usize,
    pub before: usize,
    pub after: usize,
}

/// out = ceil(in/s); total = max((out−1)·s + k − in, 0); the odd pixel goes
/// after (bottom/right), unlike PyTorch's symmetric padding — this is what
/// makes the stride-2 layers match the TF-trained weights.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> SamePad {
    let output = input.div_ceil(stride);
    let total = (output.saturating_sub(1) * stride + kernel).saturating_sub(input);
    SamePad {
        output,
        before: total / 2,
        after: total - total / 2,
    }
}

/// BatchNorm parameters for `C` channels.
pub struct BatchNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
}

/// Folds BN into a bias-free conv whose weight is `[C, …]` row-major:
/// w' = w·γ/√(var+ε), b' = β − mean·γ/√(var+ε). Computed in f64 and rounded
/// once, so folding adds no error beyond the final f32 rounding.
pub fn fold_batch_norm(
    weight: &[f32],
    bn: &BatchNorm<'_>,
    eps: f64,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let channels = bn.gamma.len();
    if channels == 0
        || [bn.beta.len(), bn.mean.len(), bn.var.len()]
            .iter()
            .any(|&n| n != channels)
        || !weight.len().is_multiple_of(channels)
    {
        return Err(format!(
            "batch norm of {channels} channels does not fit a weight of {} elements",
            weight.len()
        ));
    }
    let per_channel = weight.len() / channels;
    let mut folded = Vec::with_capacity(weight.len());
    let mut bias = Vec::with_capacity(channels);
    for c in 0..channels {
        let denom = f64::from(bn.var[c]) + eps;
        let scale = f64::from(bn.gamma[c]) / denom.sqrt();
        let usable = denom > 0.0 && scale.is_finite(); // false for NaN too
        if !usable {
            return Err(format!(
                "channel {c}: variance {} with gamma {} gives a non-finite scale",
                bn.var[c], bn.gamma[c]
            ));
        }
        let w = &weight[c * per_channel..(c + 1) * per_channel];
        folded.extend(w.iter().map(|&x| (f64::from(x) * scale) as f32));
        bias.push((f64::from(bn.beta[c]) - f64::from(bn.mean[c]) * scale) as f32);
    }
    Ok((folded, bias))
}

/// A conv layer as the architecture expects it.
#[derive(Debug, Clone, Copy)]
struct ConvSpec {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    depthwise: bool,
}

/// The finished graph plus counts for the report.
pub struct Built {
    pub model: Model,
    pub parameters: usize,
    pub nodes: usize,
}

/// True when the checkpoint's block count and block shapes are those of `v`.
fn shapes_match(tensors: &BTreeMap<String, Tensor>, v: &LiteVariant) -> bool {
    let blocks = lite_blocks(v);
    let shape = |name: &str| tensors.get(name).map(|t| t.shape.as_slice());
    blocks.iter().enumerate().all(|(i, b)| {
        shape(&format!("_blocks.{i}._depthwise_conv.weight"))
            == Some(&[b.hidden(), 1, b.kernel, b.kernel][..])
            && shape(&format!("_blocks.{i}._project_conv.weight"))
                == Some(&[b.out_channels, b.hidden(), 1, 1][..])
    }) && shape(&format!("_blocks.{}._depthwise_conv.weight", blocks.len())).is_none()
}

/// The Lite variant whose block structure the checkpoint's shapes match.
pub fn detect_variant(tensors: &BTreeMap<String, Tensor>) -> Option<LiteVariant> {
    VARIANTS.into_iter().find(|v| shapes_match(tensors, v))
}

/// Builds the ONNX model (opset 13, IR 8) of variant `v` from its state dict.
pub fn build(tensors: &BTreeMap<String, Tensor>, v: &LiteVariant) -> Result<Built, ConvertError> {
    if !shapes_match(tensors, v)
        && let Some(other) = detect_variant(tensors)
    {
        return Err(ConvertError::Unsupported(format!(
            "this checkpoint is {}, not {}",
            other.name, v.name
        )));
    }
    let blocks = lite_blocks(v);
    let image_size = v.image_size;
    let mut b = Builder {
        tensors,
        used: BTreeSet::new(),
        graph: Graph::default(),
        parameters: 0,
    };
    // ReLU6 bounds are inputs since opset 11; shared by every Clip.
    b.graph
        .initializers
        .push(TensorData::from_f32(RELU6_MIN, Vec::new(), &[0.0]));
    b.graph
        .initializers
        .push(TensorData::from_f32(RELU6_MAX, Vec::new(), &[6.0]));

    let stem = ConvSpec {
        in_channels: IN_CHANNELS,
        out_channels: STEM_CHANNELS,
        kernel: 3,
        stride: 2,
        depthwise: false,
    };
    let (mut x, mut hw) = b.conv_bn(
        INPUT_NAME,
        image_size,
        "_conv_stem",
        "_bn0",
        "stem",
        stem,
        true,
    )?;

    for (i, blk) in blocks.iter().enumerate() {
        let p = format!("_blocks.{i}");
        let block_input = x.clone();
        if blk.expand != 1 {
            let spec = ConvSpec {
                in_channels: blk.in_channels,
                out_channels: blk.hidden(),
                kernel: 1,
                stride: 1,
                depthwise: false,
            };
            (x, hw) = b.conv_bn(
                &x,
                hw,
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
                &format!("blocks.{i}.expand"),
                spec,
                true,
            )?;
        } else {
            b.expect_absent(&format!("{p}._expand_conv.weight"))?;
        }
        let spec = ConvSpec {
            in_channels: blk.hidden(),
            out_channels: blk.hidden(),
            kernel: blk.kernel,
            stride: blk.stride,
            depthwise: true,
        };
        (x, hw) = b.conv_bn(
            &x,
            hw,
            &format!("{p}._depthwise_conv"),
            &format!("{p}._bn1"),
            &format!("blocks.{i}.depthwise"),
            spec,
            true,
        )?;
        let spec = ConvSpec {
            in_channels: blk.hidden(),
            out_channels: blk.out_channels,
            kernel: 1,
            stride: 1,
            depthwise: false,
        };
        (x, hw) = b.conv_bn(
            &x,
            hw,
            &format!("{p}._project_conv"),
            &format!("{p}._bn2"),
            &format!("blocks.{i}.project"),
            spec,
            false,
        )?;
        if blk.residual() {
            let out = format!("blocks.{i}.add");
            b.node("Add", &out, &[&x, &block_input], Vec::new());
            x = out;
        }
    }
    b.expect_absent(&format!("_blocks.{}._depthwise_conv.weight", blocks.len()))?;

    let head = ConvSpec {
        in_channels: blocks[blocks.len() - 1].out_channels,
        out_channels: HEAD_CHANNELS,
        kernel: 1,
        stride: 1,
        depthwise: false,
    };
    (x, _) = b.conv_bn(&x, hw, "_conv_head", "_bn1", "head", head, true)?;
    b.node("GlobalAveragePool", "pool", &[&x], Vec::new());
    b.node(
        "Flatten",
        "flatten",
        &["pool"],
        vec![Attribute::Int("axis".into(), 1)],
    );
    let fc_w = b.tensor("_fc.weight", &[NUM_CLASSES, HEAD_CHANNELS])?;
    let fc_b = b.tensor("_fc.bias", &[NUM_CLASSES])?;
    b.initializer("_fc.weight", &[NUM_CLASSES, HEAD_CHANNELS], &fc_w.data);
    b.initializer("_fc.bias", &[NUM_CLASSES], &fc_b.data);
    b.node(
        "Gemm",
        OUTPUT_NAME,
        &["flatten", "_fc.weight", "_fc.bias"],
        vec![Attribute::Int("transB".into(), 1)],
    );
    b.check_all_used()?;

    let parameters = b.parameters;
    let mut graph = b.graph;
    graph.name = v.name.replace('-', "_");
    graph.doc_string = format!(
        "{} (ImageNet, {NUM_CLASSES} classes) converted from the PyTorch \
         checkpoint. BatchNorm folded into the convolutions (eps {BN_EPS}), TF SAME padding. \
         Input NCHW float32 RGB {image_size}x{image_size}, normalised as (x - 127) / 128.",
        v.title
    );
    graph.inputs.push(ValueInfo {
        name: INPUT_NAME.into(),
        elem_type: FLOAT,
        dims: Some(vec![
            Dim::Param(BATCH_DIM.into()),
            Dim::Value(IN_CHANNELS as i64),
            Dim::Value(image_size as i64),
            Dim::Value(image_size as i64),
        ]),
    });
    graph.outputs.push(ValueInfo {
        name: OUTPUT_NAME.into(),
        elem_type: FLOAT,
        dims: Some(vec![
            Dim::Param(BATCH_DIM.into()),
            Dim::Value(NUM_CLASSES as i64),
        ]),
    });
    let nodes = graph.nodes.len();
    Ok(Built {
        model: Model {
            ir_version: 8,
            producer_name: "imgclass".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph,
            opset_imports: vec![(String::new(), 13)],
        },
        parameters,
        nodes,
    })
}

struct Builder<'a> {
    tensors: &'a BTreeMap<String, Tensor>,
    used: BTreeSet<&'a str>,
    graph: Graph,
    parameters: usize,
}

impl<'a> Builder<'a> {
    /// Fetches a checkpoint tensor, insisting on its exact shape.
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<&'a Tensor, ConvertError> {
        let tensors = self.tensors;
        let (key, t) = tensors
            .get_key_value(name)
            .ok_or_else(|| ConvertError::MissingTensor(name.to_owned()))?;
        if t.shape != shape {
            return Err(ConvertError::Shape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        if t.data.len() != shape.iter().product::<usize>() {
            return Err(ConvertError::Format(format!(
                "tensor `{name}` has {} values for shape {shape:?}",
                t.data.len()
            )));
        }
        self.used.insert(key.as_str());
        Ok(t)
    }

    /// Lite has no expansion in block 0 and a fixed number of blocks; a
    /// tensor here means a different architecture.
    fn expect_absent(&self, name: &str) -> Result<(), ConvertError> {
        if self.tensors.contains_key(name) {
            return Err(ConvertError::Unsupported(format!(
                "unexpected tensor `{name}`: not the EfficientNet-Lite architecture"
            )));
        }
        Ok(())
    }

    fn initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        self.parameters += data.len();
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.graph
            .initializers
            .push(TensorData::from_f32(name, dims, data));
    }

    /// Adds a node whose single output (and node name) is `output`.
    fn node(&mut self, op: &str, output: &str, inputs: &[&str], attributes: Vec<Attribute>) {
        self.graph.nodes.push(Node {
            name: output.to_owned(),
            op_type: op.to_owned(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: vec![output.to_owned()],
            attributes,
        });
    }

    /// Conv (BN folded in) plus optional ReLU6; returns the output value
    /// name and spatial size.
    #[allow(clippy::too_many_arguments)] // each is a distinct name/shape; a struct would only rename them
    fn conv_bn(
        &mut self,
        input: &str,
        hw: usize,
        conv: &str,
        bn: &str,
        out_name: &str,
        spec: ConvSpec,
        relu6: bool,
    ) -> Result<(String, usize), ConvertError> {
        let c = spec.out_channels;
        let (in_per_group, group) = if spec.depthwise {
            (1, spec.in_channels)
        } else {
            (spec.in_channels, 1)
        };
        let w_shape = [c, in_per_group, spec.kernel, spec.kernel];
        let weight_name = format!("{conv}.weight");
        let w = self.tensor(&weight_name, &w_shape)?;
        let gamma = self.tensor(&format!("{bn}.weight"), &[c])?;
        let beta = self.tensor(&format!("{bn}.bias"), &[c])?;
        let mean = self.tensor(&format!("{bn}.running_mean"), &[c])?;
        let var = self.tensor(&format!("{bn}.running_var"), &[c])?;
        let bn_params = BatchNorm {
            gamma: &gamma.data,
            beta: &beta.data,
            mean: &mean.data,
            var: &var.data,
        };
        let (folded, bias) = fold_batch_norm(&w.data, &bn_params, BN_EPS).map_err(|reason| {
            ConvertError::InvalidValue {
                name: bn.to_owned(),
                reason,
            }
        })?;
        let bias_name = format!("{conv}.bias");
        self.initializer(&weight_name, &w_shape, &folded);
        self.initializer(&bias_name, &[c], &bias);

        let pad = same_padding(hw, spec.kernel, spec.stride);
        let (b, a) = (pad.before as i64, pad.after as i64);
        let k = spec.kernel as i64;
        let s = spec.stride as i64;
        let conv_out = if relu6 {
            format!("{out_name}.conv")
        } else {
            out_name.to_owned()
        };
        self.node(
            "Conv",
            &conv_out,
            &[input, &weight_name, &bias_name],
            vec![
                Attribute::Ints("kernel_shape".into(), vec![k, k]),
                Attribute::Ints("strides".into(), vec![s, s]),
                // ONNX order: [top, left, bottom, right]; the odd pixel goes last.
                Attribute::Ints("pads".into(), vec![b, b, a, a]),
                Attribute::Ints("dilations".into(), vec![1, 1]),
                Attribute::Int("group".into(), group as i64),
            ],
        );
        if !relu6 {
            return Ok((conv_out, pad.output));
        }
        self.node(
            "Clip",
            out_name,
            &[&conv_out, RELU6_MIN, RELU6_MAX],
            Vec::new(),
        );
        Ok((out_name.to_owned(), pad.output))
    }

    /// Every checkpoint tensor must have been consumed, except BN's
    /// `num_batches_tracked` training counters.
    fn check_all_used(&self) -> Result<(), ConvertError> {
        let unused: Vec<&str> = self
            .tensors
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k) && !k.ends_with(".num_batches_tracked"))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = unused.iter().take(5).copied().collect();
        Err(ConvertError::Unsupported(format!(
            "{} checkpoint tensors do not belong to EfficientNet-Lite (e.g. {})",
            unused.len(),
            shown.join(", ")
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tf() {
        // stride-2 3x3 on 224 pads (0,1); stride-2 5x5 on 112 pads (1,2).
        assert_eq!(
            same_padding(224, 3, 2),
            SamePad {
                output: 112,
                before: 0,
                after: 1
            }
        );
        assert_eq!(
            same_padding(112, 5, 2),
            SamePad {
                output: 56,
                before: 1,
                after: 2
            }
        );
        assert_eq!(
            same_padding(56, 3, 2),
            SamePad {
                output: 28,
                before: 0,
                after: 1
            }
        );
        // stride 1: symmetric, size kept.
        assert_eq!(
            same_padding(14, 5, 1),
            SamePad {
                output: 14,
                before: 2,
                after: 2
            }
        );
        assert_eq!(
            same_padding(7, 1, 1),
            SamePad {
                output: 7,
                before: 0,
                after: 0
            }
        );
        // odd input with stride 2: out = ceil(7/2) = 4, total = 3*2+3-7 = 2.
        assert_eq!(
            same_padding(7, 3, 2),
            SamePad {
                output: 4,
                before: 1,
                after: 1
            }
        );
        // kernel smaller than stride never pads negatively.
        assert_eq!(
            same_padding(8, 1, 2),
            SamePad {
                output: 4,
                before: 0,
                after: 0
            }
        );
    }

    #[test]
    fn lite_scaling_rules() {
        // Width 1.1 (Lite2): 16→16, 24→24, 40→48, 80→88, 112→120, 192→208, 320→352.
        let outs: Vec<usize> = STAGES.iter().map(|s| round_filters(s.4, 1.1)).collect();
        assert_eq!(outs, [16, 24, 48, 88, 120, 208, 352]);
        assert_eq!(round_filters(40, 1.0), 40);
        // Depth 1.1 and 1.2 both give 1+3+3+4+4+5+1 = 21 blocks.
        for v in [LITE1, LITE2] {
            let blocks = lite_blocks(&v);
            assert_eq!(blocks.len(), 21, "{}", v.name);
            assert_eq!(blocks[20].out_channels, round_filters(320, v.width));
            let strided: Vec<usize> = (0..21).filter(|&i| blocks[i].stride == 2).collect();
            assert_eq!(strided, [1, 4, 7, 15], "{}", v.name);
        }
    }

    #[test]
    fn block_table() {
        let blocks = lite_blocks(&LITE0);
        assert_eq!(blocks.len(), 16);
        assert_eq!(
            blocks[0],
            BlockSpec {
                in_channels: 32,
                out_channels: 16,
                expand: 1,
                kernel: 3,
                stride: 1
            }
        );
        assert_eq!(
            blocks[3],
            BlockSpec {
                in_channels: 24,
                out_channels: 40,
                expand: 6,
                kernel: 5,
                stride: 2
            }
        );
        assert_eq!(
            blocks[15],
            BlockSpec {
                in_channels: 192,
                out_channels: 320,
                expand: 6,
                kernel: 3,
                stride: 1
            }
        );
        let residual: Vec<usize> = (0..16).filter(|&i| blocks[i].residual()).collect();
        assert_eq!(residual, [2, 4, 6, 7, 9, 10, 12, 13, 14]);
    }

    #[test]
    fn batch_norm_folding() {
        // Two output channels, two weights each.
        let w = [1.0, 2.0, -1.0, 0.5];
        let bn = BatchNorm {
            gamma: &[2.0, 1.0],
            beta: &[0.5, -1.0],
            mean: &[1.0, 0.0],
            var: &[3.999, 0.0], // the second is the "variance exactly 0" case
        };
        let (fw, fb) = fold_batch_norm(&w, &bn, 1e-3).unwrap();
        // channel 0: scale = 2/sqrt(4) = 1; channel 1: scale = 1/sqrt(1e-3)
        let s1 = (1.0f64 / 1e-3f64.sqrt()) as f32;
        assert_eq!(fw[..2], [1.0, 2.0]);
        assert!((fw[2] + s1).abs() < 1e-4 && (fw[3] - 0.5 * s1).abs() < 1e-4);
        assert_eq!(fb, [0.5 - 1.0, -1.0]);
        // Folded conv == BN(conv) on an input: y = w.x, BN(y) = (y-mean)*s + beta.
        let x = [0.3f64, -0.7];
        for c in 0..2 {
            let y: f64 = (0..2).map(|j| f64::from(w[c * 2 + j]) * x[j]).sum();
            let s = f64::from(bn.gamma[c]) / (f64::from(bn.var[c]) + 1e-3).sqrt();
            let expected = (y - f64::from(bn.mean[c])) * s + f64::from(bn.beta[c]);
            let folded: f64 =
                (0..2).map(|j| f64::from(fw[c * 2 + j]) * x[j]).sum::<f64>() + f64::from(fb[c]);
            assert!(
                (expected - folded).abs() < 1e-4,
                "channel {c}: {expected} vs {folded}"
            );
        }
        let neg = BatchNorm {
            gamma: &[1.0],
            beta: &[0.0],
            mean: &[0.0],
            var: &[-1.0],
        };
        assert!(fold_batch_norm(&[1.0], &neg, 1e-3).is_err());
        let wrong = BatchNorm {
            gamma: &[1.0, 1.0],
            beta: &[0.0],
            mean: &[0.0],
            var: &[1.0],
        };
        assert!(fold_batch_norm(&[1.0, 1.0], &wrong, 1e-3).is_err());
    }

    /// A synthetic Lite0 state dict with the right names and shapes.
    pub(crate) fn synthetic_state_dict() -> BTreeMap<String, Tensor> {
        synthetic_state_dict_of(&LITE0)
    }

    /// A synthetic state dict of any variant.
    pub(crate) fn synthetic_state_dict_of(v: &LiteVariant) -> BTreeMap<String, Tensor> {
        let mut sd = BTreeMap::new();
        let mut add = |name: String, shape: Vec<usize>, fill: f32| {
            let n = shape.iter().product();
            sd.insert(
                name,
                Tensor {
                    shape,
                    data: vec![fill; n],
                },
            );
        };
        let mut conv_bn = |conv: String, bn: String, shape: [usize; 4]| {
            add(format!("{conv}.weight"), shape.to_vec(), 0.01);
            add(format!("{bn}.weight"), vec![shape[0]], 1.0);
            add(format!("{bn}.bias"), vec![shape[0]], 0.0);
            add(format!("{bn}.running_mean"), vec![shape[0]], 0.0);
            add(format!("{bn}.running_var"), vec![shape[0]], 1.0);
            add(format!("{bn}.num_batches_tracked"), vec![], 0.0);
        };
        conv_bn("_conv_stem".into(), "_bn0".into(), [32, 3, 3, 3]);
        let blocks = lite_blocks(v);
        for (i, b) in blocks.iter().enumerate() {
            let h = b.hidden();
            if b.expand != 1 {
                conv_bn(
                    format!("_blocks.{i}._expand_conv"),
                    format!("_blocks.{i}._bn0"),
                    [h, b.in_channels, 1, 1],
                );
            }
            conv_bn(
                format!("_blocks.{i}._depthwise_conv"),
                format!("_blocks.{i}._bn1"),
                [h, 1, b.kernel, b.kernel],
            );
            conv_bn(
                format!("_blocks.{i}._project_conv"),
                format!("_blocks.{i}._bn2"),
                [b.out_channels, h, 1, 1],
            );
        }
        let last = blocks[blocks.len() - 1].out_channels;
        conv_bn("_conv_head".into(), "_bn1".into(), [1280, last, 1, 1]);
        add("_fc.weight".into(), vec![1000, 1280], 0.0);
        add("_fc.bias".into(), vec![1000], 0.0);
        sd
    }

    #[test]
    fn builds_graph_from_synthetic_weights() {
        let sd = synthetic_state_dict();
        assert_eq!(sd.len(), 296, "same tensor count as the real checkpoint");
        let built = build(&sd, &LITE0).unwrap();
        // stem 2 + block0 3 + 15 blocks x 5 + 9 Adds + head 2 + pool/flatten/gemm 3
        assert_eq!(built.nodes, 94);
        let ops = |op: &str| {
            built
                .model
                .graph
                .nodes
                .iter()
                .filter(|n| n.op_type == op)
                .count()
        };
        assert_eq!((ops("Conv"), ops("Clip"), ops("Add")), (49, 33, 9));
        let weights: usize = sd
            .iter()
            .filter(|(k, _)| {
                k.ends_with("conv.weight") || k.starts_with("_conv") || k.starts_with("_fc")
            })
            .map(|(_, t)| t.data.len())
            .sum();
        // Folding adds one bias per conv output channel.
        let conv_channels: usize = sd
            .iter()
            .filter(|(k, _)| k.ends_with("running_mean"))
            .map(|(_, t)| t.data.len())
            .sum();
        assert_eq!(built.parameters, weights + conv_channels);
        // Every node input is the graph input, an initializer or an earlier output.
        let mut known: BTreeSet<String> = built
            .model
            .graph
            .initializers
            .iter()
            .map(|t| t.name.clone())
            .collect();
        known.insert(INPUT_NAME.into());
        for n in &built.model.graph.nodes {
            for i in &n.inputs {
                assert!(known.contains(i), "{} reads unknown {i}", n.name);
            }
            known.extend(n.outputs.iter().cloned());
        }
        assert_eq!(
            built.model.graph.nodes.last().unwrap().outputs,
            [OUTPUT_NAME]
        );
    }

    #[test]
    fn other_variants_build_and_are_recognised() {
        for v in VARIANTS {
            let sd = synthetic_state_dict_of(&v);
            assert_eq!(detect_variant(&sd), Some(v));
            let built = build(&sd, &v).unwrap();
            let convs = built
                .model
                .graph
                .nodes
                .iter()
                .filter(|n| n.op_type == "Conv")
                .count();
            let blocks = lite_blocks(&v).len();
            assert_eq!(convs, 2 + 3 * blocks - 1, "{}", v.name);
        }
        // A Lite1 checkpoint converted as Lite2 names what it is.
        let Err(err) = build(&synthetic_state_dict_of(&LITE1), &LITE2) else {
            panic!("a Lite1 checkpoint must not build as Lite2");
        };
        assert!(err.to_string().contains("is efficientnet-lite1"), "{err}");
    }

    #[test]
    fn rejects_missing_misshaped_and_foreign_tensors() {
        let mut sd = synthetic_state_dict();
        sd.remove("_blocks.7._bn1.running_var");
        assert!(
            matches!(build(&sd, &LITE0), Err(ConvertError::MissingTensor(n)) if n == "_blocks.7._bn1.running_var")
        );

        let mut sd = synthetic_state_dict();
        sd.insert(
            "_blocks.3._depthwise_conv.weight".into(),
            Tensor {
                shape: vec![144, 1, 3, 3],
                data: vec![0.0; 1296],
            },
        );
        assert!(
            matches!(build(&sd, &LITE0), Err(ConvertError::Shape { expected, .. }) if expected == [144, 1, 5, 5])
        );

        let mut sd = synthetic_state_dict();
        sd.insert(
            "_blocks.1._se_reduce.weight".into(),
            Tensor {
                shape: vec![4, 96, 1, 1],
                data: vec![0.0; 384],
            },
        );
        assert!(matches!(
            build(&sd, &LITE0),
            Err(ConvertError::Unsupported(_))
        ));

        let mut sd = synthetic_state_dict();
        sd.insert(
            "_blocks.0._expand_conv.weight".into(),
            Tensor {
                shape: vec![32, 32, 1, 1],
                data: vec![0.0; 1024],
            },
        );
        assert!(matches!(
            build(&sd, &LITE0),
            Err(ConvertError::Unsupported(_))
        ));

        let mut sd = synthetic_state_dict();
        sd.get_mut("_bn1.running_var").unwrap().data[5] = -1.0;
        assert!(matches!(
            build(&sd, &LITE0),
            Err(ConvertError::InvalidValue { .. })
        ));
    }
}
