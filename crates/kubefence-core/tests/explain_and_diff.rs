//! `explain` names the rules that allow a pair, or the nearest miss; `diff`
//! reports added, removed and changed connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubefence_core::engine::{AnalyzeOptions, ExplainError, diff, explain};
use kubefence_core::model::Namespace;
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use kubefence_core::selector::LabelSelector;
use kubefence_core::{Cluster, ConnSet, Protocol};

mod common;
use common::{deployment, labels, tcp};

/// `web` accepts TCP 8080 from `frontend` and 443 from 203.0.113.0/24;
/// `frontend` may only talk to `web`.
fn shop() -> Cluster {
    let mut c = Cluster {
        workloads: vec![
            deployment("shop", "web"),
            deployment("shop", "frontend"),
            deployment("shop", "batch"),
        ],
        policies: vec![
            NetworkPolicy {
                namespace: "shop".into(),
                name: "web-in".into(),
                pod_selector: LabelSelector::from_labels(labels(&[("app", "web")])),
                policy_types: PolicyTypes {
                    ingress: true,
                    egress: false,
                },
                ingress: vec![
                    Rule {
                        peers: vec![Peer::Pods {
                            namespace_selector: None,
                            pod_selector: Some(LabelSelector::from_labels(labels(&[(
                                "app", "frontend",
                            )]))),
                        }],
                        ports: vec![tcp(8080)],
                    },
                    Rule {
                        peers: vec![Peer::IpBlock(IpBlock {
                            cidr: "203.0.113.0/24".parse().unwrap(),
                            except: vec![],
                        })],
                        ports: vec![tcp(443)],
                    },
                ],
                egress: vec![],
            },
            NetworkPolicy {
                namespace: "shop".into(),
                name: "frontend-out".into(),
                pod_selector: LabelSelector::from_labels(labels(&[("app", "frontend")])),
                policy_types: PolicyTypes {
                    ingress: false,
                    egress: true,
                },
                ingress: vec![],
                egress: vec![Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "web")]))),
                    }],
                    ports: vec![PortSpec {
                        protocol: Protocol::Tcp,
                        port: Some(PortRef::Name("http".into())),
                        end_port: None,
                    }],
                }],
            },
        ],
        ..Cluster::default()
    };
    c.namespaces
        .insert("shop".into(), Namespace::implicit("shop"));
    c
}

#[test]
fn allowed_pair_names_the_rules_on_both_sides() {
    let c = shop();
    let e = explain(
        &c,
        "shop/Deployment/frontend",
        "shop/web",
        Some((Protocol::Tcp, 8080)),
        &AnalyzeOptions::default(),
    )
    .unwrap();
    assert!(e.is_allowed());
    assert_eq!(e.to, "shop/Deployment/web");
    assert!(e.egress.isolated && e.ingress.isolated);
    assert_eq!(e.egress.policies[0].policy, "shop/frontend-out");
    assert_eq!(e.egress.policies[0].allows[0].rule, 0);
    assert_eq!(e.ingress.policies[0].policy, "shop/web-in");
    assert_eq!(
        e.ingress.policies[0].allows[0].allowed,
        ConnSet::port(Protocol::Tcp, 8080)
    );
}

#[test]
fn wrong_port_is_a_port_miss_and_wrong_peer_a_selector_miss() {
    let c = shop();
    let opts = AnalyzeOptions::default();
    let e = explain(
        &c,
        "shop/frontend",
        "shop/web",
        Some((Protocol::Tcp, 9090)),
        &opts,
    )
    .unwrap();
    assert!(!e.is_allowed());
    let miss = e.ingress.policies[0].nearest_miss.as_ref().unwrap();
    assert_eq!(miss.rule, Some(0));
    assert!(
        miss.reason
            .contains("the peer matches but the ports do not"),
        "{}",
        miss.reason
    );

    let e = explain(
        &c,
        "shop/batch",
        "shop/web",
        Some((Protocol::Tcp, 8080)),
        &opts,
    )
    .unwrap();
    assert!(!e.is_allowed());
    assert!(!e.egress.isolated, "batch has no egress policy");
    assert!(e.egress.allowed.allows(Protocol::Tcp, 8080));
    let miss = e.ingress.policies[0].nearest_miss.as_ref().unwrap();
    assert!(
        miss.reason
            .contains("podSelector app=frontend does not match pod labels app=batch"),
        "{}",
        miss.reason
    );
}

