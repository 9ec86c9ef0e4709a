//! One pass of the learned controller: observe (list), derive what should
//! be, write the differences.
//!
//! ```text
//!  NetworkNeighborhoods (each installed group) ─┐
//!  KnownServers (each installed group) ─────────┼─▶ learn::build ─▶ desired GNPs
//!                                               │
//!  GNP (ours)  ── approved and hash recorded? ──┴─▶ NetworkPolicy (SSA) ─▶ status
//! ```
//!
//! Every pass lists afresh (the watches only say when to run one), so a
//! missed event costs a delay, never a wrong write.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Resource, ResourceExt};
use kubefence_core::learn::{self, KnownServer, LearnOptions, Neighborhood, WorkloadRef};
use kubefence_core::naming::{self, Source};
use kubefence_k8s::crd::learned::{self as kf, APPROVED_ANNOTATION, OtherGroup};
use kubefence_k8s::learn::Group;
use kubefence_k8s::learn::objects::{self as ks, KUBESCAPE_GROUP, KUBESCAPE_VERSION};
use kubefence_k8s::learn::{generated, neighborhood as convert};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::cluster::{self, ApplyMode, Created};
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};

/// The hash of the GeneratedNetworkPolicy spec that was approved and
/// applied (written by the controller).
pub const APPROVED_HASH_ANNOTATION: &str = "kubefence.dev/approved-hash";
/// The condition the controller keeps on each GeneratedNetworkPolicy.
pub const CONDITION: &str = "Enforced";
/// Its reasons.
pub const REASON_ENFORCED: &str = "Enforced";
pub const REASON_APPROVAL_NEEDED: &str = "ApprovalNeeded";
pub const REASON_CONFLICT: &str = "PolicyConflict";
pub const REASON_INVALID: &str = "Invalid";

const GNP_RESOURCE: &str = "generatednetworkpolicies";
const NEIGHBORHOOD_KIND: &str = "NetworkNeighborhood";
const GROUPS: [Group; 2] = [Group::Kubescape, Group::Kubefence];

/// The API resource of a learned kind in `group`.
pub fn api_resource(group: Group, kind: &str, plural: &str) -> ApiResource {
    let (g, v) = match group {
        Group::Kubescape => (KUBESCAPE_GROUP, KUBESCAPE_VERSION),
        Group::Kubefence => (kubefence_k8s::crd::GROUP, "v1alpha1"),
    };
    ApiResource {
        group: g.to_string(),
        version: v.to_string(),
        api_version: group.api_version().to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

pub fn neighborhoods_resource(group: Group) -> ApiResource {
    api_resource(group, NEIGHBORHOOD_KIND, "networkneighborhoods")
}

pub fn known_servers_resource(group: Group) -> ApiResource {
    api_resource(group, "KnownServer", "knownservers")
}

/// Which groups serve the learned kinds, as the last pass found them
/// (a change is logged once, not at every pass).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub neighborhoods: BTreeMap<Group, bool>,
    pub known_servers: BTreeMap<Group, bool>,
    pub generated: Option<bool>,
}

impl Installed {
    fn note(seen: &mut BTreeMap<Group, bool>, group: Group, what: &str, installed: bool) {
        if seen.insert(group, installed) != Some(installed) {
            if installed {
                tracing::info!(
                    controller = super::NAME,
                    group = group.api_version(),
                    "watching {what}"
                );
            } else {
                tracing::info!(
                    controller = super::NAME,
                    group = group.api_version(),
                    "{what} not served (CRD not installed): skipped"
                );
            }
        }
    }
}

/// What one pass wrote and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub writes: usize,
    /// Objects left alone because someone else holds their name.
    pub conflicts: Vec<String>,
}

