//! `kubefence learn`: least-privilege policies from what was observed —
//! Hubble flows (`--flows`) or Kubescape NetworkNeighborhoods
//! (`--neighborhood`).
//!
//! Wiring: flows are streamed by `kubefence_k8s::learn::hubble` into the
//! core `Learner` (`observe`, then `finish` with the manifests of `-f`),
//! whose neighborhoods go to the core `build` with the KnownServers;
//! neighborhoods are read by `kubefence_k8s::learn::read`, gated by the
//! Kubescape status rules and converted by `learn::neighborhood`, then
//! built the same way and written as GeneratedNetworkPolicies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, ValueEnum};
use kubefence_core::WorkloadKind;
use kubefence_core::learn::{self, KnownServer, LearnOptions, Learned, Learner, Neighborhood};
use kubefence_k8s::adapters;
use kubefence_k8s::learn::generated::generated_object;
use kubefence_k8s::learn::neighborhood::{
    check_legacy_status, check_status, known_servers, legacy_neighbors, neighborhood,
};
use kubefence_k8s::learn::objects::Group;
use kubefence_k8s::learn::{hubble, read as learned_read};
use kubefence_k8s::load::{Location, Source};
use kubefence_k8s::render;

use crate::exit;
use crate::inputs;
use crate::logging::{self, Place, Severity};
use crate::output::{self, Format, FormatParser};

const LONG_ABOUT: &str = "\
Learns least-privilege policies from observed traffic: one policy per
workload that allows what was seen and nothing else.

