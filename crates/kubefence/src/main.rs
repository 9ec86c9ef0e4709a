//! `kubefence`: least-privilege networking for Kubernetes (also `kubectl fence`).
//!
//! `main` only parses, sets up logging, runs the subcommand and maps the
//! outcome to an exit code (see [`exit`]); each subcommand lives in its own
//! module under `cmd/`, and renderers under `output/`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod exit;
mod inputs;
mod logging;
mod output;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(&cli.global);
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        // Unix convention: a reader that went away (`| head`) is not an error.
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubefence: {e:#}");
            ExitCode::from(exit::FATAL)
        }
    }
}
