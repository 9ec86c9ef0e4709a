//! Intents offline: SecurityIntents and bindings read from files (kubefence's
//! `kubefence.dev/v1alpha1` or Nimbus's `intent.security.nimbus.com/v1alpha1`,
//! unchanged), resolved against a cluster's workloads, and rendered by the
//! engine adapters. The operator's controller resolves the same way.
//!
//! Nimbus's binding selects by `spec.selector.workloadSelector.matchLabels`;
//! kubefence's by `spec.selector` (matchLabels and matchExpressions).
//! [`import`] converts a Nimbus object into kubefence's.

use std::collections::{BTreeMap, BTreeSet};

use kubefence_core::Cluster;
use kubefence_core::intent::{self, Intent, Options as IntentOptions, Subject};
use kubefence_core::policy::PolicyTypes;
use kubefence_core::quarantine::DEFAULT_PROTECTED_NAMESPACES;
use kubefence_core::ruleset::{Enforcement, Engine, NetworkPolicyOptions, RuleSet};
use kubefence_core::selector::LabelSelector;
use serde_json::{Value, json};

use crate::adapters;
use crate::crd::GROUP;
use crate::crd::intent::NIMBUS_GROUP;

/// Nimbus's annotation for an intent's description (its tutorial's
/// SecurityIntents carry `intent.nimbus.io/title`, `/severity` and
/// `/description`).
pub const NIMBUS_DESCRIPTION_ANNOTATION: &str = "intent.nimbus.io/description";

/// The kinds this module reads.
pub const KINDS: [&str; 3] = [
    "SecurityIntent",
    "SecurityIntentBinding",
    "ClusterSecurityIntentBinding",
];

/// A binding as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub kind: String,
    /// Empty for a ClusterSecurityIntentBinding.
    pub namespace: String,
    pub name: String,
    pub intents: Vec<String>,
    pub selector: LabelSelector,
    /// ClusterSecurityIntentBinding: which namespaces (None: all but the
    /// protected ones).
    pub namespace_selector: Option<LabelSelector>,
}

impl Binding {
    pub fn is_cluster(&self) -> bool {
        self.namespace.is_empty()
    }

