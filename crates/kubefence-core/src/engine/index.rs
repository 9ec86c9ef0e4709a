//! The index the engine evaluates against: endpoint classes, which policies
//! select each class, which classes each rule's peers match, and the
//! external address partition.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Range;

use crate::conn::{ConnSet, Protocol};
use crate::intervals::{Bound, IntervalSet};
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

/// Cuts the address space, IPv4 and IPv6 alike, at every ipBlock boundary
/// (and the extra ones given) and merges the pieces of one family that every
/// block treats alike. The two families are never merged into one piece:
/// an endpoint is IPv4 or IPv6 ranges, so a name like `0.0.0.0/0` always
/// means what it says. Both families are always present, whether or not a
/// policy names them: an IPv4-only policy set still has an IPv6 world to
/// allow or deny.
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

    let universe = IpSet::everything().difference(pod_ips);
    let v4 = family_pieces(blocks.iter().map(|b| &b.v4), &universe.v4, |piece| IpSet {
        v4: piece,
        v6: IntervalSet::empty(),
    });
    let v6 = family_pieces(blocks.iter().map(|b| &b.v6), &universe.v6, |piece| IpSet {
        v4: IntervalSet::empty(),
        v6: piece,
    });

    // Group the pieces of each family by the set of blocks that contain them.
    let mut groups: BTreeMap<(bool, Vec<usize>), IpSet> = BTreeMap::new();
    for (is_v6, pieces) in [(false, v4), (true, v6)] {
        for piece in pieces {
            let signature: Vec<usize> = blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_superset(&piece))
                .map(|(i, _)| i)
                .collect();
            let entry = groups.entry((is_v6, signature)).or_default();
            *entry = entry.union(&piece);
        }
    }
    // IPv4 endpoints first, then IPv6, each in address order.
    let mut out: Vec<IpSet> = groups.into_values().collect();
    out.sort_by(|a, b| (a.v4.is_empty(), a).cmp(&(b.v4.is_empty(), b)));
    out
}

/// The elementary pieces of one family's `universe`: cut at the start of
/// every range of every block and one past its end.
fn family_pieces<'b, T: Bound + 'b>(
    blocks: impl Iterator<Item = &'b IntervalSet<T>>,
    universe: &'b IntervalSet<T>,
    wrap: impl Fn(IntervalSet<T>) -> IpSet,
) -> Vec<IpSet> {
    let mut cuts: BTreeSet<T> = BTreeSet::new();
    for set in blocks.chain(std::iter::once(universe)) {
        for &(lo, hi) in set.ranges() {
            cuts.insert(lo);
            if let Some(next) = hi.next() {
                cuts.insert(next);
            }
        }
    }
    let cuts: Vec<T> = cuts.into_iter().collect();
    cuts.iter()
        .enumerate()
        .filter_map(|(i, &lo)| {
            let hi = cuts.get(i + 1).and_then(|n| n.prev()).unwrap_or(T::MAX);
            let piece = IntervalSet::range(lo, hi);
            universe.is_superset(&piece).then(|| wrap(piece))
        })
        .collect()
}
