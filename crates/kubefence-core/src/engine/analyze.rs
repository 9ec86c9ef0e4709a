//! `analyze`: the allowed connections of every ordered pair of endpoints.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::conn::{ConnSet, Protocol};
use crate::ipset::IpSet;
use crate::model::{Cluster, WorkloadKind};
use crate::policy::{Direction, PortRef};
use crate::selector::Labels;

use super::AnalyzeOptions;
use super::index::{Class, Index, PeerSet, PodKey};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    Workload(WorkloadKind),
    /// Addresses outside the cluster.
    External,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `namespace/Kind/name`, or the address ranges of an external endpoint.
    pub id: String,
    pub namespace: Option<String>,
    pub kind: EndpointKind,
    pub name: String,
    /// Pod labels; empty for external endpoints.
    pub labels: Labels,
    /// The addresses of an external endpoint.
    pub addresses: Option<IpSet>,
}

impl Endpoint {
    pub fn kind_str(&self) -> &'static str {
        match &self.kind {
            EndpointKind::Workload(k) => k.as_str(),
            EndpointKind::External => "External",
        }
    }

    pub fn is_external(&self) -> bool {
        self.kind == EndpointKind::External
    }
}

/// Which connections a listing keeps, by endpoint index: a connection is
/// kept when its source passes `from`, its destination passes `to`, and
/// one of its ends is focused (`None`: no restriction).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    pub from: Option<Vec<bool>>,
    pub to: Option<Vec<bool>>,
    pub focus: Option<Vec<bool>>,
}

impl EndpointFilter {
    /// Keeps every connection.
    pub const NONE: EndpointFilter = EndpointFilter {
        from: None,
        to: None,
        focus: None,
    };

    pub fn is_empty(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.focus.is_none()
    }
    pub fn keeps_from(&self, endpoint: usize) -> bool {
        self.from.as_ref().is_none_or(|f| f[endpoint])
    }
    pub fn keeps_to(&self, endpoint: usize) -> bool {
        self.to.as_ref().is_none_or(|f| f[endpoint])
    }
    /// Whether the endpoint is focused; every endpoint is when there is no
    /// focus.
    pub fn is_focused(&self, endpoint: usize) -> bool {
        self.focus.as_ref().is_none_or(|f| f[endpoint])
    }
    /// Whether the connection from `from` to `to` is kept.
    pub fn keeps(&self, from: usize, to: usize) -> bool {
        self.keeps_from(from) && self.keeps_to(to) && (self.is_focused(from) || self.is_focused(to))
    }
}

/// One ordered pair of distinct endpoints and what it allows (never empty).
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub from: usize,
    pub to: usize,
    pub allowed: &'a ConnSet,
}

/// Every member of class `from` may open `allowed` to every member of class
/// `to` other than itself.
#[derive(Clone, Copy, Debug)]
pub struct ClassConnection<'a> {
    pub from: usize,
    pub to: usize,
    pub allowed: &'a ConnSet,
}

/// The result of [`analyze`]: endpoints and, compactly, the connections
/// between them (endpoints that behave alike share one row).
#[derive(Clone, Debug)]
pub struct Connectivity {
    pub endpoints: Vec<Endpoint>,
    group_of: Vec<u32>,
    /// Per group of sources: `(destination group, allowed)`, sorted, never empty.
    rows: Vec<Vec<(u32, Arc<ConnSet>)>>,
    groups: usize,
    class_sizes: Vec<u32>,
    /// The open block: every member of a class with `open_from` may open
    /// everything to every member of a class with `open_to` (other than
    /// itself), except from an external class to an external class. Those
    /// pairs are not in `rows`.
    open_from: Vec<bool>,
    open_to: Vec<bool>,
    external: Vec<bool>,
    all: Arc<ConnSet>,
    timings: AnalyzeTimings,
}

