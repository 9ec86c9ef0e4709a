//! meta/v1 LabelSelector → core LabelSelector, validated.

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};

use super::ConvertError;

/// Converts a selector; `field` is its path, for errors. `matchLabels: null`
/// and an absent selector are both the empty selector.
pub fn label_selector(
    selector: &meta::LabelSelector,
    field: &str,
) -> Result<LabelSelector, ConvertError> {
    let match_labels: Labels = selector.match_labels.clone().unwrap_or_default();
    if match_labels.keys().any(String::is_empty) {
        return Err(ConvertError::new(
            format!("{field}.matchLabels"),
            "empty label key",
        ));
    }
    let mut requirements = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let operator: Operator =
            expr.operator
                .parse()
                .map_err(|e: kubefence_core::selector::SelectorError| {
                    ConvertError::new(format!("{at}.operator"), e.to_string())
                })?;
        let requirement = Requirement::new(
            expr.key.clone(),
            operator,
            expr.values.clone().unwrap_or_default(),
        )
        .map_err(|e| ConvertError::new(at, e.to_string()))?;
        requirements.push(requirement);
    }
    Ok(LabelSelector::new(match_labels, requirements))
}
