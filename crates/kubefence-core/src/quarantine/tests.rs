#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::conn::Protocol;
use crate::engine::{AnalyzeOptions, analyze};
use crate::model::Namespace;
use crate::policy::{IpBlock, Peer, PortRef, PortSpec, Rule};
use crate::selector::{Operator, Requirement};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn workload(kind: WorkloadKind, ns: &str, name: &str, app: &str) -> Workload {
    Workload {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(labels(&[("app", app)])),
        pod_labels: labels(&[("app", app), ("tier", "back")]),
        containers: Vec::new(),
        pod_ips: Vec::new(),
    }
}

fn audit() -> Audit {
    Audit {
        reason: "crypto miner seen".to_string(),
        finding: Some("ALERT-42".to_string()),
        requester: "alice@example.com".to_string(),
        time: "2026-11-24T23:40:00Z".to_string(),
    }
}

fn shop() -> (Cluster, Workload) {
    let api = workload(WorkloadKind::Deployment, "shop", "api", "api");
    let web = workload(WorkloadKind::Deployment, "shop", "web", "web");
    let mut cluster = Cluster {
        workloads: vec![api.clone(), web],
        ..Cluster::default()
    };
    cluster
        .namespaces
        .insert("shop".to_string(), Namespace::implicit("shop"));
    (cluster, api)
}

fn allow_ingress_from_web(ns: &str) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.to_string(),
        name: "api-from-web".to_string(),
        pod_selector: LabelSelector::from_labels(labels(&[("app", "api")])),
        policy_types: PolicyTypes {
            ingress: true,
            egress: false,
        },
        ingress: vec![Rule {
            peers: vec![Peer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "web")]))),
            }],
            ports: vec![PortSpec {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(8080)),
                end_port: None,
            }],
        }],
        egress: Vec::new(),
    }
}

