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
use kubefence_core::{Cluster, ConnSet, Protocol};
use kubefence_k8s::load::{LoadOptions, load_str};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

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
            env.push(json!({"name": name, "value": value}));
        } else {
            args.push(line.to_string());
        }
    }
    let Some(cluster) = cluster_with_client(env, args, config) else {
        return;
    };
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

fn cluster_with_client(
    env: Vec<Value>,
    args: Vec<String>,
    config: BTreeMap<String, String>,
) -> Option<Cluster> {
    let client = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "shop"},
                "data": config,
            },
            deployment("shop", "client", 8000, json!([{
                "name": "main",
                "image": "client",
                "args": args,
                "env": env,
                "envFrom": [{"configMapRef": {"name": "cfg"}}],
            }])),
        ],
    });
    let loaded = load_str(&client.to_string(), "client.json", &LoadOptions::default());
    if loaded.has_errors() || loaded.cluster.workloads.len() != 1 {
        return None;
    }
    let mut cluster = fixed_cluster().clone();
    cluster.workloads.extend(loaded.cluster.workloads);
    cluster.config_maps.extend(loaded.cluster.config_maps);
    Some(cluster)
}

fn deployment(namespace: &str, name: &str, port: u16, containers: Value) -> Value {
    let mut containers = containers;
    if let Some(first) = containers.get_mut(0) {
        first["ports"] = json!([{"name": "main", "containerPort": port}]);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers},
            },
        },
    })
}

fn service(namespace: &str, name: &str, selector: Option<&str>, ports: Value) -> Value {
    let mut spec = json!({"ports": ports});
    if let Some(app) = selector {
        spec["selector"] = json!({"app": app});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

fn fixed_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let image = |name: &str| json!([{"name": name, "image": name}]);
        let mut cache = deployment("shop", "cache", 6379, image("cache"));
        cache["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = json!("redis");
        let namespace = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        };
        let list = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                namespace("shop"),
                namespace("data"),
                deployment("shop", "db", 5432, image("db")),
                service("shop", "db", Some("db"), json!([{"port": 5432, "targetPort": 5432}])),
                cache,
                service("shop", "cache", Some("cache"),
                    json!([{"name": "redis", "port": 6379, "targetPort": "redis"}])),
                deployment("data", "store", 8080, image("store")),
                service("data", "store", Some("store"), json!([{"port": 80, "targetPort": 8080}])),
                deployment("shop", "bystander", 5432, image("bystander")),
                service("shop", "external", None, json!([{"port": 443}])),
            ],
        });
        let loaded = load_str(&list.to_string(), "fixed.json", &LoadOptions::default());
        assert!(
            !loaded.has_errors(),
            "the fixed cluster does not load: {:?}",
            loaded.errors
        );
        assert_eq!(loaded.cluster.workloads.len(), 4);
        loaded.cluster
    })
}
