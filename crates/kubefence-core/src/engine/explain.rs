//! `explain`: the verdict for one pair, direction by direction, with the
//! rules that allow it or, when denied, the nearest rule and what did not
//! match.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::conn::{ConnSet, Protocol};
use crate::ipset::IpSet;
use crate::model::{Cluster, Workload};
use crate::policy::{Direction, NetworkPolicy, Peer, PortRef, PortSpec, Rule};
use crate::selector::Labels;

use super::AnalyzeOptions;
use super::index::{Class, Index, PodKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("no endpoint {0:?}: give namespace/Kind/name, namespace/name, an IP address or a CIDR")]
    UnknownEndpoint(String),
    #[error("{0:?} names several endpoints: {1}; give namespace/Kind/name")]
    Ambiguous(String, String),
    #[error("both ends are outside the cluster; at least one must be a workload")]
    BothExternal,
    #[error("{0} is a pod address in this input; name its workload instead")]
    PodAddress(String),
    #[error(
        "the policies treat parts of {0} differently ({1}); explain one address or a smaller range"
    )]
    SplitRange(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    /// The probe, when one port was asked about.
    pub port: Option<(Protocol, u16)>,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// What the pair allows: egress ∩ ingress (restricted to the probe).
    pub allowed: ConnSet,
}

impl Explanation {
    pub fn is_allowed(&self) -> bool {
        !self.allowed.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionVerdict {
    pub direction: Direction,
    /// The endpoint whose policies decide: the source for egress, the
    /// destination for ingress.
    pub subject: String,
    /// False when the subject is outside the cluster: nothing is enforced.
    pub enforced: bool,
    /// Whether any policy isolates the subject in this direction.
    pub isolated: bool,
    pub allowed: ConnSet,
    /// Every policy isolating the subject in this direction.
    pub policies: Vec<PolicyVerdict>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// `namespace/name`.
    pub policy: String,
    /// Rules that allow part of the asked connections.
    pub allows: Vec<RuleMatch>,
    /// When nothing is allowed: the nearest rule and why it did not match.
    pub nearest_miss: Option<RuleMiss>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    pub rule: usize,
    pub allowed: ConnSet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMiss {
    /// `None` when the policy has no rules in this direction.
    pub rule: Option<usize>,
    pub reason: String,
}

/// Explains whether `from` may reach `to` (endpoint ids, `namespace/name`,
/// IP addresses or CIDRs), optionally on one port.
pub fn explain(
    cluster: &Cluster,
    from: &str,
    to: &str,
    port: Option<(Protocol, u16)>,
    opts: &AnalyzeOptions,
) -> Result<Explanation, ExplainError> {
    let src = resolve(cluster, from, opts)?;
    let dst = resolve(cluster, to, opts)?;
    if matches!((&src, &dst), (Resolved::External(_), Resolved::External(_))) {
        return Err(ExplainError::BothExternal);
    }

    let keys: Vec<PodKey> = [&src, &dst]
        .iter()
        .filter_map(|r| match r {
            Resolved::Workload(w) => Some(pod_key(w)),
            Resolved::External(_) => None,
        })
        .collect();
    let extra: Vec<IpSet> = [&src, &dst]
        .iter()
        .filter_map(|r| match r {
            Resolved::External(set) => Some(set.clone()),
            Resolved::Workload(_) => None,
        })
        .collect();
    // Only the policies of the two ends' namespaces can isolate them, so
    // only those are indexed: a one-pair question costs what those
    // policies cost, not the whole cluster.
    let namespaces: Vec<&str> = [&src, &dst]
        .iter()
        .filter_map(|r| match r {
            Resolved::Workload(w) => Some(w.namespace.as_str()),
            Resolved::External(_) => None,
        })
        .collect();
    let policies: Vec<usize> = cluster
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| namespaces.contains(&p.namespace.as_str()))
        .map(|(i, _)| i)
        .collect();
    let index = Index::build_for(cluster, &keys, &extra, opts, &policies);

    let mut next_pod = 0;
    let mut class_of = |r: &Resolved<'_>, text: &str| -> Result<usize, ExplainError> {
        match r {
            Resolved::Workload(_) => {
                next_pod += 1;
                Ok(next_pod - 1)
            }
            Resolved::External(set) => external_class(&index, set, text),
        }
    };
    let src_class = class_of(&src, from)?;
    let dst_class = class_of(&dst, to)?;

    let probe = port.map(|(p, n)| ConnSet::port(p, n));
    let restrict = |c: ConnSet| match &probe {
        Some(p) => c.intersection(p),
        None => c,
    };

    let egress = verdict(
        &index,
        Direction::Egress,
        (src_class, &src),
        (dst_class, &dst),
        port,
        &restrict,
    );
    let ingress = verdict(
        &index,
        Direction::Ingress,
        (src_class, &src),
        (dst_class, &dst),
        port,
        &restrict,
    );
    let allowed = egress.allowed.intersection(&ingress.allowed);
    Ok(Explanation {
        from: src.id(),
        to: dst.id(),
        port,
        egress,
        ingress,
        allowed,
    })
}

enum Resolved<'c> {
    Workload(&'c Workload),
    External(IpSet),
}

impl Resolved<'_> {
    fn id(&self) -> String {
        match self {
            Self::Workload(w) => w.id(),
            Self::External(set) => set.display_ranges(),
        }
    }
}