/// Lists `resource` across namespaces; `None` when the API server does not
/// serve it (404: the CRD is not installed). Objects that do not read as
/// `T` are logged and left out.
async fn list_or_absent<T: DeserializeOwned>(
    ctx: &Context,
    resource: &ApiResource,
) -> Result<Option<Vec<T>>> {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), resource);
    let list = match cluster::timed(ctx, api.list(&ListParams::default())).await {
        Ok(list) => list,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(Error::call(
                format!("listing {}.{}", resource.plural, resource.group),
                e,
            ));
        }
    };
    let mut out = Vec::new();
    for item in list.items {
        let name = format!(
            "{}/{}",
            item.metadata.namespace.clone().unwrap_or_default(),
            item.name_any()
        );
        match serde_json::to_value(item).and_then(serde_json::from_value) {
            Ok(t) => out.push(t),
            Err(e) => {
                tracing::warn!(controller = super::NAME, object = %name, kind = %resource.kind, error = %e, "unreadable; skipped")
            }
        }
    }
    Ok(Some(out))
}

/// A neighborhood as read, with the group it came from.
struct Listed {
    group: Group,
    object: ks::NetworkNeighborhood,
}

/// Everything a pass reads.
struct Observed {
    neighborhoods: Vec<Listed>,
    /// The groups whose neighborhoods were listed (a GNP whose owners are
    /// in a group that was not listed is never judged orphaned).
    listed_groups: BTreeSet<Group>,
    known_servers: Vec<KnownServer>,
    generated: Vec<kf::GeneratedNetworkPolicy>,
    policies: Vec<NetworkPolicy>,
}

async fn observe(ctx: &Context, installed: &mut Installed) -> Result<Option<Observed>> {
    let generated: Option<Vec<kf::GeneratedNetworkPolicy>> = list_or_absent(
        ctx,
        &api_resource(
            Group::Kubefence,
            kf::GeneratedNetworkPolicy::KIND,
            GNP_RESOURCE,
        ),
    )
    .await?;
    let Some(generated) = generated else {
        if installed.generated != Some(false) {
            tracing::warn!(
                controller = super::NAME,
                "generatednetworkpolicies.kubefence.dev is not installed (kubefence crds): nothing to do"
            );
        }
        installed.generated = Some(false);
        return Ok(None);
    };
    installed.generated = Some(true);
    let mut neighborhoods = Vec::new();
    let mut listed_groups = BTreeSet::new();
    let mut known_servers = Vec::new();
    for group in GROUPS {
        let nns: Option<Vec<ks::NetworkNeighborhood>> =
            list_or_absent(ctx, &neighborhoods_resource(group)).await?;
        Installed::note(
            &mut installed.neighborhoods,
            group,
            "NetworkNeighborhoods",
            nns.is_some(),
        );
        if let Some(nns) = nns {
            listed_groups.insert(group);
            neighborhoods.extend(nns.into_iter().map(|object| Listed { group, object }));
        }
        let servers: Option<Vec<ks::KnownServer>> =
            list_or_absent(ctx, &known_servers_resource(group)).await?;
        Installed::note(
            &mut installed.known_servers,
            group,
            "KnownServers",
            servers.is_some(),
        );
        for server in servers.into_iter().flatten() {
            match convert::known_servers(&server) {
                Ok(mut k) => known_servers.append(&mut k),
                Err(errors) => tracing::warn!(
                    controller = super::NAME,
                    known_server = %server.name_any(),
                    errors = %describe(&errors),
                    "KnownServer skipped"
                ),
            }
        }
    }
    let policies: Api<NetworkPolicy> = Api::all(ctx.client.clone());
    let selector = format!(
        "{}={},{}={}",
        naming::MANAGED_BY_LABEL,
        naming::MANAGED_BY_VALUE,
        naming::SOURCE_LABEL,
        Source::Learned.as_str()
    );
    let policies = cluster::timed(ctx, policies.list(&ListParams::default().labels(&selector)))
        .await
        .map_err(|e| Error::call("listing learned NetworkPolicies", e))?
        .items;
    Ok(Some(Observed {
        neighborhoods,
        listed_groups,
        known_servers,
        generated,
        policies,
    }))
}

fn describe(errors: &[kubefence_k8s::convert::ConvertError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The workload key the builder's output and the neighborhoods share
/// (the builder spells kinds canonically; neighborhoods as labelled).
fn workload_key(w: &WorkloadRef) -> (String, String, String) {
    (
        w.namespace.clone(),
        w.kind.to_ascii_lowercase(),
        w.name.clone(),
    )
}

fn owner_reference(group: Group, object: &ks::NetworkNeighborhood) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: group.api_version().to_string(),
        kind: NEIGHBORHOOD_KIND.to_string(),
        name: object.metadata.name.clone()?,
        uid: object.metadata.uid.clone()?,
        ..OwnerReference::default()
    })
}

