//! The `Quarantine` controller: reconcile with a finalizer, status phases
//! Planned → Isolated → Released (or Failed), conditions Ready and Effective.
//!
//! `reconcile` is a plain function of the object and the controller's
//! [`Quarantines`] (the one runtime [`Context`] plus the quarantine
//! config), so the operator's shared runtime drives it with kube-runtime's
//! `Controller` (see `runtime.rs`). Like the baseline controller it backs
//! off on errors (1 s doubling to 5 min, per Quarantine), records Events
//! with the context's recorder, and counts reconciles, errors and their
//! durations under the controller name `quarantine`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use kubefence_core::WorkloadKind;
use kubefence_core::quarantine::{Audit, Engine, Plan, REQUESTER_ANNOTATION, Target};
use kubefence_k8s::crd::quarantine::{
    CONDITION_EFFECTIVE, CONDITION_READY, FINALIZER, Phase, Quarantine, QuarantineStatus,
    RemainingPathStatus, set_condition,
};
use kubefence_k8s::quarantine::{policy_api, workload_api};
use serde_json::json;

use super::ops::{self, ApplyOutcome, Holder, ReleaseOutcome};
use super::{NAME, QuarantineConfig};
use crate::cluster::{self, timed};
use crate::context::Context;
use crate::error::{Error, Result};

/// How often an unchanged Quarantine is checked again (the target may have
/// been re-created, a new policy may open a path).
const RESYNC: Duration = Duration::from_secs(300);
/// The first retry after a failure; each further failure doubles it.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// The resource name of Quarantines, for the write metrics.
const RESOURCE: &str = "quarantines";

/// The delay before retry number `failures` (1 s, 2 s, 4 s, … 5 min).
pub fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
}

/// What the Quarantine controller's reconcile needs: the one runtime
/// context (client, recorder, metrics, timeouts), the quarantine config,
/// and the consecutive failures of each Quarantine (its backoff).
pub struct Quarantines {
    pub ctx: Arc<Context>,
    pub cfg: QuarantineConfig,
    failures: Mutex<HashMap<ObjectRef<Quarantine>, u32>>,
}

impl Quarantines {
    pub fn new(ctx: Arc<Context>, cfg: QuarantineConfig) -> Self {
        Self {
            ctx,
            cfg,
            failures: Mutex::default(),
        }
    }

    fn with_failures<T>(&self, f: impl FnOnce(&mut HashMap<ObjectRef<Quarantine>, u32>) -> T) -> T {
        let mut guard = match self.failures.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// One more failure of `q`: how long to wait before the retry.
    fn failed(&self, q: &Quarantine) -> Duration {
        let failures = self.with_failures(|f| {
            let n = f.entry(ObjectRef::from_obj(q)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        retry_delay(failures)
    }

    fn succeeded(&self, q: &Quarantine) {
        self.with_failures(|f| f.remove(&ObjectRef::from_obj(q)));
    }
}

/// Runs the Quarantine controller until `stop` resolves; reconciles in
/// flight finish first. The operator's runtime uses this to run it only
/// while its replica leads.
pub async fn run_until(
    qs: Arc<Quarantines>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    controller(&qs)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, qs)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(quarantine = %obj, "reconciled"),
                Err(e) => {
                    tracing::debug!(error = %crate::error::chain(&e), "quarantine reconcile failed")
                }
            }
        })
        .await;
}

