//! Texts → one JSON value per Kubernetes object: multi-document YAML, JSON,
//! `kind: List` and typed lists (`PodList`, `DeploymentList`, ...).

use serde_json::Value;

use super::{Diagnostic, LoadOptions, Location, Placed, RawInput, Skipped};
use crate::convert::{self, Strictness};

/// Parses every document of `text` and hands each object to the converter.
/// A document that does not parse is an error; the others still load.
/// Objects are converted on every core (a `kubectl get -o json` dump of a
/// large cluster is one document of 100,000 objects); what lands in `raw`
/// is in input order, as if converted one by one.
pub(crate) fn parse_into(text: &str, label: &str, opts: &LoadOptions, raw: &mut RawInput) {
    /// Below this many items a file is converted on the calling thread.
    const PARALLEL_FROM: usize = 256;
    enum Pending {
        Object(Value, Location),
        Error(Diagnostic),
    }
    let mut pending: Vec<Pending> = Vec::new();
    each_object(text, label, &mut |item| {
        pending.push(match item {
            Item::Object(value, location) => Pending::Object(value, location.clone()),
            Item::Error(diagnostic) => Pending::Error(diagnostic),
        });
    });
    let converted = super::parallel::map_in_order(pending, PARALLEL_FROM, |item| {
        let mut one = RawInput::default();
        match item {
            Pending::Object(value, location) => object(value, &location, opts, &mut one),
            Pending::Error(diagnostic) => one.errors.push(diagnostic),
        }
        one
    });
    for one in converted {
        raw.extend(one);
    }
}

/// What [`each_object`] finds, in input order.
pub(crate) enum Item<'a> {
    /// One object (lists and arrays unwrapped), and where it is.
    Object(Value, &'a Location),
    /// A document that does not parse, or a list or value that is not an
    /// object.
    Error(Diagnostic),
}

/// Every object of `text` (multi-document YAML, JSON, `kind: List`, typed
/// lists, bare arrays), in order, with where each is; `label` names the
/// file. Objects are not converted: the caller decides what a kind is.
pub(crate) fn each_object(text: &str, label: &str, sink: &mut dyn FnMut(Item<'_>)) {
    if looks_like_json(text) {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => walk(value, &at(label, None), sink),
            Err(e) => sink(Item::Error(Diagnostic {
                location: at(label, None),
                message: format!("invalid JSON: {e}"),
            })),
        }
        return;
    }
    for (index, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let location = at(label, Some(index + 1));
        if doc.trim().is_empty() {
            continue;
        }
        match serde_saphyr::from_str::<Value>(doc) {
            Ok(value) => walk(value, &location, sink),
            Err(e) => sink(Item::Error(Diagnostic {
                location,
                message: format!(
                    "invalid YAML (the document starts at line {first_line}): {}",
                    yaml_message(&e, first_line)
                ),
            })),
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

/// Words for the YAML parser's errors where its own are written for the
/// programmer (`set DuplicateKeyPolicy in Options`, `budget breached:
/// Nodes { nodes: 250001 }`).
fn yaml_message(error: &serde_saphyr::Error, first_line: usize) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut inner = error;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    // Lines are counted from the document's start; report them in the file.
    let line = |location: &serde_saphyr::Location| {
        let l = usize::try_from(location.line()).unwrap_or(0);
        if l == 0 {
            String::new()
        } else {
            format!(" (line {})", l + first_line - 1)
        }
    };
    let limits = serde_saphyr::Budget::default();
    match inner {
        E::DuplicateMappingKey { key, location } => match key {
            Some(k) => format!("duplicate key `{k}`{}", line(location)),
            None => format!("duplicate key{}", line(location)),
        },
        E::Budget { breach, .. } => match breach {
            B::Nodes { .. } => format!(
                "document too large: more than {} nodes (values, lists and mappings)",
                limits.max_nodes
            ),
            B::Events { .. } => format!(
                "document too large: more than {} parser events",
                limits.max_events
            ),
            B::Depth { .. } => format!(
                "document nested too deeply: more than {} levels",
                limits.max_depth
            ),
            B::Aliases { .. } | B::AliasAnchorRatio { .. } => {
                "too many aliases (`*name`): refused as a possible alias bomb".to_string()
            }
            B::Anchors { .. } => format!("too many anchors: more than {}", limits.max_anchors),
            B::Documents { .. } => {
                format!("too many documents: more than {}", limits.max_documents)
            }
            B::ScalarBytes { .. } => format!(
                "document too large: more than {} bytes of values",
                limits.max_total_scalar_bytes
            ),
            B::MergeKeys { .. } => {
                format!(
                    "too many merge keys (`<<`): more than {}",
                    limits.max_merge_keys
                )
            }
            other => format!("document too large or malformed ({other:?})"),
        },
        _ => error.to_string(),
    }
}

/// Unwraps arrays and lists, then hands each object to `sink`; items are
/// named by their index (`items[3]`, `[3]`).
fn walk(value: Value, location: &Location, sink: &mut dyn FnMut(Item<'_>)) {
    let item = |path: String| Location {
        item: Some(match &location.item {
            Some(outer) => format!("{outer}.{path}"),
            None => path,
        }),
        ..location.clone()
    };
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for (i, value) in items.into_iter().enumerate() {
                walk(value, &item(format!("[{i}]")), sink);
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
                        for (i, mut value) in items.into_iter().enumerate() {
                            if let (Some(item_kind), Value::Object(fields)) =
                                (item_kind, &mut value)
                            {
                                fields
                                    .entry("kind")
                                    .or_insert_with(|| Value::String(item_kind.to_string()));
                                if let Some(v) = &api_version {
                                    fields.entry("apiVersion").or_insert_with(|| v.clone());
                                }
                            }
                            walk(value, &item(format!("items[{i}]")), sink);
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(_) => sink(Item::Error(Diagnostic {
                        location: Location {
                            field: Some("items".into()),
                            ..location.clone()
                        },
                        message: format!("a {kind} needs `items` to be a list"),
                    })),
                }
                return;
            }
            sink(Item::Object(Value::Object(map), location));
        }
        other => sink(Item::Error(Diagnostic {
            location: location.clone(),
            message: format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                value_kind(&other)
            ),
        })),
    }
}