fn pod_key(w: &Workload) -> PodKey {
    let mut ips = w.pod_ips.clone();
    ips.sort();
    ips.dedup();
    PodKey {
        namespace: w.namespace.clone(),
        labels: w.pod_labels.clone(),
        named_ports: w.named_ports(),
        ips,
    }
}

fn resolve<'c>(
    cluster: &'c Cluster,
    text: &str,
    opts: &AnalyzeOptions,
) -> Result<Resolved<'c>, ExplainError> {
    let addresses = text
        .parse::<IpAddr>()
        .map(IpSet::from_addr)
        .or_else(|_| text.parse::<IpNet>().map(|n| IpSet::from_net(&n.trunc())));
    if let Ok(set) = addresses {
        if opts.ipblocks_match_pod_ips
            && let Some(w) = cluster
                .workloads
                .iter()
                .find(|w| w.pod_ips.iter().any(|ip| set.contains(*ip)))
        {
            return Err(ExplainError::PodAddress(format!("{text} ({})", w.id())));
        }
        return Ok(Resolved::External(set));
    }
    let exact: Vec<&Workload> = cluster
        .workloads
        .iter()
        .filter(|w| w.id().eq_ignore_ascii_case(text))
        .collect();
    let candidates = if exact.is_empty() {
        cluster
            .workloads
            .iter()
            .filter(|w| format!("{}/{}", w.namespace, w.name) == text)
            .collect()
    } else {
        exact
    };
    match candidates.as_slice() {
        [one] => Ok(Resolved::Workload(one)),
        [] => Err(ExplainError::UnknownEndpoint(text.to_string())),
        many => Err(ExplainError::Ambiguous(
            text.to_string(),
            many.iter().map(|w| w.id()).collect::<Vec<_>>().join(", "),
        )),
    }
}

fn external_class(index: &Index<'_>, set: &IpSet, text: &str) -> Result<usize, ExplainError> {
    let pieces: Vec<(usize, &IpSet)> = index
        .classes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Class::External(range) if range.intersects(set) => Some((i, range)),
            _ => None,
        })
        .collect();
    match pieces.as_slice() {
        [(i, _)] => Ok(*i),
        [] => Err(ExplainError::UnknownEndpoint(text.to_string())),
        many => Err(ExplainError::SplitRange(
            text.to_string(),
            many.iter()
                .map(|(_, r)| r.intersection(set).display_ranges())
                .collect::<Vec<_>>()
                .join(" | "),
        )),
    }
}

