//! `analyze` folds endpoints into classes and cuts the address space into
//! pieces; this test checks those optimisations against a literal, pair by
//! pair reading of the NetworkPolicy rules on random clusters. The address
//! space is both families: ipBlocks are IPv4 or IPv6, and addresses of both
//! families are probed whatever the policies name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kubefence_core::engine::{AnalyzeOptions, analyze, coverage, explain};
use kubefence_core::model::{Container, ContainerPort, Namespace, Workload, WorkloadKind};
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use kubefence_core::{Cluster, Protocol};

/// A small deterministic generator (xorshift64*), so failures reproduce by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PORT_NAMES: [&str; 3] = ["http", "metrics", "dns"];
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

fn random_labels(rng: &mut Rng) -> Labels {
    let mut labels = Labels::new();
    for key in KEYS {
        if rng.chance(60) {
            labels.insert(key.into(), rng.pick(&VALUES).to_string());
        }
    }
    labels
}

fn random_selector(rng: &mut Rng, keys: &[&str]) -> LabelSelector {
    let mut match_labels = Labels::new();
    let mut exprs = Vec::new();
    for _ in 0..rng.below(3) {
        let key = *rng.pick(keys);
        match rng.below(5) {
            0 => {
                match_labels.insert(key.into(), rng.pick(&VALUES).to_string());
            }
            1 => exprs.push(
                Requirement::new(key, Operator::In, [*rng.pick(&VALUES), *rng.pick(&VALUES)])
                    .unwrap(),
            ),
            2 => exprs.push(Requirement::new(key, Operator::NotIn, [*rng.pick(&VALUES)]).unwrap()),
            3 => exprs.push(Requirement::new(key, Operator::Exists, Vec::<String>::new()).unwrap()),
            _ => exprs
                .push(Requirement::new(key, Operator::DoesNotExist, Vec::<String>::new()).unwrap()),
        }
    }
    LabelSelector::new(match_labels, exprs)
}

fn random_cidr(rng: &mut Rng) -> ipnet::IpNet {
    if rng.chance(40) {
        return random_v6_cidr(rng);
    }
    let prefix = *rng.pick(&[8u8, 16, 24, 32]);
    let addr = Ipv4Addr::new(
        *rng.pick(&[10u8, 192, 203]),
        rng.below(3) as u8,
        rng.below(3) as u8,
        rng.below(4) as u8,
    );
    ipnet::IpNet::V4(ipnet::Ipv4Net::new(addr, prefix).unwrap().trunc())
}

/// IPv6 CIDRs that nest: `::/0`, documentation and ULA ranges, and hosts
/// in them.
fn random_v6_cidr(rng: &mut Rng) -> ipnet::IpNet {
    let prefix = *rng.pick(&[0u8, 8, 32, 48, 64, 128]);
    let addr = Ipv6Addr::new(
        *rng.pick(&[0x2001u16, 0xfd00, 0xfe80]),
        *rng.pick(&[0x0db8u16, 0]),
        rng.below(3) as u16,
        0,
        0,
        0,
        0,
        rng.below(3) as u16,
    );
    ipnet::IpNet::V6(ipnet::Ipv6Net::new(addr, prefix).unwrap().trunc())
}

fn random_peer(rng: &mut Rng) -> Peer {
    match rng.below(4) {
        0 => {
            let cidr = random_cidr(rng);
            let except = (0..rng.below(2))
                .filter_map(|_| {
                    // An except lies inside the CIDR, so in its family.
                    let inner = match cidr {
                        ipnet::IpNet::V4(_) => random_cidr(rng),
                        ipnet::IpNet::V6(_) => random_v6_cidr(rng),
                    };
                    (cidr.contains(&inner) && inner.prefix_len() > cidr.prefix_len())
                        .then_some(inner)
                })
                .collect();
            Peer::IpBlock(IpBlock { cidr, except })
        }
        1 => Peer::Pods {
            namespace_selector: None,
            pod_selector: Some(random_selector(rng, &KEYS)),
        },
        2 => Peer::Pods {
            namespace_selector: Some(random_selector(
                rng,
                &["team", "kubernetes.io/metadata.name"],
            )),
            pod_selector: None,
        },
        _ => Peer::Pods {
            namespace_selector: Some(random_selector(
                rng,
                &["team", "kubernetes.io/metadata.name"],
            )),
            pod_selector: Some(random_selector(rng, &KEYS)),
        },
    }
}

fn random_port(rng: &mut Rng) -> PortSpec {
    let protocol = *rng.pick(&PROTOCOLS);
    match rng.below(4) {
        0 => PortSpec {
            protocol,
            port: None,
            end_port: None,
        },
        1 => PortSpec {
            protocol,
            port: Some(PortRef::Name(rng.pick(&PORT_NAMES).to_string())),
            end_port: None,
        },
        2 => {
            let lo = 80 + rng.below(5) as u16;
            PortSpec {
                protocol,
                port: Some(PortRef::Number(lo)),
                end_port: Some(lo + rng.below(4) as u16),
            }
        }
        _ => PortSpec {
            protocol,
            port: Some(PortRef::Number(80 + rng.below(5) as u16)),
            end_port: None,
        },
    }
}

