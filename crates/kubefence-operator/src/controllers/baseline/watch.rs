//! Watch events → [`Change`]s: the one place that turns Kubernetes objects
//! into what the controller keeps.
//!
//! Production streams come from kube-runtime watchers (a metadata-only
//! watcher for Namespaces, whose labels are all that is read); tests feed
//! synthetic `watcher::Event`s through the same [`changes`] adapter.

use futures::stream::{BoxStream, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use kubefence_core::model::WorkloadKind;
use kubefence_core::naming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::diff::Comparable;
use super::state::{Kind, ObservedPolicy};
use super::{Change, ObjectRef, Payload};
use crate::context::FIELD_MANAGER;

/// What the controller keeps of a NetworkPolicy.
pub fn observed_policy(np: &NetworkPolicy) -> ObservedPolicy {
    observed(np, Comparable::of)
}

/// What the controller keeps of a NetworkPolicy the API server returned
/// for a write of `sent` (see [`Comparable::of_written`]).
pub fn written_policy(
    np: &NetworkPolicy,
    sent: &NetworkPolicy,
    sent_spec: Option<super::diff::SpecDigest>,
) -> ObservedPolicy {
    match sent_spec {
        Some(digest) => observed(np, |np| Comparable::of_written(np, sent, digest)),
        None => observed_policy(np),
    }
}

fn observed(
    np: &NetworkPolicy,
    comparable: impl FnOnce(&NetworkPolicy) -> Comparable,
) -> ObservedPolicy {
    let labels = np.labels();
    let managed =
        labels.get(naming::MANAGED_BY_LABEL).map(String::as_str) == Some(naming::MANAGED_BY_VALUE);
    ObservedPolicy {
        uid: np.metadata.uid.clone(),
        resource_version: np.metadata.resource_version.clone(),
        managed,
        source: managed
            .then(|| labels.get(naming::SOURCE_LABEL).cloned())
            .flatten(),
        object: managed.then(|| comparable(np)),
        quarantines: quarantined_workload(np, managed),
        applied_by_us: np.metadata.managed_fields.iter().flatten().any(|e| {
            // Created by our POST (operation Update) or written by our
            // server-side apply (Apply).
            e.manager.as_deref() == Some(FIELD_MANAGER)
                && matches!(e.operation.as_deref(), Some("Apply" | "Update"))
        }),
    }
}

/// The workload a kubefence quarantine NetworkPolicy isolates: its
/// `kubefence.dev/target` annotation (`Kind/namespace/name`), in the
/// policy's own namespace only.
fn quarantined_workload(np: &NetworkPolicy, managed: bool) -> Option<super::state::WorkloadKey> {
    let labels = np.labels();
    if !managed
        || labels.get(naming::SOURCE_LABEL).map(String::as_str)
            != Some(naming::Source::Quarantine.as_str())
    {
        return None;
    }
    let target = np
        .annotations()
        .get(kubefence_core::quarantine::TARGET_ANNOTATION)?;
    let mut parts = target.splitn(3, '/');
    let kind: WorkloadKind = parts.next()?.parse().ok()?;
    let namespace = parts.next()?;
    let name = parts.next()?;
    (Some(namespace) == np.metadata.namespace.as_deref())
        .then(|| (namespace.to_string(), kind, name.to_string()))
}

fn object_ref<K: Resource>(kind: Kind, obj: &K) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

fn payload<K: Resource + Serialize>(kind: Kind, obj: &K) -> Payload {
    // Pods with an owner are part of their workload: skip the conversion
    // (pods change often; most have an owner).
    if kind == Kind::Workload(WorkloadKind::Pod)
        && obj
            .meta()
            .owner_references
            .as_ref()
            .is_some_and(|r| !r.is_empty())
    {
        return Payload::Live(Box::new(kubefence_k8s::convert::LiveObject::Owned));
    }
    let value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => return Payload::Invalid(e.to_string()),
    };
    if kind == Kind::NetworkPolicy {
        return match serde_json::from_value::<NetworkPolicy>(value) {
            Ok(np) => Payload::Policy(Box::new(observed_policy(&np))),
            Err(e) => Payload::Invalid(e.to_string()),
        };
    }
    match kubefence_k8s::convert::live_object(kind.as_str(), value) {
        Ok(live) => Payload::Live(Box::new(live)),
        Err(e) => Payload::Invalid(e.to_string()),
    }
}

