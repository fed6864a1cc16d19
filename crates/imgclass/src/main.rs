//! `imgclass`: a thin command-line front end over the library crates.

mod classify;
mod cli;
mod common;
mod logging;
mod model_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.global.log_format, cli.global.verbose);
    let result = match cli.command {
        cli::Command::Classify(args) => classify::run(&cli.global, args),
        cli::Command::Model(cmd) => model_cmd::run(&cli.global, cmd),
        cli::Command::Serve(args) => imgclass_server::run(*args, common::home(&cli.global))
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        cli::Command::Loadtest(args) => imgclass_loadtest::run(*args).map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
