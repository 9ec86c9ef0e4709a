//! A neutral rule set: what a policy means, before an engine writes it.
//!
//! ```text
//!  quarantine plan ─┐                          ┌─▶ NetworkPolicy          (core lowering here,
//!  intent catalogue ├─▶ RuleSet ──(adapters)───┼─▶ CiliumNetworkPolicy     rendered by
//!  isolation profile┘                          ├─▶ ClusterNetworkPolicy    kubefence-k8s)
//!                                              ├─▶ AdminNetworkPolicy
//!                                              └─▶ KubeArmorPolicy
//! ```
//!
//! Semantics of one direction ([`Traffic`]) for the subject's pods: a
//! connection that matches a `deny` rule is refused; otherwise one that
//! matches an `allow` rule is allowed; otherwise it is refused when the
//! direction is `isolate`d and left to the cluster's other policies when it
//! is not. This is Cilium's (deny wins over allow) and what an
//! AdminNetworkPolicy expresses with denies first; NetworkPolicy can say it
//! only in the shapes [`to_network_policy`] accepts, and says why not for
//! the rest ([`Unsupported`]).
//!
//! Like NetworkPolicy, a rule set never touches the traffic between a pod
//! and its own node (kubelet probes): an ingress `All` peer means every
//! source but the local node.
//!
//! Process and file rules ([`PathRule`]) are for KubeArmor; the network
//! engines ignore them, and KubeArmor ignores the traffic rules. An engine
//! that finds nothing it can express in a rule set reports that
//! ([`Engine::expresses`]), so "Unsupported" is never silent.

#[cfg(test)]
mod tests;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::NAMESPACE_NAME_LABEL;
use crate::policy::{self, IpBlock, NetworkPolicy, Peer, PolicyTypes, PortSpec};
use crate::selector::{LabelSelector, Labels};

/// The engines kubefence writes policies for.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Engine {
    /// networking.k8s.io/v1 NetworkPolicy: every CNI that enforces policy.
    #[default]
    NetworkPolicy,
    /// cilium.io/v2 CiliumNetworkPolicy.
    Cilium,
    /// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy
    /// (network-policy-api v0.2.0).
    ClusterNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy (removed
    /// upstream in favour of ClusterNetworkPolicy; kept for CNIs that still
    /// implement only it).
    AdminNetworkPolicy,
    /// security.kubearmor.com/v1 KubeArmorPolicy (process and file rules).
    KubeArmor,
}

impl Engine {
    pub const ALL: [Engine; 5] = [
        Self::NetworkPolicy,
        Self::Cilium,
        Self::ClusterNetworkPolicy,
        Self::AdminNetworkPolicy,
        Self::KubeArmor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "networkpolicy",
            Self::Cilium => "cilium",
            Self::ClusterNetworkPolicy => "clusternetworkpolicy",
            Self::AdminNetworkPolicy => "adminnetworkpolicy",
            Self::KubeArmor => "kubearmor",
        }
    }

    /// The kind of object this engine writes.
    pub fn object_kind(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::Cilium => "CiliumNetworkPolicy",
            Self::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Self::AdminNetworkPolicy => "AdminNetworkPolicy",
            Self::KubeArmor => "KubeArmorPolicy",
        }
    }

    /// The engine that writes objects of `kind`.
    pub fn from_object_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.object_kind() == kind)
    }

    /// Cluster-scoped objects (their name must carry the namespace).
    pub fn cluster_scoped(self) -> bool {
        matches!(self, Self::ClusterNetworkPolicy | Self::AdminNetworkPolicy)
    }

    /// Whether the engine enforces network traffic (else process/file).
    pub fn is_network(self) -> bool {
        self != Self::KubeArmor
    }

    /// Whether the rule set has anything this engine is about: traffic
    /// rules for the network engines, process or file rules for KubeArmor.
    pub fn expresses(self, rules: &RuleSet) -> bool {
        if self.is_network() {
            rules.has_traffic()
        } else {
            !rules.process.is_empty() || !rules.file.is_empty()
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "networkpolicy" | "netpol" => Ok(Self::NetworkPolicy),
            "cilium" | "ciliumnetworkpolicy" => Ok(Self::Cilium),
            "clusternetworkpolicy" | "cnp" => Ok(Self::ClusterNetworkPolicy),
            "adminnetworkpolicy" | "anp" => Ok(Self::AdminNetworkPolicy),
            "kubearmor" | "kubearmorpolicy" => Ok(Self::KubeArmor),
            _ => Err(format!(
                "unknown engine {s:?} (expected networkpolicy, cilium, clusternetworkpolicy, adminnetworkpolicy or kubearmor)"
            )),
        }
    }
}

