//! Quarantine on the Kubernetes side: the live target as a core workload,
//! and the plan's policy as the object each engine writes.
//!
//! | engine | object | scope |
//! |---|---|---|
//! | networkpolicy | networking.k8s.io/v1 NetworkPolicy, no rules, both policyTypes | namespaced |
//! | cilium | cilium.io/v2 CiliumNetworkPolicy, `ingressDeny`/`egressDeny` all entities | namespaced |
//! | adminnetworkpolicy | policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy, Deny, priority 0 | cluster |
//! | clusternetworkpolicy | policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy, Admin tier, Deny, priority 0 | cluster |
//!
//! Each object is written by the engine adapters (`crate::adapters`) from
//! the plan's neutral rule set.
//!
//! None carries an ownerReference to the target: a quarantine policy must
//! outlive the workload's deletion (evidence, re-creation by an attacker).

use kubefence_core::model::{Workload, WorkloadKind};
use kubefence_core::quarantine::{Engine, Plan};
use serde_json::{Value, json};

use crate::adapters;
use crate::convert::{ConvertError, live_workload};
use crate::render;

pub use crate::adapters::PolicyApi;

/// Where the object of a quarantine engine lives in the API.
pub fn policy_api(engine: Engine) -> PolicyApi {
    adapters::api(engine.adapter())
}

/// The API path segment (`deployments`) and apiVersion of a workload kind.
pub fn workload_api(kind: WorkloadKind) -> (&'static str, &'static str) {
    let plural = match kind {
        WorkloadKind::Deployment => "deployments",
        WorkloadKind::StatefulSet => "statefulsets",
        WorkloadKind::DaemonSet => "daemonsets",
        WorkloadKind::ReplicaSet => "replicasets",
        WorkloadKind::Job => "jobs",
        WorkloadKind::CronJob => "cronjobs",
        WorkloadKind::Pod => "pods",
    };
    (render::workload_api_version(kind), plural)
}

/// The live target object (as the API server returned it) as a workload:
/// its full `spec.selector`, or a Pod's own labels. The same conversion as
/// manifests and the operator's watches; `namespace` is the target's.
pub fn target_workload(
    kind: WorkloadKind,
    namespace: &str,
    mut object: Value,
) -> Result<Workload, ConvertError> {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(namespace.into()));
    }
    live_workload(kind, object)
}

/// Cilium entities a quarantined pod stops accepting traffic from (see
/// [`adapters::cilium::DENIED_INGRESS_ENTITIES`]).
pub use crate::adapters::cilium::DENIED_INGRESS_ENTITIES as CILIUM_DENIED_INGRESS_ENTITIES;

/// The object the plan's engine writes, with kubefence's labels and the
/// audit annotations; never an ownerReference. The plan's deny-all goes
/// through the same adapters as intents and profiles, at priority 0 (the
/// highest precedence) for the cluster-scoped engines.
pub fn render(plan: &Plan) -> Value {
    let opts = adapters::Options {
        priority: 0,
        ..adapters::Options::default()
    };
    // A plan's rule set (non-empty selector, deny-all) is expressible by
    // every network engine; `plan` refused the rest before.
    adapters::render(plan.engine.adapter(), &plan.rule_set(), &opts)
        .map(|r| r.object)
        .unwrap_or(Value::Null)
}

fn json_selector(plan: &Plan) -> Value {
    serde_json::to_value(render::label_selector(&plan.selector)).unwrap_or(Value::Null)
}

