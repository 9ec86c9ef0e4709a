//! Effectiveness: which paths stay open once the deny-all policy exists.
//!
//! Two views, both from the rules of the semantics engine:
//!
//! - **by rule** (exact for every peer, known or not): a direction of the
//!   target stays open through each rule of another policy of its namespace
//!   that selects the target's pods, isolates that direction and allows a
//!   non-empty set of connections. Policies are additive, so the deny-all
//!   policy takes nothing away from these rules.
//! - **by peer** (the known endpoints): the engine analyses the cluster with
//!   the deny-all policy added; every endpoint still connected to the target
//!   is listed on the rule that `explain` names as allowing it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::engine::{self, AnalyzeOptions};
use crate::model::{Cluster, Workload};
use crate::policy::{Direction, NetworkPolicy, Peer, Rule};

use super::Engine;

/// One path that still reaches the target (ingress) or that the target can
/// still use (egress).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemainingPath {
    pub direction: Direction,
    /// `namespace/name` of the policy that allows it.
    pub policy: String,
    /// Index of the rule in `spec.ingress` / `spec.egress`.
    pub rule: usize,
    /// The rule's peers, as written (`any peer` when it names none).
    pub peer: String,
    /// What the rule allows (ingress: named ports resolved on the target).
    pub ports: String,
    /// Known endpoints the engine finds on this path, with what they may
    /// open (`shop/Deployment/frontend TCP/7070`).
    pub endpoints: Vec<String>,
    /// True when the chosen engine's deny rules override this path.
    pub overridden: bool,
}

impl RemainingPath {
    /// `spec.ingress[0]` / `spec.egress[1]`.
    pub fn rule_field(&self) -> String {
        format!("spec.{}[{}]", self.direction, self.rule)
    }
}

impl std::fmt::Display for RemainingPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let arrow = match self.direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        write!(
            f,
            "{} {arrow} {} on {} (policy {}, {})",
            self.direction,
            self.peer,
            self.ports,
            self.policy,
            self.rule_field()
        )?;
        if self.overridden {
            f.write_str(", overridden by the deny rules")?;
        }
        Ok(())
    }
}

/// Every path still open for `target` once `deny_all` exists in `cluster`;
/// `engine` decides which of them its deny rules override. Sorted.
pub fn remaining_paths(
    target: &Workload,
    deny_all: &NetworkPolicy,
    engine: Engine,
    cluster: &Cluster,
) -> Vec<RemainingPath> {
    let named = target.named_ports();
    let mut paths: Vec<RemainingPath> = open_rules(
        cluster,
        &target.namespace,
        &deny_all.id(),
        |p| p.pod_selector.matches(&target.pod_labels),
        Some(&named),
        engine,
    )
    .into_iter()
    .map(|(path, _)| path)
    .collect();
    add_known_endpoints(target, deny_all, cluster, &mut paths);
    paths.sort();
    paths
}

/// Every rule of a policy of `namespace` (other than the policy `exclude`,
/// `namespace/name`) that `selects` accepts, in each direction the policy
/// isolates, that allows a non-empty set of connections: the paths it keeps
/// open whatever else exists. Ingress ports resolve against `named` (the
/// selected pods' named ports); without it they are kept as written and
/// never judged empty. Each path comes with its rule.
pub fn open_rules<'a>(
    cluster: &'a Cluster,
    namespace: &str,
    exclude: &str,
    selects: impl Fn(&NetworkPolicy) -> bool,
    named: Option<&BTreeMap<String, (Protocol, u16)>>,
    engine: Engine,
) -> Vec<(RemainingPath, &'a Rule)> {
    let mut out = Vec::new();
    let mut policies: Vec<&NetworkPolicy> = cluster
        .policies
        .iter()
        .filter(|p| p.namespace == namespace && p.id() != exclude)
        .filter(|p| selects(p))
        .collect();
    policies.sort_by_key(|p| p.id());
    for policy in policies {
        for direction in [Direction::Ingress, Direction::Egress] {
            if !policy.isolates(direction) {
                continue;
            }
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                // Ingress ports resolve on the target; egress ports on the
                // destination, which may be any pod: keep them as written.
                let ports = match (direction, named) {
                    (Direction::Ingress, Some(named)) => {
                        let conns = engine::resolve_ports(&rule.ports, Some(named));
                        if conns.is_empty() {
                            continue;
                        }
                        conns.to_string()
                    }
                    _ if rule.ports.is_empty() => "all".to_string(),
                    _ => rule
                        .ports
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                };
                if !rule.peers.is_empty() && rule.peers.iter().all(peer_is_empty) {
                    continue;
                }
                out.push((
                    RemainingPath {
                        direction,
                        policy: policy.id(),
                        rule: i,
                        peer: describe_peers(rule),
                        ports,
                        endpoints: Vec::new(),
                        overridden: overrides(engine, direction, rule),
                    },
                    rule,
                ));
            }
        }
    }
    out
}

