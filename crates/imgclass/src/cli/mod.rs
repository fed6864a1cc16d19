//! Every flag of `imgclass`, defined once; every flag also reads an
//! `IMGCLASS_*` variable. The library crates take plain option structs;
//! the conversions from flags live beside the flags.

pub mod classify;
pub mod engine;
pub mod loadtest;
pub mod model;
pub mod serve;
pub mod values;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

impl Global {
    /// The model home these flags name, or the default one.
    pub fn home(&self) -> PathBuf {
        self.home
            .clone()
            .unwrap_or_else(imgclass_core::ModelRepository::default_home)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the classifier service (HTTP API, KServe v2, web page, metrics).
    Serve(Box<serve::ServeArgs>),
    /// Classify image files and folders (searched recursively).
    Classify(classify::ClassifyArgs),
    /// Manage the model home: fetch, list, bench.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Load-test a classifier endpoint with a folder of images.
    Loadtest(Box<loadtest::LoadtestArgs>),
}