/// The plan as printed by `kubefence quarantine -o yaml|json`.
pub fn plan_document(plan: &Plan, dry_run: bool) -> Value {
    let api = policy_api(plan.engine);
    json!({
        "target": {
            "kind": plan.target.kind.as_str(),
            "namespace": plan.target.namespace,
            "name": plan.target.name,
        },
        "engine": plan.engine.as_str(),
        "dryRun": dry_run,
        "policy": format!("{}/{}", api.kind, plan.policy_name),
        "selector": json_selector(plan),
        "alsoSelects": plan.also_selects,
        "effective": plan.effective(),
        "remainingPaths": plan.remaining_paths.iter().map(|p| json!({
            "direction": p.direction.to_string(),
            "policy": p.policy,
            "rule": p.rule_field(),
            "peer": p.peer,
            "ports": p.ports,
            "endpoints": p.endpoints,
            "overridden": p.overridden,
        })).collect::<Vec<_>>(),
        "unreadablePolicies": plan.unreadable_policies,
        "object": render(plan),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use kubefence_core::quarantine::{Audit, Config, plan};
    use kubefence_core::selector::LabelSelector;
    use serde_json::json;

    use super::*;

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    }

    /// Every kind the issue names, read the way the API server returns it.
    #[test]
    fn every_kind_yields_its_live_selector() {
        let sel = json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["x"]}]});
        let t = template(json!({"app": "a", "t": "x"}));
        let cases = [
            (
                WorkloadKind::Deployment,
                json!({"metadata": {"name": "w"}, "spec": {"selector": sel, "template": t}}),
            ),
            (
                WorkloadKind::StatefulSet,
                json!({"metadata": {"name": "w"}, "spec": {"selector": sel, "template": t, "serviceName": "w"}}),
            ),
            (
                WorkloadKind::DaemonSet,
                json!({"metadata": {"name": "w"}, "spec": {"selector": sel, "template": t}}),
            ),
            (
                WorkloadKind::ReplicaSet,
                json!({"metadata": {"name": "w"}, "spec": {"selector": sel, "template": t}}),
            ),
            (
                WorkloadKind::Job,
                json!({"metadata": {"name": "w"}, "spec": {"selector": sel, "template": t}}),
            ),
            (
                WorkloadKind::CronJob,
                json!({"metadata": {"name": "w"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"selector": sel, "template": t}}}}),
            ),
        ];
        for (kind, object) in cases {
            let w = target_workload(kind, "shop", object).unwrap();
            assert_eq!(w.selector.to_string(), "app=a,t in (x)", "{kind}");
            assert_eq!(w.id(), format!("shop/{kind}/w"));
        }
        // A CronJob without a selector: its template's labels.
        let cj = json!({"metadata": {"name": "w"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template(json!({"app": "b"}))}}}});
        let w = target_workload(WorkloadKind::CronJob, "shop", cj).unwrap();
        assert_eq!(w.selector.to_string(), "app=b");
        // A Pod: its own labels.
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "c", "pod-template-hash": "h"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let w = target_workload(WorkloadKind::Pod, "shop", pod).unwrap();
        assert_eq!(w.selector.to_string(), "app=c,pod-template-hash=h");
        // A Pod without labels has an empty selector, which plan refuses.
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let w = target_workload(WorkloadKind::Pod, "shop", bare).unwrap();
        assert_eq!(w.selector, LabelSelector::everything());
        let audit = Audit {
            reason: "r".into(),
            finding: None,
            requester: "me".into(),
            time: "2026-01-01T00:00:00Z".into(),
        };
        let cluster = kubefence_core::Cluster::default();
        assert!(
            plan(
                &w,
                &audit,
                Engine::NetworkPolicy,
                &cluster,
                &Config::default()
            )
            .is_err()
        );
    }

    #[test]
    fn renderings_carry_no_owner_reference_and_the_full_selector() {
        let pod = json!({"metadata": {"name": "p", "uid": "u1", "labels": {"app": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let w = target_workload(WorkloadKind::Pod, "shop", pod).unwrap();
        let audit = Audit {
            reason: "r".into(),
            finding: None,
            requester: "me".into(),
            time: "2026-01-01T00:00:00Z".into(),
        };
        let cluster = kubefence_core::Cluster::default();
        for engine in Engine::ALL {
            let p = plan(&w, &audit, engine, &cluster, &Config::default()).unwrap();
            let o = render(&p);
            assert_eq!(o["kind"], engine.object_kind());
            assert!(o["metadata"]["ownerReferences"].is_null(), "{engine}");
            assert_eq!(o["metadata"]["name"], p.policy_name);
            assert_eq!(
                o["metadata"]["namespace"].is_null(),
                engine.adapter().cluster_scoped()
            );
            let doc = plan_document(&p, true);
            assert_eq!(doc["effective"], true);
            assert_eq!(doc["selector"], json!({"matchLabels": {"app": "c"}}));
        }
    }

    /// The adapters write exactly what the quarantine renderer wrote before
    /// it moved onto them (the objects below are that renderer's output).
    #[test]
    fn quarantine_objects_are_unchanged_by_the_move_to_the_adapters() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let w = target_workload(WorkloadKind::Pod, "shop", pod).unwrap();
        let audit = Audit {
            reason: "r".into(),
            finding: None,
            requester: "me".into(),
            time: "2026-01-01T00:00:00Z".into(),
        };
        let cluster = kubefence_core::Cluster::default();
        let spec_of = |engine| {
            let p = plan(&w, &audit, engine, &cluster, &Config::default()).unwrap();
            render(&p)["spec"].clone()
        };
        let selector = json!({"matchLabels": {"app": "c"}});
        assert_eq!(
            spec_of(Engine::Cilium),
            json!({
                "endpointSelector": selector,
                "ingressDeny": [
                    {"fromEndpoints": [{"matchExpressions": [
                        {"key": "io.kubernetes.pod.namespace", "operator": "Exists"}
                    ]}]},
                    {"fromEntities": ["world", "remote-node", "ingress", "health", "init", "unmanaged"]},
                ],
                "egressDeny": [{"toEntities": ["all"]}],
            })
        );
        assert_eq!(
            spec_of(Engine::AdminNetworkPolicy),
            json!({
                "priority": 0,
                "subject": {"pods": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
                    "podSelector": selector,
                }},
                "ingress": [{
                    "name": "kubefence-quarantine-deny-all-ingress",
                    "action": "Deny",
                    "from": [{"namespaces": {}}],
                }],
                "egress": [{
                    "name": "kubefence-quarantine-deny-all-egress",
                    "action": "Deny",
                    "to": [{"namespaces": {}}, {"networks": ["0.0.0.0/0", "::/0"]}],
                }],
            })
        );
        assert_eq!(
            spec_of(Engine::NetworkPolicy),
            json!({
                "podSelector": selector,
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [],
            })
        );
        let cnp = spec_of(Engine::ClusterNetworkPolicy);
        assert_eq!(cnp["tier"], "Admin");
        assert_eq!(cnp["priority"], 0);
        assert_eq!(cnp["egress"], spec_of(Engine::AdminNetworkPolicy)["egress"]);
    }
}
