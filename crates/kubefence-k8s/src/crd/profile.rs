//! `IsolationProfile` (kubefence.dev/v1alpha1, namespaced): one shared,
//! secure-by-default policy for a pool of untrusted pods.
//!
//! The operator keeps exactly one NetworkPolicy per profile (owned by it)
//! and reports in the status the pods it selects, the custom rules the
//! guardrails narrowed, and the paths other policies of the namespace
//! reopen (condition `Effective`). The conversion to the core profile is
//! [`crate::profile::to_core`].

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quarantine::{RemainingPathStatus, conditions_schema, cut};

/// The schema's bounds on the status (see [`IsolationProfileStatus::bounded`]).
pub mod bounds {
    /// `status.reopenedPaths` items.
    pub const PATHS: usize = 50;
    /// `status.narrowed`, `status.warnings` and `status.uncoveredPods` items.
    pub const NOTES: usize = 50;
    /// Any string of the status.
    pub const FIELD: usize = 1024;
    /// `blockedCIDRs`, `allowedCIDRs` and `dns.resolvers` items (the API
    /// server budgets the cost of the CEL rule checking each).
    pub const CIDRS: usize = 64;
    /// The longest CIDR or address (`ffff:…:ffff/128`).
    pub const CIDR_TEXT: usize = 43;
}

/// Condition: the policy exists as the profile says.
pub const CONDITION_READY: &str = "Ready";
/// Condition: no other policy of the namespace reopens a path the profile
/// closes.
pub const CONDITION_EFFECTIVE: &str = "Effective";
/// Condition: every pod that belongs to the profile's pool by ownership is
/// selected (agent-sandbox templates).
pub const CONDITION_COVERED: &str = "Covered";

/// One secure-by-default policy for a pool of pods: ingress only from the
/// router, egress to the public internet but not to private, link-local
/// (metadata), carrier-grade NAT or loopback ranges, DNS as configured.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubefence.dev",
    version = "v1alpha1",
    kind = "IsolationProfile",
    namespaced,
    status = "IsolationProfileStatus",
    shortname = "kfisp",
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".status.policyName"}"#,
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.matchedPods"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.conditions[?(@.type==\"Effective\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.policy) || (!has(self.ingress) && !has(self.egress) && !has(self.dns))",
    "message": "spec.policy replaces the default rules: leave ingress, egress and dns out"
}]))]
#[serde(rename_all = "camelCase")]
pub struct IsolationProfileSpec {
    /// The pods of the pool, in the profile's namespace. Required and not
    /// empty: an empty selector would isolate every pod of the namespace.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
        "message": "spec.podSelector must not be empty: it would select every pod of the namespace"
    }]))]
    pub pod_selector: LabelSelector,
    /// Who may connect in (default: pods labelled
    /// app.kubernetes.io/component=router in the same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<ProfileIngress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<ProfileEgress>,
    /// Ranges no rule may reach (default: 10.0.0.0/8, 172.16.0.0/12,
    /// 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, 127.0.0.0/8,
    /// fc00::/7, fe80::/10, ::1/128). The cluster's pod and service CIDRs
    /// (operator flags) and the metadata addresses are always blocked.
    #[serde(
        default,
        rename = "blockedCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = bounds::CIDRS), inner(length(max = bounds::CIDR_TEXT)), extend("x-kubernetes-validations" = [{
        "rule": "self.all(c, isCIDR(c))",
        "message": "every entry must be a CIDR (10.0.0.0/8, fc00::/7)"
    }]))]
    pub blocked_cidrs: Option<Vec<String>>,
    /// Exceptions to the blocked ranges (and the metadata address) that an
    /// administrator states.
    #[serde(
        default,
        rename = "allowedCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = bounds::CIDRS), inner(length(max = bounds::CIDR_TEXT)), extend("x-kubernetes-validations" = [{
        "rule": "self.all(c, isCIDR(c))",
        "message": "every entry must be a CIDR"
    }]))]
    pub allowed_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<ProfileDns>,
    /// A custom policy: its ingress and egress rules replace the defaults,
    /// under the profile's selector and both policyTypes; egress rules that
    /// would reach a blocked range are narrowed (reported in the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CustomPolicy>,
    /// Which objects enforce the profile: networkpolicy (default), cilium,
    /// clusternetworkpolicy (network-policy-api v1alpha2, Admin tier) or
    /// adminnetworkpolicy (v1alpha1); all but the first also deny the
    /// blocked ranges where namespace policies cannot override it.
    #[serde(default)]
    pub engine: ProfileEngine,
    /// false removes the profile's policy and writes none.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileIngress {
    /// Peers allowed in; absent for the router default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<net::NetworkPolicyPeer>>,
    /// Ports allowed in; absent for every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<net::NetworkPolicyPort>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileEgress {
    /// Everything outside the blocked ranges, on every port.
    #[serde(default = "default_true")]
    pub public_internet: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.mode == 'public' ? has(self.resolvers) && size(self.resolvers) > 0 : !has(self.resolvers)",
    "message": "dns.resolvers is required with mode public, and only then"
}]))]
pub struct ProfileDns {
    /// cluster (kube-dns, 53 only), public (the listed resolvers, 53 only,
    /// for pods whose dnsPolicy is None) or none.
    #[serde(default)]
    pub mode: DnsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::CIDRS), inner(length(max = bounds::CIDR_TEXT)), extend("x-kubernetes-validations" = [{
        "rule": "self.all(r, isIP(r))",
        "message": "every resolver must be an IP address"
    }]))]
    pub resolvers: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    #[default]
    Cluster,
    Public,
    None,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<net::NetworkPolicyIngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<net::NetworkPolicyEgressRule>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProfileEngine {
    #[default]
    NetworkPolicy,
    Cilium,
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
}

