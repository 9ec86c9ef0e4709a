//! The HTML report (`kubefence report -o html`, `diff -o html`, `demo
//! --html`): one self-contained file. Styles and the small script are our
//! own and inlined; a Content-Security-Policy forbids every network fetch,
//! so opening the file contacts nothing. The graph is laid out here
//! ([`layout`]) and drawn as inline SVG: namespaces as boxes, workloads and
//! external address ranges as nodes, allowed connections as edges with
//! their ports. Next to it: a matrix, per-workload coverage (isolated or
//! not, by which policies), open paths to the internet, the references the
//! baseline found and those it could not resolve, and for a diff the
//! connections added, removed and changed.
//!
//! The DOM is the contract the browser test reads: every node is a
//! `g.node` with `data-id`, every edge a `path.edge` with `data-from`,
//! `data-to` (node indices) and, in a diff, the class `added`, `removed`
//! or `changed`.

pub mod layout;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use kubefence_core::ConnSet;
use kubefence_core::baseline;
use kubefence_core::engine::{
    Connectivity, ConnectivityDiff, EXTERNAL_GROUP, EndpointFilter, coverage, group_by_namespace,
    internet_paths,
};
use kubefence_core::model::Cluster;
use kubefence_core::policy::Direction;

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Above this many nodes the matrix is namespace by namespace.
const ENDPOINT_MATRIX_LIMIT: usize = 150;
/// Above this many edges, port labels show only for the selected node.
const ALWAYS_LABELLED_EDGES: usize = 60;

/// What a report shows.
pub struct ReportInput<'a> {
    pub title: &'a str,
    /// Where the objects came from (files, or the cluster context).
    pub sources: &'a [String],
    /// The cluster (the "after" side of a diff): coverage is computed on it.
    pub cluster: &'a Cluster,
    pub conn: &'a Connectivity,
    /// For a diff: the "before" analysis (cut at the same boundaries) and
    /// the differences.
    pub before: Option<(&'a Connectivity, &'a ConnectivityDiff)>,
    /// What the baseline builder found in the manifests.
    pub baseline: Option<&'a baseline::Report>,
    pub filter: &'a EndpointFilter,
}

/// How an edge changed in a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Same,
    Added,
    Removed,
    Changed,
}

impl Change {
    fn class(self) -> &'static str {
        match self {
            Change::Same => "edge",
            Change::Added => "edge added",
            Change::Removed => "edge removed",
            Change::Changed => "edge changed",
        }
    }
}

struct Node {
    id: String,
    namespace: Option<String>,
    label: String,
    external: bool,
    /// Only in the "before" analysis of a diff (a workload that is gone).
    gone: bool,
}

struct Edge {
    from: usize,
    to: usize,
    ports: String,
    change: Change,
    /// For a changed edge: what it gained and lost.
    detail: Option<String>,
}

/// The graph a report draws: the nodes (sorted by id) and edges.
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

