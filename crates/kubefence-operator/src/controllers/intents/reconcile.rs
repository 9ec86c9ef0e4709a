//! One pass of the intents controller over the watch caches.
//!
//! ```text
//!  SecurityIntents + (Cluster)SecurityIntentBindings + Namespaces
//!     └─▶ kubefence_k8s::intent::read / resolve_one (the same as `kubefence intents render`)
//!           └─▶ desired IntentPolicy per binding and namespace (owned by the binding)
//!                 └─▶ per engine: adapters ─▶ desired objects (owned by the IntentPolicy)
//!  cached objects: none ─▶ create (server-side apply, no force)
//!                  ours, as wanted ─▶ nothing (zero requests)
//!                  ours, different (a hand edit) ─▶ server-side apply on the version read
//!                  someone else's ─▶ never touched; the adapter's status says so
//!                  ours, not wanted any more ─▶ deleted (uid precondition)
//!  status: the binding's (Resolved, Ready), and the IntentPolicy's: one
//!  entry per engine applied by that engine's own field manager, so two
//!  adapters never overwrite each other, and names counted from the
//!  objects that exist.
//! ```
//!
//! Ownership: a namespaced engine object carries an ownerReference to its
//! IntentPolicy (the garbage collector removes it with the policy, which
//! goes with its binding). A cluster-scoped one (ClusterNetworkPolicy,
//! AdminNetworkPolicy) cannot have a namespaced owner, so it carries the
//! IntentPolicy's uid as a label and this controller removes it when that
//! policy is gone. An object without kubefence's labels and that owner
//! (orphan filtering) is never changed or deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::{Resource, ResourceExt};
use kubefence_core::Cluster;
use kubefence_core::intent::{self, Options as IntentOptions};
use kubefence_core::naming::{self, Source};
use kubefence_core::ruleset::{Engine, RuleSet};
use kubefence_k8s::adapters;
use kubefence_k8s::crd::intent::{
    AdapterState, AdapterStatus, BindingStatus, CONDITION_READY, CONDITION_RESOLVED,
    ClusterSecurityIntentBinding, IntentPolicy, SecurityIntent, SecurityIntentBinding,
};
use kubefence_k8s::crd::quarantine::set_condition;
use kubefence_k8s::intent::{self as k8s_intent, Binding, IntentInputs};
use serde_json::{Value, json};

use crate::cluster;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// Label on every engine object: the IntentPolicy it belongs to (name).
pub const INTENT_POLICY_LABEL: &str = "kubefence.dev/intent-policy";
/// Label on cluster-scoped engine objects: the IntentPolicy's uid (they
/// cannot carry an ownerReference to a namespaced object).
pub const INTENT_POLICY_UID_LABEL: &str = "kubefence.dev/intent-policy-uid";

/// Ready's reasons on a binding.
pub const REASON_WRITTEN: &str = "IntentPoliciesWritten";
pub const REASON_NAME_TAKEN: &str = "IntentPolicyNameTaken";
/// Resolved's reasons.
pub const REASON_RESOLVED: &str = "AllIntentsResolved";
pub const REASON_NOT_RESOLVED: &str = "IntentsNotResolved";
/// Ready's reasons on an IntentPolicy.
pub const REASON_APPLIED: &str = "Applied";
pub const REASON_OBJECT_TAKEN: &str = "PolicyNameTaken";
pub const REASON_NOTHING_APPLIED: &str = "NoEngineApplied";

/// The field manager of one engine's entry in an IntentPolicy's status.
pub fn adapter_manager(engine: Engine) -> String {
    format!("{FIELD_MANAGER}-intents-{}", engine.as_str())
}

/// What a pass reads: the watch caches.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub intents: Vec<Arc<SecurityIntent>>,
    pub bindings: Vec<Arc<SecurityIntentBinding>>,
    pub cluster_bindings: Vec<Arc<ClusterSecurityIntentBinding>>,
    pub policies: Vec<Arc<IntentPolicy>>,
    pub namespaces: Vec<Arc<PartialObjectMeta<Namespace>>>,
    pub engines: EngineObjects,
}

/// The engines whose kinds the API server serves, and kubefence's intent
/// objects of them (by their labels).
#[derive(Clone, Debug, Default)]
pub struct EngineObjects {
    pub served: Vec<(Engine, ApiResource)>,
    pub objects: Vec<(Engine, Arc<DynamicObject>)>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Engine object writes (create, apply, delete).
    pub policy_writes: usize,
    /// IntentPolicy writes (create, apply, delete).
    pub intent_policy_writes: usize,
    pub status_writes: usize,
    /// Names someone else holds (`Kind ns/name`).
    pub conflicts: Vec<String>,
}

