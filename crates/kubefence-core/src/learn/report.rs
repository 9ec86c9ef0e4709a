//! What learning read, what it left out and why, and what it widened.
//!
//! Nothing observed disappears silently: a flow that does not become a rule
//! is either counted (replies, drops) or listed with its reason, so a
//! reviewer can tell "never seen" from "seen and refused".

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// Flow counts, by what became of each flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounts {
    /// Every flow given to the learner.
    pub read: u64,
    /// Distinct connections counted (once each, from the opening).
    pub connections: u64,
    /// Flows marked `is_reply: true`, or SYN-ACKs: never rules.
    pub replies: u64,
    /// Flows of unknown direction recognised as replies: from a port the
    /// sender was seen listening on, to a port the receiver was not.
    pub inferred_replies: u64,
    /// Flows the datapath dropped or failed (`DROPPED`, `ERROR`): attempts,
    /// not connections that worked, so not learned.
    pub not_forwarded: u64,
    /// Socket-level traces (`SOCK`): service translation, not packets.
    pub socket_traces: u64,
    /// DNS answers that named addresses.
    pub dns_answers: u64,
}

impl FlowCounts {
    /// Adds the counts of another part of the input.
    pub fn add(&mut self, other: &FlowCounts) {
        self.read += other.read;
        self.connections += other.connections;
        self.replies += other.replies;
        self.inferred_replies += other.inferred_replies;
        self.not_forwarded += other.not_forwarded;
        self.socket_traces += other.socket_traces;
        self.dns_answers += other.dns_answers;
    }
}

/// One thing that did not become a rule, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LeftOut {
    /// The workload whose policy it concerns (`namespace/Kind/name`), or the
    /// source endpoint when no workload is known.
    pub subject: String,
    /// The other side, as far as it is known.
    pub peer: String,
    pub reason: LeftOutReason,
    /// How many flows (for flow input) or neighbours (for neighborhoods).
    pub count: u64,
}

/// Why something was left out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LeftOutReason {
    /// A pod that no `workloads[]` entry, pod-name pattern or manifest
    /// attributes to a workload: it gets no policy of its own.
    UnattributedPod,
    /// A pod or peer without a label that every pod of its workload
    /// carries: no selector can name it without naming every pod.
    NoStableLabels,
    /// A peer whose identity is not one a policy can name (Cilium's
    /// `health`, `init`, `unmanaged`, an unknown reserved identity, or an
    /// endpoint without labels and namespace).
    UnknownIdentity,
    /// ICMP and other protocols without ports: a NetworkPolicy can only
    /// allow them by allowing every port.
    PortlessProtocol,
    /// A TCP, UDP or SCTP flow without a destination port.
    NoPort,
    /// Flows whose direction could not be told (no `is_reply`, no SYN, and
    /// no known listening port on either side).
    UnknownDirection,
    /// `reserved:host` or `reserved:remote-node`: node addresses are left
    /// out unless node peers are allowed.
    NodePeer,
    /// Node peers are allowed but no node addresses were given.
    NoNodeAddress,
    /// `reserved:kube-apiserver` without the API server's addresses.
    NoApiServerAddress,
    /// A neighbour with ports but neither a selector nor an address:
    /// Kubescape turns it into "allow any"; kubefence refuses it.
    NeighbourWithoutSelector,
    /// A neighbour without ports: it would allow every port.
    NeighbourWithoutPorts,
    /// The workload's selector is empty: its policy would select every pod
    /// of the namespace.
    EmptyWorkloadSelector,
    /// The workload has no namespace.
    NoNamespace,
    /// The policy name would not be a valid Kubernetes name.
    InvalidName(String),
    /// Two neighborhoods of the same workload disagree on its selector; the
    /// one kept is named.
    ConflictingSelector(String),
}

