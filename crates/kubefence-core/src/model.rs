//! The cluster snapshot every builder and the semantics engine read: plain
//! data, converted from Kubernetes objects by `kubefence-k8s`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::policy::NetworkPolicy;
use crate::selector::{LabelSelector, Labels};

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// Always includes `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

impl Namespace {
    /// A namespace known only by name: it has just its automatic label.
    pub fn implicit(name: &str) -> Self {
        Self {
            name: name.to_string(),
            labels: Labels::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Pod,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 7] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::ReplicaSet,
        Self::Job,
        Self::CronJob,
        Self::Pod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Pod => "Pod",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = String;
    /// Accepts the kind in any case, and kubectl's short and plural names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Ok(Self::Deployment),
            "statefulset" | "statefulsets" | "sts" => Ok(Self::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Ok(Self::DaemonSet),
            "replicaset" | "replicasets" | "rs" => Ok(Self::ReplicaSet),
            "job" | "jobs" => Ok(Self::Job),
            "cronjob" | "cronjobs" | "cj" => Ok(Self::CronJob),
            "pod" | "pods" | "po" => Ok(Self::Pod),
            _ => Err(format!(
                "unknown workload kind {s:?} (expected Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod)"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvValue {
    Literal(String),
    ConfigMapKey {
        name: String,
        key: String,
    },
    /// Secrets, field refs and resource refs: never read.
    Opaque,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

/// `envFrom.configMapRef`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvFromConfigMap {
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    /// Init containers run before the others; their references count too.
    pub init: bool,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromConfigMap>,
    pub ports: Vec<ContainerPort>,
}

/// A workload: its pods are alike, so it is one endpoint of the analysis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The object's own labels and annotations (not the pods').
    pub labels: Labels,
    pub annotations: Labels,
    /// `spec.selector`; for a bare Pod, its own labels.
    pub selector: LabelSelector,
    /// The labels its pods carry (`spec.template.metadata.labels`).
    pub pod_labels: Labels,
    pub containers: Vec<Container>,
    /// Pod IPs, known only from live pod dumps.
    pub pod_ips: Vec<IpAddr>,
}

impl Workload {
    /// `namespace/Kind/name`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }

    /// Named container ports, resolved for named-port rules.
    pub fn named_ports(&self) -> BTreeMap<String, (Protocol, u16)> {
        self.containers
            .iter()
            .filter(|c| !c.init)
            .flat_map(|c| &c.ports)
            .filter_map(|p| p.name.clone().map(|n| (n, (p.protocol, p.port))))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    /// Defaults to `port` when the manifest omits it.
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// `None` for a Service without a selector: it selects no pods.
    pub selector: Option<Labels>,
    pub service_type: ServiceType,
    pub ports: Vec<ServicePort>,
    pub external_ips: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServicePortRef {
    Number(u16),
    Name(String),
}

/// One Service an Ingress routes to (a rule path or the default backend).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressBackend {
    pub service: String,
    pub port: ServicePortRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    pub namespace: String,
    pub name: String,
    /// `spec.ingressClassName`, else the legacy `kubernetes.io/ingress.class`
    /// annotation; `None` when neither is set (the cluster's default class).
    pub class: Option<String>,
    pub backends: Vec<IngressBackend>,
}

/// The legacy annotation that names an Ingress's class.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMap {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
}

/// Everything kubefence knows about a cluster (or a set of manifests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Namespace>,
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    pub ingresses: Vec<Ingress>,
    pub config_maps: Vec<ConfigMap>,
    pub policies: Vec<NetworkPolicy>,
}

impl Cluster {
    /// Makes sure every namespace that an object uses exists, with only its
    /// automatic label when it was not declared.
    pub fn add_implicit_namespaces(&mut self) {
        let missing: BTreeSet<String> = self
            .used_namespaces()
            .filter(|ns| !self.namespaces.contains_key(*ns))
            .map(str::to_string)
            .collect();
        for ns in missing {
            let implicit = Namespace::implicit(&ns);
            self.namespaces.insert(ns, implicit);
        }
    }

    /// The namespace of every namespaced object (with repeats).
    pub fn used_namespaces(&self) -> impl Iterator<Item = &str> + '_ {
        self.workloads
            .iter()
            .map(|w| w.namespace.as_str())
            .chain(self.services.iter().map(|s| s.namespace.as_str()))
            .chain(self.ingresses.iter().map(|i| i.namespace.as_str()))
            .chain(self.config_maps.iter().map(|c| c.namespace.as_str()))
            .chain(self.policies.iter().map(|p| p.namespace.as_str()))
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace).map(|n| &n.labels)
    }
}
