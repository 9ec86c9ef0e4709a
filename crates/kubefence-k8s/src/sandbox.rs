//! agent-sandbox compatibility (kubernetes-sigs/agent-sandbox): the default
//! isolation profile of a `SandboxTemplate`, and which pods belong to a
//! template by ownership.
//!
//! ```text
//!  SandboxTemplate ──default_profile──▶ IsolationProfile (in memory, never stored)
//!     podSelector: agents.x-k8s.io/sandbox-template-ref-hash In [hashes]
//!     ingress: the sandbox router (agent-sandbox-system, app=sandbox-router)
//!     egress:  public internet, cluster DNS blocked (dns: none)
//!     or spec.networkPolicy wrapped with the guardrails
//!  Pod ─ownerRef─▶ Sandbox ─ownerRef─▶ SandboxClaim ─▶ template (v1alpha1)
//!                                  │                └▶ SandboxWarmPool ─▶ template (v1beta1)
//!                                  └─ownerRef─▶ SandboxWarmPool ─▶ template
//!                                  └─label sandbox-template-ref-hash ─▶ template
//! ```
//!
//! The template's pods are selected as agent-sandbox's own controller
//! selects them: by the label `agents.x-k8s.io/sandbox-template-ref-hash`,
//! whose value is the FNV-1a hash of the template's name ([`name_hash`]).
//! The values kept are that hash and the value agent-sandbox wrote on the
//! template itself (newer versions label the template with the hash they
//! put on its pods), so pods made before an upgrade that changed how the
//! hash is made stay selected next to the new ones.
//!
//! Only the fields read here are parsed: the rest of a third-party object
//! is not kubefence's to judge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde::Deserialize;

use crate::crd::profile::{
    CustomPolicy, DnsMode, IsolationProfile, IsolationProfileSpec, ProfileDns, ProfileIngress,
};

/// The API group of templates, claims and warm pools.
pub const EXTENSIONS_GROUP: &str = "extensions.agents.x-k8s.io";
/// The API group of Sandboxes.
pub const SANDBOX_GROUP: &str = "agents.x-k8s.io";
pub const TEMPLATE_KIND: &str = "SandboxTemplate";
pub const CLAIM_KIND: &str = "SandboxClaim";
pub const WARM_POOL_KIND: &str = "SandboxWarmPool";
pub const SANDBOX_KIND: &str = "Sandbox";
/// The label agent-sandbox puts on a template's sandboxes and pods.
pub const TEMPLATE_REF_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-template-ref-hash";
/// The label agent-sandbox puts on every sandbox pod (the hash of its
/// Sandbox's name): what selects pods the template label misses.
pub const SANDBOX_NAME_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-name-hash";
/// `kubefence.dev/isolation: disabled` on a template opts it out.
pub const ISOLATION_ANNOTATION: &str = "kubefence.dev/isolation";
pub const ISOLATION_DISABLED: &str = "disabled";
/// Where agent-sandbox's router runs, and its pods' label (its manifests).
pub const ROUTER_NAMESPACE: &str = "agent-sandbox-system";
pub const ROUTER_LABEL: (&str, &str) = ("app", "sandbox-router");
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// agent-sandbox's `NameHash`: FNV-1a (32 bits) of `name`, 8 hex digits.
pub fn name_hash(name: &str) -> String {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u32::from(b)).wrapping_mul(PRIME));
    format!("{hash:08x}")
}

/// A SandboxTemplate, as far as kubefence reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// `extensions.agents.x-k8s.io/<served version>`, for ownerReferences
    /// and events.
    pub api_version: String,
    /// The values of [`TEMPLATE_REF_HASH_LABEL`] its pods may carry.
    pub hashes: BTreeSet<String>,
    /// Opted out by the annotation.
    pub disabled: bool,
    /// `spec.networkPolicy`: custom rules, wrapped with the guardrails.
    pub policy: Option<CustomPolicy>,
    /// `spec.networkPolicy` could not be read (the reason).
    pub error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TemplateSpec {
    #[serde(default)]
    network_policy: Option<CustomPolicy>,
}

