//! Dispatch by kind, and the simple kinds: Namespace, Service, Ingress,
//! ConfigMap, Pod. Workload kinds share one generic conversion
//! ([`super::workload::WorkloadObject`]).

use std::net::IpAddr;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core_v1, networking::v1 as net,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubefence_core::model::{
    ConfigMap, INGRESS_CLASS_ANNOTATION, Ingress, IngressBackend, NAMESPACE_NAME_LABEL, Namespace,
    Service, ServicePort, ServicePortRef, ServiceType, TargetPort, Workload, WorkloadKind,
};
use kubefence_core::selector::LabelSelector;
use kubefence_core::validation;

use super::network_policy::policy_all_errors;
use super::strict::{ObjectInput, Strictness, read};
use super::workload::{WorkloadObject, workload_of};
use super::{ConvertError, Converted, Owner, Problems, port_number, protocol};

pub(crate) fn convert(
    kind: &str,
    value: ObjectInput<'_>,
    namespace: &str,
    strictness: Strictness,
) -> Result<Converted, Vec<ConvertError>> {
    match kind {
        "Namespace" => {
            let (ns, problems) = read::<core_v1::Namespace>(value, strictness)?;
            checked(kind, &ns.metadata, None, problems, |_| {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let mut labels = ns.metadata.labels.clone().unwrap_or_default();
                // The API server sets it on every namespace.
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                Some(Converted::Namespace(Namespace { name, labels }))
            })
        }
        "Pod" => {
            let (pod, problems) = read::<core_v1::Pod>(value, strictness)?;
            checked(kind, &pod.metadata, Some(namespace), problems, |problems| {
                pod_of(&pod, namespace, problems)
            })
        }
        "Deployment" => workload::<apps::Deployment>(value, namespace, strictness),
        "StatefulSet" => workload::<apps::StatefulSet>(value, namespace, strictness),
        "DaemonSet" => workload::<apps::DaemonSet>(value, namespace, strictness),
        "ReplicaSet" => workload::<apps::ReplicaSet>(value, namespace, strictness),
        "Job" => workload::<batch::Job>(value, namespace, strictness),
        "CronJob" => workload::<batch::CronJob>(value, namespace, strictness),
        "Service" => {
            let (s, problems) = read::<core_v1::Service>(value, strictness)?;
            checked(kind, &s.metadata, Some(namespace), problems, |problems| {
                service(&s, namespace, problems).map(Converted::Service)
            })
        }
        "Ingress" => {
            let (i, problems) = read::<net::Ingress>(value, strictness)?;
            checked(kind, &i.metadata, Some(namespace), problems, |problems| {
                problems
                    .take(ingress(&i, namespace))
                    .map(Converted::Ingress)
            })
        }
        "ConfigMap" => {
            let (c, problems) = read::<core_v1::ConfigMap>(value, strictness)?;
            checked(kind, &c.metadata, Some(namespace), problems, |_| {
                Some(Converted::ConfigMap(ConfigMap {
                    namespace: namespace.to_string(),
                    name: c.metadata.name.clone().unwrap_or_default(),
                    data: c.data.clone().unwrap_or_default(),
                }))
            })
        }
        "NetworkPolicy" => {
            let (p, problems) = read::<net::NetworkPolicy>(value, strictness)?;
            checked(kind, &p.metadata, Some(namespace), problems, |problems| {
                problems
                    .take_all(policy_all_errors(&p, namespace))
                    .map(Converted::NetworkPolicy)
            })
        }
        other => Err(vec![ConvertError::new(
            "kind",
            format!("kind {other} is not read"),
        )]),
    }
}

/// Validates the metadata as the API server does (name by kind, namespace,
/// labels, annotation keys), then converts the rest; every error of both
/// is reported. `namespace` is `None` for cluster-scoped kinds.
fn checked(
    kind: &str,
    metadata: &ObjectMeta,
    namespace: Option<&str>,
    mut problems: Problems,
    convert: impl FnOnce(&mut Problems) -> Option<Converted>,
) -> Result<Converted, Vec<ConvertError>> {
    problems.invalid(
        "",
        validation::object_meta(
            kind,
            metadata.name.as_deref().unwrap_or_default(),
            namespace,
            metadata.labels.as_ref().unwrap_or(&Default::default()),
            metadata.annotations.as_ref().unwrap_or(&Default::default()),
        ),
    );
    let converted = convert(&mut problems);
    problems.finish(converted)
}

/// Any workload kind: read strictly, validated, converted.
fn workload<W: WorkloadObject>(
    value: ObjectInput<'_>,
    namespace: &str,
    strictness: Strictness,
) -> Result<Converted, Vec<ConvertError>> {
    let (object, problems) = read::<W>(value, strictness)?;
    checked(
        W::KIND.as_str(),
        object.metadata(),
        Some(namespace),
        problems,
        |problems| {
            problems
                .take_all(workload_of(&object, namespace, strictness))
                .map(|workload| Converted::Workload {
                    workload,
                    owner: controller_owner(object.metadata()),
                })
        },
    )
}

