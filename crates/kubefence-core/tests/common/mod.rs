//! Builders shared by the core's integration tests (the testkit depends on
//! the core, so these cannot live there).

use kubefence_core::Protocol;
use kubefence_core::model::{Container, ContainerPort, Workload, WorkloadKind};
use kubefence_core::policy::{PortRef, PortSpec};
use kubefence_core::selector::{LabelSelector, Labels};

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn deployment(ns: &str, app: &str) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: ns.into(),
        name: app.into(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(labels(&[("app", app)])),
        pod_labels: labels(&[("app", app)]),
        containers: vec![Container {
            name: "main".into(),
            init: false,
            command: vec![],
            args: vec![],
            env: vec![],
            env_from: vec![],
            ports: vec![ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            }],
        }],
        pod_ips: vec![],
    }
}

#[allow(dead_code)]
pub fn tcp(port: u16) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Number(port)),
        end_port: None,
    }
}
