//! meta/v1 LabelSelector → core LabelSelector, validated as the API server
//! validates it (label keys and values, operators and their values).

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use kubefence_core::validation;

use super::{ConvertError, Problems};

/// Converts a selector; `field` is its path, for errors, and every bad key,
/// value or operator is an error of its own. `matchLabels: null` and an
/// absent selector are both the empty selector.
/// The path is formatted only when there is an error to name (the operator
/// converts every policy it reads).
pub fn label_selector(
    selector: &meta::LabelSelector,
    field: &(impl std::fmt::Display + ?Sized),
) -> Result<LabelSelector, Vec<ConvertError>> {
    let mut problems = Problems::default();
    let match_labels: Labels = selector.match_labels.clone().unwrap_or_default();
    let findings = validation::labels(&match_labels);
    if !findings.is_empty() {
        problems.invalid(&format!("{field}.matchLabels"), findings);
    }
    let mut requirements = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.clone().unwrap_or_default();
        let findings = validation::requirement(i, &expr.key, &expr.operator, &values);
        if !findings.is_empty() {
            problems.invalid(&field.to_string(), findings);
            continue;
        }
        let requirement = expr
            .operator
            .parse::<Operator>()
            .and_then(|operator| Requirement::new(expr.key.clone(), operator, values))
            .map_err(|e| {
                ConvertError::new(format!("{field}.matchExpressions[{i}]"), e.to_string())
            });
        if let Some(r) = problems.take(requirement) {
            requirements.push(r);
        }
    }
    problems.finish(Some(LabelSelector::new(match_labels, requirements)))
}