/// How long the phases of [`analyze`] took, for progress reports and
/// benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnalyzeTimings {
    /// Endpoint classes, the address partition, and every selector and
    /// peer evaluated.
    pub index: std::time::Duration,
    /// Classes folded and the connections between them computed.
    pub connections: std::time::Duration,
}

// === impl Connectivity ===

impl Connectivity {
    /// What `from` may open to `to` (endpoint indices); empty when denied or
    /// when both are the same endpoint.
    pub fn allowed(&self, from: usize, to: usize) -> ConnSet {
        if from == to {
            return ConnSet::none();
        }
        let (gf, gt) = (self.group_of[from] as usize, self.group_of[to] as usize);
        self.class_allowed(gf, gt).cloned().unwrap_or_default()
    }

    /// What class `from` may open to class `to` (members other than
    /// themselves): from its row, else from the open block.
    fn class_allowed(&self, from: usize, to: usize) -> Option<&ConnSet> {
        let row = &self.rows[from];
        match row.binary_search_by_key(&(to as u32), |(g, _)| *g) {
            Ok(i) => Some(row[i].1.as_ref()),
            Err(_) if self.in_open_block(from, to) => Some(self.all.as_ref()),
            Err(_) => None,
        }
    }

    fn in_open_block(&self, from: usize, to: usize) -> bool {
        self.open_from[from] && self.open_to[to] && !(self.external[from] && self.external[to])
    }

    /// The open block, when it is not empty: every member of a `from` class
    /// may open everything to every member of a `to` class other than
    /// itself, except from an external class to an external class. These
    /// class pairs are never in [`Connectivity::class_connections`].
    pub fn open_block(&self) -> Option<(Vec<usize>, Vec<usize>)> {
        let from: Vec<usize> = (0..self.groups).filter(|&g| self.open_from[g]).collect();
        let to: Vec<usize> = (0..self.groups).filter(|&g| self.open_to[g]).collect();
        let any = from.iter().any(|&f| {
            to.iter()
                .any(|&t| self.in_open_block(f, t) && (f != t || self.class_sizes[f] > 1))
        });
        any.then_some((from, to))
    }

    /// Whether class `class` may open everything to every open class (its
    /// egress is not isolated).
    pub fn is_open_from(&self, class: usize) -> bool {
        self.open_from[class]
    }

    /// Whether every open class may open everything to class `class` (its
    /// ingress is not isolated).
    pub fn is_open_to(&self, class: usize) -> bool {
        self.open_to[class]
    }

    /// Whether a class holds addresses outside the cluster.
    pub fn is_external_class(&self, class: usize) -> bool {
        self.external[class]
    }

