#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use super::*;
use crate::conn::ConnSet;
use crate::model::{Cluster, Namespace, Workload, WorkloadKind};
use crate::policy::{Direction, PolicyTypes};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sandbox_profile() -> Profile {
    Profile::new(
        "sandboxes",
        "python",
        LabelSelector::from_labels(labels(&[("template", "python")])),
    )
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What the built policy allows from the pool to `to` (the policy alone).
fn egress_to(built: &Built, to: &str) -> ConnSet {
    let ip = addr(to);
    let mut out = ConnSet::none();
    for rule in &built.policy.egress {
        let reaches = rule.peers.is_empty()
            || rule.peers.iter().any(|p| match p {
                Peer::IpBlock(b) => b.addresses().contains(ip),
                Peer::Pods { .. } => false,
            });
        if reaches {
            out.union_with(&crate::engine::resolve_ports(&rule.ports, None));
        }
    }
    out
}

#[test]
fn the_default_policy_is_router_in_public_out_cluster_dns() {
    let built = build(&sandbox_profile(), &ProfileConfig::default()).unwrap();
    let p = &built.policy;
    assert_eq!(p.name, "kf-profile-isolationprofile-python");
    assert_eq!(p.namespace, "sandboxes");
    assert_eq!(
        p.policy_types,
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    assert_eq!(p.ingress.len(), 1);
    assert_eq!(p.ingress[0].peers, vec![router_peer()]);
    assert!(p.ingress[0].ports.is_empty());
    // Public addresses on any port, both families.
    for public in ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"] {
        assert!(egress_to(&built, public).is_all(), "{public}");
    }
    // Every default blocked range, the metadata addresses, nothing of them.
    for blocked in [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "127.0.0.1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "::1",
    ] {
        assert!(egress_to(&built, blocked).is_empty(), "{blocked}");
    }
    // Cluster DNS, 53 only.
    let dns = &p.egress[1];
    assert_eq!(
        dns.peers,
        vec![Peer::Pods {
            namespace_selector: Some(ProfileConfig::default().dns_namespaces),
            pod_selector: Some(ProfileConfig::default().dns_pods),
        }]
    );
    assert_eq!(
        crate::engine::resolve_ports(&dns.ports, None).port_strings(),
        vec!["TCP/53", "UDP/53"]
    );
    assert_eq!(built.labels.get(PROFILE_LABEL).unwrap(), "python");
    assert_eq!(
        built.labels.get(naming::SOURCE_LABEL).unwrap(),
        Source::Profile.as_str()
    );
    assert!(built.narrowed.is_empty());
}

#[test]
fn an_empty_from_admits_nobody() {
    let mut profile = sandbox_profile();
    profile.ingress_from = Some(Vec::new());
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert!(
        built.policy.ingress.is_empty(),
        "{:?}",
        built.policy.ingress
    );
    assert!(built.policy.policy_types.ingress);
}

#[test]
fn an_empty_selector_is_refused_before_anything_is_built() {
    let profile = Profile::new("sandboxes", "all", LabelSelector::everything());
    assert!(matches!(
        build(&profile, &ProfileConfig::default()),
        Err(ProfileError::EmptySelector { .. })
    ));
}

#[test]
fn a_selector_that_matches_no_pod_is_refused() {
    let mut profile = sandbox_profile();
    profile.pod_selector.match_expressions.push(
        crate::selector::Requirement::new("template", Operator::DoesNotExist, Vec::<String>::new())
            .unwrap(),
    );
    assert!(matches!(
        build(&profile, &ProfileConfig::default()),
        Err(ProfileError::UnsatisfiableSelector { .. })
    ));
}

use crate::selector::Operator;

#[test]
fn the_metadata_address_stays_blocked_unless_allowed() {
    let mut profile = sandbox_profile();
    profile.blocked_cidrs = Some(vec![net("10.0.0.0/8")]);
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert!(egress_to(&built, "169.254.169.254").is_empty());
    assert!(egress_to(&built, "fd00:ec2::254").is_empty());
    assert!(egress_to(&built, "169.254.1.1").is_all(), "not listed");
    assert!(egress_to(&built, "192.168.1.1").is_all(), "not listed");
    profile.allowed_cidrs = vec![net("169.254.169.254/32"), net("10.1.0.0/16")];
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert!(egress_to(&built, "169.254.169.254").is_all());
    assert!(egress_to(&built, "10.1.2.3").is_all());
    assert!(egress_to(&built, "10.2.0.1").is_empty());
}

#[test]
fn cluster_cidrs_are_blocked_too() {
    let mut profile = sandbox_profile();
    profile.blocked_cidrs = Some(Vec::new());
    let cfg = ProfileConfig {
        cluster_cidrs: vec![net("198.18.0.0/15")],
        ..ProfileConfig::default()
    };
    let built = build(&profile, &cfg).unwrap();
    assert!(egress_to(&built, "198.18.0.1").is_empty());
    assert!(egress_to(&built, "10.0.0.1").is_all(), "blockedCIDRs: []");
}

#[test]
fn dns_public_lists_the_resolvers_and_none_lists_nothing() {
    let mut profile = sandbox_profile();
    profile.public_internet = false;
    profile.dns = Dns::Public {
        resolvers: vec![addr("8.8.8.8"), addr("1.1.1.1")],
    };
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert_eq!(built.policy.egress.len(), 1);
    assert_eq!(
        egress_to(&built, "8.8.8.8").port_strings(),
        vec!["TCP/53", "UDP/53"]
    );
    assert!(egress_to(&built, "9.9.9.9").is_empty());
    profile.dns = Dns::Public {
        resolvers: vec![addr("10.0.0.10")],
    };
    assert!(matches!(
        build(&profile, &ProfileConfig::default()),
        Err(ProfileError::BlockedResolver { .. })
    ));
    profile.dns = Dns::Public { resolvers: vec![] };
    assert!(matches!(
        build(&profile, &ProfileConfig::default()),
        Err(ProfileError::NoResolvers { .. })
    ));
    profile.dns = Dns::None;
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert!(
        built.policy.egress.is_empty(),
        "egress isolated, nothing allowed"
    );
    assert!(built.policy.policy_types.egress);
}

#[test]
fn a_custom_allow_everything_egress_stays_guarded() {
    let mut profile = sandbox_profile();
    profile.custom = Some(CustomRules {
        ingress: vec![Rule::default()],
        egress: vec![Rule::default()],
    });
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    assert_eq!(built.policy.egress.len(), 1);
    assert!(
        !built.policy.egress[0].peers.is_empty(),
        "never left as any peer"
    );
    assert!(egress_to(&built, "8.8.8.8").is_all());
    assert!(egress_to(&built, "10.0.0.1").is_empty());
    assert!(egress_to(&built, "169.254.169.254").is_empty());
    assert_eq!(built.narrowed.len(), 1);
    assert_eq!(built.narrowed[0].rule, "spec.policy.egress[0]");
    assert!(built.narrowed[0].change.contains("public internet"));
    // The custom ingress is the author's: kept, wrapped.
    assert_eq!(built.policy.ingress, vec![Rule::default()]);
    assert_eq!(built.policy.pod_selector, profile.pod_selector);
}

#[test]
fn custom_ip_blocks_are_narrowed_or_removed_and_pods_kept() {
    let pods = Peer::Pods {
        namespace_selector: None,
        pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "cache")]))),
    };
    let mut profile = sandbox_profile();
    profile.custom = Some(CustomRules {
        ingress: vec![],
        egress: vec![
            Rule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: net("0.0.0.0/0"),
                    except: vec![],
                })],
                ports: vec![],
            },
            Rule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: net("10.0.0.0/8"),
                    except: vec![],
                })],
                ports: vec![],
            },
            Rule {
                peers: vec![
                    Peer::IpBlock(IpBlock {
                        cidr: net("192.168.0.0/16"),
                        except: vec![],
                    }),
                    pods.clone(),
                ],
                ports: vec![],
            },
            Rule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: net("93.184.216.0/24"),
                    except: vec![],
                })],
                ports: vec![],
            },
        ],
    });
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    let egress = &built.policy.egress;
    assert_eq!(egress.len(), 3, "{egress:#?}");
    assert!(egress_to(&built, "8.8.8.8").is_all());
    assert!(egress_to(&built, "10.0.0.1").is_empty());
    assert!(egress_to(&built, "192.168.0.1").is_empty());
    assert_eq!(egress[1].peers, vec![pods], "pod peers are kept");
    assert_eq!(
        egress[2].peers,
        vec![Peer::IpBlock(IpBlock {
            cidr: net("93.184.216.0/24"),
            except: vec![]
        })],
        "a public block is untouched"
    );
    let rules: Vec<&str> = built.narrowed.iter().map(|n| n.rule.as_str()).collect();
    assert_eq!(
        rules,
        vec![
            "spec.policy.egress[0]",
            "spec.policy.egress[1]",
            "spec.policy.egress[1]",
            "spec.policy.egress[2]"
        ],
        "{:#?}",
        built.narrowed
    );
}

