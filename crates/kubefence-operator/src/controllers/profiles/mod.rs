//! The profiles controller: one NetworkPolicy per IsolationProfile
//! (`kubefence.dev/v1alpha1`), owned by it, kept as the profile says.
//!
//! ```text
//!  watches (reflector caches): IsolationProfiles ─┐ wake
//!                              NetworkPolicies ───┤ wake
//!                              Pods (metadata) ───┘ no wake: counted only
//!        └─▶ reconcile::pass ─▶ create / apply / delete (cluster.rs) ─▶ status
//! ```
//!
//! It compares with the cached copy, so a pass over an unchanged cluster
//! sends no request at all (a timed resync adds only the discovery GETs
//! that notice agent-sandbox or an engine being installed); pods never
//! start a pass and are never written,
//! so starting thousands of sandboxes costs nothing. A policy with the
//! profile's name that is not the profile's (labels and ownerReference) is
//! never taken over: the profile's Ready condition says PolicyNameTaken.
//! Engines other than networkpolicy: the profile's NetworkPolicy, and its
//! guardrails as that engine's deny rules (`reconcile`), when the API
//! server serves the engine's kind (discovery, as for agent-sandbox);
//! otherwise the NetworkPolicy alone and Ready=False, EngineNotInstalled.
//! kubefence's own guardrail objects are watched (by their labels) so a
//! hand edit is undone and one no profile wants any more is removed.
//!
//! agent-sandbox: when the API server serves `SandboxTemplate`
//! (extensions.agents.x-k8s.io, found by discovery when this replica starts
//! leading and at every resync until it is), the controller also watches
//! templates, claims, warm pools (whole) and Sandboxes (metadata), gives
//! each template its default profile (`--sandbox-template-defaults`, on by
//! default; the template annotation `kubefence.dev/isolation: disabled`
//! opts one out) and checks coverage (see `reconcile`).
//!
//! It runs only while this replica leads, when `OperatorConfig::profiles`
//! is set (`kubefence operator --profiles`), with the opt-in
//! `deploy/components/profiles`.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kubefence_core::naming;
use kubefence_core::profile::ProfileConfig;
use kubefence_core::ruleset::Engine;
use kubefence_k8s::crd::profile::IsolationProfile;
use kubefence_k8s::sandbox;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use reconcile::{
    GuardrailObjects, Pass, REASON_ALL_COVERED, REASON_DISABLED, REASON_ENGINE_NOT_INSTALLED,
    REASON_IN_SYNC, REASON_INVALID, REASON_NAME_TAKEN, REASON_NONE_REOPENED, REASON_REOPENED,
    REASON_UNCOVERED, REASON_UNSUPPORTED, SandboxObjects, Snapshot, State, desired_policy, is_ours,
    pass,
};

use crate::context::Context;
use crate::error::Result;

pub const NAME: &str = "profiles";

/// Events closer than this make one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn start(ctx: Arc<Context>) -> BoxFuture<'static, Result<()>> {
    Box::pin(run(ctx))
}

/// The profile config the operator's config implies: the cluster DNS of
/// the baseline config, the cluster's CIDRs.
pub fn config(ctx: &Context) -> ProfileConfig {
    let mut cfg = ProfileConfig {
        cluster_cidrs: ctx.config.profile_cluster_cidrs.clone(),
        ..ProfileConfig::default()
    };
    if let (Ok(ns), Ok(pods)) = (
        ctx.config
            .baseline
            .dns
            .peer
            .namespace_selector
            .to_selector(),
        ctx.config.baseline.dns.peer.pod_selector.to_selector(),
    ) {
        cfg.dns_namespaces = ns;
        cfg.dns_pods = pods;
    }
    cfg
}

/// The caches a pass reads.
#[derive(Clone)]
pub struct Caches {
    pub profiles: Store<IsolationProfile>,
    pub policies: Store<NetworkPolicy>,
    pub pods: Store<PartialObjectMeta<Pod>>,
    /// agent-sandbox's objects, when its CRDs are served.
    pub sandbox: Option<SandboxCaches>,
    pub template_defaults: bool,
    /// kubefence's guardrail objects, per served engine.
    pub guardrails: Vec<(Engine, ApiResource, Store<DynamicObject>)>,
}

#[derive(Clone)]
pub struct SandboxCaches {
    pub apis: SandboxApis,
    pub templates: Store<DynamicObject>,
    pub sandboxes: Option<Store<DynamicObject>>,
    pub claims: Option<Store<DynamicObject>>,
    pub pools: Option<Store<DynamicObject>>,
}