/// One watch event → one change.
pub fn change<K: Resource + Serialize>(kind: Kind, event: Event<K>) -> Change {
    match event {
        Event::Init => Change::Init(kind),
        Event::InitDone => Change::InitDone(kind),
        Event::Apply(o) | Event::InitApply(o) => {
            Change::Apply(object_ref(kind, &o), payload(kind, &o))
        }
        Event::Delete(o) => Change::Delete(object_ref(kind, &o)),
    }
}

/// Adapts a watch stream; watch errors are logged (the watcher retries with
/// backoff) and dropped.
pub fn changes<K, S>(kind: Kind, stream: S) -> impl Stream<Item = Change> + Send + 'static
where
    K: Resource + Serialize + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    stream.filter_map(move |ev| {
        let out = match ev {
            Ok(ev) => Some(change(kind, ev)),
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "watch error; retrying");
                None
            }
        };
        std::future::ready(out)
    })
}

fn typed<K>(client: &Client, kind: Kind) -> BoxStream<'static, Change>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    changes(kind, watcher(api, list_config()).default_backoff()).boxed()
}

/// How every watch lists: `resourceVersion=0` (any version not older than
/// the last one seen), served from the API server's watch cache rather than
/// a quorum read of etcd, for every kind at every (re)start.
/// The watch that follows the list delivers every change after the version
/// listed, and nothing is written until every kind has listed once, so a
/// list a moment old only means the first pass sees those changes as
/// events a moment later.
pub fn list_config() -> watcher::Config {
    // kube-client sends `resourceVersion=0` only without a page size (the
    // watch cache answers such a list whole anyway).
    watcher::Config {
        page_size: None,
        ..watcher::Config::default().any_semantic()
    }
}

/// Every watch of the baseline controller, merged.
pub fn cluster_changes(client: &Client) -> BoxStream<'static, Change> {
    let streams = vec![
        typed::<Deployment>(client, Kind::Workload(WorkloadKind::Deployment)),
        typed::<StatefulSet>(client, Kind::Workload(WorkloadKind::StatefulSet)),
        typed::<DaemonSet>(client, Kind::Workload(WorkloadKind::DaemonSet)),
        typed::<ReplicaSet>(client, Kind::Workload(WorkloadKind::ReplicaSet)),
        typed::<Job>(client, Kind::Workload(WorkloadKind::Job)),
        typed::<CronJob>(client, Kind::Workload(WorkloadKind::CronJob)),
        typed::<Pod>(client, Kind::Workload(WorkloadKind::Pod)),
        typed::<Service>(client, Kind::Service),
        typed::<Ingress>(client, Kind::Ingress),
        typed::<ConfigMap>(client, Kind::ConfigMap),
        typed::<NetworkPolicy>(client, Kind::NetworkPolicy),
        // Metadata only: labels are all that is read.
        typed::<PartialObjectMeta<Namespace>>(client, Kind::Namespace),
    ];
    futures::stream::select_all(streams).boxed()
}

/// A ConfigMap read on its own.
#[derive(Debug)]
pub enum Fetched {
    Found(kubefence_core::model::ConfigMap),
    Gone,
    /// It exists but does not convert (logged): what is kept stays.
    Unreadable,
}

/// Reads one ConfigMap (a list by name: the `list` right the watch already
/// has, no `get`), for a workload that reads data of it that the cache did
/// not keep.
pub async fn fetch_config_map(
    ctx: &crate::context::Context,
    namespace: &str,
    name: &str,
) -> crate::error::Result<Fetched> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    let list = match tokio::time::timeout(ctx.config.api_timeout, api.list(&params)).await {
        Ok(r) => r?,
        Err(_) => return Err(crate::error::Error::Timeout(ctx.config.api_timeout)),
    };
    let Some(cm) = list.items.into_iter().find(|c| c.name_any() == name) else {
        return Ok(Fetched::Gone);
    };
    match payload(Kind::ConfigMap, &cm) {
        Payload::Live(live) => match *live {
            kubefence_k8s::convert::LiveObject::ConfigMap(c) => Ok(Fetched::Found(c)),
            _ => Ok(Fetched::Unreadable),
        },
        Payload::Invalid(message) => {
            tracing::warn!(%namespace, %name, %message, "ConfigMap ignored");
            Ok(Fetched::Unreadable)
        }
        Payload::Policy(_) => Ok(Fetched::Unreadable),
    }
}