/// The GeneratedNetworkPolicies the neighborhoods call for, by
/// (namespace, name): built exactly as `kubefence learn --neighborhood`
/// builds them, owned by every neighborhood of the workload.
fn desired(
    ctx: &Context,
    observed: &Observed,
) -> Result<BTreeMap<(String, String), kf::GeneratedNetworkPolicy>> {
    let mut neighborhoods: Vec<Neighborhood> = Vec::new();
    let mut owners: BTreeMap<(String, String, String), Vec<OwnerReference>> = BTreeMap::new();
    for listed in &observed.neighborhoods {
        let object = &listed.object;
        let at = format!(
            "{}/{}",
            object.metadata.namespace.clone().unwrap_or_default(),
            object.name_any()
        );
        if let Err(e) = convert::check_status(&object.metadata) {
            tracing::debug!(controller = super::NAME, neighborhood = %at, reason = %e.message, "not ready to learn from");
            continue;
        }
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let converted = match convert::neighborhood(object, &namespace) {
            Ok(n) => n.value,
            Err(errors) => {
                tracing::warn!(controller = super::NAME, neighborhood = %at, errors = %describe(&errors), "neighborhood skipped");
                continue;
            }
        };
        // An ownerReference names an object of the owned one's namespace.
        if converted.workload.namespace == namespace
            && let Some(owner) = owner_reference(listed.group, object)
        {
            owners
                .entry(workload_key(&converted.workload))
                .or_default()
                .push(owner);
        }
        neighborhoods.push(converted);
    }
    let options = LearnOptions {
        dns: ctx.config.baseline.dns.clone(),
        ..LearnOptions::default()
    };
    let learned = learn::build(&neighborhoods, &observed.known_servers, &options)?;
    for left in &learned.report.left_out {
        tracing::debug!(controller = super::NAME, subject = %left.subject, reason = %left.reason, "left out of a learned policy");
    }
    let mut out = BTreeMap::new();
    for p in &learned.policies {
        let Some(mut refs) = owners.get(&workload_key(&p.workload)).cloned() else {
            tracing::warn!(controller = super::NAME, policy = %p.policy.name, namespace = %p.policy.namespace,
                "no neighborhood in the workload's namespace to own its GeneratedNetworkPolicy; skipped");
            continue;
        };
        refs.sort_by(|a, b| (&a.api_version, &a.name).cmp(&(&b.api_version, &b.name)));
        let gnp = generated::generated_object(
            &p.policy.name,
            &p.workload,
            &p.policy,
            &p.refs,
            p.annotations.clone(),
        );
        let mut gnp = gnp.to_other_group();
        gnp.metadata.owner_references = Some(refs);
        out.insert((p.policy.namespace.clone(), p.policy.name.clone()), gnp);
    }
    Ok(out)
}

