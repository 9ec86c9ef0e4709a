//! `kubefence demo`: the bundled Online Boutique example with no policy,
//! with kubefence's baseline policies, and with its upstream
//! NetworkPolicies, and what each policy set allows that the other does not.
//!
//! The example's files are embedded (`include_str!`), so the demo runs from
//! any directory. Each section is its own function; a new scenario (say,
//! generated baseline policies) is one more bundle and one more
//! `section_connectivity` call.

use std::io::Write;

use clap::Args;
use kubefence_core::Cluster;
use kubefence_core::baseline::{self, Baseline, BaselineConfig, Scope};
use kubefence_core::engine::{
    AnalyzeOptions, Connectivity, ConnectivityDiff, EndpointFilter, analyze, diff, diff_views,
};
use kubefence_k8s::load::{self, Loaded};

use crate::exit;
use crate::inputs;
use crate::output::{self, Format};

/// One embedded file: (label shown in diagnostics, contents).
type File = (&'static str, &'static str);

macro_rules! example {
    ($path:literal) => {
        (
            concat!("examples/online-boutique/", $path),
            include_str!(concat!("../../../../examples/online-boutique/", $path)),
        )
    };
}

/// Online Boutique's release manifests: 12 Deployments and their Services.
pub const MANIFESTS: &[File] = &[example!("kubernetes-manifests.yaml")];

/// The upstream policies (`kustomize/components/network-policies`).
pub const UPSTREAM_POLICIES: &[File] = &[
    example!("policies/network-policy-deny-all.yaml"),
    example!("policies/network-policy-adservice.yaml"),
    example!("policies/network-policy-cartservice.yaml"),
    example!("policies/network-policy-checkoutservice.yaml"),
    example!("policies/network-policy-currencyservice.yaml"),
    example!("policies/network-policy-emailservice.yaml"),
    example!("policies/network-policy-frontend.yaml"),
    example!("policies/network-policy-loadgenerator.yaml"),
    example!("policies/network-policy-paymentservice.yaml"),
    example!("policies/network-policy-productcatalogservice.yaml"),
    example!("policies/network-policy-recommendationservice.yaml"),
    example!("policies/network-policy-redis.yaml"),
    example!("policies/network-policy-shippingservice.yaml"),
];

const AFTER_LONG_HELP: &str = "\
The example is Online Boutique (GoogleCloudPlatform/microservices-demo,
Apache-2.0), embedded in the binary; see examples/online-boutique/SOURCE.md.

Exit codes: 0 ok; 2 fatal error; 3 an embedded document could not be read.";

/// Analyse the bundled Online Boutique example: no policy, kubefence's
/// baseline policies, the upstream policies, and how the two sets differ.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct DemoOpts {
    /// Print every allowed connection as a row (FROM, TO, ALLOWED) instead
    /// of the compact matrix.
    #[arg(long)]
    pub full: bool,
    /// Also write the HTML report of the baseline (the graph, what the
    /// baseline closes highlighted, coverage, references) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// Loads embedded files as if they were one input.
pub fn load_bundle(files: &[&[File]]) -> Loaded {
    let opts = inputs::load_options("default", false);
    load::join(
        files
            .iter()
            .flat_map(|group| group.iter())
            .map(|(label, text)| load::part_of_str(text, label, &opts))
            .collect(),
        &opts,
    )
}

