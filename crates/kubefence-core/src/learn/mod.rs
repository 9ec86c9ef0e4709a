//! Learned policies: from observed traffic to least-privilege policies.
//!
//! ```text
//!  flow records ──(flows: count each connection once, attribute)──┐
//!                                                                 ▼
//!  Kubescape NetworkNeighborhood ──(kubefence-k8s)──────▶ Neighborhood
//!                                                                 │
//!                                             build (+ KnownServers)
//!                                                                 ▼
//!                                   NetworkPolicy + policyRefs per workload
//! ```
//!
//! The property the tests hold it to: the policies learned from a set of
//! connections allow every one of them and no port that was not observed
//! between the same two workloads (DNS aside).

mod attribute;
mod build;
pub mod flows;
mod learner;
pub mod model;
mod report;

pub use build::{LearnOptions, Learned, LearnedPolicy, RuleEvidence, build};
pub use flows::{
    DnsRecord, Flow, FlowEndpoint, FlowEvent, FlowService, FlowType, FlowWorkload,
    ReservedIdentity, TcpFlags, TrafficDirection, Verdict,
};
pub use learner::Learner;
pub use model::{
    Evidence, KnownServer, Neighbor, NeighborPeer, Neighborhood, ObservedPort, PolicyRef,
    ReservedPeer, WorkloadRef,
};
pub use report::{FlowCounts, LearnReport, LeftOut, LeftOutReason, Widened};