#[test]
fn the_policy_denies_both_directions_for_exactly_the_selector() {
    let (cluster, mut api) = shop();
    api.selector = LabelSelector::new(
        labels(&[("app", "api")]),
        vec![
            Requirement::new("track", Operator::NotIn, ["canary"]).unwrap(),
            Requirement::new("tier", Operator::Exists, Vec::<String>::new()).unwrap(),
        ],
    );
    let plan = plan(
        &api,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert_eq!(plan.policy_name, "kf-quarantine-deployment-api");
    assert_eq!(plan.policy.name, plan.policy_name);
    assert_eq!(
        plan.policy.pod_selector, api.selector,
        "matchExpressions survive"
    );
    assert_eq!(plan.policy.pod_selector.match_expressions.len(), 2);
    assert!(plan.policy.policy_types.ingress && plan.policy.policy_types.egress);
    assert!(plan.policy.ingress.is_empty() && plan.policy.egress.is_empty());
    assert!(plan.remaining_paths.is_empty());
    assert!(plan.effective());
}

#[test]
fn with_the_policy_the_engine_finds_no_connectivity_either_way() {
    let (mut cluster, api) = shop();
    cluster.policies.push(NetworkPolicy {
        // An egress allow for web only: api stays untouched by it.
        namespace: "shop".to_string(),
        name: "web-egress".to_string(),
        pod_selector: LabelSelector::from_labels(labels(&[("app", "web")])),
        policy_types: PolicyTypes {
            ingress: false,
            egress: true,
        },
        ingress: Vec::new(),
        egress: vec![Rule::default()],
    });
    let before = analyze(&cluster, &AnalyzeOptions::default());
    let t = before.endpoint_index(&api.id()).unwrap();
    assert!(before.connections().any(|c| c.to == t || c.from == t));

    let plan = plan(
        &api,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    let after = analyze(&plan.apply_to(&cluster), &AnalyzeOptions::default());
    let t = after.endpoint_index(&api.id()).unwrap();
    let open: Vec<_> = after
        .connections()
        .filter(|c| c.to == t || c.from == t)
        .map(|c| {
            (
                after.endpoints[c.from].id.clone(),
                after.endpoints[c.to].id.clone(),
            )
        })
        .collect();
    assert!(open.is_empty(), "{open:?}");
    assert!(plan.effective());
}

#[test]
fn an_allow_policy_leaves_a_reported_path_and_the_plan_is_not_effective() {
    let (mut cluster, api) = shop();
    cluster.policies.push(allow_ingress_from_web("shop"));
    let plan = plan(
        &api,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert!(!plan.effective());
    assert_eq!(plan.remaining_paths.len(), 1, "{:?}", plan.remaining_paths);
    let path = &plan.remaining_paths[0];
    assert_eq!(path.direction, crate::policy::Direction::Ingress);
    assert_eq!(path.policy, "shop/api-from-web");
    assert_eq!(path.rule, 0);
    assert_eq!(path.peer, "podSelector app=web");
    assert_eq!(path.ports, "TCP/8080");
    assert_eq!(path.endpoints, vec!["shop/Deployment/web TCP/8080"]);
    assert!(!path.overridden);
    assert_eq!(
        path.to_string(),
        "ingress from podSelector app=web on TCP/8080 (policy shop/api-from-web, spec.ingress[0])"
    );

    // The engine agrees: web still reaches api on 8080 and nothing else.
    let after = analyze(&plan.apply_to(&cluster), &AnalyzeOptions::default());
    let (w, a) = (
        after.endpoint_index("shop/Deployment/web").unwrap(),
        after.endpoint_index(&api.id()).unwrap(),
    );
    assert_eq!(after.allowed(w, a).to_string(), "TCP/8080");
    assert!(after.allowed(a, w).is_empty());
}

#[test]
fn deny_engines_override_allows_but_anp_cannot_deny_outside_sources() {
    let (mut cluster, api) = shop();
    cluster.policies.push(allow_ingress_from_web("shop"));
    let mut from_world = allow_ingress_from_web("shop");
    from_world.name = "api-from-world".to_string();
    from_world.ingress[0].peers = vec![Peer::IpBlock(IpBlock {
        cidr: "0.0.0.0/0".parse().unwrap(),
        except: Vec::new(),
    })];
    cluster.policies.push(from_world);

    let cilium = plan(&api, &audit(), Engine::Cilium, &cluster, &Config::default()).unwrap();
    assert_eq!(cilium.remaining_paths.len(), 2);
    assert!(cilium.remaining_paths.iter().all(|p| p.overridden));
    assert!(cilium.effective());

    let anp = plan(
        &api,
        &audit(),
        Engine::AdminNetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert!(!anp.effective());
    let open: Vec<&str> = anp.open_paths().map(|p| p.policy.as_str()).collect();
    assert_eq!(open, vec!["shop/api-from-world"]);
    assert!(
        anp.policy_name
            .starts_with("kf-quarantine-shop-deployment-api-")
    );
}

#[test]
fn empty_selectors_and_protected_namespaces_are_refused() {
    let (cluster, mut api) = shop();
    api.selector = LabelSelector::everything();
    let err = plan(
        &api,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap_err();
    assert!(matches!(err, QuarantineError::EmptySelector { .. }));
    assert!(
        err.to_string()
            .starts_with("Deployment/shop/api: its selector is empty"),
        "{err}"
    );

    let sys = workload(WorkloadKind::DaemonSet, "kube-system", "cni", "cni");
    let err = plan(
        &sys,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, QuarantineError::ProtectedNamespace { .. }),
        "{err}"
    );
    let cfg = Config::default().with_protected("kubefence-system");
    let t = Target::new(WorkloadKind::Deployment, "kubefence-system", "kubefence");
    assert!(check_namespace(&t, &cfg).is_err());
    assert!(check_namespace(&Target::new(WorkloadKind::Pod, "shop", "x"), &cfg).is_ok());
}

#[test]
fn names_never_collide_across_kinds_and_namespaces() {
    let d = Target::new(WorkloadKind::Deployment, "shop", "api");
    let s = Target::new(WorkloadKind::StatefulSet, "shop", "api");
    assert_eq!(d.policy_name(), "kf-quarantine-deployment-api");
    assert_eq!(s.policy_name(), "kf-quarantine-statefulset-api");
    // Cluster-scoped: the namespace is part of the name, and a hash always
    // ends it ("a-b"/"c" and "a"/"b-c" would read alike).
    let x = Target::new(WorkloadKind::Pod, "a-b", "c").cluster_scoped_name();
    let y = Target::new(WorkloadKind::Pod, "a", "b-c").cluster_scoped_name();
    assert_ne!(x, y);
    let long = Target::new(WorkloadKind::Deployment, "shop", "n".repeat(200));
    assert_eq!(long.policy_name().len(), MAX_NAME_LEN);
    assert!(long.cluster_scoped_name().len() <= MAX_NAME_LEN);
}

#[test]
fn audit_goes_to_labels_and_annotations() {
    let (cluster, api) = shop();
    let plan = plan(
        &api,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert_eq!(plan.labels["app.kubernetes.io/managed-by"], "kubefence");
    assert_eq!(plan.labels["kubefence.dev/source"], "quarantine");
    assert_eq!(plan.labels["kubefence.dev/target-kind"], "deployment");
    assert_eq!(plan.labels["kubefence.dev/target-name"], "api");
    assert_eq!(plan.labels[FINDING_ANNOTATION], "ALERT-42");
    assert_eq!(plan.labels[TIME_ANNOTATION], "20261124T234000Z");
    let requester = &plan.labels[REQUESTER_ANNOTATION];
    assert!(requester.starts_with("alice-example-com-"), "{requester}");
    assert_eq!(plan.annotations[REASON_ANNOTATION], "crypto miner seen");
    assert_eq!(plan.annotations[FINDING_ANNOTATION], "ALERT-42");
    assert_eq!(plan.annotations[REQUESTER_ANNOTATION], "alice@example.com");
    assert_eq!(plan.annotations[TIME_ANNOTATION], "2026-11-24T23:40:00Z");
    assert_eq!(plan.annotations[TARGET_ANNOTATION], "Deployment/shop/api");

    // A name that is not a valid label value is cut and hashed.
    let t = Target::new(WorkloadKind::Pod, "shop", format!("{}.x", "p".repeat(70)));
    let v = &labels_of(&t)["kubefence.dev/target-name"];
    assert!(v.len() <= MAX_NAME_LEN, "{v}");
}

fn labels_of(t: &Target) -> Labels {
    super::labels(t, &audit())
}

#[test]
fn a_reason_is_required() {
    let (cluster, api) = shop();
    let mut a = audit();
    a.reason = "  ".to_string();
    let err = plan(
        &api,
        &a,
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap_err();
    assert!(matches!(err, QuarantineError::NoReason { .. }));
}

#[test]
fn the_plan_names_other_workloads_whose_pods_the_selector_matches() {
    // guestbook: leader and follower both select app=redis.
    let redis = |name: &str, role: &str| {
        let mut w = workload(WorkloadKind::Deployment, "gb", name, "redis");
        w.pod_labels = labels(&[("app", "redis"), ("role", role)]);
        w
    };
    let leader = redis("redis-leader", "leader");
    let follower = redis("redis-follower", "follower");
    let other_namespace = {
        let mut w = redis("redis-elsewhere", "leader");
        w.namespace = "other".into();
        w
    };
    let frontend = workload(WorkloadKind::Deployment, "gb", "frontend", "guestbook");
    let cluster = Cluster {
        workloads: vec![leader.clone(), follower, frontend, other_namespace],
        ..Cluster::default()
    };
    let p = plan(
        &leader,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert_eq!(p.also_selects, ["gb/Deployment/redis-follower"]);
    // A selector that matches only the target's pods names nobody.
    let mut narrow = leader.clone();
    narrow.selector = LabelSelector::from_labels(labels(&[("app", "redis"), ("role", "leader")]));
    let p = plan(
        &narrow,
        &audit(),
        Engine::NetworkPolicy,
        &cluster,
        &Config::default(),
    )
    .unwrap();
    assert!(p.also_selects.is_empty(), "{:?}", p.also_selects);
}
