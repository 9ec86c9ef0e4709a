//! The reference finder: container configuration → the Services a workload
//! talks to (`kubefence_core::baseline::addresses` and the detection inside
//! `kubefence_core::baseline::build`), and the policies built from them.
//!
//! Input: text, one item a line. `cm:KEY=value` is an entry of a ConfigMap
//! that the container reads with `envFrom`; `NAME=value` (NAME made of
//! letters, digits, `_`, `-` and `.`) is an env variable; any other line is
//! an argument. The container belongs to `shop/client`, in a fixed cluster
//! with Services `shop/db` (5432), `shop/cache` (6379, a named target port),
//! `data/store` (80 → 8080), `shop/external` (no selector) and a workload
//! `shop/bystander` that no Service selects.
//!
//! Checks:
//! - every address found in a line is a lower-case host name or IP written
//!   in that line;
//! - every reported reference goes from the client to the workload that its
//!   Service selects;
//! - with the baseline policies in place, the semantics engine allows
//!   exactly the reported references (the client to each referenced
//!   workload, on the reported ports) and no other connection: no pair that
//!   no reference asks for, and none that one asks for left closed.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kubefence_core::baseline::{self, BaselineConfig, Scope};
use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_core::model::{
    ConfigMap, Container, ContainerPort, EnvFromConfigMap, EnvValue, EnvVar, Service,
    ServicePort, ServiceType, TargetPort, Workload, WorkloadKind,
};
use kubefence_core::{Cluster, ConnSet, LabelSelector, Labels, Protocol};
use libfuzzer_sys::fuzz_target;

const CLIENT: &str = "shop/Deployment/client";

/// The Services of the fixed cluster and the workload each one selects.
const SERVICES: [(&str, Option<&str>); 4] = [
    ("shop/db", Some("shop/Deployment/db")),
    ("shop/cache", Some("shop/Deployment/cache")),
    ("data/store", Some("data/Deployment/store")),
    ("shop/external", None),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = Vec::new();
    let mut args = Vec::new();
    let mut config = BTreeMap::new();
    for line in text.lines() {
        check_addresses(line);
        if let Some(entry) = line.strip_prefix("cm:") {
            if let Some((key, value)) = entry.split_once('=') {
                config.insert(key.to_string(), value.to_string());
            }
        } else if let Some((name, value)) = line.split_once('=')
            && is_env_name(name)
        {
            env.push(EnvVar {
                name: name.to_string(),
                value: EnvValue::Literal(value.to_string()),
            });
        } else {
            args.push(line.to_string());
        }
    }
    let cluster = cluster_with_client(env, args, config);
    let built = baseline::build(&cluster, &BaselineConfig::default(), &Scope::default())
        .expect("the default configuration is valid");

    let mut expected: BTreeMap<String, ConnSet> = BTreeMap::new();
    for r in &built.report.references {
        assert_eq!(r.from, CLIENT, "a reference from a workload without config");
        let selected = SERVICES
            .iter()
            .find(|(name, _)| *name == r.service)
            .and_then(|(_, w)| *w);
        assert_eq!(
            selected,
            Some(r.to.as_str()),
            "reference to {} through {}, which does not select it",
            r.to,
            r.service
        );
        let slot = expected.entry(r.to.clone()).or_default();
        for port in &r.ports {
            slot.union_with(&parse_port(port));
        }
    }

    let mut enforced = cluster.clone();
    enforced
        .policies
        .extend(built.policies.iter().map(|g| g.policy.clone()));
    let connectivity = analyze(&enforced, &AnalyzeOptions::default());
    let mut allowed: BTreeMap<String, ConnSet> = BTreeMap::new();
    for c in connectivity.connections() {
        let (from, to) = (
            &connectivity.endpoints[c.from].id,
            &connectivity.endpoints[c.to].id,
        );
        assert_eq!(
            from, CLIENT,
            "{from} may reach {to} ({}) though it references nothing",
            c.allowed
        );
        allowed.insert(to.clone(), c.allowed.clone());
    }
    assert_eq!(
        allowed, expected,
        "the policies allow something else than the references"
    );
});

