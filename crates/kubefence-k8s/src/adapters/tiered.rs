//! What ClusterNetworkPolicy (v1alpha2) and AdminNetworkPolicy (v1alpha1)
//! share: a cluster-scoped object with a subject, a priority and ordered
//! rules whose first match decides.
//!
//! Rules are written in the rule set's precedence: its denies, then its
//! allows, then, for an isolated direction, a deny of everything. Peers are
//! namespaces and pods; egress peers also take `networks` (CIDRs without
//! exceptions). Ingress peers cannot name addresses, so a source outside
//! the cluster is not matched by an ingress rule: an isolated ingress or an
//! ingress deny of everything leaves such sources to other policies, and
//! the rendering says so in a warning.

use kubefence_core::model::NAMESPACE_NAME_LABEL;
use kubefence_core::policy::{PortRef, PortSpec};
use kubefence_core::ruleset::{
    Endpoint, Enforcement, Engine, Namespaces, RuleSet, TrafficRule, Unsupported,
};
use kubefence_core::selector::{LabelSelector, Labels};
use serde_json::{Map, Value, json};

use super::{Rendered, envelope, selector_json};

/// The most rules, peers or ports per list either API accepts.
const MAX_ITEMS: usize = 25;
/// The longest rule name.
const MAX_RULE_NAME: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    /// v1alpha2: actions Accept/Deny/Pass, `protocols`, a tier.
    ClusterNetworkPolicy { tier: super::Tier },
    /// v1alpha1: actions Allow/Deny/Pass, `ports`.
    AdminNetworkPolicy,
}

impl Flavor {
    fn engine(self) -> Engine {
        match self {
            Self::ClusterNetworkPolicy { .. } => Engine::ClusterNetworkPolicy,
            Self::AdminNetworkPolicy => Engine::AdminNetworkPolicy,
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Self::ClusterNetworkPolicy { .. } => "Accept",
            Self::AdminNetworkPolicy => "Allow",
        }
    }
}

pub(super) fn render(
    rules: &RuleSet,
    flavor: Flavor,
    priority: u16,
) -> Result<Rendered, Unsupported> {
    let engine = flavor.engine();
    let unsupported = |reason: String| Unsupported::new(engine, reason);
    if rules.enforcement == Enforcement::Audit {
        return Err(unsupported(format!(
            "{} has no audit mode; use action Enforce",
            engine.object_kind()
        )));
    }
    if priority > 1000 {
        return Err(unsupported(format!("priority {priority} is over 1000")));
    }
    let mut warnings = Vec::new();
    let mut spec = Map::new();
    if let Flavor::ClusterNetworkPolicy { tier } = flavor {
        spec.insert("tier".into(), json!(tier.as_str()));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert(
        "subject".into(),
        json!({"pods": {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: rules.namespace}},
            "podSelector": selector_json(&rules.subject),
        }}),
    );
    for (direction, traffic) in [("ingress", &rules.ingress), ("egress", &rules.egress)] {
        if traffic.is_unrestricted() {
            continue;
        }
        let ingress = direction == "ingress";
        let mut out = Vec::new();
        let ordered = traffic
            .deny
            .iter()
            .map(|r| ("Deny", "deny", r.clone()))
            .chain(
                traffic
                    .allow
                    .iter()
                    .map(|r| (flavor.allow(), "allow", r.clone())),
            )
            .chain(traffic.isolate.then(|| {
                (
                    "Deny",
                    "deny",
                    TrafficRule {
                        name: "all".into(),
                        peers: vec![Endpoint::All],
                        ports: Vec::new(),
                    },
                )
            }));
        for (action, verb, rule) in ordered {
            let peers = peers(rules, &rule, ingress, &mut warnings, direction)
                .map_err(|r| unsupported(format!("{direction} rule {}: {r}", rule.name)))?;
            if peers.len() > MAX_ITEMS {
                return Err(unsupported(format!(
                    "{direction} rule {}: {} peers, at most {MAX_ITEMS}",
                    rule.name,
                    peers.len()
                )));
            }
            let mut name = format!("{}-{verb}-{}-{direction}", rules.rule_prefix, rule.name);
            name.truncate(MAX_RULE_NAME);
            let mut entry = json!({
                "name": name,
                "action": action,
                (if ingress { "from" } else { "to" }): peers,
            });
            if !rule.ports.is_empty() {
                let (field, ports) = ports(flavor, &rule.ports);
                if ports.len() > MAX_ITEMS {
                    return Err(unsupported(format!(
                        "{direction} rule {}: {} ports, at most {MAX_ITEMS}",
                        rule.name,
                        ports.len()
                    )));
                }
                entry[field] = Value::Array(ports);
            }
            out.push(entry);
        }
        if out.len() > MAX_ITEMS {
            return Err(unsupported(format!(
                "{} {direction} rules, at most {MAX_ITEMS}",
                out.len()
            )));
        }
        spec.insert(direction.into(), Value::Array(out));
    }
    Ok(Rendered {
        object: envelope(engine, rules, Value::Object(spec)),
        warnings,
    })
}

