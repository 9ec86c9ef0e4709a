//! The direct path: core model values from a [`SynthCluster`], applying
//! what the API server would (namespace name label, `policyTypes` and
//! protocol defaulting), without going through YAML.

use kubefence_core::model::{
    Container, ContainerPort, NAMESPACE_NAME_LABEL, Namespace, Service, ServicePort, ServiceType,
    TargetPort, Workload,
};
use kubefence_core::policy::{IpBlock, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use kubefence_core::selector::LabelSelector;
use kubefence_core::{Cluster, NetworkPolicy};

use crate::synth::{PolicyTypeName, SynthCluster, SynthPeer, SynthPolicy, SynthPortRef, SynthRule};

/// The core cluster a loader should produce from [`crate::yaml::to_yaml`].
pub fn to_cluster(synth: &SynthCluster) -> Cluster {
    let mut cluster = Cluster::default();
    for ns in &synth.namespaces {
        let mut labels = ns.labels.clone();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), ns.name.clone());
        cluster.namespaces.insert(
            ns.name.clone(),
            Namespace {
                name: ns.name.clone(),
                labels,
            },
        );
    }
    for w in &synth.workloads {
        cluster.workloads.push(Workload {
            kind: w.kind,
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            uid: None,
            labels: w.pod_labels.clone(),
            annotations: Default::default(),
            selector: LabelSelector::from_labels(w.pod_labels.clone()),
            pod_labels: w.pod_labels.clone(),
            containers: vec![Container {
                name: "main".into(),
                init: false,
                command: vec![],
                args: vec![],
                env: vec![],
                env_from: vec![],
                ports: w
                    .ports
                    .iter()
                    .map(|p| ContainerPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: p.protocol,
                    })
                    .collect(),
            }],
            pod_ips: vec![],
        });
    }
    for s in &synth.services {
        cluster.services.push(Service {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            selector: Some(s.selector.clone()),
            service_type: ServiceType::ClusterIp,
            ports: s
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: Some(p.name.clone()),
                    port: p.port,
                    target_port: match &p.target_name {
                        Some(n) => TargetPort::Name(n.clone()),
                        None => TargetPort::Number(p.target_number),
                    },
                    protocol: p.protocol,
                })
                .collect(),
            external_ips: vec![],
        });
    }
    cluster.policies = synth.policies.iter().map(policy).collect();
    cluster.add_implicit_namespaces();
    cluster
}

fn policy(p: &SynthPolicy) -> NetworkPolicy {
    let ingress: Vec<Rule> = p.ingress.iter().flatten().map(rule).collect();
    let egress: Vec<Rule> = p.egress.iter().flatten().map(rule).collect();
    let policy_types = match &p.policy_types {
        Some(types) => PolicyTypes {
            ingress: types.contains(&PolicyTypeName::Ingress),
            egress: types.contains(&PolicyTypeName::Egress),
        },
        None => PolicyTypes::defaulted(!egress.is_empty()),
    };
    NetworkPolicy {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        pod_selector: p.pod_selector.clone(),
        policy_types,
        ingress,
        egress,
    }
}

fn rule(r: &SynthRule) -> Rule {
    Rule {
        peers: r
            .peers
            .iter()
            .flatten()
            .map(|peer| match peer {
                SynthPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } => Peer::Pods {
                    namespace_selector: namespace_selector.clone(),
                    pod_selector: pod_selector.clone(),
                },
                SynthPeer::IpBlock { cidr, except } => Peer::IpBlock(IpBlock {
                    cidr: *cidr,
                    except: except.clone(),
                }),
            })
            .collect(),
        ports: r
            .ports
            .iter()
            .flatten()
            .map(|p| PortSpec {
                protocol: p.protocol.unwrap_or_default(),
                port: p.port.as_ref().map(|port| match port {
                    SynthPortRef::Number(n) => PortRef::Number(*n),
                    SynthPortRef::Name(n) => PortRef::Name(n.clone()),
                }),
                end_port: p.end_port,
            })
            .collect(),
    }
}