/// The controller ownerReference of an object, if any.
fn controller_owner(metadata: &ObjectMeta) -> Option<Owner> {
    let refs = metadata.owner_references.as_ref()?;
    let chosen = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    Some(Owner {
        kind: chosen.kind.clone(),
        name: chosen.name.clone(),
    })
}

fn pod_of(pod: &core_v1::Pod, namespace: &str, problems: &mut Problems) -> Option<Converted> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let containers = match &pod.spec {
        Some(spec) => problems.take_all(super::workload::pod_containers(spec, "spec"))?,
        None => Vec::new(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(status) = &pod.status {
        let texts = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.clone())
            .chain(status.pod_ip.clone());
        for (i, text) in texts.enumerate() {
            let ip = problems.take(text.parse().map_err(|_| {
                ConvertError::new(
                    format!("status.podIPs[{i}]"),
                    format!("{text:?} is not an IP address"),
                )
            }))?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    Some(Converted::Pod {
        workload: Workload {
            kind: WorkloadKind::Pod,
            namespace: namespace.to_string(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
            labels: labels.clone(),
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            selector: LabelSelector::from_labels(labels.clone()),
            pod_labels: labels,
            containers,
            pod_ips: ips,
        },
        owner: controller_owner(&pod.metadata),
    })
}

fn service(s: &core_v1::Service, namespace: &str, problems: &mut Problems) -> Option<Service> {
    let spec = s.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => Some(ServiceType::ClusterIp),
        Some("NodePort") => Some(ServiceType::NodePort),
        Some("LoadBalancer") => Some(ServiceType::LoadBalancer),
        Some("ExternalName") => Some(ServiceType::ExternalName),
        Some(other) => {
            problems.push(ConvertError::new(
                "spec.type",
                format!(
                    "unknown Service type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"
                ),
            ));
            None
        }
    };
    if let Some(selector) = &spec.selector {
        problems.invalid("spec.selector", validation::labels(selector));
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let at = format!("spec.ports[{i}]");
        let Some(port) = problems.take(port_number(p.port, &format!("{at}.port"))) else {
            continue;
        };
        let target_port = match &p.target_port {
            None => Ok(TargetPort::Number(port)),
            Some(IntOrString::Int(n)) => {
                port_number(*n, &format!("{at}.targetPort")).map(TargetPort::Number)
            }
            // A numeric string is tolerated as the number it spells.
            Some(IntOrString::String(s)) => match s.parse::<i32>() {
                Ok(n) => port_number(n, &format!("{at}.targetPort")).map(TargetPort::Number),
                Err(_) => Ok(TargetPort::Name(s.clone())),
            },
        };
        let protocol = protocol(p.protocol.as_deref(), &format!("{at}.protocol"));
        if let (Some(target_port), Some(protocol)) =
            (problems.take(target_port), problems.take(protocol))
        {
            ports.push(ServicePort {
                name: p.name.clone(),
                port,
                target_port,
                protocol,
            });
        }
    }
    let service_type = service_type?;
    Some(Service {
        namespace: namespace.to_string(),
        name: s.metadata.name.clone().unwrap_or_default(),
        selector: spec.selector.clone(),
        service_type,
        ports,
        external_ips: spec.external_ips.clone().unwrap_or_default(),
    })
}

fn ingress(i: &net::Ingress, namespace: &str) -> Result<Ingress, ConvertError> {
    let mut backends = Vec::new();
    let mut add = |backend: &net::IngressBackend, field: String| -> Result<(), ConvertError> {
        if let Some(svc) = &backend.service {
            let port = match &svc.port {
                Some(net::ServiceBackendPort {
                    number: Some(n), ..
                }) => ServicePortRef::Number(port_number(
                    *n,
                    &format!("{field}.service.port.number"),
                )?),
                Some(net::ServiceBackendPort {
                    name: Some(name), ..
                }) => ServicePortRef::Name(name.clone()),
                _ => {
                    return Err(ConvertError::new(
                        format!("{field}.service.port"),
                        "needs a number or a name",
                    ));
                }
            };
            backends.push(IngressBackend {
                service: svc.name.clone(),
                port,
            });
        }
        Ok(())
    };
    if let Some(spec) = &i.spec {
        if let Some(b) = &spec.default_backend {
            add(b, "spec.defaultBackend".into())?;
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            for (pi, path) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
                add(
                    &path.backend,
                    format!("spec.rules[{ri}].http.paths[{pi}].backend"),
                )?;
            }
        }
    }
    // The field, else the legacy annotation (the API server refuses both
    // set to different classes); an empty name is no class.
    let class = i
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            let annotations = i.metadata.annotations.as_ref()?;
            annotations.get(INGRESS_CLASS_ANNOTATION).cloned()
        })
        .filter(|c| !c.is_empty());
    Ok(Ingress {
        namespace: namespace.to_string(),
        name: i.metadata.name.clone().unwrap_or_default(),
        class,
        backends,
    })
}
