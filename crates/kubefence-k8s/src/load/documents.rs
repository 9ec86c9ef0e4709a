//! Texts → one JSON value per Kubernetes object: multi-document YAML, JSON,
//! `kind: List` and typed lists (`PodList`, `DeploymentList`, ...).

use serde_json::Value;
use serde_json::value::RawValue;

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
    enum Pending<'t> {
        Object(Value, Location),
        /// The unparsed text of one item of a large JSON list, parsed
        /// where it is converted, with the list's kind and apiVersion.
        Json(&'t RawValue, Location, ListDefaults),
        Error(Diagnostic),
    }
    let mut pending: Vec<Pending<'_>> = Vec::new();
    if let Some(items) = json_list_items(text) {
        let top = at(label, None);
        pending.extend(items.items.into_iter().enumerate().map(|(i, item)| {
            let path = if items.is_list {
                format!("items[{i}]")
            } else {
                format!("[{i}]")
            };
            let location = Location {
                item: Some(path),
                ..top.clone()
            };
            Pending::Json(item, location, items.defaults.clone())
        }));
    } else {
        each_object(text, label, &mut |item| {
            pending.push(match item {
                Item::Object(value, location) => Pending::Object(value, location.clone()),
                Item::Error(diagnostic) => Pending::Error(diagnostic),
            });
        });
    }
    let runs = super::parallel::fold_in_order(
        pending,
        PARALLEL_FROM,
        RawInput::default,
        |one: &mut RawInput, item| match item {
            Pending::Object(value, location) => object(value, &location, opts, one),
            Pending::Json(text, location, defaults) => {
                if let Some(message) = json_duplicate_key(text.get()) {
                    one.errors.push(Diagnostic { location, message });
                    return;
                }
                if object_from_json(text.get(), &location, opts, one) {
                    return;
                }
                match serde_json::from_str::<Value>(text.get()) {
                    Ok(mut value) => {
                        defaults.apply(&mut value);
                        walk(value, &location, &mut |item| match item {
                            Item::Object(value, location) => {
                                object(value, location, opts, one);
                            }
                            Item::Error(diagnostic) => one.errors.push(diagnostic),
                        });
                    }
                    Err(e) => one.errors.push(Diagnostic {
                        location,
                        message: format!("invalid JSON: {e}"),
                    }),
                }
            }
            Pending::Error(diagnostic) => one.errors.push(diagnostic),
        },
    );
    for run in runs {
        raw.extend(run);
    }
}

/// What a typed list (`PodList`) gives its items that leave them out.
#[derive(Clone, Debug, Default)]
struct ListDefaults {
    kind: Option<String>,
    api_version: Option<Value>,
}

impl ListDefaults {
    /// kubectl leaves kind and apiVersion out of a typed list's items.
    fn apply(&self, value: &mut Value) {
        if let (Some(kind), Value::Object(fields)) = (&self.kind, &mut *value) {
            fields
                .entry("kind")
                .or_insert_with(|| Value::String(kind.clone()));
            if let Some(v) = &self.api_version {
                fields.entry("apiVersion").or_insert_with(|| v.clone());
            }
        }
    }
}

/// The items of a JSON list, unparsed.
struct JsonListItems<'t> {
    items: Vec<&'t RawValue>,
    /// A `kind: …List` object (items named `items[i]`), or a bare array
    /// (`[i]`).
    is_list: bool,
    defaults: ListDefaults,
}

/// A JSON text that is one list (`kind: List`, a typed list, or a bare
/// array): its items, found without parsing them into values, so each is
/// parsed on the core that converts it and the whole list never exists as
/// one value (a 100,000-workload dump is one such text). `None` for any
/// other text, or one that does not parse: the general path reads it and
/// says what is wrong.
fn json_list_items(text: &str) -> Option<JsonListItems<'_>> {
    #[derive(serde::Deserialize)]
    struct List<'t> {
        #[serde(default)]
        kind: Option<String>,
        #[serde(default, rename = "apiVersion")]
        api_version: Option<Value>,
        #[serde(borrow)]
        items: Vec<&'t RawValue>,
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        return Some(JsonListItems {
            items,
            is_list: false,
            defaults: ListDefaults::default(),
        });
    }
    if !trimmed.starts_with('{') {
        return None;
    }
    let list: List<'_> = serde_json::from_str(text).ok()?;
    let kind = list.kind?;
    let item_kind = kind.strip_suffix("List")?;
    Some(JsonListItems {
        items: list.items,
        is_list: true,
        defaults: ListDefaults {
            kind: (!item_kind.is_empty()).then(|| item_kind.to_string()),
            api_version: list.api_version,
        },
    })
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
        if let Some(message) = json_duplicate_key(text) {
            sink(Item::Error(Diagnostic {
                location: at(label, None),
                message,
            }));
            return;
        }
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

