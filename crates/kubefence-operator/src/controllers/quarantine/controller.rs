//! The `Quarantine` controller: reconcile with a finalizer, status phases
//! Planned → Isolated → Released (or Failed), conditions Ready and Effective.
//!
//! `reconcile` is a plain function of the object and a [`Context`], so the
//! operator's shared runtime can drive it; [`run_controller`] runs it alone
//! with kube-runtime's `Controller`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kubefence_core::quarantine::{Audit, Engine, Plan, REQUESTER_ANNOTATION, Target};
use kubefence_k8s::crd::quarantine::{
    CONDITION_EFFECTIVE, CONDITION_READY, FINALIZER, Phase, Quarantine, QuarantineStatus,
    RemainingPathStatus, set_condition,
};
use kubefence_k8s::quarantine::policy_api;
use serde_json::json;

use super::ops::{self, ApplyOutcome, Holder, ReleaseOutcome};
use super::{Error, MANAGER, QuarantineConfig};

/// How often an unchanged Quarantine is checked again (the target may have
/// been re-created, a new policy may open a path).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay after a failure.
const RETRY: Duration = Duration::from_secs(30);

/// What reconcile needs: the client, the event recorder and the config.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub cfg: QuarantineConfig,
}

impl Context {
    pub fn new(client: Client, cfg: QuarantineConfig) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_string(),
                instance: None,
            },
        );
        Self {
            client,
            recorder,
            cfg,
        }
    }
}

/// Runs the Quarantine controller alone until SIGTERM or Ctrl-C.
pub async fn run_controller(client: Client, cfg: QuarantineConfig) {
    let ctx = Arc::new(Context::new(client, cfg));
    drive(controller(&ctx).shutdown_on_signal(), ctx).await;
}

/// Runs the Quarantine controller until `stop` resolves; reconciles in
/// flight finish first. The operator's runtime uses this to run it only
/// while its replica leads.
pub async fn run_until(
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    drive(controller(&ctx).graceful_shutdown_on(stop), ctx).await;
}

/// Quarantines, and every NetworkPolicy: a change to a policy of a
/// namespace reconciles that namespace's Quarantines, so a hand edit of a
/// quarantine policy is repaired at once (server-side apply on the version
/// read) and the Effective condition follows the policies that are live
/// (another policy opening a path, a baseline policy withheld). The custom
/// kinds (Cilium, AdminNetworkPolicy) may not be installed; they are
/// checked on every resync.
fn controller(ctx: &Context) -> Controller<Quarantine> {
    let api: Api<Quarantine> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let quarantines = controller.store();
    let policies: Api<NetworkPolicy> = Api::all(ctx.client.clone());
    controller.watches(
        policies,
        watcher::Config::default().any_semantic(),
        move |policy: NetworkPolicy| {
            let namespace = policy.namespace();
            quarantines
                .state()
                .iter()
                .filter(|q| q.namespace() == namespace)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        },
    )
}

async fn drive(controller: Controller<Quarantine>, ctx: Arc<Context>) {
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(quarantine = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %super::chain(&e), "quarantine reconcile failed"),
            }
        })
        .await;
}

/// Reconciles one Quarantine (through the finalizer).
pub async fn reconcile(
    q: Arc<Quarantine>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<Error>> {
    let namespace = q.namespace().unwrap_or_default();
    let api: Api<Quarantine> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, q, |event| async {
        match event {
            Finalizer::Apply(q) => isolate(&q, &ctx).await,
            Finalizer::Cleanup(q) => release(&q, &ctx).await,
        }
    })
    .await
}

pub fn error_policy(
    q: Arc<Quarantine>,
    error: &finalizer::Error<Error>,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        quarantine = %q.name_any(),
        error = %super::chain(error),
        "reconcile failed"
    );
    Action::requeue(RETRY)
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

