//! The API calls: plan (read), apply (create, dry run unless confirmed),
//! release (delete only ours), and the Events on the target. Reads go
//! through [`cluster::timed`], writes and events through [`crate::cluster`]
//! (timeout, metrics, field manager `kubefence`). [`isolate`] and
//! [`release`] are the whole operations, shared by the controller and the
//! CLI's online `quarantine` and `release`.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1 as net;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use kubefence_core::model::Cluster;
use kubefence_core::naming::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_LABEL, Source, TARGET_KIND_LABEL, TARGET_NAME_LABEL,
};
use kubefence_core::quarantine::{
    self as core_q, Audit, Engine, FINDING_ANNOTATION, Plan, QUARANTINED_LABEL, REASON_ANNOTATION,
    REQUESTER_ANNOTATION, TARGET_ANNOTATION, TIME_ANNOTATION, Target,
};
use kubefence_k8s::crd::quarantine::QUARANTINE_UID_LABEL;
use kubefence_k8s::quarantine::{PolicyApi, policy_api, render, target_workload, workload_api};

use super::QuarantineConfig;
use crate::cluster::{self, ApplyMode, Created, Deleted, timed};
use crate::context::Context;
use crate::error::{Error, Result};

/// GET of one object; 404 is `None`.
async fn get_opt(
    ctx: &Context,
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<DynamicObject>> {
    match timed(ctx, api.get(name)).await {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
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

/// Whether an object carries kubefence's quarantine labels. Labels alone
/// never make an object ours to change or delete: see [`holding`].
pub fn is_ours(obj: &DynamicObject) -> bool {
    let labels = obj.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(SOURCE_LABEL).map(String::as_str) == Some(Source::Quarantine.as_str())
}

/// Who is asking to write or delete a quarantine object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `kubefence quarantine` / `release`: kubefence's quarantine object of
    /// the target that no Quarantine resource holds.
    Cli,
    /// A Quarantine resource (its uid); `sharing` are the uids of the other
    /// live, confirmed Quarantines of the same target and engine, which
    /// share its one object.
    Quarantine { uid: String, sharing: Vec<String> },
}

/// What an existing object is to a [`Holder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Held by the asker: it may change and delete it.
    Ours,
    /// kubefence's object of this target, held by another Quarantine
    /// resource (its uid): it isolates the target, but is not the asker's.
    HeldBy(String),
    /// Anything else, including an object with kubefence's labels that names
    /// another target or namespace, or no holder the asker may act for.
    Foreign,
}

/// Ownership is recorded on the object, never read from a status: the
/// quarantine labels, the target annotation naming exactly `target`
/// (namespace included, which a cluster-scoped name cannot show), the
/// namespace for namespaced kinds, and the `kubefence.dev/quarantine-uid`
/// label of the Quarantine that wrote it (none for the CLI's).
pub fn holding(obj: &DynamicObject, target: &Target, holder: &Holder) -> Holding {
    let names_target = obj
        .annotations()
        .get(TARGET_ANNOTATION)
        .is_some_and(|t| *t == target.id());
    let in_namespace = obj.namespace().is_none_or(|ns| ns == target.namespace);
    if !is_ours(obj) || !names_target || !in_namespace {
        return Holding::Foreign;
    }
    let uid = obj.labels().get(QUARANTINE_UID_LABEL).cloned();
    match (holder, uid) {
        (Holder::Cli, None) => Holding::Ours,
        (Holder::Cli, Some(uid)) => Holding::HeldBy(uid),
        (Holder::Quarantine { uid: mine, .. }, Some(uid)) if *mine == uid => Holding::Ours,
        (Holder::Quarantine { sharing, .. }, Some(uid)) if sharing.contains(&uid) => {
            Holding::HeldBy(uid)
        }
        (Holder::Quarantine { .. }, _) => Holding::Foreign,
    }
}

/// The labels kubefence writes on a quarantine object (the rest belongs to
/// whoever added it).
const OUR_LABELS: [&str; 10] = [
    MANAGED_BY_LABEL,
    SOURCE_LABEL,
    TARGET_KIND_LABEL,
    TARGET_NAME_LABEL,
    QUARANTINED_LABEL,
    TIME_ANNOTATION,
    REQUESTER_ANNOTATION,
    FINDING_ANNOTATION,
    QUARANTINE_UID_LABEL,
    REASON_ANNOTATION,
];
/// The audit trail: history, kept as first written when a policy is
/// re-applied (a repair must not rewrite who asked and when).
const AUDIT_KEYS: [&str; 4] = [
    TIME_ANNOTATION,
    REQUESTER_ANNOTATION,
    FINDING_ANNOTATION,
    REASON_ANNOTATION,
];

/// Reads the live target and the policies of its namespace, and builds the
/// plan. Refuses a protected namespace before any request.
pub async fn plan(
    ctx: &Context,
    target: &Target,
    audit: &Audit,
    engine: Engine,
    cfg: &QuarantineConfig,
) -> Result<(Plan, ObjectReference)> {
    core_q::check_namespace(target, &cfg.core())?;
    let client = &ctx.client;
    let live = match get_opt(ctx, &target_client(client, target), &target.name).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err(Error::TargetNotFound {
                target: target.id(),
            });
        }
        Err(e) => return Err(Error::call(format!("reading {}", target.id()), e)),
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
    let list = timed(ctx, policies.list(&ListParams::default()))
        .await
        .map_err(|e| {
            Error::call(
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
    cluster.workloads = namespace_workloads(ctx, &target.namespace).await?;
    if !cluster
        .workloads
        .iter()
        .any(|w| w.kind == workload.kind && w.name == workload.name)
    {
        // A ReplicaSet of a Deployment, a Job of a CronJob, a Pod of
        // anything: quarantined as itself, though not a workload of its own.
        cluster.workloads.push(workload.clone());
    }
    cluster.add_implicit_namespaces();
    let mut plan = core_q::plan(&workload, audit, engine, &cluster, &cfg.core())?;
    plan.unreadable_policies = unreadable;
    Ok((plan, reference))
}

/// The workloads of `namespace` as the offline plan reads them from
/// manifests (the same conversion: a ReplicaSet of a Deployment, a Job of a
/// CronJob and a Pod with an owner are part of their owner), so the core
/// can say which other workloads the quarantine selector also matches
/// (`Plan::also_selects`). An object that cannot be read is skipped (logged).
async fn namespace_workloads(
    ctx: &Context,
    namespace: &str,
) -> Result<Vec<kubefence_core::model::Workload>> {
    let mut out = Vec::new();
    for kind in kubefence_core::WorkloadKind::ALL {
        let api = target_client(&ctx.client, &Target::new(kind, namespace, ""));
        let (_, plural) = workload_api(kind);
        let list = timed(ctx, api.list(&ListParams::default()))
            .await
            .map_err(|e| {
                Error::call(format!("listing the {plural} of namespace {namespace}"), e)
            })?;
        for item in list.items {
            let name = item.name_any();
            let value = match serde_json::to_value(&item) {
                Ok(mut v) => {
                    v["apiVersion"] = kubefence_k8s::render::workload_api_version(kind).into();
                    v["kind"] = kind.as_str().into();
                    v
                }
                Err(e) => {
                    tracing::warn!(%namespace, %name, error = %e, "cannot read workload");
                    continue;
                }
            };
            match kubefence_k8s::convert::live_object(kind.as_str(), value) {
                Ok(kubefence_k8s::convert::LiveObject::Workload(w)) => out.push(w),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%namespace, %name, kind = kind.as_str(), error = %e, "cannot read workload");
                }
            }
        }
    }
    Ok(out)
}

/// The pods a plan's selector picks in the target's namespace, now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Every pod the policy would isolate.
    pub selected: usize,
    /// Those that are the target's own (the Pod itself; the pods its
    /// controller, or its ReplicaSet's or Job's, owns).
    pub own: usize,
    /// The names of the others (at most [`MAX_NAMED`]).
    pub others: Vec<String>,
}

