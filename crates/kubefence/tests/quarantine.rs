//! `kubefence quarantine --offline` on the Online Boutique demo, checked
//! with the semantics engine and with network-config-analyzer (nca): the
//! quarantine policy is added to the manifests, both analyse the result,
//! and what stays connected to the target must be exactly the remaining
//! paths the plan reports (nothing, when no other policy allows anything).
//!
//! nca is required (`scripts/install-nca.sh`); `KUBEFENCE_SKIP_NCA=1` skips
//! the nca half with a notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze};
use kubefence_k8s::load::{self, LoadOptions, Source};
use kubefence_testkit::compare;
use kubefence_testkit::nca::{self, NcaEndpoint};
use serde_json::Value;

const TARGET: &str = "default/Deployment/cartservice";

fn boutique() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/online-boutique")
}

fn manifests() -> PathBuf {
    boutique().join("kubernetes-manifests.yaml")
}

fn kubefence(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubefence"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs `quarantine deploy/cartservice --offline` on `inputs`; returns the
/// exit code and the plan (`-o yaml`, read back).
fn offline_plan(inputs: &[&Path], engine: &str) -> (i32, Value) {
    let mut args = vec![
        "quarantine",
        "deploy/cartservice",
        "--offline",
        "--reason",
        "test",
        "--engine",
        engine,
        "-o",
        "yaml",
    ];
    let paths: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    for p in &paths {
        args.extend(["-f", p.as_str()]);
    }
    let (code, stdout, stderr) = kubefence(&args);
    assert!(code == 0 || code == 1, "exit {code}: {stderr}");
    (code, serde_saphyr::from_str(&stdout).unwrap())
}

/// Every policy document under `inputs` (files or directories), one
/// multi-document YAML text, plus `extra`.
fn policies_yaml(inputs: &[&Path], extra: &[Value]) -> String {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p.join("policies"))
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            entries.sort();
            files.extend(entries);
        }
    }
    let mut out = String::new();
    for f in files {
        out.push_str("---\n");
        out.push_str(&std::fs::read_to_string(f).unwrap());
        out.push('\n');
    }
    for v in extra {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string(v).unwrap());
        out.push('\n');
    }
    out
}

/// The engine's connectivity of the manifests plus `policies`.
fn engine(policies: &str) -> Connectivity {
    let opts = LoadOptions::default();
    let base = load::part(&[Source::Path(manifests())], &opts);
    let extra = load::part_of_str(policies, "policies.yaml", &opts);
    let merged = load::join(vec![base, extra], &opts);
    assert!(!merged.has_errors(), "{:?}", merged.errors);
    analyze(&merged.cluster, &AnalyzeOptions::default())
}

/// (direction, peer) pairs still connected to the target: a workload id, or
/// `external`.
type Peers = BTreeSet<(String, String)>;

fn engine_peers(conn: &Connectivity) -> Peers {
    let t = conn.endpoint_index(TARGET).unwrap();
    let name = |i: usize| {
        let e = &conn.endpoints[i];
        if e.is_external() {
            "external".to_string()
        } else {
            e.id.clone()
        }
    };
    conn.connections()
        .filter_map(|c| {
            if c.to == t {
                Some(("ingress".to_string(), name(c.from)))
            } else if c.from == t {
                Some(("egress".to_string(), name(c.to)))
            } else {
                None
            }
        })
        .collect()
}

/// The peers the plan names in its remaining paths.
fn plan_peers(plan: &Value) -> Peers {
    let mut out = Peers::new();
    for p in plan["remainingPaths"].as_array().unwrap() {
        for e in p["endpoints"].as_array().unwrap() {
            let id = e.as_str().unwrap().split(' ').next().unwrap();
            let peer = if id.contains('/') && id.split('/').count() == 3 {
                id.to_string()
            } else {
                "external".to_string()
            };
            out.insert((p["direction"].as_str().unwrap().to_string(), peer));
        }
    }
    out
}

