//! The guardrails: narrowing custom egress rules away from blocked
//! addresses, and the proof, with the semantics engine, that the result
//! reaches none.

use crate::engine::{self, AnalyzeOptions};
use crate::ipset::IpSet;
use crate::model::{Cluster, Namespace, Workload, WorkloadKind};
use crate::policy::{IpBlock, NetworkPolicy, Peer, Rule};
use crate::selector::{LabelSelector, Labels, Operator};

use super::{Narrowing, public_peers};

/// A blocked address range the pool could reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub addresses: String,
    pub allowed: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} reachable on {}", self.addresses, self.allowed)
    }
}

/// `rule` narrowed so it reaches no address of `blocked`; `None` when
/// nothing of it is left (a rule is never left without peers: that would
/// allow every peer). Every change is recorded in `narrowed` under `at`.
pub(super) fn narrow(
    rule: &Rule,
    blocked: &IpSet,
    at: &str,
    narrowed: &mut Vec<Narrowing>,
) -> Option<Rule> {
    let mut note = |change: String| {
        narrowed.push(Narrowing {
            rule: at.to_string(),
            change,
        })
    };
    if rule.peers.is_empty() {
        let peers = public_peers(blocked);
        note(
            "any peer narrowed to the public internet: pods (their addresses are in blocked ranges) and blocked ranges removed"
                .to_string(),
        );
        if peers.is_empty() {
            note("rule removed: every address is blocked".to_string());
            return None;
        }
        return Some(Rule {
            peers,
            ports: rule.ports.clone(),
        });
    }
    let mut peers = Vec::new();
    for (j, peer) in rule.peers.iter().enumerate() {
        match peer {
            Peer::Pods { .. } => peers.push(peer.clone()),
            Peer::IpBlock(block) => {
                let addresses = block.addresses();
                let hit = addresses.intersection(blocked);
                if hit.is_empty() {
                    peers.push(peer.clone());
                    continue;
                }
                let remaining = addresses.difference(blocked);
                if remaining.is_empty() {
                    note(format!(
                        "to[{j}] ipBlock {} removed: every address of it is blocked",
                        block.cidr
                    ));
                    continue;
                }
                let except = IpSet::from_net(&block.cidr)
                    .difference(&remaining)
                    .to_cidrs();
                note(format!(
                    "to[{j}] ipBlock {}: blocked addresses {} excepted",
                    block.cidr,
                    hit.display_ranges()
                ));
                peers.push(Peer::IpBlock(IpBlock {
                    cidr: block.cidr,
                    except,
                }));
            }
        }
    }
    if peers.is_empty() {
        note("rule removed: no peer of it is left".to_string());
        return None;
    }
    Some(Rule {
        peers,
        ports: rule.ports.clone(),
    })
}

/// Labels that `selector` matches, built from its requirements (an `In`
/// takes its first value, `Exists` a placeholder, `NotIn` and
/// `DoesNotExist` leave the key out); `None` when they do not match (the
/// selector matches no pod).
pub fn representative_labels(selector: &LabelSelector) -> Option<Labels> {
    let mut labels = selector.match_labels.clone();
    for r in &selector.match_expressions {
        match r.operator {
            Operator::In => {
                if let Some(v) = r.values.iter().next() {
                    labels.entry(r.key.clone()).or_insert_with(|| v.clone());
                }
            }
            Operator::Exists => {
                labels
                    .entry(r.key.clone())
                    .or_insert_with(|| "kubefence-any".to_string());
            }
            Operator::NotIn | Operator::DoesNotExist => {}
        }
    }
    selector.matches(&labels).then_some(labels)
}

/// Proves with the semantics engine that a pod `policy` selects reaches no
/// address of `blocked`: the policy alone (other policies can only add,
/// which the Effective analysis reports) on a pod of the pool. The engine
/// cuts the address space at every ipBlock boundary, so each external
/// endpoint is checked whole. Returns the violations (none when the
/// guardrail holds), or the selector when it matches no pod.
pub fn prove(policy: &NetworkPolicy, blocked: &IpSet) -> Result<Vec<Violation>, String> {
    let Some(labels) = representative_labels(&policy.pod_selector) else {
        return Err(policy.pod_selector.to_string());
    };
    let pool = Workload {
        kind: WorkloadKind::Pod,
        namespace: policy.namespace.clone(),
        name: "kubefence-pool".to_string(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(labels.clone()),
        pod_labels: labels,
        containers: Vec::new(),
        pod_ips: Vec::new(),
    };
    let mut cluster = Cluster::default();
    cluster.namespaces.insert(
        policy.namespace.clone(),
        Namespace::implicit(&policy.namespace),
    );
    let pool_id = pool.id();
    cluster.workloads.push(pool);
    cluster.policies.push(policy.clone());
    let conn = engine::analyze(&cluster, &AnalyzeOptions::default());
    let Some(from) = conn.endpoint_index(&pool_id) else {
        return Err(policy.pod_selector.to_string());
    };
    let mut violations = Vec::new();
    for (to, endpoint) in conn.endpoints.iter().enumerate() {
        let Some(addresses) = &endpoint.addresses else {
            continue;
        };
        let hit = addresses.intersection(blocked);
        if hit.is_empty() {
            continue;
        }
        let allowed = conn.allowed(from, to);
        if !allowed.is_empty() {
            violations.push(Violation {
                addresses: hit.display_ranges(),
                allowed: allowed.to_string(),
            });
        }
    }
    Ok(violations)
}