/// The nodes and edges of `input`: every endpoint (or, with a filter, the
/// endpoints the kept connections touch and those the filter names), and
/// every kept connection; in a diff also what was removed.
fn graph(input: &ReportInput<'_>) -> Graph {
    let conn = input.conn;
    let mut wanted: Vec<bool> = vec![input.filter.is_empty(); conn.endpoints.len()];
    let kept: Vec<(usize, usize, &ConnSet)> = conn
        .connections_where(input.filter)
        .map(|c| (c.from, c.to, c.allowed))
        .collect();
    for &(from, to, _) in &kept {
        wanted[from] = true;
        wanted[to] = true;
    }
    for (i, w) in wanted.iter_mut().enumerate() {
        let named = |mask: &Option<Vec<bool>>| mask.as_ref().is_some_and(|m| m[i]);
        *w |= named(&input.filter.focus) || named(&input.filter.from) || named(&input.filter.to);
    }
    let mut by_id: BTreeMap<String, Node> = BTreeMap::new();
    let node_of = |e: &kubefence_core::engine::Endpoint, gone: bool| Node {
        id: e.id.clone(),
        namespace: e.namespace.clone(),
        label: if e.is_external() {
            e.id.clone()
        } else {
            format!("{}/{}", e.kind_str(), e.name)
        },
        external: e.is_external(),
        gone,
    };
    for (i, e) in conn.endpoints.iter().enumerate() {
        if wanted[i] {
            by_id.insert(e.id.clone(), node_of(e, false));
        }
    }
    if let Some((before, _)) = input.before {
        for e in &before.endpoints {
            by_id
                .entry(e.id.clone())
                .or_insert_with(|| node_of(e, true));
        }
    }
    let nodes: Vec<Node> = by_id.into_values().collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();

    let changes: HashMap<(&str, &str), &kubefence_core::engine::DiffEntry> = input
        .before
        .map(|(_, d)| {
            d.entries
                .iter()
                .map(|e| ((e.from.as_str(), e.to.as_str()), e))
                .collect()
        })
        .unwrap_or_default();
    let mut edges = Vec::with_capacity(kept.len());
    for (from, to, allowed) in kept {
        let (from_id, to_id) = (
            conn.endpoints[from].id.as_str(),
            conn.endpoints[to].id.as_str(),
        );
        let (Some(&f), Some(&t)) = (index.get(from_id), index.get(to_id)) else {
            continue;
        };
        let (change, detail) = match changes.get(&(from_id, to_id)) {
            None => (Change::Same, None),
            Some(e) if e.is_added() => (Change::Added, None),
            Some(e) => (
                Change::Changed,
                Some(format!(
                    "was {}; gained {}; lost {}",
                    e.before,
                    ports_or_none(&e.gained()),
                    ports_or_none(&e.lost())
                )),
            ),
        };
        edges.push(Edge {
            from: f,
            to: t,
            ports: allowed.to_string(),
            change,
            detail,
        });
    }
    if let Some((_, d)) = input.before {
        for e in d.removed() {
            if let (Some(&f), Some(&t)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
                edges.push(Edge {
                    from: f,
                    to: t,
                    ports: e.before.to_string(),
                    change: Change::Removed,
                    detail: None,
                });
            }
        }
    }
    Graph { nodes, edges }
}

fn ports_or_none(set: &ConnSet) -> String {
    if set.is_empty() {
        "nothing".to_string()
    } else {
        set.to_string()
    }
}

/// Text for HTML content and double-quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Writes the whole report.
pub fn write_report<W: Write>(w: &mut W, input: &ReportInput<'_>) -> io::Result<()> {
    let graph = graph(input);
    let covered = coverage(input.cluster);
    let internet = internet_paths(input.conn, input.filter);
    write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"kubefence {}\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(input.title)
    )?;
    write_header(w, input, &graph, &covered, internet.len())?;
    write_graph(w, &graph, input.before.is_some())?;
    if let Some((_, d)) = input.before {
        write_changes(w, d)?;
    }
    write_matrix(w, input, &graph)?;
    write_coverage(w, input, &covered, &internet)?;
    write_internet(w, input, &internet)?;
    if let Some(report) = input.baseline {
        write_references(w, report)?;
    }
    write!(w, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n")
}

