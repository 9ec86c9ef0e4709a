//! From neighborhoods to NetworkPolicies: Kubescape's generation rules,
//! without its mistakes.
//!
//! For each workload one policy, named `<lowercase kind>-<name>` as
//! Kubescape names it, selecting the workload's pods with its own selector,
//! isolating both directions (`policyTypes: [Ingress, Egress]` always, so a
//! workload seen with no egress gets none), with one rule per peer:
//!
//! - pods: one rule per (namespaceSelector, podSelector), its ports merged;
//!   different selectors are never merged into one rule;
//! - DNS to the cluster resolver: the baseline's DNS rule, the same for
//!   every workload ([`crate::baseline::dns_rule`]);
//! - addresses: the longest KnownServer CIDR that contains the address,
//!   else the address itself (/32 for IPv4, /128 for IPv6 — Kubescape writes
//!   /32 for both), optionally several addresses of one DNS name collapsed
//!   into their smallest covering prefix; each recorded in a `policyRef`;
//!   ipBlock rules with the same ports are merged into one rule;
//! - `reserved:kube-apiserver`: the API server's addresses when given;
//!   `reserved:host`/`remote-node`: left out unless node peers are allowed.
//!
//! What Kubescape gets wrong and kubefence refuses: a neighbour with ports
//! but neither a selector nor an address (Kubescape's allow-any rule), a
//! neighbour without ports (every port), an empty workload selector (every
//! pod of the namespace). Each is listed in the report instead. Named ports
//! are kept where the destination declares the port by name.
//!
//! Deterministic: the same neighborhoods in any order give the same
//! policies, byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

use crate::baseline::{
    BaselineConfig, ConfigError, DnsConfig, PER_REPLICA_LABELS, RULES_ANNOTATION, dns_rule,
};
use crate::conn::Protocol;
use crate::model::{NAMESPACE_NAME_LABEL, WorkloadKind};
use crate::naming::{self, Source};
use crate::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use crate::selector::{LabelSelector, Labels};

use super::learner::{reserved_peer_name, workload_id};
use super::model::{
    Evidence, KnownServer, NeighborPeer, Neighborhood, ObservedPort, PolicyRef, ReservedPeer,
    WorkloadRef,
};
use super::report::{LearnReport, LeftOut, LeftOutReason, Widened};

/// What the builder can be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnOptions {
    /// The cluster DNS, as the baseline has it: observed DNS traffic to it
    /// becomes the baseline's DNS rule.
    pub dns: DnsConfig,
    /// The API server's addresses (the `default/kubernetes` Endpoints), for
    /// `reserved:kube-apiserver` peers. Empty: such peers are reported.
    pub api_server: Vec<IpNet>,
    /// Turn `reserved:host` / `reserved:remote-node` peers into rules to
    /// `node_addresses` (off: they are reported and left out).
    pub allow_node_peers: bool,
    pub node_addresses: Vec<IpNet>,
    /// Collapse more than this many addresses of one DNS name (and one
    /// family) into their smallest covering prefix.
    pub aggregate_external: Option<usize>,
    /// The widest prefix aggregation may write, IPv4 and IPv6: a covering
    /// prefix shorter than this is reported and the addresses kept one by
    /// one, so a name whose addresses are spread over the internet never
    /// becomes `0.0.0.0/1`.
    pub aggregate_max_v4: u8,
    pub aggregate_max_v6: u8,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            dns: BaselineConfig::default().dns,
            api_server: Vec::new(),
            allow_node_peers: false,
            node_addresses: Vec::new(),
            aggregate_external: None,
            aggregate_max_v4: 16,
            aggregate_max_v6: 48,
        }
    }
}

/// Why a rule exists, index for index with the policy's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleEvidence {
    /// What the rule's peers are (`cluster DNS`, a selector, addresses and
    /// the names that resolved to them).
    pub reason: String,
    /// How often and when it was seen; `None` when the source carries no
    /// evidence (a Kubescape NetworkNeighborhood).
    pub evidence: Option<Evidence>,
}

/// One learned policy, for review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedPolicy {
    pub workload: WorkloadRef,
    pub policy: NetworkPolicy,
    /// Kubescape's `policyRef[]`: why each ipBlock is what it is. Sorted.
    pub refs: Vec<PolicyRef>,
    pub ingress_evidence: Vec<RuleEvidence>,
    pub egress_evidence: Vec<RuleEvidence>,
    /// Ownership (`managed-by`, `source: learned`) and target labels.
    pub labels: Labels,
    /// `kubefence.dev/rules`: each rule's reason and evidence, one a line.
    pub annotations: Labels,
}

impl LearnedPolicy {
    /// What the policy means, for engines other than NetworkPolicy: its
    /// rules ([`crate::ruleset::from_network_policy`]) plus, for each
    /// egress rule whose addresses a DNS answer named, the same ports to
    /// those names ([`crate::ruleset::Endpoint::Fqdn`]: Cilium's
    /// `toFQDNs`, which follows the name when its addresses change). Names
    /// only when the workload was seen using DNS (a learned DNS rule): a
    /// name rule works only through the lookups such a rule lets Cilium's
    /// DNS proxy see, and a DNS rule that was not observed is not added.
    /// The address rules stay either way. The policy's labels and
    /// annotations come along.
    pub fn rule_set(&self) -> crate::ruleset::RuleSet {
        use crate::ruleset::{Endpoint, TrafficRule};
        let mut rules = crate::ruleset::from_network_policy(&self.policy);
        if !rules.egress.allow.iter().any(TrafficRule::is_dns) {
            rules.labels = self.labels.clone();
            rules.annotations = self.annotations.clone();
            return rules;
        }
        let mut named = Vec::new();
        for (i, rule) in self.policy.egress.iter().enumerate() {
            let names: std::collections::BTreeSet<&str> = rule
                .peers
                .iter()
                .filter_map(|p| match p {
                    crate::policy::Peer::IpBlock(b) => Some(b.cidr),
                    crate::policy::Peer::Pods { .. } => None,
                })
                .flat_map(|cidr| {
                    self.refs
                        .iter()
                        .filter(move |r| r.ip_block == cidr)
                        .filter_map(|r| r.dns.as_deref())
                })
                .collect();
            if !names.is_empty() {
                named.push(TrafficRule {
                    name: format!("egress-{i}-dns-names"),
                    peers: names
                        .into_iter()
                        .map(|n| Endpoint::Fqdn(n.to_string()))
                        .collect(),
                    ports: rule.ports.clone(),
                });
            }
        }
        rules.egress.allow.extend(named);
        rules.labels = self.labels.clone();
        rules.annotations = self.annotations.clone();
        rules
    }
}

