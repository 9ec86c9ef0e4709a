//! The NetworkPolicy outputs of the network intents, checked with the
//! semantics engine on generated clusters: each intent's meaning is written
//! here independently (who may reach the bound pods, on what), and the
//! engine must find exactly that, for the bound pods, while a decoy that
//! matches the binding's matchLabels but not its matchExpressions keeps
//! every path (the selector is kept whole).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;

use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze};
use kubefence_core::intent::{self, Intent, Options, Subject};
use kubefence_core::model::{Container, ContainerPort};
use kubefence_core::policy::PolicyTypes;
use kubefence_core::ruleset::{NetworkPolicyOptions, to_network_policy};
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use kubefence_core::{Cluster, ConnSet, Protocol, Workload};

use common::{deployment, labels};

const BOUND: &str = "ns0/Deployment/w0";
const DECOY: &str = "ns0/Deployment/w0-batch";
const DNS: &str = "kube-system/Deployment/coredns";
const PROMETHEUS: &str = "monitoring/Deployment/prometheus";

fn with_labels(mut w: Workload, pairs: &[(&str, &str)]) -> Workload {
    w.pod_labels = labels(pairs);
    w.selector = LabelSelector::from_labels(w.pod_labels.clone());
    w
}

/// `namespaces` application namespaces of `per_namespace` workloads, the
/// cluster DNS, a monitoring namespace, and in ns0 the bound workload and a
/// decoy with the same `app` label.
fn generated(namespaces: usize, per_namespace: usize) -> Cluster {
    let mut cluster = Cluster::default();
    for n in 0..namespaces {
        for i in 1..per_namespace {
            let ns = format!("ns{n}");
            cluster.workloads.push(deployment(&ns, &format!("w{i}")));
        }
    }
    cluster.workloads.push(with_labels(
        deployment("ns0", "w0"),
        &[("app", "w0"), ("tier", "web")],
    ));
    cluster.workloads.push(with_labels(
        deployment("ns0", "w0-batch"),
        &[("app", "w0"), ("tier", "batch")],
    ));
    let mut dns = with_labels(
        deployment("kube-system", "coredns"),
        &[("k8s-app", "kube-dns")],
    );
    dns.containers = vec![Container {
        name: "coredns".into(),
        init: false,
        command: vec![],
        args: vec![],
        env: vec![],
        env_from: vec![],
        ports: [Protocol::Udp, Protocol::Tcp]
            .into_iter()
            .map(|protocol| ContainerPort {
                name: None,
                port: 53,
                protocol,
            })
            .collect(),
    }];
    cluster.workloads.push(dns);
    cluster.workloads.push(with_labels(
        deployment("monitoring", "prometheus"),
        &[("app", "prometheus")],
    ));
    cluster.add_implicit_namespaces();
    cluster
}

fn subject() -> Subject {
    Subject {
        binding: "bind".into(),
        namespace: "ns0".into(),
        selector: LabelSelector::new(
            Labels::from([("app".to_string(), "w0".to_string())]),
            vec![Requirement::new("tier", Operator::In, ["web"]).unwrap()],
        ),
    }
}

fn intent(id: &str, params: &[(&str, &[&str])]) -> Intent {
    Intent {
        name: id.to_lowercase(),
        id: id.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        ..Intent::default()
    }
}

/// The cluster with the NetworkPolicies of `intents` bound to [`subject`]
/// (rendered together, as a binding's are).
fn enforce(cluster: &Cluster, intents: &[Intent]) -> Connectivity {
    let sets: Vec<_> = intents
        .iter()
        .map(|i| intent::resolve(i, &subject(), &Options::default()).unwrap())
        .collect();
    let isolated = PolicyTypes {
        ingress: sets.iter().any(|s| s.ingress.isolate),
        egress: sets.iter().any(|s| s.egress.isolate),
    };
    let mut enforced = cluster.clone();
    for set in &sets {
        let np = to_network_policy(
            set,
            &NetworkPolicyOptions {
                isolated_elsewhere: isolated,
            },
        )
        .unwrap();
        enforced.policies.push(np);
    }
    analyze(&enforced, &AnalyzeOptions::default())
}

fn dns_ports() -> ConnSet {
    ConnSet::port(Protocol::Udp, 53).union(&ConnSet::port(Protocol::Tcp, 53))
}

fn namespace_of(id: &str) -> &str {
    id.split('/').next().unwrap_or_default()
}