fn verdict(
    index: &Index<'_>,
    direction: Direction,
    src: (usize, &Resolved<'_>),
    dst: (usize, &Resolved<'_>),
    probe: Option<(Protocol, u16)>,
    restrict: &dyn Fn(ConnSet) -> ConnSet,
) -> DirectionVerdict {
    let (subject, peer) = match direction {
        Direction::Egress => (src, dst),
        Direction::Ingress => (dst, src),
    };
    let enforced = index.is_pod(subject.0);
    let allowed = restrict(index.allowed(src.0, dst.0, direction).into_owned());
    let isolating = if enforced {
        index.isolating(subject.0, direction).to_vec()
    } else {
        Vec::new()
    };
    let cluster = index.cluster;
    let policies = isolating
        .iter()
        .map(|&pi| {
            let policy = &cluster.policies[pi];
            let mut allows = Vec::new();
            let mut candidates: Vec<(usize, bool, ConnSet)> = Vec::new();
            for rule in index.rules_of(pi, direction) {
                let conns = restrict(index.rule_conns(rule, dst.0).into_owned());
                let peer_matches = rule.peers.contains(peer.0);
                if peer_matches && !conns.is_empty() {
                    allows.push(RuleMatch {
                        rule: rule.id.rule,
                        allowed: conns,
                    });
                } else {
                    candidates.push((rule.id.rule, peer_matches, conns));
                }
            }
            let nearest_miss = allows.is_empty().then(|| {
                nearest_miss(
                    cluster,
                    policy,
                    direction,
                    (peer.1, dst.1),
                    probe,
                    &candidates,
                )
            });
            PolicyVerdict {
                policy: policy.id(),
                allows,
                nearest_miss,
            }
        })
        .collect();
    DirectionVerdict {
        direction,
        subject: subject.1.id(),
        enforced,
        isolated: enforced && !isolating.is_empty(),
        allowed,
        policies,
    }
}

/// Picks the rule closest to matching: one whose peer matched (only the
/// ports failed), else one whose ports matched (only the peer failed), else
/// the first. A port miss names what the rule allows and, when one port was
/// asked about, that port.
fn nearest_miss(
    cluster: &Cluster,
    policy: &NetworkPolicy,
    direction: Direction,
    (peer, dst): (&Resolved<'_>, &Resolved<'_>),
    probe: Option<(Protocol, u16)>,
    candidates: &[(usize, bool, ConnSet)],
) -> RuleMiss {
    if candidates.is_empty() {
        return RuleMiss {
            rule: None,
            reason: format!("it has no {direction} rules, so it allows no {direction} traffic"),
        };
    }
    let pick = candidates
        .iter()
        .find(|(_, peer_ok, _)| *peer_ok)
        .or_else(|| candidates.iter().find(|(_, _, conns)| !conns.is_empty()))
        .unwrap_or(&candidates[0]);
    let (ri, peer_ok, conns) = pick;
    let rule = &policy.rules(direction)[*ri];
    let reason = if *peer_ok {
        format!(
            "the peer matches but the ports do not: the rule allows {}",
            describe_ports(rule, dst, probe)
        )
    } else {
        let why = describe_peer_miss(cluster, policy, rule, peer);
        if conns.is_empty() {
            format!(
                "{why}; and the ports do not match: the rule allows {}",
                describe_ports(rule, dst, probe)
            )
        } else {
            why
        }
    };
    RuleMiss {
        rule: Some(*ri),
        reason,
    }
}

/// What a rule's `ports` allow, in words: `TCP/5432`, `every UDP port`,
/// ``port `http` (TCP/8080 on the destination)``; then `, not TCP/22` when
/// one port was asked about.
fn describe_ports(rule: &Rule, dst: &Resolved<'_>, probe: Option<(Protocol, u16)>) -> String {
    let allowed = if rule.ports.is_empty() {
        "every port".to_string()
    } else {
        let named = match dst {
            Resolved::Workload(w) => Some(w.named_ports()),
            Resolved::External(_) => None,
        };
        rule.ports
            .iter()
            .map(|spec| describe_port_spec(spec, named.as_ref()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match probe {
        Some((protocol, port)) => format!("{allowed}, not {protocol}/{port}"),
        None => allowed,
    }
}

fn describe_port_spec(
    spec: &PortSpec,
    named: Option<&BTreeMap<String, (Protocol, u16)>>,
) -> String {
    let protocol = spec.protocol;
    match &spec.port {
        None => format!("every {protocol} port"),
        Some(PortRef::Number(n)) => match spec.end_port {
            Some(end) if end != *n => format!("{protocol}/{n}-{end}"),
            _ => format!("{protocol}/{n}"),
        },
        Some(PortRef::Name(name)) => {
            let resolved = match named {
                None => "nothing outside the cluster: addresses have no named ports".to_string(),
                Some(ports) => match ports.get(name) {
                    Some(&(declared, number)) if declared == protocol => {
                        format!("{protocol}/{number} on the destination")
                    }
                    Some(&(declared, number)) => format!(
                        "nothing: the destination declares `{name}` as {declared}/{number}, \
                         not {protocol}"
                    ),
                    None => format!("nothing: the destination declares no port named `{name}`"),
                },
            };
            format!("port `{name}` ({resolved})")
        }
    }
}

fn describe_peer_miss(
    cluster: &Cluster,
    policy: &NetworkPolicy,
    rule: &Rule,
    peer: &Resolved<'_>,
) -> String {
    let reasons: Vec<String> = rule
        .peers
        .iter()
        .map(|p| match (p, peer) {
            (Peer::IpBlock(block), Resolved::External(_)) => {
                format!("ipBlock {} does not contain {}", describe_block(block), peer.id())
            }
            (Peer::IpBlock(block), Resolved::Workload(_)) => format!(
                "ipBlock {} matches addresses, not this pod (pods are matched by selectors; see --ipblocks-match-pod-ips)",
                describe_block(block)
            ),
            (Peer::Pods { .. }, Resolved::External(_)) => {
                "pod and namespace selectors never match addresses outside the cluster".to_string()
            }
            (
                Peer::Pods {
                    namespace_selector,
                    pod_selector,
                },
                Resolved::Workload(w),
            ) => {
                let ns_labels = cluster
                    .namespace_labels(&w.namespace)
                    .cloned()
                    .unwrap_or_default();
                match namespace_selector {
                    None if w.namespace != policy.namespace => format!(
                        "podSelector {} only selects pods of namespace {}, and {} is in {}",
                        pod_selector.as_ref().map(ToString::to_string).unwrap_or_default(),
                        policy.namespace,
                        w.id(),
                        w.namespace
                    ),
                    Some(sel) if !sel.matches(&ns_labels) => format!(
                        "namespaceSelector {sel} does not match namespace {} (labels {})",
                        w.namespace,
                        labels_text(&ns_labels)
                    ),
                    _ => match pod_selector {
                        Some(sel) if !sel.matches(&w.pod_labels) => format!(
                            "podSelector {sel} does not match pod labels {}",
                            labels_text(&w.pod_labels)
                        ),
                        _ => "the peer matches".to_string(),
                    },
                }
            }
        })
        .collect();
    format!("no peer matches {}: {}", peer.id(), reasons.join("; "))
}

fn describe_block(block: &crate::policy::IpBlock) -> String {
    if block.except.is_empty() {
        block.cidr.to_string()
    } else {
        let except: Vec<String> = block.except.iter().map(ToString::to_string).collect();
        format!("{} except {}", block.cidr, except.join(","))
    }
}

fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "none".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
