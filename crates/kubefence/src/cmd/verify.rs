//! `kubefence verify`: which observed connections would the policies deny?
//! A "what would break" audit, on any CNI, before enforcing.
//!
//! Wiring: flows are streamed by `kubefence_k8s::learn::hubble`; each
//! connection opening (not a reply) is attributed to an endpoint of the
//! manifests (its workload, or its address outside the cluster), the
//! distinct (source, destination, protocol, port) are kept, and each is
//! decided by the engine's `explain`, which also names the deciding
//! policies.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use kubefence_core::engine::{Explanation, explain};
use kubefence_core::learn::{Flow, FlowEndpoint, ReservedIdentity};
use kubefence_core::{Cluster, Protocol};
use kubefence_k8s::learn::hubble;
use serde::Serialize;

use crate::cli::ModelOpts;
use crate::exit;
use crate::inputs;
use crate::logging::{self, Place, Severity};
use crate::output::{self, Format, FormatParser};

const LONG_ABOUT: &str = "\
Checks observed traffic against policies before they are enforced: every
connection seen in the Hubble flows (--flows) that the NetworkPolicies of -f
would deny is listed with the policy that decides it (as `explain` gives
it), then a summary. Works whatever the CNI: the flows say what happens,
the engine says what the policies would allow.

A connection is taken from its opening (a TCP SYN, a policy-verdict event,
or any flow that is not a reply); replies are never checked on their own.
Each side is the workload of -f the pod belongs to (by Hubble's workloads[],
then the pod labels against the workloads' selectors in its namespace), or
its address when it is outside the cluster. Flows whose pods match no
workload of -f are counted as unattributed, not guessed.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence verify --flows flows.jsonl -f manifests/ -f policies/
  kubefence learn --flows flows.jsonl -f manifests/ > learned.yaml
  kubefence verify --flows flows.jsonl -f manifests/ -f learned.yaml
  kubefence verify --flows flows.jsonl.gz -f manifests/ -o json | jq '.denied'

Exit codes: 0 every observed connection is allowed; 1 some would be denied;
2 usage or fatal error; 3 some flow records or manifests were bad (reported
on stderr; the rest was checked).";

/// Which observed connections would the policies deny?
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct VerifyOpts {
    /// Hubble flow file (`hubble observe -o jsonpb` or `-o json`; gzip too;
    /// repeatable; `-` is stdin).
    #[arg(long, value_name = "FILE", required = true)]
    pub flows: Vec<String>,
    /// Manifests and policies (file or directory, repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        alias = "file",
        value_name = "PATH",
        required = true
    )]
    pub files: Vec<String>,
    /// Output: text, or JSON {"denied": [...], "summary": {...}} (auto: text).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::EXPLAIN_FORMATS), default_value = "auto")]
    pub output: Format,
    #[command(flatten)]
    pub model: ModelOpts,
}

/// One distinct observed connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Conn {
    from: String,
    to: String,
    protocol: Protocol,
    port: u16,
}

#[derive(Default)]
struct Seen {
    flows: u64,
    first: Option<String>,
    last: Option<String>,
}

#[derive(Default, Serialize)]
struct Summary {
    flows: u64,
    connections: usize,
    allowed: usize,
    denied: usize,
    replies: u64,
    unattributed: u64,
    without_port: u64,
    /// Between pods of one workload (not a pair the policies decide here).
    within_workload: u64,
}

#[derive(Serialize)]
struct Denied {
    from: String,
    to: String,
    port: String,
    flows: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    /// The policies that decide, per direction (`namespace/name`).
    egress_policies: Vec<String>,
    ingress_policies: Vec<String>,
}

pub fn run(opts: &VerifyOpts) -> anyhow::Result<u8> {
    inputs::check_paths(&opts.flows)?;
    let inputs::Inputs {
        cluster,
        mut had_errors,
    } = inputs::read(
        &opts.files,
        &inputs::load_options(&opts.model.namespace, false),
        "-f",
    )?;
    let index = WorkloadIndex::new(&cluster);
    let mut summary = Summary::default();
    let mut conns: BTreeMap<Conn, Seen> = BTreeMap::new();
    let mut records = 0u64;
    for path in &opts.flows {
        let reader = hubble::open(path).with_context(|| format!("--flows {path}: cannot read"))?;
        for item in reader {
            records += 1;
            let flow = match item {
                Ok(flow) => flow,
                Err(e) => {
                    had_errors = true;
                    logging::report(
                        Severity::Error,
                        Place {
                            file: Some(&e.file),
                            field: Some(&format!("line {}", e.line)),
                            ..Place::default()
                        },
                        &e.message,
                    );
                    continue;
                }
            };
            summary.flows += 1;
            if is_reply(&flow) {
                summary.replies += 1;
                continue;
            }
            let (Some(protocol), Some(port)) = (flow.protocol, flow.destination_port) else {
                summary.without_port += 1;
                continue;
            };
            let (Some(from), Some(to)) = (
                index.endpoint(&flow.source),
                index.endpoint(&flow.destination),
            ) else {
                summary.unattributed += 1;
                continue;
            };
            if from == to {
                summary.within_workload += 1;
                continue;
            }
            let seen = conns
                .entry(Conn {
                    from,
                    to,
                    protocol,
                    port,
                })
                .or_default();
            seen.flows += 1;
            if let Some(t) = &flow.time {
                if seen.first.as_ref().is_none_or(|f| t < f) {
                    seen.first = Some(t.clone());
                }
                if seen.last.as_ref().is_none_or(|l| t > l) {
                    seen.last = Some(t.clone());
                }
            }
        }
    }
    if records == 0 {
        bail!(
            "--flows {}: nothing to verify: no flow record was read",
            opts.flows.join(", ")
        );
    }
    summary.connections = conns.len();
    let analyze = opts.model.analyze_options();
    let mut denied: Vec<(Conn, &Seen, Explanation)> = Vec::new();
    for (conn, seen) in &conns {
        match explain(
            &cluster,
            &conn.from,
            &conn.to,
            Some((conn.protocol, conn.port)),
            &analyze,
        ) {
            Ok(x) if x.is_allowed() => summary.allowed += 1,
            Ok(x) => denied.push((conn.clone(), seen, x)),
            Err(e) => {
                // Both ends outside, or an address of a pod: not decidable.
                summary.unattributed += seen.flows;
                logging::report(
                    Severity::Info,
                    Place::default(),
                    &format!("{} -> {}: not checked: {e}", conn.from, conn.to),
                );
            }
        }
    }
    summary.denied = denied.len();
    let format = opts.output.resolve(Format::Text, Format::Text);
    super::with_stdout(|w| match format {
        Format::Json => write_json(w, &denied, &summary),
        _ => write_text(w, &denied, &summary),
    })?;
    let verdict = if denied.is_empty() {
        exit::OK
    } else {
        exit::NEGATIVE
    };
    Ok(exit::with_input_errors(verdict, had_errors))
}

