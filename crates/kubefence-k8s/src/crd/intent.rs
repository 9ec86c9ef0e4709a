//! The intent kinds (`kubefence.dev/v1alpha1`), with Nimbus's field names
//! (`intent.security.nimbus.com/v1alpha1`) so its objects read unchanged:
//!
//! - `SecurityIntent` (cluster): `spec.intent {id, action, description,
//!   severity, tags, params}`;
//! - `SecurityIntentBinding` (namespaced): `spec.intents[].name` and
//!   `spec.selector` (matchLabels and matchExpressions; an empty selector
//!   is refused by the API server);
//! - `ClusterSecurityIntentBinding` (cluster): the same, with an optional
//!   `spec.namespaceSelector`;
//! - `IntentPolicy` (namespaced, owned by its binding): the resolved rules
//!   per intent, and a status that lists the engine objects that exist
//!   (`policyNames` is a set: the API server itself refuses a duplicate).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quarantine::conditions_schema;

/// Nimbus's API group: objects of it are accepted by `kubefence intents`.
pub const NIMBUS_GROUP: &str = "intent.security.nimbus.com";

pub mod bounds {
    pub const INTENTS: usize = 64;
    pub const POLICY_NAMES: usize = 512;
    pub const TEXT: usize = 4096;
    pub const NAME: usize = 253;
}

/// Condition types.
pub const CONDITION_READY: &str = "Ready";
/// False when an intent id is unknown or its parameters are wrong.
pub const CONDITION_RESOLVED: &str = "Resolved";

/// A security goal, cluster-wide; bindings apply it to pods.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "SecurityIntent",
    status = "SecurityIntentStatus",
    shortname = "si",
    printcolumn = r#"{"name":"ID","type":"string","jsonPath":".spec.intent.id"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.intent.action"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityIntentSpec {
    pub intent: IntentDetails,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntentDetails {
    /// The catalogue id (docs/intents.md), for example `dnsOnly`.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9]+$"), length(max = 128))]
    pub id: String,
    /// Enforce (block) or Audit (report only; KubeArmor). Nimbus's `Block`
    /// means Enforce.
    pub action: IntentAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::TEXT))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Per-intent parameters, each a list of strings (Nimbus's shape).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IntentAction {
    Enforce,
    Audit,
    /// Nimbus's word for Enforce.
    Block,
}

impl From<IntentAction> for kubefence_core::ruleset::Enforcement {
    fn from(a: IntentAction) -> Self {
        match a {
            IntentAction::Enforce | IntentAction::Block => Self::Enforce,
            IntentAction::Audit => Self::Audit,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityIntentStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The intents to apply, by SecurityIntent name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct IntentRef {
    #[schemars(length(min = 1, max = bounds::NAME))]
    pub name: String,
}

/// Applies intents to the pods of its namespace that `selector` selects.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "SecurityIntentBinding",
    namespaced,
    status = "BindingStatus",
    shortname = "sib",
    printcolumn = r#"{"name":"Intents","type":"integer","jsonPath":".status.boundIntents"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityIntentBindingSpec {
    #[schemars(length(min = 1, max = bounds::INTENTS))]
    pub intents: Vec<IntentRef>,
    /// The pods (matchLabels and matchExpressions, ANDed); never empty.
    #[schemars(schema_with = "non_empty_selector")]
    pub selector: LabelSelector,
}

/// Applies intents in every namespace `namespaceSelector` selects (all but
/// the protected ones when absent).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "ClusterSecurityIntentBinding",
    status = "BindingStatus",
    shortname = "csib",
    printcolumn = r#"{"name":"Intents","type":"integer","jsonPath":".status.boundIntents"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecurityIntentBindingSpec {
    #[schemars(length(min = 1, max = bounds::INTENTS))]
    pub intents: Vec<IntentRef>,
    #[schemars(schema_with = "non_empty_selector")]
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    /// How many intents resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_intents: Option<i32>,
    /// The IntentPolicy (or, cluster-wide, one per namespace) it produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::POLICY_NAMES))]
    pub intent_policies: Vec<String>,
    /// `Resolved` is False with the reason when an intent id is unknown or
    /// its parameters are wrong; the other intents still apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A label selector with a CEL rule refusing the empty selector (which
/// would select every pod of the namespace).
fn non_empty_selector(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <LabelSelector as JsonSchema>::json_schema(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "message": "the selector is empty: it would select every pod; name the pods (matchLabels or matchExpressions)"
        }]),
    );
    schema
}

