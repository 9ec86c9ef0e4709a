//! The external address space is IPv4 and IPv6: `analyze`, `diff`,
//! `explain` and the quarantine plan all see both families, each cut at
//! every ipBlock boundary. An ipBlock of one family never speaks for the
//! other (`0.0.0.0/0` says nothing about `2001:db8::1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze, diff, explain};
use kubefence_core::model::Namespace;
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortSpec, Rule};
use kubefence_core::quarantine::{self, Audit, Engine};
use kubefence_core::selector::LabelSelector;
use kubefence_core::{Cluster, ConnSet, Protocol};

mod common;
use common::{deployment, labels, tcp};

const WEB: &str = "shop/Deployment/web";

fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    })
}

fn cluster(policies: Vec<NetworkPolicy>) -> Cluster {
    let mut c = Cluster {
        workloads: vec![deployment("shop", "web")],
        policies,
        ..Cluster::default()
    };
    c.namespaces
        .insert("shop".into(), Namespace::implicit("shop"));
    c
}

/// `web`'s egress isolated, allowed to `peers` on `ports`.
fn web_egress(peers: Vec<Peer>, ports: Vec<PortSpec>) -> NetworkPolicy {
    NetworkPolicy {
        namespace: "shop".into(),
        name: "web-out".into(),
        pod_selector: LabelSelector::from_labels(labels(&[("app", "web")])),
        policy_types: PolicyTypes {
            ingress: false,
            egress: true,
        },
        ingress: vec![],
        egress: vec![Rule { peers, ports }],
    }
}

/// The external endpoint that holds `addr`; every address has one.
fn external(conn: &Connectivity, addr: &str) -> usize {
    let ip: IpAddr = addr.parse().unwrap();
    let holders: Vec<usize> = (0..conn.endpoints.len())
        .filter(|&i| {
            conn.endpoints[i]
                .addresses
                .as_ref()
                .is_some_and(|a| a.contains(ip))
        })
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "{addr} must be in exactly one external endpoint; endpoints: {:?}",
        conn.endpoints.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    holders[0]
}

fn to(conn: &Connectivity, addr: &str) -> ConnSet {
    let web = conn.endpoint_index(WEB).unwrap();
    conn.allowed(web, external(conn, addr))
}

fn from(conn: &Connectivity, addr: &str) -> ConnSet {
    let web = conn.endpoint_index(WEB).unwrap();
    conn.allowed(external(conn, addr), web)
}

fn external_ids(conn: &Connectivity) -> Vec<&str> {
    conn.endpoints
        .iter()
        .filter(|e| e.is_external())
        .map(|e| e.id.as_str())
        .collect()
}

/// No external endpoint mixes the two families: an endpoint id is either
/// IPv4 ranges or IPv6 ranges.
fn assert_families_apart(conn: &Connectivity) {
    for e in conn.endpoints.iter().filter(|e| e.is_external()) {
        let a = e.addresses.as_ref().unwrap();
        assert!(
            a.v4.is_empty() != a.v6.is_empty(),
            "{} mixes IPv4 and IPv6 (or is empty)",
            e.id
        );
    }
}

#[test]
fn without_policies_both_families_are_open() {
    let c = cluster(vec![]);
    let conn = analyze(&c, &AnalyzeOptions::default());
    assert_eq!(external_ids(&conn), ["0.0.0.0/0", "::/0"]);
    for addr in [
        "8.8.8.8",
        "2001:db8::1",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert!(to(&conn, addr).is_all(), "web -> {addr}");
        assert!(from(&conn, addr).is_all(), "{addr} -> web");
    }
}

#[test]
fn egress_to_all_ipv4_does_not_cover_ipv6() {
    let c = cluster(vec![web_egress(vec![block("0.0.0.0/0", &[])], vec![])]);
    let conn = analyze(&c, &AnalyzeOptions::default());
    assert_families_apart(&conn);
    assert_eq!(external_ids(&conn), ["0.0.0.0/0", "::/0"]);
    assert!(to(&conn, "8.8.8.8").is_all());
    for addr in ["2001:db8::1", "::", "fd00::1"] {
        assert!(
            to(&conn, addr).is_empty(),
            "an egress rule to 0.0.0.0/0 must not allow {addr}"
        );
        // Ingress is not isolated: IPv6 clients still get in.
        assert!(from(&conn, addr).is_all(), "{addr} -> web");
    }

    let opts = AnalyzeOptions::default();
    let x = explain(&c, WEB, "2001:db8::1", None, &opts).unwrap();
    assert!(!x.is_allowed());
    let miss = x.egress.policies[0].nearest_miss.as_ref().unwrap();
    assert!(
        miss.reason
            .contains("ipBlock 0.0.0.0/0 does not contain 2001:db8::1"),
        "{}",
        miss.reason
    );
    assert!(
        explain(&c, WEB, "::/0", None, &opts)
            .unwrap()
            .allowed
            .is_empty()
    );
    assert!(
        explain(&c, WEB, "8.8.8.8", None, &opts)
            .unwrap()
            .is_allowed()
    );
}