/// Names the tests treat as env variable names.
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check_addresses(line: &str) {
    let lower = line.to_ascii_lowercase();
    for a in baseline::addresses(line) {
        assert!(!a.host.is_empty(), "empty host in {line:?}");
        assert!(
            lower.contains(&a.host),
            "host {:?} is not written in {line:?}",
            a.host
        );
        let is_ip = a.host.parse::<std::net::IpAddr>().is_ok();
        assert!(
            is_ip
                // `_` too: a host:port whose host no Service can have
                // (`no_such_svc:4040`) is kept, to be reported as unresolved.
                || a.host.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'
                    || b == b'.'),
            "host {:?} of {line:?} is neither a DNS name, a would-be name nor an IP",
            a.host
        );
    }
}

/// `TCP/5432` or `TCP/8000-8010`, as the report writes target ports.
fn parse_port(text: &str) -> ConnSet {
    let (protocol, ports) = text.split_once('/').expect("PROTOCOL/PORTS");
    let protocol = Protocol::ALL
        .into_iter()
        .find(|p| p.as_str() == protocol)
        .expect("a known protocol");
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    ConnSet::ports(
        protocol,
        lo.parse().expect("a port"),
        hi.parse().expect("a port"),
    )
}

/// The fixed cluster with the client added: a Deployment whose one
/// container has `env`, `args` and `envFrom` the ConfigMap `cfg` holding
/// `config`. Built as the loader would build it, straight in the core model:
/// the target fuzzes the reference finder, not the loader (which has its own
/// target), and skipping the YAML and k8s-openapi round trip makes each run
/// several times faster.
fn cluster_with_client(
    env: Vec<EnvVar>,
    args: Vec<String>,
    config: BTreeMap<String, String>,
) -> Cluster {
    let mut cluster = fixed_cluster().clone();
    let mut client = deployment("shop", "client", Some("main"), 8000);
    client.containers[0].args = args;
    client.containers[0].env = env;
    client.containers[0].env_from = vec![EnvFromConfigMap {
        name: "cfg".into(),
        prefix: None,
    }];
    cluster.workloads.push(client);
    cluster.config_maps.push(ConfigMap {
        namespace: "shop".into(),
        name: "cfg".into(),
        data: config,
    });
    cluster
}

fn labels(app: &str) -> Labels {
    Labels::from([("app".to_string(), app.to_string())])
}

fn deployment(namespace: &str, name: &str, port_name: Option<&str>, port: u16) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: namespace.into(),
        name: name.into(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(labels(name)),
        pod_labels: labels(name),
        containers: vec![Container {
            name: name.into(),
            init: false,
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            env_from: Vec::new(),
            ports: vec![ContainerPort {
                name: port_name.map(str::to_string),
                port,
                protocol: Protocol::Tcp,
            }],
        }],
        pod_ips: Vec::new(),
    }
}

fn service(
    namespace: &str,
    name: &str,
    selector: Option<&str>,
    ports: &[(Option<&str>, u16, TargetPort)],
) -> Service {
    Service {
        namespace: namespace.into(),
        name: name.into(),
        selector: selector.map(labels),
        service_type: ServiceType::ClusterIp,
        ports: ports
            .iter()
            .map(|(port_name, port, target)| ServicePort {
                name: port_name.map(str::to_string),
                port: *port,
                target_port: target.clone(),
                protocol: Protocol::Tcp,
            })
            .collect(),
        external_ips: Vec::new(),
    }
}

fn fixed_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let mut cluster = Cluster {
            workloads: vec![
                deployment("shop", "db", Some("main"), 5432),
                deployment("shop", "cache", Some("redis"), 6379),
                deployment("data", "store", Some("main"), 8080),
                deployment("shop", "bystander", Some("main"), 5432),
            ],
            services: vec![
                service("shop", "db", Some("db"), &[(None, 5432, TargetPort::Number(5432))]),
                service(
                    "shop",
                    "cache",
                    Some("cache"),
                    &[(Some("redis"), 6379, TargetPort::Name("redis".into()))],
                ),
                service("data", "store", Some("store"), &[(None, 80, TargetPort::Number(8080))]),
                service("shop", "external", None, &[(None, 443, TargetPort::Number(443))]),
            ],
            ..Cluster::default()
        };
        cluster.add_implicit_namespaces();
        cluster
    })
}
