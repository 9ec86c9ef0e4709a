//! `kubefence operator` (alias `run-operator`): runs the controllers that
//! keep kubefence policies true in the cluster of the current kubeconfig
//! context or, in a pod, of its service account.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kubefence_core::baseline::BaselineConfig;
use kubefence_operator::OperatorConfig;

use crate::exit;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  kubefence operator --namespace kubefence-system --log-format json -v
  kubefence operator --no-leader-election --config kubefence.yaml

Namespaces opt in with the label kubefence.dev/baseline=enabled (or use
--all-namespaces); a workload annotated kubefence.dev/baseline: disabled gets
no policy. Serves /healthz, /readyz and /metrics on --admin-addr. Stops
cleanly on SIGTERM or Ctrl-C.")]
pub struct OperatorOpts {
    /// Baseline config (YAML or JSON), shared with `generate`: DNS and
    /// ingress-controller selectors, cluster domain, protected namespaces.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Baseline every namespace but the protected ones, labelled or not.
    #[arg(long)]
    pub all_namespaces: bool,
    /// The operator's own namespace: holds the Lease, never baselined.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubefence-system")]
    pub namespace: String,
    /// This replica's identity in the Lease and in events.
    #[arg(long, env = "POD_NAME", default_value = "kubefence")]
    pub identity: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Run without a Lease (a single replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Name of the coordination.k8s.io Lease.
    #[arg(long, default_value = "kubefence-operator")]
    pub lease_name: String,
    /// Seconds between full resyncs (they write only differences).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub resync_seconds: u64,
    /// Run the learned controller: NetworkNeighborhoods (Kubescape's or
    /// kubefence's) become one GeneratedNetworkPolicy per workload; its
    /// NetworkPolicy is applied only once annotated
    /// kubefence.dev/approved=true. Needs deploy/components/learned.
    #[arg(long)]
    pub learned: bool,
    /// Run the profiles controller: one NetworkPolicy per IsolationProfile
    /// (router in, public internet out, blocked ranges never). Needs
    /// deploy/components/profiles.
    #[arg(long)]
    pub profiles: bool,
    /// Run the intents controller: every SecurityIntentBinding and
    /// ClusterSecurityIntentBinding becomes an IntentPolicy per namespace,
    /// written as the objects of every engine the cluster serves
    /// (NetworkPolicy, and CiliumNetworkPolicy, ClusterNetworkPolicy,
    /// AdminNetworkPolicy, KubeArmorPolicy when their CRDs are installed).
    /// Needs deploy/components/intents (and its per-engine components).
    #[arg(long)]
    pub intents: bool,
    /// The cluster's pod or service CIDR (repeatable): blocked for every
    /// isolation profile, whatever it lists.
    #[arg(long = "cluster-cidr", value_name = "CIDR")]
    pub cluster_cidrs: Vec<ipnet::IpNet>,
    /// With --profiles and agent-sandbox installed: give every
    /// SandboxTemplate the default isolation profile (its pods by
    /// agent-sandbox's template label; ingress from its router only; public
    /// internet out; cluster DNS blocked), or its spec.networkPolicy wrapped
    /// with the guardrails. `--sandbox-template-defaults=false` turns this
    /// off for all templates; the template annotation
    /// kubefence.dev/isolation=disabled for one.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub sandbox_template_defaults: bool,
}

/// Reads `--config` exactly as `generate` does (YAML or JSON, unknown
/// fields and bad selectors are errors).
pub fn read_config(path: &std::path::Path) -> anyhow::Result<BaselineConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read", path.display()))?;
    Ok(kubefence_k8s::config::parse_baseline_config(
        &text,
        &path.display().to_string(),
    )?)
}

pub fn run(opts: &OperatorOpts) -> anyhow::Result<u8> {
    let baseline = match &opts.config {
        Some(path) => read_config(path)?,
        None => BaselineConfig::default(),
    };
    let config = OperatorConfig {
        baseline,
        all_namespaces: opts.all_namespaces,
        namespace: opts.namespace.clone(),
        identity: opts.identity.clone(),
        admin_addr: opts.admin_addr,
        leader_election: !opts.no_leader_election,
        lease_name: opts.lease_name.clone(),
        resync: Duration::from_secs(opts.resync_seconds.max(1)),
        learned: opts.learned,
        profiles: opts.profiles,
        intents: opts.intents,
        profile_cluster_cidrs: opts.cluster_cidrs.clone(),
        sandbox_template_defaults: opts.sandbox_template_defaults,
        ..OperatorConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        kubefence_operator::run(config, shutdown_signal())
            .await
            .context("operator")
    })?;
    Ok(exit::OK)
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_is_the_baseline_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubefence.yaml");
        std::fs::write(
            &path,
            "clusterDomain: example.internal\n\
             protectedNamespaces: [kube-system, monitoring]\n\
             dns:\n  namespaceSelector:\n    matchLabels: {kubernetes.io/metadata.name: kube-system}\n  \
             podSelector:\n    matchLabels: {k8s-app: coredns}\n",
        )
        .unwrap();
        let cfg = read_config(&path).unwrap();
        assert_eq!(cfg.cluster_domain, "example.internal");
        assert!(cfg.protected_namespaces.contains("monitoring"));
        assert_eq!(cfg.dns.peer.pod_selector.match_labels["k8s-app"], "coredns");

        std::fs::write(&path, "clusterDomian: typo.example\n").unwrap();
        let err = format!("{:#}", read_config(&path).unwrap_err());
        assert!(err.contains("clusterDomian"), "{err}");
    }
}
