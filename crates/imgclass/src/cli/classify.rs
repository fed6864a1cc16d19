//! `imgclass classify` flags.

use std::path::PathBuf;

use clap::Args;

use super::engine::{DecodeArgs, EngineArgs};

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
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}
