//! `deploy/base/`: every file parses, the kustomization lists what exists,
//! the RBAC grants exactly the calls the operator makes (no wildcard), the
//! Deployment is locked down, and the CRDs are `kubefence crds` output.
//! The files are checked structurally, and rendered with `kubectl kustomize`
//! where kubectl is installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubefence_operator::rbac::{
    CALLS, LEARNED_CALLS, QUARANTINE_CALLS, QUARANTINE_ENGINE_CALLS, QUARANTINE_ENGINE_VERBS, Scope,
};
use serde_json::Value;

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(base().join(file)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn one(file: &str) -> Value {
    let mut d = docs(file);
    assert_eq!(d.len(), 1, "{file}: one document");
    d.remove(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn kustomization_resources() -> Vec<String> {
    strings(&one("kustomization.yaml")["resources"])
}

#[test]
fn every_file_parses_and_the_kustomization_lists_them() {
    let resources = kustomization_resources();
    assert!(!resources.is_empty());
    for r in &resources {
        assert!(base().join(r).is_file(), "kustomization lists missing {r}");
        for d in docs(r) {
            assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{r}");
        }
    }
    // Every YAML file is listed, except crds.yaml while it is empty.
    for entry in std::fs::read_dir(base()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "kustomization.yaml" || !name.ends_with(".yaml") {
            continue;
        }
        let empty = docs(&name).is_empty();
        assert_eq!(
            resources.contains(&name),
            !empty,
            "{name}: listed in kustomization.yaml exactly when it has objects"
        );
    }
}

/// (group, resource, verb) granted by the rules of one Role or ClusterRole.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !strings(&rule[field]).iter().any(|s| s.contains('*')),
                "wildcard in {field}: {rule}"
            );
        }
        assert!(rule.get("nonResourceURLs").is_none());
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn calls(scope: Scope) -> BTreeSet<(String, String, String)> {
    CALLS
        .iter()
        .filter(|c| c.0 == scope)
        .map(|(_, g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn deploy_rbac_covers_every_call_and_nothing_more() {
    let cluster_role = one("clusterrole.yaml");
    assert_eq!(cluster_role["kind"], "ClusterRole");
    assert_eq!(grants(&cluster_role), calls(Scope::Cluster));
    let lease_role = one("lease-role.yaml");
    assert_eq!(lease_role["kind"], "Role");
    assert_eq!(lease_role["metadata"]["namespace"], "kubefence-system");
    assert_eq!(grants(&lease_role), calls(Scope::OwnNamespace));
    // Both bound to the operator's service account.
    let sa = one("serviceaccount.yaml");
    for (file, role) in [
        ("clusterrolebinding.yaml", &cluster_role),
        ("lease-rolebinding.yaml", &lease_role),
    ] {
        let b = one(file);
        assert_eq!(b["roleRef"]["name"], role["metadata"]["name"], "{file}");
        assert_eq!(b["roleRef"]["kind"], role["kind"], "{file}");
        assert_eq!(b["subjects"][0]["name"], sa["metadata"]["name"], "{file}");
    }
}

fn quarantine_component(file: &str) -> Value {
    let path = base().join("../components/quarantine").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut d: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(d.len(), 1, "{file}: one document");
    d.remove(0)
}

/// Whoever runs `kubefence quarantine`/`release` online holds the
/// user-facing writer ClusterRole (the operator holds it too): on every
/// resource the quarantine operations touch it grants exactly the calls
/// they make (`rbac::QUARANTINE_CALLS`), no fewer (a 403 halfway through a
/// quarantine) and no more. The pods and workload lists of the collateral
/// check and `also_selects` were once missing here.
#[test]
fn the_quarantine_writer_role_grants_exactly_what_quarantine_and_release_call() {
    let role = quarantine_component("clusterrole-writer.yaml");
    assert_eq!(role["kind"], "ClusterRole");
    let calls: BTreeSet<(String, String, String)> = QUARANTINE_CALLS
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let touched: BTreeSet<(String, String)> = calls
        .iter()
        .map(|(g, r, _)| (g.clone(), r.clone()))
        .collect();
    let granted: BTreeSet<(String, String, String)> = grants(&role)
        .into_iter()
        .filter(|(g, r, _)| touched.contains(&(g.clone(), r.clone())))
        .collect();
    let missing: Vec<_> = calls.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&calls).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "clusterrole-writer.yaml: missing {missing:?}, never called {extra:?}"
    );
    for (dir, group, resource) in QUARANTINE_ENGINE_CALLS {
        let role = quarantine_component(&format!("{dir}/clusterrole.yaml"));
        let expected: BTreeSet<(String, String, String)> = QUARANTINE_ENGINE_VERBS
            .iter()
            .map(|v| (group.to_string(), resource.to_string(), v.to_string()))
            .collect();
        assert_eq!(grants(&role), expected, "{dir}/clusterrole.yaml");
    }
}

/// The learned controller's opt-in role grants exactly what it calls
/// beyond the base role (`rbac::LEARNED_CALLS`), its binding names it, and
/// together with the base role it covers every call the controller makes.
#[test]
fn the_learned_role_grants_exactly_what_the_learned_controller_calls() {
    let dir = base().join("../components/learned");
    let read = |file: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut d: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        assert_eq!(d.len(), 1, "{file}: one document");
        d.remove(0)
    };
    let role = read("clusterrole.yaml");
    assert_eq!(role["kind"], "ClusterRole");
    let calls: BTreeSet<(String, String, String)> = LEARNED_CALLS
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let granted = grants(&role);
    let missing: Vec<_> = calls.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&calls).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "components/learned/clusterrole.yaml: missing {missing:?}, never called {extra:?}"
    );
    let binding = read("clusterrolebinding.yaml");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let listed = strings(&read("kustomization.yaml")["resources"]);
    assert_eq!(listed, vec!["clusterrole.yaml", "clusterrolebinding.yaml"]);
    // Its NetworkPolicy writes come from the base role.
    let base = calls_of_base();
    for verb in ["list", "watch", "create", "patch", "delete"] {
        let call = (
            "networking.k8s.io".to_string(),
            "networkpolicies".to_string(),
            verb.to_string(),
        );
        assert!(base.contains(&call), "base role lacks {call:?}");
    }
}

