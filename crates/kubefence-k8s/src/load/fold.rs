//! Folding pods into the workloads they belong to.
//!
//! A pod owned by a workload of the input adds its IPs to that workload; a
//! pod owned by a ReplicaSet of a Deployment belongs to the Deployment. When
//! the owner is not in the input (a live pod dump without its workloads), the
//! owner is rebuilt from the pod: a ReplicaSet named `<deployment>-<hash>`
//! whose pods carry `pod-template-hash: <hash>` stands for the Deployment.
//! With `--by pod` every pod is an endpoint of its own and the workloads it
//! belongs to are not.

use std::collections::{BTreeMap, BTreeSet};

use kubefence_core::model::{Cluster, Workload, WorkloadKind};
use kubefence_core::selector::LabelSelector;

use super::Granularity;
use crate::convert::{Converted, Owner, is_part_of_owner};

/// The label the Deployment controller puts on a ReplicaSet's pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Clone, Debug)]
pub(crate) struct RawPod {
    pub workload: Workload,
    pub owner: Option<Owner>,
}

/// A ReplicaSet owned by a Deployment, or a Job owned by a CronJob.
#[derive(Clone, Debug)]
pub(crate) struct OwnedWorkload {
    pub workload: Workload,
    pub owner: Owner,
}

/// The objects to fold, sorted by what they are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Given {
    /// Everything but Pods and workloads owned by another workload.
    pub cluster: Cluster,
    pub pods: Vec<RawPod>,
    pub owned: Vec<OwnedWorkload>,
}

impl Given {
    pub fn add(&mut self, converted: Converted) {
        let cluster = &mut self.cluster;
        match converted {
            Converted::Namespace(n) => {
                cluster.namespaces.insert(n.name.clone(), n);
            }
            Converted::Pod { workload, owner } => self.pods.push(RawPod { workload, owner }),
            Converted::Workload {
                workload,
                owner: Some(owner),
            } if is_part_of_owner(workload.kind, Some(&owner)) => {
                self.owned.push(OwnedWorkload { workload, owner })
            }
            Converted::Workload { workload, .. } => cluster.workloads.push(workload),
            Converted::Service(s) => cluster.services.push(s),
            Converted::Ingress(i) => cluster.ingresses.push(i),
            Converted::ConfigMap(c) => cluster.config_maps.push(c),
            Converted::NetworkPolicy(p) => cluster.policies.push(p),
        }
    }
}

/// (namespace, kind, name)
type Key = (String, WorkloadKind, String);

fn key(w: &Workload) -> Key {
    (w.namespace.clone(), w.kind, w.name.clone())
}

pub(crate) fn fold(raw: Given, granularity: Granularity) -> Cluster {
    let Given {
        mut cluster,
        pods,
        owned,
    } = raw;
    let mut index: BTreeMap<Key, usize> = cluster
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (key(w), i))
        .collect();
    // Where objects owned by another one end up: (ns, kind, name) → workload.
    let mut redirect: BTreeMap<Key, Key> = BTreeMap::new();

    for owned in &owned {
        let w = &owned.workload;
        let Ok(owner_kind) = owned.owner.kind.parse::<WorkloadKind>() else {
            continue;
        };
        let owner_key = (w.namespace.clone(), owner_kind, owned.owner.name.clone());
        if !index.contains_key(&owner_key) {
            // The owner is not in the input: the owned object stands for it.
            let stand_in = Workload {
                kind: owner_kind,
                name: owned.owner.name.clone(),
                uid: None,
                ..w.clone()
            };
            index.insert(owner_key.clone(), cluster.workloads.len());
            cluster.workloads.push(stand_in);
        }
        redirect.insert(key(w), owner_key);
    }

    let mut has_pods: BTreeSet<Key> = BTreeSet::new();
    let mut pod_endpoints = Vec::new();
    for pod in &pods {
        let Some(target) = pod_owner(pod, &redirect) else {
            pod_endpoints.push(pod.workload.clone());
            continue;
        };
        if !index.contains_key(&target) {
            index.insert(target.clone(), cluster.workloads.len());
            cluster.workloads.push(stand_in_from_pod(pod, &target));
        }
        has_pods.insert(target.clone());
        match granularity {
            Granularity::Pod => pod_endpoints.push(pod.workload.clone()),
            Granularity::Workload => {
                if let Some(&i) = index.get(&target) {
                    let w = &mut cluster.workloads[i];
                    for ip in &pod.workload.pod_ips {
                        if !w.pod_ips.contains(ip) {
                            w.pod_ips.push(*ip);
                        }
                    }
                }
            }
        }
    }
    if granularity == Granularity::Pod {
        cluster.workloads.retain(|w| !has_pods.contains(&key(w)));
    }
    cluster.workloads.extend(pod_endpoints);
    cluster
}

/// The workload a pod belongs to, or `None` for a bare pod.
fn pod_owner(pod: &RawPod, redirect: &BTreeMap<Key, Key>) -> Option<Key> {
    let owner = pod.owner.as_ref()?;
    let kind = owner.kind.parse::<WorkloadKind>().ok()?;
    let ns = pod.workload.namespace.clone();
    let direct = (ns.clone(), kind, owner.name.clone());
    if let Some(target) = redirect.get(&direct) {
        return Some(target.clone());
    }
    if kind == WorkloadKind::ReplicaSet
        && let Some(hash) = pod.workload.pod_labels.get(POD_TEMPLATE_HASH)
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
    {
        return Some((ns, WorkloadKind::Deployment, deployment.to_string()));
    }
    Some(direct)
}

/// A workload rebuilt from one of its pods, when the input lacks it.
fn stand_in_from_pod(pod: &RawPod, target: &Key) -> Workload {
    let mut selector_labels = pod.workload.pod_labels.clone();
    selector_labels.remove(POD_TEMPLATE_HASH);
    Workload {
        kind: target.1,
        namespace: target.0.clone(),
        name: target.2.clone(),
        uid: None,
        labels: selector_labels.clone(),
        annotations: Default::default(),
        selector: LabelSelector::from_labels(selector_labels),
        pod_labels: pod.workload.pod_labels.clone(),
        containers: pod.workload.containers.clone(),
        // The pod's IPs are added by the caller.
        pod_ips: Vec::new(),
    }
}