/// An engine object: engine, namespace (namespaced kinds), name.
type ObjectKey = (Engine, Option<String>, String);

/// The controller's memory between passes: for each object it applied,
/// the spec it sent and the spec the API server stored (defaults filled
/// in), so a stored object that differs from the adapter's output only by
/// defaults is not applied again at every pass.
#[derive(Default)]
pub struct State {
    pub opts: IntentOptions,
    applied: HashMap<ObjectKey, (Value, Value)>,
}

impl State {
    pub fn new(opts: IntentOptions) -> Self {
        Self {
            opts,
            applied: HashMap::new(),
        }
    }
}

/// A binding as the pass sees it: read (kubefence-k8s) and its object.
struct BindingObject {
    binding: Binding,
    owner: OwnerReference,
    generation: Option<i64>,
    status: BindingStatus,
    /// Why it could not be read (then `binding` holds only its names and
    /// nothing is resolved for it).
    unreadable: Option<String>,
}

/// One IntentPolicy the pass wants.
struct Wanted {
    binding: usize,
    namespace: String,
    name: String,
    rule_sets: Vec<RuleSet>,
    object: Value,
}

/// Runs one pass over `snapshot`.
pub async fn pass(ctx: &Context, state: &mut State, snapshot: &Snapshot) -> Result<Pass> {
    let mut out = Pass::default();
    let (inputs, bindings, read_errors) = read_inputs(snapshot);
    // An intent that could not be read is reported as such, not as
    // missing, on every binding that names it.
    let intent_error = |name: &str, error: &str| {
        read_errors
            .get(&format!("SecurityIntent/{name}"))
            .cloned()
            .unwrap_or_else(|| error.to_string())
    };
    let cluster = namespaces_only(&snapshot.namespaces);
    // Nothing is created in a namespace being deleted (the API server
    // refuses it); what is there goes with the namespace.
    let terminating: HashSet<String> = snapshot
        .namespaces
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_some())
        .map(|n| n.name_any())
        .collect();
    // A failed call is recorded and the pass goes on with the other
    // objects: one namespace refusing writes never stalls the others.
    let mut errors: Vec<Error> = Vec::new();
    let mut wanted = Vec::new();
    let mut resolve_errors: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); bindings.len()];
    let mut resolved_intents: Vec<BTreeSet<String>> = vec![BTreeSet::new(); bindings.len()];
    for (i, b) in bindings.iter().enumerate() {
        if let Some(e) = &b.unreadable {
            resolve_errors[i].insert(String::new(), e.clone());
            continue;
        }
        for ns in k8s_intent::namespaces_of(&b.binding, &cluster) {
            if terminating.contains(&ns) {
                continue;
            }
            let r = k8s_intent::resolve_one(&inputs, &b.binding, &ns, &cluster, &[], &state.opts);
            resolve_errors[i].extend(
                r.errors
                    .iter()
                    .map(|(name, e)| (name.clone(), intent_error(name, e))),
            );
            resolved_intents[i].extend(
                r.rule_sets
                    .iter()
                    .filter_map(|s| s.annotations.get(intent::INTENT_ANNOTATION).cloned()),
            );
            let name = b.binding.policy_name();
            let object = desired_intent_policy(b, &ns, &name, &r.rule_sets)?;
            wanted.push(Wanted {
                binding: i,
                namespace: ns,
                name,
                rule_sets: r.rule_sets,
                object,
            });
        }
    }

    // The IntentPolicies: write what differs; their uids name the owners
    // of the engine objects.
    let cached: HashMap<(String, String), &Arc<IntentPolicy>> = snapshot
        .policies
        .iter()
        .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
        .collect();
    let mut taken: Vec<Vec<String>> = vec![Vec::new(); bindings.len()];
    let mut live: Vec<(usize, IntentPolicy)> = Vec::new();
    // Uids of the IntentPolicies that stay: their objects are never swept,
    // even when writing the policy failed this time.
    let mut live_uids: HashSet<String> = HashSet::new();
    for (w_index, w) in wanted.iter().enumerate() {
        let owner = &bindings[w.binding].owner;
        let key = (w.namespace.clone(), w.name.clone());
        let cached_ip = cached.get(&key).copied();
        if let Some(uid) = cached_ip
            .filter(|p| intent_policy_owned_by(p, &owner.uid))
            .and_then(|p| p.uid())
        {
            live_uids.insert(uid);
        }
        match write_intent_policy(ctx, w, owner, cached_ip, &mut out).await {
            Ok(Some(ip)) => {
                live_uids.extend(ip.uid());
                live.push((w_index, ip));
            }
            Ok(None) => taken[w.binding].push(format!("{}/{}", w.namespace, w.name)),
            Err(e) => errors.push(e),
        }
    }

    // The engine objects of each live IntentPolicy, and its status.
    let mut wanted_objects: HashSet<ObjectKey> = HashSet::new();
    for (w_index, ip) in &live {
        let w = &wanted[*w_index];
        let mut entries = Vec::new();
        let mut failed = false;
        for engine in Engine::ALL {
            match sync_engine(
                ctx,
                state,
                snapshot,
                engine,
                ip,
                w,
                &mut wanted_objects,
                &mut out,
            )
            .await
            {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    errors.push(e);
                    failed = true;
                }
            }
        }
        // A status is written from complete knowledge only.
        if !failed && let Err(e) = write_intent_policy_status(ctx, ip, &entries, &mut out).await {
            errors.push(e);
        }
    }

    // What no live IntentPolicy wants: its intent unbound, its policy or
    // binding gone (the garbage collector may not have run yet; a
    // cluster-scoped object has no owner it could collect it by).
    if let Err(e) = sweep_objects(ctx, snapshot, &live_uids, &wanted_objects, &mut out).await {
        errors.push(e);
    }
    if let Err(e) = sweep_intent_policies(ctx, snapshot, &wanted, &terminating, &mut out).await {
        errors.push(e);
    }

    let mut errors_of_writes = errors;
    for (i, b) in bindings.iter().enumerate() {
        let errors = &resolve_errors[i];
        let policies: Vec<String> = wanted
            .iter()
            .filter(|w| w.binding == i)
            .map(|w| {
                if b.binding.is_cluster() {
                    format!("{}/{}", w.namespace, w.name)
                } else {
                    w.name.clone()
                }
            })
            .collect();
        if let Err(e) = write_binding_status(
            ctx,
            b,
            resolved_intents[i].len(),
            errors,
            &policies,
            &taken[i],
            &mut out,
        )
        .await
        {
            errors_of_writes.push(e);
        }
    }
    let mut errors = errors_of_writes;
    match errors.len() {
        0 => Ok(out),
        n => {
            for e in &errors[1..] {
                tracing::warn!(controller = super::NAME, error = %crate::error::chain(e), "call failed; retried at the next pass");
            }
            tracing::debug!(
                controller = super::NAME,
                failed = n,
                "pass done with errors"
            );
            Err(errors.swap_remove(0))
        }
    }
}

