//! `Quarantine` (kubefence.dev/v1alpha1, namespaced): isolate one workload.
//!
//! The operator reconciles it: it reads the target's live selector, writes
//! a deny-all policy (a server-side dry run while `dryRun` is true), reports
//! in the status which paths other policies still leave open, and deletes
//! the policy when the Quarantine is deleted (finalizer).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kubefence_core::WorkloadKind;
use kubefence_core::quarantine::{Engine, RemainingPath};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that makes deleting a Quarantine release its workload.
pub const FINALIZER: &str = "kubefence.dev/quarantine";

/// The label that records, on a quarantine policy, the uid of the
/// Quarantine that holds it. Only that Quarantine changes or deletes it; a
/// policy that merely carries kubefence's labels is not a Quarantine's.
pub const QUARANTINE_UID_LABEL: &str = "kubefence.dev/quarantine-uid";

/// Condition: the quarantine policy exists (False while planned or failed).
pub const CONDITION_READY: &str = "Ready";
/// Condition: no path stays open (False while another policy allows one).
pub const CONDITION_EFFECTIVE: &str = "Effective";

/// Isolate one workload: deny all its ingress and egress, keep its pods
/// running (nothing is restarted or mutated).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "Quarantine",
    namespaced,
    status = "QuarantineStatus",
    shortname = "kfq",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.target.kind"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.conditions[?(@.type==\"Effective\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSpec {
    /// The workload to isolate, in the Quarantine's namespace. Immutable:
    /// to isolate another workload, create another Quarantine.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.target is immutable; create another Quarantine"
    }]))]
    pub target: QuarantineTarget,
    /// Why (kept on the policy and in the Event, for the audit trail).
    pub reason: String,
    /// The finding that triggered it: an alert id, a ticket, a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_ref: Option<String>,
    /// While true (the default) the policy is only sent as a server-side
    /// dry run and the plan is reported; set false to isolate.
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Which policy isolates: networkpolicy (portable, cannot override other
    /// policies' allows), cilium (CiliumNetworkPolicy deny rules) or
    /// adminnetworkpolicy (AdminNetworkPolicy Deny at the highest priority).
    /// Immutable: to change it, create a Quarantine with the other engine,
    /// then delete this one.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.engine is immutable; create another Quarantine with the other engine, then delete this one"
    }]))]
    pub engine: QuarantineEngine,
    /// The policy selects pods by the target's selector, which may select
    /// pods that are not the target's own (a Pod's labels are shared by
    /// every sibling of its ReplicaSet; another workload may share the
    /// labels). Such a plan is refused unless this is true.
    #[serde(default)]
    pub allow_collateral: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineTarget {
    pub kind: TargetKind,
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Pod,
}

impl From<TargetKind> for WorkloadKind {
    fn from(k: TargetKind) -> Self {
        match k {
            TargetKind::Deployment => Self::Deployment,
            TargetKind::StatefulSet => Self::StatefulSet,
            TargetKind::DaemonSet => Self::DaemonSet,
            TargetKind::ReplicaSet => Self::ReplicaSet,
            TargetKind::Job => Self::Job,
            TargetKind::CronJob => Self::CronJob,
            TargetKind::Pod => Self::Pod,
        }
    }
}

