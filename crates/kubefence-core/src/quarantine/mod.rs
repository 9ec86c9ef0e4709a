//! Quarantine: cut one workload off the network, and say whether that worked.
//!
//! ```text
//!  live target (selector) ──▶ plan ──▶ deny-all policy (NetworkPolicy, or a
//!  + policies of its namespace          CiliumNetworkPolicy / AdminNetworkPolicy
//!  + known peers (optional)             rendered by kubefence-k8s)
//!                                     ─▶ remaining paths (semantics engine)
//! ```
//!
//! A NetworkPolicy cannot deny: policies are additive, so a deny-all policy
//! leaves every path that another policy of the namespace already allows.
//! [`plan`] therefore lists, for the target's side of the connection, every
//! rule of another policy that still lets traffic reach the target or leave
//! it (exact for any peer, known or not), and the engine's verdict for each
//! known peer. The Cilium and AdminNetworkPolicy engines have real deny
//! semantics; a path they override is marked so, and [`Plan::effective`]
//! is true only when no path survives the chosen engine.
//!
//! Pure: the requester and the time are passed in; the refusal of protected
//! namespaces and empty selectors happens here, before any API call.

mod effect;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Cluster, Workload, WorkloadKind};
use crate::naming::{self, MAX_NAME_LEN, Source, TARGET_KIND_LABEL, TARGET_NAME_LABEL};
use crate::policy::{NetworkPolicy, PolicyTypes};
use crate::ruleset::{self, Enforcement, RuleSet, Traffic};
use crate::selector::{LabelSelector, Labels};

pub(crate) use effect::add_known_endpoints;
pub use effect::{RemainingPath, describe_peers, open_rules, remaining_paths};

/// Label set on every quarantine object, so they are easy to list.
pub const QUARANTINED_LABEL: &str = "kubefence.dev/quarantined";
/// Why the workload was quarantined (free text).
pub const REASON_ANNOTATION: &str = "kubefence.dev/reason";
/// A reference to the finding that triggered it (alert id, ticket, URL).
pub const FINDING_ANNOTATION: &str = "kubefence.dev/finding";
/// Who asked for it.
pub const REQUESTER_ANNOTATION: &str = "kubefence.dev/requested-by";
/// When it was asked for (RFC 3339, UTC).
pub const TIME_ANNOTATION: &str = "kubefence.dev/quarantined-at";
/// `Kind/namespace/name` of the target, unabridged.
pub const TARGET_ANNOTATION: &str = "kubefence.dev/target";

/// Event reasons recorded on the target.
pub const EVENT_QUARANTINED: &str = "KubefenceQuarantined";
pub const EVENT_RELEASED: &str = "KubefenceReleased";

/// The namespaces never quarantined unless configured otherwise (DESIGN.md).
pub const DEFAULT_PROTECTED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];

/// Which kind of policy isolates the target.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A deny-all NetworkPolicy: portable, but other policies' allows remain.
    #[default]
    NetworkPolicy,
    /// A CiliumNetworkPolicy with `ingressDeny`/`egressDeny`: overrides allows.
    Cilium,
    /// An AdminNetworkPolicy (v1alpha1) with `Deny` rules at the highest
    /// priority.
    AdminNetworkPolicy,
    /// A ClusterNetworkPolicy (v1alpha2), Admin tier, `Deny` rules at the
    /// highest priority.
    ClusterNetworkPolicy,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "networkpolicy",
            Self::Cilium => "cilium",
            Self::AdminNetworkPolicy => "adminnetworkpolicy",
            Self::ClusterNetworkPolicy => "clusternetworkpolicy",
        }
    }

    /// The adapter that writes this engine's object.
    pub fn adapter(self) -> ruleset::Engine {
        match self {
            Self::NetworkPolicy => ruleset::Engine::NetworkPolicy,
            Self::Cilium => ruleset::Engine::Cilium,
            Self::AdminNetworkPolicy => ruleset::Engine::AdminNetworkPolicy,
            Self::ClusterNetworkPolicy => ruleset::Engine::ClusterNetworkPolicy,
        }
    }

    pub const ALL: [Engine; 4] = [
        Self::NetworkPolicy,
        Self::Cilium,
        Self::AdminNetworkPolicy,
        Self::ClusterNetworkPolicy,
    ];

    /// The kind of object this engine writes.
    pub fn object_kind(self) -> &'static str {
        self.adapter().object_kind()
    }

    /// The engine that writes objects of `kind`.
    pub fn from_object_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.object_kind() == kind)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "networkpolicy" => Ok(Self::NetworkPolicy),
            "cilium" | "ciliumnetworkpolicy" => Ok(Self::Cilium),
            "adminnetworkpolicy" | "anp" => Ok(Self::AdminNetworkPolicy),
            "clusternetworkpolicy" | "cnp" => Ok(Self::ClusterNetworkPolicy),
            _ => Err(format!(
                "unknown engine {s:?} (expected networkpolicy, cilium, adminnetworkpolicy or clusternetworkpolicy)"
            )),
        }
    }
}

