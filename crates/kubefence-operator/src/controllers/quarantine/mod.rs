//! Quarantine against the API server: every request lives here.
//!
//! ```text
//!  CLI (kubefence quarantine/release)      Quarantine resource (controller)
//!            │                                      │ finalizer
//!            ▼                                      ▼
//!   ops::plan ── GET target, LIST NetworkPolicies ──▶ core::quarantine::plan
//!   ops::apply ── GET; absent: server-side apply (dryRun=All unless confirmed);
//!                 ours and changed: forced apply on the version read (repair)
//!   ops::release ── GET; DELETE only when held by the asker; 404 is success
//!   ops::record ── Event on the target (KubefenceQuarantined / KubefenceReleased)
//! ```
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
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kubefence_core::quarantine::{self as core_q, QuarantineError};

pub use controller::{Context, error_policy, reconcile, run_controller, run_until};
pub use ops::{
    ApplyOutcome, Holder, Holding, MAX_NAMED, ReleaseOutcome, Selection, apply, check_collateral,
    hand_over, holding, is_ours, object_reference, plan, record_quarantined, record_released,
    release, release_named, selected_pods,
};
pub use runtime::{NAME, config, start};

/// The field manager and the event reporter.
pub const MANAGER: &str = "kubefence";

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] QuarantineError),
    #[error("{target}: not found")]
    TargetNotFound { target: String },
    #[error("{target}: cannot read it: {message}")]
    BadTarget { target: String, message: String },
    #[error(
        "{kind} {name} exists and is not this quarantine's (kubefence's quarantine labels, a kubefence.dev/target annotation naming this target and, for a Quarantine resource, its kubefence.dev/quarantine-uid label); refusing to touch it"
    )]
    Foreign { kind: String, name: String },
    #[error(
        "{kind} {name} is held by the Quarantine resource with uid {uid}; delete that Quarantine to release the workload"
    )]
    HeldByQuarantine {
        kind: String,
        name: String,
        uid: String,
    },
    #[error(
        "{target}: its selector {selector} picks {selected} pod(s), only {own} of them the target's own (others: {others}); the policy would isolate them too. Refusing; allow it with --allow-collateral (spec.allowCollateral) or quarantine a workload whose selector is its own"
    )]
    Collateral {
        target: String,
        selector: String,
        selected: usize,
        own: usize,
        others: String,
    },
    /// Our policy was changed by someone else and could not be put back.
    #[error("{what} was changed and could not be repaired")]
    Drifted {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "forbidden: {what}: {message} (writing quarantine policies needs the opt-in ClusterRole in deploy/components/quarantine)"
    )]
    Forbidden { what: String, message: String },
    /// The display names what failed; the cause is the source (printed by
    /// `{:#}` and error reporters), not repeated here.
    #[error("{what}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        let what = what.into();
        match &source {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                what,
                message: status.message.clone(),
            },
            _ => Self::Kube {
                what,
                source: Box::new(source),
            },
        }
    }

    /// The message with every cause, for conditions and logs.
    pub fn full_message(&self) -> String {
        chain(self)
    }

    /// A short, stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(QuarantineError::ProtectedNamespace { .. }) => "ProtectedNamespace",
            Self::Refused(QuarantineError::EmptySelector { .. }) => "EmptySelector",
            Self::Refused(QuarantineError::NoReason { .. }) => "NoReason",
            Self::TargetNotFound { .. } => "TargetNotFound",
            Self::BadTarget { .. } => "BadTarget",
            Self::Foreign { .. } => "PolicyConflict",
            Self::HeldByQuarantine { .. } => "HeldByQuarantine",
            Self::Drifted { .. } => "Drifted",
            Self::Collateral { .. } => "Collateral",
            Self::Forbidden { .. } => "Forbidden",
            Self::Kube { .. } => "ApiError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error: cause: cause…`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
