//! `analyze`: the allowed connections of every ordered pair of endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::ConnSet;
use crate::ipset::IpSet;
use crate::model::{Cluster, WorkloadKind};
use crate::policy::Direction;
use crate::selector::Labels;

use super::AnalyzeOptions;
use super::index::{Class, Index, PodKey};

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

/// One ordered pair of distinct endpoints and what it allows (never empty).
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
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
}

// === impl Connectivity ===

impl Connectivity {
    /// What `from` may open to `to` (endpoint indices); empty when denied or
    /// when both are the same endpoint.
    pub fn allowed(&self, from: usize, to: usize) -> ConnSet {
        if from == to {
            return ConnSet::none();
        }
        let (gf, gt) = (self.group_of[from], self.group_of[to]);
        let row = &self.rows[gf as usize];
        row.binary_search_by_key(&gt, |(g, _)| *g)
            .map(|i| (*row[i].1).clone())
            .unwrap_or_default()
    }

    pub fn endpoint_index(&self, id: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id)
    }

    /// Every allowed connection, ordered by source then destination index.
    pub fn connections(&self) -> impl Iterator<Item = Connection<'_>> + '_ {
        let mut dense: Vec<Option<&ConnSet>> = vec![None; self.groups];
        let mut dense_group: Option<u32> = None;
        (0..self.endpoints.len()).flat_map(move |from| {
            let g = self.group_of[from];
            if dense_group != Some(g) {
                dense.iter_mut().for_each(|d| *d = None);
                for (to_group, conns) in &self.rows[g as usize] {
                    dense[*to_group as usize] = Some(conns.as_ref());
                }
                dense_group = Some(g);
            }
            let row: Vec<Option<&ConnSet>> = dense.clone();
            let group_of = &self.group_of;
            (0..self.endpoints.len()).filter_map(move |to| {
                if to == from {
                    return None;
                }
                row[group_of[to] as usize].map(|allowed| Connection { from, to, allowed })
            })
        })
    }

    /// The number of allowed connections.
    pub fn connection_count(&self) -> usize {
        let mut members = vec![0usize; self.groups];
        for &g in &self.group_of {
            members[g as usize] += 1;
        }
        let mut total = 0;
        for (from_group, row) in self.rows.iter().enumerate() {
            for (to_group, _) in row {
                let pairs = members[from_group] * members[*to_group as usize];
                // Pairs of an endpoint with itself are not connections.
                let selfs = if from_group == *to_group as usize {
                    members[from_group]
                } else {
                    0
                };
                total += pairs - selfs;
            }
        }
        total
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

    let index = Index::build(cluster, &keys, extra_ip_boundaries, opts);

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
    for &src in &representatives {
        let mut row = Vec::new();
        // An egress-isolated source only reaches what its rules name.
        let reach = index.egress_reach(src);
        for (dst_group, &dst) in representatives.iter().enumerate() {
            if !index.is_pod(src) && !index.is_pod(dst) {
                continue;
            }
            if reach.as_ref().is_some_and(|r| !r.contains(dst)) {
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
            row.push((dst_group as u32, shared));
        }
        rows.push(row);
    }

    let group_of = endpoint_class
        .iter()
        .map(|&c| class_group[c] as u32)
        .collect();
    Connectivity {
        endpoints,
        group_of,
        rows,
        groups,
    }
}

/// Groups classes by everything the engine looks at: kind of class, the
/// policies isolating it, the rules whose peers match it, and its named
/// ports. Returns the group of every class and one representative a group.
fn fold_classes(index: &Index<'_>) -> (Vec<usize>, Vec<usize>) {
    let n = index.classes.len();
    let mut membership: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (ordinal, rule) in index.rules.iter().enumerate() {
        for c in rule.peers.iter() {
            membership[c].push(ordinal as u32);
        }
    }
    type GroupKey<'k> = (
        bool,
        &'k [usize],
        &'k [usize],
        Vec<u32>,
        Option<&'k std::collections::BTreeMap<String, (crate::conn::Protocol, u16)>>,
    );
    let mut seen: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut class_group = Vec::with_capacity(n);
    let mut representatives = Vec::new();
    for (c, members) in membership.into_iter().enumerate() {
        let key: GroupKey<'_> = (
            index.is_pod(c),
            &index.ingress_policies[c],
            &index.egress_policies[c],
            members,
            index.named_ports(c),
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
