//! `kubefence man [SUBCOMMAND]`: a man page (roff) generated from the clap
//! definitions (clap_mangen): the same text as `--help`, for `man`.

use std::io::Write;

use clap::{Args, CommandFactory};

use crate::cli::Cli;
use crate::exit;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  kubefence man | man -l -                       # read it now
  kubefence man > /usr/local/share/man/man1/kubefence.1
  kubefence man analyze > /usr/local/share/man/man1/kubefence-analyze.1
  for c in $(kubefence man --list); do kubefence man $c > kubefence-$c.1; done")]
pub struct ManOpts {
    /// The subcommand whose page to print (`kubefence-<subcommand>(1)`);
    /// the main page (`kubefence(1)`, which lists them all) when absent.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
    /// List the subcommands that have a page, one per line.
    #[arg(long, conflicts_with = "subcommand")]
    pub list: bool,
}

pub fn run(opts: &ManOpts) -> anyhow::Result<u8> {
    let mut main = Cli::command();
    // Built, so every subcommand carries the version (propagate_version).
    main.build();
    if opts.list {
        let names: Vec<String> = main
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .map(|c| c.get_name().to_string())
            .collect();
        super::with_stdout(|out| {
            for name in &names {
                writeln!(out, "{name}")?;
            }
            Ok(())
        })?;
        return Ok(exit::OK);
    }
    let page = match &opts.subcommand {
        None => main,
        Some(name) => {
            let Some(sub) = main.find_subcommand(name).cloned() else {
                anyhow::bail!("no subcommand {name:?}; `kubefence man --list` lists them");
            };
            // The page's title and usage name the full command.
            let full = format!("kubefence-{}", sub.get_name());
            sub.name(full).bin_name(format!("kubefence {name}"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    super::with_stdout(|out| out.write_all(&roff))?;
    Ok(exit::OK)
}