impl From<WorkloadKind> for TargetKind {
    fn from(k: WorkloadKind) -> Self {
        match k {
            WorkloadKind::Deployment => Self::Deployment,
            WorkloadKind::StatefulSet => Self::StatefulSet,
            WorkloadKind::DaemonSet => Self::DaemonSet,
            WorkloadKind::ReplicaSet => Self::ReplicaSet,
            WorkloadKind::Job => Self::Job,
            WorkloadKind::CronJob => Self::CronJob,
            WorkloadKind::Pod => Self::Pod,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineEngine {
    #[default]
    NetworkPolicy,
    Cilium,
    AdminNetworkPolicy,
}

impl From<QuarantineEngine> for Engine {
    fn from(e: QuarantineEngine) -> Self {
        match e {
            QuarantineEngine::NetworkPolicy => Self::NetworkPolicy,
            QuarantineEngine::Cilium => Self::Cilium,
            QuarantineEngine::AdminNetworkPolicy => Self::AdminNetworkPolicy,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Planned: the dry run passed; nothing is isolated yet.
    Planned,
    /// The quarantine policy exists.
    Isolated,
    /// The policy was deleted (the Quarantine is going away).
    Released,
    /// The plan or the write failed; see the Ready condition.
    Failed,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The object kubefence writes (`CiliumNetworkPolicy/kf-…` for Cilium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// The target's selector as `kubectl -l` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// One line saying what the plan does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Paths other policies still leave open (see `overridden`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining_paths: Vec<RemainingPathStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A path that still reaches the target (ingress) or that it can still use
/// (egress), and the rule that allows it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemainingPathStatus {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `namespace/name` of the allowing NetworkPolicy.
    pub policy: String,
    /// `spec.ingress[0]`.
    pub rule: String,
    pub peer: String,
    pub ports: String,
    /// Known endpoints on the path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// True when the chosen engine's deny rules override the path.
    pub overridden: bool,
}

impl From<&RemainingPath> for RemainingPathStatus {
    fn from(p: &RemainingPath) -> Self {
        Self {
            direction: p.direction.to_string(),
            policy: p.policy.clone(),
            rule: p.rule_field(),
            peer: p.peer.clone(),
            ports: p.ports.clone(),
            endpoints: p.endpoints.clone(),
            overridden: p.overridden,
        }
    }
}

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime`
/// when the status does not change. Returns whether anything but the time
/// changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = if status { "True" } else { "False" }.to_string();
    let new = |last_transition_time: Time| Condition {
        type_: type_.to_string(),
        status: status.clone(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let time = if c.status == status {
                c.last_transition_time.clone()
            } else {
                now.clone()
            };
            let updated = new(time);
            let changed = !same_ignoring_time(c, &updated);
            *c = updated;
            changed
        }
        None => {
            conditions.push(new(now.clone()));
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
            true
        }
    }
}

fn same_ignoring_time(a: &Condition, b: &Condition) -> bool {
    a.type_ == b.type_
        && a.status == b.status
        && a.reason == b.reason
        && a.message == b.message
        && a.observed_generation == b.observed_generation
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use kube::CustomResourceExt;

    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn dry_run_defaults_to_true_and_engine_to_networkpolicy() {
        let spec: QuarantineSpec = serde_json::from_value(serde_json::json!({
            "target": {"kind": "Deployment", "name": "api"},
            "reason": "incident 7"
        }))
        .unwrap();
        assert!(spec.dry_run);
        assert_eq!(spec.engine, QuarantineEngine::NetworkPolicy);
        let crd = Quarantine::crd();
        assert_eq!(crd.spec.group, "kubefence.dev");
        assert_eq!(crd.spec.names.kind, "Quarantine");
        assert_eq!(crd.spec.scope, "Namespaced");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec_schema = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec_schema["properties"]["dryRun"]["default"], true);
        assert_eq!(
            spec_schema["properties"]["engine"]["enum"],
            serde_json::json!(["networkpolicy", "cilium", "adminnetworkpolicy"])
        );
    }

    /// A Quarantine's target and engine decide which object it holds; were
    /// they mutable, an edit would leave the old object isolating (or point
    /// the release at another object). The API server enforces it with CEL.
    #[test]
    fn target_and_engine_are_immutable() {
        let crd = Quarantine::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec_schema = &schema["openAPIV3Schema"]["properties"]["spec"];
        for field in ["target", "engine"] {
            let rules = &spec_schema["properties"][field]["x-kubernetes-validations"];
            assert_eq!(
                rules[0]["rule"], "self == oldSelf",
                "{field}: {spec_schema}"
            );
        }
        assert!(
            spec_schema["properties"]["reason"]["x-kubernetes-validations"].is_null(),
            "the reason may be corrected"
        );
        assert_eq!(
            spec_schema["properties"]["allowCollateral"]["default"],
            false
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut c = Vec::new();
        assert!(set_condition(
            &mut c,
            CONDITION_READY,
            false,
            "DryRun",
            "m",
            Some(1),
            &time("2026-01-01T00:00:00Z")
        ));
        assert!(!set_condition(
            &mut c,
            CONDITION_READY,
            false,
            "DryRun",
            "m",
            Some(1),
            &time("2026-01-01T00:05:00Z")
        ));
        assert_eq!(c[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        assert!(set_condition(
            &mut c,
            CONDITION_READY,
            true,
            "Isolated",
            "m",
            Some(2),
            &time("2026-01-01T00:10:00Z")
        ));
        assert_eq!(c[0].last_transition_time, time("2026-01-01T00:10:00Z"));
        assert_eq!(c.len(), 1);
    }
}
