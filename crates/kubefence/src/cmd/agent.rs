//! `kubefence agent`: the node agent (a DaemonSet, one per node). Sees every
//! new TCP and UDP connection of every pod on its node and keeps one
//! NetworkNeighborhood per workload for the learned controller.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kubefence_core::IpNet;

use crate::exit;

#[derive(Debug, Args)]
#[command(after_long_help = "\
What it does:
  Loads a small eBPF program (built from source with kubefence) that reports
  every TCP connection when it is established (from SYN_SENT: outgoing, from
  SYN_RECV: incoming) and the first datagram of every UDP flow, for every
  socket on the node, from the moment the agent starts: no pod restarts, any
  CNI. Replies are never counted. Each connection is attributed to the
  workload of the local pod (watched with the field selector
  spec.nodeName=<node>) and kept once per (workload, direction, peer, port,
  protocol); peers are pods of this node, Services (their selector), the node,
  or external addresses. Memory is capped by --max-entries (past it, new
  neighbours are counted per peer workload, without ports, in the annotation
  kubefence.dev/agent-coarsened, and never become rules).

What it writes:
  One NetworkNeighborhood (kubefence.dev/v1alpha1, Kubescape's shape) per
  workload, named <kind>-<name>, at most once per --write-interval-seconds per
  workload, merged with what other nodes wrote (no neighbour is lost to a
  race). Its kubescape.io/status is \"learning\" for --learning-period-seconds
  after the first write, then \"completed\". Run the operator with --learned
  to turn them into GeneratedNetworkPolicies for review.

Without BPF (--mode conntrack):
  Where the eBPF capture cannot load (no BTF, kernel < 5.8, BPF refused),
  reads the kernel's connection tracking events instead (ctnetlink, the new
  connections only: never a reply). It sees what crosses netfilter in the
  agent's network namespace: with hostNetwork, the routed pod traffic of an
  iptables-based CNI; not an eBPF datapath's (use --mode hubble on Cilium).
  Needs CAP_NET_ADMIN only. The client and the server of each connection
  are attributed as with eBPF (a ClusterIP to its Service's selector).

With Cilium (--mode hubble):
  Reads the flows of Hubble Relay's gRPC API (GetFlows, plaintext, e.g.
  http://hubble-relay.kube-system.svc:80) instead of loading eBPF: no
  capability is needed and no Pod watch (Cilium attributes each end itself).
  Flows are learned with the rules of `kubefence learn` (replies, drops and
  DNS answers as there). A broken stream is opened again with backoff, from
  the time of the last flow read. As a DaemonSet, --hubble-node \"$NODE_NAME\"
  keeps each agent to the flows of its node; as one Deployment, leave it out.

Needs (--mode ebpf):
  Linux >= 5.8, tracefs (/sys/kernel/tracing), cgroup v2, and CAP_BPF,
  CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN). `kubefence agent --check`
  tells what this host lacks, without loading anything. deploy/components/agent
  holds the DaemonSet and its RBAC.

Examples:
  kubefence agent --node \"$NODE_NAME\" --cluster-cidr 10.244.0.0/16 --cluster-cidr 10.96.0.0/12
  kubefence agent --check
  kubefence agent --mode hubble --hubble-relay http://hubble-relay.kube-system.svc:80

Stops cleanly on SIGTERM or Ctrl-C, writing what is still unwritten.")]
pub struct AgentOpts {
    /// Where connections come from: ebpf (this node's sockets), conntrack
    /// (the kernel's connection tracking, where BPF cannot load) or hubble
    /// (Hubble Relay's flows, Cilium clusters).
    #[arg(long, value_enum, default_value_t = AgentMode::Ebpf)]
    pub mode: AgentMode,
    /// With --mode hubble: Hubble Relay's gRPC address.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://hubble-relay.kube-system.svc:80"
    )]
    pub hubble_relay: String,
    /// With --mode hubble: only the flows observed on this node (Relay's
    /// node-name pattern; repeatable). Default: every node.
    #[arg(long, value_name = "NODE")]
    pub hubble_node: Vec<String>,
    /// This node's name: only its pods are watched (spec.nodeName). Needed
    /// with --mode ebpf.
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// The cluster's pod and Service networks (repeatable). An address inside
    /// them that is no known pod or Service is counted as unknown instead of
    /// becoming an external address rule.
    #[arg(long = "cluster-cidr", value_name = "CIDR")]
    pub cluster_cidrs: Vec<IpNet>,
    /// How long a deleted pod's address still names it (its last connections
    /// are read after the deletion is seen).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub pod_grace_seconds: u64,
    /// The most (workload, direction, peer, protocol, port) entries held.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_entries: usize,
    /// At most one write per workload per this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub write_interval_seconds: u64,
    /// Once told to stop (SIGTERM), how long the last writes may take:
    /// keep it under the pod's termination grace period (30 s in
    /// deploy/components/agent).
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    pub shutdown_timeout_seconds: u64,
    /// How long a neighborhood is "learning" before it is "completed".
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    pub learning_period_seconds: u64,
    /// The cgroup v2 directory whose sockets the UDP capture sees (default:
    /// the host's cgroup v2 root, which holds every pod).
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics (Prometheus: events read
    /// and lost, connections by outcome, writes, entries held, the mode).
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub admin_addr: std::net::SocketAddr,
    /// With --mode ebpf: read the DNS answers pods receive (UDP from port
    /// 53, up to 512 bytes) and keep the names of the external addresses
    /// they gave, so rules to those addresses carry the name (dnsNames).
    #[arg(long)]
    pub dns: bool,
    /// Check that this host can run the eBPF capture, say what is missing,
    /// and exit (0: it can; 2: it cannot). Loads nothing, calls no API.
    #[arg(long)]
    pub check: bool,
}

