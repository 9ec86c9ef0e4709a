//! security.kubearmor.com/v1 KubeArmorPolicy: the process and file rules
//! (KubeArmor's network rules match protocols only, not peers, so traffic
//! rules are left to the network engines).
//!
//! KubeArmor's selector takes `matchLabels` only: a subject with
//! matchExpressions is Unsupported rather than widened to the pods its
//! labels alone would match (Nimbus's adapter widens it silently).

use kubefence_core::ruleset::{Enforcement, Engine, PathRule, RuleSet, Unsupported};
use serde_json::{Map, Value, json};

use super::{Rendered, envelope};

pub fn render(rules: &RuleSet) -> Result<Rendered, Unsupported> {
    if !rules.subject.match_expressions.is_empty() {
        return Err(Unsupported::new(
            Engine::KubeArmor,
            format!(
                "KubeArmorPolicy selects by matchLabels only; the binding's selector {} has matchExpressions, and dropping them would select more pods",
                rules.subject
            ),
        ));
    }
    let mut spec = Map::new();
    spec.insert(
        "selector".into(),
        json!({"matchLabels": rules.subject.match_labels}),
    );
    if !rules.process.is_empty() {
        spec.insert("process".into(), section(&rules.process, false));
    }
    if !rules.file.is_empty() {
        spec.insert("file".into(), section(&rules.file, true));
    }
    spec.insert(
        "action".into(),
        json!(match rules.enforcement {
            Enforcement::Enforce => "Block",
            Enforcement::Audit => "Audit",
        }),
    );
    if let Some(message) = rules
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        spec.insert("message".into(), json!(message));
    }
    Ok(Rendered {
        object: envelope(Engine::KubeArmor, rules, Value::Object(spec)),
        warnings: Vec::new(),
    })
}

fn section(paths: &[PathRule], file: bool) -> Value {
    let mut out = Map::new();
    let match_paths: Vec<Value> = paths
        .iter()
        .filter(|p| !p.directory)
        .map(|p| {
            let mut v = json!({"path": p.path});
            if file && p.read_only {
                v["readOnly"] = json!(true);
            }
            v
        })
        .collect();
    let match_directories: Vec<Value> = paths
        .iter()
        .filter(|p| p.directory)
        .map(|p| {
            let mut v = json!({"dir": p.path});
            if p.recursive {
                v["recursive"] = json!(true);
            }
            if file && p.read_only {
                v["readOnly"] = json!(true);
            }
            v
        })
        .collect();
    if !match_paths.is_empty() {
        out.insert("matchPaths".into(), Value::Array(match_paths));
    }
    if !match_directories.is_empty() {
        out.insert("matchDirectories".into(), Value::Array(match_directories));
    }
    Value::Object(out)
}