/// How many collateral pods an error or a status names.
pub const MAX_NAMED: usize = 5;

impl Selection {
    pub fn collateral(&self) -> usize {
        self.selected - self.own
    }

    /// `3 pods (3 of the target's own)`.
    pub fn summary(&self) -> String {
        format!(
            "{} pod(s) ({} of the target's own)",
            self.selected, self.own
        )
    }
}

/// Lists the pods of the target's namespace that the plan's selector
/// picks, and which of them are the target's own, by ownerReferences: the
/// Pod itself; a pod whose controller is the target; for a Deployment
/// (CronJob) a pod whose controller is a ReplicaSet (Job) whose controller
/// is the target. A Pod's selector is its labels, `pod-template-hash`
/// included, which every sibling of its ReplicaSet shares.
pub async fn selected_pods(
    ctx: &Context,
    plan: &Plan,
    target_uid: Option<&str>,
) -> Result<Selection> {
    let client = &ctx.client;
    use k8s_openapi::api::core::v1::Pod;
    use std::collections::BTreeMap;
    let namespace = &plan.target.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = timed(ctx, pods.list(&ListParams::default()))
        .await
        .map_err(|e| Error::call(format!("listing the pods of namespace {namespace}"), e))?;
    let controller = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .cloned()
    };
    // The controller of a ReplicaSet or Job, read once per owner.
    let mut owners_of: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut out = Selection::default();
    for pod in &list.items {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if !plan.selector.matches(&labels) {
            continue;
        }
        out.selected += 1;
        let name = pod.name_any();
        let own = match (plan.target.kind, controller(&pod.metadata)) {
            (kubefence_core::WorkloadKind::Pod, _) => name == plan.target.name,
            (_, None) => false,
            (_, Some(owner)) if Some(owner.uid.as_str()) == target_uid => true,
            (kind, Some(owner)) => {
                let via = match (kind, owner.kind.as_str()) {
                    (kubefence_core::WorkloadKind::Deployment, "ReplicaSet") => {
                        Some(kubefence_core::WorkloadKind::ReplicaSet)
                    }
                    (kubefence_core::WorkloadKind::CronJob, "Job") => {
                        Some(kubefence_core::WorkloadKind::Job)
                    }
                    _ => None,
                };
                match via {
                    None => false,
                    Some(via) => {
                        let key = (owner.kind.clone(), owner.name.clone());
                        if !owners_of.contains_key(&key) {
                            let middle = Target::new(via, namespace.clone(), owner.name.clone());
                            let api = target_client(client, &middle);
                            let grand = match get_opt(ctx, &api, &owner.name).await {
                                Ok(o) => o.and_then(|o| controller(&o.metadata)).map(|c| c.uid),
                                Err(e) => {
                                    return Err(Error::call(format!("reading {}", middle.id()), e));
                                }
                            };
                            owners_of.insert(key.clone(), grand);
                        }
                        owners_of.get(&key).cloned().flatten().as_deref() == target_uid
                            && target_uid.is_some()
                    }
                }
            }
        };
        if own {
            out.own += 1;
        } else if out.others.len() < MAX_NAMED {
            out.others.push(name);
        }
    }
    Ok(out)
}

