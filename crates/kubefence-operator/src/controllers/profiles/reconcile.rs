//! One pass of the profiles controller over the watch caches: build each
//! profile's policy (core `profile::build`), compare it with the cached
//! copy, write only the difference, and report the status.
//!
//! ```text
//!  IsolationProfile ─▶ to_core ─▶ profile::build (guardrails, proof) ─▶ desired NetworkPolicy
//!  cached policy (same name):  none ─▶ create (server-side apply, no force)
//!                              ours, equal ─▶ nothing (zero requests)
//!                              ours, different ─▶ server-side apply on the version read
//!                              someone else's ─▶ PolicyNameTaken, never touched
//!  the namespace's other policies ─▶ profile::reopened_paths ─▶ Effective
//!  status (only when it changed): matchedPods, policyName, conditions, paths
//! ```
//!
//! Pods are read from the cache only, to count them: a pod event never
//! starts a pass, and a pass never writes to a pod. `matchedPods` is
//! therefore as fresh as the last pass (profile or policy change, resync).
//!
//! agent-sandbox's SandboxTemplates (when their CRD is installed and the
//! operator keeps the template defaults on) are subjects too: each gets
//! the default profile of [`kubefence_k8s::sandbox`], owned by the
//! template. A template is not kubefence's to write, so what a profile
//! says in its status a template hears as Events.
//!
//! Coverage: a subject whose selector names templates (by their hash
//! label) holds every pod of those templates by ownership (pod → Sandbox →
//! claim / warm pool → template). Pods it misses (agent-sandbox versions
//! that label only pods of warm pools) are listed (`uncoveredPods`,
//! condition `Covered`, a Warning event) and held by a second policy, the
//! same rules over their `sandbox-name-hash` label, which every sandbox pod
//! carries. It changes only when that set of pods does.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::{Resource, ResourceExt};
use kubefence_core::Cluster;
use kubefence_core::naming::{self, Source};
use kubefence_core::profile::{self, Built, Profile, ProfileConfig};
use kubefence_core::ruleset::Engine;
use kubefence_k8s::crd::profile::{
    CONDITION_COVERED, CONDITION_EFFECTIVE, CONDITION_READY, IsolationProfile,
    IsolationProfileStatus,
};
use kubefence_k8s::crd::quarantine::{RemainingPathStatus, set_condition};
use kubefence_k8s::sandbox::{self, Ownership, Template};
use serde_json::json;

use crate::cluster;
use crate::context::Context;
use crate::controllers::baseline::diff::Comparable;
use crate::error::{Error, Result};

/// Ready's reasons.
pub const REASON_IN_SYNC: &str = "PolicyInSync";
pub const REASON_NAME_TAKEN: &str = "PolicyNameTaken";
pub const REASON_INVALID: &str = "InvalidSpec";
pub const REASON_DISABLED: &str = "Disabled";
/// Effective's reasons.
pub const REASON_REOPENED: &str = "PathsReopened";
pub const REASON_NONE_REOPENED: &str = "NoPathReopened";
/// Ready's reasons for engines that deny: the engine's kind is not served
/// (the NetworkPolicy alone is written), or it cannot say the guardrails.
pub const REASON_ENGINE_NOT_INSTALLED: &str = "EngineNotInstalled";
pub const REASON_UNSUPPORTED: &str = "Unsupported";
/// Covered's reasons.
pub const REASON_ALL_COVERED: &str = "AllPodsSelected";
pub const REASON_UNCOVERED: &str = "PodsNotSelected";

const RESOURCE: &str = "isolationprofiles";

/// What a pass reads: the watch caches.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub profiles: Vec<Arc<IsolationProfile>>,
    pub policies: Vec<Arc<NetworkPolicy>>,
    pub pods: Vec<Arc<PartialObjectMeta<Pod>>>,
    /// agent-sandbox's objects (empty when its CRDs are not installed).
    pub sandbox: SandboxObjects,
    /// kubefence's guardrail objects and the engines served.
    pub guardrails: GuardrailObjects,
}

/// The engines whose kinds the API server serves, and kubefence's
/// guardrail objects of them (by their labels).
#[derive(Clone, Debug, Default)]
pub struct GuardrailObjects {
    pub served: Vec<(Engine, kube::core::ApiResource)>,
    pub objects: Vec<(Engine, Arc<DynamicObject>)>,
}

/// A guardrail object: engine, namespace (namespaced kinds), name.
type GuardrailKey = (Engine, Option<String>, String);

/// Where the guardrail object of `core` lives.
fn guardrail_key(core: &Profile) -> GuardrailKey {
    let (namespaced, cluster) = profile::guardrail_names(core);
    if kubefence_k8s::adapters::api(core.engine).namespaced {
        (core.engine, Some(core.namespace.clone()), namespaced)
    } else {
        (core.engine, None, cluster)
    }
}