fn write_header<W: Write>(
    w: &mut W,
    input: &ReportInput<'_>,
    graph: &Graph,
    covered: &[kubefence_core::engine::Coverage],
    internet: usize,
) -> io::Result<()> {
    let workloads = graph.nodes.iter().filter(|n| !n.external).count();
    let externals = graph.nodes.len() - workloads;
    let ingress = covered.iter().filter(|c| !c.ingress.is_empty()).count();
    let egress = covered.iter().filter(|c| !c.egress.is_empty()).count();
    writeln!(w, "<header>\n<h1>{}</h1>", esc(input.title))?;
    if !input.sources.is_empty() {
        writeln!(
            w,
            "<p class=\"sources\">From {}.</p>",
            esc(&input.sources.join(", "))
        )?;
    }
    writeln!(w, "<div class=\"cards\" id=\"summary\">")?;
    let mut card = |value: String, what: &str, class: &str| {
        writeln!(
            w,
            "<div class=\"card {class}\"><b>{}</b><span>{}</span></div>",
            esc(&value),
            esc(what)
        )
    };
    card(workloads.to_string(), "workloads", "")?;
    card(externals.to_string(), "external address ranges", "")?;
    card(
        format!("{ingress}/{}", covered.len()),
        "isolated for ingress",
        if ingress < covered.len() { "warn" } else { "" },
    )?;
    card(
        format!("{egress}/{}", covered.len()),
        "isolated for egress",
        if egress < covered.len() { "warn" } else { "" },
    )?;
    let shown = graph
        .edges
        .iter()
        .filter(|e| e.change != Change::Removed)
        .count();
    card(shown.to_string(), "allowed connections", "")?;
    card(
        internet.to_string(),
        "paths to or from the internet",
        if internet > 0 { "warn" } else { "" },
    )?;
    if let Some((_, d)) = input.before {
        card(d.added().count().to_string(), "connections added", "added")?;
        card(
            d.removed().count().to_string(),
            "connections removed",
            "removed",
        )?;
        card(
            d.changed().count().to_string(),
            "connections changed",
            "changed",
        )?;
    }
    if let Some(r) = input.baseline {
        card(r.references.len().to_string(), "references found", "")?;
        card(
            r.unresolved.len().to_string(),
            "references unresolved",
            if r.unresolved.is_empty() { "" } else { "warn" },
        )?;
    }
    writeln!(w, "</div>")?;
    if !input.filter.is_empty() {
        writeln!(
            w,
            "<p class=\"note\">Filtered: only connections kept by --focus, --from and --to are drawn.</p>"
        )?;
    }
    write!(w, "<nav><a href=\"#graph\">Graph</a>")?;
    if input.before.is_some() {
        write!(w, "<a href=\"#changes\">Changes</a>")?;
    }
    write!(
        w,
        "<a href=\"#matrix\">Matrix</a><a href=\"#coverage\">Coverage</a><a href=\"#internet\">Internet</a>"
    )?;
    if input.baseline.is_some() {
        write!(w, "<a href=\"#references\">References</a>")?;
    }
    writeln!(w, "</nav>\n</header>")
}

