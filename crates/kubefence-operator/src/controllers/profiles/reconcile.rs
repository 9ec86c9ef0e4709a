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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::{Resource, ResourceExt};
use kubefence_core::Cluster;
use kubefence_core::naming::{self, Source};
use kubefence_core::profile::{self, Built, Profile, ProfileConfig};
use kubefence_k8s::crd::profile::{
    CONDITION_EFFECTIVE, CONDITION_READY, IsolationProfile, IsolationProfileStatus, ProfileEngine,
};
use kubefence_k8s::crd::quarantine::{RemainingPathStatus, set_condition};
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
pub const REASON_ENGINE_NOT_WIRED: &str = "EngineNotWired";
/// Effective's reasons.
pub const REASON_REOPENED: &str = "PathsReopened";
pub const REASON_NONE_REOPENED: &str = "NoPathReopened";

const RESOURCE: &str = "isolationprofiles";

/// What a pass reads: the watch caches.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub profiles: Vec<Arc<IsolationProfile>>,
    pub policies: Vec<Arc<NetworkPolicy>>,
    pub pods: Vec<Arc<PartialObjectMeta<Pod>>>,
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
}

/// The build of one profile, kept while its generation is unchanged (the
/// proof runs the engine: once per spec, not once per pass).
type BuildCache = HashMap<String, (Option<i64>, std::result::Result<(Profile, Built), String>)>;

/// The controller's memory between passes.
#[derive(Default)]
pub struct State {
    pub config: ProfileConfig,
    builds: BuildCache,
}

impl State {
    pub fn new(config: ProfileConfig) -> Self {
        Self {
            config,
            builds: HashMap::new(),
        }
    }
}

