//! Baseline policies on real demo applications (testdata/third-party): Online
//! Boutique, sock-shop and the AKS store, checked with the semantics engine
//! and with IBM's network-config-analyzer.
//!
//! For each demo the generated policies are rendered to YAML exactly as
//! `kubefence generate` prints them, then read back. With the policies in
//! place:
//! - every reference the builder found is allowed, at both ends, on its ports;
//! - every other pair of the demo's workloads is denied;
//! - every workload may query the cluster DNS on UDP and TCP 53, and nothing
//!   else there;
//! - nca, reading the same YAML, agrees with the engine on every pair.
//!
//! Online Boutique also has upstream policies written by its authors: the
//! pairs they allow must be the pairs our references found (an independent
//! statement of the application's call graph).
//!
//! nca is required (`scripts/install-nca.sh`); `KUBEFENCE_SKIP_NCA=1` skips
//! only the nca half, with a notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubefence_core::baseline::{self, Baseline, BaselineConfig, Scope};
use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze};
use kubefence_core::{Cluster, ConnSet, Protocol};
use kubefence_k8s::load::{self, LoadOptions, Loaded};
use kubefence_k8s::render;
use kubefence_testkit::baseline_synth::CLUSTER_DNS_MANIFEST;
use kubefence_testkit::{compare, nca};

/// An ingress-nginx controller, for demos with an Ingress.
const INGRESS_NGINX: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: ingress-nginx
  labels: {kubernetes.io/metadata.name: ingress-nginx}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}
  template:
    metadata: {labels: {app.kubernetes.io/name: ingress-nginx}}
    spec:
      containers:
      - name: controller
        image: ingress-nginx
        ports:
        - {name: http, containerPort: 80}
";

const DNS_ID: &str = "kube-system/Deployment/coredns";
const CONTROLLER_ID: &str = "ingress-nginx/Deployment/ingress-nginx-controller";

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/third-party")
        .join(path)
}

/// The bundled Online Boutique example (the one copy, with its licence).
fn boutique_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/online-boutique")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_texts(texts: &[(&str, &str)]) -> Loaded {
    let opts = LoadOptions::default();
    let loaded = load::merge(
        texts
            .iter()
            .map(|(label, text)| load::load_str(text, label, &opts))
            .collect(),
    );
    assert!(!loaded.has_errors(), "load errors: {:?}", loaded.errors);
    loaded
}

