//! Learned policies: from observed traffic to least-privilege policies.
//!
//! ```text
//!  Hubble / agent records ──(kubefence-k8s readers)──▶ Flow
//!        │  Learner::observe: each connection counted once from its
//!        │  opening, replies dropped, DNS answers kept (streaming)
//!        ▼
//!  Learner::finish(manifests?) ──(attribute: workloads[], pod-name
//!        │                        patterns, manifests)──┐
//!        │                                              ▼
//!  Kubescape NetworkNeighborhood ──(kubefence-k8s)──▶ Neighborhood
//!                                                       │
//!                           build(+ KnownServers, LearnOptions)
//!                                                       ▼
//!          LearnedPolicy per workload: NetworkPolicy, policyRefs,
//!          evidence per rule; LearnReport of what was left out and why
//! ```
//!
//! `Learner::observed` gives the same connections without learning, for
//! checking traffic against policies (`verify`).
//!
//! The property the tests hold it to (kubefence-testkit
//! `tests/learn_properties.rs`, with the engine and with
//! network-config-analyzer): the policies learned from a set of connections
//! allow every one of them and no port that was not observed between the
//! same two endpoints (DNS aside).

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
pub use learner::{EndpointHint, Learner, ObservedConnection, ObservedEnd};
pub use model::{
    Evidence, KnownServer, Neighbor, NeighborPeer, Neighborhood, ObservedPort, PolicyRef,
    ReservedPeer, WorkloadRef,
};
pub use report::{FlowCounts, LearnReport, LeftOut, LeftOutReason, Widened};
