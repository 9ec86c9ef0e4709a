//! Kubernetes manifests from a [`SynthCluster`]: multi-document YAML that
//! `kubectl apply`, kubefence's loader and network-config-analyzer accept.

use kubefence_core::WorkloadKind;
use kubefence_core::selector::{LabelSelector, Labels};
use serde_json::{Map, Value, json};

use crate::synth::{
    SynthCluster, SynthNamespace, SynthPeer, SynthPolicy, SynthPortRef, SynthRule, SynthService,
    SynthWorkload,
};

/// Every object: Namespaces, workloads, Services, then NetworkPolicies.
pub fn to_yaml(cluster: &SynthCluster) -> String {
    let mut docs = resource_docs(cluster);
    docs.extend(policy_docs(cluster));
    emit_documents(&docs)
}

/// Namespaces, workloads and Services (nca's `--resource_list`).
pub fn resources_yaml(cluster: &SynthCluster) -> String {
    emit_documents(&resource_docs(cluster))
}

/// NetworkPolicies only (nca's `--connectivity`).
pub fn policies_yaml(cluster: &SynthCluster) -> String {
    emit_documents(&policy_docs(cluster))
}

/// Namespaces, workloads and Services as one JSON `kind: List`, as
/// `kubectl get -o json` writes them.
pub fn resources_json(cluster: &SynthCluster) -> String {
    list_json(resource_docs(cluster))
}

/// NetworkPolicies as one JSON `kind: List`.
pub fn policies_json(cluster: &SynthCluster) -> String {
    list_json(policy_docs(cluster))
}

fn list_json(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn resource_docs(cluster: &SynthCluster) -> Vec<Value> {
    let mut docs: Vec<Value> = cluster.namespaces.iter().map(namespace_doc).collect();
    docs.extend(cluster.workloads.iter().map(workload_doc));
    docs.extend(cluster.services.iter().map(service_doc));
    docs
}

fn policy_docs(cluster: &SynthCluster) -> Vec<Value> {
    cluster.policies.iter().map(policy_doc).collect()
}

fn labels_value(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn namespace_doc(ns: &SynthNamespace) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(ns.name));
    if !ns.labels.is_empty() {
        metadata.insert("labels".into(), labels_value(&ns.labels));
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
}

fn pod_spec(w: &SynthWorkload) -> Value {
    let mut container = Map::new();
    container.insert("name".into(), json!("main"));
    container.insert("image".into(), json!("registry.example/app:1.0"));
    if !w.ports.is_empty() {
        let ports: Vec<Value> = w
            .ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                if let Some(name) = &p.name {
                    m.insert("name".into(), json!(name));
                }
                m.insert("containerPort".into(), json!(p.port));
                m.insert("protocol".into(), json!(p.protocol.as_str()));
                Value::Object(m)
            })
            .collect();
        container.insert("ports".into(), Value::Array(ports));
    }
    let mut spec = Map::new();
    spec.insert("containers".into(), json!([container]));
    if matches!(w.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
        spec.insert("restartPolicy".into(), json!("Never"));
    }
    Value::Object(spec)
}

fn workload_doc(w: &SynthWorkload) -> Value {
    let labels = labels_value(&w.pod_labels);
    if w.kind == WorkloadKind::Pod {
        return json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels},
            "spec": pod_spec(w),
        });
    }
    let template = json!({"metadata": {"labels": labels}, "spec": pod_spec(w)});
    let mut spec = Map::new();
    match w.kind {
        WorkloadKind::Deployment | WorkloadKind::ReplicaSet => {
            spec.insert("replicas".into(), json!(1));
        }
        WorkloadKind::StatefulSet => {
            spec.insert("replicas".into(), json!(1));
            spec.insert("serviceName".into(), json!(w.name));
        }
        _ => {}
    }
    // Jobs get their selector from the API server (a manual one needs
    // `manualSelector: true`).
    if !matches!(w.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
        spec.insert("selector".into(), json!({"matchLabels": labels}));
    }
    spec.insert("template".into(), template);
    let (api_version, spec) = match w.kind {
        WorkloadKind::Job => ("batch/v1", Value::Object(spec)),
        WorkloadKind::CronJob => (
            "batch/v1",
            json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": spec}}),
        ),
        _ => ("apps/v1", Value::Object(spec)),
    };
    json!({
        "apiVersion": api_version,
        "kind": w.kind.as_str(),
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels_value(&w.pod_labels)},
        "spec": spec,
    })
}

fn service_doc(s: &SynthService) -> Value {
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let target = match &p.target_name {
                Some(name) => json!(name),
                None => json!(p.target_number),
            };
            json!({"name": p.name, "port": p.port, "targetPort": target, "protocol": p.protocol.as_str()})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {"selector": labels_value(&s.selector), "ports": ports},
    })
}

