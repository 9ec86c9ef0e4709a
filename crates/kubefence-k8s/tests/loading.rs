//! The loader: input forms, kinds, validation errors with their field
//! paths, and pods folded into their workloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubefence_core::WorkloadKind;
use kubefence_core::model::{EnvValue, ServicePortRef, TargetPort};
use kubefence_core::policy::{Peer, PortRef};
use kubefence_core::selector::Operator;
use kubefence_k8s::load::{Granularity, LoadOptions, Loaded, Source, load, load_str, merge};

fn load_yaml(text: &str) -> Loaded {
    load_str(text, "test.yaml", &LoadOptions::default())
}

fn ids(loaded: &Loaded) -> Vec<String> {
    loaded.cluster.workloads.iter().map(|w| w.id()).collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, uid: u-web}
spec:
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [front]}]
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      initContainers:
      - name: wait
        image: busybox
        args: ["--for", "db:5432"]
      containers:
      - name: main
        image: nginx
        ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
        env:
        - {name: DB, value: "postgres://db:5432/app"}
        - name: CART
          valueFrom: {configMapKeyRef: {name: addrs, key: cart}}
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: s, key: t}}
        envFrom: [{configMapRef: {name: common}, prefix: APP_}]
"#;

#[test]
fn a_deployment_keeps_everything_the_builders_read() {
    let loaded = load_yaml(DEPLOYMENT);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    let w = &loaded.cluster.workloads[0];
    assert_eq!(w.id(), "shop/Deployment/web");
    assert_eq!(w.uid.as_deref(), Some("u-web"));
    assert_eq!(w.selector.to_string(), "app=web,tier in (front)");
    assert_eq!(w.pod_labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(w.containers.len(), 2);
    assert!(w.containers[0].init && w.containers[0].args == ["--for", "db:5432"]);
    let main = &w.containers[1];
    assert_eq!(main.ports[0].name.as_deref(), Some("http"));
    assert_eq!(main.ports[1].protocol, kubefence_core::Protocol::Udp);
    assert_eq!(
        main.env[0].value,
        EnvValue::Literal("postgres://db:5432/app".into())
    );
    assert_eq!(
        main.env[1].value,
        EnvValue::ConfigMapKey {
            name: "addrs".into(),
            key: "cart".into()
        }
    );
    assert_eq!(main.env[2].value, EnvValue::Opaque);
    assert_eq!(main.env_from[0].prefix.as_deref(), Some("APP_"));
    assert_eq!(
        w.named_ports().get("http"),
        Some(&(kubefence_core::Protocol::Tcp, 8080))
    );
    // The namespace is used but not declared: it exists with its name label.
    assert_eq!(
        loaded.cluster.namespaces["shop"]
            .labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
}

#[test]
fn every_workload_kind_is_read_and_cronjobs_use_their_job_template() {
    let text = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec: {selector: {matchLabels: {app: db}}, serviceName: db, template: {metadata: {labels: {app: db}}, spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec: {selector: {matchLabels: {app: agent}}, template: {metadata: {labels: {app: agent}}, spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: lone}
spec: {selector: {matchLabels: {app: lone}}, template: {metadata: {labels: {app: lone}}, spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec: {template: {metadata: {labels: {job: migrate}}, spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {job: report}}
        spec: {restartPolicy: Never, containers: [{name: c, image: i, ports: [{containerPort: 9000, name: metrics}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, labels: {run: debug}}
spec: {containers: [{name: c, image: i}]}
"#;
    let loaded = load_yaml(text);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(
        ids(&loaded),
        [
            "default/CronJob/report",
            "default/DaemonSet/agent",
            "default/Job/migrate",
            "default/Pod/debug",
            "default/ReplicaSet/lone",
            "default/StatefulSet/db",
        ]
    );
    let cron = &loaded.cluster.workloads[0];
    assert_eq!(
        cron.pod_labels.get("job").map(String::as_str),
        Some("report")
    );
    assert_eq!(
        cron.selector.to_string(),
        "job=report",
        "a Job without selector selects by its template"
    );
    assert_eq!(
        cron.named_ports().get("metrics"),
        Some(&(kubefence_core::Protocol::Tcp, 9000))
    );
    let pod = &loaded.cluster.workloads[3];
    assert_eq!(
        pod.selector.to_string(),
        "run=debug",
        "a bare Pod is selected by its labels"
    );
}

#[test]
fn services_ingresses_and_configmaps() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: http, name: web}, {port: 53, protocol: UDP}, {port: 8443, targetPort: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: shop}
spec: {ports: [{port: 5432}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: front, namespace: shop}
spec:
  defaultBackend: {service: {name: web, port: {name: web}}}
  rules:
  - host: shop.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: addrs, namespace: shop}
data: {cart: "cart:7070"}
"#;
    let loaded = load_yaml(text);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    let c = &loaded.cluster;
    let web = c.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.ports[0].target_port, TargetPort::Name("http".into()));
    assert_eq!(
        web.ports[1].target_port,
        TargetPort::Number(53),
        "targetPort defaults to port"
    );
    assert_eq!(web.ports[2].target_port, TargetPort::Number(443));
    assert_eq!(
        web.service_type,
        kubefence_core::model::ServiceType::LoadBalancer
    );
    let external = c.services.iter().find(|s| s.name == "external").unwrap();
    assert_eq!(
        external.selector, None,
        "a Service without selector selects no pods"
    );
    assert_eq!(c.ingresses[0].backends.len(), 2);
    assert_eq!(
        c.ingresses[0].backends[0].port,
        ServicePortRef::Name("web".into())
    );
    assert_eq!(
        c.ingresses[0].backends[1].port,
        ServicePortRef::Number(8080)
    );
    assert_eq!(c.config_maps[0].data["cart"], "cart:7070");
}

#[test]
fn lists_typed_lists_json_and_unknown_kinds() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "x"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "a"}}
    ]}"#;
    let loaded = load_str(list, "list.json", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(loaded.cluster.namespaces["a"].labels["team"], "x");
    assert_eq!(
        loaded.cluster.namespaces["a"].labels["kubernetes.io/metadata.name"],
        "a"
    );
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].kind, "ServiceAccount");

    // kubectl omits kind and apiVersion in a typed list's items.
    let typed = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: p, namespace: a}\n  spec: {containers: [{name: c, image: i}]}\n";
    let loaded = load_yaml(typed);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(ids(&loaded), ["a/Pod/p"]);
}

#[test]
fn a_bad_document_is_reported_and_the_rest_loaded() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: c, image: i}]}\n---\nkind: [broken\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok2}\nspec: {containers: [{name: c, image: i}]}\n";
    let loaded = load_yaml(text);
    assert_eq!(ids(&loaded), ["default/Pod/ok", "default/Pod/ok2"]);
    assert_eq!(loaded.errors.len(), 1);
    let e = loaded.errors[0].to_string();
    assert!(e.starts_with("test.yaml: document 2"), "{e}");
    assert!(
        e.contains("invalid YAML (the document starts at line 6)"),
        "{e}"
    );
}

