//! Kubescape neighborhoods and KnownServers ⇄ the core learning model
//! ([`kubefence_core::learn`]).
//!
//! Reading validates what the API server and Kubescape's generator would
//! trip on (selectors, addresses, ports, protocols) and returns one error
//! per bad field; the object is then left out whole. What Kubescape reads
//! wrongly is read right here, and said:
//! - a neighbour with ports but no selector and no address is *not* "every
//!   peer" (Kubescape writes a rule without peers): it is left out with a
//!   warning;
//! - an IPv6 address is a /128, not a /32 (the builder makes the block);
//! - a port without a number is an error, not "every port".
//!
//! Peers are merged per peer in each direction (ports unioned), across
//! containers, init containers and ephemeral containers, as Kubescape's
//! generator unions them; the lists come out sorted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta};
use kubefence_core::Protocol;
use kubefence_core::learn::{
    KnownServer, Neighbor, NeighborPeer, Neighborhood, ObservedPort, WorkloadRef,
};
use sha2::{Digest, Sha256};

use super::objects::{
    self as ks, MANAGED_BY_ANNOTATION, NeighborhoodContainer, NetworkNeighbor, NetworkPort,
    STATUS_ANNOTATION, WORKLOAD_KIND_LABEL, WORKLOAD_NAME_LABEL, WORKLOAD_NAMESPACE_LABEL,
};
use crate::convert::{ConvertError, label_selector};
use crate::render;

/// A converted value and what was read differently from Kubescape.
#[derive(Clone, Debug, PartialEq)]
pub struct WithWarnings<T> {
    pub value: T,
    pub warnings: Vec<ConvertError>,
}

/// Whether a neighborhood may become a policy (Kubescape's rule): its
/// `kubescape.io/status` is `learning` or `completed`, or it is written by
/// a person (`kubescape.io/managed-by: User`). Anything else (`not-ready`,
/// `initializing`, none) is an error that names the status.
pub fn check_status(metadata: &ObjectMeta) -> Result<(), ConvertError> {
    let annotations = metadata.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    if get(MANAGED_BY_ANNOTATION) == Some("User") {
        return Ok(());
    }
    match get(STATUS_ANNOTATION) {
        Some("learning" | "completed") => Ok(()),
        Some(other) => Err(ConvertError::new(
            format!("metadata.annotations[{STATUS_ANNOTATION}]"),
            format!(
                "status {other:?}: a policy is generated only from a neighborhood whose status is \
                 \"learning\" or \"completed\", or one annotated {MANAGED_BY_ANNOTATION}: User"
            ),
        )),
        None => Err(ConvertError::new(
            format!("metadata.annotations[{STATUS_ANNOTATION}]"),
            format!(
                "no status: a policy is generated only from a neighborhood whose status is \
                 \"learning\" or \"completed\", or one annotated {MANAGED_BY_ANNOTATION}: User"
            ),
        )),
    }
}

/// The status rule of the earlier kind (`NetworkNeighbors`): `ready` or
/// `completed`, as Kubescape's v1 generator has it.
pub fn check_legacy_status(metadata: &ObjectMeta) -> Result<(), ConvertError> {
    let status = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STATUS_ANNOTATION))
        .map(String::as_str);
    match status {
        Some("ready" | "completed") => Ok(()),
        other => Err(ConvertError::new(
            format!("metadata.annotations[{STATUS_ANNOTATION}]"),
            format!(
                "status {}: a policy is generated from a NetworkNeighbors object only when its \
                 status is \"ready\" or \"completed\"",
                other.map_or("(none)".to_string(), |s| format!("{s:?}"))
            ),
        )),
    }
}

