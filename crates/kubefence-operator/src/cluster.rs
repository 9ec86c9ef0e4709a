//! Every write the operator makes: server-side apply, delete-if-ours,
//! events. Each call has a timeout and is counted.
//!
//! The RBAC table next to it ([`crate::rbac::CALLS`]) lists every
//! (group, resource, verb) used here and by the watches; a test checks the
//! ClusterRole in `deploy/` against it.

use std::future::Future;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kubefence_core::model::Workload;

use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

async fn timed<T>(ctx: &Context, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T> {
    match tokio::time::timeout(ctx.config.api_timeout, call).await {
        Ok(r) => r.map_err(Error::from),
        Err(_) => Err(Error::Timeout(ctx.config.api_timeout)),
    }
}

/// Creates a policy that the cache says does not exist (field manager
/// `kubefence`). A create never touches an existing object: when someone
/// else made one with that name since the cache last heard, the API server
/// answers AlreadyExists, and the next pass sees it. A forced server-side
/// apply would instead take that object over.
pub async fn create_network_policy(ctx: &Context, np: &NetworkPolicy) -> Result<NetworkPolicy> {
    let ns = np.metadata.namespace.clone().unwrap_or_default();
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    ctx.metrics.write("create", "networkpolicies");
    timed(ctx, api.create(&params, np)).await
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