    /// The name its objects are named after: the binding's own name, and
    /// `cluster-<name>` for a ClusterSecurityIntentBinding (so a namespaced
    /// binding of the same name never shares its objects' names).
    pub fn subject_name(&self) -> String {
        if self.is_cluster() {
            format!("cluster-{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The name of its IntentPolicy in each namespace it applies to (a
    /// DNS-1123 subdomain: cut and hashed when `cluster-` makes it too long).
    pub fn policy_name(&self) -> String {
        kubefence_core::naming::fit_to(
            self.subject_name(),
            &format!("intentpolicy/{}", self.id()),
            crate::crd::intent::bounds::NAME,
        )
    }

    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Everything intent-related the inputs hold, and what was wrong.
#[derive(Clone, Debug, Default)]
pub struct IntentInputs {
    pub intents: BTreeMap<String, Intent>,
    pub bindings: Vec<Binding>,
    /// `(where, message)`.
    pub errors: Vec<(String, String)>,
}

/// Whether `object` is one of [`KINDS`] in kubefence's or Nimbus's group.
pub fn is_intent_object(object: &Value) -> bool {
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g);
    let kind = object["kind"].as_str().unwrap_or_default();
    matches!(group, Some(g) if g == GROUP || g == NIMBUS_GROUP) && KINDS.contains(&kind)
}

/// Reads the intent objects among `objects` (`(where, object)`).
pub fn read(objects: &[(String, Value)]) -> IntentInputs {
    let mut out = IntentInputs::default();
    for (location, object) in objects.iter().filter(|(_, o)| is_intent_object(o)) {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let result = match kind {
            "SecurityIntent" => read_intent(&name, object).map(|i| {
                if out.intents.insert(name.clone(), i).is_some() {
                    out.errors.push((
                        location.clone(),
                        format!("SecurityIntent {name} given twice; the later one is used"),
                    ));
                }
            }),
            _ => read_binding(kind, &name, object).map(|b| out.bindings.push(b)),
        };
        if let Err(message) = result {
            out.errors
                .push((location.clone(), format!("{kind} {name}: {message}")));
        }
    }
    out.bindings.sort_by_key(Binding::id);
    out
}

fn read_intent(name: &str, object: &Value) -> Result<Intent, String> {
    if name.is_empty() {
        return Err("metadata.name is missing".into());
    }
    let spec = &object["spec"]["intent"];
    let id = spec["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("spec.intent.id is missing")?;
    let enforcement = match spec["action"].as_str() {
        Some("Enforce") | Some("Block") => Enforcement::Enforce,
        Some("Audit") => Enforcement::Audit,
        other => {
            return Err(format!(
                "spec.intent.action {other:?}: expected Enforce, Audit (or Nimbus's Block)"
            ));
        }
    };
    let params: BTreeMap<String, Vec<String>> = match spec.get("params") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(p) => serde_json::from_value(p.clone())
            .map_err(|e| format!("spec.intent.params: {e} (a map of string lists)"))?,
    };
    // Nimbus's tutorial puts the description in an annotation
    // (`intent.nimbus.io/description`, beside `/title` and `/severity`);
    // spec.intent.description wins when both are given.
    let description = spec["description"]
        .as_str()
        .or_else(|| object["metadata"]["annotations"][NIMBUS_DESCRIPTION_ANNOTATION].as_str())
        .map(|d| d.trim().to_string());
    Ok(Intent {
        name: name.to_string(),
        id: id.to_string(),
        enforcement,
        description,
        params,
    })
}

fn read_binding(kind: &str, name: &str, object: &Value) -> Result<Binding, String> {
    if name.is_empty() {
        return Err("metadata.name is missing".into());
    }
    let cluster = kind == "ClusterSecurityIntentBinding";
    let namespace = if cluster {
        String::new()
    } else {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    };
    let spec = &object["spec"];
    let intents: Vec<String> = spec["intents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if intents.is_empty() {
        return Err("spec.intents is empty".into());
    }
    // Nimbus: spec.selector.workloadSelector; kubefence: spec.selector.
    let raw_selector = spec["selector"]
        .get("workloadSelector")
        .unwrap_or(&spec["selector"]);
    let selector = selector(raw_selector).map_err(|e| format!("spec.selector: {e}"))?;
    if selector.is_empty() {
        return Err(
            "spec.selector is empty: it would select every pod; name the pods (matchLabels or matchExpressions)"
                .into(),
        );
    }
    let namespace_selector = match spec.get("namespaceSelector") {
        Some(v) if !v.is_null() => {
            Some(selector_of(v).map_err(|e| format!("spec.namespaceSelector: {e}"))?)
        }
        _ => match spec["selector"].get("nsSelector") {
            // Nimbus: matchNames / excludeNames.
            Some(ns) if !ns.is_null() => Some(nimbus_namespaces(ns)?),
            _ => None,
        },
    };
    Ok(Binding {
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
        intents,
        selector,
        namespace_selector,
    })
}

fn selector(v: &Value) -> Result<LabelSelector, String> {
    if v.is_null() {
        return Ok(LabelSelector::everything());
    }
    selector_of(v)
}

fn selector_of(v: &Value) -> Result<LabelSelector, String> {
    let meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    crate::convert::label_selector(&meta, "selector").map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn nimbus_namespaces(ns: &Value) -> Result<LabelSelector, String> {
    let names = |field: &str| -> Vec<String> {
        ns[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut expressions = Vec::new();
    let key = kubefence_core::model::NAMESPACE_NAME_LABEL;
    let include = names("matchNames");
    let exclude = names("excludeNames");
    if !include.is_empty() {
        expressions.push(
            kubefence_core::selector::Requirement::new(
                key,
                kubefence_core::selector::Operator::In,
                include,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    if !exclude.is_empty() {
        expressions.push(
            kubefence_core::selector::Requirement::new(
                key,
                kubefence_core::selector::Operator::NotIn,
                exclude,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    Ok(LabelSelector::new(BTreeMap::new(), expressions))
}

/// What one engine gets for one binding in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineOutput {
    pub engine: Engine,
    pub objects: Vec<Value>,
    /// `(intent, reason)`.
    pub unsupported: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// One binding resolved in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub binding: String,
    pub namespace: String,
    /// `namespace/Kind/name` of the workloads whose pods it selects.
    pub selects: Vec<String>,
    /// `(intent name, error)`: unknown ids, missing intents, bad params.
    pub errors: Vec<(String, String)>,
    pub rule_sets: Vec<RuleSet>,
    pub engines: Vec<EngineOutput>,
}

/// Resolves every binding against `cluster` and renders it for `engines`.
pub fn resolve_all(
    inputs: &IntentInputs,
    cluster: &Cluster,
    engines: &[Engine],
    opts: &IntentOptions,
) -> Vec<Resolved> {
    let mut out = Vec::new();
    for binding in &inputs.bindings {
        for namespace in namespaces_of(binding, cluster) {
            out.push(resolve_one(
                inputs, binding, &namespace, cluster, engines, opts,
            ));
        }
    }
    out
}

/// The namespaces `binding` applies to: its own, or for a cluster binding
/// those its namespaceSelector selects (all but the protected ones without
/// one).
pub fn namespaces_of(binding: &Binding, cluster: &Cluster) -> Vec<String> {
    if !binding.namespace.is_empty() {
        return vec![binding.namespace.clone()];
    }
    let mut names: BTreeSet<String> = cluster.namespaces.keys().cloned().collect();
    names.extend(cluster.workloads.iter().map(|w| w.namespace.clone()));
    names
        .into_iter()
        .filter(|ns| match &binding.namespace_selector {
            Some(sel) => cluster
                .namespace_labels(ns)
                .cloned()
                .map(|l| sel.matches(&l))
                .unwrap_or_else(|| sel.matches(&kubefence_core::Namespace::implicit(ns).labels)),
            None => !DEFAULT_PROTECTED_NAMESPACES.contains(&ns.as_str()),
        })
        .collect()
}

/// One binding in one namespace: its rule sets and each engine's objects.
pub fn resolve_one(
    inputs: &IntentInputs,
    binding: &Binding,
    namespace: &str,
    cluster: &Cluster,
    engines: &[Engine],
    opts: &IntentOptions,
) -> Resolved {
    let subject = Subject {
        binding: binding.subject_name(),
        namespace: namespace.to_string(),
        selector: binding.selector.clone(),
    };
    let mut selects: Vec<String> = cluster
        .workloads
        .iter()
        .filter(|w| w.namespace == namespace)
        .filter(|w| binding.selector.matches(&w.pod_labels))
        .map(|w| w.id())
        .collect();
    selects.sort();
    selects.dedup();
    let mut errors = Vec::new();
    let mut rule_sets = Vec::new();
    for name in &binding.intents {
        let Some(intent) = inputs.intents.get(name) else {
            errors.push((name.clone(), format!("SecurityIntent {name} not found")));
            continue;
        };
        match intent::resolve(intent, &subject, opts) {
            // Objects are named by binding and intent id: two intents of
            // one id in one binding would write the same objects.
            Ok(r) => match rule_sets.iter().find(|s: &&RuleSet| s.name == r.name) {
                Some(first) => errors.push((
                    name.clone(),
                    format!(
                        "intent id {} is already bound by SecurityIntent {} in this binding; bind one of them only",
                        intent.id,
                        first
                            .annotations
                            .get(intent::INTENT_ANNOTATION)
                            .map(String::as_str)
                            .unwrap_or_default()
                    ),
                )),
                None => rule_sets.push(r),
            },
            Err(e) => errors.push((name.clone(), e.to_string())),
        }
    }
    let engines = engines
        .iter()
        .map(|&engine| render_engine(engine, &rule_sets))
        .collect();
    Resolved {
        binding: binding.id(),
        namespace: namespace.to_string(),
        selects,
        errors,
        rule_sets,
        engines,
    }
}

/// The objects of `engine` for a binding's rule sets: each is rendered with
/// the others' isolation known (a NetworkPolicy allow adds to it).
pub fn render_engine(engine: Engine, rule_sets: &[RuleSet]) -> EngineOutput {
    let opts = adapters::Options {
        network_policy: NetworkPolicyOptions {
            isolated_elsewhere: PolicyTypes {
                ingress: rule_sets.iter().any(|s| s.ingress.isolate),
                egress: rule_sets.iter().any(|s| s.egress.isolate),
            },
        },
        ..adapters::Options::default()
    };
    let mut out = EngineOutput {
        engine,
        objects: Vec::new(),
        unsupported: Vec::new(),
        warnings: Vec::new(),
    };
    for set in rule_sets {
        let intent = set
            .annotations
            .get(intent::INTENT_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        match adapters::render(engine, set, &opts) {
            Ok(r) => {
                out.objects.push(r.object);
                out.warnings
                    .extend(r.warnings.into_iter().map(|w| format!("{intent}: {w}")));
            }
            Err(u) => out.unsupported.push((intent, u.reason)),
        }
    }
    out
}

/// The document `kubefence intents render` prints for one resolution.
pub fn document(r: &Resolved) -> Value {
    json!({
        "binding": r.binding,
        "namespace": r.namespace,
        "selects": r.selects,
        "errors": r.errors.iter().map(|(i, e)| json!({"intent": i, "error": e})).collect::<Vec<_>>(),
        "engines": r.engines.iter().map(|e| json!({
            "engine": e.engine.as_str(),
            "state": if e.objects.is_empty() { "Unsupported" } else { "Applied" },
            "objects": e.objects,
            "unsupported": e.unsupported.iter().map(|(i, r)| json!({"intent": i, "reason": r})).collect::<Vec<_>>(),
            "warnings": e.warnings,
        })).collect::<Vec<_>>(),
    })
}

/// A Nimbus object as kubefence's (None when it is not a Nimbus intent
/// object): same names and fields; `Block` becomes `Enforce`; a binding's
/// `workloadSelector` becomes `selector`, Nimbus's namespace lists a
/// `namespaceSelector`; Nimbus-only fields (`cel`, `nodeSelector`, status)
/// are dropped and listed in the second value.
pub fn import(object: &Value) -> Option<(Value, Vec<String>)> {
    let (group, _) = object["apiVersion"].as_str()?.split_once('/')?;
    if group != NIMBUS_GROUP || !is_intent_object(object) {
        return None;
    }
    let kind = object["kind"].as_str()?;
    let mut dropped = Vec::new();
    let mut metadata = json!({"name": object["metadata"]["name"]});
    for field in ["namespace", "labels", "annotations"] {
        if let Some(v) = object["metadata"].get(field) {
            metadata[field] = v.clone();
        }
    }
    let spec = &object["spec"];
    let new_spec = if kind == "SecurityIntent" {
        let mut intent = spec["intent"].clone();
        if intent["action"] == "Block" {
            intent["action"] = json!("Enforce");
        }
        json!({"intent": intent})
    } else {
        let mut s = json!({
            "intents": spec["intents"],
            "selector": spec["selector"].get("workloadSelector").cloned().unwrap_or(json!({})),
        });
        if let Some(sel) = spec["selector"]
            .get("nsSelector")
            .filter(|v| !v.is_null())
            .and_then(|ns| nimbus_namespaces(ns).ok())
        {
            s["namespaceSelector"] =
                serde_json::to_value(crate::render::label_selector(&sel)).unwrap_or(Value::Null);
        }
        if spec.get("cel").is_some() {
            dropped.push("spec.cel".to_string());
        }
        if spec["selector"].get("nodeSelector").is_some() {
            dropped.push("spec.selector.nodeSelector".to_string());
        }
        s
    };
    Some((
        json!({
            "apiVersion": format!("{GROUP}/v1alpha1"),
            "kind": kind,
            "metadata": metadata,
            "spec": new_spec,
        }),
        dropped,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn nimbus() -> Vec<(String, Value)> {
        vec![
            (
                "a.yaml#0".into(),
                json!({"apiVersion": "intent.security.nimbus.com/v1alpha1", "kind": "SecurityIntent",
                   "metadata": {"name": "pkg-mgr"},
                   "spec": {"intent": {"id": "swDeploymentTools", "action": "Block", "description": "d"}}}),
            ),
            (
                "a.yaml#1".into(),
                json!({"apiVersion": "intent.security.nimbus.com/v1alpha1", "kind": "SecurityIntentBinding",
                   "metadata": {"name": "b", "namespace": "shop"},
                   "spec": {"intents": [{"name": "pkg-mgr"}, {"name": "missing"}],
                            "selector": {"workloadSelector": {"matchLabels": {"app": "nginx"}}}}}),
            ),
        ]
    }

    #[test]
    fn nimbus_objects_are_read_unchanged() {
        let inputs = read(&nimbus());
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        assert_eq!(inputs.intents["pkg-mgr"].enforcement, Enforcement::Enforce);
        let b = &inputs.bindings[0];
        assert_eq!(b.selector.to_string(), "app=nginx");
        let resolved = resolve_all(
            &inputs,
            &Cluster::default(),
            &Engine::ALL,
            &IntentOptions::default(),
        );
        assert_eq!(resolved.len(), 1);
        // A missing intent is an error of the binding, the others resolve.
        assert_eq!(resolved[0].errors.len(), 1);
        let ka = resolved[0]
            .engines
            .iter()
            .find(|e| e.engine == Engine::KubeArmor)
            .unwrap();
        assert_eq!(ka.objects.len(), 1);
        let np = resolved[0]
            .engines
            .iter()
            .find(|e| e.engine == Engine::NetworkPolicy)
            .unwrap();
        assert!(np.objects.is_empty());
        assert_eq!(np.unsupported.len(), 1);
    }

    /// Nimbus's tutorial SecurityIntent: title, severity and description
    /// as annotations. The description becomes the intent's (KubeArmor's
    /// `message`); spec.intent.description wins over it.
    #[test]
    fn nimbus_annotations_give_the_description() {
        let si = |spec_description: Option<&str>| {
            let mut intent = json!({"id": "pkgMgrs", "action": "Block"});
            if let Some(d) = spec_description {
                intent["description"] = json!(d);
            }
            (
                "x".to_string(),
                json!({"apiVersion": "intent.security.nimbus.com/v1alpha1", "kind": "SecurityIntent",
                   "metadata": {"name": "package-mgrs", "annotations": {
                       "intent.nimbus.io/title": "Package Manager Execution Prevention",
                       "intent.nimbus.io/severity": "Medium",
                       "intent.nimbus.io/description": "This intent blocks package managers.\n"}},
                   "spec": {"intent": intent}}),
            )
        };
        let read = read(&[si(None)]);
        assert_eq!(
            read.intents["package-mgrs"].description.as_deref(),
            Some("This intent blocks package managers.")
        );
        let read2 = super::read(&[si(Some("from the spec"))]);
        assert_eq!(
            read2.intents["package-mgrs"].description.as_deref(),
            Some("from the spec")
        );
    }

    #[test]
    fn an_empty_selector_is_refused() {
        let objects = vec![(
            "x".to_string(),
            json!({"apiVersion": "kubefence.dev/v1alpha1", "kind": "SecurityIntentBinding",
               "metadata": {"name": "b", "namespace": "shop"},
               "spec": {"intents": [{"name": "i"}], "selector": {}}}),
        )];
        let inputs = read(&objects);
        assert!(inputs.bindings.is_empty());
        assert!(inputs.errors[0].1.contains("empty"), "{:?}", inputs.errors);
    }

    #[test]
    fn import_converts_nimbus_to_kubefence() {
        let objects = nimbus();
        let (si, dropped) = import(&objects[0].1).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(si["apiVersion"], "kubefence.dev/v1alpha1");
        assert_eq!(si["spec"]["intent"]["action"], "Enforce");
        let (sib, _) = import(&objects[1].1).unwrap();
        assert_eq!(
            sib["spec"]["selector"],
            json!({"matchLabels": {"app": "nginx"}})
        );
        assert_eq!(sib["metadata"]["namespace"], "shop");
        // Ours read back the same.
        let back = read(&[("x".into(), si), ("y".into(), sib)]);
        assert_eq!(back.bindings, read(&objects).bindings);
        assert!(
            import(&json!({"apiVersion": "kubefence.dev/v1alpha1", "kind": "SecurityIntent"}))
                .is_none()
        );
    }
}
