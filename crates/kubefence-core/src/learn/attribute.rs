//! Which workload a pod belongs to, and how a policy selects it.
//!
//! In order of trust: the manifests (`-f`: the workload in the pod's
//! namespace whose `spec.selector` matches the pod's labels, preferring the
//! one the flow or the pod name points at), the flow's own `workloads[]`,
//! then the pod-name patterns the controllers use (`<deploy>-<hash>-<5>` of
//! a ReplicaSet, `<sts>-<ordinal>` of a StatefulSet, `<ds>-<5>` of a
//! DaemonSet, a Job's `job-name` label).
//!
//! The selector is the workload's own `spec.selector` when the manifests
//! give it, else the pod's labels minus those that differ pod by pod or run
//! by run ([`PER_REPLICA_LABELS`]) and minus the ones Cilium adds to its
//! identities: every pod of the workload carries what is left.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::baseline::PER_REPLICA_LABELS;
use crate::conn::Protocol;
use crate::model::{Cluster, Workload, WorkloadKind};
use crate::selector::{LabelSelector, Labels};

use super::flows::FlowWorkload;
use super::model::WorkloadRef;

/// Label keys Cilium adds to a pod's identity that are not pod labels.
const CILIUM_KEY_PREFIXES: [&str; 2] = ["io.cilium.k8s.", "io.kubernetes.pod.namespace"];

/// The characters Kubernetes uses in generated name suffixes
/// (`k8s.io/apimachinery/pkg/util/rand.SafeEncodeString`).
const SAFE_ENCODE_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// A pod as a flow describes it.
pub(crate) struct PodView<'a> {
    pub namespace: &'a str,
    pub pod_name: Option<&'a str>,
    pub labels: &'a [(String, String)],
    pub workloads: &'a [FlowWorkload<'static>],
}

/// A pod attributed to its workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attributed {
    pub workload: WorkloadRef,
    pub selector: LabelSelector,
    /// Container port names of the workload, from the manifests.
    pub named_ports: BTreeMap<(Protocol, u16), String>,
}

/// The pod's labels as Kubernetes has them (Cilium's additions removed).
pub(crate) fn pod_labels(labels: &[(String, String)]) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !CILIUM_KEY_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels every pod of the workload carries: no per-replica or per-run
/// label.
pub(crate) fn stable_labels(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !PER_REPLICA_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The workload `pod` belongs to, or `None` when nothing says.
pub(crate) fn attribute(pod: &PodView<'_>, cluster: Option<&Cluster>) -> Option<Attributed> {
    let labels = pod_labels(pod.labels);
    let claimed = claimed_workload(pod, &labels);
    if let Some(cluster) = cluster
        && let Some(w) = from_manifests(cluster, pod, &labels, claimed.as_ref())
    {
        return Some(Attributed {
            workload: WorkloadRef {
                kind: w.kind.as_str().to_string(),
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            },
            selector: w.selector.clone(),
            named_ports: w
                .named_ports()
                .into_iter()
                .map(|(name, key)| (key, name))
                .collect(),
        });
    }
    let (kind, name) = claimed?;
    Some(Attributed {
        workload: WorkloadRef {
            kind,
            namespace: pod.namespace.to_string(),
            name,
        },
        selector: LabelSelector::from_labels(stable_labels(&labels)),
        named_ports: BTreeMap::new(),
    })
}

/// The workload of the manifests: the one the flow or pod name names, else
/// the only one whose selector matches the pod's labels.
fn from_manifests<'c>(
    cluster: &'c Cluster,
    pod: &PodView<'_>,
    labels: &Labels,
    claimed: Option<&(String, String)>,
) -> Option<&'c Workload> {
    let in_namespace = || {
        cluster
            .workloads
            .iter()
            .filter(|w| w.namespace == pod.namespace)
    };
    if let Some((kind, name)) = claimed
        && let Some(w) =
            in_namespace().find(|w| w.name == *name && w.kind.as_str().eq_ignore_ascii_case(kind))
    {
        return Some(w);
    }
    let matching: Vec<&Workload> = in_namespace()
        .filter(|w| !w.selector.is_empty() && w.selector.matches(labels))
        .collect();
    match matching.as_slice() {
        [only] => Some(only),
        [] => None,
        several => {
            // Overlapping selectors: the pod name says which one made it.
            let pod_name = pod.pod_name?;
            let mut by_prefix: Vec<&&Workload> = several
                .iter()
                .filter(|w| {
                    pod_name
                        .strip_prefix(w.name.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
                })
                .collect();
            by_prefix.sort_by_key(|w| std::cmp::Reverse(w.name.len()));
            match by_prefix.as_slice() {
                [first, rest @ ..]
                    if rest.first().is_none_or(|r| r.name.len() < first.name.len()) =>
                {
                    Some(first)
                }
                _ => None,
            }
        }
    }
}

