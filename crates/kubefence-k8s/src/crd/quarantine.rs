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

/// The schema's bounds on the status (the API server rejects a status past
/// them; [`QuarantineStatus::bounded`] cuts a status to them before it is
/// written). Generous for what they hold, small enough that a Quarantine
/// in a namespace with thousands of allowing rules stays a small object.
pub mod bounds {
    /// `status.remainingPaths` items (the rest is counted in
    /// `remainingPathsOmitted`).
    pub const REMAINING_PATHS: usize = 50;
    /// `endpoints` of one remaining path.
    pub const ENDPOINTS: usize = 16;
    /// `status.conditions` items (one per condition type).
    pub const CONDITIONS: usize = 8;
    /// A condition's message, and `status.plan`.
    pub const MESSAGE: usize = 1024;
    /// `status.selector` (a label selector as `kubectl -l` reads it).
    pub const SELECTOR: usize = 4096;
    /// Any other string of the status (names, rules, peers, ports).
    pub const FIELD: usize = 512;
    /// A condition's reason (as metav1.Condition).
    pub const REASON: usize = 1024;
    /// `spec.reason` and `spec.findingRef`.
    pub const SPEC_TEXT: usize = 1024;
    /// `spec.target.name` (a DNS subdomain).
    pub const NAME: usize = 253;
}

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
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"DryRun","type":"boolean","jsonPath":".spec.dryRun"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
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
    #[schemars(length(max = bounds::SPEC_TEXT))]
    pub reason: String,
    /// The finding that triggered it: an alert id, a ticket, a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::SPEC_TEXT))]
    pub finding_ref: Option<String>,
    /// While true (the default) the policy is only sent as a server-side
    /// dry run and the plan is reported; set false to isolate.
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Which policy isolates: networkpolicy (portable, cannot override other
    /// policies' allows), cilium (CiliumNetworkPolicy deny rules),
    /// clusternetworkpolicy (ClusterNetworkPolicy Deny, Admin tier, at the
    /// highest priority) or adminnetworkpolicy (the same as an
    /// AdminNetworkPolicy, for CNIs that implement only v1alpha1).
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
    #[schemars(length(min = 1, max = bounds::NAME))]
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
    /// policy.networking.k8s.io/v1alpha2 (network-policy-api v0.2.0), which
    /// replaced AdminNetworkPolicy.
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
}

impl From<QuarantineEngine> for Engine {
    fn from(e: QuarantineEngine) -> Self {
        match e {
            QuarantineEngine::NetworkPolicy => Self::NetworkPolicy,
            QuarantineEngine::Cilium => Self::Cilium,
            QuarantineEngine::ClusterNetworkPolicy => Self::ClusterNetworkPolicy,
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
    #[schemars(length(max = bounds::FIELD))]
    pub policy_name: Option<String>,
    /// The target's selector as `kubectl -l` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::SELECTOR))]
    pub selector: Option<String>,
    /// One line saying what the plan does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MESSAGE))]
    pub plan: Option<String>,
    /// Paths other policies still leave open (see `overridden`), at most
    /// 50; `remainingPathsOmitted` counts the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::REMAINING_PATHS))]
    pub remaining_paths: Vec<RemainingPathStatus>,
    /// How many remaining paths the list above leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub remaining_paths_omitted: Option<i64>,
    /// One per type (`Ready`, `Effective`): a map keyed by `type`, so
    /// server-side apply merges them by type and a duplicate is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `metav1.Condition`s as the Kubernetes API conventions declare them
/// (`+listType=map`, `+listMapKeys=type`), with bounded length.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition> as JsonSchema>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema.insert("maxItems".into(), bounds::CONDITIONS.into());
    if let Some(properties) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("properties"))
    {
        for (field, max) in [
            ("message", bounds::MESSAGE),
            ("reason", bounds::REASON),
            ("type", bounds::FIELD),
        ] {
            if let Some(p) = properties.get_mut(field).and_then(|p| p.as_object_mut()) {
                p.insert("maxLength".into(), max.into());
            }
        }
    }
    schema
}

/// A path that still reaches the target (ingress) or that it can still use
/// (egress), and the rule that allows it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemainingPathStatus {
    /// `ingress` or `egress`.
    #[schemars(length(max = bounds::FIELD))]
    pub direction: String,
    /// `namespace/name` of the allowing NetworkPolicy.
    #[schemars(length(max = bounds::FIELD))]
    pub policy: String,
    /// `spec.ingress[0]`.
    #[schemars(length(max = bounds::FIELD))]
    pub rule: String,
    #[schemars(length(max = bounds::FIELD))]
    pub peer: String,
    #[schemars(length(max = bounds::FIELD))]
    pub ports: String,
    /// Known endpoints on the path (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::ENDPOINTS), inner(length(max = bounds::FIELD)))]
    pub endpoints: Vec<String>,
    /// True when the chosen engine's deny rules override the path.
    pub overridden: bool,
}