fn random_rules(rng: &mut Rng) -> Vec<Rule> {
    (0..rng.below(3))
        .map(|_| Rule {
            peers: (0..rng.below(3)).map(|_| random_peer(rng)).collect(),
            ports: (0..rng.below(3)).map(|_| random_port(rng)).collect(),
        })
        .collect()
}

fn random_cluster(seed: u64) -> Cluster {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut c = Cluster::default();
    for ns in NAMESPACES {
        let mut n = Namespace::implicit(ns);
        if rng.chance(50) {
            n.labels
                .insert("team".into(), rng.pick(&VALUES).to_string());
        }
        c.namespaces.insert(ns.into(), n);
    }
    for i in 0..2 + rng.below(6) {
        let pod_labels = random_labels(&mut rng);
        let ports = (0..rng.below(3))
            .map(|_| ContainerPort {
                name: Some(rng.pick(&PORT_NAMES).to_string()),
                port: 80 + rng.below(5) as u16,
                protocol: *rng.pick(&PROTOCOLS),
            })
            .collect::<Vec<_>>();
        // Container port names are unique within a pod.
        let mut seen = std::collections::BTreeSet::new();
        let ports = ports
            .into_iter()
            .filter(|p| seen.insert(p.name.clone()))
            .collect();
        c.workloads.push(Workload {
            kind: WorkloadKind::Deployment,
            namespace: rng.pick(&NAMESPACES).to_string(),
            name: format!("w{i}"),
            uid: None,
            labels: Labels::new(),
            annotations: Labels::new(),
            selector: LabelSelector::from_labels(pod_labels.clone()),
            pod_labels,
            containers: vec![Container {
                name: "c".into(),
                init: false,
                command: vec![],
                args: vec![],
                env: vec![],
                env_from: vec![],
                ports,
            }],
            pod_ips: vec![],
        });
    }
    for i in 0..rng.below(5) {
        let ingress = random_rules(&mut rng);
        let egress = random_rules(&mut rng);
        let policy_types = match rng.below(4) {
            0 => PolicyTypes::defaulted(!egress.is_empty()),
            1 => PolicyTypes {
                ingress: true,
                egress: false,
            },
            2 => PolicyTypes {
                ingress: false,
                egress: true,
            },
            _ => PolicyTypes {
                ingress: true,
                egress: true,
            },
        };
        c.policies.push(NetworkPolicy {
            namespace: rng.pick(&NAMESPACES).to_string(),
            name: format!("p{i}"),
            pod_selector: random_selector(&mut rng, &KEYS),
            policy_types,
            ingress,
            egress,
        });
    }
    c
}

/// One end of a connection, as the spec talks about it.
#[derive(Clone, Debug)]
enum End<'a> {
    Pod(&'a Workload),
    Address(IpAddr),
}

fn peer_matches(c: &Cluster, policy: &NetworkPolicy, peer: &Peer, end: &End<'_>) -> bool {
    match (peer, end) {
        (Peer::IpBlock(b), End::Address(ip)) => {
            // `IpNet::contains` is false across families.
            b.cidr.contains(ip) && !b.except.iter().any(|e| e.contains(ip))
        }
        (Peer::IpBlock(_), End::Pod(_)) | (Peer::Pods { .. }, End::Address(_)) => false,
        (
            Peer::Pods {
                namespace_selector,
                pod_selector,
            },
            End::Pod(w),
        ) => {
            let ns_ok = match namespace_selector {
                None => w.namespace == policy.namespace,
                Some(s) => s.matches(&c.namespaces[&w.namespace].labels),
            };
            ns_ok
                && pod_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&w.pod_labels))
        }
    }
}

/// Whether one (protocol, port) probe is allowed by a `ports` list towards `dst`.
fn port_matches(ports: &[PortSpec], dst: &End<'_>, protocol: Protocol, port: u16) -> bool {
    ports.is_empty()
        || ports.iter().any(|spec| {
            spec.protocol == protocol
                && match &spec.port {
                    None => true,
                    Some(PortRef::Number(n)) => (*n..=spec.end_port.unwrap_or(*n)).contains(&port),
                    Some(PortRef::Name(name)) => match dst {
                        End::Pod(w) => w.containers.iter().flat_map(|c| &c.ports).any(|p| {
                            p.name.as_deref() == Some(name.as_str())
                                && p.protocol == protocol
                                && p.port == port
                        }),
                        End::Address(_) => false,
                    },
                }
        })
}

