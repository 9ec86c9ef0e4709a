//! Writes of the neighborhoods: batched, rate-limited, never lost to a race.
//!
//! A workload is written when its neighbours changed (or its status is due
//! to change from `learning` to `completed`), and at most once per
//! `min_interval` (default 30 s), whatever the traffic: API load grows with
//! workloads, not with connections. Every attempt, failed or not, uses the
//! workload's slot, so a failing API server is not hammered.
//!
//! One write is: read the object (get), merge (`object::render`), then
//! create it (POST: fails with AlreadyExists if another node created it
//! meanwhile) or server-side apply it with the `resourceVersion` that was
//! merged (fails with a conflict if it changed meanwhile). A failed write
//! leaves the workload dirty, so the next slot merges again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubefence_core::learn::WorkloadRef;
use kubefence_k8s::crd::learned::NetworkNeighborhood;

use crate::aggregate::Snapshot;
use crate::object::{self, ObjectError, WriteContext};

/// The field manager of the agent's applies.
pub const FIELD_MANAGER: &str = "kubefence-agent";

/// When each workload may be written next.
#[derive(Debug)]
pub struct WriteSchedule {
    min_interval: Duration,
    last_attempt: HashMap<WorkloadRef, Instant>,
}

impl WriteSchedule {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_attempt: HashMap::new(),
        }
    }

    /// Whether `workload` may be written at `now`.
    pub fn due(&self, workload: &WorkloadRef, now: Instant) -> bool {
        self.last_attempt
            .get(workload)
            .is_none_or(|at| now.saturating_duration_since(*at) >= self.min_interval)
    }

    /// A write of `workload` was attempted at `now`.
    pub fn attempted(&mut self, workload: &WorkloadRef, now: Instant) {
        self.last_attempt.insert(workload.clone(), now);
    }

    /// Forgets workloads not attempted for a long time (bounded memory).
    pub fn forget_older_than(&mut self, now: Instant, age: Duration) {
        self.last_attempt
            .retain(|_, at| now.saturating_duration_since(*at) < age);
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{namespace}/{name} changed while it was merged; merged again at the next slot")]
    Conflict { namespace: String, name: String },
    #[error("{namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What a successful write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub created: bool,
    /// The status written (`learning` or `completed`).
    pub status: String,
    /// When the neighborhood was first written (its learning start).
    pub learning_since: Option<Timestamp>,
}

