//! Sets of IP addresses (IPv4 and IPv6) as interval sets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::intervals::IntervalSet;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpSet {
    pub v4: IntervalSet<u32>,
    pub v6: IntervalSet<u128>,
}

// === impl IpSet ===

impl IpSet {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every address of both families: `0.0.0.0/0` and `::/0`.
    pub fn everything() -> Self {
        Self {
            v4: IntervalSet::full(),
            v6: IntervalSet::full(),
        }
    }

    pub fn from_net(net: &IpNet) -> Self {
        let mut set = Self::empty();
        match net {
            IpNet::V4(n) => {
                set.v4 = IntervalSet::range(u32::from(n.network()), u32::from(n.broadcast()))
            }
            IpNet::V6(n) => {
                set.v6 = IntervalSet::range(u128::from(n.network()), u128::from(n.broadcast()))
            }
        }
        set
    }

    pub fn from_addr(addr: IpAddr) -> Self {
        let mut set = Self::empty();
        match addr {
            IpAddr::V4(a) => set.v4 = IntervalSet::single(u32::from(a)),
            IpAddr::V6(a) => set.v6 = IntervalSet::single(u128::from(a)),
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    pub fn union(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    pub fn difference(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.difference(&other.v4),
            v6: self.v6.difference(&other.v6),
        }
    }

    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.intersection(&other.v4),
            v6: self.v6.intersection(&other.v6),
        }
    }

    pub fn is_superset(&self, other: &Self) -> bool {
        self.v4.is_superset(&other.v4) && self.v6.is_superset(&other.v6)
    }

    pub fn intersects(&self, other: &Self) -> bool {
        self.v4.intersects(&other.v4) || self.v6.intersects(&other.v6)
    }

    /// The smallest list of CIDRs that covers exactly this set.
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for &(lo, hi) in self.v4.ranges() {
            out.extend(
                ipnet::Ipv4Subnets::new(Ipv4Addr::from(lo), Ipv4Addr::from(hi), 0).map(IpNet::V4),
            );
        }
        for &(lo, hi) in self.v6.ranges() {
            out.extend(
                ipnet::Ipv6Subnets::new(Ipv6Addr::from(lo), Ipv6Addr::from(hi), 0).map(IpNet::V6),
            );
        }
        out
    }

    /// One range as people write it: a CIDR when it is exactly one, else
    /// `first-last`. Ranges are joined by commas.
    pub fn display_ranges(&self) -> String {
        let mut parts = Vec::new();
        for &(lo, hi) in self.v4.ranges() {
            parts.push(range_text(
                IpAddr::V4(Ipv4Addr::from(lo)),
                IpAddr::V4(Ipv4Addr::from(hi)),
                v4_prefix(lo, hi),
            ));
        }
        for &(lo, hi) in self.v6.ranges() {
            parts.push(range_text(
                IpAddr::V6(Ipv6Addr::from(lo)),
                IpAddr::V6(Ipv6Addr::from(hi)),
                v6_prefix(lo, hi),
            ));
        }
        parts.join(",")
    }
}

fn range_text(lo: IpAddr, hi: IpAddr, prefix: Option<u8>) -> String {
    match prefix {
        Some(p) => format!("{lo}/{p}"),
        None => format!("{lo}-{hi}"),
    }
}

/// The prefix length when `lo..=hi` is exactly one CIDR.
fn v4_prefix(lo: u32, hi: u32) -> Option<u8> {
    let size = u64::from(hi - lo) + 1;
    (size.is_power_of_two() && u64::from(lo).is_multiple_of(size))
        .then(|| 32 - size.trailing_zeros() as u8)
        .and_then(|p| {
            Ipv4Net::new(Ipv4Addr::from(lo), p)
                .ok()
                .map(|n| n.prefix_len())
        })
}

fn v6_prefix(lo: u128, hi: u128) -> Option<u8> {
    let span = hi - lo;
    if span == u128::MAX {
        return Some(0);
    }
    let size = span + 1;
    (size.is_power_of_two() && lo.is_multiple_of(size))
        .then(|| 128 - size.trailing_zeros() as u8)
        .and_then(|p| {
            Ipv6Net::new(Ipv6Addr::from(lo), p)
                .ok()
                .map(|n| n.prefix_len())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn except_carves_holes_and_displays_as_ranges() {
        let set =
            IpSet::from_net(&net("10.0.0.0/8")).difference(&IpSet::from_net(&net("10.1.0.0/16")));
        assert!(set.contains("10.0.0.1".parse().unwrap()));
        assert!(!set.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(set.display_ranges(), "10.0.0.0/16,10.2.0.0-10.255.255.255");
        assert_eq!(
            IpSet::from_net(&net("0.0.0.0/0")).display_ranges(),
            "0.0.0.0/0"
        );
        assert_eq!(IpSet::from_net(&net("::/0")).display_ranges(), "::/0");
        assert_eq!(set.to_cidrs().first(), Some(&net("10.0.0.0/16")));
    }
}
