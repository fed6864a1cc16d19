//! The model-agnostic heart of imgclass: model configuration (`model.toml`),
//! labels, image preprocessing, post-processing (softmax, top-k) and the
//! [`Engine`] trait that inference back-ends implement. No HTTP lives here.

pub mod config;
pub mod engine;
pub mod labels;
pub mod postprocess;
pub mod preprocess;
pub mod repository;

pub use config::{InputLayout, ModelConfig, Normalization};
pub use engine::{Engine, EngineError};
pub use labels::Labels;
pub use postprocess::{Prediction, softmax, top_k};
pub use preprocess::{
    DecodeLimits, Decoded, ImageError, ImageFormat, ImageInfo, Preprocessed, Preprocessor, Source,
    StageTimings,
};
pub use repository::{LoadedModel, ModelRepository, ORT_VERSION, RepositoryError};

/// CPUs this process may use: affinity mask and cgroup CPU quota included
/// (std reads `cpu.max` / `cpu.cfs_quota_us`), so a container limited to
/// 1.5 CPUs gets 1.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Name of the model used when none is asked for.
pub const DEFAULT_MODEL: &str = "efficientnet-lite0";
