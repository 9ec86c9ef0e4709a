//! Quarantine on the Kubernetes side: the live target as a core workload,
//! and the plan's policy as the object each engine writes.
//!
//! | engine | object | scope |
//! |---|---|---|
//! | networkpolicy | networking.k8s.io/v1 NetworkPolicy, no rules, both policyTypes | namespaced |
//! | cilium | cilium.io/v2 CiliumNetworkPolicy, `ingressDeny`/`egressDeny` all entities | namespaced |
//! | adminnetworkpolicy | policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy, Deny, priority 0 | cluster |
//!
//! None carries an ownerReference to the target: a quarantine policy must
//! outlive the workload's deletion (evidence, re-creation by an attacker).

use kubefence_core::model::{NAMESPACE_NAME_LABEL, Workload, WorkloadKind};
use kubefence_core::quarantine::{Engine, Plan};
use serde_json::{Value, json};

use crate::convert::{ConvertError, live_workload};
use crate::render;

/// Where the object of an engine lives in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyApi {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl PolicyApi {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub fn policy_api(engine: Engine) -> PolicyApi {
    match engine {
        Engine::NetworkPolicy => PolicyApi {
            group: "networking.k8s.io",
            version: "v1",
            kind: "NetworkPolicy",
            plural: "networkpolicies",
            namespaced: true,
        },
        Engine::Cilium => PolicyApi {
            group: "cilium.io",
            version: "v2",
            kind: "CiliumNetworkPolicy",
            plural: "ciliumnetworkpolicies",
            namespaced: true,
        },
        Engine::AdminNetworkPolicy => PolicyApi {
            group: "policy.networking.k8s.io",
            version: "v1alpha1",
            kind: "AdminNetworkPolicy",
            plural: "adminnetworkpolicies",
            namespaced: false,
        },
    }
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

/// Cilium entities a quarantined pod stops accepting traffic from: all but
/// `host` (the pod's own node, where kubelet probes come from; NetworkPolicy
/// always allows it too) and `kube-apiserver` (on a control-plane node it is
/// the host's identity as well). Pods are denied by endpoint selector.
pub const CILIUM_DENIED_INGRESS_ENTITIES: [&str; 6] = [
    "world",
    "remote-node",
    "ingress",
    "health",
    "init",
    "unmanaged",
];

/// The object the plan's engine writes, with kubefence's labels and the
/// audit annotations; never an ownerReference.
pub fn render(plan: &Plan) -> Value {
    let api = policy_api(plan.engine);
    let selector = json_selector(plan);
    let mut metadata = json!({
        "name": plan.policy_name,
        "labels": plan.labels,
        "annotations": plan.annotations,
    });
    if api.namespaced {
        metadata["namespace"] = json!(plan.target.namespace);
    }
    match plan.engine {
        Engine::NetworkPolicy => {
            let mut np = render::network_policy(&plan.policy);
            np.metadata.labels = Some(plan.labels.clone());
            np.metadata.annotations = Some(plan.annotations.clone());
            serde_json::to_value(&np).unwrap_or(Value::Null)
        }
        Engine::Cilium => json!({
            "apiVersion": api.api_version(),
            "kind": api.kind,
            "metadata": metadata,
            "spec": {
                "endpointSelector": selector,
                // Everything but the pod's own node: kubelet probes must
                // keep passing, or a failed liveness probe restarts the
                // container and the evidence in memory is lost. Every pod of
                // every namespace, and every entity outside the node.
                "ingressDeny": [
                    {"fromEndpoints": [{"matchExpressions": [
                        {"key": "io.kubernetes.pod.namespace", "operator": "Exists"}
                    ]}]},
                    {"fromEntities": CILIUM_DENIED_INGRESS_ENTITIES},
                ],
                "egressDeny": [{"toEntities": ["all"]}],
            },
        }),
        Engine::AdminNetworkPolicy => json!({
            "apiVersion": api.api_version(),
            "kind": api.kind,
            "metadata": metadata,
            "spec": {
                // 0 is the highest precedence an AdminNetworkPolicy can have.
                "priority": 0,
                "subject": {"pods": {
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: plan.target.namespace}},
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
            },
        }),
    }
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
        for engine in [
            Engine::NetworkPolicy,
            Engine::Cilium,
            Engine::AdminNetworkPolicy,
        ] {
            let p = plan(&w, &audit, engine, &cluster, &Config::default()).unwrap();
            let o = render(&p);
            assert_eq!(o["kind"], engine.object_kind());
            assert!(o["metadata"]["ownerReferences"].is_null(), "{engine}");
            assert_eq!(o["metadata"]["name"], p.policy_name);
            assert_eq!(
                o["metadata"]["namespace"].is_null(),
                engine == Engine::AdminNetworkPolicy
            );
            let doc = plan_document(&p, true);
            assert_eq!(doc["effective"], true);
            assert_eq!(doc["selector"], json!({"matchLabels": {"app": "c"}}));
        }
    }
}