From Hubble flows (--flows): the output of `hubble observe -o jsonpb` or
`-o json`, one record a line or a JSON array, plain or gzip-compressed; files
are streamed (memory grows with distinct connections, not with flows). A
connection counts once, from its opening (TCP SYN, a policy-verdict event,
the first packet of a UDP exchange); replies never become rules. Pods are
attributed to their workloads through Hubble's workloads[], the pod-name
patterns of ReplicaSets and StatefulSets, or the manifests given with -f
(then a peer is selected by its workload's own spec.selector). Peer selectors
never carry per-replica or per-run labels (pod-template-hash, StatefulSet pod
names, a Job's controller-uid, ...). Addresses outside the cluster become
/32 (/128) ipBlocks, or the CIDR of a KnownServer that contains them, with a
policyRef; DNS to kube-dns becomes the baseline's DNS rule. Each policy says,
in its kubefence.dev/rules annotation, which flows justified each rule: how
many connections, first and last seen.

From Kubescape (--neighborhood): NetworkNeighborhood objects (Kubescape's
spdx.softwarecomposition.kubescape.io/v1beta1 or kubefence.dev/v1alpha1, and
Kubescape's earlier NetworkNeighbors) become GeneratedNetworkPolicies of the
same shape as Kubescape's, without its mistakes: a neighbour with neither
selector nor address is not turned into allow-any, IPv6 addresses are /128,
per-replica labels are dropped. A neighborhood is used only when its
kubescape.io/status is learning or completed, or it is annotated
kubescape.io/managed-by: User (Kubescape's rule); others are errors naming
the status.

Everything that did not become a rule is listed by --report (and counted on
stderr). Output is deterministic, byte for byte, whatever the input order.";

const AFTER_LONG_HELP: &str = "\
Examples:
  hubble observe -o jsonpb --last 100000 > flows.jsonl
  kubefence learn --flows flows.jsonl > learned.yaml
  kubefence learn --flows flows.jsonl.gz -f manifests/ --out-dir learned/
  kubefence learn --flows day1.jsonl --flows day2.jsonl --known-servers known-servers.yaml
  kubefence learn --flows flows.jsonl --engine cilium -o json
  kubefence learn --flows flows.jsonl --report text
  kubectl get networkneighborhoods -A -o yaml > nn.yaml
  kubefence learn --neighborhood nn.yaml --known-servers known-servers.yaml

Check before enforcing:
  kubefence verify --flows flows.jsonl -f manifests/ -f learned.yaml

Exit codes: 0 ok; 2 usage or fatal error (bad flag, missing file, nothing
read); 3 some flow records or objects were bad, or a neighborhood's status
refused it, or a workload could not get a correct policy (all reported on
stderr); the rest was learned and printed.";

/// Learn least-privilege policies from Hubble flows or Kubescape neighborhoods.
#[derive(Debug, Args)]
#[command(
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    group(ArgGroup::new("source").required(true).args(["flows", "neighborhood"]))
)]
pub struct LearnOpts {
    /// Hubble flow file (`hubble observe -o jsonpb` or `-o json`; gzip
    /// too; repeatable; `-` is stdin).
    #[arg(long, value_name = "FILE")]
    pub flows: Vec<String>,
    /// Kubescape NetworkNeighborhood file or directory (repeatable; `-` is
    /// stdin): write GeneratedNetworkPolicies.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["flows", "filename", "engine"])]
    pub neighborhood: Vec<String>,
    /// Manifests of the workloads (file or directory, repeatable): pods are
    /// attributed by their workload's spec.selector.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filename: Vec<String>,
    /// Instead of -f: the live cluster's workloads (--kubeconfig,
    /// --context; -A for every namespace, else -n).
    #[command(flatten)]
    pub live: crate::cli::LiveOpts,
    /// KnownServer objects (Kubescape's or kubefence's; repeatable):
    /// addresses inside one of their CIDRs become that CIDR.
    #[arg(long, value_name = "PATH")]
    pub known_servers: Vec<String>,
    /// Policy kind to write: NetworkPolicy, or CiliumNetworkPolicy (with
    /// toFQDNs for the names DNS answers gave).
    #[arg(long, value_enum, default_value_t = Engine::Networkpolicy)]
    pub engine: Engine,
    /// Output: YAML documents, or one JSON `kind: List` (auto: yaml).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::POLICY_FORMATS), default_value = "auto")]
    pub output: Format,
    /// Write one file per policy, DIR/<namespace>/<name>.yaml (or .json),
    /// instead of printing; other files in DIR are left alone.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Print what was read, left out and widened instead of the policies.
    #[arg(long, value_name = "FORMAT", value_parser = FormatParser(output::REPORT_FORMATS))]
    pub report: Option<Format>,
    /// Namespace of manifests and neighborhoods that name none.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Collapse more than N addresses of one DNS name into their smallest
    /// covering prefix (never wider than /16, /48 for IPv6); the report
    /// lists what was widened.
    #[arg(long, value_name = "N")]
    pub aggregate_external: Option<usize>,
    /// The API server's addresses (repeatable CIDR or IP), for
    /// `reserved:kube-apiserver` peers.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub api_server: Vec<kubefence_core::IpNet>,
    /// Turn `reserved:host` and `reserved:remote-node` peers into rules to
    /// the node addresses of --node-address (by default they are listed in
    /// the report and left out).
    #[arg(long)]
    pub allow_node_peers: bool,
    /// A node address or CIDR (repeatable), for --allow-node-peers.
    #[arg(long, value_name = "CIDR", value_parser = parse_net, requires = "allow_node_peers")]
    pub node_address: Vec<kubefence_core::IpNet>,
    /// With --neighborhood: the group of the GeneratedNetworkPolicies
    /// written (Kubescape's, or kubefence's kubefence.dev/v1alpha1).
    #[arg(long, value_enum, default_value_t = ApiGroup::Kubescape)]
    pub api_group: ApiGroup,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Networkpolicy,
    Cilium,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ApiGroup {
    Kubescape,
    Kubefence,
}

fn parse_net(s: &str) -> Result<kubefence_core::IpNet, String> {
    s.parse::<kubefence_core::IpNet>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(kubefence_core::IpNet::from)
        })
        .map_err(|_| format!("{s:?} is neither a CIDR nor an IP address"))
}

/// One object to print or write.
struct Out {
    namespace: String,
    name: String,
    kind: &'static str,
    object: serde_json::Value,
}

pub fn run(opts: &LearnOpts) -> anyhow::Result<u8> {
    let mut had_errors = false;
    let known = read_known_servers(&opts.known_servers, &mut had_errors)?;
    let options = LearnOptions {
        aggregate_external: opts.aggregate_external,
        api_server: opts.api_server.clone(),
        allow_node_peers: opts.allow_node_peers,
        node_addresses: opts.node_address.clone(),
        ..LearnOptions::default()
    };
    let (learned, objects) = if opts.neighborhood.is_empty() {
        from_flows(opts, &known, &options, &mut had_errors)?
    } else {
        from_neighborhoods(opts, &known, &options, &mut had_errors)?
    };
    report_left_out(&learned, opts.report.is_none());
    had_errors |= learned.report.has_errors();
    let format = opts.output.resolve(Format::Yaml, Format::Yaml);
    let mut refused = false;
    match (opts.report, &opts.out_dir) {
        (Some(Format::Json), _) => super::with_stdout(|w| {
            serde_json::to_writer_pretty(&mut *w, &learned.report)?;
            std::io::Write::write_all(w, b"\n")
        })?,
        (Some(_), _) => super::with_stdout(|w| {
            std::io::Write::write_all(w, learned.report.to_text().as_bytes())
        })?,
        (None, Some(dir)) => refused = write_dir(dir, &objects, format)?,
        (None, None) => super::with_stdout(|w| write_objects(w, &objects, format))?,
    }
    Ok(exit::with_input_errors(exit::OK, had_errors || refused))
}

fn read_known_servers(paths: &[String], had_errors: &mut bool) -> anyhow::Result<Vec<KnownServer>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    inputs::check_paths(paths)?;
    let input = learned_read::read(&sources(paths));
    report_read(&input, had_errors);
    let mut out = Vec::new();
    for placed in &input.known_servers {
        match known_servers(&placed.object) {
            Ok(servers) => out.extend(servers),
            Err(errors) => report_errors(&placed.location, errors, had_errors),
        }
    }
    if input.known_servers.is_empty() {
        bail!(
            "--known-servers {}: no KnownServer was read",
            paths.join(", ")
        );
    }
    Ok(out)
}

