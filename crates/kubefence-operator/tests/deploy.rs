//! `deploy/base/`: every file parses, the kustomization lists what exists,
//! the RBAC grants exactly the calls the operator makes (no wildcard), the
//! Deployment is locked down, and the CRDs are `kubefence crds` output.
//! The files are checked structurally, and rendered with `kubectl kustomize`
//! where kubectl is installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubefence_operator::rbac::{CALLS, Scope};
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
    calls_where(|s| s == scope)
}

fn calls_where(which: impl Fn(Scope) -> bool) -> BTreeSet<(String, String, String)> {
    CALLS
        .iter()
        .filter(|c| which(c.0))
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

/// The learned controller's opt-in component: its binding names its role,
/// and the base role holds the NetworkPolicy calls it makes.
#[test]
fn the_learned_role_grants_exactly_what_the_learned_controller_calls() {
    let dir = base().join("../components/learned");
    let read = |file: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut d: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        assert_eq!(d.len(), 1, "{file}: one document");
        d.remove(0)
    };
    // What the role grants is checked with every other component's
    // (`component_roles_grant_exactly_their_calls`, `rbac::LEARNED`).
    let role = read("clusterrole.yaml");
    assert_eq!(role["kind"], "ClusterRole");
    let binding = read("clusterrolebinding.yaml");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let listed = strings(&read("kustomization.yaml")["resources"]);
    assert_eq!(listed, vec!["clusterrole.yaml", "clusterrolebinding.yaml"]);
    // Its NetworkPolicy writes come from the base role.
    let base = calls(Scope::Cluster);
    for verb in ["list", "watch", "create", "patch", "delete"] {
        let call = (
            "networking.k8s.io".to_string(),
            "networkpolicies".to_string(),
            verb.to_string(),
        );
        assert!(base.contains(&call), "base role lacks {call:?}");
    }
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
        "NetworkPolicy",
        "PodDisruptionBudget",
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
        // A component that runs its own pods (the agent) defines its own
        // ServiceAccount beside its binding; that one is allowed too.
        let own: Vec<Value> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .flat_map(|p| {
                serde_saphyr::from_multiple::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap()
            })
            .filter(|o| o["kind"] == "ServiceAccount")
            .map(|o| o["metadata"]["name"].clone())
            .collect();
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
                    if own.contains(&s["name"]) {
                        assert_eq!(
                            s["namespace"],
                            sa["metadata"]["namespace"],
                            "{}",
                            file.display()
                        );
                        continue;
                    }
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

/// Every component directory under `deploy/components/` (relative path,
/// with `/`), and the objects of the resources its kustomization lists.
fn components() -> Vec<(String, Vec<Value>)> {
    let root = base().join("../components");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        let kustomization = dir.join("kustomization.yaml");
        if !kustomization.is_file() {
            continue;
        }
        let k: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&kustomization).unwrap()).unwrap();
        assert_eq!(k["kind"], "Component", "{}", kustomization.display());
        let mut objects = Vec::new();
        for r in strings(&k["resources"]) {
            let text = std::fs::read_to_string(dir.join(&r))
                .unwrap_or_else(|e| panic!("{}: {r}: {e}", dir.display()));
            objects.extend(
                serde_saphyr::from_multiple::<Value>(&text)
                    .unwrap()
                    .into_iter()
                    .filter(|v| !v.is_null()),
            );
        }
        let name = dir
            .strip_prefix(&root)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push((name, objects));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Issue 10 defect 11: each opt-in component grants the operator exactly
