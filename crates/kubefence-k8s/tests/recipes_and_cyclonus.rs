//! Third-party cases with stated outcomes (testdata/third-party/netpol-cases.md):
//! the ahmetb NetworkPolicy recipes (R-cases) and the cyclonus examples
//! (C-cases). Each recipe's YAML is loaded as published; the pods and
//! namespaces of its setup are written here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use kubefence_core::engine::{AnalyzeOptions, analyze, explain};
use kubefence_core::{Cluster, Protocol};
use kubefence_k8s::load::{LoadOptions, join, load_str, part_of_str};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/third-party/"
    ))
    .join(rel)
}

/// `labels:` as a YAML block (or `{}`), indented for metadata.
fn labels_yaml(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return "  labels: {}\n".to_string();
    }
    let entries: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    format!("  labels:\n{entries}")
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{name}\"\n{}---\n",
        labels_yaml(labels)
    )
}

fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ports: &[(u16, &str)]) -> String {
    let ports: String = ports
        .iter()
        .map(|(port, name)| format!("    - containerPort: {port}\n      name: {name}\n"))
        .collect();
    let ports = if ports.is_empty() {
        String::new()
    } else {
        format!("    ports:\n{ports}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"{name}\"\n  namespace: \"{ns}\"\n{}spec:\n  containers:\n  - name: main\n    image: nginx\n{ports}---\n",
        labels_yaml(labels)
    )
}

/// The recipe files plus the setup, loaded as one input.
fn cluster(recipes: &[&str], setup: &str) -> Cluster {
    let opts = LoadOptions::default();
    let mut parts = vec![part_of_str(setup, "setup.yaml", &opts)];
    for recipe in recipes {
        let path = shared(&format!("ahmetb-recipes/{recipe}"));
        let text = std::fs::read_to_string(&path).unwrap();
        parts.push(part_of_str(&text, recipe, &opts));
    }
    let loaded = join(parts, &opts);
    assert!(!loaded.has_errors(), "{recipes:?}: {:?}", loaded.errors);
    loaded.cluster
}

fn allowed(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    explain(
        c,
        from,
        to,
        Some((Protocol::Tcp, port)),
        &AnalyzeOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
    .is_allowed()
}

fn dns() -> String {
    namespace("kube-system", &[])
        + &pod(
            "kube-system",
            "kube-dns",
            &[("k8s-app", "kube-dns")],
            &[(53, "dns")],
        )
}

#[test]
fn r01_web_deny_all() {
    let c = cluster(
        &["01-web-deny-all.yaml"],
        &(pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])),
    );
    assert!(!allowed(&c, "default/Pod/client", "default/Pod/web", 80));
    assert!(
        allowed(&c, "default/Pod/web", "default/Pod/client", 80),
        "egress is untouched"
    );
}

#[test]
fn r02_api_allow() {
    let c = cluster(
        &["02-api-allow.yaml"],
        &(pod(
            "default",
            "apiserver",
            &[("app", "bookstore"), ("role", "api")],
            &[(80, "http")],
        ) + &pod("default", "plain", &[], &[])
            + &pod(
                "default",
                "frontend",
                &[("app", "bookstore"), ("role", "frontend")],
                &[],
            )),
    );
    assert!(!allowed(
        &c,
        "default/Pod/plain",
        "default/Pod/apiserver",
        80
    ));
    assert!(allowed(
        &c,
        "default/Pod/frontend",
        "default/Pod/apiserver",
        80
    ));
}

#[test]
fn r02a_allow_all_overrides_deny_all() {
    let c = cluster(
        &["01-web-deny-all.yaml", "02a-web-allow-all.yaml"],
        &(namespace("other", &[])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])
            + &pod("other", "client", &[], &[])),
    );
    assert!(allowed(&c, "default/Pod/client", "default/Pod/web", 80));
    assert!(allowed(&c, "other/Pod/client", "default/Pod/web", 80));
    assert!(
        allowed(&c, "203.0.113.1", "default/Pod/web", 80),
        "{{}} admits every source"
    );
}

#[test]
fn r03_default_deny_all() {
    let c = cluster(
        &["03-default-deny-all.yaml"],
        &(pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])),
    );
    assert!(!allowed(&c, "default/Pod/client", "default/Pod/web", 80));
    assert!(!allowed(&c, "default/Pod/web", "default/Pod/client", 80));
}

