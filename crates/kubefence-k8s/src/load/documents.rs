//! Texts → one JSON value per Kubernetes object: multi-document YAML, JSON,
//! `kind: List` and typed lists (`PodList`, `DeploymentList`, ...).

use serde_json::Value;

use super::{Diagnostic, LoadOptions, Location, RawInput};

/// Parses every document of `text` and hands each object to the converter.
/// A document that does not parse is an error; the others still load.
pub(crate) fn parse_into(text: &str, label: &str, opts: &LoadOptions, raw: &mut RawInput) {
    if looks_like_json(text) {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => walk(value, &at(label, None), opts, raw),
            Err(e) => raw.errors.push(Diagnostic {
                location: at(label, None),
                message: format!("invalid JSON: {e}"),
            }),
        }
        return;
    }
    for (index, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let location = at(label, Some(index + 1));
        if doc.trim().is_empty() {
            continue;
        }
        match serde_saphyr::from_str::<Value>(doc) {
            Ok(value) => walk(value, &location, opts, raw),
            Err(e) => raw.errors.push(Diagnostic {
                location,
                message: format!("invalid YAML (the document starts at line {first_line}): {e}"),
            }),
        }
    }
}

fn at(label: &str, document: Option<usize>) -> Location {
    Location {
        file: label.to_string(),
        document,
        ..Location::default()
    }
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
}

/// Splits YAML at `---` document markers, keeping the line each document
/// starts at (1-based) for error messages.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end();
        let is_marker = content == "---" || content.starts_with("--- ") || content == "...";
        if is_marker {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = number + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

/// Unwraps arrays and lists, then converts each object.
fn walk(value: Value, location: &Location, opts: &LoadOptions, raw: &mut RawInput) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                walk(item, location, opts, raw);
            }
        }
        Value::Object(mut map) => {
            let kind = map
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if kind.ends_with("List") {
                // kubectl leaves kind and apiVersion out of a typed list's items.
                let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
                let api_version = map.get("apiVersion").cloned();
                match map.remove("items") {
                    Some(Value::Array(items)) => {
                        for mut item in items {
                            if let (Some(item_kind), Value::Object(fields)) = (item_kind, &mut item)
                            {
                                fields
                                    .entry("kind")
                                    .or_insert_with(|| Value::String(item_kind.to_string()));
                                if let Some(v) = &api_version {
                                    fields.entry("apiVersion").or_insert_with(|| v.clone());
                                }
                            }
                            walk(item, location, opts, raw);
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(_) => raw.errors.push(Diagnostic {
                        location: Location {
                            field: Some("items".into()),
                            ..location.clone()
                        },
                        message: format!("a {kind} needs `items` to be a list"),
                    }),
                }
                return;
            }
            crate::convert::object(Value::Object(map), location, opts, raw);
        }
        other => raw.errors.push(Diagnostic {
            location: location.clone(),
            message: format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                value_kind(&other)
            ),
        }),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_with_their_first_line() {
        let text = "a: 1\n---\nb: 2\n--- # c\n\n---\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![(1, "a: 1\n"), (3, "b: 2\n"), (5, "\n"), (7, "c: 3\n")]
        );
    }
}