/// the calls `rbac::CALLS` lists for it (no verb the code never uses, no
/// wildcard), and every component the table names exists.
#[test]
fn component_roles_grant_exactly_their_calls() {
    let sa = one("serviceaccount.yaml");
    let components = components();
    assert!(!components.is_empty(), "no component found");
    for (name, objects) in &components {
        let bound: Vec<&str> =
            objects
                .iter()
                .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
                .filter(|b| {
                    b["subjects"].as_array().into_iter().flatten().any(|s| {
                        s["kind"] == "ServiceAccount" && s["name"] == sa["metadata"]["name"]
                    })
                })
                .filter_map(|b| b["roleRef"]["name"].as_str())
                .collect();
        let mut granted = BTreeSet::new();
        for role in bound {
            let role = objects
                .iter()
                .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == role)
                .unwrap_or_else(|| panic!("{name}: binds {role}, which it does not define"));
            granted.extend(grants(role));
        }
        assert_eq!(
            granted,
            calls_where(|s| matches!(s, Scope::Component(dir) if dir == name)),
            "deploy/components/{name}: the operator's grants differ from rbac::CALLS"
        );
    }
    let names: BTreeSet<&str> = components.iter().map(|(n, _)| n.as_str()).collect();
    for (scope, ..) in CALLS {
        if let Scope::Component(dir) = scope {
            assert!(
                names.contains(dir),
                "rbac::CALLS names deploy/components/{dir}, which is not there"
            );
        }
    }
    // The calls only a component grants are not in the base role: a
    // default install is refused them (Forbidden), as documented.
    let base = calls(Scope::Cluster);
    let opt_in = calls_where(|s| matches!(s, Scope::Component(_)));
    assert!(
        opt_in.iter().any(|c| !base.contains(c)),
        "the components grant nothing the base does not"
    );
}

/// The operator's pod labels, its admin port and the Deployment's
/// selector, as `deployment.yaml` declares them.
struct OperatorPods {
    labels: Value,
    selector: Value,
    admin_port: u64,
    replicas: u64,
}

fn operator_pods() -> OperatorPods {
    let d = one("deployment.yaml");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let admin = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an admin port");
    OperatorPods {
        labels: d["spec"]["template"]["metadata"]["labels"].clone(),
        selector: d["spec"]["selector"].clone(),
        admin_port: admin["containerPort"].as_u64().unwrap(),
        replicas: d["spec"]["replicas"].as_u64().unwrap(),
    }
}

/// Whether a `matchLabels`-only selector selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "checked as matchLabels only: {selector}"
    );
    let wanted = selector["matchLabels"].as_object().unwrap();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v)
}