impl Caches {
    pub fn snapshot(&self) -> Snapshot {
        let state =
            |s: &Option<Store<DynamicObject>>| s.as_ref().map(Store::state).unwrap_or_default();
        Snapshot {
            guardrails: GuardrailObjects {
                served: self
                    .guardrails
                    .iter()
                    .map(|(e, r, _)| (*e, r.clone()))
                    .collect(),
                objects: self
                    .guardrails
                    .iter()
                    .flat_map(|(e, _, s)| s.state().into_iter().map(move |o| (*e, o)))
                    .collect(),
            },
            profiles: self.profiles.state(),
            policies: self.policies.state(),
            pods: self.pods.state(),
            sandbox: match &self.sandbox {
                None => SandboxObjects::default(),
                Some(c) => SandboxObjects {
                    template_api_version: Some(c.apis.templates.api_version.clone()),
                    template_defaults: self.template_defaults,
                    templates: c.templates.state(),
                    sandboxes: state(&c.sandboxes),
                    claims: state(&c.claims),
                    pools: state(&c.pools),
                },
            },
        }
    }

    async fn wait_until_ready(&self) {
        let _ = self.profiles.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        for (_, _, s) in &self.guardrails {
            let _ = s.wait_until_ready().await;
        }
        if let Some(c) = &self.sandbox {
            let _ = c.templates.wait_until_ready().await;
            for s in [&c.sandboxes, &c.claims, &c.pools].into_iter().flatten() {
                let _ = s.wait_until_ready().await;
            }
        }
    }
}

/// agent-sandbox's resources as this API server serves them (each at its
/// preferred version).
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxApis {
    pub templates: ApiResource,
    pub sandboxes: Option<ApiResource>,
    pub claims: Option<ApiResource>,
    pub pools: Option<ApiResource>,
}

/// Finds agent-sandbox's resources by discovery; `None` when the API
/// server does not serve SandboxTemplates (or discovery fails: tried again
/// at the next resync).
pub async fn discover_sandbox(client: &kube::Client) -> Option<SandboxApis> {
    let extensions = match kube::discovery::group(client, sandbox::EXTENSIONS_GROUP).await {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!(controller = NAME, error = %e, "agent-sandbox's API group is not served");
            return None;
        }
    };
    let kind = |g: &kube::discovery::ApiGroup, k: &str| g.recommended_kind(k).map(|(r, _)| r);
    let templates = kind(&extensions, sandbox::TEMPLATE_KIND)?;
    let sandboxes = kube::discovery::group(client, sandbox::SANDBOX_GROUP)
        .await
        .ok()
        .and_then(|g| kind(&g, sandbox::SANDBOX_KIND));
    Some(SandboxApis {
        templates,
        sandboxes,
        claims: kind(&extensions, sandbox::CLAIM_KIND),
        pools: kind(&extensions, sandbox::WARM_POOL_KIND),
    })
}

/// The engines a profile's guardrails can be written for, as this API
/// server serves them (each at the version kubefence writes).
pub async fn discover_engines(client: &kube::Client) -> Vec<(Engine, ApiResource)> {
    super::discover_engines(client, &GUARDRAIL_ENGINES).await
}

const GUARDRAIL_ENGINES: [Engine; 3] = [
    Engine::Cilium,
    Engine::ClusterNetworkPolicy,
    Engine::AdminNetworkPolicy,
];

/// Only kubefence's profile objects: `managed-by=kubefence,source=profile`.
fn guardrail_labels() -> String {
    format!(
        "{}={},{}={}",
        naming::MANAGED_BY_LABEL,
        naming::MANAGED_BY_VALUE,
        naming::SOURCE_LABEL,
        naming::Source::Profile.as_str()
    )
}

/// A watch of `resource` into a cache of its own; `metadata_only` drops
/// everything but the metadata (Sandboxes: only their owners and labels
/// are read); `labels` limits it to objects with those labels.
fn watch_dynamic(
    ctx: &Context,
    resource: &ApiResource,
    metadata_only: bool,
    wake: &Arc<Notify>,
    tasks: &mut JoinSet<()>,
    what: &'static str,
    labels: Option<&str>,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(ctx.client.clone(), resource);
    let mut config = watcher::Config::default().any_semantic();
    if let Some(l) = labels {
        config = config.labels(l);
    }
    let stream = reflector(
        writer,
        watcher(api, config).modify(move |o| {
            o.managed_fields_mut().clear();
            if metadata_only {
                o.data = serde_json::Value::Null;
                o.annotations_mut().clear();
            }
        }),
    );
    tasks.spawn(drain(stream.default_backoff(), what, Some(wake.clone())));
    store
}

