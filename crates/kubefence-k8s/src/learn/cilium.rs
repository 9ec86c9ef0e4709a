//! A core NetworkPolicy as a CiliumNetworkPolicy (`cilium.io/v2`), for
//! `kubefence learn --engine cilium`: the same selections and ports, in
//! Cilium's notation, plus `toFQDNs` for the addresses a DNS answer named
//! (with the DNS proxy rule Cilium needs to learn them).
//!
//! | NetworkPolicy | CiliumNetworkPolicy |
//! |---|---|
//! | podSelector | endpointSelector |
//! | podSelector peer (own namespace) | fromEndpoints/toEndpoints (a namespaced CNP keeps them in its namespace) |
//! | namespaceSelector | `io.cilium.k8s.namespace.labels.<key>` in the endpoint selector; `{}` is every namespace |
//! | ipBlock | fromCIDRSet/toCIDRSet with `except` |
//! | ports | toPorts (`endPort` kept; named ports as names) |
//! | no rule in an isolated direction | `ingress: [{}]` / `egress: [{}]` (Cilium's default deny) |
//!
//! Cilium's endpoint selectors take the label keys as pods carry them
//! (`app`), and `any:`-prefixed ones for Cilium's own; no prefix is added.

use std::collections::{BTreeMap, BTreeSet};

use kubefence_core::learn::PolicyRef;
use kubefence_core::policy::{NetworkPolicy, Peer, PortRef, Rule};
use kubefence_core::selector::LabelSelector;
use serde_json::{Value, json};

const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";
const NAMESPACE_LABELS_PREFIX: &str = "k8s:io.cilium.k8s.namespace.labels.";

fn selector(s: &LabelSelector, prefix: &str) -> Value {
    let labels: BTreeMap<String, String> = s
        .match_labels
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    let expressions: Vec<Value> = s
        .match_expressions
        .iter()
        .map(|r| {
            let mut e =
                json!({"key": format!("{prefix}{}", r.key), "operator": r.operator.to_string()});
            if !r.values.is_empty() {
                e["values"] = json!(r.values.iter().collect::<Vec<_>>());
            }
            e
        })
        .collect();
    let mut out = json!({});
    if !labels.is_empty() {
        out["matchLabels"] = json!(labels);
    }
    if !expressions.is_empty() {
        out["matchExpressions"] = json!(expressions);
    }
    out
}

/// A pod peer as one endpoint selector.
fn endpoints(
    namespace_selector: Option<&LabelSelector>,
    pod_selector: Option<&LabelSelector>,
) -> Value {
    let mut out = pod_selector.map_or_else(|| json!({}), |s| selector(s, ""));
    if let Some(ns) = namespace_selector {
        let ns_part = if ns.is_empty() {
            // Every namespace: any pod that has one.
            json!({"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "Exists"}]})
        } else {
            selector(ns, NAMESPACE_LABELS_PREFIX)
        };
        for key in ["matchLabels", "matchExpressions"] {
            if let Some(part) = ns_part.get(key) {
                match (out.get_mut(key), part) {
                    (Some(Value::Object(have)), Value::Object(add)) => {
                        have.extend(add.clone());
                    }
                    (Some(Value::Array(have)), Value::Array(add)) => have.extend(add.clone()),
                    _ => out[key] = part.clone(),
                }
            }
        }
    }
    out
}

fn ports(rule: &Rule, dns_proxy: bool) -> Option<Value> {
    if rule.ports.is_empty() {
        return None;
    }
    let list: Vec<Value> = rule
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({"protocol": p.protocol.as_str()});
            match &p.port {
                Some(PortRef::Number(n)) => v["port"] = json!(n.to_string()),
                Some(PortRef::Name(name)) => v["port"] = json!(name),
                None => v["port"] = json!("0"),
            }
            if let Some(end) = p.end_port {
                v["endPort"] = json!(end);
            }
            v
        })
        .collect();
    let mut entry = json!({"ports": list});
    if dns_proxy {
        entry["rules"] = json!({"dns": [{"matchPattern": "*"}]});
    }
    Some(json!([entry]))
}

/// One rule as Cilium rules (pods and CIDRs cannot share one Cilium rule
/// entry's peer list, so they are split; each keeps the rule's ports).
fn rules(rule: &Rule, from: bool, is_dns: bool) -> Vec<Value> {
    let (ep_key, cidr_key) = if from {
        ("fromEndpoints", "fromCIDRSet")
    } else {
        ("toEndpoints", "toCIDRSet")
    };
    let eps: Vec<Value> = rule
        .peers
        .iter()
        .filter_map(|p| match p {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => Some(endpoints(
                namespace_selector.as_ref(),
                pod_selector.as_ref(),
            )),
            Peer::IpBlock(_) => None,
        })
        .collect();
    let cidrs: Vec<Value> = rule
        .peers
        .iter()
        .filter_map(|p| match p {
            Peer::IpBlock(b) => {
                let mut v = json!({"cidr": b.cidr.to_string()});
                if !b.except.is_empty() {
                    v["except"] =
                        json!(b.except.iter().map(ToString::to_string).collect::<Vec<_>>());
                }
                Some(v)
            }
            Peer::Pods { .. } => None,
        })
        .collect();
    let mut out = Vec::new();
    let with_ports = |mut v: Value, dns: bool| {
        if let Some(p) = ports(rule, dns) {
            v["toPorts"] = p;
        }
        v
    };
    if rule.peers.is_empty() {
        // Every peer: Cilium's `all` entity and every address.
        let key = if from { "fromEntities" } else { "toEntities" };
        out.push(with_ports(json!({key: ["all"]}), false));
        return out;
    }
    if !eps.is_empty() {
        out.push(with_ports(json!({ep_key: eps}), is_dns && !from));
    }
    if !cidrs.is_empty() {
        out.push(with_ports(json!({cidr_key: cidrs}), false));
    }
    out
}

