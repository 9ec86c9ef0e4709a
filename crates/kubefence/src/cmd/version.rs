//! `kubefence version`: the version, the git commit it was built from
//! (see build.rs) and the target, as text or `-o json|yaml`.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::exit;
use crate::output::{Format, FormatParser, VERSION_FORMATS};

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  kubefence version
  kubefence version -o json | jq -r .gitCommit
  kubefence --version          # the version alone")]
pub struct VersionOpts {
    /// Output format: text (default), json or yaml.
    #[arg(short = 'o', long = "output", default_value = "auto", value_parser = FormatParser(VERSION_FORMATS))]
    pub output: Format,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Version {
    version: &'static str,
    git_commit: &'static str,
    target: &'static str,
}

const VERSION: Version = Version {
    version: env!("CARGO_PKG_VERSION"),
    git_commit: env!("KUBEFENCE_GIT_COMMIT"),
    target: match option_env!("KUBEFENCE_TARGET") {
        Some(t) => t,
        None => "unknown",
    },
};

pub fn run(opts: &VersionOpts) -> anyhow::Result<u8> {
    let text = match opts.output.resolve(Format::Text, Format::Text) {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&VERSION)?),
        Format::Yaml => serde_saphyr::to_string(&VERSION)?,
        _ => format!(
            "kubefence {} (commit {}, {})\n",
            VERSION.version, VERSION.git_commit, VERSION.target
        ),
    };
    super::with_stdout(|out| out.write_all(text.as_bytes()))?;
    Ok(exit::OK)
}
