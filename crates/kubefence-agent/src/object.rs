//! The NetworkNeighborhood the agent writes for a workload
//! (`kubefence.dev/v1alpha1`, Kubescape's shape).
//!
//! Every node's agent writes the same object for a workload whose pods run
//! on several nodes, and an agent that restarts has forgotten what it
//! wrote. So a write is always a merge: the neighbours already in the
//! object are kept and this node's are added (ports unioned per peer),
//! and the write carries the `resourceVersion` it merged with, so two
//! nodes writing at once cannot lose each other's neighbours (the second
//! gets a conflict and merges again).
//!
//! Status (`kubescape.io/status`): `learning` from the first write until
//! the learning period has passed since then (`kubefence.dev/learning-since`,
//! kept on the object), then `completed`. Both are statuses the learned
//! controller (and Kubescape's generator) turn into a policy; `completed`
//! tells a reviewer that the period is over.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kubefence_core::learn::{Neighbor, NeighborPeer, Neighborhood, ObservedPort};
use kubefence_core::naming::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_LABEL, Source};
use kubefence_k8s::crd::learned::{NetworkNeighborhood, OtherGroup};
use kubefence_k8s::learn::neighborhood::{neighborhood, neighborhood_object};
use kubefence_k8s::learn::objects::STATUS_ANNOTATION;

use crate::aggregate::Snapshot;
use crate::connection::Direction;

/// When the neighborhood was first written (RFC 3339).
pub const LEARNING_SINCE_ANNOTATION: &str = "kubefence.dev/learning-since";
/// How the agent that wrote last captures connections (`ebpf`, `hubble`).
pub const MODE_ANNOTATION: &str = "kubefence.dev/agent-mode";
/// Connections past the agent's entry cap, per peer workload: not rules.
pub const COARSENED_ANNOTATION: &str = "kubefence.dev/agent-coarsened";

/// `kubescape.io/status` while learning, and once the period is over.
pub const STATUS_LEARNING: &str = "learning";
pub const STATUS_COMPLETED: &str = "completed";

/// Why an object cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "{namespace}/{name} exists and is not kubefence's (no {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} label): left alone"
    )]
    NotOurs { namespace: String, name: String },
    #[error("{namespace}/{name} holds neighbours that cannot be read: {reasons}")]
    Unreadable {
        namespace: String,
        name: String,
        reasons: String,
    },
}

/// What one write sets besides the neighbours.
#[derive(Clone, Debug)]
pub struct WriteContext<'a> {
    pub now: Timestamp,
    pub learning_period: Duration,
    /// The capture mode, for [`MODE_ANNOTATION`].
    pub mode: &'a str,
}

/// The object to write for `snapshot`, merged with `existing` (the object
/// as last read, `None` when there is none). The result carries
/// `existing`'s `resourceVersion`.
pub fn render(
    snapshot: &Snapshot,
    existing: Option<&NetworkNeighborhood>,
    context: &WriteContext<'_>,
) -> Result<NetworkNeighborhood, ObjectError> {
    let mut merged = snapshot.neighborhood.clone();
    let mut since = context.now;
    if let Some(existing) = existing {
        let namespace = existing.metadata.namespace.clone().unwrap_or_default();
        let name = existing.metadata.name.clone().unwrap_or_default();
        let ours = existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        if !ours {
            return Err(ObjectError::NotOurs { namespace, name });
        }
        let before = neighborhood(&existing.to_other_group(), &namespace).map_err(|errors| {
            ObjectError::Unreadable {
                namespace: namespace.clone(),
                name: name.clone(),
                reasons: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })?;
        merged.ingress = union(&before.value.ingress, &merged.ingress);
        merged.egress = union(&before.value.egress, &merged.egress);
        if let Some(at) = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEARNING_SINCE_ANNOTATION))
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            since = at.min(context.now);
        }
    }
    let (object, _reserved) = neighborhood_object(&merged);
    let mut object = object.to_other_group();
    let period = SignedDuration::try_from(context.learning_period).unwrap_or(SignedDuration::MAX);
    let learned_for = context.now.duration_since(since);
    let status = if learned_for >= period {
        STATUS_COMPLETED
    } else {
        STATUS_LEARNING
    };
    let labels = object.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    labels.insert(
        SOURCE_LABEL.to_string(),
        Source::Learned.as_str().to_string(),
    );
    let annotations = object
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(STATUS_ANNOTATION.to_string(), status.to_string());
    annotations.insert(LEARNING_SINCE_ANNOTATION.to_string(), since.to_string());
    annotations.insert(MODE_ANNOTATION.to_string(), context.mode.to_string());
    if !snapshot.coarse.is_empty() {
        annotations.insert(COARSENED_ANNOTATION.to_string(), coarse_text(snapshot));
    }
    object.metadata.resource_version = existing.and_then(|e| e.metadata.resource_version.clone());
    Ok(object)
}

