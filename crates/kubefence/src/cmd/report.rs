//! `kubefence report`: one self-contained HTML file people read: the
//! connectivity graph, a matrix, per-workload coverage, open paths to the
//! internet and what the baseline found in the manifests.

use std::path::PathBuf;

use clap::Args;
use kubefence_core::baseline::{self, BaselineConfig, Scope};
use kubefence_core::engine::{EndpointFilter, analyze};

use crate::cli::{InputFiles, ModelOpts};
use crate::exit;
use crate::inputs;
use crate::output::{self, Format, FormatParser};
use crate::progress::Phase;

const LONG_ABOUT: &str = "\
Writes a report people read: one HTML file, self-contained (styles and a
small script inlined, nothing fetched when it is opened), with

  - the connectivity graph: namespaces as boxes, workloads and address
    ranges outside the cluster as nodes, allowed connections as edges with
    their ports (zoom, pan, filter; click a node for its connections);
  - the matrix of who may reach whom (namespace by namespace above 150
    endpoints);
  - coverage: for every workload, whether it is isolated for ingress and
    for egress and by which policies, and its open paths to the internet;
  - the references kubefence generate finds in the manifests (Services
    named in environment variables, arguments, ConfigMaps, Ingresses) and
    those it could not resolve.

For the added and removed connections of a change highlighted, use
`kubefence diff --before … --after … -o html`.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence report -f manifests/ > report.html
  kubefence report -A -o html > cluster.html          # the live cluster
  kubefence report -f cluster/ --focus shop > shop.html
  kubefence diff --before main/ --after branch/ -o html > change.html

The graph draws every endpoint; above 5,000 the report refuses (give
--focus, --from or --to, or use analyze --group namespace).

Exit codes: 0 ok; 2 usage or fatal error, or nothing was read; 3 some
documents or objects were bad (reported on stderr) and the rest was reported.";

/// Above this many drawn endpoints a graph is unreadable and the file huge.
const MAX_ENDPOINTS: usize = 5_000;

/// A self-contained HTML report: graph, matrix, coverage, references.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct ReportOpts {
    #[command(flatten)]
    pub input: InputFiles,
    /// Output format (auto: html).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::HTML_REPORT_FORMATS), default_value = "auto")]
    pub output: Format,
    /// The report's title.
    #[arg(long, default_value = "kubefence report")]
    pub title: String,
    /// Baseline configuration (YAML, as for generate): the references
    /// section reads Services as generate would.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Draw only connections with at least one end among these endpoints
    /// (repeatable; as analyze --focus).
    #[arg(long, value_name = "ENDPOINT")]
    pub focus: Vec<String>,
    /// Draw only connections from these endpoints (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    pub from: Vec<String>,
    /// Draw only connections to these endpoints (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub model: ModelOpts,
}

pub fn run(opts: &ReportOpts) -> anyhow::Result<u8> {
    let inputs::Inputs {
        cluster,
        had_errors,
    } = inputs::read_model_input(&opts.input, &opts.model)?;
    let config = match &opts.config {
        Some(path) => super::generate::read_config(path)?,
        None => BaselineConfig::default(),
    };
    let phase = Phase::start("analyse", "analysing connectivity");
    let conn = analyze(&cluster, &opts.model.analyze_options());
    let found = baseline::build(&cluster, &config, &Scope::default())?;
    phase.done();
    let filter = EndpointFilter {
        from: super::analyze::endpoint_mask(&conn, &opts.from, "--from")?,
        to: super::analyze::endpoint_mask(&conn, &opts.to, "--to")?,
        focus: super::analyze::endpoint_mask(&conn, &opts.focus, "--focus")?,
    };
    if filter.is_empty() && conn.endpoints.len() > MAX_ENDPOINTS {
        anyhow::bail!(
            "{} endpoints are too many to draw: give --focus, --from or --to, or use \
             `kubefence analyze --group namespace` for the namespace matrix",
            conn.endpoints.len()
        );
    }
    let sources = sources(&opts.input);
    let phase = Phase::start("write", "writing the report");
    super::with_stdout(|w| {
        output::html::write_report(
            w,
            &output::html::ReportInput {
                title: &opts.title,
                sources: &sources,
                cluster: &cluster,
                conn: &conn,
                before: None,
                baseline: Some(&found.report),
                filter: &filter,
            },
        )
    })?;
    phase.done();
    Ok(exit::with_input_errors(exit::OK, had_errors))
}

/// What the report says it was made from.
fn sources(input: &InputFiles) -> Vec<String> {
    if input.files.is_empty() {
        let mut from = String::from("the live cluster");
        if let Some(context) = &input.live.context {
            from.push_str(&format!(" (context {context})"));
        }
        vec![from]
    } else {
        input.files.clone()
    }
}
