//! The Kubernetes e2e NetworkPolicy cases (E1–E23 of
//! `testdata/third-party/netpol-cases.md`, restated from kubernetes/kubernetes
//! `test/e2e/network/netpol/network_policy.go`), as truth tables.
//!
//! Pods `x/a`, `y/b`, … carry `pod=<name>`; namespaces carry
//! `kubernetes.io/metadata.name=<ns>`; every pod serves TCP 80 and 81 (named
//! `serve-80-tcp`, `serve-81-tcp`) unless a case says otherwise. A pair that
//! a case does not list as denied must be allowed, so every case checks the
//! whole matrix, not only the listed pairs.

// Test fixtures are fixed literals: a panic here is a broken test, not bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_core::model::{Container, ContainerPort, Namespace, Workload, WorkloadKind};
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use kubefence_core::{Cluster, Protocol};

const NS_LABEL: &str = "kubernetes.io/metadata.name";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector::from_labels(labels(pairs))
}

fn pod_sel(name: &str) -> LabelSelector {
    sel(&[("pod", name)])
}

fn ns_sel(name: &str) -> LabelSelector {
    sel(&[(NS_LABEL, name)])
}

fn expr(key: &str, op: Operator, values: &[&str]) -> LabelSelector {
    LabelSelector::new(
        Labels::new(),
        vec![Requirement::new(key, op, values.iter().copied()).unwrap()],
    )
}

fn pods_peer(ns: Option<LabelSelector>, pod: Option<LabelSelector>) -> Peer {
    Peer::Pods {
        namespace_selector: ns,
        pod_selector: pod,
    }
}

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Number(port)),
        end_port: None,
    }
}

fn named(name: &str, protocol: Protocol) -> PortSpec {
    PortSpec {
        protocol,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    }
}

fn rule(peers: Vec<Peer>, ports: Vec<PortSpec>) -> Rule {
    Rule { peers, ports }
}

struct Policy {
    inner: NetworkPolicy,
}

impl Policy {
    /// A policy whose `policyTypes` are set as the e2e helpers set them.
    fn new(ns: &str, name: &str, selector: LabelSelector) -> Self {
        Self {
            inner: NetworkPolicy {
                namespace: ns.into(),
                name: name.into(),
                pod_selector: selector,
                policy_types: PolicyTypes::default(),
                ingress: vec![],
                egress: vec![],
            },
        }
    }
    fn ingress(mut self, rules: Vec<Rule>) -> Self {
        self.inner.policy_types.ingress = true;
        self.inner.ingress = rules;
        self
    }
    fn egress(mut self, rules: Vec<Rule>) -> Self {
        self.inner.policy_types.egress = true;
        self.inner.egress = rules;
        self
    }
}

/// A pod serving `ports` (protocol, port), each named `serve-<port>-<proto>`.
fn pod(id: &str, ports: &[(Protocol, u16)], ip: Option<&str>) -> Workload {
    let (ns, name) = id.split_once('/').unwrap();
    let containers = ports
        .iter()
        .map(|&(protocol, port)| Container {
            name: format!("c{port}-{}", protocol.as_str().to_lowercase()),
            init: false,
            command: vec![],
            args: vec![],
            env: vec![],
            env_from: vec![],
            ports: vec![ContainerPort {
                name: Some(format!("serve-{port}-{}", protocol.as_str().to_lowercase())),
                port,
                protocol,
            }],
        })
        .collect();
    Workload {
        kind: WorkloadKind::Pod,
        namespace: ns.into(),
        name: name.into(),
        uid: None,
        labels: labels(&[("pod", name)]),
        annotations: Labels::new(),
        selector: pod_sel(name),
        pod_labels: labels(&[("pod", name)]),
        containers,
        pod_ips: ip
            .map(|s| s.parse::<IpAddr>().unwrap())
            .into_iter()
            .collect(),
    }
}

const TCP_80_81: &[(Protocol, u16)] = &[(Protocol::Tcp, 80), (Protocol::Tcp, 81)];

fn cluster(pods: &[&str], policies: Vec<Policy>) -> Cluster {
    cluster_with(
        pods.iter().map(|p| pod(p, TCP_80_81, None)).collect(),
        policies,
    )
}

fn cluster_with(pods: Vec<Workload>, policies: Vec<Policy>) -> Cluster {
    let mut c = Cluster {
        workloads: pods,
        policies: policies.into_iter().map(|p| p.inner).collect(),
        ..Cluster::default()
    };
    for ns in ["x", "y", "z"] {
        c.namespaces.insert(ns.into(), Namespace::implicit(ns));
    }
    c
}

