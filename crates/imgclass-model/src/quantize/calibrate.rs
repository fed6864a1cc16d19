//! Activation ranges from running the fp32 model on calibration photos.
//!
//! The model is run by ONNX Runtime ([`imgclass_engines::OrtProbe`]) with
//! every tensor to quantize added as a graph output, one photo at a time.
//! What is kept per tensor is its range (min, max, a histogram) and, for
//! the inputs of Conv/Gemm nodes, the mean of each channel, which bias
//! correction needs (see `qdq`), and the second moments of their patches,
//! which error-feedback rounding needs (see `hessian`). Sums run in a
//! fixed order (photos in order, values in order), so the result depends
//! on nothing but the inputs.

use std::path::Path;
use std::str::FromStr;

use imgclass_engines::OrtProbe;

use super::QuantizeError;
use super::hessian::Hessian;
use crate::onnx::{FLOAT, Message, Model, ValueInfo};

/// How an activation's quantization range is chosen from what calibration saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// The smallest and largest value seen: nothing is clipped, but one
    /// outlier widens the step for every value.
    #[default]
    MinMax,
    /// Clip |x| at its 99.999th percentile (ONNX Runtime's default).
    Percentile,
    // TensorRT's KL-divergence ("entropy") search was tried and dropped:
    // as implemented it kept the fp32 top-1 of Lite1 on 2 of 48 photos.
    // So was a least-squares search (the range minimising the expected
    // rounding + clipping error on a signed histogram, as PyTorch's
    // HistogramObserver does): on an AMD EPYC (Zen 3, AVX2) it kept the
    // fp32 top-1 on 46/45/46 of 48 photos for Lite0/1/2, against 46/45/47
    // for min-max (mean |dp| 0.018–0.025 against 0.020–0.021): the misses
    // are the same near-tie photos, so it bought nothing for its code.
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "minmax" | "min-max" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile),
            other => Err(format!(
                "unknown calibration method {other:?}: use minmax or percentile"
            )),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
        })
    }
}

/// Percentile kept by [`Method::Percentile`].
const PERCENTILE: f64 = 99.999;
/// Histogram resolution for [`Method::Percentile`].
const BINS: usize = 2048;

/// What calibration saw of one tensor.
struct Stats {
    min: f32,
    max: f32,
    hist: Vec<u64>,
    /// Per-channel sums (NCHW, batch 1: channel c is the c-th of
    /// `channel_sums.len()` equal runs), when channel means are wanted.
    channel_sums: Vec<f64>,
    /// Values summed into each channel.
    per_channel: u64,
}

impl Stats {
    fn new(channels: Option<usize>) -> Self {
        Stats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
            channel_sums: vec![0.0; channels.unwrap_or(0)],
            per_channel: 0,
        }
    }

    fn see_channels(&mut self, values: &[f32]) -> Result<(), QuantizeError> {
        let channels = self.channel_sums.len();
        if channels == 0 {
            return Ok(());
        }
        if values.is_empty() || !values.len().is_multiple_of(channels) {
            return Err(QuantizeError::Graph(format!(
                "a Conv/Gemm input of {} values does not split into {channels} channels",
                values.len()
            )));
        }
        let run = values.len() / channels;
        for (sum, chunk) in self.channel_sums.iter_mut().zip(values.chunks_exact(run)) {
            *sum += chunk.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        self.per_channel += run as u64;
        Ok(())
    }

    fn channel_means(&self) -> Option<Vec<f64>> {
        (!self.channel_sums.is_empty() && self.per_channel > 0).then(|| {
            self.channel_sums
                .iter()
                .map(|s| s / self.per_channel as f64)
                .collect()
        })
    }

    fn see_range(&mut self, values: &[f32]) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    fn amax(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    fn see_histogram(&mut self, values: &[f32]) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        let amax = self.amax();
        if amax <= 0.0 {
            self.hist[0] += values.len() as u64;
            return;
        }
        let per_bin = BINS as f32 / amax;
        for &v in values {
            let b = ((v.abs() * per_bin) as usize).min(BINS - 1);
            self.hist[b] += 1;
        }
    }

    /// The (low, high) range to quantize to.
    fn range(&self, method: Method) -> (f32, f32) {
        let threshold = match method {
            Method::MinMax => return (self.min, self.max),
            Method::Percentile => percentile_threshold(&self.hist, PERCENTILE),
        };
        let t = (threshold as f32) * self.amax();
        (self.min.max(-t), self.max.min(t))
    }
}

/// The fraction of the |x| range below which `pct` percent of values lie.
fn percentile_threshold(hist: &[u64], pct: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    let wanted = (total as f64 * pct / 100.0).ceil() as u64;
    let mut seen = 0;
    for (i, &h) in hist.iter().enumerate() {
        seen += h;
        if seen >= wanted {
            return (i + 1) as f64 / hist.len() as f64;
        }
    }
    1.0
}

