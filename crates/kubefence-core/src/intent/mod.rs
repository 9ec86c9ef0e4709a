//! Security intents: a named goal ("only DNS out", "no package managers")
//! resolved into a neutral [`RuleSet`] for the pods a binding selects.
//!
//! ```text
//!  SecurityIntent {id, action, params} ─┐
//!  SecurityIntentBinding {selector}  ───┴─▶ resolve ─▶ RuleSet ─▶ adapters (kubefence-k8s)
//! ```
//!
//! The catalogue is [`CATALOGUE`]; docs/intents.md describes each entry per
//! engine. Nimbus's own ids (`dnsManipulation`, `swDeploymentTools`,
//! `unAuthorizedSaTokenAccess`, `denyExternalNetworkAccess`) keep the
//! meaning Nimbus's adapters give them, with one deliberate difference:
//! the binding's full selector is kept (Nimbus's adapters keep only
//! matchLabels, which widens a policy to pods the binding did not select).
//!
//! An unknown id or a bad parameter is an [`IntentError`] for that intent
//! alone: the caller reports it (a condition on the binding) and resolves
//! the others.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::baseline::{DnsConfig, dns_rule};
use crate::conn::Protocol;
use crate::naming::{self, Source};
use crate::policy::{Peer, PortRef, PortSpec};
use crate::ruleset::{Endpoint, Enforcement, Namespaces, PathRule, RuleSet, Traffic, TrafficRule};
use crate::selector::{LabelSelector, Labels};

/// Label on every object an intent produced: the binding it came from.
pub const BINDING_LABEL: &str = "kubefence.dev/intent-binding";
/// …and the intent's id.
pub const INTENT_ID_LABEL: &str = "kubefence.dev/intent-id";
/// The SecurityIntent's name, unabridged.
pub const INTENT_ANNOTATION: &str = "kubefence.dev/intent";

/// The cloud metadata addresses (AWS, GCP, Azure, OpenStack: IPv4; AWS
/// Nitro: IPv6).
pub const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];

/// Package managers (KubeArmor's policy templates block these paths).
pub const PACKAGE_MANAGERS: [&str; 24] = [
    "/usr/bin/apt",
    "/usr/bin/apt-get",
    "/bin/apt",
    "/bin/apt-get",
    "/sbin/apk",
    "/usr/bin/dpkg",
    "/bin/dpkg",
    "/usr/bin/gdebi",
    "/bin/gdebi",
    "/usr/bin/yum",
    "/bin/yum",
    "/usr/bin/rpm",
    "/bin/rpm",
    "/usr/bin/dnf",
    "/bin/dnf",
    "/usr/bin/pacman",
    "/usr/sbin/pacman",
    "/bin/pacman",
    "/sbin/pacman",
    "/usr/bin/zypper",
    "/bin/zypper",
    "/usr/bin/makepkg",
    "/usr/sbin/makepkg",
    "/bin/makepkg",
];

/// What Nimbus's `swDeploymentTools` adds to the package managers: build
/// and download tools an intruder uses to bring software in.
pub const DEPLOYMENT_TOOLS: [&str; 11] = [
    "/usr/bin/yaourt",
    "/usr/sbin/yaourt",
    "/bin/yaourt",
    "/sbin/yaourt",
    "/usr/bin/make",
    "/bin/make",
    "/usr/bin/curl",
    "/bin/curl",
    "/usr/local/bin/curl",
    "/usr/bin/wget",
    "/bin/wget",
];

/// The resolver configuration Nimbus's `dnsManipulation` protects.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The projected service account token directory.
pub const SA_TOKEN_DIR: &str = "/run/secrets/kubernetes.io/serviceaccount/";

/// One catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub id: &'static str,
    pub summary: &'static str,
    /// Parameter names it accepts (any other is an error).
    pub params: &'static [&'static str],
}