/// The proof is not vacuous: a policy that reaches a blocked range is
/// caught, one that does not passes.
#[test]
fn the_proof_catches_a_policy_that_reaches_a_blocked_range() {
    let profile = sandbox_profile();
    let cfg = ProfileConfig::default();
    let blocked = profile.blocked(&cfg);
    let mut policy = build(&profile, &cfg).unwrap().policy;
    assert!(prove(&policy, &blocked).unwrap().is_empty());
    policy.egress.push(Rule {
        peers: vec![Peer::IpBlock(IpBlock {
            cidr: net("10.9.0.0/16"),
            except: vec![],
        })],
        ports: vec![],
    });
    let violations = prove(&policy, &blocked).unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].addresses, "10.9.0.0/16");
    policy.egress = vec![Rule::default()];
    assert!(!prove(&policy, &blocked).unwrap().is_empty());
}

fn pool_cluster(extra: Vec<NetworkPolicy>) -> Cluster {
    let mut cluster = Cluster::default();
    cluster
        .namespaces
        .insert("sandboxes".into(), Namespace::implicit("sandboxes"));
    let pod = |name: &str, l: Labels| Workload {
        kind: WorkloadKind::Pod,
        namespace: "sandboxes".into(),
        name: name.into(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(l.clone()),
        pod_labels: l,
        containers: vec![],
        pod_ips: vec![],
    };
    cluster.workloads.push(pod(
        "sandbox-a",
        labels(&[("template", "python"), ("sandbox", "a")]),
    ));
    cluster
        .workloads
        .push(pod("intruder", labels(&[("app", "intruder")])));
    cluster.workloads.push(pod(
        "router",
        labels(&[(ROUTER_LABEL_KEY, ROUTER_LABEL_VALUE)]),
    ));
    cluster.policies = extra;
    cluster
}

fn other_policy(
    name: &str,
    selector: Labels,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
) -> NetworkPolicy {
    NetworkPolicy {
        namespace: "sandboxes".into(),
        name: name.into(),
        pod_selector: LabelSelector::from_labels(selector),
        policy_types: PolicyTypes {
            ingress: true,
            egress: !egress.is_empty(),
        },
        ingress,
        egress,
    }
}

#[test]
fn effective_turns_false_when_another_policy_opens_ingress_from_everywhere() {
    let profile = sandbox_profile();
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    let alone = reopened_paths(&profile, &built, &pool_cluster(vec![built.policy.clone()]));
    assert!(alone.effective(), "{alone:#?}");
    assert_eq!(alone.pool, vec!["sandboxes/Pod/sandbox-a"]);

    let open = other_policy(
        "allow-all-in",
        labels(&[("sandbox", "a")]),
        vec![Rule::default()],
        vec![],
    );
    let cluster = pool_cluster(vec![built.policy.clone(), open]);
    let eff = reopened_paths(&profile, &built, &cluster);
    assert!(!eff.effective());
    assert_eq!(eff.reopened.len(), 1, "{eff:#?}");
    let path = &eff.reopened[0];
    assert_eq!(path.direction, Direction::Ingress);
    assert_eq!(path.policy, "sandboxes/allow-all-in");
    assert!(
        path.endpoints
            .iter()
            .any(|e| e.starts_with("sandboxes/Pod/intruder")),
        "the engine names the intruder: {path:#?}"
    );
}

#[test]
fn policies_that_allow_no_more_than_the_profile_do_not_count() {
    let profile = sandbox_profile();
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    let same_router = other_policy(
        "router-in",
        labels(&[("template", "python")]),
        vec![Rule {
            peers: vec![router_peer()],
            ports: vec![],
        }],
        vec![Rule {
            peers: vec![Peer::IpBlock(IpBlock {
                cidr: net("8.8.8.0/24"),
                except: vec![],
            })],
            ports: vec![],
        }],
    );
    // Selects only pods the profile does not.
    let elsewhere = other_policy(
        "intruder-open",
        labels(&[("template", "ruby")]),
        vec![Rule::default()],
        vec![Rule::default()],
    );
    let cluster = pool_cluster(vec![built.policy.clone(), same_router, elsewhere]);
    let eff = reopened_paths(&profile, &built, &cluster);
    assert!(eff.effective(), "{eff:#?}");

    // Egress to a private range, from a policy on a label some pool pods
    // may carry: reopened.
    let private = other_policy(
        "to-private",
        labels(&[("team", "x")]),
        vec![],
        vec![Rule {
            peers: vec![Peer::IpBlock(IpBlock {
                cidr: net("10.0.0.0/8"),
                except: vec![],
            })],
            ports: vec![],
        }],
    );
    let cluster = pool_cluster(vec![built.policy.clone(), private]);
    let eff = reopened_paths(&profile, &built, &cluster);
    assert_eq!(eff.reopened.len(), 1, "{eff:#?}");
    assert_eq!(eff.reopened[0].direction, Direction::Egress);
}

/// With an engine that denies the blocked ranges, an egress rule of
/// another policy that only reaches blocked addresses reopens nothing;
/// one that names pods, or every peer, still does (a CIDR deny does not
/// reach pods on every engine).
#[test]
fn denying_engines_hold_the_blocked_ranges_against_other_policies() {
    let mut profile = sandbox_profile();
    profile.engine = crate::ruleset::Engine::Cilium;
    let built = build(&profile, &ProfileConfig::default()).unwrap();
    let to = |name: &str, peers: Vec<Peer>| {
        other_policy(
            name,
            labels(&[("team", "x")]),
            vec![],
            vec![Rule {
                peers,
                ports: vec![],
            }],
        )
    };
    let private = to(
        "to-private",
        vec![Peer::IpBlock(IpBlock {
            cidr: net("10.0.0.0/8"),
            except: vec![],
        })],
    );
    let metadata = to(
        "to-metadata",
        vec![Peer::IpBlock(IpBlock {
            cidr: net("169.254.169.254/32"),
            except: vec![],
        })],
    );
    let cluster = pool_cluster(vec![
        built.policy.clone(),
        private.clone(),
        metadata.clone(),
    ]);
    let eff = reopened_paths(&profile, &built, &cluster);
    assert!(eff.effective(), "denied first: {eff:#?}");
    // The same policies under a plain NetworkPolicy profile: reopened.
    let plain = sandbox_profile();
    let plain_built = build(&plain, &ProfileConfig::default()).unwrap();
    let cluster = pool_cluster(vec![plain_built.policy.clone(), private, metadata]);
    assert_eq!(
        reopened_paths(&plain, &plain_built, &cluster)
            .reopened
            .len(),
        2
    );
    // Every peer (pods included) and a selector: still listed.
    let everything = to("to-everything", vec![]);
    let pods = to(
        "to-pods",
        vec![Peer::Pods {
            namespace_selector: None,
            pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "db")]))),
        }],
    );
    let cluster = pool_cluster(vec![built.policy.clone(), everything, pods]);
    assert_eq!(
        reopened_paths(&profile, &built, &cluster).reopened.len(),
        2,
        "not held by a CIDR deny"
    );
}