pub fn run(opts: &DemoOpts) -> anyhow::Result<u8> {
    let analyze_opts = AnalyzeOptions::default();
    let mut had_errors = false;
    let mut cluster_of = |files: &[&[File]]| -> Cluster {
        let mut loaded = load_bundle(files);
        // The bundled example is known: it declares no Namespace (its
        // objects live in `default`) and has no namespaceSelector, so the
        // loader's "namespaces not given" warning would only be noise here.
        loaded.warnings.clear();
        had_errors |= inputs::report(&loaded);
        loaded.cluster
    };
    let before = cluster_of(&[MANIFESTS]);
    let upstream = cluster_of(&[MANIFESTS, UPSTREAM_POLICIES]);
    let generated = baseline::build(&before, &BaselineConfig::default(), &Scope::default())?;
    let mut with_baseline = before.clone();
    with_baseline
        .policies
        .extend(generated.policies.iter().map(|p| p.policy.clone()));

    let before_conn = analyze(&before, &analyze_opts);
    let baseline_conn = analyze(&with_baseline, &analyze_opts);
    let upstream_conn = analyze(&upstream, &analyze_opts);
    let baseline_views = diff_views(&before, &with_baseline, &analyze_opts);
    let baseline_changes = &baseline_views.diff;
    let ours_vs_upstream = diff(&upstream, &with_baseline, &analyze_opts);

    super::with_stdout(|w| {
        writeln!(
            w,
            "kubefence demo: Online Boutique (GoogleCloudPlatform/microservices-demo), {} workloads\n",
            before.workloads.len()
        )?;
        section_overview(
            w,
            &[
                ("no policy", &before, &before_conn),
                ("baseline", &with_baseline, &baseline_conn),
                ("upstream", &upstream, &upstream_conn),
            ],
            baseline_changes,
            &generated,
        )?;
        let full = opts.full;
        section_connectivity(
            w,
            "Before: manifests only, no NetworkPolicy",
            "Nothing is isolated, so every pair may connect on every port.",
            &before_conn,
            full,
        )?;
        section_baseline(w, &generated)?;
        section_connectivity(
            w,
            "With kubefence's baseline policies (kubefence generate)",
            "One policy per workload: DNS, its own pods, the Services it references\n\
             (both ends), outside traffic to LoadBalancer Services. Nothing else.",
            &baseline_conn,
            full,
        )?;
        section_connectivity(
            w,
            "With the upstream NetworkPolicies",
            "deny-all plus one policy per service; they restrict ingress only (egress: [{}]).",
            &upstream_conn,
            full,
        )?;
        section_comparison(w, &ours_vs_upstream)?;
        section_summary(
            w,
            &[
                ("no policy", &before_conn),
                ("baseline", &baseline_conn),
                ("upstream", &upstream_conn),
            ],
            "no policy -> baseline",
            baseline_changes,
        )
    })?;
    if let Some(path) = &opts.html {
        let sources = [
            "examples/online-boutique (embedded): no policy -> kubefence's baseline".to_string(),
        ];
        super::write_file(path, |w| {
            output::html::write_report(
                w,
                &output::html::ReportInput {
                    title: "kubefence demo: Online Boutique with the baseline",
                    sources: &sources,
                    cluster: &with_baseline,
                    conn: &baseline_views.after,
                    before: Some((&baseline_views.before, baseline_changes)),
                    baseline: Some(&generated.report),
                    filter: &EndpointFilter::NONE,
                },
            )
        })?;
        tracing::info!(path = %path.display(), "wrote the HTML report");
    }
    Ok(exit::with_input_errors(exit::OK, had_errors))
}

/// What the baseline builder found, and what it could not resolve.
fn section_baseline<W: Write>(w: &mut W, generated: &Baseline) -> std::io::Result<()> {
    heading(w, "Baseline: what the manifests say")?;
    writeln!(
        w,
        "{} policies from {} references.\n",
        generated.policies.len(),
        generated.report.references.len()
    )?;
    w.write_all(generated.report.to_text().as_bytes())?;
    writeln!(w)
}

/// The semantic difference of two policy sets on the same workloads.
fn section_comparison<W: Write>(w: &mut W, changes: &ConnectivityDiff) -> std::io::Result<()> {
    heading(
        w,
        "Baseline beside upstream: what each allows that the other does not",
    )?;
    let mut only_upstream = Vec::new();
    let mut only_ours = Vec::new();
    for entry in &changes.entries {
        let lost = entry.lost();
        if !lost.is_empty() {
            only_upstream.push((entry, lost));
        }
        let gained = entry.gained();
        if !gained.is_empty() {
            only_ours.push((entry, gained));
        }
    }
    for (title, list) in [
        ("only upstream allows", &only_upstream),
        ("only the baseline allows", &only_ours),
    ] {
        writeln!(w, "{title} ({}):", list.len())?;
        let width = list.iter().map(|(e, _)| e.from.len()).max().unwrap_or(0);
        for (entry, conns) in list {
            writeln!(w, "  {:width$}  ->  {}  {}", entry.from, entry.to, conns)?;
        }
    }
    writeln!(w)
}

fn heading<W: Write>(w: &mut W, title: &str) -> std::io::Result<()> {
    writeln!(w, "== {title} ==")
}

/// A titled connectivity view: the compact matrix, or with `full` one row
/// per allowed connection.
pub fn section_connectivity<W: Write>(
    w: &mut W,
    title: &str,
    note: &str,
    conn: &Connectivity,
    full: bool,
) -> std::io::Result<()> {
    heading(w, title)?;
    writeln!(w, "{note}")?;
    writeln!(
        w,
        "{} endpoints, {} allowed connections\n",
        conn.endpoints.len(),
        conn.connection_count()
    )?;
    if full {
        output::table::write_connectivity(w, conn)?;
    } else {
        write_matrix(w, conn)?;
    }
    writeln!(w)
}

