//! Address and port sets: `kubefence_core::ipset::IpSet` (IPv4 and IPv6
//! interval sets built from CIDRs), `kubefence_core::intervals::IntervalSet`
//! and `kubefence_core::ConnSet` (ports per protocol), driven by structured
//! input (CIDRs, port ranges and probe points).
//!
//! Every operation is checked against a plain model, "an address is in the
//! set when one of its CIDRs contains it", at the probes and at every edge
//! of every CIDR and range (first, last, one before, one after); plus the
//! normal form (sorted, disjoint, non-adjacent ranges), `to_cidrs` covering
//! the set exactly with no two mergeable CIDRs, and `display_ranges` read
//! back giving the same set.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kubefence_core::conn::{ConnSet, PORT_MAX, PORT_MIN, Protocol};
use kubefence_core::intervals::{Bound, IntervalSet};
use kubefence_core::ipset::IpSet;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// Inputs are kept small: the properties are per element, and a long list
/// only slows the fuzzer down.
const MAX_ITEMS: usize = 12;

#[derive(Arbitrary, Debug)]
enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

impl Net {
    fn net(&self) -> IpNet {
        match *self {
            Net::V4(a, p) => {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), p % 33).expect("a prefix of at most 32"))
            }
            Net::V6(a, p) => IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), p % 129).expect("a prefix of at most 128"),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct PortRange {
    protocol: u8,
    lo: u16,
    hi: u16,
}

impl PortRange {
    fn protocol(&self) -> Protocol {
        Protocol::ALL[usize::from(self.protocol) % Protocol::ALL.len()]
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    a: Vec<Net>,
    b: Vec<Net>,
    probes: Vec<Net>,
    ports_a: Vec<PortRange>,
    ports_b: Vec<PortRange>,
    port_probes: Vec<u16>,
}

fuzz_target!(|input: Input| {
    let nets = |list: &[Net]| -> Vec<IpNet> { list.iter().take(MAX_ITEMS).map(Net::net).collect() };
    let (a, b) = (nets(&input.a), nets(&input.b));
    check_addresses(&a, &b, &nets(&input.probes));
    let ranges = |list: &[PortRange]| -> Vec<(Protocol, u16, u16)> {
        list.iter()
            .take(MAX_ITEMS)
            .map(|r| (r.protocol(), r.lo, r.hi))
            .collect()
    };
    check_ports(
        &ranges(&input.ports_a),
        &ranges(&input.ports_b),
        &input.port_probes,
    );
});

fn set_of(nets: &[IpNet]) -> IpSet {
    nets.iter()
        .fold(IpSet::empty(), |set, n| set.union(&IpSet::from_net(n)))
}

fn in_model(nets: &[IpNet], address: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&address))
}

fn check_addresses(a: &[IpNet], b: &[IpNet], probes: &[IpNet]) {
    let (set_a, set_b) = (set_of(a), set_of(b));
    for set in [&set_a, &set_b] {
        normal_form(set.v4.ranges());
        normal_form(set.v6.ranges());
    }
    let union = set_a.union(&set_b);
    let intersection = set_a.intersection(&set_b);
    let difference = set_a.difference(&set_b);

    let points: Vec<IpAddr> = a
        .iter()
        .chain(b)
        .flat_map(edges)
        .chain(probes.iter().map(IpNet::addr))
        .collect();
    for &p in &points {
        let (in_a, in_b) = (in_model(a, p), in_model(b, p));
        assert_eq!(set_a.contains(p), in_a, "{p} in a");
        assert_eq!(union.contains(p), in_a || in_b, "{p} in a ∪ b");
        assert_eq!(intersection.contains(p), in_a && in_b, "{p} in a ∩ b");
        assert_eq!(difference.contains(p), in_a && !in_b, "{p} in a \\ b");
    }
    assert!(union.is_superset(&set_a) && union.is_superset(&set_b));
    assert!(set_a.is_superset(&intersection) && set_a.is_superset(&difference));
    assert_eq!(set_a.intersects(&set_b), !intersection.is_empty());
    assert_eq!(difference.union(&intersection), set_a);
    assert!(!difference.intersects(&set_b));

    check_cidrs(&union);
    check_cidrs(&difference);
    check_display(&union);
    check_display(&difference);
}

/// The first and last address of a CIDR, and the ones just outside it.
fn edges(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            [Some(lo), Some(hi), lo.prev(), hi.next()]
                .into_iter()
                .flatten()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .collect()
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            [Some(lo), Some(hi), lo.prev(), hi.next()]
                .into_iter()
                .flatten()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .collect()
        }
    }
}

fn normal_form<T: Bound>(ranges: &[(T, T)]) {
    for &(lo, hi) in ranges {
        assert!(lo <= hi, "range {lo:?}-{hi:?} is reversed");
    }
    for pair in ranges.windows(2) {
        let ((_, hi), (lo, _)) = (pair[0], pair[1]);
        assert!(
            hi.next().is_some_and(|n| n < lo),
            "ranges {pair:?} overlap or touch"
        );
    }
}

