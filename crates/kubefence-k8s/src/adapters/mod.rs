//! Engine adapters: pure functions from a neutral [`RuleSet`] (kubefence-core)
//! to the object an engine reads. Quarantine, intents and isolation
//! profiles all write through these, so an engine means the same thing
//! whichever job asked.
//!
//! | engine | object | scope | module |
//! |---|---|---|---|
//! | networkpolicy | networking.k8s.io/v1 NetworkPolicy | namespaced | [`networkpolicy`] |
//! | cilium | cilium.io/v2 CiliumNetworkPolicy | namespaced | [`cilium`] |
//! | clusternetworkpolicy | policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy | cluster | [`clusternetworkpolicy`] |
//! | adminnetworkpolicy | policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy | cluster | [`adminnetworkpolicy`] |
//! | kubearmor | security.kubearmor.com/v1 KubeArmorPolicy | namespaced | [`kubearmor`] |
//!
//! An adapter either writes the whole rule set or returns [`Unsupported`]
//! with the reason; what it writes but cannot enforce exactly (an
//! AdminNetworkPolicy ingress deny does not match sources outside the
//! cluster) is a warning in [`Rendered`]. Objects carry the rule set's
//! labels and annotations and no ownerReference: the caller adds one when
//! the object has an owner (intents do, quarantine deliberately does not).

pub mod adminnetworkpolicy;
pub mod cilium;
pub mod clusternetworkpolicy;
pub mod kubearmor;
pub mod networkpolicy;
mod tiered;

#[cfg(test)]
mod tests;

use kubefence_core::ruleset::{Engine, NetworkPolicyOptions, RuleSet, Unsupported};
use serde_json::{Value, json};

/// Where the object of an engine lives in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyApi {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl PolicyApi {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `<plural>.<group>`: the name of the CRD that serves it (discovery).
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

pub fn api(engine: Engine) -> PolicyApi {
    match engine {
        Engine::NetworkPolicy => PolicyApi {
            group: "networking.k8s.io",
            version: "v1",
            kind: "NetworkPolicy",
            plural: "networkpolicies",
            namespaced: true,
        },
        Engine::Cilium => PolicyApi {
            group: "cilium.io",
            version: "v2",
            kind: "CiliumNetworkPolicy",
            plural: "ciliumnetworkpolicies",
            namespaced: true,
        },
        Engine::ClusterNetworkPolicy => PolicyApi {
            group: "policy.networking.k8s.io",
            version: "v1alpha2",
            kind: "ClusterNetworkPolicy",
            plural: "clusternetworkpolicies",
            namespaced: false,
        },
        Engine::AdminNetworkPolicy => PolicyApi {
            group: "policy.networking.k8s.io",
            version: "v1alpha1",
            kind: "AdminNetworkPolicy",
            plural: "adminnetworkpolicies",
            namespaced: false,
        },
        Engine::KubeArmor => PolicyApi {
            group: "security.kubearmor.com",
            version: "v1",
            kind: "KubeArmorPolicy",
            plural: "kubearmorpolicies",
            namespaced: true,
        },
    }
}

/// ClusterNetworkPolicy tiers (network-policy-api v0.2.0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// Before NetworkPolicies: the rule set holds whatever they say.
    #[default]
    Admin,
    /// After NetworkPolicies: a default they may override.
    Baseline,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Baseline => "Baseline",
        }
    }
}

/// Engine-specific choices the rule set does not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub network_policy: NetworkPolicyOptions,
    /// ClusterNetworkPolicy tier.
    pub tier: Tier,
    /// ClusterNetworkPolicy / AdminNetworkPolicy priority, 0 (first) to
    /// 1000.
    pub priority: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            network_policy: NetworkPolicyOptions::default(),
            tier: Tier::Admin,
            // Quarantine uses 0; intents stay behind it.
            priority: 10,
        }
    }
}

/// The priority of an isolation profile's guardrail denies in the
/// cluster-scoped engines: after a quarantine (0), before intents (10), so
/// no intent's allow reaches a blocked range.
pub const PROFILE_GUARDRAIL_PRIORITY: u16 = 5;

/// The object of an isolation profile's guardrail denies for the
/// profile's engine; `None` for NetworkPolicy (which cannot deny).
pub fn profile_guardrails(
    profile: &kubefence_core::profile::Profile,
    built: &kubefence_core::profile::Built,
) -> Option<Result<Rendered, Unsupported>> {
    if !profile.denies_blocked() {
        return None;
    }
    let rules = kubefence_core::profile::guardrail_rule_set(profile, built);
    let opts = Options {
        tier: Tier::Admin,
        priority: PROFILE_GUARDRAIL_PRIORITY,
        ..Options::default()
    };
    Some(render(profile.engine, &rules, &opts))
}

/// One engine object and what it cannot enforce exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// The rule set as `engine`'s object.
pub fn render(engine: Engine, rules: &RuleSet, opts: &Options) -> Result<Rendered, Unsupported> {
    rules
        .check()
        .map_err(|e| Unsupported::new(engine, e.to_string()))?;
    if !engine.expresses(rules) {
        return Err(Unsupported::new(
            engine,
            if engine.is_network() {
                "the intent has no network rules"
            } else {
                "the intent has no process or file rules"
            },
        ));
    }
    match engine {
        Engine::NetworkPolicy => networkpolicy::render(rules, &opts.network_policy),
        Engine::Cilium => cilium::render(rules),
        Engine::ClusterNetworkPolicy => {
            clusternetworkpolicy::render(rules, opts.tier, opts.priority)
        }
        Engine::AdminNetworkPolicy => adminnetworkpolicy::render(rules, opts.priority),
        Engine::KubeArmor => kubearmor::render(rules),
    }
}

/// The object's name: cluster-scoped objects use the name that carries
/// the namespace.
pub fn object_name(engine: Engine, rules: &RuleSet) -> String {
    if api(engine).namespaced {
        rules.name.clone()
    } else {
        rules.cluster_name.clone()
    }
}

/// apiVersion, kind and metadata (name, namespace when namespaced, the
/// rule set's labels and annotations).
fn envelope(engine: Engine, rules: &RuleSet, spec: Value) -> Value {
    let api = api(engine);
    let mut metadata = json!({
        "name": object_name(engine, rules),
        "labels": rules.labels,
        "annotations": rules.annotations,
    });
    if api.namespaced {
        metadata["namespace"] = json!(rules.namespace);
    }
    json!({
        "apiVersion": api.api_version(),
        "kind": api.kind,
        "metadata": metadata,
        "spec": spec,
    })
}

fn selector_json(selector: &kubefence_core::LabelSelector) -> Value {
    serde_json::to_value(crate::render::label_selector(selector)).unwrap_or(Value::Null)
}