/// What each scenario isolates and allows, what the baseline closes, and
/// what the baseline could not resolve: the demo's answer first.
fn section_overview<W: Write>(
    w: &mut W,
    scenarios: &[(&str, &Cluster, &Connectivity)],
    baseline_changes: &ConnectivityDiff,
    generated: &Baseline,
) -> std::io::Result<()> {
    heading(w, "At a glance")?;
    let isolated = |cluster: &Cluster, egress: bool| {
        let covered = kubefence_core::engine::coverage(cluster);
        let n = covered
            .iter()
            .filter(|c| !(if egress { &c.egress } else { &c.ingress }).is_empty())
            .count();
        format!("{n}/{}", covered.len())
    };
    let mut rows: Vec<[String; 4]> = vec![[
        String::new(),
        "ingress isolated".into(),
        "egress isolated".into(),
        "allowed connections".into(),
    ]];
    for (name, cluster, conn) in scenarios {
        rows.push([
            (*name).to_string(),
            isolated(cluster, false),
            isolated(cluster, true),
            conn.connection_count().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        writeln!(
            w,
            "  {:<a$}  {:>b$}  {:>c$}  {:>d$}",
            r[0],
            r[1],
            r[2],
            r[3],
            a = widths[0],
            b = widths[1],
            c = widths[2],
            d = widths[3]
        )?;
    }
    writeln!(
        w,
        "\nThe baseline closes {} connections and narrows {}; it opens none ({} added).",
        baseline_changes.removed().count(),
        baseline_changes.changed().count(),
        baseline_changes.added().count()
    )?;
    writeln!(
        w,
        "It follows {} references the manifests make; {} could not be resolved (listed under Baseline).\n",
        generated.report.references.len(),
        generated.report.unresolved.len()
    )
}

/// The connectivity as a matrix, one character a pair: `#` every port,
/// `+` some ports, `.` nothing (rows: from; columns: to), endpoints
/// numbered in a legend.
fn write_matrix<W: Write>(w: &mut W, conn: &Connectivity) -> std::io::Result<()> {
    let n = conn.endpoints.len();
    let digits = n.to_string().len();
    for (i, e) in conn.endpoints.iter().enumerate() {
        writeln!(w, "  {:>digits$}  {}", i + 1, e.id)?;
    }
    writeln!(
        w,
        "\n  rows: from, columns: to; # every port, + some ports, . nothing\n"
    )?;
    // Column numbers, written vertically (one digit a line).
    for d in 0..digits {
        let mut line = format!("  {:>digits$}  ", "");
        for j in 0..n {
            let label = format!("{:>digits$}", j + 1);
            line.push(label.chars().nth(d).unwrap_or(' '));
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    for i in 0..n {
        let mut line = format!("  {:>digits$}  ", i + 1);
        for j in 0..n {
            let allowed = conn.allowed(i, j);
            let both_outside = conn.endpoints[i].is_external() && conn.endpoints[j].is_external();
            line.push(if i == j || both_outside {
                ' '
            } else if allowed.is_empty() {
                '.'
            } else if allowed.is_all() {
                '#'
            } else {
                '+'
            });
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Counts per scenario, then what changed between the first and the last.
pub fn section_summary<W: Write>(
    w: &mut W,
    scenarios: &[(&str, &Connectivity)],
    changes_title: &str,
    changes: &ConnectivityDiff,
) -> std::io::Result<()> {
    heading(w, "Summary")?;
    let width = scenarios
        .iter()
        .map(|(n, _)| n.len() + 1)
        .max()
        .unwrap_or(0);
    for (name, conn) in scenarios {
        let label = format!("{name}:");
        writeln!(
            w,
            "allowed connections {label:width$} {}",
            conn.connection_count()
        )?;
    }
    writeln!(
        w,
        "changes {changes_title}: {} added, {} removed, {} changed\n",
        changes.added().count(),
        changes.removed().count(),
        changes.changed().count()
    )?;
    super::diff::write(w, changes, Format::Table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_is_embedded() {
        assert!(MANIFESTS[0].1.contains("kind: Deployment"));
        assert!(
            UPSTREAM_POLICIES
                .iter()
                .all(|(_, t)| t.contains("kind: NetworkPolicy"))
        );
        let files = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/online-boutique/policies"
        ))
        .map(|d| d.count())
        .unwrap_or(0);
        assert_eq!(
            files,
            UPSTREAM_POLICIES.len(),
            "every policy file is embedded"
        );
    }
}
