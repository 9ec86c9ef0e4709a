//! The API calls: plan (read), apply (create, dry run unless confirmed),
//! release (delete only ours), and the Events on the target.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1 as net;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder};
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
    client: &Client,
    plan: &Plan,
    target_uid: Option<&str>,
) -> Result<Selection> {
    use k8s_openapi::api::core::v1::Pod;
    use std::collections::BTreeMap;
    let namespace = &plan.target.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("listing the pods of namespace {namespace}"), e))?;
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
                            let grand = match target_client(client, &middle).get(&owner.name).await
                            {
                                Ok(o) => controller(&o.metadata).map(|c| c.uid),
                                Err(e) if is_status(&e, 404) => None,
                                Err(e) => {
                                    return Err(Error::kube(format!("reading {}", middle.id()), e));
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
    client: &Client,
    plan: &Plan,
    dry_run: bool,
    holder: &Holder,
) -> Result<ApplyOutcome> {
    let (api, meta) = policy_client(client, plan.engine, &plan.target.namespace);
    let mut object = render(plan);
    if let Holder::Quarantine { uid, .. } = holder {
        object["metadata"]["labels"][QUARANTINE_UID_LABEL] = uid.clone().into();
    }
    let name = &plan.policy_name;
    let what = |verb: &str| format!("{verb} {} {name}", meta.kind);
    let existing = match api.get(name).await {
        Ok(o) => Some(o),
        Err(e) if is_status(&e, 404) => None,
        Err(e) => return Err(Error::kube(what("reading"), e)),
    };
    let foreign = || Error::Foreign {
        kind: meta.kind.to_string(),
        name: qualified(&meta, &plan.target.namespace, name),
    };
    let Some(existing) = existing else {
        let stored = server_side_apply(&api, name, &object, dry_run, false, None)
            .await
            .map_err(|e| match e {
                // Created by someone else since the read, with other values.
                e if is_status(&e, 409) => foreign(),
                e => Error::kube(what("creating"), e),
            })?;
        if written_by_others(&stored) {
            if !dry_run {
                give_back(&api, name, &object).await;
            }
            return Err(foreign());
        }
        return Ok(ApplyOutcome::Created);
    };
    match holding(&existing, &plan.target, holder) {
        Holding::Foreign => Err(foreign()),
        Holding::HeldBy(_) => Ok(ApplyOutcome::AlreadyIsolated),
        Holding::Ours if matches_plan(&existing, &object) => Ok(ApplyOutcome::AlreadyIsolated),
        Holding::Ours => {
            keep_audit_trail(&mut object, &existing);
            server_side_apply(
                &api,
                name,
                &object,
                dry_run,
                true,
                existing.resource_version(),
            )
            .await
            .map_err(|e| Error::Drifted {
                what: qualified(&meta, &plan.target.namespace, name),
                source: Box::new(e),
            })?;
            Ok(ApplyOutcome::Repaired)
        }
    }
}

async fn server_side_apply(
    api: &Api<DynamicObject>,
    name: &str,
    object: &serde_json::Value,
    dry_run: bool,
    force: bool,
    resource_version: Option<String>,
) -> Result<DynamicObject, kube::Error> {
    let mut body = object.clone();
    if let Some(rv) = resource_version {
        body["metadata"]["resourceVersion"] = rv.into();
    }
    let mut params = PatchParams::apply(super::MANAGER);
    params.force = force;
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(&body)).await
}

/// Whether managers other than kubefence's apply hold fields of `obj`.
fn written_by_others(obj: &DynamicObject) -> bool {
    obj.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() != Some(super::MANAGER) || m.operation.as_deref() != Some("Apply")
    })
}

/// An apply of nothing but the identity: kubefence's manager lets go of
/// every field, so what only it set goes and the other managers' fields
/// stay. Best effort (logged).
async fn give_back(api: &Api<DynamicObject>, name: &str, object: &serde_json::Value) {
    let mut empty = serde_json::json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": name},
    });
    if !object["metadata"]["namespace"].is_null() {
        empty["metadata"]["namespace"] = object["metadata"]["namespace"].clone();
    }
    if let Err(e) = api
        .patch(
            name,
            &PatchParams::apply(super::MANAGER),
            &Patch::Apply(&empty),
        )
        .await
    {
        tracing::warn!(%name, error = %e, "could not give back the fields of a policy someone else created");
    }
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

/// Deletes the target's quarantine policy when the CLI may ([`Holder::Cli`]):
/// one a Quarantine resource holds is refused (delete the Quarantine
/// instead). Works when the target is gone: only the policy is read. A
/// missing policy is success.
pub async fn release(
    client: &Client,
    target: &Target,
    engine: Engine,
    dry_run: bool,
    cfg: &QuarantineConfig,
) -> Result<ReleaseOutcome> {
    core_q::check_namespace(target, &cfg.core())?;
    release_named(client, engine, target, dry_run, &Holder::Cli).await
}

/// Deletes `target`'s quarantine object of `engine` when `holder` holds it
/// ([`holding`], checked on the object read just before, and the delete is
/// of exactly that object: uid precondition). A missing one is success.
pub async fn release_named(
    client: &Client,
    engine: Engine,
    target: &Target,
    dry_run: bool,
    holder: &Holder,
) -> Result<ReleaseOutcome> {
    let name = target.object_name(engine);
    let namespace = target.namespace.as_str();
    let (api, meta) = policy_client(client, engine, namespace);
    let existing = match api.get(&name).await {
        Ok(o) => o,
        Err(e) if is_status(&e, 404) => return Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => return Err(Error::kube(format!("reading {} {name}", meta.kind), e)),
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
    match api.delete(&name, &params).await {
        Ok(_) => Ok(ReleaseOutcome::Released),
        Err(e) if is_status(&e, 404) => Ok(ReleaseOutcome::NotQuarantined),
        Err(e) => Err(Error::kube(format!("deleting {} {name}", meta.kind), e)),
    }
}

/// Passes `target`'s quarantine object of `engine` from the Quarantine
/// `from` (going away) to `to` (still isolating the same target): the uid
/// label changes, nothing else. A forced apply of kubefence's own labels,
/// annotations and the spec as read, on exactly the version read.
pub async fn hand_over(
    client: &Client,
    engine: Engine,
    target: &Target,
    from: &str,
    to: &str,
) -> Result<()> {
    let name = target.object_name(engine);
    let (api, meta) = policy_client(client, engine, &target.namespace);
    let existing = match api.get(&name).await {
        Ok(o) => o,
        Err(e) if is_status(&e, 404) => return Ok(()),
        Err(e) => return Err(Error::kube(format!("reading {} {name}", meta.kind), e)),
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
    server_side_apply(&api, &name, &body, false, true, existing.resource_version())
        .await
        .map_err(|e| Error::kube(format!("handing over {} {name}", meta.kind), e))?;
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
