//! kubefence-core values → Kubernetes objects (k8s-openapi types): the
//! objects kubefence writes or prints.
//!
//! The inverse of [`crate::convert`]: converting a rendered policy back
//! gives the same core policy, which the tests check on every builder's
//! output. Rendering is deterministic: maps are ordered and lists keep the
//! builder's (sorted) order, so the same input gives the same bytes.

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubefence_core::WorkloadKind;
use kubefence_core::baseline::GeneratedPolicy;
use kubefence_core::policy::{NetworkPolicy, Peer, PortRef, PortSpec, Rule};
use kubefence_core::selector::LabelSelector;

/// The object type rendered here, so callers need not name k8s-openapi.
pub use k8s_openapi::api::networking::v1::NetworkPolicy as NetworkPolicyObject;

/// The `apiVersion` of a workload kind, for ownerReferences.
pub fn workload_api_version(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment
        | WorkloadKind::StatefulSet
        | WorkloadKind::DaemonSet
        | WorkloadKind::ReplicaSet => "apps/v1",
        WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
        WorkloadKind::Pod => "v1",
    }
}

/// A baseline policy as the object kubefence applies: labels, annotations
/// and, when the workload's uid is known (live objects), an ownerReference
/// so that Kubernetes garbage collection removes the policy with its
/// workload. Manifests from Git have no uid, so their policies have none.
pub fn generated_policy(generated: &GeneratedPolicy) -> net::NetworkPolicy {
    let mut object = network_policy(&generated.policy);
    object.metadata.labels = Some(generated.labels.clone());
    object.metadata.annotations =
        (!generated.annotations.is_empty()).then(|| generated.annotations.clone());
    object.metadata.owner_references = generated.owner.uid.as_ref().map(|uid| {
        vec![meta::OwnerReference {
            api_version: workload_api_version(generated.owner.kind).to_string(),
            kind: generated.owner.kind.as_str().to_string(),
            name: generated.owner.name.clone(),
            uid: uid.clone(),
            controller: None,
            block_owner_deletion: None,
        }]
    });
    object
}

/// A core policy as a networking.k8s.io/v1 NetworkPolicy, with explicit
/// `policyTypes` (never left to defaulting) and no labels.
pub fn network_policy(policy: &NetworkPolicy) -> net::NetworkPolicy {
    let mut policy_types = Vec::new();
    if policy.policy_types.ingress {
        policy_types.push("Ingress".to_string());
    }
    if policy.policy_types.egress {
        policy_types.push("Egress".to_string());
    }
    net::NetworkPolicy {
        metadata: meta::ObjectMeta {
            name: Some(policy.name.clone()),
            namespace: Some(policy.namespace.clone()),
            ..meta::ObjectMeta::default()
        },
        spec: Some(net::NetworkPolicySpec {
            pod_selector: Some(label_selector(&policy.pod_selector)),
            policy_types: Some(policy_types),
            ingress: policy.policy_types.ingress.then(|| {
                policy
                    .ingress
                    .iter()
                    .map(|r| net::NetworkPolicyIngressRule {
                        from: peers(r),
                        ports: ports(r),
                    })
                    .collect()
            }),
            egress: policy.policy_types.egress.then(|| {
                policy
                    .egress
                    .iter()
                    .map(|r| net::NetworkPolicyEgressRule {
                        to: peers(r),
                        ports: ports(r),
                    })
                    .collect()
            }),
        }),
    }
}

/// A core selector as meta/v1; empty parts are left out rather than
/// written as `{}` or `[]`.
pub fn label_selector(selector: &LabelSelector) -> meta::LabelSelector {
    meta::LabelSelector {
        match_labels: (!selector.match_labels.is_empty()).then(|| selector.match_labels.clone()),
        match_expressions: (!selector.match_expressions.is_empty()).then(|| {
            selector
                .match_expressions
                .iter()
                .map(|r| meta::LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: r.operator.to_string(),
                    values: (!r.values.is_empty()).then(|| r.values.iter().cloned().collect()),
                })
                .collect()
        }),
    }
}

fn peers(rule: &Rule) -> Option<Vec<net::NetworkPolicyPeer>> {
    (!rule.peers.is_empty()).then(|| rule.peers.iter().map(peer).collect())
}

fn peer(peer: &Peer) -> net::NetworkPolicyPeer {
    match peer {
        Peer::Pods {
            namespace_selector,
            pod_selector,
        } => net::NetworkPolicyPeer {
            namespace_selector: namespace_selector.as_ref().map(label_selector),
            pod_selector: pod_selector.as_ref().map(label_selector),
            ip_block: None,
        },
        Peer::IpBlock(block) => net::NetworkPolicyPeer {
            ip_block: Some(net::IPBlock {
                cidr: block.cidr.to_string(),
                except: (!block.except.is_empty())
                    .then(|| block.except.iter().map(ToString::to_string).collect()),
            }),
            ..net::NetworkPolicyPeer::default()
        },
    }
}

