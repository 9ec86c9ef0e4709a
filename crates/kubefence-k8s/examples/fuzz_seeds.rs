//! Derives the seed corpora of the fuzz targets (`fuzz/`) from manifests,
//! so the corpus follows the test data instead of being committed.
//!
//! ```text
//! cargo run -p kubefence-k8s --example fuzz_seeds -- OUT_DIR INPUT_DIR...
//! ```
//!
//! Writes into `OUT_DIR/<target>/`, one file per seed, named by a hash of
//! its content (so reruns add nothing twice):
//! - `load`: each YAML document and each object of a JSON file or List on
//!   its own, and a whole file when it is small: small inputs keep the
//!   loader target fast (a seed of tens of kilobytes costs milliseconds a
//!   run);
//! - `selector`: `{"selector": ..., "labels": [...]}` for every selector
//!   found, with the label sets of the same file;
//! - `network_policy`: the `spec` of every NetworkPolicy, as JSON;
//! - `references`: per container, its env (`NAME=value`), args and command
//!   one a line, and the file's ConfigMap entries as `cm:KEY=value`.
//!
//! Files that are not manifests or do not parse are passed over: seeds only
//! need to be plausible.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

/// libFuzzer truncates longer inputs anyway (`-max_len` in scripts/fuzz.sh).
const MAX_SEED_BYTES: usize = 4096;
/// Label sets paired with each selector.
const MAX_LABEL_SETS: usize = 8;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(out), inputs) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: fuzz_seeds OUT_DIR INPUT_DIR...");
        return ExitCode::from(2);
    };
    if inputs.is_empty() {
        eprintln!("usage: fuzz_seeds OUT_DIR INPUT_DIR...");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for dir in &inputs {
        collect_manifests(dir, &mut files);
    }
    files.sort();
    let mut written = Seeds::new(out);
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        seeds_of(&text, &mut written);
    }
    for (target, count) in &written.counts {
        println!("{target}: {count} seeds");
    }
    if let Some(e) = written.error {
        eprintln!("fuzz_seeds: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn collect_manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_manifests(&path, out);
        } else if kind.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
}

struct Seeds {
    out: PathBuf,
    counts: std::collections::BTreeMap<&'static str, usize>,
    error: Option<String>,
}

impl Seeds {
    fn new(out: PathBuf) -> Self {
        Self {
            out,
            counts: Default::default(),
            error: None,
        }
    }

    fn write(&mut self, target: &'static str, content: &[u8]) {
        if content.is_empty() || content.len() > MAX_SEED_BYTES || self.error.is_some() {
            return;
        }
        let mut hasher = DefaultHasher::new();
        content.hash(&mut hasher);
        let dir = self.out.join(target);
        let path = dir.join(format!("seed-{:016x}", hasher.finish()));
        if path.exists() {
            return;
        }
        let result = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, content));
        match result {
            Ok(()) => *self.counts.entry(target).or_default() += 1,
            Err(e) => self.error = Some(format!("{}: {e}", path.display())),
        }
    }
}

fn seeds_of(text: &str, seeds: &mut Seeds) {
    seeds.write("load", text.as_bytes());
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        let documents: Vec<Value> = serde_json::from_str(text).into_iter().collect();
        let mut objects = Vec::new();
        for doc in &documents {
            flatten(doc.clone(), &mut objects);
        }
        for object in &objects {
            seeds.write("load", object.to_string().as_bytes());
        }
        documents
    } else {
        split_documents(text)
            .into_iter()
            .filter(|doc| !doc.trim().is_empty())
            .filter_map(|doc| {
                seeds.write("load", doc.as_bytes());
                serde_saphyr::from_str::<Value>(doc).ok()
            })
            .collect()
    };
    let mut objects = Vec::new();
    for doc in documents {
        flatten(doc, &mut objects);
    }

    let mut label_sets = Vec::new();
    let mut selectors = Vec::new();
    let mut containers = Vec::new();
    let mut config = Vec::new();
    for object in &objects {
        walk(object, &mut |key, value| match key {
            "labels" | "matchLabels" if value.is_object() => label_sets.push(value.clone()),
            "podSelector" | "namespaceSelector" | "selector" if value.is_object() => {
                // A Service's selector is a plain label map.
                let is_label_selector =
                    value.get("matchLabels").is_some() || value.get("matchExpressions").is_some();
                selectors.push(if is_label_selector || key != "selector" {
                    value.clone()
                } else {
                    json!({ "matchLabels": value })
                });
            }
            "containers" | "initContainers" => {
                containers.extend(value.as_array().into_iter().flatten().cloned())
            }
            _ => {}
        });
        let kind = object.get("kind").and_then(Value::as_str);
        if kind == Some("NetworkPolicy")
            && let Some(spec) = object.get("spec")
        {
            seeds.write("network_policy", spec.to_string().as_bytes());
        }
        if kind == Some("ConfigMap")
            && let Some(data) = object.get("data").and_then(Value::as_object)
        {
            for (key, value) in data {
                if let Some(value) = value.as_str() {
                    config.push(format!("cm:{key}={}", one_line(value)));
                }
            }
        }
    }
    label_sets.truncate(MAX_LABEL_SETS);
    for selector in selectors {
        let input = json!({"selector": selector, "labels": label_sets});
        seeds.write("selector", input.to_string().as_bytes());
    }
    for container in &containers {
        let mut lines = config.clone();
        for env in container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(value)) = (
                env.get("name").and_then(Value::as_str),
                env.get("value").and_then(Value::as_str),
            ) {
                lines.push(format!("{name}={}", one_line(value)));
            }
        }
        for field in ["command", "args"] {
            for word in container
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(word) = word.as_str() {
                    lines.push(one_line(word));
                }
            }
        }
        if !lines.is_empty() {
            seeds.write("references", (lines.join("\n") + "\n").as_bytes());
        }
    }
}

/// YAML documents at `---` (and `...`) lines, as the loader splits them.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end();
        if content == "---" || content.starts_with("--- ") || content == "..." {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// Objects of a document: Lists and arrays unwrapped.
fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| flatten(v, out)),
        Value::Object(mut map) if map.get("items").is_some_and(Value::is_array) => {
            if let Some(Value::Array(items)) = map.remove("items") {
                items.into_iter().for_each(|v| flatten(v, out));
            }
        }
        other => out.push(other),
    }
}

/// Calls `visit` with every key and value of every mapping in `value`.
fn walk(value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                visit(key, v);
                walk(v, visit);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

fn one_line(value: &str) -> String {
    value.replace(['\n', '\r'], " ")
}
