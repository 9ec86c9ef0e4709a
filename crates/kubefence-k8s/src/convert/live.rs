//! One live object (from a watch) → the core value it stands for.
//!
//! The operator keeps the cluster as core values, object by object, and
//! assembles a [`kubefence_core::Cluster`] from them; this is the per-object
//! step of [`crate::load`], with the same validation and the same rules for
//! what is a workload: a ReplicaSet owned by a Deployment, a Job owned by a
//! CronJob and a Pod owned by anything are part of their owner, not
//! workloads of their own.

use kubefence_core::model::{ConfigMap, Ingress, Namespace, Service, Workload, WorkloadKind};
use serde_json::Value;

use super::{ConvertError, Converted, Strictness, first_error};

/// What one object is, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveObject {
    Namespace(Namespace),
    /// A workload that gets its own policy (bare Pods included).
    Workload(Workload),
    /// A ReplicaSet, Job or Pod that belongs to another object.
    Owned,
    Service(Service),
    Ingress(Ingress),
    ConfigMap(ConfigMap),
}

/// Converts one object of `kind` (`Deployment`, `Service`, …) given as JSON.
/// The namespace is the object's own (`default` when it names none).
pub fn live_object(kind: &str, value: Value) -> Result<LiveObject, ConvertError> {
    let has_owner = value
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty());
    Ok(match convert_one(kind, value)? {
        // A live Pod with any owner is part of something else.
        Converted::Pod { workload, owner } => {
            if has_owner || owner.is_some() {
                LiveObject::Owned
            } else {
                LiveObject::Workload(workload)
            }
        }
        Converted::Workload { workload, owner } => {
            if super::is_part_of_owner(workload.kind, owner.as_ref()) {
                LiveObject::Owned
            } else {
                LiveObject::Workload(workload)
            }
        }
        Converted::Service(s) => LiveObject::Service(s),
        Converted::Ingress(i) => LiveObject::Ingress(i),
        Converted::ConfigMap(c) => LiveObject::ConfigMap(c),
        Converted::Namespace(n) => LiveObject::Namespace(n),
        Converted::NetworkPolicy(_) => {
            return Err(ConvertError::new(
                "kind",
                "a NetworkPolicy is not a live object of the baseline",
            ));
        }
    })
}

/// One live workload of `kind` as the workload it is, whoever owns it (a
/// ReplicaSet of a Deployment, a Pod of a ReplicaSet): what a quarantine of
/// exactly that object acts on.
pub fn live_workload(kind: WorkloadKind, value: Value) -> Result<Workload, ConvertError> {
    match convert_one(kind.as_str(), value)? {
        Converted::Workload { workload, .. } | Converted::Pod { workload, .. } => Ok(workload),
        _ => Err(ConvertError::new(
            "kind",
            format!("{kind} is not a workload"),
        )),
    }
}

/// Converts one object with the loader's per-kind conversion; the kind and
/// apiVersion are set first (watches and GETs of typed APIs may omit them).
/// The API server validated the object already: fields newer than
/// kubefence's Kubernetes types are not errors here. The first error is
/// the one reported.
fn convert_one(kind: &str, mut value: Value) -> Result<Converted, ConvertError> {
    if let Some(map) = value.as_object_mut() {
        map.insert("kind".into(), Value::String(kind.into()));
        let api_version = super::accepted_api_version(kind, "v1")
            .or_else(|| super::accepted_api_version(kind, "apps/v1"))
            .or_else(|| super::accepted_api_version(kind, "batch/v1"))
            .or_else(|| super::accepted_api_version(kind, "networking.k8s.io/v1"))
            .ok_or_else(|| ConvertError::new("kind", format!("kind {kind} is not read")))?;
        map.insert("apiVersion".into(), Value::String(api_version.into()));
    }
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    super::object(kind, value, &namespace, Strictness::Lenient).map_err(first_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_and_ownership() {
        let d = json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}});
        match live_object("Deployment", d) {
            Ok(LiveObject::Workload(w)) => assert_eq!(w.id(), "shop/Deployment/web"),
            other => panic!("{other:?}"),
        }
        let rs = json!({"metadata": {"name": "web-1", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(live_object("ReplicaSet", rs.clone()), Ok(LiveObject::Owned));
        // The same ReplicaSet, as the target of a quarantine, is a workload.
        match live_workload(WorkloadKind::ReplicaSet, rs) {
            Ok(w) => assert_eq!(w.id(), "shop/ReplicaSet/web-1"),
            other => panic!("{other:?}"),
        }
        let pod = json!({"metadata": {"name": "p", "namespace": "shop", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c"}]}});
        assert!(matches!(
            live_object("Pod", pod),
            Ok(LiveObject::Workload(_))
        ));
        let owned_pod = json!({"metadata": {"name": "p", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "u"}]},
            "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(live_object("Pod", owned_pod.clone()), Ok(LiveObject::Owned));
        match live_workload(WorkloadKind::Pod, owned_pod) {
            Ok(w) => assert_eq!(w.id(), "shop/Pod/p"),
            other => panic!("{other:?}"),
        }
        // As a metadata-only watch delivers it.
        let ns = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "shop", "labels": {"x": "y"}}});
        match live_object("Namespace", ns) {
            Ok(LiveObject::Namespace(n)) => assert_eq!(n.labels.len(), 2),
            other => panic!("{other:?}"),
        }
        let bad = json!({"metadata": {"name": "s", "namespace": "shop"}, "spec": {"ports": [{"port": 0}]}});
        assert!(live_object("Service", bad).is_err());
        assert!(live_object("Secret", json!({"metadata": {"name": "s"}})).is_err());
    }
}
