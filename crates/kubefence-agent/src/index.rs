//! Who an address is: the pods of this node and the cluster's Services.
//!
//! Fed by the agent's watches (`watch.rs`): the Pods of this node (field
//! selector `spec.nodeName`) and every Service's ClusterIPs. A pod that is
//! deleted stays in the index for a grace period, because its last
//! connections can be read from the ring buffer after the watch has told
//! of its deletion; after that its address is unknown. A new pod that
//! takes the address over replaces it at once.
//!
//! Time is passed in (`now`), so the rules are tested without sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kubefence_core::baseline::PER_REPLICA_LABELS;
use kubefence_core::learn::WorkloadRef;
use kubefence_core::{IpNet, LabelSelector, Labels, WorkloadKind};

/// A pod of this node, as the learned neighborhoods name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub workload: WorkloadRef,
    /// Selects the workload's pods: the pod's labels without the
    /// per-replica and per-run ones. Empty when the pod has no other
    /// label: such a workload cannot be selected and gets no neighborhood.
    pub selector: LabelSelector,
}

/// A Service with a selector (one without selects no pods and is not
/// indexed: its address is then an ordinary address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
}

/// What an address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Pod(Arc<PodRecord>),
    Service(Arc<ServiceRecord>),
    /// This node's own address (host-network processes and pods).
    Node,
    /// Inside the pod network (`--pod-cidr`) but no pod of this node and
    /// no Service: a pod of another node, or one gone for longer than the
    /// grace period. Never recorded as an external address.
    UnknownInCluster,
    /// Anything else: outside the cluster.
    External(IpAddr),
}

#[derive(Clone, Debug)]
struct PodSlot {
    record: Arc<PodRecord>,
    /// The pod's (namespace, name) that owns this address now.
    key: (String, String),
    vanished_at: Option<Instant>,
}

/// The address index. Not thread-safe by itself: the agent keeps it
/// behind one lock.
#[derive(Debug)]
pub struct PodIndex {
    grace: Duration,
    pod_cidrs: Vec<IpNet>,
    pods: HashMap<IpAddr, PodSlot>,
    pod_ips: HashMap<(String, String), Vec<IpAddr>>,
    services: HashMap<IpAddr, Arc<ServiceRecord>>,
    service_ips: HashMap<(String, String), Vec<IpAddr>>,
    node_ips: Vec<IpAddr>,
    /// Names DNS answers gave external addresses (`--dns`), and when last.
    names: HashMap<IpAddr, (BTreeSet<String>, Instant)>,
}

/// How long a DNS answer names an address after it was last seen.
const NAMES_KEPT: Duration = Duration::from_secs(3600);
/// The most addresses named at once (bounded memory): past it, new
/// addresses stay unnamed until older ones expire.
const MAX_NAMED_ADDRESSES: usize = 65_536;

impl PodIndex {
    pub fn new(grace: Duration, pod_cidrs: Vec<IpNet>) -> Self {
        Self {
            grace,
            pod_cidrs,
            pods: HashMap::new(),
            pod_ips: HashMap::new(),
            services: HashMap::new(),
            service_ips: HashMap::new(),
            node_ips: Vec::new(),
            names: HashMap::new(),
        }
    }

    /// A DNS answer: `addresses` are known by `names` from `now` on.
    /// Returns whether every address could be kept (false past the cap).
    pub fn learn_names(
        &mut self,
        names: &BTreeSet<String>,
        addresses: &[IpAddr],
        now: Instant,
    ) -> bool {
        let mut kept = true;
        for ip in addresses {
            let full = self.names.len() >= MAX_NAMED_ADDRESSES;
            match self.names.get_mut(ip) {
                Some((known, seen)) => {
                    known.extend(names.iter().cloned());
                    *seen = now;
                }
                None if full => kept = false,
                None => {
                    self.names.insert(*ip, (names.clone(), now));
                }
            }
        }
        kept
    }

    /// The names DNS answers gave `ip` (empty when none was seen).
    pub fn names_of(&self, ip: IpAddr) -> BTreeSet<String> {
        self.names
            .get(&ip)
            .map(|(names, _)| names.clone())
            .unwrap_or_default()
    }