impl Template {
    /// Reads a template from its object, served as `api_version`.
    pub fn from_object(obj: &DynamicObject, api_version: &str) -> Self {
        let name = obj.name_any();
        let mut hashes = BTreeSet::from([name_hash(&name)]);
        if let Some(own) = obj.labels().get(TEMPLATE_REF_HASH_LABEL)
            && !own.is_empty()
        {
            hashes.insert(own.clone());
        }
        let (policy, error) = match obj.data.get("spec") {
            None => (None, None),
            Some(spec) => match serde_json::from_value::<TemplateSpec>(spec.clone()) {
                Ok(s) => (s.network_policy, None),
                Err(e) => (None, Some(format!("spec.networkPolicy: {e}"))),
            },
        };
        Self {
            namespace: obj.namespace().unwrap_or_default(),
            name,
            uid: obj.uid().unwrap_or_default(),
            generation: obj.metadata.generation,
            api_version: api_version.to_string(),
            hashes,
            disabled: obj
                .annotations()
                .get(ISOLATION_ANNOTATION)
                .map(String::as_str)
                == Some(ISOLATION_DISABLED),
            policy,
            error,
        }
    }

    /// The ownerReference a policy made for this template carries (the
    /// template owns it: deleting the template deletes the policy).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: TEMPLATE_KIND.to_string(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: None,
            block_owner_deletion: None,
        }
    }

    /// The template's default profile, as an IsolationProfile that is never
    /// stored: the template's pods, ingress only from agent-sandbox's
    /// router, public internet out, cluster DNS blocked (agent-sandbox
    /// points such pods at public resolvers); or `spec.networkPolicy`
    /// wrapped with the guardrails.
    pub fn default_profile(&self) -> IsolationProfile {
        let spec = match &self.policy {
            Some(custom) => IsolationProfileSpec {
                pod_selector: self.selector(),
                ingress: None,
                egress: None,
                blocked_cidrs: None,
                allowed_cidrs: Vec::new(),
                dns: None,
                policy: Some(custom.clone()),
                engine: Default::default(),
                enabled: !self.disabled,
            },
            None => IsolationProfileSpec {
                pod_selector: self.selector(),
                ingress: Some(ProfileIngress {
                    from: Some(vec![router_peer()]),
                    ports: None,
                }),
                egress: None,
                blocked_cidrs: None,
                allowed_cidrs: Vec::new(),
                dns: Some(ProfileDns {
                    mode: DnsMode::None,
                    resolvers: None,
                }),
                policy: None,
                engine: Default::default(),
                enabled: !self.disabled,
            },
        };
        let mut profile = IsolationProfile::new(&self.name, spec);
        profile.metadata = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            generation: self.generation,
            ..ObjectMeta::default()
        };
        profile
    }

    /// `sandbox-template-ref-hash` = the hash (In the hashes when the
    /// template carries another value).
    fn selector(&self) -> LabelSelector {
        if self.hashes.len() == 1 {
            LabelSelector {
                match_labels: Some(
                    self.hashes
                        .iter()
                        .map(|h| (TEMPLATE_REF_HASH_LABEL.to_string(), h.clone()))
                        .collect(),
                ),
                match_expressions: None,
            }
        } else {
            LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: TEMPLATE_REF_HASH_LABEL.to_string(),
                    operator: "In".to_string(),
                    values: Some(self.hashes.iter().cloned().collect()),
                }]),
            }
        }
    }
}

/// agent-sandbox's router pods, wherever the profile's namespace is.
pub fn router_peer() -> k8s_openapi::api::networking::v1::NetworkPolicyPeer {
    k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                ROUTER_NAMESPACE.to_string(),
            )])),
            match_expressions: None,
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                ROUTER_LABEL.0.to_string(),
                ROUTER_LABEL.1.to_string(),
            )])),
            match_expressions: None,
        }),
        ip_block: None,
    }
}

/// The template hashes a selector requires (matchLabels or an `In`
/// expression on [`TEMPLATE_REF_HASH_LABEL`]): the templates whose pods a
/// profile means to hold. Empty when the selector does not name any.
pub fn selected_hashes(selector: &LabelSelector) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(h) = selector
        .match_labels
        .as_ref()
        .and_then(|l| l.get(TEMPLATE_REF_HASH_LABEL))
    {
        out.insert(h.clone());
    }
    for e in selector.match_expressions.iter().flatten() {
        if e.key == TEMPLATE_REF_HASH_LABEL && e.operator == "In" {
            out.extend(e.values.iter().flatten().cloned());
        }
    }
    out
}