/// The policies and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// Sorted by namespace and name.
    pub policies: Vec<LearnedPolicy>,
    pub report: LearnReport,
}

/// Builds one policy per workload of `neighborhoods`. Fails only on an
/// invalid DNS configuration; everything else that cannot become a rule is
/// in the report.
pub fn build(
    neighborhoods: &[Neighborhood],
    known_servers: &[KnownServer],
    options: &LearnOptions,
) -> Result<Learned, ConfigError> {
    let dns = DnsRule::new(&options.dns)?;
    let mut report = LearnReport::default();
    let mut policies = Vec::new();
    for (workload, merged) in merge_by_workload(neighborhoods, &mut report) {
        if let Some(policy) =
            build_one(&workload, merged, known_servers, options, &dns, &mut report)
        {
            policies.push(policy);
        }
    }
    policies.sort_by(|a, b| {
        (&a.policy.namespace, &a.policy.name).cmp(&(&b.policy.namespace, &b.policy.name))
    });
    report.sort();
    Ok(Learned { policies, report })
}

/// `Deployment` for `deployment`; kinds kubefence does not know as given.
fn canonical_kind(kind: &str) -> String {
    WorkloadKind::from_str(kind).map_or_else(|_| kind.to_string(), |k| k.as_str().to_string())
}

type Ports = BTreeSet<ObservedPort>;

/// Neighbours of one workload, merged by peer (Kubescape merges duplicate
/// neighbours by identifier; a peer is what an identifier stands for).
#[derive(Default)]
struct Merged {
    selector: Option<LabelSelector>,
    ingress: BTreeMap<NeighborPeer, (Ports, Option<Evidence>)>,
    egress: BTreeMap<NeighborPeer, (Ports, Option<Evidence>)>,
}

fn merge_by_workload(
    neighborhoods: &[Neighborhood],
    report: &mut LearnReport,
) -> BTreeMap<WorkloadRef, Merged> {
    let mut merged: BTreeMap<WorkloadRef, Merged> = BTreeMap::new();
    let mut selectors: BTreeMap<WorkloadRef, BTreeSet<LabelSelector>> = BTreeMap::new();
    for n in neighborhoods {
        let workload = WorkloadRef {
            kind: canonical_kind(&n.workload.kind),
            ..n.workload.clone()
        };
        selectors
            .entry(workload.clone())
            .or_default()
            .insert(without_per_replica(&n.selector));
        let id = workload_id(&workload);
        let m = merged.entry(workload).or_default();
        for (side, neighbors) in [(&mut m.ingress, &n.ingress), (&mut m.egress, &n.egress)] {
            for nb in neighbors {
                let peer = match &nb.peer {
                    NeighborPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } => {
                        let stripped = pod_selector.as_ref().map(without_per_replica);
                        // A selector of per-replica labels only would become
                        // `{}`: every pod of the namespaces, not the peer.
                        if stripped.as_ref().is_some_and(LabelSelector::is_empty)
                            && pod_selector.as_ref().is_some_and(|s| !s.is_empty())
                        {
                            report.left_out.push(LeftOut {
                                subject: id.clone(),
                                peer: describe(&nb.peer),
                                reason: LeftOutReason::NoStableLabels,
                                count: nb.evidence.as_ref().map_or(1, |e| e.connections.max(1)),
                            });
                            continue;
                        }
                        NeighborPeer::Pods {
                            namespace_selector: namespace_selector.clone(),
                            pod_selector: stripped,
                        }
                    }
                    other => other.clone(),
                };
                let (ports, evidence) = side.entry(peer).or_default();
                ports.extend(nb.ports.iter().cloned());
                *evidence = combine(evidence.take(), nb.evidence.clone());
            }
        }
    }
    for (workload, set) in selectors {
        // The smallest, so the choice does not depend on input order.
        let kept = set.iter().next().cloned();
        if set.len() > 1
            && let Some(kept) = &kept
        {
            report.left_out.push(LeftOut {
                subject: workload_id(&workload),
                peer: String::new(),
                reason: LeftOutReason::ConflictingSelector(kept.to_string()),
                count: (set.len() - 1) as u64,
            });
        }
        if let Some(m) = merged.get_mut(&workload) {
            m.selector = kept;
        }
    }
    merged
}