/// Refuses a plan that would isolate pods that are not the target's own,
/// unless `allow` (`--allow-collateral`, `spec.allowCollateral`). Called
/// before any write.
pub fn check_collateral(plan: &Plan, selection: &Selection, allow: bool) -> Result<()> {
    if allow || selection.collateral() == 0 {
        return Ok(());
    }
    Err(Error::Collateral {
        target: plan.target.id(),
        selector: plan.selector.to_string(),
        selected: selection.selected,
        own: selection.own,
        others: selection.others.join(", "),
    })
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Created (or, in a dry run, would be created).
    Created,
    /// Our own policy exists as planned (or another Quarantine's object
    /// isolates the target): nothing written.
    AlreadyIsolated,
    /// Ours existed but had been changed; it was applied again (or, in a
    /// dry run, would be).
    Repaired,
}

/// Writes the plan's object with server-side apply (field manager
/// `kubefence`), a server-side dry run (`dryRun=All`) when `dry_run`:
///
/// - absent: applied without force. The apply creates it; should someone
///   have created one in between, the answer shows another manager and our
///   fields are given back at once (an empty apply), and it is Foreign;
/// - ours ([`holding`]): compared with the plan (spec, and the labels and
///   annotations kubefence sets); a difference is repaired by a forced
///   apply on exactly the version read (Conflict if it changed since), the
///   audit trail kept as first written;
/// - another Quarantine's: it isolates already, left to its holder;
/// - anything else: Foreign, never written.
///
/// Only server-side apply writes: a POST would register a second field
/// manager (operation Update) whose fields a later apply never removes.
pub async fn apply(
    ctx: &Context,
    plan: &Plan,
    dry_run: bool,
    holder: &Holder,
) -> Result<ApplyOutcome> {
    let (api, meta) = policy_client(&ctx.client, plan.engine, &plan.target.namespace);
    let mut object = render(plan);
    if let Holder::Quarantine { uid, .. } = holder {
        object["metadata"]["labels"][QUARANTINE_UID_LABEL] = uid.clone().into();
    }
    let name = &plan.policy_name;
    let what = |verb: &str| format!("{verb} {} {name}", meta.kind);
    let existing = get_opt(ctx, &api, name)
        .await
        .map_err(|e| Error::call(what("reading"), e))?;
    let foreign = || Error::Foreign {
        kind: meta.kind.to_string(),
        name: qualified(&meta, &plan.target.namespace, name),
    };
    let Some(existing) = existing else {
        let mode = ApplyMode {
            force: false,
            dry_run,
        };
        let identity = identity_of(&object, name);
        return match cluster::create_by_apply(
            ctx,
            &api,
            meta.plural,
            name,
            &object,
            &identity,
            mode,
        )
        .await
        .map_err(|e| Error::call(what("creating"), e))?
        {
            Created::Ours(_) => Ok(ApplyOutcome::Created),
            // Created by someone else since the read.
            Created::Taken => Err(foreign()),
        };
    };
    match holding(&existing, &plan.target, holder) {
        Holding::Foreign => Err(foreign()),
        Holding::HeldBy(_) => Ok(ApplyOutcome::AlreadyIsolated),
        Holding::Ours if matches_plan(&existing, &object) => Ok(ApplyOutcome::AlreadyIsolated),
        Holding::Ours => {
            keep_audit_trail(&mut object, &existing);
            // On exactly the version read: Conflict if it changed since.
            object["metadata"]["resourceVersion"] = existing.resource_version().into();
            let mode = ApplyMode {
                force: true,
                dry_run,
            };
            cluster::apply(ctx, &api, meta.plural, name, &object, mode)
                .await
                .map_err(|e| Error::Drifted {
                    what: qualified(&meta, &plan.target.namespace, name),
                    source: Box::new(e),
                })?;
            Ok(ApplyOutcome::Repaired)
        }
    }
}

