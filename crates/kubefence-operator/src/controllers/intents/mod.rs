//! The intents controller: SecurityIntents and their bindings
//! (`kubefence.dev/v1alpha1`) become one IntentPolicy per binding and
//! namespace, and each IntentPolicy the objects of every engine the
//! cluster serves (`kubefence_k8s::adapters`), kept as the intents say.
//!
//! ```text
//!  watches (reflector caches): SecurityIntents, (Cluster)SecurityIntentBindings,
//!    IntentPolicies, Namespaces (metadata), kubefence's intent objects of
//!    each served engine (by label), CRDs (metadata: an engine installed
//!    later is found at once)
//!        └─▶ reconcile::pass ─▶ create / apply / delete (cluster.rs) ─▶ status
//! ```
//!
//! An engine is written only when the API server serves its kind
//! (discovery, when this replica starts leading, when a CRD appears or
//! goes, and at every resync); otherwise its adapter status says
//! `EngineNotInstalled`. A pass over an unchanged cluster sends no write.
//! Deleting a binding deletes its IntentPolicies and their namespaced
//! objects by garbage collection (ownerReferences); cluster-scoped objects
//! are removed by the controller (see `reconcile`).
//!
//! It runs only while this replica leads, when `OperatorConfig::intents`
//! is set (`kubefence operator --intents`), with the opt-in
//! `deploy/components/intents` (and one sub-component per engine).

mod reconcile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kubefence_core::intent::Options as IntentOptions;
use kubefence_core::naming;
use kubefence_core::ruleset::Engine;
use kubefence_k8s::crd::intent::{
    ClusterSecurityIntentBinding, IntentPolicy, SecurityIntent, SecurityIntentBinding,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use reconcile::{
    EngineEntry, EngineObjects, INTENT_POLICY_LABEL, INTENT_POLICY_UID_LABEL, Pass, REASON_APPLIED,
    REASON_NAME_TAKEN, REASON_NOT_RESOLVED, REASON_NOTHING_APPLIED, REASON_OBJECT_TAKEN,
    REASON_RESOLVED, REASON_WRITTEN, Snapshot, State, adapter_manager, apply_adapter_status, pass,
};

use crate::context::Context;
use crate::error::Result;

pub const NAME: &str = "intents";

/// Events closer than this make one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn start(ctx: Arc<Context>) -> BoxFuture<'static, Result<()>> {
    Box::pin(run(ctx))
}

/// The intent options the operator's config implies: the cluster DNS of
/// the baseline config.
pub fn options(ctx: &Context) -> IntentOptions {
    IntentOptions {
        dns: ctx.config.baseline.dns.clone(),
    }
}

/// The caches a pass reads.
#[derive(Clone)]
pub struct Caches {
    pub intents: Store<SecurityIntent>,
    pub bindings: Store<SecurityIntentBinding>,
    pub cluster_bindings: Store<ClusterSecurityIntentBinding>,
    pub policies: Store<IntentPolicy>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub engines: Vec<(Engine, ApiResource, Store<DynamicObject>)>,
}

impl Caches {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            intents: self.intents.state(),
            bindings: self.bindings.state(),
            cluster_bindings: self.cluster_bindings.state(),
            policies: self.policies.state(),
            namespaces: self.namespaces.state(),
            engines: EngineObjects {
                served: self
                    .engines
                    .iter()
                    .map(|(e, r, _)| (*e, r.clone()))
                    .collect(),
                objects: self
                    .engines
                    .iter()
                    .flat_map(|(e, _, s)| s.state().into_iter().map(move |o| (*e, o)))
                    .collect(),
            },
        }
    }

    async fn wait_until_ready(&self) {
        let _ = self.intents.wait_until_ready().await;
        let _ = self.bindings.wait_until_ready().await;
        let _ = self.cluster_bindings.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        for (_, _, s) in &self.engines {
            let _ = s.wait_until_ready().await;
        }
    }
}

/// Only kubefence's intent objects: `managed-by=kubefence,source=intent`.
fn intent_labels() -> String {
    format!(
        "{}={},{}={}",
        naming::MANAGED_BY_LABEL,
        naming::MANAGED_BY_VALUE,
        naming::SOURCE_LABEL,
        naming::Source::Intent.as_str()
    )
}