/// The first key given twice in one object of a JSON text, as an error
/// message naming it and where it is (`spec.podSelector.matchLabels.app`);
/// `None` when there is none, or when the text is not JSON (the parser
/// says what is wrong). JSON parsers keep the last of two values and YAML's
/// refuses both; a file that says two things is an error either way, as
/// the API server's strict field validation has it.
pub(crate) fn json_duplicate_key(text: &str) -> Option<String> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;

    /// Walks one value; `path` is where it is.
    struct Walk<'p> {
        path: &'p mut Vec<String>,
        found: &'p mut Option<String>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            loop {
                self.path.push(format!("[{i}]"));
                let more = seq.next_element_seed(Walk {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?;
                self.path.pop();
                if more.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // Objects have few keys: a list beats a set.
            let mut seen: Vec<Cow<'de, str>> = Vec::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if seen.contains(&key) {
                    let mut at = self.path.concat();
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(&key);
                    *self.found = Some(format!(
                        "duplicate key `{key}` ({at}): a key may be given once in an object"
                    ));
                    // Stop reading: one is enough to refuse the object.
                    return Err(A::Error::custom("duplicate key"));
                }
                self.path.push(if self.path.is_empty() {
                    key.to_string()
                } else {
                    format!(".{key}")
                });
                map.next_value_seed(Walk {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?;
                self.path.pop();
                seen.push(key);
            }
            Ok(())
        }
    }
    let mut path = Vec::new();
    let mut found = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = Walk {
        path: &mut path,
        found: &mut found,
    }
    .deserialize(&mut de);
    found
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
                let defaults = ListDefaults {
                    kind: kind
                        .strip_suffix("List")
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                    api_version: map.get("apiVersion").cloned(),
                };
                match map.remove("items") {
                    Some(Value::Array(items)) => {
                        for (i, mut value) in items.into_iter().enumerate() {
                            defaults.apply(&mut value);
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
    // Direct lookups: `Value::pointer` parses its path (and unescapes each
    // step) on every call, which showed in profiles of large dumps.
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let metadata = value.get("metadata");
    let kind = text(value.get("kind")).unwrap_or_default();
    let api_version = text(value.get("apiVersion")).unwrap_or_default();
    let name = text(metadata.and_then(|m| m.get("name"))).unwrap_or_default();
    let namespace = text(metadata.and_then(|m| m.get("namespace")))
        .unwrap_or_else(|| opts.default_namespace.clone());
    let location = object_location(&kind, &namespace, &name, location);
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
    let from_a_server = value
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .is_some();
    // k8s-openapi checks apiVersion; older versions share the fields we read.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(current.into()));
    }
    let converted = convert::object(&kind, value, &namespace, Strictness::Strict);
    place(
        converted,
        kind,
        namespace,
        name,
        location,
        from_a_server,
        raw,
    );
}

/// The object of one JSON text, converted straight from the text when it
/// is a plain object of a kind kubefence reads, at the current apiVersion,
/// with a name: what a large dump holds. Returns false, having done
/// nothing, for anything else (a list, another kind or version, no name,
/// a header that does not read): the general path handles those, with its
/// messages.
fn object_from_json(
    text: &str,
    location: &Location,
    opts: &LoadOptions,
    raw: &mut RawInput,
) -> bool {
    use std::borrow::Cow;
    /// A key that is there, whatever its value (`null` included).
    #[derive(Default)]
    struct Present(bool);
    impl<'de> serde::Deserialize<'de> for Present {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d)?;
            Ok(Present(true))
        }
    }
    #[derive(serde::Deserialize)]
    struct Metadata<'t> {
        #[serde(default, borrow)]
        name: Option<Cow<'t, str>>,
        #[serde(default, borrow)]
        namespace: Option<Cow<'t, str>>,
        #[serde(default, rename = "resourceVersion")]
        resource_version: Present,
    }
    #[derive(serde::Deserialize)]
    struct Header<'t> {
        #[serde(default, borrow)]
        kind: Option<Cow<'t, str>>,
        #[serde(default, borrow, rename = "apiVersion")]
        api_version: Option<Cow<'t, str>>,
        #[serde(default, borrow)]
        metadata: Option<Metadata<'t>>,
    }
    let Ok(header) = serde_json::from_str::<Header<'_>>(text) else {
        return false;
    };
    let (Some(kind), Some(api_version), Some(metadata)) =
        (header.kind, header.api_version, header.metadata)
    else {
        return false;
    };
    let Some(name) = metadata.name.filter(|n| !n.is_empty()) else {
        return false;
    };
    if kind.ends_with("List")
        || convert::accepted_api_version(&kind, &api_version) != Some(&*api_version)
    {
        return false;
    }
    let namespace = metadata
        .namespace
        .map_or_else(|| opts.default_namespace.clone(), Cow::into_owned);
    let location = object_location(&kind, &namespace, &name, location);
    let converted = convert::object_json(&kind, text, &namespace, Strictness::Strict);
    place(
        converted,
        kind.into_owned(),
        namespace,
        name.into_owned(),
        location,
        metadata.resource_version.0,
        raw,
    );
    true
}

