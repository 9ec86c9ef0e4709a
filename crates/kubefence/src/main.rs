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
mod progress;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(logging::usage_error(&e, &args)),
    };
    logging::init(&cli.global);
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        // Unix convention: a reader that went away (`| head`) is not an error.
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            logging::report(
                logging::Severity::Error,
                logging::Place::default(),
                &format!("{e:#}"),
            );
            ExitCode::from(exit::FATAL)
        }
    }
}