/// An object of nothing but its identity: applied by kubefence's manager,
/// it gives back every field kubefence set.
fn identity_of(object: &serde_json::Value, name: &str) -> serde_json::Value {
    let mut identity = serde_json::json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": name},
    });
    if !object["metadata"]["namespace"].is_null() {
        identity["metadata"]["namespace"] = object["metadata"]["namespace"].clone();
    }
    identity
}

/// Whether `existing` says what `desired` does: the same spec (for a
/// NetworkPolicy, what it allows, defaults applied; for the custom kinds,
/// the stored JSON, which the API server keeps as sent), and every
/// ownership label and the target annotation with kubefence's value (the
/// audit trail is history, not compared).
fn matches_plan(existing: &DynamicObject, desired: &serde_json::Value) -> bool {
    let labels = existing.labels();
    let annotations = existing.annotations();
    let owned_same = |have: &std::collections::BTreeMap<String, String>,
                      want: &serde_json::Value| {
        want.as_object().into_iter().flatten().all(|(k, v)| {
            AUDIT_KEYS.contains(&k.as_str()) || have.get(k).map(String::as_str) == v.as_str()
        })
    };
    let spec_same = match desired["kind"].as_str() {
        Some("NetworkPolicy") => {
            let allows = |v: serde_json::Value| {
                serde_json::from_value::<net::NetworkPolicy>(v)
                    .ok()
                    .and_then(|np| kubefence_k8s::convert::network_policy(&np, "").ok())
                    .map(|mut core| {
                        core.name.clear();
                        core
                    })
            };
            let object = |spec: &serde_json::Value| serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "spec": spec});
            let (have, want) = (object(&existing.data["spec"]), object(&desired["spec"]));
            matches!((allows(have), allows(want)), (Some(a), Some(b)) if a == b)
        }
        _ => existing.data["spec"] == desired["spec"],
    };
    spec_same
        && owned_same(labels, &desired["metadata"]["labels"])
        && owned_same(annotations, &desired["metadata"]["annotations"])
}

