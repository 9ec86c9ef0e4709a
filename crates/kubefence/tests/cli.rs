//! Runs the real `kubefence` binary on small YAML files in temp dirs and on
//! the bundled example: exit codes, stdout, stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/online-boutique")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KUBEFENCE_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubefence");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    eprintln!(
        "kubefence {args:?} -> {}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// A temp dir holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).expect("stdout is JSON")
}

/// Two Deployments in `default`: web (port 8080) and db (port 5432).
const APPS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {containerPort: 8080, name: http}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
spec:
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: postgres
        ports:
        - {containerPort: 5432, name: pg}
"#;

const DEFAULT_DENY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#;

const DB_FROM_WEB: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-web
spec:
  podSelector:
    matchLabels: {app: db}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: web}
    ports:
    - {protocol: TCP, port: 5432}
"#;

/// A policy whose second document has an invalid CIDR.
const BAD_POLICY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: fine
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: broken
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/33
"#;

const WEB: &str = "default/Deployment/web";
const DB: &str = "default/Deployment/db";

fn connection<'v>(v: &'v Value, from: &str, to: &str) -> Option<&'v Value> {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["from"] == from && c["to"] == to)
        .map(|c| &c["allowed"])
}

// === without the loader ===

#[test]
fn help_teaches_commands_exit_codes_and_plugin_use() {
    let dir = dir_with(&[]);
    let run = run_in(dir.path(), &["--help"], None);
    assert_eq!(run.code, 0);
    for needle in [
        "analyze",
        "explain",
        "diff",
        "demo",
        "Exit codes:",
        "kubectl fence",
        "-v",
    ] {
        assert!(run.stdout.contains(needle), "--help mentions {needle}");
    }
    // Run as the plugin, usage lines name `kubectl fence`.
    let plugin = dir.path().join("kubectl-fence");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let out = Command::new(&plugin)
        .args(["analyze", "--nope"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Usage: kubectl fence analyze"), "{stderr}");
    let run = run_in(dir.path(), &["analyze", "--help"], None);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("kubefence analyze -f manifests/ -o json")
    );
    assert!(
        run.stdout
            .contains("kubectl get namespaces,pods,deploy,sts,ds,svc,ing,cm,netpol -A -o yaml | kubefence analyze -f -")
    );
    for format in ["table", "json", "csv", "dot", "mermaid"] {
        assert!(run.stdout.contains(format), "analyze --help lists {format}");
    }
    let run = run_in(dir.path(), &["explain", "--help"], None);
    assert!(
        run.stdout.contains("1 it is denied"),
        "explain documents its exit codes"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = dir_with(&[]);
    assert_eq!(
        run_in(dir.path(), &["analyze"], None).code,
        2,
        "-f is required"
    );
    assert_eq!(
        run_in(dir.path(), &["analyze", "-f", "x", "-o", "xml"], None).code,
        2
    );
    assert_eq!(run_in(dir.path(), &["frobnicate"], None).code, 2);
    let run = run_in(
        dir.path(),
        &[
            "explain", "-f", "-", "--from", "a/b", "--to", "c/d", "--port", "http",
        ],
        Some(""),
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("invalid port"), "{}", run.stderr);
}

#[test]
fn missing_file_is_fatal() {
    let dir = dir_with(&[]);
    let run = run_in(dir.path(), &["analyze", "-f", "nope.yaml"], None);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with("kubefence: nope.yaml: no such file or directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_endpoint_is_fatal() {
    let dir = dir_with(&[("apps.yaml", APPS)]);
    let run = run_in(
        dir.path(),
        &[
            "explain",
            "-f",
            "apps.yaml",
            "--from",
            "default/nope",
            "--to",
            WEB,
        ],
        None,
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("default/nope"), "{}", run.stderr);
}

/// Nothing read is not a result (issue 9): an empty stdin used to print an
/// empty connection list with exit 0; it is now a fatal error naming stdin.
#[test]
fn empty_input_is_an_error_not_an_empty_result() {
    let dir = dir_with(&[]);
    let run = run_in(dir.path(), &["analyze", "-f", "-", "-o", "json"], Some(""));
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("<stdin>"), "{}", run.stderr);
}

#[test]
fn closed_stdout_is_not_an_error() {
    // Enough output (22,000+ connections) that writes fail mid-document,
    // not only at the final flush.
    let pods: String = (0..150)
        .map(|i| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n---\n"))
        .collect();
    let dir = dir_with(&[("pods.yaml", pods.as_str())]);
    let example = dir.path().join("pods.yaml");
    let example = example.to_str().unwrap();
    let commands: Vec<Vec<&str>> = std::iter::once(vec!["demo"])
        .chain(
            ["table", "json", "csv", "dot", "mermaid"]
                .into_iter()
                .map(|format| vec!["analyze", "-f", example, "-o", format]),
        )
        .collect();
    for args in commands {
        let mut child = Command::new(BIN)
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -c 5`: read a little, then go away.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 5];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Warnings about the input (no Namespace objects given) may appear;
        // an error about the closed pipe may not.
        assert!(
            !stderr
                .lines()
                .any(|l| l.starts_with("kubefence: ") && !l.starts_with("kubefence: warning: ")),
            "{args:?}: no error reported: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// === with the loader ===

#[test]
fn analyze_json_without_policies_allows_everything() {
    let dir = dir_with(&[("apps.yaml", APPS)]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "apps.yaml", "-o", "json"],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    let ids: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [DB, WEB, "0.0.0.0/0", "::/0"]);
    assert_eq!(
        v["endpoints"][1],
        json!({"id": WEB, "namespace": "default", "kind": "Deployment", "name": "web",
               "labels": {"app": "web"}})
    );
    assert_eq!(v["endpoints"][2]["addresses"], json!(["0.0.0.0/0"]));
    assert_eq!(v["endpoints"][3]["addresses"], json!(["::/0"]));
    assert_eq!(connection(&v, WEB, DB), Some(&json!("all")));
    assert_eq!(connection(&v, "0.0.0.0/0", WEB), Some(&json!("all")));
    assert_eq!(connection(&v, "::/0", WEB), Some(&json!("all")));
    assert_eq!(v["connections"].as_array().unwrap().len(), 10);
}

#[test]
fn default_deny_removes_connections_and_a_rule_restores_one() {
    let dir = dir_with(&[
        ("apps.yaml", APPS),
        ("policies/deny.yaml", DEFAULT_DENY),
        ("policies/db.yaml", DB_FROM_WEB),
    ]);
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-f",
            "apps.yaml",
            "-f",
            "policies/deny.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    assert_eq!(connection(&v, WEB, DB), None);
    assert_eq!(connection(&v, "0.0.0.0/0", WEB), None);
    assert_eq!(
        connection(&v, WEB, "0.0.0.0/0"),
        Some(&json!("all")),
        "egress is open"
    );

    let run = run_in(
        dir.path(),
        &["analyze", "-f", "apps.yaml", "-f", "policies", "-o", "json"],
        None,
    );
    assert_eq!(run.code, 0);
    assert_eq!(connection(&json(&run), WEB, DB), Some(&json!(["TCP/5432"])));
}

#[test]
fn every_format_renders() {
    let dir = dir_with(&[("apps.yaml", APPS), ("db.yaml", DB_FROM_WEB)]);
    let args = |o| ["analyze", "-f", "apps.yaml", "-f", "db.yaml", "-o", o];
    let table = run_in(dir.path(), &args("table"), None);
    assert!(table.stdout.starts_with("FROM"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains("default/Deployment/web  default/Deployment/db   TCP/5432")
    );
    let csv = run_in(dir.path(), &args("csv"), None);
    assert!(
        csv.stdout
            .contains("\ndefault/Deployment/web,default/Deployment/db,TCP/5432\n")
    );
    let dot = run_in(dir.path(), &args("dot"), None);
    assert!(dot.stdout.starts_with("digraph connectivity {"));
    let mermaid = run_in(dir.path(), &args("mermaid"), None);
    assert!(mermaid.stdout.starts_with("flowchart LR\n"));
    assert!(mermaid.stdout.contains("-->|\"TCP/5432\"|"));
    for run in [table, csv, dot, mermaid] {
        assert_eq!(run.code, 0);
    }
}

#[test]
fn stdin_is_read_with_dash() {
    let dir = dir_with(&[("deny.yaml", DEFAULT_DENY)]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "-", "-f", "deny.yaml", "-o", "json"],
        Some(APPS),
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 4);
    assert_eq!(connection(&v, WEB, DB), None);
}

#[test]
fn bad_document_is_reported_and_the_rest_analysed() {
    let dir = dir_with(&[("apps.yaml", APPS), ("bad.yaml", BAD_POLICY)]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "apps.yaml", "-f", "bad.yaml", "-o", "json"],
        None,
    );
    assert_eq!(run.code, 3, "input errors");
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("kubefence: ") && l.contains("bad.yaml"))
        .unwrap_or_else(|| panic!("an error naming the file: {}", run.stderr));
    assert!(line.contains("document"), "{line}");
    assert!(line.contains("cidr"), "names the field: {line}");
    // The good documents were analysed: policy `fine` isolates web.
    let v = json(&run);
    assert_eq!(connection(&v, DB, WEB), None);
    assert_eq!(connection(&v, WEB, DB), Some(&json!("all")));
}

#[test]
fn explain_exits_0_when_allowed_and_1_when_denied() {
    let dir = dir_with(&[("apps.yaml", APPS), ("db.yaml", DB_FROM_WEB)]);
    let base = ["explain", "-f", "apps.yaml", "-f", "db.yaml"];
    let args = |from: &'static str, to: &'static str, port: &'static str| {
        let mut a = base.to_vec();
        a.extend(["--from", from, "--to", to, "--port", port]);
        a
    };
    let run = run_in(dir.path(), &args("default/web", "default/db", "5432"), None);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .starts_with("ALLOWED: default/Deployment/web -> default/Deployment/db (TCP/5432)")
    );
    assert!(
        run.stdout
            .contains("default/db-from-web: spec.ingress[0] allows TCP/5432")
    );

    let run = run_in(
        dir.path(),
        &args("default/web", "default/db", "5433/TCP"),
        None,
    );
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("DENIED"));
    assert!(run.stdout.contains("the peer matches but the ports do not"));

    let mut json_args = args("default/db", "default/web", "53/UDP");
    json_args.extend(["-o", "json"]);
    let run = run_in(dir.path(), &json_args, None);
    assert_eq!(run.code, 0, "web is not isolated");
    let v = json(&run);
    assert_eq!(v["verdict"], "allowed");
    assert_eq!(v["port"], "UDP/53");
    assert_eq!(v["ingress"]["isolated"], false);
}

#[test]
fn diff_shows_what_a_policy_changes() {
    let dir = dir_with(&[("apps.yaml", APPS), ("db.yaml", DB_FROM_WEB)]);
    let run = run_in(
        dir.path(),
        &[
            "diff",
            "--before",
            "apps.yaml",
            "--after",
            "apps.yaml",
            "db.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    assert_eq!(v["added"], json!([]));
    assert!(
        v["removed"]
            .as_array()
            .unwrap()
            .contains(&json!({"from": "0.0.0.0/0", "to": DB, "allowed": "all"}))
    );
    let changed = v["changed"].as_array().unwrap();
    let web_db = changed
        .iter()
        .find(|c| c["from"] == WEB && c["to"] == DB)
        .unwrap();
    assert_eq!(web_db["before"], "all");
    assert_eq!(web_db["after"], json!(["TCP/5432"]));

    let run = run_in(
        dir.path(),
        &[
            "diff",
            "--before",
            "apps.yaml",
            "--after",
            "apps.yaml",
            "db.yaml",
            "--exit-code",
        ],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("CHANGE"));
    let same = run_in(
        dir.path(),
        &[
            "diff",
            "--before",
            "apps.yaml",
            "--after",
            "apps.yaml",
            "--exit-code",
        ],
        None,
    );
    assert_eq!(same.code, 0);
    assert_eq!(same.stdout, "no connectivity changes\n");
}

#[test]
fn demo_prints_before_and_after() {
    let dir = dir_with(&[]);
    let run = run_in(dir.path(), &["demo"], None);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("12 workloads"), "{}", run.stdout);
    assert!(run.stdout.contains("== Before: manifests only"));
    assert!(run.stdout.contains("== With the upstream NetworkPolicies"));
    assert!(
        run.stdout
            .contains("== With kubefence's baseline policies (kubefence generate)")
    );
    assert!(run.stdout.contains("== Summary =="));
    assert!(run.stdout.contains("default/Deployment/frontend"));
    assert!(
        run.stdout.contains("allowed connections no policy: 180"),
        "12 workloads x 11 + 12 x 2 directions x 2 external ranges (IPv4, IPv6)"
    );
    // 16 references, plus the outside world to the frontend's LoadBalancer
    // (IPv4 and IPv6).
    assert!(
        run.stdout.contains("allowed connections baseline:  18"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("12 policies from 16 references."));
    assert!(run.stdout.contains("shoppingassistantservice"));
    // The upstream policies open the frontend to every workload and every
    // egress; the baseline allows nothing upstream does not.
    assert!(run.stdout.contains("only upstream allows (37):"));
    assert!(run.stdout.contains("only the baseline allows (0):"));
    // The answer first: what each scenario isolates and allows, what the
    // baseline closes (180 - 18 connections, less the 18 it narrows to
    // their ports), what it could not resolve.
    let glance = run.stdout.find("== At a glance ==").unwrap();
    assert!(glance < run.stdout.find("== Before").unwrap());
    assert!(
        run.stdout
            .contains("  no policy              0/12             0/12                  180"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "The baseline closes 162 connections and narrows 18; it opens none (0 added)."
        )
    );
    assert!(
        run.stdout
            .contains("16 references the manifests make; 1 could not be resolved")
    );
    // Compact: a matrix with a legend, not one row per connection.
    assert!(run.stdout.contains("   6  default/Deployment/frontend"));
    let before =
        &run.stdout[run.stdout.find("== Before").unwrap()..run.stdout.find("== Baseline").unwrap()];
    assert!(before.lines().count() < 40, "{before}");
    let full = run_in(dir.path(), &["demo", "--full"], None);
    assert!(
        full.stdout.contains("FROM") && full.stdout.lines().count() > run.stdout.lines().count()
    );
}

/// The bundled example's manifests, for `generate`.
fn example_manifests() -> String {
    example_dir()
        .join("kubernetes-manifests.yaml")
        .display()
        .to_string()
}

#[test]
fn generate_prints_one_policy_per_workload_deterministically() {
    let dir = dir_with(&[]);
    let manifests = example_manifests();
    let first = run_in(dir.path(), &["generate", "-f", &manifests], None);
    assert_eq!(first.code, 0);
    assert_eq!(first.stdout.matches("kind: NetworkPolicy").count(), 12);
    assert_eq!(first.stdout.matches("\n---\n").count(), 11);
    assert!(
        first
            .stdout
            .contains("name: kf-baseline-deployment-cartservice")
    );
    assert!(
        first
            .stdout
            .contains("app.kubernetes.io/managed-by: kubefence")
    );
    assert!(first.stdout.contains("kubefence.dev/source: baseline"));
    assert!(
        first.stderr.contains("1 unresolved name"),
        "{}",
        first.stderr
    );
    let second = run_in(dir.path(), &["generate", "-f", &manifests], None);
    assert_eq!(first.stdout, second.stdout, "byte for byte");

    // What it prints reads back, and analyze agrees it is least privilege.
    let policies = dir.path().join("baseline.yaml");
    std::fs::write(&policies, &first.stdout).unwrap();
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-f",
            &manifests,
            "-f",
            policies.to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    let frontend = "default/Deployment/frontend";
    let cart = "default/Deployment/cartservice";
    let redis = "default/Deployment/redis-cart";
    assert_eq!(connection(&v, frontend, cart), Some(&json!(["TCP/7070"])));
    assert_eq!(connection(&v, cart, redis), Some(&json!(["TCP/6379"])));
    assert_eq!(connection(&v, frontend, redis), None);
    assert_eq!(connection(&v, cart, frontend), None);
}

#[test]
fn generate_json_is_a_list_and_the_report_is_structured() {
    let dir = dir_with(&[]);
    let manifests = example_manifests();
    let run = run_in(
        dir.path(),
        &["generate", "-f", &manifests, "-o", "json"],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    assert_eq!(v["kind"], "List");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    assert!(items.iter().all(|i| i["kind"] == "NetworkPolicy"
        && i["apiVersion"] == "networking.k8s.io/v1"
        && i["spec"]["policyTypes"] == json!(["Ingress", "Egress"])));

    let run = run_in(
        dir.path(),
        &["generate", "-f", &manifests, "--report", "json"],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    let refs = v["references"].as_array().unwrap();
    assert_eq!(refs.len(), 16);
    assert!(refs.contains(&json!({
        "from": "default/Deployment/frontend",
        "to": "default/Deployment/cartservice",
        "service": "default/cartservice",
        "ports": ["TCP/7070"],
        "via": "env CART_SERVICE_ADDR"
    })));
    assert_eq!(v["unresolved"].as_array().unwrap().len(), 1);
    assert_eq!(v["unresolved"][0]["value"], "shoppingassistantservice:80");
    assert_eq!(v["external"], json!([]));
    assert!(
        !run.stderr.contains("unresolved name"),
        "no pointer to the report in the report"
    );

    let text = run_in(
        dir.path(),
        &["generate", "-f", &manifests, "--report", "text"],
        None,
    );
    assert!(
        text.stdout.starts_with("references (16):"),
        "{}",
        text.stdout
    );
}

#[test]
fn generate_writes_one_file_per_policy() {
    let dir = dir_with(&[]);
    let manifests = example_manifests();
    let out = dir.path().join("out");
    let run = run_in(
        dir.path(),
        &[
            "generate",
            "-f",
            &manifests,
            "--out-dir",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("wrote 12 policies"), "{}", run.stderr);
    let files: Vec<_> = std::fs::read_dir(out.join("default"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 12, "{files:?}");
    assert!(files.contains(&"kf-baseline-deployment-frontend.yaml".to_string()));
    let text =
        std::fs::read_to_string(out.join("default/kf-baseline-deployment-frontend.yaml")).unwrap();
    assert!(text.starts_with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"));
}

const CONFIGURED: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: api
        env:
        - {name: DB_URL, value: "postgres://db.shop.svc.example.internal:5432/app"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres
        ports: [{containerPort: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: everything, namespace: shop}
spec:
  selector: {}
  template:
    metadata: {labels: {app: everything}}
    spec:
      containers: [{name: c, image: c}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      containers: [{name: c, image: c}]
"#;

#[test]
fn generate_reads_config_refuses_empty_selectors_and_skips_protected_namespaces() {
    let dir = dir_with(&[
        ("apps.yaml", CONFIGURED),
        (
            "kubefence.yaml",
            "clusterDomain: example.internal\ndns:\n  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dns}}\n  podSelector: {matchLabels: {app: resolver}}\n  ports: [{protocol: UDP, port: 5353}]\n",
        ),
        ("typo.yaml", "clusterDomian: x\n"),
    ]);
    let run = run_in(
        dir.path(),
        &[
            "generate",
            "-f",
            "apps.yaml",
            "--config",
            "kubefence.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 3, "the empty selector is an input error");
    // The API server rejects an apps/v1 workload with an empty selector, and
    // so does the loader, before the builder sees it.
    assert!(
        run.stderr.contains(
            "(Deployment shop/everything): spec.selector: empty selector is invalid for a Deployment"
        ),
        "{}",
        run.stderr
    );
    let v = json(&run);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    // kube-system is protected; the empty selector gets nothing.
    assert_eq!(
        names,
        ["kf-baseline-deployment-api", "kf-baseline-deployment-db"]
    );
    let api = &v["items"][0];
    // The cluster domain of the config resolves the reference...
    assert_eq!(
        api["spec"]["egress"][2]["to"][0]["podSelector"]["matchLabels"],
        json!({"app": "db"})
    );
    // ...and DNS is the configured resolver.
    assert_eq!(
        api["spec"]["egress"][0],
        json!({
            "ports": [{"port": 5353, "protocol": "UDP"}],
            "to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}},
                "podSelector": {"matchLabels": {"app": "resolver"}}
            }]
        })
    );

    // A protected namespace named with -n is generated.
    let run = run_in(
        dir.path(),
        &[
            "generate",
            "-f",
            "apps.yaml",
            "-n",
            "kube-system",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(
        run.code, 3,
        "apps.yaml still holds the Deployment with an empty selector"
    );
    let v = json(&run);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["items"][0]["metadata"]["name"],
        "kf-baseline-deployment-coredns"
    );

    // A typo in the config is a usage error that names the file.
    let run = run_in(
        dir.path(),
        &["generate", "-f", "apps.yaml", "--config", "typo.yaml"],
        None,
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("typo.yaml"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn bundled_example_on_disk_matches_the_demo() {
    let dir = example_dir();
    let run = run_in(
        &dir,
        &[
            "analyze",
            "-f",
            "kubernetes-manifests.yaml",
            "-f",
            "policies",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0);
    let v = json(&run);
    let frontend = "default/Deployment/frontend";
    let cart = "default/Deployment/cartservice";
    let redis = "default/Deployment/redis-cart";
    assert_eq!(connection(&v, frontend, cart), Some(&json!(["TCP/7070"])));
    assert_eq!(connection(&v, cart, redis), Some(&json!(["TCP/6379"])));
    assert_eq!(
        connection(&v, frontend, redis),
        None,
        "redis admits only cartservice"
    );
    assert_eq!(
        connection(&v, cart, frontend),
        Some(&json!("all")),
        "frontend: ingress [{{}}]"
    );
    // Skipped kinds (ServiceAccount) are listed with -v.
    let run = run_in(
        &dir,
        &["analyze", "-v", "-f", "kubernetes-manifests.yaml"],
        None,
    );
    assert!(run.stderr.contains("ServiceAccount"), "{}", run.stderr);
}

// === strict reading (issue 9) ===

/// The database in `prod`, a pod in `other`, and a policy meant to admit
/// only `prod`'s own pods on 5432.
const CROSS_NAMESPACE: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db}}
spec: {containers: [{name: db, image: postgres, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: other, labels: {app: intruder}}
spec: {containers: [{name: c, image: busybox}]}
"#;

fn db_policy(rule: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db, namespace: prod}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress:\n{rule}"
    )
}

#[test]
fn a_typo_in_a_policy_is_an_input_error_not_an_open_door() {
    // (the rule with a typo, the field path, the suggestion)
    let cases = [
        (
            "  - form: [{podSelector: {}}]\n    ports: [{port: 5432}]\n",
            "spec.ingress[0].form",
            Some("from"),
        ),
        (
            "  - from: [{namespaceSelector: {name: prod}}]\n",
            "spec.ingress[0].from[0].namespaceSelector.name",
            None,
        ),
        (
            "  - from: [{podSelector: {app: web}}]\n",
            "spec.ingress[0].from[0].podSelector.app",
            None,
        ),
        (
            "  - from: [{podSelector: {}}]\n    ports: [{port: 5432, protcol: TCP}]\n",
            "spec.ingress[0].ports[0].protcol",
            Some("protocol"),
        ),
    ];
    for (rule, field, hint) in cases {
        let dir = dir_with(&[
            ("cluster.yaml", CROSS_NAMESPACE),
            ("policy.yaml", &db_policy(rule)),
        ]);
        let run = run_in(
            dir.path(),
            &[
                "explain",
                "-f",
                "cluster.yaml",
                "-f",
                "policy.yaml",
                "--from",
                "other/intruder",
                "--to",
                "prod/db",
                "--port",
                "5432",
            ],
            None,
        );
        assert_eq!(run.code, 3, "input errors exit 3: {rule}");
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(field))
            .unwrap_or_else(|| panic!("no error names {field}: {}", run.stderr));
        assert!(line.contains("policy.yaml"), "{line}");
        assert!(line.contains("document 1"), "{line}");
        assert!(line.contains("NetworkPolicy prod/db"), "{line}");
        assert!(line.contains("unknown field"), "{line}");
        match hint {
            Some(key) => assert!(line.contains(&format!("did you mean `{key}`?")), "{line}"),
            None => assert!(!line.contains("did you mean"), "{line}"),
        }
        // The bad policy is left out: the database is not isolated, and
        // the verdict must not rest on a rule without peers.
        assert!(
            !run.stdout.contains("prod/db: spec.ingress[0] allows"),
            "the misspelt rule was enforced: {}",
            run.stdout
        );
    }
    // Spelt right, the same rule keeps the intruder out.
    let dir = dir_with(&[
        ("cluster.yaml", CROSS_NAMESPACE),
        (
            "policy.yaml",
            &db_policy("  - from: [{podSelector: {}}]\n    ports: [{port: 5432}]\n"),
        ),
    ]);
    let run = run_in(
        dir.path(),
        &[
            "explain",
            "-f",
            "cluster.yaml",
            "-f",
            "policy.yaml",
            "--from",
            "other/intruder",
            "--to",
            "prod/db",
            "--port",
            "5432",
        ],
        None,
    );
    assert_eq!(run.code, 1, "denied");
    assert!(run.stdout.starts_with("DENIED"), "{}", run.stdout);
}

#[test]
fn duplicates_and_undeclared_namespaces_are_warnings_on_stderr() {
    let dir = dir_with(&[("apps.yaml", APPS), ("again.yaml", APPS)]);
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-f",
            "apps.yaml",
            "-f",
            "again.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0, "duplicates are warnings, not errors");
    let dup_lines = run
        .stderr
        .lines()
        .filter(|l| l.contains("duplicate"))
        .count();
    assert_eq!(dup_lines, 2, "one per duplicated object: {}", run.stderr);
    assert!(run.stderr.contains("again.yaml") && run.stderr.contains("apps.yaml"));
    let undeclared: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("not given as Namespace objects"))
        .collect();
    assert_eq!(undeclared.len(), 1, "{}", run.stderr);
    assert!(undeclared[0].contains("default"), "{}", undeclared[0]);
}

// === one output format family (issue 9) ===

#[test]
fn every_command_takes_auto_and_lists_only_its_own_formats() {
    let dir = dir_with(&[("apps.yaml", APPS)]);
    let commands: [(&[&str], &[&str], &[&str]); 5] = [
        (
            &["analyze", "-f", "apps.yaml"],
            &["auto", "table", "json", "csv", "dot", "mermaid"],
            &["yaml", "text"],
        ),
        (
            &["diff", "--before", "apps.yaml", "--after", "apps.yaml"],
            &["auto", "table", "json", "csv"],
            &["dot", "yaml"],
        ),
        (
            &["explain", "-f", "apps.yaml", "--from", WEB, "--to", DB],
            &["auto", "text", "json"],
            &["table", "csv"],
        ),
        (
            &["generate", "-f", "apps.yaml"],
            &["auto", "yaml", "json"],
            &["table", "text"],
        ),
        (
            &[
                "quarantine",
                "deploy/web",
                "--offline",
                "-f",
                "apps.yaml",
                "--reason",
                "t",
            ],
            &["auto", "text", "yaml", "json"],
            &["table", "csv"],
        ),
    ];
    for (args, accepted, refused) in commands {
        let default = run_in(dir.path(), args, None);
        let with = |format: &str| {
            let mut a = args.to_vec();
            a.extend(["-o", format]);
            run_in(dir.path(), &a, None)
        };
        let auto = with("auto");
        assert!(auto.code == 0 || auto.code == 1, "{args:?} -o auto");
        assert_eq!(auto.stdout, default.stdout, "{args:?}: auto is the default");
        for format in refused {
            let run = with(format);
            assert_eq!(run.code, 2, "{args:?} -o {format} is refused");
            for value in accepted {
                assert!(
                    run.stderr.contains(value),
                    "{args:?}: the error lists {value}: {}",
                    run.stderr
                );
            }
        }
        let help = run_in(dir.path(), &[args[0], "--help"], None);
        for value in accepted {
            assert!(
                help.stdout.contains(value),
                "{} --help lists {value}",
                args[0]
            );
        }
    }
}

/// `web` reaches `db` through its egress on the named port `pg` and db's
/// ingress on 5432; both sides are isolated.
const PORTS_BY_NAME: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: web, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: db, ports: [{name: pg, containerPort: 5432}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: pg}]
"#;

#[test]
fn explain_port_miss_names_the_asked_port() {
    let dir = dir_with(&[("shop.yaml", PORTS_BY_NAME)]);
    let explain = |port: &str, format: &str| {
        run_in(
            dir.path(),
            &[
                "explain",
                "-f",
                "shop.yaml",
                "--from",
                "shop/web",
                "--to",
                "shop/db",
                "--port",
                port,
                "-o",
                format,
            ],
            None,
        )
    };
    let run = explain("22", "text");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = &run.stdout;
    assert!(
        out.starts_with("DENIED: shop/Deployment/web -> shop/Deployment/db (TCP/22)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "egress at shop/Deployment/web (source): isolated by shop/web-out; \
             does not allow TCP/22\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  shop/web-out: does not allow TCP/22; nearest rule spec.egress[0]: \
             the peer matches but the ports do not: the rule allows port `pg` \
             (TCP/5432 on the destination), not TCP/22\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  shop/db-in: does not allow TCP/22; nearest rule spec.ingress[0]: \
             the peer matches but the ports do not: the rule allows TCP/5432, not TCP/22\n"
        ),
        "{out}"
    );

    let run = explain("22/TCP", "json");
    assert_eq!(run.code, 1);
    let v = json(&run);
    assert_eq!(v["port"], "TCP/22");
    assert_eq!(
        v["ingress"]["policies"][0]["nearest_miss"]["reason"],
        "the peer matches but the ports do not: the rule allows TCP/5432, not TCP/22"
    );
    assert!(
        v["egress"]["policies"][0]["nearest_miss"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("not TCP/22")
    );

    // The port the rules allow is allowed, and said so.
    let run = explain("5432", "text");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("  shop/db-in: spec.ingress[0] allows TCP/5432\n"),
        "{}",
        run.stdout
    );
}

const WEB_ONLY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: web}]}
"#;

/// web may reach all of IPv4 on 443 and nothing of IPv6.
const EGRESS_V4_ONLY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 443}]
"#;

/// The same plus IPv6 but the unique-local range: one peer list with both
/// families.
const EGRESS_BOTH: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0}
    - ipBlock: {cidr: "::/0", except: ["fd00::/8"]}
    ports: [{port: 443}]
"#;

const WEB_ID: &str = "shop/Deployment/web";
const V6_BUT_ULA: &str = "::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,fe00::/7";

#[test]
fn analyze_sees_ipv6_in_every_output_format() {
    let dir = dir_with(&[
        ("web.yaml", WEB_ONLY),
        ("v4.yaml", EGRESS_V4_ONLY),
        ("both.yaml", EGRESS_BOTH),
    ]);
    let analyze = |policy: &str, format: &str| {
        let run = run_in(
            dir.path(),
            &["analyze", "-f", "web.yaml", "-f", policy, "-o", format],
            None,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
    };

    // An egress rule to 0.0.0.0/0 allows no IPv6 destination; IPv6 clients
    // still reach web (its ingress is not isolated).
    let v: Value = serde_json::from_str(&analyze("v4.yaml", "json")).unwrap();
    let ids: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [WEB_ID, "0.0.0.0/0", "::/0"]);
    assert_eq!(
        connection(&v, WEB_ID, "0.0.0.0/0"),
        Some(&json!(["TCP/443"]))
    );
    assert_eq!(connection(&v, WEB_ID, "::/0"), None);
    assert_eq!(connection(&v, "::/0", WEB_ID), Some(&json!("all")));

    let v: Value = serde_json::from_str(&analyze("both.yaml", "json")).unwrap();
    let endpoint = |id: &str| {
        v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {id}: {v}"))
    };
    assert_eq!(endpoint("fd00::/8")["addresses"], json!(["fd00::/8"]));
    assert_eq!(endpoint("fd00::/8")["kind"], "External");
    assert_eq!(
        endpoint(V6_BUT_ULA)["addresses"],
        json!([
            "::/1", "8000::/2", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fc00::/8",
            "fe00::/7"
        ])
    );
    assert_eq!(
        connection(&v, WEB_ID, V6_BUT_ULA),
        Some(&json!(["TCP/443"]))
    );
    assert_eq!(connection(&v, WEB_ID, "fd00::/8"), None);

    let table = analyze("both.yaml", "table");
    let width = V6_BUT_ULA.len();
    assert!(
        table.contains(&format!("{WEB_ID:width$}  {V6_BUT_ULA:width$}  TCP/443\n")),
        "{table}"
    );
    assert!(
        !table.contains(&format!("{WEB_ID:width$}  fd00::/8")),
        "{table}"
    );

    // The range with a comma is one quoted CSV field.
    let csv = analyze("both.yaml", "csv");
    assert!(
        csv.lines()
            .any(|l| l == format!("{WEB_ID},\"{V6_BUT_ULA}\",TCP/443")),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l == format!("fd00::/8,{WEB_ID},all")),
        "{csv}"
    );

    let dot = analyze("both.yaml", "dot");
    assert!(
        dot.contains("[label=\"fd00::/8\", shape=ellipse];"),
        "{dot}"
    );
    assert!(
        dot.contains(&format!("[label=\"{V6_BUT_ULA}\", shape=ellipse];")),
        "{dot}"
    );

    let mermaid = analyze("both.yaml", "mermaid");
    assert!(mermaid.contains("([\"fd00::/8\"])"), "{mermaid}");
    assert!(
        mermaid.contains(&format!("([\"{V6_BUT_ULA}\"])")),
        "{mermaid}"
    );
}

#[test]
fn diff_reports_a_change_on_the_ipv6_side_only() {
    let dir = dir_with(&[
        ("web.yaml", WEB_ONLY),
        ("v4.yaml", EGRESS_V4_ONLY),
        ("both.yaml", EGRESS_BOTH),
    ]);
    let diff = |format: &str| {
        run_in(
            dir.path(),
            &[
                "diff",
                "--before",
                "web.yaml",
                "--before",
                "v4.yaml",
                "--after",
                "web.yaml",
                "--after",
                "both.yaml",
                "-o",
                format,
            ],
            None,
        )
    };
    let run = diff("json");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(
        v["added"],
        json!([{"from": WEB_ID, "to": V6_BUT_ULA, "allowed": ["TCP/443"]}])
    );
    assert_eq!(v["removed"], json!([]));
    assert_eq!(v["changed"], json!([]));
    let table = diff("table").stdout;
    assert!(table.contains(V6_BUT_ULA), "{table}");
    assert!(!table.contains("0.0.0.0"), "{table}");

    // Isolating egress to all of IPv4 on every port takes IPv6 away and
    // changes nothing on the IPv4 side.
    let v4_all = EGRESS_V4_ONLY.replace("    ports: [{port: 443}]\n", "");
    std::fs::write(dir.path().join("v4-all.yaml"), v4_all).unwrap();
    let run = run_in(
        dir.path(),
        &[
            "diff",
            "--before",
            "web.yaml",
            "--after",
            "web.yaml",
            "--after",
            "v4-all.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(v["added"], json!([]));
    assert_eq!(
        v["removed"],
        json!([{"from": WEB_ID, "to": "::/0", "allowed": "all"}])
    );
    assert_eq!(v["changed"], json!([]));
}

/// `completion` prints a script for every shell clap_complete knows, each
/// naming every subcommand.
#[test]
fn completion_scripts_name_every_subcommand() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let subcommands = run_in(here, &["man", "--list"], None).stdout;
    assert!(subcommands.lines().count() >= 15, "{subcommands}");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = run_in(here, &["completion", shell], None);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for sub in subcommands.lines() {
            assert!(r.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let r = run_in(here, &["completion", "tcsh"], None);
    assert_eq!(r.code, 2, "an unknown shell is a usage error");
}

/// `man` prints roff pages, the main one and one per subcommand, with the
/// version; an unknown subcommand is a usage error.
#[test]
fn man_pages_are_roff_with_the_version() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = run_in(here, &["man"], None);
    assert_eq!(main.code, 0);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        main.stdout
            .contains(&format!(".TH kubefence 1  \"kubefence {version}\"")),
        "{}",
        &main.stdout[..200.min(main.stdout.len())]
    );
    assert!(main.stdout.contains("analyze"));
    for sub in run_in(here, &["man", "--list"], None).stdout.lines() {
        let page = run_in(here, &["man", sub], None);
        assert_eq!(page.code, 0, "{sub}");
        assert!(
            page.stdout.contains(&format!(
                ".TH kubefence-{sub} 1  \"kubefence-{sub} {version}\""
            )),
            "{sub}"
        );
        assert!(page.stdout.contains(&format!("kubefence {sub}")), "{sub}");
    }
    let r = run_in(here, &["man", "nope"], None);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("man --list"), "{}", r.stderr);
}

/// `version` names the commit the binary was built from: the work tree's
/// HEAD, as git itself says, when built in a git checkout.
#[test]
fn version_names_the_git_commit() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = run_in(here, &["version", "-o", "json"], None);
    assert_eq!(r.code, 0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(!v["target"].as_str().unwrap().is_empty());
    let commit = v["gitCommit"].as_str().unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(here)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // The binary may be older than a commit made since it was built;
        // a test build is from the checkout's HEAD or marked dirty.
        Some(head) if std::env::var_os("KUBEFENCE_GIT_COMMIT").is_none() => {
            assert!(commit.starts_with(&head), "{commit} vs HEAD {head}")
        }
        _ => assert!(!commit.is_empty()),
    }
    let text = run_in(here, &["version"], None).stdout;
    assert!(
        text.starts_with(&format!(
            "kubefence {} (commit {commit}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

/// Colour only when asked for, or on a terminal: piped output has no
/// escape codes by default, `--color always` colours the table header,
/// `--color never` and NO_COLOR keep it plain.
#[test]
fn color_only_when_asked_or_on_a_terminal() {
    let dir = example_dir();
    let args = ["analyze", "-f", "kubernetes-manifests.yaml"];
    let plain = run_in(&dir, &args, None);
    assert!(!plain.stdout.contains('\u{1b}'));
    let always = run_in(&dir, &[&args[..], &["--color", "always"]].concat(), None);
    assert!(
        always.stdout.starts_with("\u{1b}[1mFROM"),
        "{:?}",
        &always.stdout[..40]
    );
    // The rows are the same, without their codes.
    assert_eq!(
        always
            .stdout
            .replace("\u{1b}[1m", "")
            .replace("\u{1b}[0m", ""),
        plain.stdout
    );
    let never = run_in(&dir, &[&args[..], &["--color", "never"]].concat(), None);
    assert_eq!(never.stdout, plain.stdout);
}

/// Without -f a command reads the live cluster of the kubeconfig; with no
/// usable kubeconfig it says how to give files instead (exit 2), and the
/// live-cluster flags are refused beside -f.
#[test]
fn without_files_the_live_cluster_is_read_or_the_error_says_how_not_to() {
    let dir = example_dir();
    let r = run_in(
        &dir,
        &["analyze", "--kubeconfig", "/nonexistent/kubeconfig"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no usable kubeconfig")
            && r.stderr.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{}",
        r.stderr
    );
    let r = run_in(
        &dir,
        &["analyze", "-f", "kubernetes-manifests.yaml", "-A"],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("-f reads files"), "{}", r.stderr);
    // diff: the live cluster before, files applied over it after.
    let r = run_in(
        &dir,
        &[
            "diff",
            "--before-cluster",
            "--after",
            "kubernetes-manifests.yaml",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no usable kubeconfig"), "{}", r.stderr);
    let r = run_in(
        &dir,
        &[
            "diff",
            "--before",
            "kubernetes-manifests.yaml",
            "--after",
            "kubernetes-manifests.yaml",
            "-A",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("go with --before-cluster"),
        "{}",
        r.stderr
    );
}