/// The policies as `kubefence generate` prints them (multi-document YAML).
fn policies_yaml(generated: &Baseline) -> String {
    generated
        .policies
        .iter()
        .map(|p| serde_saphyr::to_string(&render::generated_policy(p)).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

struct Demo {
    name: &'static str,
    manifests: Vec<PathBuf>,
    with_ingress_controller: bool,
}

struct Checked {
    generated: Baseline,
    enforced: Connectivity,
    workloads: BTreeSet<String>,
}

fn conns(list: &[(Protocol, u16)]) -> ConnSet {
    list.iter().fold(ConnSet::none(), |acc, &(p, n)| {
        acc.union(&ConnSet::port(p, n))
    })
}

fn ports_of(strings: &[String]) -> ConnSet {
    let mut out = ConnSet::none();
    for s in strings {
        let (proto, port) = s.split_once('/').unwrap();
        let protocol = match proto {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => panic!("protocol {other}"),
        };
        out.union_with(&ConnSet::port(protocol, port.parse().unwrap()));
    }
    out
}

fn check_demo(demo: &Demo) -> Checked {
    let manifest_texts: Vec<(String, String)> = demo
        .manifests
        .iter()
        .map(|p| (p.display().to_string(), read(p)))
        .collect();
    let mut resources: Vec<(&str, &str)> = manifest_texts
        .iter()
        .map(|(l, t)| (l.as_str(), t.as_str()))
        .collect();
    resources.push(("dns.yaml", CLUSTER_DNS_MANIFEST));
    if demo.with_ingress_controller {
        resources.push(("ingress-nginx.yaml", INGRESS_NGINX));
    }
    let cluster: Cluster = load_texts(&resources).cluster;
    let generated = baseline::build(&cluster, &BaselineConfig::default(), &Scope::default())
        .expect("default config is valid");
    assert!(
        generated.report.errors.is_empty(),
        "{}: {:?}",
        demo.name,
        generated.report.errors
    );

    // The demo's own workloads (not the DNS or the controller we added).
    let workloads: BTreeSet<String> = cluster
        .workloads
        .iter()
        .map(|w| w.id())
        .filter(|id| id != DNS_ID && id != CONTROLLER_ID)
        .collect();
    let with_policy: BTreeSet<&str> = generated
        .policies
        .iter()
        .map(|p| p.workload.as_str())
        .collect();
    for w in &workloads {
        assert!(
            with_policy.contains(w.as_str()),
            "{}: {w} has no policy",
            demo.name
        );
    }

    let yaml = policies_yaml(&generated);
    let mut with_policies = resources.clone();
    with_policies.push(("baseline.yaml", yaml.as_str()));
    let enforced_cluster = load_texts(&with_policies).cluster;
    assert_eq!(
        enforced_cluster.policies.len(),
        generated.policies.len(),
        "{}: every policy reads back",
        demo.name
    );
    let enforced = analyze(&enforced_cluster, &AnalyzeOptions::default());
    let idx = |id: &str| {
        enforced
            .endpoint_index(id)
            .unwrap_or_else(|| panic!("{}: no endpoint {id}", demo.name))
    };

    // Every reference is allowed, on its ports.
    let mut referenced: BTreeSet<(String, String)> = BTreeSet::new();
    for r in &generated.report.references {
        let want = ports_of(&r.ports);
        let got = enforced.allowed(idx(&r.from), idx(&r.to));
        assert_eq!(
            got.intersection(&want),
            want,
            "{}: {} -> {} ({}) is not allowed on {:?}",
            demo.name,
            r.from,
            r.to,
            r.via,
            r.ports
        );
        referenced.insert((r.from.clone(), r.to.clone()));
    }
    // Every other pair of the demo's workloads is denied.
    for a in &workloads {
        for b in &workloads {
            if a == b || referenced.contains(&(a.clone(), b.clone())) {
                continue;
            }
            let got = enforced.allowed(idx(a), idx(b));
            assert!(
                got.is_empty(),
                "{}: {a} -> {b} has no reference but allows {:?}",
                demo.name,
                got.port_strings()
            );
        }
    }
    // DNS, and only DNS, to the resolver.
    let dns = conns(&[(Protocol::Udp, 53), (Protocol::Tcp, 53)]);
    for w in &workloads {
        assert_eq!(
            enforced.allowed(idx(w), idx(DNS_ID)),
            dns,
            "{}: {w} -> DNS",
            demo.name
        );
    }

    // The same YAML through nca.
    match nca_or_skip() {
        None => {}
        Some(nca_bin) => {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("baseline-demos")
                .join(demo.name);
            std::fs::create_dir_all(&dir).unwrap();
            let resources_text = resources
                .iter()
                .map(|(_, t)| t.trim_end().trim_end_matches("---").to_string())
                .collect::<Vec<_>>()
                .join("\n---\n");
            std::fs::write(dir.join("resources.yaml"), resources_text).unwrap();
            std::fs::write(dir.join("policies.yaml"), &yaml).unwrap();
            let out = nca::run_connectivity(
                &nca_bin,
                &dir.join("policies.yaml"),
                &dir.join("resources.yaml"),
            )
            .unwrap();
            std::fs::write(dir.join("nca.txt"), &out).unwrap();
            let edges = nca::parse_output(&out).unwrap();
            let mismatches = compare::compare(&enforced, &edges);
            assert!(
                mismatches.is_empty(),
                "{}: kubefence and nca disagree (case in {}):\n{}",
                demo.name,
                dir.display(),
                compare::report(&mismatches, 20)
            );
        }
    }

    Checked {
        generated,
        enforced,
        workloads,
    }
}

fn nca_or_skip() -> Option<PathBuf> {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: the nca half of this test (KUBEFENCE_SKIP_NCA=1)");
        return None;
    }
    Some(nca::find_nca().unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn online_boutique() {
    let checked = check_demo(&Demo {
        name: "online-boutique",
        manifests: vec![boutique_file("kubernetes-manifests.yaml")],
        with_ingress_controller: false,
    });
    // The dangling reference of the release manifests.
    let unresolved: Vec<_> = checked
        .generated
        .report
        .unresolved
        .iter()
        .map(|u| (u.from.as_str(), u.value.as_str()))
        .collect();
    assert_eq!(
        unresolved,
        [("default/Deployment/frontend", "shoppingassistantservice:80")]
    );
    // frontend-external is a LoadBalancer: the frontend accepts traffic from
    // outside on its target port 8080, and only there.
    let frontend = checked
        .enforced
        .endpoint_index("default/Deployment/frontend")
        .unwrap();
    let outside: Vec<usize> = (0..checked.enforced.endpoints.len())
        .filter(|&i| checked.enforced.endpoints[i].is_external())
        .collect();
    assert!(!outside.is_empty());
    for i in outside {
        assert_eq!(
            checked.enforced.allowed(i, frontend),
            conns(&[(Protocol::Tcp, 8080)])
        );
    }

    // The upstream policies (kustomize/components/network-policies) state
    // which workload may call which: exactly the pairs we found.
    let mut texts: Vec<(String, String)> = vec![(
        "kubernetes-manifests.yaml".into(),
        read(&boutique_file("kubernetes-manifests.yaml")),
    )];
    let policy_dir = boutique_file("policies");
    for entry in std::fs::read_dir(&policy_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "kustomization.yaml") {
            texts.push((path.display().to_string(), read(&path)));
        }
    }
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(l, t)| (l.as_str(), t.as_str()))
        .collect();
    let upstream = analyze(&load_texts(&refs).cluster, &AnalyzeOptions::default());
    let pairs = |conn: &Connectivity| -> BTreeSet<(String, String, Vec<String>)> {
        let mut out = BTreeSet::new();
        for a in &checked.workloads {
            for b in &checked.workloads {
                if a == b {
                    continue;
                }
                let (Some(i), Some(j)) = (conn.endpoint_index(a), conn.endpoint_index(b)) else {
                    continue;
                };
                let allowed = conn.allowed(i, j);
                if !allowed.is_empty() {
                    out.insert((a.clone(), b.clone(), allowed.port_strings()));
                }
            }
        }
        out
    };
    // Upstream opens the frontend's ingress to every source (it faces the
    // internet); ours admits only what calls it (loadgenerator, on 8080)
    // plus outside traffic through the LoadBalancer. Every other pair is
    // the same, ports included.
    const FRONTEND: &str = "default/Deployment/frontend";
    let (to_frontend_upstream, rest_upstream): (BTreeSet<_>, BTreeSet<_>) = pairs(&upstream)
        .into_iter()
        .partition(|(_, to, _)| to == FRONTEND);
    let (to_frontend_ours, rest_ours): (BTreeSet<_>, BTreeSet<_>) = pairs(&checked.enforced)
        .into_iter()
        .partition(|(_, to, _)| to == FRONTEND);
    assert_eq!(rest_ours, rest_upstream);
    assert_eq!(to_frontend_upstream.len(), checked.workloads.len() - 1);
    assert!(
        to_frontend_upstream
            .iter()
            .all(|(_, _, ports)| ports.iter().any(|p| p == "TCP/1-65535"))
    );
    assert_eq!(
        to_frontend_ours,
        BTreeSet::from([(
            "default/Deployment/loadgenerator".to_string(),
            FRONTEND.to_string(),
            vec!["TCP/8080".to_string()]
        )])
    );
}

#[test]
fn sock_shop() {
    let checked = check_demo(&Demo {
        name: "sock-shop",
        manifests: vec![data("demo-sock-shop/deploy/kubernetes/complete-demo.yaml")],
        with_ingress_controller: false,
    });
    // sock-shop's services find each other by names compiled into their
    // images; the manifests state only user -> user-db (env mongo) and a
    // zipkin host in a namespace that is not deployed. The baseline allows
    // what the manifests say, and no more (learned policies cover the rest).
    let references: Vec<_> = checked
        .generated
        .report
        .references
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.via.as_str()))
        .collect();
    assert_eq!(
        references,
        [(
            "sock-shop/Deployment/user",
            "sock-shop/Deployment/user-db",
            "env mongo"
        )]
    );
    let unresolved: Vec<_> = checked
        .generated
        .report
        .unresolved
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    assert_eq!(unresolved, ["zipkin.jaeger.svc.cluster.local"]);
}

