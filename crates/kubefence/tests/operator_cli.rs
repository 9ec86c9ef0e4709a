//! `kubefence operator` and `kubefence crds` through the real binary: what
//! can be checked without a cluster (config errors come before any API
//! call; the CRD output is the committed deploy file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KUBEFENCE_LOG")
        // No cluster: nothing here may reach one.
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run kubefence")
}

#[test]
fn crds_prints_the_committed_crds() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["crds"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base/crds.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn operator_refuses_a_bad_config_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(&["operator", "--config", "missing.yaml"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.yaml"));

    std::fs::write(dir.path().join("typo.yaml"), "clusterDomian: x\n").unwrap();
    let typo = run(&["operator", "--config", "typo.yaml"], dir.path());
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("clusterDomian"));

    std::fs::write(
        dir.path().join("selector.yaml"),
        "ingressControllers:\n  - namespaceSelector:\n      matchExpressions: [{key: a, operator: Near}]\n",
    )
    .unwrap();
    let bad = run(&["run-operator", "--config", "selector.yaml"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("config") && stderr.contains("ingressControllers[0]"),
        "{stderr}"
    );
}

#[test]
fn operator_without_a_cluster_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "operator",
            "--no-leader-election",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("kubefence: operator"));
}
