//! Every write the operator makes, for every controller and for the CLI's
//! online `quarantine` and `release`: server-side apply (objects and
//! status), delete-if-ours, finalizers, events. Each call has a timeout
//! (`api_timeout`) and is counted in `kubefence_api_writes_total`; reads
//! go through [`timed`] for the same timeout.
//!
//! The RBAC table next to it ([`crate::rbac::CALLS`]) lists every
//! (group, resource, verb) used here and by the watches; a test checks the
//! ClusterRole in `deploy/` against it.

use std::fmt::Debug;
use std::future::Future;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use kubefence_core::model::Workload;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// Runs one write: only while this replica leads, abandoned the moment it
/// stops leading (a partitioned leader steps down before the other replica
/// may take the Lease: see `leader.rs`), and given up after the API timeout.
pub async fn timed<T>(
    ctx: &Context,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T> {
    let mut leader = ctx.leader.clone();
    if !*leader.borrow_and_update() {
        return Err(Error::NotLeader);
    }
    let lost = async {
        // A closed channel keeps its last value (true): not a loss.
        if leader.wait_for(|leads| !*leads).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(ctx.config.api_timeout, call) => match r {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout(ctx.config.api_timeout)),
        },
        () = lost => Err(Error::NotLeader),
    }
}

/// How a server-side apply is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyMode {
    /// Take over fields other managers set (only on objects known to be
    /// ours).
    pub force: bool,
    /// A server-side dry run (`dryRun=All`): validated, nothing persisted.
    pub dry_run: bool,
}

/// The verb a write is counted under: a dry run writes nothing.
fn verb(verb: &'static str, dry_run: bool) -> String {
    if dry_run {
        format!("{verb}_dry_run")
    } else {
        verb.to_string()
    }
}

/// Server-side apply of `body` as `name` (field manager `kubefence`);
/// `resource` is the plural for the metrics. Returns the object as stored
/// (or, in a dry run, as it would be).
pub async fn apply<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    body: &(impl Serialize + Debug),
    mode: ApplyMode,
) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = mode.force;
    params.dry_run = mode.dry_run;
    ctx.metrics.write(&verb("apply", mode.dry_run), resource);
    timed(ctx, api.patch(name, &params, &Patch::Apply(body))).await
}

/// Server-side apply of an object's status (forced: the status is the
/// controller's alone).
pub async fn apply_status<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    body: &(impl Serialize + Debug),
) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    apply_status_as(ctx, api, resource, name, body, FIELD_MANAGER).await
}

/// [`apply_status`] as the field manager `manager`: the fields one manager
/// applies stay its own, so writers of different parts of one status (the
/// intents controller's engine adapters) never remove each other's.
pub async fn apply_status_as<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    body: &(impl Serialize + Debug),
    manager: &str,
) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    let params = PatchParams::apply(manager).force();
    ctx.metrics.write("apply", &format!("{resource}/status"));
    timed(ctx, api.patch_status(name, &params, &Patch::Apply(body))).await
}

/// What [`delete`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted (or, in a dry run, would be).
    Yes,
    /// Not there (success: what was to go is gone).
    Missing,
}

/// Deletes `name`, only when its uid is `uid` (the object read just
/// before), so an object re-created by someone else in between is never
/// removed.
pub async fn delete<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    uid: Option<String>,
    dry_run: bool,
) -> Result<Deleted>
where
    K: Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        dry_run,
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    ctx.metrics.write(&verb("delete", dry_run), resource);
    match timed(ctx, api.delete(name, &params)).await {
        Ok(_) => Ok(Deleted::Yes),
        Err(e) if e.is_not_found() => Ok(Deleted::Missing),
        Err(e) => Err(e),
    }
}

/// Adds `finalizer` to `obj` (a JSON patch that first tests the list it
/// read, as kube-runtime's finalizer helper does: Kubernetes does not
/// de-duplicate finalizers, so a concurrent change fails and is retried).
pub async fn add_finalizer<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    obj: &K,
    finalizer: &str,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let current = obj.finalizers();
    let ops = if current.is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    };
    json_patch(ctx, api, resource, &obj.name_any(), ops).await
}

