//! The API calls: plan (read), apply (create, dry run unless confirmed),
//! release (delete only ours), and the Events on the target.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1 as net;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, ResourceExt};
use kubefence_core::model::Cluster;
use kubefence_core::naming::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_LABEL, Source};
use kubefence_core::quarantine::{self as core_q, Audit, Engine, Plan, Target};
use kubefence_k8s::quarantine::{PolicyApi, policy_api, render, target_workload, workload_api};

use super::{Error, QuarantineConfig, Result};

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn api_resource(api: &PolicyApi) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(api.group, api.version, api.kind),
        api.plural,
    )
}

fn policy_client(
    client: &Client,
    engine: Engine,
    namespace: &str,
) -> (Api<DynamicObject>, PolicyApi) {
    let api = policy_api(engine);
    let ar = api_resource(&api);
    let handle = if api.namespaced {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    (handle, api)
}

fn target_client(client: &Client, target: &Target) -> Api<DynamicObject> {
    let (api_version, plural) = workload_api(target.kind);
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, target.kind.as_str()),
        plural,
    );
    Api::namespaced_with(client.clone(), &target.namespace, &ar)
}

/// Whether an object carries kubefence's quarantine ownership labels.
pub fn is_ours(obj: &DynamicObject) -> bool {
    let labels = obj.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(SOURCE_LABEL).map(String::as_str) == Some(Source::Quarantine.as_str())
}

/// Reads the live target and the policies of its namespace, and builds the
/// plan. Refuses a protected namespace before any request.
pub async fn plan(
    client: &Client,
    target: &Target,
    audit: &Audit,
    engine: Engine,
    cfg: &QuarantineConfig,
) -> Result<(Plan, ObjectReference)> {
    core_q::check_namespace(target, &cfg.core())?;
    let live = match target_client(client, target).get(&target.name).await {
        Ok(o) => o,
        Err(e) if is_status(&e, 404) => {
            return Err(Error::TargetNotFound {
                target: target.id(),
            });
        }
        Err(e) => return Err(Error::kube(format!("reading {}", target.id()), e)),
    };
    let reference = object_reference(target, live.uid());
    let value = serde_json::to_value(&live).map_err(|e| Error::BadTarget {
        target: target.id(),
        message: e.to_string(),
    })?;
    let workload =
        target_workload(target.kind, &target.namespace, value).map_err(|e| Error::BadTarget {
            target: target.id(),
            message: e.to_string(),
        })?;

    let policies: Api<net::NetworkPolicy> = Api::namespaced(client.clone(), &target.namespace);
    let list = policies.list(&ListParams::default()).await.map_err(|e| {
        Error::kube(
            format!("listing NetworkPolicies of namespace {}", target.namespace),
            e,
        )
    })?;
    let mut cluster = Cluster::default();
    let mut unreadable = Vec::new();
    for p in &list.items {
        match kubefence_k8s::convert::network_policy(p, &target.namespace) {
            Ok(mut core) => {
                core.namespace = target.namespace.clone();
                cluster.policies.push(core);
            }
            // A policy the API server accepted but kubefence cannot read is
            // reported, never silently dropped from the effectiveness check.
            Err(e) => {
                let id = format!("{}/{}", target.namespace, p.name_any());
                tracing::warn!(policy = %id, error = %e, "cannot read NetworkPolicy");
                unreadable.push(format!("{id}: {e}"));
            }
        }
    }
    cluster.workloads.push(workload.clone());
    cluster.add_implicit_namespaces();
    let mut plan = core_q::plan(&workload, audit, engine, &cluster, &cfg.core())?;
    plan.unreadable_policies = unreadable;
    Ok((plan, reference))
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Created (or, in a dry run, would be created).
    Created,
    /// Our own policy exists already: nothing to do.
    AlreadyIsolated,
}

/// Creates the plan's policy: a server-side dry run (`dryRun=All`) unless
/// `dry_run` is false. A same-named object that is ours is success; one
/// that is not is an error and is never overwritten.
pub async fn apply(client: &Client, plan: &Plan, dry_run: bool) -> Result<ApplyOutcome> {
    let (api, meta) = policy_client(client, plan.engine, &plan.target.namespace);
    let object: DynamicObject =
        serde_json::from_value(render(plan)).map_err(|e| Error::BadTarget {
            target: plan.target.id(),
            message: format!("rendering the policy: {e}"),
        })?;
    let params = PostParams {
        dry_run,
        field_manager: Some(super::MANAGER.to_string()),
    };
    let what = format!("creating {} {}", meta.kind, plan.policy_name);
    match api.create(&params, &object).await {
        Ok(_) => Ok(ApplyOutcome::Created),
        Err(e) if is_status(&e, 409) => {
            let existing = api.get(&plan.policy_name).await.map_err(|e| {
                Error::kube(format!("reading {} {}", meta.kind, plan.policy_name), e)
            })?;
            if is_ours(&existing) {
                Ok(ApplyOutcome::AlreadyIsolated)
            } else {
                Err(Error::Foreign {
                    kind: meta.kind.to_string(),
                    name: qualified(&meta, &plan.target.namespace, &plan.policy_name),
                })
            }
        }
        Err(e) => Err(Error::kube(what, e)),
    }
}