/// The hash an approval is recorded under: SHA-256 of the embedded policy
/// as it is stored (its canonical JSON).
pub fn spec_hash(spec: &ks::EmbeddedNetworkPolicy) -> Result<String> {
    let bytes = serde_json::to_vec(spec)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn has_ownership(meta: &ObjectMeta) -> bool {
    let labels = meta.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get(naming::MANAGED_BY_LABEL) == Some(naming::MANAGED_BY_VALUE)
        && get(naming::SOURCE_LABEL) == Some(Source::Learned.as_str())
}

/// Ours: kubefence's learned labels, and written by kubefence (a copy
/// with our labels that a GitOps tool applies is not ours).
pub fn is_ours(meta: &ObjectMeta) -> bool {
    has_ownership(meta)
        && meta.managed_fields.iter().flatten().any(|e| {
            e.manager.as_deref() == Some(FIELD_MANAGER)
                && matches!(e.operation.as_deref(), Some("Apply" | "Update"))
        })
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn is_approved(meta: &ObjectMeta) -> bool {
    annotation(meta, APPROVED_ANNOTATION) == Some("true")
}

/// The NetworkPolicy an approved GeneratedNetworkPolicy stands for, owned
/// by it; an error when it cannot be enforced as it is.
fn policy_of(gnp: &kf::GeneratedNetworkPolicy) -> std::result::Result<NetworkPolicy, String> {
    let namespace = gnp.metadata.namespace.clone().unwrap_or_default();
    let as_kubescape = gnp.to_other_group();
    if let Err(errors) = generated::generated_policy(&as_kubescape, &namespace) {
        return Err(format!(
            "the generated policy is invalid: {}",
            describe(&errors)
        ));
    }
    if gnp
        .spec
        .metadata
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != namespace)
    {
        return Err("the embedded policy names another namespace".into());
    }
    let selector = gnp.spec.spec.pod_selector.clone().unwrap_or_default();
    if selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
    {
        // Never a policy that selects every pod of the namespace.
        return Err(
            "the embedded policy's podSelector is empty (it would select every pod)".into(),
        );
    }
    let name = gnp
        .spec
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| gnp.name_any());
    let mut labels = gnp.spec.metadata.labels.clone().unwrap_or_default();
    for (k, v) in naming::ownership_labels(Source::Learned) {
        labels.insert(k.to_string(), v);
    }
    let owner = OwnerReference {
        api_version: Group::Kubefence.api_version().to_string(),
        kind: kf::GeneratedNetworkPolicy::KIND.to_string(),
        name: gnp.name_any(),
        uid: gnp.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..OwnerReference::default()
    };
    Ok(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: gnp.spec.metadata.annotations.clone(),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(gnp.spec.spec.clone()),
    })
}

/// Whether `have` already is `want` in everything kubefence sets.
fn policy_matches(have: &NetworkPolicy, want: &NetworkPolicy) -> bool {
    let subset = |w: &Option<BTreeMap<String, String>>, h: &Option<BTreeMap<String, String>>| {
        w.iter()
            .flatten()
            .all(|(k, v)| h.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    have.spec == want.spec
        && subset(&want.metadata.labels, &have.metadata.labels)
        && subset(&want.metadata.annotations, &have.metadata.annotations)
        && have.metadata.owner_references == want.metadata.owner_references
}

/// What enforcing an approved GeneratedNetworkPolicy came to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Enforced {
    Yes { policy: String },
    Conflict(String),
    Invalid(String),
}

async fn enforce(
    ctx: &Context,
    gnp: &kf::GeneratedNetworkPolicy,
    policies: &[NetworkPolicy],
    pass: &mut Pass,
) -> Result<Enforced> {
    let want = match policy_of(gnp) {
        Ok(p) => p,
        Err(message) => return Ok(Enforced::Invalid(message)),
    };
    let namespace = want.metadata.namespace.clone().unwrap_or_default();
    let name = want.metadata.name.clone().unwrap_or_default();
    let shown = format!("NetworkPolicy {namespace}/{name}");
    let existing = policies.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && p.metadata.name.as_deref() == Some(name.as_str())
    });
    let existing = match existing {
        Some(p) => Some(p.clone()),
        // The list holds only policies with our labels: a foreign one of
        // that name is found by reading it.
        None => {
            let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
            cluster::timed(ctx, api.get_opt(&name))
                .await
                .map_err(|e| Error::call(format!("reading {shown}"), e))?
        }
    };
    let owned_by_this = |p: &NetworkPolicy| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == gnp.metadata.uid.as_ref())
    };
    match existing {
        None => match cluster::create_network_policy(ctx, &want).await {
            Ok(_) => {
                pass.writes += 1;
                Ok(Enforced::Yes { policy: shown })
            }
            Err(Error::NameTaken(_)) => {
                pass.writes += 1;
                Ok(Enforced::Conflict(format!(
                    "{shown} was created by someone else meanwhile; left alone"
                )))
            }
            Err(e) => Err(Error::call(format!("creating {shown}"), e)),
        },
        Some(p) if !is_ours(&p.metadata) || !owned_by_this(&p) => Ok(Enforced::Conflict(format!(
            "{shown} exists and is not this GeneratedNetworkPolicy's (kubefence's learned labels, written by kubefence, owned by it); left alone"
        ))),
        Some(p) if policy_matches(&p, &want) => Ok(Enforced::Yes { policy: shown }),
        Some(p) => {
            cluster::apply_network_policy(ctx, &want, p.metadata.resource_version.clone())
                .await
                .map_err(|e| Error::call(format!("applying {shown}"), e))?;
            pass.writes += 1;
            Ok(Enforced::Yes { policy: shown })
        }
    }
}