/// Reads, merges and writes one workload's neighborhood.
pub async fn write(
    client: &kube::Client,
    snapshot: &Snapshot,
    context: &WriteContext<'_>,
) -> Result<Written, WriteError> {
    let workload = &snapshot.neighborhood.workload;
    let namespace = workload.namespace.clone();
    let name = format!("{}-{}", workload.kind, workload.name).to_ascii_lowercase();
    let api: Api<NetworkNeighborhood> = Api::namespaced(client.clone(), &namespace);
    let api_error = |source| WriteError::Api {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    let existing = api.get_opt(&name).await.map_err(api_error)?;
    let object = object::render(snapshot, existing.as_ref(), context)?;
    let result = if existing.is_none() {
        api.create(&PostParams::default(), &object).await
    } else {
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
    };
    match result {
        Ok(_) => {
            let annotations = object.metadata.annotations.unwrap_or_default();
            Ok(Written {
                created: existing.is_none(),
                status: annotations
                    .get(kubefence_k8s::learn::objects::STATUS_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                learning_since: annotations
                    .get(object::LEARNING_SINCE_ANNOTATION)
                    .and_then(|t| t.parse().ok()),
            })
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Err(WriteError::Conflict {
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        Err(e) => Err(api_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str) -> WorkloadRef {
        WorkloadRef {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_workload_is_written_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut schedule = WriteSchedule::new(Duration::from_secs(30));
        assert!(schedule.due(&workload("web"), t0));
        schedule.attempted(&workload("web"), t0);
        assert!(!schedule.due(&workload("web"), t0 + Duration::from_secs(29)));
        assert!(schedule.due(&workload("cart"), t0 + Duration::from_secs(1)));
        assert!(schedule.due(&workload("web"), t0 + Duration::from_secs(30)));
        schedule.forget_older_than(t0 + Duration::from_secs(100), Duration::from_secs(60));
        assert!(schedule.last_attempt.is_empty());
    }
}

#[cfg(test)]
mod api_tests {
    use std::collections::{BTreeMap, BTreeSet};

    use kubefence_core::learn::{Neighbor, NeighborPeer, Neighborhood, ObservedPort};
    use kubefence_core::{LabelSelector, Labels, Protocol};
    use kubefence_k8s::crd::learned::OtherGroup;
    use kubefence_k8s::learn::neighborhood::neighborhood;
    use kubefence_operator::fake::FakeApi;

    use super::*;
    use crate::object::same_neighbours;

    const PATH: &str =
        "/apis/kubefence.dev/v1alpha1/namespaces/shop/networkneighborhoods/deployment-web";

    fn snapshot(ports: &[u16]) -> Snapshot {
        let selector =
            |app: &str| LabelSelector::from_labels(Labels::from([("app".into(), app.into())]));
        Snapshot {
            neighborhood: Neighborhood {
                workload: WorkloadRef {
                    kind: "Deployment".into(),
                    namespace: "shop".into(),
                    name: "web".into(),
                },
                selector: selector("web"),
                ingress: vec![],
                egress: vec![Neighbor {
                    peer: NeighborPeer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(selector("cart")),
                    },
                    ports: ports
                        .iter()
                        .map(|&port| ObservedPort {
                            protocol: Protocol::Tcp,
                            port,
                            name: None,
                        })
                        .collect::<BTreeSet<_>>(),
                    evidence: None,
                }],
            },
            coarse: BTreeMap::new(),
        }
    }

    fn context(now: &str) -> WriteContext<'static> {
        WriteContext {
            now: now.parse().unwrap(),
            learning_period: Duration::from_secs(3600),
            mode: "ebpf",
        }
    }

    fn stored(fake: &FakeApi) -> NetworkNeighborhood {
        serde_json::from_value(fake.get(PATH).expect("the neighborhood was written")).unwrap()
    }

    #[tokio::test]
    async fn two_nodes_writing_the_same_workload_lose_nothing() {
        let (client, fake) = FakeApi::start();
        // Node A creates the object.
        let written = write(
            &client,
            &snapshot(&[8080]),
            &context("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
        assert!(written.created);
        assert_eq!(written.status, "learning");
        // Node B read it before A wrote... simulated by B merging with an
        // old resourceVersion: the apply is refused, nothing is lost.
        let mut old = stored(&fake);
        old.metadata.resource_version = Some("0".into());
        let stale = crate::object::render(
            &snapshot(&[9090]),
            Some(&old),
            &context("2026-01-01T00:00:10Z"),
        )
        .unwrap();
        let api: Api<NetworkNeighborhood> = Api::namespaced(client.clone(), "shop");
        let refused = api
            .patch(
                "deployment-web",
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&stale),
            )
            .await;
        assert!(
            matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 409),
            "{refused:?}"
        );
        // B's next write merges with what is there.
        let written = write(
            &client,
            &snapshot(&[9090]),
            &context("2026-01-01T00:00:20Z"),
        )
        .await
        .unwrap();
        assert!(!written.created);
        let back = neighborhood(&stored(&fake).to_other_group(), "shop")
            .unwrap()
            .value;
        assert!(
            same_neighbours(&back, &snapshot(&[8080, 9090]).neighborhood),
            "{back:?}"
        );
        let annotations = stored(&fake).metadata.annotations.unwrap();
        assert_eq!(
            annotations[crate::object::LEARNING_SINCE_ANNOTATION],
            "2026-01-01T00:00:00Z"
        );
    }

    #[tokio::test]
    async fn a_create_that_loses_the_race_is_a_conflict_not_an_overwrite() {
        let (client, fake) = FakeApi::start();
        // Another node created the object between our read and our create:
        // the create answers AlreadyExists (409).
        let other =
            crate::object::render(&snapshot(&[8080]), None, &context("2026-01-01T00:00:00Z"))
                .unwrap();
        let api: Api<NetworkNeighborhood> = Api::namespaced(client.clone(), "shop");
        api.create(&PostParams::default(), &other).await.unwrap();
        let again = api.create(&PostParams::default(), &other).await;
        assert!(matches!(again, Err(kube::Error::Api(ref s)) if s.code == 409));
        // A write now reads it first and merges.
        write(&client, &snapshot(&[443]), &context("2026-01-01T00:00:05Z"))
            .await
            .unwrap();
        let back = neighborhood(&stored(&fake).to_other_group(), "shop")
            .unwrap()
            .value;
        assert!(same_neighbours(&back, &snapshot(&[443, 8080]).neighborhood));
    }

    #[tokio::test]
    async fn an_object_someone_else_owns_is_not_written() {
        let (client, fake) = FakeApi::start();
        let mut foreign =
            crate::object::render(&snapshot(&[8080]), None, &context("2026-01-01T00:00:00Z"))
                .unwrap();
        foreign.metadata.labels = None;
        fake.add(&foreign);
        let writes = fake.writes();
        let result = write(
            &client,
            &snapshot(&[9090]),
            &context("2026-01-01T00:00:05Z"),
        )
        .await;
        assert!(
            matches!(result, Err(WriteError::Object(ObjectError::NotOurs { .. }))),
            "{result:?}"
        );
        assert_eq!(fake.writes(), writes);
    }
}
