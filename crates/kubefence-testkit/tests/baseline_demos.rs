//! Baseline policies on real demo applications (testdata/third-party): Online
//! Boutique, sock-shop and the AKS store, and on the guestbook and sock-shop
//! variant shapes of testdata/, checked with the semantics engine and with
//! IBM's network-config-analyzer.
//!
//! For each demo the generated policies are rendered to YAML exactly as
//! `kubefence generate` prints them, then read back. With the policies in
//! place, for every ordered pair of the demo's workloads, what is allowed is
//! exactly what the references ask for:
//! - a pair with references is allowed on the union of their target ports,
//!   at both ends, and on no other port;
//! - a pair without a reference is denied;
//! - a workload's own pods reach each other on every port;
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kubefence_core::baseline::{
    self, Baseline, BaselineConfig, IngressControllerConfig, Scope, SelectorConfig,
};
use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze, explain};
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
    testdata(&format!("third-party/{path}"))
}

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
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
    let loaded = load::join(
        texts
            .iter()
            .map(|(label, text)| load::part_of_str(text, label, &opts))
            .collect(),
        &opts,
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
    config: BaselineConfig,
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
    let generated =
        baseline::build(&cluster, &demo.config, &Scope::default()).expect("the config is valid");
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

    // What each pair may use: the union of its references' target ports.
    let mut referenced: BTreeMap<(String, String), ConnSet> = BTreeMap::new();
    for r in &generated.report.references {
        referenced
            .entry((r.from.clone(), r.to.clone()))
            .or_insert_with(ConnSet::none)
            .union_with(&ports_of(&r.ports));
    }
    // Allowed == referenced, pair by pair and port by port.
    for a in &workloads {
        for b in &workloads {
            if a == b {
                continue;
            }
            let want = referenced
                .get(&(a.clone(), b.clone()))
                .cloned()
                .unwrap_or_else(ConnSet::none);
            let got = enforced.allowed(idx(a), idx(b));
            assert_eq!(
                got.port_strings(),
                want.port_strings(),
                "{}: {a} -> {b}: allowed differs from what the references ask for",
                demo.name
            );
        }
    }
    // A workload's own pods reach each other on any port (the matrix has
    // one endpoint per workload, so this asks `explain` pod to pod).
    for w in &workloads {
        for (protocol, port) in [
            (Protocol::Tcp, 1),
            (Protocol::Tcp, 8080),
            (Protocol::Tcp, 65535),
            (Protocol::Udp, 5353),
            (Protocol::Sctp, 9),
        ] {
            let e = explain(
                &enforced_cluster,
                w,
                w,
                Some((protocol, port)),
                &AnalyzeOptions::default(),
            )
            .unwrap();
            assert!(
                e.is_allowed(),
                "{}: {w} -> its own pods on {protocol:?}/{port}",
                demo.name
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
        config: BaselineConfig::default(),
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
        config: BaselineConfig::default(),
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
        config: BaselineConfig::default(),
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

/// The default config plus the AKS application routing add-on's class,
/// served (in these tests) by the ingress-nginx controller of
/// [`INGRESS_NGINX`].
fn config_with_aks_app_routing() -> BaselineConfig {
    let mut config = BaselineConfig::default();
    config.ingress_controllers.push(IngressControllerConfig {
        namespace_selector: SelectorConfig::labels(&[(
            "kubernetes.io/metadata.name",
            "ingress-nginx",
        )]),
        pod_selector: SelectorConfig::labels(&[("app.kubernetes.io/name", "ingress-nginx")]),
        class_name: Some("webapprouting.kubernetes.azure.com".into()),
    });
    config
}

#[test]
fn aks_store_behind_an_ingress() {
    let checked = check_demo(&Demo {
        name: "aks-store-ingress",
        manifests: vec![data("demo-aks-store/aks-store-ingress-quickstart.yaml")],
        with_ingress_controller: true,
        config: config_with_aks_app_routing(),
    });
    assert!(checked.generated.report.unknown_ingress_classes.is_empty());
    // Ingress store-front (class webapprouting.kubernetes.azure.com) routes
    // / to Service store-front port 80, whose targetPort is 8080: the
    // controller of that class reaches store-front on TCP 8080, and no
    // other workload.
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

#[test]
fn aks_store_ingress_of_a_class_no_controller_serves() {
    // The default config serves nginx, openshift-default and Ingresses
    // without a class: the AKS class is reported and opens nothing.
    let checked = check_demo(&Demo {
        name: "aks-store-ingress-unknown-class",
        manifests: vec![data("demo-aks-store/aks-store-ingress-quickstart.yaml")],
        with_ingress_controller: true,
        config: BaselineConfig::default(),
    });
    let unknown: Vec<_> = checked
        .generated
        .report
        .unknown_ingress_classes
        .iter()
        .map(|u| (u.ingress.as_str(), u.class.as_deref(), u.workloads.clone()))
        .collect();
    assert_eq!(
        unknown,
        [(
            "default/store-front",
            Some("webapprouting.kubernetes.azure.com"),
            vec!["default/Deployment/store-front".to_string()]
        )]
    );
    let conn = &checked.enforced;
    let controller = conn.endpoint_index(CONTROLLER_ID).unwrap();
    for w in &checked.workloads {
        let allowed = conn.allowed(controller, conn.endpoint_index(w).unwrap());
        assert!(allowed.is_empty(), "{w}: {:?}", allowed.port_strings());
    }
}

#[test]
fn guestbook() {
    let checked = check_demo(&Demo {
        name: "guestbook",
        manifests: vec![testdata("guestbook/guestbook.yaml")],
        with_ingress_controller: true,
        config: BaselineConfig::default(),
    });
    let report = &checked.generated.report;
    // The only call the manifests state; GET_HOSTS_FROM=dns is no address.
    let references: Vec<_> = report
        .references
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.ports.clone()))
        .collect();
    assert_eq!(
        references,
        [(
            "default/Deployment/redis-follower",
            "default/Deployment/redis-leader",
            vec!["TCP/6379".to_string()]
        )]
    );
    assert!(report.unresolved.is_empty(), "{:?}", report.unresolved);
    assert!(report.indistinguishable.is_empty(), "{report:?}");
    assert!(report.unknown_ingress_classes.is_empty(), "{report:?}");
    // Leader and follower both select app=redis; their policies do not.
    let selectors: BTreeMap<&str, String> = checked
        .generated
        .policies
        .iter()
        .map(|p| (p.workload.as_str(), p.policy.pod_selector.to_string()))
        .collect();
    assert_eq!(
        selectors["default/Deployment/redis-leader"],
        "app=redis,role=leader"
    );
    assert_eq!(
        selectors["default/Deployment/redis-follower"],
        "app=redis,role=follower"
    );
    // The Ingress names class nginx by the legacy annotation: the
    // ingress-nginx controller reaches the frontend on 80, nothing else.
    let conn = &checked.enforced;
    let controller = conn.endpoint_index(CONTROLLER_ID).unwrap();
    for w in &checked.workloads {
        let allowed = conn.allowed(controller, conn.endpoint_index(w).unwrap());
        if w == "default/Deployment/frontend" {
            assert_eq!(allowed, conns(&[(Protocol::Tcp, 80)]), "{w}");
        } else {
            assert!(allowed.is_empty(), "{w}: {:?}", allowed.port_strings());
        }
    }
}

#[test]
fn sock_shop_variant_with_a_bare_service_argument() {
    let checked = check_demo(&Demo {
        name: "sock-shop-variant",
        manifests: vec![testdata("sock-shop-variant/orders-carts.yaml")],
        with_ingress_controller: false,
        config: BaselineConfig::default(),
    });
    let report = &checked.generated.report;
    let references: Vec<_> = report
        .references
        .iter()
        .map(|r| {
            (
                r.from.as_str(),
                r.to.as_str(),
                r.ports.clone(),
                r.via.as_str(),
            )
        })
        .collect();
    assert_eq!(
        references,
        [(
            "sock-shop/Deployment/orders",
            "sock-shop/Deployment/carts",
            vec!["TCP/80".to_string()],
            "args[2] of container orders"
        )]
    );
    assert!(report.unresolved.is_empty(), "{:?}", report.unresolved);
    assert!(report.external.is_empty(), "{:?}", report.external);
}

#[test]
fn aks_store_quickstart_with_the_ai_service() {
    let checked = check_demo(&Demo {
        name: "aks-store-quickstart-ai",
        manifests: vec![
            data("demo-aks-store/aks-store-quickstart.yaml"),
            data("demo-aks-store/ai-service.yaml"),
        ],
        with_ingress_controller: false,
        config: BaselineConfig::default(),
    });
    // The ai-service add-on resolves product-service's AI_SERVICE_URL; its
    // own empty endpoint settings are no references.
    let report = &checked.generated.report;
    assert!(
        report
            .references
            .iter()
            .any(|r| r.from == "default/Deployment/product-service"
                && r.to == "default/Deployment/ai-service"
                && r.ports == ["TCP/5001"]),
        "{:?}",
        report.references
    );
    assert!(report.unresolved.is_empty(), "{:?}", report.unresolved);
    assert!(report.external.is_empty(), "{:?}", report.external);
}
