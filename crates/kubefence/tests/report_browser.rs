//! The HTML report in a real browser: headless Chromium (Debian's package,
//! installed by scripts/install-chromium.sh) opens the file, runs its
//! script, and dumps the DOM; the test reads the nodes and edges from that
//! DOM and compares them with `analyze -o json` / `diff -o json` of the same
//! input, pair by pair. It also checks the page's filter (through
//! `#filter=`), that the console stayed silent (no error, no blocked fetch:
//! the page's Content-Security-Policy forbids every network access), and
//! keeps a screenshot per case under target/test-artifacts/.
//!
//! KUBEFENCE_SKIP_BROWSER=1 skips these tests; otherwise a missing chromium
//! fails them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kubefence_testkit::{ScaledProfile, scaled_with, write_json_case};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn kubefence(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("KUBEFENCE_LOG")
        .output()
        .expect("spawn kubefence");
    assert!(
        out.status.success(),
        "kubefence {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn example(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/online-boutique")
        .join(path)
        .display()
        .to_string()
}

fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("report-browser")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where screenshots are kept: target/test-artifacts/.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser, or `None` when skipped on purpose.
fn chromium() -> Option<PathBuf> {
    if std::env::var("KUBEFENCE_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: browser test (KUBEFENCE_SKIP_BROWSER=1)");
        return None;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromium"))
            .find(|p| p.is_file())
    });
    Some(found.unwrap_or_else(|| {
        panic!("chromium is not installed: run scripts/install-chromium.sh (or KUBEFENCE_SKIP_BROWSER=1)")
    }))
}

struct Page {
    dom: String,
    /// Chromium's `CONSOLE` log lines: console calls, uncaught errors,
    /// Content-Security-Policy refusals.
    console: Vec<String>,
}

/// Runs headless Chromium on `file` with `args`; returns stdout and the
/// console lines of its log.
fn run_browser(browser: &Path, dir: &Path, args: &[String]) -> (String, Vec<String>) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .output()
        .expect("spawn chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8(out.stdout).unwrap(), console)
}

/// Opens the report at `file` (with `#fragment`), dumps the DOM after its
/// script ran, and takes a screenshot named `shot`.
fn open(browser: &Path, file: &Path, fragment: &str, shot: &str) -> Page {
    let dir = file.parent().unwrap();
    let url = format!("file://{}{fragment}", file.display());
    let (dom, mut console) = run_browser(browser, dir, &["--dump-dom".to_string(), url.clone()]);
    let png = artifacts().join(shot);
    let (_, more) = run_browser(
        browser,
        dir,
        &[
            "--window-size=1600,1200".to_string(),
            format!("--screenshot={}", png.display()),
            url,
        ],
    );
    console.extend(more);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 20_000,
        "{}: {} bytes, nothing drawn?",
        png.display(),
        bytes.len()
    );
    Page { dom, console }
}

/// The start tags `<name …>` of the DOM, as attribute maps.
fn tags(dom: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{name} ");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&open) {
        let tag = &rest[at + open.len()..];
        let end = tag.find('>').unwrap();
        out.push(attributes(&tag[..end]));
        rest = &tag[end..];
    }
    out
}

/// `a="x" b="y"` → {a: x, b: y}, with the serializer's entities decoded.
fn attributes(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut rest = text.trim();
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim().to_string();
        let value_start = &rest[eq + 2..];
        let close = value_start.find('"').unwrap();
        let value = value_start[..close]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        map.insert(name, value);
        rest = value_start[close + 1..].trim_start();
    }
    map
}