#[test]
fn aks_store_all_in_one() {
    let checked = check_demo(&Demo {
        name: "aks-store-all-in-one",
        manifests: vec![data("demo-aks-store/aks-store-all-in-one.yaml")],
        with_ingress_controller: false,
    });
    let vias: BTreeSet<&str> = checked
        .generated
        .report
        .references
        .iter()
        .map(|r| r.via.as_str())
        .collect();
    // A URI with scheme, user info and path, and a host/port pair split
    // across two variables, are both read.
    assert!(vias.contains("env ORDER_QUEUE_URI"), "{vias:?}");
    assert!(
        vias.contains("env ORDER_QUEUE_HOSTNAME + ORDER_QUEUE_PORT"),
        "{vias:?}"
    );
}

#[test]
fn aks_store_behind_an_ingress() {
    let checked = check_demo(&Demo {
        name: "aks-store-ingress",
        manifests: vec![data("demo-aks-store/aks-store-ingress-quickstart.yaml")],
        with_ingress_controller: true,
    });
    // Ingress store-front routes / to Service store-front port 80, whose
    // targetPort is 8080: the controller reaches store-front on TCP 8080,
    // and no other workload.
    let conn = &checked.enforced;
    let controller = conn.endpoint_index(CONTROLLER_ID).unwrap();
    for w in &checked.workloads {
        let allowed = conn.allowed(controller, conn.endpoint_index(w).unwrap());
        if w == "default/Deployment/store-front" {
            assert_eq!(allowed, conns(&[(Protocol::Tcp, 8080)]), "{w}");
        } else {
            assert!(allowed.is_empty(), "{w}: {:?}", allowed.port_strings());
        }
    }
}