/// The workload to isolate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl Target {
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `Kind/namespace/name`, as errors and annotations name it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    /// The namespaced policy's name: `kf-quarantine-<kind>-<name>`, cut and
    /// hashed by the full identity when too long.
    pub fn policy_name(&self) -> String {
        naming::policy_name(Source::Quarantine, self.kind, &self.namespace, &self.name)
    }

    /// The name of the object `engine` writes for this target.
    pub fn object_name(&self, engine: Engine) -> String {
        if engine.adapter().cluster_scoped() {
            self.cluster_scoped_name()
        } else {
            self.policy_name()
        }
    }

    /// The name of a cluster-scoped object (AdminNetworkPolicy): the
    /// namespace is not part of the object's identity there, so the name
    /// always ends in a hash of the full identity.
    pub fn cluster_scoped_name(&self) -> String {
        let hash = identity_hash(&format!(
            "quarantine/{}/{}/{}",
            self.kind, self.namespace, self.name
        ));
        let full = format!(
            "kf-quarantine-{}-{}-{}",
            self.namespace,
            self.kind.as_str(),
            self.name
        )
        .to_ascii_lowercase();
        let cut = full.len().min(MAX_NAME_LEN - 9);
        let prefix = full[..cut].trim_end_matches(['-', '.']);
        format!("{prefix}-{hash}")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

fn identity_hash(identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Who asked, why, and when: recorded on the policy and in the Event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub reason: String,
    pub finding: Option<String>,
    pub requester: String,
    /// RFC 3339, UTC; passed in (core has no clock).
    pub time: String,
}

/// Where quarantine is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub protected_namespaces: BTreeSet<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protected_namespaces: DEFAULT_PROTECTED_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Config {
    /// Adds the operator's own namespace (protected by default).
    pub fn with_protected(mut self, namespace: impl Into<String>) -> Self {
        self.protected_namespaces.insert(namespace.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuarantineError {
    #[error(
        "{target}: namespace {namespace} is protected; kubefence does not quarantine workloads there"
    )]
    ProtectedNamespace { target: String, namespace: String },
    #[error(
        "{target}: its selector is empty, so a policy for it would select every pod of namespace {namespace}; refusing"
    )]
    EmptySelector { target: String, namespace: String },
    #[error("{target}: the reason must not be empty (say why, for the audit trail)")]
    NoReason { target: String },
}

/// Refuses protected namespaces; called before any API request.
pub fn check_namespace(target: &Target, cfg: &Config) -> Result<(), QuarantineError> {
    if cfg.protected_namespaces.contains(&target.namespace) {
        return Err(QuarantineError::ProtectedNamespace {
            target: target.id(),
            namespace: target.namespace.clone(),
        });
    }
    Ok(())
}

/// What quarantining the target means: the policy to write and what it
/// leaves open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    pub engine: Engine,
    /// The object's name (namespaced engines: [`Target::policy_name`]).
    pub policy_name: String,
    /// The target's full live selector: the pods the policy isolates.
    pub selector: LabelSelector,
    /// The deny-all NetworkPolicy (no rules, both policyTypes). Also the
    /// model the Cilium and ANP renderings are built from.
    pub policy: NetworkPolicy,
    pub labels: Labels,
    pub annotations: Labels,
    /// Every path still open once the NetworkPolicy deny-all exists, each
    /// marked when the chosen engine overrides it.
    pub remaining_paths: Vec<RemainingPath>,
    /// Other workloads of the namespace (`namespace/Kind/name`) whose pod
    /// templates the target's selector also matches: the deny-all policy
    /// isolates their pods too. Sorted.
    pub also_selects: Vec<String>,
    /// Policies of the namespace that could not be read (`namespace/name:
    /// why`): their paths are unknown, so the plan cannot claim to be
    /// effective unless the engine's deny overrides every allow.
    pub unreadable_policies: Vec<String>,
}

impl Plan {
    /// True when no path survives the chosen engine.
    pub fn effective(&self) -> bool {
        let unknown_paths = !self.unreadable_policies.is_empty() && self.engine != Engine::Cilium;
        !unknown_paths && self.remaining_paths.iter().all(|p| p.overridden)
    }

    /// The paths the chosen engine leaves open.
    pub fn open_paths(&self) -> impl Iterator<Item = &RemainingPath> {
        self.remaining_paths.iter().filter(|p| !p.overridden)
    }

    /// The deny-all as a neutral rule set, for the engine adapters: both
    /// directions isolated, nothing allowed.
    pub fn rule_set(&self) -> RuleSet {
        let isolated = Traffic {
            isolate: true,
            allow: Vec::new(),
            deny: Vec::new(),
        };
        RuleSet {
            name: self.target.policy_name(),
            cluster_name: self.target.cluster_scoped_name(),
            namespace: self.target.namespace.clone(),
            subject: self.selector.clone(),
            ingress: isolated.clone(),
            egress: isolated,
            process: Vec::new(),
            file: Vec::new(),
            enforcement: Enforcement::Enforce,
            rule_prefix: "kubefence-quarantine".to_string(),
            message: None,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
        }
    }