/// One binding's resolved intents; the adapters write each installed
/// engine's objects from it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "IntentPolicy",
    namespaced,
    status = "IntentPolicyStatus",
    shortname = "kfip",
    printcolumn = r#"{"name":"Policies","type":"integer","jsonPath":".status.policies"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IntentPolicySpec {
    /// `Kind/name` of the binding.
    #[schemars(length(max = bounds::NAME))]
    pub binding: String,
    #[schemars(schema_with = "non_empty_selector")]
    pub selector: LabelSelector,
    #[schemars(length(max = bounds::INTENTS))]
    pub intents: Vec<ResolvedIntent>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedIntent {
    /// The SecurityIntent's name.
    pub name: String,
    pub id: String,
    pub action: IntentAction,
    /// The neutral rule set (kubefence-core `ruleset::RuleSet`), as JSON.
    #[schemars(schema_with = "opaque_object")]
    pub rules: serde_json::Value,
}

fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntentPolicyStatus {
    /// How many engine objects exist (counted from the cluster, not from
    /// what was meant to be written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<i32>,
    /// `Kind/name` of each engine object that exists; a set, so a
    /// duplicate is refused by the API server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "policy_names_schema")]
    pub policy_names: Vec<String>,
    /// One entry per engine (a map keyed by `engine`, so two adapters
    /// applying their own entry with server-side apply do not collide).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "adapter_status_schema")]
    pub adapter_status: Vec<AdapterStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    /// networkpolicy, cilium, clusternetworkpolicy, adminnetworkpolicy,
    /// kubearmor.
    pub engine: String,
    pub state: AdapterState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::TEXT))]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AdapterState {
    /// Its objects are written.
    Applied,
    /// The engine's CRD is not installed (re-checked when CRDs appear).
    EngineNotInstalled,
    /// The engine cannot express these intents (the message says why).
    Unsupported,
}

fn policy_names_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<String> as JsonSchema>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "set".into());
    schema.insert("maxItems".into(), bounds::POLICY_NAMES.into());
    schema
}

fn adapter_status_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<AdapterStatus> as JsonSchema>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["engine"]),
    );
    schema.insert("maxItems".into(), 8.into());
    schema
}

pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        SecurityIntent::crd(),
        SecurityIntentBinding::crd(),
        ClusterSecurityIntentBinding::crd(),
        IntentPolicy::crd(),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn nimbus_objects_read_as_ours() {
        let si: SecurityIntentSpec = serde_json::from_value(serde_json::json!({
            "intent": {"id": "swDeploymentTools", "description": "x", "action": "Block"}
        }))
        .unwrap();
        assert_eq!(si.intent.action, IntentAction::Block);
        assert_eq!(
            kubefence_core::ruleset::Enforcement::from(si.intent.action),
            kubefence_core::ruleset::Enforcement::Enforce
        );
    }

    #[test]
    fn status_lists_are_sets_and_maps_and_selectors_are_never_empty() {
        let crds = crds();
        let yaml = serde_json::to_string(&crds).unwrap();
        assert!(yaml.contains("\"x-kubernetes-list-type\":\"set\""));
        assert!(yaml.contains("\"x-kubernetes-list-map-keys\":[\"engine\"]"));
        assert_eq!(yaml.matches("the selector is empty").count(), 3);
        let scopes: Vec<_> = crds
            .iter()
            .map(|c| (c.spec.names.kind.clone(), c.spec.scope.clone()))
            .collect();
        assert!(scopes.contains(&("SecurityIntent".into(), "Cluster".into())));
        assert!(scopes.contains(&("SecurityIntentBinding".into(), "Namespaced".into())));
        assert!(scopes.contains(&("ClusterSecurityIntentBinding".into(), "Cluster".into())));
        assert!(scopes.contains(&("IntentPolicy".into(), "Namespaced".into())));
    }
}