/// What [`release`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Deleted (or, in a dry run, would be deleted).
    Released,
    /// No policy: nothing to release.
    NotQuarantined,
}

/// Deletes the target's quarantine policy when it is ours. Works when the
/// target is gone: only the policy is read. A missing policy is success.
pub async fn release(
    client: &Client,
    target: &Target,
    engine: Engine,
    dry_run: bool,
    cfg: &QuarantineConfig,
) -> Result<ReleaseOutcome> {
    core_q::check_namespace(target, &cfg.core())?;
    release_named(
        client,
        engine,
        &target.namespace,
        &target.object_name(engine),
        dry_run,
    )
    .await
}

/// Deletes the quarantine object `name` of `engine` when it is ours (the
/// namespace is ignored for cluster-scoped kinds). A missing one is success.
pub async fn release_named(
    client: &Client,
    engine: Engine,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<ReleaseOutcome> {
    let (api, meta) = policy_client(client, engine, namespace);
    let existing = match api.get(name).await {
        Ok(o) => o,
        Err(e) if is_status(&e, 404) => return Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => return Err(Error::kube(format!("reading {} {name}", meta.kind), e)),
    };
    if !is_ours(&existing) {
        return Err(Error::Foreign {
            kind: meta.kind.to_string(),
            name: qualified(&meta, namespace, name),
        });
    }
    let params = DeleteParams {
        dry_run,
        // Delete exactly what was read: a policy re-created meanwhile by
        // someone else is not ours to delete.
        preconditions: existing.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(ReleaseOutcome::Released),
        Err(e) if is_status(&e, 404) => Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => Err(Error::kube(format!("deleting {} {name}", meta.kind), e)),
    }
}

fn qualified(meta: &PolicyApi, namespace: &str, name: &str) -> String {
    if meta.namespaced {
        format!("{namespace}/{name}")
    } else {
        name.to_string()
    }
}

/// A reference to the target, for Events (uid when known).
pub fn object_reference(target: &Target, uid: Option<String>) -> ObjectReference {
    let (api_version, _) = workload_api(target.kind);
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(target.kind.as_str().to_string()),
        namespace: Some(target.namespace.clone()),
        name: Some(target.name.clone()),
        uid,
        ..ObjectReference::default()
    }
}

/// Records `KubefenceQuarantined` on the target.
pub async fn record_quarantined(
    recorder: &Recorder,
    reference: &ObjectReference,
    plan: &Plan,
    audit: &Audit,
) -> Result<()> {
    let api = policy_api(plan.engine);
    let mut note = format!(
        "network cut off by {} {} (requested by {}: {})",
        api.kind, plan.policy_name, audit.requester, audit.reason
    );
    if let Some(f) = &audit.finding {
        note.push_str(&format!("; finding {f}"));
    }
    let open = plan.open_paths().count();
    if open > 0 {
        note.push_str(&format!(
            "; {open} path(s) stay open through other policies"
        ));
    }
    publish(
        recorder,
        reference,
        core_q::EVENT_QUARANTINED,
        "Quarantine",
        note,
    )
    .await
}

/// Records `KubefenceReleased` on the target.
pub async fn record_released(
    recorder: &Recorder,
    reference: &ObjectReference,
    engine: Engine,
    name: &str,
    requester: &str,
) -> Result<()> {
    let note = format!(
        "quarantine released: {} {name} deleted (by {requester})",
        policy_api(engine).kind
    );
    publish(recorder, reference, core_q::EVENT_RELEASED, "Release", note).await
}

async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    reason: &str,
    action: &str,
    mut note: String,
) -> Result<()> {
    // Event notes are limited to 1 kB.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_: EventType::Normal,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    recorder
        .publish(&event, reference)
        .await
        .map_err(|e| Error::kube(format!("recording event {reason}"), e))
}