fn has_class(tag: &BTreeMap<String, String>, class: &str) -> bool {
    tag.get("class")
        .is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

/// The graph the browser shows: node ids by index, and edges as
/// (from id, to id, classes).
struct DomGraph {
    nodes: Vec<BTreeMap<String, String>>,
    edges: Vec<BTreeMap<String, String>>,
}

impl DomGraph {
    fn of(page: &Page) -> Self {
        let nodes: Vec<_> = tags(&page.dom, "g")
            .into_iter()
            .filter(|t| has_class(t, "node"))
            .collect();
        let edges: Vec<_> = tags(&page.dom, "path")
            .into_iter()
            .filter(|t| has_class(t, "edge"))
            .collect();
        Self { nodes, edges }
    }

    fn id(&self, index: &str) -> String {
        self.nodes[index.parse::<usize>().unwrap()]["data-id"].clone()
    }

    fn node_ids(&self) -> BTreeSet<String> {
        self.nodes.iter().map(|n| n["data-id"].clone()).collect()
    }

    /// (from, to) of the edges with `class` (every edge for "edge").
    fn pairs(&self, class: &str) -> BTreeSet<(String, String)> {
        self.edges
            .iter()
            .filter(|e| has_class(e, class))
            .map(|e| (self.id(&e["data-from"]), self.id(&e["data-to"])))
            .collect()
    }
}

/// The page's script ran to its end, and nothing was logged.
fn assert_clean(page: &Page, case: &str) {
    let body = tags(&page.dom, "body").into_iter().next().unwrap();
    assert_eq!(
        body.get("data-ready").map(String::as_str),
        Some("true"),
        "{case}: the script did not finish"
    );
    assert!(!body.contains_key("data-errors"), "{case}: {body:?}");
    assert!(
        page.console.is_empty(),
        "{case}: console: {:#?}",
        page.console
    );
}

/// Endpoint ids and connection pairs of `analyze -o json`.
fn analysis(args: &[&str]) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut full = vec!["analyze", "-o", "json"];
    full.extend_from_slice(args);
    let v: Value = serde_json::from_str(&kubefence(&full)).unwrap();
    let endpoints = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let connections = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["from"].as_str().unwrap().to_string(),
                c["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (endpoints, connections)
}

fn write_report(dir: &Path, args: &[&str]) -> PathBuf {
    let file = dir.join("report.html");
    std::fs::write(&file, kubefence(args)).unwrap();
    file
}

#[test]
fn report_shows_the_analysis_of_online_boutique() {
    let Some(browser) = chromium() else { return };
    let input = example("");
    let dir = work_dir("online-boutique");
    let file = write_report(&dir, &["report", "-f", &input]);
    let page = open(&browser, &file, "", "report-online-boutique.png");
    assert_clean(&page, "online boutique");
    let graph = DomGraph::of(&page);
    let (endpoints, connections) = analysis(&["-f", &input]);
    assert_eq!(graph.nodes.len(), endpoints.len());
    assert_eq!(graph.node_ids(), endpoints);
    assert_eq!(graph.edges.len(), connections.len());
    assert_eq!(graph.pairs("edge"), connections);
    // Nothing hidden without a filter.
    assert!(graph.nodes.iter().all(|n| !has_class(n, "hidden")));
    // Coverage has a row per workload, and the upstream policies isolate
    // every workload for ingress.
    let rows = tags(&page.dom, "tr")
        .into_iter()
        .filter(|t| has_class(t, "coverage-row"))
        .count();
    assert_eq!(
        rows,
        endpoints
            .iter()
            .filter(|e| e.contains("/Deployment/"))
            .count()
    );
    assert!(
        page.dom.contains("isolated by default/deny-all"),
        "coverage names the policy"
    );
}

#[test]
fn the_filter_hides_what_does_not_match() {
    let Some(browser) = chromium() else { return };
    let input = example("");
    let dir = work_dir("filter");
    let file = write_report(&dir, &["report", "-f", &input]);
    let page = open(&browser, &file, "#filter=service", "report-filter.png");
    assert_clean(&page, "filter");
    let graph = DomGraph::of(&page);
    let (endpoints, connections) = analysis(&["-f", &input]);
    let wanted: BTreeSet<String> = endpoints
        .iter()
        .filter(|e| e.to_lowercase().contains("service"))
        .cloned()
        .collect();
    assert!(wanted.len() > 3 && wanted.len() < endpoints.len());
    let visible: BTreeSet<String> = graph
        .nodes
        .iter()
        .filter(|n| !has_class(n, "hidden"))
        .map(|n| n["data-id"].clone())
        .collect();
    assert_eq!(visible, wanted);
    let visible_edges: BTreeSet<(String, String)> = graph
        .edges
        .iter()
        .filter(|e| !has_class(e, "hidden"))
        .map(|e| (graph.id(&e["data-from"]), graph.id(&e["data-to"])))
        .collect();
    let expected: BTreeSet<(String, String)> = connections
        .into_iter()
        .filter(|(f, t)| wanted.contains(f) && wanted.contains(t))
        .collect();
    assert_eq!(visible_edges, expected);
    let svg = tags(&page.dom, "svg").into_iter().next().unwrap();
    assert_eq!(svg["data-visible-nodes"], wanted.len().to_string());
    assert_eq!(svg["data-visible-edges"], expected.len().to_string());
}

#[test]
fn report_of_a_cluster_of_many_namespaces() {
    let Some(browser) = chromium() else { return };
    let dir = work_dir("synthetic");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let synth = scaled_with(&ScaledProfile {
        workloads: 48,
        namespaces: 8,
        seed: 11,
        open_namespace_every: Some(3),
        policies_per_100_workloads: 90,
    });
    write_json_case(&synth, &input).unwrap();
    let input = input.display().to_string();
    let file = write_report(&dir, &["report", "-f", &input]);
    let page = open(&browser, &file, "", "report-synthetic.png");
    assert_clean(&page, "synthetic");
    let graph = DomGraph::of(&page);
    let (endpoints, connections) = analysis(&["-f", &input]);
    assert_eq!(graph.node_ids(), endpoints);
    assert_eq!(graph.edges.len(), connections.len());
    assert_eq!(graph.pairs("edge"), connections);
    // One box per namespace and one for the addresses outside the cluster.
    let namespaces: BTreeSet<&str> = endpoints
        .iter()
        .filter(|e| e.split('/').count() == 3)
        .map(|e| e.split('/').next().unwrap())
        .collect();
    let groups = tags(&page.dom, "g")
        .into_iter()
        .filter(|t| has_class(t, "group"))
        .count();
    assert_eq!(groups, namespaces.len() + 1);
}

#[test]
fn diff_report_highlights_what_changed() {
    let Some(browser) = chromium() else { return };
    let manifests = example("kubernetes-manifests.yaml");
    let after = example("");
    let dir = work_dir("diff");
    let args = ["diff", "--before", &manifests, "--after", &after];
    let file = write_report(&dir, &[&args[..], &["-o", "html"]].concat());
    let page = open(&browser, &file, "", "report-diff.png");
    assert_clean(&page, "diff");
    let graph = DomGraph::of(&page);
    let d: Value =
        serde_json::from_str(&kubefence(&[&args[..], &["-o", "json"]].concat())).unwrap();
    let pairs = |key: &str| -> BTreeSet<(String, String)> {
        d[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["from"].as_str().unwrap().to_string(),
                    e["to"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert!(!pairs("removed").is_empty());
    assert_eq!(graph.pairs("removed"), pairs("removed"));
    assert_eq!(graph.pairs("added"), pairs("added"));
    assert_eq!(graph.pairs("changed"), pairs("changed"));
    // The rest of the edges are what the after side allows, unchanged.
    let (_, connections) = analysis(&["-f", &after]);
    let drawn_after: BTreeSet<(String, String)> = graph
        .edges
        .iter()
        .filter(|e| !has_class(e, "removed"))
        .map(|e| (graph.id(&e["data-from"]), graph.id(&e["data-to"])))
        .collect();
    assert_eq!(drawn_after, connections);
}

#[test]
fn demo_writes_its_report() {
    let Some(browser) = chromium() else { return };
    let dir = work_dir("demo");
    let file = dir.join("demo.html");
    let _ = std::fs::remove_file(&file);
    kubefence(&["demo", "--html", file.to_str().unwrap()]);
    let page = open(&browser, &file, "", "report-demo.png");
    assert_clean(&page, "demo");
    let graph = DomGraph::of(&page);
    // Online Boutique's 12 workloads and the two address families.
    assert_eq!(graph.nodes.len(), 14);
    assert!(
        !graph.pairs("removed").is_empty(),
        "what the baseline closes"
    );
}