fn write_graph<W: Write>(w: &mut W, graph: &Graph, is_diff: bool) -> io::Result<()> {
    // Namespaces in order, the addresses outside the cluster last.
    let mut groups: BTreeMap<(bool, String), Vec<usize>> = BTreeMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        let key = match &n.namespace {
            Some(ns) => (false, ns.clone()),
            None => (true, "outside the cluster".to_string()),
        };
        groups.entry(key).or_default().push(i);
    }
    let groups: Vec<(String, Vec<usize>)> = groups.into_iter().map(|((_, t), m)| (t, m)).collect();
    let l = layout::lay_out(&groups, graph.nodes.len());
    let labelled = graph.edges.len() <= ALWAYS_LABELLED_EDGES;
    writeln!(
        w,
        "<section id=\"graph\">\n<h2>Connectivity graph</h2>\n<div class=\"controls\">\
         <input id=\"filter\" type=\"search\" placeholder=\"filter: namespace, name or address\" \
         aria-label=\"filter nodes\"> \
         <label><input type=\"checkbox\" id=\"hide-external\"> hide external</label> \
         <label><input type=\"checkbox\" id=\"labels\"{}> port labels</label> {}\
         <button id=\"zoom-in\" type=\"button\">+</button><button id=\"zoom-out\" type=\"button\">−</button>\
         <button id=\"zoom-fit\" type=\"button\">fit</button> <span id=\"shown\"></span></div>",
        if labelled { " checked" } else { "" },
        if is_diff {
            "<label><input type=\"checkbox\" id=\"show-removed\" checked> removed connections</label> "
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "<div class=\"graph-wrap\"><svg id=\"graph-svg\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {:.0} {:.0}\" data-width=\"{:.0}\" data-height=\"{:.0}\" class=\"{}\">",
        l.width,
        l.height,
        l.width,
        l.height,
        if labelled { "" } else { "labels-off" }
    )?;
    writeln!(
        w,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n<g id=\"viewport\">"
    )?;
    for g in &l.groups {
        writeln!(
            w,
            "<g class=\"group\" data-ns=\"{t}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"8\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{t}</text></g>",
            g.x,
            g.y,
            g.w,
            g.h,
            g.x + 10.0,
            g.y + 17.0,
            t = esc(&g.title)
        )?;
    }
    writeln!(w, "<g id=\"edges\">")?;
    for (k, e) in graph.edges.iter().enumerate() {
        let c = layout::curve(l.nodes[e.from], l.nodes[e.to]);
        let mut title = format!(
            "{} → {}: {}",
            graph.nodes[e.from].id, graph.nodes[e.to].id, e.ports
        );
        match e.change {
            Change::Added => title.push_str(" (added)"),
            Change::Removed => title.push_str(" (removed)"),
            Change::Changed => {
                let _ = write!(title, " ({})", e.detail.as_deref().unwrap_or("changed"));
            }
            Change::Same => {}
        }
        writeln!(
            w,
            "<path class=\"{}\" id=\"e{k}\" data-from=\"{}\" data-to=\"{}\" data-ports=\"{}\" d=\"{}\" marker-end=\"url(#arrow)\"><title>{}</title></path>",
            e.change.class(),
            e.from,
            e.to,
            esc(&e.ports),
            c.path(),
            esc(&title)
        )?;
        writeln!(
            w,
            "<text class=\"elabel\" data-edge=\"{k}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            c.mid.0,
            c.mid.1,
            esc(&shorten(&e.ports, 40))
        )?;
    }
    writeln!(w, "</g>\n<g id=\"nodes\">")?;
    for (i, n) in graph.nodes.iter().enumerate() {
        let (x, y) = l.nodes[i];
        let mut class = String::from("node");
        if n.external {
            class.push_str(" external");
        }
        if n.gone {
            class.push_str(" gone");
        }
        writeln!(
            w,
            "<g class=\"{class}\" id=\"n{i}\" data-id=\"{id}\" data-ns=\"{ns}\" transform=\"translate({x:.1},{y:.1})\">\
             <rect width=\"{}\" height=\"{}\" rx=\"{}\"/><text x=\"10\" y=\"19\">{}</text><title>{id}</title></g>",
            layout::NODE_W,
            layout::NODE_H,
            if n.external { 15 } else { 4 },
            esc(&shorten(&n.label, 26)),
            id = esc(&n.id),
            ns = esc(n.namespace.as_deref().unwrap_or(EXTERNAL_GROUP)),
        )?;
    }
    writeln!(w, "</g>\n</g>\n</svg></div>")?;
    writeln!(
        w,
        "<aside id=\"details\"><p>Click a node to list its connections; drag to pan, \
         scroll to zoom.</p></aside>\n</section>"
    )
}

fn write_changes<W: Write>(w: &mut W, d: &ConnectivityDiff) -> io::Result<()> {
    writeln!(w, "<section id=\"changes\">\n<h2>Changes</h2>")?;
    if d.is_empty() {
        return writeln!(w, "<p>No connection changes.</p>\n</section>");
    }
    writeln!(
        w,
        "<table class=\"list\"><thead><tr><th>change</th><th>from</th><th>to</th><th>before</th><th>after</th></tr></thead><tbody>"
    )?;
    for e in &d.entries {
        let (class, what) = if e.is_added() {
            ("added", "added")
        } else if e.is_removed() {
            ("removed", "removed")
        } else {
            ("changed", "changed")
        };
        writeln!(
            w,
            "<tr class=\"{class}\"><td>{what}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.from),
            esc(&e.to),
            esc(&ports_or_none(&e.before)),
            esc(&ports_or_none(&e.after))
        )?;
    }
    writeln!(w, "</tbody></table>\n</section>")
}