/// The inputs as kubefence-k8s reads them (the same reading as `kubefence
/// intents render`), each binding with its object, and read errors by
/// binding id.
fn read_inputs(snapshot: &Snapshot) -> (IntentInputs, Vec<BindingObject>, HashMap<String, String>) {
    let mut objects: Vec<(String, Value)> = Vec::new();
    let mut owners: BTreeMap<String, (OwnerReference, Option<i64>, BindingStatus)> =
        BTreeMap::new();
    for i in &snapshot.intents {
        if let Ok(v) = serde_json::to_value(i.as_ref()) {
            objects.push((format!("SecurityIntent/{}", i.name_any()), v));
        }
    }
    for b in &snapshot.bindings {
        let id = format!(
            "SecurityIntentBinding/{}/{}",
            b.namespace().unwrap_or_default(),
            b.name_any()
        );
        if let (Ok(v), Some(owner)) = (serde_json::to_value(b.as_ref()), owner_of(b.as_ref())) {
            objects.push((id.clone(), v));
            owners.insert(
                id,
                (
                    owner,
                    b.meta().generation,
                    b.status.clone().unwrap_or_default(),
                ),
            );
        }
    }
    for b in &snapshot.cluster_bindings {
        let id = format!("ClusterSecurityIntentBinding/{}", b.name_any());
        if let (Ok(v), Some(owner)) = (serde_json::to_value(b.as_ref()), owner_of(b.as_ref())) {
            objects.push((id.clone(), v));
            owners.insert(
                id,
                (
                    owner,
                    b.meta().generation,
                    b.status.clone().unwrap_or_default(),
                ),
            );
        }
    }
    let inputs = k8s_intent::read(&objects);
    let read_errors: HashMap<String, String> = inputs
        .errors
        .iter()
        .map(|(at, message)| (at.clone(), message.clone()))
        .collect();
    let mut bindings: Vec<BindingObject> = inputs
        .bindings
        .iter()
        .filter_map(|b| {
            let (owner, generation, status) = owners.remove(&b.id())?;
            Some(BindingObject {
                binding: b.clone(),
                owner,
                generation,
                status,
                unreadable: None,
            })
        })
        .collect();
    // What is left could not be read: it gets a status saying why.
    for (id, (owner, generation, status)) in owners {
        let cluster = id.starts_with("ClusterSecurityIntentBinding/");
        let namespace = if cluster {
            String::new()
        } else {
            id.split('/').nth(1).unwrap_or_default().to_string()
        };
        bindings.push(BindingObject {
            binding: Binding {
                kind: owner.kind.clone(),
                namespace,
                name: owner.name.clone(),
                intents: Vec::new(),
                selector: kubefence_core::LabelSelector::everything(),
                namespace_selector: None,
            },
            unreadable: Some(
                read_errors
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "could not be read".to_string()),
            ),
            owner,
            generation,
            status,
        });
    }
    (inputs, bindings, read_errors)
}

