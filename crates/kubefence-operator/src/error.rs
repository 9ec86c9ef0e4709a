//! The operator's errors.

/// Everything that can go wrong in the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with an error or could not be reached.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// An API call got no answer in time.
    #[error("kubernetes api: no answer within {0:?}")]
    Timeout(std::time::Duration),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, bounded label for the errors metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("api_{}", s.code),
            Error::Kube(_) => "transport".into(),
            Error::Timeout(_) => "timeout".into(),
            Error::Config(_) => "config".into(),
            Error::Lease(_) => "lease".into(),
            Error::Admin(_) => "admin".into(),
            Error::ControllerStopped(_) => "stopped".into(),
            Error::Serialize(_) => "serialize".into(),
            Error::NameTaken(_) => "name_taken".into(),
            Error::NotLeader => "not_leader".into(),
        }
    }

    /// Whether the API said the object is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }
}