/// Issue 10 defect 12: a PodDisruptionBudget and anti-affinity that select
/// the operator's own pods, and a NetworkPolicy that does too, in its
/// namespace, on the Deployment's admin port.
#[test]
fn the_operator_has_a_disruption_budget_anti_affinity_and_its_own_network_policy() {
    let pods = operator_pods();
    let namespace = one("namespace.yaml")["metadata"]["name"].clone();
    let pdb = one("poddisruptionbudget.yaml");
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(pdb["metadata"]["namespace"], namespace);
    assert_eq!(pdb["spec"]["selector"], pods.selector);
    let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!(
        min >= 1 && min < pods.replicas,
        "minAvailable {min} of {} replicas: one may go, one stays",
        pods.replicas
    );
    let d = one("deployment.yaml");
    let terms = d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .expect("preferred anti-affinity (required would strand a replica on one node)");
    assert!(terms.iter().any(|t| {
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            && selects(&t["podAffinityTerm"]["labelSelector"], &pods.labels)
    }));
    let np = one("networkpolicy.yaml");
    assert_eq!(np["metadata"]["namespace"], namespace);
    assert!(
        selects(&np["spec"]["podSelector"], &pods.labels),
        "the NetworkPolicy selects the operator's pods"
    );
    // The operator never treats it as one of its own policies.
    assert!(np["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null());
    // The Service scrapes the port the policy admits.
    let service = one("service-metrics.yaml");
    assert!(selects(
        &serde_json::json!({"matchLabels": service["spec"]["selector"]}),
        &pods.labels
    ));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "admin");
    assert_eq!(pods.admin_port, 8080);
}

/// Issue 10 defect 12, by kubefence's own semantics engine on the
/// operator's NetworkPolicy in a cluster with the DNS, another workload and
/// a Prometheus: the operator may open only DNS to kube-dns and TCP
/// 443/6443 to addresses outside the cluster (the API server), and only the
/// Deployment's admin port is open to it, from anywhere.
#[test]
fn the_operators_network_policy_allows_only_dns_the_api_server_and_the_admin_port() {
    use kubefence_core::engine::{AnalyzeOptions, analyze};
    use kubefence_core::{ConnSet, Protocol};
    let base_text = |f: &str| std::fs::read_to_string(base().join(f)).unwrap();
    let others = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      containers:
        - name: coredns
          image: coredns
          ports: [{containerPort: 53, protocol: UDP}, {containerPort: 53, protocol: TCP}, {containerPort: 9153}]
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web, ports: [{containerPort: 443}, {containerPort: 6443}, {containerPort: 53, protocol: UDP}]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: prometheus, namespace: monitoring}
spec:
  selector: {matchLabels: {app: prometheus}}
  template:
    metadata: {labels: {app: prometheus}}
    spec:
      containers: [{name: prometheus, image: prometheus}]
"#;
    let text = [
        base_text("namespace.yaml"),
        base_text("deployment.yaml"),
        base_text("networkpolicy.yaml"),
        others.to_string(),
    ]
    .join("\n---\n");
    let loaded = kubefence_k8s::load::load_str(&text, "deploy", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    let c = analyze(&loaded.cluster, &AnalyzeOptions::default());
    let id = |s: &str| {
        c.endpoint_index(s)
            .unwrap_or_else(|| panic!("no endpoint {s}: {:?}", c.endpoints))
    };
    let operator = id("kubefence-system/Deployment/kubefence-operator");
    let dns = id("kube-system/Deployment/coredns");
    let admin = u16::try_from(operator_pods().admin_port).unwrap();
    let api_server = ConnSet::port(Protocol::Tcp, 443).union(&ConnSet::port(Protocol::Tcp, 6443));
    let dns_ports = ConnSet::port(Protocol::Udp, 53).union(&ConnSet::port(Protocol::Tcp, 53));
    let mut external = 0;
    for (i, e) in c.endpoints.iter().enumerate() {
        if i == operator {
            continue;
        }
        let out = c.allowed(operator, i);
        if i == dns {
            assert_eq!(out, dns_ports, "operator -> DNS");
        } else if e.is_external() {
            external += 1;
            assert_eq!(out, api_server, "operator -> {}", e.id);
        } else {
            assert!(out.is_empty(), "operator -> {}: {out:?}", e.id);
        }
        // Into the operator: the admin port, from every endpoint.
        assert_eq!(
            c.allowed(i, operator),
            ConnSet::port(Protocol::Tcp, admin),
            "{} -> operator",
            e.id
        );
    }
    // IPv4 and IPv6 both reach the API server ports.
    assert_eq!(external, 2, "{:?}", c.endpoints);
}

/// Issue 10 defect 11: `deploy/base` with every component, as kustomize
/// renders it (when kubectl is installed): the roles bound to the
/// operator's ServiceAccount grant exactly the calls of `rbac::CALLS`,
/// cluster-wide (base and components) and in its namespace (the Lease).
#[test]
fn kustomize_with_every_component_grants_exactly_the_calls() {
    // The agent's mode components are alternatives to one another.
    let components: Vec<String> = components()
        .into_iter()
        .map(|(n, _)| format!("components/{n}"))
        .filter(|n| !n.starts_with("components/agent-"))
        .collect();
    let Some(rendered) = kustomize_base_with(&components) else {
        return;
    };
    let sa = rendered
        .iter()
        .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "kubefence")
        .unwrap();
    let (sa_name, sa_ns) = (&sa["metadata"]["name"], &sa["metadata"]["namespace"]);
    let mut cluster_wide = BTreeSet::new();
    let mut own_namespace = BTreeSet::new();
    for binding in rendered
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        let to_operator = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && &s["name"] == sa_name && &s["namespace"] == sa_ns
            });
        if !to_operator {
            continue;
        }
        let role = rendered
            .iter()
            .find(|o| {
                o["kind"] == binding["roleRef"]["kind"]
                    && o["metadata"]["name"] == binding["roleRef"]["name"]
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} binds a role that is not rendered",
                    binding["metadata"]["name"]
                )
            });
        if binding["kind"] == "RoleBinding" {
            assert_eq!(&binding["metadata"]["namespace"], sa_ns);
            own_namespace.extend(grants(role));
        } else {
            cluster_wide.extend(grants(role));
        }
    }
    assert_eq!(
        cluster_wide,
        calls_where(|s| matches!(s, Scope::Cluster | Scope::Component(_)))
    );
    assert_eq!(own_namespace, calls(Scope::OwnNamespace));
    for kind in ["NetworkPolicy", "PodDisruptionBudget", "Deployment"] {
        let o = rendered
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(&o["metadata"]["namespace"], sa_ns, "{kind}");
    }
}

