//! policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy
//! (network-policy-api v0.2.0), which replaced AdminNetworkPolicy.
//!
//! Tier Admin (before NetworkPolicies; the default) or Baseline (after
//! them); priority 0-1000, lower first. Allow rules are `Accept`: in the
//! Admin tier that is final, as an allow of the rule set is. See
//! `tiered` for the rule order and the limits of ingress peers.

use kubefence_core::ruleset::{RuleSet, Unsupported};

use super::tiered::{self, Flavor};
use super::{Rendered, Tier};

pub fn render(rules: &RuleSet, tier: Tier, priority: u16) -> Result<Rendered, Unsupported> {
    tiered::render(rules, Flavor::ClusterNetworkPolicy { tier }, priority)
}