/// `selector` without the labels that differ pod by pod or run by run
/// (Kubescape copies them from the pod it saw): kept, the rule would match
/// one replica, or one run of a CronJob.
fn without_per_replica(selector: &LabelSelector) -> LabelSelector {
    let per_replica = |k: &String| PER_REPLICA_LABELS.contains(&k.as_str());
    LabelSelector::new(
        selector
            .match_labels
            .iter()
            .filter(|(k, _)| !per_replica(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        selector
            .match_expressions
            .iter()
            .filter(|r| !per_replica(&r.key))
            .cloned()
            .collect(),
    )
}

fn combine(a: Option<Evidence>, b: Option<Evidence>) -> Option<Evidence> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let pick = |x: Option<String>, y: Option<String>, earlier: bool| match (x, y) {
                (None, v) | (v, None) => v,
                (Some(x), Some(y)) => Some(if (x < y) == earlier { x } else { y }),
            };
            Some(Evidence {
                connections: a.connections + b.connections,
                first_seen: pick(a.first_seen, b.first_seen, true),
                last_seen: pick(a.last_seen, b.last_seen, false),
            })
        }
    }
}

/// The baseline's DNS rule, and how to recognise observed DNS traffic.
struct DnsRule {
    rule: Rule,
    namespaces: LabelSelector,
    pods: LabelSelector,
}

impl DnsRule {
    fn new(config: &DnsConfig) -> Result<Self, ConfigError> {
        let rule = dns_rule(config)?;
        let (namespaces, pods) = match rule.peers.first() {
            Some(Peer::Pods {
                namespace_selector,
                pod_selector,
            }) => (
                namespace_selector.clone().unwrap_or_default(),
                pod_selector.clone().unwrap_or_default(),
            ),
            _ => (LabelSelector::default(), LabelSelector::default()),
        };
        Ok(Self {
            rule,
            namespaces,
            pods,
        })
    }

    /// Whether `peer` (seen from `namespace`) names the cluster DNS: every
    /// pod it selects carries what the DNS selectors ask for.
    fn names(&self, peer: &NeighborPeer, namespace: &str) -> bool {
        let NeighborPeer::Pods {
            namespace_selector,
            pod_selector: Some(pods),
        } = peer
        else {
            return false;
        };
        let namespace_labels = match namespace_selector {
            Some(ns) if ns.match_expressions.is_empty() => ns.match_labels.clone(),
            Some(_) => return false,
            None => Labels::from([(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())]),
        };
        !self.pods.is_empty()
            && self.namespaces.matches(&namespace_labels)
            && self.pods.matches(&pods.match_labels)
    }

    fn carries(&self, port: &ObservedPort) -> bool {
        self.rule.ports.iter().any(|spec| {
            spec.protocol == port.protocol
                && match (&spec.port, spec.end_port) {
                    (None, _) => true,
                    (Some(PortRef::Number(lo)), end) => {
                        (*lo..=end.unwrap_or(*lo)).contains(&port.port)
                    }
                    (Some(PortRef::Name(_)), _) => false,
                }
        })
    }
}

/// A pod peer: (namespaceSelector, podSelector).
type PodsKey = (Option<LabelSelector>, Option<LabelSelector>);

/// ipBlocks sharing one rule: CIDRs, evidence, what they stand for.
type BlockGroup = (Vec<IpNet>, Option<Evidence>, BTreeSet<String>);

/// The rules of one direction while they are gathered, each map in the
/// order its rules are written.
#[derive(Default)]
struct Side {
    dns: Option<Option<Evidence>>,
    pods: BTreeMap<PodsKey, (Ports, Option<Evidence>)>,
    addresses: BTreeMap<IpAddr, (BTreeSet<String>, Ports, Option<Evidence>)>,
    /// ipBlocks: CIDR → ports, evidence, what it stands for.
    blocks: BTreeMap<IpNet, (Ports, Option<Evidence>, BTreeSet<String>)>,
}

fn add_block(side: &mut Side, cidr: IpNet, ports: &Ports, evidence: Option<Evidence>, why: String) {
    let (p, e, w) = side.blocks.entry(cidr.trunc()).or_default();
    p.extend(ports.iter().cloned());
    *e = combine(e.take(), evidence);
    w.insert(why);
}