/// The node agent's component: its own ServiceAccount, bound to a role that
/// grants exactly the agent's calls (`rbac::CALLS`, `Scope::Agent`) and
/// nothing of the operator's; a DaemonSet that runs under it, locked down
/// to the capabilities the eBPF capture needs.
#[test]
fn the_agent_component_grants_exactly_the_agents_calls_and_is_locked_down() {
    let objects = components()
        .into_iter()
        .find(|(n, _)| n == "agent")
        .map(|(_, o)| o)
        .expect("deploy/components/agent");
    let find = |kind: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in deploy/components/agent"))
    };
    let sa = find("ServiceAccount");
    let binding = find("ClusterRoleBinding");
    let role = find("ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subjects = binding["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["name"], sa["metadata"]["name"]);
    assert_eq!(subjects[0]["namespace"], sa["metadata"]["namespace"]);
    assert_ne!(
        sa["metadata"]["name"],
        one("serviceaccount.yaml")["metadata"]["name"]
    );
    assert_eq!(grants(role), calls(Scope::Agent));

    let ds = find("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_ne!(pod["hostPID"], true);
    assert_ne!(pod["hostNetwork"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(strings(&c["args"])[0], "agent");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_ne!(sc["privileged"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"]);
    let mut added = strings(&sc["capabilities"]["add"]);
    added.sort();
    assert_eq!(added, vec!["BPF", "NET_ADMIN", "PERFMON"]);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].as_str().is_some(),
                "resources.{kind}.{resource}"
            );
        }
    }
    // NODE_NAME from the downward API: the agent watches its node's pods.
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName")
    );
    // Every mount of the host is read-only.
    for m in c["volumeMounts"].as_array().unwrap() {
        assert_eq!(m["readOnly"], true, "{m}");
    }
}

/// The Dockerfile builds the image deploy/ runs: the same name, a
/// non-root user equal to the pods' runAsUser and runAsGroup, kubefence as
/// the entrypoint (so the Deployment's and DaemonSet's args are its
/// subcommands), a Rust toolchain no older than the workspace's
/// rust-version, and no .git or build output in the context. (It is not
/// built here: the test machine has no container daemon.)
#[test]
fn the_dockerfile_builds_the_image_deploy_runs() {
    let root = base().join("../..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let deployment = one("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let image = container["image"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("-t {image} .")),
        "the documented tag is {image}"
    );
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[1].contains("distroless") && froms[1].contains("nonroot"),
        "{froms:?}"
    );
    let user = format!(
        "USER {}:{}",
        pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    );
    assert!(dockerfile.lines().any(|l| l == user), "{user}");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/kubefence"]"#));
    assert_eq!(strings(&container["args"])[0], "operator");
    let agent =
        std::fs::read_to_string(root.join("deploy/components/agent/daemonset.yaml")).unwrap();
    assert!(agent.contains(&format!("image: {image}")));
    // The builder's Rust is at least the workspace's rust-version.
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let minimum = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let builder = froms[0]
        .split("rust:")
        .nth(1)
        .and_then(|v| v.split('-').next())
        .unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        parse(builder) >= parse(minimum),
        "rust:{builder} < rust-version {minimum}"
    );
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for path in [".git", "target"] {
        assert!(
            ignore.lines().any(|l| l == path),
            ".dockerignore lacks {path}"
        );
    }
}