fn check_cidrs(set: &IpSet) {
    let cidrs = set.to_cidrs();
    assert_eq!(
        set_of(&cidrs),
        *set,
        "to_cidrs does not cover the set exactly"
    );
    for n in &cidrs {
        assert_eq!(*n, n.trunc(), "{n} has host bits");
    }
    // Minimal: two neighbours that together form one CIDR would be one.
    for pair in cidrs.windows(2) {
        if let Some(parent) = pair[0].supernet()
            && pair[1].supernet() == Some(parent)
        {
            panic!("{} and {} make {parent}", pair[0], pair[1]);
        }
    }
}

/// `display_ranges` read back: CIDRs as written, `first-last` otherwise,
/// and a `first-last` never where a CIDR was exact.
fn check_display(set: &IpSet) {
    let text = set.display_ranges();
    if set.is_empty() {
        assert!(text.is_empty());
        return;
    }
    let mut read = IpSet::empty();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: IpAddr = lo.parse().expect("a first address");
                let hi: IpAddr = hi.parse().expect("a last address");
                let span = IpSet::from_addr(lo).union(&IpSet::from_addr(hi));
                let range = match (lo, hi) {
                    (IpAddr::V4(lo), IpAddr::V4(hi)) => IpSet {
                        v4: IntervalSet::range(u32::from(lo), u32::from(hi)),
                        ..IpSet::empty()
                    },
                    (IpAddr::V6(lo), IpAddr::V6(hi)) => IpSet {
                        v6: IntervalSet::range(u128::from(lo), u128::from(hi)),
                        ..IpSet::empty()
                    },
                    _ => panic!("{part} mixes IPv4 and IPv6"),
                };
                assert!(range.is_superset(&span), "{part} is reversed");
                assert!(range.to_cidrs().len() > 1, "{part} is one CIDR");
                range
            }
            None => {
                let net: IpNet = part.parse().expect("a CIDR");
                assert_eq!(net, net.trunc(), "{part} has host bits");
                IpSet::from_net(&net)
            }
        };
        read = read.union(&range);
    }
    assert_eq!(read, *set, "display_ranges {text} read back differs");
}

fn check_ports(a: &[(Protocol, u16, u16)], b: &[(Protocol, u16, u16)], probes: &[u16]) {
    let conns = |list: &[(Protocol, u16, u16)]| {
        list.iter().fold(ConnSet::none(), |set, &(p, lo, hi)| {
            set.union(&ConnSet::ports(p, lo, hi))
        })
    };
    let (set_a, set_b) = (conns(a), conns(b));
    let in_model = |list: &[(Protocol, u16, u16)], protocol: Protocol, port: u16| {
        port >= PORT_MIN
            && list
                .iter()
                .any(|&(p, lo, hi)| p == protocol && lo <= port && port <= hi)
    };
    let union = set_a.union(&set_b);
    let intersection = set_a.intersection(&set_b);
    let difference = set_a.difference(&set_b);
    let points: Vec<u16> = a
        .iter()
        .chain(b)
        .flat_map(|&(_, lo, hi)| [Some(lo), Some(hi), lo.prev(), hi.next()])
        .flatten()
        .chain(probes.iter().copied())
        .chain([0, PORT_MIN, PORT_MAX])
        .collect();
    for protocol in Protocol::ALL {
        normal_form(set_a.ports_of(protocol).ranges());
        for &port in &points {
            let (in_a, in_b) = (in_model(a, protocol, port), in_model(b, protocol, port));
            assert_eq!(set_a.allows(protocol, port), in_a, "{protocol}/{port} in a");
            assert_eq!(union.allows(protocol, port), in_a || in_b);
            assert_eq!(intersection.allows(protocol, port), in_a && in_b);
            assert_eq!(difference.allows(protocol, port), in_a && !in_b);
        }
        // The same ports as one IntervalSet, collected in any order.
        let collected: IntervalSet<u16> = a
            .iter()
            .filter(|&&(p, _, _)| p == protocol)
            .map(|&(_, lo, hi)| (lo.max(PORT_MIN), hi))
            .collect();
        assert_eq!(&collected, set_a.ports_of(protocol));
        assert_eq!(collected.complement().complement(), collected);
        assert!(!collected.intersects(&collected.complement()));
        assert!(collected.union(&collected.complement()).is_full());
    }
    let mut accumulated = set_a.clone();
    accumulated.union_with(&set_b);
    assert_eq!(accumulated, union, "union_with differs from union");
    // Ports start at 1: every set built from ports fits inside "all".
    assert_eq!(
        ConnSet::all().difference(&union).union(&union),
        ConnSet::all()
    );
    assert!(!set_a.allows_portless_protocols());
}