#[test]
fn external_addresses_are_matched_by_ipblocks_only() {
    let c = shop();
    let opts = AnalyzeOptions::default();
    let e = explain(
        &c,
        "203.0.113.9",
        "shop/web",
        Some((Protocol::Tcp, 443)),
        &opts,
    )
    .unwrap();
    assert!(e.is_allowed());
    assert!(
        !e.egress.enforced,
        "nothing is enforced outside the cluster"
    );
    let e = explain(
        &c,
        "198.51.100.1",
        "shop/web",
        Some((Protocol::Tcp, 443)),
        &opts,
    )
    .unwrap();
    assert!(!e.is_allowed());
    // frontend's egress only reaches web: the internet is denied.
    let e = explain(&c, "shop/frontend", "8.8.8.8", None, &opts).unwrap();
    assert!(!e.is_allowed());
    assert!(
        e.egress.policies[0]
            .nearest_miss
            .as_ref()
            .unwrap()
            .reason
            .contains("never match addresses outside")
    );
    // A range that the policies cut in two cannot get one verdict.
    assert!(matches!(
        explain(&c, "203.0.0.0/8", "shop/web", None, &opts),
        Err(ExplainError::SplitRange(..))
    ));
    assert!(matches!(
        explain(&c, "shop/nope", "shop/web", None, &opts),
        Err(ExplainError::UnknownEndpoint(_))
    ));
    assert!(matches!(
        explain(&c, "1.1.1.1", "2.2.2.2", None, &opts),
        Err(ExplainError::BothExternal)
    ));
}

#[test]
fn named_port_egress_resolves_at_the_destination() {
    let c = shop();
    let e = explain(
        &c,
        "shop/frontend",
        "shop/batch",
        None,
        &AnalyzeOptions::default(),
    )
    .unwrap();
    // batch also names 8080 "http", but frontend's egress only lists web.
    assert!(!e.is_allowed());
    let e = explain(
        &c,
        "shop/frontend",
        "shop/web",
        None,
        &AnalyzeOptions::default(),
    )
    .unwrap();
    assert_eq!(e.allowed, ConnSet::port(Protocol::Tcp, 8080));
}

#[test]
fn diff_reports_removed_added_and_changed_pairs() {
    let before = shop();
    let mut after = shop();
    // web now also admits batch on 8080, and frontend's egress opens 9090 too.
    after.policies[0].ingress[0].peers.push(Peer::Pods {
        namespace_selector: None,
        pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "batch")]))),
    });
    after.policies[1].egress[0].ports.push(tcp(9090));
    after.policies[0].ingress[0].ports.push(tcp(9090));
    let d = diff(&before, &after, &AnalyzeOptions::default());
    let added: Vec<_> = d
        .added()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(added, [("shop/Deployment/batch", "shop/Deployment/web")]);
    let changed: Vec<_> = d.changed().collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].from, "shop/Deployment/frontend");
    assert_eq!(changed[0].gained(), ConnSet::port(Protocol::Tcp, 9090));
    assert!(changed[0].lost().is_empty());
    assert_eq!(d.removed().count(), 0);
    assert!(diff(&before, &before, &AnalyzeOptions::default()).is_empty());
}

/// The reason of a port miss at `side` (egress or ingress), first policy.
fn port_miss(e: &kubefence_core::engine::Explanation, ingress: bool) -> String {
    let side = if ingress { &e.ingress } else { &e.egress };
    side.policies[0]
        .nearest_miss
        .as_ref()
        .unwrap()
        .reason
        .clone()
}

#[test]
fn a_port_miss_names_the_asked_port_on_both_sides() {
    let c = shop();
    let opts = AnalyzeOptions::default();
    // frontend -> web on 22: frontend's egress allows only its named port
    // `http`, web's ingress only 8080.
    let e = explain(
        &c,
        "shop/frontend",
        "shop/web",
        Some((Protocol::Tcp, 22)),
        &opts,
    )
    .unwrap();
    assert!(!e.is_allowed());
    assert_eq!(
        port_miss(&e, false),
        "the peer matches but the ports do not: the rule allows port `http` \
         (TCP/8080 on the destination), not TCP/22"
    );
    assert_eq!(
        port_miss(&e, true),
        "the peer matches but the ports do not: the rule allows TCP/8080, not TCP/22"
    );
    // The protocol is named too: 8080/UDP is not 8080/TCP.
    let e = explain(
        &c,
        "shop/frontend",
        "shop/web",
        Some((Protocol::Udp, 8080)),
        &opts,
    )
    .unwrap();
    assert!(port_miss(&e, true).ends_with("the rule allows TCP/8080, not UDP/8080"));

    // Without a probe there is no port to name, and a named port the
    // destination does not declare says so.
    let e = explain(&c, "shop/frontend", "shop/batch", None, &opts).unwrap();
    let miss = port_miss(&e, false);
    assert!(!miss.contains(", not "), "{miss}");
    let e = explain(
        &c,
        "shop/frontend",
        "203.0.113.1",
        Some((Protocol::Tcp, 22)),
        &opts,
    )
    .unwrap();
    let miss = port_miss(&e, false);
    assert!(
        miss.ends_with(
            "the rule allows port `http` (nothing outside the cluster: addresses have no \
             named ports), not TCP/22"
        ),
        "{miss}"
    );
}
