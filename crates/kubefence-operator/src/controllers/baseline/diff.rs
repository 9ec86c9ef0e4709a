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

use std::collections::BTreeMap;

use super::state::ObservedPolicy;
use k8s_openapi::api::networking::v1::NetworkPolicy;

/// The comparable parts of a NetworkPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparable {
    /// What the spec allows: the core policy (name and namespace blanked) as
    /// compact JSON, a tenth of the memory of the typed value; `None` when
    /// the spec does not convert (then it never equals a desired one).
    spec: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// (apiVersion, kind, name, uid)
    owners: Vec<(String, String, String, String)>,
}

impl Comparable {
    pub fn of(np: &NetworkPolicy) -> Self {
        Self {
            spec: semantic_spec(np),
            labels: np.metadata.labels.clone().unwrap_or_default(),
            annotations: np.metadata.annotations.clone().unwrap_or_default(),
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

    /// Whether `observed` already has everything `self` (desired) says.
    pub fn satisfied_by(&self, observed: &Comparable) -> bool {
        let subset = |want: &BTreeMap<String, String>, have: &BTreeMap<String, String>| {
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        self.spec.is_some()
            && self.spec == observed.spec
            && subset(&self.labels, &observed.labels)
            && subset(&self.annotations, &observed.annotations)
            && self.owners.iter().all(|o| observed.owners.contains(o))
    }
}

/// The spec as the core policy it means. Name and namespace are identity,
/// not content (the key says which policy this is).
fn semantic_spec(np: &NetworkPolicy) -> Option<String> {
    let namespace = np.metadata.namespace.as_deref().unwrap_or_default();
    let mut core = kubefence_k8s::convert::network_policy(np, namespace).ok()?;
    core.name.clear();
    core.namespace.clear();
    serde_json::to_string(&core).ok()
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
