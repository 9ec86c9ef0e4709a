//! kubefence's CustomResourceDefinitions, generated from Rust types.
//!
//! Each kind lives in its own module (`crd/<kind>.rs`) as a
//! `#[derive(CustomResource, JsonSchema)]` spec with a status subresource
//! and printer columns. [`all_crds`] is the single registry: `kubefence crds`
//! prints it, `deploy/base/crds.yaml` is its committed output (a test checks
//! for drift), and the tests below hold every registered kind to the
//! conventions. To add a kind, add its module and one line to [`all_crds`].

pub mod intent;
pub mod learned;
pub mod profile;
pub mod quarantine;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kubefence kind.
pub const GROUP: &str = "kubefence.dev";

/// Every kubefence CustomResourceDefinition, sorted by name.
///
/// Register a kind here as `<Kind as kube::CustomResourceExt>::crd()`.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds: Vec<CustomResourceDefinition> = vec![
        quarantine::Quarantine::crd(),
        profile::IsolationProfile::crd(),
    ];
    crds.extend(learned::crds());
    crds.extend(intent::crds());
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

/// The CRDs as a multi-document YAML stream (empty when none is registered).
pub fn crds_yaml(
    crds: &[CustomResourceDefinition],
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API server accepts a CRD's names only when no other CRD of the
    /// group uses them; a clash leaves the later CRD never Established (seen
    /// when IsolationProfile and IntentPolicy both took `kfip`).
    #[test]
    fn no_two_crds_share_a_name_or_short_name() {
        let mut seen = std::collections::BTreeMap::new();
        for crd in all_crds() {
            let owner = crd.metadata.name.clone().unwrap_or_default();
            let n = &crd.spec.names;
            let names = [
                Some(n.plural.clone()),
                n.singular.clone(),
                Some(n.kind.to_lowercase()),
            ]
            .into_iter()
            .flatten()
            .chain(n.short_names.clone().unwrap_or_default());
            // A CRD's own plural, singular and kind may coincide; only a
            // name claimed by two CRDs clashes.
            for name in names.collect::<std::collections::BTreeSet<_>>() {
                if let Some(other) = seen.insert(name.clone(), owner.clone()) {
                    assert_eq!(other, owner, "`{name}` is used by {other} and {owner}");
                }
            }
        }
    }

    /// Conventions every registered kind must follow (vacuous until a kind
    /// is registered; each new kind is checked here without a new test).
    #[test]
    fn every_crd_follows_the_conventions() {
        for crd in all_crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            assert_eq!(crd.spec.group, GROUP, "{name}");
            assert!(!crd.spec.versions.is_empty(), "{name}");
            for v in &crd.spec.versions {
                let schema = v
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref());
                let schema = schema.unwrap_or_else(|| panic!("{name} {}: no schema", v.name));
                // Structural: typed at the root, no unknown fields kept.
                assert_eq!(schema.type_.as_deref(), Some("object"), "{name}");
                assert_ne!(
                    schema.x_kubernetes_preserve_unknown_fields,
                    Some(true),
                    "{name}"
                );
                assert!(
                    v.subresources
                        .as_ref()
                        .and_then(|s| s.status.as_ref())
                        .is_some(),
                    "{name} {}: status subresource",
                    v.name
                );
                assert!(
                    v.additional_printer_columns
                        .as_ref()
                        .is_some_and(|c| !c.is_empty()),
                    "{name} {}: printer columns",
                    v.name
                );
            }
        }
    }

    #[test]
    fn yaml_is_one_document_per_crd() {
        let crds = all_crds();
        let yaml = crds_yaml(&crds).unwrap();
        assert_eq!(yaml.matches("---\n").count(), crds.len());
    }
}