/// `text` cut to at most `max` characters (as the API server counts them),
/// ending in `…` when cut.
pub(crate) fn cut(text: &mut String, max: usize) {
    if text.chars().count() > max {
        let keep: String = text.chars().take(max.saturating_sub(1)).collect();
        *text = keep + "…";
    }
}

impl QuarantineStatus {
    /// The status cut to the schema's [`bounds`], so the API server accepts
    /// it: remaining paths past the first 50 are counted, not listed;
    /// long texts end in `…`. Call it on every status before writing it.
    pub fn bounded(mut self) -> Self {
        if self.remaining_paths.len() > bounds::REMAINING_PATHS {
            let omitted = self.remaining_paths.len() - bounds::REMAINING_PATHS;
            self.remaining_paths.truncate(bounds::REMAINING_PATHS);
            self.remaining_paths_omitted = Some(i64::try_from(omitted).unwrap_or(i64::MAX));
        } else {
            self.remaining_paths_omitted = None;
        }
        for path in &mut self.remaining_paths {
            for field in [
                &mut path.direction,
                &mut path.policy,
                &mut path.rule,
                &mut path.peer,
                &mut path.ports,
            ] {
                cut(field, bounds::FIELD);
            }
            path.endpoints.truncate(bounds::ENDPOINTS);
            for endpoint in &mut path.endpoints {
                cut(endpoint, bounds::FIELD);
            }
        }
        self.conditions.truncate(bounds::CONDITIONS);
        for c in &mut self.conditions {
            cut(&mut c.message, bounds::MESSAGE);
            cut(&mut c.reason, bounds::REASON);
        }
        for (text, max) in [
            (&mut self.policy_name, bounds::FIELD),
            (&mut self.selector, bounds::SELECTOR),
            (&mut self.plan, bounds::MESSAGE),
        ] {
            if let Some(text) = text {
                cut(text, max);
            }
        }
        self
    }
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
            serde_json::json!([
                "networkpolicy",
                "cilium",
                "adminnetworkpolicy",
                "clusternetworkpolicy"
            ])
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

