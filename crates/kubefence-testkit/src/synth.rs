//! Seeded generators of synthetic clusters.
//!
//! A [`SynthCluster`] keeps what a manifest says, not what it means: an
//! omitted `policyTypes`, `from: []` versus no `from`, a port without a
//! protocol. [`crate::yaml::to_yaml`] writes it as Kubernetes manifests and
//! [`crate::build::to_cluster`] builds the core model from it directly (with
//! the API server's defaulting), so the engine can be checked against an
//! oracle that reads the YAML.
//!
//! Two profiles:
//! - [`small_random`]: tiny clusters that use every NetworkPolicy feature, for
//!   differential testing against network-config-analyzer;
//! - [`scaled`]: large, realistic clusters for benchmarks.

use std::collections::BTreeSet;

use kubefence_core::Protocol;
use kubefence_core::WorkloadKind;
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A whole synthetic cluster, in manifest terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthCluster {
    pub namespaces: Vec<SynthNamespace>,
    pub workloads: Vec<SynthWorkload>,
    pub services: Vec<SynthService>,
    pub policies: Vec<SynthPolicy>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthNamespace {
    pub name: String,
    /// Declared labels (the automatic `kubernetes.io/metadata.name` is added
    /// by the API server, not written here).
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// A workload with one container; its selector is its pod labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthWorkload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub pod_labels: Labels,
    pub ports: Vec<SynthPort>,
}

impl SynthWorkload {
    /// `namespace/Kind/name`, as the engine names endpoints.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthServicePort {
    pub name: String,
    pub port: u16,
    /// `targetPort` by container port name; when `None`, `target_number`.
    pub target_name: Option<String>,
    /// The numeric target (also what the named target resolves to).
    pub target_number: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthService {
    pub namespace: String,
    pub name: String,
    pub selector: Labels,
    pub ports: Vec<SynthServicePort>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `None`: `policyTypes` omitted (API server defaulting applies).
    pub policy_types: Option<Vec<PolicyTypeName>>,
    /// `None`: the field is absent; `Some(vec![])`: `ingress: []`.
    pub ingress: Option<Vec<SynthRule>>,
    pub egress: Option<Vec<SynthRule>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyTypeName {
    Ingress,
    Egress,
}

impl PolicyTypeName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "Ingress",
            Self::Egress => "Egress",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthRule {
    /// `from`/`to`: `None` absent, `Some(vec![])` written as `[]`.
    pub peers: Option<Vec<SynthPeer>>,
    /// `None` absent, `Some(vec![])` written as `ports: []`.
    pub ports: Option<Vec<SynthPortSpec>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SynthPeer {
    Pods {
        namespace_selector: Option<LabelSelector>,
        pod_selector: Option<LabelSelector>,
    },
    /// An IPv4 or IPv6 block; `except` entries lie strictly inside `cidr`
    /// (so in its family), as the API server requires.
    IpBlock {
        cidr: ipnet::IpNet,
        except: Vec<ipnet::IpNet>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SynthPortRef {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthPortSpec {
    /// `None`: omitted (TCP).
    pub protocol: Option<Protocol>,
    pub port: Option<SynthPortRef>,
    pub end_port: Option<u16>,
}

// === small_random ===

const NAMESPACE_NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const NS_LABELS: [(&str, &[&str]); 2] = [("env", &["prod", "dev", "test"]), ("team", &["x", "y"])];
const POD_LABELS: [(&str, &[&str]); 3] = [
    ("app", &["a", "b", "c"]),
    ("tier", &["web", "db"]),
    ("role", &["x", "y"]),
];
const PORT_NAMES: [&str; 5] = ["http", "dns", "metrics", "db", "grpc"];
const PORT_NUMBERS: [u16; 8] = [53, 80, 443, 1000, 5432, 8080, 9090, 65535];

/// A small random cluster that exercises every NetworkPolicy feature, for
/// differential testing. Deterministic for a seed.
///
/// Feature combinations that network-config-analyzer (2.1.0) reads
/// differently from upstream Kubernetes are never generated; each is named
/// here and in the crate docs:
///
/// - **`egress: []` with `policyTypes` omitted.** The API server defaults
///   policyTypes to `[Ingress]` (it adds Egress only when `len(egress) > 0`);
///   nca adds Egress whenever the `egress` key is present, isolating egress.
/// - **`ingress`/`egress` present while `policyTypes` lacks that direction.**
///   Valid upstream (the rules are ignored); nca rejects the policy as a
///   syntax error.
/// - **Exists/DoesNotExist in a peer's podSelector combined with a
///   namespaceSelector.** nca evaluates those two operators against the
///   policy's own namespace only (`get_peers_with_key(self.namespace, ..)`),
///   so pods of the selected namespaces are missed; In/NotIn/matchLabels are
///   fine there, and Exists/DoesNotExist are generated everywhere else.
/// - Workload names are unique per namespace across kinds (nca folds pods by
///   namespace + workload name + labels).
pub fn small_random(seed: u64) -> SynthCluster {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = SynthCluster::default();

    let ns_count = rng.random_range(2..=4);
    for name in NAMESPACE_NAMES.iter().take(ns_count) {
        let mut labels = Labels::new();
        for (key, values) in NS_LABELS {
            if rng.random_bool(0.6) {
                labels.insert(key.to_string(), pick(&mut rng, values).to_string());
            }
        }
        c.namespaces.push(SynthNamespace {
            name: name.to_string(),
            labels,
        });
    }
    let ns_names: Vec<String> = c.namespaces.iter().map(|n| n.name.clone()).collect();

    let wl_count = rng.random_range(2..=6);
    for i in 0..wl_count {
        let kind = match rng.random_range(0..20) {
            0..=8 => WorkloadKind::Deployment,
            9..=11 => WorkloadKind::StatefulSet,
            12 => WorkloadKind::DaemonSet,
            13 => WorkloadKind::ReplicaSet,
            14 => WorkloadKind::Job,
            15 => WorkloadKind::CronJob,
            _ => WorkloadKind::Pod,
        };
        let mut pod_labels = Labels::new();
        pod_labels.insert("app".into(), pick(&mut rng, POD_LABELS[0].1).to_string());
        for (key, values) in &POD_LABELS[1..] {
            if rng.random_bool(0.5) {
                pod_labels.insert(key.to_string(), pick(&mut rng, values).to_string());
            }
        }
        let mut ports = Vec::new();
        let mut names: Vec<&str> = PORT_NAMES.to_vec();
        for _ in 0..rng.random_range(0..=3) {
            let name = if rng.random_bool(0.8) && !names.is_empty() {
                let at = rng.random_range(0..names.len());
                Some(names.remove(at).to_string())
            } else {
                None
            };
            ports.push(SynthPort {
                name,
                port: *pick(&mut rng, &PORT_NUMBERS),
                protocol: random_protocol(&mut rng),
            });
        }
        c.workloads.push(SynthWorkload {
            kind,
            namespace: pick(&mut rng, &ns_names).clone(),
            name: format!("w{i}"),
            pod_labels,
            ports,
        });
    }

    let policy_count = rng.random_range(1..=5);
    for i in 0..policy_count {
        let namespace = pick(&mut rng, &ns_names).clone();
        let pod_selector = if rng.random_bool(0.3) {
            LabelSelector::everything()
        } else {
            random_selector(&mut rng, &POD_LABELS, true)
        };
        let policy_types = match rng.random_range(0..4) {
            0 => None,
            1 => Some(vec![PolicyTypeName::Ingress]),
            2 => Some(vec![PolicyTypeName::Egress]),
            _ => Some(vec![PolicyTypeName::Ingress, PolicyTypeName::Egress]),
        };
        let has = |t: PolicyTypeName| policy_types.as_ref().is_none_or(|v| v.contains(&t));
        let ingress = if has(PolicyTypeName::Ingress) {
            random_rules(&mut rng, &ns_names, true)
        } else {
            None // nca quirk: no `ingress` key unless policyTypes has Ingress.
        };
        let egress = if has(PolicyTypeName::Egress) {
            let rules = random_rules(&mut rng, &ns_names, true);
            if policy_types.is_none() && rules.as_ref().is_some_and(Vec::is_empty) {
                None // nca quirk: `egress: []` with policyTypes omitted.
            } else {
                rules
            }
        } else {
            None
        };
        c.policies.push(SynthPolicy {
            namespace,
            name: format!("p{i}"),
            pod_selector,
            policy_types,
            ingress,
            egress,
        });
    }
    c
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // Every vocabulary here is a non-empty constant.
    &items[rng.random_range(0..items.len())]
}

fn random_protocol(rng: &mut StdRng) -> Protocol {
    match rng.random_range(0..6) {
        0..=2 => Protocol::Tcp,
        3 | 4 => Protocol::Udp,
        _ => Protocol::Sctp,
    }
}

/// A non-trivial (maybe still empty) selector over a vocabulary.
/// `existence` allows Exists/DoesNotExist.
fn random_selector(
    rng: &mut StdRng,
    vocabulary: &[(&str, &[&str])],
    existence: bool,
) -> LabelSelector {
    let mut match_labels = Labels::new();
    let (labels, exprs) = match rng.random_range(0..10) {
        0..=3 => (1, 0),
        4..=6 => (0, 1),
        7 | 8 => (1, 1),
        _ => (0, 2),
    };
    for _ in 0..labels {
        let (key, values) = pick(rng, vocabulary);
        match_labels.insert(key.to_string(), pick(rng, values).to_string());
    }
    let mut expressions = Vec::new();
    for _ in 0..exprs {
        let (key, values) = pick(rng, vocabulary);
        let op = match rng.random_range(0..if existence { 4 } else { 2 }) {
            0 => Operator::In,
            1 => Operator::NotIn,
            2 => Operator::Exists,
            _ => Operator::DoesNotExist,
        };
        let vals: BTreeSet<String> = match op {
            Operator::In | Operator::NotIn => (0..rng.random_range(1..=2))
                .map(|_| pick(rng, values).to_string())
                .collect(),
            _ => BTreeSet::new(),
        };
        if let Ok(req) = Requirement::new(key.to_string(), op, vals) {
            expressions.push(req);
        }
    }
    LabelSelector::new(match_labels, expressions)
}

fn namespace_selector(rng: &mut StdRng, ns_names: &[String]) -> LabelSelector {
    match rng.random_range(0..5) {
        0 => LabelSelector::everything(),
        1 => {
            // By the automatic name label.
            let name = pick(rng, ns_names).clone();
            LabelSelector::from_labels(Labels::from([(
                kubefence_core::model::NAMESPACE_NAME_LABEL.to_string(),
                name,
            )]))
        }
        _ => random_selector(rng, &NS_LABELS, true),
    }
}

fn random_rules(
    rng: &mut StdRng,
    ns_names: &[String],
    allow_empty: bool,
) -> Option<Vec<SynthRule>> {
    match rng.random_range(0..10) {
        0 => None,
        1 if allow_empty => Some(Vec::new()),
        _ => Some(
            (0..rng.random_range(1..=3))
                .map(|_| random_rule(rng, ns_names))
                .collect(),
        ),
    }
}

fn random_rule(rng: &mut StdRng, ns_names: &[String]) -> SynthRule {
    let peers = match rng.random_range(0..10) {
        0 | 1 => None,
        2 => Some(Vec::new()),
        _ => Some(
            (0..rng.random_range(1..=2))
                .map(|_| random_peer(rng, ns_names))
                .collect(),
        ),
    };
    let ports = match rng.random_range(0..10) {
        0..=2 => None,
        3 => Some(Vec::new()),
        _ => Some(
            (0..rng.random_range(1..=3))
                .map(|_| random_port_spec(rng))
                .collect(),
        ),
    };
    SynthRule { peers, ports }
}

fn random_peer(rng: &mut StdRng, ns_names: &[String]) -> SynthPeer {
    match rng.random_range(0..10) {
        0..=2 => SynthPeer::Pods {
            namespace_selector: Some(namespace_selector(rng, ns_names)),
            pod_selector: None,
        },
        3..=5 => SynthPeer::Pods {
            namespace_selector: None,
            pod_selector: Some(if rng.random_bool(0.2) {
                LabelSelector::everything()
            } else {
                random_selector(rng, &POD_LABELS, true)
            }),
        },
        6 | 7 => SynthPeer::Pods {
            namespace_selector: Some(namespace_selector(rng, ns_names)),
            // nca quirk: no Exists/DoesNotExist in a podSelector next to a
            // namespaceSelector.
            pod_selector: Some(if rng.random_bool(0.2) {
                LabelSelector::everything()
            } else {
                random_selector(rng, &POD_LABELS, false)
            }),
        },
        _ => random_ip_block(rng),
    }
}

fn random_ip_block(rng: &mut StdRng) -> SynthPeer {
    if rng.random_bool(0.35) {
        return random_v6_block(rng);
    }
    let prefix: u8 = if rng.random_bool(0.15) {
        0
    } else {
        rng.random_range(8..=28)
    };
    let random_addr = rng_addr(rng);
    let addr: u32 = *pick(
        rng,
        &[0x0a00_0000u32, 0xc0a8_0000, 0xac10_0000, random_addr],
    );
    let cidr = v4net(addr, prefix);
    let mut except = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        let sub = (prefix + rng.random_range(1..=8)).min(32);
        let size_bits = 32 - u32::from(prefix);
        let offset = if size_bits == 0 {
            rng_addr(rng)
        } else {
            rng.random_range(0..(1u64 << size_bits)) as u32
        };
        let base = u32::from(cidr.network()).wrapping_add(offset);
        except.push(ipnet::IpNet::V4(v4net(base, sub)));
    }
    except.sort();
    except.dedup();
    SynthPeer::IpBlock {
        cidr: ipnet::IpNet::V4(cidr),
        except,
    }
}

/// An IPv6 block: all of IPv6, or a documentation, unique-local or
/// link-local range (or a random one), with up to two exceptions inside.
fn random_v6_block(rng: &mut StdRng) -> SynthPeer {
    let prefix: u8 = if rng.random_bool(0.2) {
        0
    } else {
        rng.random_range(8..=120)
    };
    let random_addr: u128 = rng.random();
    let addr: u128 = *pick(
        rng,
        &[
            0x2001_0db8_u128 << 96,
            0xfd00_u128 << 112,
            0xfe80_u128 << 112,
            random_addr,
        ],
    );
    let cidr = v6net(addr, prefix);
    let mut except = Vec::new();
    for _ in 0..rng.random_range(0..=2) {
        let sub = (prefix + rng.random_range(1..=16)).min(128);
        let size_bits = 128 - u32::from(prefix);
        let offset: u128 = if size_bits == 128 {
            rng.random()
        } else {
            rng.random_range(0..(1u128 << size_bits))
        };
        let base = u128::from(cidr.network()).wrapping_add(offset);
        except.push(ipnet::IpNet::V6(v6net(base, sub)));
    }
    except.sort();
    except.dedup();
    SynthPeer::IpBlock {
        cidr: ipnet::IpNet::V6(cidr),
        except,
    }
}

fn v6net(addr: u128, prefix: u8) -> ipnet::Ipv6Net {
    ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(addr), prefix.min(128))
        .map(|n| n.trunc())
        .unwrap_or_default()
}

fn rng_addr(rng: &mut StdRng) -> u32 {
    rng.random()
}

fn v4net(addr: u32, prefix: u8) -> ipnet::Ipv4Net {
    ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(addr), prefix.min(32))
        .map(|n| n.trunc())
        .unwrap_or_default()
}

fn random_port_spec(rng: &mut StdRng) -> SynthPortSpec {
    let protocol = match rng.random_range(0..5) {
        0 | 1 => None,
        _ => Some(random_protocol(rng)),
    };
    let (port, end_port) = match rng.random_range(0..10) {
        0..=3 => {
            let p = *pick(rng, &PORT_NUMBERS);
            (Some(SynthPortRef::Number(p)), None)
        }
        4 | 5 => {
            let p = *pick(rng, &PORT_NUMBERS);
            let end = p.saturating_add(rng.random_range(0..=2000));
            (Some(SynthPortRef::Number(p)), Some(end))
        }
        6..=8 => {
            let names = [PORT_NAMES.as_slice(), &["nosuch"]].concat();
            (
                Some(SynthPortRef::Name(pick(rng, &names).to_string())),
                None,
            )
        }
        _ => (None, None),
    };
    SynthPortSpec {
        protocol,
        port,
        end_port,
    }
}

// === scaled ===

const TIERS: [&str; 5] = ["web", "api", "db", "cache", "worker"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

/// The DNS namespace and workload every `scaled` cluster has, on top of the
/// requested namespaces and workloads.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_WORKLOAD: &str = "coredns";

/// Policies every `scaled` namespace has: default-deny (ingress and
/// egress), DNS egress to kube-system, and egress within the namespace.
pub const PER_NAMESPACE_POLICIES: usize = 3;

/// A realistic cluster for benchmarks: `workloads` Deployments/StatefulSets
/// spread over `namespaces` labelled namespaces, a Service per workload,
/// [`PER_NAMESPACE_POLICIES`] policies per namespace (default-deny, DNS
/// egress to kube-system, egress within the namespace), and per-workload
/// policies with pod-selector (named port), namespace-selector and ipBlock
/// (with `except` and endPort ranges) ingress rules and selector/ipBlock
/// egress rules, so that the total is `ceil(0.44 * workloads)` policies when
/// that exceeds the per-namespace ones (440 for 1,000 workloads in 20
/// namespaces). `kube-system` with a `coredns` Deployment is added (not
/// counted in `workloads`).
pub fn scaled(workloads: usize, namespaces: usize, seed: u64) -> SynthCluster {
    scaled_with(&ScaledProfile {
        workloads,
        namespaces,
        seed,
        ..ScaledProfile::default()
    })
}

/// The knobs of [`scaled_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaledProfile {
    pub workloads: usize,
    pub namespaces: usize,
    pub seed: u64,
    /// Every n-th namespace (the 3rd, 6th, ...) has no default-deny policy,
    /// so its pods accept ingress from anywhere; `None`: every namespace
    /// has one.
    pub open_namespace_every: Option<usize>,
    /// Policies in total per 100 workloads, when that exceeds the
    /// per-namespace ones (44: [`scaled`]).
    pub policies_per_100_workloads: usize,
}

impl Default for ScaledProfile {
    fn default() -> Self {
        Self {
            workloads: 1000,
            namespaces: 20,
            seed: 1,
            open_namespace_every: None,
            policies_per_100_workloads: 44,
        }
    }
}

/// [`scaled`] with more knobs: namespaces without default deny, and the
/// number of policies. The benchmark of issue 13 is 100,000 workloads in
/// 25,000 namespaces, every third namespace open, 75 policies per 100
/// workloads (about 75,000 policies).
pub fn scaled_with(profile: &ScaledProfile) -> SynthCluster {
    let ScaledProfile {
        workloads,
        namespaces,
        seed,
        open_namespace_every,
        policies_per_100_workloads,
    } = *profile;
    let mut rng = StdRng::seed_from_u64(seed);
    let namespaces = namespaces.max(1);
    let mut c = SynthCluster::default();
    c.namespaces.push(SynthNamespace {
        name: DNS_NAMESPACE.into(),
        labels: Labels::new(),
    });
    c.workloads.push(SynthWorkload {
        kind: WorkloadKind::Deployment,
        namespace: DNS_NAMESPACE.into(),
        name: DNS_WORKLOAD.into(),
        pod_labels: Labels::from([("k8s-app".to_string(), "kube-dns".to_string())]),
        ports: vec![
            SynthPort {
                name: Some("dns".into()),
                port: 53,
                protocol: Protocol::Udp,
            },
            SynthPort {
                name: Some("dns-tcp".into()),
                port: 53,
                protocol: Protocol::Tcp,
            },
        ],
    });
    let ns_names: Vec<String> = (0..namespaces).map(|i| format!("ns-{i:03}")).collect();
    for (i, name) in ns_names.iter().enumerate() {
        c.namespaces.push(SynthNamespace {
            name: name.clone(),
            labels: Labels::from([
                ("team".to_string(), format!("team-{}", i % 7)),
                ("env".to_string(), ENVS[i % ENVS.len()].to_string()),
            ]),
        });
    }

    // Workloads, round-robin over namespaces.
    let mut by_ns: Vec<Vec<usize>> = vec![Vec::new(); namespaces];
    for i in 0..workloads {
        let ns = i % namespaces;
        let tier = TIERS[rng.random_range(0..TIERS.len())];
        let name = format!("{tier}-{i:05}");
        let kind = if tier == "db" {
            WorkloadKind::StatefulSet
        } else {
            WorkloadKind::Deployment
        };
        let mut ports = vec![
            SynthPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            SynthPort {
                name: Some("metrics".into()),
                port: 9090,
                protocol: Protocol::Tcp,
            },
        ];
        if rng.random_bool(0.2) {
            ports.push(SynthPort {
                name: Some("grpc".into()),
                port: 50051,
                protocol: Protocol::Tcp,
            });
        }
        if rng.random_bool(0.1) {
            ports.push(SynthPort {
                name: Some("stats".into()),
                port: 8125,
                protocol: Protocol::Udp,
            });
        }
        by_ns[ns].push(c.workloads.len());
        c.workloads.push(SynthWorkload {
            kind,
            namespace: ns_names[ns].clone(),
            name: name.clone(),
            pod_labels: Labels::from([
                ("app".to_string(), name.clone()),
                ("tier".to_string(), tier.to_string()),
                (
                    "version".to_string(),
                    format!("v{}", rng.random_range(1..=3)),
                ),
            ]),
            ports,
        });
        c.services.push(SynthService {
            namespace: ns_names[ns].clone(),
            name: name.clone(),
            selector: Labels::from([("app".to_string(), name)]),
            ports: vec![SynthServicePort {
                name: "http".into(),
                port: 80,
                target_name: Some("http".into()),
                target_number: 8080,
                protocol: Protocol::Tcp,
            }],
        });
    }

    // Per-namespace policies.
    let mut per_namespace = 0;
    for (i, ns) in ns_names.iter().enumerate() {
        let open = open_namespace_every.is_some_and(|n| n > 0 && (i + 1) % n == 0);
        if !open {
            c.policies.push(SynthPolicy {
                namespace: ns.clone(),
                name: "default-deny".into(),
                pod_selector: LabelSelector::everything(),
                policy_types: Some(vec![PolicyTypeName::Ingress, PolicyTypeName::Egress]),
                ingress: None,
                egress: None,
            });
        }
        c.policies.push(SynthPolicy {
            namespace: ns.clone(),
            name: "allow-dns".into(),
            pod_selector: LabelSelector::everything(),
            policy_types: Some(vec![PolicyTypeName::Egress]),
            ingress: None,
            egress: Some(vec![SynthRule {
                peers: Some(vec![SynthPeer::Pods {
                    namespace_selector: Some(LabelSelector::from_labels(Labels::from([(
                        kubefence_core::model::NAMESPACE_NAME_LABEL.to_string(),
                        DNS_NAMESPACE.to_string(),
                    )]))),
                    pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )]))),
                }]),
                ports: Some(vec![
                    port_spec(Some(Protocol::Udp), 53, None),
                    port_spec(Some(Protocol::Tcp), 53, None),
                ]),
            }]),
        });
        c.policies.push(SynthPolicy {
            namespace: ns.clone(),
            name: "allow-egress-in-namespace".into(),
            pod_selector: LabelSelector::everything(),
            policy_types: Some(vec![PolicyTypeName::Egress]),
            ingress: None,
            egress: Some(vec![SynthRule {
                peers: Some(vec![SynthPeer::Pods {
                    namespace_selector: None,
                    pod_selector: Some(LabelSelector::everything()),
                }]),
                ports: None,
            }]),
        });
        per_namespace += if open {
            PER_NAMESPACE_POLICIES - 1
        } else {
            PER_NAMESPACE_POLICIES
        };
    }

    // Per-workload policies: about 0.44 per workload in total by default.
    let target_total = (workloads * policies_per_100_workloads).div_ceil(100);
    let per_workload = target_total.saturating_sub(per_namespace).min(workloads);
    let app_workloads: Vec<usize> = (1..c.workloads.len()).collect();
    let chosen: Vec<usize> = {
        let mut all = app_workloads.clone();
        // Partial Fisher-Yates: the first `per_workload` are a random sample.
        for i in 0..per_workload {
            let j = rng.random_range(i..all.len());
            all.swap(i, j);
        }
        all.truncate(per_workload);
        all.sort_unstable();
        all
    };
    for wi in chosen {
        let w = c.workloads[wi].clone();
        let ns_index = ns_names.iter().position(|n| *n == w.namespace).unwrap_or(0);
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        // Same-namespace callers by tier, on the named port.
        let caller_tier = TIERS[rng.random_range(0..TIERS.len())];
        ingress.push(SynthRule {
            peers: Some(vec![SynthPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::new(
                    Labels::from([("tier".to_string(), caller_tier.to_string())]),
                    vec![],
                )),
            }]),
            ports: Some(vec![SynthPortSpec {
                protocol: Some(Protocol::Tcp),
                port: Some(SynthPortRef::Name("http".into())),
                end_port: None,
            }]),
        });
        if rng.random_bool(0.5) {
            // Callers from other teams' namespaces.
            let team = format!("team-{}", rng.random_range(0..7));
            let expr = Requirement::new("tier", Operator::In, ["web", "api"]).ok();
            ingress.push(SynthRule {
                peers: Some(vec![SynthPeer::Pods {
                    namespace_selector: Some(LabelSelector::from_labels(Labels::from([(
                        "team".to_string(),
                        team,
                    )]))),
                    pod_selector: Some(LabelSelector::new(
                        Labels::new(),
                        expr.into_iter().collect(),
                    )),
                }]),
                ports: Some(vec![port_spec(Some(Protocol::Tcp), 8080, None)]),
            });
        }
        if rng.random_bool(0.3) {
            // Monitoring from every namespace of an environment.
            let expr = Requirement::new("env", Operator::NotIn, ["dev"]).ok();
            ingress.push(SynthRule {
                peers: Some(vec![SynthPeer::Pods {
                    namespace_selector: Some(LabelSelector::new(
                        Labels::new(),
                        expr.into_iter().collect(),
                    )),
                    pod_selector: None,
                }]),
                ports: Some(vec![SynthPortSpec {
                    protocol: None,
                    port: Some(SynthPortRef::Name("metrics".into())),
                    end_port: None,
                }]),
            });
        }
        if rng.random_bool(0.4) {
            // External clients on a port range.
            let second = rng.random_range(0..=255u32);
            let cidr = v4net(0x0a00_0000 | (second << 16), 16);
            let except = vec![ipnet::IpNet::V4(v4net(
                u32::from(cidr.network()) | (rng.random_range(0..=255u32) << 8),
                24,
            ))];
            let cidr = ipnet::IpNet::V4(cidr);
            let lo = 30000 + rng.random_range(0..100u16) * 10;
            ingress.push(SynthRule {
                peers: Some(vec![SynthPeer::IpBlock { cidr, except }]),
                ports: Some(vec![port_spec(Some(Protocol::Tcp), lo, Some(lo + 99))]),
            });
        }
        // Egress: to a dependency's Service target in some namespace.
        let dep_ns = if rng.random_bool(0.7) {
            ns_index
        } else {
            rng.random_range(0..namespaces)
        };
        if let Some(&dep) = by_ns[dep_ns].get(rng.random_range(0..by_ns[dep_ns].len().max(1))) {
            let d = &c.workloads[dep];
            egress.push(SynthRule {
                peers: Some(vec![SynthPeer::Pods {
                    namespace_selector: (dep_ns != ns_index).then(|| {
                        LabelSelector::from_labels(Labels::from([(
                            kubefence_core::model::NAMESPACE_NAME_LABEL.to_string(),
                            d.namespace.clone(),
                        )]))
                    }),
                    pod_selector: Some(LabelSelector::from_labels(Labels::from([(
                        "app".to_string(),
                        d.name.clone(),
                    )]))),
                }]),
                ports: Some(vec![port_spec(Some(Protocol::Tcp), 8080, None)]),
            });
        }
        if rng.random_bool(0.3) {
            // External API on HTTPS, anywhere but private ranges.
            egress.push(SynthRule {
                peers: Some(vec![SynthPeer::IpBlock {
                    cidr: ipnet::IpNet::V4(v4net(0, 0)),
                    except: [
                        v4net(0x0a00_0000, 8),
                        v4net(0xac10_0000, 12),
                        v4net(0xc0a8_0000, 16),
                    ]
                    .into_iter()
                    .map(ipnet::IpNet::V4)
                    .collect(),
                }]),
                ports: Some(vec![port_spec(Some(Protocol::Tcp), 443, None)]),
            });
        }
        let mut types = vec![PolicyTypeName::Ingress];
        if !egress.is_empty() {
            types.push(PolicyTypeName::Egress);
        }
        c.policies.push(SynthPolicy {
            namespace: w.namespace.clone(),
            name: format!("allow-{}", w.name),
            pod_selector: LabelSelector::from_labels(Labels::from([(
                "app".to_string(),
                w.name.clone(),
            )])),
            policy_types: Some(types),
            ingress: Some(ingress),
            egress: (!egress.is_empty()).then_some(egress),
        });
    }
    c
}

fn port_spec(protocol: Option<Protocol>, port: u16, end_port: Option<u16>) -> SynthPortSpec {
    SynthPortSpec {
        protocol,
        port: Some(SynthPortRef::Number(port)),
        end_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic() {
        assert_eq!(small_random(7), small_random(7));
        assert_eq!(scaled(50, 5, 3), scaled(50, 5, 3));
    }

    #[test]
    fn scaled_has_about_044_policies_per_workload() {
        let c = scaled(1000, 20, 1);
        assert_eq!(c.workloads.len(), 1001);
        assert_eq!(c.policies.len(), 440);
    }

    #[test]
    fn open_namespaces_have_no_default_deny_and_the_total_holds() {
        let c = scaled_with(&ScaledProfile {
            workloads: 1200,
            namespaces: 300,
            seed: 1,
            open_namespace_every: Some(3),
            policies_per_100_workloads: 75,
        });
        let denies = c
            .policies
            .iter()
            .filter(|p| p.name == "default-deny")
            .count();
        assert_eq!(denies, 200);
        assert_eq!(c.policies.len(), 900);
        assert!(
            !c.policies
                .iter()
                .any(|p| p.name == "default-deny" && p.namespace == "ns-002")
        );
    }
}
