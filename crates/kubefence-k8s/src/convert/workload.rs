//! Workloads and their pod templates → core `Workload`s.

use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::model::{
    Container, ContainerPort, EnvFromConfigMap, EnvValue, EnvVar, Workload, WorkloadKind,
};
use kubefence_core::selector::{LabelSelector, Labels};

use super::{ConvertError, is_port_name, label_selector, port_number, protocol};

/// A workload from its metadata, `spec.selector` and pod template.
/// `template_field` is the template's path (`spec.template`, or
/// `spec.jobTemplate.spec.template` for a CronJob), for errors.
pub fn workload_from_template(
    kind: WorkloadKind,
    namespace: &str,
    metadata: &meta::ObjectMeta,
    selector: Option<&meta::LabelSelector>,
    template: Option<&core_v1::PodTemplateSpec>,
    template_field: &str,
) -> Result<Workload, ConvertError> {
    let pod_labels: Labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = match selector {
        Some(s) => label_selector(s, "spec.selector")?,
        // Jobs and CronJobs may omit it: the controller selects by the template.
        None => LabelSelector::from_labels(pod_labels.clone()),
    };
    let containers = match template.and_then(|t| t.spec.as_ref()) {
        Some(spec) => pod_containers(spec, &format!("{template_field}.spec"))?,
        None => Vec::new(),
    };
    Ok(Workload {
        kind,
        namespace: namespace.to_string(),
        name: metadata.name.clone().unwrap_or_default(),
        uid: metadata.uid.clone(),
        labels: metadata.labels.clone().unwrap_or_default(),
        annotations: metadata.annotations.clone().unwrap_or_default(),
        selector,
        pod_labels,
        containers,
        pod_ips: Vec::new(),
    })
}

/// Every container of a pod spec, init containers first.
pub(crate) fn pod_containers(
    spec: &core_v1::PodSpec,
    field: &str,
) -> Result<Vec<Container>, ConvertError> {
    let mut out = Vec::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        out.push(container(c, true, &format!("{field}.initContainers[{i}]"))?);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        out.push(container(c, false, &format!("{field}.containers[{i}]"))?);
    }
    Ok(out)
}

pub fn container(
    c: &core_v1::Container,
    init: bool,
    field: &str,
) -> Result<Container, ConvertError> {
    let mut ports = Vec::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let at = format!("{field}.ports[{i}]");
        if let Some(name) = &p.name
            && !is_port_name(name)
        {
            return Err(ConvertError::new(
                format!("{at}.name"),
                format!(
                    "{name:?} is not a valid port name (1-15 lower-case letters, digits and '-', with a letter)"
                ),
            ));
        }
        ports.push(ContainerPort {
            name: p.name.clone(),
            port: port_number(p.container_port, &format!("{at}.containerPort"))?,
            protocol: protocol(p.protocol.as_deref(), &format!("{at}.protocol"))?,
        });
    }
    let env = c
        .env
        .iter()
        .flatten()
        .map(|e| EnvVar {
            name: e.name.clone(),
            value: match (&e.value, &e.value_from) {
                (_, Some(from)) => match &from.config_map_key_ref {
                    Some(r) => EnvValue::ConfigMapKey {
                        name: r.name.clone(),
                        key: r.key.clone(),
                    },
                    None => EnvValue::Opaque,
                },
                (Some(v), None) => EnvValue::Literal(v.clone()),
                (None, None) => EnvValue::Literal(String::new()),
            },
        })
        .collect();
    let env_from = c
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| {
            e.config_map_ref.as_ref().map(|r| EnvFromConfigMap {
                name: r.name.clone(),
                prefix: e.prefix.clone(),
            })
        })
        .collect();
    Ok(Container {
        name: c.name.clone(),
        init,
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        env_from,
        ports,
    })
}
