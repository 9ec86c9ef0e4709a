//! Learned policies on the Kubernetes side: the objects that carry what was
//! observed and what was generated from it, and the flow records they are
//! learned from.
//!
//! ```text
//!  Hubble flows (jsonpb / json, gzip) ──(hubble)──▶ core Flow ──▶ core Learner
//!  NetworkNeighborhood (Kubescape's or kubefence's) ──(neighborhood)──▶ core Neighborhood
//!  KnownServer ──(neighborhood::known_servers)──▶ core KnownServer
//!  core NetworkPolicy + PolicyRefs ──(generated)──▶ GeneratedNetworkPolicy
//!  core LearnedPolicy::rule_set ──(crate::adapters)──▶ CiliumNetworkPolicy
//! ```
//!
//! [`objects`] holds the Kubescape shapes, [`read`] reads them from files,
//! [`neighborhood`] and [`generated`] convert them to and from the core
//! model; kubefence's own CRDs with the same shapes are in
//! [`crate::crd::learned`].

pub mod generated;
pub mod hubble;
pub mod neighborhood;
pub mod objects;
pub mod read;

pub use objects::Group;