#[test]
fn r04_deny_from_other_namespaces_with_null_match_labels() {
    let c = cluster(
        &["04-deny-from-other-namespaces.yaml"],
        &(namespace("foo", &[])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])
            + &pod("foo", "client", &[], &[])),
    );
    assert!(!allowed(&c, "foo/Pod/client", "default/Pod/web", 80));
    assert!(allowed(&c, "default/Pod/client", "default/Pod/web", 80));
    // `matchLabels: null` selects every pod of the namespace.
    assert!(!allowed(&c, "foo/Pod/client", "default/Pod/client", 80));
}

#[test]
fn r05_web_allow_all_namespaces() {
    let c = cluster(
        &["01-web-deny-all.yaml", "05-web-allow-all-namespaces.yaml"],
        &(namespace("secondary", &[])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("secondary", "client", &[], &[])),
    );
    assert!(allowed(&c, "secondary/Pod/client", "default/Pod/web", 80));
    assert!(
        !allowed(&c, "203.0.113.1", "default/Pod/web", 80),
        "namespaceSelector {{}} is pods only"
    );
}

#[test]
fn r06_web_allow_prod() {
    let c = cluster(
        &["06-web-allow-prod.yaml"],
        &(namespace("dev", &[("purpose", "testing")])
            + &namespace("prod", &[("purpose", "production")])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])
            + &pod("dev", "client", &[], &[])
            + &pod("prod", "client", &[], &[])),
    );
    assert!(!allowed(&c, "dev/Pod/client", "default/Pod/web", 80));
    assert!(allowed(&c, "prod/Pod/client", "default/Pod/web", 80));
    assert!(!allowed(&c, "default/Pod/client", "default/Pod/web", 80));
}

#[test]
fn r07_namespace_and_pod_selector_in_one_peer() {
    let c = cluster(
        &["07-web-allow-all-ns-monitoring.yaml"],
        &(namespace("other", &[("team", "operations")])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "plain", &[], &[])
            + &pod("default", "monitor", &[("type", "monitoring")], &[])
            + &pod("other", "plain", &[], &[])
            + &pod("other", "monitor", &[("type", "monitoring")], &[])),
    );
    assert!(!allowed(&c, "default/Pod/plain", "default/Pod/web", 80));
    assert!(!allowed(&c, "default/Pod/monitor", "default/Pod/web", 80));
    assert!(!allowed(&c, "other/Pod/plain", "default/Pod/web", 80));
    assert!(allowed(&c, "other/Pod/monitor", "default/Pod/web", 80));
}

#[test]
fn r08_web_allow_external() {
    let c = cluster(
        &["01-web-deny-all.yaml", "08-web-allow-external.yaml"],
        &(pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])),
    );
    assert!(allowed(&c, "198.51.100.7", "default/Pod/web", 80));
    assert!(allowed(&c, "default/Pod/client", "default/Pod/web", 80));
}

#[test]
fn r09_policy_uses_pod_ports_not_service_ports() {
    let c = cluster(
        &["09-api-allow-5000.yaml"],
        &(pod(
            "default",
            "apiserver",
            &[("app", "apiserver")],
            &[(8000, "api"), (5000, "metrics")],
        ) + &pod("default", "plain", &[], &[])
            + &pod("default", "monitoring", &[("role", "monitoring")], &[])),
    );
    assert!(!allowed(
        &c,
        "default/Pod/plain",
        "default/Pod/apiserver",
        8000
    ));
    assert!(!allowed(
        &c,
        "default/Pod/plain",
        "default/Pod/apiserver",
        5000
    ));
    assert!(allowed(
        &c,
        "default/Pod/monitoring",
        "default/Pod/apiserver",
        5000
    ));
    assert!(!allowed(
        &c,
        "default/Pod/monitoring",
        "default/Pod/apiserver",
        8000
    ));
    assert!(
        !allowed(&c, "default/Pod/monitoring", "default/Pod/apiserver", 5001),
        "the Service port is not the pod port"
    );
}