    pub fn endpoint_index(&self, id: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id)
    }

    /// Every allowed connection, ordered by source then destination index.
    pub fn connections(&self) -> impl Iterator<Item = Connection<'_>> + '_ {
        self.connections_where(&EndpointFilter::NONE)
    }

    /// The allowed connections that `filter` keeps, ordered by source then
    /// destination index. With a focus, a source outside it only looks at
    /// the focused destinations, so a focused question on a large cluster
    /// costs endpoints × focused endpoints, not endpoints².
    pub fn connections_where<'s>(
        &'s self,
        filter: &'s EndpointFilter,
    ) -> impl Iterator<Item = Connection<'s>> + 's {
        let members = self.class_members();
        let focused: Vec<usize> = match &filter.focus {
            Some(focus) => (0..self.endpoints.len()).filter(|&e| focus[e]).collect(),
            None => Vec::new(),
        };
        // The members of the classes open for ingress, for open sources.
        let open_members: Vec<usize> = (0..self.endpoints.len())
            .filter(|&e| self.open_to[self.group_of[e] as usize])
            .collect();
        (0..self.endpoints.len())
            .filter(move |&from| filter.keeps_from(from))
            .flat_map(move |from| {
                let class = self.group_of[from] as usize;
                let mut out: Vec<Connection<'s>> = Vec::new();
                if filter.focus.is_none() || filter.is_focused(from) {
                    for (to_class, allowed) in &self.rows[class] {
                        for &to in &members[*to_class as usize] {
                            if to != from && filter.keeps_to(to) {
                                out.push(Connection {
                                    from,
                                    to,
                                    allowed: allowed.as_ref(),
                                });
                            }
                        }
                    }
                    if self.open_from[class] {
                        for &to in &open_members {
                            let to_class = self.group_of[to] as usize;
                            if to != from
                                && filter.keeps_to(to)
                                && self.in_open_block(class, to_class)
                            {
                                out.push(Connection {
                                    from,
                                    to,
                                    allowed: self.all.as_ref(),
                                });
                            }
                        }
                    }
                    out.sort_unstable_by_key(|c| c.to);
                } else {
                    for &to in &focused {
                        if to == from || !filter.keeps_to(to) {
                            continue;
                        }
                        if let Some(allowed) = self.class_allowed(class, self.group_of[to] as usize)
                        {
                            out.push(Connection { from, to, allowed });
                        }
                    }
                }
                out
            })
    }

    /// How long the phases of the analysis took.
    pub fn timings(&self) -> AnalyzeTimings {
        self.timings
    }

    /// How many classes of endpoints that behave alike there are: every
    /// member of a class has the same connections (to the other classes'
    /// members and to the other members of its own).
    pub fn class_count(&self) -> usize {
        self.groups
    }

    /// The class of an endpoint.
    pub fn class_of(&self, endpoint: usize) -> usize {
        self.group_of[endpoint] as usize
    }

    /// The members of every class (endpoint indices, increasing).
    pub fn class_members(&self) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.groups];
        for (e, &g) in self.group_of.iter().enumerate() {
            members[g as usize].push(e);
        }
        members
    }

    /// The connections between classes, by source then destination class:
    /// every member of `from` may open `allowed` to every member of `to`
    /// (other than itself). A class with one member has no connection to
    /// itself.
    pub fn class_connections(&self) -> impl Iterator<Item = ClassConnection<'_>> + '_ {
        self.rows.iter().enumerate().flat_map(move |(from, row)| {
            row.iter().filter_map(move |(to, allowed)| {
                let to = *to as usize;
                (from != to || self.class_sizes[from] > 1).then_some(ClassConnection {
                    from,
                    to,
                    allowed: allowed.as_ref(),
                })
            })
        })
    }

    /// The row of one class: `(destination class, allowed)`, by class.
    pub(crate) fn class_row(&self, class: usize) -> impl Iterator<Item = (usize, &ConnSet)> {
        self.rows[class]
            .iter()
            .map(|(to, allowed)| (*to as usize, allowed.as_ref()))
    }

    /// The number of allowed connections.
    pub fn connection_count(&self) -> usize {
        let members = &self.class_sizes;
        let mut total = 0;
        for (from_group, row) in self.rows.iter().enumerate() {
            for (to_group, _) in row {
                let pairs = members[from_group] as usize * members[*to_group as usize] as usize;
                // Pairs of an endpoint with itself are not connections.
                let selfs = if from_group == *to_group as usize {
                    members[from_group] as usize
                } else {
                    0
                };
                total += pairs - selfs;
            }
        }
        // The open block: open pods to open classes, open addresses to
        // open pods, less each pod with itself.
        let (mut from_pods, mut from_external, mut to_pods, mut to_external, mut both) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        for (g, &size) in members.iter().enumerate() {
            let n = size as usize;
            match (self.external[g], self.open_from[g], self.open_to[g]) {
                (true, f, t) => {
                    from_external += usize::from(f) * n;
                    to_external += usize::from(t) * n;
                }
                (false, f, t) => {
                    from_pods += usize::from(f) * n;
                    to_pods += usize::from(t) * n;
                    both += usize::from(f && t) * n;
                }
            }
        }
        total + from_pods * (to_pods + to_external) + from_external * to_pods - both
    }
}

