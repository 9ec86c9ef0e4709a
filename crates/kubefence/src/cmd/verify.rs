//! `kubefence verify`: which observed connections would the policies deny?
//! A "what would break" audit, on any CNI, before enforcing.
//!
//! Wiring: flows are streamed by `kubefence_k8s::learn::hubble` into the
//! core `Learner`, whose `observed` gives the distinct connections
//! (source, destination, protocol, port) told apart from replies and
//! attributed exactly as `learn` does it, so the two commands never
//! disagree on what was observed; each connection between endpoints of the
//! manifests (workloads, or addresses outside the cluster) is decided by
//! the engine's `explain`, which also names the deciding policies.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use kubefence_core::engine::{Explanation, explain};
use kubefence_core::learn::{LearnReport, Learner, LeftOutReason, ObservedConnection, ObservedEnd};
use kubefence_core::{Cluster, Protocol};
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

Observed traffic is read exactly as `kubefence learn` reads it. A
connection is taken from its opening (a TCP SYN, a policy-verdict event, or
a flow marked is_reply: false); replies are never checked on their own. A
flow without is_reply is decided once every listening port is known: sent
from a port its sender listens on to one its receiver does not, it is a
reply; sent to a listening port, it is the client's; otherwise it is
counted as of unknown direction, not guessed. Dropped flows are attempts
that did not work, not traffic to keep working: counted, not checked.
Each side is the workload of -f the pod belongs to (the workload whose
selector matches the pod's labels, preferring the one Hubble's workloads[]
or the pod name points at), or its address when it is outside the cluster.
Flows whose pods match no workload of -f, and node or API-server peers
(whose treatment depends on the CNI), are counted as unattributed.";

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
    /// Flagged replies, and flows without is_reply recognised as replies.
    replies: u64,
    /// Dropped or failed in the datapath: attempts, not checked.
    not_forwarded: u64,
    /// Socket-level traces (service translation, not packets).
    socket_traces: u64,
    /// Without is_reply, and no listening port on either side.
    unknown_direction: u64,
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
        &inputs::load_options(opts.model.namespace(), false),
        "-f",
    )?;
    let mut learner = Learner::new();
    let records = super::learn::observe_flows(&opts.flows, &mut learner, &mut had_errors)?;
    if records == 0 {
        bail!(
            "--flows {}: nothing to verify: no flow record was read",
            opts.flows.join(", ")
        );
    }
    // The learner's own classification and attribution, so that verify
    // checks exactly the connections learn would learn from: a reply
    // without is_reply is a reply here too.
    let (observed, report) = learner.observed(Some(&cluster));
    let (conns, mut summary) = connections(&cluster, &observed, &report);
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

/// The observed connections between endpoints of the manifests (or
/// addresses outside the cluster), by engine endpoint id, and the summary's
/// counts of what could not be checked.
fn connections(
    cluster: &Cluster,
    observed: &[ObservedConnection],
    report: &LearnReport,
) -> (BTreeMap<Conn, Seen>, Summary) {
    let counts = &report.flows;
    let mut summary = Summary {
        flows: counts.read,
        replies: counts.replies + counts.inferred_replies,
        not_forwarded: counts.not_forwarded,
        socket_traces: counts.socket_traces,
        ..Summary::default()
    };
    for left in &report.left_out {
        match left.reason {
            LeftOutReason::NoPort | LeftOutReason::PortlessProtocol => {
                summary.without_port += left.count;
            }
            LeftOutReason::UnknownDirection => summary.unknown_direction += left.count,
            _ => summary.unattributed += left.count,
        }
    }
    let mut conns: BTreeMap<Conn, Seen> = BTreeMap::new();
    for c in observed {
        let (Some(from), Some(to)) = (
            engine_endpoint(cluster, &c.source),
            engine_endpoint(cluster, &c.destination),
        ) else {
            summary.unattributed += c.flows;
            continue;
        };
        if from == to {
            summary.within_workload += c.flows;
            continue;
        }
        let seen = conns
            .entry(Conn {
                from,
                to,
                protocol: c.protocol,
                port: c.port,
            })
            .or_default();
        seen.flows += c.flows;
        if let Some(t) = &c.evidence.first_seen
            && seen.first.as_ref().is_none_or(|f| t < f)
        {
            seen.first = Some(t.clone());
        }
        if let Some(t) = &c.evidence.last_seen
            && seen.last.as_ref().is_none_or(|l| t > l)
        {
            seen.last = Some(t.clone());
        }
    }
    summary.connections = conns.len();
    (conns, summary)
}

/// The engine's endpoint id of a connection end: a workload of the
/// manifests, or an address outside the cluster; `None` when the policies
/// cannot decide it (a workload the manifests do not have, a node or the
/// API server, whose treatment depends on the CNI, an unnamed identity).
fn engine_endpoint(cluster: &Cluster, end: &ObservedEnd) -> Option<String> {
    match end {
        ObservedEnd::Workload(w) => cluster
            .workloads
            .iter()
            .find(|m| m.namespace == w.namespace && m.name == w.name && m.kind.as_str() == w.kind)
            .map(|m| m.id()),
        ObservedEnd::Address(ip) => Some(ip.to_string()),
        ObservedEnd::Reserved(..) | ObservedEnd::Unattributed(_) => None,
    }
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
        "{} flows, {} distinct connections: {} allowed, {} would be denied; {} replies, {} unattributed, {} without a port, {} within one workload, {} of unknown direction, {} dropped, {} socket traces",
        summary.flows,
        summary.connections,
        summary.allowed,
        summary.denied,
        summary.replies,
        summary.unattributed,
        summary.without_port,
        summary.within_workload,
        summary.unknown_direction,
        summary.not_forwarded,
        summary.socket_traces
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