#[test]
fn r10_redis_allow_services() {
    let c = cluster(
        &["10-redis-allow-services.yaml"],
        &(pod(
            "default",
            "db",
            &[("app", "bookstore"), ("role", "db")],
            &[(6379, "redis")],
        ) + &pod(
            "default",
            "inventory",
            &[("app", "inventory"), ("role", "web")],
            &[],
        ) + &pod("default", "other", &[("app", "other")], &[])),
    );
    assert!(allowed(&c, "default/Pod/inventory", "default/Pod/db", 6379));
    assert!(!allowed(&c, "default/Pod/other", "default/Pod/db", 6379));
}

#[test]
fn r11_foo_deny_egress_blocks_dns_too() {
    let setup = dns()
        + &pod("default", "foo", &[("app", "foo")], &[])
        + &pod("default", "web", &[("app", "web")], &[(80, "http")]);
    let c = cluster(&["11-foo-deny-egress.yaml"], &setup);
    let dns_udp = explain(
        &c,
        "default/Pod/foo",
        "kube-system/Pod/kube-dns",
        Some((Protocol::Udp, 53)),
        &AnalyzeOptions::default(),
    )
    .unwrap();
    assert!(!dns_udp.is_allowed());
    assert!(!allowed(&c, "default/Pod/foo", "default/Pod/web", 80));
    assert!(!allowed(&c, "default/Pod/foo", "93.184.216.34", 80));

    let c = cluster(&["11-foo-deny-egress-v2.yaml"], &setup);
    let dns_udp = explain(
        &c,
        "default/Pod/foo",
        "kube-system/Pod/kube-dns",
        Some((Protocol::Udp, 53)),
        &AnalyzeOptions::default(),
    )
    .unwrap();
    assert!(dns_udp.is_allowed());
    assert!(allowed(
        &c,
        "default/Pod/foo",
        "kube-system/Pod/kube-dns",
        53
    ));
    assert!(!allowed(&c, "default/Pod/foo", "default/Pod/web", 80));
    assert!(!allowed(&c, "default/Pod/foo", "93.184.216.34", 80));
}

#[test]
fn r12_default_deny_all_egress() {
    let c = cluster(
        &["12-default-deny-all-egress.yaml"],
        &(dns()
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])
            + &pod("default", "client", &[], &[])),
    );
    assert!(!allowed(&c, "default/Pod/client", "default/Pod/web", 80));
    assert!(!allowed(
        &c,
        "default/Pod/client",
        "kube-system/Pod/kube-dns",
        53
    ));
    assert!(
        allowed(&c, "kube-system/Pod/kube-dns", "default/Pod/web", 80),
        "ingress is untouched"
    );
}

/// The recipe says foo → web is allowed; by the spec it is denied: the only
/// egress rule is DNS. An earlier version of the recipe had an extra
/// `to: [namespaceSelector: {}]` rule, removed in 95c12f3 (2022-03-23)
/// without updating the prose. We follow the spec.
#[test]
fn r14_foo_deny_external_egress_follows_the_spec_not_the_prose() {
    let c = cluster(
        &["14-foo-deny-external-egress.yaml"],
        &(dns()
            + &pod("default", "foo", &[("app", "foo")], &[])
            + &pod("default", "web", &[("app", "web")], &[(80, "http")])),
    );
    assert!(
        !allowed(&c, "default/Pod/foo", "default/Pod/web", 80),
        "spec: only DNS egress remains"
    );
    assert!(!allowed(&c, "default/Pod/foo", "93.184.216.34", 80));
    assert!(allowed(
        &c,
        "default/Pod/foo",
        "kube-system/Pod/kube-dns",
        53
    ));
}

// === cyclonus ===

/// The 9-pod model of cyclonus/examples/probe.json: namespaces labelled
/// `ns=<name>`, pods `pod=<name>` serving TCP 80 and 81.
fn cyclonus_model() -> String {
    let probe: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared("cyclonus/examples/probe.json")).unwrap(),
    )
    .unwrap();
    let mut yaml = String::new();
    for (ns, labels) in probe["Resources"]["Namespaces"].as_object().unwrap() {
        let labels: Vec<(&str, &str)> = labels
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        yaml += &namespace(ns, &labels);
    }
    for p in probe["Resources"]["Pods"].as_array().unwrap() {
        let labels: Vec<(&str, &str)> = p["Labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let ports: Vec<(u16, &str)> = p["Containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Port"].as_u64().unwrap() as u16,
                    c["PortName"].as_str().unwrap(),
                )
            })
            .collect();
        yaml += &pod(
            p["Namespace"].as_str().unwrap(),
            p["Name"].as_str().unwrap(),
            &labels,
            &ports,
        );
    }
    yaml
}

