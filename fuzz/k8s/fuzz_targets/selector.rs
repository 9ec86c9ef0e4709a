//! Label selectors: a meta/v1 `LabelSelector` as JSON, converted by
//! `kubefence_k8s::convert::label_selector` and evaluated by
//! `kubefence_core::LabelSelector::matches` against label sets.
//!
//! Input: `{"selector": <LabelSelector>, "labels": [{"k": "v"}, ...]}`.
//!
//! kubefence has no textual selector syntax to parse (`app=web,tier in (a)`
//! is only printed), so the parser under test is the JSON conversion. The
//! target checks:
//! - a selector with an unknown operator, an empty key, `In`/`NotIn`
//!   without values or `Exists`/`DoesNotExist` with values is an error,
//!   never a selector that silently matches;
//! - matching agrees with an independent evaluation written here from the
//!   Kubernetes documentation, on every label set;
//! - a converted selector rendered back to meta/v1 and converted again is
//!   the same selector (so what `generate` writes means what was read), and
//!   survives a serde round trip.
#![no_main]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::LabelSelector;
use kubefence_k8s::convert::label_selector;
use kubefence_k8s::render;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
struct Input {
    selector: meta::LabelSelector,
    #[serde(default)]
    labels: Vec<Labels>,
}

const FIELD: &str = "spec.podSelector";

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let converted = label_selector(&input.selector, FIELD);
    let selector = match converted {
        Ok(s) => s,
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed conversion names its errors");
            for e in &errors {
                assert!(
                    e.field.starts_with(FIELD),
                    "error outside the selector: {e}"
                );
            }
            return;
        }
    };
    // Only this direction: the loader may check more than this (label key
    // and value syntax), never less.
    assert!(
        passes_basic_checks(&input.selector),
        "an invalid selector was accepted: {selector}"
    );

    for labels in &input.labels {
        assert_eq!(
            selector.matches(labels),
            expected_match(&input.selector, labels),
            "selector {selector} on labels {labels:?}"
        );
    }

    let rendered = render::label_selector(&selector);
    let again = label_selector(&rendered, FIELD).expect("a rendered selector converts");
    assert_eq!(again, selector, "render and convert again changed it");

    let json = serde_json::to_string(&selector).expect("a selector serialises");
    let back: LabelSelector = serde_json::from_str(&json).expect("and deserialises");
    assert_eq!(back, selector, "serde round trip changed it");

    let empty = input
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && input
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    assert_eq!(selector.is_empty(), empty);
    assert!(!selector.to_string().is_empty());
});

/// Checks the API server makes on every selector: known operators,
/// non-empty keys, values exactly when the operator takes them.
fn passes_basic_checks(s: &meta::LabelSelector) -> bool {
    let labels_ok = s.match_labels.iter().flatten().all(|(k, _)| !k.is_empty());
    let expressions_ok = s.match_expressions.iter().flatten().all(|e| {
        let n = e.values.as_ref().map_or(0, Vec::len);
        !e.key.is_empty()
            && match e.operator.as_str() {
                "In" | "NotIn" => n > 0,
                "Exists" | "DoesNotExist" => n == 0,
                _ => false,
            }
    });
    labels_ok && expressions_ok
}

/// Selector semantics from the Kubernetes documentation ("Labels and
/// Selectors"): every matchLabels pair must be present, and every
/// requirement hold; `NotIn` and `DoesNotExist` hold for an absent key.
fn expected_match(s: &meta::LabelSelector, labels: &Labels) -> bool {
    let pairs = s
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let requirements = s.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => unreachable!("operator {other} of a valid selector"),
        }
    });
    pairs && requirements
}
