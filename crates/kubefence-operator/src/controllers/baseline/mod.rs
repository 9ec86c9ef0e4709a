//! The baseline controller: keeps one NetworkPolicy per opted-in workload
//! exactly as the baseline builder (`kubefence_core::baseline::build`, used
//! unchanged) says.
//!
//! ```text
//!  watches ─▶ Change ─▶ State (+ reverse index) ─▶ affected workloads / policies
//!                                                        │
//!     build(whole snapshot) ─▶ desired, for the affected keys only
//!                                                        │
//!     diff against the observed policy ─▶ SSA / delete (leader only) ─▶ events
//! ```
//!
//! - Which workloads to look at comes from the index ([`state`]): a Service
//!   or ConfigMap change reaches only the workloads that reference it or
//!   that it selects (and their peers); an event on an owned policy reaches
//!   that policy. A full pass runs once the watches have listed everything,
//!   on becoming leader, and every `resync` as a safety net.
//! - The builder reads the whole snapshot (the policy of B depends on every
//!   A that references it), but only the affected keys are diffed, written,
//!   and reported.
//! - Writes happen only when the desired policy differs from the observed
//!   one ([`diff`]), only on policies labelled
//!   `app.kubernetes.io/managed-by: kubefence` + `kubefence.dev/source:
//!   baseline`, and only while this replica is the leader.
//! - A workload that a kubefence quarantine NetworkPolicy isolates (its
//!   `kubefence.dev/target` annotation, seen by the policy watch) has its
//!   baseline policy withheld: deleted when it exists, not created, and
//!   restored when the quarantine policy goes. Policies are additive, so
//!   while it existed it would keep the workload's DNS and peers open and
//!   the quarantine could never be effective.
//! - A failed write is retried with exponential backoff (1 s doubling to
//!   5 min) by re-planning that key from the then-current state, so a retry
//!   never writes something stale.

pub mod diff;
pub mod state;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kubefence_core::baseline::{self, GeneratedPolicy, Scope};
use kubefence_k8s::convert::LiveObject;
use tokio::time::Instant;

use crate::cluster;
use crate::context::{Context, OPT_IN_LABEL, OPT_IN_VALUE};
use crate::error::{Error, Result};
use diff::{Comparable, Plan, plan};
use state::{Kind, ObjKey, ObservedPolicy, State, WorkloadKey, policy_key};

/// The controller's name in metrics and readiness.
pub const NAME: &str = "baseline";

const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Which object a change is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: Kind,
    /// Empty for Namespaces.
    pub namespace: String,
    pub name: String,
}

/// What a change carries.
#[derive(Clone, Debug)]
pub enum Payload {
    Live(Box<LiveObject>),
    Policy(Box<ObservedPolicy>),
    /// Could not be read: logged and ignored (the last good version stays).
    Invalid(String),
}

/// One watch event, converted.
#[derive(Clone, Debug)]
pub enum Change {
    /// A (re)list of `Kind` starts.
    Init(Kind),
    Apply(ObjectRef, Payload),
    Delete(ObjectRef),
    /// The (re)list is complete: what was not listed is gone.
    InitDone(Kind),
}

/// What one reconcile pass did (tests and the benchmark read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub full: bool,
    /// Policy keys diffed.
    pub examined: usize,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
    pub conflicts: usize,
}

impl Pass {
    pub fn writes(&self) -> usize {
        self.created + self.updated + self.deleted
    }
}

#[derive(Clone, Debug)]
struct Retry {
    attempts: u32,
    due: Instant,
}