/// nca's view: it agrees with the engine pair by pair, and these are the
/// peers it still connects to the target. `None` when nca is skipped.
fn nca_peers(name: &str, policies: &str, ours: &Connectivity) -> Option<Peers> {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: the nca half of {name} (KUBEFENCE_SKIP_NCA=1)");
        return None;
    }
    let nca_bin = nca::find_nca().unwrap_or_else(|e| panic!("{e}"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("quarantine-nca")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let policies_file = dir.join("policies.yaml");
    std::fs::write(&policies_file, policies).unwrap();
    let text = nca::run_connectivity(&nca_bin, &policies_file, &manifests()).unwrap();
    let edges = nca::parse_output(&text).unwrap();
    let mismatches = compare::compare(ours, &edges);
    assert!(
        mismatches.is_empty(),
        "{name}: kubefence and nca disagree (case in {}):\n{}",
        dir.display(),
        compare::report(&mismatches, 20)
    );
    let peer = |e: &NcaEndpoint| match e {
        NcaEndpoint::Workload(id) => id.clone(),
        NcaEndpoint::Addresses(_) => "external".to_string(),
    };
    let target = NcaEndpoint::Workload(TARGET.to_string());
    Some(
        edges
            .iter()
            .filter(|e| !e.conns.is_empty())
            .filter_map(|e| {
                if e.to == target {
                    Some(("ingress".to_string(), peer(&e.from)))
                } else if e.from == target {
                    Some(("egress".to_string(), peer(&e.to)))
                } else {
                    None
                }
            })
            .collect(),
    )
}

#[test]
fn quarantine_alone_leaves_the_target_no_connectivity_either_way() {
    let m = manifests();
    let (code, plan) = offline_plan(&[&m], "networkpolicy");
    assert_eq!(code, 0);
    assert_eq!(plan["effective"], true);
    assert_eq!(plan["remainingPaths"], serde_json::json!([]));
    assert_eq!(plan["object"]["kind"], "NetworkPolicy");
    assert_eq!(
        plan["object"]["metadata"]["name"],
        "kf-quarantine-deployment-cartservice"
    );

    let before = engine("");
    assert!(!engine_peers(&before).is_empty(), "not vacuous");
    let policies = policies_yaml(&[], &[plan["object"].clone()]);
    let after = engine(&policies);
    assert_eq!(engine_peers(&after), Peers::new());
    if let Some(peers) = nca_peers("alone", &policies, &after) {
        assert_eq!(peers, Peers::new(), "nca: the target is cut off");
    }
}

#[test]
fn an_extra_allow_policy_leaves_a_reported_path_and_is_not_effective() {
    let dir = tempfile::tempdir().unwrap();
    let allow = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "cart-from-frontend", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "cartservice"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}],
                         "ports": [{"port": 7070, "protocol": "TCP"}]}]
        }
    });
    let allow_file = dir.path().join("allow.yaml");
    std::fs::write(&allow_file, serde_json::to_string(&allow).unwrap()).unwrap();
    let m = manifests();
    let (code, plan) = offline_plan(&[&m, &allow_file], "networkpolicy");
    assert_eq!(code, 1, "not effective: exit 1");
    assert_eq!(plan["effective"], false);
    let paths = plan["remainingPaths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(paths[0]["direction"], "ingress");
    assert_eq!(paths[0]["policy"], "default/cart-from-frontend");
    assert_eq!(paths[0]["rule"], "spec.ingress[0]");
    assert_eq!(paths[0]["peer"], "podSelector app=frontend");
    assert_eq!(paths[0]["ports"], "TCP/7070");
    assert_eq!(
        paths[0]["endpoints"],
        serde_json::json!(["default/Deployment/frontend TCP/7070"])
    );

    let policies = policies_yaml(&[], &[allow, plan["object"].clone()]);
    let after = engine(&policies);
    let expected: Peers = [(
        "ingress".to_string(),
        "default/Deployment/frontend".to_string(),
    )]
    .into_iter()
    .collect();
    assert_eq!(engine_peers(&after), expected);
    assert_eq!(plan_peers(&plan), expected);
    if let Some(peers) = nca_peers("extra-allow", &policies, &after) {
        assert_eq!(peers, expected, "nca sees the same remaining path");
    }

    // Cilium's deny rules override the allow.
    let (code, cilium) = offline_plan(&[&m, &allow_file], "cilium");
    assert_eq!(code, 0);
    assert_eq!(cilium["effective"], true);
    assert_eq!(cilium["remainingPaths"][0]["overridden"], true);
}

