//! Connectivity summed up by namespace: for every ordered pair of
//! namespaces, how many endpoint pairs may connect and the union of what
//! they may open. Computed from the classes, so its cost follows the
//! class-to-class connections, not the endpoint pairs.

use std::collections::{BTreeMap, HashMap};

use crate::conn::ConnSet;

use super::analyze::{ClassConnection, Connectivity, EndpointFilter};

/// The name of the group that holds every endpoint outside the cluster
/// (no namespace can be called this: parentheses are not allowed in
/// namespace names).
pub const EXTERNAL_GROUP: &str = "(external)";

/// One cell of the namespace matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConnection {
    pub from: String,
    pub to: String,
    /// Ordered pairs of distinct endpoints (from → to) with something allowed.
    pub pairs: u64,
    /// Ordered pairs of distinct endpoints between the two groups that the
    /// filter keeps, allowed or not.
    pub of: u64,
    /// What at least one of the pairs may open.
    pub allowed: ConnSet,
}

/// The namespace matrix: the groups (namespaces, and [`EXTERNAL_GROUP`])
/// with their endpoint counts, and the cells with something allowed, by
/// (from, to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMatrix {
    pub groups: Vec<(String, usize)>,
    pub connections: Vec<GroupConnection>,
}

/// Per class and group: how many members pass each filter.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    from: u64,
    to: u64,
    /// Members that pass both (pairs of a member with itself).
    both: u64,
    /// The same, among members outside the focus.
    from_unfocused: u64,
    to_unfocused: u64,
    both_unfocused: u64,
}

impl Counts {
    /// Ordered pairs (a, b), a ≠ b, a from `self`, b from `other`, that the
    /// filter keeps; `same` when both are the same class and group (so a
    /// member would meet itself).
    fn pairs(&self, other: &Counts, same: bool) -> u64 {
        let (selfs, selfs_unfocused) = if same {
            (self.both, self.both_unfocused)
        } else {
            (0, 0)
        };
        let all = self.from * other.to - selfs;
        let unfocused = self.from_unfocused * other.to_unfocused - selfs_unfocused;
        all - unfocused
    }

    fn add(&mut self, filter: &EndpointFilter, endpoint: usize) {
        let (f, t) = (filter.keeps_from(endpoint), filter.keeps_to(endpoint));
        // Without a focus every endpoint is focused.
        let unfocused = filter.focus.is_some() && !filter.is_focused(endpoint);
        self.from += u64::from(f);
        self.to += u64::from(t);
        self.both += u64::from(f && t);
        self.from_unfocused += u64::from(f && unfocused);
        self.to_unfocused += u64::from(t && unfocused);
        self.both_unfocused += u64::from(f && t && unfocused);
    }
}