/// `deploy/components/reader` grants exactly what the CLI's live-cluster
/// reading calls (`rbac::CALLS`, `Scope::Reader`), read-only, and binds
/// nothing (people bind it to themselves).
#[test]
fn the_reader_role_grants_exactly_the_clis_reads_and_binds_nothing() {
    let dir = base().join("../components/reader");
    let objects: Vec<Value> = ["clusterrole.yaml"]
        .iter()
        .flat_map(|f| {
            serde_saphyr::from_multiple::<Value>(&std::fs::read_to_string(dir.join(f)).unwrap())
                .unwrap()
        })
        .collect();
    let role = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("the reader ClusterRole");
    assert_eq!(grants(role), calls(Scope::Reader));
    for (_, _, _, verb) in CALLS.iter().filter(|(s, ..)| *s == Scope::Reader) {
        assert!(["get", "list"].contains(verb), "{verb}");
    }
    let kustomization: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        strings(&kustomization["resources"]),
        vec!["clusterrole.yaml"]
    );
}

/// `deploy/base` with `components` (paths under deploy/), as `kubectl
/// kustomize` renders it; `None` (said) without kubectl.
fn kustomize_base_with(components: &[String]) -> Option<Vec<Value>> {
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("skipped: kubectl is not installed");
        return None;
    }
    let deploy = base().join("..").canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // kustomize takes only relative paths: from the temporary directory up
    // to the root, then down to deploy/.
    let up = "../".repeat(dir.path().components().count() - 1);
    let rel = |p: &str| {
        format!(
            "{up}{}",
            deploy.join(p).display().to_string().trim_start_matches('/')
        )
    };
    let mut k = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n",
        rel("base")
    );
    for c in components {
        k.push_str(&format!("  - {}\n", rel(c)));
    }
    std::fs::write(dir.path().join("kustomization.yaml"), k).unwrap();
    let output = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {components:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap())
}

/// The agent DaemonSet as base + agent + `mode` render it.
fn agent_with_mode(mode: &str) -> Option<Value> {
    let rendered = kustomize_base_with(&[
        "components/agent".to_string(),
        format!("components/agent-{mode}"),
    ])?;
    rendered.into_iter().find(|o| o["kind"] == "DaemonSet")
}

/// The agent's mode components take the rights the mode needs and no
/// more: conntrack runs in the host's network namespace with NET_ADMIN
/// only; hubble runs as non-root with no capability; neither mounts a host
/// path; both keep the locked-down rest of the DaemonSet.
#[test]
fn the_agent_mode_components_grant_only_what_their_mode_needs() {
    let Some(conntrack) = agent_with_mode("conntrack") else {
        return;
    };
    let Some(hubble) = agent_with_mode("hubble") else {
        return;
    };
    for (mode, ds) in [("conntrack", &conntrack), ("hubble", &hubble)] {
        let pod = &ds["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let args = strings(&c["args"]);
        assert_eq!(args[..3], ["agent", "--mode", mode], "{args:?}");
        let sc = &c["securityContext"];
        assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"]);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert!(pod["volumes"].is_null(), "{mode}: no host path");
        assert!(c["volumeMounts"].is_null(), "{mode}: no host path");
        assert_ne!(pod["hostPID"], true);
    }
    let pod = &conntrack["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let c = &pod["containers"][0];
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["add"]),
        vec!["NET_ADMIN"]
    );
    let args = strings(&c["args"]);
    let admin = args
        .iter()
        .position(|a| a == "--admin-addr")
        .map(|i| args[i + 1].clone())
        .unwrap();
    assert_eq!(
        admin.rsplit(':').next().unwrap(),
        c["ports"][0]["containerPort"].to_string(),
        "the admin port is the one the probes use"
    );

    let pod = &hubble["spec"]["template"]["spec"];
    assert_ne!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    assert!(strings(&c["securityContext"]["capabilities"]["add"]).is_empty());
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_ne!(c["securityContext"]["runAsUser"], 0);
    let args = strings(&c["args"]);
    assert!(
        args.windows(2)
            .any(|w| w == ["--hubble-node", "$(NODE_NAME)"]),
        "{args:?}"
    );
}