/// A NetworkNeighborhood (either group) as a core [`Neighborhood`].
/// `default_namespace` is used when neither the workload-namespace label
/// nor the object names one.
pub fn neighborhood(
    object: &ks::NetworkNeighborhood,
    default_namespace: &str,
) -> Result<WithWarnings<Neighborhood>, Vec<ConvertError>> {
    let mut lists: Vec<(String, &[NetworkNeighbor])> = Vec::new();
    for (field, containers) in [
        ("containers", &object.spec.containers),
        ("initContainers", &object.spec.init_containers),
        ("ephemeralContainers", &object.spec.ephemeral_containers),
    ] {
        for (i, c) in containers.iter().flatten().enumerate() {
            let NeighborhoodContainer {
                ingress, egress, ..
            } = c;
            lists.push((
                format!("spec.{field}[{i}].ingress"),
                ingress.as_deref().unwrap_or_default(),
            ));
            lists.push((
                format!("spec.{field}[{i}].egress"),
                egress.as_deref().unwrap_or_default(),
            ));
        }
    }
    convert(
        &object.metadata,
        &object.spec.selector(),
        &lists,
        default_namespace,
    )
}

/// The earlier `NetworkNeighbors` kind as a core [`Neighborhood`].
pub fn legacy_neighbors(
    object: &ks::NetworkNeighbors,
    default_namespace: &str,
) -> Result<WithWarnings<Neighborhood>, Vec<ConvertError>> {
    let selector = MetaSelector {
        match_labels: object.spec.match_labels.clone(),
        match_expressions: object.spec.match_expressions.clone(),
    };
    let lists = [
        (
            "spec.ingress".to_string(),
            object.spec.ingress.as_deref().unwrap_or_default(),
        ),
        (
            "spec.egress".to_string(),
            object.spec.egress.as_deref().unwrap_or_default(),
        ),
    ];
    convert(&object.metadata, &selector, &lists, default_namespace)
}