/// Whether `engine`'s deny rules cover every peer of `rule`.
fn overrides(engine: Engine, direction: Direction, rule: &Rule) -> bool {
    match engine {
        Engine::NetworkPolicy => false,
        // ingressDeny: every pod and every entity but the pod's own node
        // (which NetworkPolicy always allows too); egressDeny: all.
        Engine::Cilium => true,
        // AdminNetworkPolicy (and ClusterNetworkPolicy) ingress peers are
        // namespaces and pods only: a
        // source outside the cluster is not matched by its Deny, so a rule
        // that admits addresses (an ipBlock, or no peers at all) stays open.
        // Egress peers include networks (0.0.0.0/0, ::/0): all covered.
        Engine::AdminNetworkPolicy | Engine::ClusterNetworkPolicy => match direction {
            Direction::Egress => true,
            Direction::Ingress => {
                !rule.peers.is_empty() && rule.peers.iter().all(|p| matches!(p, Peer::Pods { .. }))
            }
        },
    }
}

/// An ipBlock whose exceptions cover its whole CIDR matches nothing.
fn peer_is_empty(peer: &Peer) -> bool {
    match peer {
        Peer::IpBlock(b) => b.addresses().is_empty(),
        Peer::Pods { .. } => false,
    }
}

/// A rule's peers as people read them.
pub fn describe_peers(rule: &Rule) -> String {
    if rule.peers.is_empty() {
        return "any peer (inside and outside the cluster)".to_string();
    }
    rule.peers
        .iter()
        .map(|p| match p {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let mut parts = Vec::new();
                if let Some(ns) = namespace_selector {
                    parts.push(format!("namespaceSelector {ns}"));
                }
                if let Some(pods) = pod_selector {
                    parts.push(format!("podSelector {pods}"));
                }
                parts.join(" ")
            }
            Peer::IpBlock(b) => {
                let mut s = format!("ipBlock {}", b.cidr);
                if !b.except.is_empty() {
                    let ex: Vec<String> = b.except.iter().map(ToString::to_string).collect();
                    s.push_str(&format!(" except {}", ex.join(",")));
                }
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Attaches the known endpoints the engine still connects to the target,
/// each on the rule that `explain` names.
pub(crate) fn add_known_endpoints(
    target: &Workload,
    deny_all: &NetworkPolicy,
    cluster: &Cluster,
    paths: &mut [RemainingPath],
) {
    let mut with = cluster.clone();
    if !with.workloads.iter().any(|w| w.id() == target.id()) {
        with.workloads.push(target.clone());
        with.add_implicit_namespaces();
    }
    with.policies.retain(|p| p.id() != deny_all.id());
    with.policies.push(deny_all.clone());
    let opts = AnalyzeOptions::default();
    let conn = engine::analyze(&with, &opts);
    let Some(t) = conn.endpoint_index(&target.id()) else {
        return;
    };
    for (e, endpoint) in conn.endpoints.iter().enumerate() {
        if e == t {
            continue;
        }
        // explain takes one address for an external endpoint.
        let peer_id = match &endpoint.addresses {
            Some(set) => match set.to_cidrs().first() {
                Some(net) => net.to_string(),
                None => continue,
            },
            None => endpoint.id.clone(),
        };
        for direction in [Direction::Ingress, Direction::Egress] {
            let (from, to) = match direction {
                Direction::Ingress => (e, t),
                Direction::Egress => (t, e),
            };
            if conn.allowed(from, to).is_empty() {
                continue;
            }
            let target_id = target.id();
            let (from_id, to_id) = match direction {
                Direction::Ingress => (peer_id.as_str(), target_id.as_str()),
                Direction::Egress => (target_id.as_str(), peer_id.as_str()),
            };
            let Ok(x) = engine::explain(&with, from_id, to_id, None, &opts) else {
                continue;
            };
            let verdict = match direction {
                Direction::Ingress => &x.ingress,
                Direction::Egress => &x.egress,
            };
            for pv in &verdict.policies {
                for m in &pv.allows {
                    let allowed = m.allowed.intersection(&x.allowed);
                    if allowed.is_empty() {
                        continue;
                    }
                    if let Some(path) = paths.iter_mut().find(|p| {
                        p.direction == direction && p.policy == pv.policy && p.rule == m.rule
                    }) {
                        path.endpoints.push(format!("{} {allowed}", endpoint.id));
                    }
                }
            }
        }
    }
}
