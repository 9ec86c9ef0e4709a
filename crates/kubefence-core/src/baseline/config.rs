//! The baseline configuration (`--config FILE`, shared by `generate` and the
//! operator).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::selector::{LabelSelector, Operator, Requirement, SelectorError};

/// A label selector as written in the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorConfig {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<ExpressionConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpressionConfig {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl SelectorConfig {
    pub fn labels(pairs: &[(&str, &str)]) -> Self {
        Self {
            match_labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    pub fn to_selector(&self) -> Result<LabelSelector, SelectorError> {
        let exprs = self
            .match_expressions
            .iter()
            .map(|e| {
                let op: Operator = e.operator.parse()?;
                Requirement::new(e.key.clone(), op, e.values.clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LabelSelector::new(self.match_labels.clone(), exprs))
    }
}

/// Pods in namespaces: a peer of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerConfig {
    pub namespace_selector: SelectorConfig,
    #[serde(default)]
    pub pod_selector: SelectorConfig,
}

/// An ingress controller: where its pods run, and which Ingresses it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressControllerConfig {
    pub namespace_selector: SelectorConfig,
    #[serde(default)]
    pub pod_selector: SelectorConfig,
    /// The IngressClass it serves (an Ingress's `spec.ingressClassName` or
    /// `kubernetes.io/ingress.class` annotation). Without it, the entry
    /// serves the Ingresses that name no class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(flatten)]
    pub peer: PeerConfig,
    /// UDP and TCP 53 by default.
    #[serde(default = "default_dns_ports")]
    pub ports: Vec<PortConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortConfig {
    #[serde(default)]
    pub protocol: ProtocolConfig,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolConfig {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl From<ProtocolConfig> for Protocol {
    fn from(p: ProtocolConfig) -> Self {
        match p {
            ProtocolConfig::Tcp => Protocol::Tcp,
            ProtocolConfig::Udp => Protocol::Udp,
            ProtocolConfig::Sctp => Protocol::Sctp,
        }
    }
}

fn default_dns_ports() -> Vec<PortConfig> {
    vec![
        PortConfig {
            protocol: ProtocolConfig::Udp,
            port: 53,
        },
        PortConfig {
            protocol: ProtocolConfig::Tcp,
            port: 53,
        },
    ]
}

/// ingress-nginx (IngressClass `nginx`) and the OpenShift router
/// (IngressClass `openshift-default`, its namespace carries
/// `network.openshift.io/policy-group: ingress`), each also serving the
/// Ingresses without a class (either may be the cluster's default).
fn default_ingress_controllers() -> Vec<IngressControllerConfig> {
    let nginx = |class_name: Option<&str>| IngressControllerConfig {
        namespace_selector: SelectorConfig::labels(&[(
            crate::model::NAMESPACE_NAME_LABEL,
            "ingress-nginx",
        )]),
        pod_selector: SelectorConfig::labels(&[("app.kubernetes.io/name", "ingress-nginx")]),
        class_name: class_name.map(String::from),
    };
    let openshift = |class_name: Option<&str>| IngressControllerConfig {
        namespace_selector: SelectorConfig::labels(&[(
            "network.openshift.io/policy-group",
            "ingress",
        )]),
        pod_selector: SelectorConfig::default(),
        class_name: class_name.map(String::from),
    };
    vec![
        nginx(Some("nginx")),
        nginx(None),
        openshift(Some("openshift-default")),
        openshift(None),
    ]
}

/// Everything the baseline builder can be told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// The cluster DNS: every workload may query it.
    pub dns: DnsConfig,
    /// Where ingress controllers run and which class each serves: workloads
    /// behind an Ingress accept traffic from the controllers of its class
    /// (those without `className` for an Ingress without a class) on the
    /// routed ports.
    pub ingress_controllers: Vec<IngressControllerConfig>,
    /// `cluster.local` unless the cluster says otherwise.
    pub cluster_domain: String,
    /// Sources allowed to reach LoadBalancer, NodePort and externalIP
    /// Services; every address by default.
    pub external_cidrs: Vec<IpNet>,
    /// Never baselined unless named explicitly.
    pub protected_namespaces: BTreeSet<String>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            dns: DnsConfig {
                peer: PeerConfig {
                    namespace_selector: SelectorConfig::labels(&[(
                        crate::model::NAMESPACE_NAME_LABEL,
                        "kube-system",
                    )]),
                    pod_selector: SelectorConfig::labels(&[("k8s-app", "kube-dns")]),
                },
                ports: default_dns_ports(),
            },
            ingress_controllers: default_ingress_controllers(),
            cluster_domain: "cluster.local".to_string(),
            external_cidrs: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
            protected_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }
}

/// A config whose selectors are checked, ready for the builder.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub dns_namespaces: LabelSelector,
    pub dns_pods: LabelSelector,
    pub dns_ports: Vec<(Protocol, u16)>,
    pub ingress_controllers: Vec<ResolvedController>,
}

/// One `ingressControllers` entry, checked.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedController {
    pub namespaces: LabelSelector,
    pub pods: LabelSelector,
    pub class_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config {field}: {source}")]
pub struct ConfigError {
    pub field: String,
    #[source]
    pub source: SelectorError,
}

impl BaselineConfig {
    /// Checks every selector, as the builder will use them.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.resolve().map(|_| ())
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, ConfigError> {
        let sel = |s: &SelectorConfig, field: &str| {
            s.to_selector().map_err(|source| ConfigError {
                field: field.to_string(),
                source,
            })
        };
        let mut ingress_controllers = Vec::new();
        for (i, c) in self.ingress_controllers.iter().enumerate() {
            ingress_controllers.push(ResolvedController {
                namespaces: sel(
                    &c.namespace_selector,
                    &format!("ingressControllers[{i}].namespaceSelector"),
                )?,
                pods: sel(
                    &c.pod_selector,
                    &format!("ingressControllers[{i}].podSelector"),
                )?,
                class_name: c.class_name.clone(),
            });
        }
        Ok(Resolved {
            dns_namespaces: sel(&self.dns.peer.namespace_selector, "dns.namespaceSelector")?,
            dns_pods: sel(&self.dns.peer.pod_selector, "dns.podSelector")?,
            dns_ports: self
                .dns
                .ports
                .iter()
                .map(|p| (p.protocol.into(), p.port))
                .collect(),
            ingress_controllers,
        })
    }
}