/// Copies the audit labels and annotations of `existing` into `object`.
fn keep_audit_trail(object: &mut serde_json::Value, existing: &DynamicObject) {
    for (field, have) in [
        ("labels", existing.labels()),
        ("annotations", existing.annotations()),
    ] {
        for key in AUDIT_KEYS {
            if let Some(v) = have.get(key) {
                object["metadata"][field][key] = v.clone().into();
            }
        }
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

/// Releases `target`: deletes its quarantine object of `engine` when
/// `holder` holds it (the CLI: one no Quarantine resource holds; delete
/// the Quarantine instead), and records `KubefenceReleased` on the target
/// (by `requester`) when it was deleted for real. Works when the target
/// is gone: only the policy is read. A missing policy is success. Refuses
/// a protected namespace before any request.
pub async fn release(
    ctx: &Context,
    cfg: &QuarantineConfig,
    target: &Target,
    engine: Engine,
    dry_run: bool,
    holder: &Holder,
    requester: &str,
) -> Result<ReleaseOutcome> {
    core_q::check_namespace(target, &cfg.core())?;
    let outcome = release_named(ctx, engine, target, dry_run, holder).await?;
    if outcome == ReleaseOutcome::Released && !dry_run {
        // Released whatever happens to the Event.
        let reference = object_reference(target, None);
        let name = target.object_name(engine);
        if let Err(e) = record_released(ctx, &reference, engine, &name, requester).await {
            tracing::warn!(
                "released, but the Event was not recorded: {}",
                e.full_message()
            );
        }
    }
    Ok(outcome)
}

/// Deletes `target`'s quarantine object of `engine` when `holder` holds it
/// ([`holding`], checked on the object read just before, and the delete is
/// of exactly that object: uid precondition). A missing one is success.
pub async fn release_named(
    ctx: &Context,
    engine: Engine,
    target: &Target,
    dry_run: bool,
    holder: &Holder,
) -> Result<ReleaseOutcome> {
    let name = target.object_name(engine);
    let namespace = target.namespace.as_str();
    let (api, meta) = policy_client(&ctx.client, engine, namespace);
    let existing = match get_opt(ctx, &api, &name).await {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => return Err(Error::call(format!("reading {} {name}", meta.kind), e)),
    };
    match holding(&existing, target, holder) {
        Holding::Ours => {}
        Holding::HeldBy(uid) => {
            return Err(Error::HeldByQuarantine {
                kind: meta.kind.to_string(),
                name: qualified(&meta, namespace, &name),
                uid,
            });
        }
        Holding::Foreign => {
            return Err(Error::Foreign {
                kind: meta.kind.to_string(),
                name: qualified(&meta, namespace, &name),
            });
        }
    }
    // Delete exactly what was read: a policy re-created meanwhile by
    // someone else is not ours to delete.
    match cluster::delete(ctx, &api, meta.plural, &name, existing.uid(), dry_run).await {
        Ok(Deleted::Yes) => Ok(ReleaseOutcome::Released),
        Ok(Deleted::Missing) => Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => Err(Error::call(format!("deleting {} {name}", meta.kind), e)),
    }
}

/// Passes `target`'s quarantine object of `engine` from the Quarantine
/// `from` (going away) to `to` (still isolating the same target): the uid
/// label changes, nothing else. A forced apply of kubefence's own labels,
/// annotations and the spec as read, on exactly the version read.
pub async fn hand_over(
    ctx: &Context,
    engine: Engine,
    target: &Target,
    from: &str,
    to: &str,
) -> Result<()> {
    let name = target.object_name(engine);
    let (api, meta) = policy_client(&ctx.client, engine, &target.namespace);
    let existing = match get_opt(ctx, &api, &name).await {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(()),
        Err(e) => return Err(Error::call(format!("reading {} {name}", meta.kind), e)),
    };
    let holder = Holder::Quarantine {
        uid: from.to_string(),
        sharing: vec![to.to_string()],
    };
    match holding(&existing, target, &holder) {
        Holding::Ours => {}
        // Already handed over, or never ours: nothing to pass on.
        Holding::HeldBy(_) | Holding::Foreign => return Ok(()),
    }
    let api_meta = policy_api(engine);
    let pick = |have: &std::collections::BTreeMap<String, String>| -> serde_json::Map<String, serde_json::Value> {
        have.iter()
            .filter(|(k, _)| OUR_LABELS.contains(&k.as_str()) || k.as_str() == TARGET_ANNOTATION)
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect()
    };
    let mut labels = pick(existing.labels());
    labels.insert(QUARANTINE_UID_LABEL.to_string(), to.into());
    let mut body = serde_json::json!({
        "apiVersion": api_meta.api_version(),
        "kind": api_meta.kind,
        "metadata": {"name": name, "labels": labels, "annotations": pick(existing.annotations())},
        "spec": existing.data["spec"],
    });
    if api_meta.namespaced {
        body["metadata"]["namespace"] = target.namespace.clone().into();
    }
    body["metadata"]["resourceVersion"] = existing.resource_version().into();
    let mode = ApplyMode {
        force: true,
        dry_run: false,
    };
    cluster::apply(ctx, &api, meta.plural, &name, &body, mode)
        .await
        .map_err(|e| Error::call(format!("handing over {} {name}", meta.kind), e))?;
    Ok(())
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
    ctx: &Context,
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
    cluster::record_event(
        ctx,
        reference,
        false,
        core_q::EVENT_QUARANTINED,
        "Quarantine",
        note,
    )
    .await
    .map_err(|e| Error::call(format!("recording event {}", core_q::EVENT_QUARANTINED), e))
}

/// Records `KubefenceReleased` on the target.
pub async fn record_released(
    ctx: &Context,
    reference: &ObjectReference,
    engine: Engine,
    name: &str,
    requester: &str,
) -> Result<()> {
    let note = format!(
        "quarantine released: {} {name} deleted (by {requester})",
        policy_api(engine).kind
    );
    cluster::record_event(
        ctx,
        reference,
        false,
        core_q::EVENT_RELEASED,
        "Release",
        note,
    )
    .await
    .map_err(|e| Error::call(format!("recording event {}", core_q::EVENT_RELEASED), e))
}

/// What to isolate, and how.
#[derive(Clone, Debug)]
pub struct Request {
    pub target: Target,
    pub audit: Audit,
    pub engine: Engine,
    /// A server-side dry run (`dryRun=All`): nothing is persisted.
    pub dry_run: bool,
    /// Isolate even when the selector picks pods that are not the
    /// target's own.
    pub allow_collateral: bool,
    pub holder: Holder,
}

/// What [`isolate`] did.
#[derive(Clone, Debug)]
pub struct Isolation {
    pub plan: Plan,
    /// The target, for Events (its uid as read).
    pub reference: ObjectReference,
    pub selection: Selection,
    pub outcome: ApplyOutcome,
}

/// The whole quarantine of one workload, for the controller and the CLI
/// alike: plan from the live target and policies, count the pods the
/// selector picks and refuse collateral ones unless allowed (before any
/// write), apply, and record `KubefenceQuarantined` on the target when the
/// policy was created for real (best effort: the policy exists whatever
/// happens to the Event).
pub async fn isolate(
    ctx: &Context,
    cfg: &QuarantineConfig,
    request: &Request,
) -> Result<Isolation> {
    let (plan, reference) = plan(ctx, &request.target, &request.audit, request.engine, cfg).await?;
    let selection = selected_pods(ctx, &plan, reference.uid.as_deref()).await?;
    check_collateral(&plan, &selection, request.allow_collateral)?;
    let outcome = apply(ctx, &plan, request.dry_run, &request.holder).await?;
    if !request.dry_run
        && outcome == ApplyOutcome::Created
        && let Err(e) = record_quarantined(ctx, &reference, &plan, &request.audit).await
    {
        tracing::warn!(
            "the policy exists, but the Event was not recorded: {}",
            e.full_message()
        );
    }
    Ok(Isolation {
        plan,
        reference,
        selection,
        outcome,
    })
}