fn build_one(
    workload: &WorkloadRef,
    merged: Merged,
    known_servers: &[KnownServer],
    options: &LearnOptions,
    dns: &DnsRule,
    report: &mut LearnReport,
) -> Option<LearnedPolicy> {
    let id = workload_id(workload);
    let refuse = |report: &mut LearnReport, reason: LeftOutReason| {
        report.left_out.push(LeftOut {
            subject: id.clone(),
            peer: String::new(),
            reason,
            count: 1,
        });
    };
    if workload.namespace.is_empty() {
        refuse(report, LeftOutReason::NoNamespace);
        return None;
    }
    let selector = match merged.selector {
        Some(s) if !s.is_empty() => s,
        _ => {
            refuse(report, LeftOutReason::EmptyWorkloadSelector);
            return None;
        }
    };
    let name = match naming::kind_name(&workload.kind, &workload.namespace, &workload.name) {
        Ok(name) => name,
        Err(why) => {
            refuse(report, LeftOutReason::InvalidName(why));
            return None;
        }
    };

    let mut refs = BTreeSet::new();
    let (mut ingress_side, mut egress_side) = (Side::default(), Side::default());
    for (side, neighbors, egress) in [
        (&mut ingress_side, merged.ingress, false),
        (&mut egress_side, merged.egress, true),
    ] {
        for (peer, (ports, evidence)) in neighbors {
            let left_out = |report: &mut LearnReport, reason: LeftOutReason| {
                report.left_out.push(LeftOut {
                    subject: id.clone(),
                    peer: describe(&peer),
                    reason,
                    count: evidence.as_ref().map_or(1, |e| e.connections.max(1)),
                });
            };
            if ports.is_empty() {
                left_out(report, LeftOutReason::NeighbourWithoutPorts);
                continue;
            }
            match &peer {
                NeighborPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    let given =
                        |s: &Option<LabelSelector>| s.as_ref().is_some_and(|s| !s.is_empty());
                    if !given(namespace_selector) && !given(pod_selector) {
                        left_out(report, LeftOutReason::NeighbourWithoutSelector);
                        continue;
                    }
                    let (dns_ports, other): (Ports, Ports) =
                        if egress && dns.names(&peer, &workload.namespace) {
                            ports.into_iter().partition(|p| dns.carries(p))
                        } else {
                            (Ports::new(), ports)
                        };
                    if !dns_ports.is_empty() {
                        let slot = side.dns.get_or_insert(None);
                        *slot = combine(slot.take(), evidence.clone());
                    }
                    if !other.is_empty() {
                        let (p, e) = side
                            .pods
                            .entry((namespace_selector.clone(), pod_selector.clone()))
                            .or_default();
                        p.extend(other);
                        *e = combine(e.take(), evidence);
                    }
                }
                NeighborPeer::Address { ip, dns_names } => {
                    let (names, p, e) = side.addresses.entry(*ip).or_default();
                    names.extend(dns_names.iter().cloned());
                    p.extend(ports);
                    *e = combine(e.take(), evidence);
                }
                NeighborPeer::Reserved(r) => {
                    let cidrs = match r {
                        ReservedPeer::KubeApiserver if options.api_server.is_empty() => {
                            left_out(report, LeftOutReason::NoApiServerAddress);
                            continue;
                        }
                        ReservedPeer::KubeApiserver => &options.api_server,
                        ReservedPeer::Host | ReservedPeer::RemoteNode
                            if !options.allow_node_peers =>
                        {
                            left_out(report, LeftOutReason::NodePeer);
                            continue;
                        }
                        ReservedPeer::Host | ReservedPeer::RemoteNode
                            if options.node_addresses.is_empty() =>
                        {
                            left_out(report, LeftOutReason::NoNodeAddress);
                            continue;
                        }
                        ReservedPeer::Host | ReservedPeer::RemoteNode => &options.node_addresses,
                    };
                    for cidr in cidrs {
                        add_block(
                            side,
                            *cidr,
                            &ports,
                            evidence.clone(),
                            reserved_peer_name(*r).to_string(),
                        );
                    }
                }
            }
        }
        place_addresses(side, &id, known_servers, options, &mut refs, report);
    }

    let (ingress, ingress_evidence) = rules(ingress_side, dns);
    let (egress, egress_evidence) = rules(egress_side, dns);
    let mut note = Vec::new();
    for (dir, evidence) in [("ingress", &ingress_evidence), ("egress", &egress_evidence)] {
        for (i, r) in evidence.iter().enumerate() {
            note.push(format!("{dir}[{i}]: {}", describe_evidence(r)));
        }
    }
    let mut labels: Labels = naming::ownership_labels(Source::Learned)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // Label values are short and plain; a kind or name that cannot be one
    // is in the policy name and the annotation anyway.
    for (key, value) in [
        (
            naming::TARGET_KIND_LABEL,
            workload.kind.to_ascii_lowercase(),
        ),
        (naming::TARGET_NAME_LABEL, workload.name.clone()),
    ] {
        if crate::validation::label_value(&value).is_empty() {
            labels.insert(key.to_string(), value);
        }
    }
    Some(LearnedPolicy {
        workload: workload.clone(),
        policy: NetworkPolicy {
            namespace: workload.namespace.clone(),
            name,
            pod_selector: selector,
            policy_types: PolicyTypes {
                ingress: true,
                egress: true,
            },
            ingress,
            egress,
        },
        refs: refs.into_iter().collect(),
        ingress_evidence,
        egress_evidence,
        labels,
        annotations: Labels::from([(RULES_ANNOTATION.to_string(), note.join("\n"))]),
    })
}