/// Asserts the probe's full truth table: exactly the listed pairs denied,
/// every other ordered pair of distinct pods allowed. Self pairs are
/// ignored, as upstream ignores them.
fn assert_probe(c: &Cluster, protocol: Protocol, port: u16, denied: &[(&str, &str)], case: &str) {
    assert_probe_with(c, protocol, port, denied, case, &AnalyzeOptions::default())
}

fn assert_probe_with(
    c: &Cluster,
    protocol: Protocol,
    port: u16,
    denied: &[(&str, &str)],
    case: &str,
    opts: &AnalyzeOptions,
) {
    let result = analyze(c, opts);
    let id = |p: &str| {
        let (ns, name) = p.split_once('/').unwrap();
        format!("{ns}/Pod/{name}")
    };
    let denied: BTreeSet<(String, String)> = denied.iter().map(|(a, b)| (id(a), id(b))).collect();
    let pods: Vec<usize> = (0..result.endpoints.len())
        .filter(|&i| !result.endpoints[i].is_external())
        .collect();
    let mut mismatches = Vec::new();
    for &i in &pods {
        for &j in &pods {
            if i == j {
                continue;
            }
            let (from, to) = (&result.endpoints[i].id, &result.endpoints[j].id);
            let allowed = result.allowed(i, j).allows(protocol, port);
            let expected = !denied.contains(&(from.clone(), to.clone()));
            if allowed != expected {
                mismatches.push(format!(
                    "{from} -> {to} on {protocol}/{port}: expected {}, got {}",
                    if expected { "allowed" } else { "denied" },
                    if allowed { "allowed" } else { "denied" }
                ));
            }
        }
    }
    for pair in &denied {
        assert!(
            result.endpoint_index(&pair.0).is_some(),
            "{case}: unknown pod {}",
            pair.0
        );
        assert!(
            result.endpoint_index(&pair.1).is_some(),
            "{case}: unknown pod {}",
            pair.1
        );
    }
    assert!(mismatches.is_empty(), "{case}:\n{}", mismatches.join("\n"));
}

/// Every pair (from, to) with `to` in `targets` and `from` in `sources`.
fn pairs<'a>(sources: &[&'a str], targets: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for s in sources {
        for t in targets {
            if s != t {
                out.push((*s, *t));
            }
        }
    }
    out
}

#[test]
fn e1_default_deny_ingress() {
    let pods = ["x/a", "x/b", "y/a", "y/b"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "deny", LabelSelector::everything()).ingress(vec![])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &pairs(&pods, &["x/a", "x/b"]), "E1");
}

#[test]
fn e2_default_deny_all() {
    let pods = ["x/a", "x/b", "y/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "deny", LabelSelector::everything())
                .ingress(vec![])
                .egress(vec![]),
        ],
    );
    let mut denied = pairs(&pods, &["x/a", "x/b"]);
    denied.extend(pairs(&["x/a", "x/b"], &pods));
    assert_probe(&c, Protocol::Tcp, 80, &denied, "E2");
}

#[test]
fn e3_allow_from_same_namespace_pod() {
    let pods = ["x/a", "x/b", "x/c", "y/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(None, Some(pod_sel("b")))],
            vec![],
        )])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/c", "x/a"), ("y/a", "x/a")],
        "E3",
    );
}

#[test]
fn e3_match_expressions_variant() {
    let pods = ["x/a", "x/b", "x/c", "y/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(None, Some(expr("pod", Operator::In, &["b"])))],
            vec![],
        )])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/c", "x/a"), ("y/a", "x/a")],
        "E3 matchExpressions",
    );
}

#[test]
fn e4_policies_are_additive() {
    let pods = ["x/a", "x/b", "y/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "deny", LabelSelector::everything()).ingress(vec![]),
            Policy::new("x", "allow-a", pod_sel("a")).ingress(vec![rule(
                vec![pods_peer(
                    Some(LabelSelector::everything()),
                    Some(LabelSelector::everything()),
                )],
                vec![],
            )]),
        ],
    );
    assert_probe(&c, Protocol::Tcp, 80, &pairs(&pods, &["x/b"]), "E4");
}

#[test]
fn e5_allow_from_all_namespaces() {
    let pods = ["x/a", "x/b", "y/a", "z/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(Some(LabelSelector::everything()), None)],
            vec![],
        )])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[], "E5");
}