fn ports(rule: &Rule) -> Option<Vec<net::NetworkPolicyPort>> {
    (!rule.ports.is_empty()).then(|| rule.ports.iter().map(port).collect())
}

fn port(spec: &PortSpec) -> net::NetworkPolicyPort {
    net::NetworkPolicyPort {
        protocol: Some(spec.protocol.as_str().to_string()),
        port: spec.port.as_ref().map(|p| match p {
            PortRef::Number(n) => IntOrString::Int(i32::from(*n)),
            PortRef::Name(name) => IntOrString::String(name.clone()),
        }),
        end_port: spec.end_port.map(i32::from),
    }
}

#[cfg(test)]
mod tests {
    use kubefence_core::Protocol;
    use kubefence_core::baseline::OwnerRef;
    use kubefence_core::policy::{IpBlock, PolicyTypes};
    use kubefence_core::selector::{Labels, Operator, Requirement};

    use super::*;
    use crate::convert;

    fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector::from_labels(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn every_feature() -> NetworkPolicy {
        let expr = Requirement::new("tier", Operator::In, ["a", "b"]).unwrap();
        NetworkPolicy {
            namespace: "shop".into(),
            name: "kf-baseline-deployment-web".into(),
            pod_selector: LabelSelector::new(sel(&[("app", "web")]).match_labels, vec![expr]),
            policy_types: PolicyTypes {
                ingress: true,
                egress: true,
            },
            ingress: vec![
                Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: Some(sel(&[("kubernetes.io/metadata.name", "other")])),
                        pod_selector: Some(sel(&[("app", "client")])),
                    }],
                    ports: vec![PortSpec {
                        protocol: Protocol::Tcp,
                        port: Some(PortRef::Number(8000)),
                        end_port: Some(8010),
                    }],
                },
                Rule {
                    peers: vec![Peer::IpBlock(IpBlock {
                        cidr: "10.0.0.0/8".parse().unwrap(),
                        except: vec!["10.1.0.0/16".parse().unwrap()],
                    })],
                    ports: vec![PortSpec {
                        protocol: Protocol::Tcp,
                        port: Some(PortRef::Name("http".into())),
                        end_port: None,
                    }],
                },
            ],
            egress: vec![
                Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: Some(LabelSelector::everything()),
                        pod_selector: None,
                    }],
                    ports: vec![PortSpec {
                        protocol: Protocol::Udp,
                        port: None,
                        end_port: None,
                    }],
                },
                Rule::default(),
            ],
        }
    }

    #[test]
    fn rendering_converts_back_to_the_same_policy() {
        let policy = every_feature();
        let object = network_policy(&policy);
        let back = convert::network_policy(&object, "shop");
        assert_eq!(back, Ok(policy));
    }

    #[test]
    fn an_ingress_only_policy_has_no_egress_section() {
        let mut policy = every_feature();
        policy.policy_types.egress = false;
        policy.egress.clear();
        let object = network_policy(&policy);
        let spec = object.spec.unwrap_or_default();
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        assert!(spec.egress.is_none());
    }

    #[test]
    fn empty_rule_lists_deny_rather_than_allow() {
        // `ingress: []` allows nothing; it must not become an absent list
        // that defaulting would read differently.
        let mut policy = every_feature();
        policy.ingress.clear();
        policy.egress.clear();
        let object = network_policy(&policy);
        let json = serde_json::to_value(&object).unwrap();
        assert_eq!(json["spec"]["ingress"], serde_json::json!([]));
        assert_eq!(json["spec"]["egress"], serde_json::json!([]));
        assert_eq!(convert::network_policy(&object, "shop"), Ok(policy));
    }

    #[test]
    fn owner_reference_only_with_a_uid() {
        let mut generated = GeneratedPolicy {
            workload: "shop/Deployment/web".into(),
            owner: OwnerRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                uid: None,
            },
            policy: every_feature(),
            labels: Labels::from([("app.kubernetes.io/managed-by".into(), "kubefence".into())]),
            annotations: Labels::new(),
        };
        assert!(
            generated_policy(&generated)
                .metadata
                .owner_references
                .is_none()
        );
        generated.owner.uid = Some("1234".into());
        let object = generated_policy(&generated);
        let owners = object.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].api_version, "apps/v1");
        assert_eq!(owners[0].kind, "Deployment");
        assert_eq!(owners[0].uid, "1234");
        assert!(object.metadata.annotations.is_none());
    }
}
