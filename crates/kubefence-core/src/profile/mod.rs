//! Isolation profiles: one secure-by-default NetworkPolicy for a pool of
//! untrusted pods (sandboxes, CI runners, notebooks), with guardrails that
//! hold whatever the profile says.
//!
//! ```text
//!  Profile ──build──▶ NetworkPolicy (the pool's selector, Ingress+Egress)
//!     │                 ingress: from the router pods (same namespace)
//!     │                 egress:  0.0.0.0/0 and ::/0 except the blocked ranges
//!     │                          + DNS as configured (cluster | public | none)
//!     │                 or a custom spec, wrapped and narrowed (guardrail)
//!     └─ guardrail::prove (semantics engine): no blocked address reachable
//!  + the namespace's other policies ──effective::reopened_paths──▶ paths
//!    another policy reopens (NetworkPolicies are additive)
//! ```
//!
//! Blocked ranges: the profile's `blockedCIDRs` (default
//! [`DEFAULT_BLOCKED_CIDRS`]: private, carrier-grade NAT, link-local,
//! loopback, unique-local), the cluster's pod and service CIDRs when
//! configured, and always the metadata addresses ([`METADATA_ADDRESSES`]);
//! minus `allowedCIDRs`, the exceptions an administrator states.
//!
//! Pods are addresses in private ranges too: a rule that names "any peer"
//! is narrowed to the public internet (its pods removed), so a custom
//! `egress: [{}]` never reaches another sandbox. Pods named explicitly by a
//! selector in a custom rule are the author's stated choice and stay.
//!
//! Pure: no clock, no I/O; the operator and `kubefence profile render`
//! call the same functions.

mod effective;
mod guardrail;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::ipset::IpSet;
use crate::model::NAMESPACE_NAME_LABEL;
use crate::naming::{self, Source};
use crate::policy::{IpBlock, NetworkPolicy, Peer, PolicyTypes, PortRef, PortSpec, Rule};
use crate::ruleset::{Endpoint, Enforcement, Engine, RuleSet, Traffic, TrafficRule};
use crate::selector::{LabelSelector, Labels};

pub use effective::{Effectiveness, reopened_paths};
pub use guardrail::{Violation, prove, representative_labels};

/// The kind name in policy names and labels.
pub const KIND: &str = "IsolationProfile";
/// The label on a profile's policy naming the profile.
pub const PROFILE_LABEL: &str = "kubefence.dev/profile";
/// The default router: pods with this label in the profile's namespace.
pub const ROUTER_LABEL_KEY: &str = "app.kubernetes.io/component";
pub const ROUTER_LABEL_VALUE: &str = "router";

/// Blocked unless the profile lists its own `blockedCIDRs`.
pub const DEFAULT_BLOCKED_CIDRS: [&str; 9] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

/// The cloud metadata addresses (AWS, GCP, Azure, OpenStack: the IPv4
/// link-local one; AWS's IPv6 one): blocked even when a profile's own
/// `blockedCIDRs` leaves them out, unless `allowedCIDRs` names them.
pub const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];

/// Which resolver the pool may query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Dns {
    /// The cluster resolver (kube-dns), UDP and TCP 53 only.
    #[default]
    Cluster,
    /// The listed resolvers, UDP and TCP 53 (pods whose dnsPolicy is None
    /// and whose dnsConfig names them).
    Public { resolvers: Vec<IpAddr> },
    /// No DNS rule.
    None,
}

/// A custom policy spec: its rules replace the profile's default rules
/// (both directions; a direction it leaves out allows nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRules {
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// An IsolationProfile, validated (the adapter converts the resource).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The kind of the object the profile comes from: [`KIND`], or
    /// `SandboxTemplate` for an agent-sandbox template's default profile;
    /// it is part of the policy's name, so the two never share one.
    #[serde(default = "default_kind")]
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `ingress.from`; `None` for the default router peer, empty for
    /// nobody.
    pub ingress_from: Option<Vec<Peer>>,
    /// `ingress.ports`; empty for every port.
    pub ingress_ports: Vec<PortSpec>,
    /// `egress.publicInternet`.
    pub public_internet: bool,
    /// `blockedCIDRs`; `None` for [`DEFAULT_BLOCKED_CIDRS`].
    pub blocked_cidrs: Option<Vec<IpNet>>,
    pub allowed_cidrs: Vec<IpNet>,
    pub dns: Dns,
    pub custom: Option<CustomRules>,
    /// `spec.engine`: every engine but NetworkPolicy also gets the
    /// guardrails as deny rules ([`guardrail_rule_set`]), which no
    /// namespace policy can override.
    #[serde(default)]
    pub engine: Engine,
}

