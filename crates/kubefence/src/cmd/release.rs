//! `kubefence release KIND/NAME`: undo a quarantine.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use kubefence_core::WorkloadKind;
use kubefence_core::quarantine::{self as core_q, Engine, Target};
use kubefence_k8s::quarantine::policy_api;
use kubefence_operator::controllers::quarantine::{self as ops, QuarantineConfig, ReleaseOutcome};

use super::quarantine::{CLI_IDENTITY, EngineArg, kubeconfig_user, parse_target};
use crate::exit;

const LONG_ABOUT: &str = "\
Releases a quarantined workload: deletes kubefence's quarantine policy for it,
and only that (an object without kubefence's labels is never deleted). A
missing policy is success; the workload itself may be gone.

Without --confirm the deletion is a server-side dry run (dryRun=All).";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence release deploy/api -n shop
  kubefence release deploy/api -n shop --confirm
  kubefence release sts/db -n shop --engine cilium --confirm

Exit codes: 0 released (or nothing to release); 2 refused or failed.";

/// Undo a quarantine (dry run unless --confirm).
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct ReleaseOpts {
    /// The workload: KIND/NAME.
    #[arg(value_name = "KIND/NAME", value_parser = parse_target)]
    pub target: (WorkloadKind, String),
    /// Namespace of the workload.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// The engine the quarantine used.
    #[arg(long, value_enum, default_value_t = EngineArg::Networkpolicy)]
    pub engine: EngineArg,
    /// Really delete the policy (default: server-side dry run).
    #[arg(long)]
    pub confirm: bool,
    /// Who asks (default: the kubeconfig user of the current context).
    #[arg(long, value_name = "NAME")]
    pub requester: Option<String>,
}

pub fn run(opts: &ReleaseOpts) -> anyhow::Result<u8> {
    let target = Target::new(opts.target.0, &opts.namespace, &opts.target.1);
    let cfg = QuarantineConfig::default();
    core_q::check_namespace(&target, &cfg.core())?;
    let engine: Engine = opts.engine.into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let rt = kubefence_operator::Context::for_command(CLI_IDENTITY)
            .await
            .context("cannot reach the cluster (kubeconfig or in-cluster config)")?;
        let requester = opts.requester.clone().unwrap_or_else(kubeconfig_user);
        // The operator's own operation: delete only ours, then the Event.
        let outcome = ops::release(
            &rt,
            &cfg,
            &target,
            engine,
            !opts.confirm,
            &ops::Holder::Cli,
            &requester,
        )
        .await?;
        let api = policy_api(engine);
        let name = target.object_name(engine);
        let line = match (outcome, opts.confirm) {
            (ReleaseOutcome::NotQuarantined, _) => {
                format!("{target}: not quarantined ({} {name} does not exist)", api.kind)
            }
            (ReleaseOutcome::Released, false) => format!(
                "{target}: server-side dry run (dryRun=All): {} {name} would be deleted; add --confirm to release",
                api.kind
            ),
            (ReleaseOutcome::Released, true) => {
                format!("{target}: released ({} {name} deleted)", api.kind)
            }
        };
        super::with_stdout(|w| writeln!(w, "{line}"))?;
        Ok(exit::OK)
    })
}
