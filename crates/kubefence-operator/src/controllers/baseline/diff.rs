//! Desired versus observed: what to write, if anything.
//!
//! Only the parts kubefence owns are compared: what the spec allows, and
//! that every label, annotation and ownerReference kubefence sets is present
//! with its value. What others add to the object does not trigger a write; a
//! hand edit of anything kubefence set does.
//!
//! The spec is compared as the core policy it converts to
//! (`kubefence_k8s::convert::network_policy`: pod selector, policy types,
//! rules, peers, ports, with the API server's defaults applied), never as a
//! normalised text: `ingress: [{}]` (allow everything) and `ingress: []`
//! (allow nothing), or a peer with and without `namespaceSelector: {}`,
//! read the same once empty objects are dropped, and differ completely in
//! what they allow. An observed spec that does not convert is a difference.
//!
//! Both sides are kept as a SHA-256 digest of that core policy ([`SpecDigest`]):
//! 32 bytes instead of the policy, and equal digests mean equal policies
//! (the core types' `Hash` writes every field, prefix-free, as the `Hash`
//! contract requires, so two different policies feed different byte
//! streams, and finding two streams with one SHA-256 digest is not
//! feasible, for a hand edit either). The desired side is digested straight
//! from the builder's core policy, which is what rendering it and converting
//! the rendered object back gives (`desired_digest_is_the_round_trip_digest`
//! checks it on builder output); the observed side is converted first.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use super::state::ObservedPolicy;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kubefence_core::baseline::GeneratedPolicy;
use sha2::{Digest, Sha256};

/// What a NetworkPolicy's spec allows, as a SHA-256 digest of the core
/// policy it means (name and namespace left out: they are identity, not
/// content, and the key says which policy this is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecDigest([u8; 32]);

impl SpecDigest {
    pub fn of(policy: &kubefence_core::policy::NetworkPolicy) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        policy.pod_selector.hash(&mut hasher);
        policy.policy_types.hash(&mut hasher);
        policy.ingress.hash(&mut hasher);
        policy.egress.hash(&mut hasher);
        Self(hasher.0.finalize().into())
    }
}

/// Feeds what `Hash` writes into SHA-256 (`finish` is never used: the
/// digest is read from the inner hasher).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// The comparable parts of a NetworkPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparable {
    /// What the spec allows; `None` when the spec does not convert (then it
    /// never equals a desired one).
    spec: Option<SpecDigest>,
    /// Sorted by key, as the object's maps are (a vector takes a third of
    /// the memory of a small BTreeMap, and thousands are kept).
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    /// (apiVersion, kind, name, uid)
    owners: Vec<(String, String, String, String)>,
}

impl Comparable {
    /// An object as read from the API server.
    pub fn of(np: &NetworkPolicy) -> Self {
        let namespace = np.metadata.namespace.as_deref().unwrap_or_default();
        let spec = kubefence_k8s::convert::network_policy(np, namespace)
            .ok()
            .map(|core| SpecDigest::of(&core));
        Self::with_spec(np, spec)
    }

    /// An object as the API server answered a write of `sent`, whose spec
    /// reads as `sent_spec`: when the stored spec is the one sent, it reads
    /// as the same (conversion is a function of the spec), so it is not
    /// converted again; otherwise it is, as [`Comparable::of`] does.
    pub fn of_written(np: &NetworkPolicy, sent: &NetworkPolicy, sent_spec: SpecDigest) -> Self {
        if np.spec == sent.spec && np.metadata.namespace == sent.metadata.namespace {
            Self::with_spec(np, Some(sent_spec))
        } else {
            Self::of(np)
        }
    }