/// `(kind, name)` from `workloads[]`, else from the pod name and labels.
fn claimed_workload(pod: &PodView<'_>, labels: &Labels) -> Option<(String, String)> {
    if let Some(w) = pod.workloads.first()
        && !w.name.is_empty()
    {
        let kind = if w.kind.is_empty() {
            pod.pod_name
                .and_then(|p| from_pod_name(p, labels))
                .map_or_else(|| "Pod".to_string(), |(k, _)| k)
        } else {
            canonical_kind(&w.kind)
        };
        // Hubble may name the ReplicaSet; its Deployment is the workload.
        if kind == WorkloadKind::ReplicaSet.as_str()
            && let Some(hash) = labels.get("pod-template-hash")
            && let Some(deploy) = w.name.strip_suffix(&format!("-{hash}"))
        {
            return Some((WorkloadKind::Deployment.as_str().to_string(), deploy.into()));
        }
        return Some((kind, w.name.to_string()));
    }
    from_pod_name(pod.pod_name?, labels)
}

/// `Deployment` for `deployment`, `deploy`, …; other kinds as given.
fn canonical_kind(kind: &str) -> String {
    WorkloadKind::from_str(kind).map_or_else(|_| kind.to_string(), |k| k.as_str().to_string())
}

fn is_generated_suffix(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.chars().all(|c| SAFE_ENCODE_ALPHABET.contains(c))
}

