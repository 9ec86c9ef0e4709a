//! IsolationProfile (the resource) → core profile, validated as the API
//! server validates it: every bad field is an error that names it, never a
//! profile read as something wider than what was written.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubefence_core::profile::{CustomRules, Dns, Profile};

use crate::convert::{ConvertError, label_selector, policy_all_errors};
#[cfg(feature = "crd")]
use crate::crd::profile::{DnsMode, IsolationProfile};

/// The core profile of `profile`; `namespace` when its metadata names none
/// (a file read offline). Every bad field is reported.
#[cfg(feature = "crd")]
pub fn to_core(profile: &IsolationProfile, namespace: &str) -> Result<Profile, Vec<ConvertError>> {
    let mut errors = Vec::new();
    let spec = &profile.spec;
    let namespace = profile
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_string());
    let name = profile.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        errors.push(ConvertError::new("metadata.name", "required"));
    }
    let pod_selector = match label_selector(&spec.pod_selector, "spec.podSelector") {
        Ok(s) => s,
        Err(e) => {
            errors.extend(e);
            Default::default()
        }
    };
    let mut out = Profile::new(&namespace, &name, pod_selector);
    if let Some(ingress) = &spec.ingress {
        let wrapped = wrap(
            &namespace,
            Some(vec![net::NetworkPolicyIngressRule {
                from: ingress.from.clone().or(Some(Vec::new())),
                ports: ingress.ports.clone(),
            }]),
            None,
        );
        match policy_all_errors(&wrapped, &namespace) {
            Ok(p) => {
                if let Some(rule) = p.ingress.into_iter().next() {
                    // An absent `from` is the router default, not "every peer".
                    out.ingress_from = ingress.from.as_ref().map(|_| rule.peers);
                    out.ingress_ports = rule.ports;
                }
            }
            Err(e) => errors.extend(
                e.into_iter()
                    .map(|e| rename(e, "spec.ingress[0]", "spec.ingress")),
            ),
        }
    }
    if let Some(egress) = &spec.egress {
        out.public_internet = egress.public_internet;
    }
    if let Some(blocked) = &spec.blocked_cidrs {
        out.blocked_cidrs = Some(cidrs(blocked, "spec.blockedCIDRs", &mut errors));
    }
    out.allowed_cidrs = cidrs(&spec.allowed_cidrs, "spec.allowedCIDRs", &mut errors);
    if let Some(dns) = &spec.dns {
        out.dns = match dns.mode {
            DnsMode::Cluster => Dns::Cluster,
            DnsMode::None => Dns::None,
            DnsMode::Public => {
                let mut resolvers = Vec::new();
                for (i, r) in dns.resolvers.iter().flatten().enumerate() {
                    match r.parse::<IpAddr>() {
                        Ok(ip) => resolvers.push(ip),
                        Err(e) => errors.push(ConvertError::new(
                            format!("spec.dns.resolvers[{i}]"),
                            format!("{r:?} is not an IP address: {e}"),
                        )),
                    }
                }
                Dns::Public { resolvers }
            }
        };
        if dns.mode != DnsMode::Public && dns.resolvers.is_some() {
            errors.push(ConvertError::new(
                "spec.dns.resolvers",
                "only with mode public",
            ));
        }
    }
    out.engine = spec.engine.adapter();
    if let Some(custom) = &spec.policy {
        if spec.ingress.is_some() || spec.egress.is_some() || spec.dns.is_some() {
            errors.push(ConvertError::new(
                "spec.policy",
                "replaces the default rules: leave ingress, egress and dns out",
            ));
        }
        let wrapped = wrap(&namespace, custom.ingress.clone(), custom.egress.clone());
        match policy_all_errors(&wrapped, &namespace) {
            Ok(p) => {
                out.custom = Some(CustomRules {
                    ingress: p.ingress,
                    egress: p.egress,
                })
            }
            Err(e) => errors.extend(e.into_iter().map(|e| rename(e, "spec.", "spec.policy."))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A NetworkPolicy holding `ingress` and `egress`, both policyTypes, for the
/// shared converter (which validates peers and ports as the API server).
fn wrap(
    namespace: &str,
    ingress: Option<Vec<net::NetworkPolicyIngressRule>>,
    egress: Option<Vec<net::NetworkPolicyEgressRule>>,
) -> net::NetworkPolicy {
    net::NetworkPolicy {
        metadata: ObjectMeta {
            name: Some("profile".to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(net::NetworkPolicySpec {
            pod_selector: None,
            ingress,
            egress,
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
        }),
    }
}

fn rename(e: ConvertError, from: &str, to: &str) -> ConvertError {
    let field = match e.field.strip_prefix(from) {
        Some(rest) => format!("{to}{rest}"),
        None => e.field.clone(),
    };
    ConvertError::new(field, e.message)
}

fn cidrs(list: &[String], field: &str, errors: &mut Vec<ConvertError>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        match c.parse::<IpNet>() {
            Ok(n) => out.push(n),
            Err(e) => errors.push(ConvertError::new(
                format!("{field}[{i}]"),
                format!("{c:?} is not a CIDR: {e}"),
            )),
        }
    }
    out
}

#[cfg(all(test, feature = "crd"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use kubefence_core::policy::Peer;

    fn profile(spec: serde_json::Value) -> IsolationProfile {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubefence.dev/v1alpha1",
            "kind": "IsolationProfile",
            "metadata": {"name": "python", "namespace": "sandboxes"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn defaults_convert_to_the_default_profile() {
        let p = to_core(
            &profile(serde_json::json!({"podSelector": {"matchLabels": {"t": "py"}}})),
            "default",
        )
        .unwrap();
        assert_eq!(p.namespace, "sandboxes");
        assert_eq!(p.ingress_from, None, "router default");
        assert!(p.public_internet);
        assert_eq!(p.dns, Dns::Cluster);
        assert!(p.custom.is_none());
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = to_core(
            &profile(serde_json::json!({
                "podSelector": {"matchLabels": {"t": "py"}},
                "blockedCIDRs": ["10.0.0.0/8", "ten"],
                "allowedCIDRs": ["1.2.3.4/33"],
                "ingress": {"from": [{"ipBlock": {"cidr": "nope"}}]},
                "dns": {"mode": "public", "resolvers": ["resolver.example"]}
            })),
            "default",
        )
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "spec.blockedCIDRs[1]",
            "spec.allowedCIDRs[0]",
            "spec.dns.resolvers[0]",
        ] {
            assert!(fields.contains(&want), "{want}: {err:?}");
        }
        assert!(
            fields.iter().any(|f| f.starts_with("spec.ingress.from[0]")),
            "{err:?}"
        );
    }

    #[test]
    fn a_custom_policy_and_explicit_peers_convert() {
        let p = to_core(
            &profile(serde_json::json!({
                "podSelector": {"matchLabels": {"t": "py"}},
                "policy": {"egress": [{}], "ingress": [{"from": [{"podSelector": {"matchLabels": {"a": "b"}}}]}]}
            })),
            "default",
        )
        .unwrap();
        let custom = p.custom.unwrap();
        assert_eq!(custom.egress.len(), 1);
        assert!(custom.egress[0].peers.is_empty());
        assert!(matches!(custom.ingress[0].peers[0], Peer::Pods { .. }));
        // An explicit empty `from` is "nobody", not the router and not all.
        let p = to_core(
            &profile(serde_json::json!({
                "podSelector": {"matchLabels": {"t": "py"}},
                "ingress": {"from": []}
            })),
            "default",
        )
        .unwrap();
        assert_eq!(p.ingress_from, Some(vec![]));
    }
}