    fn with_spec(np: &NetworkPolicy, spec: Option<SpecDigest>) -> Self {
        Self {
            spec,
            labels: pairs(np.metadata.labels.as_ref()),
            annotations: pairs(np.metadata.annotations.as_ref()),
            owners: np
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| {
                    (
                        o.api_version.clone(),
                        o.kind.clone(),
                        o.name.clone(),
                        o.uid.clone(),
                    )
                })
                .collect(),
        }
    }

    /// A policy as the builder made it: what `Comparable::of` reads from
    /// the object `kubefence_k8s::render::generated_policy` renders of it,
    /// without rendering and converting it back.
    pub fn desired(g: &GeneratedPolicy) -> Self {
        Self {
            spec: Some(SpecDigest::of(&g.policy)),
            labels: pairs(Some(&g.labels)),
            annotations: pairs(Some(&g.annotations)),
            owners: g
                .owner
                .uid
                .iter()
                .map(|uid| {
                    (
                        kubefence_k8s::render::workload_api_version(g.owner.kind).to_string(),
                        g.owner.kind.as_str().to_string(),
                        g.owner.name.clone(),
                        uid.clone(),
                    )
                })
                .collect(),
        }
    }

    /// What the spec allows (`None`: it does not convert).
    pub fn spec(&self) -> Option<SpecDigest> {
        self.spec
    }

    /// Whether `observed` already has everything `self` (desired) says.
    pub fn satisfied_by(&self, observed: &Comparable) -> bool {
        let subset = |want: &[(String, String)], have: &[(String, String)]| {
            want.iter().all(|(k, v)| {
                have.binary_search_by(|(hk, _)| hk.cmp(k))
                    .is_ok_and(|i| have[i].1 == *v)
            })
        };
        self.spec.is_some()
            && self.spec == observed.spec
            && subset(&self.labels, &observed.labels)
            && subset(&self.annotations, &observed.annotations)
            && self.owners.iter().all(|o| observed.owners.contains(o))
    }
}

/// A label or annotation map as pairs sorted by key.
fn pairs(map: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What to do for one policy name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing there: create it.
    Create,
    /// Ours, but different: apply it again.
    Update,
    /// Ours (labelled, and written by kubefence's apply) and no longer
    /// wanted: delete it (only that exact object).
    Delete { uid: Option<String> },
    /// Wanted, but a policy kubefence does not manage has the name (no
    /// kubefence labels, or labels but never written by the operator's
    /// field manager): leave it.
    Conflict,
    /// Nothing to do.
    Keep,
}

