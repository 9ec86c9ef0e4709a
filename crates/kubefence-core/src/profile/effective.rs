//! The Effective analysis: NetworkPolicies are additive, so any other policy
//! of the namespace that selects a pod of the pool can reopen a path the
//! profile closes. The rules are listed by the quarantine plan's code
//! ([`crate::quarantine::open_rules`]); a rule stays on the list unless the
//! profile's own policy already allows everything it allows (same peer, or
//! an ipBlock inside the profile's, on ports the profile's rule covers).
//! The judgement is conservative: a rule it cannot prove harmless (a pod
//! selector other than the profile's own peers, a named port) is listed.
//!
//! With an engine that denies the blocked ranges ([`super::guardrail_rule_set`]),
//! an egress rule whose every peer is an ipBlock inside them reopens
//! nothing (the deny is evaluated first) and is not listed; a rule naming
//! pods or every peer still is (CIDR denies do not reach pods on every
//! engine: Cilium matches pods by identity, not by address).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::engine;
use crate::ipset::IpSet;
use crate::model::{Cluster, Workload};
use crate::policy::{Direction, NetworkPolicy, Peer, PortRef, Rule};
use crate::quarantine::{Engine, RemainingPath, add_known_endpoints, open_rules};

use super::{Built, Profile};

/// The Effective condition's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effectiveness {
    /// Paths another policy reopens, sorted.
    pub reopened: Vec<RemainingPath>,
    /// The namespace's workloads whose pods the profile selects
    /// (`namespace/Kind/name`), when the input lists them.
    pub pool: Vec<String>,
}

impl Effectiveness {
    pub fn effective(&self) -> bool {
        self.reopened.is_empty()
    }
}

/// Every path another policy of the profile's namespace opens for a pod of
/// the pool beyond what the profile allows. Known endpoints on each path
/// are listed when `cluster` holds the pool's workloads.
pub fn reopened_paths(profile: &Profile, built: &Built, cluster: &Cluster) -> Effectiveness {
    let pool: Vec<&Workload> = cluster
        .workloads
        .iter()
        .filter(|w| w.namespace == profile.namespace)
        .filter(|w| profile.pod_selector.matches(&w.pod_labels))
        .collect();
    let named: Option<BTreeMap<String, (Protocol, u16)>> = (!pool.is_empty()).then(|| {
        pool.iter()
            .flat_map(|w| w.named_ports())
            .collect::<BTreeMap<_, _>>()
    });
    let mut reopened: Vec<RemainingPath> = open_rules(
        cluster,
        &profile.namespace,
        &built.policy.id(),
        |p| p.pod_selector.may_overlap(&profile.pod_selector),
        named.as_ref(),
        Engine::NetworkPolicy,
    )
    .into_iter()
    .filter(|(path, rule)| !covered(rule, path.direction, &built.policy))
    .filter(|(path, rule)| {
        !(profile.denies_blocked()
            && path.direction == Direction::Egress
            && only_blocked(rule, &built.blocked))
    })
    .map(|(path, _)| path)
    .collect();
    // One workload per set of pod labels: they behave alike.
    let mut classes: Vec<&Workload> = Vec::new();
    for w in &pool {
        if !classes
            .iter()
            .any(|c| c.pod_labels == w.pod_labels && c.named_ports() == w.named_ports())
        {
            classes.push(w);
        }
    }
    if !reopened.is_empty() {
        for w in &classes {
            add_known_endpoints(w, &built.policy, cluster, &mut reopened);
        }
        for path in &mut reopened {
            path.endpoints.sort();
            path.endpoints.dedup();
        }
    }
    reopened.sort();
    let mut pool: Vec<String> = pool.iter().map(|w| w.id()).collect();
    pool.sort();
    Effectiveness { reopened, pool }
}

/// Whether every peer of `rule` is an ipBlock inside `blocked`.
fn only_blocked(rule: &Rule, blocked: &IpSet) -> bool {
    !rule.peers.is_empty()
        && rule.peers.iter().all(|p| match p {
            Peer::IpBlock(b) => blocked.is_superset(&b.addresses()),
            Peer::Pods { .. } => false,
        })
}

/// Whether `own`'s rules of `direction` already allow every peer and port
/// of `rule`.
fn covered(rule: &Rule, direction: Direction, own: &NetworkPolicy) -> bool {
    let named = rule
        .ports
        .iter()
        .any(|p| matches!(p.port, Some(PortRef::Name(_))));
    let wanted = engine::resolve_ports(&rule.ports, None);
    // Own rules whose ports cover the rule's (a named port only under a
    // rule of every port).
    let wide: Vec<&Rule> = own
        .rules(direction)
        .iter()
        .filter(|r| {
            if named {
                r.ports.is_empty()
            } else {
                wanted
                    .difference(&engine::resolve_ports(&r.ports, None))
                    .is_empty()
            }
        })
        .collect();
    if wide.iter().any(|r| r.peers.is_empty()) {
        return true;
    }
    if rule.peers.is_empty() {
        return false;
    }
    let addresses = wide
        .iter()
        .flat_map(|r| &r.peers)
        .fold(IpSet::empty(), |set, p| match p {
            Peer::IpBlock(b) => set.union(&b.addresses()),
            Peer::Pods { .. } => set,
        });
    rule.peers.iter().all(|p| match p {
        Peer::IpBlock(b) => addresses.is_superset(&b.addresses()),
        Peer::Pods { .. } => wide.iter().flat_map(|r| &r.peers).any(|q| q == p),
    })
}
