//! Synthetic clusters for the baseline builder: workloads that call each
//! other through Services, with the call graph known in advance.
//!
//! Every workload `w<i>` in namespace `ns<j>` has a Service of the same name
//! (port 80 → the named container port `http`, 8080) and a few references
//! to other workloads' Services, written in every address form the builder
//! reads (`svc:80`, `http://svc.ns:80/path?q=1`, `svc.ns.svc.cluster.local`,
//! `amqp://user@svc.ns:80/`, a host/port pair split across two variables,
//! and a ConfigMap value), some across namespaces, plus names that match no
//! Service. The generator records the edges it meant, so a test can check
//! that the builder finds exactly those: the truth does not come from the
//! code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use kubefence_core::model::{
    ConfigMap, Container, ContainerPort, EnvValue, EnvVar, Namespace, Service, ServicePort,
    ServiceType, TargetPort, Workload, WorkloadKind,
};
use kubefence_core::selector::{LabelSelector, Labels};
use kubefence_core::{Cluster, Protocol};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The cluster DNS that baseline policies allow (kube-system is protected,
/// so it gets no policy). nca simulates one when none is given; giving it
/// keeps both sides on the same endpoints.
pub const CLUSTER_DNS_MANIFEST: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
  labels: {kubernetes.io/metadata.name: kube-system}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      containers:
      - name: coredns
        image: coredns
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
";

/// The target port every synthetic Service routes to.
pub const TARGET_PORT: u16 = 8080;

/// A cluster and the call graph it was built with.
#[derive(Clone, Debug)]
pub struct BaselineSynth {
    pub cluster: Cluster,
    /// `(from id, to id)` for every intended reference.
    pub edges: BTreeSet<(String, String)>,
    /// `(from id, value)` for every name that matches no Service.
    pub dangling: BTreeSet<(String, String)>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `workloads` workloads over `namespaces` namespaces, each referring to
/// about `refs_per_workload` others; deterministic for a seed.
pub fn baseline_cluster(
    workloads: usize,
    namespaces: usize,
    refs_per_workload: usize,
    seed: u64,
) -> BaselineSynth {
    let namespaces = namespaces.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::default();
    for j in 0..namespaces {
        let name = format!("ns{j}");
        let mut ns = Namespace::implicit(&name);
        ns.labels.insert("team".into(), format!("t{}", j % 3));
        cluster.namespaces.insert(name, ns);
    }
    let place = |i: usize| (format!("ns{}", i % namespaces), format!("w{i}"));
    let mut edges = BTreeSet::new();
    let mut dangling = BTreeSet::new();

    for i in 0..workloads {
        let (ns, name) = place(i);
        let kind = kind_of(i);
        let id = format!("{ns}/{kind}/{name}");
        let mut env = Vec::new();
        let mut config = BTreeMap::new();
        let mut targets = BTreeSet::new();
        for r in 0..refs_per_workload {
            let t = rng.random_range(0..workloads);
            if t == i || !targets.insert(t) {
                continue;
            }
            let (tns, tname) = place(t);
            let same_ns = tns == ns;
            let short = if same_ns {
                tname.clone()
            } else {
                format!("{tname}.{tns}")
            };
            let var = format!("DEP_{r}");
            match (i + r) % 6 {
                0 => env.push(literal(&format!("{var}_ADDR"), &format!("{short}:80"))),
                1 => env.push(literal(
                    &format!("{var}_URL"),
                    &format!("http://{tname}.{tns}:80/api/v1?x=1"),
                )),
                2 => env.push(literal(
                    &format!("{var}_HOST"),
                    &format!("{tname}.{tns}.svc.cluster.local"),
                )),
                3 => env.push(literal(
                    &format!("{var}_URI"),
                    &format!("amqp://user@{tname}.{tns}:80/"),
                )),
                4 => {
                    env.push(literal(&format!("{var}_DB_HOST"), &short));
                    env.push(literal(&format!("{var}_DB_PORT"), "80"));
                }
                _ => {
                    let key = format!("dep{r}");
                    config.insert(key.clone(), format!("{short}:80"));
                    env.push(EnvVar {
                        name: format!("{var}_FROM_CONFIG"),
                        value: EnvValue::ConfigMapKey {
                            name: format!("{name}-config"),
                            key,
                        },
                    });
                }
            }
            edges.insert((id.clone(), format!("{tns}/{}/{tname}", kind_of(t))));
        }
        if i % 7 == 3 {
            let value = format!("missing-{i}:80");
            env.push(literal("MISSING_ADDR", &value));
            dangling.insert((id.clone(), value));
        }
        if !config.is_empty() {
            cluster.config_maps.push(ConfigMap {
                namespace: ns.clone(),
                name: format!("{name}-config"),
                data: config,
            });
        }
        let pod_labels = labels(&[("app", &name), ("tier", "backend")]);
        cluster.workloads.push(Workload {
            kind,
            namespace: ns.clone(),
            name: name.clone(),
            uid: Some(format!("uid-{i}")),
            labels: Labels::new(),
            annotations: Labels::new(),
            selector: LabelSelector::from_labels(labels(&[("app", &name)])),
            pod_labels,
            containers: vec![Container {
                name: "main".into(),
                init: false,
                command: vec![],
                args: vec![],
                env,
                env_from: vec![],
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: TARGET_PORT,
                    protocol: Protocol::Tcp,
                }],
            }],
            pod_ips: vec![],
        });
        cluster.services.push(Service {
            namespace: ns,
            name: name.clone(),
            selector: Some(labels(&[("app", &name)])),
            service_type: ServiceType::ClusterIp,
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: TargetPort::Name("http".into()),
                protocol: Protocol::Tcp,
            }],
            external_ips: vec![],
        });
    }
    BaselineSynth {
        cluster,
        edges,
        dangling,
    }
}