/// Starts the watches into `tasks`: profiles, policies and pods, and
/// agent-sandbox's objects when `sandbox` says they are served. Every
/// event but a pod's notifies `wake`.
pub fn watch(
    ctx: &Context,
    wake: Arc<Notify>,
    tasks: &mut JoinSet<()>,
    sandbox: Option<SandboxApis>,
    engines: Vec<(Engine, ApiResource)>,
) -> Caches {
    let sandbox = sandbox.map(|apis| SandboxCaches {
        templates: watch_dynamic(
            ctx,
            &apis.templates,
            false,
            &wake,
            tasks,
            "sandboxtemplates",
            None,
        ),
        sandboxes: apis
            .sandboxes
            .as_ref()
            .map(|r| watch_dynamic(ctx, r, true, &wake, tasks, "sandboxes", None)),
        claims: apis
            .claims
            .as_ref()
            .map(|r| watch_dynamic(ctx, r, false, &wake, tasks, "sandboxclaims", None)),
        pools: apis
            .pools
            .as_ref()
            .map(|r| watch_dynamic(ctx, r, false, &wake, tasks, "sandboxwarmpools", None)),
        apis,
    });
    let labels = guardrail_labels();
    let guardrails = engines
        .into_iter()
        .map(|(engine, resource)| {
            let store = watch_dynamic(
                ctx,
                &resource,
                false,
                &wake,
                tasks,
                "guardrails",
                Some(&labels),
            );
            (engine, resource, store)
        })
        .collect();
    let cfg = || watcher::Config::default().any_semantic();
    let (profiles, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(Api::<IsolationProfile>::all(ctx.client.clone()), cfg()),
    );
    tasks.spawn(drain(
        stream.default_backoff(),
        "isolationprofiles",
        Some(wake.clone()),
    ));
    let (policies, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(Api::<NetworkPolicy>::all(ctx.client.clone()), cfg())
            .modify(|np| np.managed_fields_mut().clear()),
    );
    tasks.spawn(drain(
        stream.default_backoff(),
        "networkpolicies",
        Some(wake),
    ));
    let (pods, writer) = reflector::store();
    // Labels are all that is read of a pod: metadata only, managed fields
    // and annotations dropped, so 50,000 pods stay small.
    let stream = reflector(
        writer,
        watcher(
            Api::<PartialObjectMeta<Pod>>::all(ctx.client.clone()),
            cfg(),
        )
        .modify(|p| {
            p.managed_fields_mut().clear();
            p.annotations_mut().clear();
        }),
    );
    tasks.spawn(drain(stream.default_backoff(), "pods", None));
    Caches {
        profiles,
        policies,
        pods,
        sandbox,
        template_defaults: ctx.config.sandbox_template_defaults,
        guardrails,
    }
}

use kube::runtime::reflector::reflector;

async fn drain<K>(
    stream: impl futures::Stream<Item = std::result::Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
    wake: Option<Arc<Notify>>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => {
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
    let mut state = State::new(config(&ctx));
    // A pass writes only while leading (cluster.rs refuses otherwise).
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
        let mut tasks = JoinSet::new();
        let sandbox_apis = discover_sandbox(&ctx.client).await;
        if let Some(apis) = &sandbox_apis {
            tracing::info!(controller = NAME, templates = %apis.templates.api_version, "agent-sandbox is installed: watching its templates");
        }
        let engines = discover_engines(&ctx.client).await;
        let caches = watch(
            &ctx,
            wake.clone(),
            &mut tasks,
            sandbox_apis.clone(),
            engines.clone(),
        );
        let ready = caches.wait_until_ready();
        tokio::select! {
            () = ready => {}
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
            // agent-sandbox installed (or removed) since the watches
            // started: start them again with its resources.
            if resynced && discover_sandbox(&ctx.client).await != sandbox_apis {
                tracing::info!(
                    controller = NAME,
                    "agent-sandbox's resources changed: watching again"
                );
                break;
            }
            resynced = false;
            let snapshot = caches.snapshot();
            let delay = match pass(&ctx, &mut state, &snapshot).await {
                Ok(p) => {
                    ctx.metrics
                        .reconciled(NAME, started.elapsed().as_secs_f64());
                    if p.policy_writes + p.status_writes > 0 {
                        tracing::debug!(
                            controller = NAME,
                            policy_writes = p.policy_writes,
                            status_writes = p.status_writes,
                            "pass done"
                        );
                    }
                    backoff = MIN_BACKOFF;
                    ctx.config.resync
                }
                Err(e) => {
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