    /// Adds or replaces a pod and its addresses.
    pub fn upsert_pod(&mut self, record: PodRecord, ips: Vec<IpAddr>) {
        let key = (record.namespace.clone(), record.name.clone());
        // Addresses the pod no longer has are released now.
        if let Some(old) = self.pod_ips.remove(&key) {
            for ip in old.iter().filter(|ip| !ips.contains(ip)) {
                if self.pods.get(ip).is_some_and(|s| s.key == key) {
                    self.pods.remove(ip);
                }
            }
        }
        let record = Arc::new(record);
        for ip in &ips {
            self.pods.insert(
                *ip,
                PodSlot {
                    record: Arc::clone(&record),
                    key: key.clone(),
                    vanished_at: None,
                },
            );
        }
        self.pod_ips.insert(key, ips);
    }

    /// Marks a pod deleted: its addresses still resolve to it for the
    /// grace period, unless another pod takes them.
    pub fn remove_pod(&mut self, namespace: &str, name: &str, now: Instant) {
        let key = (namespace.to_string(), name.to_string());
        for ip in self.pod_ips.remove(&key).unwrap_or_default() {
            if let Some(slot) = self.pods.get_mut(&ip)
                && slot.key == key
            {
                slot.vanished_at = Some(now);
            }
        }
    }

    /// Adds or replaces a Service's ClusterIPs (a Service without selector
    /// or without ClusterIP is removed).
    pub fn upsert_service(&mut self, record: ServiceRecord, ips: Vec<IpAddr>) {
        let key = (record.namespace.clone(), record.name.clone());
        self.remove_service(&key.0, &key.1);
        if record.selector.is_empty() || ips.is_empty() {
            return;
        }
        let record = Arc::new(record);
        for ip in &ips {
            self.services.insert(*ip, Arc::clone(&record));
        }
        self.service_ips.insert(key, ips);
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        for ip in self.service_ips.remove(&key).unwrap_or_default() {
            if self
                .services
                .get(&ip)
                .is_some_and(|s| s.namespace == key.0 && s.name == key.1)
            {
                self.services.remove(&ip);
            }
        }
    }

    /// This node's addresses (the pods' `status.hostIP`s).
    pub fn add_node_ip(&mut self, ip: IpAddr) {
        if !self.node_ips.contains(&ip) {
            self.node_ips.push(ip);
        }
    }

    /// What `ip` is at `now`.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Peer {
        if let Some(slot) = self.pods.get(&ip)
            && slot
                .vanished_at
                .is_none_or(|at| now.saturating_duration_since(at) <= self.grace)
        {
            return Peer::Pod(Arc::clone(&slot.record));
        }
        if let Some(service) = self.services.get(&ip) {
            return Peer::Service(Arc::clone(service));
        }
        if self.node_ips.contains(&ip) {
            return Peer::Node;
        }
        if self.pod_cidrs.iter().any(|net| net.contains(&ip)) {
            return Peer::UnknownInCluster;
        }
        Peer::External(ip)
    }

    /// Drops the pods whose grace period is over, and the names not
    /// answered again for an hour.
    pub fn purge(&mut self, now: Instant) {
        self.names
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= NAMES_KEPT);
        let grace = self.grace;
        self.pods.retain(|_, slot| {
            slot.vanished_at
                .is_none_or(|at| now.saturating_duration_since(at) <= grace)
        });
    }

    /// Whether a pod of `workload` still runs on this node (or is in its
    /// grace period).
    pub fn has_workload(&self, workload: &WorkloadRef) -> bool {
        self.pods.values().any(|s| &s.record.workload == workload)
    }

    pub fn pod_count(&self) -> usize {
        self.pod_ips.len()
    }
}

/// The record of a Pod object and its addresses (`status.podIPs`, else
/// `status.podIP`). `None` for a host-network pod (its address is the
/// node's, shared with every other host process) and for a pod without a
/// name or namespace.
pub fn pod_record(pod: &Pod) -> Option<(PodRecord, Vec<IpAddr>)> {
    let namespace = pod.metadata.namespace.clone()?;
    let name = pod.metadata.name.clone()?;
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
    {
        return None;
    }
    let labels: Labels = pod.metadata.labels.clone().unwrap_or_default();
    let workload = workload_of(pod, &namespace, &name, &labels);
    let stable: Labels = labels
        .into_iter()
        .filter(|(k, _)| !PER_REPLICA_LABELS.contains(&k.as_str()))
        .collect();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    Some((
        PodRecord {
            namespace,
            name,
            workload,
            selector: LabelSelector::from_labels(stable),
        },
        ips,
    ))
}

