//! Pair-by-pair comparison of kubefence's [`Connectivity`] with nca's.
//!
//! Workload pairs are compared exactly (per protocol port sets, plus the
//! port-less protocols that "all connections" includes). External
//! addresses are compared on probe addresses: both ends of every range
//! either side printed, and the addresses just outside them, so two
//! different partitions of the address space can still be compared.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kubefence_core::engine::Connectivity;
use kubefence_core::ipset::IpSet;

use crate::nca::{Conns, NcaEdge, NcaEndpoint};

/// One ordered pair on which the two disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub from: String,
    pub to: String,
    pub ours: String,
    pub nca: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} => {}\n    kubefence: {}\n    nca:       {}",
            self.from, self.to, self.ours, self.nca
        )
    }
}

/// Compares every ordered pair of distinct workloads, and every workload
/// with every probe address in both directions.
pub fn compare(ours: &Connectivity, nca: &[NcaEdge]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let workloads: Vec<usize> = (0..ours.endpoints.len())
        .filter(|&i| !ours.endpoints[i].is_external())
        .collect();
    let index: HashMap<&str, usize> = workloads
        .iter()
        .map(|&i| (ours.endpoints[i].id.as_str(), i))
        .collect();

    // nca endpoints we do not know are mismatches by themselves.
    for edge in nca {
        for end in [&edge.from, &edge.to] {
            if let NcaEndpoint::Workload(id) = end
                && !index.contains_key(id.as_str())
            {
                out.push(Mismatch {
                    from: id.clone(),
                    to: "-".into(),
                    ours: "(no such endpoint)".into(),
                    nca: edge.line.clone(),
                });
            }
        }
    }

    // Workload pairs.
    let mut nca_pairs: HashMap<(usize, usize), Conns> = HashMap::new();
    for edge in nca {
        if let (NcaEndpoint::Workload(a), NcaEndpoint::Workload(b)) = (&edge.from, &edge.to)
            && let (Some(&i), Some(&j)) = (index.get(a.as_str()), index.get(b.as_str()))
        {
            let e = nca_pairs.entry((i, j)).or_default();
            *e = e.union(&edge.conns);
        }
    }
    for &i in &workloads {
        for &j in &workloads {
            if i == j {
                continue;
            }
            let mine = Conns::from_conn_set(&ours.allowed(i, j));
            let theirs = nca_pairs.remove(&(i, j)).unwrap_or_default();
            if mine != theirs {
                out.push(Mismatch {
                    from: ours.endpoints[i].id.clone(),
                    to: ours.endpoints[j].id.clone(),
                    ours: mine.to_string(),
                    nca: theirs.to_string(),
                });
            }
        }
    }

    // External addresses, on probes.
    let externals: Vec<usize> = (0..ours.endpoints.len())
        .filter(|&i| ours.endpoints[i].is_external())
        .collect();
    let mut ranges: Vec<&IpSet> = externals
        .iter()
        .filter_map(|&i| ours.endpoints[i].addresses.as_ref())
        .collect();
    for edge in nca {
        for end in [&edge.from, &edge.to] {
            if let NcaEndpoint::Addresses(set) = end {
                ranges.push(set);
            }
        }
    }
    let probes = probes(&ranges);
    // nca's workload <-> address lines, by (workload, outbound).
    let mut by_workload: HashMap<(usize, bool), Vec<(&IpSet, &Conns)>> = HashMap::new();
    for edge in nca {
        let (w, set, outbound) = match (&edge.from, &edge.to) {
            (NcaEndpoint::Workload(id), NcaEndpoint::Addresses(set)) => (id, set, true),
            (NcaEndpoint::Addresses(set), NcaEndpoint::Workload(id)) => (id, set, false),
            _ => continue,
        };
        if let Some(&w) = index.get(w.as_str()) {
            by_workload
                .entry((w, outbound))
                .or_default()
                .push((set, &edge.conns));
        }
    }
    let no_edges = Vec::new();
    for probe in probes {
        let ext = externals.iter().copied().find(|&e| {
            ours.endpoints[e]
                .addresses
                .as_ref()
                .is_some_and(|a| a.contains(probe))
        });
        // Every address, of either family, belongs to one of our external
        // endpoints; one that does not is a mismatch whatever nca says.
        let Some(ext) = ext else {
            out.push(Mismatch {
                from: probe.to_string(),
                to: "-".into(),
                ours: "(no external endpoint holds this address)".into(),
                nca: "-".into(),
            });
            continue;
        };
        for &w in &workloads {
            for outbound in [true, false] {
                let mine = if outbound {
                    Conns::from_conn_set(&ours.allowed(w, ext))
                } else {
                    Conns::from_conn_set(&ours.allowed(ext, w))
                };
                let mut theirs = Conns::none();
                for (set, conns) in by_workload.get(&(w, outbound)).unwrap_or(&no_edges) {
                    if set.contains(probe) {
                        theirs = theirs.union(conns);
                    }
                }
                if mine != theirs {
                    let wid = ours.endpoints[w].id.clone();
                    let addr = format!("{probe} (in {})", ours.endpoints[ext].id);
                    let (from, to) = if outbound { (wid, addr) } else { (addr, wid) };
                    out.push(Mismatch {
                        from,
                        to,
                        ours: mine.to_string(),
                        nca: theirs.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// Both ends of every range and the addresses just outside them.
fn probes(ranges: &[&IpSet]) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for set in ranges {
        for &(lo, hi) in set.v4.ranges() {
            for a in [Some(lo), Some(hi), lo.checked_sub(1), hi.checked_add(1)]
                .into_iter()
                .flatten()
            {
                out.insert(IpAddr::V4(Ipv4Addr::from(a)));
            }
        }
        for &(lo, hi) in set.v6.ranges() {
            for a in [Some(lo), Some(hi), lo.checked_sub(1), hi.checked_add(1)]
                .into_iter()
                .flatten()
            {
                out.insert(IpAddr::V6(Ipv6Addr::from(a)));
            }
        }
    }
    out
}

/// A readable report of mismatches, at most `limit` of them.
pub fn report(mismatches: &[Mismatch], limit: usize) -> String {
    let mut s = String::new();
    for m in mismatches.iter().take(limit) {
        s.push_str(&m.to_string());
        s.push('\n');
    }
    if mismatches.len() > limit {
        s.push_str(&format!("... and {} more\n", mismatches.len() - limit));
    }
    s
}
