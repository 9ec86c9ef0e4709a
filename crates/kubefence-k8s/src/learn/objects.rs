//! The learned-policy objects as Kubernetes stores them: Kubescape's
//! `NetworkNeighborhood`, legacy `NetworkNeighbors`, `KnownServer` and
//! `GeneratedNetworkPolicy` (`spdx.softwarecomposition.kubescape.io/v1beta1`),
//! field for field as Kubescape's storage API writes them.
//!
//! kubefence's own kinds (`kubefence.dev/v1alpha1`, in
//! [`crate::crd::learned`]) have the same shapes: the spec types here are
//! shared, only the root objects differ (their group, and kubefence's are
//! CustomResourceDefinitions with a status subresource).
//!
//! Everything is read strictly (see [`crate::convert`]'s strict reader): an
//! unknown field is an error with its path. Fields Kubescape writes as
//! `null` or `""` are `Option`s, so reading and writing keep what was there.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kubescape's storage group and version.
pub const KUBESCAPE_GROUP: &str = "spdx.softwarecomposition.kubescape.io";
pub const KUBESCAPE_VERSION: &str = "v1beta1";
/// `spdx.softwarecomposition.kubescape.io/v1beta1`.
pub const KUBESCAPE_API_VERSION: &str = "spdx.softwarecomposition.kubescape.io/v1beta1";
/// kubefence's group for the same kinds.
pub const KUBEFENCE_API_VERSION: &str = "kubefence.dev/v1alpha1";

/// Labels and annotations Kubescape puts on a neighborhood.
pub const WORKLOAD_KIND_LABEL: &str = "kubescape.io/workload-kind";
pub const WORKLOAD_NAME_LABEL: &str = "kubescape.io/workload-name";
pub const WORKLOAD_NAMESPACE_LABEL: &str = "kubescape.io/workload-namespace";
pub const STATUS_ANNOTATION: &str = "kubescape.io/status";
pub const MANAGED_BY_ANNOTATION: &str = "kubescape.io/managed-by";

/// Which API group an object was read from or is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `spdx.softwarecomposition.kubescape.io/v1beta1`.
    Kubescape,
    /// `kubefence.dev/v1alpha1`.
    Kubefence,
}

impl Group {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Kubescape => KUBESCAPE_API_VERSION,
            Self::Kubefence => KUBEFENCE_API_VERSION,
        }
    }

    /// The group of an `apiVersion`, for the learned kinds. Kubescape's
    /// generator writes the bare group without a version on the
    /// GeneratedNetworkPolicies it returns, and its example files leave
    /// apiVersion out: both are Kubescape's.
    pub fn of_api_version(api_version: &str) -> Option<Self> {
        match api_version {
            KUBESCAPE_API_VERSION | KUBESCAPE_GROUP | "" => Some(Self::Kubescape),
            KUBEFENCE_API_VERSION => Some(Self::Kubefence),
            _ => None,
        }
    }
}

/// The status every learned kind may carry. Kubescape writes `status: {}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// `NetworkNeighborhood.spec`: the workload's selector inline, then the
/// neighbours observed per container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkNeighborhoodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<NeighborhoodContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<NeighborhoodContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<Vec<NeighborhoodContainer>>,
}

impl NetworkNeighborhoodSpec {
    /// The inline selector as a meta/v1 LabelSelector.
    pub fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.match_labels.clone(),
            match_expressions: self.match_expressions.clone(),
        }
    }
}

/// One container's neighbours.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NeighborhoodContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<NetworkNeighbor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<NetworkNeighbor>>,
}

/// `NetworkNeighbors.spec` (Kubescape's earlier kind, one list for the
/// whole workload).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkNeighborsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<NetworkNeighbor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<NetworkNeighbor>>,
}

/// One observed peer: pods (by selectors) or an address, and the ports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkNeighbor {
    /// Kubescape's merge key: a hash of the neighbour.
    #[serde(default)]
    pub identifier: String,
    /// `internal` (a pod) or `external` (an address).
    #[serde(rename = "type", default)]
    pub type_: String,
    /// The DNS name that answered with `ipAddress` (deprecated by Kubescape
    /// for `dnsNames`, still written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
}

/// `{name: "TCP-80", protocol: TCP, port: 80}`; `name` is Kubescape's
/// merge key, `PROTOCOL-port`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPort {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// One KnownServer entry: a named CIDR.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KnownServerEntry {
    pub ip_block: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub name: String,
}

