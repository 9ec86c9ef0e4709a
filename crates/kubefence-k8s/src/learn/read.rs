//! Reading learned-policy objects from files, directories and stdin:
//! NetworkNeighborhoods (and the earlier NetworkNeighbors), KnownServers and
//! GeneratedNetworkPolicies, in Kubescape's group or kubefence's; a file may
//! hold one object, several YAML documents, a `kind: List` or a bare JSON
//! array (as Kubescape's own test files do).
//!
//! Objects are read strictly (an unknown field is an error naming its path,
//! with a "did you mean"); a bad object is left out and the rest is read.
//! Objects of other kinds are returned as skipped, for the caller to report.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubefence_core::validation;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::objects::{self as ks, Group};
use crate::convert::{ConvertError, Strictness, read_strictly};
use crate::load::{self, Diagnostic, Location, Skipped, Source};

/// One object and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed<T> {
    pub location: Location,
    pub group: Group,
    pub object: T,
}

/// Everything read, by kind, in input order.
#[derive(Clone, Debug, Default)]
pub struct LearnedInput {
    pub neighborhoods: Vec<Placed<ks::NetworkNeighborhood>>,
    /// Kubescape's earlier `NetworkNeighbors` kind.
    pub legacy_neighbors: Vec<Placed<ks::NetworkNeighbors>>,
    pub known_servers: Vec<Placed<ks::KnownServer>>,
    pub generated: Vec<Placed<ks::GeneratedNetworkPolicy>>,
    pub errors: Vec<Diagnostic>,
    /// Objects of other kinds.
    pub skipped: Vec<Skipped>,
}

impl LearnedInput {
    pub fn is_empty(&self) -> bool {
        self.neighborhoods.is_empty()
            && self.legacy_neighbors.is_empty()
            && self.known_servers.is_empty()
            && self.generated.is_empty()
    }
}

/// Reads every source.
pub fn read(sources: &[Source]) -> LearnedInput {
    let raw = load::read_objects(sources);
    let mut out = LearnedInput {
        errors: raw.errors,
        ..LearnedInput::default()
    };
    for (location, value) in raw.objects {
        add(value, &location, &mut out);
    }
    out
}

/// Reads one text (`label` names it in errors).
pub fn read_str(text: &str, label: &str) -> LearnedInput {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    load::each_object_of(text, label, &mut objects, &mut errors);
    let mut out = LearnedInput {
        errors,
        ..LearnedInput::default()
    };
    for (location, value) in objects {
        add(value, &location, &mut out);
    }
    out
}

fn add(value: Value, location: &Location, out: &mut LearnedInput) {
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let kind = text("/kind");
    let api_version = text("/apiVersion");
    let name = text("/metadata/name");
    let namespace = text("/metadata/namespace");
    let location = Location {
        object: Some(if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        }),
        ..location.clone()
    };
    let group = Group::of_api_version(&api_version);
    let known_kind = matches!(
        kind.as_str(),
        "NetworkNeighborhood" | "NetworkNeighbors" | "KnownServer" | "GeneratedNetworkPolicy"
    );
    let Some(group) = group.filter(|_| known_kind) else {
        out.skipped.push(Skipped {
            location,
            api_version,
            kind,
        });
        return;
    };
    if name.is_empty() {
        out.errors.push(Diagnostic {
            location: Location {
                field: Some("metadata.name".into()),
                ..location
            },
            message: "is required".into(),
        });
        return;
    }
    match kind.as_str() {
        "NetworkNeighborhood" => {
            if let Some(object) =
                typed::<ks::NetworkNeighborhood>(value, &location, &mut out.errors)
                    .filter(|o| valid_meta(&kind, &o.metadata, true, &location, &mut out.errors))
            {
                out.neighborhoods.push(Placed {
                    location,
                    group,
                    object,
                });
            }
        }
        "NetworkNeighbors" if group == Group::Kubescape => {
            if let Some(object) = typed::<ks::NetworkNeighbors>(value, &location, &mut out.errors)
                .filter(|o| valid_meta(&kind, &o.metadata, true, &location, &mut out.errors))
            {
                out.legacy_neighbors.push(Placed {
                    location,
                    group,
                    object,
                });
            }
        }
        "KnownServer" => {
            if let Some(object) = typed::<ks::KnownServer>(value, &location, &mut out.errors)
                .filter(|o| valid_meta(&kind, &o.metadata, false, &location, &mut out.errors))
            {
                out.known_servers.push(Placed {
                    location,
                    group,
                    object,
                });
            }
        }
        "GeneratedNetworkPolicy" => {
            if let Some(object) =
                typed::<ks::GeneratedNetworkPolicy>(value, &location, &mut out.errors)
                    .filter(|o| valid_meta(&kind, &o.metadata, true, &location, &mut out.errors))
            {
                out.generated.push(Placed {
                    location,
                    group,
                    object,
                });
            }
        }
        _ => out.skipped.push(Skipped {
            location,
            api_version,
            kind,
        }),
    }
}

/// Whether the metadata passes the API server's checks (name, namespace,
/// labels, annotation keys); every finding is recorded.
fn valid_meta(
    kind: &str,
    metadata: &ObjectMeta,
    namespaced: bool,
    location: &Location,
    errors: &mut Vec<Diagnostic>,
) -> bool {
    let empty = BTreeMap::new();
    let findings = validation::object_meta(
        kind,
        metadata.name.as_deref().unwrap_or_default(),
        metadata.namespace.as_deref().filter(|_| namespaced),
        metadata.labels.as_ref().unwrap_or(&empty),
        metadata.annotations.as_ref().unwrap_or(&empty),
    );
    for f in &findings {
        errors.push(Diagnostic {
            location: Location {
                field: Some(f.field.clone()),
                ..location.clone()
            },
            message: f.message.clone(),
        });
    }
    findings.is_empty()
}

/// The typed object, or `None` after recording every bad field.
fn typed<T: DeserializeOwned + schemars::JsonSchema + 'static>(
    value: Value,
    location: &Location,
    errors: &mut Vec<Diagnostic>,
) -> Option<T> {
    let diagnostic = |e: ConvertError| Diagnostic {
        location: Location {
            field: (!e.field.is_empty()).then_some(e.field),
            ..location.clone()
        },
        message: e.message,
    };
    match read_strictly::<T>(
        crate::convert::ObjectInput::Value(value),
        Strictness::Strict,
    ) {
        Ok((typed, problems)) => {
            let problems = problems.into_vec();
            if problems.is_empty() {
                Some(typed)
            } else {
                errors.extend(problems.into_iter().map(diagnostic));
                None
            }
        }
        Err(e) => {
            errors.extend(e.into_iter().map(diagnostic));
            None
        }
    }
}