fn sources(paths: &[String]) -> Vec<Source> {
    paths
        .iter()
        .map(|p| {
            if p == "-" {
                Source::Stdin
            } else {
                Source::Path(p.into())
            }
        })
        .collect()
}

fn report_read(input: &learned_read::LearnedInput, had_errors: &mut bool) {
    for e in &input.errors {
        logging::report_at(Severity::Error, &e.location, &e.message);
        *had_errors = true;
    }
    for s in &input.skipped {
        logging::report_at(
            Severity::Info,
            &s.location,
            &format!(
                "skipped {} ({}): not a learned-policy kind",
                s.kind, s.api_version
            ),
        );
    }
}

fn report_errors(
    location: &Location,
    errors: Vec<kubefence_k8s::convert::ConvertError>,
    had_errors: &mut bool,
) {
    for e in errors {
        let at = Location {
            field: (!e.field.is_empty()).then_some(e.field),
            ..location.clone()
        };
        logging::report_at(Severity::Error, &at, &e.message);
        *had_errors = true;
    }
}

/// Streams every `--flows` file into `learner`, reporting each unreadable
/// record (file and line) and going on; returns how many records were
/// read, flows or not. `learn` and `verify` read flows alike through it.
pub(crate) fn observe_flows(
    paths: &[String],
    learner: &mut Learner,
    had_errors: &mut bool,
) -> anyhow::Result<u64> {
    let mut records = 0u64;
    for path in paths {
        let mut reader =
            hubble::open(path).with_context(|| format!("--flows {path}: cannot read"))?;
        // Parsed on every core, each with its own learner, merged after.
        records += reader.learn_into(learner, hubble::default_workers(), |e| {
            *had_errors = true;
            logging::report(
                Severity::Error,
                Place {
                    file: Some(&e.file),
                    field: Some(&format!("line {}", e.line)),
                    ..Place::default()
                },
                &e.message,
            );
        });
    }
    Ok(records)
}

