//! Every write the operator makes: server-side apply, delete-if-ours,
//! events. Each call has a timeout and is counted.
//!
//! The RBAC table next to it ([`crate::rbac::CALLS`]) lists every
//! (group, resource, verb) used here and by the watches; a test checks the
//! ClusterRole in `deploy/` against it.

use std::future::Future;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kubefence_core::model::Workload;

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// Runs one write: only while this replica leads, abandoned the moment it
/// stops leading (a partitioned leader steps down before the other replica
/// may take the Lease: see `leader.rs`), and given up after the API timeout.
async fn timed<T>(ctx: &Context, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T> {
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
    let params = PatchParams::apply(FIELD_MANAGER);
    ctx.metrics.write("apply", "networkpolicies");
    let stored = match timed(ctx, api.patch(&name, &params, &Patch::Apply(np))).await {
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
            return Err(Error::NameTaken(format!("{ns}/{name}")));
        }
        other => other?,
    };
    let others = stored.metadata.managed_fields.iter().flatten().any(|e| {
        e.manager.as_deref() != Some(FIELD_MANAGER) || e.operation.as_deref() != Some("Apply")
    });
    if others {
        let identity = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
        });
        ctx.metrics.write("apply", "networkpolicies");
        if let Err(e) = timed(ctx, api.patch(&name, &params, &Patch::Apply(&identity))).await {
            tracing::warn!(namespace = %ns, %name, error = %e, "could not give back the fields of a policy someone else created");
        }
        return Err(Error::NameTaken(format!("{ns}/{name}")));
    }
    Ok(stored)
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
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut body = np.clone();
    body.metadata.resource_version = resource_version;
    ctx.metrics.write("apply", "networkpolicies");
    timed(ctx, api.patch(&name, &params, &Patch::Apply(&body))).await
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
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    ctx.metrics.write("delete", "networkpolicies");
    match timed(ctx, api.delete(name, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
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
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.metrics.write("create", "events");
    if let Err(e) = timed(ctx, ctx.recorder.publish(&event, workload)).await {
        tracing::warn!(error = %e, reason, "could not record event");
    }
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