fn owner_of<K: Resource<DynamicType = ()>>(object: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: object.meta().name.clone()?,
        uid: object.meta().uid.clone()?,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// A cluster of namespaces alone (labels): what a cluster binding's
/// namespaceSelector is matched against.
fn namespaces_only(namespaces: &[Arc<PartialObjectMeta<Namespace>>]) -> Cluster {
    let mut cluster = Cluster::default();
    for ns in namespaces {
        let name = ns.name_any();
        let mut n = kubefence_core::Namespace::implicit(&name);
        n.labels.extend(ns.labels().clone());
        cluster.namespaces.insert(name, n);
    }
    cluster
}

/// The labels of every IntentPolicy and engine object of `binding`.
fn ownership_labels(binding: &Binding) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = naming::ownership_labels(Source::Intent)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    labels.insert(
        intent::BINDING_LABEL.to_string(),
        naming::fit_to(binding.subject_name(), &binding.id(), naming::MAX_NAME_LEN),
    );
    labels
}

fn desired_intent_policy(
    b: &BindingObject,
    namespace: &str,
    name: &str,
    rule_sets: &[RuleSet],
) -> Result<Value> {
    let intents = rule_sets
        .iter()
        .map(|set| {
            Ok(json!({
                "name": set.annotations.get(intent::INTENT_ANNOTATION).cloned().unwrap_or_default(),
                "id": set.labels.get(intent::INTENT_ID_LABEL).cloned().unwrap_or_default(),
                "action": match set.enforcement {
                    kubefence_core::ruleset::Enforcement::Enforce => "Enforce",
                    kubefence_core::ruleset::Enforcement::Audit => "Audit",
                },
                "rules": serde_json::to_value(set)?,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "apiVersion": IntentPolicy::api_version(&()),
        "kind": IntentPolicy::kind(&()),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": ownership_labels(&b.binding),
            "ownerReferences": [b.owner],
        },
        "spec": {
            "binding": b.binding.id(),
            "selector": kubefence_k8s::render::label_selector(&b.binding.selector),
            "intents": intents,
        },
    }))
}

/// An IntentPolicy is ours when it carries kubefence's intent labels and
/// an ownerReference to a binding.
fn intent_policy_owned_by(p: &IntentPolicy, owner_uid: &str) -> bool {
    has_intent_labels(p.labels()) && p.owner_references().iter().any(|o| o.uid == owner_uid)
}

fn has_intent_labels(labels: &BTreeMap<String, String>) -> bool {
    labels.get(naming::MANAGED_BY_LABEL).map(String::as_str) == Some(naming::MANAGED_BY_VALUE)
        && labels.get(naming::SOURCE_LABEL).map(String::as_str) == Some(Source::Intent.as_str())
}

/// Creates, applies or leaves one IntentPolicy; `None` when someone
/// else's object holds the name.
async fn write_intent_policy(
    ctx: &Context,
    w: &Wanted,
    owner: &OwnerReference,
    cached: Option<&Arc<IntentPolicy>>,
    out: &mut Pass,
) -> Result<Option<IntentPolicy>> {
    let api: Api<IntentPolicy> = Api::namespaced(ctx.client.clone(), &w.namespace);
    let id = format!("IntentPolicy {}/{}", w.namespace, w.name);
    match cached {
        None => {
            let identity = json!({
                "apiVersion": w.object["apiVersion"],
                "kind": w.object["kind"],
                "metadata": {"name": w.name, "namespace": w.namespace},
            });
            let created = cluster::create_by_apply(
                ctx,
                &api,
                "intentpolicies",
                &w.name,
                &w.object,
                &identity,
                cluster::ApplyMode::default(),
            )
            .await
            .map_err(|e| Error::call(format!("creating {id}"), e))?;
            out.intent_policy_writes += 1;
            match created {
                cluster::Created::Ours(p) => Ok(Some(p)),
                cluster::Created::Taken => {
                    out.conflicts.push(id);
                    Ok(None)
                }
            }
        }
        Some(p) if !intent_policy_owned_by(p, &owner.uid) => {
            out.conflicts.push(id);
            Ok(None)
        }
        Some(p) => {
            let stored = serde_json::to_value(&p.spec)?;
            let labels_right = w.object["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| p.labels().get(k).map(String::as_str) == v.as_str());
            if stored == w.object["spec"] && labels_right {
                return Ok(Some(p.as_ref().clone()));
            }
            let mut body = w.object.clone();
            body["metadata"]["resourceVersion"] = json!(p.resource_version());
            let applied = cluster::apply(
                ctx,
                &api,
                "intentpolicies",
                &w.name,
                &body,
                cluster::ApplyMode {
                    force: true,
                    dry_run: false,
                },
            )
            .await
            .map_err(|e| Error::call(format!("applying {id}"), e))?;
            out.intent_policy_writes += 1;
            Ok(Some(applied))
        }
    }
}

/// Whether `o` is an engine object of the IntentPolicy with `uid`:
/// kubefence's intent labels and, namespaced, an ownerReference to it,
/// cluster-scoped, its uid label.
fn object_of(o: &DynamicObject, uid: &str) -> bool {
    has_intent_labels(o.labels())
        && (o.owner_references().iter().any(|r| r.uid == uid)
            || o.labels().get(INTENT_POLICY_UID_LABEL).map(String::as_str) == Some(uid))
}

/// The uid of the IntentPolicy `o` belongs to, if it is ours at all.
fn owning_policy_uid(o: &DynamicObject) -> Option<String> {
    if !has_intent_labels(o.labels()) {
        return None;
    }
    o.owner_references()
        .iter()
        .find(|r| r.kind == IntentPolicy::kind(&()))
        .map(|r| r.uid.clone())
        .or_else(|| o.labels().get(INTENT_POLICY_UID_LABEL).cloned())
}

/// What one engine got for one IntentPolicy: its status entry and the
/// `Kind/name` of each of its objects that exists.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineEntry {
    pub status: AdapterStatus,
    pub names: Vec<String>,
    /// Names held by someone else.
    pub taken: Vec<String>,
}

/// Renders `w`'s rule sets for `engine` and keeps its objects so.
#[allow(clippy::too_many_arguments)]
async fn sync_engine(
    ctx: &Context,
    state: &mut State,
    snapshot: &Snapshot,
    engine: Engine,
    ip: &IntentPolicy,
    w: &Wanted,
    wanted_objects: &mut HashSet<ObjectKey>,
    out: &mut Pass,
) -> Result<EngineEntry> {
    let entry = |state: AdapterState, message: Option<String>| EngineEntry {
        status: AdapterStatus {
            engine: engine.as_str().to_string(),
            state,
            message,
        },
        names: Vec::new(),
        taken: Vec::new(),
    };
    let Some((_, resource)) = snapshot.engines.served.iter().find(|(e, _)| *e == engine) else {
        return Ok(entry(
            AdapterState::EngineNotInstalled,
            Some(format!(
                "the API server does not serve {} ({}); checked again when CRDs change",
                adapters::api(engine).kind,
                adapters::api(engine).api_version()
            )),
        ));
    };
    let uid = ip.uid().unwrap_or_default();
    let rendered = k8s_intent::render_engine(engine, &w.rule_sets);
    let mut result = if rendered.objects.is_empty() {
        entry(AdapterState::Unsupported, None)
    } else {
        entry(AdapterState::Applied, None)
    };
    let mut notes: Vec<String> = rendered
        .unsupported
        .iter()
        .map(|(i, reason)| format!("{i}: {reason}"))
        .collect();
    notes.extend(rendered.warnings.iter().cloned());
    let kind = adapters::api(engine).kind;
    let namespaced = adapters::api(engine).namespaced;
    let ours: Vec<&Arc<DynamicObject>> = snapshot
        .engines
        .objects
        .iter()
        .filter(|(e, o)| *e == engine && object_of(o, &uid))
        .map(|(_, o)| o)
        .collect();
    for mut object in rendered.objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = namespaced.then(|| w.namespace.clone());
        object["metadata"]["labels"][INTENT_POLICY_LABEL] =
            json!(naming::fit_to(w.name.clone(), &uid, naming::MAX_NAME_LEN));
        if namespaced {
            object["metadata"]["ownerReferences"] = json!([owner_of(ip)]);
        } else {
            object["metadata"]["labels"][INTENT_POLICY_UID_LABEL] = json!(uid);
        }
        let key = (engine, namespace.clone(), name.clone());
        wanted_objects.insert(key.clone());
        let observed = snapshot
            .engines
            .objects
            .iter()
            .find(|(e, o)| *e == engine && o.name_any() == name && o.namespace() == namespace)
            .map(|(_, o)| o);
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
            None => Api::all_with(ctx.client.clone(), resource),
        };
        let id = match &namespace {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        match observed {
            None => {
                let mut identity = json!({
                    "apiVersion": object["apiVersion"],
                    "kind": object["kind"],
                    "metadata": {"name": name},
                });
                if let Some(ns) = &namespace {
                    identity["metadata"]["namespace"] = json!(ns);
                }
                let created = cluster::create_by_apply(
                    ctx,
                    &api,
                    &resource.plural,
                    &name,
                    &object,
                    &identity,
                    cluster::ApplyMode::default(),
                )
                .await
                .map_err(|e| Error::call(format!("creating {id}"), e))?;
                out.policy_writes += 1;
                match created {
                    cluster::Created::Ours(stored) => {
                        state
                            .applied
                            .insert(key, (object["spec"].clone(), stored.data["spec"].clone()));
                        result.names.push(format!("{kind}/{name}"));
                    }
                    cluster::Created::Taken => {
                        out.conflicts.push(id.clone());
                        result.taken.push(id);
                    }
                }
            }
            Some(o) if !object_of(o, &uid) => {
                // A name of ours held by an object that is not this
                // IntentPolicy's: never touched.
                out.conflicts.push(id.clone());
                result.taken.push(id);
            }
            Some(o) => {
                if !in_sync(state, &key, &object, o) {
                    let mut body = object.clone();
                    body["metadata"]["resourceVersion"] = json!(o.resource_version());
                    let stored = cluster::apply(
                        ctx,
                        &api,
                        &resource.plural,
                        &name,
                        &body,
                        cluster::ApplyMode {
                            force: true,
                            dry_run: false,
                        },
                    )
                    .await
                    .map_err(|e| Error::call(format!("applying {id}"), e))?;
                    out.policy_writes += 1;
                    state
                        .applied
                        .insert(key, (object["spec"].clone(), stored.data["spec"].clone()));
                }
                result.names.push(format!("{kind}/{name}"));
            }
        }
    }
    // This policy's objects of this engine that its rule sets no longer
    // produce (an intent unbound, or now unsupported).
    for o in ours {
        let key = (engine, o.namespace(), o.name_any());
        if wanted_objects.contains(&key) {
            continue;
        }
        delete_object(ctx, resource, o, out).await?;
        state.applied.remove(&key);
    }
    if !result.taken.is_empty() {
        notes.push(format!(
            "held by objects that are not this IntentPolicy's (left alone): {}",
            result.taken.join(", ")
        ));
    }
    result.names.sort();
    if !notes.is_empty() {
        result.status.message = Some(truncate(&notes.join("; ")));
    }
    Ok(result)
}