impl ProfileEngine {
    /// The engine whose adapter writes the profile's guardrail denies.
    pub fn adapter(self) -> kubefence_core::ruleset::Engine {
        use kubefence_core::ruleset::Engine;
        match self {
            Self::NetworkPolicy => Engine::NetworkPolicy,
            Self::Cilium => Engine::Cilium,
            Self::ClusterNetworkPolicy => Engine::ClusterNetworkPolicy,
            Self::AdminNetworkPolicy => Engine::AdminNetworkPolicy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "networkpolicy",
            Self::Cilium => "cilium",
            Self::ClusterNetworkPolicy => "clusternetworkpolicy",
            Self::AdminNetworkPolicy => "adminnetworkpolicy",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IsolationProfileStatus {
    /// Pods the selector matches (refreshed at each resync, not at each
    /// pod event: pods never cause writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_pods: Option<i64>,
    /// The NetworkPolicy kubefence keeps for the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::FIELD))]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Effective` (and `Covered` for templates), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Paths another policy of the namespace reopens (at most 50;
    /// `reopenedPathsOmitted` counts the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATHS))]
    pub reopened_paths: Vec<RemainingPathStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub reopened_paths_omitted: Option<i64>,
    /// Custom rules the guardrails narrowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::NOTES), inner(length(max = bounds::FIELD)))]
    pub narrowed: Vec<String>,
    /// Pods under `dns: public` whose dnsPolicy still uses the cluster
    /// DNS; pods also baselined by kubefence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::NOTES), inner(length(max = bounds::FIELD)))]
    pub warnings: Vec<String>,
    /// Pods that belong to the pool by ownership but that the selector
    /// misses (`namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::NOTES), inner(length(max = bounds::FIELD)))]
    pub uncovered_pods: Vec<String>,
}

impl IsolationProfileStatus {
    /// The status cut to the schema's [`bounds`].
    pub fn bounded(mut self) -> Self {
        if self.reopened_paths.len() > bounds::PATHS {
            let omitted = self.reopened_paths.len() - bounds::PATHS;
            self.reopened_paths.truncate(bounds::PATHS);
            self.reopened_paths_omitted = Some(i64::try_from(omitted).unwrap_or(i64::MAX));
        } else {
            self.reopened_paths_omitted = None;
        }
        for path in &mut self.reopened_paths {
            for field in [
                &mut path.direction,
                &mut path.policy,
                &mut path.rule,
                &mut path.peer,
                &mut path.ports,
            ] {
                cut(field, super::quarantine::bounds::FIELD);
            }
            path.endpoints
                .truncate(super::quarantine::bounds::ENDPOINTS);
            for endpoint in &mut path.endpoints {
                cut(endpoint, super::quarantine::bounds::FIELD);
            }
        }
        for list in [
            &mut self.narrowed,
            &mut self.warnings,
            &mut self.uncovered_pods,
        ] {
            list.truncate(bounds::NOTES);
            for text in list.iter_mut() {
                cut(text, bounds::FIELD);
            }
        }
        if let Some(name) = &mut self.policy_name {
            cut(name, bounds::FIELD);
        }
        for c in &mut self.conditions {
            cut(&mut c.message, super::quarantine::bounds::MESSAGE);
            cut(&mut c.reason, super::quarantine::bounds::REASON);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use kube::CustomResourceExt;

    use super::*;

    fn spec_schema() -> serde_json::Value {
        let crd = IsolationProfile::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        schema["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn defaults_are_the_secure_ones() {
        let spec: IsolationProfileSpec = serde_json::from_value(serde_json::json!({
            "podSelector": {"matchLabels": {"template": "python"}}
        }))
        .unwrap();
        assert_eq!(spec.engine, ProfileEngine::NetworkPolicy);
        assert!(spec.enabled);
        assert!(spec.blocked_cidrs.is_none());
        let crd = IsolationProfile::crd();
        assert_eq!(crd.spec.group, "kubefence.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        let spec = spec_schema();
        assert_eq!(
            spec["properties"]["engine"]["enum"],
            serde_json::json!([
                "networkpolicy",
                "cilium",
                "clusternetworkpolicy",
                "adminnetworkpolicy"
            ])
        );
        assert_eq!(
            spec["properties"]["egress"]["properties"]["publicInternet"]["default"],
            true
        );
        assert!(
            spec["required"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("podSelector"))
        );
    }

    #[test]
    fn cel_refuses_an_empty_selector_and_policy_with_defaults() {
        let spec = spec_schema();
        let rule = spec["properties"]["podSelector"]["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        assert!(rule.contains("size(self.matchLabels) > 0"), "{rule}");
        assert!(rule.contains("size(self.matchExpressions) > 0"), "{rule}");
        let rule = spec["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        assert!(rule.contains("has(self.policy)"), "{rule}");
        let cidrs = &spec["properties"]["blockedCIDRs"]["x-kubernetes-validations"][0]["rule"];
        assert_eq!(cidrs, "self.all(c, isCIDR(c))");
    }
}
