//! cilium.io/v2 CiliumNetworkPolicy.
//!
//! Cilium's deny rules win over its allow rules whatever their order, which
//! is the rule set's semantics. Per direction:
//! - isolated without allow rules: a deny of everything (an allow-less
//!   policy would not isolate), ingress keeping the pod's own node as
//!   NetworkPolicy does (kubelet probes);
//! - isolated with allow rules: the allows (Cilium's default deny applies);
//! - not isolated: the rules with `enableDefaultDeny: false` for that
//!   direction, so the policy denies or allows without isolating.
//!
//! Peers: pods by `fromEndpoints`/`toEndpoints` (a namespaced policy's
//! endpoint selector is confined to its namespace unless it names
//! `io.kubernetes.pod.namespace`, so other namespaces are always said),
//! addresses by `toCIDRSet`/`fromCIDRSet`, DNS names by `toFQDNs` (allow
//! only; the DNS allow rule then carries `rules.dns` so Cilium's DNS proxy
//! sees the lookups toFQDNs needs).

use kubefence_core::policy::{PortRef, PortSpec};
use kubefence_core::ruleset::{
    Endpoint, Engine, Namespaces, RuleSet, Traffic, TrafficRule, Unsupported,
};
use kubefence_core::selector::{LabelSelector, Operator, Requirement};
use serde_json::{Map, Value, json};

use super::{Rendered, envelope, selector_json};

/// The namespace of a pod, as Cilium labels endpoints.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The prefix of namespace labels on endpoints.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// Cilium entities a denied ingress covers besides pods: all but `host`
/// (the pod's own node, where kubelet probes come from; NetworkPolicy
/// always allows it too) and `kube-apiserver` (on a control-plane node it
/// is the host's identity as well).
pub const DENIED_INGRESS_ENTITIES: [&str; 6] = [
    "world",
    "remote-node",
    "ingress",
    "health",
    "init",
    "unmanaged",
];

pub fn render(rules: &RuleSet) -> Result<Rendered, Unsupported> {
    let unsupported = |reason: String| Unsupported::new(Engine::Cilium, reason);
    if rules.enforcement == kubefence_core::ruleset::Enforcement::Audit {
        return Err(unsupported(
            "CiliumNetworkPolicy has no per-policy audit mode (policy-audit-mode is agent-wide); use action Enforce".into(),
        ));
    }
    let mut spec = Map::new();
    spec.insert("endpointSelector".into(), selector_json(&rules.subject));
    let mut default_deny = Map::new();
    let has_fqdn = rules
        .egress
        .allow
        .iter()
        .any(|r| r.peers.iter().any(|p| matches!(p, Endpoint::Fqdn(_))));
    for (direction, traffic) in [("ingress", &rules.ingress), ("egress", &rules.egress)] {
        if traffic.is_unrestricted() {
            continue;
        }
        let ingress = direction == "ingress";
        let (allow, deny) = direction_rules(traffic);
        let mut allow_out = Vec::new();
        for rule in &allow {
            allow_out.extend(
                cilium_rules(rule, ingress, false, has_fqdn)
                    .map_err(|r| unsupported(format!("{direction} rule {}: {r}", rule.name)))?,
            );
        }
        let mut deny_out = Vec::new();
        for rule in &deny {
            deny_out.extend(
                cilium_rules(rule, ingress, true, false).map_err(|r| {
                    unsupported(format!("{direction} deny rule {}: {r}", rule.name))
                })?,
            );
        }
        if !allow_out.is_empty() {
            spec.insert(direction.into(), Value::Array(allow_out));
        }
        if !deny_out.is_empty() {
            spec.insert(format!("{direction}Deny"), Value::Array(deny_out));
        }
        if !traffic.isolate {
            default_deny.insert(direction.into(), Value::Bool(false));
        }
    }
    if has_fqdn && !rules.egress.allow.iter().any(is_dns_rule) {
        return Err(unsupported(
            "toFQDNs needs the DNS lookups to pass Cilium's DNS proxy: allow DNS (port 53) in the same rule set".into(),
        ));
    }
    if !default_deny.is_empty() {
        spec.insert("enableDefaultDeny".into(), Value::Object(default_deny));
    }
    Ok(Rendered {
        object: envelope(Engine::Cilium, rules, Value::Object(spec)),
        warnings: Vec::new(),
    })
}

/// The allow and deny rules to write: an isolated direction without allows
/// becomes a deny of everything.
fn direction_rules(traffic: &Traffic) -> (Vec<TrafficRule>, Vec<TrafficRule>) {
    let mut deny = traffic.deny.clone();
    if traffic.isolate && traffic.allow.is_empty() {
        deny = vec![TrafficRule {
            name: "deny-all".into(),
            peers: vec![Endpoint::All],
            ports: Vec::new(),
        }];
    }
    (traffic.allow.clone(), deny)
}