/// Whether the stored object says what the adapter wants: the labels and
/// owner it needs, and the spec it wants, either exactly or as the API
/// server stored it when this controller last applied that very spec
/// (defaults filled in).
fn in_sync(state: &State, key: &ObjectKey, desired: &Value, observed: &DynamicObject) -> bool {
    let labels_right = desired["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| observed.labels().get(k).map(String::as_str) == v.as_str());
    let owners_right = desired["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|r| {
            observed
                .owner_references()
                .iter()
                .any(|o| Some(o.uid.as_str()) == r["uid"].as_str())
        });
    let spec = &observed.data["spec"];
    let spec_right = *spec == desired["spec"]
        || state
            .applied
            .get(key)
            .is_some_and(|(sent, stored)| *sent == desired["spec"] && stored == spec);
    labels_right && owners_right && spec_right
}

async fn delete_object(
    ctx: &Context,
    resource: &ApiResource,
    o: &DynamicObject,
    out: &mut Pass,
) -> Result<()> {
    let api: Api<DynamicObject> = match o.namespace() {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), &ns, resource),
        None => Api::all_with(ctx.client.clone(), resource),
    };
    let name = o.name_any();
    cluster::delete(ctx, &api, &resource.plural, &name, o.uid(), false)
        .await
        .map_err(|e| Error::call(format!("deleting {} {name}", resource.kind), e))?;
    out.policy_writes += 1;
    Ok(())
}