fn write_matrix<W: Write>(w: &mut W, input: &ReportInput<'_>, graph: &Graph) -> io::Result<()> {
    writeln!(w, "<section id=\"matrix\">\n<h2>Matrix</h2>")?;
    if graph.nodes.len() > ENDPOINT_MATRIX_LIMIT {
        return write_namespace_matrix(w, input);
    }
    writeln!(
        w,
        "<p>Rows are sources, columns destinations: <span class=\"cell all\">#</span> every port, \
         <span class=\"cell some\">+</span> some ports (hover for which); empty: nothing.</p>"
    )?;
    let mut cells: HashMap<(usize, usize), &Edge> = HashMap::new();
    for e in &graph.edges {
        cells.insert((e.from, e.to), e);
    }
    write!(
        w,
        "<div class=\"scroll\"><table class=\"matrix\"><thead><tr><th></th>"
    )?;
    for n in &graph.nodes {
        write!(
            w,
            "<th class=\"col\" title=\"{}\"><span>{}</span></th>",
            esc(&n.id),
            esc(&shorten(&n.label, 24))
        )?;
    }
    writeln!(w, "</tr></thead><tbody>")?;
    for (i, row) in graph.nodes.iter().enumerate() {
        write!(
            w,
            "<tr><th title=\"{}\">{}</th>",
            esc(&row.id),
            esc(&shorten(&row.id, 40))
        )?;
        for j in 0..graph.nodes.len() {
            match cells.get(&(i, j)) {
                None => write!(w, "<td></td>")?,
                Some(e) => {
                    let all = e.ports == "all";
                    let mut class = String::from(if all { "all" } else { "some" });
                    match e.change {
                        Change::Added => class.push_str(" added"),
                        Change::Removed => class.push_str(" removed"),
                        Change::Changed => class.push_str(" changed"),
                        Change::Same => {}
                    }
                    write!(
                        w,
                        "<td class=\"{class}\" title=\"{} → {}: {}\">{}</td>",
                        esc(&row.id),
                        esc(&graph.nodes[j].id),
                        esc(&e.ports),
                        if all { "#" } else { "+" }
                    )?;
                }
            }
        }
        writeln!(w, "</tr>")?;
    }
    writeln!(w, "</tbody></table></div>\n</section>")
}

fn write_namespace_matrix<W: Write>(w: &mut W, input: &ReportInput<'_>) -> io::Result<()> {
    let m = group_by_namespace(input.conn, input.filter);
    writeln!(
        w,
        "<p>{} endpoints are too many for a cell each: namespace by namespace, each cell \
         says how many endpoint pairs may connect, out of how many (hover for the ports).</p>",
        input.conn.endpoints.len()
    )?;
    let cells: HashMap<(&str, &str), &kubefence_core::engine::GroupConnection> = m
        .connections
        .iter()
        .map(|c| ((c.from.as_str(), c.to.as_str()), c))
        .collect();
    write!(
        w,
        "<div class=\"scroll\"><table class=\"matrix\"><thead><tr><th></th>"
    )?;
    for (g, _) in &m.groups {
        write!(w, "<th class=\"col\"><span>{}</span></th>", esc(g))?;
    }
    writeln!(w, "</tr></thead><tbody>")?;
    for (from, _) in &m.groups {
        write!(w, "<tr><th>{}</th>", esc(from))?;
        for (to, _) in &m.groups {
            match cells.get(&(from.as_str(), to.as_str())) {
                None => write!(w, "<td></td>")?,
                Some(c) => write!(
                    w,
                    "<td class=\"{}\" title=\"{}\">{}/{}</td>",
                    if c.pairs == c.of { "all" } else { "some" },
                    esc(&c.allowed.to_string()),
                    c.pairs,
                    c.of
                )?,
            }
        }
        writeln!(w, "</tr>")?;
    }
    writeln!(w, "</tbody></table></div>\n</section>")
}