/// Removes `finalizer` from `obj` (test, then remove at its index: never
/// someone else's finalizer). Not there: nothing to do.
pub async fn remove_finalizer<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    obj: &K,
    finalizer: &str,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(index) = obj.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let ops = serde_json::json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    json_patch(ctx, api, resource, &obj.name_any(), ops).await
}

/// Removes the annotation `key` from `name` only while it still reads
/// `value` (a JSON patch that tests it first: an annotation someone
/// changed meanwhile is not removed, the call fails with 422 and is
/// retried). Returns the object as stored.
pub async fn remove_annotation<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    // JSON pointer escaping (RFC 6901): `~` then `/`.
    let path = format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    );
    let ops = serde_json::json!([
        {"op": "test", "path": path, "value": value},
        {"op": "remove", "path": path},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops)?;
    ctx.metrics.write("patch", resource);
    timed(
        ctx,
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)),
    )
    .await
}

async fn json_patch<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    ops: serde_json::Value,
) -> Result<()>
where
    K: Clone + DeserializeOwned + Debug,
{
    let patch: json_patch::Patch = serde_json::from_value(ops)?;
    ctx.metrics.write("patch", resource);
    timed(
        ctx,
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)),
    )
    .await?;
    Ok(())
}

/// Creates a policy that the cache says does not exist, by server-side
/// apply (field manager `kubefence`) without force, so the policy has one
/// manager entry from its first write: a POST would register a second one
/// (operation Update) whose fields a later apply never removes.
///
/// A create never takes over an existing object. An apply cannot say
/// "only if absent", so: when someone else made one with that name since
/// the cache last heard, the apply either conflicts on a field they set
/// differently (409), or merges into their object; the answer then shows
/// their manager, and kubefence at once gives back every field it just
/// claimed (an apply of the bare identity removes what only it set, theirs
/// stays) and reports [`Error::NameTaken`]. The next pass sees their
/// object and leaves it alone.
pub async fn create_network_policy(ctx: &Context, np: &NetworkPolicy) -> Result<NetworkPolicy> {
    let ns = np.metadata.namespace.clone().unwrap_or_default();
    let name = np.metadata.name.clone().unwrap_or_default();
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let identity = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
    });
    let mode = ApplyMode::default();
    match create_by_apply(ctx, &api, "networkpolicies", &name, np, &identity, mode).await? {
        Created::Ours(stored) => Ok(stored),
        Created::Taken => Err(Error::NameTaken(format!("{ns}/{name}"))),
    }
}

/// What [`create_by_apply`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Created<K> {
    /// Created as ours (or, in a dry run, would be).
    Ours(K),
    /// Someone else holds an object of that name: nothing of theirs was
    /// changed, and kubefence's fields were given back.
    Taken,
}

/// Creates an object the caller saw absent by a server-side apply without
/// force: a 409 (someone else set a field to another value) or an answer
/// that shows another manager means someone created it in between; then
/// an apply of the bare `identity` gives back every field kubefence just
/// claimed (theirs stay) and the answer is [`Created::Taken`].
pub async fn create_by_apply<K>(
    ctx: &Context,
    api: &Api<K>,
    resource: &str,
    name: &str,
    body: &(impl Serialize + Debug),
    identity: &serde_json::Value,
    mode: ApplyMode,
) -> Result<Created<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mode = ApplyMode {
        force: false,
        ..mode
    };
    let stored = match apply(ctx, api, resource, name, body, mode).await {
        Err(e) if e.api_code() == Some(409) => return Ok(Created::Taken),
        other => other?,
    };
    let others = stored.meta().managed_fields.iter().flatten().any(|e| {
        e.manager.as_deref() != Some(FIELD_MANAGER) || e.operation.as_deref() != Some("Apply")
    });
    if !others {
        return Ok(Created::Ours(stored));
    }
    if !mode.dry_run
        && let Err(e) = apply(ctx, api, resource, name, identity, mode).await
    {
        tracing::warn!(%name, error = %e, "could not give back the fields of an object someone else created");
    }
    Ok(Created::Taken)
}