/// Quarantines; every NetworkPolicy: a change to a policy of a namespace
/// reconciles that namespace's Quarantines, so a hand edit of a quarantine
/// policy is repaired at once (server-side apply on the version read) and
/// the Effective condition follows the policies that are live (another
/// policy opening a path, a baseline policy withheld); and the workloads
/// of every kind, so a Quarantine that failed because its target had no
/// selector labels (EmptySelector) or did not exist is retried as soon as
/// the target changes. The custom kinds (Cilium, AdminNetworkPolicy) may
/// not be installed; they are checked on every resync.
fn controller(qs: &Quarantines) -> Controller<Quarantine> {
    let client = qs.ctx.client.clone();
    let api: Api<Quarantine> = Api::all(client.clone());
    let mut controller = Controller::new(api, watcher::Config::default().any_semantic());
    let quarantines = controller.store();
    let policies: Api<NetworkPolicy> = Api::all(client.clone());
    let store = quarantines.clone();
    controller = controller.watches(
        policies,
        watcher::Config::default().any_semantic(),
        move |policy: NetworkPolicy| {
            let namespace = policy.namespace();
            store
                .state()
                .iter()
                .filter(|q| q.namespace() == namespace)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    for kind in WorkloadKind::ALL {
        let (api_version, plural) = workload_api(kind);
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind.as_str()),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let store = quarantines.clone();
        controller = controller.watches_with(
            api,
            resource,
            watcher::Config::default().any_semantic(),
            move |workload: DynamicObject| waiting_for(&store, kind, &workload),
        );
    }
    controller
}

/// The Quarantines of `workload` that wait for it to change: their last
/// reconcile failed because it had no selector labels or did not exist.
/// Others are not woken: an isolated target's pods change all the time.
pub fn waiting_for(
    quarantines: &Store<Quarantine>,
    kind: WorkloadKind,
    workload: &DynamicObject,
) -> Vec<ObjectRef<Quarantine>> {
    let namespace = workload.namespace();
    let name = workload.name_any();
    quarantines
        .state()
        .iter()
        .filter(|q| q.namespace() == namespace)
        .filter(|q| WorkloadKind::from(q.spec.target.kind) == kind && q.spec.target.name == name)
        .filter(|q| waits_for_target(q))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// Whether `q` failed for want of a (labelled) target.
fn waits_for_target(q: &Quarantine) -> bool {
    q.status.iter().flat_map(|s| &s.conditions).any(|c| {
        c.type_ == CONDITION_READY
            && c.status == "False"
            && matches!(c.reason.as_str(), "EmptySelector" | "TargetNotFound")
    })
}

/// Reconciles one Quarantine (finalizer first, then isolate or release),
/// and counts it: reconciles and their durations, errors by label.
pub async fn reconcile(q: Arc<Quarantine>, qs: Arc<Quarantines>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_one(&q, &qs).await;
    qs.ctx
        .metrics
        .reconciled(NAME, started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => qs.succeeded(&q),
        Err(e) => qs.ctx.metrics.error(NAME, &e.metric_label()),
    }
    result
}

/// The finalizer, as kube-runtime's helper does it, but written through
/// [`cluster`] (timeout, metrics): added before anything is isolated;
/// removed only once the release succeeded.
async fn reconcile_one(q: &Quarantine, qs: &Quarantines) -> Result<Action> {
    let namespace = q.namespace().unwrap_or_default();
    let api: Api<Quarantine> = Api::namespaced(qs.ctx.client.clone(), &namespace);
    let what = |verb: &str| {
        format!(
            "{verb} the finalizer of Quarantine {namespace}/{}",
            q.name_any()
        )
    };
    let has_finalizer = q.finalizers().iter().any(|f| f == FINALIZER);
    match (q.meta().deletion_timestamp.is_some(), has_finalizer) {
        (false, false) => {
            cluster::add_finalizer(&qs.ctx, &api, RESOURCE, q, FINALIZER)
                .await
                .map_err(|e| Error::call(what("adding"), e))?;
            // The patch is a change: it reconciles again.
            Ok(Action::await_change())
        }
        (false, true) => isolate(q, qs).await,
        (true, true) => {
            let action = release(q, qs).await?;
            cluster::remove_finalizer(&qs.ctx, &api, RESOURCE, q, FINALIZER)
                .await
                .map_err(|e| Error::call(what("removing"), e))?;
            Ok(action)
        }
        (true, false) => Ok(Action::await_change()),
    }
}

/// A failed reconcile is retried with exponential backoff, per Quarantine
/// (1 s doubling to 5 min; a success resets it).
pub fn error_policy(q: Arc<Quarantine>, error: &Error, qs: Arc<Quarantines>) -> Action {
    let delay = qs.failed(&q);
    tracing::warn!(
        quarantine = %q.name_any(),
        error = %error.full_message(),
        ?delay,
        "reconcile failed; will retry"
    );
    Action::requeue(delay)
}

fn target_of(q: &Quarantine) -> Target {
    Target::new(
        q.spec.target.kind.into(),
        q.namespace().unwrap_or_default(),
        &q.spec.target.name,
    )
}

/// The requester recorded in the audit trail. Kubernetes does not record
/// who created an object, so the operator is the requester; a
/// `kubefence.dev/requested-by` annotation on the Quarantine is quoted as a
/// claim (unverified).
fn requester(q: &Quarantine, cfg: &QuarantineConfig) -> String {
    let on = format!(
        "Quarantine {}/{}",
        q.namespace().unwrap_or_default(),
        q.name_any()
    );
    match q.annotations().get(REQUESTER_ANNOTATION) {
        Some(claimed) => format!(
            "{} for {on}, requested by {claimed} (unverified)",
            cfg.requester
        ),
        None => format!("{} for {on}", cfg.requester),
    }
}

async fn isolate(q: &Quarantine, qs: &Quarantines) -> Result<Action> {
    let target = target_of(q);
    let engine: Engine = q.spec.engine.into();
    let audit = Audit {
        reason: q.spec.reason.clone(),
        finding: q.spec.finding_ref.clone(),
        requester: requester(q, &qs.cfg),
        time: qs.cfg.now_rfc3339(),
    };
    let previous = written(q);
    let result = async {
        // Refused before any request.
        kubefence_core::quarantine::check_namespace(&target, &qs.cfg.core())?;
        let sharing = sharing_of(q, qs, engine).await?;
        let request = ops::Request {
            target: target.clone(),
            audit,
            engine,
            dry_run: q.spec.dry_run,
            allow_collateral: q.spec.allow_collateral,
            holder: Holder::Quarantine {
                uid: q.uid().unwrap_or_default(),
                sharing: sharing.iter().map(|(_, uid)| uid.clone()).collect(),
            },
        };
        let isolation = ops::isolate(&qs.ctx, &qs.cfg, &request).await?;
        // What an earlier reconcile wrote and the spec no longer asks for
        // (back to a dry run) goes, after the new policy exists: never a
        // gap in the isolation.
        let wanted = (!q.spec.dry_run).then_some(isolation.plan.engine);
        if let Some(old) = previous.filter(|old| Some(*old) != wanted) {
            let others = sharing_of(q, qs, old).await?;
            if others.is_empty() {
                release_quietly(qs, &target, old, &holder_alone(q)).await?;
            }
        }
        Ok::<_, Error>(isolation)
    }
    .await;
    match result {
        Ok(isolation) => {
            if isolation.outcome == ApplyOutcome::Repaired && !q.spec.dry_run {
                tracing::warn!(quarantine = %q.name_any(), policy = %isolation.plan.policy_name, "the quarantine policy had been changed; repaired");
            }
            let status = planned_status(q, &isolation.plan, &isolation.selection, qs);
            patch_status(q, qs, status).await?;
            Ok(Action::requeue(RESYNC))
        }
        Err(e) => {
            let status = failed_status(q, &e, qs);
            patch_status(q, qs, status).await?;
            match e {
                // Nothing will change until the spec, the namespace config
                // or the target does (the workload watches wake it).
                Error::Refused(_) => {
                    qs.ctx.metrics.error(NAME, &e.metric_label());
                    Ok(Action::await_change())
                }
                // Retried with backoff (error_policy).
                e => Err(e),
            }
        }
    }
}

/// This Quarantine alone, sharing with no other.
fn holder_alone(q: &Quarantine) -> Holder {
    Holder::Quarantine {
        uid: q.uid().unwrap_or_default(),
        sharing: Vec::new(),
    }
}

async fn release(q: &Quarantine, qs: &Quarantines) -> Result<Action> {
    let target = target_of(q);
    let engine: Engine = q.spec.engine.into();
    // Which engine's object was written: the status says (only which
    // engine: the object is always this target's, and it is deleted only
    // when it carries this Quarantine's uid); a confirmed spec whose first
    // reconcile did not record it yet may have written its own policy.
    let recorded = written(q);
    let isolation_recorded = recorded.is_some();
    let written = recorded.or_else(|| (!q.spec.dry_run).then_some(engine));
    // A protected namespace or a dry run: nothing was ever written.
    let Some(written) = written else {
        return Ok(Action::await_change());
    };
    if qs.cfg.protected_namespaces.contains(&target.namespace) {
        return Ok(Action::await_change());
    }
    // Another Quarantine of the same workload still wants it isolated: its
    // policy is the same object, so it stays, handed over to that one.
    if let Some((other, other_uid)) = sharing_of(q, qs, written).await?.into_iter().next() {
        tracing::info!(quarantine = %q.name_any(), %other, "policy kept: another Quarantine isolates the same workload");
        ops::hand_over(
            &qs.ctx,
            written,
            &target,
            &q.uid().unwrap_or_default(),
            &other_uid,
        )
        .await?;
        let status = released_status(
            q,
            qs,
            &format!("the policy stays: Quarantine {other} still isolates {target}"),
        );
        patch_status(q, qs, status).await?;
        return Ok(Action::await_change());
    }
    let released = ops::release(
        &qs.ctx,
        &qs.cfg,
        &target,
        written,
        false,
        &holder_alone(q),
        &requester(q, &qs.cfg),
    )
    .await;
    match released {
        Ok(_) => {}
        // Not this Quarantine's to delete: left alone (logged).
        Err(e @ (Error::Foreign { .. } | Error::HeldByQuarantine { .. })) => {
            tracing::warn!(error = %e, "not releasing a policy this Quarantine does not hold");
        }
        // Without the policy rights (a default install) no isolation was
        // ever recorded, so nothing of ours can exist: finish the deletion
        // rather than leave the Quarantine stuck in Terminating. Once an
        // isolation is recorded, a Forbidden release keeps the finalizer:
        // the workload stays isolated until someone with the rights
        // releases it.
        Err(Error::Forbidden { what, message }) if !isolation_recorded => {
            tracing::info!(quarantine = %q.name_any(), %what, %message, "release forbidden, and no isolation was ever recorded: nothing to release");
        }
        Err(e) => return Err(e),
    }
    let status = released_status(
        q,
        qs,
        "the quarantine policy was deleted; the workload's network is restored",
    );
    patch_status(q, qs, status).await?;
    Ok(Action::await_change())
}

fn released_status(q: &Quarantine, qs: &Quarantines, message: &str) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((qs.cfg.clock)());
    status.phase = Some(Phase::Released);
    status.remaining_paths.clear();
    set_condition(
        &mut status.conditions,
        CONDITION_READY,
        false,
        "Released",
        message,
        q.metadata.generation,
        &now,
    );
    set_condition(
        &mut status.conditions,
        CONDITION_EFFECTIVE,
        false,
        "Released",
        "not isolated",
        q.metadata.generation,
        &now,
    );
    status.observed_generation = q.metadata.generation;
    status
}

/// The other live, confirmed Quarantines of `q`'s target whose engine is
/// `engine` (name, uid).
async fn sharing_of(
    q: &Quarantine,
    qs: &Quarantines,
    engine: Engine,
) -> Result<Vec<(String, String)>> {
    let namespace = q.namespace().unwrap_or_default();
    let api: Api<Quarantine> = Api::namespaced(qs.ctx.client.clone(), &namespace);
    let list = timed(&qs.ctx, api.list(&ListParams::default()))
        .await
        .map_err(|e| Error::call(format!("listing Quarantines of namespace {namespace}"), e))?;
    let target = target_of(q);
    Ok(list
        .items
        .iter()
        .filter(|o| o.uid() != q.uid() && o.metadata.deletion_timestamp.is_none())
        .filter(|o| !o.spec.dry_run && Engine::from(o.spec.engine) == engine)
        .filter(|o| target_of(o) == target)
        .filter_map(|o| Some((o.name_any(), o.uid()?)))
        .collect())
}

/// The engine whose object a confirmed reconcile recorded in the status.
/// Only the engine is read: the object is always the target's own, and
/// whether it may be deleted is decided on the object
/// ([`ops::holding`]), never by the status, which whoever may write it
/// can forge.
fn written(q: &Quarantine) -> Option<Engine> {
    let status = q.status.as_ref()?;
    if status.phase != Some(Phase::Isolated) {
        return None;
    }
    let (kind, name) = status.policy_name.as_deref()?.split_once('/')?;
    let engine = Engine::from_object_kind(kind)?;
    if name != target_of(q).object_name(engine) {
        tracing::warn!(quarantine = %q.name_any(), policy = %name, "the status names an object that is not this target's; ignored");
    }
    Some(engine)
}

/// Releases `target`'s object of `engine` when `holder` holds it; an object
/// it does not hold is left alone (logged), never deleted.
async fn release_quietly(
    qs: &Quarantines,
    target: &Target,
    engine: Engine,
    holder: &Holder,
) -> Result<ReleaseOutcome> {
    match ops::release_named(&qs.ctx, engine, target, false, holder).await {
        Err(e @ (Error::Foreign { .. } | Error::HeldByQuarantine { .. })) => {
            tracing::warn!(error = %e, "not releasing a policy this Quarantine does not hold");
            Ok(ReleaseOutcome::NotQuarantined)
        }
        other => other,
    }
}

fn planned_status(
    q: &Quarantine,
    plan: &Plan,
    selection: &ops::Selection,
    qs: &Quarantines,
) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((qs.cfg.clock)());
    let generation = q.metadata.generation;
    let api = policy_api(plan.engine);
    let dry_run = q.spec.dry_run;
    status.phase = Some(if dry_run {
        Phase::Planned
    } else {
        Phase::Isolated
    });
    status.policy_name = Some(format!("{}/{}", api.kind, plan.policy_name));
    status.selector = Some(plan.selector.to_string());
    status.plan = Some(format!(
        "{} {} denies all ingress and egress of the pods of {} ({}: {} now){}",
        api.kind,
        plan.policy_name,
        plan.target,
        plan.selector,
        selection.summary(),
        if dry_run {
            "; dry run: set spec.dryRun=false to isolate"
        } else {
            ""
        }
    ));
    status.remaining_paths = plan
        .remaining_paths
        .iter()
        .map(RemainingPathStatus::from)
        .collect();
    let (ready_reason, ready_message) = if dry_run {
        (
            "DryRun",
            "planned only (server-side dry run passed)".to_string(),
        )
    } else {
        (
            "Isolated",
            format!("{} {} exists", api.kind, plan.policy_name),
        )
    };
    set_condition(
        &mut status.conditions,
        CONDITION_READY,
        !dry_run,
        ready_reason,
        &ready_message,
        generation,
        &now,
    );
    let open: Vec<String> = plan.open_paths().map(ToString::to_string).collect();
    let (effective, reason, message) = if !open.is_empty() {
        (
            false,
            "PathsRemain",
            format!(
                "{} path(s) stay open through other policies (NetworkPolicies are additive; the cilium or adminnetworkpolicy engine can override them): {}",
                open.len(),
                open.join("; ")
            ),
        )
    } else if !plan.effective() {
        (
            false,
            "UnreadablePolicies",
            format!(
                "policies that kubefence cannot read may leave paths open: {}",
                plan.unreadable_policies.join("; ")
            ),
        )
    } else if dry_run {
        (
            false,
            "DryRun",
            "not isolated yet; once applied, no path would remain".to_string(),
        )
    } else {
        (
            true,
            "NoPathRemains",
            "no path reaches the target or leaves it".to_string(),
        )
    };
    set_condition(
        &mut status.conditions,
        CONDITION_EFFECTIVE,
        effective,
        reason,
        &message,
        generation,
        &now,
    );
    status.observed_generation = generation;
    status
}