/// agent-sandbox's objects, as their watches cached them.
#[derive(Clone, Debug, Default)]
pub struct SandboxObjects {
    /// `extensions.agents.x-k8s.io/<version>` the templates were read at;
    /// `None` when the CRD is not installed.
    pub template_api_version: Option<String>,
    /// Give templates their default profile (`--sandbox-template-defaults`);
    /// off, templates are still read for coverage.
    pub template_defaults: bool,
    pub templates: Vec<Arc<DynamicObject>>,
    /// Metadata only.
    pub sandboxes: Vec<Arc<DynamicObject>>,
    pub claims: Vec<Arc<DynamicObject>>,
    pub pools: Vec<Arc<DynamicObject>>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// NetworkPolicy writes (create, apply, delete).
    pub policy_writes: usize,
    /// Status writes.
    pub status_writes: usize,
    /// Profiles whose policy name someone else holds.
    pub conflicts: Vec<String>,
    /// Events recorded on templates.
    pub events: usize,
}

/// The build of one profile, kept while its generation is unchanged (the
/// proof runs the engine: once per spec, not once per pass).
type BuildCache = HashMap<String, (Option<i64>, std::result::Result<(Profile, Built), String>)>;

/// The controller's memory between passes.
#[derive(Default)]
pub struct State {
    pub config: ProfileConfig,
    builds: BuildCache,
    /// What was last reported on each template (by Events): a template
    /// has no status of ours to compare with.
    template_reports: HashMap<String, IsolationProfileStatus>,
    /// `spec.dnsPolicy` of the pods of `dns: public` profiles, by pod uid
    /// (immutable, so read once per pod; see [`dns_warnings`]).
    dns_policies: HashMap<String, String>,
}

impl State {
    pub fn new(config: ProfileConfig) -> Self {
        Self {
            config,
            builds: HashMap::new(),
            template_reports: HashMap::new(),
            dns_policies: HashMap::new(),
        }
    }
}

/// Whose policy a profile's is: an IsolationProfile, or a SandboxTemplate
/// given its default profile.
struct Subject {
    profile: Arc<IsolationProfile>,
    owner: OwnerReference,
    /// Set for a template's default profile.
    template: Option<Template>,
}

impl Subject {
    fn kind(&self) -> &str {
        &self.owner.kind
    }

    fn id(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind(),
            self.profile.namespace().unwrap_or_default(),
            self.profile.name_any()
        )
    }
}

/// The policy of a profile is ours when it carries kubefence's profile
/// labels and an ownerReference to this very profile (its uid).
pub fn is_ours(np: &NetworkPolicy, profile_uid: &str) -> bool {
    is_owned_by(np, profile_uid, &IsolationProfile::kind(&()))
}

/// [`is_ours`] for an owner of any kind (a SandboxTemplate).
fn is_owned_by(np: &NetworkPolicy, owner_uid: &str, owner_kind: &str) -> bool {
    let labels = np.labels();
    labels.get(naming::MANAGED_BY_LABEL).map(String::as_str) == Some(naming::MANAGED_BY_VALUE)
        && labels.get(naming::SOURCE_LABEL).map(String::as_str) == Some(Source::Profile.as_str())
        && np
            .owner_references()
            .iter()
            .any(|o| o.uid == owner_uid && o.kind == owner_kind)
}

fn owner_reference(p: &IsolationProfile) -> OwnerReference {
    OwnerReference {
        api_version: IsolationProfile::api_version(&()).into_owned(),
        kind: IsolationProfile::kind(&()).into_owned(),
        name: p.name_any(),
        uid: p.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The NetworkPolicy object for a built profile.
pub fn desired_policy(p: &IsolationProfile, built: &Built) -> NetworkPolicy {
    owned_policy(&owner_reference(p), built)
}

fn owned_policy(owner: &OwnerReference, built: &Built) -> NetworkPolicy {
    let mut np = kubefence_k8s::render::network_policy(&built.policy);
    np.metadata.labels = Some(built.labels.clone());
    np.metadata.owner_references = Some(vec![owner.clone()]);
    np
}

/// The policy holding the pool's pods that the profile's selector misses:
/// the same rules, over the `sandbox-name-hash` of each such pod.
fn uncovered_policy(
    owner: &OwnerReference,
    core: &Profile,
    built: &Built,
    name_hashes: &[String],
) -> NetworkPolicy {
    let mut np = owned_policy(owner, built);
    np.metadata.name = Some(core.uncovered_policy_name());
    if let Some(spec) = np.spec.as_mut() {
        spec.pod_selector = Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: sandbox::SANDBOX_NAME_HASH_LABEL.to_string(),
                operator: "In".to_string(),
                values: Some(name_hashes.to_vec()),
            }]),
        });
    }
    np
}

