//! `imgclass`: a thin command-line front end over the library crates.

mod classify;
mod loader;
mod logging;
mod memory;
mod model_cmd;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use imgclass::cli::loadtest::Loadtest;
use imgclass::cli::serve::ServeArgs;
use imgclass::cli::{Cli, Command, Global};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.log_format, cli.global.verbose);
    let result = match cli.command {
        Command::Classify(args) => classify::run(&cli.global, args),
        Command::Model(cmd) => model_cmd::run(&cli.global, cmd),
        Command::Serve(args) => serve(&cli.global, &args),
        Command::Loadtest(args) => loadtest(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(global: &Global, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    memory::bound_heap_growth();
    let loader = Arc::new(loader::HomeLoader::new(global.home(), &args.engine));
    imgclass_server::run(args.options(), &args.host, args.port, loader)?;
    Ok(ExitCode::SUCCESS)
}

fn loadtest(args: &imgclass::cli::loadtest::LoadtestArgs) -> anyhow::Result<ExitCode> {
    let code = match args.plan().map_err(anyhow::Error::msg)? {
        Loadtest::Run(options) => imgclass_loadtest::run(options)?,
        Loadtest::Report(options) => imgclass_loadtest::report(options)?,
    };
    Ok(code)
}
