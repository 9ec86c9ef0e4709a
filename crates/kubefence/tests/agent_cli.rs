//! `kubefence agent` through the real binary: what can be checked without a
//! cluster. A host that cannot capture is refused at once, before any API
//! call, with a message that names the fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("KUBEFENCE_LOG")
        .env_remove("NODE_NAME")
        // No cluster: nothing here may reach one.
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST");
    c
}

fn run(args: &[&str], dir: &Path) -> Output {
    command(dir).args(args).output().expect("run kubefence")
}

#[test]
fn agent_help_teaches_what_it_captures_writes_and_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["agent", "--help"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "SYN_SENT",
        "spec.nodeName",
        "NetworkNeighborhood",
        "learning",
        "completed",
        "CAP_BPF",
        "--check",
        "deploy/components/agent",
        "--cluster-cidr",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn agent_without_a_node_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["agent"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node"));
}

#[test]
fn agent_refuses_a_cgroup_that_is_not_cgroup_v2_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(
        &[
            "agent",
            "--node",
            "n1",
            "--cgroup",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it must not hang"
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Either the build or the host lacks something; each is said. Never a
    // kubeconfig error: the capture is checked first.
    assert!(
        stderr.contains("is not a cgroup v2 directory")
            || stderr.contains("built without its eBPF program")
            || stderr.contains("older than 5.8")
            || stderr.contains("tracefs is not mounted"),
        "{stderr}"
    );
    assert!(!stderr.contains("kubeconfig"), "{stderr}");
    assert!(stderr.contains("--mode conntrack"), "{stderr}");
}

#[test]
fn agent_check_says_whether_this_host_can_capture() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["agent", "--check", "--cgroup", dir.path().to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run on this host"), "{stderr}");
    // It names the modes that need no BPF.
    assert!(
        stderr.contains("--mode conntrack") && stderr.contains("--mode hubble"),
        "{stderr}"
    );
}

#[test]
fn agent_hubble_mode_checks_the_relay_address_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["agent", "--mode", "hubble", "--hubble-relay", "not a url"],
        dir.path(),
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--hubble-relay"), "{err}");
    assert!(!err.contains("kubeconfig"), "no API call was tried: {err}");

    let out = run(&["agent", "--mode", "hubble", "--check"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hubble-relay.kube-system.svc"));

    let help = String::from_utf8(run(&["agent", "--help"], dir.path()).stdout).unwrap();
    for needle in ["--mode", "GetFlows", "--hubble-relay", "--hubble-node"] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}