fn calls_of_base() -> BTreeSet<(String, String, String)> {
    calls(Scope::Cluster)
}

#[test]
fn the_deployment_is_locked_down() {
    let d = one("deployment.yaml");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        one("serviceaccount.yaml")["metadata"]["name"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(strings(&c["args"])[0], "operator");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for k in ["cpu", "memory"] {
        assert!(c["resources"]["requests"][k].is_string(), "requests.{k}");
        assert!(c["resources"]["limits"][k].is_string(), "limits.{k}");
    }
    assert!(
        d["spec"]["replicas"].as_u64().unwrap() >= 2,
        "two replicas: leader election"
    );
}

#[test]
fn crds_yaml_is_the_output_of_kubefence_crds() {
    let expected = kubefence_k8s::crd::crds_yaml(&kubefence_k8s::crd::all_crds()).unwrap();
    let committed = std::fs::read_to_string(base().join("crds.yaml")).unwrap();
    assert_eq!(
        committed, expected,
        "deploy/base/crds.yaml is stale: run `cargo run -- crds > deploy/base/crds.yaml`"
    );
}

/// `kubectl kustomize deploy/` renders the operator (when kubectl is on
/// PATH; skipped otherwise, the structural tests above still run).
#[test]
fn kubectl_kustomize_renders_deploy() {
    let deploy = base().join("..");
    let output = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&deploy)
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("skipped: kubectl is not installed");
            return;
        }
    };
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let kinds: BTreeSet<String> = rendered
        .iter()
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect();
    let expected: BTreeSet<String> = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert!(expected.is_subset(&kinds), "{kinds:?}");
    // Everything namespaced lands in kubefence-system.
    for d in &rendered {
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            assert_eq!(ns, "kubefence-system", "{}", d["metadata"]["name"]);
        }
    }
}

/// Opt-in components (`deploy/components/*`) bind their roles to the
/// operator's service account of the base, so adding one grants the
/// running operator those rights.
#[test]
fn components_bind_to_the_base_service_account() {
    let sa = one("serviceaccount.yaml");
    let components = base().join("../components");
    let Ok(entries) = std::fs::read_dir(&components) else {
        return;
    };
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    while let Some(path) = dirs.pop() {
        if path.is_dir() {
            dirs.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    let mut bindings = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for d in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            if !matches!(
                d["kind"].as_str(),
                Some("ClusterRoleBinding" | "RoleBinding")
            ) {
                continue;
            }
            for s in d["subjects"].as_array().unwrap() {
                if s["kind"] == "ServiceAccount" {
                    bindings += 1;
                    assert_eq!(s["name"], sa["metadata"]["name"], "{}", file.display());
                    assert_eq!(
                        s["namespace"],
                        sa["metadata"]["namespace"],
                        "{}",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(bindings > 0, "components found but no binding to check");
}
