//! The QDQ rewrite: which tensors get QuantizeLinear/DequantizeLinear, and
//! the rewritten graph once their ranges are known.
//!
//! Every consumer of a quantized activation reads its DequantizeLinear
//! output, so a Conv's only consumer is its QuantizeLinear — the pattern
//! ONNX Runtime fuses into QLinearConv (likewise Add → QLinearAdd).

use std::collections::{HashMap, HashSet};

use super::calibrate::Seen;
use super::hessian::{Geometry, Hessian};
use super::{Method, QuantizeError, Rounding, gptq};
use crate::onnx::{Attribute, FLOAT, Model, Node, TensorData};

/// Op types whose inputs are quantized.
const QUANTIZED_OPS: [&str; 3] = ["Conv", "Gemm", "Add"];

/// What the rewrite will do, decided from the fp32 graph alone.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Activation tensors to quantize (names in the fp32 graph), in order
    /// of first appearance.
    pub activations: Vec<String>,
    /// Indices of the nodes whose inputs are quantized, with their op.
    nodes: Vec<(usize, &'static str)>,
    /// (activation node, producer) pairs: a Relu/Clip whose range is taken
    /// over by the producer's output quantization, so it is dropped.
    pub folded: Vec<(usize, usize)>,
    /// Channels of each Conv/Gemm input: calibration measures their means
    /// for bias correction.
    input_channels: HashMap<String, usize>,
    /// (node, input, how it reads it) of each Conv/Gemm whose weights can
    /// be rounded with error feedback (`gptq`): every Gemm and 2-D Conv.
    pub readers: Vec<(usize, String, Geometry)>,
}

impl Plan {
    pub fn count(&self, op: &str) -> usize {
        self.nodes.iter().filter(|(_, o)| *o == op).count()
    }

    /// For each of [`Plan::activations`], the channels whose means
    /// calibration must measure (Conv/Gemm inputs), else `None`.
    pub fn channels(&self) -> Vec<Option<usize>> {
        self.activations
            .iter()
            .map(|t| self.input_channels.get(t).copied())
            .collect()
    }

    fn add_activation(&mut self, seen: &mut HashSet<String>, name: &str) {
        if seen.insert(name.to_string()) {
            self.activations.push(name.to_string());
        }
    }
}

fn graph_err(message: String) -> QuantizeError {
    QuantizeError::Graph(message)
}

/// The float initializer `name`, if it is one.
fn float_init<'a>(inits: &HashMap<&str, &'a TensorData>, name: &str) -> Option<&'a TensorData> {
    inits.get(name).copied().filter(|t| t.data_type == FLOAT)
}

fn int_attr(node: &Node, name: &str) -> Option<i64> {
    node.attributes.iter().find_map(|a| match a {
        Attribute::Int(n, v) if n == name => Some(*v),
        _ => None,
    })
}

/// A list attribute of `len` non-negative values (`default` each when absent).
fn usizes_attr(node: &Node, name: &str, len: usize, default: usize) -> Option<Vec<usize>> {
    let found = node.attributes.iter().find_map(|a| match a {
        Attribute::Ints(n, v) if n == name => Some(v),
        _ => None,
    });
    match found {
        None => Some(vec![default; len]),
        Some(v) if v.len() == len => v.iter().map(|&x| usize::try_from(x).ok()).collect(),
        Some(_) => None,
    }
}

/// How a 2-D Conv with weight dimensions `dims` reads its input; `None`
/// for other ranks or attributes it cannot describe.
fn conv_geometry(node: &Node, dims: &[i64]) -> Option<Geometry> {
    let [_, channels, kh, kw] = *dims else {
        return None;
    };
    let pads = usizes_attr(node, "pads", 4, 0)?;
    let strides = usizes_attr(node, "strides", 2, 1)?;
    let dilations = usizes_attr(node, "dilations", 2, 1)?;
    let kernel = [usize::try_from(kh).ok()?, usize::try_from(kw).ok()?];
    if usizes_attr(node, "kernel_shape", 2, 0)?
        .iter()
        .zip(&kernel)
        .any(|(a, b)| *a != 0 && a != b)
        || strides.contains(&0)
        || dilations.contains(&0)
        || kernel.contains(&0)
    {
        return None;
    }
    Some(Geometry::Conv {
        groups: group(node),
        channels: usize::try_from(channels).ok()?,
        kernel,
        strides: [strides[0], strides[1]],
        pads: [pads[0], pads[1], pads[2], pads[3]],
        dilations: [dilations[0], dilations[1]],
    })
}

