//! The index the engine evaluates against: endpoint classes, which policies
//! select each class, which classes each rule's peers match, and the
//! external address partition.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Range;

use crate::conn::{ConnSet, Protocol};
use crate::ipset::IpSet;
use crate::model::Cluster;
use crate::policy::{Direction, NetworkPolicy, Peer, PortRef, PortSpec, Rule};
use crate::selector::{LabelSelector, Labels};

use super::AnalyzeOptions;

/// A dense bit set over endpoint classes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub(crate) fn with_len(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }
    pub(crate) fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub(crate) fn union_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut word = w;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                Some(wi * 64 + bit)
            })
        })
    }
}

/// What the engine needs to know of a pod endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PodKey {
    pub namespace: String,
    pub labels: Labels,
    pub named_ports: BTreeMap<String, (Protocol, u16)>,
    pub ips: Vec<IpAddr>,
}

/// One class of endpoints that behave alike: pods with the same key, or a
/// piece of the external address space.
#[derive(Clone, Debug)]
pub(crate) enum Class {
    Pods(PodKey),
    External(IpSet),
}

/// Where a rule lives: policy index, direction, rule index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RuleId {
    pub policy: usize,
    pub direction: Direction,
    pub rule: usize,
}

/// A rule, with the classes its peers match.
#[derive(Clone, Debug)]
pub(crate) struct IndexedRule {
    pub id: RuleId,
    pub peers: BitSet,
    /// The connections of a rule without named ports; `None` when some port
    /// is named and must be resolved per destination.
    pub static_conns: Option<ConnSet>,
}

pub(crate) struct Index<'a> {
    pub cluster: &'a Cluster,
    pub classes: Vec<Class>,
    /// For every class, the policies that select it and isolate ingress.
    pub ingress_policies: Vec<Vec<usize>>,
    pub egress_policies: Vec<Vec<usize>>,
    /// Every rule of every isolating direction of every policy.
    pub rules: Vec<IndexedRule>,
    /// Where each policy's rules of one direction sit in `rules`.
    pub policy_rules: HashMap<(usize, Direction), Range<usize>>,
    /// For every class, the rules of the policies isolating it: the only
    /// rules that can allow its ingress (egress). Kept flat because the
    /// pair loop reads them for every pair.
    pub ingress_rules: Vec<Vec<u32>>,
    pub egress_rules: Vec<Vec<u32>>,
    /// Shared "everything", so non-isolated directions allocate nothing.
    all: ConnSet,
}

impl<'a> Index<'a> {
    /// Builds classes from pod keys (one per distinct key, in the order
    /// given) plus the external partition, and evaluates every selector once.
    pub(crate) fn build(
        cluster: &'a Cluster,
        pod_keys: &[PodKey],
        extra_ip_boundaries: &[IpSet],
        opts: &AnalyzeOptions,
    ) -> Self {
        let mut classes: Vec<Class> = pod_keys.iter().cloned().map(Class::Pods).collect();
        let pod_class_count = classes.len();
        let pod_ips: IpSet = if opts.ipblocks_match_pod_ips {
            pod_keys
                .iter()
                .flat_map(|k| &k.ips)
                .fold(IpSet::empty(), |acc, ip| acc.union(&IpSet::from_addr(*ip)))
        } else {
            IpSet::empty()
        };
        classes.extend(
            external_partition(cluster, extra_ip_boundaries, &pod_ips)
                .into_iter()
                .map(Class::External),
        );

        // Classes per namespace, so a selector is only tried where it can match.
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, key) in pod_keys.iter().enumerate() {
            by_namespace
                .entry(key.namespace.as_str())
                .or_default()
                .push(i);
        }