/// Computes the allowed connections between every ordered pair of distinct
/// endpoints of `cluster`: its workloads and the external address ranges.
pub fn analyze(cluster: &Cluster, opts: &AnalyzeOptions) -> Connectivity {
    analyze_with_boundaries(cluster, opts, &[])
}

/// [`analyze`], cutting the external address space at extra boundaries too
/// (so two analyses can be compared range by range).
pub(crate) fn analyze_with_boundaries(
    cluster: &Cluster,
    opts: &AnalyzeOptions,
    extra_ip_boundaries: &[IpSet],
) -> Connectivity {
    // Workloads sorted by id give a stable endpoint order.
    let mut workloads: Vec<&crate::model::Workload> = cluster.workloads.iter().collect();
    workloads.sort_by_cached_key(|w| w.id());

    let mut keys: Vec<PodKey> = Vec::new();
    let mut key_index: HashMap<PodKey, usize> = HashMap::new();
    let mut endpoint_class: Vec<usize> = Vec::with_capacity(workloads.len());
    for w in &workloads {
        let mut ips = w.pod_ips.clone();
        ips.sort();
        ips.dedup();
        let key = PodKey {
            namespace: w.namespace.clone(),
            labels: w.pod_labels.clone(),
            named_ports: w.named_ports(),
            ips,
        };
        let next = keys.len();
        let class = *key_index.entry(key.clone()).or_insert_with(|| {
            keys.push(key);
            next
        });
        endpoint_class.push(class);
    }

    let started = std::time::Instant::now();
    let index = Index::build(cluster, &keys, extra_ip_boundaries, opts);
    let indexed = started.elapsed();

    let mut endpoints: Vec<Endpoint> = workloads
        .iter()
        .map(|w| Endpoint {
            id: w.id(),
            namespace: Some(w.namespace.clone()),
            kind: EndpointKind::Workload(w.kind),
            name: w.name.clone(),
            labels: w.pod_labels.clone(),
            addresses: None,
        })
        .collect();
    for (ci, class) in index.classes.iter().enumerate() {
        if let Class::External(range) = class {
            let id = range.display_ranges();
            endpoints.push(Endpoint {
                id: id.clone(),
                namespace: None,
                kind: EndpointKind::External,
                name: id,
                labels: Labels::new(),
                addresses: Some(range.clone()),
            });
            endpoint_class.push(ci);
        }
    }

    // Fold classes that every policy and peer treats alike into groups.
    let (class_group, representatives) = fold_classes(&index);
    let groups = representatives.len();

    let mut interned: HashMap<ConnSet, Arc<ConnSet>> = HashMap::new();
    let mut rows: Vec<Vec<(u32, Arc<ConnSet>)>> = Vec::with_capacity(groups);
    // A class not isolated for egress may open everything to every class
    // not isolated for ingress (addresses to addresses aside): that block
    // of the matrix is kept as one "open" block instead of row by row.
    let open_from: Vec<bool> = representatives
        .iter()
        .map(|&c| !index.is_pod(c) || index.isolating(c, Direction::Egress).is_empty())
        .collect();
    let open_to: Vec<bool> = representatives
        .iter()
        .map(|&c| !index.is_pod(c) || index.isolating(c, Direction::Ingress).is_empty())
        .collect();
    let external: Vec<bool> = representatives.iter().map(|&c| !index.is_pod(c)).collect();
    let all_groups: Vec<u32> = (0..groups as u32).collect();
    let isolated_to: Vec<u32> = all_groups
        .iter()
        .copied()
        .filter(|&g| !open_to[g as usize])
        .collect();
    for (src_group, &src) in representatives.iter().enumerate() {
        let mut row = Vec::new();
        // An egress-isolated source only reaches what its rules name; an
        // open one reaches every open destination through the open block.
        let reach: Option<Vec<u32>> = index.egress_reach(src).map(|classes| {
            let mut reached: Vec<u32> = classes
                .iter()
                .map(|&c| class_group[c as usize] as u32)
                .collect();
            reached.sort_unstable();
            reached.dedup();
            reached
        });
        let candidates: &[u32] = match &reach {
            Some(reach) => reach,
            None if open_from[src_group] => &isolated_to,
            None => &all_groups,
        };
        for &dst_group in candidates {
            let dst = representatives[dst_group as usize];
            if !index.is_pod(src) && !index.is_pod(dst) {
                continue;
            }
            let egress = index.allowed(src, dst, Direction::Egress);
            if egress.is_empty() {
                continue;
            }
            let ingress = index.allowed(src, dst, Direction::Ingress);
            let allowed = if ingress.is_all() {
                egress.into_owned()
            } else if egress.is_all() {
                ingress.into_owned()
            } else {
                egress.intersection(&ingress)
            };
            if allowed.is_empty() {
                continue;
            }
            let shared = match interned.get(&allowed) {
                Some(a) => a.clone(),
                None => {
                    let a = Arc::new(allowed.clone());
                    interned.insert(allowed, a.clone());
                    a
                }
            };
            row.push((dst_group, shared));
        }
        rows.push(row);
    }

    let group_of: Vec<u32> = endpoint_class
        .iter()
        .map(|&c| class_group[c] as u32)
        .collect();
    let mut class_sizes = vec![0u32; groups];
    for &g in &group_of {
        class_sizes[g as usize] += 1;
    }
    Connectivity {
        endpoints,
        group_of,
        rows,
        groups,
        class_sizes,
        open_from,
        open_to,
        external,
        all: Arc::new(ConnSet::all()),
        timings: AnalyzeTimings {
            index: indexed,
            connections: started.elapsed().saturating_sub(indexed),
        },
    }
}