/// Lists alternate ingress, egress (by the field's suffix).
fn convert(
    metadata: &ObjectMeta,
    selector: &MetaSelector,
    lists: &[(String, &[NetworkNeighbor])],
    default_namespace: &str,
) -> Result<WithWarnings<Neighborhood>, Vec<ConvertError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let workload = workload_ref(metadata, default_namespace, &mut errors);
    let selector = match label_selector(selector, "spec") {
        Ok(s) if s.is_empty() => {
            errors.push(ConvertError::new(
                "spec",
                "no matchLabels or matchExpressions: a policy for this workload would select \
                 every pod of its namespace",
            ));
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let mut ingress: BTreeMap<NeighborPeer, BTreeSet<ObservedPort>> = BTreeMap::new();
    let mut egress: BTreeMap<NeighborPeer, BTreeSet<ObservedPort>> = BTreeMap::new();
    for (field, neighbors) in lists {
        let into = if field.ends_with(".ingress") {
            &mut ingress
        } else {
            &mut egress
        };
        for (i, n) in neighbors.iter().enumerate() {
            let at = format!("{field}[{i}]");
            match neighbor(n, &at, &mut warnings) {
                Ok(entries) => {
                    for (peer, ports) in entries {
                        into.entry(peer).or_default().extend(ports);
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
    }
    match (workload, selector) {
        (Some(workload), Some(selector)) if errors.is_empty() => Ok(WithWarnings {
            value: Neighborhood {
                workload,
                selector,
                ingress: neighbors_of(ingress),
                egress: neighbors_of(egress),
            },
            warnings,
        }),
        _ => Err(errors),
    }
}

fn neighbors_of(map: BTreeMap<NeighborPeer, BTreeSet<ObservedPort>>) -> Vec<Neighbor> {
    map.into_iter()
        .map(|(peer, ports)| Neighbor {
            peer,
            ports,
            evidence: None,
        })
        .collect()
}

fn workload_ref(
    metadata: &ObjectMeta,
    default_namespace: &str,
    errors: &mut Vec<ConvertError>,
) -> Option<WorkloadRef> {
    let label = |key: &str| {
        metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let kind = label(WORKLOAD_KIND_LABEL);
    let name = label(WORKLOAD_NAME_LABEL);
    for (key, value) in [(WORKLOAD_KIND_LABEL, &kind), (WORKLOAD_NAME_LABEL, &name)] {
        if value.is_none() {
            errors.push(ConvertError::new(
                format!("metadata.labels[{key}]"),
                "is required: it names the workload the policy is for",
            ));
        }
    }
    let namespace = label(WORKLOAD_NAMESPACE_LABEL)
        .or_else(|| metadata.namespace.clone())
        .unwrap_or_else(|| default_namespace.to_string());
    Some(WorkloadRef {
        kind: kind?,
        namespace,
        name: name?,
    })
}

type Entries = Vec<(NeighborPeer, BTreeSet<ObservedPort>)>;

/// One neighbour as peers with their ports: its pods (selectors) and each of
/// its addresses, all on the same ports.
fn neighbor(
    n: &NetworkNeighbor,
    at: &str,
    warnings: &mut Vec<ConvertError>,
) -> Result<Entries, Vec<ConvertError>> {
    let mut errors = Vec::new();
    if !matches!(n.type_.as_str(), "" | "internal" | "external") {
        errors.push(ConvertError::new(
            format!("{at}.type"),
            format!("unknown type {:?} (expected internal or external)", n.type_),
        ));
    }
    let mut ports = BTreeSet::new();
    for (j, p) in n.ports.iter().flatten().enumerate() {
        match port(p, &format!("{at}.ports[{j}]")) {
            Ok(p) => {
                ports.insert(p);
            }
            Err(e) => errors.push(e),
        }
    }
    let mut selector = |s: &Option<MetaSelector>, field: &str| {
        s.as_ref()
            .and_then(|s| match label_selector(s, &format!("{at}.{field}")) {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            })
    };
    let pod_selector = selector(&n.pod_selector, "podSelector");
    let namespace_selector = selector(&n.namespace_selector, "namespaceSelector");
    let mut dns_names: BTreeSet<String> = BTreeSet::new();
    for name in n.dns.iter().chain(n.dns_names.iter().flatten()) {
        let name = name.trim_end_matches('.');
        if !name.is_empty() {
            dns_names.insert(name.to_string());
        }
    }
    let mut addresses = BTreeSet::new();
    let written = n
        .ip_address
        .iter()
        .map(|a| (format!("{at}.ipAddress"), a))
        .chain(
            n.ip_addresses
                .iter()
                .flatten()
                .enumerate()
                .map(|(k, a)| (format!("{at}.ipAddresses[{k}]"), a)),
        );
    for (field, text) in written {
        if text.is_empty() {
            continue;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => {
                addresses.insert(ip);
            }
            Err(_) => errors.push(ConvertError::new(
                field,
                format!("{text:?} is not an IP address"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut entries = Vec::new();
    let has_selector = n.pod_selector.is_some() || n.namespace_selector.is_some();
    if has_selector {
        entries.push((
            NeighborPeer::Pods {
                namespace_selector,
                pod_selector,
            },
            ports.clone(),
        ));
    }
    for ip in addresses {
        entries.push((
            NeighborPeer::Address {
                ip,
                dns_names: dns_names.clone(),
            },
            ports.clone(),
        ));
    }
    if entries.is_empty() {
        warnings.push(ConvertError::new(
            at,
            "a neighbour with no podSelector, namespaceSelector or IP address: left out \
             (Kubescape writes it as a rule that allows every peer)",
        ));
    }
    Ok(entries)
}

fn port(p: &NetworkPort, at: &str) -> Result<ObservedPort, ConvertError> {
    let protocol = match p.protocol.as_deref() {
        None | Some("") => Protocol::Tcp,
        Some(text) => text.parse::<Protocol>().map_err(|_| {
            ConvertError::new(
                format!("{at}.protocol"),
                format!("unknown protocol {text:?} (expected TCP, UDP or SCTP)"),
            )
        })?,
    };
    let number = p.port.ok_or_else(|| {
        ConvertError::new(
            format!("{at}.port"),
            "is required (a port without a number would allow every port)",
        )
    })?;
    let port = u16::try_from(number)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ConvertError::new(
                format!("{at}.port"),
                format!("port {number} is not in 1-65535"),
            )
        })?;
    Ok(ObservedPort {
        protocol,
        port,
        name: None,
    })
}

/// Every entry of a KnownServer as core known servers (CIDRs truncated to
/// their network: Kubescape's own example writes `12.3.4.23/24`).
pub fn known_servers(object: &ks::KnownServer) -> Result<Vec<KnownServer>, Vec<ConvertError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let object_name = object.metadata.name.clone().unwrap_or_default();
    for (i, entry) in object.spec.iter().enumerate() {
        match entry.ip_block.parse::<IpNet>() {
            Ok(net) => out.push(KnownServer {
                object: object_name.clone(),
                name: entry.name.clone(),
                server: entry.server.clone(),
                ip_block: net.trunc(),
            }),
            Err(_) => errors.push(ConvertError::new(
                format!("spec[{i}].ipBlock"),
                format!("{:?} is not a CIDR", entry.ip_block),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A core neighborhood as a Kubescape-shaped NetworkNeighborhood (one
/// container named after the workload, neighbours sorted, Kubescape's
/// labels, status `completed`), and the peers it cannot hold (reserved
/// identities, which Kubescape has no notation for).
pub fn neighborhood_object(n: &Neighborhood) -> (ks::NetworkNeighborhood, Vec<NeighborPeer>) {
    let mut skipped = Vec::new();
    let mut entries = |list: &[Neighbor], direction: &str| -> Vec<NetworkNeighbor> {
        list.iter()
            .filter_map(|neighbor| match neighbor_entry(neighbor, direction) {
                Some(entry) => Some(entry),
                None => {
                    skipped.push(neighbor.peer.clone());
                    None
                }
            })
            .collect()
    };
    let ingress = entries(&n.ingress, "ingress");
    let egress = entries(&n.egress, "egress");
    let selector = render::label_selector(&n.selector);
    let labels = BTreeMap::from([
        (WORKLOAD_KIND_LABEL.to_string(), n.workload.kind.clone()),
        (WORKLOAD_NAME_LABEL.to_string(), n.workload.name.clone()),
        (
            WORKLOAD_NAMESPACE_LABEL.to_string(),
            n.workload.namespace.clone(),
        ),
    ]);
    let metadata = ObjectMeta {
        name: Some(format!("{}-{}", n.workload.kind, n.workload.name).to_ascii_lowercase()),
        namespace: Some(n.workload.namespace.clone()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            STATUS_ANNOTATION.to_string(),
            "completed".to_string(),
        )])),
        ..ObjectMeta::default()
    };
    let spec = ks::NetworkNeighborhoodSpec {
        match_labels: selector.match_labels,
        match_expressions: selector.match_expressions,
        containers: Some(vec![NeighborhoodContainer {
            name: n.workload.name.clone(),
            ingress: Some(ingress),
            egress: Some(egress),
        }]),
        init_containers: None,
        ephemeral_containers: None,
    };
    (ks::NetworkNeighborhood::new(metadata, spec), skipped)
}

fn neighbor_entry(neighbor: &Neighbor, direction: &str) -> Option<NetworkNeighbor> {
    let ports: Vec<NetworkPort> = neighbor
        .ports
        .iter()
        .map(|p| NetworkPort {
            name: format!("{}-{}", p.protocol, p.port),
            protocol: Some(p.protocol.to_string()),
            port: Some(i32::from(p.port)),
        })
        .collect();
    // Kubescape's identifier is a hash of the neighbour; ours hashes the
    // peer and direction, so the same peer keeps the same identifier.
    let identifier = {
        let canonical = serde_json::to_string(&neighbor.peer).unwrap_or_default();
        let digest = Sha256::digest(format!("{direction}/{canonical}").as_bytes());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut entry = NetworkNeighbor {
        identifier,
        ports: Some(ports),
        ..NetworkNeighbor::default()
    };
    match &neighbor.peer {
        NeighborPeer::Pods {
            namespace_selector,
            pod_selector,
        } => {
            entry.type_ = "internal".to_string();
            entry.pod_selector = pod_selector.as_ref().map(render::label_selector);
            entry.namespace_selector = namespace_selector.as_ref().map(render::label_selector);
        }
        NeighborPeer::Address { ip, dns_names } => {
            entry.type_ = "external".to_string();
            entry.ip_address = Some(ip.to_string());
            entry.dns = dns_names.iter().next().cloned();
            entry.dns_names = (!dns_names.is_empty()).then(|| dns_names.iter().cloned().collect());
        }
        NeighborPeer::Reserved(_) => return None,
    }
    Some(entry)
}