fn peers(
    rules: &RuleSet,
    rule: &TrafficRule,
    ingress: bool,
    warnings: &mut Vec<String>,
    direction: &str,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for peer in &rule.peers {
        match peer {
            Endpoint::All => {
                out.push(json!({"namespaces": {}}));
                if ingress {
                    warnings.push(format!(
                        "{direction} rule {}: ingress peers cannot name addresses, so sources outside the cluster are not matched",
                        rule.name
                    ));
                } else {
                    out.push(json!({"networks": ["0.0.0.0/0", "::/0"]}));
                }
            }
            Endpoint::Pods { namespaces, pods } => {
                let ns = match namespaces {
                    Namespaces::Own => own(&rules.namespace),
                    Namespaces::Named(n) => own(n),
                    Namespaces::Selector(s) => s.clone(),
                };
                out.push(match pods {
                    None => json!({"namespaces": selector_json(&ns)}),
                    Some(p) => json!({"pods": {
                        "namespaceSelector": selector_json(&ns),
                        "podSelector": selector_json(p),
                    }}),
                });
            }
            Endpoint::Cidr(b) => {
                if ingress {
                    return Err(
                        "ingress peers cannot name addresses (no networks in ingress)".into(),
                    );
                }
                if !b.except.is_empty() {
                    return Err(format!(
                        "networks take no exceptions ({} except {:?})",
                        b.cidr, b.except
                    ));
                }
                out.push(json!({"networks": [b.cidr.to_string()]}));
            }
            Endpoint::Fqdn(name) => {
                return Err(format!(
                    "DNS names ({name}) are only in the experimental channel (domainNames); use the cilium engine"
                ));
            }
        }
    }
    Ok(out)
}

fn own(namespace: &str) -> LabelSelector {
    LabelSelector::from_labels(Labels::from([(
        NAMESPACE_NAME_LABEL.to_string(),
        namespace.to_string(),
    )]))
}

fn ports(flavor: Flavor, ports: &[PortSpec]) -> (&'static str, Vec<Value>) {
    match flavor {
        Flavor::ClusterNetworkPolicy { .. } => (
            "protocols",
            ports
                .iter()
                .map(|p| {
                    let proto = p.protocol.as_str().to_ascii_lowercase();
                    // A range needs start < end (the CRD's CEL rule): a one-port
                    // range is a port number.
                    let end = p
                        .end_port
                        .filter(|e| matches!(&p.port, Some(PortRef::Number(n)) if e > n));
                    match (&p.port, end) {
                        (None, _) => json!({proto: {}}),
                        (Some(PortRef::Name(n)), _) => json!({"destinationNamedPort": n}),
                        (Some(PortRef::Number(n)), None) => {
                            json!({proto: {"destinationPort": {"number": n}}})
                        }
                        (Some(PortRef::Number(n)), Some(end)) => {
                            json!({proto: {"destinationPort": {"range": {"start": n, "end": end}}}})
                        }
                    }
                })
                .collect(),
        ),
        Flavor::AdminNetworkPolicy => (
            "ports",
            ports
                .iter()
                .map(|p| {
                    let proto = p.protocol.as_str();
                    // A range needs start < end (the CRD's CEL rule): a one-port
                    // range is a port number.
                    let end = p
                        .end_port
                        .filter(|e| matches!(&p.port, Some(PortRef::Number(n)) if e > n));
                    match (&p.port, end) {
                        (None, _) => {
                            json!({"portRange": {"protocol": proto, "start": 1, "end": 65535}})
                        }
                        (Some(PortRef::Name(n)), _) => json!({"namedPort": n}),
                        (Some(PortRef::Number(n)), None) => {
                            json!({"portNumber": {"protocol": proto, "port": n}})
                        }
                        (Some(PortRef::Number(n)), Some(end)) => {
                            json!({"portRange": {"protocol": proto, "start": n, "end": end}})
                        }
                    }
                })
                .collect(),
        ),
    }
}
