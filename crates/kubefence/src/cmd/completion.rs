//! `kubefence completion SHELL`: the shell's completion script, generated
//! from the clap definitions (clap_complete), so it always matches the
//! flags of this very binary.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  source <(kubefence completion bash)                 # this shell
  kubefence completion bash > /etc/bash_completion.d/kubefence
  kubefence completion zsh > \"${fpath[1]}/_kubefence\"
  kubefence completion fish > ~/.config/fish/completions/kubefence.fish
  kubefence completion powershell >> $PROFILE")]
pub struct CompletionOpts {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(opts: &CompletionOpts) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    super::with_stdout(|out| {
        clap_complete::generate(opts.shell, &mut command, "kubefence", out);
        Ok(())
    })?;
    Ok(exit::OK)
}
