//! GeneratedNetworkPolicy ⇄ a core NetworkPolicy and its policyRefs.
//!
//! The embedded policy is read exactly as a NetworkPolicy manifest is (the
//! same validation, errors under `spec.`), so a GeneratedNetworkPolicy can
//! be analysed, compared and verified by the engine like any policy.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubefence_core::learn::{PolicyRef, WorkloadRef};
use kubefence_core::naming::{self, Source};
use kubefence_core::policy::NetworkPolicy;

use super::objects::{
    self as ks, EmbeddedNetworkPolicy, PolicyRefEntry, WORKLOAD_KIND_LABEL, WORKLOAD_NAME_LABEL,
    WORKLOAD_NAMESPACE_LABEL,
};
use crate::convert::{ConvertError, policy_all_errors};
use crate::render;

/// A GeneratedNetworkPolicy's embedded policy and its policyRefs, in core
/// terms. The policy's namespace is its own, else the object's, else
/// `default_namespace`.
pub fn generated_policy(
    object: &ks::GeneratedNetworkPolicy,
    default_namespace: &str,
) -> Result<(NetworkPolicy, Vec<PolicyRef>), Vec<ConvertError>> {
    let namespace = object
        .spec
        .metadata
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_else(|| default_namespace.to_string());
    let embedded = net::NetworkPolicy {
        metadata: object.spec.metadata.clone(),
        spec: Some(object.spec.spec.clone()),
    };
    let mut errors = Vec::new();
    let policy = match policy_all_errors(&embedded, &namespace) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.extend(e.into_iter().map(|e| ConvertError {
                field: if e.field.is_empty() {
                    "spec".to_string()
                } else {
                    format!("spec.{}", e.field)
                },
                message: e.message,
            }));
            None
        }
    };
    let mut refs = Vec::new();
    for (i, entry) in object.policy_ref.iter().enumerate() {
        match policy_ref(entry, &format!("policyRef[{i}]")) {
            Ok(r) => refs.push(r),
            Err(e) => errors.push(e),
        }
    }
    match policy {
        Some(policy) if errors.is_empty() => Ok((policy, refs)),
        _ => Err(errors),
    }
}

fn policy_ref(entry: &PolicyRefEntry, at: &str) -> Result<PolicyRef, ConvertError> {
    let ip_block = entry.ip_block.parse().map_err(|_| {
        ConvertError::new(
            format!("{at}.ipBlock"),
            format!("{:?} is not a CIDR", entry.ip_block),
        )
    })?;
    let original_ip = entry.original_ip.parse().map_err(|_| {
        ConvertError::new(
            format!("{at}.originalIP"),
            format!("{:?} is not an IP address", entry.original_ip),
        )
    })?;
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(PolicyRef {
        ip_block,
        original_ip,
        dns: text(&entry.dns),
        name: text(&entry.name),
        server: text(&entry.server),
    })
}

/// A policyRef as Kubescape writes it (empty strings for what is unknown).
pub fn policy_ref_entry(r: &PolicyRef) -> PolicyRefEntry {
    PolicyRefEntry {
        ip_block: r.ip_block.to_string(),
        original_ip: r.original_ip.to_string(),
        dns: r.dns.clone().unwrap_or_default(),
        name: r.name.clone().unwrap_or_default(),
        server: r.server.clone().unwrap_or_default(),
    }
}

/// A learned policy as a Kubescape-shaped GeneratedNetworkPolicy: named
/// `object_name` (Kubescape uses the neighborhood's name) in the policy's
/// namespace, with Kubescape's workload labels and kubefence's ownership
/// labels on both the object and the embedded policy; `annotations` go on
/// the embedded policy (the evidence of each rule).
pub fn generated_object(
    object_name: &str,
    workload: &WorkloadRef,
    policy: &NetworkPolicy,
    refs: &[PolicyRef],
    annotations: BTreeMap<String, String>,
) -> ks::GeneratedNetworkPolicy {
    let mut labels = BTreeMap::from([
        (WORKLOAD_KIND_LABEL.to_string(), workload.kind.clone()),
        (WORKLOAD_NAME_LABEL.to_string(), workload.name.clone()),
        (
            WORKLOAD_NAMESPACE_LABEL.to_string(),
            workload.namespace.clone(),
        ),
    ]);
    for (key, value) in naming::ownership_labels(Source::Learned) {
        labels.insert(key.to_string(), value);
    }
    let mut rendered = render::network_policy(policy);
    rendered.metadata.labels = Some(labels.clone());
    rendered.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let spec = EmbeddedNetworkPolicy {
        api_version: Some("networking.k8s.io/v1".to_string()),
        kind: Some("NetworkPolicy".to_string()),
        metadata: rendered.metadata,
        spec: rendered.spec.unwrap_or_default(),
    };
    let mut refs: Vec<PolicyRefEntry> = refs.iter().map(policy_ref_entry).collect();
    refs.sort();
    refs.dedup();
    let mut out = ks::GeneratedNetworkPolicy::new(
        ObjectMeta {
            name: Some(object_name.to_string()),
            namespace: Some(policy.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec,
    );
    out.policy_ref = refs;
    out
}
