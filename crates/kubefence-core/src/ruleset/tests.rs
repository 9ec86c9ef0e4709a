#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::selector::Labels;

fn rules(egress: Traffic) -> RuleSet {
    RuleSet {
        name: "p".into(),
        cluster_name: "p-x".into(),
        namespace: "ns".into(),
        subject: LabelSelector::from_labels(Labels::from([("app".to_string(), "a".to_string())])),
        ingress: Traffic::default(),
        egress,
        process: Vec::new(),
        file: Vec::new(),
        enforcement: Enforcement::Enforce,
        rule_prefix: "kf".into(),
        message: None,
        labels: Labels::new(),
        annotations: Labels::new(),
    }
}

fn deny(cidrs: &[&str]) -> TrafficRule {
    TrafficRule {
        name: "d".into(),
        peers: cidrs
            .iter()
            .map(|c| Endpoint::cidr(c.parse().unwrap()))
            .collect(),
        ports: Vec::new(),
    }
}

#[test]
fn a_cidr_deny_becomes_excepts_of_allow_all() {
    let r = rules(Traffic {
        isolate: false,
        allow: Vec::new(),
        deny: vec![deny(&["169.254.169.254/32", "fd00:ec2::254/128"])],
    });
    let np = to_network_policy(&r, &NetworkPolicyOptions::default()).unwrap();
    assert!(np.policy_types.egress && !np.policy_types.ingress);
    let blocks: Vec<&IpBlock> = np.egress[0]
        .peers
        .iter()
        .filter_map(|p| match p {
            Peer::IpBlock(b) => Some(b),
            Peer::Pods { .. } => None,
        })
        .collect();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks[0].except,
        vec!["169.254.169.254/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        blocks[1].except,
        vec!["fd00:ec2::254/128".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn a_deny_covering_an_allowed_block_removes_it_and_never_leaves_an_empty_rule() {
    let r = rules(Traffic {
        isolate: true,
        allow: vec![TrafficRule {
            name: "a".into(),
            peers: vec![Endpoint::cidr("10.1.0.0/16".parse().unwrap())],
            ports: Vec::new(),
        }],
        deny: vec![deny(&["10.0.0.0/8"])],
    });
    let np = to_network_policy(&r, &NetworkPolicyOptions::default()).unwrap();
    // A rule without peers would allow every peer: it must be gone.
    assert!(np.egress.is_empty());
    assert!(np.policy_types.egress);
}

#[test]
fn deny_by_pod_or_port_is_unsupported_in_networkpolicy() {
    let mut d = deny(&["10.0.0.0/8"]);
    d.ports = vec![PortSpec {
        protocol: crate::conn::Protocol::Tcp,
        port: None,
        end_port: None,
    }];
    let r = rules(Traffic {
        isolate: false,
        allow: Vec::new(),
        deny: vec![d],
    });
    assert!(to_network_policy(&r, &NetworkPolicyOptions::default()).is_err());
    let r = rules(Traffic {
        isolate: true,
        allow: Vec::new(),
        deny: vec![TrafficRule {
            name: "d".into(),
            peers: vec![Endpoint::all_pods()],
            ports: Vec::new(),
        }],
    });
    assert!(to_network_policy(&r, &NetworkPolicyOptions::default()).is_err());
}

#[test]
fn check_refuses_an_empty_subject_and_rules_without_peers() {
    let mut r = rules(Traffic::default());
    r.subject = LabelSelector::everything();
    assert!(matches!(r.check(), Err(RuleSetError::EmptySubject { .. })));
    let r = rules(Traffic {
        isolate: true,
        allow: vec![TrafficRule {
            name: "x".into(),
            peers: Vec::new(),
            ports: Vec::new(),
        }],
        deny: Vec::new(),
    });
    assert!(matches!(r.check(), Err(RuleSetError::NoPeers { .. })));
}

#[test]
fn engine_names_round_trip() {
    for e in Engine::ALL {
        assert_eq!(e.as_str().parse::<Engine>().unwrap(), e);
        assert_eq!(Engine::from_object_kind(e.object_kind()), Some(e));
    }
    assert!("calico".parse::<Engine>().is_err());
}

mod from_network_policy {
    use proptest::prelude::*;

    use super::*;
    use crate::Protocol;
    use crate::policy::{PortRef, Rule};

    fn selector(pairs: &[(u8, u8)]) -> LabelSelector {
        LabelSelector::from_labels(
            pairs
                .iter()
                .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
                .collect(),
        )
    }

    fn arb_peer() -> impl Strategy<Value = Peer> {
        let sel = || proptest::collection::vec((0..2u8, 0..2u8), 0..2).prop_map(|p| selector(&p));
        prop_oneof![
            (proptest::option::of(sel()), sel()).prop_map(|(ns, pods)| Peer::Pods {
                namespace_selector: ns,
                pod_selector: Some(pods),
            }),
            sel().prop_map(|ns| Peer::Pods {
                namespace_selector: Some(ns),
                pod_selector: None,
            }),
            (0..4u8, proptest::collection::vec(0..4u8, 0..2)).prop_map(|(n, except)| {
                Peer::IpBlock(IpBlock {
                    cidr: format!("10.{n}.0.0/16").parse().unwrap(),
                    except: except
                        .iter()
                        .map(|e| format!("10.{n}.{e}.0/24").parse().unwrap())
                        .collect::<std::collections::BTreeSet<IpNet>>()
                        .into_iter()
                        .collect(),
                })
            }),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            proptest::collection::vec(arb_peer(), 1..3),
            proptest::collection::vec(1..4u16, 0..2),
        )
            .prop_map(|(peers, ports)| Rule {
                peers,
                ports: ports
                    .into_iter()
                    .map(|p| PortSpec {
                        protocol: Protocol::Tcp,
                        port: Some(PortRef::Number(p)),
                        end_port: None,
                    })
                    .collect(),
            })
    }

    fn arb_policy() -> impl Strategy<Value = NetworkPolicy> {
        (
            any::<(bool, bool)>(),
            proptest::collection::vec(arb_rule(), 0..3),
            proptest::collection::vec(arb_rule(), 0..3),
        )
            .prop_map(|((ingress, egress), i, e)| NetworkPolicy {
                namespace: "shop".into(),
                name: "web".into(),
                pod_selector: selector(&[(0, 0)]),
                policy_types: PolicyTypes { ingress, egress },
                ingress: if ingress { i } else { Vec::new() },
                egress: if egress { e } else { Vec::new() },
            })
    }

    /// Peers as NetworkPolicy means them (`podSelector: {}` and no
    /// podSelector beside a namespaceSelector are the same pods).
    fn normal(mut policy: NetworkPolicy) -> NetworkPolicy {
        for rule in policy.ingress.iter_mut().chain(policy.egress.iter_mut()) {
            for peer in &mut rule.peers {
                if let Peer::Pods {
                    namespace_selector: Some(_),
                    pod_selector,
                } = peer
                    && pod_selector.as_ref().is_some_and(LabelSelector::is_empty)
                {
                    *pod_selector = None;
                }
            }
        }
        policy
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Written back as a NetworkPolicy, the rule set is the policy it
        /// was made from: every selection, address block and port kept.
        #[test]
        fn a_network_policy_comes_back_from_its_rule_set(policy in arb_policy()) {
            let rules = from_network_policy(&policy);
            prop_assert!(rules.check().is_ok());
            let back = to_network_policy(&rules, &NetworkPolicyOptions::default());
            if rules.has_traffic() {
                prop_assert_eq!(normal(back.unwrap()), normal(policy));
            } else {
                prop_assert!(back.is_err());
            }
        }
    }

    #[test]
    fn a_rule_without_peers_is_everything_and_an_empty_subject_is_refused() {
        let mut policy = NetworkPolicy {
            namespace: "shop".into(),
            name: "web".into(),
            pod_selector: selector(&[(0, 0)]),
            policy_types: PolicyTypes {
                ingress: true,
                egress: false,
            },
            ingress: vec![Rule {
                peers: Vec::new(),
                ports: Vec::new(),
            }],
            egress: Vec::new(),
        };
        let rules = from_network_policy(&policy);
        assert_eq!(rules.ingress.allow[0].peers, vec![Endpoint::All]);
        assert!(rules.ingress.isolate && !rules.egress.isolate);
        assert!(rules.egress.is_unrestricted());
        policy.pod_selector = LabelSelector::everything();
        assert!(matches!(
            from_network_policy(&policy).check(),
            Err(RuleSetError::EmptySubject { .. })
        ));
    }
}