/// The node address a pod reports (`status.hostIP`).
pub fn host_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.host_ip.as_ref()?.parse().ok()
}

/// The workload a pod belongs to, from its controller reference: a
/// ReplicaSet named `<deployment>-<pod-template-hash>` is its Deployment's;
/// a Job named `<cronjob>-<scheduled minute>` is its CronJob's; a pod
/// without controller is its own workload.
fn workload_of(pod: &Pod, namespace: &str, name: &str, labels: &Labels) -> WorkloadRef {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let (kind, workload) = match owner {
        None => (WorkloadKind::Pod.as_str().to_string(), name.to_string()),
        Some(o) if o.kind == "ReplicaSet" => {
            match labels
                .get("pod-template-hash")
                .and_then(|hash| o.name.strip_suffix(&format!("-{hash}")))
            {
                Some(deployment) => (
                    WorkloadKind::Deployment.as_str().to_string(),
                    deployment.to_string(),
                ),
                None => (o.kind.clone(), o.name.clone()),
            }
        }
        Some(o) if o.kind == "Job" => match o.name.rsplit_once('-') {
            Some((cron, stamp))
                if stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (WorkloadKind::CronJob.as_str().to_string(), cron.to_string())
            }
            _ => (o.kind.clone(), o.name.clone()),
        },
        Some(o) => (o.kind.clone(), o.name.clone()),
    };
    WorkloadRef {
        kind,
        namespace: namespace.to_string(),
        name: workload,
    }
}

