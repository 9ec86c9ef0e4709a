//! Reading a typed object strictly, as the API server does with strict
//! field validation: a field the type does not know is an error, not
//! something silently dropped (`ingress: [{form: …}]` must never read as a
//! rule without peers, which allows every peer).
//!
//! k8s-openapi's types skip unknown keys while deserializing; the
//! [`serde_ignored`] wrapper reports every key the type skipped, with its
//! path, so the check is exactly "what the typed object did not read"
//! whatever the kind, the nesting, or the value (`form: null` included).
//! A close known key, found in the type's JSON schema, is suggested.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ConvertError, Problems};

/// How a field that kubefence's Kubernetes types do not know is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Manifests: an error, as `kubectl apply` with strict field validation.
    Strict,
    /// Objects read back from the API server, which validated them already
    /// (a newer server may add fields kubefence does not know yet).
    Lenient,
}

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `spec.ingress[0].from`, the notation of the API server's messages.
fn path_text(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn segments(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            segments(parent, out);
            out.push(Segment::Index(*index));
        }
        Path::Map { parent, key } => {
            segments(parent, out);
            out.push(Segment::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent, out),
    }
}

/// Deserializes `T` from `value`: the typed object and one error per
/// unknown field (the object is still checked further, so every bad field is
/// reported at once), or, for a wrong type, every error (serde stops at the
/// first wrong type).
pub(crate) fn read<T: DeserializeOwned + JsonSchema + 'static>(
    input: ObjectInput<'_>,
    strictness: Strictness,
) -> Result<(T, Problems), Vec<ConvertError>> {
    match input {
        ObjectInput::Value(value) => read_from(value, strictness),
        ObjectInput::Json(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let read = read_from(&mut de, strictness);
            // Nothing may follow the object (the caller cut it out of a
            // list, so this holds; checked all the same).
            match (read, de.end()) {
                (Ok(read), Ok(())) => Ok(read),
                (Err(errors), _) => Err(errors),
                (Ok(_), Err(e)) => Err(vec![ConvertError::new("", e.to_string())]),
            }
        }
    }
}

/// What an object is read from: a parsed JSON value, or the JSON text of
/// the object alone (read straight into the typed object, never held as a
/// value: what large JSON dumps take).
pub(crate) enum ObjectInput<'t> {
    Value(Value),
    Json(&'t str),
}

fn read_from<'de, D, T>(de: D, strictness: Strictness) -> Result<(T, Problems), Vec<ConvertError>>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: DeserializeOwned + JsonSchema + 'static,
{
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result: Result<T, serde_json::Error> = {
        let with_path = serde_path_to_error::Deserializer::new(de, &mut track);
        serde_ignored::deserialize(with_path, |path| {
            let mut path_segments = Vec::new();
            segments(&path, &mut path_segments);
            unknown.push(path_segments);
        })
    };
    // The server writes status and `kubectl apply` leaves it alone; dumps
    // from other Kubernetes versions carry status fields of their own.
    let (tolerated, unknown): (Vec<_>, Vec<_>) = unknown.into_iter().partition(|path| {
        strictness == Strictness::Lenient
            || path.first() == Some(&Segment::Key("status".to_string()))
    });
    for path in &tolerated {
        tracing::debug!(field = %path_text(path), "field not known to kubefence, ignored");
    }
    let mut errors: Vec<ConvertError> = Vec::new();
    if !unknown.is_empty() {
        let schema = schema_of::<T>();
        for path in &unknown {
            errors.push(unknown_field(schema.as_value(), path));
        }
    }
    match result {
        Ok(typed) => {
            let mut problems = Problems::default();
            for e in errors {
                problems.push(e);
            }
            Ok((typed, problems))
        }
        Err(e) => {
            let path = track.path().to_string();
            let field = if path == "." { String::new() } else { path };
            // Read from text, serde_json says where in the object's own
            // text it stopped; the field path already says where, in the
            // words of the file.
            let mut message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            if e.line() > 0 && message.ends_with(&position) {
                message.truncate(message.len() - position.len());
            }
            errors.push(ConvertError::new(field, message));
            Err(errors)
        }
    }
}

