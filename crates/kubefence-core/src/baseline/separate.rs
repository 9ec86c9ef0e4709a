//! Telling workloads apart when their selectors overlap.
//!
//! A workload's `spec.selector` may match the pods of another workload of
//! its namespace: the Kubernetes guestbook's redis leader and follower both
//! select `app: redis`, and only their pods' `role` label differs. A policy
//! that selected with `spec.selector` alone would give each workload the
//! other's rules, and a peer naming one would name both: leader and
//! follower would be open to each other on every port although only the
//! follower calls the leader.
//!
//! So where `spec.selector` is ambiguous, the selector is narrowed with
//! what the workload's pod template has and the others' lack: each stable
//! template label that some other matched workload does not carry with the
//! same value (`role: leader`), and, for a label key that another workload
//! has and this one has not, `DoesNotExist`. Labels that differ pod by pod
//! or run by run (`pod-template-hash`, `controller-revision-hash`, the
//! StatefulSet pod name and index, a Job's `controller-uid` and `job-name`)
//! are never used: the controllers add them to the live pods.
//!
//! The narrowed selector keeps every term of `spec.selector`, so it never
//! selects a pod that `spec.selector` does not. Where no label separates two
//! workloads (identical template labels), the selector still matches the
//! other's pods: that is reported, never hidden, and nothing is widened
//! beyond what the selector itself names.

use std::collections::BTreeMap;

use crate::model::Workload;
use crate::selector::{LabelSelector, Labels, Operator, Requirement};

/// Labels the controllers add to each pod or run; never part of a selector
/// that must match every pod of the workload.
pub const PER_REPLICA_LABELS: [&str; 10] = [
    "pod-template-hash",
    "controller-revision-hash",
    // A DaemonSet's pods carry the template generation; it changes at every
    // update of the template.
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
];

/// How one workload's pods are selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    /// The selector its policy and every peer naming it use.
    pub selector: LabelSelector,
    /// The other workloads whose pods `spec.selector` matches, when it was
    /// narrowed (or could not be).
    pub overlapping: Vec<usize>,
    /// Those the selector above still matches: no label tells them apart.
    pub still_matched: Vec<usize>,
}

impl Selection {
    /// What the selector is and why, for the policy's annotation; `None`
    /// when `spec.selector` was unambiguous.
    pub fn note(&self, workloads: &[Workload], original: &LabelSelector) -> Option<String> {
        if self.overlapping.is_empty() {
            return None;
        }
        let ids = |list: &[usize]| {
            list.iter()
                .map(|&i| workloads[i].id())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut note = format!(
            "spec.selector {original} also matches the pods of {}",
            ids(&self.overlapping)
        );
        if self.selector != *original {
            note.push_str(&format!(
                "; this policy selects {} (the pod template's labels that they lack)",
                self.selector
            ));
        }
        if !self.still_matched.is_empty() {
            note.push_str(&format!(
                "; no label of the pod template tells it apart from {}: this policy's rules apply to their pods too, and rules naming it as a peer name them too",
                ids(&self.still_matched)
            ));
        }
        Some(note)
    }
}

/// The selection of every workload (index for index).
pub(crate) fn separate(workloads: &[Workload]) -> Vec<Selection> {
    // Candidates by (namespace, label, value), so a selector is checked only
    // against the workloads that carry one of its labels.
    let mut by_label: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
    let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in workloads.iter().enumerate() {
        by_namespace
            .entry(w.namespace.as_str())
            .or_default()
            .push(i);
        for (k, v) in &w.pod_labels {
            by_label
                .entry((w.namespace.as_str(), k.as_str(), v.as_str()))
                .or_default()
                .push(i);
        }
    }
    workloads
        .iter()
        .enumerate()
        .map(|(wi, w)| {
            let unchanged = Selection {
                selector: w.selector.clone(),
                overlapping: Vec::new(),
                still_matched: Vec::new(),
            };
            if w.selector.is_empty() {
                // Refused by the builder; nothing to narrow.
                return unchanged;
            }
            let candidates: &[usize] = match w.selector.match_labels.iter().next() {
                Some((k, v)) => by_label
                    .get(&(w.namespace.as_str(), k.as_str(), v.as_str()))
                    .map_or(&[], Vec::as_slice),
                None => by_namespace
                    .get(w.namespace.as_str())
                    .map_or(&[], Vec::as_slice),
            };
            let overlapping: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&o| o != wi && w.selector.matches(&workloads[o].pod_labels))
                .collect();
            if overlapping.is_empty() {
                return unchanged;
            }
            let selector = narrowed(w, overlapping.iter().map(|&o| &workloads[o]));
            let still_matched = overlapping
                .iter()
                .copied()
                .filter(|&o| selector.matches(&workloads[o].pod_labels))
                .collect();
            Selection {
                selector,
                overlapping,
                still_matched,
            }
        })
        .collect()
}

fn stable(labels: &Labels) -> impl Iterator<Item = (&String, &String)> {
    labels
        .iter()
        .filter(|(k, _)| !PER_REPLICA_LABELS.contains(&k.as_str()))
}

/// `w`'s selector plus what its pods have and `others`' pods lack.
fn narrowed<'w>(w: &Workload, others: impl Iterator<Item = &'w Workload> + Clone) -> LabelSelector {
    let mut match_labels = w.selector.match_labels.clone();
    for (k, v) in stable(&w.pod_labels) {
        if others.clone().any(|o| o.pod_labels.get(k) != Some(v)) {
            match_labels.insert(k.clone(), v.clone());
        }
    }
    let mut expressions = w.selector.match_expressions.clone();
    for o in others {
        let separated =
            !LabelSelector::new(match_labels.clone(), expressions.clone()).matches(&o.pod_labels);
        if separated {
            continue;
        }
        for (k, _) in stable(&o.pod_labels) {
            if !w.pod_labels.contains_key(k)
                && let Ok(absent) = Requirement::new(k.clone(), Operator::DoesNotExist, [""; 0])
            {
                expressions.push(absent);
            }
        }
    }
    LabelSelector::new(match_labels, expressions)
}
