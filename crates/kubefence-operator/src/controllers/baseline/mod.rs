//! The baseline controller: keeps one NetworkPolicy per opted-in workload
//! exactly as the baseline builder (`kubefence_core::baseline::build`, used
//! unchanged) says.
//!
//! ```text
//!  watches ─▶ Change ─▶ State (+ reverse index) ─▶ affected workloads / policies
//!                                                        │
//!  plan: take_work ─▶ build ─▶ desired_policies ─▶ plan_keys ─▶ report_unresolved
//!                                                        │
//!     queued writes ─▶ bounded channel ─▶ writer task (SSA / delete, events)
//!                                                        │
//!     outcomes ─▶ settle (cache, retries, events) ◀──────┘
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
//! - The loop that reads the watches never waits for the API server
//!   ([`writer`]): writes are queued (one entry per policy, the newest plan
//!   replacing an older one) and handed to a writer task over a bounded
//!   channel, at most `write_concurrency` at once and one per policy; their
//!   outcomes come back between watch events.
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
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kubefence_core::baseline::{self, Baseline, Scope};
use kubefence_k8s::convert::LiveObject;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster;
use crate::context::{Context, OPT_IN_LABEL, OPT_IN_VALUE};
use crate::error::{Error, Result};
use diff::{Comparable, Plan, plan};
use state::{Kind, ObjKey, ObservedPolicy, State, WorkloadKey, policy_key};
use writer::{Desired, Job, Note, Outcome, Write};

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
    /// The builder ran for the work of the pass (on the whole snapshot or a
    /// neighbourhood); a cached policy rendered again to undo a hand edit
    /// or delete does not count.
    pub built: bool,
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
    /// What the desired policy of every in-scope workload reads as (the
    /// last build that looked at it made it), to compare with: not the
    /// object itself, which is rendered again from a build of its
    /// neighbourhood on the rare occasion it must be written without a
    /// change to what it depends on (a hand edit or delete to undo). The
    /// objects of 10,000 policies would take tens of MiB.
    desired: HashMap<ObjKey, Comparable>,
    /// The state generation of the last full build ([`State::generation`]):
    /// while it is still the state's, a full pass compares against the
    /// desired cache instead of building again (the builder is pure, and
    /// every build since then was of an unchanged state too).
    built_at: Option<u64>,
    /// Events waiting to be published (at most [`OUTBOX_MAX`]).
    outbox: VecDeque<Note>,
    /// Planned writes not yet handed to the writer: one per policy name,
    /// a newer plan replacing an older one, so at most one per policy.
    queued: BTreeMap<ObjKey, Write>,
    /// Policies with a write in flight, and whether a watch event for the
    /// policy arrived since it was sent.
    in_flight: BTreeMap<ObjKey, bool>,
    /// ConfigMaps being fetched, and those waiting to be fetched again.
    fetching: BTreeSet<ObjKey>,
    fetch_retries: BTreeMap<ObjKey, Retry>,
}

/// What one pass looks at.
struct Work {
    full: bool,
    /// Workloads whose policy is rebuilt.
    dirty: BTreeSet<WorkloadKey>,
    /// Policy names compared again (events on them, retries due).
    keys: BTreeSet<ObjKey>,
}

/// What a pass wants of one policy name.
enum Wanted {
    /// No policy (out of scope, opted out, gone).
    Nothing,
    /// Built in this pass and different from the cached one: rendered.
    Fresh(Box<NetworkPolicy>),
    /// As in the desired cache (rendered again if it must be written).
    Cached,
}