/// Sums `conn` up by namespace, keeping only the pairs `filter` keeps.
pub fn group_by_namespace(conn: &Connectivity, filter: &EndpointFilter) -> GroupMatrix {
    let group_name = |e: usize| -> &str {
        conn.endpoints[e]
            .namespace
            .as_deref()
            .unwrap_or(EXTERNAL_GROUP)
    };
    // Groups in name order; the external group last.
    let mut sizes: BTreeMap<(bool, &str), usize> = BTreeMap::new();
    for e in 0..conn.endpoints.len() {
        let name = group_name(e);
        *sizes.entry((name == EXTERNAL_GROUP, name)).or_default() += 1;
    }
    let groups: Vec<(String, usize)> = sizes
        .iter()
        .map(|((_, name), n)| (name.to_string(), *n))
        .collect();
    let group_index: HashMap<&str, usize> = sizes
        .keys()
        .enumerate()
        .map(|(i, (_, name))| (*name, i))
        .collect();

    // For every class: its members' counts per group.
    let mut per_class: Vec<Vec<(usize, Counts)>> = vec![Vec::new(); conn.class_count()];
    for (class, members) in conn.class_members().into_iter().enumerate() {
        let mut by_group: BTreeMap<usize, Counts> = BTreeMap::new();
        for e in members {
            by_group
                .entry(group_index[group_name(e)])
                .or_default()
                .add(filter, e);
        }
        per_class[class] = by_group.into_iter().collect();
    }
    // Every kept pair, allowed or not: the "of" of each cell.
    let mut totals: Vec<Counts> = vec![Counts::default(); groups.len()];
    for e in 0..conn.endpoints.len() {
        totals[group_index[group_name(e)]].add(filter, e);
    }

    let mut cells: HashMap<(usize, usize), (u64, ConnSet)> = HashMap::new();
    for from_class in 0..conn.class_count() {
        for (to_class, allowed) in conn.class_row(from_class) {
            for (from_group, from_counts) in &per_class[from_class] {
                for (to_group, to_counts) in &per_class[to_class] {
                    let same = from_class == to_class && from_group == to_group;
                    let pairs = from_counts.pairs(to_counts, same);
                    if pairs == 0 {
                        continue;
                    }
                    let cell = cells
                        .entry((*from_group, *to_group))
                        .or_insert_with(|| (0, ConnSet::none()));
                    cell.0 += pairs;
                    cell.1.union_with(allowed);
                }
            }
        }
    }
    // The open block, summed per group: its source side, its destination
    // side, and the endpoints on both (which would meet themselves).
    let external_group = group_index.get(EXTERNAL_GROUP).copied();
    let mut open_from = vec![Counts::default(); groups.len()];
    let mut open_to = vec![Counts::default(); groups.len()];
    let mut open_both = vec![Counts::default(); groups.len()];
    for e in 0..conn.endpoints.len() {
        let class = conn.class_of(e);
        let g = group_index[group_name(e)];
        let (f, t) = (conn.is_open_from(class), conn.is_open_to(class));
        if f {
            open_from[g].add(filter, e);
        }
        if t {
            open_to[g].add(filter, e);
        }
        if f && t {
            open_both[g].add(filter, e);
        }
    }
    let everything = ConnSet::all();
    for (a, from) in open_from.iter().enumerate().filter(|(_, c)| c.from > 0) {
        for (b, to) in open_to.iter().enumerate().filter(|(_, c)| c.to > 0) {
            // Addresses are not analysed among themselves.
            if Some(a) == external_group && Some(b) == external_group {
                continue;
            }
            let (selfs, selfs_unfocused) = if a == b {
                (open_both[a].both, open_both[a].both_unfocused)
            } else {
                (0, 0)
            };
            let pairs = (from.from * to.to - selfs)
                - (from.from_unfocused * to.to_unfocused - selfs_unfocused);
            if pairs == 0 {
                continue;
            }
            let cell = cells.entry((a, b)).or_insert_with(|| (0, ConnSet::none()));
            cell.0 += pairs;
            cell.1.union_with(&everything);
        }
    }
    let mut connections: Vec<GroupConnection> = cells
        .into_iter()
        .map(|((f, t), (pairs, allowed))| GroupConnection {
            from: groups[f].0.clone(),
            to: groups[t].0.clone(),
            pairs,
            of: totals[f].pairs(&totals[t], f == t),
            allowed,
        })
        .collect();
    let order: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    connections.sort_by_key(|c| (order[c.from.as_str()], order[c.to.as_str()]));
    GroupMatrix {
        groups,
        connections,
    }
}

/// The class connections that hold at least one pair `filter` keeps.
pub fn class_connections_where<'c>(
    conn: &'c Connectivity,
    filter: &EndpointFilter,
) -> Vec<ClassConnection<'c>> {
    if filter.is_empty() {
        return conn.class_connections().collect();
    }
    let mut counts = vec![Counts::default(); conn.class_count()];
    for e in 0..conn.endpoints.len() {
        counts[conn.class_of(e)].add(filter, e);
    }
    conn.class_connections()
        .filter(|c| counts[c.from].pairs(&counts[c.to], c.from == c.to) > 0)
        .collect()
}

/// The open block of `conn` (see [`Connectivity::open_block`]) cut down to
/// what covers the pairs `filter` keeps: the source classes with a member
/// that passes `from`, the destination classes with a member that passes
/// `to`; with a focus, two blocks, one with the focused sources and one
/// with the focused destinations. Empty blocks are left out.
pub fn open_blocks_where(
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let Some((from, to)) = conn.open_block() else {
        return Vec::new();
    };
    if filter.is_empty() {
        return vec![(from, to)];
    }
    let members = conn.class_members();
    let any = |class: usize, test: &dyn Fn(usize) -> bool| members[class].iter().any(|&e| test(e));
    let from: Vec<usize> = from
        .into_iter()
        .filter(|&c| any(c, &|e| filter.keeps_from(e)))
        .collect();
    let to: Vec<usize> = to
        .into_iter()
        .filter(|&c| any(c, &|e| filter.keeps_to(e)))
        .collect();
    let blocks = if filter.focus.is_none() {
        vec![(from, to)]
    } else {
        let focused_from: Vec<usize> = from
            .iter()
            .copied()
            .filter(|&c| any(c, &|e| filter.keeps_from(e) && filter.is_focused(e)))
            .collect();
        let focused_to: Vec<usize> = to
            .iter()
            .copied()
            .filter(|&c| any(c, &|e| filter.keeps_to(e) && filter.is_focused(e)))
            .collect();
        vec![(focused_from, to), (from, focused_to)]
    };
    blocks
        .into_iter()
        .filter(|(f, t)| !f.is_empty() && !t.is_empty())
        .collect()
}
