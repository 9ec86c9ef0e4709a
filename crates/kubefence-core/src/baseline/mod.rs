//! Baseline policies: one least-privilege NetworkPolicy per workload,
//! derived from what its manifests already say.
//!
//! For workload W the policy selects W's pods with W's full `spec.selector`
//! (narrowed by its pod template's labels where that selector also matches
//! another workload's pods, see [`separate`]) and allows: DNS to the cluster resolver; traffic among W's own pods;
//! ingress from the ingress controller on the ports an Ingress routes to W;
//! ingress from outside the cluster on the ports of W's LoadBalancer,
//! NodePort and externalIP Services; and, for every reference from A to a
//! Service of B ([`references`] says how they are found), A's egress to B
//! and B's ingress from A on the Service's target ports. A workload that an
//! ingress-controller selector matches may reach what the Ingresses route to,
//! so the controller keeps working when its own namespace is baselined too.
//! Nothing else.
//!
//! Pure: the same cluster and config give the same policies, byte for byte.

mod address;
mod build;
mod config;
mod references;
mod report;
mod separate;

pub use address::{Address, addresses};
pub use build::{Baseline, GeneratedPolicy, OwnerRef, Scope, build, dns_rule};
pub use config::{
    BaselineConfig, ConfigError, DnsConfig, ExpressionConfig, IngressControllerConfig, PeerConfig,
    PortConfig, ProtocolConfig, SelectorConfig,
};
pub use references::{ConfigMapRead, ConfigMaps, config_map_reads, service_names, service_selects};
pub use report::{
    External, Indistinguishable, Problem, Reference, Report, UnknownIngressClass, Unresolved,
};
pub use separate::PER_REPLICA_LABELS;

/// The annotation that opts a workload out of baseline policies.
pub const OPT_OUT_ANNOTATION: &str = "kubefence.dev/baseline";
/// Its value.
pub const OPT_OUT_VALUE: &str = "disabled";
/// The annotation that records, rule by rule, why each rule exists.
pub const RULES_ANNOTATION: &str = "kubefence.dev/rules";
/// The annotation that says why a policy's podSelector is narrower than the
/// workload's `spec.selector`, and which other workloads' pods it still
/// matches.
pub const SELECTOR_ANNOTATION: &str = "kubefence.dev/selector";
