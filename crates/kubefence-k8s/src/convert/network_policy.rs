//! networking.k8s.io/v1 NetworkPolicy → core NetworkPolicy, validated as the
//! API server validates it.

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubefence_core::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use kubefence_core::selector::LabelSelector;

use super::{ConvertError, Problems, first_error, is_port_name, port_number, protocol};
use crate::convert::selector::label_selector;

/// One policy, or the first thing wrong with it (see [`policy_all_errors`]
/// for every error).
pub fn network_policy(
    policy: &net::NetworkPolicy,
    namespace: &str,
) -> Result<NetworkPolicy, ConvertError> {
    policy_all_errors(policy, namespace).map_err(first_error)
}

/// One policy, or every bad field of it.
pub(crate) fn policy_all_errors(
    policy: &net::NetworkPolicy,
    namespace: &str,
) -> Result<NetworkPolicy, Vec<ConvertError>> {
    let mut problems = Problems::default();
    let spec = policy.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(s) => problems.take_all(label_selector(s, "spec.podSelector")),
        None => Some(LabelSelector::everything()),
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let at = format!("spec.ingress[{i}]");
        ingress.extend(rule(
            r.from.as_deref(),
            r.ports.as_deref(),
            &at,
            "from",
            &mut problems,
        ));
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let at = format!("spec.egress[{i}]");
        egress.extend(rule(
            r.to.as_deref(),
            r.ports.as_deref(),
            &at,
            "to",
            &mut problems,
        ));
    }
    let policy_types = match &spec.policy_types {
        None => PolicyTypes::defaulted(!egress.is_empty()),
        Some(types) if types.is_empty() => PolicyTypes::defaulted(!egress.is_empty()),
        Some(types) => {
            let mut out = PolicyTypes::default();
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => out.ingress = true,
                    "Egress" => out.egress = true,
                    other => problems.push(ConvertError::new(
                        format!("spec.policyTypes[{i}]"),
                        format!("unknown policy type {other:?} (expected Ingress or Egress)"),
                    )),
                }
            }
            out
        }
    };
    let policy = pod_selector.map(|pod_selector| NetworkPolicy {
        namespace: namespace.to_string(),
        name: policy.metadata.name.clone().unwrap_or_default(),
        pod_selector,
        policy_types,
        ingress,
        egress,
    });
    problems.finish(policy)
}

/// A rule, or `None` when any of its peers or ports is bad (each recorded).
fn rule(
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    at: &str,
    peers_field: &str,
    problems: &mut Problems,
) -> Option<Rule> {
    let mut out = Rule::default();
    let mut complete = true;
    for (i, p) in peers.unwrap_or_default().iter().enumerate() {
        match peer(p, &format!("{at}.{peers_field}[{i}]")) {
            Ok(peer) => out.peers.push(peer),
            Err(errors) => {
                complete = false;
                problems.take_all::<()>(Err(errors));
            }
        }
    }
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        match problems.take(port(p, &format!("{at}.ports[{i}]"))) {
            Some(port) => out.ports.push(port),
            None => complete = false,
        }
    }
    complete.then_some(out)
}

fn peer(p: &net::NetworkPolicyPeer, at: &str) -> Result<Peer, Vec<ConvertError>> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(block), None, None) => ip_block(block, &format!("{at}.ipBlock")).map_err(|e| vec![e]),
        (Some(_), _, _) => Err(vec![ConvertError::new(
            at,
            "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
        )]),
        (None, None, None) => Err(vec![ConvertError::new(
            at,
            "a peer needs podSelector, namespaceSelector or ipBlock",
        )]),
        (None, ns, pod) => {
            let mut problems = Problems::default();
            let namespace_selector = ns
                .as_ref()
                .map(|s| problems.take_all(label_selector(s, &format!("{at}.namespaceSelector"))));
            let pod_selector = pod
                .as_ref()
                .map(|s| problems.take_all(label_selector(s, &format!("{at}.podSelector"))));
            problems.finish(Some(Peer::Pods {
                namespace_selector: namespace_selector.flatten(),
                pod_selector: pod_selector.flatten(),
            }))
        }
    }
}

fn ip_block(block: &net::IPBlock, at: &str) -> Result<Peer, ConvertError> {
    let cidr: IpNet = block.cidr.parse().map_err(|_| {
        ConvertError::new(
            format!("{at}.cidr"),
            format!("{:?} is not a CIDR", block.cidr),
        )
    })?;
    let mut except = Vec::new();
    for (i, e) in block.except.iter().flatten().enumerate() {
        let field = format!("{at}.except[{i}]");
        let net: IpNet = e
            .parse()
            .map_err(|_| ConvertError::new(field.clone(), format!("{e:?} is not a CIDR")))?;
        // The API server requires every except to lie strictly inside cidr.
        if !(cidr.contains(&net.network()) && net.prefix_len() > cidr.prefix_len()) {
            return Err(ConvertError::new(
                field,
                format!("{e} is not strictly inside {}", block.cidr),
            ));
        }
        except.push(net);
    }
    Ok(Peer::IpBlock(IpBlock {
        cidr: cidr.trunc(),
        except: except.into_iter().map(|e| e.trunc()).collect(),
    }))
}

fn port(p: &net::NetworkPolicyPort, at: &str) -> Result<PortSpec, ConvertError> {
    let protocol = protocol(p.protocol.as_deref(), &format!("{at}.protocol"))?;
    let port = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => Some(PortRef::Number(port_number(*n, &format!("{at}.port"))?)),
        Some(IntOrString::String(name)) => {
            if !is_port_name(name) {
                return Err(ConvertError::new(
                    format!("{at}.port"),
                    format!("{name:?} is neither a port number nor a valid port name"),
                ));
            }
            Some(PortRef::Name(name.clone()))
        }
    };
    let end_port = match (p.end_port, &port) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConvertError::new(
                format!("{at}.endPort"),
                "endPort needs a numeric port",
            ));
        }
        (Some(_), Some(PortRef::Name(_))) => {
            return Err(ConvertError::new(
                format!("{at}.endPort"),
                "endPort cannot be used with a named port",
            ));
        }
        (Some(end), Some(PortRef::Number(start))) => {
            let end = port_number(end, &format!("{at}.endPort"))?;
            if end < *start {
                return Err(ConvertError::new(
                    format!("{at}.endPort"),
                    format!("endPort {end} is below port {start}"),
                ));
            }
            Some(end)
        }
    };
    Ok(PortSpec {
        protocol,
        port,
        end_port,
    })
}