/// Enforce (block) or only report (KubeArmor's Audit; the network engines
/// have no per-policy audit mode).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// Which namespaces a pod peer is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Namespaces {
    /// The subject's own namespace.
    Own,
    /// One namespace, by name.
    Named(String),
    /// Namespaces by label; an empty selector means every namespace.
    Selector(LabelSelector),
}

/// A peer of a traffic rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    /// Everything: every pod and every address (on ingress, every source
    /// but the pod's own node).
    All,
    /// Pods of some namespaces; `None` means every pod of them.
    Pods {
        namespaces: Namespaces,
        pods: Option<LabelSelector>,
    },
    /// Addresses (outside the cluster; how pod addresses inside a CIDR are
    /// treated is engine-specific, as for NetworkPolicy ipBlocks).
    Cidr(IpBlock),
    /// A DNS name (`api.example.com`) or pattern (`*.example.com`), egress.
    Fqdn(String),
}

impl Endpoint {
    /// Every pod of every namespace.
    pub fn all_pods() -> Self {
        Self::Pods {
            namespaces: Namespaces::Selector(LabelSelector::everything()),
            pods: None,
        }
    }

    pub fn cidr(cidr: IpNet) -> Self {
        Self::Cidr(IpBlock {
            cidr,
            except: Vec::new(),
        })
    }
}

/// One rule: any of `peers`, on any of `ports` (empty: every port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrafficRule {
    /// A short identifier (engines with named rules show it).
    pub name: String,
    /// Never empty: "everything" is [`Endpoint::All`], said explicitly.
    pub peers: Vec<Endpoint>,
    pub ports: Vec<PortSpec>,
}

impl TrafficRule {
    /// Whether the rule is a DNS rule: only port 53, whatever the
    /// protocol (Cilium's DNS proxy sees the lookups such a rule allows,
    /// which its `toFQDNs` rules need).
    pub fn is_dns(&self) -> bool {
        !self.ports.is_empty()
            && self
                .ports
                .iter()
                .all(|p| p.port == Some(crate::policy::PortRef::Number(53)) && p.end_port.is_none())
    }
}

/// The rules of one direction; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Traffic {
    pub isolate: bool,
    pub allow: Vec<TrafficRule>,
    pub deny: Vec<TrafficRule>,
}

impl Traffic {
    /// True when the direction changes nothing.
    pub fn is_unrestricted(&self) -> bool {
        !self.isolate && self.allow.is_empty() && self.deny.is_empty()
    }
}

/// A process or file path rule (KubeArmor `matchPaths` /
/// `matchDirectories`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PathRule {
    pub path: String,
    /// A directory (`path` ends in `/`), optionally with what is below it.
    pub directory: bool,
    pub recursive: bool,
    /// Files: block writes only, reads stay allowed.
    pub read_only: bool,
}

impl PathRule {
    pub fn path(path: &str) -> Self {
        Self {
            path: path.to_string(),
            directory: false,
            recursive: false,
            read_only: false,
        }
    }
}

