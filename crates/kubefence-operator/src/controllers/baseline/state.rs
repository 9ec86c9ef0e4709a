//! The baseline controller's view of the cluster, object by object, and the
//! reverse index that says which workloads a change reaches.
//!
//! ```text
//!  watch events ──▶ State::apply / delete ──▶ affected workloads (from the index)
//!                        │
//!                        └─▶ State::cluster() ──▶ baseline::build ──▶ desired policies
//! ```
//!
//! The index keeps, for each workload, what its policy depends on:
//!
//! - `refs`: every Service its containers could name, as the core's
//!   reference finder reads them (`kubefence_core::baseline::service_names`:
//!   each host of each address-shaped value, ConfigMap values included,
//!   whether or not such a Service exists): what the builder resolves is
//!   always among them, even a Service that does not exist yet;
//! - `selected_by`: the Services whose selector picks its pods (the core's
//!   `service_selects`, as the builder decides);
//! - `config_maps`: the ConfigMaps its env reads;
//! - `controller`: whether it is an ingress controller (config selectors).
//!
//! and the reverse maps Service → referrers, Service → selected workloads,
//! ConfigMap → users, Service → Ingresses routing to it. A workload's policy
//! changes when it changes, when a Service it names or that selects it
//! changes, when a workload on the other end of such a Service changes, when
//! a ConfigMap it reads changes, when an Ingress routes to it, and (for an
//! ingress controller) when any routing changes: exactly what
//! [`State::expand`] collects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kubefence_core::baseline::{self, BaselineConfig, ConfigMapRead};
use kubefence_core::model::{
    Cluster, ConfigMap, Ingress, Namespace, Service, Workload, WorkloadKind,
};
use kubefence_core::naming::{self, Source};
use kubefence_core::selector::LabelSelector;

/// (namespace, kind, name) of a workload.
pub type WorkloadKey = (String, WorkloadKind, String);
/// (namespace, name) of a namespaced object.
pub type ObjKey = (String, String);

/// The kinds of object the baseline controller watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Workload(WorkloadKind),
    Service,
    Ingress,
    ConfigMap,
    Namespace,
    NetworkPolicy,
}

impl Kind {
    /// Every watched kind: readiness waits for each one's first list.
    pub fn all() -> Vec<Kind> {
        let mut kinds: Vec<Kind> = WorkloadKind::ALL
            .iter()
            .map(|k| Kind::Workload(*k))
            .collect();
        kinds.extend([
            Kind::Service,
            Kind::Ingress,
            Kind::ConfigMap,
            Kind::Namespace,
            Kind::NetworkPolicy,
        ]);
        kinds
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workload(k) => k.as_str(),
            Kind::Service => "Service",
            Kind::Ingress => "Ingress",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }
}

/// What the controller keeps of an observed NetworkPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPolicy {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `app.kubernetes.io/managed-by: kubefence`: the only ones ever touched.
    pub managed: bool,
    /// `kubefence.dev/source`, for managed policies.
    pub source: Option<String>,
    /// Written by the operator (managedFields has manager `kubefence`, from
    /// its create or its server-side apply). Only such a policy is ever deleted:
    /// `kubefence generate` output applied by kubectl or GitOps carries the
    /// same labels but is not the operator's to remove.
    pub applied_by_us: bool,
    /// What [`super::diff`] compares, for managed policies only (foreign
    /// ones are never compared, so their content is not kept).
    pub object: Option<super::diff::Comparable>,
    /// For a kubefence quarantine policy: the workload it isolates (its
    /// `kubefence.dev/target` annotation). That workload's baseline policy
    /// is withheld while it exists (see `State::quarantined`).
    pub quarantines: Option<WorkloadKey>,
}