/// Events waiting for the writer at most (they are best effort).
const OUTBOX_MAX: usize = 4096;

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
            built_at: None,
            outbox: VecDeque::new(),
            queued: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            fetching: BTreeSet::new(),
            fetch_retries: BTreeMap::new(),
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

    /// When the next retry is due: of a write not already queued or in
    /// flight (those are retried by their outcome), or of a fetch.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries
            .iter()
            .filter(|(k, _)| self.retry_waits(k))
            .map(|(_, r)| r)
            .chain(self.fetch_retries.values())
            .map(|r| r.due)
            .min()
    }

    fn retry_waits(&self, key: &ObjKey) -> bool {
        !self.queued.contains_key(key) && !self.in_flight.contains_key(key)
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
                    // Every reader is known now: keep only what they read.
                    self.state.prune_config_maps();
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
                if let Some(watched) = self.in_flight.get_mut(&key) {
                    *watched = true;
                }
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
                if let Some(watched) = self.in_flight.get_mut(&key) {
                    *watched = true;
                }
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

    /// One pass over what changed (or everything, when a full pass is due),
    /// its writes and its events, all awaited: what tests and the benchmark
    /// call. The event loop ([`run`]) plans the same way but hands the
    /// writes to the writer task instead of waiting for them.
    pub async fn reconcile(&mut self) -> Pass {
        self.fetch_config_maps().await;
        let mut pass = self.plan();
        self.write_queued(&mut pass).await;
        self.flush_events().await;
        pass
    }

    /// Plans one pass: takes the work due, builds the desired policies,
    /// compares each with the observed one, queues the writes, and reports
    /// unresolved references. Does nothing until every watch has listed
    /// once; queues nothing unless leader. Never waits for the API server.
    pub fn plan(&mut self) -> Pass {
        let Some(work) = self.take_work() else {
            return Pass::default();
        };
        let started = std::time::Instant::now();
        let mut pass = Pass {
            full: work.full,
            ..Pass::default()
        };
        let Ok(built) = self.build(&work) else {
            return pass;
        };
        pass.built = built.is_some();
        if work.full && built.is_some() {
            self.built_at = Some(self.state.generation());
        }
        let desired = self.desired_policies(&work, built.as_ref());
        self.plan_keys(desired, &mut pass);
        if let Some(built) = &built {
            self.report_unresolved(&work, built);
        }
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

    /// Phase 1: what this pass looks at (the queued workloads and policy
    /// names, the retries due, or everything), or `None` when there is
    /// nothing to do or this replica may not write.
    fn take_work(&mut self) -> Option<Work> {
        if !self.synced() {
            return None;
        }
        if !self.ctx.is_leader() {
            // Followers keep their caches; the pass runs on becoming leader.
            self.dirty.clear();
            self.dirty_policies.clear();
            self.retries.clear();
            self.queued.clear();
            self.full = false;
            return None;
        }
        if !self.state.config_maps_to_fetch().is_empty() {
            // A workload reads ConfigMap data the cache did not keep: the
            // pass waits for it (built without it, the workload's policy
            // and its peers' would lose those references for a while).
            return None;
        }
        let now = Instant::now();
        let due: Vec<ObjKey> = self
            .retries
            .iter()
            .filter(|(k, r)| r.due <= now && self.retry_waits(k))
            .map(|(k, _)| k.clone())
            .collect();
        let full = std::mem::take(&mut self.full);
        let dirty = std::mem::take(&mut self.dirty);
        let mut keys: BTreeSet<ObjKey> = std::mem::take(&mut self.dirty_policies);
        keys.extend(due);
        if !full && dirty.is_empty() && keys.is_empty() {
            return None;
        }
        Some(Work { full, dirty, keys })
    }

    /// Phase 2: the builder's output for the queued workloads. Desired
    /// policies change only when a watched object changes, and then the
    /// index has queued the workloads concerned: a pass for policy events
    /// alone (our own writes echoed, hand edits, retries) builds nothing and
    /// compares against the desired policies of the last build. A full pass
    /// builds on the whole snapshot, unless nothing the builder reads
    /// changed since the last full build (then it would give the same
    /// policies: the resync of an unchanged cluster compares against the
    /// desired cache); an incremental one on the neighbourhood of the
    /// queued workloads only, and uses only their policies from it.
    fn build(&self, work: &Work) -> std::result::Result<Option<Baseline>, ()> {
        if !work.full && work.dirty.is_empty() {
            return Ok(None);
        }
        if work.full && self.built_at == Some(self.state.generation()) {
            return Ok(None);
        }
        let cluster = if work.full {
            self.state.cluster()
        } else {
            self.state.neighbourhood(&work.dirty)
        };
        match baseline::build(&cluster, &self.ctx.config.baseline, &self.scope()) {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                // Checked at startup; cannot change at run time.
                tracing::error!(error = %e, "baseline config");
                self.ctx.metrics.error(NAME, "config");
                Err(())
            }
        }
    }

    /// Phase 3: the desired policy of every key the pass looks at (from
    /// this pass's build for the rebuilt workloads, else from the last
    /// build), with the keys added that a full pass must see (every desired
    /// and every owned policy). Updates the desired cache; a policy is
    /// rendered only when it differs from the cached one.
    fn desired_policies(
        &mut self,
        work: &Work,
        built: Option<&Baseline>,
    ) -> BTreeMap<ObjKey, Wanted> {
        let mut out: BTreeMap<ObjKey, Wanted> = BTreeMap::new();
        match built {
            Some(built) if work.full => {
                let mut previous = std::mem::take(&mut self.desired);
                for g in &built.policies {
                    let key = (g.policy.namespace.clone(), g.policy.name.clone());
                    let wanted = self.refresh_desired(&key, g, previous.remove(&key));
                    out.insert(key, wanted);
                }
            }
            Some(built) => {
                let rebuilt: HashSet<ObjKey> = work.dirty.iter().map(policy_key).collect();
                for g in &built.policies {
                    let key = (g.policy.namespace.clone(), g.policy.name.clone());
                    if rebuilt.contains(&key) {
                        let cached = self.desired.remove(&key);
                        let wanted = self.refresh_desired(&key, g, cached);
                        out.insert(key, wanted);
                    }
                }
                // Rebuilt workloads without a policy now (out of scope, gone).
                for key in rebuilt {
                    if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(key) {
                        self.desired.remove(slot.key());
                        slot.insert(Wanted::Nothing);
                    }
                }
            }
            // Nothing changed since the last full build: as it made them.
            None if work.full => {
                out.extend(self.desired.keys().map(|k| (k.clone(), Wanted::Cached)));
            }
            None => {}
        }
        if work.full {
            let owned: Vec<ObjKey> = self
                .state
                .policies()
                .filter(|(_, p)| p.is_baseline())
                .map(|(k, _)| k.clone())
                .collect();
            for key in owned {
                out.entry(key).or_insert(Wanted::Nothing);
            }
        }
        for key in &work.keys {
            if !out.contains_key(key) {
                let wanted = if self.desired.contains_key(key) {
                    Wanted::Cached
                } else {
                    Wanted::Nothing
                };
                out.insert(key.clone(), wanted);
            }
        }
        out
    }

    /// Puts policy `g` into the desired cache under `key`, rendered only
    /// when it differs from `cached` (what the cache held for the key).
    fn refresh_desired(
        &mut self,
        key: &ObjKey,
        g: &baseline::GeneratedPolicy,
        cached: Option<Comparable>,
    ) -> Wanted {
        let comparable = Comparable::desired(g);
        let unchanged = cached.is_some_and(|c| c == comparable);
        self.desired.insert(key.clone(), comparable);
        if unchanged {
            Wanted::Cached
        } else {
            Wanted::Fresh(Box::new(kubefence_k8s::render::generated_policy(g)))
        }
    }

    /// Phase 4: compares each desired policy with the observed one and
    /// queues the writes (replacing any older plan for the same name); a
    /// cached one to write is rendered again ([`Controller::render_and_queue`]).
    fn plan_keys(&mut self, desired: BTreeMap<ObjKey, Wanted>, pass: &mut Pass) {
        let withheld: HashSet<ObjKey> = self
            .state
            .quarantined()
            .into_iter()
            .map(policy_key)
            .collect();
        let mut unrendered = BTreeSet::new();
        for (key, wanted) in desired {
            pass.examined += 1;
            // Withheld while a quarantine isolates its workload (policies
            // are additive: it would keep the workload's paths open).
            let wanted = match wanted {
                _ if withheld.contains(&key) => Wanted::Nothing,
                Wanted::Cached if !self.desired.contains_key(&key) => Wanted::Nothing,
                w => w,
            };
            let comparable = match wanted {
                Wanted::Nothing => None,
                Wanted::Fresh(_) | Wanted::Cached => self.desired.get(&key),
            };
            let planned = plan(comparable, self.state.policy(&key));
            let np = match (&planned, wanted) {
                (Plan::Create | Plan::Update, Wanted::Cached) => {
                    unrendered.insert(key);
                    continue;
                }
                (_, Wanted::Fresh(np)) => Some(np),
                _ => None,
            };
            self.queue(key, planned, np, pass);
        }
        if !unrendered.is_empty() {
            self.render_and_queue(&unrendered, pass);
        }
    }

    /// Queues what `planned` says for `key` (`np`: the object to write, for
    /// a create or an update).
    fn queue(
        &mut self,
        key: ObjKey,
        planned: Plan,
        np: Option<Box<NetworkPolicy>>,
        pass: &mut Pass,
    ) {
        match (planned, np) {
            (Plan::Keep, _) => {
                self.retries.remove(&key);
                self.queued.remove(&key);
            }
            (Plan::Conflict, _) => {
                self.retries.remove(&key);
                self.queued.remove(&key);
                pass.conflicts += 1;
                if self.conflicts.insert(key.clone()) {
                    tracing::warn!(namespace = %key.0, name = %key.1, "a policy kubefence does not manage has this name; left alone");
                    self.event(
                            &key,
                            true,
                            "PolicyNameTaken",
                            format!(
                                "NetworkPolicy {} exists and was not written by the kubefence operator (no kubefence labels, or a copy applied by kubectl or GitOps): left alone, no baseline policy applied",
                                key.1
                            ),
                        );
                }
            }
            (Plan::Create, Some(np)) => {
                let spec = self.desired.get(&key).and_then(Comparable::spec);
                self.queued
                    .insert(key.clone(), Write::Create(Desired { np, spec }));
            }
            (Plan::Update, Some(np)) => {
                let spec = self.desired.get(&key).and_then(Comparable::spec);
                // The resourceVersion is read when it is sent.
                self.queued
                    .insert(key.clone(), Write::Apply(Desired { np, spec }, None));
            }
            (Plan::Delete { uid }, _) => {
                self.queued.insert(key.clone(), Write::Delete(uid));
            }
            (Plan::Create | Plan::Update, None) => {}
        }
        if !matches!(self.state.policy(&key), Some(p) if !p.is_baseline()) {
            self.conflicts.remove(&key);
        }
    }

    /// Renders the cached desired policies `keys` again, to write them
    /// (their observed side was edited or deleted, nothing they depend on
    /// changed): the builder on the neighbourhood of their workloads gives
    /// what the last build gave (every change since would have queued the
    /// workload), and is compared again before anything is queued.
    fn render_and_queue(&mut self, keys: &BTreeSet<ObjKey>, pass: &mut Pass) {
        let targets: BTreeSet<WorkloadKey> = keys
            .iter()
            .filter_map(|k| self.owners.get(k))
            .cloned()
            .collect();
        let cluster = self.state.neighbourhood(&targets);
        let built = match baseline::build(&cluster, &self.ctx.config.baseline, &self.scope()) {
            Ok(b) => b,
            Err(e) => {
                // Checked at startup; cannot change at run time.
                tracing::error!(error = %e, "baseline config");
                self.ctx.metrics.error(NAME, "config");
                return;
            }
        };
        let mut rendered = 0;
        for g in &built.policies {
            let key = (g.policy.namespace.clone(), g.policy.name.clone());
            if !keys.contains(&key) {
                continue;
            }
            rendered += 1;
            let comparable = Comparable::desired(g);
            let planned = plan(Some(&comparable), self.state.policy(&key));
            self.desired.insert(key.clone(), comparable);
            let np = Box::new(kubefence_k8s::render::generated_policy(g));
            self.queue(key, planned, Some(np), pass);
        }
        if rendered < keys.len() {
            // Cannot happen: a cached policy's workload is in the state.
            tracing::error!(
                missing = keys.len() - rendered,
                "cached desired policies not rendered again; the next full pass builds them"
            );
        }
    }

    /// Phase 5: unresolved references of the workloads looked at, reported
    /// as an Event when they change.
    fn report_unresolved(&mut self, work: &Work, built: &Baseline) {
        let looked_at = |wk: &WorkloadKey| work.full || work.dirty.contains(wk);
        // Only workloads with unresolved references now or reported before
        // can have a change to report; the others (most) are not visited.
        let in_scope: HashSet<&str> = built.policies.iter().map(|g| g.workload.as_str()).collect();
        let mut now_by_workload: BTreeMap<WorkloadKey, BTreeSet<String>> = BTreeMap::new();
        for u in &built.report.unresolved {
            let Some(wk) = workload_key_of_id(&u.from) else {
                continue;
            };
            if looked_at(&wk) && in_scope.contains(u.from.as_str()) {
                now_by_workload
                    .entry(wk)
                    .or_default()
                    .insert(format!("{} ({}): {}", u.value, u.via, u.reason));
            }
        }
        for wk in self.unresolved.keys().filter(|wk| looked_at(wk)) {
            now_by_workload.entry(wk.clone()).or_default();
        }
        for (wk, now) in now_by_workload {
            let Some(w) = self.state.workload(&wk) else {
                self.unresolved.remove(&wk);
                continue;
            };
            if self
                .unresolved
                .get(&wk)
                .is_some_and(|before| *before == now)
            {
                continue;
            }
            if !now.is_empty() {
                let note: Vec<String> = now.iter().cloned().collect();
                self.notify(Note {
                    on: cluster::workload_reference(w),
                    warning: true,
                    reason: "UnresolvedReference",
                    text: truncate(note.join("; ")),
                });
            }
            if now.is_empty() {
                self.unresolved.remove(&wk);
            } else {
                self.unresolved.insert(wk, now);
            }
        }
    }

    // === writes ===

    /// Planned writes not yet handed to the writer.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Nothing queued, nothing in flight, no event waiting.
    pub fn idle(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty() && self.outbox.is_empty()
    }

    fn has_jobs(&self) -> bool {
        !self.outbox.is_empty()
            || self.next_fetch().is_some()
            || self.queued.keys().any(|k| !self.in_flight.contains_key(k))
    }

    /// A ConfigMap to fetch now: wanted, not in flight, no retry pending.
    fn next_fetch(&self) -> Option<&ObjKey> {
        let now = Instant::now();
        self.state.config_maps_to_fetch().iter().find(|k| {
            !self.fetching.contains(*k) && self.fetch_retries.get(*k).is_none_or(|r| r.due <= now)
        })
    }

    /// Fetches every ConfigMap wanted (for [`Controller::reconcile`]).
    async fn fetch_config_maps(&mut self) {
        let mut ignored = Pass::default();
        while let Some(key) = self.next_fetch().cloned() {
            let generation = self.state.config_map_generation(&key);
            self.fetching.insert(key.clone());
            let outcome = writer::perform(&self.ctx, Job::Fetch(key, generation)).await;
            self.settle(outcome, &mut ignored);
        }
    }

    /// The next job to hand to the writer: an event first (they are small
    /// and say what was done), then the first queued write whose policy has
    /// no write in flight (one write per object at a time). An update is
    /// sent on the resourceVersion the cache holds now.
    fn next_job(&mut self) -> Option<Job> {
        if let Some(n) = self.outbox.pop_front() {
            return Some(Job::Event(n));
        }
        if let Some(key) = self.next_fetch().cloned() {
            let generation = self.state.config_map_generation(&key);
            self.fetching.insert(key.clone());
            return Some(Job::Fetch(key, generation));
        }
        self.next_write()
    }

    /// The first queued write whose policy has no write in flight.
    fn next_write(&mut self) -> Option<Job> {
        if !self.ctx.is_leader() {
            self.queued.clear();
            return None;
        }
        let key = self
            .queued
            .keys()
            .find(|k| !self.in_flight.contains_key(*k))?
            .clone();
        let write = self.queued.remove(&key)?;
        let write = match write {
            Write::Apply(np, _) => {
                let seen = self
                    .state
                    .policy(&key)
                    .and_then(|p| p.resource_version.clone());
                Write::Apply(np, seen)
            }
            other => other,
        };
        self.in_flight.insert(key.clone(), false);
        Some(Job::Write(key, write))
    }

    /// Runs every queued write (as many at once as `write_concurrency`)
    /// and settles each; for [`Controller::reconcile`].
    async fn write_queued(&mut self, pass: &mut Pass) {
        let mut jobs = Vec::new();
        while !self.queued.is_empty() {
            match self.next_write() {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        let ctx = self.ctx.clone();
        let mut outcomes: Vec<Outcome> = futures::stream::iter(jobs)
            .map(|job| {
                let ctx = ctx.clone();
                async move { writer::perform(&ctx, job).await }
            })
            .buffer_unordered(self.ctx.config.write_concurrency.max(1))
            .collect()
            .await;
        outcomes.sort_by(|a, b| match (a, b) {
            (Outcome::Written { key: x, .. }, Outcome::Written { key: y, .. }) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        for outcome in outcomes {
            self.settle(outcome, pass);
        }
    }

    /// Takes a write's outcome into the cache, the retry schedule, the
    /// counters and the events.
    pub fn settle(&mut self, outcome: Outcome, pass: &mut Pass) {
        let (key, created, result) = match outcome {
            Outcome::Written {
                key,
                created,
                result,
            } => (key, created, result),
            Outcome::Published => return,
            Outcome::Fetched {
                key,
                generation,
                result,
            } => {
                self.settle_fetch(key, generation, result);
                return;
            }
        };
        // A watch event for the policy while the write was in flight is as
        // new as the answer or newer: the cache keeps it.
        let watched_since = self.in_flight.remove(&key).unwrap_or(false);
        if self.queued.contains_key(&key) {
            // Planned again while in flight: planned again now, against
            // what was written.
            self.dirty_policies.insert(key.clone());
        }
        match result {
            Ok(Some(stored)) => {
                self.retries.remove(&key);
                if !watched_since {
                    self.state.set_policy(key.clone(), Some(*stored));
                }
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
                if !watched_since {
                    self.state.set_policy(key.clone(), None);
                }
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
                let delay = backoff(attempts);
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

    fn settle_fetch(&mut self, key: ObjKey, generation: u64, result: Result<watch::Fetched>) {
        self.fetching.remove(&key);
        let affected = match result {
            Ok(watch::Fetched::Found(c)) => self.state.fetched(key.clone(), generation, Some(c)),
            Ok(watch::Fetched::Gone) => self.state.fetched(key.clone(), generation, None),
            Ok(watch::Fetched::Unreadable) => {
                self.state.give_up_fetch(&key);
                BTreeSet::new()
            }
            Err(e) => {
                self.ctx.metrics.error(NAME, &e.metric_label());
                let attempts = self.fetch_retries.get(&key).map_or(0, |r| r.attempts) + 1;
                let delay = backoff(attempts);
                tracing::warn!(namespace = %key.0, name = %key.1, error = %e, ?delay, "could not read a ConfigMap; will retry (reconciling waits for it)");
                self.fetch_retries.insert(
                    key,
                    Retry {
                        attempts,
                        due: Instant::now() + delay,
                    },
                );
                return;
            }
        };
        self.fetch_retries.remove(&key);
        self.dirty.extend(affected);
    }

    /// An Event on the workload behind policy `key`, if it still exists.
    fn event(&mut self, key: &ObjKey, warning: bool, reason: &'static str, text: String) {
        let Some(w) = self.owners.get(key).and_then(|wk| self.state.workload(wk)) else {
            return;
        };
        let on = cluster::workload_reference(w);
        self.notify(Note {
            on,
            warning,
            reason,
            text,
        });
    }

    /// Queues an Event. Events are best effort: beyond [`OUTBOX_MAX`]
    /// waiting, the oldest are dropped (and counted), so a slow API server
    /// never makes the queue grow without bound.
    fn notify(&mut self, note: Note) {
        if self.outbox.len() >= OUTBOX_MAX {
            self.outbox.pop_front();
            self.ctx.metrics.error(NAME, "event_dropped");
        }
        self.outbox.push_back(note);
    }

    /// Publishes the queued events, as many at once as writes.
    async fn flush_events(&mut self) {
        let events = std::mem::take(&mut self.outbox);
        let ctx = self.ctx.clone();
        futures::stream::iter(events)
            .for_each_concurrent(self.ctx.config.write_concurrency.max(1), |n| {
                let ctx = ctx.clone();
                async move {
                    writer::perform(&ctx, Job::Event(n)).await;
                }
            })
            .await;
    }
}

/// The key of the workload with id `namespace/Kind/name` (the builder's
/// report names workloads so; neither part may contain a `/`).
fn workload_key_of_id(id: &str) -> Option<WorkloadKey> {
    let mut parts = id.splitn(3, '/');
    let namespace = parts.next()?;
    let kind = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    Some((namespace.to_string(), kind, name.to_string()))
}

/// 1 s doubling to 5 min.
fn backoff(attempts: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
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

/// Runs the controller on `changes` until shutdown. The loop reads the
/// watches, plans, and hands writes to the writer task ([`writer`]) over
/// a bounded channel; it never waits for a write, so a slow or failing API
/// server never stops it from following the cluster.
pub async fn run(ctx: Arc<Context>, changes: impl Stream<Item = Change> + Send) -> Result<()> {
    let mut controller = Controller::new(ctx.clone())?;
    ctx.readiness.register(NAME);
    let limit = ctx.config.write_concurrency.max(1);
    let (jobs, jobs_rx) = mpsc::channel::<Job>(limit);
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
    let writer = tokio::spawn(writer::run(ctx.clone(), jobs_rx, outcomes_tx));
    let _writer = AbortOnDrop(writer);
    let mut changes = pin!(changes);
    let mut leader = ctx.leader.clone();
    let mut leader_gone = false;
    let mut shutdown = ctx.shutdown.clone();
    let mut resync =
        tokio::time::interval_at(Instant::now() + ctx.config.resync, ctx.config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut settled = Pass::default();
    let mut planned_once = false;
    loop {
        let next_retry = controller.next_retry();
        let has_jobs = controller.has_jobs();
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
            Some(outcome) = outcomes.recv() => {
                controller.settle(outcome, &mut settled);
                while let Ok(outcome) = outcomes.try_recv() {
                    controller.settle(outcome, &mut settled);
                }
            }
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
            permit = jobs.reserve(), if has_jobs => match permit {
                Ok(permit) => {
                    if let Some(job) = controller.next_job() {
                        permit.send(job);
                    }
                }
                // The writer task is gone (it never ends on its own).
                Err(_) => return Err(Error::ControllerStopped("baseline writer")),
            },
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {}
            _ = resync.tick() => controller.request_full(),
        }
        if controller.synced() {
            let pass = controller.plan();
            planned_once |= pass.full;
            // Ready once the first full pass is written (or nothing to
            // write because this replica follows).
            if planned_once && controller.idle() || !ctx.is_leader() {
                ctx.readiness.set(NAME, true);
            }
        }
    }
}

/// Stops the writer task when the loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