/// Starts the watches into `tasks`. Every event notifies `wake`; a CRD
/// event also sets `crds_changed`, so the loop looks for engines again.
pub fn watch(
    ctx: &Context,
    wake: Arc<Notify>,
    crds_changed: Arc<AtomicBool>,
    tasks: &mut JoinSet<()>,
    engines: Vec<(Engine, ApiResource)>,
) -> Caches {
    let cfg = || watcher::Config::default().any_semantic();
    let labels = intent_labels();
    let engines = engines
        .into_iter()
        .map(|(engine, resource)| {
            let writer = reflector::store::Writer::new(resource.clone());
            let store = writer.as_reader();
            let api = Api::<DynamicObject>::all_with(ctx.client.clone(), &resource);
            let stream = reflector(
                writer,
                watcher(api, cfg().labels(&labels)).modify(|o| o.managed_fields_mut().clear()),
            );
            tasks.spawn(drain(
                stream.default_backoff(),
                "engine objects",
                Some(wake.clone()),
                None,
            ));
            (engine, resource, store)
        })
        .collect();
    macro_rules! typed {
        ($kind:ty, $what:literal) => {{
            let (store, writer) = reflector::store();
            let stream = reflector(
                writer,
                watcher(Api::<$kind>::all(ctx.client.clone()), cfg())
                    .modify(|o| o.managed_fields_mut().clear()),
            );
            tasks.spawn(drain(
                stream.default_backoff(),
                $what,
                Some(wake.clone()),
                None,
            ));
            store
        }};
    }
    let intents = typed!(SecurityIntent, "securityintents");
    let bindings = typed!(SecurityIntentBinding, "securityintentbindings");
    let cluster_bindings = typed!(
        ClusterSecurityIntentBinding,
        "clustersecurityintentbindings"
    );
    let policies = typed!(IntentPolicy, "intentpolicies");
    // Labels are all that is read of a namespace.
    let (namespaces, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(ctx.client.clone()),
            cfg(),
        )
        .modify(|n| {
            n.managed_fields_mut().clear();
            n.annotations_mut().clear();
        }),
    );
    tasks.spawn(drain(
        stream.default_backoff(),
        "namespaces",
        Some(wake.clone()),
        None,
    ));
    // CRDs: metadata only, no cache; an event means "look for engines again".
    let crds = watcher(
        Api::<PartialObjectMeta<CustomResourceDefinition>>::all(ctx.client.clone()),
        cfg(),
    );
    tasks.spawn(drain(
        crds.default_backoff(),
        "crds",
        Some(wake),
        Some(crds_changed),
    ));
    Caches {
        intents,
        bindings,
        cluster_bindings,
        policies,
        namespaces,
        engines,
    }
}

async fn drain<K>(
    stream: impl futures::Stream<Item = std::result::Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
    wake: Option<Arc<Notify>>,
    flag: Option<Arc<AtomicBool>>,
) {
    let mut stream = std::pin::pin!(stream);
    let mut listed = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(e) => {
                // A CRD watch's first list is what discovery already saw.
                if let Some(f) = &flag {
                    match e {
                        watcher::Event::Init | watcher::Event::InitApply(_) if !listed => {}
                        watcher::Event::InitDone => listed = true,
                        _ => f.store(true, Ordering::SeqCst),
                    }
                }
                if let Some(w) = &wake {
                    w.notify_one();
                }
            }
            Err(e) => {
                tracing::debug!(controller = NAME, watch = what, error = %e, "watch error; retrying")
            }
        }
    }
}

async fn run(ctx: Arc<Context>) -> Result<()> {
    // A follower is ready without watching (as the other controllers).
    ctx.readiness.register(NAME);
    ctx.readiness.set(NAME, true);
    let mut leader = ctx.leader.clone();
    let mut shutdown = ctx.shutdown.clone();
    let mut state = State::new(options(&ctx));
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let wake = Arc::new(Notify::new());
        let crds_changed = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let engines = super::discover_engines(&ctx.client, &Engine::ALL).await;
        tracing::info!(
            controller = NAME,
            engines = %engines.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>().join(","),
            "engines served"
        );
        let caches = watch(
            &ctx,
            wake.clone(),
            crds_changed.clone(),
            &mut tasks,
            engines.clone(),
        );
        tokio::select! {
            () = caches.wait_until_ready() => {}
            () = ctx.lost_or_stopped() => { tasks.abort_all(); continue; }
        }
        tracing::info!(controller = NAME, "leading: caches synced");
        let mut backoff = MIN_BACKOFF;
        let mut resynced = false;
        loop {
            if *shutdown.borrow() || !*leader.borrow_and_update() {
                break;
            }
            let started = std::time::Instant::now();
            // An engine's CRD installed or removed since the watches
            // started: start them again with the engines served now.
            if (resynced || crds_changed.swap(false, Ordering::SeqCst))
                && super::discover_engines(&ctx.client, &Engine::ALL).await != engines
            {
                tracing::info!(
                    controller = NAME,
                    "the engines served changed: watching again"
                );
                break;
            }
            resynced = false;
            let snapshot = caches.snapshot();
            let delay = match pass(&ctx, &mut state, &snapshot).await {
                Ok(p) => {
                    ctx.metrics
                        .reconciled(NAME, started.elapsed().as_secs_f64());
                    if p.policy_writes + p.intent_policy_writes + p.status_writes > 0 {
                        tracing::debug!(
                            controller = NAME,
                            policy_writes = p.policy_writes,
                            intent_policy_writes = p.intent_policy_writes,
                            status_writes = p.status_writes,
                            "pass done"
                        );
                    }
                    backoff = MIN_BACKOFF;
                    ctx.config.resync
                }
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %crate::error::chain(&e), "pass failed; retrying");
                    ctx.metrics.error(NAME, &e.metric_label());
                    let now = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    now
                }
            };
            tokio::select! {
                () = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                () = tokio::time::sleep(delay) => resynced = true,
                () = ctx.lost_or_stopped() => {}
            }
        }
        tasks.abort_all();
    }
}