pub const CATALOGUE: [CatalogueEntry; 13] = [
    CatalogueEntry {
        id: "dnsOnly",
        summary: "egress only to the cluster DNS (UDP and TCP 53)",
        params: &[],
    },
    CatalogueEntry {
        id: "dnsManipulation",
        summary: "Nimbus: egress only to the cluster DNS, and /etc/resolv.conf read-only (KubeArmor)",
        params: &[],
    },
    CatalogueEntry {
        id: "denyExternalEgress",
        summary: "egress only to pods of the cluster (and to params.allowCIDRs)",
        params: &["allowCIDRs"],
    },
    CatalogueEntry {
        id: "denyExternalNetworkAccess",
        summary: "Nimbus's name for denyExternalEgress",
        params: &["allowCIDRs"],
    },
    CatalogueEntry {
        id: "egressOnlyToFQDNs",
        summary: "egress only to the cluster DNS and to params.fqdns (on params.ports)",
        params: &["fqdns", "ports"],
    },
    CatalogueEntry {
        id: "denyIngressFromOtherNamespaces",
        summary: "ingress only from pods of the same namespace",
        params: &[],
    },
    CatalogueEntry {
        id: "isolateNamespace",
        summary: "ingress and egress only within the namespace, plus the cluster DNS",
        params: &[],
    },
    CatalogueEntry {
        id: "allowFromMonitoring",
        summary: "ingress from the monitoring pods (params.namespace, params.podLabels, params.ports)",
        params: &["namespace", "podLabels", "ports"],
    },
    CatalogueEntry {
        id: "denyMetadataAccess",
        summary: "no egress to the cloud metadata service (169.254.169.254/32, fd00:ec2::254/128)",
        params: &[],
    },
    CatalogueEntry {
        id: "denyPrivilegedPorts",
        summary: "no ingress to ports 1-1023 (engines with deny by port)",
        params: &[],
    },
    CatalogueEntry {
        id: "pkgMgrs",
        summary: "package managers may not run (KubeArmor)",
        params: &[],
    },
    CatalogueEntry {
        id: "swDeploymentTools",
        summary: "Nimbus: package managers, build and download tools may not run (KubeArmor)",
        params: &[],
    },
    CatalogueEntry {
        id: "unAuthorizedSaTokenAccess",
        summary: "Nimbus: the service account token directory may not be read (KubeArmor)",
        params: &[],
    },
];

/// The intent as written (`spec.intent` of a SecurityIntent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The SecurityIntent's name.
    pub name: String,
    pub id: String,
    pub enforcement: Enforcement,
    pub description: Option<String>,
    pub params: BTreeMap<String, Vec<String>>,
}

/// Where an intent applies: the binding and the pods it selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The binding's name (objects are named after it).
    pub binding: String,
    pub namespace: String,
    pub selector: LabelSelector,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("unknown intent id {id:?}{}", did_you_mean(.suggestion))]
    UnknownId {
        id: String,
        suggestion: Option<&'static str>,
    },
    #[error("intent {id}: unknown parameter {param:?} (accepted: {accepted})")]
    UnknownParam {
        id: String,
        param: String,
        accepted: String,
    },
    #[error("intent {id}: parameter {param}: {reason}")]
    BadParam {
        id: String,
        param: String,
        reason: String,
    },
    #[error(
        "binding {binding}: the selector is empty, so it would select every pod of namespace {namespace}; refusing"
    )]
    EmptySelector { binding: String, namespace: String },
    #[error("intent {id}: the DNS configuration is invalid: {reason}")]
    Dns { id: String, reason: String },
}

fn did_you_mean(s: &Option<&'static str>) -> String {
    s.map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Options shared by every intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The cluster DNS (the baseline's configuration).
    pub dns: DnsConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dns: crate::baseline::BaselineConfig::default().dns,
        }
    }
}

/// The catalogue entry of `id`, exactly (ids are case-sensitive, as in
/// Nimbus).
pub fn entry(id: &str) -> Option<&'static CatalogueEntry> {
    CATALOGUE.iter().find(|e| e.id == id)
}