#[test]
fn e6_allow_only_from_namespace_y() {
    let pods = ["x/a", "x/b", "y/a", "z/a"];
    for (variant, selector) in [
        ("matchLabels", ns_sel("y")),
        ("In", expr(NS_LABEL, Operator::In, &["y"])),
    ] {
        let c = cluster(
            &pods,
            vec![
                Policy::new("x", "p", pod_sel("a"))
                    .ingress(vec![rule(vec![pods_peer(Some(selector), None)], vec![])]),
            ],
        );
        assert_probe(
            &c,
            Protocol::Tcp,
            80,
            &[("x/b", "x/a"), ("z/a", "x/a")],
            &format!("E6 {variant}"),
        );
    }
}

#[test]
fn e7_pod_or_namespace_selector() {
    let pods = ["x/a", "x/b", "x/c", "y/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![
                pods_peer(Some(expr(NS_LABEL, Operator::NotIn, &["x"])), None),
                pods_peer(None, Some(pod_sel("b"))),
            ],
            vec![],
        )])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[("x/c", "x/a")], "E7");
}

#[test]
fn e8_pod_and_namespace_selector() {
    let pods = ["x/a", "x/b", "y/a", "y/b", "z/b"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(
                Some(expr(NS_LABEL, Operator::NotIn, &["x"])),
                Some(pod_sel("b")),
            )],
            vec![],
        )])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/b", "x/a"), ("y/a", "x/a")],
        "E8",
    );
}

#[test]
fn e9_one_pod_of_another_namespace() {
    let pods = ["x/a", "x/b", "y/a", "y/b", "z/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(Some(ns_sel("y")), Some(pod_sel("a")))],
            vec![],
        )])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/b", "x/a"), ("y/b", "x/a"), ("z/a", "x/a")],
        "E9",
    );
}

#[test]
fn e10_e11_port_restricted_and_stacked() {
    let pods = ["x/a", "x/b", "y/a", "y/b", "z/a"];
    let on_81 = Policy::new("x", "p81", pod_sel("a")).ingress(vec![rule(
        vec![pods_peer(Some(ns_sel("y")), None)],
        vec![tcp(81)],
    )]);
    let c = cluster(&pods, vec![on_81]);
    assert_probe(
        &c,
        Protocol::Tcp,
        81,
        &[("x/b", "x/a"), ("z/a", "x/a")],
        "E10 on 81",
    );
    assert_probe(&c, Protocol::Tcp, 80, &pairs(&pods, &["x/a"]), "E10 on 80");

    let on_80 = Policy::new("x", "p80", pod_sel("a")).ingress(vec![rule(
        vec![pods_peer(Some(ns_sel("y")), None)],
        vec![tcp(80)],
    )]);
    let mut c = c;
    c.policies.push(on_80.inner);
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/b", "x/a"), ("z/a", "x/a")],
        "E11 on 80",
    );
}

#[test]
fn e12_named_port_namespace_wide() {
    let pods = ["x/a", "x/b", "y/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "p", LabelSelector::everything()).ingress(vec![rule(
                vec![],
                vec![named("serve-81-tcp", Protocol::Tcp)],
            )]),
        ],
    );
    assert_probe(&c, Protocol::Tcp, 81, &[], "E12 on 81");
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &pairs(&pods, &["x/a", "x/b"]),
        "E12 on 80",
    );
}

#[test]
fn e13_named_port_from_one_namespace() {
    let pods = ["x/a", "x/b", "y/a", "z/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(Some(ns_sel("y")), None)],
            vec![named("serve-80-tcp", Protocol::Tcp)],
        )])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/b", "x/a"), ("z/a", "x/a")],
        "E13 on 80",
    );
    assert_probe(&c, Protocol::Tcp, 81, &pairs(&pods, &["x/a"]), "E13 on 81");
}

#[test]
fn e14_named_port_in_egress_resolves_at_destination() {
    let pods = ["x/a", "y/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "p", LabelSelector::everything()).egress(vec![rule(
                vec![],
                vec![named("serve-80-tcp", Protocol::Tcp)],
            )]),
        ],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[], "E14 on 80");
    assert_probe(&c, Protocol::Tcp, 81, &[("x/a", "y/a")], "E14 on 81");

    // The name resolves against the destination: a destination serving 80
    // under another name is not reachable through it.
    let mut renamed = pod("y/a", &[(Protocol::Tcp, 80)], None);
    renamed.containers[0].ports[0].name = Some("http".into());
    let c = cluster_with(
        vec![pod("x/a", TCP_80_81, None), renamed],
        vec![
            Policy::new("x", "p", LabelSelector::everything()).egress(vec![rule(
                vec![],
                vec![named("serve-80-tcp", Protocol::Tcp)],
            )]),
        ],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/a", "y/a")],
        "E14 name not declared by destination",
    );
}

