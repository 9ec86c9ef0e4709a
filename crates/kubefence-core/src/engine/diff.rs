//! Semantic diff of two clusters' connectivity.

use std::collections::BTreeMap;

use crate::conn::ConnSet;
use crate::ipset::IpSet;
use crate::model::Cluster;
use crate::policy::Peer;

use super::AnalyzeOptions;
use super::analyze::{Connectivity, analyze_with_boundaries};

/// One pair whose allowed connections differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    pub from: String,
    pub to: String,
    /// Empty when the pair had no connection before.
    pub before: ConnSet,
    /// Empty when the pair has no connection after.
    pub after: ConnSet,
}

impl DiffEntry {
    pub fn is_added(&self) -> bool {
        self.before.is_empty()
    }
    pub fn is_removed(&self) -> bool {
        self.after.is_empty()
    }
    /// What is newly allowed.
    pub fn gained(&self) -> ConnSet {
        self.after.difference(&self.before)
    }
    /// What is no longer allowed.
    pub fn lost(&self) -> ConnSet {
        self.before.difference(&self.after)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectivityDiff {
    /// Sorted by (from, to).
    pub entries: Vec<DiffEntry>,
}

impl ConnectivityDiff {
    pub fn added(&self) -> impl Iterator<Item = &DiffEntry> {
        self.entries.iter().filter(|e| e.is_added())
    }
    pub fn removed(&self) -> impl Iterator<Item = &DiffEntry> {
        self.entries.iter().filter(|e| e.is_removed())
    }
    pub fn changed(&self) -> impl Iterator<Item = &DiffEntry> {
        self.entries
            .iter()
            .filter(|e| !e.is_added() && !e.is_removed())
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The connections that differ between `before` and `after`. Endpoints are
/// matched by id; the external address space is cut at the ipBlock
/// boundaries of both sides, so external ranges line up.
pub fn diff(before: &Cluster, after: &Cluster, opts: &AnalyzeOptions) -> ConnectivityDiff {
    diff_views(before, after, opts).diff
}

/// A diff with the two analyses it compares, whose external endpoints are
/// cut at the ipBlock boundaries of both sides (so their ids are the ids
/// the diff names): what a view drawing both states needs.
#[derive(Clone, Debug)]
pub struct DiffViews {
    pub diff: ConnectivityDiff,
    pub before: Connectivity,
    pub after: Connectivity,
}

/// [`diff`], keeping both analyses.
pub fn diff_views(before: &Cluster, after: &Cluster, opts: &AnalyzeOptions) -> DiffViews {
    let boundaries: Vec<IpSet> = [before, after]
        .iter()
        .flat_map(|c| &c.policies)
        .flat_map(|p| p.ingress.iter().chain(&p.egress))
        .flat_map(|r| &r.peers)
        .filter_map(|peer| match peer {
            Peer::IpBlock(b) => Some(b.addresses()),
            Peer::Pods { .. } => None,
        })
        .collect();
    let old = analyze_with_boundaries(before, opts, &boundaries);
    let new = analyze_with_boundaries(after, opts, &boundaries);

    let mut pairs: BTreeMap<(String, String), (ConnSet, ConnSet)> = BTreeMap::new();
    for c in old.connections() {
        let key = (
            old.endpoints[c.from].id.clone(),
            old.endpoints[c.to].id.clone(),
        );
        pairs.entry(key).or_default().0 = c.allowed.clone();
    }
    for c in new.connections() {
        let key = (
            new.endpoints[c.from].id.clone(),
            new.endpoints[c.to].id.clone(),
        );
        pairs.entry(key).or_default().1 = c.allowed.clone();
    }
    let entries = pairs
        .into_iter()
        .filter(|(_, (b, a))| b != a)
        .map(|((from, to), (before, after))| DiffEntry {
            from,
            to,
            before,
            after,
        })
        .collect();
    DiffViews {
        diff: ConnectivityDiff { entries },
        before: old,
        after: new,
    }
}
