//! Ports and CIDRs of NetworkPolicies: a networking.k8s.io/v1
//! `NetworkPolicySpec` as JSON, converted by
//! `kubefence_k8s::convert::network_policy`, then its ipBlocks turned into
//! address sets (`kubefence_core::ipset`) and its ports checked.
//!
//! Checks, for every policy that converts:
//! - an ipBlock's CIDR contains the address written in it, its network and
//!   broadcast address; every `except` lies strictly inside the CIDR and its
//!   addresses are not in the block; the block's address set is covered
//!   exactly by its own `to_cidrs`;
//! - a port is in 1-65535, `endPort` only follows a numeric port and is not
//!   below it, a port name is a valid IANA service name;
//! - nothing is lost or invented: as many rules, peers and ports as written;
//! - rendered back to a NetworkPolicy and converted again, the policy is the
//!   same (the rules of a direction it does not isolate aside).
#![no_main]

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::ipset::IpSet;
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PortRef, PortSpec, Rule};
use kubefence_k8s::convert::network_policy;
use kubefence_k8s::render;
use libfuzzer_sys::fuzz_target;

const NAMESPACE: &str = "fuzz";

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<net::NetworkPolicySpec>(data) else {
        return;
    };
    let object = net::NetworkPolicy {
        metadata: meta::ObjectMeta {
            name: Some("fuzz".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(spec.clone()),
    };
    let Ok(policy) = network_policy(&object, NAMESPACE) else {
        return;
    };

    let written_ingress: Vec<(usize, usize)> = spec
        .ingress
        .iter()
        .flatten()
        .map(|r| (count(&r.from), count(&r.ports)))
        .collect();
    let written_egress: Vec<(usize, usize)> = spec
        .egress
        .iter()
        .flatten()
        .map(|r| (count(&r.to), count(&r.ports)))
        .collect();
    assert_eq!(
        shape(&policy.ingress),
        written_ingress,
        "ingress rules changed"
    );
    assert_eq!(
        shape(&policy.egress),
        written_egress,
        "egress rules changed"
    );

    let written_blocks = spec
        .ingress
        .iter()
        .flatten()
        .flat_map(|r| r.from.iter().flatten())
        .chain(
            spec.egress
                .iter()
                .flatten()
                .flat_map(|r| r.to.iter().flatten()),
        )
        .filter_map(|p| p.ip_block.as_ref());
    let blocks = policy
        .ingress
        .iter()
        .chain(&policy.egress)
        .flat_map(|r| &r.peers)
        .filter_map(|p| match p {
            Peer::IpBlock(b) => Some(b),
            Peer::Pods { .. } => None,
        });
    for (written, block) in written_blocks.zip(blocks) {
        check_block(written, block);
    }
    for port in policy
        .ingress
        .iter()
        .chain(&policy.egress)
        .flat_map(|r| &r.ports)
    {
        check_port(port);
    }

    let rendered = render::network_policy(&policy);
    let again = network_policy(&rendered, NAMESPACE).expect("a rendered policy converts");
    assert_eq!(
        effective(&again),
        effective(&policy),
        "render and convert again changed the policy"
    );
});

fn count<T>(items: &Option<Vec<T>>) -> usize {
    items.as_ref().map_or(0, Vec::len)
}

fn shape(rules: &[Rule]) -> Vec<(usize, usize)> {
    rules
        .iter()
        .map(|r| (r.peers.len(), r.ports.len()))
        .collect()
}

fn check_block(written: &net::IPBlock, block: &IpBlock) {
    let parsed: IpNet = written.cidr.parse().expect("an accepted CIDR parses");
    assert_eq!(block.cidr, parsed.trunc(), "the CIDR changed");
    let whole = IpSet::from_net(&block.cidr);
    for address in [parsed.addr(), block.cidr.network(), block.cidr.broadcast()] {
        assert!(whole.contains(address), "{} lacks {address}", block.cidr);
    }
    let addresses = block.addresses();
    assert!(whole.is_superset(&addresses));
    for except in &block.except {
        assert!(
            block.cidr.contains(except) && except.prefix_len() > block.cidr.prefix_len(),
            "except {except} is not strictly inside {}",
            block.cidr
        );
        for address in [except.network(), except.broadcast()] {
            assert!(
                !addresses.contains(address),
                "{address} of except {except} is in the block"
            );
        }
    }
    let covered = addresses
        .to_cidrs()
        .iter()
        .fold(IpSet::empty(), |set, net| set.union(&IpSet::from_net(net)));
    assert_eq!(
        covered, addresses,
        "to_cidrs does not cover the block exactly"
    );
}

fn check_port(port: &PortSpec) {
    match (&port.port, port.end_port) {
        (Some(PortRef::Number(start)), end) => {
            assert!(*start >= 1, "port 0 accepted");
            if let Some(end) = end {
                assert!(end >= *start, "endPort {end} below port {start}");
            }
        }
        (Some(PortRef::Name(name)), end) => {
            assert!(end.is_none(), "endPort with a named port");
            assert!(is_iana_service_name(name), "port name {name:?} accepted");
        }
        (None, end) => assert!(end.is_none(), "endPort without a port"),
    }
}

/// IANA_SVC_NAME as the API server checks it (RFC 6335): 1-15 characters,
/// lower-case letters, digits and '-', at least one letter, no '-' at
/// either end and no "--".
fn is_iana_service_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The policy with the rules of a direction it does not isolate left out:
/// they have no effect, and rendering drops them.
fn effective(policy: &NetworkPolicy) -> NetworkPolicy {
    let mut p = policy.clone();
    if !p.policy_types.ingress {
        p.ingress.clear();
    }
    if !p.policy_types.egress {
        p.egress.clear();
    }
    p
}
