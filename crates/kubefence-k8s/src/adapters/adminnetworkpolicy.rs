//! policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy, for CNIs that
//! implement only it (network-policy-api removed it in October 2025 in
//! favour of ClusterNetworkPolicy). Priority 0-1000, lower first; allow
//! rules are `Allow`. See `tiered` for the rule order and the limits of
//! ingress peers.

use kubefence_core::ruleset::{RuleSet, Unsupported};

use super::Rendered;
use super::tiered::{self, Flavor};

pub fn render(rules: &RuleSet, priority: u16) -> Result<Rendered, Unsupported> {
    tiered::render(rules, Flavor::AdminNetworkPolicy, priority)
}