fn write_coverage<W: Write>(
    w: &mut W,
    input: &ReportInput<'_>,
    covered: &[kubefence_core::engine::Coverage],
    internet: &[kubefence_core::engine::InternetPath],
) -> io::Result<()> {
    let mut open: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for p in internet {
        let workload = input.conn.endpoints[p.workload].id.as_str();
        let side = open.entry(workload).or_default();
        let text = p.public.display_ranges();
        match p.direction {
            Direction::Egress => side.1.push(text),
            Direction::Ingress => side.0.push(text),
        }
    }
    writeln!(
        w,
        "<section id=\"coverage\">\n<h2>Coverage</h2>\n<p>A workload is isolated in a direction \
         when a policy of its namespace selects its pods for that direction; a direction no \
         policy isolates allows everything.</p>\n<table class=\"list\"><thead><tr><th>workload</th>\
         <th>ingress</th><th>egress</th><th>from the internet</th><th>to the internet</th></tr></thead><tbody>"
    )?;
    let policies = |ids: &[String]| {
        if ids.is_empty() {
            "<td class=\"open\">not isolated</td>".to_string()
        } else {
            format!(
                "<td class=\"isolated\">isolated by {}</td>",
                esc(&ids.join(", "))
            )
        }
    };
    let ranges = |r: Option<&Vec<String>>| match r {
        Some(r) if !r.is_empty() => format!("<td class=\"open\">{}</td>", esc(&r.join("; "))),
        _ => "<td>none</td>".to_string(),
    };
    for c in covered {
        let paths = open.get(c.workload.as_str());
        writeln!(
            w,
            "<tr class=\"coverage-row\" data-id=\"{id}\"><td>{id}</td>{}{}{}{}</tr>",
            policies(&c.ingress),
            policies(&c.egress),
            ranges(paths.map(|p| &p.0)),
            ranges(paths.map(|p| &p.1)),
            id = esc(&c.workload)
        )?;
    }
    writeln!(w, "</tbody></table>\n</section>")
}

fn write_internet<W: Write>(
    w: &mut W,
    input: &ReportInput<'_>,
    internet: &[kubefence_core::engine::InternetPath],
) -> io::Result<()> {
    writeln!(
        w,
        "<section id=\"internet\">\n<h2>Open paths to the internet</h2>"
    )?;
    if internet.is_empty() {
        return writeln!(
            w,
            "<p>No workload may connect to or be reached from a public address.</p>\n</section>"
        );
    }
    writeln!(
        w,
        "<p>Connections between a workload and public addresses (private, loopback, \
         link-local and reserved ranges left out).</p>\n<table class=\"list\"><thead><tr>\
         <th>workload</th><th>direction</th><th>public addresses</th><th>ports</th></tr></thead><tbody>"
    )?;
    for p in internet {
        let allowed = input.conn.allowed(
            if p.direction == Direction::Egress {
                p.workload
            } else {
                p.external
            },
            if p.direction == Direction::Egress {
                p.external
            } else {
                p.workload
            },
        );
        writeln!(
            w,
            "<tr class=\"internet-row\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&input.conn.endpoints[p.workload].id),
            if p.direction == Direction::Egress {
                "to the internet"
            } else {
                "from the internet"
            },
            esc(&shorten(&p.public.display_ranges(), 200)),
            esc(&allowed.to_string())
        )?;
    }
    writeln!(w, "</tbody></table>\n</section>")
}