fn default_kind() -> String {
    KIND.to_string()
}

impl Profile {
    /// A profile with every default, selecting `pod_selector`.
    pub fn new(namespace: &str, name: &str, pod_selector: LabelSelector) -> Self {
        Self {
            kind: KIND.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            pod_selector,
            ingress_from: None,
            ingress_ports: Vec::new(),
            public_internet: true,
            blocked_cidrs: None,
            allowed_cidrs: Vec::new(),
            dns: Dns::Cluster,
            custom: None,
            engine: Engine::NetworkPolicy,
        }
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The name of the profile's policy: `kf-profile-isolationprofile-<name>`
    /// (`kf-profile-sandboxtemplate-<name>` for a template).
    pub fn policy_name(&self) -> String {
        naming::policy_name_for(Source::Profile, &self.kind, &self.namespace, &self.name)
    }

    /// The name of the policy that selects the pool's pods the profile's
    /// selector misses (see the operator's coverage):
    /// `kf-profile-<kind>-<name>-uncovered`, cut and hashed like every name.
    pub fn uncovered_policy_name(&self) -> String {
        naming::policy_name_for(
            Source::Profile,
            &self.kind,
            &self.namespace,
            &format!("{}-uncovered", self.name),
        )
    }

    /// Whether the profile's engine holds the guardrails with deny rules.
    pub fn denies_blocked(&self) -> bool {
        self.engine != Engine::NetworkPolicy
    }

    /// The addresses no rule may reach: blocked ranges, the cluster's
    /// CIDRs and the metadata addresses, minus `allowedCIDRs`.
    pub fn blocked(&self, cfg: &ProfileConfig) -> IpSet {
        let defaults: Vec<IpNet> = DEFAULT_BLOCKED_CIDRS
            .iter()
            .chain(METADATA_ADDRESSES.iter())
            .filter_map(|c| c.parse().ok())
            .collect();
        let metadata: Vec<IpNet> = METADATA_ADDRESSES
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let listed = self.blocked_cidrs.as_deref().unwrap_or(&defaults);
        let blocked = listed
            .iter()
            .chain(&metadata)
            .chain(&cfg.cluster_cidrs)
            .fold(IpSet::empty(), |set, net| set.union(&IpSet::from_net(net)));
        self.allowed_cidrs
            .iter()
            .fold(blocked, |set, net| set.difference(&IpSet::from_net(net)))
    }
}

/// What the cluster says about every profile (operator flags, CLI flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileConfig {
    /// Where the cluster resolver runs, and its pods.
    pub dns_namespaces: LabelSelector,
    pub dns_pods: LabelSelector,
    /// The cluster's pod and service CIDRs: always blocked.
    pub cluster_cidrs: Vec<IpNet>,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            dns_namespaces: LabelSelector::from_labels(Labels::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                "kube-system".to_string(),
            )])),
            dns_pods: LabelSelector::from_labels(Labels::from([(
                "k8s-app".to_string(),
                "kube-dns".to_string(),
            )])),
            cluster_cidrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "IsolationProfile {profile}: spec.podSelector is empty, so its policy would select every pod of namespace {namespace}; refusing"
    )]
    EmptySelector { profile: String, namespace: String },
    #[error("IsolationProfile {profile}: spec.podSelector can match no pod ({selector})")]
    UnsatisfiableSelector { profile: String, selector: String },
    #[error("IsolationProfile {profile}: dns is public but lists no resolver (spec.dns.resolvers)")]
    NoResolvers { profile: String },
    #[error(
        "IsolationProfile {profile}: DNS resolver {resolver} is in a blocked range; list it in spec.allowedCIDRs to allow it"
    )]
    BlockedResolver { profile: String, resolver: IpAddr },
    /// The built policy reaches a blocked address: a bug, never written.
    #[error("IsolationProfile {profile}: the guardrail proof failed: {violations:?}")]
    GuardrailBroken {
        profile: String,
        violations: Vec<String>,
    },
}