/// Converts one object into `raw`, or records it as skipped or bad (one
/// error per bad field).
fn object(mut value: Value, location: &Location, opts: &LoadOptions, raw: &mut RawInput) {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let kind = text(&value, "/kind").unwrap_or_default();
    let api_version = text(&value, "/apiVersion").unwrap_or_default();
    let name = text(&value, "/metadata/name").unwrap_or_default();
    let namespace =
        text(&value, "/metadata/namespace").unwrap_or_else(|| opts.default_namespace.clone());
    let location = Location {
        object: Some(if kind == "Namespace" {
            format!("Namespace {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        }),
        ..location.clone()
    };
    if kind.is_empty() || api_version.is_empty() {
        raw.errors.push(Diagnostic {
            location: Location {
                object: None,
                ..location
            },
            message: "not a Kubernetes object: apiVersion and kind are required".into(),
        });
        return;
    }
    let Some(current) = convert::accepted_api_version(&kind, &api_version) else {
        tracing::debug!(%location, %api_version, %kind, "skipped: kind not read by kubefence");
        raw.skipped.push(Skipped {
            location,
            api_version,
            kind,
        });
        return;
    };
    if name.is_empty() {
        raw.errors.push(Diagnostic {
            location: Location {
                field: Some("metadata.name".into()),
                ..location
            },
            message: "is required".into(),
        });
        return;
    }
    // An object read back from a cluster was accepted by its API server: a
    // field unknown here may be one of a newer Kubernetes than kubefence's.
    let from_a_server = value.pointer("/metadata/resourceVersion").is_some();
    // k8s-openapi checks apiVersion; older versions share the fields we read.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(current.into()));
    }
    match convert::object(&kind, value, &namespace, Strictness::Strict) {
        Ok(converted) => raw.objects.push(Placed {
            location,
            kind: kind.clone(),
            namespace: if kind == "Namespace" {
                String::new()
            } else {
                namespace
            },
            name,
            converted,
        }),
        Err(errors) => raw.errors.extend(errors.into_iter().map(|e| Diagnostic {
            location: Location {
                field: (!e.field.is_empty()).then_some(e.field),
                ..location.clone()
            },
            message: if from_a_server && e.message.starts_with("unknown field") {
                format!(
                    "{} (this object comes from a cluster: is its Kubernetes newer than {}, \
                     the version kubefence reads?)",
                    e.message,
                    convert::KUBERNETES_VERSION
                )
            } else {
                e.message
            },
        })),
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
