//! Dispatch by kind, and the simple kinds: Namespace, Service, Ingress,
//! ConfigMap, Pod.

use std::net::IpAddr;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core_v1, networking::v1 as net,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubefence_core::model::{
    ConfigMap, INGRESS_CLASS_ANNOTATION, Ingress, IngressBackend, NAMESPACE_NAME_LABEL, Namespace,
    Service, ServicePort, ServicePortRef, ServiceType, TargetPort, Workload, WorkloadKind,
};
use kubefence_core::selector::LabelSelector;
use serde_json::Value;

use super::{ConvertError, network_policy, port_number, protocol, typed, workload_from_template};
use crate::load::RawInput;
use crate::load::fold::{OwnedWorkload, Owner, RawPod};

pub(crate) fn convert(
    kind: &str,
    value: Value,
    namespace: &str,
    raw: &mut RawInput,
) -> Result<(), ConvertError> {
    match kind {
        "Namespace" => {
            let ns: core_v1::Namespace = typed(value)?;
            let name = ns.metadata.name.unwrap_or_default();
            let mut labels = ns.metadata.labels.unwrap_or_default();
            // The API server sets it on every namespace.
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
            raw.cluster
                .namespaces
                .insert(name.clone(), Namespace { name, labels });
        }
        "Pod" => {
            let pod: core_v1::Pod = typed(value)?;
            raw.pods.push(pod_of(&pod, namespace)?);
        }
        "Deployment" => {
            let d: apps::Deployment = typed(value)?;
            let spec = d.spec.as_ref();
            let w = workload_from_template(
                WorkloadKind::Deployment,
                namespace,
                &d.metadata,
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                "spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "StatefulSet" => {
            let d: apps::StatefulSet = typed(value)?;
            let spec = d.spec.as_ref();
            let w = workload_from_template(
                WorkloadKind::StatefulSet,
                namespace,
                &d.metadata,
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                "spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "DaemonSet" => {
            let d: apps::DaemonSet = typed(value)?;
            let spec = d.spec.as_ref();
            let w = workload_from_template(
                WorkloadKind::DaemonSet,
                namespace,
                &d.metadata,
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                "spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "ReplicaSet" => {
            let d: apps::ReplicaSet = typed(value)?;
            let spec = d.spec.as_ref();
            let w = workload_from_template(
                WorkloadKind::ReplicaSet,
                namespace,
                &d.metadata,
                spec.map(|s| &s.selector),
                spec.and_then(|s| s.template.as_ref()),
                "spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "Job" => {
            let d: batch::Job = typed(value)?;
            let spec = d.spec.as_ref();
            let w = workload_from_template(
                WorkloadKind::Job,
                namespace,
                &d.metadata,
                spec.and_then(|s| s.selector.as_ref()),
                spec.map(|s| &s.template),
                "spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "CronJob" => {
            let d: batch::CronJob = typed(value)?;
            let job_spec = d.spec.as_ref().and_then(|s| s.job_template.spec.as_ref());
            let w = workload_from_template(
                WorkloadKind::CronJob,
                namespace,
                &d.metadata,
                job_spec.and_then(|s| s.selector.as_ref()),
                job_spec.map(|s| &s.template),
                "spec.jobTemplate.spec.template",
            )?;
            push_workload(raw, w, &d.metadata);
        }
        "Service" => {
            let s: core_v1::Service = typed(value)?;
            raw.cluster.services.push(service(&s, namespace)?);
        }
        "Ingress" => {
            let i: net::Ingress = typed(value)?;
            raw.cluster.ingresses.push(ingress(&i, namespace)?);
        }
        "ConfigMap" => {
            let c: core_v1::ConfigMap = typed(value)?;
            raw.cluster.config_maps.push(ConfigMap {
                namespace: namespace.to_string(),
                name: c.metadata.name.unwrap_or_default(),
                data: c.data.unwrap_or_default(),
            });
        }
        "NetworkPolicy" => {
            let p: net::NetworkPolicy = typed(value)?;
            raw.cluster.policies.push(network_policy(&p, namespace)?);
        }
        other => {
            return Err(ConvertError::new(
                "kind",
                format!("kind {other} is not read"),
            ));
        }
    }
    Ok(())
}

/// The controller ownerReference of an object, if any.
fn controller_owner(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<Owner> {
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

/// Workloads owned by another workload (a Deployment's ReplicaSets, a
/// CronJob's Jobs) are folded into their owner later.
fn push_workload(
    raw: &mut RawInput,
    workload: Workload,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    match controller_owner(metadata) {
        Some(owner)
            if matches!(
                (workload.kind, owner.kind.as_str()),
                (WorkloadKind::ReplicaSet, "Deployment") | (WorkloadKind::Job, "CronJob")
            ) =>
        {
            raw.owned.push(OwnedWorkload { workload, owner })
        }
        _ => raw.cluster.workloads.push(workload),
    }
}

fn pod_of(pod: &core_v1::Pod, namespace: &str) -> Result<RawPod, ConvertError> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let containers = match &pod.spec {
        Some(spec) => super::workload::pod_containers(spec, "spec")?,
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
            let ip = text.parse().map_err(|_| {
                ConvertError::new(
                    format!("status.podIPs[{i}]"),
                    format!("{text:?} is not an IP address"),
                )
            })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    Ok(RawPod {
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

fn service(s: &core_v1::Service, namespace: &str) -> Result<Service, ConvertError> {
    let spec = s.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(ConvertError::new(
                "spec.type",
                format!(
                    "unknown Service type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"
                ),
            ));
        }
    };
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = port_number(p.port, &format!("{at}.port"))?;
        let target_port = match &p.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => {
                TargetPort::Number(port_number(*n, &format!("{at}.targetPort"))?)
            }
            // A numeric string is tolerated as the number it spells.
            Some(IntOrString::String(s)) => match s.parse::<i32>() {
                Ok(n) => TargetPort::Number(port_number(n, &format!("{at}.targetPort"))?),
                Err(_) => TargetPort::Name(s.clone()),
            },
        };
        ports.push(ServicePort {
            name: p.name.clone(),
            port,
            target_port,
            protocol: protocol(p.protocol.as_deref(), &format!("{at}.protocol"))?,
        });
    }
    Ok(Service {
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
