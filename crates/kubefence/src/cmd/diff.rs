//! `kubefence diff`: what a change to manifests or policies does to
//! connectivity.

use clap::Args;
use kubefence_core::baseline::{self, BaselineConfig, Scope};
use kubefence_core::engine::{ConnectivityDiff, EndpointFilter, diff_views};

use crate::cli::{LiveOpts, ModelOpts, WalkOpts};
use crate::exit;
use crate::inputs;
use crate::output::{self, Format, FormatParser};

const LONG_ABOUT: &str = "\
Compares the connectivity of two sets of manifests: the connections added
(allowed only after), removed (allowed only before) and changed (allowed
before and after, on other ports: with what was gained and lost). Endpoints
are matched by id; external address ranges are cut at the ipBlock boundaries
of both sides so they line up.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence diff --before manifests/ --after manifests/ policies/
  git worktree add /tmp/main main && kubefence diff --before /tmp/main/k8s --after k8s/ -o json
  kubefence diff --before old.yaml --after new.yaml --exit-code || echo 'connectivity changed'
  kubefence diff --before-cluster -n shop --after new-policies/   # what applying them would change
  kubefence diff --before old/ --after new/ -o html > change.html # the graph, changes highlighted

JSON: {\"added\":[{from,to,allowed}], \"removed\":[{from,to,allowed}],
       \"changed\":[{from,to,before,after,gained,lost}]} (see docs/analyze-json.md).

Exit codes: 0 ok (with --exit-code: no differences); 1 with --exit-code:
connectivity differs; 2 usage or fatal error; 3 some documents or objects were
bad (reported on stderr) and the rest was compared and printed.";

/// Connections added, removed and changed between two sets of manifests.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct DiffOpts {
    /// Manifests before the change: files or directories; `-` reads stdin.
    #[arg(long, value_name = "PATH", num_args = 1.., required_unless_present = "before_cluster")]
    pub before: Vec<String>,
    /// Before is the live cluster (the kubeconfig's; -n NS or -A), and
    /// after is the cluster with --after applied over it (an object of the
    /// same kind, namespace and name replaced, as `kubectl apply` would).
    #[arg(long, conflicts_with = "before")]
    pub before_cluster: bool,
    /// Manifests after the change: files or directories; `-` reads stdin.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub after: Vec<String>,
    /// Output format (auto: table).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::DIFF_FORMATS), default_value = "auto")]
    pub output: Format,
    /// Exit with 1 when connectivity differs (like `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub model: ModelOpts,
    #[command(flatten)]
    pub walk: WalkOpts,
    #[command(flatten)]
    pub live: LiveOpts,
}

pub fn run(opts: &DiffOpts) -> anyhow::Result<u8> {
    inputs::check_paths(opts.before.iter().chain(&opts.after))?;
    let load = opts.walk.apply(inputs::load_options(
        opts.model.namespace(),
        opts.model.by_pod(),
    ));
    let (before, after) = if opts.before_cluster {
        let (text, source) = inputs::live_objects(&opts.live, opts.model.namespace.as_deref())?;
        let cluster = kubefence_k8s::load::part_of_str(&text, &source, &load);
        let before = inputs::loaded(
            kubefence_k8s::load::join(vec![cluster.clone()], &load),
            "the",
            &[source],
        )?;
        let files: Vec<kubefence_k8s::load::Source> =
            opts.after.iter().map(|p| inputs::source_of(p)).collect();
        // The cluster first, the files after: a file's object replaces the
        // cluster's of the same kind, namespace and name.
        let applied = kubefence_k8s::load::join(
            vec![cluster, kubefence_k8s::load::part(&files, &load)],
            &load,
        );
        (before, inputs::loaded(applied, "--after", &opts.after)?)
    } else {
        if opts.live.any() {
            anyhow::bail!(
                "--kubeconfig, --context and -A read a live cluster: they go with --before-cluster"
            );
        }
        (
            inputs::read(&opts.before, &load, "--before")?,
            inputs::read(&opts.after, &load, "--after")?,
        )
    };
    let had_errors = before.had_errors || after.had_errors;
    let (before, after) = (before.cluster, after.cluster);
    let views = diff_views(&before, &after, &opts.model.analyze_options());
    let d = &views.diff;
    tracing::info!(changes = d.entries.len(), "compared");
    let format = opts.output.resolve(Format::Table, Format::Table);
    if format == Format::Html {
        // The references are those of the after side: what generate would
        // read once the change is in.
        let found = baseline::build(&after, &BaselineConfig::default(), &Scope::default())?;
        let side = |paths: &[String]| {
            if paths.is_empty() {
                "the live cluster".to_string()
            } else {
                paths.join(", ")
            }
        };
        let sources = [
            format!("before: {}", side(&opts.before)),
            if opts.before_cluster {
                format!(
                    "after: the live cluster with {} applied",
                    opts.after.join(", ")
                )
            } else {
                format!("after: {}", side(&opts.after))
            },
        ];
        super::with_stdout(|w| {
            output::html::write_report(
                w,
                &output::html::ReportInput {
                    title: "kubefence diff",
                    sources: &sources,
                    cluster: &after,
                    conn: &views.after,
                    before: Some((&views.before, d)),
                    baseline: Some(&found.report),
                    filter: &EndpointFilter::NONE,
                },
            )
        })?;
    } else {
        super::with_stdout(|w| write(w, d, format))?;
    }
    let code = if opts.exit_code && !d.is_empty() {
        exit::NEGATIVE
    } else {
        exit::OK
    };
    Ok(exit::with_input_errors(code, had_errors))
}

pub fn write<W: std::io::Write>(
    w: &mut W,
    d: &ConnectivityDiff,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => output::json::write_diff(w, d),
        Format::Csv => output::csv::write_diff(w, d),
        // The parser admits no other value; auto is a table.
        _ => output::table::write_diff(w, d),
    }
}