/// Why a peer of a GeneratedNetworkPolicy is what it is.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct PolicyRefEntry {
    #[serde(rename = "ipBlock")]
    pub ip_block: String,
    #[serde(rename = "originalIP", default)]
    pub original_ip: String,
    #[serde(default)]
    pub dns: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub server: String,
}

/// The NetworkPolicy embedded in a GeneratedNetworkPolicy's `spec`, whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedNetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "embedded_metadata_schema")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: net::NetworkPolicySpec,
}

/// The embedded policy's metadata as a CRD may describe it (the fields a
/// generated policy has; the API server validates a full ObjectMeta only
/// at an object's root).
fn embedded_metadata_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    })
}

/// Defines a root object (apiVersion, kind, metadata, spec, extra top-level
/// fields, status) and its `kube::Resource` impl.
macro_rules! learned_root {
    (
        $(#[$doc:meta])*
        $name:ident {
            spec: $spec:ty
            $(, $(#[$fdoc:meta])* $field:ident: $fty:ty = $json:literal)*
        }
        api: $group:expr, $version:expr, $kind:literal, $plural:literal, $scope:ty
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        pub struct $name {
            #[serde(rename = "apiVersion", default)]
            #[schemars(skip)]
            pub api_version: String,
            #[serde(default)]
            #[schemars(skip)]
            pub kind: String,
            #[serde(default)]
            #[schemars(skip)]
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            $(
                $(#[$fdoc])*
                #[serde(rename = $json, default, skip_serializing_if = "Vec::is_empty")]
                pub $field: $fty,
            )*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<$crate::learn::objects::LearnedStatus>,
        }

        impl $name {
            pub const KIND: &'static str = $kind;

            /// A new object with apiVersion and kind set.
            pub fn new(
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                spec: $spec,
            ) -> Self {
                Self {
                    // Written out, not asked of `kube::Resource`: that impl
                    // exists only with the `crd` feature, and the loader
                    // (the fuzz targets build it without) reads these kinds.
                    api_version: format!("{}/{}", $group, $version),
                    kind: $kind.to_string(),
                    metadata,
                    spec,
                    ..Self::default()
                }
            }
        }

        #[cfg(feature = "crd")]
        impl kube::Resource for $name {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
// For kubefence's own kinds of the same shape (`crd::learned`).
#[cfg(feature = "crd")]
pub(crate) use learned_root;

learned_root! {
    /// Kubescape's per-workload record of observed neighbours.
    NetworkNeighborhood { spec: NetworkNeighborhoodSpec }
    api: KUBESCAPE_GROUP, KUBESCAPE_VERSION, "NetworkNeighborhood", "networkneighborhoods",
        k8s_openapi::NamespaceResourceScope
}

learned_root! {
    /// Kubescape's earlier kind: neighbours per workload, not per container.
    NetworkNeighbors { spec: NetworkNeighborsSpec }
    api: KUBESCAPE_GROUP, KUBESCAPE_VERSION, "NetworkNeighbors", "networkneighborses",
        k8s_openapi::NamespaceResourceScope
}

learned_root! {
    /// Named CIDRs (cluster-scoped): an observed external address inside one
    /// is written as the whole CIDR.
    KnownServer { spec: Vec<KnownServerEntry> }
    api: KUBESCAPE_GROUP, KUBESCAPE_VERSION, "KnownServer", "knownservers",
        k8s_openapi::ClusterResourceScope
}

learned_root! {
    /// A NetworkPolicy generated from a neighborhood, for review, and why
    /// each address peer is what it is.
    GeneratedNetworkPolicy {
        spec: EmbeddedNetworkPolicy,
        /// One entry per address peer: the observed IP, the CIDR written,
        /// the DNS name and KnownServer that explain it.
        policy_ref: Vec<PolicyRefEntry> = "policyRef"
    }
    api: KUBESCAPE_GROUP, KUBESCAPE_VERSION, "GeneratedNetworkPolicy", "generatednetworkpolicies",
        k8s_openapi::NamespaceResourceScope
}

#[cfg(all(test, feature = "crd"))]
mod tests {
    use super::*;

    /// `new` writes the apiVersion out (so the loader builds without kube);
    /// kube's own rule for it must agree.
    #[test]
    fn written_api_version_is_kubes() {
        let neighbourhood = NetworkNeighborhood::new(Default::default(), Default::default());
        assert_eq!(
            neighbourhood.api_version,
            <NetworkNeighborhood as kube::Resource>::api_version(&())
        );
        let server = KnownServer::new(Default::default(), Default::default());
        assert_eq!(
            server.api_version,
            <KnownServer as kube::Resource>::api_version(&())
        );
        assert_eq!(server.api_version, KUBESCAPE_API_VERSION);
    }
}
