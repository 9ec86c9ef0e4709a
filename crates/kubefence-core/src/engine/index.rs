//! The index the engine evaluates against: endpoint classes, which policies
//! select each class, which classes each rule's peers match, and the
//! external address partition.
//!
//! Built in time near the size of what selectors select, not policies ×
//! objects: namespaces and each namespace's pod classes are found through
//! label postings ([`LabelIndex`]), a peer without a namespaceSelector looks
//! only at its own namespace, identical peers (the same selectors in the
//! same namespace, the same ipBlock) are evaluated once, and identical class
//! sets are stored once and shared by the rules that match them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use crate::conn::{ConnSet, Protocol};
use crate::intervals::{Bound, IntervalSet};
use crate::ipset::IpSet;
use crate::model::Cluster;
use crate::policy::{Direction, IpBlock, Peer, PortRef, PortSpec};
use crate::selector::{LabelSelector, Labels};

use super::AnalyzeOptions;
use super::selection::LabelIndex;

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
}

/// A set of classes, sorted; with a bit set too when it is large, so
/// membership stays one lookup.
#[derive(Debug)]
pub(crate) struct ClassSet {
    /// Distinct sets have distinct ids (dense from 0).
    pub id: u32,
    pub members: Vec<u32>,
    bits: Option<BitSet>,
}

impl ClassSet {
    /// Above this many members a bit set over every class is kept as well.
    const DENSE_FROM: usize = 256;

    fn new(id: u32, members: Vec<u32>, class_count: usize) -> Self {
        let bits = (members.len() >= Self::DENSE_FROM).then(|| {
            let mut bits = BitSet::with_len(class_count);
            for &m in &members {
                bits.insert(m as usize);
            }
            bits
        });
        Self { id, members, bits }
    }

    pub(crate) fn contains(&self, class: usize) -> bool {
        match &self.bits {
            Some(bits) => bits.contains(class),
            None => u32::try_from(class).is_ok_and(|c| self.members.binary_search(&c).is_ok()),
        }
    }
}

/// The classes a rule's peers match.
#[derive(Clone, Debug)]
pub(crate) enum PeerSet {
    /// A rule without peers: every class, pods and addresses.
    All,
    Some(Arc<ClassSet>),
}

impl PeerSet {
    pub(crate) fn contains(&self, class: usize) -> bool {
        match self {
            Self::All => true,
            Self::Some(set) => set.contains(class),
        }
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
    pub peers: PeerSet,
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
        let every_policy: Vec<usize> = (0..cluster.policies.len()).collect();
        Self::build_for(cluster, pod_keys, extra_ip_boundaries, opts, &every_policy)
    }

    /// [`Index::build`] with only the given policies (indices into the
    /// cluster's): enough when only the classes in their namespaces are
    /// asked about, since a pod is isolated only by policies of its own
    /// namespace. The address space is cut only at these policies' blocks.
    pub(crate) fn build_for(
        cluster: &'a Cluster,
        pod_keys: &[PodKey],
        extra_ip_boundaries: &[IpSet],
        opts: &AnalyzeOptions,
        policies: &[usize],
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
            external_partition(cluster, policies, extra_ip_boundaries, &pod_ips)
                .into_iter()
                .map(Class::External),
        );