    /// `cluster` with the quarantine policy added (for checking the result
    /// with the semantics engine or another analyzer).
    pub fn apply_to(&self, cluster: &Cluster) -> Cluster {
        let mut out = cluster.clone();
        out.policies.retain(|p| p.id() != self.policy.id());
        out.policies.push(self.policy.clone());
        out
    }
}

/// Builds the plan for `target` (the live workload: its selector is read as
/// is). `cluster` holds the policies of the target's namespace and whatever
/// peers are known; the target need not be in it.
pub fn plan(
    target: &Workload,
    audit: &Audit,
    engine: Engine,
    cluster: &Cluster,
    cfg: &Config,
) -> Result<Plan, QuarantineError> {
    let t = Target::new(target.kind, &target.namespace, &target.name);
    check_namespace(&t, cfg)?;
    if target.selector.is_empty() {
        return Err(QuarantineError::EmptySelector {
            target: t.id(),
            namespace: t.namespace.clone(),
        });
    }
    if audit.reason.trim().is_empty() {
        return Err(QuarantineError::NoReason { target: t.id() });
    }
    let policy_name = t.object_name(engine);
    let policy = NetworkPolicy {
        namespace: t.namespace.clone(),
        name: t.policy_name(),
        pod_selector: target.selector.clone(),
        policy_types: PolicyTypes {
            ingress: true,
            egress: true,
        },
        ingress: Vec::new(),
        egress: Vec::new(),
    };
    let remaining = remaining_paths(target, &policy, engine, cluster);
    let also_selects = also_selected(target, cluster);
    Ok(Plan {
        also_selects,
        labels: labels(&t, audit),
        annotations: annotations(&t, audit),
        selector: target.selector.clone(),
        target: t,
        engine,
        policy_name,
        policy,
        remaining_paths: remaining,
        unreadable_policies: Vec::new(),
    })
}

/// The other workloads of `target`'s namespace in `cluster` whose pods its
/// selector matches (by their pod template's labels).
fn also_selected(target: &Workload, cluster: &Cluster) -> Vec<String> {
    let mut ids: Vec<String> = cluster
        .workloads
        .iter()
        .filter(|w| w.namespace == target.namespace)
        .filter(|w| !(w.kind == target.kind && w.name == target.name))
        .filter(|w| target.selector.matches(&w.pod_labels))
        .map(Workload::id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Ownership labels plus the target and the audit trail, as label-safe
/// values (so `kubectl get netpol -l kubefence.dev/finding=ALERT-42` works);
/// the annotations keep the unabridged text.
pub fn labels(target: &Target, audit: &Audit) -> Labels {
    let mut labels: Labels = naming::ownership_labels(Source::Quarantine)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    labels.insert(
        TARGET_KIND_LABEL.to_string(),
        target.kind.as_str().to_ascii_lowercase(),
    );
    labels.insert(
        TARGET_NAME_LABEL.to_string(),
        label_value(&target.name, &target.id()),
    );
    labels.insert(QUARANTINED_LABEL.to_string(), "true".to_string());
    // 2026-11-24T23:40:00Z → 20261124T234000Z
    let time: String = audit
        .time
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    labels.insert(TIME_ANNOTATION.to_string(), label_value(&time, &audit.time));
    labels.insert(
        REQUESTER_ANNOTATION.to_string(),
        label_value(&audit.requester, &audit.requester),
    );
    if let Some(f) = &audit.finding {
        labels.insert(FINDING_ANNOTATION.to_string(), label_value(f, f));
    }
    labels
}

/// The audit trail, unabridged.
pub fn annotations(target: &Target, audit: &Audit) -> Labels {
    let mut a = Labels::new();
    a.insert(REASON_ANNOTATION.to_string(), audit.reason.clone());
    if let Some(f) = &audit.finding {
        a.insert(FINDING_ANNOTATION.to_string(), f.clone());
    }
    a.insert(REQUESTER_ANNOTATION.to_string(), audit.requester.clone());
    a.insert(TIME_ANNOTATION.to_string(), audit.time.clone());
    a.insert(TARGET_ANNOTATION.to_string(), target.id());
    a
}

/// A valid label value for `value`: itself when it is one, else a cut
/// prefix and a hash of `identity`.
fn label_value(value: &str, identity: &str) -> String {
    if crate::validation::label_value(value).is_empty() {
        return value.to_string();
    }
    let clean: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(MAX_NAME_LEN - 9)
        .collect();
    let prefix = clean.trim_matches(['-', '.', '_']);
    let hash = identity_hash(identity);
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests;