#[test]
fn e15_only_same_namespace() {
    let pods = ["x/a", "x/b", "y/a", "z/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "p", LabelSelector::everything()).ingress(vec![rule(
                vec![pods_peer(None, Some(LabelSelector::everything()))],
                vec![],
            )]),
        ],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &pairs(&["y/a", "z/a"], &["x/a", "x/b"]),
        "E15",
    );
}

#[test]
fn e16_deny_all_egress_of_one_pod() {
    let pods = ["x/a", "x/b", "y/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).egress(vec![])],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/a", "x/b"), ("x/a", "y/a")],
        "E16",
    );
}

#[test]
fn e17_ingress_and_egress_in_one_policy() {
    let pods = ["x/a", "x/b", "x/c", "y/a"];
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "p", pod_sel("a"))
                .ingress(vec![rule(
                    vec![pods_peer(None, Some(pod_sel("b")))],
                    vec![],
                )])
                .egress(vec![rule(vec![], vec![tcp(80)])]),
        ],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/c", "x/a"), ("y/a", "x/a")],
        "E17 on 80",
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        81,
        &[
            ("x/c", "x/a"),
            ("y/a", "x/a"),
            ("x/a", "x/b"),
            ("x/a", "x/c"),
            ("x/a", "y/a"),
        ],
        "E17 on 81",
    );
}

#[test]
fn e18_egress_deny_at_client_wins() {
    let pods = ["x/a", "y/a", "y/b"];
    let from_xa = || {
        vec![rule(
            vec![pods_peer(Some(ns_sel("x")), Some(pod_sel("a")))],
            vec![],
        )]
    };
    let c = cluster(
        &pods,
        vec![
            Policy::new("x", "egress", pod_sel("a")).egress(vec![rule(
                vec![pods_peer(Some(ns_sel("y")), Some(pod_sel("a")))],
                vec![],
            )]),
            Policy::new("y", "in-a", pod_sel("a")).ingress(from_xa()),
            Policy::new("y", "in-b", pod_sel("b")).ingress(from_xa()),
        ],
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/a", "y/b"), ("y/b", "y/a"), ("y/a", "y/b")],
        "E18",
    );
}

#[test]
fn e19_protocol_only_port() {
    let both: &[(Protocol, u16)] = &[(Protocol::Tcp, 80), (Protocol::Udp, 80)];
    let c = cluster_with(
        vec![pod("x/a", both, None), pod("y/a", both, None)],
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![],
            vec![PortSpec {
                protocol: Protocol::Tcp,
                port: None,
                end_port: None,
            }],
        )])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[], "E19 TCP");
    assert_probe(&c, Protocol::Udp, 80, &[("y/a", "x/a")], "E19 UDP");
}

#[test]
fn e20_allow_all_overrides_restrictive() {
    let pods = ["x/a", "y/a"];
    let restrictive = || {
        Policy::new("x", "only-80", LabelSelector::everything())
            .ingress(vec![rule(vec![], vec![tcp(80)])])
    };
    let c = cluster(&pods, vec![restrictive()]);
    assert_probe(&c, Protocol::Tcp, 81, &[("y/a", "x/a")], "E20 before");
    let c = cluster(
        &pods,
        vec![
            restrictive(),
            Policy::new("x", "all", LabelSelector::everything()).ingress(vec![Rule::default()]),
        ],
    );
    assert_probe(&c, Protocol::Tcp, 81, &[], "E20 after");

    // The egress variant.
    let restrictive = || {
        Policy::new("x", "only-80", LabelSelector::everything())
            .egress(vec![rule(vec![], vec![tcp(80)])])
    };
    let c = cluster(&pods, vec![restrictive()]);
    assert_probe(
        &c,
        Protocol::Tcp,
        81,
        &[("x/a", "y/a")],
        "E20 egress before",
    );
    let c = cluster(
        &pods,
        vec![
            restrictive(),
            Policy::new("x", "all", LabelSelector::everything()).egress(vec![Rule::default()]),
        ],
    );
    assert_probe(&c, Protocol::Tcp, 81, &[], "E20 egress after");
}

fn ip_block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    })
}