        let mut peers = PeerEvaluator::new(cluster, pod_keys, classes.len(), opts);
        let mut ingress_policies = vec![Vec::new(); classes.len()];
        let mut egress_policies = vec![Vec::new(); classes.len()];
        let mut rules = Vec::new();
        let mut policy_rules = HashMap::new();
        for &pi in policies {
            let policy = &cluster.policies[pi];
            for ci in peers.pods_in(&policy.namespace, &policy.pod_selector) {
                if policy.policy_types.ingress {
                    ingress_policies[ci as usize].push(pi);
                }
                if policy.policy_types.egress {
                    egress_policies[ci as usize].push(pi);
                }
            }
            for direction in [Direction::Ingress, Direction::Egress] {
                if !policy.isolates(direction) {
                    continue;
                }
                let start = rules.len();
                for (ri, rule) in policy.rules(direction).iter().enumerate() {
                    let matched = if rule.peers.is_empty() {
                        PeerSet::All
                    } else {
                        PeerSet::Some(peers.rule_classes(
                            &policy.namespace,
                            &rule.peers,
                            &classes,
                            pod_class_count,
                        ))
                    };
                    rules.push(IndexedRule {
                        id: RuleId {
                            policy: pi,
                            direction,
                            rule: ri,
                        },
                        peers: matched,
                        static_conns: static_conns(&rule.ports),
                    });
                }
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

    /// How many distinct class sets the rules' peers use (their ids are
    /// `0..peer_set_count`).
    pub(crate) fn peer_set_count(&self) -> usize {
        self.rules
            .iter()
            .filter_map(|r| match &r.peers {
                PeerSet::Some(set) => Some(set.id as usize + 1),
                PeerSet::All => None,
            })
            .max()
            .unwrap_or(0)
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

    /// The classes that `src`'s egress can reach at all, sorted; `None`
    /// when its egress is not isolated or a rule allows every peer.
    pub(crate) fn egress_reach(&self, src: usize) -> Option<Vec<u32>> {
        let rules = self.isolating_rules(src, Direction::Egress)?;
        let mut reach: Vec<u32> = Vec::new();
        for &ri in rules {
            match &self.rules[ri as usize].peers {
                PeerSet::All => return None,
                PeerSet::Some(set) => reach.extend_from_slice(&set.members),
            }
        }
        reach.sort_unstable();
        reach.dedup();
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

/// One namespace's pod classes, with their label postings.
struct NamespacePods<'k> {
    classes: Vec<u32>,
    labels: LabelIndex<'k>,
}

/// Evaluates selectors and peers against the classes, each distinct one
/// once.
struct PeerEvaluator<'c, 'k> {
    class_count: usize,
    opts: &'c AnalyzeOptions,
    namespace_names: Vec<&'c str>,
    namespaces: LabelIndex<'c>,
    pods: HashMap<&'k str, NamespacePods<'k>>,
    pod_keys: &'k [PodKey],
    /// The namespaces a namespaceSelector selects (indices into
    /// `namespace_names`).
    selected_namespaces: HashMap<&'c LabelSelector, Arc<Vec<u32>>>,
    /// The classes of one peer: (namespaceSelector, podSelector, the
    /// policy's namespace when there is no namespaceSelector).
    pod_peers: PodPeerCache<'c>,
    block_peers: HashMap<&'c IpBlock, Arc<Vec<u32>>>,
    /// Each distinct class set once.
    sets: HashMap<Vec<u32>, Arc<ClassSet>>,
}

type PodPeerKey<'c> = (
    Option<&'c LabelSelector>,
    Option<&'c LabelSelector>,
    Option<&'c str>,
);
type PodPeerCache<'c> = HashMap<PodPeerKey<'c>, Arc<Vec<u32>>>;

impl<'c, 'k> PeerEvaluator<'c, 'k> {
    fn new(
        cluster: &'c Cluster,
        pod_keys: &'k [PodKey],
        class_count: usize,
        opts: &'c AnalyzeOptions,
    ) -> Self {
        let mut members: HashMap<&'k str, Vec<u32>> = HashMap::new();
        for (i, key) in pod_keys.iter().enumerate() {
            members
                .entry(key.namespace.as_str())
                .or_default()
                .push(i as u32);
        }
        let pods = members
            .into_iter()
            .map(|(ns, classes)| {
                let labels = LabelIndex::new(classes.iter().map(|&c| &pod_keys[c as usize].labels));
                (ns, NamespacePods { classes, labels })
            })
            .collect();
        Self {
            class_count,
            opts,
            namespace_names: cluster
                .namespaces
                .values()
                .map(|n| n.name.as_str())
                .collect(),
            namespaces: LabelIndex::new(cluster.namespaces.values().map(|n| &n.labels)),
            pods,
            pod_keys,
            selected_namespaces: HashMap::new(),
            pod_peers: HashMap::new(),
            block_peers: HashMap::new(),
            sets: HashMap::new(),
        }
    }

    /// The pod classes of `namespace` that `selector` selects, in
    /// increasing order.
    fn pods_in(&self, namespace: &str, selector: &LabelSelector) -> Vec<u32> {
        let Some(pods) = self.pods.get(namespace) else {
            return Vec::new();
        };
        debug_assert_eq!(pods.labels.len(), pods.classes.len());
        pods.labels
            .select(selector)
            .into_iter()
            .map(|i| pods.classes[i as usize])
            .collect()
    }

    fn namespaces_of(&mut self, selector: &'c LabelSelector) -> Arc<Vec<u32>> {
        if let Some(found) = self.selected_namespaces.get(selector) {
            return found.clone();
        }
        let found = Arc::new(self.namespaces.select(selector));
        self.selected_namespaces.insert(selector, found.clone());
        found
    }

    /// The classes one `podSelector`/`namespaceSelector` peer matches.
    fn pod_peer(
        &mut self,
        policy_namespace: &'c str,
        namespace_selector: Option<&'c LabelSelector>,
        pod_selector: Option<&'c LabelSelector>,
    ) -> Arc<Vec<u32>> {
        let key = (
            namespace_selector,
            pod_selector,
            namespace_selector.is_none().then_some(policy_namespace),
        );
        if let Some(found) = self.pod_peers.get(&key) {
            return found.clone();
        }
        let everything = LabelSelector::everything();
        let pods = pod_selector.unwrap_or(&everything);
        let mut found = match namespace_selector {
            // No namespaceSelector: the policy's own namespace only.
            None => self.pods_in(policy_namespace, pods),
            Some(sel) => {
                let namespaces = self.namespaces_of(sel);
                let mut found = Vec::new();
                for &ns in namespaces.iter() {
                    found.extend(self.pods_in(self.namespace_names[ns as usize], pods));
                }
                found
            }
        };
        found.sort_unstable();
        let found = Arc::new(found);
        self.pod_peers.insert(key, found.clone());
        found
    }

    /// The classes one ipBlock matches: the external pieces inside it and,
    /// when ipBlocks match pod IPs, the pod classes whose every known IP is
    /// inside it.
    fn block_peer(
        &mut self,
        block: &'c IpBlock,
        classes: &[Class],
        pod_class_count: usize,
    ) -> Arc<Vec<u32>> {
        if let Some(found) = self.block_peers.get(block) {
            return found.clone();
        }
        let addresses = block.addresses();
        let mut found = Vec::new();
        if self.opts.ipblocks_match_pod_ips {
            for (ci, key) in self.pod_keys.iter().enumerate().take(pod_class_count) {
                if !key.ips.is_empty() && key.ips.iter().all(|ip| addresses.contains(*ip)) {
                    found.push(ci as u32);
                }
            }
        }
        for (ci, class) in classes.iter().enumerate().skip(pod_class_count) {
            if let Class::External(range) = class
                && addresses.is_superset(range)
            {
                found.push(ci as u32);
            }
        }
        let found = Arc::new(found);
        self.block_peers.insert(block, found.clone());
        found
    }

    /// The classes a rule's (non-empty) peers match, as a shared set.
    fn rule_classes(
        &mut self,
        policy_namespace: &'c str,
        peers: &'c [Peer],
        classes: &[Class],
        pod_class_count: usize,
    ) -> Arc<ClassSet> {
        let mut members: Vec<u32> = Vec::new();
        for peer in peers {
            let matched = match peer {
                Peer::Pods {
                    namespace_selector,
                    pod_selector,
                } => self.pod_peer(
                    policy_namespace,
                    namespace_selector.as_ref(),
                    pod_selector.as_ref(),
                ),
                Peer::IpBlock(block) => self.block_peer(block, classes, pod_class_count),
            };
            if peers.len() == 1 {
                members = matched.to_vec();
            } else {
                members.extend_from_slice(&matched);
            }
        }
        if peers.len() > 1 {
            members.sort_unstable();
            members.dedup();
        }
        self.intern(members)
    }

    fn intern(&mut self, members: Vec<u32>) -> Arc<ClassSet> {
        if let Some(set) = self.sets.get(&members) {
            return set.clone();
        }
        let id = self.sets.len() as u32;
        let set = Arc::new(ClassSet::new(id, members.clone(), self.class_count));
        self.sets.insert(members, set.clone());
        set
    }
}

/// Cuts the address space, IPv4 and IPv6 alike, at every ipBlock boundary
/// (and the extra ones given) and merges the pieces of one family that every
/// block treats alike. The two families are never merged into one piece:
/// an endpoint is IPv4 or IPv6 ranges, so a name like `0.0.0.0/0` always
/// means what it says. Both families are always present, whether or not a
/// policy names them: an IPv4-only policy set still has an IPv6 world to
/// allow or deny.
fn external_partition(
    cluster: &Cluster,
    policies: &[usize],
    extra: &[IpSet],
    pod_ips: &IpSet,
) -> Vec<IpSet> {
    let mut blocks: Vec<IpSet> = policies
        .iter()
        .map(|&pi| &cluster.policies[pi])
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
    let v4_blocks: Vec<&IntervalSet<_>> = blocks.iter().map(|b| &b.v4).collect();
    let v6_blocks: Vec<&IntervalSet<_>> = blocks.iter().map(|b| &b.v6).collect();
    let mut out: Vec<IpSet> = family_groups(&v4_blocks, &universe.v4)
        .into_iter()
        .map(|v4| IpSet {
            v4,
            v6: IntervalSet::empty(),
        })
        .chain(
            family_groups(&v6_blocks, &universe.v6)
                .into_iter()
                .map(|v6| IpSet {
                    v4: IntervalSet::empty(),
                    v6,
                }),
        )
        .collect();
    // IPv4 endpoints first, then IPv6, each in address order.
    out.sort_by(|a, b| (a.v4.is_empty(), a).cmp(&(b.v4.is_empty(), b)));
    out
}

/// The elementary pieces of one family's `universe` (cut at the start of
/// every range of every block and one past its end), merged when the same
/// blocks contain them. Pieces are sorted and every block range covers a
/// contiguous run of them, so each block marks its run directly instead of
/// every piece being tried against every block.
fn family_groups<T: Bound>(
    blocks: &[&IntervalSet<T>],
    universe: &IntervalSet<T>,
) -> Vec<IntervalSet<T>> {
    let mut cuts: BTreeSet<T> = BTreeSet::new();
    for set in blocks.iter().copied().chain(std::iter::once(universe)) {
        for &(lo, hi) in set.ranges() {
            cuts.insert(lo);
            if let Some(next) = hi.next() {
                cuts.insert(next);
            }
        }
    }
    let cuts: Vec<T> = cuts.into_iter().collect();
    let pieces: Vec<(T, T)> = cuts
        .iter()
        .enumerate()
        .map(|(i, &lo)| (lo, cuts.get(i + 1).and_then(|n| n.prev()).unwrap_or(T::MAX)))
        .filter(|&(lo, hi)| universe.is_superset(&IntervalSet::range(lo, hi)))
        .collect();
    let mut signatures: Vec<Vec<u32>> = vec![Vec::new(); pieces.len()];
    for (bi, block) in blocks.iter().enumerate() {
        for &(lo, hi) in block.ranges() {
            let start = pieces.partition_point(|p| p.0 < lo);
            for (signature, _) in signatures[start..]
                .iter_mut()
                .zip(&pieces[start..])
                .take_while(|(_, p)| p.1 <= hi)
            {
                signature.push(bi as u32);
            }
        }
    }
    let mut groups: BTreeMap<Vec<u32>, IntervalSet<T>> = BTreeMap::new();
    for (&(lo, hi), signature) in pieces.iter().zip(signatures) {
        groups
            .entry(signature)
            .or_insert_with(IntervalSet::empty)
            .insert_range(lo, hi);
    }
    groups.into_values().collect()
}
