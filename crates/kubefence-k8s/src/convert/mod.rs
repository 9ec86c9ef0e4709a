//! Kubernetes objects (k8s-openapi types) → kubefence-core values.
//!
//! Every conversion validates what the API server would reject (unknown
//! fields, names, labels, selectors, ports, CIDRs…) and returns one
//! [`ConvertError`] per bad field, so a bad object is reported whole and
//! left out, never half converted. One object in, one [`Converted`] value
//! out: collecting objects into a cluster is the loader's job.

mod live;
mod network_policy;
mod objects;
mod path;
mod selector;
mod strict;
mod workload;

use kubefence_core::model::{ConfigMap, Ingress, Namespace, Service, Workload};
use kubefence_core::policy::NetworkPolicy;
use kubefence_core::validation::Invalid;
use serde_json::Value;

pub use live::{LiveObject, live_object, live_workload};
pub use network_policy::network_policy;
pub(crate) use network_policy::policy_all_errors;
pub use selector::label_selector;
pub use strict::Strictness;
pub(crate) use strict::{ObjectInput, read as read_strictly};
pub use workload::{container, workload_from_template};

/// The Kubernetes version whose API kubefence reads (k8s-openapi's feature).
pub const KUBERNETES_VERSION: &str = "1.34";

/// A field that cannot be converted, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConvertError {
    /// `spec.ingress[0].from[1].ipBlock.cidr`; empty for the whole object.
    pub field: String,
    pub message: String,
}

impl ConvertError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The first of an object's errors, where one error is reported.
pub(crate) fn first_error(errors: Vec<ConvertError>) -> ConvertError {
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| ConvertError::new("", "cannot be converted"))
}

/// An object's controller, from its ownerReferences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// What one object is, converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Converted {
    Namespace(Namespace),
    /// A workload object (Deployment, StatefulSet, DaemonSet, ReplicaSet,
    /// Job, CronJob) and its controller, if it has one.
    Workload {
        workload: Workload,
        owner: Option<Owner>,
    },
    /// A Pod, as a workload of its own, and its controller.
    Pod {
        workload: Workload,
        owner: Option<Owner>,
    },
    Service(Service),
    Ingress(Ingress),
    ConfigMap(ConfigMap),
    NetworkPolicy(NetworkPolicy),
}

/// Whether a workload is part of its owner rather than a workload of its
/// own: a Deployment's ReplicaSets and a CronJob's Jobs.
pub fn is_part_of_owner(kind: kubefence_core::WorkloadKind, owner: Option<&Owner>) -> bool {
    use kubefence_core::WorkloadKind as K;
    owner.is_some_and(|o| {
        matches!(
            (kind, o.kind.as_str()),
            (K::ReplicaSet, "Deployment") | (K::Job, "CronJob")
        )
    })
}

/// The errors of one object, collected so every bad field is reported.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConvertError>);

impl Problems {
    pub(crate) fn push(&mut self, error: ConvertError) {
        self.0.push(error);
    }

    /// The value, or `None` after recording why there is none.
    pub(crate) fn take<T>(&mut self, result: Result<T, ConvertError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub(crate) fn take_all<T>(&mut self, result: Result<T, Vec<ConvertError>>) -> Option<T> {
        result.map_err(|e| self.0.extend(e)).ok()
    }

    /// Records validation findings under `prefix` (`metadata.labels`…).
    pub(crate) fn invalid(&mut self, prefix: &str, findings: Vec<Invalid>) {
        for Invalid { field, message } in findings {
            let field = match (prefix.is_empty(), field.is_empty(), field.starts_with('[')) {
                (true, _, _) => field,
                (false, true, _) => prefix.to_string(),
                (false, false, true) => format!("{prefix}{field}"),
                (false, false, false) => format!("{prefix}.{field}"),
            };
            self.0.push(ConvertError::new(field, message));
        }
    }

    #[cfg(test)]
    pub(crate) fn into_errors(self) -> Vec<ConvertError> {
        self.0
    }

    pub(crate) fn into_vec(self) -> Vec<ConvertError> {
        self.0
    }

    /// `value` when nothing was recorded, else every error.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ConvertError>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ if self.0.is_empty() => Err(vec![ConvertError::new("", "cannot be converted")]),
            _ => Err(self.0),
        }
    }
}

/// The apiVersions read for each kind (old ones included: their fields are
/// the same for what kubefence reads), and the one k8s-openapi expects;
/// `None` for a kind kubefence does not read.
pub(crate) fn accepted_api_version(kind: &str, api_version: &str) -> Option<&'static str> {
    let (versions, current): (&[&str], &'static str) = match kind {
        "Namespace" | "Pod" | "Service" | "ConfigMap" => (&["v1"], "v1"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => (
            &[
                "apps/v1",
                "apps/v1beta1",
                "apps/v1beta2",
                "extensions/v1beta1",
            ],
            "apps/v1",
        ),
        "Job" => (&["batch/v1"], "batch/v1"),
        "CronJob" => (&["batch/v1", "batch/v1beta1"], "batch/v1"),
        "Ingress" => (&["networking.k8s.io/v1"], "networking.k8s.io/v1"),
        "NetworkPolicy" => (
            &["networking.k8s.io/v1", "extensions/v1beta1"],
            "networking.k8s.io/v1",
        ),
        _ => return None,
    };
    versions.contains(&api_version).then_some(current)
}

/// Converts one object of `kind` in `namespace` (the object's own, or the
/// default one); its apiVersion must already be the current one.
pub fn object(
    kind: &str,
    value: Value,
    namespace: &str,
    strictness: Strictness,
) -> Result<Converted, Vec<ConvertError>> {
    objects::convert(
        kind,
        strict::ObjectInput::Value(value),
        namespace,
        strictness,
    )
}

/// [`object`] from the JSON text of one object, read straight into its
/// typed form (no intermediate value); its apiVersion must be the current
/// one of its kind.
pub(crate) fn object_json(
    kind: &str,
    text: &str,
    namespace: &str,
    strictness: Strictness,
) -> Result<Converted, Vec<ConvertError>> {
    objects::convert(kind, strict::ObjectInput::Json(text), namespace, strictness)
}

/// A port number in 1..=65535.
pub(crate) fn port_number(value: i32, field: &str) -> Result<u16, ConvertError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| ConvertError::new(field, format!("port {value} is not in 1-65535")))
}

pub(crate) fn protocol(
    value: Option<&str>,
    field: &str,
) -> Result<kubefence_core::Protocol, ConvertError> {
    match value {
        None => Ok(kubefence_core::Protocol::Tcp),
        Some(p) => match p {
            "TCP" => Ok(kubefence_core::Protocol::Tcp),
            "UDP" => Ok(kubefence_core::Protocol::Udp),
            "SCTP" => Ok(kubefence_core::Protocol::Sctp),
            other => Err(ConvertError::new(
                field,
                format!("unknown protocol {other:?} (expected TCP, UDP or SCTP)"),
            )),
        },
    }
}

/// Whether `name` is a valid port name (IANA_SVC_NAME): 1-15 lower-case
/// letters, digits and hyphens, at least one letter, no hyphen at either end
/// or twice in a row.
pub(crate) fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana_svc_name() {
        for ok in ["http", "serve-80-tcp", "h2c", "a"] {
            assert!(is_port_name(ok), "{ok}");
        }
        for bad in [
            "",
            "80",
            "-http",
            "http-",
            "my--port",
            "HTTP",
            "a-very-long-port-name",
            "port_1",
        ] {
            assert!(!is_port_name(bad), "{bad}");
        }
    }
}