/// The controller's state between passes.
pub struct Controller {
    ctx: Arc<Context>,
    state: State,
    /// Kinds listed at least once.
    synced: BTreeSet<Kind>,
    /// Kinds being relisted, with the keys seen so far.
    relisting: HashMap<Kind, BTreeSet<(String, String)>>,
    dirty: BTreeSet<WorkloadKey>,
    dirty_policies: BTreeSet<ObjKey>,
    full: bool,
    retries: BTreeMap<ObjKey, Retry>,
    /// Policy name → workload, for events about removed policies.
    owners: HashMap<ObjKey, WorkloadKey>,
    /// Unresolved references last reported per workload (report changes only).
    unresolved: HashMap<WorkloadKey, BTreeSet<String>>,
    /// Names held by a foreign policy, already reported.
    conflicts: BTreeSet<ObjKey>,
    /// The desired policy of every in-scope workload as of the last build
    /// that looked at it (see `reconcile`), as compact JSON (a typed
    /// NetworkPolicy takes several times the memory).
    desired: HashMap<ObjKey, String>,
    /// Events of the current pass, published together at its end.
    outbox: Vec<(ObjectReference, bool, &'static str, String)>,
}

enum Write {
    /// Nothing by that name in the cache: create, never take over.
    Create(Box<NetworkPolicy>),
    /// Ours, seen at this resourceVersion: apply on exactly that version.
    Apply(Box<NetworkPolicy>, Option<String>),
    Delete(Option<String>),
}

impl Controller {
    pub fn new(ctx: Arc<Context>) -> Result<Self> {
        let state = State::new(&ctx.config.baseline)?;
        Ok(Self {
            ctx,
            state,
            synced: BTreeSet::new(),
            relisting: HashMap::new(),
            dirty: BTreeSet::new(),
            dirty_policies: BTreeSet::new(),
            full: false,
            retries: BTreeMap::new(),
            owners: HashMap::new(),
            unresolved: HashMap::new(),
            conflicts: BTreeSet::new(),
            desired: HashMap::new(),
            outbox: Vec::new(),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every watched kind has been listed.
    pub fn synced(&self) -> bool {
        Kind::all().iter().all(|k| self.synced.contains(k))
    }

    /// Asks for a full pass (every desired and every owned policy).
    pub fn request_full(&mut self) {
        self.full = true;
    }

    /// The workloads queued for the next pass (tests read this to check the
    /// index).
    pub fn pending(&self) -> &BTreeSet<WorkloadKey> {
        &self.dirty
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.due).min()
    }

    // === changes ===

    pub fn handle(&mut self, change: Change) {
        match change {
            Change::Init(kind) => {
                self.relisting.insert(kind, BTreeSet::new());
            }
            Change::Apply(r, payload) => {
                if let Some(seen) = self.relisting.get_mut(&r.kind) {
                    seen.insert((r.namespace.clone(), r.name.clone()));
                }
                self.apply(r, payload);
            }
            Change::Delete(r) => self.remove(&r),
            Change::InitDone(kind) => {
                if let Some(seen) = self.relisting.remove(&kind) {
                    for (namespace, name) in self.state.keys_of(kind) {
                        if !seen.contains(&(namespace.clone(), name.clone())) {
                            self.remove(&ObjectRef {
                                kind,
                                namespace,
                                name,
                            });
                        }
                    }
                }
                let was = self.synced();
                self.synced.insert(kind);
                if !was && self.synced() {
                    self.full = true;
                }
            }
        }
    }

    fn apply(&mut self, r: ObjectRef, payload: Payload) {
        let key = (r.namespace.clone(), r.name.clone());
        let live = match (r.kind, payload) {
            (_, Payload::Invalid(message)) => {
                tracing::warn!(kind = r.kind.as_str(), namespace = %r.namespace, name = %r.name, %message, "object ignored");
                self.ctx.metrics.error(NAME, "invalid_object");
                return;
            }
            (Kind::NetworkPolicy, Payload::Policy(p)) => {
                let quarantine_changed = self.state.set_policy(key.clone(), Some(*p));
                self.dirty.extend(quarantine_changed);
                self.dirty_policies.insert(key);
                return;
            }
            (_, Payload::Live(live)) if self.state.holds(&key, &live) => return,
            (kind, Payload::Live(live)) => (kind, *live),
            (kind, Payload::Policy(_)) => {
                tracing::warn!(kind = kind.as_str(), namespace = %r.namespace, name = %r.name, "unexpected object for its kind; ignored");
                return;
            }
        };
        let affected = match live {
            (Kind::Workload(k), LiveObject::Workload(w)) if w.kind == k => {
                let wk = (r.namespace, k, r.name);
                self.owners.insert(policy_key(&wk), wk.clone());
                self.state.set_workload(wk, Some(w))
            }
            // Part of another workload now (adopted): not one of its own.
            (Kind::Workload(_), LiveObject::Owned) => {
                self.remove(&r);
                return;
            }
            (Kind::Service, LiveObject::Service(s)) => self.state.set_service(key, Some(s)),
            (Kind::Ingress, LiveObject::Ingress(i)) => self.state.set_ingress(key, Some(i)),
            (Kind::ConfigMap, LiveObject::ConfigMap(c)) => self.state.set_config_map(key, Some(c)),
            (Kind::Namespace, LiveObject::Namespace(n)) => {
                self.state.set_namespace(r.name, Some(n))
            }
            (kind, _) => {
                tracing::warn!(kind = kind.as_str(), namespace = %r.namespace, name = %r.name, "unexpected object for its kind; ignored");
                return;
            }
        };
        self.dirty.extend(affected);
    }

    fn remove(&mut self, r: &ObjectRef) {
        let key = (r.namespace.clone(), r.name.clone());
        let affected = match r.kind {
            Kind::Workload(k) => {
                let wk = (r.namespace.clone(), k, r.name.clone());
                if self.state.workload(&wk).is_none() {
                    return;
                }
                self.owners.remove(&policy_key(&wk));
                self.state.set_workload(wk, None)
            }
            Kind::Service => self.state.set_service(key, None),
            Kind::Ingress => self.state.set_ingress(key, None),
            Kind::ConfigMap => self.state.set_config_map(key, None),
            Kind::Namespace => self.state.set_namespace(r.name.clone(), None),
            Kind::NetworkPolicy => {
                let quarantine_changed = self.state.set_policy(key.clone(), None);
                self.dirty.extend(quarantine_changed);
                self.dirty_policies.insert(key);
                return;
            }
        };
        self.dirty.extend(affected);
    }

    // === reconcile ===

    /// The namespaces that get policies: labelled `kubefence.dev/baseline:
    /// enabled` (or all with `--all-namespaces`), protected ones never
    /// unless the config leaves them out of `protectedNamespaces`.
    fn scope(&self) -> Scope {
        let cfg = &self.ctx.config;
        if cfg.all_namespaces {
            return Scope { namespaces: None };
        }
        Scope {
            namespaces: Some(
                self.state
                    .namespaces()
                    .filter(|n| {
                        n.labels.get(OPT_IN_LABEL).map(String::as_str) == Some(OPT_IN_VALUE)
                    })
                    .filter(|n| !cfg.baseline.protected_namespaces.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect(),
            ),
        }
    }

    /// One pass over what changed (or everything, when a full pass is due).
    /// Does nothing until every watch has listed once; writes nothing unless
    /// leader.
    pub async fn reconcile(&mut self) -> Pass {
        if !self.synced() {
            return Pass::default();
        }
        if !self.ctx.is_leader() {
            // Followers keep their caches; the pass runs on becoming leader.
            self.dirty.clear();
            self.dirty_policies.clear();
            self.retries.clear();
            self.full = false;
            return Pass::default();
        }
        let now = Instant::now();
        let due: Vec<ObjKey> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let full = std::mem::take(&mut self.full);
        let dirty = std::mem::take(&mut self.dirty);
        let mut keys: BTreeSet<ObjKey> = std::mem::take(&mut self.dirty_policies);
        keys.extend(due);
        if !full && dirty.is_empty() && keys.is_empty() {
            return Pass::default();
        }
        let started = std::time::Instant::now();
        let mut pass = Pass {
            full,
            ..Pass::default()
        };

        // Desired policies change only when a watched object changes, and
        // then the index has queued the workloads concerned: a pass for
        // policy events alone (our own writes echoed, hand edits, retries)
        // compares against the desired policies of the last build.
        // A full pass builds on the whole snapshot; an incremental one on
        // the neighbourhood of the queued workloads only, and uses only
        // their policies from it.
        let built = if full || !dirty.is_empty() {
            let cluster = if full {
                self.state.cluster()
            } else {
                self.state.neighbourhood(&dirty)
            };
            match baseline::build(&cluster, &self.ctx.config.baseline, &self.scope()) {
                Ok(b) => Some(b),
                Err(e) => {
                    // Checked at startup; cannot change at run time.
                    tracing::error!(error = %e, "baseline config");
                    self.ctx.metrics.error(NAME, "config");
                    return pass;
                }
            }
        } else {
            None
        };
        if full {
            self.desired.clear();
        }
        let generated: HashMap<ObjKey, &GeneratedPolicy> = built
            .iter()
            .flat_map(|b| &b.policies)
            .map(|g| ((g.policy.namespace.clone(), g.policy.name.clone()), g))
            .collect();
        if full {
            keys.extend(generated.keys().cloned());
            keys.extend(
                self.state
                    .policies()
                    .filter(|(_, p)| p.is_baseline())
                    .map(|(k, _)| k.clone()),
            );
        }
        let dirty_keys: HashSet<ObjKey> = dirty.iter().map(policy_key).collect();
        if !full {
            keys.extend(dirty_keys.iter().cloned());
        }

        let withheld: HashSet<ObjKey> = self
            .state
            .quarantined()
            .into_iter()
            .map(policy_key)
            .collect();
        let mut writes: Vec<(ObjKey, Write)> = Vec::new();
        for key in &keys {
            pass.examined += 1;
            let fresh = built.is_some() && (full || dirty_keys.contains(key));
            let fresh_policy = if fresh {
                let rendered = generated
                    .get(key)
                    .map(|g| kubefence_k8s::render::generated_policy(g));
                if rendered.is_none() {
                    self.desired.remove(key);
                }
                rendered
            } else {
                None
            };
            let cached = if fresh {
                None
            } else {
                self.desired
                    .get(key)
                    .and_then(|json| serde_json::from_str::<NetworkPolicy>(json).ok())
            };
            let desired = if fresh {
                fresh_policy.as_ref()
            } else {
                cached.as_ref()
            };
            // Withheld while a quarantine isolates its workload (policies
            // are additive: it would keep the workload's paths open).
            let desired = desired.filter(|_| !withheld.contains(key));
            let comparable = desired.map(Comparable::of);
            let planned = plan(comparable.as_ref(), self.state.policy(key));
            // Cloned only when it is written.
            let rendered = matches!(planned, Plan::Create | Plan::Update)
                .then(|| desired.cloned())
                .flatten();
            if let Some(json) = fresh_policy
                .as_ref()
                .and_then(|np| serde_json::to_string(np).ok())
            {
                self.desired.insert(key.clone(), json);
            }
            match (planned, rendered) {
                (Plan::Keep, _) => {
                    self.retries.remove(key);
                }
                (Plan::Conflict, _) => {
                    self.retries.remove(key);
                    pass.conflicts += 1;
                    if self.conflicts.insert(key.clone()) {
                        tracing::warn!(namespace = %key.0, name = %key.1, "a policy kubefence does not manage has this name; left alone");
                        self.event(
                            key,
                            true,
                            "PolicyNameTaken",
                            format!(
                                "NetworkPolicy {} exists and was not written by the kubefence operator (no kubefence labels, or a copy applied by kubectl or GitOps): left alone, no baseline policy applied",
                                key.1
                            ),
                        );
                    }
                }
                (Plan::Create, Some(np)) => writes.push((key.clone(), Write::Create(Box::new(np)))),
                (Plan::Update, Some(np)) => {
                    let seen = self
                        .state
                        .policy(key)
                        .and_then(|p| p.resource_version.clone());
                    writes.push((key.clone(), Write::Apply(Box::new(np), seen)))
                }
                (Plan::Delete { uid }, _) => writes.push((key.clone(), Write::Delete(uid))),
                (Plan::Create | Plan::Update, None) => {}
            }
            if !matches!(self.state.policy(key), Some(p) if !p.is_baseline()) {
                self.conflicts.remove(key);
            }
        }

        let ctx = self.ctx.clone();
        let results: Vec<(ObjKey, bool, Result<Option<NetworkPolicy>>)> =
            futures::stream::iter(writes)
                .map(|(key, w)| {
                    let ctx = ctx.clone();
                    async move {
                        match w {
                            Write::Create(np) => {
                                let r = cluster::create_network_policy(&ctx, &np).await.map(Some);
                                (key, true, r)
                            }
                            Write::Apply(np, seen) => {
                                let r = cluster::apply_network_policy(&ctx, &np, seen)
                                    .await
                                    .map(Some);
                                (key, false, r)
                            }
                            Write::Delete(uid) => {
                                let r = cluster::delete_network_policy(&ctx, &key.0, &key.1, uid)
                                    .await
                                    .map(|()| None);
                                (key, false, r)
                            }
                        }
                    }
                })
                .buffer_unordered(self.ctx.config.write_concurrency.max(1))
                .collect()
                .await;

        let mut results = results;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, created, result) in results {
            match result {
                Ok(Some(stored)) => {
                    self.retries.remove(&key);
                    self.state
                        .set_policy(key.clone(), Some(watch::observed_policy(&stored)));
                    let (reason, verb) = if created {
                        pass.created += 1;
                        ("PolicyCreated", "created")
                    } else {
                        pass.updated += 1;
                        ("PolicyUpdated", "updated")
                    };
                    tracing::info!(namespace = %key.0, name = %key.1, verb, "baseline policy");
                    self.event(
                        &key,
                        false,
                        reason,
                        format!("baseline NetworkPolicy {} {verb}", key.1),
                    );
                }
                Ok(None) => {
                    self.retries.remove(&key);
                    self.state.set_policy(key.clone(), None);
                    pass.deleted += 1;
                    tracing::info!(namespace = %key.0, name = %key.1, "baseline policy deleted");
                    self.event(
                        &key,
                        false,
                        "PolicyDeleted",
                        format!("baseline NetworkPolicy {} deleted", key.1),
                    );
                }
                Err(e) => {
                    pass.failed += 1;
                    self.ctx.metrics.error(NAME, &e.metric_label());
                    let attempts = self.retries.get(&key).map_or(0, |r| r.attempts) + 1;
                    let delay = RETRY_BASE
                        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
                        .min(RETRY_MAX);
                    tracing::warn!(namespace = %key.0, name = %key.1, error = %e, ?delay, "write failed; will retry");
                    self.retries.insert(
                        key,
                        Retry {
                            attempts,
                            due: Instant::now() + delay,
                        },
                    );
                }
            }
        }

        // Unresolved references of the workloads looked at, when they change.
        let looked_at: Vec<WorkloadKey> = if full {
            self.state.workloads().map(state::workload_key).collect()
        } else {
            dirty.into_iter().collect()
        };
        let Some(built) = built else {
            return self.finish(pass, started).await;
        };
        let mut by_workload: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for u in &built.report.unresolved {
            by_workload
                .entry(u.from.as_str())
                .or_default()
                .insert(format!("{} ({}): {}", u.value, u.via, u.reason));
        }
        let in_scope: BTreeSet<&str> = built.policies.iter().map(|g| g.workload.as_str()).collect();
        for wk in looked_at {
            let Some(w) = self.state.workload(&wk) else {
                self.unresolved.remove(&wk);
                continue;
            };
            let id = w.id();
            let now = if in_scope.contains(id.as_str()) {
                by_workload.remove(id.as_str()).unwrap_or_default()
            } else {
                BTreeSet::new()
            };
            let before = self.unresolved.get(&wk).cloned().unwrap_or_default();
            if now != before {
                if !now.is_empty() {
                    let reference = cluster::workload_reference(w);
                    let note: Vec<String> = now.iter().cloned().collect();
                    self.outbox.push((
                        reference,
                        true,
                        "UnresolvedReference",
                        truncate(note.join("; ")),
                    ));
                }
                if now.is_empty() {
                    self.unresolved.remove(&wk);
                } else {
                    self.unresolved.insert(wk, now);
                }
            }
        }

        self.finish(pass, started).await
    }

    async fn finish(&mut self, pass: Pass, started: std::time::Instant) -> Pass {
        self.flush_events().await;
        let managed = self
            .state
            .policies()
            .filter(|(_, p)| p.is_baseline())
            .count();
        self.ctx.metrics.set_managed(NAME, managed);
        self.ctx
            .metrics
            .reconciled(NAME, started.elapsed().as_secs_f64());
        pass
    }

    /// An Event on the workload behind policy `key`, if it still exists.
    fn event(&mut self, key: &ObjKey, warning: bool, reason: &'static str, note: String) {
        let Some(w) = self.owners.get(key).and_then(|wk| self.state.workload(wk)) else {
            return;
        };
        let reference = cluster::workload_reference(w);
        self.outbox.push((reference, warning, reason, note));
    }

    /// Publishes the queued events, as many at once as writes.
    async fn flush_events(&mut self) {
        let events = std::mem::take(&mut self.outbox);
        let ctx = self.ctx.clone();
        futures::stream::iter(events)
            .for_each_concurrent(
                self.ctx.config.write_concurrency.max(1),
                |(r, warning, reason, note)| {
                    let ctx = ctx.clone();
                    async move { cluster::publish_event(&ctx, &r, warning, reason, note).await }
                },
            )
            .await;
    }
}

/// Event notes are at most 1 kB.
fn truncate(mut s: String) -> String {
    if s.len() > 1000 {
        let mut cut = 997;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Runs the controller on `changes` until shutdown.
pub async fn run(ctx: Arc<Context>, changes: impl Stream<Item = Change> + Send) -> Result<()> {
    let mut controller = Controller::new(ctx.clone())?;
    ctx.readiness.register(NAME);
    let mut changes = pin!(changes);
    let mut leader = ctx.leader.clone();
    let mut leader_gone = false;
    let mut shutdown = ctx.shutdown.clone();
    let mut resync =
        tokio::time::interval_at(Instant::now() + ctx.config.resync, ctx.config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_retry = controller.next_retry();
        tokio::select! {
            biased;
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    tracing::info!(controller = NAME, "shutting down");
                    return Ok(());
                }
            }
            r = leader.changed(), if !leader_gone => match r {
                Ok(()) => {
                    let is_leader = *leader.borrow_and_update();
                    tracing::info!(controller = NAME, is_leader, "leadership changed");
                    if is_leader {
                        controller.request_full();
                    }
                }
                Err(_) => leader_gone = true,
            },
            change = changes.next() => match change {
                Some(change) => {
                    controller.handle(change);
                    // Take everything already queued: one pass per burst.
                    while let Some(Some(change)) = changes.next().now_or_never() {
                        controller.handle(change);
                    }
                }
                None => return Err(Error::ControllerStopped(NAME)),
            },
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {}
            _ = resync.tick() => controller.request_full(),
        }
        if controller.synced() {
            controller.reconcile().await;
            ctx.readiness.set(NAME, true);
        }
    }
}

/// The registration of this controller (see [`crate::controllers`]).
pub fn start(ctx: Arc<Context>) -> BoxFuture<'static, Result<()>> {
    async move {
        let changes = watch::cluster_changes(&ctx.client);
        run(ctx, changes).await
    }
    .boxed()
}

#[cfg(test)]
mod tests;