/// Deletes kubefence's intent objects whose IntentPolicy is not live, and
/// those a live one no longer wants (`sync_engine` deletes the latter
/// already; an object of a served engine it never looked at is caught
/// here).
async fn sweep_objects(
    ctx: &Context,
    snapshot: &Snapshot,
    live_uids: &HashSet<String>,
    wanted: &HashSet<ObjectKey>,
    out: &mut Pass,
) -> Result<()> {
    for (engine, o) in &snapshot.engines.objects {
        let Some(uid) = owning_policy_uid(o) else {
            continue;
        };
        let key = (*engine, o.namespace(), o.name_any());
        if live_uids.contains(&uid) && wanted.contains(&key) {
            continue;
        }
        if live_uids.contains(&uid) {
            // sync_engine already removed it when unwanted.
            continue;
        }
        let Some((_, resource)) = snapshot.engines.served.iter().find(|(e, _)| e == engine) else {
            continue;
        };
        delete_object(ctx, resource, o, out).await?;
    }
    Ok(())
}

/// Deletes IntentPolicies of ours that no binding wants any more (a cluster
/// binding's namespace no longer selected, a binding deleted before the
/// garbage collector ran).
async fn sweep_intent_policies(
    ctx: &Context,
    snapshot: &Snapshot,
    wanted: &[Wanted],
    terminating: &HashSet<String>,
    out: &mut Pass,
) -> Result<()> {
    let wanted: HashSet<(&str, &str)> = wanted
        .iter()
        .map(|w| (w.namespace.as_str(), w.name.as_str()))
        .collect();
    let binding_kinds = [
        SecurityIntentBinding::kind(&()).into_owned(),
        ClusterSecurityIntentBinding::kind(&()).into_owned(),
    ];
    for p in &snapshot.policies {
        let ns = p.namespace().unwrap_or_default();
        let name = p.name_any();
        let ours = has_intent_labels(p.labels())
            && p.owner_references()
                .iter()
                .any(|o| binding_kinds.contains(&o.kind));
        if !ours || wanted.contains(&(ns.as_str(), name.as_str())) || terminating.contains(&ns) {
            continue;
        }
        let api: Api<IntentPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        cluster::delete(ctx, &api, "intentpolicies", &name, p.uid(), false)
            .await
            .map_err(|e| Error::call(format!("deleting IntentPolicy {ns}/{name}"), e))?;
        out.intent_policy_writes += 1;
    }
    Ok(())
}

