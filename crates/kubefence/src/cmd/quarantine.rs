//! `kubefence quarantine KIND/NAME`: cut one workload off the network.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kubefence_core::WorkloadKind;
use kubefence_core::quarantine::{self as core_q, Audit, Engine, Plan, Target};
use kubefence_operator::Context as Runtime;
use kubefence_operator::controllers::quarantine::{self as ops, ApplyOutcome, QuarantineConfig};

use crate::exit;
use crate::inputs;
use crate::logging::{self, Place, Severity};
use crate::output::{self, Format, FormatParser};

const LONG_ABOUT: &str = "\
Isolates one workload during an incident: a policy denies all ingress and all
egress of exactly its pods (the live selector, matchExpressions included). The
pods keep running, memory and processes intact; nothing is restarted or
mutated. Undo with `kubefence release`.

Without --confirm the policy is sent as a server-side dry run (dryRun=All) and
the plan is printed; with --offline the plan is computed from manifests (-f)
and nothing is sent.

NetworkPolicies are additive: a deny-all policy does not cut what another
policy already allows. The plan lists every such path (policy, peer, ports),
and `effective` is false while any remains. --engine cilium
(CiliumNetworkPolicy ingressDeny/egressDeny), --engine clusternetworkpolicy
(ClusterNetworkPolicy v1alpha2, Admin tier, Deny at priority 0) and --engine
adminnetworkpolicy (the older AdminNetworkPolicy v1alpha1) override allows,
where the CNI implements them (docs/quarantine.md says which does).

Kinds: Deployment (deploy), StatefulSet (sts), DaemonSet (ds), ReplicaSet
(rs), Job, CronJob (cj), Pod (po). kube-system, kube-public and
kube-node-lease are refused before any request.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence quarantine deploy/api -n shop --reason 'crypto miner' --finding ALERT-42
  kubefence quarantine deploy/api -n shop --reason 'crypto miner' --confirm
  kubefence quarantine sts/db -n shop --reason 'exfiltration' --engine cilium --confirm
  kubefence quarantine deploy/cartservice --offline -f examples/online-boutique -o yaml --reason test

Exit codes: 0 done (or planned) and effective; 1 done (or planned) but paths
stay open through other policies (not effective); 2 refused or failed
(protected namespace, empty selector, not found, foreign policy, forbidden,
pods other than the target's selected without --allow-collateral);
3 offline: some documents were bad (reported on stderr).";

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    #[default]
    Networkpolicy,
    Cilium,
    /// AdminNetworkPolicy v1alpha1 (CNIs that implement only it).
    Adminnetworkpolicy,
    /// ClusterNetworkPolicy v1alpha2, Admin tier (network-policy-api v0.2.0).
    Clusternetworkpolicy,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Networkpolicy => Self::NetworkPolicy,
            EngineArg::Cilium => Self::Cilium,
            EngineArg::Adminnetworkpolicy => Self::AdminNetworkPolicy,
            EngineArg::Clusternetworkpolicy => Self::ClusterNetworkPolicy,
        }
    }
}

/// Cut a workload off the network (dry run unless --confirm).
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct QuarantineOpts {
    /// The workload: KIND/NAME (deploy/api, sts/db, pod/x, ...).
    #[arg(value_name = "KIND/NAME", value_parser = parse_target)]
    pub target: (WorkloadKind, String),
    /// Namespace of the workload.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Why (recorded on the policy and in the Event).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// The finding that triggered it: an alert id, a ticket, a URL.
    #[arg(long, value_name = "REF")]
    pub finding: Option<String>,
    /// Which policy isolates.
    #[arg(long, value_enum, default_value_t = EngineArg::Networkpolicy)]
    pub engine: EngineArg,
    /// Really write the policy (default: server-side dry run).
    #[arg(long, conflicts_with = "offline")]
    pub confirm: bool,
    /// Isolate even when the selector picks pods that are not the target's
    /// own (a Pod's labels, pod-template-hash included, are shared by every
    /// sibling of its ReplicaSet). Without it such a plan is refused before
    /// anything is written.
    #[arg(long)]
    pub allow_collateral: bool,
    /// Plan from manifests (-f), without a cluster.
    #[arg(long, requires = "files")]
    pub offline: bool,
    /// With --offline: manifest file or directory (repeatable); `-` is stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        requires = "offline"
    )]
    pub files: Vec<String>,
    /// With --offline: also read hidden files and directories (names
    /// starting with `.`, such as `.github/`) inside the directories given;
    /// by default a walk skips them.
    #[arg(long, requires = "files")]
    pub include_hidden: bool,
    /// Who asks (default: the kubeconfig user of the current context).
    #[arg(long, value_name = "NAME")]
    pub requester: Option<String>,
    /// Output format of the plan.
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::PLAN_FORMATS), default_value = "auto")]
    pub output: Format,
}

/// `KIND/NAME`.
pub fn parse_target(s: &str) -> Result<(WorkloadKind, String), String> {
    let (kind, name) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected KIND/NAME, e.g. deploy/api"))?;
    if name.is_empty() || name.contains('/') {
        return Err(format!("{s:?}: expected KIND/NAME, e.g. deploy/api"));
    }
    Ok((kind.parse()?, name.to_string()))
}