impl std::fmt::Display for LeftOutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnattributedPod => f.write_str("pod not attributed to a workload"),
            Self::NoStableLabels => {
                f.write_str("no label common to the workload's pods to select it by")
            }
            Self::UnknownIdentity => f.write_str("identity a policy cannot name"),
            Self::PortlessProtocol => f.write_str("protocol without ports (ICMP, ...)"),
            Self::NoPort => f.write_str("no destination port"),
            Self::UnknownDirection => f.write_str("direction unknown (no is_reply, no SYN)"),
            Self::NodePeer => f.write_str("node peer (host, remote-node) left out"),
            Self::NoNodeAddress => f.write_str("node peers allowed but no node address given"),
            Self::NoApiServerAddress => f.write_str("kube-apiserver peer without its addresses"),
            Self::NeighbourWithoutSelector => {
                f.write_str("neighbour with neither selector nor address (refused: allow-any)")
            }
            Self::NeighbourWithoutPorts => {
                f.write_str("neighbour without ports (refused: every port)")
            }
            Self::EmptyWorkloadSelector => {
                f.write_str("empty workload selector (refused: every pod of the namespace)")
            }
            Self::NoNamespace => f.write_str("workload without namespace"),
            Self::InvalidName(why) => write!(f, "invalid policy name: {why}"),
            Self::ConflictingSelector(kept) => {
                write!(f, "neighborhoods disagree on the selector; kept {kept}")
            }
        }
    }
}

/// External addresses collapsed into one prefix (`aggregate_external`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Widened {
    /// `namespace/Kind/name` of the workload.
    pub workload: String,
    pub dns: String,
    pub addresses: BTreeSet<IpAddr>,
    /// The prefix written, or `None` when the covering prefix was wider
    /// than allowed and the addresses were kept one by one.
    pub prefix: Option<IpNet>,
    /// The smallest prefix covering the addresses.
    pub covering: IpNet,
}

/// Everything learning has to tell besides the policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LearnReport {
    pub flows: FlowCounts,
    /// Sorted.
    pub left_out: Vec<LeftOut>,
    /// Sorted.
    pub widened: Vec<Widened>,
    /// Addresses seen with `reserved:kube-apiserver`: a fallback for the
    /// API server's addresses when the Endpoints are not at hand.
    pub api_server_addresses: BTreeSet<IpAddr>,
    /// Addresses seen with `reserved:host` / `reserved:remote-node`.
    pub node_addresses: BTreeSet<IpAddr>,
}

impl LearnReport {
    /// Adds `other`'s findings (the learner's and the builder's reports
    /// are shown together).
    pub fn merge(&mut self, other: LearnReport) {
        self.flows.add(&other.flows);
        self.left_out.extend(other.left_out);
        self.widened.extend(other.widened);
        self.api_server_addresses.extend(other.api_server_addresses);
        self.node_addresses.extend(other.node_addresses);
        self.sort();
    }

    /// Whether a workload got no policy because of what it is (an empty
    /// selector, no namespace, a name Kubernetes would reject): the CLI
    /// exits non-zero then.
    pub fn has_errors(&self) -> bool {
        self.left_out.iter().any(|l| {
            matches!(
                l.reason,
                LeftOutReason::EmptyWorkloadSelector
                    | LeftOutReason::NoNamespace
                    | LeftOutReason::InvalidName(_)
            )
        })
    }

    pub(crate) fn sort(&mut self) {
        self.left_out.sort();
        self.left_out.dedup();
        self.widened.sort();
        self.widened.dedup();
    }

    /// A human-readable summary, one finding per line.
    pub fn to_text(&self) -> String {
        let f = &self.flows;
        let mut out = format!(
            "flows read: {}, connections: {}, replies: {} (+{} inferred), not forwarded: {}, socket traces: {}, DNS answers: {}\n",
            f.read,
            f.connections,
            f.replies,
            f.inferred_replies,
            f.not_forwarded,
            f.socket_traces,
            f.dns_answers
        );
        for l in &self.left_out {
            out.push_str(&format!(
                "left out: {} <-> {}: {} ({})\n",
                l.subject, l.peer, l.reason, l.count
            ));
        }
        for w in &self.widened {
            let addrs: Vec<String> = w.addresses.iter().map(ToString::to_string).collect();
            match w.prefix {
                Some(p) => out.push_str(&format!(
                    "widened: {} {} ({}) -> {p}\n",
                    w.workload,
                    w.dns,
                    addrs.join(", ")
                )),
                None => out.push_str(&format!(
                    "not widened: {} {} ({}): covering prefix {} is too wide\n",
                    w.workload,
                    w.dns,
                    addrs.join(", "),
                    w.covering
                )),
            }
        }
        out
    }
}