/// Each case: a policy spec fragment, the field the error must name, and
/// a piece of its message.
#[test]
fn invalid_policies_are_errors_naming_the_field() {
    let cases = [
        (
            "podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}",
            "spec.podSelector.matchExpressions[0].operator",
            "unknown operator",
        ),
        (
            "podSelector: {matchExpressions: [{key: a, operator: In}]}",
            "spec.podSelector.matchExpressions[0]",
            "needs at least one value",
        ),
        (
            "podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
            "spec.podSelector.matchExpressions[0]",
            "must not have values",
        ),
        (
            "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
            "spec.ingress[0].from[0]",
            "cannot be combined",
        ),
        (
            "podSelector: {}\ningress: [{from: [{}]}]",
            "spec.ingress[0].from[0]",
            "needs podSelector, namespaceSelector or ipBlock",
        ),
        (
            "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
            "spec.egress[0].to[0].ipBlock.cidr",
            "is not a CIDR",
        ),
        (
            "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
            "spec.egress[0].to[0].ipBlock.except[0]",
            "not strictly inside",
        ),
        (
            "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]",
            "spec.egress[0].to[0].ipBlock.except[0]",
            "not strictly inside",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{port: 70000}]}]",
            "spec.ingress[0].ports[0].port",
            "not in 1-65535",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{port: http, endPort: 90}]}]",
            "spec.ingress[0].ports[0].endPort",
            "named port",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{endPort: 90}]}]",
            "spec.ingress[0].ports[0].endPort",
            "needs a numeric port",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{port: 90, endPort: 80}]}]",
            "spec.ingress[0].ports[0].endPort",
            "below port 90",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{port: 80, protocol: ICMP}]}]",
            "spec.ingress[0].ports[0].protocol",
            "unknown protocol",
        ),
        (
            "podSelector: {}\ningress: [{ports: [{port: \"80\"}]}]",
            "spec.ingress[0].ports[0].port",
            "neither a port number nor a valid port name",
        ),
        (
            "podSelector: {}\npolicyTypes: [Ingress, Sideways]",
            "spec.policyTypes[1]",
            "unknown policy type",
        ),
        (
            "podSelector: {matchLabels: {app: [not, a, string]}}",
            "spec.podSelector.matchLabels.app",
            "invalid type",
        ),
    ];
    for (spec, field, message) in cases {
        let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{indented}"
        );
        let loaded = load_yaml(&text);
        assert!(
            loaded.cluster.policies.is_empty(),
            "{spec}: a bad policy must be left out whole"
        );
        assert_eq!(loaded.errors.len(), 1, "{spec}: {:?}", loaded.errors);
        let e = &loaded.errors[0];
        assert_eq!(e.location.field.as_deref(), Some(field), "{spec}: {e}");
        assert_eq!(e.location.object.as_deref(), Some("NetworkPolicy shop/p"));
        assert_eq!(e.location.document, Some(1));
        assert!(e.message.contains(message), "{spec}: {e}");
    }
}