/// The rule set `intent` means for `subject`.
pub fn resolve(intent: &Intent, subject: &Subject, opts: &Options) -> Result<RuleSet, IntentError> {
    if subject.selector.is_empty() {
        return Err(IntentError::EmptySelector {
            binding: subject.binding.clone(),
            namespace: subject.namespace.clone(),
        });
    }
    let entry = entry(&intent.id).ok_or_else(|| IntentError::UnknownId {
        id: intent.id.clone(),
        suggestion: suggest(&intent.id),
    })?;
    if let Some(param) = intent
        .params
        .keys()
        .find(|p| !entry.params.contains(&p.as_str()))
    {
        return Err(IntentError::UnknownParam {
            id: intent.id.clone(),
            param: param.clone(),
            accepted: if entry.params.is_empty() {
                "none".to_string()
            } else {
                entry.params.join(", ")
            },
        });
    }
    let mut rules = empty_rules(intent, subject);
    let dns = || dns_allow(intent, opts);
    match entry.id {
        "dnsOnly" => rules.egress = isolate_with(vec![dns()?]),
        "dnsManipulation" => {
            rules.egress = isolate_with(vec![dns()?]);
            rules.file = vec![PathRule {
                read_only: true,
                ..PathRule::path(RESOLV_CONF)
            }];
        }
        "denyExternalEgress" | "denyExternalNetworkAccess" => {
            let mut peers = vec![Endpoint::all_pods()];
            peers.extend(cidrs(intent, "allowCIDRs")?.into_iter().map(Endpoint::cidr));
            rules.egress = isolate_with(vec![TrafficRule {
                name: "cluster-pods".into(),
                peers,
                ports: Vec::new(),
            }]);
        }
        "egressOnlyToFQDNs" => {
            let names = fqdns(intent)?;
            rules.egress = isolate_with(vec![
                dns()?,
                TrafficRule {
                    name: "fqdns".into(),
                    peers: names.into_iter().map(Endpoint::Fqdn).collect(),
                    ports: ports(intent)?,
                },
            ]);
        }
        "denyIngressFromOtherNamespaces" => rules.ingress = isolate_with(vec![own_namespace()]),
        "isolateNamespace" => {
            rules.ingress = isolate_with(vec![own_namespace()]);
            rules.egress = isolate_with(vec![own_namespace(), dns()?]);
        }
        "allowFromMonitoring" => {
            rules.ingress = Traffic {
                isolate: false,
                allow: vec![TrafficRule {
                    name: "monitoring".into(),
                    peers: vec![monitoring_peer(intent)?],
                    ports: ports(intent)?,
                }],
                deny: Vec::new(),
            };
        }
        "denyMetadataAccess" => {
            rules.egress = Traffic {
                isolate: false,
                allow: Vec::new(),
                deny: vec![TrafficRule {
                    name: "metadata".into(),
                    peers: METADATA_ADDRESSES
                        .iter()
                        .filter_map(|c| c.parse::<IpNet>().ok())
                        .map(Endpoint::cidr)
                        .collect(),
                    ports: Vec::new(),
                }],
            };
        }
        "denyPrivilegedPorts" => {
            rules.ingress = Traffic {
                isolate: false,
                allow: Vec::new(),
                deny: vec![TrafficRule {
                    name: "privileged-ports".into(),
                    peers: vec![Endpoint::All],
                    ports: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                        .into_iter()
                        .map(|protocol| PortSpec {
                            protocol,
                            port: Some(PortRef::Number(1)),
                            end_port: Some(1023),
                        })
                        .collect(),
                }],
            };
        }
        "pkgMgrs" => rules.process = paths(&PACKAGE_MANAGERS),
        "swDeploymentTools" => {
            rules.process = paths(
                &PACKAGE_MANAGERS
                    .iter()
                    .chain(&DEPLOYMENT_TOOLS)
                    .copied()
                    .collect::<Vec<_>>(),
            );
        }
        "unAuthorizedSaTokenAccess" => {
            rules.file = vec![PathRule {
                path: SA_TOKEN_DIR.to_string(),
                directory: true,
                recursive: true,
                read_only: false,
            }];
        }
        other => {
            // The catalogue and this match are kept together; an entry
            // without a meaning is reported, never guessed.
            return Err(IntentError::UnknownId {
                id: other.to_string(),
                suggestion: None,
            });
        }
    }
    Ok(rules)
}