/// A reply packet: `is_reply: true`, or a SYN-ACK. Absent `is_reply` is
/// not a reply (the flow is checked: a policy allowing it is harmless).
fn is_reply(flow: &Flow) -> bool {
    flow.is_reply == Some(true) || flow.tcp_flags.is_some_and(|f| f.syn && f.ack)
}

fn policies(x: &kubefence_core::engine::DirectionVerdict) -> Vec<String> {
    x.policies.iter().map(|p| p.policy.clone()).collect()
}

fn write_text<W: Write>(
    w: &mut W,
    denied: &[(Conn, &Seen, Explanation)],
    summary: &Summary,
) -> std::io::Result<()> {
    for (conn, seen, x) in denied {
        writeln!(
            w,
            "DENIED {} -> {} {}/{} ({} flows, first {}, last {})",
            conn.from,
            conn.to,
            conn.protocol,
            conn.port,
            seen.flows,
            seen.first.as_deref().unwrap_or("?"),
            seen.last.as_deref().unwrap_or("?"),
        )?;
        let mut text = Vec::new();
        output::explain::write_text(&mut text, x)?;
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(w, "    {line}")?;
        }
    }
    writeln!(
        w,
        "{} flows, {} distinct connections: {} allowed, {} would be denied; {} replies, {} unattributed, {} without a port, {} within one workload",
        summary.flows,
        summary.connections,
        summary.allowed,
        summary.denied,
        summary.replies,
        summary.unattributed,
        summary.without_port,
        summary.within_workload
    )
}

fn write_json<W: Write>(
    w: &mut W,
    denied: &[(Conn, &Seen, Explanation)],
    summary: &Summary,
) -> std::io::Result<()> {
    let denied: Vec<Denied> = denied
        .iter()
        .map(|(conn, seen, x)| Denied {
            from: conn.from.clone(),
            to: conn.to.clone(),
            port: format!("{}/{}", conn.protocol, conn.port),
            flows: seen.flows,
            first_seen: seen.first.clone(),
            last_seen: seen.last.clone(),
            egress_policies: policies(&x.egress),
            ingress_policies: policies(&x.ingress),
        })
        .collect();
    serde_json::to_writer_pretty(
        &mut *w,
        &serde_json::json!({"denied": denied, "summary": summary}),
    )?;
    writeln!(w)
}

/// Flow endpoints → endpoint ids of the manifests.
struct WorkloadIndex<'a> {
    cluster: &'a Cluster,
    /// (namespace, name) → ids of workloads with that name.
    by_name: BTreeMap<(String, String), BTreeSet<String>>,
}

impl<'a> WorkloadIndex<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        let mut by_name: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for w in &cluster.workloads {
            by_name
                .entry((w.namespace.clone(), w.name.clone()))
                .or_default()
                .insert(w.id());
        }
        Self { cluster, by_name }
    }

    /// The endpoint id of a flow side: a workload of the manifests, or an
    /// address outside the cluster; `None` when it cannot be told.
    fn endpoint(&self, e: &FlowEndpoint) -> Option<String> {
        let Some(namespace) = &e.namespace else {
            // Not a pod: an address, when it is one outside the cluster.
            let outside = e.reserved.is_empty() || e.reserved.contains(&ReservedIdentity::World);
            return e.ip.filter(|_| outside).map(|ip| ip.to_string());
        };
        // Hubble's own attribution first.
        for w in &e.workloads {
            if let Some(ids) = self.by_name.get(&(namespace.clone(), w.name.clone())) {
                let kind = w.kind.to_ascii_lowercase();
                if let Some(id) = ids
                    .iter()
                    .find(|id| id.to_ascii_lowercase().contains(&format!("/{kind}/")))
                    .or_else(|| ids.iter().next())
                {
                    return Some(id.clone());
                }
            }
        }
        // Then the pod labels against the selectors of its namespace.
        let labels: kubefence_core::Labels = e.labels.iter().cloned().collect();
        let matching: Vec<&kubefence_core::Workload> = self
            .cluster
            .workloads
            .iter()
            .filter(|w| {
                &w.namespace == namespace && !w.selector.is_empty() && w.selector.matches(&labels)
            })
            .collect();
        match matching.as_slice() {
            [one] => Some(one.id()),
            [] => None,
            several => {
                // The one the pod name points at, if any.
                let pod = e.pod_name.as_deref()?;
                several
                    .iter()
                    .find(|w| pod.starts_with(&format!("{}-", w.name)))
                    .map(|w| w.id())
            }
        }
    }
}
