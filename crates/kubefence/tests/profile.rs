//! `kubefence profile render` through the real binary: the policy of a
//! profile, the Effective analysis against the namespace's other policies
//! read from the same files, and the exit codes CI pipelines rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KUBEFENCE_LOG")
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run kubefence")
}

const PROFILE: &str = "\
apiVersion: kubefence.dev/v1alpha1
kind: IsolationProfile
metadata: {name: python, namespace: sandboxes}
spec:
  podSelector: {matchLabels: {template: python}}
";

const NAMESPACE: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: sandbox-0, namespace: sandboxes, labels: {template: python}}
spec: {containers: [{name: main, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: sandboxes, labels: {app: intruder}}
spec: {containers: [{name: main, image: busybox}]}
";

const ALLOW_ALL_IN: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-in, namespace: sandboxes}
spec:
  podSelector: {}
  ingress: [{}]
  policyTypes: [Ingress]
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    name.to_string()
}

#[test]
fn render_prints_an_applicable_policy_and_says_it_is_effective() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "profile.yaml", PROFILE);
    let ns = write(dir.path(), "ns.yaml", NAMESPACE);
    let out = run(&["profile", "render", "-f", &p, "-f", &ns], dir.path());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# Effective: True"), "{stdout}");
    assert!(
        stdout.contains("name: kf-profile-isolationprofile-python"),
        "{stdout}"
    );
    assert!(stdout.contains("169.254.0.0/16"), "{stdout}");
    // The output reads back as one NetworkPolicy (what kubectl would apply).
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    let policies: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["metadata"]["namespace"], "sandboxes");
}

#[test]
fn render_reports_a_policy_that_reopens_ingress_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "profile.yaml", PROFILE);
    let ns = write(
        dir.path(),
        "ns.yaml",
        &format!("{NAMESPACE}---\n{ALLOW_ALL_IN}"),
    );
    let out = run(&["profile", "render", "-f", &p, "-f", &ns], dir.path());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("# Effective: False"), "{stdout}");
    assert!(stdout.contains("sandboxes/allow-all-in"), "{stdout}");
    assert!(
        stdout.contains("sandboxes/Pod/intruder"),
        "the engine names who gets in: {stdout}"
    );
    let out = run(
        &["profile", "render", "-f", &p, "-f", &ns, "-o", "json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profiles"][0]["effective"], false);
    assert_eq!(
        v["profiles"][0]["reopenedPaths"][0]["policy"],
        "sandboxes/allow-all-in"
    );
    assert_eq!(v["profiles"][0]["pool"][0], "sandboxes/Pod/sandbox-0");
}

#[test]
fn render_refuses_an_empty_selector_and_reports_narrowing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(
        dir.path(),
        "empty.yaml",
        &PROFILE.replace("{matchLabels: {template: python}}", "{}"),
    );
    let out = run(&["profile", "render", "-f", &empty], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("podSelector is empty"));
    let custom = write(
        dir.path(),
        "custom.yaml",
        &format!("{PROFILE}  policy:\n    egress: [{{}}]\n"),
    );
    let out = run(&["profile", "render", "-f", &custom], dir.path());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# narrowed by the guardrails: spec.policy.egress[0]"),
        "{stdout}"
    );
    assert!(stdout.contains("10.0.0.0/8"), "{stdout}");
}

/// An engine that can deny gets the guardrails as an object of its own:
/// egress from the pool to the blocked ranges denied, so another policy's
/// egress to a private range reopens nothing (exit 0), while under
/// networkpolicy the same policy makes the profile ineffective (exit 1).
#[test]
fn render_writes_the_guardrail_denies_of_a_denying_engine() {
    let dir = tempfile::tempdir().unwrap();
    let to_private = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-private, namespace: sandboxes}
spec:
  podSelector: {}
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}]}]
  policyTypes: [Egress]
";
    let ns = write(
        dir.path(),
        "ns.yaml",
        &format!("{NAMESPACE}---\n{to_private}"),
    );
    let plain = write(dir.path(), "plain.yaml", PROFILE);
    let out = run(
        &["profile", "render", "-f", &plain, "-f", &ns, "-o", "json"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["profiles"][0]["guardrails"].is_null());

    for (engine, kind, namespaced) in [
        ("cilium", "CiliumNetworkPolicy", true),
        ("clusternetworkpolicy", "ClusterNetworkPolicy", false),
        ("adminnetworkpolicy", "AdminNetworkPolicy", false),
    ] {
        let p = write(
            dir.path(),
            &format!("{engine}.yaml"),
            &format!("{PROFILE}  engine: {engine}\n"),
        );
        let out = run(
            &["profile", "render", "-f", &p, "-f", &ns, "-o", "json"],
            dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{engine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let g = &doc["profiles"][0]["guardrails"];
        assert_eq!(g["kind"], kind, "{engine}: {g}");
        assert_eq!(g["metadata"]["namespace"].is_string(), namespaced, "{g}");
        let text = g.to_string();
        for cidr in ["10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"] {
            assert!(text.contains(cidr), "{engine} denies {cidr}: {text}");
        }
        assert!(
            !text.contains("0.0.0.0/0"),
            "{engine} denies nothing public: {text}"
        );
        // YAML: the policy, then the guardrails document.
        let out = run(&["profile", "render", "-f", &p], dir.path());
        let yaml = String::from_utf8_lossy(&out.stdout);
        assert!(yaml.contains(&format!("kind: {kind}")), "{yaml}");
        assert!(yaml.contains("kind: NetworkPolicy"), "{yaml}");
    }
}