/// Whether an egress rule is the cluster DNS rule (UDP or TCP 53 to pods).
fn is_dns_rule(rule: &Rule) -> bool {
    !rule.ports.is_empty()
        && rule
            .ports
            .iter()
            .all(|p| p.port == Some(PortRef::Number(53)))
        && rule.peers.iter().all(|p| matches!(p, Peer::Pods { .. }))
        && !rule.peers.is_empty()
}

/// The CiliumNetworkPolicy for `policy`; `refs` name the DNS names behind
/// its address peers (they become `toFQDNs` rules on the same ports).
pub fn cilium_policy(
    policy: &NetworkPolicy,
    refs: &[PolicyRef],
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Value {
    let mut spec = json!({"endpointSelector": selector(&policy.pod_selector, "")});
    if policy.policy_types.ingress {
        let mut ingress: Vec<Value> = policy
            .ingress
            .iter()
            .flat_map(|r| rules(r, true, false))
            .collect();
        if ingress.is_empty() {
            ingress.push(json!({}));
        }
        spec["ingress"] = json!(ingress);
    }
    if policy.policy_types.egress {
        let mut egress: Vec<Value> = Vec::new();
        for rule in &policy.egress {
            egress.extend(rules(rule, false, is_dns_rule(rule)));
            // The names DNS answers gave this rule's addresses.
            let names: BTreeSet<&str> = rule
                .peers
                .iter()
                .filter_map(|p| match p {
                    Peer::IpBlock(b) => Some(b.cidr),
                    Peer::Pods { .. } => None,
                })
                .flat_map(|cidr| {
                    refs.iter()
                        .filter(move |r| r.ip_block == cidr)
                        .filter_map(|r| r.dns.as_deref())
                })
                .collect();
            if !names.is_empty() {
                let mut v = json!({"toFQDNs": names.iter().map(|n| json!({"matchName": n})).collect::<Vec<_>>()});
                if let Some(p) = ports(rule, false) {
                    v["toPorts"] = p;
                }
                egress.push(v);
            }
        }
        if egress.is_empty() {
            egress.push(json!({}));
        }
        spec["egress"] = json!(egress);
    }
    let mut metadata = json!({"name": policy.name, "namespace": policy.namespace});
    if !labels.is_empty() {
        metadata["labels"] = json!(labels);
    }
    if !annotations.is_empty() {
        metadata["annotations"] = json!(annotations);
    }
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata,
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use kubefence_core::Protocol;
    use kubefence_core::policy::{IpBlock, PolicyTypes, PortSpec};

    use super::*;

    fn sel(k: &str, v: &str) -> LabelSelector {
        LabelSelector::from_labels([(k.to_string(), v.to_string())].into())
    }

    fn port(protocol: Protocol, n: u16) -> PortSpec {
        PortSpec {
            protocol,
            port: Some(PortRef::Number(n)),
            end_port: None,
        }
    }

    #[test]
    fn every_peer_kind_has_its_cilium_form() {
        let policy = NetworkPolicy {
            namespace: "shop".into(),
            name: "deployment-web".into(),
            pod_selector: sel("app", "web"),
            policy_types: PolicyTypes {
                ingress: true,
                egress: true,
            },
            ingress: vec![],
            egress: vec![
                Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: Some(sel("kubernetes.io/metadata.name", "kube-system")),
                        pod_selector: Some(sel("k8s-app", "kube-dns")),
                    }],
                    ports: vec![port(Protocol::Udp, 53), port(Protocol::Tcp, 53)],
                },
                Rule {
                    peers: vec![Peer::IpBlock(IpBlock {
                        cidr: "203.0.113.7/32".parse().unwrap(),
                        except: vec![],
                    })],
                    ports: vec![port(Protocol::Tcp, 443)],
                },
            ],
        };
        let refs = [PolicyRef {
            ip_block: "203.0.113.7/32".parse().unwrap(),
            original_ip: "203.0.113.7".parse().unwrap(),
            dns: Some("api.stripe.com".into()),
            name: None,
            server: None,
        }];
        let cnp = cilium_policy(&policy, &refs, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(
            cnp["spec"]["endpointSelector"],
            json!({"matchLabels": {"app": "web"}})
        );
        // Isolated for ingress with no rule: Cilium's default deny.
        assert_eq!(cnp["spec"]["ingress"], json!([{}]));
        let egress = cnp["spec"]["egress"].as_array().unwrap();
        assert_eq!(
            egress[0]["toEndpoints"],
            json!([{"matchLabels": {
                "k8s-app": "kube-dns",
                "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "kube-system"}}])
        );
        assert_eq!(
            egress[0]["toPorts"][0]["rules"],
            json!({"dns": [{"matchPattern": "*"}]})
        );
        assert_eq!(egress[1]["toCIDRSet"], json!([{"cidr": "203.0.113.7/32"}]));
        assert_eq!(
            egress[2]["toFQDNs"],
            json!([{"matchName": "api.stripe.com"}])
        );
        assert_eq!(
            egress[2]["toPorts"][0]["ports"],
            json!([{"protocol": "TCP", "port": "443"}])
        );
    }
}