/// Runs one pass: observe, derive, write the differences. `Ok` with
/// nothing written when the kubefence.dev CRDs are not installed.
pub async fn reconcile(ctx: &Context, installed: &mut Installed) -> Result<Pass> {
    let mut pass = Pass::default();
    let Some(observed) = observe(ctx, installed).await? else {
        return Ok(pass);
    };
    let desired = desired(ctx, &observed)?;
    let mut first_error = None;
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    for stored in &observed.generated {
        let key = (
            stored.metadata.namespace.clone().unwrap_or_default(),
            stored.name_any(),
        );
        done.insert(key.clone());
        let want = desired.get(&key);
        if !is_ours(&stored.metadata) {
            if want.is_some() {
                let shown = format!("GeneratedNetworkPolicy {}/{}", key.0, key.1);
                tracing::warn!(controller = super::NAME, object = %shown, "exists and is not kubefence's; left alone");
                pass.conflicts.push(shown);
            }
            continue;
        }
        let result = if want.is_none() && orphaned(stored, &observed) {
            delete_generated(ctx, stored, &mut pass).await
        } else {
            sync_generated(ctx, stored, want, &observed.policies, &mut pass).await
        };
        if let Err(e) = result {
            tracing::warn!(controller = super::NAME, object = %format!("{}/{}", key.0, key.1), error = %e.full_message(), "reconcile failed");
            first_error.get_or_insert(e);
        }
    }
    for (key, want) in &desired {
        if done.contains(key) {
            continue;
        }
        if let Err(e) = create_generated(ctx, want, &mut pass).await {
            tracing::warn!(controller = super::NAME, object = %format!("{}/{}", key.0, key.1), error = %e.full_message(), "create failed");
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = sweep_policies(ctx, &observed, &mut pass).await {
        first_error.get_or_insert(e);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(pass),
    }
}

/// Every neighborhood that owned `gnp` is gone (from a group that was
/// listed): garbage collection would remove it; do it now, so its
/// NetworkPolicy goes too.
fn orphaned(gnp: &kf::GeneratedNetworkPolicy, observed: &Observed) -> bool {
    let owners: Vec<&OwnerReference> = gnp
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == NEIGHBORHOOD_KIND)
        .collect();
    !owners.is_empty()
        && owners.iter().all(|o| {
            Group::of_api_version(&o.api_version)
                .filter(|g| !o.api_version.is_empty() && observed.listed_groups.contains(g))
                .is_some_and(|g| {
                    !observed.neighborhoods.iter().any(|n| {
                        n.group == g && n.object.metadata.uid.as_deref() == Some(o.uid.as_str())
                    })
                })
        })
}

fn generated_api(ctx: &Context, namespace: &str) -> Api<kf::GeneratedNetworkPolicy> {
    Api::namespaced(ctx.client.clone(), namespace)
}

async fn delete_generated(
    ctx: &Context,
    gnp: &kf::GeneratedNetworkPolicy,
    pass: &mut Pass,
) -> Result<()> {
    let namespace = gnp.metadata.namespace.clone().unwrap_or_default();
    let name = gnp.name_any();
    tracing::info!(controller = super::NAME, object = %format!("{namespace}/{name}"), "its neighborhoods are gone: deleting the GeneratedNetworkPolicy");
    cluster::delete(
        ctx,
        &generated_api(ctx, &namespace),
        GNP_RESOURCE,
        &name,
        gnp.metadata.uid.clone(),
        false,
    )
    .await
    .map_err(|e| {
        Error::call(
            format!("deleting GeneratedNetworkPolicy {namespace}/{name}"),
            e,
        )
    })?;
    pass.writes += 1;
    Ok(())
}

async fn create_generated(
    ctx: &Context,
    want: &kf::GeneratedNetworkPolicy,
    pass: &mut Pass,
) -> Result<()> {
    let namespace = want.metadata.namespace.clone().unwrap_or_default();
    let name = want.name_any();
    let shown = format!("GeneratedNetworkPolicy {namespace}/{name}");
    let identity = serde_json::json!({
        "apiVersion": Group::Kubefence.api_version(),
        "kind": kf::GeneratedNetworkPolicy::KIND,
        "metadata": {"name": name, "namespace": namespace},
    });
    let api = generated_api(ctx, &namespace);
    pass.writes += 1;
    match cluster::create_by_apply(
        ctx,
        &api,
        GNP_RESOURCE,
        &name,
        want,
        &identity,
        ApplyMode::default(),
    )
    .await
    .map_err(|e| Error::call(format!("creating {shown}"), e))?
    {
        Created::Ours(stored) => write_status(ctx, &stored, approval_needed(None), pass).await,
        Created::Taken => {
            tracing::warn!(controller = super::NAME, object = %shown, "created by someone else meanwhile; left alone");
            pass.conflicts.push(shown);
            Ok(())
        }
    }
}

fn approval_needed(recorded: Option<&str>) -> (String, String, String) {
    let message = match recorded {
        None => format!(
            "approval needed: shadow mode, nothing is enforced; review spec, then annotate {APPROVED_ANNOTATION}=\"true\""
        ),
        Some(_) => format!(
            "approval needed: the generated policy changed since it was approved; the approved version stays applied until this one is approved ({APPROVED_ANNOTATION}=\"true\")"
        ),
    };
    ("False".into(), REASON_APPROVAL_NEEDED.into(), message)
}

/// One of our GeneratedNetworkPolicies: enforce what was approved, record
/// the approval, bring the spec up to date (an approval does not carry
/// over to a new spec), and say where it stands in its status.
async fn sync_generated(
    ctx: &Context,
    stored: &kf::GeneratedNetworkPolicy,
    want: Option<&kf::GeneratedNetworkPolicy>,
    policies: &[NetworkPolicy],
    pass: &mut Pass,
) -> Result<()> {
    let namespace = stored.metadata.namespace.clone().unwrap_or_default();
    let name = stored.name_any();
    let shown = format!("GeneratedNetworkPolicy {namespace}/{name}");
    let api = generated_api(ctx, &namespace);
    let stored_hash = spec_hash(&stored.spec)?;
    let mut recorded = annotation(&stored.metadata, APPROVED_HASH_ANNOTATION).map(String::from);
    let mut approved = is_approved(&stored.metadata);
    let mut enforced = None;
    if approved {
        let outcome = enforce(ctx, stored, policies, pass).await?;
        if matches!(outcome, Enforced::Yes { .. }) {
            recorded = Some(stored_hash.clone());
        }
        enforced = Some(outcome);
    }
    // What the object should be: the newly generated spec (or the stored
    // one when its neighborhood cannot be read now), with the recorded
    // approval.
    let mut body = want.cloned().unwrap_or_else(|| {
        let mut keep = kf::GeneratedNetworkPolicy::new(
            ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: stored.metadata.labels.clone(),
                owner_references: stored.metadata.owner_references.clone(),
                ..ObjectMeta::default()
            },
            stored.spec.clone(),
        );
        keep.policy_ref = stored.policy_ref.clone();
        keep
    });
    body.metadata.annotations = recorded
        .clone()
        .map(|h| BTreeMap::from([(APPROVED_HASH_ANNOTATION.to_string(), h)]));
    let spec_changes = body.spec != stored.spec;
    let new_hash = spec_hash(&body.spec)?;
    let mut resource_version = stored.metadata.resource_version.clone();
    if approved && spec_changes && recorded.as_deref() != Some(new_hash.as_str()) {
        // The approval was for the stored spec: withdraw it before the
        // spec changes, so a crash in between never leaves an approval on
        // a spec nobody reviewed.
        let after =
            cluster::remove_annotation(ctx, &api, GNP_RESOURCE, &name, APPROVED_ANNOTATION, "true")
                .await
                .map_err(|e| Error::call(format!("withdrawing the approval of {shown}"), e))?;
        pass.writes += 1;
        resource_version = after.metadata.resource_version.clone();
        approved = false;
    }
    let unchanged = !spec_changes
        && body.policy_ref == stored.policy_ref
        && body.metadata.owner_references == stored.metadata.owner_references
        && annotation(&stored.metadata, APPROVED_HASH_ANNOTATION) == recorded.as_deref()
        && body
            .metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| stored.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let mut current = stored.clone();
    if !unchanged {
        // On the version read (or just written): an approval added in
        // between makes this a conflict, and the next pass sees it.
        body.metadata.resource_version = resource_version;
        let mode = ApplyMode {
            force: true,
            dry_run: false,
        };
        current = cluster::apply(ctx, &api, GNP_RESOURCE, &name, &body, mode)
            .await
            .map_err(|e| Error::call(format!("applying {shown}"), e))?;
        pass.writes += 1;
    }
    let condition = match (&enforced, approved) {
        (Some(Enforced::Invalid(message)), _) => {
            ("False".into(), REASON_INVALID.into(), message.clone())
        }
        (Some(Enforced::Conflict(message)), _) => {
            pass.conflicts.push(message.clone());
            ("False".into(), REASON_CONFLICT.into(), message.clone())
        }
        (Some(Enforced::Yes { policy }), true) => (
            "True".into(),
            REASON_ENFORCED.into(),
            format!("approved; applied as {policy}"),
        ),
        _ => approval_needed(recorded.as_deref()),
    };
    write_status(ctx, &current, condition, pass).await
}