/// What calibration found for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Seen {
    /// The (low, high) range to quantize to.
    pub range: (f32, f32),
    /// Mean of each channel over every photo, when asked for.
    pub channel_means: Option<Vec<f64>>,
}

/// What calibration found.
pub(super) struct Calibration {
    /// One per tensor asked about, in order.
    pub seen: Vec<Seen>,
    /// The Hessians asked for, filled, in order.
    pub hessians: Vec<Hessian>,
}

/// Runs the calibration and returns what was seen of each tensor of
/// `tensors`, in order; `channels[i]` asks for the channel means of
/// `tensors[i]` (NCHW or [N, K], batch 1). `hessians` are (tensor, empty
/// Hessian) pairs to fill from that tensor, which must be one of
/// `tensors`. `inputs` are preprocessed images of `shape`.
#[allow(clippy::too_many_arguments)]
pub(super) fn calibrate(
    model: &Model,
    tensors: &[String],
    channels: &[Option<usize>],
    hessians: Vec<(String, Hessian)>,
    inputs: &[Vec<f32>],
    shape: &[usize],
    method: Method,
    ort_library: &Path,
) -> Result<Calibration, QuantizeError> {
    let input_name = model.graph.inputs[0].name.clone();
    // Every tensor but the graph input (which is the data itself) becomes
    // an output of the calibration model, in `tensors` order.
    let probed: Vec<String> = tensors
        .iter()
        .filter(|t| **t != input_name)
        .cloned()
        .collect();
    let mut calib = model.clone();
    for t in &probed {
        if !calib.graph.outputs.iter().any(|o| &o.name == t) {
            calib.graph.outputs.push(ValueInfo {
                name: t.clone(),
                elem_type: FLOAT,
                dims: None,
            });
        }
    }
    let mut probe = OrtProbe::new(ort_library, &calib.to_bytes(), &input_name, probed.clone())?;
    let mut stats: Vec<Stats> = channels.iter().map(|c| Stats::new(*c)).collect();
    let (readers, mut hessians): (Vec<String>, Vec<Hessian>) = hessians.into_iter().unzip();
    if let Some(t) = readers.iter().find(|r| !tensors.contains(r)) {
        return Err(QuantizeError::Graph(format!(
            "{t} is read by a Conv/Gemm but is not calibrated"
        )));
    }
    let passes = if method == Method::MinMax { 1 } else { 2 };
    for pass in 0..passes {
        for input in inputs {
            let outputs = probe.run(input, shape)?;
            let mut outputs = outputs.iter();
            for (t, s) in tensors.iter().zip(stats.iter_mut()) {
                let (dims, values) = if *t == input_name {
                    (shape, input.as_slice())
                } else {
                    let out = outputs.next().expect("one output per probed tensor");
                    (out.shape.as_slice(), out.values.as_slice())
                };
                if pass == 0 {
                    s.see_range(values);
                    s.see_channels(values)?;
                    for (_, h) in readers
                        .iter()
                        .zip(hessians.iter_mut())
                        .filter(|(r, _)| *r == t)
                    {
                        h.see(dims, values)?;
                    }
                } else {
                    s.see_histogram(values);
                }
            }
        }
    }
    let seen = stats
        .iter()
        .map(|s| Seen {
            range: s.range(method),
            channel_means: s.channel_means(),
        })
        .collect();
    Ok(Calibration { seen, hessians })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f32]) -> Stats {
        let mut s = Stats::new(None);
        s.see_range(values);
        s.see_histogram(values);
        s
    }

    #[test]
    fn minmax_keeps_everything() {
        let s = stats_of(&[-1.0, 0.5, 3.0]);
        assert_eq!(s.range(Method::MinMax), (-1.0, 3.0));
    }

    #[test]
    fn percentile_clips_a_lone_outlier() {
        // 100k values spread over [0, 1) and one outlier at 100.
        let mut v: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        v.push(100.0);
        let s = stats_of(&v);
        assert_eq!(s.range(Method::MinMax), (0.0, 100.0));
        // Percentile clips just above the dense part.
        let (lo, hi) = s.range(Method::Percentile);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.9 && hi <= 2.0, "{hi}");
    }

    #[test]
    fn channel_means_follow_nchw_runs() {
        let mut s = Stats::new(Some(2));
        s.see_channels(&[1.0, 3.0, 10.0, 20.0]).unwrap();
        s.see_channels(&[3.0, 5.0, 0.0, 10.0]).unwrap();
        assert_eq!(s.channel_means(), Some(vec![3.0, 10.0]));
        assert!(s.see_channels(&[1.0, 2.0, 3.0]).is_err());
        assert_eq!(Stats::new(None).channel_means(), None);
    }

    #[test]
    fn methods_parse() {
        assert_eq!("MinMax".parse::<Method>().unwrap(), Method::MinMax);
        assert!("entropy".parse::<Method>().is_err());
        assert!("mse".parse::<Method>().is_err());
        assert_eq!(Method::Percentile.to_string(), "percentile");
    }
}