/// The spec, read literally, for one probe.
fn naive_allowed(c: &Cluster, src: &End<'_>, dst: &End<'_>, protocol: Protocol, port: u16) -> bool {
    let direction_ok = |subject: &End<'_>, peer: &End<'_>, ingress: bool| -> bool {
        let End::Pod(w) = subject else { return true };
        let selecting: Vec<&NetworkPolicy> = c
            .policies
            .iter()
            .filter(|p| p.namespace == w.namespace && p.pod_selector.matches(&w.pod_labels))
            .filter(|p| {
                if ingress {
                    p.policy_types.ingress
                } else {
                    p.policy_types.egress
                }
            })
            .collect();
        if selecting.is_empty() {
            return true;
        }
        selecting.iter().any(|p| {
            let rules = if ingress { &p.ingress } else { &p.egress };
            rules.iter().any(|r| {
                (r.peers.is_empty()
                    || r.peers
                        .iter()
                        .any(|peer_spec| peer_matches(c, p, peer_spec, peer)))
                    && port_matches(&r.ports, dst, protocol, port)
            })
        })
    };
    direction_ok(src, dst, false) && direction_ok(dst, src, true)
}

#[test]
fn analyze_agrees_with_a_literal_reading_of_the_spec() {
    let probes: Vec<(Protocol, u16)> = PROTOCOLS
        .iter()
        .flat_map(|&p| (79..=89).map(move |n| (p, n)))
        .collect();
    for seed in 0..400 {
        let c = random_cluster(seed);
        let result = analyze(&c, &AnalyzeOptions::default());
        // Addresses at and around every ipBlock boundary, plus the extremes
        // and a few of each family, whatever the policies name.
        let mut addresses: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "8.8.8.8",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::1",
            "fd00::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for peer in c
            .policies
            .iter()
            .flat_map(|p| p.ingress.iter().chain(&p.egress))
            .flat_map(|r| &r.peers)
        {
            if let Peer::IpBlock(b) = peer {
                for net in std::iter::once(&b.cidr).chain(&b.except) {
                    match net {
                        ipnet::IpNet::V4(n) => {
                            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                            for a in [lo.saturating_sub(1), lo, hi, hi.saturating_add(1)] {
                                addresses.push(IpAddr::V4(Ipv4Addr::from(a)));
                            }
                        }
                        ipnet::IpNet::V6(n) => {
                            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                            for a in [lo.saturating_sub(1), lo, hi, hi.saturating_add(1)] {
                                addresses.push(IpAddr::V6(Ipv6Addr::from(a)));
                            }
                        }
                    }
                }
            }
        }
        let external_of = |ip: IpAddr| {
            (0..result.endpoints.len())
                .find(|&i| {
                    result.endpoints[i]
                        .addresses
                        .as_ref()
                        .is_some_and(|a| a.contains(ip))
                })
                .unwrap_or_else(|| panic!("seed {seed}: no external endpoint holds {ip}"))
        };
        let index_of: BTreeMap<String, usize> = result
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        let mut ends: Vec<(End<'_>, usize)> = c
            .workloads
            .iter()
            .map(|w| (End::Pod(w), index_of[&w.id()]))
            .collect();
        ends.extend(
            addresses
                .iter()
                .map(|&ip| (End::Address(ip), external_of(ip))),
        );
        for (src, si) in &ends {
            for (dst, di) in &ends {
                if si == di || (matches!(src, End::Address(_)) && matches!(dst, End::Address(_))) {
                    continue;
                }
                let ours = result.allowed(*si, *di);
                // `explain` indexes only the two ends' namespaces' policies:
                // its verdict must be the whole analysis's.
                let name = |end: &End<'_>| match end {
                    End::Pod(w) => w.id(),
                    End::Address(ip) => ip.to_string(),
                };
                let x =
                    explain(&c, &name(src), &name(dst), None, &AnalyzeOptions::default()).unwrap();
                assert_eq!(
                    x.allowed,
                    ours,
                    "seed {seed}: explain {} -> {}",
                    name(src),
                    name(dst)
                );
                for &(protocol, port) in &probes {
                    let expected = naive_allowed(&c, src, dst, protocol, port);
                    assert_eq!(
                        ours.allows(protocol, port),
                        expected,
                        "seed {seed}: {src:?} -> {dst:?} on {protocol}/{port}\ncluster: {c:#?}"
                    );
                }
            }
        }
    }
}

/// The policies `coverage` lists for each workload are those `explain`
/// (through the engine's index) finds isolating it, direction by direction.
#[test]
fn coverage_agrees_with_explain() {
    for seed in 0..200 {
        let c = random_cluster(seed);
        let opts = AnalyzeOptions::default();
        for cov in coverage(&c) {
            let out = explain(&c, &cov.workload, "8.8.8.8", None, &opts)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let mut egress: Vec<String> = out
                .egress
                .policies
                .iter()
                .map(|p| p.policy.clone())
                .collect();
            egress.sort();
            assert_eq!(
                cov.egress, egress,
                "seed {seed}: egress of {}",
                cov.workload
            );
            assert_eq!(out.egress.isolated, !cov.egress.is_empty(), "seed {seed}");
            let back = explain(&c, "8.8.8.8", &cov.workload, None, &opts)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let mut ingress: Vec<String> = back
                .ingress
                .policies
                .iter()
                .map(|p| p.policy.clone())
                .collect();
            ingress.sort();
            assert_eq!(
                cov.ingress, ingress,
                "seed {seed}: ingress of {}",
                cov.workload
            );
            assert_eq!(
                back.ingress.isolated,
                !cov.ingress.is_empty(),
                "seed {seed}"
            );
        }
    }
}
