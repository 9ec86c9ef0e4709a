//! kubefence's learned-policy kinds (`kubefence.dev/v1alpha1`):
//! `NetworkNeighborhood`, `KnownServer` and `GeneratedNetworkPolicy`, with
//! exactly Kubescape's shapes (the spec types are shared, see
//! [`crate::learn::objects`]), so `kubectl get networkneighborhoods` works
//! whether or not Kubescape is installed and an object moves between the
//! two groups without loss ([`OtherGroup`]).
//!
//! The root objects are written by hand rather than derived: a
//! GeneratedNetworkPolicy has `policyRef` beside `spec`, and a KnownServer's
//! `spec` is a list, neither of which `#[derive(CustomResource)]` produces.
//! Their CRDs are built with the same schema settings kube's derive uses.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use schemars::JsonSchema;

use super::GROUP;
use crate::learn::objects::{
    self as ks, EmbeddedNetworkPolicy, KnownServerEntry, NetworkNeighborhoodSpec, PolicyRefEntry,
    learned_root,
};

/// The annotation that approves a GeneratedNetworkPolicy for enforcement.
pub const APPROVED_ANNOTATION: &str = "kubefence.dev/approved";

learned_root! {
    /// Everything one workload was seen talking to, per container (the shape
    /// of Kubescape's NetworkNeighborhood).
    NetworkNeighborhood { spec: NetworkNeighborhoodSpec }
    api: GROUP, "v1alpha1", "NetworkNeighborhood", "networkneighborhoods",
        k8s_openapi::NamespaceResourceScope
}

learned_root! {
    /// Named CIDRs (cluster-scoped) that observed external addresses are
    /// widened to (the shape of Kubescape's KnownServer).
    KnownServer { spec: Vec<KnownServerEntry> }
    api: GROUP, "v1alpha1", "KnownServer", "knownservers",
        k8s_openapi::ClusterResourceScope
}

learned_root! {
    /// A learned NetworkPolicy for review (the shape of Kubescape's
    /// GeneratedNetworkPolicy); enforced only once approved.
    GeneratedNetworkPolicy {
        spec: EmbeddedNetworkPolicy,
        /// One entry per address peer: why its CIDR is what it is.
        policy_ref: Vec<PolicyRefEntry> = "policyRef"
    }
    api: GROUP, "v1alpha1", "GeneratedNetworkPolicy", "generatednetworkpolicies",
        k8s_openapi::NamespaceResourceScope
}