/// Groups classes by everything the engine looks at: kind of class, the
/// policies isolating it, the class sets of rule peers that hold it, and
/// the named ports that some rule names. Returns the group of every class
/// and one representative a group.
fn fold_classes(index: &Index<'_>) -> (Vec<usize>, Vec<usize>) {
    let n = index.classes.len();
    // Rules share their class sets; a class's membership is the sets that
    // hold it (a rule without peers holds every class alike).
    let mut membership: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut seen_sets = vec![false; index.peer_set_count()];
    for rule in &index.rules {
        if let PeerSet::Some(set) = &rule.peers
            && !std::mem::replace(&mut seen_sets[set.id as usize], true)
        {
            for &c in &set.members {
                membership[c as usize].push(set.id);
            }
        }
    }
    // Only the port names that some rule names tell classes apart.
    let referenced: BTreeSet<&str> = index
        .rules
        .iter()
        .flat_map(|r| {
            index.cluster.policies[r.id.policy].rules(r.id.direction)[r.id.rule]
                .ports
                .iter()
        })
        .filter_map(|p| match &p.port {
            Some(PortRef::Name(name)) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    type GroupKey<'k> = (
        bool,
        &'k [usize],
        &'k [usize],
        Vec<u32>,
        Option<Vec<(&'k str, (Protocol, u16))>>,
    );
    let mut seen: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut class_group = Vec::with_capacity(n);
    let mut representatives = Vec::new();
    for (c, mut members) in membership.into_iter().enumerate() {
        members.sort_unstable();
        let named = index.named_ports(c).map(|ports| {
            ports
                .iter()
                .filter(|(name, _)| referenced.contains(name.as_str()))
                .map(|(name, port)| (name.as_str(), *port))
                .collect()
        });
        let key: GroupKey<'_> = (
            index.is_pod(c),
            &index.ingress_policies[c],
            &index.egress_policies[c],
            members,
            named,
        );
        // External classes are distinct endpoints with distinct addresses;
        // folding them is harmless because they were already merged by
        // signature when the address space was partitioned.
        let next = representatives.len();
        let group = *seen.entry(key).or_insert_with(|| {
            representatives.push(c);
            next
        });
        class_group.push(group);
    }
    (class_group, representatives)
}
