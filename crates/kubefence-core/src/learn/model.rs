//! What was observed, in the shape every learning source shares.
//!
//! Two sources feed the learner: flow records (Hubble, the node agent),
//! which are folded into connections, and Kubescape's NetworkNeighborhoods,
//! which already hold the neighbours per workload. Both end as a
//! [`Neighborhood`] per workload; one builder turns neighborhoods into
//! policies, so the two sources can never disagree about what a neighbour
//! means.
//!
//! The types are plain data (no I/O, no Kubernetes client). The formats that
//! carry them (Kubescape's CRDs, kubefence's own CRDs, Hubble JSON) are read
//! and written in `kubefence-k8s`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::conn::Protocol;
use crate::selector::LabelSelector;

/// The workload a neighborhood belongs to, as Kubescape names it in its
/// `kubescape.io/workload-{kind,name,namespace}` labels. `kind` is the
/// Kubernetes kind as written there (`Deployment`, `deployment`, …); it is
/// compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// Everything one workload was seen talking to, in both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighborhood {
    pub workload: WorkloadRef,
    /// Selects the workload's pods: its own `spec.selector` (never a
    /// per-replica or per-run label).
    pub selector: LabelSelector,
    /// Peers that opened connections to the workload.
    pub ingress: Vec<Neighbor>,
    /// Peers the workload opened connections to.
    pub egress: Vec<Neighbor>,
}

/// One peer and the ports used with it, in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub peer: NeighborPeer,
    /// Destination ports: the workload's own ports for ingress, the peer's
    /// for egress. Never empty for a neighbour that becomes a rule: a
    /// neighbour without ports is reported, not turned into "every port".
    pub ports: BTreeSet<ObservedPort>,
    /// Where the neighbour came from, for the annotations on each rule.
    /// `None` when the source carries no evidence (a Kubescape object).
    pub evidence: Option<Evidence>,
}

/// Who is on the other side.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NeighborPeer {
    /// Pods in the cluster. `namespace_selector: None` means the workload's
    /// own namespace. A neighbour with neither selector is never "every
    /// pod": the builder refuses it (Kubescape turns it into allow-any).
    Pods {
        namespace_selector: Option<LabelSelector>,
        pod_selector: Option<LabelSelector>,
    },
    /// An address outside the pod network, with the DNS names that
    /// answered with it (empty when none was seen).
    Address {
        ip: IpAddr,
        dns_names: BTreeSet<String>,
    },
    /// A Cilium reserved identity that is not a pod.
    Reserved(ReservedPeer),
}

/// Cilium's reserved identities that are not pods and not plain addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReservedPeer {
    /// `reserved:kube-apiserver`: becomes a rule to the API server's
    /// addresses (from the `default/kubernetes` Endpoints when given).
    KubeApiserver,
    /// `reserved:host`: the node the pod runs on. Left out unless asked.
    Host,
    /// `reserved:remote-node`: another node. Left out unless asked.
    RemoteNode,
}

/// A destination port as observed. `name` is the container port name when
/// the destination declares one for this port (so the rule can name it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObservedPort {
    pub protocol: Protocol,
    pub port: u16,
    pub name: Option<String>,
}

/// How often and when a neighbour was seen. Times are RFC 3339 strings as
/// the source wrote them, compared as text (they are UTC with the same
/// precision within one source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub connections: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

/// Kubescape's KnownServer entries, flattened: named CIDRs that an observed
/// external address is widened to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownServer {
    /// The KnownServer object's name.
    pub object: String,
    /// The entry's `name`.
    pub name: String,
    /// The entry's `server` (a host name, informative).
    pub server: String,
    pub ip_block: IpNet,
}

/// Why a rule's peer is what it is, as Kubescape's `policyRef[]` records it
/// on a GeneratedNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The CIDR written in the policy.
    pub ip_block: IpNet,
    /// The address that was observed.
    pub original_ip: IpAddr,
    /// The DNS name that answered with it, if any.
    pub dns: Option<String>,
    /// The KnownServer entry name, or the DNS name.
    pub name: Option<String>,
    /// The KnownServer entry's server.
    pub server: Option<String>,
}