/// The JSON schema of `T`, generated once per type and kept: generating it
/// walks the whole type (a Deployment's holds every definition of a pod
/// spec, hundreds of them), and a manifest of many objects with a typo each
/// would otherwise pay that for every object.
fn schema_of<T: JsonSchema + 'static>() -> Arc<Schema> {
    static SCHEMAS: LazyLock<Mutex<HashMap<TypeId, Arc<Schema>>>> = LazyLock::new(Mutex::default);
    // Generation cannot leave the map half-written, so a poisoned lock (a
    // panic in another thread) still holds whole schemas.
    let mut schemas = SCHEMAS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        schemas
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(SchemaGenerator::default().into_root_schema_for::<T>())),
    )
}

fn unknown_field(root: &Value, path: &[Segment]) -> ConvertError {
    let field = path_text(path);
    let Some((Segment::Key(key), parent)) = path.split_last() else {
        return ConvertError::new(field, "unknown field");
    };
    let known = schema_at(root, root, parent)
        .map(|schema| property_names(root, schema))
        .unwrap_or_default();
    let message = match closest(key, &known) {
        Some(close) => format!("unknown field `{key}`: did you mean `{close}`?"),
        None if known.is_empty() => format!("unknown field `{key}`"),
        None => format!(
            "unknown field `{key}` (known here: {})",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    ConvertError::new(field, message)
}

/// Follows `$ref`s (`#/$defs/…`) to the schema they name.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        else {
            break;
        };
        schema = target;
    }
    schema
}

/// The schema of the value at `path`, if the schema describes it.
fn schema_at<'a>(root: &'a Value, schema: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let schema = resolve(root, schema);
    let Some((first, rest)) = path.split_first() else {
        return Some(schema);
    };
    let next = match first {
        Segment::Key(key) => schema
            .get("properties")
            .and_then(|p| p.get(key))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))?,
        Segment::Index(_) => schema.get("items")?,
    };
    schema_at(root, next, rest)
}

fn property_names(root: &Value, schema: &Value) -> Vec<String> {
    resolve(root, schema)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The known key a typo most likely meant: the same but for case, or at
/// most one edit away (two for longer keys), transpositions counting one.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    if let Some(same) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(same);
    }
    let budget = if key.len() >= 8 { 2 } else { 1 };
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(distance, _)| *distance <= budget)
        .min()
        .map(|(_, k)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_found_at_any_depth_with_a_suggestion() {
        let value = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "creationTimestamp": null, "labels": {}},
            "spec": {"podSelector": {"app": "web"}, "ingress": [{"from": []}, {"form": null}]}});
        let problems = match read::<NetworkPolicy>(ObjectInput::Value(value), Strictness::Strict) {
            Ok((_, problems)) => problems.into_errors(),
            Err(errors) => errors,
        };
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "spec.ingress[1].form: unknown field `form`: did you mean `from`?",
                "spec.podSelector.app: unknown field `app` (known here: `matchExpressions`, `matchLabels`)",
            ]
        );
    }

    #[test]
    fn the_schema_of_a_type_is_generated_once() {
        let first = schema_of::<NetworkPolicy>();
        assert!(Arc::ptr_eq(&first, &schema_of::<NetworkPolicy>()));
        let other = schema_of::<k8s_openapi::api::core::v1::Service>();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_ne!(first.as_value(), other.as_value());
    }

    #[test]
    fn lenient_reading_ignores_unknown_keys() {
        let value = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p"}, "spec": {"newField": 1}});
        let read = read::<NetworkPolicy>(ObjectInput::Value(value), Strictness::Lenient);
        assert!(read.is_ok_and(|(_, problems)| problems.into_errors().is_empty()));
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let known: Vec<String> = ["from", "ports", "namespaceSelector", "labels"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("form", &known), Some("from"));
        assert_eq!(
            closest("nameSpaceSelector", &known),
            Some("namespaceSelector")
        );
        assert_eq!(closest("lables", &known), Some("labels"));
        assert_eq!(closest("name", &known), None);
        assert_eq!(closest("app", &known), None);
    }
}
