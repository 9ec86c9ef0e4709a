//! The command line: global flags, the subcommands, and the flags they
//! share. Each subcommand's own flags live in its module under `cmd/`.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::exit;

const ABOUT: &str =
    "Least-privilege networking for Kubernetes: NetworkPolicy analysis and generation";

const LONG_ABOUT: &str = "\
Least-privilege networking for Kubernetes.

kubefence reads Kubernetes manifests (files, directories, multi-document YAML,
JSON, `kind: List`, `kubectl get -o yaml` dumps) and evaluates their
NetworkPolicies (networking.k8s.io/v1) exactly: which workload may reach which,
on which ports, and why. No cluster is needed.

Installed as `kubectl-fence` somewhere on PATH, it is also the kubectl plugin
`kubectl fence` (for example `ln -s \"$(command -v kubefence)\" ~/bin/kubectl-fence`).";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence demo
  kubefence analyze -f manifests/
  kubefence analyze -f manifests/ -o json
  kubefence generate -f manifests/ > baseline-policies.yaml
  kubefence analyze -A                        # the live cluster, every namespace
  kubectl get namespaces,pods,deploy,sts,ds,svc,ing,cm,netpol -A -o yaml | kubefence analyze -f -
  kubefence explain -f manifests/ --from shop/frontend --to shop/cartservice --port 7070
  kubefence diff --before main/ --after branch/
  kubefence learn --flows flows.jsonl -f manifests/ > learned.yaml
  kubefence verify --flows flows.jsonl -f manifests/ -f learned.yaml

Logging: -v lists skipped kinds and progress on stderr; KUBEFENCE_LOG takes a
tracing filter (e.g. KUBEFENCE_LOG=debug).";

#[derive(Debug, Parser)]
#[command(
    name = "kubefence",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = format!("{AFTER_LONG_HELP}\n\n{}", exit::HELP),
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// More output on stderr: -v lists skipped objects, -vv debug, -vvv trace.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Format of log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Colour in tables and verdicts: auto (when stdout is a terminal and
    /// NO_COLOR is not set), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::output::color::ColorChoice::Auto, global = true)]
    pub color: crate::output::color::ColorChoice,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Analyze(cmd::analyze::AnalyzeOpts),
    Generate(cmd::generate::GenerateOpts),
    Learn(cmd::learn::LearnOpts),
    Verify(cmd::verify::VerifyOpts),
    Explain(cmd::explain::ExplainOpts),
    Diff(cmd::diff::DiffOpts),
    Demo(cmd::demo::DemoOpts),
    Report(cmd::report::ReportOpts),
    Quarantine(cmd::quarantine::QuarantineOpts),
    Release(cmd::release::ReleaseOpts),
    /// Run the operator: keep baseline policies true in the live cluster.
    #[command(alias = "run-operator")]
    Operator(cmd::operator::OperatorOpts),
    /// Print kubefence's CustomResourceDefinitions as YAML.
    Crds(cmd::crds::CrdsOpts),
    /// Security intents: render them per engine (offline), import Nimbus's.
    Intents(cmd::intents::IntentsOpts),
    /// Run the node agent: record every pod's connections on this node as
    /// NetworkNeighborhoods (eBPF; a DaemonSet).
    Agent(cmd::agent::AgentOpts),
    /// Isolation profiles, offline: `kubefence profile render`.
    Profile(cmd::profile::ProfileOpts),
    /// Print the completion script of a shell (bash, zsh, fish, powershell).
    Completion(cmd::completion::CompletionOpts),
    /// Print a man page (roff), generated from this --help.
    Man(cmd::man::ManOpts),
    /// Print the version, the git commit it was built from and the target.
    Version(cmd::version::VersionOpts),
}

/// The manifests a command reads: files, or without `-f` the live cluster
/// of the kubeconfig.
#[derive(Debug, Clone, Args)]
pub struct InputFiles {
    /// Manifest file or directory (repeatable); `-` reads stdin. Without
    /// -f, the live cluster of the current kubeconfig context is read
    /// (read-only; deploy/components/reader has the ClusterRole it needs).
    #[arg(short = 'f', long = "filename", alias = "file", value_name = "PATH")]
    pub files: Vec<String>,
    #[command(flatten)]
    pub walk: WalkOpts,
    #[command(flatten)]
    pub live: LiveOpts,
}

/// Where a live cluster is read from, as kubectl does.
#[derive(Debug, Clone, Default, Args)]
pub struct LiveOpts {
    /// Without -f: the kubeconfig file (default: $KUBECONFIG, then
    /// ~/.kube/config, then the in-cluster ServiceAccount).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Without -f: the kubeconfig context to use (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Without -f: read every namespace (default: -n NS, else the
    /// context's namespace, else `default`).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

impl LiveOpts {
    /// Whether any live-cluster flag was given.
    pub fn any(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some() || self.all_namespaces
    }
}

/// How directories named by the input flags are walked.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct WalkOpts {
    /// Also read hidden files and directories (names starting with `.`, such
    /// as `.github/` or `.k8s/`) inside the directories given; by default a
    /// walk skips them. A hidden path named directly is always read.
    #[arg(long)]
    pub include_hidden: bool,
}

impl WalkOpts {
    /// `opts` with this walk's settings.
    pub fn apply(self, opts: kubefence_k8s::load::LoadOptions) -> kubefence_k8s::load::LoadOptions {
        kubefence_k8s::load::LoadOptions {
            include_hidden: self.include_hidden,
            ..opts
        }
    }
}

/// How objects are read and evaluated; shared by every command that reads
/// manifests.
#[derive(Debug, Clone, Args)]
pub struct ModelOpts {
    /// Namespace for objects that do not name one (default `default`); on a
    /// live cluster (no -f), the namespace to read.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Endpoint granularity: one per workload (Deployment, StatefulSet, ...)
    /// or one per pod (live pod dumps).
    #[arg(long, value_enum, value_name = "UNIT", default_value_t = By::Workload)]
    pub by: By,
    /// Let ipBlocks match pods by their known IPs (Calico/Cilium behaviour);
    /// by default ipBlocks match only addresses outside the cluster.
    #[arg(long)]
    pub ipblocks_match_pod_ips: bool,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum By {
    #[default]
    Workload,
    Pod,
}

impl ModelOpts {
    /// The namespace of objects that name none.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    pub fn analyze_options(&self) -> kubefence_core::engine::AnalyzeOptions {
        kubefence_core::engine::AnalyzeOptions {
            ipblocks_match_pod_ips: self.ipblocks_match_pod_ips,
        }
    }

    pub fn by_pod(&self) -> bool {
        self.by == By::Pod
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn files_repeat_and_accept_stdin() {
        let cli = Cli::try_parse_from([
            "kubefence",
            "analyze",
            "-f",
            "a.yaml",
            "-f",
            "-",
            "-o",
            "json",
            "-v",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
        // Without -f the live cluster is read: the flags parse, and the
        // live-cluster flags are accepted.
        let cli = Cli::try_parse_from(["kubefence", "analyze", "-A", "--context", "prod"]);
        assert!(cli.is_ok(), "{cli:?}");
    }
}