fn empty_rules(intent: &Intent, subject: &Subject) -> RuleSet {
    let id = intent.id.to_ascii_lowercase();
    let full = format!("kf-intent-{}-{id}", subject.binding).to_ascii_lowercase();
    let identity = format!(
        "intent/{}/{}/{}",
        subject.namespace, subject.binding, intent.id
    );
    let cluster_full =
        format!("kf-intent-{}-{}-{id}", subject.namespace, subject.binding).to_ascii_lowercase();
    let mut labels: Labels = naming::ownership_labels(Source::Intent)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    labels.insert(
        BINDING_LABEL.to_string(),
        label_safe(&subject.binding, &identity),
    );
    labels.insert(
        INTENT_ID_LABEL.to_string(),
        label_safe(&intent.id, &identity),
    );
    let mut annotations = Labels::new();
    annotations.insert(INTENT_ANNOTATION.to_string(), intent.name.clone());
    RuleSet {
        name: naming::fit(full, &identity),
        cluster_name: naming::fit_hashed(cluster_full, &identity),
        namespace: subject.namespace.clone(),
        subject: subject.selector.clone(),
        ingress: Traffic::default(),
        egress: Traffic::default(),
        process: Vec::new(),
        file: Vec::new(),
        enforcement: intent.enforcement,
        rule_prefix: format!("kubefence-intent-{id}"),
        message: intent.description.clone(),
        labels,
        annotations,
    }
}

fn label_safe(value: &str, identity: &str) -> String {
    if crate::validation::label_value(value).is_empty() {
        value.to_string()
    } else {
        naming::fit_hashed("x".to_string(), identity)
    }
}

fn isolate_with(allow: Vec<TrafficRule>) -> Traffic {
    Traffic {
        isolate: true,
        allow,
        deny: Vec::new(),
    }
}

fn own_namespace() -> TrafficRule {
    TrafficRule {
        name: "own-namespace".into(),
        peers: vec![Endpoint::Pods {
            namespaces: Namespaces::Own,
            pods: None,
        }],
        ports: Vec::new(),
    }
}

/// The cluster DNS, from the baseline's DNS configuration.
fn dns_allow(intent: &Intent, opts: &Options) -> Result<TrafficRule, IntentError> {
    let rule = dns_rule(&opts.dns).map_err(|e| IntentError::Dns {
        id: intent.id.clone(),
        reason: e.to_string(),
    })?;
    let peers = rule
        .peers
        .into_iter()
        .map(|p| match p {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => Endpoint::Pods {
                namespaces: namespace_selector
                    .map(Namespaces::Selector)
                    .unwrap_or(Namespaces::Own),
                pods: pod_selector,
            },
            Peer::IpBlock(b) => Endpoint::Cidr(b),
        })
        .collect();
    Ok(TrafficRule {
        name: "dns".into(),
        peers,
        ports: rule.ports,
    })
}

fn paths(paths: &[&str]) -> Vec<PathRule> {
    let mut out: Vec<PathRule> = paths.iter().map(|p| PathRule::path(p)).collect();
    out.sort();
    out.dedup();
    out
}

fn bad(intent: &Intent, param: &str, reason: impl Into<String>) -> IntentError {
    IntentError::BadParam {
        id: intent.id.clone(),
        param: param.to_string(),
        reason: reason.into(),
    }
}

