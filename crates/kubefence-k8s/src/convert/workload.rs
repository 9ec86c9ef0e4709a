//! Workloads and their pod templates → core `Workload`s.

use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core_v1};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use kubefence_core::model::{
    Container, ContainerPort, EnvFromConfigMap, EnvValue, EnvVar, Workload, WorkloadKind,
};
use kubefence_core::selector::{LabelSelector, Labels};
use kubefence_core::validation;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::selector::label_selector;
use super::{ConvertError, Problems, Strictness, is_port_name, port_number, protocol};

/// What kubefence reads of a workload object: its metadata, its pod
/// selector and its pod template, wherever the kind keeps them.
pub trait WorkloadObject: DeserializeOwned + JsonSchema + 'static {
    const KIND: WorkloadKind;
    /// The selector's path, for errors.
    const SELECTOR_FIELD: &'static str = "spec.selector";
    /// The pod template's path, for errors.
    const TEMPLATE_FIELD: &'static str = "spec.template";
    fn metadata(&self) -> &meta::ObjectMeta;
    /// `None` where the kind may omit it (Jobs select by their template).
    fn selector(&self) -> Option<&meta::LabelSelector>;
    fn template(&self) -> Option<&core_v1::PodTemplateSpec>;
}

impl WorkloadObject for apps::Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for apps::StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for apps::DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for apps::ReplicaSet {
    const KIND: WorkloadKind = WorkloadKind::ReplicaSet;
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
}

impl WorkloadObject for batch::Job {
    const KIND: WorkloadKind = WorkloadKind::Job;
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        self.spec.as_ref().and_then(|s| s.selector.as_ref())
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for batch::CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;
    const SELECTOR_FIELD: &'static str = "spec.jobTemplate.spec.selector";
    const TEMPLATE_FIELD: &'static str = "spec.jobTemplate.spec.template";
    fn metadata(&self) -> &meta::ObjectMeta {
        &self.metadata
    }
    fn selector(&self) -> Option<&meta::LabelSelector> {
        job_spec(self).and_then(|s| s.selector.as_ref())
    }
    fn template(&self) -> Option<&core_v1::PodTemplateSpec> {
        job_spec(self).map(|s| &s.template)
    }
}

/// The spec of the Jobs a CronJob creates.
fn job_spec(cron_job: &batch::CronJob) -> Option<&batch::JobSpec> {
    cron_job
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
}

/// Any workload object → the core workload, with every bad field reported.
pub(crate) fn workload_of<W: WorkloadObject>(
    object: &W,
    namespace: &str,
    strictness: Strictness,
) -> Result<Workload, Vec<ConvertError>> {
    workload_from_template(
        strictness,
        W::KIND,
        namespace,
        object.metadata(),
        object.selector().map(|s| (s, W::SELECTOR_FIELD)),
        object.template(),
        W::TEMPLATE_FIELD,
    )
}

/// A workload from its metadata, selector (and the selector's path) and
/// pod template. `template_field` is the template's path (`spec.template`,
/// or `spec.jobTemplate.spec.template` for a CronJob), for errors.
/// With [`Strictness::Lenient`] (an object its API server accepted), the
/// selector-template rules are left to the builders, which refuse an empty
/// selector with their own error.
pub fn workload_from_template(
    strictness: Strictness,
    kind: WorkloadKind,
    namespace: &str,
    metadata: &meta::ObjectMeta,
    selector: Option<(&meta::LabelSelector, &str)>,
    template: Option<&core_v1::PodTemplateSpec>,
    template_field: &str,
) -> Result<Workload, Vec<ConvertError>> {
    let mut problems = Problems::default();
    let template_meta = template.and_then(|t| t.metadata.as_ref());
    let pod_labels: Labels = template_meta
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    problems.invalid(
        &format!("{template_field}.metadata.labels"),
        validation::labels(&pod_labels),
    );
    if let Some(annotations) = template_meta.and_then(|m| m.annotations.as_ref()) {
        problems.invalid(
            &format!("{template_field}.metadata.annotations"),
            validation::annotation_keys(annotations.keys()),
        );
    }
    let selector = match selector {
        Some((s, field)) => problems
            .take_all(label_selector(s, field))
            .inspect(|selector| {
                if strictness == Strictness::Lenient {
                    return;
                }
                check_selects_template(
                    kind,
                    selector,
                    field,
                    template,
                    &pod_labels,
                    template_field,
                )
                .into_iter()
                .for_each(|e| problems.push(e));
            }),
        // Jobs and CronJobs may omit it: the controller selects by the template.
        None => Some(LabelSelector::from_labels(pod_labels.clone())),
    };
    let containers = match template.and_then(|t| t.spec.as_ref()) {
        Some(spec) => problems.take_all(pod_containers(spec, &format!("{template_field}.spec"))),
        None => Some(Vec::new()),
    };
    let workload = match (selector, containers) {
        (Some(selector), Some(containers)) => Some(Workload {
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
        }),
        _ => None,
    };
    problems.finish(workload)
}

/// The API server's rules between a workload's selector and its template:
/// an apps/v1 workload needs a non-empty selector, and the selector must
/// select the template's own pods (else the controller would create pods
/// that it does not own, forever).
fn check_selects_template(
    kind: WorkloadKind,
    selector: &LabelSelector,
    selector_field: &str,
    template: Option<&core_v1::PodTemplateSpec>,
    pod_labels: &Labels,
    template_field: &str,
) -> Option<ConvertError> {
    let apps = matches!(
        kind,
        WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::ReplicaSet
    );
    if apps && selector.is_empty() {
        return Some(ConvertError::new(
            selector_field,
            format!("empty selector is invalid for a {kind}"),
        ));
    }
    (template.is_some() && !selector.matches(pod_labels)).then(|| {
        ConvertError::new(
            format!("{template_field}.metadata.labels"),
            format!("`selector` ({selector}) does not match template `labels`"),
        )
    })
}

/// Every container of a pod spec, init containers first.
pub(crate) fn pod_containers(
    spec: &core_v1::PodSpec,
    field: &str,
) -> Result<Vec<Container>, Vec<ConvertError>> {
    let mut problems = Problems::default();
    let mut out = Vec::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (c, true, format!("{field}.initContainers[{i}]")))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (c, false, format!("{field}.containers[{i}]"))),
        );
    for (c, init, at) in all {
        out.extend(problems.take_all(container(c, init, &at)));
    }
    problems.finish(Some(out))
}

/// One container; every bad port is reported.
pub fn container(
    c: &core_v1::Container,
    init: bool,
    field: &str,
) -> Result<Container, Vec<ConvertError>> {
    let mut problems = Problems::default();
    let mut ports = Vec::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let at = format!("{field}.ports[{i}]");
        if let Some(name) = &p.name
            && !is_port_name(name)
        {
            problems.push(ConvertError::new(
                format!("{at}.name"),
                format!(
                    "{name:?} is not a valid port name (1-15 lower-case letters, digits and '-', with a letter)"
                ),
            ));
        }
        let number = problems.take(port_number(
            p.container_port,
            &format!("{at}.containerPort"),
        ));
        let protocol = problems.take(protocol(p.protocol.as_deref(), &format!("{at}.protocol")));
        if let (Some(port), Some(protocol)) = (number, protocol) {
            ports.push(ContainerPort {
                name: p.name.clone(),
                port,
                protocol,
            });
        }
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
    problems.finish(Some(Container {
        name: c.name.clone(),
        init,
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        env_from,
        ports,
    }))
}
