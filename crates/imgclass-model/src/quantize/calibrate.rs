//! Activation ranges from running the fp32 model on calibration photos.
//!
//! The model is run by ONNX Runtime ([`imgclass_engines::OrtProbe`]) with
//! every tensor to quantize added as a graph output, one photo at a time.
//! What is kept per tensor is order-independent (min, max, a histogram), so
//! the result does not depend on anything but the inputs.

use std::path::Path;
use std::str::FromStr;

use imgclass_engines::OrtProbe;

use super::QuantizeError;
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
    /// Clip |x| where the clipped, quantized distribution is closest to
    /// the observed one in KL divergence (TensorRT's entropy calibration).
    Entropy,
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "minmax" | "min-max" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile),
            "entropy" | "kl" => Ok(Method::Entropy),
            other => Err(format!(
                "unknown calibration method {other:?}: use minmax, percentile or entropy"
            )),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
            Method::Entropy => "entropy",
        })
    }
}

/// Percentile kept by [`Method::Percentile`].
const PERCENTILE: f64 = 99.999;
/// Histogram resolution for [`Method::Percentile`] and [`Method::Entropy`].
const BINS: usize = 2048;

/// What calibration saw of one tensor.
struct Stats {
    min: f32,
    max: f32,
    hist: Vec<u64>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
        }
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
            Method::Entropy => {
                // A one-sided tensor (ReLU6 output) spreads all 256 uint8
                // levels over [0, T]; a signed one half of them on each side.
                let levels = if self.min >= 0.0 { 255 } else { 128 };
                entropy_threshold(&self.hist, levels)
            }
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

/// TensorRT's KL-divergence threshold search over a histogram of |x|:
/// for each candidate number of bins `i`, P is the histogram clipped at
/// `i` (outliers added to the last bin) and Q the first `i` bins merged
/// into `levels` quantization levels and spread back over their non-empty
/// bins; the threshold minimising KL(P‖Q) wins. Returned as a fraction of
/// the histogram's range.
fn entropy_threshold(hist: &[u64], levels: usize) -> f64 {
    let n = hist.len();
    if hist.iter().skip(1).all(|&h| h == 0) {
        return 1.0;
    }
    let mut best = (f64::INFINITY, n);
    let mut p = vec![0f64; n];
    let mut q = vec![0f64; n];
    let mut outliers: u64 = hist[levels..].iter().sum();
    for i in levels..=n {
        p[..i]
            .iter_mut()
            .zip(hist)
            .for_each(|(p, &h)| *p = h as f64);
        p[i - 1] += outliers as f64;
        if i < n {
            outliers -= hist[i];
        }
        q[..i].iter_mut().for_each(|q| *q = 0.0);
        for j in 0..levels {
            let (start, end) = (j * i / levels, (j + 1) * i / levels);
            let bins = &hist[start..end];
            let nonzero = bins.iter().filter(|&&h| h > 0).count();
            if nonzero == 0 {
                continue;
            }
            let share = bins.iter().sum::<u64>() as f64 / nonzero as f64;
            for (k, &h) in bins.iter().enumerate() {
                if h > 0 {
                    q[start + k] = share;
                }
            }
        }
        let (ps, qs): (f64, f64) = (p[..i].iter().sum(), q[..i].iter().sum());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        let kl: f64 = p[..i]
            .iter()
            .zip(&q[..i])
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, q)| {
                let (p, q) = (p / ps, (q / qs).max(1e-12));
                p * (p / q).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1 as f64 / n as f64
}

/// Runs the calibration and returns one (low, high) range per tensor of
/// `tensors`, in order. `inputs` are preprocessed images of `shape`.
pub(super) fn ranges(
    model: &Model,
    tensors: &[String],
    inputs: &[Vec<f32>],
    shape: &[usize],
    method: Method,
    ort_library: &Path,
) -> Result<Vec<(f32, f32)>, QuantizeError> {
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
    let mut stats: Vec<Stats> = tensors.iter().map(|_| Stats::new()).collect();
    let passes = if method == Method::MinMax { 1 } else { 2 };
    for pass in 0..passes {
        for input in inputs {
            let outputs = probe.run(input, shape)?;
            let mut outputs = outputs.iter();
            for (t, s) in tensors.iter().zip(stats.iter_mut()) {
                let values = if *t == input_name {
                    input.as_slice()
                } else {
                    outputs.next().expect("one output per probed tensor")
                };
                if pass == 0 {
                    s.see_range(values);
                } else {
                    s.see_histogram(values);
                }
            }
        }
    }
    Ok(stats.iter().map(|s| s.range(method)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f32]) -> Stats {
        let mut s = Stats::new();
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
    fn percentile_and_entropy_clip_a_lone_outlier() {
        // 100k values spread over [0, 1) and one outlier at 100.
        let mut v: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        v.push(100.0);
        let s = stats_of(&v);
        assert_eq!(s.range(Method::MinMax), (0.0, 100.0));
        // Percentile clips just above the dense part; entropy's search
        // starts at one bin per level (255 of 2048 bins), so it clips to at
        // most 255/2048 of the range.
        for (m, most) in [(Method::Percentile, 2.0), (Method::Entropy, 12.5)] {
            let (lo, hi) = s.range(m);
            assert_eq!(lo, 0.0, "{m:?}");
            assert!(hi > 0.9 && hi <= most, "{m:?}: {hi}");
        }
    }

    #[test]
    fn entropy_keeps_a_dense_uniform_range() {
        let v: Vec<f32> = (0..50_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        let (_, hi) = stats_of(&v).range(Method::Entropy);
        assert!(hi > 0.95, "{hi}");
    }

    #[test]
    fn methods_parse() {
        assert_eq!("MinMax".parse::<Method>().unwrap(), Method::MinMax);
        assert_eq!("entropy".parse::<Method>().unwrap(), Method::Entropy);
        assert!("mse".parse::<Method>().is_err());
        assert_eq!(Method::Percentile.to_string(), "percentile");
    }
}