fn is_dns_rule(rule: &TrafficRule) -> bool {
    rule.is_dns()
}

/// One Cilium rule per peer (the L3 fields of one Cilium rule are not
/// meant to be mixed), each with the rule's ports.
fn cilium_rules(
    rule: &TrafficRule,
    ingress: bool,
    deny: bool,
    dns_visibility: bool,
) -> Result<Vec<Value>, String> {
    let (endpoints, cidrs, entities) = if ingress {
        ("fromEndpoints", "fromCIDRSet", "fromEntities")
    } else {
        ("toEndpoints", "toCIDRSet", "toEntities")
    };
    let ports = to_ports(
        &rule.ports,
        dns_visibility && !deny && !ingress && is_dns_rule(rule),
    )?;
    let mut out = Vec::new();
    for peer in &rule.peers {
        let l3: Vec<Value> = match peer {
            Endpoint::All if ingress && deny => vec![
                json!({endpoints: [every_namespace()]}),
                json!({entities: DENIED_INGRESS_ENTITIES}),
            ],
            Endpoint::All => vec![json!({entities: ["all"]})],
            Endpoint::Pods { namespaces, pods } => {
                vec![json!({endpoints: [endpoint_selector(namespaces, pods.as_ref())?]})]
            }
            Endpoint::Cidr(b) => {
                let mut set = json!({"cidr": b.cidr.to_string()});
                if !b.except.is_empty() {
                    set["except"] =
                        json!(b.except.iter().map(ToString::to_string).collect::<Vec<_>>());
                }
                vec![json!({cidrs: [set]})]
            }
            Endpoint::Fqdn(name) => {
                if deny || ingress {
                    return Err(format!(
                        "Cilium matches DNS names ({name}) only in egress allow rules"
                    ));
                }
                let matcher = if name.starts_with("*.") {
                    json!({"matchPattern": name})
                } else {
                    json!({"matchName": name})
                };
                vec![json!({"toFQDNs": [matcher]})]
            }
        };
        for mut entry in l3 {
            if let Some(p) = &ports {
                entry["toPorts"] = p.clone();
            }
            out.push(entry);
        }
    }
    Ok(out)
}

fn every_namespace() -> Value {
    json!({"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "Exists"}]})
}

/// A pod peer as a Cilium endpoint selector.
fn endpoint_selector(
    namespaces: &Namespaces,
    pods: Option<&LabelSelector>,
) -> Result<Value, String> {
    let mut selector = pods.cloned().unwrap_or_else(LabelSelector::everything);
    match namespaces {
        Namespaces::Own => {}
        Namespaces::Named(n) => {
            selector
                .match_labels
                .insert(NAMESPACE_LABEL.into(), n.clone());
        }
        Namespaces::Selector(ns) if ns.is_empty() => {
            let exists = Requirement::new(NAMESPACE_LABEL, Operator::Exists, Vec::<String>::new())
                .map_err(|e| e.to_string())?;
            selector.match_expressions.push(exists);
        }
        Namespaces::Selector(ns) => {
            for (k, v) in &ns.match_labels {
                selector
                    .match_labels
                    .insert(format!("{NAMESPACE_LABELS_PREFIX}{k}"), v.clone());
            }
            for r in &ns.match_expressions {
                let mut r = r.clone();
                r.key = format!("{NAMESPACE_LABELS_PREFIX}{}", r.key);
                selector.match_expressions.push(r);
            }
        }
    }
    let selector = LabelSelector::new(selector.match_labels, selector.match_expressions);
    Ok(selector_json(&selector))
}

/// `toPorts`: one entry with every port (Cilium ORs them); `None` when the
/// rule has no ports (every port).
fn to_ports(ports: &[PortSpec], dns_visibility: bool) -> Result<Option<Value>, String> {
    if ports.is_empty() {
        return Ok(None);
    }
    let list: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut port = match &p.port {
                // "0": every port of the protocol.
                None => json!({"port": "0"}),
                Some(PortRef::Number(n)) => json!({"port": n.to_string()}),
                Some(PortRef::Name(name)) => json!({"port": name}),
            };
            port["protocol"] = json!(p.protocol.as_str());
            if let Some(end) = p.end_port {
                port["endPort"] = json!(end);
            }
            port
        })
        .collect();
    let mut entry = json!({"ports": list});
    if dns_visibility {
        entry["rules"] = json!({"dns": [{"matchPattern": "*"}]});
    }
    Ok(Some(json!([entry])))
}