/// What one policy means, engine-neutral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// The name of a namespaced object.
    pub name: String,
    /// The name of a cluster-scoped object (it must carry the namespace).
    pub cluster_name: String,
    /// The subject's namespace.
    pub namespace: String,
    /// The subject's pods in it; never empty (see [`RuleSetError`]).
    pub subject: LabelSelector,
    pub ingress: Traffic,
    pub egress: Traffic,
    pub process: Vec<PathRule>,
    pub file: Vec<PathRule>,
    pub enforcement: Enforcement,
    /// A prefix for rule names in engines with named rules.
    pub rule_prefix: String,
    /// Free text some engines carry (KubeArmor `message`).
    pub message: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
}

impl RuleSet {
    pub fn has_traffic(&self) -> bool {
        !self.ingress.is_unrestricted() || !self.egress.is_unrestricted()
    }

    pub fn traffic(&self, direction: policy::Direction) -> &Traffic {
        match direction {
            policy::Direction::Ingress => &self.ingress,
            policy::Direction::Egress => &self.egress,
        }
    }

    /// Refuses what no engine may write: a subject selecting every pod of
    /// the namespace, or a rule without peers.
    pub fn check(&self) -> Result<(), RuleSetError> {
        if self.subject.is_empty() {
            return Err(RuleSetError::EmptySubject {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
            });
        }
        for direction in [policy::Direction::Ingress, policy::Direction::Egress] {
            let t = self.traffic(direction);
            if let Some(r) = t.allow.iter().chain(&t.deny).find(|r| r.peers.is_empty()) {
                return Err(RuleSetError::NoPeers {
                    name: self.name.clone(),
                    rule: r.name.clone(),
                });
            }
            if direction == policy::Direction::Ingress
                && t.allow
                    .iter()
                    .chain(&t.deny)
                    .any(|r| r.peers.iter().any(|p| matches!(p, Endpoint::Fqdn(_))))
            {
                return Err(RuleSetError::IngressFqdn {
                    name: self.name.clone(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    #[error(
        "{name}: the subject selector is empty, so the policy would select every pod of namespace {namespace}; refusing"
    )]
    EmptySubject { name: String, namespace: String },
    #[error("{name}: rule {rule:?} has no peers (say Endpoint::All for everything)")]
    NoPeers { name: String, rule: String },
    #[error("{name}: a DNS name can only be an egress destination")]
    IngressFqdn { name: String },
}

/// Why an engine cannot write (part of) a rule set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{engine}: {reason}")]
pub struct Unsupported {
    pub engine: Engine,
    pub reason: String,
}

impl Unsupported {
    pub fn new(engine: Engine, reason: impl Into<String>) -> Self {
        Self {
            engine,
            reason: reason.into(),
        }
    }
}

/// Options of the NetworkPolicy lowering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicyOptions {
    /// Directions another policy written with this one already isolates:
    /// an allow-only direction then adds to that isolation instead of
    /// creating it (a NetworkPolicy that allows also isolates).
    pub isolated_elsewhere: PolicyTypes,
}

/// The rule set as one NetworkPolicy, when NetworkPolicy can say it.
///
/// NetworkPolicy has no deny and no names, and a policy that allows in a
/// direction also isolates the pods in it. So per direction:
/// - unrestricted: not in policyTypes;
/// - isolated: the allow rules, from which deny rules made only of CIDRs
///   (without ports) are cut out as `except`s;
/// - not isolated, deny of CIDRs only, no allow: the same as isolating
///   with "allow everything but those CIDRs";
/// - not isolated with allow rules: only when `isolated_elsewhere` says
///   another policy written with it isolates that direction;
/// - anything else (deny by pod, by port; DNS names): [`Unsupported`].
pub fn to_network_policy(
    rules: &RuleSet,
    opts: &NetworkPolicyOptions,
) -> Result<NetworkPolicy, Unsupported> {
    let unsupported = |reason: String| Unsupported::new(Engine::NetworkPolicy, reason);
    if rules.enforcement == Enforcement::Audit {
        return Err(unsupported(
            "NetworkPolicy has no audit mode; use action Enforce".into(),
        ));
    }
    if !rules.has_traffic() {
        return Err(unsupported("the intent has no network rules".into()));
    }
    let mut out = NetworkPolicy {
        namespace: rules.namespace.clone(),
        name: rules.name.clone(),
        pod_selector: rules.subject.clone(),
        policy_types: PolicyTypes::default(),
        ingress: Vec::new(),
        egress: Vec::new(),
    };
    for direction in [policy::Direction::Ingress, policy::Direction::Egress] {
        let traffic = rules.traffic(direction);
        if traffic.is_unrestricted() {
            continue;
        }
        let elsewhere = match direction {
            policy::Direction::Ingress => opts.isolated_elsewhere.ingress,
            policy::Direction::Egress => opts.isolated_elsewhere.egress,
        };
        let denied = denied_cidrs(traffic)
            .map_err(|reason| unsupported(format!("{direction}: {reason}")))?;
        let allow: Vec<TrafficRule> = if traffic.isolate || elsewhere {
            traffic.allow.clone()
        } else if traffic.allow.is_empty() {
            // Only CIDR denies: "everything but these addresses".
            vec![TrafficRule {
                name: "all-but-denied".into(),
                peers: vec![Endpoint::All],
                ports: Vec::new(),
            }]
        } else {
            return Err(unsupported(format!(
                "{direction}: a NetworkPolicy that allows also isolates the pods, so this allow would cut off all other {direction} traffic; bind it together with an intent that isolates {direction} (for example isolateNamespace), or use an engine with real allow rules"
            )));
        };
        let mut lowered = Vec::new();
        for rule in &allow {
            lowered.push(lower_rule(rule, &denied).map_err(|reason| {
                unsupported(format!("{direction} rule {}: {reason}", rule.name))
            })?);
        }
        // A rule whose peers were all cut away allows nothing: drop it
        // rather than write a rule without peers (which allows everything).
        lowered.retain(|r: &policy::Rule| !r.peers.is_empty());
        match direction {
            policy::Direction::Ingress => {
                out.policy_types.ingress = true;
                out.ingress = lowered;
            }
            policy::Direction::Egress => {
                out.policy_types.egress = true;
                out.egress = lowered;
            }
        }
    }
    Ok(out)
}

/// The CIDRs the deny rules refuse, when every deny rule is CIDRs only and
/// without ports (the one deny NetworkPolicy can express, as `except`).
fn denied_cidrs(traffic: &Traffic) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for rule in &traffic.deny {
        if !rule.ports.is_empty() {
            return Err(format!(
                "deny rule {} has ports; NetworkPolicy cannot deny by port",
                rule.name
            ));
        }
        for peer in &rule.peers {
            match peer {
                Endpoint::Cidr(b) if b.except.is_empty() => out.push(b.cidr.trunc()),
                _ => {
                    return Err(format!(
                        "deny rule {} names pods or names; NetworkPolicy has no deny (policies only add allows)",
                        rule.name
                    ));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn lower_rule(rule: &TrafficRule, denied: &[IpNet]) -> Result<policy::Rule, String> {
    let mut peers = Vec::new();
    for endpoint in &rule.peers {
        match endpoint {
            Endpoint::All => {
                peers.push(Peer::Pods {
                    namespace_selector: Some(LabelSelector::everything()),
                    pod_selector: None,
                });
                for cidr in ["0.0.0.0/0", "::/0"] {
                    if let Ok(net) = cidr.parse::<IpNet>() {
                        peers.extend(cut(
                            IpBlock {
                                cidr: net,
                                except: Vec::new(),
                            },
                            denied,
                        ));
                    }
                }
            }
            Endpoint::Pods { namespaces, pods } => peers.push(pod_peer(namespaces, pods.as_ref())),
            Endpoint::Cidr(block) => peers.extend(cut(block.clone(), denied)),
            Endpoint::Fqdn(name) => {
                return Err(format!(
                    "NetworkPolicy matches addresses, not DNS names ({name}); use the cilium engine (toFQDNs)"
                ));
            }
        }
    }
    Ok(policy::Rule {
        peers,
        ports: rule.ports.clone(),
    })
}

/// `block` minus the denied CIDRs: nested ones become `except`s, one that
/// covers the block removes it.
fn cut(mut block: IpBlock, denied: &[IpNet]) -> Option<Peer> {
    for d in denied {
        if d.contains(&block.cidr) {
            return None;
        }
        if block.cidr.contains(d) && !block.except.iter().any(|e| e.contains(d)) {
            block.except.push(*d);
        }
    }
    block.except.sort();
    Some(Peer::IpBlock(block))
}

/// A pod peer as NetworkPolicy writes it: a named namespace becomes a
/// selector on `kubernetes.io/metadata.name`.
pub fn pod_peer(namespaces: &Namespaces, pods: Option<&LabelSelector>) -> Peer {
    let namespace_selector = match namespaces {
        Namespaces::Own => None,
        Namespaces::Named(n) => Some(namespace_name_selector(n)),
        Namespaces::Selector(s) => Some(s.clone()),
    };
    let pod_selector = match (&namespace_selector, pods) {
        (_, Some(p)) => Some(p.clone()),
        // Own namespace, every pod: `podSelector: {}`.
        (None, None) => Some(LabelSelector::everything()),
        (Some(_), None) => None,
    };
    Peer::Pods {
        namespace_selector,
        pod_selector,
    }
}

/// A NetworkPolicy as a rule set, so that another engine can write what
/// it means (the inverse of [`to_network_policy`]): a direction in
/// `policyTypes` isolates, each rule is an allow, a rule without peers
/// allows everything ([`Endpoint::All`]), a peer without
/// `namespaceSelector` is in the policy's namespace. The name of rule `i`
/// is `ingress-i` / `egress-i`. A rule set made so always passes
/// [`RuleSet::check`] but for an empty `podSelector`, which selects every
/// pod of the namespace and is refused there as everywhere.
pub fn from_network_policy(policy: &NetworkPolicy) -> RuleSet {
    let traffic = |isolate: bool, rules: &[policy::Rule], direction: &str| Traffic {
        isolate,
        allow: rules
            .iter()
            .enumerate()
            .map(|(i, rule)| TrafficRule {
                name: format!("{direction}-{i}"),
                peers: if rule.peers.is_empty() {
                    vec![Endpoint::All]
                } else {
                    rule.peers.iter().map(endpoint_of_peer).collect()
                },
                ports: rule.ports.clone(),
            })
            .collect(),
        deny: Vec::new(),
    };
    RuleSet {
        name: policy.name.clone(),
        cluster_name: format!("{}-{}", policy.namespace, policy.name),
        namespace: policy.namespace.clone(),
        subject: policy.pod_selector.clone(),
        ingress: traffic(policy.policy_types.ingress, &policy.ingress, "ingress"),
        egress: traffic(policy.policy_types.egress, &policy.egress, "egress"),
        process: Vec::new(),
        file: Vec::new(),
        enforcement: Enforcement::Enforce,
        rule_prefix: String::new(),
        message: None,
        labels: Labels::new(),
        annotations: Labels::new(),
    }
}

fn endpoint_of_peer(peer: &Peer) -> Endpoint {
    match peer {
        Peer::Pods {
            namespace_selector,
            pod_selector,
        } => Endpoint::Pods {
            namespaces: namespace_selector
                .clone()
                .map_or(Namespaces::Own, Namespaces::Selector),
            // Every pod of the namespaces, said as NetworkPolicy says it
            // (`podSelector: {}` or no podSelector) or not.
            pods: pod_selector.clone().filter(|s| !s.is_empty()),
        },
        Peer::IpBlock(block) => Endpoint::Cidr(block.clone()),
    }
}

/// `kubernetes.io/metadata.name: <name>`.
pub fn namespace_name_selector(name: &str) -> LabelSelector {
    LabelSelector::from_labels(Labels::from([(
        NAMESPACE_NAME_LABEL.to_string(),
        name.to_string(),
    )]))
}
