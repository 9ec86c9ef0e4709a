//! networking.k8s.io/v1 NetworkPolicy → core NetworkPolicy, validated as the
//! API server validates it.
//!
//! The operator converts every policy it reads (10,000 at a time in a first
//! pass), so the spec is borrowed, never cloned, and a field's path
//! ([`At`]) is formatted only when an error names it.

use std::fmt;

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
    let no_spec = net::NetworkPolicySpec::default();
    let spec = policy.spec.as_ref().unwrap_or(&no_spec);
    let pod_selector = match &spec.pod_selector {
        Some(s) => problems.take_all(label_selector(s, "spec.podSelector")),
        None => Some(LabelSelector::everything()),
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        ingress.extend(rule(
            r.from.as_deref(),
            r.ports.as_deref(),
            &At::Item(&At::Root("spec.ingress"), i),
            "from",
            &mut problems,
        ));
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        egress.extend(rule(
            r.to.as_deref(),
            r.ports.as_deref(),
            &At::Item(&At::Root("spec.egress"), i),
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

/// The path of a field (`spec.ingress[0].from[1].ipBlock`), written out only
/// when an error names it.
#[derive(Clone, Copy, Debug)]
enum At<'a> {
    Root(&'static str),
    /// `parent.name`
    Field(&'a At<'a>, &'static str),
    /// `parent[i]`
    Item(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root(name) => f.write_str(name),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A rule, or `None` when any of its peers or ports is bad (each recorded).
fn rule(
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    at: &At<'_>,
    peers_field: &'static str,
    problems: &mut Problems,
) -> Option<Rule> {
    let mut out = Rule::default();
    let mut complete = true;
    for (i, p) in peers.unwrap_or_default().iter().enumerate() {
        match peer(p, &At::Item(&At::Field(at, peers_field), i)) {
            Ok(peer) => out.peers.push(peer),
            Err(errors) => {
                complete = false;
                problems.take_all::<()>(Err(errors));
            }
        }
    }
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        match problems.take(port(p, &At::Item(&At::Field(at, "ports"), i))) {
            Some(port) => out.ports.push(port),
            None => complete = false,
        }
    }
    complete.then_some(out)
}

fn peer(p: &net::NetworkPolicyPeer, at: &At<'_>) -> Result<Peer, Vec<ConvertError>> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(block), None, None) => {
            ip_block(block, &At::Field(at, "ipBlock")).map_err(|e| vec![e])
        }
        (Some(_), _, _) => Err(vec![ConvertError::new(
            at.to_string(),
            "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
        )]),
        (None, None, None) => Err(vec![ConvertError::new(
            at.to_string(),
            "a peer needs podSelector, namespaceSelector or ipBlock",
        )]),
        (None, ns, pod) => {
            let mut problems = Problems::default();
            let namespace_selector = ns
                .as_ref()
                .map(|s| problems.take_all(label_selector(s, &At::Field(at, "namespaceSelector"))));
            let pod_selector = pod
                .as_ref()
                .map(|s| problems.take_all(label_selector(s, &At::Field(at, "podSelector"))));
            problems.finish(Some(Peer::Pods {
                namespace_selector: namespace_selector.flatten(),
                pod_selector: pod_selector.flatten(),
            }))
        }
    }
}

fn ip_block(block: &net::IPBlock, at: &At<'_>) -> Result<Peer, ConvertError> {
    let cidr: IpNet = block.cidr.parse().map_err(|_| {
        ConvertError::new(
            format!("{at}.cidr"),
            format!("{:?} is not a CIDR", block.cidr),
        )
    })?;
    let mut except = Vec::new();
    for (i, e) in block.except.iter().flatten().enumerate() {
        let field = || format!("{at}.except[{i}]");
        let net: IpNet = e
            .parse()
            .map_err(|_| ConvertError::new(field(), format!("{e:?} is not a CIDR")))?;
        // The API server requires every except to lie strictly inside cidr.
        if !(cidr.contains(&net.network()) && net.prefix_len() > cidr.prefix_len()) {
            return Err(ConvertError::new(
                field(),
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

/// Names `field` of `at` in an error of a shared helper (which was given an
/// empty path, so none is formatted unless needed).
fn named(at: &At<'_>, field: &'static str) -> impl FnOnce(ConvertError) -> ConvertError {
    move |e| ConvertError::new(format!("{at}.{field}"), e.message)
}

fn port(p: &net::NetworkPolicyPort, at: &At<'_>) -> Result<PortSpec, ConvertError> {
    let protocol = protocol(p.protocol.as_deref(), "").map_err(named(at, "protocol"))?;
    let port = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => Some(PortRef::Number(
            port_number(*n, "").map_err(named(at, "port"))?,
        )),
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
            let end = port_number(end, "").map_err(named(at, "endPort"))?;
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