/// The status a neighborhood first written at `since` has at `now`.
pub fn status_at(since: Timestamp, now: Timestamp, learning_period: Duration) -> &'static str {
    let period = SignedDuration::try_from(learning_period).unwrap_or(SignedDuration::MAX);
    if now.duration_since(since) >= period {
        STATUS_COMPLETED
    } else {
        STATUS_LEARNING
    }
}

/// `outgoing shop/cart: 12, incoming external: 3` (sorted).
fn coarse_text(snapshot: &Snapshot) -> String {
    snapshot
        .coarse
        .iter()
        .map(|((direction, peer), n)| {
            let direction = match direction {
                Direction::Outgoing => "egress",
                Direction::Incoming => "ingress",
            };
            format!("{direction} {peer}: {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Neighbours of both lists, ports unioned per peer, sorted by peer.
fn union(a: &[Neighbor], b: &[Neighbor]) -> Vec<Neighbor> {
    let mut by_peer: BTreeMap<NeighborPeer, BTreeSet<ObservedPort>> = BTreeMap::new();
    for n in a.iter().chain(b) {
        by_peer
            .entry(n.peer.clone())
            .or_default()
            .extend(n.ports.iter().map(|p| ObservedPort {
                name: None,
                ..p.clone()
            }));
    }
    by_peer
        .into_iter()
        .map(|(peer, ports)| Neighbor {
            peer,
            ports,
            evidence: None,
        })
        .collect()
}

/// Whether two neighborhoods hold the same neighbours (ignoring evidence).
pub fn same_neighbours(a: &Neighborhood, b: &Neighborhood) -> bool {
    let strip = |list: &[Neighbor]| union(list, &[]);
    strip(&a.ingress) == strip(&b.ingress) && strip(&a.egress) == strip(&b.egress)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use kubefence_core::learn::WorkloadRef;
    use kubefence_core::{LabelSelector, Labels, Protocol};
    use kubefence_k8s::learn::neighborhood::check_status;

    use super::*;

    fn selector(app: &str) -> LabelSelector {
        LabelSelector::from_labels(Labels::from([("app".into(), app.into())]))
    }

    fn port(p: u16) -> ObservedPort {
        ObservedPort {
            protocol: Protocol::Tcp,
            port: p,
            name: None,
        }
    }

    fn snapshot(egress: Vec<(NeighborPeer, Vec<u16>)>) -> Snapshot {
        Snapshot {
            neighborhood: Neighborhood {
                workload: WorkloadRef {
                    kind: "Deployment".into(),
                    namespace: "shop".into(),
                    name: "web".into(),
                },
                selector: selector("web"),
                ingress: vec![],
                egress: egress
                    .into_iter()
                    .map(|(peer, ports)| Neighbor {
                        peer,
                        ports: ports.into_iter().map(port).collect(),
                        evidence: None,
                    })
                    .collect(),
            },
            coarse: BTreeMap::new(),
        }
    }

    fn cart() -> NeighborPeer {
        NeighborPeer::Pods {
            namespace_selector: None,
            pod_selector: Some(selector("cart")),
        }
    }

    fn external() -> NeighborPeer {
        NeighborPeer::Address {
            ip: "203.0.113.9".parse::<IpAddr>().unwrap(),
            dns_names: BTreeSet::new(),
        }
    }

    fn context(now: &str) -> WriteContext<'static> {
        WriteContext {
            now: now.parse().unwrap(),
            learning_period: Duration::from_secs(3600),
            mode: "ebpf",
        }
    }

    #[test]
    fn a_first_write_is_learning_labelled_ours_and_reads_back_the_same_neighbours() {
        let snap = snapshot(vec![(cart(), vec![8080]), (external(), vec![443])]);
        let object = render(&snap, None, &context("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(object.metadata.name.as_deref(), Some("deployment-web"));
        assert_eq!(object.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(object.metadata.resource_version, None);
        let annotations = object.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[STATUS_ANNOTATION], STATUS_LEARNING);
        assert_eq!(annotations[MODE_ANNOTATION], "ebpf");
        assert_eq!(
            annotations[LEARNING_SINCE_ANNOTATION],
            "2026-01-01T00:00:00Z"
        );
        // The learned controller's own rule accepts what the agent writes.
        assert!(check_status(&object.metadata).is_ok());
        let back = neighborhood(&object.to_other_group(), "shop")
            .unwrap()
            .value;
        assert!(same_neighbours(&back, &snap.neighborhood));
        assert_eq!(back.selector, selector("web"));
    }

    #[test]
    fn a_later_write_keeps_what_other_nodes_wrote_and_the_first_learning_time() {
        let first = snapshot(vec![(cart(), vec![8080])]);
        let mut stored = render(&first, None, &context("2026-01-01T00:00:00Z")).unwrap();
        stored.metadata.resource_version = Some("7".into());
        // Another node saw web call cart on 9090 and an external address.
        let second = snapshot(vec![(cart(), vec![9090]), (external(), vec![443])]);
        let object = render(&second, Some(&stored), &context("2026-01-01T00:30:00Z")).unwrap();
        assert_eq!(object.metadata.resource_version.as_deref(), Some("7"));
        let back = neighborhood(&object.to_other_group(), "shop")
            .unwrap()
            .value;
        let expected = snapshot(vec![(cart(), vec![8080, 9090]), (external(), vec![443])]);
        assert!(same_neighbours(&back, &expected.neighborhood), "{back:?}");
        let annotations = object.metadata.annotations.unwrap();
        assert_eq!(
            annotations[LEARNING_SINCE_ANNOTATION],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(annotations[STATUS_ANNOTATION], STATUS_LEARNING);
    }

    #[test]
    fn after_the_learning_period_the_status_is_completed_and_still_accepted() {
        let snap = snapshot(vec![(cart(), vec![8080])]);
        let stored = render(&snap, None, &context("2026-01-01T00:00:00Z")).unwrap();
        let object = render(&snap, Some(&stored), &context("2026-01-01T01:00:00Z")).unwrap();
        let annotations = object.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[STATUS_ANNOTATION], STATUS_COMPLETED);
        assert!(check_status(&object.metadata).is_ok());
        assert_eq!(
            status_at(
                "2026-01-01T00:00:00Z".parse().unwrap(),
                "2026-01-01T00:59:59Z".parse().unwrap(),
                Duration::from_secs(3600)
            ),
            STATUS_LEARNING
        );
    }

    #[test]
    fn an_object_that_is_not_ours_is_left_alone() {
        let snap = snapshot(vec![(cart(), vec![8080])]);
        let mut foreign = render(&snap, None, &context("2026-01-01T00:00:00Z")).unwrap();
        foreign.metadata.labels = None;
        assert!(matches!(
            render(&snap, Some(&foreign), &context("2026-01-01T00:00:00Z")),
            Err(ObjectError::NotOurs { .. })
        ));
    }

    #[test]
    fn coarsened_counts_are_said_in_an_annotation_and_are_not_rules() {
        let mut snap = snapshot(vec![(cart(), vec![8080])]);
        snap.coarse.insert(
            (Direction::Outgoing, crate::aggregate::CoarsePeer::External),
            12,
        );
        let object = render(&snap, None, &context("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            object.metadata.annotations.clone().unwrap()[COARSENED_ANNOTATION],
            "egress external: 12"
        );
        let back = neighborhood(&object.to_other_group(), "shop")
            .unwrap()
            .value;
        assert_eq!(back.egress.len(), 1);
    }
}