/// Decides what to quantize.
pub(super) fn plan(model: &Model) -> Result<Plan, QuantizeError> {
    let opset = model
        .opset_imports
        .iter()
        .find(|(d, _)| d.is_empty() || d == "ai.onnx")
        .map(|(_, v)| *v)
        .unwrap_or(0);
    if opset < 13 {
        return Err(graph_err(format!(
            "opset {opset}: per-channel QuantizeLinear/DequantizeLinear need opset 13 or later"
        )));
    }
    let g = &model.graph;
    if g.inputs.len() != 1 {
        return Err(graph_err(format!(
            "{} graph inputs; one image input is expected",
            g.inputs.len()
        )));
    }
    let inits: HashMap<&str, &TensorData> = g
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for input in &n.inputs {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut plan = Plan::default();
    let mut seen = HashSet::new();
    let activation = |name: &str| -> Result<(), QuantizeError> {
        if inits.contains_key(name) {
            return Err(graph_err(format!(
                "{name} is a constant where an activation is expected"
            )));
        }
        Ok(())
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(op) = QUANTIZED_OPS.iter().copied().find(|o| *o == node.op_type) else {
            continue;
        };
        let at = || format!("{} node {:?}", node.op_type, node.name);
        match op {
            "Conv" | "Gemm" => {
                let [x, w, rest @ ..] = node.inputs.as_slice() else {
                    return Err(graph_err(format!("{} has too few inputs", at())));
                };
                activation(x)?;
                let w = float_init(&inits, w).ok_or_else(|| {
                    graph_err(format!("{}: weight {w} is not a float32 constant", at()))
                })?;
                let rank = if op == "Conv" { 3..=5 } else { 2..=2 };
                if !rank.contains(&w.dims.len()) {
                    return Err(graph_err(format!(
                        "{}: weight has dimensions {:?}",
                        at(),
                        w.dims
                    )));
                }
                if let Some(b) = rest.first().filter(|b| !b.is_empty()) {
                    let b = float_init(&inits, b).ok_or_else(|| {
                        graph_err(format!("{}: bias {b} is not a float32 constant", at()))
                    })?;
                    let channels = w.dims[weight_axis(node)?];
                    if b.dims != [channels] {
                        return Err(graph_err(format!(
                            "{}: bias has dimensions {:?}, expected [{channels}]",
                            at(),
                            b.dims
                        )));
                    }
                }
                let channels = if op == "Conv" {
                    w.dims[1] as usize * group(node)
                } else {
                    // [N, K] with transB, else [K, N]: K is the input's.
                    w.dims[1 - weight_axis(node)?] as usize
                };
                let geometry = if op == "Conv" {
                    conv_geometry(node, &w.dims)
                } else {
                    Some(Geometry::Gemm { k: channels })
                };
                if let Some(geometry) = geometry {
                    plan.readers.push((i, x.clone(), geometry));
                }
                if let Some(other) = plan.input_channels.insert(x.clone(), channels)
                    && other != channels
                {
                    return Err(graph_err(format!(
                        "{}: input {x} is read with {channels} and {other} channels",
                        at()
                    )));
                }
                plan.add_activation(&mut seen, x);
            }
            _ => {
                for x in &node.inputs {
                    activation(x)?;
                    plan.add_activation(&mut seen, x);
                }
            }
        }
        plan.nodes.push((i, op));
        let y = &node.outputs[0];
        if outputs.contains(y.as_str()) || op == "Gemm" {
            // Logits stay float: nothing downstream runs in integers.
            continue;
        }
        let folded = match consumers.get(y.as_str()).map(Vec::as_slice) {
            Some([j]) if foldable(&g.nodes[*j], &inits) && !outputs.contains(y.as_str()) => {
                Some(*j)
            }
            _ => None,
        };
        match folded {
            Some(j) => {
                plan.folded.push((j, i));
                plan.add_activation(&mut seen, &g.nodes[j].outputs[0]);
            }
            None => plan.add_activation(&mut seen, y),
        }
    }
    if plan.nodes.is_empty() {
        return Err(graph_err("no Conv, Gemm or Add node to quantize".into()));
    }
    Ok(plan)
}

/// A Conv's `group` attribute (1 when absent).
fn group(node: &Node) -> usize {
    int_attr(node, "group").unwrap_or(1).max(1) as usize
}

/// The weight axis holding output channels: 0 for Conv and for Gemm with
/// `transB = 1` ([N, K]); 1 for plain Gemm ([K, N]).
fn weight_axis(node: &Node) -> Result<usize, QuantizeError> {
    if node.op_type == "Conv" {
        return Ok(0);
    }
    if int_attr(node, "transA").unwrap_or(0) != 0 {
        return Err(graph_err(format!("Gemm {:?} has transA", node.name)));
    }
    Ok(if int_attr(node, "transB").unwrap_or(0) != 0 {
        0
    } else {
        1
    })
}

/// A Relu, or a Clip with constant bounds lo ≤ 0 ≤ hi: the uint8 range of
/// its output, which always contains 0 and lies within [lo, hi], clamps
/// exactly as it does, so the producer can be quantized straight to it.
fn foldable(node: &Node, inits: &HashMap<&str, &TensorData>) -> bool {
    match node.op_type.as_str() {
        "Relu" => true,
        "Clip" => {
            let bound = |k: usize| {
                node.inputs
                    .get(k)
                    .and_then(|n| float_init(inits, n))
                    .and_then(|t| t.f32_values())
                    .and_then(|v| (v.len() == 1).then_some(v[0]))
            };
            matches!((bound(1), bound(2)), (Some(lo), Some(hi)) if lo <= 0.0 && hi >= 0.0)
        }
        _ => false,
    }
}

/// uint8 asymmetric parameters for a range; the range is widened to
/// contain 0 so that zero (padding, ReLU) is exact.
pub(super) fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (f64::from(lo.min(0.0)), f64::from(hi.max(0.0)));
    let scale = ((hi - lo) / 255.0) as f32;
    if !(scale.is_finite() && scale > 0.0) {
        return (1.0, 0);
    }
    let zp = (-lo / f64::from(scale)).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Largest weight magnitude: full-range int8. (7-bit weights, ONNX
/// Runtime's `reduce_range`, avoid the int16 saturation of its AVX2 U8S8
/// kernels but double the weight error: measured on Lite0, weights-only
/// int7 kept the fp32 top-1 on 31/41 photos against 37/41 for int8. The
/// saturation is avoided at run time instead: see the ORT engine's
/// `quantized` hint.)
pub(super) const WEIGHT_QMAX: f32 = 127.0;

/// Empirical bias correction (Nagel et al., "Data-Free Quantization
/// Through Weight Equalization and Bias Correction", 2019, section 4.2):
/// rounding the weights shifts each output channel's mean by
/// E[(W_q − W)·x] = Σ ΔW·E[x]; subtracting that from the bias cancels it.
/// `means` are the input's channel means from calibration (the fp32
/// model's), so zero padding at borders is the only thing not modelled.
/// Returns the shift per output channel. Measured on Lite0 (weights only,
/// 41 photos): mean |Δp| 0.028 → 0.011, top-1 kept on 37 → 40.
/// (The fuller correction of that paper — run the quantized model, weights
/// and activations, and take each Conv/Gemm output's measured mean shift
/// off its bias — was built and dropped: on Zen 3, correcting every layer
/// at once kept the fp32 top-1 of Lite0 on 37/48 photos and diverged when
/// repeated; correcting layer by layer in order kept 44/48, against 46/48
/// for this weights-only correction, at ~10× the quantization time.)
pub(super) fn bias_shift(
    w: &[f32],
    q: &[i8],
    scales: &[f32],
    dims: &[i64],
    axis: usize,
    groups: usize,
    means: &[f64],
) -> Result<Vec<f64>, QuantizeError> {
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let delta = |i: usize, c: usize| f64::from(q[i]) * f64::from(scales[c]) - f64::from(w[i]);
    let mismatch = |want: usize| {
        graph_err(format!(
            "bias correction: {} input channel means for a weight of {dims:?} (needs {want})",
            means.len()
        ))
    };
    if axis == 1 {
        // Gemm without transB: [K, N].
        let (k, n) = (dims[0], dims[1]);
        if means.len() != k {
            return Err(mismatch(k));
        }
        let mut shift = vec![0f64; n];
        for (kk, m) in means.iter().enumerate() {
            for (o, s) in shift.iter_mut().enumerate() {
                *s += delta(kk * n + o, o) * m;
            }
        }
        return Ok(shift);
    }
    // [O, I/groups, k…] (Conv) or [N, K] (Gemm with transB).
    let (out, per_group) = (dims[0], dims[1]);
    let kernel: usize = dims[2..].iter().product();
    if means.len() != per_group * groups || !out.is_multiple_of(groups) {
        return Err(mismatch(per_group * groups));
    }
    let outs_per_group = out / groups;
    Ok((0..out)
        .map(|o| {
            let first = (o / outs_per_group) * per_group;
            (0..per_group)
                .map(|j| {
                    let base = (o * per_group + j) * kernel;
                    let d: f64 = (base..base + kernel).map(|i| delta(i, o)).sum();
                    d * means[first + j]
                })
                .sum()
        })
        .collect())
}

/// Largest |int32 bias| the rewrite emits: half of i32's range, so that the
/// integer kernels' int32 accumulator (bias + Σ x·w) has room left.
const BIAS_QMAX: f64 = (1u32 << 30) as f64;

/// The smallest weight scale per output channel at which its bias fits
/// in [`BIAS_QMAX`] steps of s_x · s_w. A channel whose weights are all
/// but zero while its bias is not (a "dead" channel the folded
/// BatchNorm left as a constant) would otherwise get a bias step so small
/// that the int32 saturates: Lite1's stem has one whose bias of −4.9 came
/// out as −0.02. Raising such a channel's weight scale costs nothing — its
/// weights round to 0 at either scale, or to a few steps of a scale still
/// far below the live channels'. Measured before the floor: 80, 109 and
/// 143 saturated channels in Lite0/1/2. None changed a result (top-1 and
/// every probability on the 48 test photos equal to 0.001): all were
/// constant channels with a negative bias, which the ReLU6 after them
/// zeroes either way — but a positive one would have been lost.
pub(super) fn bias_scale_floor(bias: &[f32], s_x: f32) -> Vec<f32> {
    bias.iter()
        .map(|&b| (f64::from(b.abs()) / (f64::from(s_x) * BIAS_QMAX)) as f32)
        .collect()
}

/// Symmetric per-channel int8 quantization along `axis`: scale[c] =
/// max|w_c| / [`WEIGHT_QMAX`] (1 for an all-zero channel), q = round(w / scale).
/// (A per-channel least-squares scale, searched over 0.80–1.00 of that,
/// was measured and dropped: on Zen 3 it kept the fp32 top-1 of Lite1 on
/// 44/48 photos against 45/48 for max|w|, Lite0 unchanged at 46/48.)
///
/// `floor` (empty, or one per channel) is the smallest scale each channel
/// may have: see [`bias_scale_floor`].
pub(super) fn quantize_weights(
    data: &[f32],
    dims: &[i64],
    axis: usize,
    floor: &[f32],
) -> (Vec<i8>, Vec<f32>) {
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut amax = vec![0f32; channels];
    for (i, &w) in data.iter().enumerate() {
        let c = channel_of(i);
        amax[c] = amax[c].max(w.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            let s = if m > 0.0 { m / WEIGHT_QMAX } else { 1.0 };
            floor.get(c).map_or(s, |&f| s.max(f))
        })
        .collect();
    let q = data
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            (w / scales[channel_of(i)])
                .round_ties_even()
                .clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

fn q_name(t: &str) -> String {
    format!("{t}_quantized")
}
fn dq_name(t: &str) -> String {
    format!("{t}_dequantized")
}
fn scale_name(t: &str) -> String {
    format!("{t}_scale")
}
fn zp_name(t: &str) -> String {
    format!("{t}_zero_point")
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String, axis: Option<i64>) -> Node {
    Node {
        name,
        op_type: op.into(),
        inputs,
        outputs: vec![output],
        attributes: axis
            .map(|a| vec![Attribute::Int("axis".into(), a)])
            .unwrap_or_default(),
    }
}

/// QuantizeLinear + DequantizeLinear of activation `t`.
fn qdq_pair(t: &str) -> [Node; 2] {
    let params = || vec![scale_name(t), zp_name(t)];
    let mut q_in = vec![t.to_string()];
    q_in.extend(params());
    let mut dq_in = vec![q_name(t)];
    dq_in.extend(params());
    [
        node(
            "QuantizeLinear",
            format!("{t}_QuantizeLinear"),
            q_in,
            q_name(t),
            None,
        ),
        node(
            "DequantizeLinear",
            format!("{t}_DequantizeLinear"),
            dq_in,
            dq_name(t),
            None,
        ),
    ]
}

/// Builds the QDQ model from the fp32 one, the plan and what calibration
/// saw of each planned activation.
/// `hessians` are those of [`Plan::readers`], by node (none for
/// [`Rounding::Nearest`]): the weights they describe are rounded with
/// error feedback. Returns the model and how many weights were so rounded.
pub(super) fn rewrite(
    model: &Model,
    plan: &Plan,
    seen: &[Seen],
    hessians: &HashMap<usize, Hessian>,
    (method, rounding): (Method, Rounding),
    photos: usize,
) -> Result<(Model, usize), QuantizeError> {
    let g = &model.graph;
    let inits: HashMap<&str, &TensorData> = g
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let params: HashMap<&str, (f32, u8)> = plan
        .activations
        .iter()
        .zip(seen)
        .map(|(t, s)| (t.as_str(), activation_params(s.range.0, s.range.1)))
        .collect();
    let means: HashMap<&str, &[f64]> = plan
        .activations
        .iter()
        .zip(seen)
        .filter_map(|(t, s)| Some((t.as_str(), s.channel_means.as_deref()?)))
        .collect();
    let quantized: HashSet<&str> = plan.activations.iter().map(String::as_str).collect();
    let dropped: HashMap<usize, usize> = plan.folded.iter().copied().collect();
    // Producer index → the folded activation's output it now writes.
    let renamed: HashMap<usize, &str> = plan
        .folded
        .iter()
        .map(|&(act, producer)| (producer, g.nodes[act].outputs[0].as_str()))
        .collect();
    let planned: HashMap<usize, &str> = plan.nodes.iter().copied().collect();

    let mut nodes = Vec::new();
    let mut rounded = 0;
    // Constants replacing a float weight/bias, keyed by its name.
    let mut replaced: HashMap<String, Vec<TensorData>> = HashMap::new();
    let input = &g.inputs[0].name;
    if quantized.contains(input.as_str()) {
        nodes.extend(qdq_pair(input));
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if dropped.contains_key(&i) {
            continue;
        }
        let mut n = n.clone();
        for x in n.inputs.iter_mut() {
            if quantized.contains(x.as_str()) {
                *x = dq_name(x);
            }
        }
        if let Some(op) = planned.get(&i)
            && *op != "Add"
        {
            let x = g.nodes[i].inputs[0].as_str();
            let s_x = params[x].0;
            let axis = weight_axis(&n)?;
            let w = inits[n.inputs[1].as_str()];
            let w_values = w.f32_values().expect("checked float");
            let float_bias = n
                .inputs
                .get(2)
                .filter(|b| !b.is_empty())
                .map(|b| inits[b.as_str()].f32_values().expect("checked float"));
            let floor = float_bias
                .as_deref()
                .map(|b| bias_scale_floor(b, s_x))
                .unwrap_or_default();
            let (nearest, s_w) = quantize_weights(&w_values, &w.dims, axis, &floor);
            let fed_back = hessians
                .get(&i)
                .and_then(|h| gptq::round_weights(&w_values, &w.dims, axis, &s_w, h, &nearest));
            rounded += usize::from(fed_back.is_some());
            let q = fed_back.unwrap_or(nearest);
            let channels = s_w.len() as i64;
            let groups = if *op == "Conv" { group(&n) } else { 1 };
            let shift = means
                .get(x)
                .map(|m| bias_shift(&w_values, &q, &s_w, &w.dims, axis, groups, m))
                .transpose()?;
            replaced.insert(
                w.name.clone(),
                vec![
                    TensorData::from_i8(q_name(&w.name), w.dims.clone(), &q),
                    TensorData::from_f32(scale_name(&w.name), vec![channels], &s_w),
                    TensorData::from_i8(zp_name(&w.name), vec![channels], &vec![0; s_w.len()]),
                ],
            );
            nodes.push(node(
                "DequantizeLinear",
                format!("{}_DequantizeLinear", w.name),
                vec![q_name(&w.name), scale_name(&w.name), zp_name(&w.name)],
                dq_name(&w.name),
                Some(axis as i64),
            ));
            n.inputs[1] = dq_name(&w.name);
            let bias = match float_bias.zip(n.inputs.get(2).cloned()) {
                Some(found) => Some(found),
                // A node without a bias gets one to carry the correction.
                None if shift.is_some() => {
                    let b = format!("{}_bias", w.name);
                    n.inputs.resize(2, String::new());
                    n.inputs.push(b.clone());
                    Some((vec![0.0; s_w.len()], b))
                }
                None => None,
            };
            if let Some((mut bias, b)) = bias {
                if let Some(shift) = &shift {
                    for (v, d) in bias.iter_mut().zip(shift) {
                        *v = (f64::from(*v) - d) as f32;
                    }
                }
                let s_b: Vec<f32> = s_w.iter().map(|s| s * s_x).collect();
                let q_b: Vec<i32> = bias
                    .iter()
                    .zip(&s_b)
                    .map(|(v, s)| {
                        (f64::from(*v) / f64::from(*s))
                            .round_ties_even()
                            .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                            as i32
                    })
                    .collect();
                replaced.insert(
                    b.clone(),
                    vec![
                        TensorData::from_i32(q_name(&b), vec![channels], &q_b),
                        TensorData::from_f32(scale_name(&b), vec![channels], &s_b),
                        TensorData::from_i32(zp_name(&b), vec![channels], &vec![0; s_b.len()]),
                    ],
                );
                nodes.push(node(
                    "DequantizeLinear",
                    format!("{b}_DequantizeLinear"),
                    vec![q_name(&b), scale_name(&b), zp_name(&b)],
                    dq_name(&b),
                    Some(0),
                ));
                n.inputs[2] = dq_name(&b);
            }
        }
        if let Some(out) = renamed.get(&i) {
            n.outputs[0] = out.to_string();
        }
        let produced: Vec<String> = n
            .outputs
            .iter()
            .filter(|o| quantized.contains(o.as_str()))
            .cloned()
            .collect();
        nodes.push(n);
        for t in produced {
            nodes.extend(qdq_pair(&t));
        }
    }

    let used: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let mut initializers = Vec::new();
    for t in &g.initializers {
        match replaced.remove(&t.name) {
            Some(new) => initializers.extend(new),
            None if used.contains(t.name.as_str()) => initializers.push(t.clone()),
            None => {} // e.g. ReLU6 bounds once every Clip is folded
        }
    }
    // Biases added to carry a correction, in name order (deterministic).
    let mut added: Vec<(String, Vec<TensorData>)> = replaced.into_iter().collect();
    added.sort_by(|a, b| a.0.cmp(&b.0));
    initializers.extend(added.into_iter().flat_map(|(_, t)| t));
    for t in &plan.activations {
        let (s, zp) = params[t.as_str()];
        initializers.push(TensorData::from_f32(scale_name(t), vec![], &[s]));
        initializers.push(TensorData::from_u8(zp_name(t), vec![], &[zp]));
    }

    let mut out = model.clone();
    out.producer_name = "imgclass".into();
    out.producer_version = env!("CARGO_PKG_VERSION").into();
    out.graph.nodes = nodes;
    out.graph.initializers = initializers;
    out.graph.doc_string = format!(
        "{} Quantized by imgclass: static QDQ, per-channel symmetric int8 weights, int32 biases, \
         uint8 activations ({method} calibration on {photos} photos, {rounding} weight rounding).",
        g.doc_string
    )
    .trim_start()
    .to_string();
    Ok((out, rounded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, Graph, ValueInfo};

    #[test]
    fn activation_params_contain_zero() {
        assert_eq!(activation_params(0.0, 6.0), (6.0 / 255.0, 0));
        let (s, zp) = activation_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(zp, 64); // round(1 / (4/255)) = round(63.75)
        // A range entirely above zero is widened down to zero.
        assert_eq!(activation_params(2.0, 5.1).1, 0);
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn a_dead_channel_keeps_its_bias() {
        // Channel 1's weights are all but zero and its bias is not (a
        // constant channel): at max|w| / 127 its bias step s_x · s_w would
        // need ~6e11 steps, far beyond int32.
        let (w, dims) = ([0.5, -0.25, 1e-9, -2e-9], [2, 2, 1, 1]);
        let (bias, s_x) = ([0.1f32, -4.9], 1.0 / 128.0);
        let floor = bias_scale_floor(&bias, s_x);
        let (q, s_w) = quantize_weights(&w, &dims, 0, &floor);
        assert_eq!(s_w[0], 0.5 / 127.0, "a live channel keeps max|w| / 127");
        assert_eq!(&q[..2], [127, -64]);
        assert_eq!(&q[2..], [0, 0], "a dead channel's weights stay 0");
        for (b, s) in bias.iter().zip(&s_w) {
            let step = f64::from(s_x) * f64::from(*s);
            let steps = (f64::from(*b) / step).round();
            assert!(steps.abs() <= BIAS_QMAX, "{b}: {steps} steps");
            assert!((steps * step - f64::from(*b)).abs() <= step, "{b}");
        }
        // Without the floor the dead channel's bias does not fit.
        let (_, s0) = quantize_weights(&w, &dims, 0, &[]);
        assert!(4.9 / (f64::from(s_x) * f64::from(s0[1])) > f64::from(i32::MAX));
    }

    #[test]
    fn per_channel_weights_are_symmetric() {
        // Two output channels of 2 weights each (axis 0), then axis 1 of a 2x2.
        let (q, s) = quantize_weights(&[1.0, -0.5, 0.0, 0.0], &[2, 2], 0, &[]);
        assert_eq!(s, [1.0 / 127.0, 1.0]);
        assert_eq!(q, [127, -64, 0, 0]); // -63.5 rounds to even
        let (q, s) = quantize_weights(&[1.0, 2.0, -1.0, 3.0], &[2, 2], 1, &[]);
        assert_eq!(s, [1.0 / 127.0, 3.0 / 127.0]);
        assert_eq!(q, [127, 85, -127, 127]); // 2 / (3/127) = 84.67
    }

    /// For an input equal to its channel means everywhere, a layer with
    /// quantized weights and the corrected bias gives exactly the float
    /// layer's output: what bias correction promises, on average.
    #[test]
    fn bias_correction_restores_the_mean_output() {
        let dot = |w: &[f64], x: &[f64]| w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
        /// (weight, dims, axis, groups, input channel means)
        type Case = (Vec<f32>, Vec<i64>, usize, usize, Vec<f64>);
        let cases: [Case; 3] = [
            // Conv [2, 3, 1, 2], one group.
            (
                vec![
                    0.11, -0.52, 0.3, 0.07, 0.9, -0.33, 0.2, 0.21, -0.8, 0.013, 0.5, 0.61,
                ],
                vec![2, 3, 1, 2],
                0,
                1,
                vec![1.5, -0.25, 3.0],
            ),
            // Depthwise [2, 1, 3, 1]: each output reads its own channel.
            (
                vec![0.3, -0.71, 0.05, 1.3, 0.02, -0.4],
                vec![2, 1, 3, 1],
                0,
                2,
                vec![2.0, -1.0],
            ),
            // Gemm without transB [K=3, N=2].
            (
                vec![0.3, -0.7, 0.123, 0.9, -0.05, 0.44],
                vec![3, 2],
                1,
                1,
                vec![0.5, 1.0, -2.0],
            ),
        ];
        for (w, dims, axis, groups, means) in cases {
            let (q, s) = quantize_weights(&w, &dims, axis, &[]);
            let shift = bias_shift(&w, &q, &s, &dims, axis, groups, &means).unwrap();
            let outs = dims[axis] as usize;
            for o in 0..outs {
                // The weights and input values output o reads.
                let (wf, wq, x): (Vec<f64>, Vec<f64>, Vec<f64>) = if axis == 1 {
                    let n = dims[1] as usize;
                    (0..dims[0] as usize)
                        .map(|k| {
                            let i = k * n + o;
                            (f64::from(w[i]), f64::from(q[i]) * f64::from(s[o]), means[k])
                        })
                        .fold((vec![], vec![], vec![]), |mut acc, (a, b, c)| {
                            acc.0.push(a);
                            acc.1.push(b);
                            acc.2.push(c);
                            acc
                        })
                } else {
                    let per = dims[1] as usize;
                    let kernel: usize = dims[2..].iter().map(|&d| d as usize).product();
                    let first = (o / (outs / groups)) * per;
                    (0..per * kernel)
                        .map(|j| {
                            let i = o * per * kernel + j;
                            let c = first + j / kernel;
                            (f64::from(w[i]), f64::from(q[i]) * f64::from(s[o]), means[c])
                        })
                        .fold((vec![], vec![], vec![]), |mut acc, (a, b, c)| {
                            acc.0.push(a);
                            acc.1.push(b);
                            acc.2.push(c);
                            acc
                        })
                };
                let float = dot(&wf, &x);
                let corrected = dot(&wq, &x) - shift[o];
                assert!(
                    (float - corrected).abs() < 1e-12,
                    "{dims:?} output {o}: {float} vs {corrected}"
                );
                assert!(shift[o] != 0.0, "rounding moved nothing? {dims:?} {o}");
            }
        }
        let (q, s) = quantize_weights(&[1.0, 2.0], &[1, 2, 1, 1], 0, &[]);
        assert!(bias_shift(&[1.0, 2.0], &q, &s, &[1, 2, 1, 1], 0, 1, &[1.0]).is_err());
    }

    /// The rewrite with nearest rounding, min-max ranges and no Hessians.
    fn rewrite_nearest(m: &Model, p: &Plan, seen: &[Seen]) -> Model {
        rewrite(
            m,
            p,
            seen,
            &HashMap::new(),
            (Method::MinMax, Rounding::Nearest),
            3,
        )
        .unwrap()
        .0
    }

    /// x → Conv → Clip(0, 6) → Conv → Add(with first Clip) → GAP → Gemm.
    fn tiny() -> Model {
        let conv = |name: &str, x: &str, w: &str, b: &str| Node {
            name: name.into(),
            op_type: "Conv".into(),
            inputs: vec![x.into(), w.into(), b.into()],
            outputs: vec![name.into()],
            attributes: vec![Attribute::Ints("kernel_shape".into(), vec![1, 1])],
        };
        let simple = |op: &str, name: &str, inputs: &[&str]| Node {
            name: name.into(),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.into()],
            attributes: Vec::new(),
        };
        let mut gemm = simple("Gemm", "logits", &["flat", "fc.w", "fc.b"]);
        gemm.attributes.push(Attribute::Int("transB".into(), 1));
        Model {
            ir_version: 8,
            producer_name: "test".into(),
            producer_version: String::new(),
            doc_string: String::new(),
            graph: Graph {
                name: "tiny".into(),
                nodes: vec![
                    conv("c1", "x", "w1", "b1"),
                    simple("Clip", "r1", &["c1", "lo", "hi"]),
                    conv("c2", "r1", "w2", "b2"),
                    simple("Add", "sum", &["c2", "r1"]),
                    simple("GlobalAveragePool", "pool", &["sum"]),
                    simple("Flatten", "flat", &["pool"]),
                    gemm,
                ],
                initializers: vec![
                    TensorData::from_f32("lo", vec![], &[0.0]),
                    TensorData::from_f32("hi", vec![], &[6.0]),
                    TensorData::from_f32("w1", vec![2, 3, 1, 1], &[0.1, 0.2, 0.3, -1.0, 0.5, 0.25]),
                    TensorData::from_f32("b1", vec![2], &[0.5, -0.5]),
                    TensorData::from_f32("w2", vec![2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]),
                    TensorData::from_f32("b2", vec![2], &[0.0, 0.0]),
                    TensorData::from_f32("fc.w", vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                    TensorData::from_f32("fc.b", vec![3], &[0.0, 0.1, 0.2]),
                ],
                doc_string: String::new(),
                inputs: vec![ValueInfo {
                    name: "x".into(),
                    elem_type: FLOAT,
                    dims: Some(vec![
                        Dim::Param("batch".into()),
                        Dim::Value(3),
                        Dim::Value(4),
                        Dim::Value(4),
                    ]),
                }],
                outputs: vec![ValueInfo {
                    name: "logits".into(),
                    elem_type: FLOAT,
                    dims: None,
                }],
            },
            opset_imports: vec![(String::new(), 13)],
        }
    }

    #[test]
    fn plan_folds_relu6_and_keeps_logits_float() {
        let m = tiny();
        let p = plan(&m).unwrap();
        assert_eq!(p.activations, ["x", "r1", "c2", "sum", "flat"]);
        assert_eq!(p.folded, [(1, 0)]);
        assert_eq!(
            (p.count("Conv"), p.count("Gemm"), p.count("Add")),
            (2, 1, 1)
        );
    }

    #[test]
    fn rewrite_wires_every_consumer_through_dequantize() {
        let m = tiny();
        let p = plan(&m).unwrap();
        let seen: Vec<Seen> = [
            (-1.0, 1.0),
            (0.0, 6.0),
            (-2.0, 2.0),
            (-3.0, 5.0),
            (0.0, 4.0),
        ]
        .into_iter()
        .map(|range| Seen {
            range,
            channel_means: None,
        })
        .collect();
        let q = rewrite_nearest(&m, &p, &seen);
        let ops: Vec<&str> = q.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert!(!ops.contains(&"Clip"), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| **o == "QuantizeLinear").count(), 5);
        // 5 activations + 3 weights + 3 biases dequantized.
        assert_eq!(ops.iter().filter(|o| **o == "DequantizeLinear").count(), 11);
        // The first Conv now writes the Clip's output, read only by its Q.
        let c1 = q.graph.nodes.iter().find(|n| n.name == "c1").unwrap();
        assert_eq!(c1.outputs, ["r1"]);
        assert_eq!(
            c1.inputs,
            ["x_dequantized", "w1_dequantized", "b1_dequantized"]
        );
        for n in &q.graph.nodes {
            if n.op_type != "QuantizeLinear" {
                for x in &n.inputs {
                    assert!(!p.activations.contains(x), "{} reads float {x}", n.name);
                }
            }
        }
        // Unused ReLU6 bounds are gone; weights are int8, biases int32.
        let init = |name: &str| q.graph.initializers.iter().find(|t| t.name == name);
        assert!(init("lo").is_none() && init("w1").is_none());
        assert_eq!(init("w1_quantized").unwrap().data_type, crate::onnx::INT8);
        assert_eq!(init("b1_quantized").unwrap().data_type, crate::onnx::INT32);
        assert_eq!(init("r1_zero_point").unwrap().data_type, crate::onnx::UINT8);
        // Gemm with transB: per-channel over B's rows (3 output features).
        assert_eq!(init("fc.w_scale").unwrap().dims, [3]);
        // Every node input exists before it is read.
        let mut known: HashSet<String> = q
            .graph
            .initializers
            .iter()
            .map(|t| t.name.clone())
            .collect();
        known.insert("x".into());
        for n in &q.graph.nodes {
            for i in &n.inputs {
                assert!(known.contains(i), "{} reads unknown {i}", n.name);
            }
            known.extend(n.outputs.iter().cloned());
        }
        // Deterministic.
        use crate::onnx::Message;
        let again = rewrite_nearest(&m, &p, &seen);
        assert_eq!(q.to_bytes(), again.to_bytes());
    }

    #[test]
    fn calibration_measures_conv_and_gemm_inputs_and_corrects_their_biases() {
        let m = tiny();
        let p = plan(&m).unwrap();
        // x (3 channels) feeds c1, r1 (2) feeds c2, flat (2) feeds the Gemm.
        assert_eq!(p.channels(), [Some(3), Some(2), None, None, Some(2)]);
        let means = [
            Some(vec![0.5, -0.2, 0.9]),
            Some(vec![1.0, 2.0]),
            None,
            None,
            Some(vec![0.3, 0.7]),
        ];
        let seen: Vec<Seen> = means
            .into_iter()
            .map(|channel_means| Seen {
                range: (-1.0, 6.0),
                channel_means,
            })
            .collect();
        let q = rewrite_nearest(&m, &p, &seen);
        let init = |name: &str| {
            let t = q
                .graph
                .initializers
                .iter()
                .find(|t| t.name == name)
                .unwrap();
            t.clone()
        };
        // b1 = [0.5, -0.5], corrected by c1's rounding shift.
        let w1 = [0.1f32, 0.2, 0.3, -1.0, 0.5, 0.25];
        let (wq, s) = quantize_weights(&w1, &[2, 3, 1, 1], 0, &[]);
        let shift = bias_shift(&w1, &wq, &s, &[2, 3, 1, 1], 0, 1, &[0.5, -0.2, 0.9]).unwrap();
        let b_scale = init("b1_scale").f32_values().unwrap();
        let b_q = init("b1_quantized");
        assert_eq!(b_q.dims, [2]);
        let expected: Vec<i32> = [0.5f64, -0.5]
            .iter()
            .zip(&shift)
            .zip(&b_scale)
            .map(|((b, d), sc)| ((b - d) / f64::from(*sc)).round_ties_even() as i32)
            .collect();
        assert_eq!(b_q.i32_values().unwrap(), expected);
    }

    #[test]
    fn rejects_graphs_it_cannot_quantize() {
        let mut m = tiny();
        m.opset_imports = vec![(String::new(), 11)];
        assert!(plan(&m).unwrap_err().to_string().contains("opset 11"));
        let mut m = tiny();
        m.graph.initializers.retain(|t| t.name != "w2");
        assert!(plan(&m).unwrap_err().to_string().contains("w2"));
    }
}