fn describe(peer: &NeighborPeer) -> String {
    match peer {
        NeighborPeer::Pods {
            namespace_selector,
            pod_selector,
        } => {
            let show =
                |s: &Option<LabelSelector>| s.as_ref().map_or("-".to_string(), |s| s.to_string());
            format!(
                "namespaces {} pods {}",
                show(namespace_selector),
                show(pod_selector)
            )
        }
        NeighborPeer::Address { ip, dns_names } if dns_names.is_empty() => ip.to_string(),
        NeighborPeer::Address { ip, dns_names } => format!(
            "{ip} ({})",
            dns_names.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        NeighborPeer::Reserved(r) => reserved_peer_name(*r).to_string(),
    }
}

fn describe_evidence(r: &RuleEvidence) -> String {
    match &r.evidence {
        None => r.reason.clone(),
        Some(e) => {
            let mut s = format!("{}: {} connection(s)", r.reason, e.connections);
            if let Some(first) = &e.first_seen {
                s.push_str(&format!(", first seen {first}"));
            }
            if let Some(last) = &e.last_seen {
                s.push_str(&format!(", last seen {last}"));
            }
            s
        }
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// The smallest prefix covering every address (all of one family).
fn covering_prefix(addrs: &BTreeSet<IpAddr>) -> Option<IpNet> {
    let (first, last) = (addrs.first()?, addrs.last()?);
    let (len, base) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            (u32::from(*a) ^ u32::from(*b)).leading_zeros() as u8,
            *first,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (
            (u128::from(*a) ^ u128::from(*b)).leading_zeros() as u8,
            *first,
        ),
        _ => return None,
    };
    IpNet::new(base, len).ok().map(|n| n.trunc())
}

/// Turns the side's addresses into ipBlocks: KnownServer CIDRs first, then
/// aggregation by DNS name, then single addresses.
fn place_addresses(
    side: &mut Side,
    workload: &str,
    known_servers: &[KnownServer],
    options: &LearnOptions,
    refs: &mut BTreeSet<PolicyRef>,
    report: &mut LearnReport,
) {
    let addresses = std::mem::take(&mut side.addresses);
    let mut pending: BTreeMap<IpAddr, (BTreeSet<String>, Ports, Option<Evidence>)> =
        BTreeMap::new();
    for (ip, (names, ports, evidence)) in addresses {
        // The longest (most specific) KnownServer CIDR; ties by entry, so
        // the choice does not depend on input order.
        let server = known_servers
            .iter()
            .filter(|k| k.ip_block.contains(&ip))
            .max_by(|a, b| {
                (a.ip_block.prefix_len(), &b.object, &b.name, &b.server).cmp(&(
                    b.ip_block.prefix_len(),
                    &a.object,
                    &a.name,
                    &a.server,
                ))
            });
        match server {
            Some(k) => {
                let cidr = k.ip_block.trunc();
                refs.insert(PolicyRef {
                    ip_block: cidr,
                    original_ip: ip,
                    dns: names.first().cloned(),
                    name: Some(k.name.clone()),
                    server: Some(k.server.clone()),
                });
                add_block(side, cidr, &ports, evidence, format!("{} ({})", k.name, ip));
            }
            None => {
                pending.insert(ip, (names, ports, evidence));
            }
        }
    }

    if let Some(limit) = options.aggregate_external {
        let mut by_name: BTreeMap<(&String, bool), BTreeSet<IpAddr>> = BTreeMap::new();
        for (ip, (names, _, _)) in &pending {
            for name in names {
                by_name.entry((name, ip.is_ipv4())).or_default().insert(*ip);
            }
        }
        let mut collapsed: BTreeMap<IpAddr, (IpNet, String)> = BTreeMap::new();
        for ((name, v4), addrs) in by_name {
            let addrs: BTreeSet<IpAddr> = addrs
                .into_iter()
                .filter(|a| !collapsed.contains_key(a))
                .collect();
            if addrs.len() <= limit {
                continue;
            }
            let Some(covering) = covering_prefix(&addrs) else {
                continue;
            };
            let widest = if v4 {
                options.aggregate_max_v4
            } else {
                options.aggregate_max_v6
            };
            let allowed = covering.prefix_len() >= widest;
            report.widened.push(Widened {
                workload: workload.to_string(),
                dns: name.clone(),
                addresses: addrs.clone(),
                prefix: allowed.then_some(covering),
                covering,
            });
            if allowed {
                for a in addrs {
                    collapsed.insert(a, (covering, name.clone()));
                }
            }
        }
        for (ip, (cidr, name)) in collapsed {
            if let Some((_, ports, evidence)) = pending.remove(&ip) {
                refs.insert(PolicyRef {
                    ip_block: cidr,
                    original_ip: ip,
                    dns: Some(name.clone()),
                    name: Some(name.clone()),
                    server: None,
                });
                add_block(side, cidr, &ports, evidence, format!("{name} ({ip})"));
            }
        }
    }

    for (ip, (names, ports, evidence)) in pending {
        let cidr = host_net(ip);
        let why = match names.first() {
            Some(name) => {
                refs.insert(PolicyRef {
                    ip_block: cidr,
                    original_ip: ip,
                    dns: Some(name.clone()),
                    name: Some(name.clone()),
                    server: None,
                });
                format!(
                    "{ip} ({})",
                    names.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            }
            None => ip.to_string(),
        };
        add_block(side, cidr, &ports, evidence, why);
    }
}

/// One port entry per (protocol, port): by name where the destination
/// declares one, else by number.
fn port_specs(ports: &Ports) -> Vec<PortSpec> {
    let mut by_number: BTreeMap<(Protocol, u16), Option<&String>> = BTreeMap::new();
    for p in ports {
        let slot = by_number.entry((p.protocol, p.port)).or_default();
        if slot.is_none() {
            *slot = p.name.as_ref();
        }
    }
    let mut specs: Vec<PortSpec> = by_number
        .into_iter()
        .map(|((protocol, port), name)| PortSpec {
            protocol,
            port: Some(match name {
                Some(n) => PortRef::Name(n.clone()),
                None => PortRef::Number(port),
            }),
            end_port: None,
        })
        .collect();
    // Two numbers may share a name only if the destination declares it
    // twice; the rule then needs the name once.
    specs.dedup();
    specs
}

/// The side's rules in order (DNS, pods, ipBlocks) with their evidence.
fn rules(side: Side, dns: &DnsRule) -> (Vec<Rule>, Vec<RuleEvidence>) {
    let mut rules = Vec::new();
    let mut evidence = Vec::new();
    if let Some(e) = side.dns {
        rules.push(dns.rule.clone());
        evidence.push(RuleEvidence {
            reason: "cluster DNS".to_string(),
            evidence: e,
        });
    }
    for ((namespace_selector, pod_selector), (ports, e)) in side.pods {
        let peer = NeighborPeer::Pods {
            namespace_selector: namespace_selector.clone(),
            pod_selector: pod_selector.clone(),
        };
        rules.push(Rule {
            peers: vec![Peer::Pods {
                namespace_selector,
                pod_selector,
            }],
            ports: port_specs(&ports),
        });
        evidence.push(RuleEvidence {
            reason: describe(&peer),
            evidence: e,
        });
    }
    // ipBlocks with the same ports share one rule (Kubescape's merge).
    let mut by_ports: BTreeMap<Ports, BlockGroup> = BTreeMap::new();
    for (cidr, (ports, e, why)) in side.blocks {
        let (cidrs, ev, reasons) = by_ports.entry(ports).or_default();
        cidrs.push(cidr);
        *ev = combine(ev.take(), e);
        reasons.extend(why);
    }
    for (ports, (cidrs, e, why)) in by_ports {
        rules.push(Rule {
            peers: cidrs
                .into_iter()
                .map(|cidr| {
                    Peer::IpBlock(IpBlock {
                        cidr,
                        except: Vec::new(),
                    })
                })
                .collect(),
            ports: port_specs(&ports),
        });
        evidence.push(RuleEvidence {
            reason: why.into_iter().collect::<Vec<_>>().join(", "),
            evidence: e,
        });
    }
    (rules, evidence)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::learn::model::Neighbor;

    fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector::from_labels(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn tcp(ports: &[u16]) -> Ports {
        ports
            .iter()
            .map(|&port| ObservedPort {
                protocol: Protocol::Tcp,
                port,
                name: None,
            })
            .collect()
    }

    fn pods(ns: Option<&[(&str, &str)]>, pod: Option<&[(&str, &str)]>, ports: Ports) -> Neighbor {
        Neighbor {
            peer: NeighborPeer::Pods {
                namespace_selector: ns.map(sel),
                pod_selector: pod.map(sel),
            },
            ports,
            evidence: None,
        }
    }

    fn addr(ip: IpAddr, dns: &[&str], ports: Ports) -> Neighbor {
        Neighbor {
            peer: NeighborPeer::Address {
                ip,
                dns_names: dns.iter().map(|s| s.to_string()).collect(),
            },
            ports,
            evidence: None,
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn nginx(ingress: Vec<Neighbor>, egress: Vec<Neighbor>) -> Neighborhood {
        Neighborhood {
            workload: WorkloadRef {
                kind: "deployment".into(),
                namespace: "default".into(),
                name: "nginx".into(),
            },
            selector: sel(&[("app", "nginx")]),
            ingress,
            egress,
        }
    }

    fn learn_one(n: Neighborhood, known: &[KnownServer], options: &LearnOptions) -> Learned {
        build(&[n], known, options).unwrap()
    }

    fn only(l: &Learned) -> &LearnedPolicy {
        assert_eq!(l.policies.len(), 1, "{:?}", l.report);
        &l.policies[0]
    }

    fn cidrs(rule: &Rule) -> Vec<String> {
        rule.peers
            .iter()
            .map(|p| match p {
                Peer::IpBlock(b) => b.cidr.to_string(),
                Peer::Pods { .. } => "pods".to_string(),
            })
            .collect()
    }

    fn numbers(rule: &Rule) -> Vec<String> {
        rule.ports.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn k3_both_directions_always_isolated_and_named_as_kubescape_does() {
        let l = learn_one(nginx(vec![], vec![]), &[], &LearnOptions::default());
        let p = &only(&l).policy;
        assert_eq!(p.name, "deployment-nginx");
        assert_eq!(p.namespace, "default");
        assert_eq!(p.pod_selector, sel(&[("app", "nginx")]));
        assert!(p.policy_types.ingress && p.policy_types.egress);
        assert!(p.ingress.is_empty() && p.egress.is_empty());
    }

    #[test]
    fn k4_k10_k11_k12_pod_peers_one_rule_per_selector_with_ports_merged() {
        let l = learn_one(
            nginx(
                vec![pods(None, Some(&[("app", "web")]), tcp(&[80, 80]))],
                vec![
                    pods(None, Some(&[("app", "redis")]), tcp(&[6379])),
                    pods(None, Some(&[("app", "redis")]), tcp(&[6379, 6380])),
                    pods(None, Some(&[("app", "postgres")]), tcp(&[6379])),
                ],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        assert_eq!(p.ingress.len(), 1);
        assert_eq!(
            p.ingress[0].peers,
            vec![Peer::Pods {
                namespace_selector: None,
                pod_selector: Some(sel(&[("app", "web")]))
            }]
        );
        assert_eq!(numbers(&p.ingress[0]), ["TCP/80"]);
        assert_eq!(p.egress.len(), 2, "redis and postgres are not merged");
        let redis = p
            .egress
            .iter()
            .find(|r| {
                r.peers
                    == vec![Peer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(sel(&[("app", "redis")])),
                    }]
            })
            .unwrap();
        assert_eq!(numbers(redis), ["TCP/6379", "TCP/6380"]);
    }

    #[test]
    fn k5_k8_k9_addresses_are_host_blocks_with_ports_merged_and_ipv6_is_128() {
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let l = learn_one(
            nginx(
                vec![
                    addr(v4(10, 0, 0, 1), &[], tcp(&[80, 443])),
                    addr(v4(10, 0, 0, 1), &[], tcp(&[90, 443])),
                    addr(v4(10, 0, 0, 2), &[], tcp(&[8081])),
                ],
                vec![addr(v6, &[], tcp(&[8080]))],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        assert_eq!(p.ingress.len(), 2);
        let first = p
            .ingress
            .iter()
            .find(|r| cidrs(r) == ["10.0.0.1/32"])
            .unwrap();
        assert_eq!(numbers(first), ["TCP/80", "TCP/90", "TCP/443"]);
        assert_eq!(
            cidrs(&p.egress[0]),
            ["2001:db8::1/128"],
            "not /32 as Kubescape writes"
        );
    }

    #[test]
    fn k6_k7_known_servers_widen_to_the_longest_cidr_and_dns_names_are_recorded() {
        let known = [
            KnownServer {
                object: "ks".into(),
                name: "corp".into(),
                server: "corp.example".into(),
                ip_block: "10.0.0.0/8".parse().unwrap(),
            },
            KnownServer {
                object: "ks".into(),
                name: "lab".into(),
                server: "lab.example".into(),
                ip_block: "10.1.0.0/16".parse().unwrap(),
            },
        ];
        let l = learn_one(
            nginx(
                vec![addr(v4(10, 1, 2, 3), &[], tcp(&[80]))],
                vec![addr(v4(192, 168, 1, 1), &["example.com"], tcp(&[80]))],
            ),
            &known,
            &LearnOptions::default(),
        );
        let lp = only(&l);
        assert_eq!(cidrs(&lp.policy.ingress[0]), ["10.1.0.0/16"]);
        assert_eq!(cidrs(&lp.policy.egress[0]), ["192.168.1.1/32"]);
        assert_eq!(
            lp.refs,
            vec![
                PolicyRef {
                    ip_block: "10.1.0.0/16".parse().unwrap(),
                    original_ip: v4(10, 1, 2, 3),
                    dns: None,
                    name: Some("lab".into()),
                    server: Some("lab.example".into()),
                },
                PolicyRef {
                    ip_block: "192.168.1.1/32".parse().unwrap(),
                    original_ip: v4(192, 168, 1, 1),
                    dns: Some("example.com".into()),
                    name: Some("example.com".into()),
                    server: None,
                },
            ]
        );
    }

    #[test]
    fn k13_ipblock_rules_with_the_same_ports_merge_and_never_with_pod_rules() {
        let l = learn_one(
            nginx(
                vec![
                    addr(v4(10, 0, 0, 1), &[], tcp(&[80])),
                    addr(v4(10, 0, 0, 2), &[], tcp(&[80])),
                    addr(v4(10, 0, 0, 3), &[], tcp(&[81])),
                    pods(None, Some(&[("app", "web")]), tcp(&[80])),
                ],
                vec![],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        let shapes: Vec<Vec<String>> = p.ingress.iter().map(cidrs).collect();
        assert_eq!(
            shapes,
            vec![
                vec!["pods".to_string()],
                vec!["10.0.0.1/32".to_string(), "10.0.0.2/32".to_string()],
                vec!["10.0.0.3/32".to_string()],
            ]
        );
    }

    #[test]
    fn a_neighbour_without_selector_or_address_is_refused_not_allow_any() {
        let l = learn_one(
            nginx(
                vec![
                    pods(None, None, tcp(&[80])),
                    pods(None, Some(&[]), tcp(&[81])),
                    pods(None, Some(&[("app", "web")]), tcp(&[])),
                ],
                vec![],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        assert!(p.ingress.is_empty(), "{:?}", p.ingress);
        let reasons: Vec<&LeftOutReason> = l.report.left_out.iter().map(|x| &x.reason).collect();
        assert_eq!(
            reasons
                .iter()
                .filter(|r| ***r == LeftOutReason::NeighbourWithoutSelector)
                .count(),
            2
        );
        assert!(reasons.contains(&&LeftOutReason::NeighbourWithoutPorts));
    }

    #[test]
    fn an_empty_workload_selector_or_a_bad_name_gives_no_policy_and_an_error() {
        let mut n = nginx(vec![], vec![]);
        n.selector = sel(&[("pod-template-hash", "abc")]);
        let l = learn_one(n, &[], &LearnOptions::default());
        assert!(l.policies.is_empty());
        assert!(l.report.has_errors());
        let mut n = nginx(vec![], vec![]);
        n.workload.name = "Bad_Name".into();
        let l = learn_one(n, &[], &LearnOptions::default());
        assert!(l.policies.is_empty());
        assert!(l.report.has_errors());
    }

    #[test]
    fn per_replica_labels_are_stripped_from_peer_selectors() {
        let l = learn_one(
            nginx(
                vec![pods(
                    None,
                    Some(&[("app", "web"), ("pod-template-hash", "5d8f7c9b6")]),
                    tcp(&[80]),
                )],
                vec![],
            ),
            &[],
            &LearnOptions::default(),
        );
        assert_eq!(
            only(&l).policy.ingress[0].peers,
            vec![Peer::Pods {
                namespace_selector: None,
                pod_selector: Some(sel(&[("app", "web")]))
            }]
        );
    }

    #[test]
    fn a_peer_selected_only_by_per_replica_labels_is_refused_not_widened() {
        let l = learn_one(
            nginx(
                vec![pods(
                    Some(&[(NAMESPACE_NAME_LABEL, "other")]),
                    Some(&[("pod-template-hash", "5d8f7c9b6")]),
                    tcp(&[80]),
                )],
                vec![],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        assert!(
            p.ingress.is_empty(),
            "not every pod of the namespace: {:?}",
            p.ingress
        );
        assert!(
            l.report
                .left_out
                .iter()
                .any(|x| x.reason == LeftOutReason::NoStableLabels),
            "{:?}",
            l.report
        );
    }

    #[test]
    fn named_ports_are_used_where_the_destination_names_them() {
        let ports: Ports = [ObservedPort {
            protocol: Protocol::Tcp,
            port: 8080,
            name: Some("http".into()),
        }]
        .into();
        let l = learn_one(
            nginx(vec![pods(None, Some(&[("app", "web")]), ports)], vec![]),
            &[],
            &LearnOptions::default(),
        );
        assert_eq!(
            only(&l).policy.ingress[0].ports,
            vec![PortSpec {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Name("http".into())),
                end_port: None
            }]
        );
    }

    #[test]
    fn dns_to_kube_dns_is_the_baselines_dns_rule() {
        let dns_ports: Ports = [ObservedPort {
            protocol: Protocol::Udp,
            port: 53,
            name: None,
        }]
        .into_iter()
        .chain(tcp(&[9153]))
        .collect();
        let l = learn_one(
            nginx(
                vec![],
                vec![pods(
                    Some(&[(NAMESPACE_NAME_LABEL, "kube-system")]),
                    Some(&[("k8s-app", "kube-dns")]),
                    dns_ports,
                )],
            ),
            &[],
            &LearnOptions::default(),
        );
        let p = &only(&l).policy;
        let baseline = dns_rule(&BaselineConfig::default().dns).unwrap();
        assert_eq!(p.egress[0], baseline);
        assert_eq!(
            numbers(&p.egress[1]),
            ["TCP/9153"],
            "the metrics port stays a rule of its own"
        );
    }

    #[test]
    fn the_api_server_needs_its_addresses_and_node_peers_need_permission() {
        let reserved = |r| Neighbor {
            peer: NeighborPeer::Reserved(r),
            ports: tcp(&[443]),
            evidence: None,
        };
        let n = nginx(
            vec![reserved(ReservedPeer::Host)],
            vec![reserved(ReservedPeer::KubeApiserver)],
        );
        let l = learn_one(n.clone(), &[], &LearnOptions::default());
        let p = &only(&l).policy;
        assert!(p.ingress.is_empty() && p.egress.is_empty());
        let reasons: Vec<&LeftOutReason> = l.report.left_out.iter().map(|x| &x.reason).collect();
        assert!(reasons.contains(&&LeftOutReason::NodePeer), "{reasons:?}");
        assert!(
            reasons.contains(&&LeftOutReason::NoApiServerAddress),
            "{reasons:?}"
        );

        let options = LearnOptions {
            api_server: vec!["192.168.0.1/32".parse().unwrap()],
            allow_node_peers: true,
            node_addresses: vec!["192.168.0.0/24".parse().unwrap()],
            ..LearnOptions::default()
        };
        let l = learn_one(n, &[], &options);
        let p = &only(&l).policy;
        assert_eq!(cidrs(&p.ingress[0]), ["192.168.0.0/24"]);
        assert_eq!(cidrs(&p.egress[0]), ["192.168.0.1/32"]);
    }

    #[test]
    fn aggregation_collapses_many_addresses_of_a_name_but_never_too_wide() {
        let many: Vec<Neighbor> = (1..=4)
            .map(|i| addr(v4(203, 0, 113, i * 10), &["cdn.example"], tcp(&[443])))
            .chain([
                addr(v4(1, 1, 1, 1), &["spread.example"], tcp(&[443])),
                addr(v4(200, 1, 1, 1), &["spread.example"], tcp(&[443])),
                addr(v4(9, 9, 9, 9), &["single.example"], tcp(&[443])),
            ])
            .collect();
        let options = LearnOptions {
            aggregate_external: Some(1),
            ..LearnOptions::default()
        };
        let l = learn_one(nginx(vec![], many), &[], &options);
        let p = &only(&l).policy;
        assert_eq!(
            cidrs(&p.egress[0]),
            ["1.1.1.1/32", "9.9.9.9/32", "200.1.1.1/32", "203.0.113.0/26"]
        );
        let widened: Vec<(&str, Option<String>)> = l
            .report
            .widened
            .iter()
            .map(|w| (w.dns.as_str(), w.prefix.map(|p| p.to_string())))
            .collect();
        assert_eq!(
            widened,
            [
                ("cdn.example", Some("203.0.113.0/26".to_string())),
                ("spread.example", None)
            ]
        );
    }

    fn arb_neighbor() -> impl Strategy<Value = Neighbor> {
        let peer = prop_oneof![
            (0..3u8, proptest::option::of(0..2u8)).prop_map(|(app, ns)| NeighborPeer::Pods {
                namespace_selector: ns.map(|n| sel(&[(NAMESPACE_NAME_LABEL, &format!("ns{n}"))])),
                pod_selector: Some(sel(&[("app", &format!("a{app}"))])),
            }),
            (0..4u8, proptest::option::of(0..2u8)).prop_map(|(d, name)| NeighborPeer::Address {
                ip: v4(203, 0, 113, d),
                dns_names: name.map(|n| format!("n{n}.example")).into_iter().collect(),
            }),
        ];
        (peer, proptest::collection::btree_set(1..5u16, 1..3)).prop_map(|(peer, ports)| Neighbor {
            peer,
            ports: ports
                .into_iter()
                .map(|port| ObservedPort {
                    protocol: Protocol::Tcp,
                    port,
                    name: None,
                })
                .collect(),
            evidence: Some(Evidence {
                connections: 1,
                first_seen: Some(format!("t{port}", port = 1)),
                last_seen: None,
            }),
        })
    }

    fn arb_hood() -> impl Strategy<Value = Neighborhood> {
        (
            0..3u8,
            proptest::collection::vec(arb_neighbor(), 0..5),
            proptest::collection::vec(arb_neighbor(), 0..5),
        )
            .prop_map(|(w, ingress, egress)| Neighborhood {
                workload: WorkloadRef {
                    kind: if w % 2 == 0 {
                        "Deployment"
                    } else {
                        "deployment"
                    }
                    .into(),
                    namespace: "ns0".into(),
                    name: format!("w{w}"),
                },
                selector: sel(&[("app", &format!("a{w}"))]),
                ingress,
                egress,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_same_neighborhoods_in_any_order_give_the_same_policies(
            hoods in proptest::collection::vec(arb_hood(), 0..5),
            seed in any::<u64>(),
        ) {
            let options = LearnOptions { aggregate_external: Some(1), ..LearnOptions::default() };
            let once = build(&hoods, &[], &options).unwrap();
            // Shuffle the neighborhoods and every neighbour list.
            let mut shuffled = hoods.clone();
            let mut state = seed;
            let mut next = |n: usize| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as usize % n.max(1)
            };
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, next(i + 1));
            }
            for h in &mut shuffled {
                for list in [&mut h.ingress, &mut h.egress] {
                    for i in (1..list.len()).rev() {
                        list.swap(i, next(i + 1));
                    }
                }
            }
            let again = build(&shuffled, &[], &options).unwrap();
            prop_assert_eq!(once, again);
        }
    }
}