/// The record of a Service and its ClusterIPs; `None` without a name,
/// namespace or selector.
pub fn service_record(service: &Service) -> Option<(ServiceRecord, Vec<IpAddr>)> {
    let namespace = service.metadata.namespace.clone()?;
    let name = service.metadata.name.clone()?;
    let spec = service.spec.as_ref()?;
    let selector: BTreeMap<String, String> = spec.selector.clone().unwrap_or_default();
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = spec.cluster_ip.as_ref().and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    Some((
        ServiceRecord {
            namespace,
            name,
            selector: LabelSelector::from_labels(selector),
        },
        ips,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn record(ns: &str, name: &str, app: &str) -> PodRecord {
        PodRecord {
            namespace: ns.into(),
            name: name.into(),
            workload: WorkloadRef {
                kind: "Deployment".into(),
                namespace: ns.into(),
                name: app.into(),
            },
            selector: LabelSelector::from_labels(Labels::from([("app".into(), app.into())])),
        }
    }

    fn pod(name: &str, owner: Option<(&str, &str)>, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        kind: kind.into(),
                        name: name.into(),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                pod_ips: Some(vec![
                    PodIP {
                        ip: "10.1.0.5".into(),
                    },
                    PodIP {
                        ip: "fd00::5".into(),
                    },
                ]),
                host_ip: Some("192.0.2.10".into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn a_replicaset_pod_belongs_to_its_deployment_and_loses_per_replica_labels() {
        let p = pod(
            "cart-7d9f8b6c5d-x2x4z",
            Some(("ReplicaSet", "cart-7d9f8b6c5d")),
            &[("app", "cart"), ("pod-template-hash", "7d9f8b6c5d")],
        );
        let (r, ips) = pod_record(&p).unwrap();
        assert_eq!(r.workload.kind, "Deployment");
        assert_eq!(r.workload.name, "cart");
        assert_eq!(
            r.selector,
            LabelSelector::from_labels(Labels::from([("app".into(), "cart".into())]))
        );
        assert_eq!(ips, vec![ip("10.1.0.5"), ip("fd00::5")]);
        assert_eq!(host_ip(&p), Some(ip("192.0.2.10")));
    }

    #[test]
    fn owners_other_than_replicasets_and_bare_pods() {
        let sts = pod(
            "db-0",
            Some(("StatefulSet", "db")),
            &[
                ("app", "db"),
                ("statefulset.kubernetes.io/pod-name", "db-0"),
            ],
        );
        let (r, _) = pod_record(&sts).unwrap();
        assert_eq!(
            (r.workload.kind.as_str(), r.workload.name.as_str()),
            ("StatefulSet", "db")
        );
        assert_eq!(r.selector.match_labels.len(), 1);
        let cron = pod(
            "report-28000000-abcde",
            Some(("Job", "report-28000000")),
            &[("app", "report"), ("job-name", "report-28000000")],
        );
        let (r, _) = pod_record(&cron).unwrap();
        assert_eq!(
            (r.workload.kind.as_str(), r.workload.name.as_str()),
            ("CronJob", "report")
        );
        let bare = pod("debug", None, &[("app", "debug")]);
        let (r, _) = pod_record(&bare).unwrap();
        assert_eq!(
            (r.workload.kind.as_str(), r.workload.name.as_str()),
            ("Pod", "debug")
        );
    }

    #[test]
    fn host_network_pods_are_not_indexed() {
        let mut p = pod(
            "node-exporter-abcde",
            Some(("DaemonSet", "node-exporter")),
            &[],
        );
        p.spec = Some(PodSpec {
            host_network: Some(true),
            ..PodSpec::default()
        });
        assert_eq!(pod_record(&p), None);
    }

    #[test]
    fn a_vanished_pod_resolves_for_the_grace_period_then_is_unknown() {
        let t0 = Instant::now();
        let cidr: IpNet = "10.1.0.0/16".parse().unwrap();
        let mut index = PodIndex::new(Duration::from_secs(30), vec![cidr]);
        index.upsert_pod(record("shop", "cart-1", "cart"), vec![ip("10.1.0.5")]);
        index.remove_pod("shop", "cart-1", t0);
        let within = t0 + Duration::from_secs(30);
        assert!(matches!(index.lookup(ip("10.1.0.5"), within), Peer::Pod(_)));
        let after = t0 + Duration::from_secs(31);
        assert_eq!(index.lookup(ip("10.1.0.5"), after), Peer::UnknownInCluster);
        index.purge(after);
        assert_eq!(index.lookup(ip("10.1.0.5"), t0), Peer::UnknownInCluster);
        assert_eq!(
            index.lookup(ip("203.0.113.7"), t0),
            Peer::External(ip("203.0.113.7"))
        );
    }

    #[test]
    fn a_new_pod_takes_an_address_over_and_the_old_deletion_does_not_hide_it() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(Duration::from_secs(30), vec![]);
        index.upsert_pod(record("shop", "cart-1", "cart"), vec![ip("10.1.0.5")]);
        index.upsert_pod(record("shop", "web-1", "web"), vec![ip("10.1.0.5")]);
        // The old pod's deletion arrives after the new pod took its address.
        index.remove_pod("shop", "cart-1", t0);
        let Peer::Pod(p) = index.lookup(ip("10.1.0.5"), t0 + Duration::from_secs(60)) else {
            panic!("the new pod must resolve")
        };
        assert_eq!(p.name, "web-1");
    }

    #[test]
    fn services_resolve_to_their_selector_and_selectorless_ones_are_addresses() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(Duration::from_secs(30), vec![]);
        let svc = |name: &str, selector: Option<(&str, &str)>, cluster_ip: &str| Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: selector.map(|(k, v)| BTreeMap::from([(k.into(), v.into())])),
                cluster_ip: Some(cluster_ip.into()),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        let (r, ips) = service_record(&svc("cart", Some(("app", "cart")), "10.96.0.20")).unwrap();
        index.upsert_service(r, ips);
        let (r, ips) = service_record(&svc("ext", None, "10.96.0.21")).unwrap();
        index.upsert_service(r, ips);
        let Peer::Service(s) = index.lookup(ip("10.96.0.20"), t0) else {
            panic!()
        };
        assert_eq!(s.name, "cart");
        assert_eq!(
            index.lookup(ip("10.96.0.21"), t0),
            Peer::External(ip("10.96.0.21"))
        );
        index.remove_service("shop", "cart");
        assert_eq!(
            index.lookup(ip("10.96.0.20"), t0),
            Peer::External(ip("10.96.0.20"))
        );
    }
}