fn from_flows(
    opts: &LearnOpts,
    known: &[KnownServer],
    options: &LearnOptions,
    had_errors: &mut bool,
) -> anyhow::Result<(Learned, Vec<Out>)> {
    inputs::check_paths(&opts.flows)?;
    if opts.live.any() && !opts.filename.is_empty() {
        bail!(
            "--kubeconfig, --context and -A read a live cluster; -f reads files: give one or the other"
        );
    }
    let cluster = if opts.live.any() {
        let read = inputs::read_live(
            &opts.live,
            Some(opts.namespace.as_str()),
            &inputs::load_options(&opts.namespace, false),
        )?;
        *had_errors |= read.had_errors;
        Some(read.cluster)
    } else if opts.filename.is_empty() {
        None
    } else {
        let read = inputs::read(
            &opts.filename,
            &inputs::load_options(&opts.namespace, false),
            "-f",
        )?;
        *had_errors |= read.had_errors;
        Some(read.cluster)
    };
    let mut learner = Learner::new();
    let records = observe_flows(&opts.flows, &mut learner, had_errors)?;
    if records == 0 {
        bail!(
            "--flows {}: nothing to learn from: no flow record was read",
            opts.flows.join(", ")
        );
    }
    tracing::info!(records, "flows read");
    let (neighborhoods, flow_report) = learner.finish(cluster.as_ref());
    let mut learned = learn::build(&neighborhoods, known, options)?;
    learned.report.merge(flow_report);
    let objects = learned
        .policies
        .iter()
        .map(|p| {
            let labels: BTreeMap<String, String> = p.labels.clone();
            let annotations: BTreeMap<String, String> = p.annotations.clone();
            let object = match opts.engine {
                Engine::Networkpolicy => {
                    let mut np = render::network_policy(&p.policy);
                    np.metadata.labels = (!labels.is_empty()).then_some(labels);
                    np.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
                    serde_json::to_value(&np)?
                }
                // The write layer every engine's objects go through.
                Engine::Cilium => {
                    let rendered = adapters::render(
                        kubefence_core::ruleset::Engine::Cilium,
                        &p.rule_set(),
                        &adapters::Options::default(),
                    )
                    .with_context(|| format!("{}/{}", p.policy.namespace, p.policy.name))?;
                    for warning in &rendered.warnings {
                        tracing::warn!(policy = %p.policy.name, "{warning}");
                    }
                    rendered.object
                }
            };
            Ok(Out {
                namespace: p.policy.namespace.clone(),
                name: p.policy.name.clone(),
                kind: match opts.engine {
                    Engine::Networkpolicy => "NetworkPolicy",
                    Engine::Cilium => "CiliumNetworkPolicy",
                },
                object,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((learned, objects))
}

/// `(namespace, name, lower-case kind)`: how a neighborhood's workload and
/// the built policy's are matched (the builder writes the kind canonically).
fn workload_key(w: &learn::WorkloadRef) -> (String, String, String) {
    let kind =
        WorkloadKind::from_str(&w.kind).map_or_else(|_| w.kind.clone(), |k| k.as_str().to_string());
    (
        w.namespace.clone(),
        w.name.clone(),
        kind.to_ascii_lowercase(),
    )
}

fn from_neighborhoods(
    opts: &LearnOpts,
    known: &[KnownServer],
    options: &LearnOptions,
    had_errors: &mut bool,
) -> anyhow::Result<(Learned, Vec<Out>)> {
    inputs::check_paths(&opts.neighborhood)?;
    let input = learned_read::read(&sources(&opts.neighborhood));
    report_read(&input, had_errors);
    // Every object bad is reported already (exit 3); nothing at all read
    // is not an empty result.
    if input.neighborhoods.is_empty()
        && input.legacy_neighbors.is_empty()
        && input.errors.is_empty()
    {
        bail!(
            "--neighborhood {}: nothing to learn from: no NetworkNeighborhood was read",
            opts.neighborhood.join(", ")
        );
    }
    let mut neighborhoods: Vec<Neighborhood> = Vec::new();
    // The neighborhood's name per workload: Kubescape names the
    // GeneratedNetworkPolicy after it.
    let mut names: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut take = |location: &Location,
                    name: Option<&String>,
                    status: Result<(), kubefence_k8s::convert::ConvertError>,
                    converted: Result<
        kubefence_k8s::learn::neighborhood::WithWarnings<Neighborhood>,
        Vec<kubefence_k8s::convert::ConvertError>,
    >| {
        if let Err(e) = status {
            report_errors(location, vec![e], had_errors);
            return;
        }
        match converted {
            Ok(n) => {
                for w in n.warnings {
                    let at = Location {
                        field: Some(w.field),
                        ..location.clone()
                    };
                    logging::report_at(Severity::Warning, &at, &w.message);
                }
                if let Some(name) = name {
                    names.insert(workload_key(&n.value.workload), name.clone());
                }
                neighborhoods.push(n.value);
            }
            Err(errors) => report_errors(location, errors, had_errors),
        }
    };
    for placed in &input.neighborhoods {
        take(
            &placed.location,
            placed.object.metadata.name.as_ref(),
            check_status(&placed.object.metadata),
            neighborhood(&placed.object, &opts.namespace),
        );
    }
    for placed in &input.legacy_neighbors {
        take(
            &placed.location,
            placed.object.metadata.name.as_ref(),
            check_legacy_status(&placed.object.metadata),
            legacy_neighbors(&placed.object, &opts.namespace),
        );
    }
    let learned = learn::build(&neighborhoods, known, options)?;
    let group = match opts.api_group {
        ApiGroup::Kubescape => Group::Kubescape,
        ApiGroup::Kubefence => Group::Kubefence,
    };
    let objects = learned
        .policies
        .iter()
        .map(|p| {
            let name = names
                .get(&workload_key(&p.workload))
                .cloned()
                .unwrap_or_else(|| p.policy.name.clone());
            let mut gnp = generated_object(
                &name,
                &p.workload,
                &p.policy,
                &p.refs,
                p.annotations.clone(),
            );
            gnp.api_version = group.api_version().to_string();
            Ok(Out {
                namespace: p.policy.namespace.clone(),
                name,
                kind: "GeneratedNetworkPolicy",
                object: serde_json::to_value(&gnp)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((learned, objects))
}

/// Says on stderr how much was left out (the details are in --report).
fn report_left_out(learned: &Learned, point_to_report: bool) {
    let r = &learned.report;
    for l in &r.left_out {
        if matches!(
            l.reason,
            learn::LeftOutReason::EmptyWorkloadSelector
                | learn::LeftOutReason::NoNamespace
                | learn::LeftOutReason::InvalidName(_)
        ) {
            logging::report(
                Severity::Error,
                Place::object(&l.subject),
                &l.reason.to_string(),
            );
        }
    }
    if point_to_report && !r.left_out.is_empty() {
        logging::report(
            Severity::Note,
            Place::default(),
            &format!(
                "note: {} finding(s) left out of the policies (no rule added; see --report text)",
                r.left_out.len()
            ),
        );
    }
}

fn write_objects<W: std::io::Write>(
    w: &mut W,
    objects: &[Out],
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let items: Vec<&serde_json::Value> = objects.iter().map(|o| &o.object).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            serde_json::to_writer_pretty(&mut *w, &list)?;
            writeln!(w)
        }
        _ => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    w.write_all(b"---\n")?;
                }
                let text = serde_saphyr::to_string(&o.object).map_err(std::io::Error::other)?;
                w.write_all(text.as_bytes())?;
            }
            Ok(())
        }
    }
}

fn write_dir(dir: &Path, objects: &[Out], format: Format) -> anyhow::Result<bool> {
    let entries = objects
        .iter()
        .map(|o| {
            let text = match format {
                Format::Json => {
                    let mut s = serde_json::to_string_pretty(&o.object)?;
                    s.push('\n');
                    s
                }
                _ => serde_saphyr::to_string(&o.object)?,
            };
            Ok(output::out_dir::Entry {
                namespace: &o.namespace,
                name: &o.name,
                object: format!("{} {}/{}", o.kind, o.namespace, o.name),
                text,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let extension = output::policies::extension(format);
    let outcome = output::out_dir::write_all(dir, extension, entries)?;
    for link in &outcome.replaced_links {
        logging::report(
            Severity::Warning,
            Place::default(),
            &format!(
                "{} was a symbolic link: replaced by the policy file, not followed",
                link.display()
            ),
        );
    }
    for r in &outcome.refused {
        logging::report(
            Severity::Error,
            Place::object(&r.object),
            &format!("not written: {}", r.reason),
        );
    }
    logging::report(
        Severity::Note,
        Place::default(),
        &format!("wrote {} policies to {}", outcome.written, dir.display()),
    );
    Ok(!outcome.refused.is_empty())
}
