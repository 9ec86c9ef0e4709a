//! `kubefence analyze`: the allowed connections of every ordered pair of
//! distinct endpoints.

use anyhow::bail;
use clap::{Args, ValueEnum};
use kubefence_core::engine::{Connectivity, Endpoint, EndpointFilter, analyze, group_by_namespace};

use crate::cli::{InputFiles, ModelOpts};
use crate::exit;
use crate::inputs;
use crate::output::{self, Format, FormatParser};
use crate::progress::{self, Phase};

const LONG_ABOUT: &str = "\
Lists the allowed connections of every ordered pair of distinct endpoints.

An endpoint is a workload (namespace/Kind/name) or a range of addresses
outside the cluster (cut at every ipBlock boundary). A connection needs egress
allowed at the source and ingress allowed at the destination; pairs with
nothing allowed are left out. Ports are sorted and merged: `all`, or a list
such as TCP/80,TCP/8000-8010,UDP/53 (OTHER: protocols without ports, ICMP).";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence analyze -f manifests/
  kubefence analyze -f manifests/ -o json > connectivity.json
  kubefence analyze -f deploy.yaml -f policies/ -n shop -o csv
  kubefence analyze -f manifests/ -o dot | dot -Tsvg > connectivity.svg
  kubefence analyze -A                        # the live cluster, every namespace
  kubectl get namespaces,pods,deploy,sts,ds,svc,ing,cm,netpol -A -o yaml | kubefence analyze -f -

Output formats (-o):
  auto     table (the default, also when piped)
  table    aligned FROM / TO / ALLOWED columns
  json     stable format, see docs/analyze-json.md
  csv      from,to,allowed with a header row
  dot      Graphviz digraph
  mermaid  Mermaid flowchart LR

Large clusters: the pair-by-pair list grows with the square of the
endpoints. --classes lists endpoints that behave alike once, as a class, and
the connections between classes (exact: every member of a class has the
same connections); --group namespace sums the connections up into a
namespace-to-namespace matrix (pairs allowed out of pairs, and the union of
what they open); --focus, --from and --to keep only the rows you ask about:
  kubefence analyze -f cluster/ --classes -o json > classes.json
  kubefence analyze -f cluster/ --group namespace
  kubefence analyze -f cluster/ --focus shop/Deployment/web
  kubefence analyze -f cluster/ --from shop --to payments --to 0.0.0.0/0

Exit codes: 0 ok; 2 usage or fatal error, or nothing was read; 3 some
documents or objects were bad (reported on stderr) and the rest was analysed
and printed.";

/// Allowed connections between every pair of workloads.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct AnalyzeOpts {
    #[command(flatten)]
    pub input: InputFiles,
    /// Output format (auto: table).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::ANALYZE_FORMATS), default_value = "auto")]
    pub output: Format,
    /// List classes of endpoints that behave alike (each endpoint once) and
    /// the connections between classes (table or json).
    #[arg(long, conflicts_with = "group")]
    pub classes: bool,
    /// Sum the connections up by namespace: a namespace-to-namespace matrix
    /// (table, json or csv). Addresses outside the cluster are the group
    /// `(external)`.
    #[arg(long, value_enum, value_name = "BY")]
    pub group: Option<GroupBy>,
    /// Keep only connections with at least one end among these endpoints
    /// (repeatable): namespace/Kind/name, namespace/name, a namespace, or
    /// an IP address or CIDR (the external endpoints it overlaps).
    #[arg(long, value_name = "ENDPOINT")]
    pub focus: Vec<String>,
    /// Keep only connections from these endpoints (repeatable; as --focus).
    #[arg(long, value_name = "ENDPOINT")]
    pub from: Vec<String>,
    /// Keep only connections to these endpoints (repeatable; as --focus).
    #[arg(long, value_name = "ENDPOINT")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub model: ModelOpts,
}

/// How `--group` sums connections up.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    Namespace,
}