#[test]
fn online_boutique_upstream_policies_leave_paths_that_deny_engines_override() {
    let b = boutique();
    let (code, np) = offline_plan(&[&b], "networkpolicy");
    assert_eq!(code, 1);
    assert_eq!(np["effective"], false);
    let policies = policies_yaml(&[&b], &[np["object"].clone()]);
    let after = engine(&policies);
    let remaining = engine_peers(&after);
    assert!(
        remaining.contains(&("ingress".into(), "default/Deployment/frontend".into()))
            && remaining.contains(&(
                "ingress".into(),
                "default/Deployment/checkoutservice".into()
            ))
            && remaining.contains(&("egress".into(), "default/Deployment/redis-cart".into()))
            && remaining.contains(&("egress".into(), "external".into())),
        "{remaining:?}"
    );
    assert_eq!(
        plan_peers(&np),
        remaining,
        "the plan names every remaining peer"
    );
    if let Some(peers) = nca_peers("online-boutique", &policies, &after) {
        assert_eq!(peers, remaining, "nca agrees on what remains");
    }

    for engine in ["cilium", "adminnetworkpolicy", "clusternetworkpolicy"] {
        let (code, p) = offline_plan(&[&b], engine);
        assert_eq!(code, 0, "{engine}");
        if engine == "clusternetworkpolicy" {
            assert_eq!(p["object"]["kind"], "ClusterNetworkPolicy");
            assert_eq!(
                p["object"]["apiVersion"],
                "policy.networking.k8s.io/v1alpha2"
            );
            assert_eq!(p["object"]["spec"]["tier"], "Admin");
        }
        assert_eq!(p["effective"], true, "{engine}");
        let paths = p["remainingPaths"].as_array().unwrap();
        assert_eq!(paths.len(), 2, "{engine}");
        assert!(paths.iter().all(|x| x["overridden"] == true), "{engine}");
    }
}

#[test]
fn refusals_name_the_target_and_exit_2() {
    // Protected: refused before any file is read or any request is made
    // (no cluster exists here; the refusal comes first).
    let (code, _, stderr) = kubefence(&[
        "quarantine",
        "ds/kube-proxy",
        "-n",
        "kube-system",
        "--reason",
        "x",
        "--confirm",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("DaemonSet/kube-system/kube-proxy"),
        "{stderr}"
    );
    assert!(stderr.contains("protected"), "{stderr}");
    let (code, _, stderr) = kubefence(&["release", "ds/kube-proxy", "-n", "kube-system"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("protected"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: shop\nspec:\n  containers:\n  - name: c\n    image: x\n",
    )
    .unwrap();
    let p = pod.display().to_string();
    let (code, _, stderr) = kubefence(&[
        "quarantine",
        "pod/bare",
        "-n",
        "shop",
        "--offline",
        "-f",
        &p,
        "--reason",
        "x",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Pod/shop/bare: its selector is empty"),
        "{stderr}"
    );

    let (code, _, stderr) = kubefence(&[
        "quarantine",
        "deploy/nope",
        "-n",
        "shop",
        "--offline",
        "-f",
        &p,
        "--reason",
        "x",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Deployment/shop/nope: not found"),
        "{stderr}"
    );
}

#[test]
fn the_text_plan_says_what_stays_open() {
    let b = boutique().display().to_string();
    let (code, stdout, _) = kubefence(&[
        "quarantine",
        "deploy/cartservice",
        "--offline",
        "-f",
        &b,
        "--reason",
        "x",
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("effective: NO, 2 path(s) stay open"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "ingress from podSelector app=frontend or podSelector app=checkoutservice on TCP/7070 (policy default/cartservice, spec.ingress[0])"
        ),
        "{stdout}"
    );
}

#[test]
fn the_plan_names_other_workloads_the_selector_matches() {
    // The guestbook's redis leader selects app=redis, which the follower's
    // pods carry too: quarantining the leader isolates the follower as well.
    let guestbook = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/guestbook/guestbook.yaml")
        .display()
        .to_string();
    let base = [
        "quarantine",
        "deploy/redis-leader",
        "--offline",
        "-f",
        guestbook.as_str(),
        "--reason",
        "x",
    ];
    let (code, stdout, stderr) = kubefence(&base);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "also:      the selector matches the pods of default/Deployment/redis-follower too"
        ),
        "{stdout}"
    );
    let (_, stdout, _) = kubefence(&[&base[..], &["-o", "yaml"]].concat());
    let plan: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(
        plan["alsoSelects"],
        serde_json::json!(["default/Deployment/redis-follower"])
    );
    // The frontend's selector matches only its own pods.
    let (_, stdout, _) = kubefence(&[
        "quarantine",
        "deploy/frontend",
        "--offline",
        "-f",
        guestbook.as_str(),
        "--reason",
        "x",
        "-o",
        "yaml",
    ]);
    let plan: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(plan["alsoSelects"], serde_json::json!([]));
}
