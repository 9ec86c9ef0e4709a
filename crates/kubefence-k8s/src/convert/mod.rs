//! Kubernetes objects (k8s-openapi types) → kubefence-core values.
//!
//! Every conversion validates what the API server would reject and returns
//! a [`ConvertError`] naming the field, so a bad object is reported and left
//! out whole, never half converted.

mod live;
mod network_policy;
mod objects;
mod selector;
mod workload;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::load::{Diagnostic, LoadOptions, Location, RawInput, Skipped};

pub use live::{LiveObject, live_object, live_workload};
pub use network_policy::network_policy;
pub use selector::label_selector;
pub use workload::{container, workload_from_template};

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

/// The apiVersions read for each kind (old ones included: their fields are
/// the same for what kubefence reads), and the one k8s-openapi expects.
fn accepted_api_version(kind: &str, api_version: &str) -> Option<&'static str> {
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

/// Converts one object into `raw`, or records it as skipped or bad.
pub(crate) fn object(
    mut value: Value,
    location: &Location,
    opts: &LoadOptions,
    raw: &mut RawInput,
) {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let kind = text(&value, "/kind").unwrap_or_default();
    let api_version = text(&value, "/apiVersion").unwrap_or_default();
    let name = text(&value, "/metadata/name").unwrap_or_default();
    let namespace =
        text(&value, "/metadata/namespace").unwrap_or_else(|| opts.default_namespace.clone());
    let location = Location {
        object: Some(if kind == "Namespace" {
            format!("Namespace {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        }),
        ..location.clone()
    };
    if kind.is_empty() || api_version.is_empty() {
        raw.errors.push(Diagnostic {
            location: Location {
                object: None,
                ..location
            },
            message: "not a Kubernetes object: apiVersion and kind are required".into(),
        });
        return;
    }
    let Some(current) = accepted_api_version(&kind, &api_version) else {
        tracing::debug!(%location, %api_version, %kind, "skipped: kind not read by kubefence");
        raw.skipped.push(Skipped {
            location,
            api_version,
            kind,
        });
        return;
    };
    if name.is_empty() {
        raw.errors.push(Diagnostic {
            location: Location {
                field: Some("metadata.name".into()),
                ..location
            },
            message: "is required".into(),
        });
        return;
    }
    // k8s-openapi checks apiVersion; older versions share the fields we read.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(current.into()));
    }
    if let Err(e) = objects::convert(&kind, value, &namespace, raw) {
        raw.errors.push(Diagnostic {
            location: Location {
                field: (!e.field.is_empty()).then_some(e.field),
                ..location
            },
            message: e.message,
        });
    }
}

/// Deserializes a typed object, naming the offending field on failure.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ConvertError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ConvertError::new(field, e.into_inner().to_string())
    })
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