fn failed_status(q: &Quarantine, e: &Error, qs: &Quarantines) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((qs.cfg.clock)());
    let generation = q.metadata.generation;
    // A failed re-check of an isolated workload keeps it isolated: the
    // policy is not removed by a failure.
    if status.phase != Some(Phase::Isolated) {
        status.phase = Some(Phase::Failed);
    }
    set_condition(
        &mut status.conditions,
        CONDITION_READY,
        false,
        e.reason(),
        &e.full_message(),
        generation,
        &now,
    );
    if let Error::Drifted { .. } = e {
        // Isolated, but not as planned: what is live decides, and it was
        // changed by someone else.
        set_condition(
            &mut status.conditions,
            CONDITION_EFFECTIVE,
            false,
            e.reason(),
            "the quarantine policy was changed and could not be restored; it may let traffic through",
            generation,
            &now,
        );
    } else if status.phase == Some(Phase::Failed) {
        set_condition(
            &mut status.conditions,
            CONDITION_EFFECTIVE,
            false,
            e.reason(),
            "not isolated",
            generation,
            &now,
        );
    }
    status.observed_generation = generation;
    status
}

/// Writes the status when it differs from the observed one (server-side
/// apply, field manager `kubefence`).
async fn patch_status(q: &Quarantine, qs: &Quarantines, status: QuarantineStatus) -> Result<()> {
    let status = status.bounded();
    if q.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Quarantine> =
        Api::namespaced(qs.ctx.client.clone(), &q.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "Quarantine",
        "status": status,
    });
    cluster::apply_status(&qs.ctx, &api, RESOURCE, &q.name_any(), &patch)
        .await
        .map_err(|e| {
            Error::call(
                format!("updating the status of Quarantine {}", q.name_any()),
                e,
            )
        })?;
    Ok(())
}