/// How the plan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Offline,
    DryRun,
    Created,
    AlreadyIsolated,
    DryRunRepair,
    Repaired,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline plan: nothing was sent",
            Self::DryRun => {
                "server-side dry run (dryRun=All) passed: nothing was written; add --confirm to isolate"
            }
            Self::Created => "isolated: the policy was created",
            Self::AlreadyIsolated => "already isolated: kubefence's policy exists",
            Self::DryRunRepair => {
                "server-side dry run (dryRun=All) passed: kubefence's policy exists but was changed; add --confirm to restore it"
            }
            Self::Repaired => "isolated: kubefence's policy had been changed and was restored",
        }
    }
}

pub fn run(opts: &QuarantineOpts) -> anyhow::Result<u8> {
    let target = Target::new(opts.target.0, &opts.namespace, &opts.target.1);
    let cfg = QuarantineConfig::default();
    // Before anything else: no file read, no request.
    core_q::check_namespace(&target, &cfg.core())?;
    let engine: Engine = opts.engine.into();
    let now = cfg.now_rfc3339();
    if opts.offline {
        return offline(opts, &target, engine, now, &cfg);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(online(opts, &target, engine, now, &cfg))
}

fn offline(
    opts: &QuarantineOpts,
    target: &Target,
    engine: Engine,
    now: String,
    cfg: &QuarantineConfig,
) -> anyhow::Result<u8> {
    let inputs::Inputs {
        cluster,
        had_errors,
    } = inputs::read(
        &opts.files,
        &kubefence_k8s::load::LoadOptions {
            include_hidden: opts.include_hidden,
            ..inputs::load_options(&opts.namespace, false)
        },
        "-f",
    )?;
    let Some(workload) = cluster.workloads.iter().find(|w| {
        w.kind == target.kind && w.namespace == target.namespace && w.name == target.name
    }) else {
        bail!("{target}: not found in the manifests");
    };
    let audit = Audit {
        reason: opts.reason.clone(),
        finding: opts.finding.clone(),
        requester: opts
            .requester
            .clone()
            .unwrap_or_else(|| "offline".to_string()),
        time: now,
    };
    let plan = core_q::plan(workload, &audit, engine, &cluster, &cfg.core())?;
    print(opts, &plan, Outcome::Offline)?;
    Ok(exit::with_input_errors(verdict(&plan), had_errors))
}

async fn online(
    opts: &QuarantineOpts,
    target: &Target,
    engine: Engine,
    now: String,
    cfg: &QuarantineConfig,
) -> anyhow::Result<u8> {
    let rt = Runtime::for_command(CLI_IDENTITY)
        .await
        .context("cannot reach the cluster (kubeconfig or in-cluster config)")?;
    let audit = Audit {
        reason: opts.reason.clone(),
        finding: opts.finding.clone(),
        requester: opts.requester.clone().unwrap_or_else(kubeconfig_user),
        time: now,
    };
    let request = ops::Request {
        target: target.clone(),
        audit,
        engine,
        dry_run: !opts.confirm,
        allow_collateral: opts.allow_collateral,
        holder: ops::Holder::Cli,
    };
    // The operator's own operation: plan, collateral check, apply, Event.
    let isolation = ops::isolate(&rt, cfg, &request).await?;
    let plan = isolation.plan;
    logging::report(
        Severity::Note,
        Place::object(&plan.target.to_string()),
        &format!("the selector picks {}", isolation.selection.summary()),
    );
    let outcome = match isolation.outcome {
        ApplyOutcome::Created if !opts.confirm => Outcome::DryRun,
        ApplyOutcome::Created => Outcome::Created,
        ApplyOutcome::AlreadyIsolated => Outcome::AlreadyIsolated,
        ApplyOutcome::Repaired if !opts.confirm => Outcome::DryRunRepair,
        ApplyOutcome::Repaired => Outcome::Repaired,
    };
    print(opts, &plan, outcome)?;
    Ok(verdict(&plan))
}

/// The CLI's instance name in the Events it records (reporting controller
/// `kubefence`, as the operator's).
pub const CLI_IDENTITY: &str = "kubefence-cli";

/// The kubeconfig user of the current context (in a pod: the service
/// account); `unknown` when neither can be read.
pub fn kubeconfig_user() -> String {
    if let Ok(kc) = kube::config::Kubeconfig::read()
        && let Some(current) = kc.current_context.as_deref()
        && let Some(ctx) = kc.contexts.iter().find(|c| c.name == current)
        && let Some(user) = ctx.context.as_ref().and_then(|c| c.user.clone())
    {
        return user;
    }
    std::env::var("KUBERNETES_SERVICE_HOST")
        .map(|_| "in-cluster service account".to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn verdict(plan: &Plan) -> u8 {
    if plan.effective() {
        exit::OK
    } else {
        exit::NEGATIVE
    }
}

fn print(opts: &QuarantineOpts, plan: &Plan, outcome: Outcome) -> anyhow::Result<()> {
    let dry_run = !matches!(
        outcome,
        Outcome::Created | Outcome::AlreadyIsolated | Outcome::Repaired
    );
    let format = opts.output.resolve(Format::Text, Format::Text);
    super::with_stdout(|w| output::plan::write_plan(w, plan, outcome.as_str(), dry_run, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_short_kinds() {
        assert_eq!(
            parse_target("deploy/api"),
            Ok((WorkloadKind::Deployment, "api".to_string()))
        );
        assert_eq!(
            parse_target("StatefulSet/db"),
            Ok((WorkloadKind::StatefulSet, "db".to_string()))
        );
        assert!(parse_target("api").is_err());
        assert!(parse_target("svc/api").is_err());
        assert!(parse_target("deploy/").is_err());
    }
}
