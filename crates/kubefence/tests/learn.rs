//! `kubefence learn` and `kubefence verify` run as the real binary on the
//! hand-written flow files of testdata/flows and Kubescape's example
//! objects: exit codes, stdout, stderr, and the policies checked by verify
//! against the same flows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn testdata(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("KUBEFENCE_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    eprintln!(
        "kubefence {args:?} -> {}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

const SHOP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: web, image: web}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cartservice, namespace: shop}
spec:
  selector: {matchLabels: {app: cartservice}}
  template:
    metadata: {labels: {app: cartservice}}
    spec: {containers: [{name: cart, image: cart, ports: [{containerPort: 7070}]}]}
"#;

const DENY_ALL: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `learn --engine cilium` of `flows`: its output, and the frontend's
/// policy in it.
fn cilium_frontend(flows: &str) -> (String, Value) {
    let cilium = run(&["learn", "--flows", flows, "--engine", "cilium"]);
    assert_eq!(cilium.code, 0, "{}", cilium.stderr);
    let frontend = docs(&cilium.stdout)
        .into_iter()
        .find(|p| p["metadata"]["name"] == "deployment-frontend")
        .unwrap();
    (cilium.stdout, frontend)
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn learn_from_jsonpb_flows_writes_one_policy_per_workload_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let shop = write(dir.path(), "shop.yaml", SHOP);
    let flows = testdata("flows/jsonpb-tcp.jsonl");
    let out = run(&["learn", "--flows", &flows, "-f", &shop]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let policies = docs(&out.stdout);
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deployment-cartservice", "deployment-frontend"]);
    let frontend = &policies[1];
    assert_eq!(frontend["kind"], "NetworkPolicy");
    assert_eq!(frontend["spec"]["egress"][0]["ports"][0]["port"], 7070);
    assert_eq!(
        frontend["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app"],
        "cartservice"
    );
    // Evidence: one connection, first and last seen.
    let rules = frontend["metadata"]["annotations"]["kubefence.dev/rules"]
        .as_str()
        .unwrap();
    assert!(rules.contains("2026-03-01T10:00:00.000000001Z"), "{rules}");
    assert_eq!(
        frontend["metadata"]["labels"]["kubefence.dev/source"],
        "learned"
    );

    // What was learned allows every observed connection (verify exits 0),
    // where a deny-all policy would break it (verify exits 1).
    let learned = write(dir.path(), "learned.yaml", &out.stdout);
    let ok = run(&["verify", "--flows", &flows, "-f", &shop, "-f", &learned]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(
        ok.stdout.contains("1 allowed, 0 would be denied"),
        "{}",
        ok.stdout
    );
}

#[test]
fn verify_lists_each_denied_connection_with_the_deciding_policy() {
    let dir = tempfile::tempdir().unwrap();
    let shop = write(dir.path(), "shop.yaml", SHOP);
    let deny = write(dir.path(), "deny.yaml", DENY_ALL);
    let flows = testdata("flows/jsonpb-tcp.jsonl");
    let out = run(&["verify", "--flows", &flows, "-f", &shop, "-f", &deny]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "DENIED shop/Deployment/frontend -> shop/Deployment/cartservice TCP/7070 (2 flows"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("shop/deny-all"), "{}", out.stdout);
    assert!(
        out.stdout.contains("0 allowed, 1 would be denied"),
        "{}",
        out.stdout
    );
    let json = run(&[
        "verify", "--flows", &flows, "-f", &shop, "-f", &deny, "-o", "json",
    ]);
    assert_eq!(json.code, 1);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["summary"]["denied"], 1);
    assert_eq!(v["denied"][0]["egress_policies"][0], "shop/deny-all");
    assert_eq!(v["denied"][0]["ingress_policies"][0], "shop/deny-all");
}

#[test]
fn verify_takes_a_reply_without_is_reply_as_a_reply_as_learn_does() {
    // The server's data packet back to the client carries no is_reply (an
    // observation point without conntrack state): it is a reply because it
    // leaves the port cartservice listens on for one frontend does not. It
    // is not a connection from cartservice to frontend's port 43210.
    let dir = tempfile::tempdir().unwrap();
    let shop = write(dir.path(), "shop.yaml", SHOP);
    let flows = testdata("flows/jsonpb-no-is-reply.jsonl");
    let learned = run(&["learn", "--flows", &flows, "-f", &shop]);
    assert_eq!(learned.code, 0, "{}", learned.stderr);
    let learned = write(dir.path(), "learned.yaml", &learned.stdout);

    let out = run(&["verify", "--flows", &flows, "-f", &shop, "-f", &learned]);
    assert!(!out.stdout.contains("43210"), "{}", out.stdout);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let json = run(&[
        "verify", "--flows", &flows, "-f", &shop, "-f", &learned, "-o", "json",
    ]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let summary = &v["summary"];
    assert_eq!(summary["flows"], 5);
    assert_eq!(summary["connections"], 1);
    assert_eq!(summary["allowed"], 1);
    assert_eq!(summary["denied"], 0);
    // The SYN-ACK, the is_reply: true ACK and the data packet back.
    assert_eq!(summary["replies"], 3);

    // Against deny-all, the one connection is denied, from the client.
    let deny = write(dir.path(), "deny.yaml", DENY_ALL);
    let denied = run(&["verify", "--flows", &flows, "-f", &shop, "-f", &deny]);
    assert_eq!(denied.code, 1);
    assert!(
        denied.stdout.contains(
            "DENIED shop/Deployment/frontend -> shop/Deployment/cartservice TCP/7070 (2 flows"
        ),
        "{}",
        denied.stdout
    );
    assert!(
        denied.stdout.contains("0 allowed, 1 would be denied"),
        "{}",
        denied.stdout
    );
}

#[test]
fn malformed_flow_lines_are_reported_by_file_and_line_and_the_rest_is_learned() {
    let flows = testdata("flows/malformed.jsonl");
    let out = run(&["learn", "--flows", &flows]);
    assert_eq!(out.code, 3);
    for line in ["line 2", "line 3", "line 5"] {
        assert!(
            out.stderr.contains(&format!("malformed.jsonl: {line}: ")),
            "{line}: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("line 1:") && !out.stderr.contains("line 4:"));
    assert!(out.stdout.contains("kind: NetworkPolicy"), "{}", out.stdout);
}

#[test]
fn output_is_the_same_whatever_the_order_of_the_flows() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(testdata("flows/jsonpb-tcp.jsonl")).unwrap();
    let reversed: Vec<&str> = text.lines().rev().collect();
    let forward = write(dir.path(), "f.jsonl", &text);
    let backward = write(dir.path(), "b.jsonl", &(reversed.join("\n") + "\n"));
    let a = run(&["learn", "--flows", &forward]);
    let b = run(&["learn", "--flows", &backward]);
    assert_eq!(a.code, 0);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn learn_formats_json_out_dir_report_and_cilium() {
    let dir = tempfile::tempdir().unwrap();
    let flows = testdata("flows/json-array.json");
    let json = run(&["learn", "--flows", &flows, "-o", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let list: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(!list["items"].as_array().unwrap().is_empty());

    let out_dir = dir.path().join("learned");
    let written = run(&[
        "learn",
        "--flows",
        &flows,
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(written.code, 0);
    assert!(
        out_dir.join("shop/deployment-frontend.yaml").is_file(),
        "{}",
        written.stderr
    );

    let report = run(&["learn", "--flows", &flows, "--report", "json"]);
    assert_eq!(report.code, 0);
    let r: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(r["flows"]["read"], 3);
    let text = run(&["learn", "--flows", &flows, "--report", "text"]);
    assert!(text.stdout.starts_with("flows read: 3"), "{}", text.stdout);

    // The DNS query's direction is unknown here (no `is_reply`), so no DNS
    // rule is learned: the answered address is a CIDR rule, and no toFQDNs
    // rule (it would need DNS allowed, which was not observed).
    let (cilium, frontend) = cilium_frontend(&flows);
    assert_eq!(frontend["kind"], "CiliumNetworkPolicy");
    assert_eq!(
        frontend["metadata"]["labels"]["kubefence.dev/source"],
        "learned"
    );
    let egress = frontend["spec"]["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|r| r["toCIDRSet"][0]["cidr"] == "203.0.113.7/32"),
        "{egress:?}"
    );
    assert!(!cilium.contains("toFQDNs"), "{cilium}");

    // The same flows with the query marked as the client's: DNS to
    // kube-dns is learned, so the address's name is a toFQDNs rule on the
    // same port, and the DNS rule lets Cilium's DNS proxy see the lookups.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&flows).unwrap();
    let with_query = text.replacen(
        "\"traffic_direction\": \"EGRESS\"\n  },",
        "\"traffic_direction\": \"EGRESS\", \"is_reply\": false\n  },",
        1,
    );
    assert_ne!(with_query, text, "the query's is_reply");
    let flows = write(dir.path(), "flows.json", &with_query);
    let (_, frontend) = cilium_frontend(&flows);
    let egress = frontend["spec"]["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|r| r["toFQDNs"][0]["matchName"] == "api.stripe.com"
                && r["toPorts"][0]["ports"][0]["port"] == "443"),
        "{egress:?}"
    );
    assert!(
        egress
            .iter()
            .any(|r| r["toPorts"][0]["rules"]["dns"][0]["matchPattern"] == "*"),
        "{egress:?}"
    );
}

#[test]
fn learn_from_kubescape_neighborhoods_writes_generated_network_policies() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(testdata(
        "third-party/kubescape/node-agent/known-network-neighborhood.yaml",
    ))
    .unwrap();
    let nn = write(
        dir.path(),
        "nn.yaml",
        &text.replace("{{NAMESPACE}}", "team-a"),
    );
    let out = run(&["learn", "--neighborhood", &nn]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gnps = docs(&out.stdout);
    assert_eq!(gnps.len(), 1);
    let gnp = &gnps[0];
    assert_eq!(
        gnp["apiVersion"],
        "spdx.softwarecomposition.kubescape.io/v1beta1"
    );
    assert_eq!(gnp["kind"], "GeneratedNetworkPolicy");
    assert_eq!(gnp["metadata"]["name"], "fusioncore-network");
    assert_eq!(gnp["metadata"]["namespace"], "team-a");
    assert_eq!(gnp["spec"]["kind"], "NetworkPolicy");
    assert_eq!(gnp["policyRef"][0]["dns"], "fusioncore.ai");
    assert_eq!(gnp["policyRef"][0]["ipBlock"], "162.0.217.171/32");
    let ours = run(&["learn", "--neighborhood", &nn, "--api-group", "kubefence"]);
    assert_eq!(
        docs(&ours.stdout)[0]["apiVersion"],
        "kubefence.dev/v1alpha1"
    );
}

#[test]
fn a_neighborhood_whose_status_is_not_ready_is_an_error_naming_it() {
    let nn = testdata("third-party/kubescape/artifacts/networkneighborhood/01-example.yaml");
    let out = run(&["learn", "--neighborhood", &nn]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("status \"ready\""), "{}", out.stderr);
    assert!(out.stderr.contains("01-example.yaml"), "{}", out.stderr);
}

#[test]
fn learn_needs_a_source_and_refuses_to_mix_them() {
    assert_eq!(run(&["learn"]).code, 2);
    let flows = testdata("flows/jsonpb-tcp.jsonl");
    let nn = testdata("third-party/kubescape/artifacts/networkneighborhood/01-example.yaml");
    assert_eq!(
        run(&["learn", "--flows", &flows, "--neighborhood", &nn]).code,
        2
    );
    let missing = run(&["learn", "--flows", "no-such-file.jsonl"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no-such-file.jsonl"));
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = write(empty_dir.path(), "empty.jsonl", "");
    let nothing = run(&["learn", "--flows", &empty]);
    assert_eq!(nothing.code, 2);
    assert!(
        nothing.stderr.contains("nothing to learn from"),
        "{}",
        nothing.stderr
    );
}

#[test]
fn help_teaches_with_examples() {
    for sub in ["learn", "verify"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("Examples:"), "{sub}");
        assert!(out.stdout.contains("Exit codes"), "{sub}");
    }
}