pub fn plan(desired: Option<&Comparable>, observed: Option<&ObservedPolicy>) -> Plan {
    match (desired, observed) {
        (Some(_), None) => Plan::Create,
        (Some(_), Some(o)) if !o.is_baseline() => Plan::Conflict,
        // Labelled as ours but never written by the operator (generate
        // output applied by kubectl or GitOps): left alone, as on delete.
        (Some(_), Some(o)) if !o.applied_by_us => Plan::Conflict,
        (Some(d), Some(o)) => match &o.object {
            Some(obs) if d.satisfied_by(obs) => Plan::Keep,
            _ => Plan::Update,
        },
        (None, Some(o)) if o.is_baseline() && o.applied_by_us => {
            Plan::Delete { uid: o.uid.clone() }
        }
        (None, _) => Plan::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn np(v: Value) -> NetworkPolicy {
        serde_json::from_value(v).unwrap()
    }

    fn observed(v: Value, managed: bool) -> ObservedPolicy {
        let p = np(v);
        ObservedPolicy {
            uid: Some("u1".into()),
            resource_version: Some("1".into()),
            managed,
            source: managed.then(|| "baseline".to_string()),
            object: managed.then(|| Comparable::of(&p)),
            applied_by_us: managed,
            quarantines: None,
        }
    }

    fn base() -> Value {
        json!({"metadata": {"name": "kf-baseline-deployment-web", "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "kubefence", "kubefence.dev/source": "baseline"}},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}], "egress": []}})
    }

    /// Workloads that use every part of a baseline policy: references
    /// within and across namespaces, named and numbered target ports, a
    /// LoadBalancer (ipBlock peers), an Ingress with its controller (a
    /// namespace-only peer), selectors narrowed with `DoesNotExist`.
    const FEATURES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ingress-nginx, labels: {kubernetes.io/metadata.name: ingress-nginx}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: controller, namespace: ingress-nginx, uid: u-controller}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}
  template:
    metadata: {labels: {app.kubernetes.io/name: ingress-nginx}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: default}
spec:
  ingressClassName: nginx
  rules: [{http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: frontend, port: {number: 80}}}}]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis-leader, namespace: other, uid: u-leader}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis, role: leader}}
    spec: {containers: [{name: c, image: i, ports: [{name: redis, containerPort: 6379}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis-follower, namespace: other}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
      - name: c
        image: i
        env: [{name: LEADER_HOST, value: "redis-leader:6379"}]
---
apiVersion: v1
kind: Service
metadata: {name: redis-leader, namespace: other}
spec:
  selector: {app: redis, role: leader}
  ports: [{port: 6379, targetPort: redis}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: caller, namespace: default, uid: u-caller}
spec:
  selector:
    matchLabels: {app: caller}
    matchExpressions: [{key: track, operator: In, values: [stable, canary]}]
  template:
    metadata: {labels: {app: caller, track: stable}}
    spec:
      containers:
      - name: c
        image: i
        env:
        - {name: CACHE_URL, value: "redis://redis-leader.other:6379"}
        - {name: CART_ADDR, value: "cartservice:7070"}
"#;

    /// The desired side is read from the builder's core policy, without
    /// rendering it and converting it back: it must read exactly as the
    /// object written to the API server does once read back, or every pass
    /// would rewrite every policy (and a difference in the other direction
    /// could hide one).
    #[test]
    fn the_desired_side_reads_as_its_rendered_object() {
        let boutique =
            include_str!("../../../../../examples/online-boutique/kubernetes-manifests.yaml");
        let opts = kubefence_k8s::load::LoadOptions::default();
        let loaded = kubefence_k8s::load::join(
            vec![
                kubefence_k8s::load::part_of_str(boutique, "boutique", &opts),
                kubefence_k8s::load::part_of_str(FEATURES, "features", &opts),
            ],
            &opts,
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.errors);
        let built = kubefence_core::baseline::build(
            &loaded.cluster,
            &Default::default(),
            &kubefence_core::baseline::Scope { namespaces: None },
        )
        .unwrap();
        let rules = |kind: &str| {
            built
                .policies
                .iter()
                .flat_map(|g| g.policy.ingress.iter().chain(&g.policy.egress))
                .flat_map(|r| &r.peers)
                .filter(|p| format!("{p:?}").contains(kind))
                .count()
        };
        // The features are there to be compared.
        assert!(rules("IpBlock") > 0 && rules("namespace_selector: Some") > 0);
        assert!(built.policies.iter().any(|g| {
            g.policy
                .pod_selector
                .match_expressions
                .iter()
                .any(|r| r.operator == kubefence_core::selector::Operator::DoesNotExist)
        }));
        assert!(built.policies.len() > 12);
        for g in &built.policies {
            let rendered = kubefence_k8s::render::generated_policy(g);
            assert_eq!(
                Comparable::desired(g),
                Comparable::of(&rendered),
                "{}",
                g.policy.id()
            );
            assert!(Comparable::desired(g).satisfied_by(&Comparable::of(&rendered)));
        }
    }

    #[test]
    fn server_defaults_and_extra_metadata_are_not_differences() {
        let desired = Comparable::of(&np(base()));
        let mut stored = base();
        stored["spec"]["ingress"][0]["ports"][0]
            .as_object_mut()
            .unwrap()
            .remove("protocol");
        stored["spec"].as_object_mut().unwrap().remove("egress");
        stored["metadata"]["labels"]["someone.else/label"] = json!("x");
        stored["metadata"]["annotations"] = json!({"note": "y"});
        assert_eq!(
            plan(Some(&desired), Some(&observed(stored, true))),
            Plan::Keep
        );
    }

    #[test]
    fn hand_edits_are_differences() {
        let desired = Comparable::of(&np(base()));
        let mut port = base();
        port["spec"]["ingress"][0]["ports"][0]["port"] = json!(81);
        let mut label = base();
        label["metadata"]["labels"]["kubefence.dev/source"] = json!("manual");
        // A label edit that removes the source makes it no longer ours as baseline.
        assert_eq!(
            plan(Some(&desired), Some(&observed(port, true))),
            Plan::Update
        );
        let mut obs = observed(label, true);
        obs.source = Some("baseline".into());
        assert_eq!(plan(Some(&desired), Some(&obs)), Plan::Update);
    }

    /// Edits that widen what the policy allows, each of which a textual
    /// normalisation that drops empty objects reads as no change.
    #[test]
    fn widening_edits_are_differences() {
        let desired = Comparable::of(&np(base()));
        let mut allow_all = base();
        // `ingress: [{…}, {}]`: the second rule allows every peer on every port.
        allow_all["spec"]["ingress"]
            .as_array_mut()
            .unwrap()
            .push(json!({}));
        let mut any_namespace = base();
        any_namespace["spec"]["ingress"][0]["from"] =
            json!([{"podSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}}]);
        let mut own_namespace = base();
        own_namespace["spec"]["ingress"][0]["from"] =
            json!([{"podSelector": {"matchLabels": {"app": "web"}}}]);
        let desired_own = Comparable::of(&np(own_namespace.clone()));
        let mut every_pod = base();
        every_pod["spec"]["podSelector"] = json!({});
        let mut egress_all = base();
        egress_all["spec"]["egress"] = json!([{}]);
        for (what, edited, want) in [
            ("ingress: [.., {}]", allow_all, &desired),
            ("namespaceSelector: {}", any_namespace, &desired_own),
            ("podSelector: {}", every_pod, &desired),
            ("egress: [{}]", egress_all, &desired),
        ] {
            assert_eq!(
                plan(Some(want), Some(&observed(edited, true))),
                Plan::Update,
                "{what} widens the policy"
            );
        }
        // The unedited policy with its own-namespace peer stays as it is.
        assert_eq!(
            plan(Some(&desired_own), Some(&observed(own_namespace, true))),
            Plan::Keep
        );
    }

    /// The answer to a write is taken as reading like what was sent only
    /// when it holds exactly the spec sent; a server (or a webhook) that
    /// stored something else is read from what it stored.
    #[test]
    fn a_write_answer_is_read_from_what_was_stored() {
        let sent = np(base());
        let sent_spec = Comparable::of(&sent).spec().unwrap();
        let as_sent = observed(base(), true);
        assert_eq!(
            Comparable::of_written(&sent, &sent, sent_spec),
            Comparable::of(&sent)
        );
        assert_eq!(as_sent.object, Some(Comparable::of(&sent)));
        let mut widened = base();
        widened["spec"]["ingress"]
            .as_array_mut()
            .unwrap()
            .push(json!({}));
        let stored = np(widened);
        let read = Comparable::of_written(&stored, &sent, sent_spec);
        assert_eq!(read, Comparable::of(&stored));
        assert!(!Comparable::of(&sent).satisfied_by(&read));
    }

    #[test]
    fn an_unreadable_observed_policy_is_rewritten() {
        let desired = Comparable::of(&np(base()));
        let mut broken = base();
        broken["spec"]["ingress"][0]["from"] = json!([{"ipBlock": {"cidr": "not-a-cidr"}}]);
        assert_eq!(
            plan(Some(&desired), Some(&observed(broken, true))),
            Plan::Update
        );
    }

    /// `kubefence generate` output applied by kubectl or GitOps carries
    /// kubefence's labels, but the operator never wrote it: not its to
    /// change, as it is not its to delete.
    #[test]
    fn a_labelled_copy_applied_by_someone_else_is_never_updated() {
        let desired = Comparable::of(&np(base()));
        let mut copy = base();
        copy["spec"]["ingress"][0]["ports"][0]["port"] = json!(81);
        let mut gitops = observed(copy, true);
        gitops.applied_by_us = false;
        assert_eq!(plan(Some(&desired), Some(&gitops)), Plan::Conflict);
        let mut same = observed(base(), true);
        same.applied_by_us = false;
        assert_eq!(plan(Some(&desired), Some(&same)), Plan::Conflict);
    }

    #[test]
    fn foreign_policies_are_never_touched() {
        let desired = Comparable::of(&np(base()));
        let foreign = observed(base(), false);
        assert_eq!(plan(Some(&desired), Some(&foreign)), Plan::Conflict);
        assert_eq!(plan(None, Some(&foreign)), Plan::Keep);
        assert_eq!(plan(None, None), Plan::Keep);
        assert_eq!(plan(Some(&desired), None), Plan::Create);
        assert_eq!(
            plan(None, Some(&observed(base(), true))),
            Plan::Delete {
                uid: Some("u1".into())
            }
        );
        // Labelled as ours but applied by someone else (generate output
        // applied with kubectl): not ours to delete.
        let mut applied_elsewhere = observed(base(), true);
        applied_elsewhere.applied_by_us = false;
        assert_eq!(plan(None, Some(&applied_elsewhere)), Plan::Keep);
    }
}