/// The guardrail rule set denies egress from the pool to exactly the
/// blocked addresses and nothing else, under names that fit.
#[test]
fn the_guardrail_rule_set_denies_exactly_the_blocked_addresses() {
    let mut profile = sandbox_profile();
    profile.name = "a".repeat(60);
    let cfg = ProfileConfig {
        cluster_cidrs: vec![net("10.96.0.0/12")],
        ..ProfileConfig::default()
    };
    let built = build(&profile, &cfg).unwrap();
    let rules = crate::profile::guardrail_rule_set(&profile, &built);
    rules.check().unwrap();
    assert_eq!(rules.subject, profile.pod_selector);
    assert!(rules.ingress.is_unrestricted());
    assert!(!rules.egress.isolate && rules.egress.allow.is_empty());
    let denied = rules.egress.deny[0]
        .peers
        .iter()
        .fold(IpSet::empty(), |set, p| match p {
            crate::ruleset::Endpoint::Cidr(b) => set.union(&b.addresses()),
            other => panic!("not a CIDR: {other:?}"),
        });
    assert_eq!(denied, built.blocked);
    assert!(denied.contains(addr("169.254.169.254")));
    assert!(denied.contains(addr("10.96.0.1")));
    assert!(!denied.contains(addr("8.8.8.8")));
    assert!(rules.name.len() <= 63 && rules.cluster_name.len() <= 63);
    assert!(
        rules
            .cluster_name
            .starts_with("kf-profile-isolationprofile-sandboxes-")
    );
}
