//! Namespaces that objects use but the input does not give.
//!
//! `kubectl get pods,deploy,svc,netpol -A -o yaml` has no Namespace
//! objects: each namespace is then known by its name label only
//! (`kubernetes.io/metadata.name`, which the API server sets), so a
//! namespaceSelector on any other label cannot be evaluated faithfully. The
//! user is told once, with every selector that is affected.

use std::collections::BTreeSet;

use kubefence_core::model::NAMESPACE_NAME_LABEL;
use kubefence_core::policy::Peer;
use kubefence_core::selector::LabelSelector;
use kubefence_core::{Cluster, Direction};

use super::{Diagnostic, Location};

/// The namespaces objects are in that no Namespace object declares; call
/// before the implicit namespaces are added.
pub(crate) fn undeclared(cluster: &Cluster) -> BTreeSet<String> {
    cluster
        .used_namespaces()
        .filter(|ns| !cluster.namespaces.contains_key(*ns))
        .map(str::to_string)
        .collect()
}

/// Whether a namespace's other labels may change what `selector` selects.
fn depends_on_unknown_labels(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .keys()
        .any(|k| k != NAMESPACE_NAME_LABEL)
        || selector
            .match_expressions
            .iter()
            .any(|r| r.key != NAMESPACE_NAME_LABEL)
}

/// Every namespaceSelector that reads labels other than the name label, as
/// `namespace/policy spec.ingress[0].from[1].namespaceSelector`.
fn label_dependent_selectors(cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for policy in &cluster.policies {
        for (direction, field, peers_field) in [
            (Direction::Ingress, "ingress", "from"),
            (Direction::Egress, "egress", "to"),
        ] {
            for (r, rule) in policy.rules(direction).iter().enumerate() {
                for (p, peer) in rule.peers.iter().enumerate() {
                    if let Peer::Pods {
                        namespace_selector: Some(selector),
                        ..
                    } = peer
                        && depends_on_unknown_labels(selector)
                    {
                        out.push(format!(
                            "{}/{} spec.{field}[{r}].{peers_field}[{p}].namespaceSelector",
                            policy.namespace, policy.name
                        ));
                    }
                }
            }
        }
    }
    out
}

/// One warning naming the namespaces used but not given, and the selectors
/// that cannot be evaluated faithfully without their labels.
pub(crate) fn warning(cluster: &Cluster, undeclared: &BTreeSet<String>) -> Option<Diagnostic> {
    if undeclared.is_empty() {
        return None;
    }
    let names: Vec<&str> = undeclared.iter().map(String::as_str).collect();
    let mut message = format!(
        "namespaces used but not given as Namespace objects: {}; only their {NAMESPACE_NAME_LABEL} \
         label is known",
        names.join(", ")
    );
    let selectors = label_dependent_selectors(cluster);
    if !selectors.is_empty() {
        message.push_str(&format!(
            ", so these namespaceSelectors may not match them as they do in the cluster: {}",
            selectors.join(", ")
        ));
    }
    message.push_str(
        " (include the Namespaces, e.g. `kubectl get namespaces,pods,deploy,sts,ds,svc,ing,cm,netpol -A -o yaml`)",
    );
    Some(Diagnostic {
        location: Location {
            file: "input".to_string(),
            ..Location::default()
        },
        message,
    })
}
