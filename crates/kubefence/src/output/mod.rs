//! Renderers. Every writer takes a `Write` (a buffered stdout lock in the
//! binary) and streams: a million connections are written row by row, never
//! collected into one string.

use clap::ValueEnum;
use kubefence_core::ConnSet;
use serde::Serialize;

pub mod csv;
pub mod dot;
pub mod explain;
pub mod json;
pub mod mermaid;
pub mod table;

/// `analyze -o`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned FROM / TO / ALLOWED columns, for people.
    #[default]
    Table,
    /// The stable format of docs/analyze-json.md.
    Json,
    /// `from,to,allowed` with a header row.
    Csv,
    /// A Graphviz digraph (`dot -Tsvg`).
    Dot,
    /// A Mermaid `flowchart LR`.
    Mermaid,
}

/// `diff -o`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    #[default]
    Table,
    Json,
    Csv,
}

/// `explain -o`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    /// Verdict and reasons, for people.
    #[default]
    Text,
    Json,
}

/// What a pair allows, as JSON: `"all"` or a sorted list of port strings
/// (`["TCP/80", "TCP/8000-8010", "UDP/53", "OTHER"]`; `[]` for nothing).
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Allowed {
    All(&'static str),
    Ports(Vec<String>),
}

impl From<&ConnSet> for Allowed {
    fn from(set: &ConnSet) -> Self {
        if set.is_all() {
            Self::All("all")
        } else {
            Self::Ports(set.port_strings())
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Clusters built from the core model, so renderers are tested without
    //! the loader.

    use kubefence_core::model::{Container, ContainerPort};
    use kubefence_core::policy::{Peer, PortRef, PortSpec};
    use kubefence_core::policy::{PolicyTypes, Rule};
    use kubefence_core::{
        Cluster, LabelSelector, Labels, NetworkPolicy, Protocol, Workload, WorkloadKind,
    };

    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn workload(ns: &str, name: &str, port: u16) -> Workload {
        let l = labels(&[("app", name)]);
        Workload {
            kind: WorkloadKind::Deployment,
            namespace: ns.to_string(),
            name: name.to_string(),
            uid: None,
            labels: l.clone(),
            annotations: Labels::new(),
            selector: LabelSelector::from_labels(l.clone()),
            pod_labels: l,
            containers: vec![Container {
                name: name.to_string(),
                init: false,
                command: vec![],
                args: vec![],
                env: vec![],
                env_from: vec![],
                ports: vec![ContainerPort {
                    name: Some("http".to_string()),
                    port,
                    protocol: Protocol::Tcp,
                }],
            }],
            pod_ips: vec![],
        }
    }

    /// `shop/web` and `shop/db`; with `policy`, db admits only web on
    /// TCP 5432 and 8000-8010 and web admits nothing.
    pub fn shop(policy: bool) -> Cluster {
        let mut cluster = Cluster {
            workloads: vec![workload("shop", "web", 8080), workload("shop", "db", 5432)],
            ..Cluster::default()
        };
        if policy {
            cluster.policies.push(NetworkPolicy {
                namespace: "shop".to_string(),
                name: "db-from-web".to_string(),
                pod_selector: LabelSelector::from_labels(labels(&[("app", "db")])),
                policy_types: PolicyTypes {
                    ingress: true,
                    egress: false,
                },
                ingress: vec![Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(LabelSelector::from_labels(labels(&[("app", "web")]))),
                    }],
                    ports: vec![
                        PortSpec {
                            protocol: Protocol::Tcp,
                            port: Some(PortRef::Number(5432)),
                            end_port: None,
                        },
                        PortSpec {
                            protocol: Protocol::Tcp,
                            port: Some(PortRef::Number(8000)),
                            end_port: Some(8010),
                        },
                    ],
                }],
                egress: vec![],
            });
            cluster.policies.push(NetworkPolicy {
                namespace: "shop".to_string(),
                name: "web-deny".to_string(),
                pod_selector: LabelSelector::from_labels(labels(&[("app", "web")])),
                policy_types: PolicyTypes {
                    ingress: true,
                    egress: false,
                },
                ingress: vec![],
                egress: vec![],
            });
        }
        cluster.add_implicit_namespaces();
        cluster
    }
}