#[test]
fn e21_ipblock_to_a_pod_ip_when_ipblocks_match_pods() {
    let opts = AnalyzeOptions {
        ipblocks_match_pod_ips: true,
    };
    let c = cluster_with(
        vec![
            pod("x/a", TCP_80_81, Some("10.0.0.1")),
            pod("y/a", TCP_80_81, Some("10.0.1.1")),
            pod("y/b", TCP_80_81, Some("10.0.1.2")),
        ],
        vec![
            Policy::new("x", "p", pod_sel("a"))
                .egress(vec![rule(vec![ip_block("10.0.1.2/32", &[])], vec![])]),
        ],
    );
    assert_probe_with(&c, Protocol::Tcp, 80, &[("x/a", "y/a")], "E21", &opts);
    // By default ipBlocks only match addresses outside the cluster.
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("x/a", "y/a"), ("x/a", "y/b")],
        "E21 default mode",
    );
}

#[test]
fn e22_ipblock_with_except() {
    let opts = AnalyzeOptions {
        ipblocks_match_pod_ips: true,
    };
    let pods = || {
        vec![
            pod("x/a", TCP_80_81, Some("10.0.0.1")),
            pod("x/b", TCP_80_81, Some("10.0.0.2")),
            pod("x/c", TCP_80_81, Some("10.0.0.3")),
        ]
    };
    let c = cluster_with(
        pods(),
        vec![Policy::new("x", "p", pod_sel("a")).egress(vec![rule(
            vec![ip_block("10.0.0.0/24", &["10.0.0.2/32"])],
            vec![],
        )])],
    );
    assert_probe_with(&c, Protocol::Tcp, 80, &[("x/a", "x/b")], "E22", &opts);
    let c = cluster_with(
        pods(),
        vec![
            Policy::new("x", "p", pod_sel("a"))
                .egress(vec![rule(vec![ip_block("10.0.0.2/32", &[])], vec![])]),
        ],
    );
    assert_probe_with(
        &c,
        Protocol::Tcp,
        80,
        &[("x/a", "x/c")],
        "E22 updated",
        &opts,
    );
}

#[test]
fn e23_sctp_or_udp_allow_does_not_open_tcp() {
    let pods = ["x/a", "y/a"];
    for protocol in [Protocol::Sctp, Protocol::Udp] {
        let c = cluster(
            &pods,
            vec![
                Policy::new("x", "deny", LabelSelector::everything()).ingress(vec![]),
                Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
                    vec![],
                    vec![PortSpec {
                        protocol,
                        port: Some(PortRef::Number(81)),
                        end_port: None,
                    }],
                )]),
            ],
        );
        assert_probe(
            &c,
            Protocol::Tcp,
            81,
            &[("y/a", "x/a")],
            &format!("E23 {protocol}"),
        );
        assert_probe(&c, protocol, 81, &[], &format!("E23 {protocol} itself"));
    }
}

#[test]
fn egress_namespace_not_in() {
    let pods = ["x/a", "x/b", "y/a", "z/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).egress(vec![rule(
            vec![pods_peer(
                Some(expr(NS_LABEL, Operator::NotIn, &["y"])),
                None,
            )],
            vec![],
        )])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[("x/a", "y/a")], "egress NotIn");
}

#[test]
fn label_update_flips_results() {
    // Adding a label to namespace y makes it match the peer.
    let pods = ["x/a", "y/a"];
    let policy = || {
        Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![pods_peer(Some(sel(&[("ns2", "updated")])), None)],
            vec![],
        )])
    };
    let mut c = cluster(&pods, vec![policy()]);
    assert_probe(
        &c,
        Protocol::Tcp,
        80,
        &[("y/a", "x/a")],
        "before namespace label",
    );
    c.namespaces
        .get_mut("y")
        .unwrap()
        .labels
        .insert("ns2".into(), "updated".into());
    assert_probe(&c, Protocol::Tcp, 80, &[], "after namespace label");
}

#[test]
fn end_port_range_is_inclusive() {
    let pods = ["x/a", "y/a"];
    let c = cluster(
        &pods,
        vec![Policy::new("x", "p", pod_sel("a")).ingress(vec![rule(
            vec![],
            vec![PortSpec {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(80)),
                end_port: Some(81),
            }],
        )])],
    );
    assert_probe(&c, Protocol::Tcp, 80, &[], "endPort low end");
    assert_probe(&c, Protocol::Tcp, 81, &[], "endPort high end");
    assert_probe(
        &c,
        Protocol::Tcp,
        82,
        &[("y/a", "x/a")],
        "endPort past the end",
    );
    assert_probe(
        &c,
        Protocol::Tcp,
        79,
        &[("y/a", "x/a")],
        "endPort before the start",
    );
}