/// The policy of a profile is ours when it carries kubefence's profile
/// labels and an ownerReference to this very profile (its uid).
pub fn is_ours(np: &NetworkPolicy, profile_uid: &str) -> bool {
    let labels = np.labels();
    labels.get(naming::MANAGED_BY_LABEL).map(String::as_str) == Some(naming::MANAGED_BY_VALUE)
        && labels.get(naming::SOURCE_LABEL).map(String::as_str) == Some(Source::Profile.as_str())
        && np
            .owner_references()
            .iter()
            .any(|o| o.uid == profile_uid && o.kind == IsolationProfile::kind(&()))
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
    let mut np = kubefence_k8s::render::network_policy(&built.policy);
    np.metadata.labels = Some(built.labels.clone());
    np.metadata.owner_references = Some(vec![owner_reference(p)]);
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
    let mut pods_by_ns: HashMap<String, Vec<&BTreeMap<String, String>>> = HashMap::new();
    for pod in &snapshot.pods {
        pods_by_ns
            .entry(pod.namespace().unwrap_or_default())
            .or_default()
            .push(pod.labels());
    }
    // The namespaces' policies as the engine reads them, converted once.
    let mut namespaces: HashMap<String, Cluster> = HashMap::new();
    let live: std::collections::HashSet<String> =
        snapshot.profiles.iter().filter_map(|p| p.uid()).collect();
    state.builds.retain(|uid, _| live.contains(uid));
    let mut first_error = None;
    for p in &snapshot.profiles {
        if p.meta().deletion_timestamp.is_some() {
            continue;
        }
        let ns = p.namespace().unwrap_or_default();
        let cluster = namespaces
            .entry(ns.clone())
            .or_insert_with(|| namespace_cluster(&ns, &snapshot.policies));
        let pods = pods_by_ns.get(&ns).map(Vec::as_slice).unwrap_or(&[]);
        if let Err(e) = reconcile_one(ctx, state, p, &policies, pods, cluster, &mut out).await {
            tracing::warn!(controller = super::NAME, profile = %format!("{ns}/{}", p.name_any()), error = %e.full_message(), "reconcile failed");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
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
    p: &IsolationProfile,
) -> &'a std::result::Result<(Profile, Built), String> {
    let uid = p.uid().unwrap_or_default();
    let generation = p.meta().generation;
    let config = state.config.clone();
    let entry = state
        .builds
        .entry(uid)
        .or_insert_with(|| (None, Err(String::new())));
    if entry.0 != generation || generation.is_none() {
        let ns = p.namespace().unwrap_or_default();
        let result = kubefence_k8s::profile::to_core(p, &ns)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .and_then(|core| {
                profile::build(&core, &config)
                    .map(|built| (core, built))
                    .map_err(|e| e.to_string())
            });
        *entry = (generation, result);
    }
    &entry.1
}

/// What the status should say about the policy.
struct Verdict {
    ready: bool,
    reason: &'static str,
    message: String,
    enforced: bool,
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_one(
    ctx: &Context,
    state: &mut State,
    p: &IsolationProfile,
    policies: &HashMap<(String, String), &Arc<NetworkPolicy>>,
    pods: &[&BTreeMap<String, String>],
    cluster: &Cluster,
    out: &mut Pass,
) -> Result<()> {
    let ns = p.namespace().unwrap_or_default();
    let uid = p.uid().unwrap_or_default();
    let built = build_of(state, p).clone();
    let mut status = IsolationProfileStatus {
        observed_generation: p.meta().generation,
        ..IsolationProfileStatus::default()
    };
    let previous = p.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = p.meta().generation;
    let verdict = match &built {
        Err(message) => Verdict {
            ready: false,
            reason: REASON_INVALID,
            message: message.clone(),
            enforced: false,
        },
        Ok((core, built)) => {
            status.policy_name = Some(built.policy.name.clone());
            status.matched_pods = Some(
                i64::try_from(pods.iter().filter(|l| core.pod_selector.matches(l)).count())
                    .unwrap_or(i64::MAX),
            );
            status.narrowed = built.narrowed.iter().map(ToString::to_string).collect();
            status.warnings = baseline_warnings(core, cluster);
            let key = (ns.clone(), built.policy.name.clone());
            let observed = policies.get(&key).map(|np| np.as_ref());
            let verdict = write_policy(ctx, p, &uid, built, observed, out).await?;
            if verdict.enforced {
                let eff = profile::reopened_paths(core, built, cluster);
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
    if status != previous {
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
    Ok(())
}

/// Writes (or not) the policy; says what the Ready condition reports.
async fn write_policy(
    ctx: &Context,
    p: &IsolationProfile,
    uid: &str,
    built: &Built,
    observed: Option<&NetworkPolicy>,
    out: &mut Pass,
) -> Result<Verdict> {
    let ns = p.namespace().unwrap_or_default();
    let name = built.policy.name.clone();
    let id = format!("{ns}/{name}");
    let ours = observed.filter(|np| is_ours(np, uid));
    if observed.is_some() && ours.is_none() {
        out.conflicts.push(id.clone());
        return Ok(Verdict {
            ready: false,
            reason: REASON_NAME_TAKEN,
            message: format!(
                "NetworkPolicy {id} exists and is not this profile's (no kubefence profile labels or no ownerReference to it); left alone"
            ),
            enforced: false,
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
            message: "spec.enabled is false: no policy".to_string(),
            enforced: false,
        });
    }
    if p.spec.engine != ProfileEngine::NetworkPolicy {
        return Ok(Verdict {
            ready: false,
            reason: REASON_ENGINE_NOT_WIRED,
            message: format!(
                "engine {} is accepted but not wired in this operator yet: no {} object is written{}",
                p.spec.engine.as_str(),
                p.spec.engine.as_str(),
                if ours.is_some() {
                    "; the profile's NetworkPolicy is kept"
                } else {
                    ""
                }
            ),
            enforced: false,
        });
    }
    let desired = desired_policy(p, built);
    match ours {
        None => match cluster::create_network_policy(ctx, &desired).await {
            Ok(_) => out.policy_writes += 1,
            Err(Error::NameTaken(_)) => {
                out.policy_writes += 1;
                out.conflicts.push(id.clone());
                return Ok(Verdict {
                    ready: false,
                    reason: REASON_NAME_TAKEN,
                    message: format!(
                        "NetworkPolicy {id} was created by someone else meanwhile; left alone"
                    ),
                    enforced: false,
                });
            }
            Err(e) => return Err(Error::call(format!("creating NetworkPolicy {id}"), e)),
        },
        Some(np) => {
            if !Comparable::of(&desired).satisfied_by(&Comparable::of(np)) {
                cluster::apply_network_policy(ctx, &desired, np.resource_version())
                    .await
                    .map_err(|e| Error::call(format!("applying NetworkPolicy {id}"), e))?;
                out.policy_writes += 1;
            }
        }
    }
    let narrowed = if built.narrowed.is_empty() {
        String::new()
    } else {
        format!(
            "; the guardrails narrowed {} custom rule(s)",
            built.narrowed.len()
        )
    };
    Ok(Verdict {
        ready: true,
        reason: REASON_IN_SYNC,
        message: format!("NetworkPolicy {id} is as the profile says{narrowed}"),
        enforced: true,
    })
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