async fn isolate(q: &Quarantine, ctx: &Context) -> Result<Action, Error> {
    let target = target_of(q);
    let engine: Engine = q.spec.engine.into();
    let audit = Audit {
        reason: q.spec.reason.clone(),
        finding: q.spec.finding_ref.clone(),
        requester: requester(q, &ctx.cfg),
        time: ctx.cfg.now_rfc3339(),
    };
    let previous = written(q);
    let result = async {
        // Refused before any request.
        kubefence_core::quarantine::check_namespace(&target, &ctx.cfg.core())?;
        let sharing = sharing_of(q, ctx, engine).await?;
        let holder = Holder::Quarantine {
            uid: q.uid().unwrap_or_default(),
            sharing: sharing.iter().map(|(_, uid)| uid.clone()).collect(),
        };
        let (plan, reference) = ops::plan(&ctx.client, &target, &audit, engine, &ctx.cfg).await?;
        let selection = ops::selected_pods(&ctx.client, &plan, reference.uid.as_deref()).await?;
        ops::check_collateral(&plan, &selection, q.spec.allow_collateral)?;
        let outcome = ops::apply(&ctx.client, &plan, q.spec.dry_run, &holder).await?;
        // What an earlier reconcile wrote and the spec no longer asks for
        // (back to a dry run) goes, after the new policy exists: never a
        // gap in the isolation.
        let wanted = (!q.spec.dry_run).then_some(plan.engine);
        if let Some(old) = previous.filter(|old| Some(*old) != wanted) {
            let others = sharing_of(q, ctx, old).await?;
            if others.is_empty() {
                release_quietly(ctx, &target, old, &holder_alone(q)).await?;
            }
        }
        Ok::<_, Error>((plan, reference, outcome, selection))
    }
    .await;
    match result {
        Ok((plan, reference, outcome, selection)) => {
            if !q.spec.dry_run && outcome == ApplyOutcome::Created {
                // The policy exists whatever happens to the Event.
                if let Err(e) =
                    ops::record_quarantined(&ctx.recorder, &reference, &plan, &audit).await
                {
                    tracing::warn!(error = %e, "cannot record the event");
                }
            }
            if outcome == ApplyOutcome::Repaired && !q.spec.dry_run {
                tracing::warn!(quarantine = %q.name_any(), policy = %plan.policy_name, "the quarantine policy had been changed; repaired");
            }
            let status = planned_status(q, &plan, &selection, ctx);
            patch_status(q, ctx, status).await?;
            Ok(Action::requeue(RESYNC))
        }
        Err(e) => {
            let status = failed_status(q, &e, ctx);
            patch_status(q, ctx, status).await?;
            match e {
                // Nothing will change until the spec or the namespace config does.
                Error::Refused(_) => Ok(Action::await_change()),
                Error::Kube { .. } => Err(e),
                _ => Ok(Action::requeue(RETRY)),
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

async fn release(q: &Quarantine, ctx: &Context) -> Result<Action, Error> {
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
    if ctx.cfg.protected_namespaces.contains(&target.namespace) {
        return Ok(Action::await_change());
    }
    // Another Quarantine of the same workload still wants it isolated: its
    // policy is the same object, so it stays, handed over to that one.
    if let Some((other, other_uid)) = sharing_of(q, ctx, written).await?.into_iter().next() {
        tracing::info!(quarantine = %q.name_any(), %other, "policy kept: another Quarantine isolates the same workload");
        ops::hand_over(
            &ctx.client,
            written,
            &target,
            &q.uid().unwrap_or_default(),
            &other_uid,
        )
        .await?;
        let status = released_status(
            q,
            ctx,
            &format!("the policy stays: Quarantine {other} still isolates {target}"),
        );
        patch_status(q, ctx, status).await?;
        return Ok(Action::await_change());
    }
    let outcome = match release_quietly(ctx, &target, written, &holder_alone(q)).await {
        // Without the policy rights (a default install) no isolation was
        // ever recorded, so nothing of ours can exist: finish the deletion
        // rather than leave the Quarantine stuck in Terminating. Once an
        // isolation is recorded, a Forbidden release keeps the finalizer:
        // the workload stays isolated until someone with the rights
        // releases it.
        Err(Error::Forbidden { what, message }) if !isolation_recorded => {
            tracing::info!(quarantine = %q.name_any(), %what, %message, "release forbidden, and no isolation was ever recorded: nothing to release");
            ReleaseOutcome::NotQuarantined
        }
        other => other?,
    };
    if outcome == ReleaseOutcome::Released {
        let reference = ops::object_reference(&target, None);
        if let Err(e) = ops::record_released(
            &ctx.recorder,
            &reference,
            written,
            &target.object_name(written),
            &requester(q, &ctx.cfg),
        )
        .await
        {
            tracing::warn!(error = %e, "cannot record the event");
        }
    }
    let status = released_status(
        q,
        ctx,
        "the quarantine policy was deleted; the workload's network is restored",
    );
    patch_status(q, ctx, status).await?;
    Ok(Action::await_change())
}

fn released_status(q: &Quarantine, ctx: &Context, message: &str) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((ctx.cfg.clock)());
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
    ctx: &Context,
    engine: Engine,
) -> Result<Vec<(String, String)>, Error> {
    let namespace = q.namespace().unwrap_or_default();
    let api: Api<Quarantine> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("listing Quarantines of namespace {namespace}"), e))?;
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
    ctx: &Context,
    target: &Target,
    engine: Engine,
    holder: &Holder,
) -> Result<ReleaseOutcome, Error> {
    match ops::release_named(&ctx.client, engine, target, false, holder).await {
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
    ctx: &Context,
) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((ctx.cfg.clock)());
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

fn failed_status(q: &Quarantine, e: &Error, ctx: &Context) -> QuarantineStatus {
    let mut status = q.status.clone().unwrap_or_default();
    let now = Time((ctx.cfg.clock)());
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
async fn patch_status(
    q: &Quarantine,
    ctx: &Context,
    status: QuarantineStatus,
) -> Result<(), Error> {
    if q.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Quarantine> =
        Api::namespaced(ctx.client.clone(), &q.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "Quarantine",
        "status": status,
    });
    api.patch_status(
        &q.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!("updating the status of Quarantine {}", q.name_any()),
            e,
        )
    })?;
    Ok(())
}