        let mut ingress_policies = vec![Vec::new(); classes.len()];
        let mut egress_policies = vec![Vec::new(); classes.len()];
        let mut rules = Vec::new();
        let mut policy_rules = HashMap::new();
        for (pi, policy) in cluster.policies.iter().enumerate() {
            for &ci in by_namespace
                .get(policy.namespace.as_str())
                .into_iter()
                .flatten()
            {
                if policy.pod_selector.matches(&pod_keys[ci].labels) {
                    if policy.policy_types.ingress {
                        ingress_policies[ci].push(pi);
                    }
                    if policy.policy_types.egress {
                        egress_policies[ci].push(pi);
                    }
                }
            }
            for direction in [Direction::Ingress, Direction::Egress] {
                if !policy.isolates(direction) {
                    continue;
                }
                let start = rules.len();
                let indexed = policy
                    .rules(direction)
                    .iter()
                    .enumerate()
                    .map(|(ri, rule)| IndexedRule {
                        id: RuleId {
                            policy: pi,
                            direction,
                            rule: ri,
                        },
                        peers: rule_peer_classes(
                            cluster,
                            policy,
                            rule,
                            &classes,
                            pod_class_count,
                            &by_namespace,
                            opts,
                        ),
                        static_conns: static_conns(&rule.ports),
                    })
                    .collect::<Vec<_>>();
                rules.extend(indexed);
                policy_rules.insert((pi, direction), start..rules.len());
            }
        }
        let class_rules = |policies: &[Vec<usize>], direction: Direction| -> Vec<Vec<u32>> {
            policies
                .iter()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|pi| policy_rules.get(&(*pi, direction)))
                        .flat_map(|r| r.clone().map(|i| i as u32))
                        .collect()
                })
                .collect()
        };
        let ingress_rules = class_rules(&ingress_policies, Direction::Ingress);
        let egress_rules = class_rules(&egress_policies, Direction::Egress);
        Self {
            cluster,
            classes,
            ingress_policies,
            egress_policies,
            rules,
            policy_rules,
            ingress_rules,
            egress_rules,
            all: ConnSet::all(),
        }
    }

    /// The rules of one policy in one direction (empty when the policy does
    /// not isolate that direction).
    pub(crate) fn rules_of(&self, policy: usize, direction: Direction) -> &[IndexedRule] {
        self.policy_rules
            .get(&(policy, direction))
            .map_or(&[], |r| &self.rules[r.clone()])
    }

    /// The rules that can allow `class`'s traffic in `direction`; `None`
    /// when the direction is not isolated (everything is allowed).
    pub(crate) fn isolating_rules(&self, class: usize, direction: Direction) -> Option<&[u32]> {
        if !self.is_pod(class) || self.isolating(class, direction).is_empty() {
            return None;
        }
        Some(match direction {
            Direction::Ingress => &self.ingress_rules[class],
            Direction::Egress => &self.egress_rules[class],
        })
    }

    pub(crate) fn is_pod(&self, class: usize) -> bool {
        matches!(self.classes[class], Class::Pods(_))
    }

    pub(crate) fn named_ports(&self, class: usize) -> Option<&BTreeMap<String, (Protocol, u16)>> {
        match &self.classes[class] {
            Class::Pods(k) => Some(&k.named_ports),
            Class::External(_) => None,
        }
    }

    /// The policies that isolate `class` in `direction`.
    pub(crate) fn isolating(&self, class: usize, direction: Direction) -> &[usize] {
        match direction {
            Direction::Ingress => &self.ingress_policies[class],
            Direction::Egress => &self.egress_policies[class],
        }
    }

    /// The connections that `rule` allows towards destination class `dst`.
    pub(crate) fn rule_conns<'s>(&'s self, rule: &'s IndexedRule, dst: usize) -> Cow<'s, ConnSet> {
        if let Some(conns) = &rule.static_conns {
            return Cow::Borrowed(conns);
        }
        let policy = &self.cluster.policies[rule.id.policy];
        let ports = &policy.rules(rule.id.direction)[rule.id.rule].ports;
        Cow::Owned(resolve_ports(ports, self.named_ports(dst)))
    }

    /// What `direction` allows from `src` to `dst` (classes): everything
    /// when the relevant end is not isolated, else the union of the matching
    /// rules of the isolating policies.
    pub(crate) fn allowed(&self, src: usize, dst: usize, direction: Direction) -> Cow<'_, ConnSet> {
        let (subject, peer) = match direction {
            Direction::Ingress => (dst, src),
            Direction::Egress => (src, dst),
        };
        let Some(rules) = self.isolating_rules(subject, direction) else {
            return Cow::Borrowed(&self.all);
        };
        let mut allowed: Option<Cow<'_, ConnSet>> = None;
        for &ri in rules {
            let rule = &self.rules[ri as usize];
            if !rule.peers.contains(peer) {
                continue;
            }
            let conns = self.rule_conns(rule, dst);
            allowed = Some(match allowed {
                None => conns,
                Some(mut acc) => {
                    acc.to_mut().union_with(&conns);
                    acc
                }
            });
        }
        allowed.unwrap_or_else(|| Cow::Owned(ConnSet::none()))
    }

    /// The classes that `src`'s egress can reach at all; `None` when its
    /// egress is not isolated.
    pub(crate) fn egress_reach(&self, src: usize) -> Option<BitSet> {
        let rules = self.isolating_rules(src, Direction::Egress)?;
        let mut reach = BitSet::with_len(self.classes.len());
        for &ri in rules {
            reach.union_with(&self.rules[ri as usize].peers);
        }
        Some(reach)
    }
}