/// Which template each Sandbox comes from, by ownership.
#[derive(Clone, Debug, Default)]
pub struct Ownership {
    /// (namespace, sandbox name) → template name.
    sandbox_template: HashMap<(String, String), String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RefSpec {
    #[serde(default)]
    sandbox_template_ref: Option<NameRef>,
    #[serde(default)]
    warm_pool_ref: Option<NameRef>,
}

#[derive(Deserialize, Default)]
struct NameRef {
    #[serde(default)]
    name: String,
}

fn ref_spec(obj: &DynamicObject) -> RefSpec {
    obj.data
        .get("spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

fn non_empty(r: Option<NameRef>) -> Option<String> {
    r.map(|r| r.name).filter(|n| !n.is_empty())
}

impl Ownership {
    /// Links sandboxes to templates through their claims and warm pools
    /// (or, failing that, through the template hash on the sandbox).
    pub fn new(
        templates: &[Template],
        sandboxes: &[Arc<DynamicObject>],
        claims: &[Arc<DynamicObject>],
        pools: &[Arc<DynamicObject>],
    ) -> Self {
        let key = |o: &DynamicObject| (o.namespace().unwrap_or_default(), o.name_any());
        let pool_template: HashMap<(String, String), String> = pools
            .iter()
            .filter_map(|p| Some((key(p), non_empty(ref_spec(p).sandbox_template_ref)?)))
            .collect();
        let claim_template: HashMap<(String, String), String> = claims
            .iter()
            .filter_map(|c| {
                let spec = ref_spec(c);
                let ns = c.namespace().unwrap_or_default();
                let template = non_empty(spec.sandbox_template_ref).or_else(|| {
                    let pool = non_empty(spec.warm_pool_ref)?;
                    pool_template.get(&(ns, pool)).cloned()
                })?;
                Some((key(c), template))
            })
            .collect();
        let by_hash: HashMap<(&str, &str), &str> = templates
            .iter()
            .flat_map(|t| {
                t.hashes
                    .iter()
                    .map(|h| ((t.namespace.as_str(), h.as_str()), t.name.as_str()))
            })
            .collect();
        let mut sandbox_template = HashMap::new();
        for s in sandboxes {
            let ns = s.namespace().unwrap_or_default();
            let by_owner = s.owner_references().iter().find_map(|o| {
                if group_of(&o.api_version) != EXTENSIONS_GROUP {
                    return None;
                }
                let owner = (ns.clone(), o.name.clone());
                match o.kind.as_str() {
                    CLAIM_KIND => claim_template.get(&owner).cloned(),
                    WARM_POOL_KIND => pool_template.get(&owner).cloned(),
                    _ => None,
                }
            });
            let template = by_owner.or_else(|| {
                let h = s.labels().get(TEMPLATE_REF_HASH_LABEL)?;
                by_hash
                    .get(&(ns.as_str(), h.as_str()))
                    .map(|t| (*t).to_string())
            });
            if let Some(t) = template {
                sandbox_template.insert(key(s), t);
            }
        }
        Self { sandbox_template }
    }

    /// The template a pod belongs to: its Sandbox owner's template.
    pub fn template_of_pod(&self, namespace: &str, owners: &[OwnerReference]) -> Option<&str> {
        owners
            .iter()
            .filter(|o| o.kind == SANDBOX_KIND && group_of(&o.api_version) == SANDBOX_GROUP)
            .find_map(|o| {
                self.sandbox_template
                    .get(&(namespace.to_string(), o.name.clone()))
                    .map(String::as_str)
            })
    }

    pub fn is_empty(&self) -> bool {
        self.sandbox_template.is_empty()
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn object(value: serde_json::Value) -> Arc<DynamicObject> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    /// The published FNV-1a 32-bit test vectors (Fowler/Noll/Vo's
    /// reference), not values this code printed.
    #[test]
    fn name_hash_is_fnv1a_32() {
        assert_eq!(name_hash(""), "811c9dc5");
        assert_eq!(name_hash("a"), "e40c292c");
        assert_eq!(name_hash("foobar"), "bf9cf968");
    }

    fn template(extra_labels: serde_json::Value, spec: serde_json::Value) -> Template {
        let obj = object(json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
            "kind": "SandboxTemplate",
            "metadata": {"name": "python", "namespace": "sb", "uid": "u-1", "generation": 3,
                         "labels": extra_labels},
            "spec": spec,
        }));
        Template::from_object(&obj, "extensions.agents.x-k8s.io/v1beta1")
    }

    #[test]
    fn a_template_without_a_policy_gets_the_router_and_no_cluster_dns() {
        let t = template(
            json!({}),
            json!({"podTemplate": {"spec": {"containers": []}}}),
        );
        let p = t.default_profile();
        let sel = p.spec.pod_selector.match_labels.clone().unwrap();
        assert_eq!(sel[TEMPLATE_REF_HASH_LABEL], name_hash("python"));
        assert_eq!(p.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(p.metadata.generation, Some(3));
        assert_eq!(p.spec.dns.as_ref().unwrap().mode, DnsMode::None);
        let from = p.spec.ingress.unwrap().from.unwrap();
        assert_eq!(from, vec![router_peer()]);
        assert!(p.spec.enabled);
    }

    #[test]
    fn a_template_label_with_another_hash_is_selected_too() {
        let t = template(
            json!({TEMPLATE_REF_HASH_LABEL: "0badcafe"}),
            json!({"networkPolicy": {"egress": [{}]}}),
        );
        let p = t.default_profile();
        let e = &p.spec.pod_selector.match_expressions.clone().unwrap()[0];
        assert_eq!(e.operator, "In");
        let mut want = vec!["0badcafe".to_string(), name_hash("python")];
        want.sort();
        assert_eq!(e.values.clone().unwrap(), want);
        assert_eq!(selected_hashes(&p.spec.pod_selector).len(), 2);
        assert!(p.spec.policy.is_some(), "custom rules are kept");
        assert!(p.spec.dns.is_none() && p.spec.ingress.is_none());
    }

    #[test]
    fn opt_out_and_bad_policies_are_read() {
        let mut obj = (*object(json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
            "kind": "SandboxTemplate",
            "metadata": {"name": "t", "namespace": "sb",
                         "annotations": {ISOLATION_ANNOTATION: ISOLATION_DISABLED}},
            "spec": {"networkPolicy": {"egress": "everything"}},
        })))
        .clone();
        let t = Template::from_object(&obj, "v");
        assert!(t.disabled);
        assert!(t.error.is_some(), "a policy that cannot be read is said");
        assert!(!t.default_profile().spec.enabled);
        obj.metadata.annotations = None;
        assert!(!Template::from_object(&obj, "v").disabled);
    }

    fn owned(kind: &str, api: &str, name: &str) -> serde_json::Value {
        json!([{"apiVersion": api, "kind": kind, "name": name, "uid": format!("{name}-uid"), "controller": true}])
    }

    #[test]
    fn pods_are_traced_to_their_template_through_claims_pools_and_labels() {
        let templates = vec![template(json!({}), json!({}))];
        let ext = "extensions.agents.x-k8s.io/v1beta1";
        let pools = vec![object(json!({
            "apiVersion": ext, "kind": "SandboxWarmPool",
            "metadata": {"name": "pool", "namespace": "sb"},
            "spec": {"replicas": 2, "sandboxTemplateRef": {"name": "python"}},
        }))];
        let claims = vec![
            // v1alpha1: the claim names the template.
            object(json!({
                "apiVersion": "extensions.agents.x-k8s.io/v1alpha1", "kind": "SandboxClaim",
                "metadata": {"name": "c1", "namespace": "sb"},
                "spec": {"sandboxTemplateRef": {"name": "python"}},
            })),
            // v1beta1: the claim names a warm pool.
            object(json!({
                "apiVersion": ext, "kind": "SandboxClaim",
                "metadata": {"name": "c2", "namespace": "sb"},
                "spec": {"warmPoolRef": {"name": "pool"}},
            })),
        ];
        let sandbox = |name: &str, owners: serde_json::Value, labels: serde_json::Value| {
            object(json!({
                "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                "metadata": {"name": name, "namespace": "sb", "ownerReferences": owners, "labels": labels},
            }))
        };
        let sandboxes = vec![
            sandbox("s1", owned("SandboxClaim", ext, "c1"), json!({})),
            sandbox("s2", owned("SandboxClaim", ext, "c2"), json!({})),
            sandbox("s3", owned("SandboxWarmPool", ext, "pool"), json!({})),
            sandbox(
                "s4",
                json!([]),
                json!({TEMPLATE_REF_HASH_LABEL: name_hash("python")}),
            ),
            sandbox("lonely", json!([]), json!({})),
        ];
        let own = Ownership::new(&templates, &sandboxes, &claims, &pools);
        let pod_of = |s: &str| -> Vec<OwnerReference> {
            serde_json::from_value(owned("Sandbox", "agents.x-k8s.io/v1beta1", s)).unwrap()
        };
        for s in ["s1", "s2", "s3", "s4"] {
            assert_eq!(own.template_of_pod("sb", &pod_of(s)), Some("python"), "{s}");
        }
        assert_eq!(own.template_of_pod("sb", &pod_of("lonely")), None);
        assert_eq!(own.template_of_pod("other", &pod_of("s1")), None);
        // An owner of another group with the same kind is not a Sandbox.
        let foreign: Vec<OwnerReference> =
            serde_json::from_value(owned("Sandbox", "example.com/v1", "s1")).unwrap();
        assert_eq!(own.template_of_pod("sb", &foreign), None);
    }
}