fn kind_of(i: usize) -> WorkloadKind {
    match i % 10 {
        0 => WorkloadKind::StatefulSet,
        1 => WorkloadKind::DaemonSet,
        _ => WorkloadKind::Deployment,
    }
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: EnvValue::Literal(value.into()),
    }
}

/// The cluster as Kubernetes manifests (multi-document YAML), for timing
/// the whole `kubefence generate` command on the same input.
pub fn to_manifests(synth: &BaselineSynth) -> String {
    let mut out = String::new();
    let c = &synth.cluster;
    for ns in c.namespaces.values() {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels:\n",
            ns.name
        );
        for (k, v) in &ns.labels {
            let _ = writeln!(out, "    {k}: {v}");
        }
        out.push_str("---\n");
    }
    for cm in &c.config_maps {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: {}\ndata:\n",
            cm.name, cm.namespace
        );
        for (k, v) in &cm.data {
            let _ = writeln!(out, "  {k}: \"{v}\"");
        }
        out.push_str("---\n");
    }
    for s in &c.services {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
             spec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n---\n",
            name = s.name,
            ns = s.namespace
        );
    }
    for w in &c.workloads {
        let name = &w.name;
        let extra = match w.kind {
            WorkloadKind::StatefulSet => format!("  serviceName: {name}\n"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
             spec:\n{extra}  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n",
            kind = w.kind,
            ns = w.namespace,
        );
        for (k, v) in &w.pod_labels {
            let _ = writeln!(out, "        {k}: {v}");
        }
        out.push_str("    spec:\n      containers:\n      - name: main\n        image: app\n        ports:\n        - name: http\n          containerPort: 8080\n        env:\n");
        for e in &w.containers[0].env {
            match &e.value {
                EnvValue::Literal(v) => {
                    let _ = writeln!(out, "        - name: {}\n          value: \"{v}\"", e.name);
                }
                EnvValue::ConfigMapKey { name, key } => {
                    let _ = writeln!(
                        out,
                        "        - name: {}\n          valueFrom:\n            configMapKeyRef:\n              name: {name}\n              key: {key}",
                        e.name
                    );
                }
                EnvValue::Opaque => {}
            }
        }
        out.push_str("---\n");
    }
    out
}