/// The connections of a port list without named ports.
fn static_conns(ports: &[PortSpec]) -> Option<ConnSet> {
    if ports
        .iter()
        .any(|p| matches!(p.port, Some(PortRef::Name(_))))
    {
        return None;
    }
    Some(resolve_ports(ports, None))
}

/// The connections a `ports` list allows towards a destination with the
/// given named ports (`None`: an external destination, which has none).
pub(crate) fn resolve_ports(
    ports: &[PortSpec],
    named: Option<&BTreeMap<String, (Protocol, u16)>>,
) -> ConnSet {
    if ports.is_empty() {
        return ConnSet::all();
    }
    let mut conns = ConnSet::none();
    for spec in ports {
        conns.union_with(&port_spec_conns(spec, named));
    }
    conns
}

pub(crate) fn port_spec_conns(
    spec: &PortSpec,
    named: Option<&BTreeMap<String, (Protocol, u16)>>,
) -> ConnSet {
    match &spec.port {
        None => ConnSet::protocol(spec.protocol),
        Some(PortRef::Number(n)) => ConnSet::ports(spec.protocol, *n, spec.end_port.unwrap_or(*n)),
        Some(PortRef::Name(name)) => match named.and_then(|m| m.get(name)) {
            Some(&(protocol, port)) if protocol == spec.protocol => ConnSet::port(protocol, port),
            _ => ConnSet::none(),
        },
    }
}

/// The classes a rule's peers match; every class when it has no peers.
fn rule_peer_classes(
    cluster: &Cluster,
    policy: &NetworkPolicy,
    rule: &Rule,
    classes: &[Class],
    pod_class_count: usize,
    by_namespace: &HashMap<&str, Vec<usize>>,
    opts: &AnalyzeOptions,
) -> BitSet {
    let mut set = BitSet::with_len(classes.len());
    if rule.peers.is_empty() {
        for i in 0..classes.len() {
            set.insert(i);
        }
        return set;
    }
    for peer in &rule.peers {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                for ns in peer_namespaces(cluster, &policy.namespace, namespace_selector.as_ref()) {
                    for &ci in by_namespace.get(ns).into_iter().flatten() {
                        if let Class::Pods(key) = &classes[ci]
                            && pod_selector.as_ref().is_none_or(|s| s.matches(&key.labels))
                        {
                            set.insert(ci);
                        }
                    }
                }
            }
            Peer::IpBlock(block) => {
                let addresses = block.addresses();
                for (ci, class) in classes.iter().enumerate() {
                    let matched = match class {
                        Class::External(range) => addresses.is_superset(range),
                        Class::Pods(key) => {
                            opts.ipblocks_match_pod_ips
                                && ci < pod_class_count
                                && !key.ips.is_empty()
                                && key.ips.iter().all(|ip| addresses.contains(*ip))
                        }
                    };
                    if matched {
                        set.insert(ci);
                    }
                }
            }
        }
    }
    set
}