fn cidrs(intent: &Intent, param: &str) -> Result<Vec<IpNet>, IntentError> {
    let mut out = Vec::new();
    for value in intent.params.get(param).into_iter().flatten() {
        let net: IpNet = value
            .parse()
            .map_err(|_| bad(intent, param, format!("{value:?} is not a CIDR")))?;
        if net.trunc() != net {
            return Err(bad(
                intent,
                param,
                format!(
                    "{value:?} has host bits set (did you mean {}?)",
                    net.trunc()
                ),
            ));
        }
        out.push(net);
    }
    Ok(out)
}

fn fqdns(intent: &Intent) -> Result<Vec<String>, IntentError> {
    let names = intent.params.get("fqdns").cloned().unwrap_or_default();
    if names.is_empty() {
        return Err(bad(
            intent,
            "fqdns",
            "required: the DNS names (api.example.com) or patterns (*.example.com) to allow",
        ));
    }
    for name in &names {
        let plain = name.strip_prefix("*.").unwrap_or(name);
        if plain.is_empty()
            || plain.contains('*')
            || !crate::validation::dns1123_subdomain(&plain.to_ascii_lowercase()).is_empty()
        {
            return Err(bad(
                intent,
                "fqdns",
                format!("{name:?} is not a DNS name or a *.name pattern"),
            ));
        }
    }
    Ok(names)
}

/// `80`, `TCP/80`, `UDP/53`, `TCP/8000-8100`.
fn ports(intent: &Intent) -> Result<Vec<PortSpec>, IntentError> {
    let mut out = Vec::new();
    for value in intent.params.get("ports").into_iter().flatten() {
        let (protocol, rest) = match value.split_once('/') {
            Some((p, rest)) => (
                p.to_ascii_uppercase().parse::<Protocol>().map_err(|_| {
                    bad(
                        intent,
                        "ports",
                        format!("{value:?}: unknown protocol {p:?} (TCP, UDP or SCTP)"),
                    )
                })?,
                rest,
            ),
            None => (Protocol::Tcp, value.as_str()),
        };
        let number = |s: &str| -> Result<u16, IntentError> {
            s.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(
                    intent,
                    "ports",
                    format!("{value:?}: {s:?} is not a port (1-65535)"),
                )
            })
        };
        let (port, end_port) = match rest.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(bad(
                        intent,
                        "ports",
                        format!("{value:?}: the range is reversed"),
                    ));
                }
                (lo, Some(hi))
            }
            None => (number(rest)?, None),
        };
        out.push(PortSpec {
            protocol,
            port: Some(PortRef::Number(port)),
            end_port,
        });
    }
    Ok(out)
}

fn monitoring_peer(intent: &Intent) -> Result<Endpoint, IntentError> {
    let namespaces = intent.params.get("namespace").cloned().unwrap_or_default();
    let namespace = match namespaces.as_slice() {
        [] => "monitoring".to_string(),
        [one] if crate::validation::dns1123_label(one).is_empty() => one.clone(),
        [one] => {
            return Err(bad(
                intent,
                "namespace",
                format!("{one:?} is not a namespace name"),
            ));
        }
        _ => return Err(bad(intent, "namespace", "exactly one namespace")),
    };
    let mut labels = Labels::new();
    for pair in intent.params.get("podLabels").into_iter().flatten() {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(intent, "podLabels", format!("{pair:?} is not key=value")))?;
        let errors: Vec<String> = crate::validation::qualified_name(k)
            .into_iter()
            .chain(crate::validation::label_value(v))
            .collect();
        if !errors.is_empty() {
            return Err(bad(
                intent,
                "podLabels",
                format!("{pair:?}: {}", errors.join("; ")),
            ));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(Endpoint::Pods {
        namespaces: Namespaces::Named(namespace),
        pods: (!labels.is_empty()).then(|| LabelSelector::from_labels(labels)),
    })
}

/// The closest catalogue id, when one is close (a typo, or a case slip).
fn suggest(id: &str) -> Option<&'static str> {
    let lower = id.to_ascii_lowercase();
    CATALOGUE
        .iter()
        .map(|e| {
            (
                strsim::levenshtein(&lower, &e.id.to_ascii_lowercase()),
                e.id,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, id)| id)
}