/// Writes what differs of an IntentPolicy's status: each engine's entry
/// and names with that engine's own field manager (server-side apply of
/// the status subresource: two adapters never overwrite each other), then
/// the count and conditions with kubefence's.
async fn write_intent_policy_status(
    ctx: &Context,
    ip: &IntentPolicy,
    entries: &[EngineEntry],
    out: &mut Pass,
) -> Result<()> {
    let current = ip.status.clone().unwrap_or_default();
    for entry in entries {
        let kind = adapters::api(engine_of(entry)).kind;
        let prefix = format!("{kind}/");
        let mut stored_names: Vec<String> = current
            .policy_names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect();
        stored_names.sort();
        let stored_entry = current
            .adapter_status
            .iter()
            .find(|a| a.engine == entry.status.engine);
        if stored_entry == Some(&entry.status) && stored_names == entry.names {
            continue;
        }
        apply_adapter_status(ctx, ip, entry).await?;
        out.status_writes += 1;
    }
    let total: usize = entries.iter().map(|e| e.names.len()).sum();
    let taken: Vec<&String> = entries.iter().flat_map(|e| &e.taken).collect();
    let applied: Vec<&str> = entries
        .iter()
        .filter(|e| e.status.state == AdapterState::Applied)
        .map(|e| e.status.engine.as_str())
        .collect();
    let (ready, reason, message) = if !taken.is_empty() {
        (
            false,
            REASON_OBJECT_TAKEN,
            format!(
                "names held by objects that are not this IntentPolicy's (left alone): {}",
                taken
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if applied.is_empty() {
        (
            false,
            REASON_NOTHING_APPLIED,
            "no installed engine can express these intents (see adapterStatus)".to_string(),
        )
    } else {
        (
            true,
            REASON_APPLIED,
            format!("{total} object(s) written for {}", applied.join(", ")),
        )
    };
    let mut conditions = current.conditions.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = ip.meta().generation;
    let changed = set_condition(
        &mut conditions,
        CONDITION_READY,
        ready,
        reason,
        &message,
        generation,
        &now,
    );
    let count = i32::try_from(total).unwrap_or(i32::MAX);
    if changed || current.policies != Some(count) || current.observed_generation != generation {
        let body = json!({
            "apiVersion": IntentPolicy::api_version(&()),
            "kind": IntentPolicy::kind(&()),
            "metadata": {"name": ip.name_any(), "namespace": ip.namespace()},
            "status": {
                "policies": count,
                "conditions": conditions,
                "observedGeneration": generation,
            },
        });
        let api: Api<IntentPolicy> =
            Api::namespaced(ctx.client.clone(), &ip.namespace().unwrap_or_default());
        cluster::apply_status(ctx, &api, "intentpolicies", &ip.name_any(), &body)
            .await
            .map_err(|e| {
                Error::call(
                    format!("writing the status of IntentPolicy {}", ip.name_any()),
                    e,
                )
            })?;
        out.status_writes += 1;
    }
    Ok(())
}

fn engine_of(entry: &EngineEntry) -> Engine {
    entry.status.engine.parse().unwrap_or(Engine::NetworkPolicy)
}

/// Applies one engine's entry of an IntentPolicy's status (its
/// `adapterStatus` item and its `policyNames`) as that engine's field
/// manager: what another engine's manager owns stays, whatever the order.
pub async fn apply_adapter_status(
    ctx: &Context,
    ip: &IntentPolicy,
    entry: &EngineEntry,
) -> Result<()> {
    let body = json!({
        "apiVersion": IntentPolicy::api_version(&()),
        "kind": IntentPolicy::kind(&()),
        "metadata": {"name": ip.name_any(), "namespace": ip.namespace()},
        "status": {
            "adapterStatus": [entry.status],
            "policyNames": entry.names,
        },
    });
    let api: Api<IntentPolicy> =
        Api::namespaced(ctx.client.clone(), &ip.namespace().unwrap_or_default());
    cluster::apply_status_as(
        ctx,
        &api,
        "intentpolicies",
        &ip.name_any(),
        &body,
        &adapter_manager(engine_of(entry)),
    )
    .await
    .map_err(|e| {
        Error::call(
            format!(
                "writing the {} status of IntentPolicy {}",
                entry.status.engine,
                ip.name_any()
            ),
            e,
        )
    })?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn write_binding_status(
    ctx: &Context,
    b: &BindingObject,
    bound: usize,
    errors: &BTreeMap<String, String>,
    policies: &[String],
    taken: &[String],
    out: &mut Pass,
) -> Result<()> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut status = BindingStatus {
        bound_intents: Some(i32::try_from(bound).unwrap_or(i32::MAX)),
        intent_policies: policies
            .iter()
            .filter(|p| !taken.contains(p) && !taken.iter().any(|t| t.ends_with(&format!("/{p}"))))
            .cloned()
            .collect(),
        conditions: b.status.conditions.clone(),
        observed_generation: b.generation,
    };
    let resolved_message = if errors.is_empty() {
        format!("{bound} intent(s) resolved")
    } else {
        errors
            .iter()
            .map(|(intent, e)| {
                if intent.is_empty() {
                    e.clone()
                } else {
                    format!("{intent}: {e}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    set_condition(
        &mut status.conditions,
        CONDITION_RESOLVED,
        errors.is_empty(),
        if errors.is_empty() {
            REASON_RESOLVED
        } else {
            REASON_NOT_RESOLVED
        },
        &truncate(&resolved_message),
        b.generation,
        &now,
    );
    let (ready, reason, message) = if taken.is_empty() {
        (
            true,
            REASON_WRITTEN,
            if policies.is_empty() {
                "no namespace selected".to_string()
            } else {
                format!("IntentPolicy {}", policies.join(", "))
            },
        )
    } else {
        (
            false,
            REASON_NAME_TAKEN,
            format!(
                "held by objects that are not this binding's (left alone): {}",
                taken.join(", ")
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        CONDITION_READY,
        ready,
        reason,
        &truncate(&message),
        b.generation,
        &now,
    );
    if status == b.status {
        return Ok(());
    }
    let (kind, namespace) = if b.binding.is_cluster() {
        (ClusterSecurityIntentBinding::kind(&()), None)
    } else {
        (
            SecurityIntentBinding::kind(&()),
            Some(b.binding.namespace.clone()),
        )
    };
    let mut body = json!({
        "apiVersion": SecurityIntentBinding::api_version(&()),
        "kind": kind,
        "metadata": {"name": b.binding.name},
        "status": status,
    });
    let result = match namespace {
        Some(ns) => {
            body["metadata"]["namespace"] = json!(ns);
            let api: Api<SecurityIntentBinding> = Api::namespaced(ctx.client.clone(), &ns);
            cluster::apply_status(ctx, &api, "securityintentbindings", &b.binding.name, &body)
                .await
                .map(|_| ())
        }
        None => {
            let api: Api<ClusterSecurityIntentBinding> = Api::all(ctx.client.clone());
            cluster::apply_status(
                ctx,
                &api,
                "clustersecurityintentbindings",
                &b.binding.name,
                &body,
            )
            .await
            .map(|_| ())
        }
    };
    result.map_err(|e| Error::call(format!("writing the status of {}", b.binding.id()), e))?;
    out.status_writes += 1;
    Ok(())
}

/// Condition messages stay well under the API's 32 KiB limit.
fn truncate(message: &str) -> String {
    const MAX: usize = 4000;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut cut = MAX;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &message[..cut])
}
