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

use super::path::{self, Segment};
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

/// Deserializes `T` from `input`: the typed object and one error per
/// unknown field (the object is still checked further, so every bad field is
/// reported at once), or, for a wrong type, every error (serde stops at the
/// first wrong type).
pub(crate) fn read<T: DeserializeOwned + JsonSchema + 'static>(
    input: ObjectInput<'_>,
    strictness: Strictness,
) -> Result<(T, Problems), Vec<ConvertError>> {
    match input {
        // One way in for every object: the typed deserializers of each kind
        // are instantiated for one serde deserializer only (each more costs
        // megabytes of the binary). Writing a value out as text is cheap
        // beside the YAML parse or the API call that produced it.
        ObjectInput::Value(value) => match serde_json::to_string(&value) {
            Ok(text) => read_text(&text, strictness),
            Err(e) => Err(vec![ConvertError::new("", e.to_string())]),
        },
        ObjectInput::Json(text) => read_text(text, strictness),
    }
}

/// What an object is read from: a parsed JSON value, or the JSON text of
/// the object alone (read straight into the typed object, never held as a
/// value: what large JSON dumps take).
pub(crate) enum ObjectInput<'t> {
    Value(Value),
    Json(&'t str),
}

fn read_text<T>(text: &str, strictness: Strictness) -> Result<(T, Problems), Vec<ConvertError>>
where
    T: DeserializeOwned + JsonSchema + 'static,
{
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, serde_json::Error> = serde_ignored::deserialize(&mut de, |path| {
        let mut path_segments = Vec::new();
        segments(&path, &mut path_segments);
        unknown.push(path_segments);
    })
    // Nothing may follow the object (the caller cut it out of a list, so
    // this holds; checked all the same).
    .and_then(|typed| de.end().map(|()| typed));
    // The server writes status and `kubectl apply` leaves it alone; dumps
    // from other Kubernetes versions carry status fields of their own.
    let (tolerated, unknown): (Vec<_>, Vec<_>) = unknown.into_iter().partition(|path| {
        strictness == Strictness::Lenient
            || path.first() == Some(&Segment::Key("status".to_string()))
    });
    for path in &tolerated {
        tracing::debug!(field = %path::text(path), "field not known to kubefence, ignored");
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
            let field = path::text(&path::at(text, path::Stop::of(&e)));
            // serde_json says where in the object's own text it stopped;
            // the field path already says where, in the words of the file.
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
    let field = path::text(path);
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
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
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

    /// Objects of the kinds read strictly, with fields of every shape the
    /// generated deserializers have (maps, lists, IntOrString, Quantity,
    /// Time, required fields).
    fn examples() -> Vec<(&'static str, Value)> {
        let pod_spec = json!({
            "containers": [{"name": "c", "image": "i:1",
                "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 5},
                "securityContext": {"runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "p"}]}}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "zone",
                    "labelSelector": {"matchLabels": {"app": "web"}}}}]}}
        });
        vec![
            (
                "Deployment",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                    "creationTimestamp": "2024-01-01T00:00:00Z",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u", "controller": true}]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
            ),
            (
                "Service",
                json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [
                    {"port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"port": 81, "targetPort": 8081}]}}),
            ),
            (
                "NetworkPolicy",
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "p"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "k", "operator": "Exists"}]}},
                        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                        "ports": [{"port": 80, "endPort": 90, "protocol": "TCP"}, {"port": "http"}]}],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"a": "b"}}}]}]}}),
            ),
        ]
    }

    /// Every place in `value` a mutation can hit.
    fn places(value: &Value, here: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>) {
        out.push(here.clone());
        match value {
            Value::Object(map) => {
                for (key, member) in map {
                    here.push(Segment::Key(key.clone()));
                    places(member, here, out);
                    here.pop();
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    here.push(Segment::Index(i));
                    places(item, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }

    /// `value` with the member or element at `place` replaced (or, for
    /// `None`, an object member removed).
    fn mutated(mut value: Value, place: &[Segment], with: Option<Value>) -> Value {
        let Some((last, parent)) = place.split_last() else {
            return with.unwrap_or(Value::Null);
        };
        let mut target = &mut value;
        for segment in parent {
            target = match (segment, target) {
                (Segment::Key(k), Value::Object(map)) => {
                    map.entry(k.clone()).or_insert(Value::Null)
                }
                (Segment::Index(i), Value::Array(items)) => &mut items[*i],
                (_, other) => other,
            };
        }
        match (last, target, with) {
            (Segment::Key(k), Value::Object(map), Some(v)) => {
                map.insert(k.clone(), v);
            }
            (Segment::Key(k), Value::Object(map), None) => {
                map.remove(k);
            }
            (Segment::Index(i), Value::Array(items), Some(v)) => items[*i] = v,
            _ => {}
        }
        value
    }

    /// What serde_path_to_error, which tracks the path while reading, says
    /// of the first wrong field: the reference for the path found from
    /// serde_json's position.
    fn reference<T: DeserializeOwned>(text: &str) -> Result<(), (String, String)> {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(_) => Ok(()),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.to_string();
                let position = format!(" at line {} column {}", inner.line(), inner.column());
                Err((
                    if path == "." { String::new() } else { path },
                    message.trim_end_matches(&position).to_string(),
                ))
            }
        }
    }

    fn ours<T: DeserializeOwned + JsonSchema + 'static>(
        text: &str,
    ) -> Result<(), (String, String)> {
        match read::<T>(ObjectInput::Json(text), Strictness::Lenient) {
            Ok(_) => Ok(()),
            Err(errors) => Err(errors
                .into_iter()
                .next()
                .map(|e| (e.field, e.message))
                .unwrap_or_default()),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// A wrong type or a missing field anywhere in an object, compact or
        /// indented: the error and its path are the ones
        /// serde_path_to_error finds.
        #[test]
        fn the_path_of_a_type_error_is_the_one_tracking_finds(
            example in 0usize..3,
            place in proptest::prelude::any::<proptest::sample::Index>(),
            mutation in 0usize..7,
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let (kind, value) = examples().swap_remove(example);
            let mut all = Vec::new();
            places(&value, &mut Vec::new(), &mut all);
            // k8s-openapi checks apiVersion and kind after reading their
            // values, so the tracking reference names the object where the
            // position names the field; the loader sets both before reading.
            all.retain(|place| {
                !matches!(place.as_slice(), [Segment::Key(k)] if k == "apiVersion" || k == "kind")
            });
            let place = place.get(&all);
            let with = match mutation {
                0 => Some(json!("x")),
                1 => Some(json!(7)),
                2 => Some(json!([1])),
                3 => Some(json!({"k": true})),
                4 => Some(Value::Null),
                5 => Some(json!(true)),
                _ => None,
            };
            let value = mutated(value, place, with);
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .unwrap_or_default();
            let (expected, got) = match kind {
                "Deployment" => (reference::<Deployment>(&text), ours::<Deployment>(&text)),
                "Service" => (reference::<Service>(&text), ours::<Service>(&text)),
                _ => (reference::<NetworkPolicy>(&text), ours::<NetworkPolicy>(&text)),
            };
            proptest::prop_assert_eq!(got, expected, "{}", text);
        }
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