pub fn run(opts: &AnalyzeOpts) -> anyhow::Result<u8> {
    let inputs::Inputs {
        cluster,
        had_errors,
    } = inputs::read_model_input(&opts.input, &opts.model)?;
    let phase = Phase::start("analyse", "analysing connectivity");
    let conn = analyze(&cluster, &opts.model.analyze_options());
    phase.done();
    progress::log("index", conn.timings().index);
    progress::log("connections", conn.timings().connections);
    tracing::info!(
        endpoints = conn.endpoints.len(),
        classes = conn.class_count(),
        "analysed"
    );
    let filter = EndpointFilter {
        from: endpoint_mask(&conn, &opts.from, "--from")?,
        to: endpoint_mask(&conn, &opts.to, "--to")?,
        focus: endpoint_mask(&conn, &opts.focus, "--focus")?,
    };
    let format = opts.output.resolve(Format::Table, Format::Table);
    let phase = Phase::start("write", "writing the result");
    if opts.classes {
        match format {
            Format::Json => super::with_stdout(|w| output::json::write_classes(w, &conn, &filter))?,
            Format::Table => {
                super::with_stdout(|w| output::table::write_classes(w, &conn, &filter))?;
            }
            other => bail!("--classes writes table or json, not {}", format_name(other)),
        }
    } else if let Some(GroupBy::Namespace) = opts.group {
        let matrix = group_by_namespace(&conn, &filter);
        match format {
            Format::Json => super::with_stdout(|w| output::json::write_groups(w, &matrix))?,
            Format::Csv => super::with_stdout(|w| output::csv::write_groups(w, &matrix))?,
            Format::Table => super::with_stdout(|w| output::table::write_groups(w, &matrix))?,
            other => bail!(
                "--group writes table, json or csv, not {}",
                format_name(other)
            ),
        }
    } else {
        super::with_stdout(|w| write_where(w, &conn, format, &filter))?;
    }
    phase.done();
    Ok(exit::with_input_errors(exit::OK, had_errors))
}

fn format_name(format: Format) -> String {
    format
        .to_possible_value()
        .map_or_else(|| format!("{format:?}"), |v| v.get_name().to_string())
}

/// Which endpoints the specs of one flag name; `None` when the flag was
/// not given. A spec that names no endpoint is an error: a typo must not
/// quietly leave an empty listing.
pub(crate) fn endpoint_mask(
    conn: &Connectivity,
    specs: &[String],
    flag: &str,
) -> anyhow::Result<Option<Vec<bool>>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut mask = vec![false; conn.endpoints.len()];
    for spec in specs {
        let mut found = false;
        for (i, e) in conn.endpoints.iter().enumerate() {
            if endpoint_matches(e, spec) {
                mask[i] = true;
                found = true;
            }
        }
        if !found {
            bail!(
                "{flag} {spec:?} names no endpoint: give namespace/Kind/name, namespace/name, \
                 a namespace, or an IP address or CIDR"
            );
        }
    }
    Ok(Some(mask))
}

/// Whether `spec` (namespace/Kind/name, namespace/name, namespace, IP or
/// CIDR) names `endpoint`.
fn endpoint_matches(endpoint: &Endpoint, spec: &str) -> bool {
    let addresses = spec
        .parse::<std::net::IpAddr>()
        .map(kubefence_core::ipset::IpSet::from_addr)
        .or_else(|_| {
            spec.parse::<kubefence_core::IpNet>()
                .map(|n| kubefence_core::ipset::IpSet::from_net(&n.trunc()))
        });
    if let Ok(asked) = addresses {
        return endpoint
            .addresses
            .as_ref()
            .is_some_and(|a| a.intersects(&asked));
    }
    let Some(namespace) = endpoint.namespace.as_deref() else {
        return false;
    };
    match spec.split('/').collect::<Vec<_>>().as_slice() {
        [ns] => *ns == namespace,
        [ns, name] => *ns == namespace && *name == endpoint.name,
        [ns, kind, name] => {
            *ns == namespace
                && *name == endpoint.name
                && kind
                    .parse::<kubefence_core::WorkloadKind>()
                    .ok()
                    .map(|k| k.as_str())
                    == Some(endpoint.kind_str())
        }
        _ => false,
    }
}

/// Writes the connections of `conn` that `filter` keeps in `format`.
pub fn write_where<W: std::io::Write>(
    w: &mut W,
    conn: &Connectivity,
    format: Format,
    filter: &EndpointFilter,
) -> std::io::Result<()> {
    match format {
        Format::Json => output::json::write_connectivity_where(w, conn, filter),
        Format::Csv => output::csv::write_connectivity_where(w, conn, filter),
        Format::Dot => output::dot::write_connectivity_where(w, conn, filter),
        Format::Mermaid => output::mermaid::write_connectivity_where(w, conn, filter),
        // The parser admits no other value; auto is a table.
        _ => output::table::write_connectivity_where(w, conn, filter),
    }
}