fn write_references<W: Write>(w: &mut W, report: &baseline::Report) -> io::Result<()> {
    writeln!(
        w,
        "<section id=\"references\">\n<h2>References the baseline found</h2>\n<p>Names of \
         Services in environment variables, arguments, ConfigMaps and Ingress routes: what \
         <code>kubefence generate</code> turns into rules.</p>"
    )?;
    if report.references.is_empty() {
        writeln!(w, "<p>None.</p>")?;
    } else {
        writeln!(
            w,
            "<table class=\"list\"><thead><tr><th>from</th><th>to</th><th>Service</th><th>ports</th><th>found in</th></tr></thead><tbody>"
        )?;
        for r in &report.references {
            writeln!(
                w,
                "<tr class=\"reference\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.from),
                esc(&r.to),
                esc(&r.service),
                esc(&r.ports.join(",")),
                esc(&r.via)
            )?;
        }
        writeln!(w, "</tbody></table>")?;
    }
    writeln!(w, "<h3>Could not be resolved</h3>")?;
    if report.unresolved.is_empty() {
        writeln!(w, "<p>None.</p>")?;
    } else {
        writeln!(
            w,
            "<table class=\"list\"><thead><tr><th>from</th><th>name</th><th>found in</th><th>why</th></tr></thead><tbody>"
        )?;
        for u in &report.unresolved {
            writeln!(
                w,
                "<tr class=\"unresolved\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&u.from),
                esc(&u.value),
                esc(&u.via),
                esc(&u.reason)
            )?;
        }
        writeln!(w, "</tbody></table>")?;
    }
    if !report.external.is_empty() {
        writeln!(
            w,
            "<h3>Hosts outside the cluster</h3>\n<table class=\"list\"><thead><tr><th>from</th><th>host</th><th>port</th><th>found in</th></tr></thead><tbody>"
        )?;
        for e in &report.external {
            writeln!(
                w,
                "<tr class=\"external-host\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.from),
                esc(&e.host),
                e.port.map(|p| p.to_string()).unwrap_or_default(),
                esc(&e.via)
            )?;
        }
        writeln!(w, "</tbody></table>")?;
    }
    writeln!(w, "</section>")
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze, diff_views};

    use super::*;
    use crate::output::fixtures::shop;

    fn render(input: &ReportInput<'_>) -> String {
        let mut out = Vec::new();
        write_report(&mut out, input).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nodes_and_edges_are_the_analysis() {
        let cluster = shop(true);
        let conn = analyze(&cluster, &AnalyzeOptions::default());
        let html = render(&ReportInput {
            title: "shop <report>",
            sources: &["a&b.yaml".to_string()],
            cluster: &cluster,
            conn: &conn,
            before: None,
            baseline: None,
            filter: &EndpointFilter::NONE,
        });
        assert_eq!(
            html.matches("<g class=\"node").count(),
            conn.endpoints.len()
        );
        assert_eq!(
            html.matches("<path class=\"edge").count(),
            conn.connection_count()
        );
        assert!(
            html.contains("<title>shop &lt;report&gt;</title>"),
            "title escaped"
        );
        assert!(html.contains("From a&amp;b.yaml."));
        // db is isolated for ingress by db-from-web; web by web-deny.
        assert!(html.contains("isolated by shop/db-from-web"), "{html}");
        // Nothing isolates egress, so every workload reaches the internet.
        assert!(html.contains("to the internet</td>"));
        assert!(
            !html.contains("http://") || html.matches("http://").count() == 1,
            "only the SVG namespace"
        );
        assert!(!html.contains("https://"), "no network reference");
    }

    #[test]
    fn a_diff_marks_added_and_removed_edges() {
        let (before, after) = (shop(false), shop(true));
        let views = diff_views(&before, &after, &AnalyzeOptions::default());
        let html = render(&ReportInput {
            title: "diff",
            sources: &[],
            cluster: &after,
            conn: &views.after,
            before: Some((&views.before, &views.diff)),
            baseline: None,
            filter: &EndpointFilter::NONE,
        });
        let removed = views.diff.removed().count();
        assert!(removed > 0);
        assert_eq!(
            html.matches("<path class=\"edge removed\"").count(),
            removed
        );
        assert_eq!(
            html.matches("<path class=\"edge changed\"").count(),
            views.diff.changed().count()
        );
        assert_eq!(
            html.matches("<path class=\"edge").count(),
            views.after.connection_count() + removed
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