/// One change the guardrails made to a custom rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Narrowing {
    /// `spec.policy.egress[0]`: the rule as the profile wrote it.
    pub rule: String,
    /// What changed, in words.
    pub change: String,
}

impl std::fmt::Display for Narrowing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.change)
    }
}

/// The profile's policy and what the guardrails did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    pub policy: NetworkPolicy,
    /// Ownership labels, and the profile's name.
    pub labels: Labels,
    /// The addresses no rule reaches (proved).
    pub blocked: IpSet,
    /// Custom rules the guardrails narrowed, in rule order.
    pub narrowed: Vec<Narrowing>,
}

/// Builds the profile's policy, narrows custom rules to the guardrails and
/// proves with the semantics engine that no rule reaches a blocked address.
pub fn build(profile: &Profile, cfg: &ProfileConfig) -> Result<Built, ProfileError> {
    if profile.pod_selector.is_empty() {
        return Err(ProfileError::EmptySelector {
            profile: profile.id(),
            namespace: profile.namespace.clone(),
        });
    }
    let blocked = profile.blocked(cfg);
    let mut narrowed = Vec::new();
    let (ingress, egress) = match &profile.custom {
        Some(custom) => {
            let mut egress = Vec::new();
            for (i, rule) in custom.egress.iter().enumerate() {
                let at = format!("spec.policy.egress[{i}]");
                if let Some(r) = guardrail::narrow(rule, &blocked, &at, &mut narrowed) {
                    egress.push(r);
                }
            }
            (custom.ingress.clone(), egress)
        }
        None => (
            default_ingress(profile),
            default_egress(profile, cfg, &blocked)?,
        ),
    };
    let policy = NetworkPolicy {
        namespace: profile.namespace.clone(),
        name: profile.policy_name(),
        pod_selector: profile.pod_selector.clone(),
        policy_types: PolicyTypes {
            ingress: true,
            egress: true,
        },
        ingress,
        egress,
    };
    let violations = guardrail::prove(&policy, &blocked).map_err(|selector| {
        ProfileError::UnsatisfiableSelector {
            profile: profile.id(),
            selector,
        }
    })?;
    if !violations.is_empty() {
        return Err(ProfileError::GuardrailBroken {
            profile: profile.id(),
            violations: violations.iter().map(ToString::to_string).collect(),
        });
    }
    let mut labels: Labels = naming::ownership_labels(Source::Profile)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    labels.insert(PROFILE_LABEL.to_string(), profile.name.clone());
    if profile.kind != KIND {
        labels.insert(
            naming::TARGET_KIND_LABEL.to_string(),
            profile.kind.to_ascii_lowercase(),
        );
    }
    Ok(Built {
        policy,
        labels,
        blocked,
        narrowed,
    })
}

/// The router peer of the profile's namespace.
pub fn router_peer() -> Peer {
    Peer::Pods {
        namespace_selector: None,
        pod_selector: Some(LabelSelector::from_labels(Labels::from([(
            ROUTER_LABEL_KEY.to_string(),
            ROUTER_LABEL_VALUE.to_string(),
        )]))),
    }
}

/// The router rule by default; none for an empty `from` (nobody: a rule
/// without peers would admit every peer, never what an empty list means
/// here).
fn default_ingress(profile: &Profile) -> Vec<Rule> {
    let peers = match &profile.ingress_from {
        None => vec![router_peer()],
        Some(peers) if peers.is_empty() => return Vec::new(),
        Some(peers) => peers.clone(),
    };
    vec![Rule {
        peers,
        ports: profile.ingress_ports.clone(),
    }]
}

fn dns_ports() -> Vec<PortSpec> {
    [Protocol::Udp, Protocol::Tcp]
        .into_iter()
        .map(|protocol| PortSpec {
            protocol,
            port: Some(PortRef::Number(53)),
            end_port: None,
        })
        .collect()
}

