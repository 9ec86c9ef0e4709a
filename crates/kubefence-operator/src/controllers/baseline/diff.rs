//! Desired versus observed: what to write, if anything.
//!
//! Only the parts kubefence owns are compared: the spec (normalized the way
//! the API server stores it: no nulls, no empty lists or maps, `protocol`
//! defaulted to TCP), and that every label, annotation and ownerReference
//! kubefence sets is present with its value. What others add to the object
//! does not trigger a write; a hand edit of anything kubefence set does.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use super::state::ObservedPolicy;

/// The comparable parts of a NetworkPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparable {
    /// Normalized spec as compact JSON (object keys sorted): a tenth of the
    /// memory of a `serde_json::Value`, and compared as a string.
    spec: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// (apiVersion, kind, name, uid)
    owners: Vec<(String, String, String, String)>,
}

impl Comparable {
    pub fn of(np: &NetworkPolicy) -> Self {
        let spec = serde_json::to_value(&np.spec).unwrap_or(Value::Null);
        Self {
            spec: normalize(spec, false)
                .map(|v| v.to_string())
                .unwrap_or_default(),
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
        self.spec == observed.spec
            && subset(&self.labels, &observed.labels)
            && subset(&self.annotations, &observed.annotations)
            && self.owners.iter().all(|o| observed.owners.contains(o))
    }
}

/// Drops nulls and empty lists and maps; defaults `protocol` in port
/// entries. `None` when nothing is left.
fn normalize(value: Value, in_ports: bool) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<Value> = items
                .into_iter()
                .filter_map(|v| normalize(v, in_ports))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let ports = k == "ports";
                if let Some(v) = normalize(v, ports) {
                    out.insert(k, v);
                }
            }
            if in_ports && !out.contains_key("protocol") {
                out.insert("protocol".into(), Value::String("TCP".into()));
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        other => Some(other),
    }
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
    /// Wanted, but a policy kubefence does not manage has the name: leave it.
    Conflict,
    /// Nothing to do.
    Keep,
}

pub fn plan(desired: Option<&Comparable>, observed: Option<&ObservedPolicy>) -> Plan {
    match (desired, observed) {
        (Some(_), None) => Plan::Create,
        (Some(_), Some(o)) if !o.is_baseline() => Plan::Conflict,
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
    use serde_json::json;

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