/// Runs one pass over `snapshot`.
pub async fn pass(ctx: &Context, state: &mut State, snapshot: &Snapshot) -> Result<Pass> {
    let mut out = Pass::default();
    let policies: HashMap<(String, String), &Arc<NetworkPolicy>> = snapshot
        .policies
        .iter()
        .map(|np| ((np.namespace().unwrap_or_default(), np.name_any()), np))
        .collect();
    let mut pods_by_ns: HashMap<String, Vec<&PartialObjectMeta<Pod>>> = HashMap::new();
    for pod in &snapshot.pods {
        pods_by_ns
            .entry(pod.namespace().unwrap_or_default())
            .or_default()
            .push(pod);
    }
    let templates = read_templates(&snapshot.sandbox);
    let ownership = if templates.is_empty() {
        Ownership::default()
    } else {
        Ownership::new(
            &templates,
            &snapshot.sandbox.sandboxes,
            &snapshot.sandbox.claims,
            &snapshot.sandbox.pools,
        )
    };
    let subjects = subjects(snapshot, &templates);
    // The namespaces' policies as the engine reads them, converted once.
    let mut namespaces: HashMap<String, Cluster> = HashMap::new();
    let live: std::collections::HashSet<&str> =
        subjects.iter().map(|s| s.owner.uid.as_str()).collect();
    state.builds.retain(|uid, _| live.contains(uid.as_str()));
    state
        .template_reports
        .retain(|uid, _| live.contains(uid.as_str()));
    let live_pods: std::collections::HashSet<&str> = snapshot
        .pods
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    state
        .dns_policies
        .retain(|uid, _| live_pods.contains(uid.as_str()));
    let mut first_error = None;
    // Guardrail objects a live profile wants, whether or not its pass
    // succeeds: the sweep below never removes one of them.
    let wanted: std::collections::HashSet<GuardrailKey> = subjects
        .iter()
        .filter(|s| s.profile.meta().deletion_timestamp.is_none() && s.profile.spec.enabled)
        .filter(|s| s.profile.spec.engine.adapter() != Engine::NetworkPolicy)
        .map(|s| {
            let mut core = Profile::new(
                &s.profile.namespace().unwrap_or_default(),
                &s.profile.name_any(),
                Default::default(),
            );
            core.kind = s.kind().to_string();
            core.engine = s.profile.spec.engine.adapter();
            guardrail_key(&core)
        })
        .collect();
    for subject in &subjects {
        if subject.profile.meta().deletion_timestamp.is_some() {
            continue;
        }
        let ns = subject.profile.namespace().unwrap_or_default();
        let cluster = namespaces
            .entry(ns.clone())
            .or_insert_with(|| namespace_cluster(&ns, &snapshot.policies));
        let pool = Pool {
            pods: pods_by_ns.get(&ns).map(Vec::as_slice).unwrap_or(&[]),
            templates: &templates,
            ownership: &ownership,
        };
        let written = Written {
            policies: &policies,
            guardrails: &snapshot.guardrails,
        };
        if let Err(e) = reconcile_one(ctx, state, subject, &written, &pool, cluster, &mut out).await
        {
            tracing::warn!(controller = super::NAME, subject = %subject.id(), error = %e.full_message(), "reconcile failed");
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = sweep_guardrails(ctx, &snapshot.guardrails, &wanted, &mut out).await {
        first_error.get_or_insert(e);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// What is in the cluster that a subject's pass compares with.
struct Written<'a> {
    policies: &'a HashMap<(String, String), &'a Arc<NetworkPolicy>>,
    guardrails: &'a GuardrailObjects,
}

/// Deletes kubefence's guardrail objects that no live profile wants (its
/// profile deleted or disabled, its engine changed): exactly the object
/// seen (uid precondition), after the pass wrote the new ones, so an
/// engine change leaves no gap.
async fn sweep_guardrails(
    ctx: &Context,
    objects: &GuardrailObjects,
    wanted: &std::collections::HashSet<GuardrailKey>,
    out: &mut Pass,
) -> Result<()> {
    for (engine, obj) in &objects.objects {
        let key = (*engine, obj.namespace(), obj.name_any());
        if wanted.contains(&key) || !obj.labels().contains_key(profile::PROFILE_LABEL) {
            continue;
        }
        let Some((_, resource)) = objects.served.iter().find(|(e, _)| e == engine) else {
            continue;
        };
        let api: Api<DynamicObject> = match &key.1 {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
            None => Api::all_with(ctx.client.clone(), resource),
        };
        cluster::delete(ctx, &api, &resource.plural, &key.2, obj.uid(), false)
            .await
            .map_err(|e| Error::call(format!("deleting {} {}", resource.kind, key.2), e))?;
        out.policy_writes += 1;
    }
    Ok(())
}

/// The templates of the snapshot (none when the CRD is not installed).
fn read_templates(objects: &SandboxObjects) -> Vec<Template> {
    let Some(api_version) = &objects.template_api_version else {
        return Vec::new();
    };
    objects
        .templates
        .iter()
        .map(|t| Template::from_object(t, api_version))
        .collect()
}

/// Every profile, then every template's default profile (when on).
fn subjects(snapshot: &Snapshot, templates: &[Template]) -> Vec<Subject> {
    let mut out: Vec<Subject> = snapshot
        .profiles
        .iter()
        .map(|p| Subject {
            profile: p.clone(),
            owner: owner_reference(p),
            template: None,
        })
        .collect();
    if snapshot.sandbox.template_defaults {
        out.extend(templates.iter().map(|t| Subject {
            profile: Arc::new(t.default_profile()),
            owner: t.owner_reference(),
            template: Some(t.clone()),
        }));
    }
    out
}

/// What a subject's coverage is judged on: the pods of its namespace and
/// the templates they may belong to.
struct Pool<'a> {
    pods: &'a [&'a PartialObjectMeta<Pod>],
    templates: &'a [Template],
    ownership: &'a Ownership,
}

/// Pods that belong to a template the subject's selector names but that
/// the selector misses: their names and, when they carry one, their
/// `sandbox-name-hash` (what the uncovered policy selects them by).
#[derive(Clone, Debug, Default, PartialEq)]
struct Coverage {
    /// The subject names templates: coverage applies.
    applies: bool,
    uncovered: Vec<String>,
    name_hashes: Vec<String>,
}

fn coverage(subject: &Subject, core: &Profile, pool: &Pool<'_>) -> Coverage {
    let hashes = sandbox::selected_hashes(&subject.profile.spec.pod_selector);
    if hashes.is_empty() {
        return Coverage::default();
    }
    let ns = core.namespace.as_str();
    let names: std::collections::HashSet<&str> = pool
        .templates
        .iter()
        .filter(|t| t.namespace == ns && !t.hashes.is_disjoint(&hashes))
        .map(|t| t.name.as_str())
        .collect();
    let mut out = Coverage {
        applies: true,
        ..Coverage::default()
    };
    if names.is_empty() || pool.ownership.is_empty() {
        return out;
    }
    for pod in pool.pods {
        let Some(template) = pool.ownership.template_of_pod(ns, pod.owner_references()) else {
            continue;
        };
        if !names.contains(template) || core.pod_selector.matches(pod.labels()) {
            continue;
        }
        out.uncovered.push(format!("{ns}/{}", pod.name_any()));
        if let Some(h) = pod.labels().get(sandbox::SANDBOX_NAME_HASH_LABEL) {
            out.name_hashes.push(h.clone());
        }
    }
    out.uncovered.sort();
    out.name_hashes.sort();
    out.name_hashes.dedup();
    out
}

fn namespace_cluster(ns: &str, policies: &[Arc<NetworkPolicy>]) -> Cluster {
    let mut cluster = Cluster::default();
    for np in policies
        .iter()
        .filter(|np| np.namespace().as_deref() == Some(ns))
    {
        match kubefence_k8s::convert::network_policy(np, ns) {
            Ok(core) => cluster.policies.push(core),
            Err(e) => {
                tracing::debug!(policy = %np.name_any(), error = %e, "unreadable policy left out of the Effective analysis")
            }
        }
    }
    cluster.add_implicit_namespaces();
    cluster
}

fn build_of<'a>(
    state: &'a mut State,
    subject: &Subject,
) -> &'a std::result::Result<(Profile, Built), String> {
    let p = &subject.profile;
    let uid = subject.owner.uid.clone();
    let generation = p.meta().generation;
    let config = state.config.clone();
    let entry = state
        .builds
        .entry(uid)
        .or_insert_with(|| (None, Err(String::new())));
    if entry.0 != generation || generation.is_none() {
        let ns = p.namespace().unwrap_or_default();
        let unreadable = subject.template.as_ref().and_then(|t| t.error.clone());
        let result = match unreadable {
            Some(e) => Err(e),
            None => kubefence_k8s::profile::to_core(p, &ns).map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
        .and_then(|mut core| {
            core.kind = subject.kind().to_string();
            profile::build(&core, &config)
                .map(|built| (core, built))
                .map_err(|e| e.to_string())
        });
        *entry = (generation, result);
    }
    &entry.1
}