fn default_egress(
    profile: &Profile,
    cfg: &ProfileConfig,
    blocked: &IpSet,
) -> Result<Vec<Rule>, ProfileError> {
    let mut rules = Vec::new();
    if profile.public_internet {
        let peers = public_peers(blocked);
        if !peers.is_empty() {
            rules.push(Rule {
                peers,
                ports: Vec::new(),
            });
        }
    }
    match &profile.dns {
        Dns::Cluster => rules.push(Rule {
            peers: vec![Peer::Pods {
                namespace_selector: Some(cfg.dns_namespaces.clone()),
                pod_selector: Some(cfg.dns_pods.clone()),
            }],
            ports: dns_ports(),
        }),
        Dns::Public { resolvers } => {
            if resolvers.is_empty() {
                return Err(ProfileError::NoResolvers {
                    profile: profile.id(),
                });
            }
            let mut peers = Vec::new();
            for &resolver in resolvers {
                if blocked.contains(resolver) {
                    return Err(ProfileError::BlockedResolver {
                        profile: profile.id(),
                        resolver,
                    });
                }
                peers.push(Peer::IpBlock(IpBlock {
                    cidr: IpNet::from(resolver),
                    except: Vec::new(),
                }));
            }
            peers.sort_by_key(|p| match p {
                Peer::IpBlock(b) => Some(b.cidr),
                Peer::Pods { .. } => None,
            });
            peers.dedup();
            rules.push(Rule {
                peers,
                ports: dns_ports(),
            });
        }
        Dns::None => {}
    }
    Ok(rules)
}

/// `0.0.0.0/0` and `::/0`, each except the blocked addresses of its family
/// (a family entirely blocked is left out).
pub fn public_peers(blocked: &IpSet) -> Vec<Peer> {
    let mut peers = Vec::new();
    for universe in ["0.0.0.0/0", "::/0"] {
        let Ok(cidr) = universe.parse::<IpNet>() else {
            continue;
        };
        let family = IpSet::from_net(&cidr);
        let except = family.intersection(blocked);
        if except == family {
            continue;
        }
        peers.push(Peer::IpBlock(IpBlock {
            cidr,
            except: except.to_cidrs(),
        }));
    }
    peers
}

/// The names of the guardrail object: (namespaced, cluster-scoped).
pub fn guardrail_names(profile: &Profile) -> (String, String) {
    let name = format!("{}-guardrails", profile.name);
    let kind = profile.kind.to_ascii_lowercase();
    (
        naming::policy_name_for(Source::Profile, &profile.kind, &profile.namespace, &name),
        naming::fit_hashed(
            format!("kf-profile-{kind}-{}-{name}", profile.namespace),
            &format!("profile/{kind}/{}/{name}", profile.namespace),
        ),
    )
}

/// The guardrails as deny rules, for every engine but NetworkPolicy: egress
/// from the pool's pods to every blocked address (and the metadata
/// addresses) is denied, before and whatever namespace NetworkPolicies
/// allow (Cilium: deny wins; ClusterNetworkPolicy Admin tier and
/// AdminNetworkPolicy: evaluated before NetworkPolicies). Nothing else is
/// denied: the profile's own NetworkPolicy still says what is allowed.
///
/// Named `kf-profile-<kind>-<name>-guardrails`; the cluster-scoped engines'
/// name always ends in a hash of the profile's identity (the namespace is
/// not part of a cluster-scoped object's name).
pub fn guardrail_rule_set(profile: &Profile, built: &Built) -> RuleSet {
    let peers: Vec<Endpoint> = built
        .blocked
        .to_cidrs()
        .into_iter()
        .map(Endpoint::cidr)
        .collect();
    let (name, cluster_name) = guardrail_names(profile);
    RuleSet {
        name,
        cluster_name,
        namespace: profile.namespace.clone(),
        subject: profile.pod_selector.clone(),
        ingress: Traffic::default(),
        egress: Traffic {
            isolate: false,
            allow: Vec::new(),
            deny: vec![TrafficRule {
                name: "blocked-ranges".to_string(),
                peers,
                ports: Vec::new(),
            }],
        },
        process: Vec::new(),
        file: Vec::new(),
        enforcement: Enforcement::Enforce,
        rule_prefix: "kubefence-profile".to_string(),
        message: None,
        labels: built.labels.clone(),
        annotations: Labels::new(),
    }
}