/// `location` naming the object: `Namespace shop`, `Deployment shop/web`.
fn object_location(kind: &str, namespace: &str, name: &str, location: &Location) -> Location {
    Location {
        object: Some(if kind == "Namespace" {
            format!("Namespace {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        }),
        ..location.clone()
    }
}

/// Records a converted object, or its errors, in `raw`.
fn place(
    converted: Result<convert::Converted, Vec<convert::ConvertError>>,
    kind: String,
    namespace: String,
    name: String,
    location: Location,
    from_a_server: bool,
    raw: &mut RawInput,
) {
    match converted {
        Ok(converted) => raw.push(Placed {
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

    /// Objects a JSON list may hold, good and bad: every one must read the
    /// same whether the list's items are read straight from their text (a
    /// JSON list) or from a parsed value (the same text read as YAML).
    const ITEMS: &[&str] = &[
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"team":"a"}}}"#,
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","resourceVersion":"12"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"w","image":"x","ports":[{"containerPort":8080,"name":"http"}]}]}}}}"#,
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"typo","namespace":"shop","resourceVersion":null},"spec":{"selectr":{},"template":{"metadata":{"labels":{"app":"t"}},"spec":{"containers":[]}}}}"#,
        r#"{"apiVersion":"extensions/v1beta1","kind":"Deployment","metadata":{"name":"old"},"spec":{"selector":{"matchLabels":{"app":"old"}},"template":{"metadata":{"labels":{"app":"old"}},"spec":{"containers":[{"name":"o","image":"x"}]}}}}"#,
        r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p","namespace":"shop"},"spec":{"podSelector":{},"ingress":[{"form":[{"podSelector":{}}]}]}}"#,
        r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"ports","namespace":"shop"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"ports":[{"port":70000}]}]}}"#,
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"namespace":"shop"},"spec":{"selector":{"app":"web"},"ports":[{"port":80}]}}"#,
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"shop"}}"#,
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc","namespace":"shop"},"spec":{"selector":{"app":"web"},"ports":[{"port":"eighty"}]}}"#,
        r#"{"kind":"ConfigMap","metadata":{"name":"no-version"}}"#,
        r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nested","namespace":"shop"},"data":{"a":"b"}}]}"#,
        r#"42"#,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[{"name":"w","image":"x"}]},"status":{"podIP":"10.0.0.1","phase":"Running"}}"#,
    ];

    fn comparable(loaded: &super::super::Loaded) -> Vec<String> {
        let without_document = |l: &Location| Location {
            document: None,
            ..l.clone()
        };
        let mut out = vec![format!("{:?}", loaded.cluster)];
        for d in loaded.errors.iter().chain(&loaded.warnings) {
            out.push(format!("{} {}", without_document(&d.location), d.message));
        }
        for s in &loaded.skipped {
            out.push(format!(
                "{} {} {}",
                without_document(&s.location),
                s.api_version,
                s.kind
            ));
        }
        out
    }

    #[test]
    fn json_list_items_read_from_their_text_as_from_a_value() {
        let opts = LoadOptions::default();
        for text in [
            format!(
                r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
                ITEMS.join(",")
            ),
            format!("[{}]", ITEMS.join(",")),
        ] {
            assert!(
                json_list_items(&text).is_some(),
                "the fast path takes {text}"
            );
            let fast = super::super::load_str(&text, "dump.json", &opts);
            // A comment first: the same text goes through the YAML parser
            // and the general path.
            let general = super::super::load_str(&format!("# yaml\n{text}"), "dump.json", &opts);
            assert!(fast.errors.len() >= 6, "{:#?}", fast.errors);
            assert_eq!(comparable(&fast), comparable(&general));
        }
    }

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