/// Sets the condition when it differs from the stored one.
async fn write_status(
    ctx: &Context,
    gnp: &kf::GeneratedNetworkPolicy,
    (status, reason, message): (String, String, String),
    pass: &mut Pass,
) -> Result<()> {
    let previous = gnp
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION));
    if previous.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return Ok(());
    }
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: CONDITION.into(),
        status,
        reason,
        message,
        last_transition_time,
        observed_generation: gnp.metadata.generation,
    };
    let namespace = gnp.metadata.namespace.clone().unwrap_or_default();
    let name = gnp.name_any();
    let body = serde_json::json!({
        "apiVersion": Group::Kubefence.api_version(),
        "kind": kf::GeneratedNetworkPolicy::KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": {"conditions": [condition]},
    });
    cluster::apply_status(
        ctx,
        &generated_api(ctx, &namespace),
        GNP_RESOURCE,
        &name,
        &body,
    )
    .await
    .map_err(|e| {
        Error::call(
            format!("writing the status of GeneratedNetworkPolicy {namespace}/{name}"),
            e,
        )
    })?;
    pass.writes += 1;
    Ok(())
}

/// Deletes each of our learned NetworkPolicies whose GeneratedNetworkPolicy
/// is gone (no garbage collector needed; one that runs finds it gone).
async fn sweep_policies(ctx: &Context, observed: &Observed, pass: &mut Pass) -> Result<()> {
    let live: BTreeSet<&str> = observed
        .generated
        .iter()
        .filter_map(|g| g.metadata.uid.as_deref())
        .collect();
    for p in &observed.policies {
        if !is_ours(&p.metadata) {
            continue;
        }
        let owners: Vec<&OwnerReference> = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| {
                o.kind == kf::GeneratedNetworkPolicy::KIND
                    && o.api_version == Group::Kubefence.api_version()
            })
            .collect();
        if owners.is_empty() || owners.iter().any(|o| live.contains(o.uid.as_str())) {
            continue;
        }
        let namespace = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.name_any();
        tracing::info!(controller = super::NAME, policy = %format!("{namespace}/{name}"), "its GeneratedNetworkPolicy is gone: deleting the NetworkPolicy");
        cluster::delete_network_policy(ctx, &namespace, &name, p.metadata.uid.clone())
            .await
            .map_err(|e| Error::call(format!("deleting NetworkPolicy {namespace}/{name}"), e))?;
        pass.writes += 1;
    }
    Ok(())
}

/// The resource of `T` (for tests and watches).
pub fn resource_of<T: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<T>(&())
}