/// What the status should say about the policy.
#[derive(Default)]
struct Verdict {
    ready: bool,
    reason: &'static str,
    message: String,
    enforced: bool,
    /// The guardrail denies are written and as they should be.
    denies: bool,
}

async fn reconcile_one(
    ctx: &Context,
    state: &mut State,
    subject: &Subject,
    written: &Written<'_>,
    pool: &Pool<'_>,
    cluster: &Cluster,
    out: &mut Pass,
) -> Result<()> {
    let policies = written.policies;
    let p = subject.profile.as_ref();
    let ns = p.namespace().unwrap_or_default();
    let built = build_of(state, subject).clone();
    let mut status = IsolationProfileStatus {
        observed_generation: p.meta().generation,
        ..IsolationProfileStatus::default()
    };
    let previous = match &subject.template {
        Some(_) => state
            .template_reports
            .get(&subject.owner.uid)
            .cloned()
            .unwrap_or_default(),
        None => p.status.clone().unwrap_or_default(),
    };
    let mut conditions = previous.conditions.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = p.meta().generation;
    let mut covered = None;
    let verdict = match &built {
        Err(message) => Verdict {
            ready: false,
            reason: REASON_INVALID,
            message: message.clone(),
            ..Verdict::default()
        },
        Ok((core, built)) => {
            status.policy_name = Some(built.policy.name.clone());
            status.matched_pods = Some(
                i64::try_from(
                    pool.pods
                        .iter()
                        .filter(|pod| core.pod_selector.matches(pod.labels()))
                        .count(),
                )
                .unwrap_or(i64::MAX),
            );
            status.narrowed = built.narrowed.iter().map(ToString::to_string).collect();
            status.warnings = baseline_warnings(core, cluster);
            status
                .warnings
                .extend(dns_warnings(ctx, state, subject, core, pool).await?);
            let key = (ns.clone(), built.policy.name.clone());
            let observed = policies.get(&key).map(|np| np.as_ref());
            let verdict =
                write_policy(ctx, subject, core, built, observed, written.guardrails, out).await?;
            let cover = coverage(subject, core, pool);
            let uncovered_key = (ns.clone(), core.uncovered_policy_name());
            let uncovered_observed = policies.get(&uncovered_key).map(|np| np.as_ref());
            let hold = verdict.enforced && !cover.name_hashes.is_empty();
            write_uncovered(
                ctx,
                subject,
                core,
                built,
                &cover,
                hold,
                uncovered_observed,
                out,
            )
            .await?;
            if cover.applies {
                status.uncovered_pods = cover.uncovered.clone();
                covered = Some(cover);
            }
            if verdict.enforced {
                // Denies that are not written hold nothing.
                let mut judged = core.clone();
                if !verdict.denies {
                    judged.engine = Engine::NetworkPolicy;
                }
                let eff = profile::reopened_paths(&judged, built, cluster);
                status.reopened_paths =
                    eff.reopened.iter().map(RemainingPathStatus::from).collect();
                let (ok, reason, message) = if eff.effective() {
                    (
                        true,
                        REASON_NONE_REOPENED,
                        "no other policy of the namespace reopens a path the profile closes"
                            .to_string(),
                    )
                } else {
                    let listed: Vec<String> = eff
                        .reopened
                        .iter()
                        .take(3)
                        .map(ToString::to_string)
                        .collect();
                    (
                        false,
                        REASON_REOPENED,
                        format!(
                            "{} path(s) reopened by other policies (NetworkPolicies add up): {}",
                            eff.reopened.len(),
                            listed.join("; ")
                        ),
                    )
                };
                set_condition(
                    &mut conditions,
                    CONDITION_EFFECTIVE,
                    ok,
                    reason,
                    &message,
                    generation,
                    &now,
                );
            }
            verdict
        }
    };
    if !verdict.enforced {
        conditions.retain(|c| c.type_ != CONDITION_EFFECTIVE);
    }
    match &covered {
        Some(cover) => {
            let (ok, reason, message) = if cover.uncovered.is_empty() {
                (
                    true,
                    REASON_ALL_COVERED,
                    "every pod of the pool's templates is selected".to_string(),
                )
            } else {
                let unlabelled =
                    cover.uncovered.len() - cover.name_hashes.len().min(cover.uncovered.len());
                (
                    false,
                    REASON_UNCOVERED,
                    format!(
                        "{} pod(s) of the pool's templates lack the template label, so the policy's selector misses them{}: {}",
                        cover.uncovered.len(),
                        if unlabelled == 0 {
                            format!(
                                "; policy {} holds them by their sandbox-name-hash",
                                uncovered_name(subject)
                            )
                        } else {
                            format!(
                                "; {unlabelled} carry no sandbox-name-hash either and are not held"
                            )
                        },
                        cover
                            .uncovered
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            };
            set_condition(
                &mut conditions,
                CONDITION_COVERED,
                ok,
                reason,
                &message,
                generation,
                &now,
            );
        }
        None => conditions.retain(|c| c.type_ != CONDITION_COVERED),
    }
    set_condition(
        &mut conditions,
        CONDITION_READY,
        verdict.ready,
        verdict.reason,
        &verdict.message,
        generation,
        &now,
    );
    status.conditions = conditions;
    let status = status.bounded();
    if status == previous {
        return Ok(());
    }
    match &subject.template {
        Some(template) => {
            report_on_template(ctx, template, &previous, &status, out).await;
            state
                .template_reports
                .insert(subject.owner.uid.clone(), status);
        }
        None => {
            if uncovered_changed(&previous, &status) && !status.uncovered_pods.is_empty() {
                let regarding = ObjectReference {
                    api_version: Some(subject.owner.api_version.clone()),
                    kind: Some(subject.owner.kind.clone()),
                    name: Some(subject.owner.name.clone()),
                    namespace: Some(ns.clone()),
                    uid: Some(subject.owner.uid.clone()),
                    ..ObjectReference::default()
                };
                let message = condition_message(&status, CONDITION_COVERED);
                cluster::publish_event(ctx, &regarding, true, REASON_UNCOVERED, message).await;
            }
            let api: Api<IsolationProfile> = Api::namespaced(ctx.client.clone(), &ns);
            let body = json!({
                "apiVersion": IsolationProfile::api_version(&()),
                "kind": IsolationProfile::kind(&()),
                "metadata": {"name": p.name_any(), "namespace": ns},
                "status": status,
            });
            cluster::apply_status(ctx, &api, RESOURCE, &p.name_any(), &body)
                .await
                .map_err(|e| {
                    Error::call(
                        format!("status of IsolationProfile {ns}/{}", p.name_any()),
                        e,
                    )
                })?;
            out.status_writes += 1;
        }
    }
    Ok(())
}

fn uncovered_name(subject: &Subject) -> String {
    let p = &subject.profile;
    let mut core = Profile::new(
        &p.namespace().unwrap_or_default(),
        &p.name_any(),
        Default::default(),
    );
    core.kind = subject.kind().to_string();
    core.uncovered_policy_name()
}

fn uncovered_changed(before: &IsolationProfileStatus, after: &IsolationProfileStatus) -> bool {
    before.uncovered_pods != after.uncovered_pods
}

fn condition_message(status: &IsolationProfileStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A template hears by Events what a profile's status says: each
/// condition whose status or reason changed (Warning when False), once.
async fn report_on_template(
    ctx: &Context,
    template: &Template,
    before: &IsolationProfileStatus,
    after: &IsolationProfileStatus,
    out: &mut Pass,
) {
    let regarding = ObjectReference {
        api_version: Some(template.api_version.clone()),
        kind: Some(sandbox::TEMPLATE_KIND.to_string()),
        name: Some(template.name.clone()),
        namespace: Some(template.namespace.clone()),
        uid: Some(template.uid.clone()),
        ..ObjectReference::default()
    };
    for c in &after.conditions {
        let was = before.conditions.iter().find(|b| b.type_ == c.type_);
        if was
            .is_some_and(|b| b.status == c.status && b.reason == c.reason && b.message == c.message)
        {
            continue;
        }
        let warning = c.status != "True";
        if !warning && was.is_none() && c.type_ != CONDITION_READY {
            // Nothing to say about a condition that was always fine.
            continue;
        }
        cluster::publish_event(
            ctx,
            &regarding,
            warning,
            &c.reason,
            format!("{}: {}", c.type_, c.message),
        )
        .await;
        out.events += 1;
    }
}

/// Writes (or not) the policy, and for an engine that denies its
/// guardrail object; says what the Ready condition reports.
#[allow(clippy::too_many_arguments)]
async fn write_policy(
    ctx: &Context,
    subject: &Subject,
    core: &Profile,
    built: &Built,
    observed: Option<&NetworkPolicy>,
    guardrails: &GuardrailObjects,
    out: &mut Pass,
) -> Result<Verdict> {
    let p = subject.profile.as_ref();
    let ns = p.namespace().unwrap_or_default();
    let name = built.policy.name.clone();
    let id = format!("{ns}/{name}");
    let ours = observed.filter(|np| is_owned_by(np, &subject.owner.uid, subject.kind()));
    if observed.is_some() && ours.is_none() {
        out.conflicts.push(id.clone());
        return Ok(Verdict {
            ready: false,
            reason: REASON_NAME_TAKEN,
            message: format!(
                "NetworkPolicy {id} exists and is not this {}'s (no kubefence profile labels or no ownerReference to it); left alone",
                subject.kind()
            ),
            ..Verdict::default()
        });
    }
    if !p.spec.enabled {
        if let Some(np) = ours {
            cluster::delete_network_policy(ctx, &ns, &name, np.uid())
                .await
                .map_err(|e| Error::call(format!("deleting NetworkPolicy {id}"), e))?;
            out.policy_writes += 1;
        }
        return Ok(Verdict {
            ready: false,
            reason: REASON_DISABLED,
            message: match subject.template {
                Some(_) => format!(
                    "annotation {}={} opts the template out: no policy",
                    sandbox::ISOLATION_ANNOTATION,
                    sandbox::ISOLATION_DISABLED
                ),
                None => "spec.enabled is false: no policy".to_string(),
            },
            ..Verdict::default()
        });
    }
    let desired = owned_policy(&subject.owner, built);
    if !sync_policy(ctx, &desired, ours, &id, out).await? {
        return Ok(Verdict {
            ready: false,
            reason: REASON_NAME_TAKEN,
            message: format!(
                "NetworkPolicy {id} was created by someone else meanwhile; left alone"
            ),
            ..Verdict::default()
        });
    }
    let narrowed = if built.narrowed.is_empty() {
        String::new()
    } else {
        format!(
            "; the guardrails narrowed {} custom rule(s)",
            built.narrowed.len()
        )
    };
    let in_sync = format!(
        "NetworkPolicy {id} is as the {} says{narrowed}",
        subject.kind()
    );
    if !core.denies_blocked() {
        return Ok(Verdict {
            ready: true,
            reason: REASON_IN_SYNC,
            message: in_sync,
            enforced: true,
            denies: false,
        });
    }
    let kind = kubefence_k8s::adapters::api(core.engine).kind;
    Ok(
        match write_guardrails(ctx, subject, core, built, guardrails, out).await? {
            Guardrails::InSync(object) => Verdict {
                ready: true,
                reason: REASON_IN_SYNC,
                message: format!("{in_sync}; {kind} {object} denies egress to the blocked ranges"),
                enforced: true,
                denies: true,
            },
            Guardrails::NotInstalled => Verdict {
                ready: false,
                reason: REASON_ENGINE_NOT_INSTALLED,
                message: format!(
                    "{in_sync}; the API server does not serve {kind} ({}), so the guardrails are not written as denies: other policies can reopen blocked ranges",
                    kubefence_k8s::adapters::api(core.engine).api_version()
                ),
                enforced: true,
                denies: false,
            },
            Guardrails::Unsupported(why) => Verdict {
                ready: false,
                reason: REASON_UNSUPPORTED,
                message: format!("{in_sync}; {why}"),
                enforced: true,
                denies: false,
            },
            Guardrails::Taken(object) => Verdict {
                ready: false,
                reason: REASON_NAME_TAKEN,
                message: format!(
                    "{in_sync}; {kind} {object} exists and is not kubefence's; left alone"
                ),
                enforced: true,
                denies: false,
            },
        },
    )
}

/// What became of a profile's guardrail object.
enum Guardrails {
    /// Written, or already right (its name).
    InSync(String),
    NotInstalled,
    Unsupported(String),
    /// Someone else holds the name.
    Taken(String),
}

/// Creates, applies or leaves the profile's guardrail object, as with its
/// NetworkPolicy: nothing when the watched copy says what it should.
async fn write_guardrails(
    ctx: &Context,
    subject: &Subject,
    core: &Profile,
    built: &Built,
    objects: &GuardrailObjects,
    out: &mut Pass,
) -> Result<Guardrails> {
    let Some((_, resource)) = objects.served.iter().find(|(e, _)| *e == core.engine) else {
        return Ok(Guardrails::NotInstalled);
    };
    let mut desired = match kubefence_k8s::adapters::profile_guardrails(core, built) {
        None => return Ok(Guardrails::NotInstalled),
        Some(Err(e)) => return Ok(Guardrails::Unsupported(e.to_string())),
        Some(Ok(r)) => r.object,
    };
    let (engine, namespace, name) = guardrail_key(core);
    if namespace.is_some() {
        // Namespaced: owned by the profile, removed with it. A
        // cluster-scoped object cannot have a namespaced owner: the sweep
        // removes it.
        desired["metadata"]["ownerReferences"] = json!([subject.owner]);
    }
    let id = match &namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
        None => Api::all_with(ctx.client.clone(), resource),
    };
    let observed = objects
        .objects
        .iter()
        .find(|(e, o)| *e == engine && o.name_any() == name && o.namespace() == namespace)
        .map(|(_, o)| o);
    match observed {
        None => {
            let mut identity = json!({
                "apiVersion": desired["apiVersion"],
                "kind": desired["kind"],
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
                &desired,
                &identity,
                cluster::ApplyMode::default(),
            )
            .await
            .map_err(|e| Error::call(format!("creating {} {id}", resource.kind), e))?;
            out.policy_writes += 1;
            if created == cluster::Created::Taken {
                out.conflicts.push(id.clone());
                return Ok(Guardrails::Taken(id));
            }
        }
        Some(o) => {
            let labels_right = desired["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| o.labels().get(k).map(String::as_str) == v.as_str());
            let owner_right = namespace.is_none()
                || o.owner_references()
                    .iter()
                    .any(|r| r.uid == subject.owner.uid);
            if o.data["spec"] != desired["spec"] || !labels_right || !owner_right {
                desired["metadata"]["resourceVersion"] = json!(o.resource_version());
                cluster::apply(
                    ctx,
                    &api,
                    &resource.plural,
                    &name,
                    &desired,
                    cluster::ApplyMode {
                        force: true,
                        dry_run: false,
                    },
                )
                .await
                .map_err(|e| Error::call(format!("applying {} {id}", resource.kind), e))?;
                out.policy_writes += 1;
            }
        }
    }
    Ok(Guardrails::InSync(id))
}

/// Creates `desired` when absent, applies it when ours differs, nothing
/// when ours is right. False when someone else created that name first.
async fn sync_policy(
    ctx: &Context,
    desired: &NetworkPolicy,
    ours: Option<&NetworkPolicy>,
    id: &str,
    out: &mut Pass,
) -> Result<bool> {
    match ours {
        None => match cluster::create_network_policy(ctx, desired).await {
            Ok(_) => out.policy_writes += 1,
            Err(Error::NameTaken(_)) => {
                out.policy_writes += 1;
                out.conflicts.push(id.to_string());
                return Ok(false);
            }
            Err(e) => return Err(Error::call(format!("creating NetworkPolicy {id}"), e)),
        },
        Some(np) => {
            if !Comparable::of(desired).satisfied_by(&Comparable::of(np)) {
                cluster::apply_network_policy(ctx, desired, np.resource_version())
                    .await
                    .map_err(|e| Error::call(format!("applying NetworkPolicy {id}"), e))?;
                out.policy_writes += 1;
            }
        }
    }
    Ok(true)
}

/// Keeps the uncovered policy as `cover` says: the same rules over the
/// missed pods' `sandbox-name-hash` while `hold`, none otherwise. A
/// same-named object that is not ours is left alone.
#[allow(clippy::too_many_arguments)]
async fn write_uncovered(
    ctx: &Context,
    subject: &Subject,
    core: &Profile,
    built: &Built,
    cover: &Coverage,
    hold: bool,
    observed: Option<&NetworkPolicy>,
    out: &mut Pass,
) -> Result<()> {
    let name = core.uncovered_policy_name();
    let id = format!("{}/{name}", core.namespace);
    let ours = observed.filter(|np| is_owned_by(np, &subject.owner.uid, subject.kind()));
    if observed.is_some() && ours.is_none() {
        if hold {
            out.conflicts.push(id);
        }
        return Ok(());
    }
    if hold {
        let desired = uncovered_policy(&subject.owner, core, built, &cover.name_hashes);
        sync_policy(ctx, &desired, ours, &id, out).await?;
    } else if let Some(np) = ours {
        cluster::delete_network_policy(ctx, &core.namespace, &name, np.uid())
            .await
            .map_err(|e| Error::call(format!("deleting NetworkPolicy {id}"), e))?;
        out.policy_writes += 1;
    }
    Ok(())
}

/// Pods of a `dns: public` profile whose dnsPolicy still sends them to
/// the cluster resolver, which the profile blocks: their lookups fail.
///
/// A pod's dnsPolicy is in its spec, which the pod cache (metadata only,
/// to stay small) does not hold; it is read by one list of the profile's
/// pods when the pass meets pods it has not read yet, and kept (a pod's
/// dnsPolicy never changes). So pods still cause no pass and no write,
/// and a read only on the next pass that meets them.
async fn dns_warnings(
    ctx: &Context,
    state: &mut State,
    subject: &Subject,
    core: &Profile,
    pool: &Pool<'_>,
) -> Result<Vec<String>> {
    if !matches!(core.dns, profile::Dns::Public { .. }) {
        return Ok(Vec::new());
    }
    let matched: Vec<&PartialObjectMeta<Pod>> = pool
        .pods
        .iter()
        .copied()
        .filter(|pod| core.pod_selector.matches(pod.labels()))
        .collect();
    let unread = matched.iter().any(|pod| {
        pod.metadata
            .uid
            .as_ref()
            .is_some_and(|uid| !state.dns_policies.contains_key(uid))
    });
    if unread {
        // The profile's selector converted, so it is valid: this cannot
        // fail for a profile that reached here, but a pass never panics.
        let Ok(selector) =
            kube::core::Selector::try_from(subject.profile.spec.pod_selector.clone())
        else {
            return Ok(Vec::new());
        };
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &core.namespace);
        let params = kube::api::ListParams::default().labels_from(&selector);
        let pods = cluster::timed(ctx, api.list(&params))
            .await
            .map_err(|e| Error::call(format!("listing the pods of {}", subject.id()), e))?;
        for pod in pods.items {
            if let Some(uid) = pod.metadata.uid {
                let policy = pod
                    .spec
                    .and_then(|s| s.dns_policy)
                    .unwrap_or_else(|| "ClusterFirst".to_string());
                state.dns_policies.insert(uid, policy);
            }
        }
    }
    let mut cluster_dns: Vec<String> = matched
        .iter()
        .filter_map(|pod| {
            let policy = state.dns_policies.get(pod.metadata.uid.as_deref()?)?;
            (policy != "None").then(|| format!("{}/{} ({policy})", core.namespace, pod.name_any()))
        })
        .collect();
    if cluster_dns.is_empty() {
        return Ok(Vec::new());
    }
    cluster_dns.sort();
    let count = cluster_dns.len();
    cluster_dns.truncate(5);
    Ok(vec![format!(
        "{count} pod(s) under dns: public still use the cluster resolver, which the profile blocks (set dnsPolicy: None and dnsConfig.nameservers to the profile's resolvers): {}{}",
        cluster_dns.join(", "),
        if count > 5 { ", ..." } else { "" }
    )])
}

/// Baseline policies of the namespace that may select pods of the pool:
/// kubefence also baselines their workloads.
fn baseline_warnings(core: &Profile, cluster: &Cluster) -> Vec<String> {
    let mut out: Vec<String> = cluster
        .policies
        .iter()
        .filter(|np| np.name.starts_with("kf-baseline-"))
        .filter(|np| np.pod_selector.may_overlap(&core.pod_selector))
        .map(|np| {
            format!(
                "pods of the pool may also belong to a workload kubefence baselines (policy {}); its rules add to the profile's",
                np.id()
            )
        })
        .collect();
    out.sort();
    out
}
