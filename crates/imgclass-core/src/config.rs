//! `model.toml`: everything needed to run an ONNX image classifier.
//!
//! Any classifier works by describing it here: input size and layout,
//! how to crop and normalise, where its labels are, and whether its output
//! is logits or probabilities.
//!
//! ```toml
//! name = "efficientnet-lite0"
//! onnx = "model.onnx"
//! labels = "labels.txt"
//!
//! [input]
//! width = 224
//! height = 224
//! layout = "NCHW"
//! crop_fraction = 0.875
//! normalization = { kind = "scale_offset", scale = 0.0078125, offset = -0.9921875 }
//!
//! [output]
//! classes = 1000
//! softmax = true
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Memory layout of the input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputLayout {
    /// batch, channel, height, width (PyTorch, ONNX default).
    #[serde(rename = "NCHW")]
    Nchw,
    /// batch, height, width, channel (TensorFlow).
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// How 0–255 pixel values become model inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// `x' = x · scale + offset` on 0–255 values, same for every channel.
    ScaleOffset { scale: f32, offset: f32 },
    /// `x' = (x / 255 − mean[c]) / std[c]` (the torchvision convention).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

impl Normalization {
    /// Per-channel `(a, b)` such that `x' = x · a + b` for 0–255 input `x`.
    pub fn affine(&self) -> [(f32, f32); 3] {
        match self {
            Normalization::ScaleOffset { scale, offset } => [(*scale, *offset); 3],
            Normalization::MeanStd { mean, std } => {
                std::array::from_fn(|c| (1.0 / (255.0 * std[c]), -mean[c] / std[c]))
            }
        }
    }
}

/// Input description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Tensor name; the engine uses the model's first input when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub width: u32,
    pub height: u32,
    pub layout: InputLayout,
    /// Side of the centred square crop as a fraction of the short side
    /// (0.875 = the usual "resize 256, crop 224"). 1.0 keeps the whole short side.
    #[serde(default = "default_crop")]
    pub crop_fraction: f32,
    /// Resampling filter for the resize to the input size.
    #[serde(default)]
    pub resize_filter: ResizeFilter,
    pub normalization: Normalization,
}

/// Resampling filter. All but `nearest` are convolutions that antialias
/// when shrinking, like PIL's resize.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    Nearest,
    /// PIL/torchvision's default for evaluation transforms.
    #[default]
    Bilinear,
    /// Catmull-Rom cubic (a = −0.5, support 2): PIL's BICUBIC and
    /// TensorFlow's "bicubic", EfficientNet's evaluation filter.
    Bicubic,
    Lanczos3,
}

impl InputConfig {
    /// The shape of one image in the model's layout: `[3, H, W]` (NCHW) or
    /// `[H, W, 3]` (NHWC). The one place the layout becomes dimensions.
    pub fn dims(&self) -> [usize; 3] {
        let (w, h) = (self.width as usize, self.height as usize);
        match self.layout {
            InputLayout::Nchw => [3, h, w],
            InputLayout::Nhwc => [h, w, 3],
        }
    }
}

fn default_crop() -> f32 {
    0.875
}

/// Output description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Tensor name; the engine uses the model's first output when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub classes: usize,
    /// True when the output is logits and needs a softmax.
    #[serde(default = "default_true")]
    pub softmax: bool,
}

fn default_true() -> bool {
    true
}

/// Hints for the engines, from measurements on the target machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineHints {
    /// Engine to prefer under `--engine auto` ("ort" or "tract").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<String>,
    /// Largest batch worth sending in one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<usize>,
    /// Path of the ONNX Runtime library, relative to the model home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<String>,
    /// The model computes in int8 (QuantizeLinear/DequantizeLinear pairs):
    /// engines must take integer paths that cannot overflow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quantized: bool,
    /// Revision of imgclass's quantizer that made this file (absent: not
    /// made by it, or made before revisions were recorded). A catalogue
    /// `-int8` model made by an older revision is made again on fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantizer: Option<u32>,
}

/// The whole `model.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// ONNX file, relative to the model's folder.
    pub onnx: String,
    /// Labels file (one class per line; the first comma-separated name is
    /// the display label), relative to the model's folder.
    pub labels: String,
    pub input: InputConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub engine: EngineHints,
}

/// A `model.toml` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {path}: {message}")]
    Invalid { path: String, message: String },
}

impl ModelConfig {
    /// Reads and validates a `model.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates the text of a `model.toml`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("model config always serialises")
    }

    fn validate(&self) -> Result<(), String> {
        let i = &self.input;
        if i.width == 0 || i.height == 0 || i.width > 4096 || i.height > 4096 {
            return Err(format!(
                "input size {}x{} must be between 1 and 4096",
                i.width, i.height
            ));
        }
        if !(i.crop_fraction > 0.0 && i.crop_fraction <= 1.0) {
            return Err(format!(
                "crop_fraction {} must be in (0, 1]",
                i.crop_fraction
            ));
        }
        if let Normalization::MeanStd { std, .. } = &i.normalization
            && std.iter().any(|s| !(s.is_finite() && *s != 0.0))
        {
            return Err("normalization std values must be finite and non-zero".into());
        }
        if self.output.classes == 0 {
            return Err("output.classes must be at least 1".into());
        }
        for (what, p) in [("onnx", &self.onnx), ("labels", &self.labels)] {
            let path = Path::new(p);
            if path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "{what} must be a path inside the model folder, got {p:?}"
                ));
            }
        }
        Ok(())
    }

    /// Number of values in one preprocessed image.
    pub fn image_len(&self) -> usize {
        3 * self.input.width as usize * self.input.height as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LITE0: &str = r#"
name = "efficientnet-lite0"
onnx = "model.onnx"
labels = "labels.txt"
[input]
width = 224
height = 224
layout = "NCHW"
normalization = { kind = "scale_offset", scale = 0.0078125, offset = -0.9921875 }
[output]
classes = 1000
"#;

    #[test]
    fn parses_minimal_config_with_defaults() {
        let cfg = ModelConfig::parse(LITE0).unwrap();
        assert_eq!(cfg.input.crop_fraction, 0.875);
        assert!(cfg.output.softmax);
        assert_eq!(cfg.image_len(), 3 * 224 * 224);
        let again = ModelConfig::parse(&cfg.to_toml()).unwrap();
        assert_eq!(cfg, again);
    }

    #[test]
    fn mean_std_becomes_affine() {
        let n = Normalization::MeanStd {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        };
        let [(a, b), _, _] = n.affine();
        let x = 200.0f32;
        assert!((x * a + b - (x / 255.0 - 0.485) / 0.229).abs() < 1e-5);
    }

    #[test]
    fn rejects_escaping_paths_and_bad_sizes() {
        let bad = LITE0.replace("model.onnx", "../../etc/passwd");
        assert!(
            ModelConfig::parse(&bad)
                .unwrap_err()
                .contains("inside the model folder")
        );
        let bad = LITE0.replace("width = 224", "width = 0");
        assert!(ModelConfig::parse(&bad).is_err());
        let bad = LITE0.replace("layout = \"NCHW\"", "layout = \"CHWN\"");
        assert!(ModelConfig::parse(&bad).is_err());
    }
}