/// Server-side apply of one of our policies, field manager `kubefence`,
/// forcing ownership of the fields it sets. `resource_version` is the
/// version the cache saw as ours: the server refuses (Conflict) if the
/// object changed since, so an object replaced by someone else in between
/// is never taken over. Returns the object as stored.
pub async fn apply_network_policy(
    ctx: &Context,
    np: &NetworkPolicy,
    resource_version: Option<String>,
) -> Result<NetworkPolicy> {
    let ns = np.metadata.namespace.clone().unwrap_or_default();
    let name = np.metadata.name.clone().unwrap_or_default();
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let mut body = np.clone();
    body.metadata.resource_version = resource_version;
    let mode = ApplyMode {
        force: true,
        dry_run: false,
    };
    apply(ctx, &api, "networkpolicies", &name, &body, mode).await
}

/// Deletes exactly the observed object (uid precondition), so a policy
/// recreated by someone else in between is never removed. Missing is success.
pub async fn delete_network_policy(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: Option<String>,
) -> Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    delete(ctx, &api, "networkpolicies", name, uid, false).await?;
    Ok(())
}

/// The reference of a workload, for events.
pub fn workload_reference(w: &Workload) -> ObjectReference {
    ObjectReference {
        api_version: Some(kubefence_k8s::render::workload_api_version(w.kind).into()),
        kind: Some(w.kind.as_str().into()),
        name: Some(w.name.clone()),
        namespace: Some(w.namespace.clone()),
        uid: w.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Records an Event on a workload. Best effort: a failure is logged, never
/// retried, and does not fail the reconcile.
pub async fn publish_event(
    ctx: &Context,
    workload: &ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    if let Err(e) = record_event(ctx, workload, warning, reason, "Reconcile", note).await {
        tracing::warn!(error = %e, reason, "could not record event");
    }
}

/// The longest Event note the API server accepts (1 kB).
const MAX_NOTE: usize = 1000;

/// Records an Event on `regarding` with the context's recorder (reporting
/// controller `kubefence`, instance the replica's or the CLI's identity);
/// a note over 1 kB is cut.
pub async fn record_event(
    ctx: &Context,
    regarding: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    mut note: String,
) -> Result<()> {
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    ctx.metrics.write("create", "events");
    timed(
        ctx,
        ctx.recorder.about(regarding).publish(&event, regarding),
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::*;
    use crate::context::OperatorConfig;
    use crate::fake::FakeApi;
    use crate::metrics::Metrics;

    fn context(client: kube::Client, leader: watch::Receiver<bool>) -> Context {
        let (_stop, shutdown) = watch::channel(false);
        Context::new(
            client,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            leader,
            shutdown,
        )
    }

    /// Issue 10 defect 4: only the leader writes, whatever a controller
    /// asks: a replica that stepped down sends nothing to the API server.
    #[tokio::test]
    async fn a_replica_that_does_not_lead_sends_no_write() {
        let (client, fake) = FakeApi::start();
        let (leader_tx, leader) = watch::channel(false);
        let ctx = context(client, leader);
        let np = crate::fixtures::foreign_policy("shop", "kf-baseline-deployment-web");
        let refused = create_network_policy(&ctx, &np).await;
        assert!(matches!(refused, Err(Error::NotLeader)), "{refused:?}");
        let refused = delete_network_policy(&ctx, "shop", "x", None).await;
        assert!(matches!(refused, Err(Error::NotLeader)), "{refused:?}");
        assert_eq!(fake.writes(), 0, "{:?}", fake.requests());
        leader_tx.send(true).unwrap();
        create_network_policy(&ctx, &np).await.unwrap();
        assert_eq!(fake.writes(), 1);
    }

    /// A write in flight when leadership is lost is abandoned at once.
    #[tokio::test]
    async fn a_write_in_flight_is_abandoned_when_leadership_is_lost() {
        let (leader_tx, leader) = watch::channel(true);
        let (client, _fake) = FakeApi::start();
        let ctx = context(client, leader);
        let never = std::future::pending::<Result<(), kube::Error>>();
        let write = tokio::spawn(async move { timed(&ctx, never).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        leader_tx.send(false).unwrap();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(1), write)
            .await
            .expect("abandoned at once, not at the API timeout")
            .unwrap();
        assert!(matches!(outcome, Err(Error::NotLeader)), "{outcome:?}");
    }
}