impl ObservedPolicy {
    pub fn is_baseline(&self) -> bool {
        self.managed && self.source.as_deref() == Some(Source::Baseline.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Deps {
    refs: BTreeSet<ObjKey>,
    selected_by: BTreeSet<ObjKey>,
    config_maps: BTreeSet<ObjKey>,
    controller: bool,
}

/// Reverse maps; see the module docs.
#[derive(Debug, Default)]
struct Index {
    deps: HashMap<WorkloadKey, Deps>,
    referrers: HashMap<ObjKey, BTreeSet<WorkloadKey>>,
    selected: HashMap<ObjKey, BTreeSet<WorkloadKey>>,
    cm_users: HashMap<ObjKey, BTreeSet<WorkloadKey>>,
    routed: HashMap<ObjKey, BTreeSet<ObjKey>>,
    controllers: BTreeSet<WorkloadKey>,
}

fn add(map: &mut HashMap<ObjKey, BTreeSet<WorkloadKey>>, k: &ObjKey, w: &WorkloadKey) {
    map.entry(k.clone()).or_default().insert(w.clone());
}

fn remove(map: &mut HashMap<ObjKey, BTreeSet<WorkloadKey>>, k: &ObjKey, w: &WorkloadKey) {
    if let Some(set) = map.get_mut(k) {
        set.remove(w);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

/// The cluster as the controller has seen it.
#[derive(Debug)]
pub struct State {
    namespaces: BTreeMap<String, Namespace>,
    workloads: BTreeMap<WorkloadKey, Workload>,
    services: BTreeMap<ObjKey, Service>,
    ingresses: BTreeMap<ObjKey, Ingress>,
    /// Every ConfigMap, with only the data some workload's env reads
    /// (see [`Held`]): not every ConfigMap's data in the cluster.
    config_maps: BTreeMap<ObjKey, ConfigMap>,
    /// What of each ConfigMap's data is kept.
    held: HashMap<ObjKey, Held>,
    /// Bumped on every watch event of a ConfigMap, so a fetch answered
    /// after a newer event is not taken (see [`State::fetched`]).
    generations: HashMap<ObjKey, u64>,
    /// ConfigMaps whose data a workload reads but that is not kept (the
    /// workload came after the ConfigMap was pruned): to be fetched.
    to_fetch: BTreeSet<ObjKey>,
    /// Until every kind has listed once, every ConfigMap is kept whole
    /// (the workloads that read them may not be listed yet).
    keep_all_config_maps: bool,
    policies: BTreeMap<ObjKey, ObservedPolicy>,
    index: Index,
    /// Bumped by every change of what the builder reads (everything but
    /// the policies), so a full pass can tell that a rebuild would give
    /// what the last full build gave (see [`State::generation`]).
    generation: u64,
    /// Ingress controller selectors (namespace, pods), from the config.
    ingress_controllers: Vec<(LabelSelector, LabelSelector)>,
}

/// What of a ConfigMap's data the cache keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    All,
    Keys(BTreeSet<String>),
}

impl Held {
    /// What the readers of a ConfigMap read of it.
    fn wanted<'a>(reads: impl IntoIterator<Item = &'a ConfigMapRead>) -> Held {
        let mut keys = BTreeSet::new();
        for r in reads {
            match r {
                ConfigMapRead::All => return Held::All,
                ConfigMapRead::Key(k) => {
                    keys.insert(k.clone());
                }
            }
        }
        Held::Keys(keys)
    }

    fn covers(&self, wanted: &Held) -> bool {
        match (self, wanted) {
            (Held::All, _) => true,
            (Held::Keys(_), Held::All) => false,
            (Held::Keys(have), Held::Keys(want)) => want.is_subset(have),
        }
    }

    fn filter(&self, mut c: ConfigMap) -> ConfigMap {
        if let Held::Keys(keys) = self {
            c.data.retain(|k, _| keys.contains(k));
        }
        c
    }
}

pub fn workload_key(w: &Workload) -> WorkloadKey {
    (w.namespace.clone(), w.kind, w.name.clone())
}

/// The name of a workload's baseline policy.
pub fn policy_key(w: &WorkloadKey) -> ObjKey {
    (
        w.0.clone(),
        naming::policy_name(Source::Baseline, w.1, &w.0, &w.2),
    )
}

impl State {
    pub fn new(cfg: &BaselineConfig) -> Result<Self, kubefence_core::baseline::ConfigError> {
        let mut ingress_controllers = Vec::new();
        for (i, c) in cfg.ingress_controllers.iter().enumerate() {
            let sel = |s: &kubefence_core::baseline::SelectorConfig, f: &str| {
                s.to_selector()
                    .map_err(|source| kubefence_core::baseline::ConfigError {
                        field: format!("ingressControllers[{i}].{f}"),
                        source,
                    })
            };
            ingress_controllers.push((
                sel(&c.namespace_selector, "namespaceSelector")?,
                sel(&c.pod_selector, "podSelector")?,
            ));
        }
        Ok(Self {
            namespaces: BTreeMap::new(),
            workloads: BTreeMap::new(),
            services: BTreeMap::new(),
            ingresses: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            held: HashMap::new(),
            generations: HashMap::new(),
            to_fetch: BTreeSet::new(),
            keep_all_config_maps: true,
            policies: BTreeMap::new(),
            index: Index::default(),
            generation: 0,
            ingress_controllers,
        })
    }

    // === reads ===

    pub fn workload(&self, key: &WorkloadKey) -> Option<&Workload> {
        self.workloads.get(key)
    }

    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values()
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }

    /// Changes with every change of the builder's input ([`State::cluster`]):
    /// the builder is pure, so two builds at one generation give the same
    /// policies.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn policy(&self, key: &ObjKey) -> Option<&ObservedPolicy> {
        self.policies.get(key)
    }

    pub fn policies(&self) -> impl Iterator<Item = (&ObjKey, &ObservedPolicy)> {
        self.policies.iter()
    }

    /// Whether `live` is exactly what is already kept for it (a status-only
    /// update of a Deployment or a Pod converts to the same value): then
    /// nothing can change and the change is dropped.
    pub fn holds(&self, key: &ObjKey, live: &kubefence_k8s::convert::LiveObject) -> bool {
        use kubefence_k8s::convert::LiveObject as L;
        match live {
            L::Workload(w) => self.workloads.get(&workload_key(w)) == Some(w),
            L::Service(s) => self.services.get(key) == Some(s),
            L::Ingress(i) => self.ingresses.get(key) == Some(i),
            L::ConfigMap(c) => {
                let kept = self.held.get(key).map(|h| h.filter(c.clone()));
                kept.is_some() && self.config_maps.get(key) == kept.as_ref()
            }
            L::Namespace(n) => self.namespaces.get(&n.name) == Some(n),
            L::Owned => false,
        }
    }

    /// The workloads a kubefence quarantine NetworkPolicy isolates now.
    /// Policies are additive: their baseline policy would keep DNS and
    /// their peers open, so a deny-all could never isolate them; it is
    /// withheld while the quarantine policy exists and restored after.
    pub fn quarantined(&self) -> BTreeSet<&WorkloadKey> {
        self.policies
            .values()
            .filter_map(|p| p.quarantines.as_ref())
            .collect()
    }

    /// The number of objects of each map, for the memory estimate.
    pub fn counts(&self) -> [usize; 6] {
        [
            self.namespaces.len(),
            self.workloads.len(),
            self.services.len(),
            self.ingresses.len(),
            self.config_maps.len(),
            self.policies.len(),
        ]
    }

    /// The snapshot the builder reads. Workloads come sorted by
    /// (namespace, kind, name), Services and the rest by (namespace, name).
    pub fn cluster(&self) -> Cluster {
        let mut cluster = Cluster {
            namespaces: self.namespaces.clone(),
            workloads: self.workloads.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            ingresses: self.ingresses.values().cloned().collect(),
            config_maps: self.config_maps.values().cloned().collect(),
            policies: Vec::new(),
        };
        cluster.add_implicit_namespaces();
        cluster
    }

    /// The part of the cluster that the policies of `targets` depend on,
    /// so the builder can run on it instead of the whole snapshot: the
    /// targets; every workload at the other end of a Service a target names
    /// or that selects a target (its peers, whose own references must
    /// resolve alike); those Services; the Ingresses routing to them; for
    /// an ingress controller among the targets, every Ingress, the Services
    /// they route to and what those select; the ConfigMaps of all these
    /// workloads; every namespace. The builder's output for the targets is
    /// the same as on the whole cluster (`neighbourhood_builds_like_the_whole_cluster`
    /// checks it); its output for the other workloads is not to be used.
    pub fn neighbourhood(&self, targets: &BTreeSet<WorkloadKey>) -> Cluster {
        let mut workloads: BTreeSet<&WorkloadKey> = BTreeSet::new();
        let mut services: BTreeSet<&ObjKey> = BTreeSet::new();
        let mut ingresses: BTreeSet<&ObjKey> = BTreeSet::new();
        let empty = BTreeSet::new();
        for t in targets {
            let Some((tk, _)) = self.workloads.get_key_value(t) else {
                continue;
            };
            workloads.insert(tk);
            let Some(deps) = self.index.deps.get(t) else {
                continue;
            };
            for s in &deps.refs {
                services.insert(s);
                workloads.extend(self.index.selected.get(s).unwrap_or(&empty));
            }
            for s in &deps.selected_by {
                services.insert(s);
                workloads.extend(self.index.referrers.get(s).unwrap_or(&empty));
                if let Some(routing) = self.index.routed.get(s) {
                    ingresses.extend(routing);
                }
            }
            if deps.controller {
                for (s, routing) in &self.index.routed {
                    services.insert(s);
                    ingresses.extend(routing);
                    workloads.extend(self.index.selected.get(s).unwrap_or(&empty));
                }
            }
        }
        let mut config_maps: BTreeSet<&ObjKey> = BTreeSet::new();
        for w in &workloads {
            if let Some(deps) = self.index.deps.get(*w) {
                config_maps.extend(
                    deps.config_maps
                        .iter()
                        .filter(|c| self.config_maps.contains_key(*c)),
                );
            }
        }
        let mut cluster = Cluster {
            namespaces: self.namespaces.clone(),
            workloads: workloads
                .into_iter()
                .filter_map(|k| self.workloads.get(k).cloned())
                .collect(),
            services: services
                .into_iter()
                .filter_map(|k| self.services.get(k).cloned())
                .collect(),
            ingresses: ingresses
                .into_iter()
                .filter_map(|k| self.ingresses.get(k).cloned())
                .collect(),
            config_maps: config_maps
                .into_iter()
                .filter_map(|k| self.config_maps.get(k).cloned())
                .collect(),
            policies: Vec::new(),
        };
        cluster.add_implicit_namespaces();
        cluster
    }

    // === writes: each returns the workloads whose policy may change ===

    pub fn set_workload(&mut self, key: WorkloadKey, w: Option<Workload>) -> BTreeSet<WorkloadKey> {
        self.generation += 1;
        let mut affected = BTreeSet::new();
        if let Some(old) = self.unindex(&key) {
            self.expand(&key, &old, &mut affected);
        }
        affected.insert(key.clone());
        match w {
            Some(w) => {
                self.workloads.insert(key.clone(), w);
                let deps = self.reindex(&key);
                self.expand(&key, &deps, &mut affected);
            }
            None => {
                self.workloads.remove(&key);
            }
        }
        affected
    }

    pub fn set_service(&mut self, key: ObjKey, s: Option<Service>) -> BTreeSet<WorkloadKey> {
        self.generation += 1;
        let mut affected = self.service_neighbours(&key);
        match s {
            Some(s) => {
                self.services.insert(key.clone(), s);
            }
            None => {
                self.services.remove(&key);
            }
        }
        // Which workloads of the namespace it selects now.
        let before = self.index.selected.remove(&key).unwrap_or_default();
        let mut now = BTreeSet::new();
        if let Some(svc) = self.services.get(&key) {
            for (wk, w) in self.workloads_in(&key.0) {
                if baseline::service_selects(svc, w) {
                    now.insert(wk.clone());
                }
            }
        }
        for wk in before.difference(&now) {
            if let Some(d) = self.index.deps.get_mut(wk) {
                d.selected_by.remove(&key);
            }
        }
        for wk in &now {
            if let Some(d) = self.index.deps.get_mut(wk) {
                d.selected_by.insert(key.clone());
            }
        }
        if !now.is_empty() {
            self.index.selected.insert(key.clone(), now);
        }
        affected.extend(self.service_neighbours(&key));
        affected
    }

    /// A ConfigMap from the watch: kept with the data its readers read.
    pub fn set_config_map(&mut self, key: ObjKey, c: Option<ConfigMap>) -> BTreeSet<WorkloadKey> {
        *self.generations.entry(key.clone()).or_default() += 1;
        self.keep_config_map(key, c)
    }

    fn keep_config_map(&mut self, key: ObjKey, c: Option<ConfigMap>) -> BTreeSet<WorkloadKey> {
        self.generation += 1;
        self.to_fetch.remove(&key);
        match c {
            Some(c) => {
                let held = self.wanted(&key);
                self.config_maps.insert(key.clone(), held.filter(c));
                self.held.insert(key.clone(), held);
            }
            None => {
                self.config_maps.remove(&key);
                self.held.remove(&key);
                self.generations.remove(&key);
            }
        }
        let users: Vec<WorkloadKey> = self
            .index
            .cm_users
            .get(&key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut affected = BTreeSet::new();
        for wk in users {
            affected.extend(self.refresh(&wk));
        }
        affected
    }

    /// What the workloads reading ConfigMap `key` read of it (everything
    /// until every kind has listed).
    fn wanted(&self, key: &ObjKey) -> Held {
        if self.keep_all_config_maps {
            return Held::All;
        }
        let mut reads = BTreeSet::new();
        for wk in self.index.cm_users.get(key).into_iter().flatten() {
            if let Some(w) = self.workloads.get(wk)
                && let Some(r) = baseline::config_map_reads(w).remove(&key.1)
            {
                reads.extend(r);
            }
        }
        Held::wanted(&reads)
    }

    /// Every kind has listed: from now on a ConfigMap keeps only what its
    /// readers read.
    pub fn prune_config_maps(&mut self) {
        if !self.keep_all_config_maps {
            return;
        }
        self.keep_all_config_maps = false;
        self.generation += 1;
        let keys: Vec<ObjKey> = self.config_maps.keys().cloned().collect();
        for key in keys {
            let held = self.wanted(&key);
            if let Some(c) = self.config_maps.remove(&key) {
                self.config_maps.insert(key.clone(), held.filter(c));
            }
            self.held.insert(key, held);
        }
    }

    /// ConfigMaps that must be fetched before the next pass (a reader
    /// reads data that is not kept).
    pub fn config_maps_to_fetch(&self) -> &BTreeSet<ObjKey> {
        &self.to_fetch
    }

    /// The watch generation of a ConfigMap, to send along with a fetch.
    pub fn config_map_generation(&self, key: &ObjKey) -> u64 {
        self.generations.get(key).copied().unwrap_or_default()
    }

    /// A fetched ConfigMap, sent at `generation`: taken only when no watch
    /// event came since (a newer event already brought what is wanted,
    /// filtered by the readers of that moment); otherwise whether it is
    /// still needed is decided again.
    pub fn fetched(
        &mut self,
        key: ObjKey,
        generation: u64,
        c: Option<ConfigMap>,
    ) -> BTreeSet<WorkloadKey> {
        if self.config_map_generation(&key) != generation {
            self.check_held(&key);
            return BTreeSet::new();
        }
        self.keep_config_map(key, c)
    }

    /// A ConfigMap that could not be read: what is kept stays.
    pub fn give_up_fetch(&mut self, key: &ObjKey) {
        self.to_fetch.remove(key);
    }

    /// Queues a fetch of ConfigMap `key` when its readers read more than
    /// is kept.
    fn check_held(&mut self, key: &ObjKey) {
        let Some(held) = self.held.get(key) else {
            return;
        };
        if held.covers(&self.wanted(key)) {
            self.to_fetch.remove(key);
        } else {
            self.to_fetch.insert(key.clone());
        }
    }

    pub fn set_ingress(&mut self, key: ObjKey, i: Option<Ingress>) -> BTreeSet<WorkloadKey> {
        self.generation += 1;
        let mut affected = BTreeSet::new();
        let backends = |i: &Ingress| -> BTreeSet<ObjKey> {
            i.backends
                .iter()
                .map(|b| (i.namespace.clone(), b.service.clone()))
                .collect()
        };
        let old = self.ingresses.get(&key).map(backends).unwrap_or_default();
        let new = i.as_ref().map(backends).unwrap_or_default();
        for s in &old {
            if let Some(set) = self.index.routed.get_mut(s) {
                set.remove(&key);
                if set.is_empty() {
                    self.index.routed.remove(s);
                }
            }
        }
        for s in &new {
            self.index
                .routed
                .entry(s.clone())
                .or_default()
                .insert(key.clone());
        }
        for s in old.union(&new) {
            affected.extend(self.index.selected.get(s).into_iter().flatten().cloned());
        }
        affected.extend(self.index.controllers.iter().cloned());
        match i {
            Some(i) => {
                self.ingresses.insert(key, i);
            }
            None => {
                self.ingresses.remove(&key);
            }
        }
        affected
    }

    pub fn set_namespace(&mut self, name: String, n: Option<Namespace>) -> BTreeSet<WorkloadKey> {
        self.generation += 1;
        match n {
            Some(n) => {
                self.namespaces.insert(name.clone(), n);
            }
            None => {
                self.namespaces.remove(&name);
            }
        }
        // Its workloads (opt-in, and whether they are ingress controllers).
        let keys: Vec<WorkloadKey> = self.workloads_in(&name).map(|(k, _)| k.clone()).collect();
        let mut affected = BTreeSet::new();
        for wk in keys {
            affected.extend(self.refresh(&wk));
        }
        affected
    }

    /// Returns the workloads whose quarantine starts or ends with this
    /// change (their baseline policy is withheld or restored).
    pub fn set_policy(&mut self, key: ObjKey, p: Option<ObservedPolicy>) -> BTreeSet<WorkloadKey> {
        let before = self.policies.get(&key).and_then(|p| p.quarantines.clone());
        let after = p.as_ref().and_then(|p| p.quarantines.clone());
        match p {
            Some(p) => {
                self.policies.insert(key, p);
            }
            None => {
                self.policies.remove(&key);
            }
        }
        if before == after {
            return BTreeSet::new();
        }
        before.into_iter().chain(after).collect()
    }

    /// The keys of one kind, for a relist (objects not listed again are gone).
    pub fn keys_of(&self, kind: Kind) -> Vec<(String, String)> {
        match kind {
            Kind::Workload(k) => self
                .workloads
                .keys()
                .filter(|w| w.1 == k)
                .map(|w| (w.0.clone(), w.2.clone()))
                .collect(),
            Kind::Service => self.services.keys().cloned().collect(),
            Kind::Ingress => self.ingresses.keys().cloned().collect(),
            Kind::ConfigMap => self.config_maps.keys().cloned().collect(),
            Kind::Namespace => self
                .namespaces
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            Kind::NetworkPolicy => self.policies.keys().cloned().collect(),
        }
    }

    // === the index ===

    fn workloads_in<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a WorkloadKey, &'a Workload)> + 'a {
        self.workloads
            .range((namespace.to_string(), WorkloadKind::ALL[0], String::new())..)
            .take_while(move |(k, _)| k.0 == namespace)
    }

    /// Everything on either end of Service `key`, and the ingress
    /// controllers when an Ingress routes to it.
    fn service_neighbours(&self, key: &ObjKey) -> BTreeSet<WorkloadKey> {
        let mut out: BTreeSet<WorkloadKey> = BTreeSet::new();
        out.extend(self.index.referrers.get(key).into_iter().flatten().cloned());
        out.extend(self.index.selected.get(key).into_iter().flatten().cloned());
        if self.index.routed.contains_key(key) {
            out.extend(self.index.controllers.iter().cloned());
        }
        out
    }

    /// The workloads whose policy depends on workload `key` with `deps`.
    fn expand(&self, key: &WorkloadKey, deps: &Deps, out: &mut BTreeSet<WorkloadKey>) {
        out.insert(key.clone());
        for s in &deps.refs {
            out.extend(self.index.selected.get(s).into_iter().flatten().cloned());
        }
        let mut routed = false;
        for s in &deps.selected_by {
            out.extend(self.index.referrers.get(s).into_iter().flatten().cloned());
            routed |= self.index.routed.contains_key(s);
        }
        if routed {
            out.extend(self.index.controllers.iter().cloned());
        }
    }

    /// Re-reads a workload's dependencies (its ConfigMap or namespace
    /// changed) and returns what that reaches.
    fn refresh(&mut self, key: &WorkloadKey) -> BTreeSet<WorkloadKey> {
        let mut affected = BTreeSet::new();
        if let Some(old) = self.unindex(key) {
            self.expand(key, &old, &mut affected);
        }
        if self.workloads.contains_key(key) {
            let deps = self.reindex(key);
            self.expand(key, &deps, &mut affected);
        }
        affected
    }

    fn unindex(&mut self, key: &WorkloadKey) -> Option<Deps> {
        let deps = self.index.deps.remove(key)?;
        for s in &deps.refs {
            remove(&mut self.index.referrers, s, key);
        }
        for s in &deps.selected_by {
            remove(&mut self.index.selected, s, key);
        }
        for c in &deps.config_maps {
            remove(&mut self.index.cm_users, c, key);
        }
        self.index.controllers.remove(key);
        Some(deps)
    }

    fn reindex(&mut self, key: &WorkloadKey) -> Deps {
        let Some(w) = self.workloads.get(key) else {
            return Deps::default();
        };
        let deps = self.deps_of(w);
        for s in &deps.refs {
            add(&mut self.index.referrers, s, key);
        }
        for s in &deps.selected_by {
            add(&mut self.index.selected, s, key);
        }
        for c in &deps.config_maps {
            add(&mut self.index.cm_users, c, key);
            self.check_held(c);
        }
        if deps.controller {
            self.index.controllers.insert(key.clone());
        }
        self.index.deps.insert(key.clone(), deps.clone());
        deps
    }

    /// What `w`'s policy depends on, read by the core's own reference
    /// finder and Service matching (the index can never disagree with the
    /// builder about which Services a workload names or which select it).
    fn deps_of(&self, w: &Workload) -> Deps {
        let ns = &w.namespace;
        Deps {
            refs: baseline::service_names(self, w),
            config_maps: baseline::config_map_reads(w)
                .into_keys()
                .map(|name| (ns.clone(), name))
                .collect(),
            selected_by: self
                .services
                .range((ns.clone(), String::new())..)
                .take_while(|(k, _)| &k.0 == ns)
                .filter(|(_, s)| baseline::service_selects(s, w))
                .map(|(k, _)| k.clone())
                .collect(),
            controller: self.is_ingress_controller(w),
        }
    }

    fn is_ingress_controller(&self, w: &Workload) -> bool {
        let ns_labels = self
            .namespaces
            .get(&w.namespace)
            .map(|n| n.labels.clone())
            .unwrap_or_else(|| Namespace::implicit(&w.namespace).labels);
        self.ingress_controllers
            .iter()
            .any(|(n, p)| n.matches(&ns_labels) && p.matches(&w.pod_labels))
    }
}

/// The reference finder reads ConfigMaps from the cache.
impl baseline::ConfigMaps for State {
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }
}

#[cfg(test)]
mod tests;
