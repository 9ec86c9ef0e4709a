//! Coverage: which policies isolate each workload, direction by direction,
//! and which allowed connections cross to the public internet. The views a
//! person reads first in a report: "is this workload protected at all, and
//! by what?" and "what may talk to the internet?".

use std::sync::OnceLock;

use ipnet::IpNet;

use crate::ipset::IpSet;
use crate::model::Cluster;
use crate::policy::Direction;

use super::analyze::{Connectivity, EndpointFilter};

/// The policies that isolate one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// `namespace/Kind/name`.
    pub workload: String,
    /// `namespace/name` of every policy that selects the workload's pods and
    /// isolates them for ingress; empty: ingress is not isolated.
    pub ingress: Vec<String>,
    /// The same for egress.
    pub egress: Vec<String>,
}

/// For every workload of `cluster` (in the cluster's order), the policies
/// that isolate it for ingress and for egress (sorted by id).
pub fn coverage(cluster: &Cluster) -> Vec<Coverage> {
    cluster
        .workloads
        .iter()
        .map(|w| {
            let isolating = |direction: Direction| {
                let mut ids: Vec<String> = cluster
                    .policies
                    .iter()
                    .filter(|p| {
                        p.namespace == w.namespace
                            && p.isolates(direction)
                            && p.pod_selector.matches(&w.pod_labels)
                    })
                    .map(|p| p.id())
                    .collect();
                ids.sort();
                ids
            };
            Coverage {
                workload: w.id(),
                ingress: isolating(Direction::Ingress),
                egress: isolating(Direction::Egress),
            }
        })
        .collect()
}

/// Addresses that are not on the public internet: private, shared
/// (carrier-grade NAT), loopback, link-local, multicast, reserved and
/// documentation ranges of both families (IANA special-purpose registries).
const NOT_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// The public internet: every address outside [`NOT_PUBLIC`].
pub fn public_internet() -> &'static IpSet {
    static SET: OnceLock<IpSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut not_public = IpSet::empty();
        for cidr in NOT_PUBLIC {
            // The table is constant; a parse failure would be a typo caught
            // by the unit test, and skipping it keeps the set conservative
            // (more addresses count as public).
            if let Ok(net) = cidr.parse::<IpNet>() {
                not_public = not_public.union(&IpSet::from_net(&net));
            }
        }
        IpSet::everything().difference(&not_public)
    })
}

/// One allowed connection between a workload and public addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternetPath {
    /// Egress: the workload may open connections to the internet; ingress:
    /// the internet may open connections to the workload.
    pub direction: Direction,
    /// Endpoint index of the workload.
    pub workload: usize,
    /// Endpoint index of the external endpoint.
    pub external: usize,
    /// The public part of the external endpoint's addresses.
    pub public: IpSet,
}

/// The connections that `filter` keeps between a workload and an external
/// endpoint holding public addresses, in connection order.
pub fn internet_paths(conn: &Connectivity, filter: &EndpointFilter) -> Vec<InternetPath> {
    let public_part = |i: usize| {
        conn.endpoints[i]
            .addresses
            .as_ref()
            .map(|a| a.intersection(public_internet()))
            .filter(|p| !p.is_empty())
    };
    conn.connections_where(filter)
        .filter_map(|c| {
            let (from, to) = (&conn.endpoints[c.from], &conn.endpoints[c.to]);
            match (from.is_external(), to.is_external()) {
                (false, true) => public_part(c.to).map(|public| InternetPath {
                    direction: Direction::Egress,
                    workload: c.from,
                    external: c.to,
                    public,
                }),
                (true, false) => public_part(c.from).map(|public| InternetPath {
                    direction: Direction::Ingress,
                    workload: c.to,
                    external: c.from,
                    public,
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_not_public_range_parses() {
        for cidr in NOT_PUBLIC {
            assert!(cidr.parse::<IpNet>().is_ok(), "{cidr}");
        }
    }

    #[test]
    fn public_internet_excludes_private_ranges() {
        let public = public_internet();
        for private in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "fd00::1",
            "::1",
        ] {
            assert!(!public.contains(private.parse().unwrap()), "{private}");
        }
        for open in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert!(public.contains(open.parse().unwrap()), "{open}");
        }
    }
}
