//! The one set of object builders for tests and benchmarks (feature
//! `fake`): live-looking objects (typed; store one in the fake API server
//! with [`crate::fake::FakeApi::add`]), their API paths, and the synthetic
//! watch events that list them.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use kubefence_core::model::WorkloadKind;
use serde_json::{Value, json};

use crate::controllers::baseline::Change;
use crate::controllers::baseline::state::Kind;
use crate::controllers::baseline::watch::change;

// Fixtures are literals: one that does not parse is a bug in the test.
#[allow(clippy::panic)]
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("fixture: {e}"),
    }
}

/// A namespace, opted in to baseline policies or not (as a metadata-only
/// watch delivers it).
pub fn namespace(name: &str, opted_in: bool) -> PartialObjectMeta<Namespace> {
    let labels = if opted_in {
        json!({"kubefence.dev/baseline": "enabled", "kubernetes.io/metadata.name": name})
    } else {
        json!({"kubernetes.io/metadata.name": name})
    };
    typed(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "uid": format!("ns-{name}"), "labels": labels}}),
    )
}

/// A Deployment `name` whose pods are labelled `app: name`, with one
/// container that has `env` and declares `ports` (name, number).
pub fn deployment(ns: &str, name: &str, env: &[(&str, &str)], ports: &[(&str, u16)]) -> Deployment {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    typed(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}")},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "x", "env": env, "ports": ports}]}}}}))
}

/// A ClusterIP Service `name` selecting `app: app` on `port` → `target`.
pub fn service(ns: &str, name: &str, app: &str, port: u16, target: u16) -> Service {
    typed(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": format!("svc-{ns}-{name}")},
        "spec": {"selector": {"app": app}, "ports": [{"port": port, "targetPort": target}]}}))
}

pub fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    typed(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": data}))
}

/// An Ingress routing to Service `svc` port `port`.
pub fn ingress(ns: &str, name: &str, svc: &str, port: u16) -> Ingress {
    typed(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": svc, "port": {"number": port}}}}]}}]}}),
    )
}

/// A NetworkPolicy that kubefence does not manage.
pub fn foreign_policy(ns: &str, name: &str) -> NetworkPolicy {
    typed(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"team": "theirs"}}, "policyTypes": ["Ingress"]}}),
    )
}

/// A Deployment `name` selecting with `selector` (a JSON LabelSelector),
/// pods labelled `app: name, tier: back`, one container with port `http`
/// 8080. No uid: the fake API server gives it one.
pub fn deployment_selecting(ns: &str, name: &str, selector: Value) -> Deployment {
    typed(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": selector,
                 "template": {"metadata": {"labels": {"app": name, "tier": "back"}},
                              "spec": {"containers": [{"name": "c", "image": "x",
                                  "ports": [{"name": "http", "containerPort": 8080}]}]}}}}))
}

/// A StatefulSet `name` selecting `app: name, kind: sts`.
pub fn statefulset(ns: &str, name: &str) -> StatefulSet {
    typed(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"serviceName": name,
                 "selector": {"matchLabels": {"app": name, "kind": "sts"}},
                 "template": {"metadata": {"labels": {"app": name, "kind": "sts"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
}

/// `api-from-web`: allows ingress to `app: api` from `app: web` on 8080.
pub fn allow_ingress_from_web(ns: &str) -> NetworkPolicy {
    typed(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "api-from-web", "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"port": 8080}]}]}}),
    )
}

/// The API path of NetworkPolicy `ns/name`.
pub fn policy_path(ns: &str, name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}")
}

/// The API path of Quarantine `ns/name`.
pub fn quarantine_path(ns: &str, name: &str) -> String {
    format!("/apis/kubefence.dev/v1alpha1/namespaces/{ns}/quarantines/{name}")
}

/// Objects of every watched kind but NetworkPolicy, for an initial list.
#[derive(Default)]
pub struct World {
    pub namespaces: Vec<PartialObjectMeta<Namespace>>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub config_maps: Vec<ConfigMap>,
    pub ingresses: Vec<Ingress>,
}

fn listed<K: kube::Resource + serde::Serialize + Clone>(kind: Kind, objects: &[K]) -> Vec<Change> {
    let mut out = vec![change(kind, Event::<K>::Init)];
    out.extend(
        objects
            .iter()
            .map(|o| change(kind, Event::InitApply(o.clone()))),
    );
    out.push(change(kind, Event::<K>::InitDone));
    out
}

impl World {
    /// The initial list of every kind the controller watches, except
    /// NetworkPolicies (the fake API server's watch lists those).
    pub fn initial_list(&self) -> Vec<Change> {
        let mut out = listed(Kind::Namespace, &self.namespaces);
        out.extend(listed(
            Kind::Workload(WorkloadKind::Deployment),
            &self.deployments,
        ));
        for k in WorkloadKind::ALL {
            if k != WorkloadKind::Deployment {
                out.push(Change::Init(Kind::Workload(k)));
                out.push(Change::InitDone(Kind::Workload(k)));
            }
        }
        out.extend(listed(Kind::Service, &self.services));
        out.extend(listed(Kind::ConfigMap, &self.config_maps));
        out.extend(listed(Kind::Ingress, &self.ingresses));
        out
    }
}
