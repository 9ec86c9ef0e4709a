//! The NetworkPolicy semantics engine: "may A reach B, on which ports, and why?"
//!
//! # Rules (upstream networking.k8s.io/v1)
//!
//! - A pod is isolated in a direction when a policy of its namespace selects
//!   it and lists that direction in its (defaulted) `policyTypes`. A
//!   non-isolated direction allows everything.
//! - Policies are additive: a direction allows the union of the rules of
//!   every policy that selects the pod. A connection needs egress allowed at
//!   the source and ingress allowed at the destination.
//! - A rule without peers matches every peer, one without ports every
//!   connection (ICMP included). `ingress: []` allows nothing.
//! - Named ports resolve against the *destination* pod's container ports,
//!   for ingress and egress rules alike; a name the destination does not
//!   declare (or declares with another protocol) matches nothing.
//!
//! # Endpoints
//!
//! Every workload is one endpoint (`namespace/Kind/name`): its pods share
//! labels and ports, so they behave alike. Addresses outside the cluster are
//! endpoints too: the address space is cut at every ipBlock boundary and the
//! pieces that every peer treats alike are merged into one external endpoint.
//! The address space is IPv4 and IPv6, always both: an ipBlock of one family
//! says nothing about the other (an egress rule to `0.0.0.0/0` allows no
//! IPv6 destination), and an external endpoint never mixes the families, so
//! a cluster without ipBlocks has the endpoints `0.0.0.0/0` and `::/0`.
//!
//! # ipBlocks and pod addresses
//!
//! Upstream leaves it to the CNI whether an ipBlock matches pod IPs. By
//! default kubefence treats ipBlocks as matching cluster-external addresses
//! only, as network-config-analyzer does: pods are reached through
//! selectors. With [`AnalyzeOptions::ipblocks_match_pod_ips`], a pod whose
//! known IPs (from live pod dumps) all fall inside a block is matched by it
//! too, which is what Calico and Cilium do for pod-to-pod traffic that is not
//! NATed; those addresses then stop being "external".
//!
//! # Scale
//!
//! Workloads with the same namespace, labels, named ports and addresses are
//! folded into one class; classes that every selector and peer treats alike
//! are folded again, and connectivity is computed once per pair of classes.

mod analyze;
mod coverage;
mod diff;
mod explain;
mod group;
mod index;
mod selection;

pub use analyze::{
    AnalyzeTimings, ClassConnection, Connection, Connectivity, Endpoint, EndpointFilter,
    EndpointKind, analyze,
};
pub use coverage::{Coverage, InternetPath, coverage, internet_paths, public_internet};
pub use diff::{ConnectivityDiff, DiffEntry, DiffViews, diff, diff_views};
pub use explain::{
    DirectionVerdict, ExplainError, Explanation, PolicyVerdict, RuleMatch, RuleMiss, explain,
};
pub use group::{
    EXTERNAL_GROUP, GroupConnection, GroupMatrix, class_connections_where, group_by_namespace,
    open_blocks_where,
};
pub(crate) use index::resolve_ports;

/// Choices that upstream leaves open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// Let ipBlocks match pods by their known IPs (see the module docs).
    pub ipblocks_match_pod_ips: bool,
}