#[test]
fn ipv6_except_carves_a_hole() {
    let c = cluster(vec![web_egress(vec![block("::/0", &["fd00::/8"])], vec![])]);
    let conn = analyze(&c, &AnalyzeOptions::default());
    assert_families_apart(&conn);
    for addr in [
        "2001:db8::1",
        "::",
        "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe00::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert!(to(&conn, addr).is_all(), "web -> {addr}");
    }
    for addr in [
        "fd00::",
        "fd12:3456::1",
        "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert!(to(&conn, addr).is_empty(), "web -> {addr} is excepted");
    }
    // IPv4 is not named by the only rule: denied.
    assert!(to(&conn, "8.8.8.8").is_empty());
    assert!(to(&conn, "0.0.0.0").is_empty());
    assert_eq!(
        external_ids(&conn),
        [
            "0.0.0.0/0",
            "::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,fe00::/7",
            "fd00::/8"
        ]
    );

    let opts = AnalyzeOptions::default();
    assert!(
        !explain(&c, WEB, "fd00::1", None, &opts)
            .unwrap()
            .is_allowed()
    );
    assert!(
        explain(&c, WEB, "2001:db8::1", None, &opts)
            .unwrap()
            .is_allowed()
    );
}

#[test]
fn mixed_families_in_one_peer_list() {
    let c = cluster(vec![web_egress(
        vec![
            block("10.0.0.0/8", &["10.1.0.0/16"]),
            block("2001:db8::/32", &["2001:db8:1::/48"]),
        ],
        vec![tcp(443)],
    )]);
    let conn = analyze(&c, &AnalyzeOptions::default());
    assert_families_apart(&conn);
    let https = ConnSet::port(Protocol::Tcp, 443);
    for addr in [
        "10.0.0.0",
        "10.255.255.255",
        "2001:db8::",
        "2001:db8:2::1",
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert_eq!(to(&conn, addr), https, "web -> {addr}");
    }
    for addr in [
        "10.1.2.3",
        "9.255.255.255",
        "11.0.0.0",
        "2001:db8:1::1",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
        "::a00:1",
    ] {
        assert!(to(&conn, addr).is_empty(), "web -> {addr}");
    }
}

#[test]
fn diff_reports_a_change_on_the_ipv6_side_only() {
    let opts = AnalyzeOptions::default();
    // Isolating egress to all of IPv4 takes IPv6 away, and nothing else.
    let before = cluster(vec![]);
    let after = cluster(vec![web_egress(vec![block("0.0.0.0/0", &[])], vec![])]);
    let d = diff(&before, &after, &opts);
    let changes: Vec<(&str, &str, bool)> = d
        .entries
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.is_removed()))
        .collect();
    assert_eq!(changes, [(WEB, "::/0", true)]);
    assert!(d.entries[0].before.is_all());

    // Carving an IPv6 hole changes only the hole.
    let before = cluster(vec![web_egress(
        vec![block("0.0.0.0/0", &[]), block("::/0", &[])],
        vec![],
    )]);
    let after = cluster(vec![web_egress(
        vec![block("0.0.0.0/0", &[]), block("::/0", &["fd00::/8"])],
        vec![],
    )]);
    let d = diff(&before, &after, &opts);
    let changes: Vec<(&str, &str, bool)> = d
        .entries
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.is_removed()))
        .collect();
    assert_eq!(changes, [(WEB, "fd00::/8", true)]);
    assert!(diff(&after, &after, &opts).is_empty());
}

fn audit() -> Audit {
    Audit {
        reason: "incident".into(),
        finding: None,
        requester: "test".into(),
        time: "2026-11-28T00:00:00Z".into(),
    }
}

#[test]
fn quarantine_lists_ipv6_paths_and_only_where_they_are_open() {
    // Another policy admits every peer on 8080, and lets web reach IPv4 only.
    let open = NetworkPolicy {
        namespace: "shop".into(),
        name: "web-open".into(),
        pod_selector: LabelSelector::from_labels(labels(&[("app", "web")])),
        policy_types: PolicyTypes {
            ingress: true,
            egress: true,
        },
        ingress: vec![Rule {
            peers: vec![],
            ports: vec![tcp(8080)],
        }],
        egress: vec![Rule {
            peers: vec![block("0.0.0.0/0", &[])],
            ports: vec![],
        }],
    };
    let c = cluster(vec![open]);
    let target = c.workloads[0].clone();
    let plan = quarantine::plan(
        &target,
        &audit(),
        Engine::NetworkPolicy,
        &c,
        &quarantine::Config::default(),
    )
    .unwrap();
    assert!(!plan.effective());
    let ingress = plan
        .remaining_paths
        .iter()
        .find(|p| p.direction == kubefence_core::Direction::Ingress)
        .unwrap();
    assert_eq!(
        ingress.endpoints,
        ["0.0.0.0/0 TCP/8080", "::/0 TCP/8080"],
        "{ingress}"
    );
    let egress = plan
        .remaining_paths
        .iter()
        .find(|p| p.direction == kubefence_core::Direction::Egress)
        .unwrap();
    assert_eq!(egress.endpoints, ["0.0.0.0/0 all"], "{egress}");

    // The plan's own check: after quarantine, IPv6 reaches web on 8080 only
    // and web reaches no IPv6 address.
    let conn = analyze(&plan.apply_to(&c), &AnalyzeOptions::default());
    assert_eq!(
        from(&conn, "2001:db8::1"),
        ConnSet::port(Protocol::Tcp, 8080)
    );
    assert!(to(&conn, "2001:db8::1").is_empty());
}
