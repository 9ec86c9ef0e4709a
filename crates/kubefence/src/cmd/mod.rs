//! One module per subcommand, each with its own clap struct and a `run`
//! that returns the exit code (see [`crate::exit`]).

use std::io::{BufWriter, StdoutLock, Write};

use crate::cli::{Cli, Command};

pub mod agent;
pub mod analyze;
pub mod completion;
pub mod crds;
pub mod demo;
pub mod diff;
pub mod explain;
pub mod generate;
pub mod intents;
pub mod learn;
pub mod man;
pub mod operator;
pub mod profile;
pub mod quarantine;
pub mod release;
pub mod report;
pub mod verify;
pub mod version;

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Analyze(opts) => analyze::run(&opts),
        Command::Generate(opts) => generate::run(&opts),
        Command::Learn(opts) => learn::run(&opts),
        Command::Verify(opts) => verify::run(&opts),
        Command::Explain(opts) => explain::run(&opts),
        Command::Diff(opts) => diff::run(&opts),
        Command::Demo(opts) => demo::run(&opts),
        Command::Report(opts) => report::run(&opts),
        Command::Quarantine(opts) => quarantine::run(&opts),
        Command::Release(opts) => release::run(&opts),
        Command::Operator(opts) => operator::run(&opts),
        Command::Crds(opts) => crds::run(&opts),
        Command::Intents(opts) => intents::run(&opts),
        Command::Agent(opts) => agent::run(&opts),
        Command::Profile(opts) => profile::run(&opts),
        Command::Completion(opts) => completion::run(&opts),
        Command::Man(opts) => man::run(&opts),
        Command::Version(opts) => version::run(&opts),
    }
}

/// Results go to a buffered, locked stdout.
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// Writes one file the user named, through `f`: a symlink or directory at
/// that path is refused (the write would land elsewhere), and the file is
/// flushed before the command reports success.
pub fn write_file(
    path: &std::path::Path,
    f: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            anyhow::bail!(
                "{}: is a symbolic link; name the file itself",
                path.display()
            );
        }
        if meta.is_dir() {
            anyhow::bail!("{}: is a directory; name a file", path.display());
        }
    }
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut out = BufWriter::new(file);
    f(&mut out).with_context(|| format!("{}: cannot write", path.display()))?;
    out.flush()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

/// Runs `f` on stdout and flushes, so a write error (a closed pipe) is seen.
pub fn with_stdout(
    f: impl FnOnce(&mut BufWriter<StdoutLock<'static>>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = stdout();
    f(&mut out)?;
    out.flush()?;
    Ok(())
}