/// The namespaces a peer's namespace selector picks: the policy's own when
/// it has none.
pub(crate) fn peer_namespaces<'c>(
    cluster: &'c Cluster,
    policy_namespace: &'c str,
    selector: Option<&LabelSelector>,
) -> Vec<&'c str> {
    match selector {
        None => vec![policy_namespace],
        Some(sel) => cluster
            .namespaces
            .values()
            .filter(|ns| sel.matches(&ns.labels))
            .map(|ns| ns.name.as_str())
            .collect(),
    }
}

/// Cuts the address space at every ipBlock boundary (and the extra ones
/// given) and merges the pieces that every block treats alike.
fn external_partition(cluster: &Cluster, extra: &[IpSet], pod_ips: &IpSet) -> Vec<IpSet> {
    let mut blocks: Vec<IpSet> = cluster
        .policies
        .iter()
        .flat_map(|p| p.ingress.iter().chain(&p.egress))
        .flat_map(|r| &r.peers)
        .filter_map(|peer| match peer {
            Peer::IpBlock(b) => Some(b.addresses()),
            Peer::Pods { .. } => None,
        })
        .collect();
    blocks.extend(extra.iter().cloned());
    blocks.sort();
    blocks.dedup();

    let wants_v6 = blocks.iter().any(|b| !b.v6.is_empty());
    let mut universe = IpSet::from_net(&ipnet::IpNet::V4(Default::default()));
    if wants_v6 {
        universe = universe.union(&IpSet::from_net(&ipnet::IpNet::V6(Default::default())));
    }
    let universe = universe.difference(pod_ips);

    // Elementary pieces: cut at every range start and one past every end.
    let mut cuts_v4: BTreeSet<u32> = BTreeSet::new();
    let mut cuts_v6: BTreeSet<u128> = BTreeSet::new();
    for b in blocks.iter().chain(std::iter::once(&universe)) {
        for &(lo, hi) in b.v4.ranges() {
            cuts_v4.insert(lo);
            if let Some(n) = hi.checked_add(1) {
                cuts_v4.insert(n);
            }
        }
        for &(lo, hi) in b.v6.ranges() {
            cuts_v6.insert(lo);
            if let Some(n) = hi.checked_add(1) {
                cuts_v6.insert(n);
            }
        }
    }
    let mut pieces: Vec<IpSet> = Vec::new();
    let v4: Vec<u32> = cuts_v4.into_iter().collect();
    for (i, &lo) in v4.iter().enumerate() {
        let hi = v4.get(i + 1).map_or(u32::MAX, |n| n - 1);
        let mut piece = IpSet::empty();
        piece.v4 = crate::intervals::IntervalSet::range(lo, hi);
        pieces.push(piece);
    }
    let v6: Vec<u128> = cuts_v6.into_iter().collect();
    for (i, &lo) in v6.iter().enumerate() {
        let hi = v6.get(i + 1).map_or(u128::MAX, |n| n - 1);
        let mut piece = IpSet::empty();
        piece.v6 = crate::intervals::IntervalSet::range(lo, hi);
        pieces.push(piece);
    }

    // Group pieces by the set of blocks that contain them.
    let mut groups: BTreeMap<Vec<usize>, IpSet> = BTreeMap::new();
    for piece in pieces {
        if !universe.is_superset(&piece) {
            continue;
        }
        let signature: Vec<usize> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_superset(&piece))
            .map(|(i, _)| i)
            .collect();
        let entry = groups.entry(signature).or_default();
        *entry = entry.union(&piece);
    }
    let mut out: Vec<IpSet> = groups.into_values().collect();
    out.sort();
    out
}
