//! The document loader: any text, as a manifest file's content, through
//! `kubefence_k8s::load::load_str` (YAML streams, JSON, Lists, every kind).
//!
//! Besides "no panic, no hang", it checks what every caller relies on:
//! - loading is deterministic (same cluster, same diagnostics; checked on
//!   one input in eight);
//! - every diagnostic names the file it came from;
//! - every object kept has a name, and its namespace is in the cluster;
//! - a JSON object that is not a List is never silently dropped: it becomes
//!   an object, a skipped kind or an error.
#![no_main]

use kubefence_k8s::load::{LoadOptions, Loaded, load_str};
use libfuzzer_sys::fuzz_target;

const LABEL: &str = "fuzz.yaml";

/// One input in this many is loaded twice to check determinism.
const DETERMINISM_EVERY: usize = 8;

fuzz_target!(|data: &[u8]| {
    // Files are read as UTF-8 before they reach the loader.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions::default();
    let loaded = load_str(text, LABEL, &opts);

    // Loading again doubles the cost of a run; one input in
    // DETERMINISM_EVERY (chosen by its length, so a reproducer repeats the
    // check) is enough to catch an order that depends on a hash seed.
    if data.len().is_multiple_of(DETERMINISM_EVERY) {
        let again = load_str(text, LABEL, &opts);
        assert_eq!(
            loaded.cluster, again.cluster,
            "loading is not deterministic"
        );
        assert_eq!(
            messages(&loaded),
            messages(&again),
            "diagnostics are not deterministic"
        );
    }

    for e in &loaded.errors {
        assert_eq!(e.location.file, LABEL, "diagnostic without its file: {e}");
        assert!(!e.message.is_empty(), "diagnostic without a message: {e}");
    }
    for s in &loaded.skipped {
        assert_eq!(s.location.file, LABEL);
    }
    check_cluster(&loaded);
    check_json_object_is_accounted_for(text, &loaded);
});

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded.errors.iter().map(ToString::to_string).collect()
}

fn check_cluster(loaded: &Loaded) {
    let c = &loaded.cluster;
    let named = c
        .workloads
        .iter()
        .map(|w| (w.namespace.as_str(), w.name.as_str()))
        .chain(
            c.services
                .iter()
                .map(|s| (s.namespace.as_str(), s.name.as_str())),
        )
        .chain(
            c.ingresses
                .iter()
                .map(|i| (i.namespace.as_str(), i.name.as_str())),
        )
        .chain(
            c.config_maps
                .iter()
                .map(|m| (m.namespace.as_str(), m.name.as_str())),
        )
        .chain(
            c.policies
                .iter()
                .map(|p| (p.namespace.as_str(), p.name.as_str())),
        );
    for (namespace, name) in named {
        assert!(!name.is_empty(), "an object without a name was loaded");
        assert!(
            c.namespaces.contains_key(namespace),
            "namespace {namespace:?} of {name:?} is missing from the cluster"
        );
    }
    for (key, ns) in &c.namespaces {
        assert_eq!(key, &ns.name, "namespace stored under another name");
    }
}

/// A JSON document holding one object that is not a List must be read,
/// skipped or reported: never nothing.
fn check_json_object_is_accounted_for(text: &str, loaded: &Loaded) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let is_list = map
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    if is_list {
        return;
    }
    let c = &loaded.cluster;
    let objects = c.workloads.len()
        + c.services.len()
        + c.ingresses.len()
        + c.config_maps.len()
        + c.policies.len()
        + c.namespaces.len();
    assert!(
        objects + loaded.skipped.len() + loaded.errors.len() > 0,
        "a JSON object was dropped without a word"
    );
}