/// A label selector as Kubernetes writes it (`{}` when empty).
pub fn selector_value(sel: &LabelSelector) -> Value {
    let mut m = Map::new();
    if !sel.match_labels.is_empty() {
        m.insert("matchLabels".into(), labels_value(&sel.match_labels));
    }
    if !sel.match_expressions.is_empty() {
        let exprs: Vec<Value> = sel
            .match_expressions
            .iter()
            .map(|r| {
                let mut e = Map::new();
                e.insert("key".into(), json!(r.key));
                e.insert("operator".into(), json!(r.operator.to_string()));
                if !r.values.is_empty() {
                    e.insert("values".into(), json!(r.values.iter().collect::<Vec<_>>()));
                }
                Value::Object(e)
            })
            .collect();
        m.insert("matchExpressions".into(), Value::Array(exprs));
    }
    Value::Object(m)
}

fn peer_value(peer: &SynthPeer) -> Value {
    match peer {
        SynthPeer::Pods {
            namespace_selector,
            pod_selector,
        } => {
            let mut m = Map::new();
            if let Some(ns) = namespace_selector {
                m.insert("namespaceSelector".into(), selector_value(ns));
            }
            if let Some(pods) = pod_selector {
                m.insert("podSelector".into(), selector_value(pods));
            }
            Value::Object(m)
        }
        SynthPeer::IpBlock { cidr, except } => {
            let mut b = Map::new();
            b.insert("cidr".into(), json!(cidr.to_string()));
            if !except.is_empty() {
                b.insert(
                    "except".into(),
                    json!(except.iter().map(ToString::to_string).collect::<Vec<_>>()),
                );
            }
            json!({"ipBlock": b})
        }
    }
}

fn rule_value(rule: &SynthRule, peers_key: &str) -> Value {
    let mut m = Map::new();
    if let Some(peers) = &rule.peers {
        m.insert(
            peers_key.into(),
            Value::Array(peers.iter().map(peer_value).collect()),
        );
    }
    if let Some(ports) = &rule.ports {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut pm = Map::new();
                if let Some(proto) = p.protocol {
                    pm.insert("protocol".into(), json!(proto.as_str()));
                }
                match &p.port {
                    Some(SynthPortRef::Number(n)) => {
                        pm.insert("port".into(), json!(n));
                    }
                    Some(SynthPortRef::Name(n)) => {
                        pm.insert("port".into(), json!(n));
                    }
                    None => {}
                }
                if let Some(end) = p.end_port {
                    pm.insert("endPort".into(), json!(end));
                }
                Value::Object(pm)
            })
            .collect();
        m.insert("ports".into(), Value::Array(ports));
    }
    Value::Object(m)
}

fn policy_doc(p: &SynthPolicy) -> Value {
    let mut spec = Map::new();
    spec.insert("podSelector".into(), selector_value(&p.pod_selector));
    if let Some(types) = &p.policy_types {
        spec.insert(
            "policyTypes".into(),
            json!(types.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
        );
    }
    if let Some(rules) = &p.ingress {
        spec.insert(
            "ingress".into(),
            Value::Array(rules.iter().map(|r| rule_value(r, "from")).collect()),
        );
    }
    if let Some(rules) = &p.egress {
        spec.insert(
            "egress".into(),
            Value::Array(rules.iter().map(|r| rule_value(r, "to")).collect()),
        );
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": p.name, "namespace": p.namespace},
        "spec": spec,
    })
}

// === a small block-style YAML emitter ===

/// Documents separated by `---`. Strings are always double-quoted (JSON
/// escapes are valid YAML), so no value is ever re-typed by a YAML reader.
pub fn emit_documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        emit_block(doc, 0, &mut out);
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(Value::String(s.clone()).to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn key_text(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !k.starts_with(['-', '.'])
        && !matches!(
            k,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// Writes a mapping or sequence (non-empty) at `indent`.
fn emit_block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                out.push_str(&pad);
                out.push_str(&key_text(k));
                out.push(':');
                match scalar(val) {
                    Some(s) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        let child = if val.is_array() { indent } else { indent + 2 };
                        emit_block(val, child, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match scalar(item) {
                    Some(s) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        // Put the first line of the nested block after "- ".
                        let mut nested = String::new();
                        emit_block(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_block_yaml() {
        let doc = json!({"a": {"b": [1, {"c": "x", "d": []}], "e": {}}, "f": "true"});
        let text = emit_documents(&[doc]);
        assert_eq!(
            text,
            "---\na:\n  b:\n  - 1\n  - c: \"x\"\n    d: []\n  e: {}\nf: \"true\"\n"
        );
    }
}