fn cyclonus_cluster(extra: &str) -> Cluster {
    let opts = LoadOptions::default();
    let mut parts = vec![part_of_str(
        &(cyclonus_model() + extra),
        "probe.yaml",
        &opts,
    )];
    let dir = shared("cyclonus/networkpolicies/simple-example");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 7);
    for f in files {
        parts.push(part_of_str(
            &std::fs::read_to_string(&f).unwrap(),
            &f.display().to_string(),
            &opts,
        ));
    }
    let loaded = join(parts, &opts);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    loaded.cluster
}

#[test]
fn c1_simple_example_truth_table() {
    let c = cyclonus_cluster("");
    let result = analyze(&c, &AnalyzeOptions::default());
    let pods: Vec<usize> = (0..result.endpoints.len())
        .filter(|&i| !result.endpoints[i].is_external())
        .collect();
    assert_eq!(pods.len(), 9);
    let denied_to: BTreeSet<&str> = ["y/Pod/a", "y/Pod/c"].into();
    for port in [80, 81] {
        for &s in &pods {
            for &d in &pods {
                if s == d {
                    continue;
                }
                let (from, to) = (
                    result.endpoints[s].id.as_str(),
                    result.endpoints[d].id.as_str(),
                );
                let expected = !denied_to.contains(to) && from != "y/Pod/c";
                assert_eq!(
                    result.allowed(s, d).allows(Protocol::Tcp, port),
                    expected,
                    "{from} -> {to} on TCP/{port}"
                );
            }
        }
    }
    // Ingress alone admits y/c → y/a; its egress is what denies it.
    let e = explain(
        &c,
        "y/Pod/c",
        "y/Pod/a",
        Some((Protocol::Tcp, 80)),
        &AnalyzeOptions::default(),
    )
    .unwrap();
    assert!(!e.ingress.allowed.is_empty() && e.egress.allowed.is_empty());
}

#[test]
fn c2_simple_example_traffic() {
    let c = cyclonus_cluster(&pod(
        "y",
        "labelled-c",
        &[("app", "c")],
        &[(80, "serve-80-tcp")],
    ));
    let opts = AnalyzeOptions::default();
    let probe = |from: &str, to: &str| {
        explain(&c, from, to, Some((Protocol::Tcp, 80)), &opts)
            .unwrap()
            .is_allowed()
    };
    assert!(
        !probe("8.8.8.8", "y/Pod/a"),
        "external → y/a is denied by ingress"
    );
    assert!(
        probe("y/Pod/b", "192.168.1.10"),
        "y/b's egress is reopened; no ingress check outside"
    );
    assert!(probe("y/Pod/a", "y/Pod/b"));
    assert!(
        !probe("y/Pod/labelled-c", "y/Pod/b"),
        "a pod without the pod label keeps deny-all egress"
    );
}

#[test]
fn cyclonus_yaml_list_and_port_range_inputs_load() {
    let opts = LoadOptions::default();
    let list = load_str(
        &std::fs::read_to_string(shared(
            "cyclonus/networkpolicies/yaml-syntax/yaml-list.yaml",
        ))
        .unwrap(),
        "yaml-list.yaml",
        &opts,
    );
    assert!(!list.has_errors(), "{:?}", list.errors);
    assert_eq!(list.cluster.policies.len(), 3);
    let range = load_str(
        &std::fs::read_to_string(shared("cyclonus/networkpolicies/features/portrange1.yaml"))
            .unwrap(),
        "portrange1.yaml",
        &opts,
    );
    assert!(!range.has_errors(), "{:?}", range.errors);
    let policy = &range.cluster.policies[0];
    assert!(
        policy
            .egress
            .iter()
            .flat_map(|r| &r.ports)
            .any(|p| p.end_port == Some(103))
    );
}
