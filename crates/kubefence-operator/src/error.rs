//! The operator's one error type: the runtime's, every controller's, and the
//! quarantine calls the CLI shares.

use kubefence_core::quarantine::QuarantineError;

/// Everything that can go wrong in the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with an error or could not be reached.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// An API call got no answer in time.
    #[error("kubernetes api: no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// An API call failed; `what` names the call, the cause is the source
    /// (printed by `{:#}` and error reporters), not repeated here.
    #[error("{what}")]
    Call {
        what: String,
        #[source]
        source: Box<Error>,
    },
    /// The API server refused a call (RBAC).
    #[error(
        "forbidden: {what}: {message} (writing quarantine policies needs the opt-in ClusterRole in deploy/components/quarantine)"
    )]
    Forbidden { what: String, message: String },
    /// The baseline configuration is invalid.
    #[error("config: {0}")]
    Config(#[from] kubefence_core::baseline::ConfigError),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The admin server could not start or failed.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
    /// A controller's watch ended while the operator was still running.
    #[error("controller {0} stopped unexpectedly")]
    ControllerStopped(&'static str),
    /// A create met an object someone else made with that name; nothing of
    /// theirs was changed.
    #[error("{0}: created by someone else meanwhile; left alone")]
    NameTaken(String),
    /// A write was refused or abandoned: this replica does not lead (any
    /// more).
    #[error("not the leader: write not made")]
    NotLeader,
    /// A value could not be serialized for the API.
    #[error("serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The quarantine was refused before any request (protected namespace,
    /// empty selector, no reason).
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
    /// Our quarantine policy was changed by someone else and could not be
    /// put back.
    #[error("{what} was changed and could not be repaired")]
    Drifted {
        what: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `error` as the failure of the call `what`: a 403 becomes
    /// [`Error::Forbidden`] (with the API server's message), anything else
    /// [`Error::Call`].
    pub fn call(what: impl Into<String>, error: impl Into<Error>) -> Self {
        let what = what.into();
        match error.into() {
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => Self::Forbidden {
                what,
                message: s.message,
            },
            source => Self::Call {
                what,
                source: Box::new(source),
            },
        }
    }

    /// The HTTP status the API server answered, through any [`Error::Call`].
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.code),
            Error::Call { source, .. } => source.api_code(),
            Error::Forbidden { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether the API said the object is not there.
    pub fn is_not_found(&self) -> bool {
        self.api_code() == Some(404)
    }

    /// A short, bounded label for the errors metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("api_{}", s.code),
            Error::Kube(_) => "transport".into(),
            Error::Timeout(_) => "timeout".into(),
            Error::Call { source, .. } => source.metric_label(),
            Error::Config(_) => "config".into(),
            Error::Lease(_) => "lease".into(),
            Error::Admin(_) => "admin".into(),
            Error::ControllerStopped(_) => "stopped".into(),
            Error::Serialize(_) => "serialize".into(),
            Error::NameTaken(_) => "name_taken".into(),
            Error::NotLeader => "not_leader".into(),
            Error::Forbidden { .. } => "api_403".into(),
            // The quarantine refusals: their condition reason, snake case.
            other => snake(other.reason()),
        }
    }

    /// A short, stable reason for conditions (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(QuarantineError::ProtectedNamespace { .. }) => "ProtectedNamespace",
            Self::Refused(QuarantineError::EmptySelector { .. }) => "EmptySelector",
            Self::Refused(QuarantineError::NoReason { .. }) => "NoReason",
            Self::TargetNotFound { .. } => "TargetNotFound",
            Self::BadTarget { .. } => "BadTarget",
            Self::Foreign { .. } | Self::NameTaken(_) => "PolicyConflict",
            Self::HeldByQuarantine { .. } => "HeldByQuarantine",
            Self::Drifted { .. } => "Drifted",
            Self::Collateral { .. } => "Collateral",
            Self::Forbidden { .. } => "Forbidden",
            Self::Timeout(_) => "Timeout",
            Self::Call { source, .. } => match source.reason() {
                "Forbidden" => "Forbidden",
                "Timeout" => "Timeout",
                _ => "ApiError",
            },
            Self::Kube(_) => "ApiError",
            Self::Config(_) => "Config",
            Self::Lease(_) => "Lease",
            Self::Admin(_) => "Admin",
            Self::ControllerStopped(_) => "Stopped",
            Self::Serialize(_) => "Serialize",
            Self::NotLeader => "NotLeader",
        }
    }

    /// The message with every cause, for conditions and logs.
    pub fn full_message(&self) -> String {
        chain(self)
    }
}

/// `EmptySelector` → `empty_selector`.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `error: cause: cause…`, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("no", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_403_becomes_forbidden_and_other_codes_keep_their_cause() {
        let e = Error::call("reading deploy/api", api(403));
        assert_eq!(e.reason(), "Forbidden");
        assert_eq!(e.metric_label(), "api_403");
        let e = Error::call("reading deploy/api", api(500));
        assert_eq!(e.reason(), "ApiError");
        assert_eq!(e.metric_label(), "api_500");
        assert_eq!(e.api_code(), Some(500));
        assert!(
            e.full_message().starts_with("reading deploy/api: "),
            "{}",
            e.full_message()
        );
        let e = Error::call("reading", Error::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(e.reason(), "Timeout");
        assert_eq!(e.metric_label(), "timeout");
    }

    #[test]
    fn refusals_have_snake_case_metric_labels() {
        let e = Error::Collateral {
            target: "t".into(),
            selector: "s".into(),
            selected: 2,
            own: 1,
            others: "x".into(),
        };
        assert_eq!(e.metric_label(), "collateral");
        let e = Error::TargetNotFound { target: "t".into() };
        assert_eq!(e.metric_label(), "target_not_found");
    }
}
