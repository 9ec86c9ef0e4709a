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
