//! kubefence-core: the pure domain of kubefence.
//!
//! ```text
//!  manifests / live cluster ──(kubefence-k8s)──▶ model::Cluster
//!                                                   │
//!            ┌──────────────────────────────────────┼──────────────────┐
//!            ▼                                      ▼                  ▼
//!   engine::analyze / explain / diff        builders (baseline, …)   naming
//!   (NetworkPolicy semantics)               desired NetworkPolicies
//! ```
//!
//! No async, no Kubernetes client, no file or network I/O: everything here
//! is a function of its arguments, so it is tested with plain `#[test]`s and
//! shared by the offline CLI, the online CLI and the operator.
//!
//! The semantics are upstream NetworkPolicy (networking.k8s.io/v1); see
//! `engine` for the rules and for how ipBlocks treat pod addresses.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod conn;
pub mod engine;
pub mod intent;
pub mod intervals;
pub mod ipset;
pub mod learn;
pub mod model;
pub mod naming;
pub mod policy;
pub mod profile;
pub mod quarantine;
pub mod ruleset;
pub mod selector;
pub mod validation;

pub use conn::{ConnSet, Protocol};
pub use ipnet::IpNet;
pub use model::{Cluster, Namespace, Workload, WorkloadKind};
pub use policy::{Direction, NetworkPolicy};
pub use selector::{LabelSelector, Labels};
