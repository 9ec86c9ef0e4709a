//! networking.k8s.io/v1 NetworkPolicy: the core's lowering
//! ([`to_network_policy`]), which says why when NetworkPolicy cannot
//! express a rule set (no deny, no DNS names, an allow also isolates).

use kubefence_core::ruleset::{NetworkPolicyOptions, RuleSet, Unsupported, to_network_policy};
use serde_json::Value;

use super::Rendered;
use crate::render;

pub fn render(rules: &RuleSet, opts: &NetworkPolicyOptions) -> Result<Rendered, Unsupported> {
    let policy = to_network_policy(rules, opts)?;
    let mut np = render::network_policy(&policy);
    np.metadata.labels = Some(rules.labels.clone());
    np.metadata.annotations = Some(rules.annotations.clone());
    // k8s-openapi writes apiVersion and kind itself.
    Ok(Rendered {
        object: serde_json::to_value(&np).unwrap_or(Value::Null),
        warnings: Vec::new(),
    })
}
