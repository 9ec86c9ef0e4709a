//! Renderers. Every writer takes a `Write` (a buffered stdout lock in the
//! binary) and streams: a million connections are written row by row, never
//! collected into one string.

use std::io::IsTerminal;

use clap::ValueEnum;
use kubefence_core::ConnSet;
use serde::Serialize;

pub mod color;
pub mod csv;
pub mod dot;
pub mod explain;
pub mod html;
pub mod json;
pub mod mermaid;
pub mod out_dir;
pub mod plan;
pub mod policies;
pub mod table;

/// `-o` of every command: one family, each command accepting the subset it
/// can render (see [`FormatParser`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The command's own format (the option's help says which): a table or
    /// text for people, YAML for policies.
    #[default]
    Auto,
    /// Aligned columns, for people.
    Table,
    /// Prose, for people.
    Text,
    /// JSON (stable formats, documented under docs/).
    Json,
    /// YAML documents.
    Yaml,
    /// Comma-separated values with a header row.
    Csv,
    /// A Graphviz digraph (`dot -Tsvg`).
    Dot,
    /// A Mermaid `flowchart LR`.
    Mermaid,
    /// One self-contained HTML page (graph, matrix, coverage).
    Html,
}

impl Format {
    /// `auto` as `terminal` when stdout is a terminal, else as `piped`;
    /// any other format as itself.
    pub fn resolve(self, terminal: Self, piped: Self) -> Self {
        match self {
            Self::Auto if std::io::stdout().is_terminal() => terminal,
            Self::Auto => piped,
            other => other,
        }
    }
}

/// The `-o` values of `analyze`.
pub const ANALYZE_FORMATS: &[Format] = &[
    Format::Auto,
    Format::Table,
    Format::Json,
    Format::Csv,
    Format::Dot,
    Format::Mermaid,
];
/// The `-o` values of `diff`.
pub const DIFF_FORMATS: &[Format] = &[
    Format::Auto,
    Format::Table,
    Format::Json,
    Format::Csv,
    Format::Html,
];
/// The `-o` values of `report`.
pub const HTML_REPORT_FORMATS: &[Format] = &[Format::Auto, Format::Html];
/// The `-o` values of `explain`.
pub const EXPLAIN_FORMATS: &[Format] = &[Format::Auto, Format::Text, Format::Json];
/// The `-o` values of `generate` (the policies).
pub const POLICY_FORMATS: &[Format] = &[Format::Auto, Format::Yaml, Format::Json];
/// The values of `generate --report`.
pub const REPORT_FORMATS: &[Format] = &[Format::Text, Format::Json];
/// The `-o` values of `version`.
pub const VERSION_FORMATS: &[Format] = &[Format::Auto, Format::Text, Format::Json, Format::Yaml];
/// The `-o` values of `quarantine` (the plan).
pub const PLAN_FORMATS: &[Format] = &[Format::Auto, Format::Text, Format::Yaml, Format::Json];

/// Parses a [`Format`] among the ones a command accepts, so `--help` and
/// the error for a bad value list exactly those.
#[derive(Clone, Debug)]
pub struct FormatParser(pub &'static [Format]);

impl clap::builder::TypedValueParser for FormatParser {
    type Value = Format;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Format, clap::Error> {
        let names = self
            .0
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .collect::<Vec<_>>();
        let name = clap::builder::PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        self.0
            .iter()
            .copied()
            .find(|f| {
                f.to_possible_value()
                    .is_some_and(|p| p.matches(&name, false))
            })
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.0.iter().filter_map(ValueEnum::to_possible_value),
        ))
    }
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