/// A CRD for a hand-written root type `T`, with kube's schema settings.
fn crd_of<T: JsonSchema + kube::Resource<DynamicType = ()>>(
    short_names: &[&str],
    namespaced: bool,
    columns: Vec<apiext::CustomResourceColumnDefinition>,
) -> apiext::CustomResourceDefinition {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(StructuralSchemaRewriter)
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .into_generator();
    let schema: Option<apiext::JSONSchemaProps> =
        serde_json::to_value(generator.into_root_schema_for::<T>())
            .and_then(serde_json::from_value)
            .ok();
    let plural = T::plural(&()).into_owned();
    let kind = T::kind(&()).into_owned();
    apiext::CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.{GROUP}")),
            ..ObjectMeta::default()
        },
        spec: apiext::CustomResourceDefinitionSpec {
            group: GROUP.to_string(),
            names: apiext::CustomResourceDefinitionNames {
                kind: kind.clone(),
                plural,
                singular: Some(kind.to_ascii_lowercase()),
                short_names: Some(short_names.iter().map(|s| s.to_string()).collect()),
                ..apiext::CustomResourceDefinitionNames::default()
            },
            scope: if namespaced { "Namespaced" } else { "Cluster" }.to_string(),
            versions: vec![apiext::CustomResourceDefinitionVersion {
                name: T::version(&()).into_owned(),
                served: true,
                storage: true,
                schema: Some(apiext::CustomResourceValidation {
                    open_api_v3_schema: schema,
                }),
                subresources: Some(apiext::CustomResourceSubresources {
                    status: Some(apiext::CustomResourceSubresourceStatus(serde_json::json!(
                        {}
                    ))),
                    scale: None,
                }),
                additional_printer_columns: Some(columns),
                ..apiext::CustomResourceDefinitionVersion::default()
            }],
            ..apiext::CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

fn column(name: &str, type_: &str, json_path: &str) -> apiext::CustomResourceColumnDefinition {
    apiext::CustomResourceColumnDefinition {
        name: name.to_string(),
        type_: type_.to_string(),
        json_path: json_path.to_string(),
        ..apiext::CustomResourceColumnDefinition::default()
    }
}

fn age() -> apiext::CustomResourceColumnDefinition {
    column("Age", "date", ".metadata.creationTimestamp")
}

/// The CRDs of the three learned kinds.
pub fn crds() -> Vec<apiext::CustomResourceDefinition> {
    let workload = || {
        column(
            "Workload",
            "string",
            ".metadata.labels.kubescape\\.io/workload-name",
        )
    };
    vec![
        crd_of::<NetworkNeighborhood>(
            &["kfnn"],
            true,
            vec![
                column(
                    "Kind",
                    "string",
                    ".metadata.labels.kubescape\\.io/workload-kind",
                ),
                workload(),
                column(
                    "Status",
                    "string",
                    ".metadata.annotations.kubescape\\.io/status",
                ),
                age(),
            ],
        ),
        crd_of::<KnownServer>(
            &["kfks"],
            false,
            vec![column("CIDRs", "string", ".spec[*].ipBlock"), age()],
        ),
        crd_of::<GeneratedNetworkPolicy>(
            &["kfgnp"],
            true,
            vec![
                workload(),
                column(
                    "Approved",
                    "string",
                    ".metadata.annotations.kubefence\\.dev/approved",
                ),
                age(),
            ],
        ),
    ]
}

/// Metadata carried to the other group: what a user wrote (name,
/// namespace, labels, annotations), not what a server assigned (uid,
/// resourceVersion, managedFields, …), so the result can be applied.
fn portable(metadata: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        ..ObjectMeta::default()
    }
}

/// The same object in the other group: Kubescape's in kubefence's and
/// back, for the three kinds; the spec is carried unchanged.
pub trait OtherGroup {
    type Other;
    fn to_other_group(&self) -> Self::Other;
}

impl OtherGroup for ks::NetworkNeighborhood {
    type Other = NetworkNeighborhood;
    fn to_other_group(&self) -> NetworkNeighborhood {
        NetworkNeighborhood::new(portable(&self.metadata), self.spec.clone())
    }
}

impl OtherGroup for NetworkNeighborhood {
    type Other = ks::NetworkNeighborhood;
    fn to_other_group(&self) -> ks::NetworkNeighborhood {
        ks::NetworkNeighborhood::new(portable(&self.metadata), self.spec.clone())
    }
}

impl OtherGroup for ks::KnownServer {
    type Other = KnownServer;
    fn to_other_group(&self) -> KnownServer {
        KnownServer::new(portable(&self.metadata), self.spec.clone())
    }
}

impl OtherGroup for KnownServer {
    type Other = ks::KnownServer;
    fn to_other_group(&self) -> ks::KnownServer {
        ks::KnownServer::new(portable(&self.metadata), self.spec.clone())
    }
}

impl OtherGroup for ks::GeneratedNetworkPolicy {
    type Other = GeneratedNetworkPolicy;
    fn to_other_group(&self) -> GeneratedNetworkPolicy {
        let mut out = GeneratedNetworkPolicy::new(portable(&self.metadata), self.spec.clone());
        out.policy_ref = self.policy_ref.clone();
        out
    }
}

impl OtherGroup for GeneratedNetworkPolicy {
    type Other = ks::GeneratedNetworkPolicy;
    fn to_other_group(&self) -> ks::GeneratedNetworkPolicy {
        let mut out = ks::GeneratedNetworkPolicy::new(portable(&self.metadata), self.spec.clone());
        out.policy_ref = self.policy_ref.clone();
        out
    }
}
