//! `imgclass serve` without the rest of the CLI: the same `ServeArgs` and
//! the same [`imgclass_server::run`], for trying the service and for
//! measuring it as a separate process (e.g. with oha) before the binary
//! wires it in.
//!
//! ```text
//! cargo run --release -p imgclass-server --example serve -- --port 8080
//! ```

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Run the imgclass classifier service")]
struct Cli {
    /// Model home (default: $IMGCLASS_HOME or ~/.cache/imgclass).
    #[arg(long, env = "IMGCLASS_HOME")]
    home: Option<std::path::PathBuf>,
    #[command(flatten)]
    serve: imgclass_server::ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let home = cli
        .home
        .unwrap_or_else(imgclass_core::ModelRepository::default_home);
    match imgclass_server::run(cli.serve, home) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