#[test]
fn policy_fields_are_converted_with_upstream_defaults() {
    let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: null}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [red, blue]}]}
      podSelector: {matchLabels: {app: a}}
    - ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16]}
    ports: [{port: http}, {port: 8000, endPort: 8010, protocol: UDP}, {protocol: SCTP}]
  egress: []
"#;
    let loaded = load_yaml(text);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    let p = &loaded.cluster.policies[0];
    assert!(
        p.pod_selector.is_empty(),
        "matchLabels: null is the empty selector"
    );
    assert!(
        p.policy_types.ingress && !p.policy_types.egress,
        "egress: [] does not isolate egress"
    );
    let rule = &p.ingress[0];
    match &rule.peers[0] {
        Peer::Pods {
            namespace_selector: Some(ns),
            pod_selector: Some(pod),
        } => {
            assert_eq!(ns.match_expressions[0].operator, Operator::NotIn);
            assert_eq!(pod.to_string(), "app=a");
        }
        other => panic!("{other:?}"),
    }
    match &rule.peers[1] {
        Peer::IpBlock(b) => {
            assert_eq!(
                b.cidr.to_string(),
                "10.0.0.0/8",
                "the CIDR is truncated to its network"
            );
            assert_eq!(b.except[0].to_string(), "10.1.0.0/16");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rule.ports[0].port, Some(PortRef::Name("http".into())));
    assert_eq!(rule.ports[1].end_port, Some(8010));
    assert_eq!(rule.ports[2].port, None);
}

#[test]
fn objects_without_namespace_take_the_default() {
    let opts = LoadOptions {
        default_namespace: "team-a".into(),
        ..LoadOptions::default()
    };
    let loaded = load_str(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n",
        "x",
        &opts,
    );
    assert_eq!(ids(&loaded), ["team-a/Pod/p"]);
}

const LIVE_DUMP: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f8-abcde
  namespace: shop
  labels: {app: web, pod-template-hash: 7d9f8}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8, uid: rs, controller: true}]
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80, name: http}]}]}
status: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f8-fghij
  namespace: shop
  labels: {app: web, pod-template-hash: 7d9f8}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8, uid: rs, controller: true}]
spec: {containers: [{name: c, image: i}]}
status: {podIPs: [{ip: 10.0.0.6}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: agent-x1
  namespace: shop
  labels: {app: agent}
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: ds, controller: true}]
spec: {containers: [{name: c, image: i}]}
"#;

#[test]
fn pods_of_absent_workloads_fold_into_them() {
    let loaded = load_yaml(LIVE_DUMP);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(
        ids(&loaded),
        ["shop/DaemonSet/agent", "shop/Deployment/web"]
    );
    let web = &loaded.cluster.workloads[1];
    assert_eq!(
        web.pod_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.0.0.5", "10.0.0.6"]
    );
    assert_eq!(
        web.selector.to_string(),
        "app=web",
        "pod-template-hash is not part of the workload"
    );
    assert!(web.named_ports().contains_key("http"));
}

#[test]
fn pods_fold_into_workloads_given_in_other_files() {
    let opts = LoadOptions::default();
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: i}]}}}\n---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-7d9f8\n  namespace: shop\n  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d, controller: true}]\nspec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: i}]}}}\n";
    let loaded = merge(vec![
        load_str(LIVE_DUMP, "pods.yaml", &opts),
        load_str(deployment, "deploy.yaml", &opts),
    ]);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(
        ids(&loaded),
        ["shop/DaemonSet/agent", "shop/Deployment/web"],
        "the ReplicaSet is its Deployment's"
    );
    assert_eq!(loaded.cluster.workloads[1].pod_ips.len(), 2);
}

#[test]
fn by_pod_every_pod_is_an_endpoint() {
    let opts = LoadOptions {
        granularity: Granularity::Pod,
        ..LoadOptions::default()
    };
    let loaded = load_str(LIVE_DUMP, "pods.yaml", &opts);
    assert_eq!(
        ids(&loaded),
        [
            "shop/Pod/agent-x1",
            "shop/Pod/web-7d9f8-abcde",
            "shop/Pod/web-7d9f8-fghij"
        ]
    );
    assert!(
        loaded
            .cluster
            .workloads
            .iter()
            .all(|w| w.kind == WorkloadKind::Pod)
    );
}

#[test]
fn directories_are_read_recursively_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n"
        )
    };
    std::fs::write(dir.path().join("b.yaml"), pod("b")).unwrap();
    std::fs::write(dir.path().join("sub/a.yml"), pod("a")).unwrap();
    std::fs::write(dir.path().join("c.json"), r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let loaded = load(
        &[Source::Path(dir.path().to_path_buf())],
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(
        ids(&loaded),
        ["default/Pod/a", "default/Pod/b", "default/Pod/c"]
    );

    let missing = load(
        &[Source::Path(dir.path().join("nope.yaml"))],
        &LoadOptions::default(),
    );
    assert!(
        missing.errors[0]
            .to_string()
            .contains("nope.yaml: cannot read")
    );
}

#[test]
fn loading_twice_gives_the_same_cluster() {
    let text = format!("{DEPLOYMENT}---\n{LIVE_DUMP}");
    assert_eq!(load_yaml(&text).cluster, load_yaml(&text).cluster);
}