/// What to say when the eBPF capture cannot run here.
const EBPF_ALTERNATIVES: &str = "the eBPF capture cannot run on this host; where BPF cannot \
     load, run `kubefence agent --mode conntrack` (deploy/components/agent-conntrack), or \
     `--mode hubble` on a Cilium cluster (deploy/components/agent-hubble)";

/// Where the agent's connections come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentMode {
    Ebpf,
    Conntrack,
    Hubble,
}

pub fn run(opts: &AgentOpts) -> anyhow::Result<u8> {
    run_agent(opts)
}

#[cfg(target_os = "linux")]
fn run_agent(opts: &AgentOpts) -> anyhow::Result<u8> {
    use kubefence_agent::agent::{AgentConfig, Source};
    use kubefence_agent::capture::conntrack::ConntrackCapture;
    use kubefence_agent::capture::ebpf::{EbpfCapture, EbpfOptions, default_cgroup, preflight};
    use kubefence_agent::capture::hubble::{HubbleOptions, check_address};
    use kubefence_agent::telemetry::Telemetry;

    let ebpf = EbpfOptions {
        cgroup: opts.cgroup.clone().unwrap_or_else(default_cgroup),
        dns: opts.dns,
    };
    if opts.check {
        if opts.mode == AgentMode::Conntrack {
            ConntrackCapture::start().context("this host cannot run the conntrack capture")?;
            println!("this host can run the conntrack capture (subscribed to new connections)");
            return Ok(exit::OK);
        }
        if opts.mode == AgentMode::Hubble {
            check_address(&opts.hubble_relay)?;
            println!(
                "--mode hubble needs no host feature; {} is tried when the agent starts",
                opts.hubble_relay
            );
            return Ok(exit::OK);
        }
        preflight(&ebpf).context(EBPF_ALTERNATIVES)?;
        println!(
            "this host can run the eBPF capture (the rights are checked when the programs load)"
        );
        return Ok(exit::OK);
    }
    let node = match (opts.mode, &opts.node) {
        (_, Some(node)) => node.clone(),
        (AgentMode::Hubble, None) => String::new(),
        (mode, None) => {
            anyhow::bail!(
                "--node (or NODE_NAME) is required with --mode {}",
                if mode == AgentMode::Ebpf {
                    "ebpf"
                } else {
                    "conntrack"
                }
            )
        }
    };
    let config = AgentConfig {
        node,
        cluster_cidrs: opts.cluster_cidrs.clone(),
        pod_grace: Duration::from_secs(opts.pod_grace_seconds),
        max_entries: opts.max_entries.max(1),
        write_interval: Duration::from_secs(opts.write_interval_seconds.max(1)),
        learning_period: Duration::from_secs(opts.learning_period_seconds),
        sync_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_secs(opts.shutdown_timeout_seconds),
    };
    let source = match opts.mode {
        // First, so that a host that cannot capture is told at once.
        AgentMode::Ebpf => Source::Ebpf(Box::new(
            EbpfCapture::start(&ebpf).context(EBPF_ALTERNATIVES)?,
        )),
        AgentMode::Conntrack => Source::Conntrack(
            ConntrackCapture::start().context("the conntrack capture cannot start")?,
        ),
        AgentMode::Hubble => {
            check_address(&opts.hubble_relay)?;
            let mut hubble = HubbleOptions::new(opts.hubble_relay.clone());
            hubble.nodes = opts.hubble_node.clone();
            Source::Hubble(hubble)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.admin_addr)
            .await
            .with_context(|| format!("cannot listen on --admin-addr {}", opts.admin_addr))?;
        let client = kube::Client::try_default()
            .await
            .context("cannot reach the cluster (kubeconfig or in-cluster service account)")?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::cmd::operator::shutdown_signal().await;
            let _ = stop.send(true);
        });
        let telemetry = std::sync::Arc::new(Telemetry::default());
        tracing::info!(addr = %opts.admin_addr, "admin server listening");
        let admin = tokio::spawn(kubefence_operator::admin::serve_endpoints(
            listener,
            std::sync::Arc::new(AgentEndpoints(std::sync::Arc::clone(&telemetry))),
            stopped.clone(),
        ));
        let result = kubefence_agent::agent::run(client, source, config, stopped, telemetry)
            .await
            .context("agent");
        admin.abort();
        result
    })?;
    Ok(exit::OK)
}

/// `/metrics` and `/readyz` of the agent.
#[cfg(target_os = "linux")]
struct AgentEndpoints(std::sync::Arc<kubefence_agent::telemetry::Telemetry>);

#[cfg(target_os = "linux")]
impl kubefence_operator::admin::Endpoints for AgentEndpoints {
    fn metrics(&self) -> String {
        self.0.encode()
    }
    fn ready(&self) -> bool {
        self.0.is_ready()
    }
}

#[cfg(not(target_os = "linux"))]
fn run_agent(_opts: &AgentOpts) -> anyhow::Result<u8> {
    anyhow::bail!("kubefence agent runs on Linux only (its capture is eBPF)")
}