/// The controllers' pod-name patterns, confirmed by the labels they add.
fn from_pod_name(pod_name: &str, labels: &Labels) -> Option<(String, String)> {
    let kind = |k: WorkloadKind, name: &str| Some((k.as_str().to_string(), name.to_string()));
    // Job (and CronJob, whose Jobs are `<cronjob>-<scheduled minute>`).
    if let Some(job) = labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
    {
        if let Some((cron, stamp)) = job.rsplit_once('-')
            && stamp.len() >= 8
            && stamp.chars().all(|c| c.is_ascii_digit())
        {
            return kind(WorkloadKind::CronJob, cron);
        }
        return kind(WorkloadKind::Job, job);
    }
    let (stem, last) = pod_name.rsplit_once('-')?;
    // StatefulSet: `<sts>-<ordinal>`, with the pod-name or index label.
    let ordinal = !last.is_empty() && last.chars().all(|c| c.is_ascii_digit());
    let sts_label = labels
        .get("statefulset.kubernetes.io/pod-name")
        .map(String::as_str)
        == Some(pod_name)
        || labels
            .get("apps.kubernetes.io/pod-index")
            .is_some_and(|i| i == last);
    if ordinal && sts_label {
        return kind(WorkloadKind::StatefulSet, stem);
    }
    if !is_generated_suffix(last, 5..=5) {
        return None;
    }
    // ReplicaSet of a Deployment: `<deploy>-<pod-template-hash>-<5>`.
    if let Some((deploy, hash)) = stem.rsplit_once('-') {
        let hash_label = labels.get("pod-template-hash").map(String::as_str);
        if hash_label == Some(hash) || (hash_label.is_none() && is_generated_suffix(hash, 6..=10)) {
            return kind(WorkloadKind::Deployment, deploy);
        }
    }
    // DaemonSet: `<ds>-<5>`, with the template generation label.
    if labels.contains_key("pod-template-generation") {
        return kind(WorkloadKind::DaemonSet, stem);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Namespace;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod<'a>(
        name: &'a str,
        labels: &'a [(String, String)],
        workloads: &'a [FlowWorkload<'static>],
    ) -> PodView<'a> {
        PodView {
            namespace: "shop",
            pod_name: Some(name),
            labels,
            workloads,
        }
    }

    fn workload(kind: WorkloadKind, name: &str, selector: &[(&str, &str)]) -> Workload {
        let sel: Labels = selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Workload {
            kind,
            namespace: "shop".into(),
            name: name.into(),
            uid: None,
            labels: Labels::new(),
            annotations: Labels::new(),
            selector: LabelSelector::from_labels(sel.clone()),
            pod_labels: sel,
            containers: vec![],
            pod_ips: vec![],
        }
    }

    #[test]
    fn hubble_workloads_name_the_workload_and_per_replica_labels_are_dropped() {
        let labels = pairs(&[
            ("app", "cart"),
            ("pod-template-hash", "7d9f8b6c5"),
            ("io.cilium.k8s.policy.cluster", "default"),
            ("io.kubernetes.pod.namespace", "shop"),
        ]);
        let wl = [FlowWorkload {
            name: "cart".into(),
            kind: "Deployment".into(),
        }];
        let a = attribute(&pod("cart-7d9f8b6c5-x2x4z", &labels, &wl), None).unwrap();
        assert_eq!(a.workload.kind, "Deployment");
        assert_eq!(a.workload.name, "cart");
        assert_eq!(
            a.selector,
            LabelSelector::from_labels(Labels::from([("app".into(), "cart".into())]))
        );
    }

    #[test]
    fn a_replicaset_named_by_hubble_is_attributed_to_its_deployment() {
        let labels = pairs(&[("app", "cart"), ("pod-template-hash", "7d9f8b6c5")]);
        let wl = [FlowWorkload {
            name: "cart-7d9f8b6c5".into(),
            kind: "ReplicaSet".into(),
        }];
        let a = attribute(&pod("cart-7d9f8b6c5-x2x4z", &labels, &wl), None).unwrap();
        assert_eq!(
            (a.workload.kind.as_str(), a.workload.name.as_str()),
            ("Deployment", "cart")
        );
    }

    #[test]
    fn pod_name_patterns_attribute_replicasets_statefulsets_daemonsets_and_jobs() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(&'a str, &'a str)>,
        );
        let cases: [Case<'_>; 7] = [
            (
                "cart-7d9f8b6c5-x2x4z",
                &[("app", "cart"), ("pod-template-hash", "7d9f8b6c5")],
                Some(("Deployment", "cart")),
            ),
            (
                "web-api-5b7c9dd4f8-bbbbb",
                &[("app", "web")],
                Some(("Deployment", "web-api")),
            ),
            (
                "db-2",
                &[
                    ("app", "db"),
                    ("statefulset.kubernetes.io/pod-name", "db-2"),
                    ("controller-revision-hash", "db-6d5c4"),
                ],
                Some(("StatefulSet", "db")),
            ),
            (
                "agent-x7k2p",
                &[("app", "agent"), ("pod-template-generation", "3")],
                Some(("DaemonSet", "agent")),
            ),
            (
                "backup-28912345-abcde",
                &[("job-name", "backup-28912345")],
                Some(("CronJob", "backup")),
            ),
            // An ordinal without the StatefulSet labels proves nothing.
            ("web-0", &[("app", "web")], None),
            ("standalone", &[("app", "x")], None),
        ];
        for (name, labels, want) in cases {
            let labels = pairs(labels);
            let got = attribute(&pod(name, &labels, &[]), None)
                .map(|a| (a.workload.kind.clone(), a.workload.name.clone()));
            assert_eq!(
                got,
                want.map(|(k, n)| (k.to_string(), n.to_string())),
                "{name}"
            );
        }
    }

    #[test]
    fn manifests_give_the_selector_and_port_names() {
        let mut cart = workload(WorkloadKind::Deployment, "cart", &[("app", "cart")]);
        cart.pod_labels.insert("version".into(), "v2".into());
        cart.containers.push(crate::model::Container {
            name: "c".into(),
            init: false,
            command: vec![],
            args: vec![],
            env: vec![],
            env_from: vec![],
            ports: vec![crate::model::ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            }],
        });
        let mut cluster = Cluster::default();
        cluster.workloads.push(cart);
        cluster
            .namespaces
            .insert("shop".into(), Namespace::implicit("shop"));
        let labels = pairs(&[("app", "cart"), ("version", "v2")]);
        // No workloads[] and a pod name without a pattern: the selector decides.
        let a = attribute(&pod("something", &labels, &[]), Some(&cluster)).unwrap();
        assert_eq!(a.workload.name, "cart");
        assert_eq!(
            a.selector,
            LabelSelector::from_labels(Labels::from([("app".into(), "cart".into())])),
            "spec.selector, not the pod's labels"
        );
        assert_eq!(
            a.named_ports
                .get(&(Protocol::Tcp, 8080))
                .map(String::as_str),
            Some("http")
        );
    }

    #[test]
    fn overlapping_selectors_are_told_apart_by_the_pod_name() {
        let mut cluster = Cluster::default();
        cluster.workloads.push(workload(
            WorkloadKind::Deployment,
            "redis-leader",
            &[("app", "redis")],
        ));
        cluster.workloads.push(workload(
            WorkloadKind::Deployment,
            "redis-follower",
            &[("app", "redis")],
        ));
        let labels = pairs(&[("app", "redis")]);
        let a = attribute(&pod("redis-follower-abc", &labels, &[]), Some(&cluster)).unwrap();
        assert_eq!(a.workload.name, "redis-follower");
        assert!(attribute(&pod("redis-other", &labels, &[]), Some(&cluster)).is_none());
    }
}