    /// Checks `value` against the `maxLength` and `maxItems` of `schema`
    /// (a structural schema, as the API server would), collecting where it
    /// breaks them.
    fn past_bounds(
        value: &serde_json::Value,
        schema: &serde_json::Value,
        at: &str,
        out: &mut Vec<String>,
    ) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Some(max) = schema["maxLength"].as_u64()
                    && s.chars().count() as u64 > max
                {
                    out.push(format!("{at}: {} > {max} characters", s.chars().count()));
                }
            }
            Value::Array(items) => {
                if let Some(max) = schema["maxItems"].as_u64()
                    && items.len() as u64 > max
                {
                    out.push(format!("{at}: {} > {max} items", items.len()));
                }
                for (i, item) in items.iter().enumerate() {
                    past_bounds(item, &schema["items"], &format!("{at}[{i}]"), out);
                }
            }
            Value::Object(fields) => {
                for (k, v) in fields {
                    past_bounds(v, &schema["properties"][k], &format!("{at}.{k}"), out);
                }
            }
            _ => {}
        }
    }

    fn huge_status() -> QuarantineStatus {
        let long = |n: usize| "x".repeat(n);
        let path = RemainingPathStatus {
            direction: "ingress".into(),
            policy: format!("shop/{}", long(600)),
            rule: "spec.ingress[0]".into(),
            peer: format!("é{}", long(2000)),
            ports: long(700),
            endpoints: (0..40)
                .map(|i| format!("10.0.0.{i}:{}", long(600)))
                .collect(),
            overridden: false,
        };
        let mut status = QuarantineStatus {
            phase: Some(Phase::Isolated),
            policy_name: Some(long(900)),
            selector: Some(long(5000)),
            plan: Some(long(3000)),
            remaining_paths: vec![path; 120],
            ..QuarantineStatus::default()
        };
        let now = time("2026-01-01T00:00:00Z");
        set_condition(
            &mut status.conditions,
            CONDITION_READY,
            true,
            "Isolated",
            &long(40_000),
            None,
            &now,
        );
        set_condition(
            &mut status.conditions,
            CONDITION_EFFECTIVE,
            false,
            &long(2000),
            "m",
            None,
            &now,
        );
        status
    }

    fn status_schema() -> serde_json::Value {
        let crd = Quarantine::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        schema["openAPIV3Schema"]["properties"]["status"].clone()
    }

    /// Issue 10 defect 11: the schema bounds the status, and `bounded` cuts
    /// any status to those bounds (checked against the generated schema,
    /// not against the constants), keeping count of what it left out.
    #[test]
    fn the_status_is_cut_to_the_schemas_bounds() {
        let schema = status_schema();
        let huge = huge_status();
        let mut broken = Vec::new();
        past_bounds(
            &serde_json::to_value(&huge).unwrap(),
            &schema,
            "status",
            &mut broken,
        );
        // Every kind of bound is in the schema (else the check is vacuous).
        for field in [
            "status.plan",
            "status.selector",
            "status.policyName",
            "status.remainingPaths:",
            "status.remainingPaths[0].peer",
            "status.remainingPaths[0].endpoints:",
            "status.remainingPaths[0].endpoints[0]",
            "status.conditions[0].reason",
            "status.conditions[1].message",
        ] {
            assert!(
                broken.iter().any(|b| b.starts_with(field)),
                "{field} not bounded: {broken:#?}"
            );
        }
        let cut = huge.clone().bounded();
        let mut broken = Vec::new();
        past_bounds(
            &serde_json::to_value(&cut).unwrap(),
            &schema,
            "status",
            &mut broken,
        );
        assert!(broken.is_empty(), "{broken:#?}");
        assert_eq!(cut.remaining_paths.len(), bounds::REMAINING_PATHS);
        assert_eq!(cut.remaining_paths_omitted, Some(70));
        assert!(cut.plan.as_deref().unwrap().ends_with('…'));
        // Nothing else changes; a small status is left as it is.
        assert_eq!(cut.phase, huge.phase);
        assert_eq!(cut.conditions.len(), 2);
        let small = QuarantineStatus {
            plan: Some("deny all".into()),
            remaining_paths: huge.remaining_paths[..1]
                .iter()
                .cloned()
                .map(|mut p| {
                    p.peer = "web".into();
                    p.policy = "shop/p".into();
                    p.ports = "TCP/80".into();
                    p.endpoints.clear();
                    p
                })
                .collect(),
            ..QuarantineStatus::default()
        };
        assert_eq!(small.clone().bounded(), small);
    }

    /// Conditions are a map keyed by type, as the API conventions say
    /// (server-side apply merges them by type; the API server refuses two of
    /// one type).
    #[test]
    fn conditions_are_a_map_keyed_by_type() {
        let conditions = &status_schema()["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let required = conditions["items"]["required"].as_array().unwrap();
        assert!(
            required.contains(&serde_json::json!("type")),
            "a map key must be required"
        );
    }

    #[test]
    fn printer_columns_show_engine_dry_run_and_readiness() {
        let crd = Quarantine::crd();
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap();
        let column = |name: &str| {
            columns
                .iter()
                .find(|c| c.name == name)
                .map(|c| (c.type_.clone(), c.json_path.clone()))
        };
        assert_eq!(
            column("Engine"),
            Some(("string".into(), ".spec.engine".into()))
        );
        assert_eq!(
            column("DryRun"),
            Some(("boolean".into(), ".spec.dryRun".into()))
        );
        assert_eq!(
            column("Ready"),
            Some((
                "string".into(),
                r#".status.conditions[?(@.type=="Ready")].status"#.into()
            ))
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
