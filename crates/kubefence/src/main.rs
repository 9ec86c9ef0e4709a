//! `kubefence`: least-privilege networking for Kubernetes (also `kubectl fence`).
//!
//! `main` only parses, sets up logging, runs the subcommand and maps the
//! outcome to an exit code (see [`exit`]); each subcommand lives in its own
//! module under `cmd/`, and renderers under `output/`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod cli;
mod cmd;
mod exit;
mod inputs;
mod logging;
mod output;
mod progress;

/// mimalloc rather than the system allocator: the operator's first pass over
/// 10,000 workloads spent nearly half its CPU time in glibc's malloc and
/// free (much of it memory allocated on one thread and freed on another,
/// as the API client does), and took a third less CPU time with mimalloc
/// (`cargo bench -p kubefence-operator --bench reconcile`, which declares
/// the same allocator, as the scale test does, so what ships is measured).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Run as the kubectl plugin (`kubectl fence`, the binary found as
    // kubectl-fence): usage lines and errors name it so.
    let plugin = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "kubectl-fence");
    let mut command = cli::Cli::command();
    if plugin {
        command = command.bin_name("kubectl fence");
    }
    let cli = match command
        .try_get_matches_from(&args)
        .and_then(|m| cli::Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(logging::usage_error(&e, &args)),
    };
    logging::init(&cli.global);
    output::color::init(cli.global.color);
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