/// Every ordered pair with the bound workload at one end must be what
/// `expected(from, to)` says; every pair of other endpoints stays open.
fn check(
    conn: &Connectivity,
    what: &str,
    expected: impl Fn(&kubefence_core::engine::Endpoint, &kubefence_core::engine::Endpoint) -> ConnSet,
) {
    let bound = conn.endpoint_index(BOUND).unwrap();
    let decoy = conn.endpoint_index(DECOY).unwrap();
    for (i, a) in conn.endpoints.iter().enumerate() {
        for (j, b) in conn.endpoints.iter().enumerate() {
            if i == j || (a.is_external() && b.is_external()) {
                continue;
            }
            let got = conn.allowed(i, j);
            let want = if i == bound || j == bound {
                expected(a, b)
            } else {
                ConnSet::all()
            };
            assert_eq!(got, want, "{what}: {} -> {}", a.id, b.id);
        }
    }
    // The decoy (same matchLabels, other matchExpressions) is untouched.
    assert_eq!(
        conn.allowed(decoy, conn.endpoint_index(DNS).unwrap()),
        ConnSet::all()
    );
}

fn clusters() -> Vec<Cluster> {
    (1..=4).map(|n| generated(n, 1 + n % 3 + 1)).collect()
}

#[test]
fn dns_only_reaches_the_cluster_dns_and_nothing_else() {
    for id in ["dnsOnly", "dnsManipulation"] {
        for cluster in clusters() {
            let conn = enforce(&cluster, &[intent(id, &[])]);
            check(&conn, id, |a, b| {
                if a.id == BOUND {
                    if b.id == DNS {
                        dns_ports()
                    } else {
                        ConnSet::none()
                    }
                } else {
                    ConnSet::all()
                }
            });
        }
    }
}

#[test]
fn deny_external_egress_reaches_every_pod_and_no_address() {
    for cluster in clusters() {
        let conn = enforce(&cluster, &[intent("denyExternalEgress", &[])]);
        check(&conn, "denyExternalEgress", |a, b| {
            if a.id == BOUND && b.is_external() {
                ConnSet::none()
            } else {
                ConnSet::all()
            }
        });
    }
}

#[test]
fn deny_ingress_from_other_namespaces_admits_only_same_namespace_peers() {
    for cluster in clusters() {
        let conn = enforce(&cluster, &[intent("denyIngressFromOtherNamespaces", &[])]);
        check(&conn, "denyIngressFromOtherNamespaces", |a, b| {
            if b.id == BOUND && (a.is_external() || namespace_of(&a.id) != "ns0") {
                ConnSet::none()
            } else {
                ConnSet::all()
            }
        });
    }
}

#[test]
fn isolate_namespace_keeps_traffic_inside_plus_dns() {
    for cluster in clusters() {
        let conn = enforce(&cluster, &[intent("isolateNamespace", &[])]);
        check(&conn, "isolateNamespace", |a, b| {
            let inside = |e: &kubefence_core::engine::Endpoint| {
                !e.is_external() && namespace_of(&e.id) == "ns0"
            };
            if a.id == BOUND {
                if inside(b) {
                    ConnSet::all()
                } else if b.id == DNS {
                    dns_ports()
                } else {
                    ConnSet::none()
                }
            } else if inside(a) {
                ConnSet::all()
            } else {
                ConnSet::none()
            }
        });
    }
}

#[test]
fn allow_from_monitoring_adds_the_monitoring_pods_to_an_isolation() {
    for cluster in clusters() {
        let conn = enforce(
            &cluster,
            &[
                intent("denyIngressFromOtherNamespaces", &[]),
                intent(
                    "allowFromMonitoring",
                    &[("podLabels", &["app=prometheus"]), ("ports", &["9090"])],
                ),
            ],
        );
        check(&conn, "allowFromMonitoring", |a, b| {
            if b.id != BOUND || (!a.is_external() && namespace_of(&a.id) == "ns0") {
                ConnSet::all()
            } else if a.id == PROMETHEUS {
                ConnSet::port(Protocol::Tcp, 9090)
            } else {
                ConnSet::none()
            }
        });
    }
}

#[test]
fn deny_metadata_access_closes_only_the_metadata_addresses() {
    let metadata: [IpAddr; 2] = [
        "169.254.169.254".parse().unwrap(),
        "fd00:ec2::254".parse().unwrap(),
    ];
    for cluster in clusters() {
        let conn = enforce(&cluster, &[intent("denyMetadataAccess", &[])]);
        check(&conn, "denyMetadataAccess", |a, b| {
            let is_metadata = b
                .addresses
                .as_ref()
                .is_some_and(|set| metadata.iter().any(|m| set.contains(*m)));
            if a.id == BOUND && is_metadata {
                ConnSet::none()
            } else {
                ConnSet::all()
            }
        });
        // Both addresses are their own endpoints: nothing else was cut off.
        let closed: Vec<_> = conn
            .endpoints
            .iter()
            .filter(|e| e.is_external())
            .filter(|e| {
                conn.allowed(
                    conn.endpoint_index(BOUND).unwrap(),
                    conn.endpoint_index(&e.id).unwrap(),
                )
                .is_empty()
            })
            .collect();
        assert_eq!(closed.len(), 2, "{closed:?}");
    }
}
