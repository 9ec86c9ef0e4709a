//! `kubefence crds`: every kubefence CustomResourceDefinition as YAML,
//! generated from the Rust types (`kubefence_k8s::crd::all_crds`).
//! `deploy/base/crds.yaml` is this output, checked for drift by a test.

use std::io::Write;

use clap::Args;

use crate::exit;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  kubefence crds > deploy/base/crds.yaml
  kubefence crds | kubectl apply --server-side -f -")]
pub struct CrdsOpts {}

pub fn run(_opts: &CrdsOpts) -> anyhow::Result<u8> {
    let crds = kubefence_k8s::crd::all_crds();
    let yaml = kubefence_k8s::crd::crds_yaml(&crds)?;
    if crds.is_empty() {
        tracing::warn!("no kubefence CustomResourceDefinition is defined yet");
    }
    super::with_stdout(|out| out.write_all(yaml.as_bytes()))?;
    Ok(exit::OK)
}
