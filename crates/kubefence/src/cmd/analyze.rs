//! `kubefence analyze`: the allowed connections of every ordered pair of
//! distinct endpoints.

use clap::Args;
use kubefence_core::engine::{Connectivity, analyze};

use crate::cli::{InputFiles, ModelOpts};
use crate::exit;
use crate::inputs;
use crate::output::{self, Format, FormatParser};

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
  kubectl get pods,deploy,svc,netpol -A -o yaml | kubefence analyze -f -

Output formats (-o):
  auto     table (the default, also when piped)
  table    aligned FROM / TO / ALLOWED columns
  json     stable format, see docs/analyze-json.md
  csv      from,to,allowed with a header row
  dot      Graphviz digraph
  mermaid  Mermaid flowchart LR

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
    #[command(flatten)]
    pub model: ModelOpts,
}

pub fn run(opts: &AnalyzeOpts) -> anyhow::Result<u8> {
    let inputs::Inputs {
        cluster,
        had_errors,
    } = inputs::read(
        &opts.input.files,
        &opts.input.walk.apply(inputs::load_options(
            &opts.model.namespace,
            opts.model.by_pod(),
        )),
        "-f",
    )?;
    let conn = analyze(&cluster, &opts.model.analyze_options());
    tracing::info!(
        endpoints = conn.endpoints.len(),
        connections = conn.connection_count(),
        "analysed"
    );
    let format = opts.output.resolve(Format::Table, Format::Table);
    super::with_stdout(|w| write(w, &conn, format))?;
    Ok(exit::with_input_errors(exit::OK, had_errors))
}

/// Writes `conn` in `format`.
pub fn write<W: std::io::Write>(
    w: &mut W,
    conn: &Connectivity,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => output::json::write_connectivity(w, conn),
        Format::Csv => output::csv::write_connectivity(w, conn),
        Format::Dot => output::dot::write_connectivity(w, conn),
        Format::Mermaid => output::mermaid::write_connectivity(w, conn),
        // The parser admits no other value; auto is a table.
        _ => output::table::write_connectivity(w, conn),
    }
}
