//! NetworkPolicy (networking.k8s.io/v1) as the semantics engine sees it.
//!
//! These values are already validated: the adapter that builds them from
//! Kubernetes objects rejects what the API server would reject, so the
//! engine never meets an invalid selector, CIDR or port range.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::ipset::IpSet;
use crate::selector::LabelSelector;

/// Which directions a policy isolates, after `policyTypes` defaulting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyTypes {
    pub ingress: bool,
    pub egress: bool,
}

impl PolicyTypes {
    /// Upstream defaulting when `policyTypes` is omitted: Ingress always,
    /// Egress only when `spec.egress` has at least one rule (the API server
    /// checks `len(spec.egress) > 0`, so `egress: []` does not isolate).
    pub fn defaulted(has_egress_rules: bool) -> Self {
        Self {
            ingress: true,
            egress: has_egress_rules,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    pub policy_types: PolicyTypes,
    /// Rules of `spec.ingress`; ignored unless `policy_types.ingress`.
    pub ingress: Vec<Rule>,
    /// Rules of `spec.egress`; ignored unless `policy_types.egress`.
    pub egress: Vec<Rule>,
}

impl NetworkPolicy {
    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn isolates(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.policy_types.ingress,
            Direction::Egress => self.policy_types.egress,
        }
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One ingress or egress rule. Empty `peers` matches every peer (including
/// addresses outside the cluster); empty `ports` matches every connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector`. An absent namespace selector
    /// means the policy's own namespace; an absent pod selector means every
    /// pod of the selected namespaces. At least one is present.
    Pods {
        namespace_selector: Option<LabelSelector>,
        pod_selector: Option<LabelSelector>,
    },
    IpBlock(IpBlock),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlock {
    /// The addresses the block matches: its CIDR minus every `except`.
    pub fn addresses(&self) -> IpSet {
        self.except
            .iter()
            .fold(IpSet::from_net(&self.cidr), |set, ex| {
                set.difference(&IpSet::from_net(ex))
            })
    }
}

/// One `ports` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub protocol: Protocol,
    /// `None` means every port of the protocol.
    pub port: Option<PortRef>,
    /// Inclusive end of a numeric range (`endPort`).
    pub end_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortRef {
    Number(u16),
    /// A container port name, resolved against the destination pod.
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.port, self.end_port) {
            (None, _) => write!(f, "{}/*", self.protocol),
            (Some(p), Some(end)) => write!(f, "{}/{p}-{end}", self.protocol),
            (Some(p), None) => write!(f, "{}/{p}", self.protocol),
        }
    }
}
