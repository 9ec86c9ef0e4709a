//! Quarantine against the API server: every request lives here.
//!
//! ```text
//!  CLI (kubefence quarantine/release)      Quarantine resource (controller)
//!            │                                      │ finalizer
//!            ▼                                      ▼
//!   ops::plan ── GET target, LIST NetworkPolicies and workloads ──▶ core::quarantine::plan
//!   ops::apply ── GET; absent: server-side apply (dryRun=All unless confirmed);
//!                 ours and changed: forced apply on the version read (repair)
//!   ops::release ── GET; DELETE only when held by the asker; 404 is success
//!   ops::record ── Event on the target (KubefenceQuarantined / KubefenceReleased)
//! ```
//!
//! `ops::isolate` and `ops::release` are the whole operations; the
//! controller and the CLI's online `quarantine`/`release` both call them
//! with the one runtime's [`crate::Context`] (client, recorder, metrics,
//! timeouts), so every write goes through [`crate::cluster`] and every
//! failure is a [`crate::Error`].
//!
//! Protected namespaces are refused before the first request. Policies carry
//! no ownerReference to the target: they outlive it. Who may change or
//! delete a quarantine object is read from the object alone (see
//! [`holding`]): never from a Quarantine's status, which anyone who may
//! write the status can forge.

mod controller;
mod ops;
mod runtime;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kubefence_core::quarantine as core_q;

pub use controller::{Quarantines, error_policy, reconcile, retry_delay, run_until, waiting_for};
pub use ops::{
    ApplyOutcome, Holder, Holding, Isolation, MAX_NAMED, ReleaseOutcome, Request, Selection, apply,
    check_collateral, hand_over, holding, is_ours, isolate, object_reference, plan,
    record_quarantined, record_released, release, release_named, selected_pods,
};
pub use runtime::{NAME, config, start};

/// A clock, so tests can fix the time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What the quarantine code needs to know besides the client.
#[derive(Clone)]
pub struct QuarantineConfig {
    /// Never quarantined: kube-system, kube-public, kube-node-lease and the
    /// operator's own namespace by default.
    pub protected_namespaces: BTreeSet<String>,
    /// Who asks, when the request does not say (the operator's identity).
    pub requester: String,
    pub clock: Clock,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            protected_namespaces: core_q::Config::default().protected_namespaces,
            requester: "kubefence-operator".to_string(),
            clock: Arc::new(Timestamp::now),
        }
    }
}

impl std::fmt::Debug for QuarantineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuarantineConfig")
            .field("protected_namespaces", &self.protected_namespaces)
            .field("requester", &self.requester)
            .finish_non_exhaustive()
    }
}

impl QuarantineConfig {
    /// The defaults, with the operator's own namespace protected too.
    pub fn for_operator(own_namespace: &str) -> Self {
        let mut cfg = Self::default();
        cfg.protected_namespaces.insert(own_namespace.to_string());
        cfg
    }

    pub fn core(&self) -> core_q::Config {
        core_q::Config {
            protected_namespaces: self.protected_namespaces.clone(),
        }
    }

    /// The time now, RFC 3339 to the second (UTC).
    pub fn now_rfc3339(&self) -> String {
        (self.clock)().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}
