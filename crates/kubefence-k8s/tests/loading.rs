//! The loader: input forms, kinds, validation errors with their field
//! paths, and pods folded into their workloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubefence_core::WorkloadKind;
use kubefence_core::model::{EnvValue, ServicePortRef, TargetPort};
use kubefence_core::policy::{Peer, PortRef};
use kubefence_core::selector::Operator;
use kubefence_k8s::load::{
    Granularity, LoadOptions, Loaded, Source, join, load, load_str, part_of_str,
};

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
            "spec.podSelector.matchExpressions[0].values",
            "must be specified when `operator` is 'In'",
        ),
        (
            "podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
            "spec.podSelector.matchExpressions[0].values",
            "may not be specified when `operator` is 'Exists'",
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
    let loaded = join(
        vec![
            part_of_str(LIVE_DUMP, "pods.yaml", &opts),
            part_of_str(deployment, "deploy.yaml", &opts),
        ],
        &opts,
    );
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
fn hidden_entries_are_read_only_when_included() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n"
        )
    };
    std::fs::create_dir_all(dir.path().join(".k8s")).unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), pod("a")).unwrap();
    std::fs::write(dir.path().join(".k8s/b.yaml"), pod("b")).unwrap();
    std::fs::write(dir.path().join("sub/.c.yaml"), pod("c")).unwrap();
    let walk = |include_hidden: bool| {
        let opts = LoadOptions {
            include_hidden,
            ..LoadOptions::default()
        };
        let loaded = load(&[Source::Path(dir.path().to_path_buf())], &opts);
        assert!(!loaded.has_errors(), "{:?}", loaded.errors);
        ids(&loaded)
    };
    assert_eq!(walk(false), ["default/Pod/a"]);
    assert_eq!(
        walk(true),
        ["default/Pod/a", "default/Pod/b", "default/Pod/c"]
    );
}

#[test]
fn loading_twice_gives_the_same_cluster() {
    let text = format!("{DEPLOYMENT}---\n{LIVE_DUMP}");
    assert_eq!(load_yaml(&text).cluster, load_yaml(&text).cluster);
}

// === strict reading (issue 9) ===

/// One object of `kind` with `spec` (indented YAML under `spec:`), or the
/// whole body when `spec` starts with `metadata:`.
fn object_yaml(api_version: &str, kind: &str, body: &str) -> String {
    format!("apiVersion: {api_version}\nkind: {kind}\n{body}")
}

const POD_TEMPLATE: &str =
    "metadata: {labels: {app: w}}\n    spec: {containers: [{name: c, image: i}]}";

#[test]
fn unknown_fields_are_errors_naming_the_path_and_a_close_key() {
    // (apiVersion, kind, body, the field reported, a suggestion when one is close)
    let np = |spec: &str| {
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            format!("metadata: {{name: p, namespace: shop}}\nspec:\n{spec}"),
        )
    };
    let mut cases: Vec<(&str, &str, String, &str, Option<&str>)> = Vec::new();
    for (spec, field, hint) in [
        (
            "  podSelector: {matchLabels: {app: db}}\n  ingress: [{form: [{podSelector: {}}]}]",
            "spec.ingress[0].form",
            Some("from"),
        ),
        (
            "  podSelector: {matchLabels: {app: db}}\n  ingress: [{form: null}]",
            "spec.ingress[0].form",
            Some("from"),
        ),
        (
            "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {name: prod}}]}]",
            "spec.ingress[0].from[0].namespaceSelector.name",
            None,
        ),
        ("  podSelector: {app: web}", "spec.podSelector.app", None),
        (
            "  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, exept: [10.1.0.0/16]}}]}]",
            "spec.egress[0].to[0].ipBlock.exept",
            Some("except"),
        ),
        (
            "  podSelector: {}\n  ingress: [{ports: [{port: 80, protcol: UDP}]}]",
            "spec.ingress[0].ports[0].protcol",
            Some("protocol"),
        ),
        (
            "  podSelector: {}\n  polcyTypes: [Ingress]",
            "spec.polcyTypes",
            Some("policyTypes"),
        ),
    ] {
        let (a, k, b) = np(spec);
        cases.push((a, k, b, field, hint));
    }
    cases.extend([
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: p, namespace: shop, lables: {a: b}}\nspec: {podSelector: {}}".to_string(),
            "metadata.lables",
            Some("labels"),
        ),
        (
            "v1",
            "Namespace",
            "metadata: {name: shop}\nspce: {}".to_string(),
            "spce",
            Some("spec"),
        ),
        (
            "v1",
            "Pod",
            "metadata: {name: p}\nspec: {containers: [{name: c, image: i, prots: [{containerPort: 80}]}]}".to_string(),
            "spec.containers[0].prots",
            Some("ports"),
        ),
        (
            "apps/v1",
            "Deployment",
            format!("metadata: {{name: d}}\nspec:\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n    {POD_TEMPLATE}\n  replica: 2"),
            "spec.replica",
            Some("replicas"),
        ),
        (
            "apps/v1",
            "StatefulSet",
            "metadata: {name: d}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}, lables: {x: y}}\n    spec: {containers: [{name: c, image: i}]}".to_string(),
            "spec.template.metadata.lables",
            Some("labels"),
        ),
        (
            "apps/v1",
            "DaemonSet",
            "metadata: {name: d}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec: {containers: [{name: c, image: i, env: [{name: A, vaule: b}]}]}".to_string(),
            "spec.template.spec.containers[0].env[0].vaule",
            Some("value"),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            format!("metadata: {{name: d}}\nspec:\n  selector: {{matchLabels: {{app: w}}, matchExpresions: []}}\n  template:\n    {POD_TEMPLATE}"),
            "spec.selector.matchExpresions",
            Some("matchExpressions"),
        ),
        (
            "batch/v1",
            "Job",
            "metadata: {name: j}\nspec:\n  template:\n    metadata: {labels: {app: w}}\n    spec: {restartPolicy: Never, initContainers: [{name: c, image: i, arg: [x]}], containers: [{name: c, image: i}]}".to_string(),
            "spec.template.spec.initContainers[0].arg",
            Some("args"),
        ),
        (
            "batch/v1",
            "CronJob",
            "metadata: {name: j}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {app: w}}\n        spec: {restartPolicy: Never, containers: [{name: c, image: i, envFrom: [{configMapRef: {name: x}, prefx: A}]}]}".to_string(),
            "spec.jobTemplate.spec.template.spec.containers[0].envFrom[0].prefx",
            Some("prefix"),
        ),
        (
            "v1",
            "Service",
            "metadata: {name: s}\nspec: {selectr: {app: w}, ports: [{port: 80}]}".to_string(),
            "spec.selectr",
            Some("selector"),
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            "metadata: {name: i}\nspec: {rules: [{http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {numbr: 80}}}}]}}]}".to_string(),
            "spec.rules[0].http.paths[0].backend.service.port.numbr",
            Some("number"),
        ),
        (
            "v1",
            "ConfigMap",
            "metadata: {name: c}\ndatas: {a: b}".to_string(),
            "datas",
            Some("data"),
        ),
    ]);
    for (api_version, kind, body, field, hint) in cases {
        let text = object_yaml(api_version, kind, &body);
        let loaded = load_yaml(&text);
        assert!(
            loaded.cluster.policies.is_empty()
                && loaded.cluster.workloads.is_empty()
                && loaded.cluster.services.is_empty()
                && loaded.cluster.ingresses.is_empty()
                && loaded.cluster.config_maps.is_empty()
                && (kind != "Namespace" || loaded.cluster.namespaces.is_empty()),
            "{kind} with {field} must be left out: {:?}",
            loaded.cluster
        );
        // The typo comes first; what it leaves missing may follow (an
        // Ingress port without `number`).
        let e = loaded
            .errors
            .first()
            .unwrap_or_else(|| panic!("{text}: no error"));
        assert_eq!(
            e.location.field.as_deref(),
            Some(field),
            "{text}\n{:?}",
            loaded.errors
        );
        assert_eq!(e.location.document, Some(1));
        assert!(e.message.starts_with("unknown field"), "{e}");
        assert!(loaded.errors.len() <= 2, "{:?}", loaded.errors);
        match hint {
            Some(key) => assert!(e.message.contains(&format!("did you mean `{key}`?")), "{e}"),
            None => assert!(!e.message.contains("did you mean"), "{e}"),
        }
    }
}

#[test]
fn a_typo_in_one_document_leaves_the_others_analysed() {
    let text = format!(
        "{}\n---\n{}",
        object_yaml(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: bad}\nspec: {podSelector: {}, ingress: [{form: []}]}"
        ),
        object_yaml(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: good}\nspec: {podSelector: {}}"
        )
    );
    let loaded = load_yaml(&text);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert_eq!(loaded.errors[0].location.document, Some(1));
    let names: Vec<&str> = loaded
        .cluster
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["good"]);
}

/// Every file of the vendored third-party material, as (path, text).
fn third_party_files() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/third-party");
    let mut out = Vec::new();
    walk(&root, &mut out);
    assert!(
        out.len() > 50,
        "the third-party material is there: {}",
        out.len()
    );
    out
}

#[test]
fn real_manifests_have_no_false_unknown_field_or_name_errors() {
    let mut objects = 0;
    let mut false_errors = Vec::new();
    for (path, text) in third_party_files() {
        let loaded = load_str(&text, &path, &LoadOptions::default());
        objects += loaded.cluster.workloads.len()
            + loaded.cluster.policies.len()
            + loaded.cluster.services.len();
        false_errors.extend(
            loaded
                .errors
                .iter()
                .filter(|e| {
                    e.message.starts_with("unknown field")
                        || e.location
                            .field
                            .as_deref()
                            .is_some_and(|f| f.starts_with("metadata."))
                })
                .map(ToString::to_string),
        );
    }
    // np-guard's named-port case has a real typo that the API server
    // rejects too (and np-guard's expected output leaves the Deployment out).
    let real_typo = "netpol_named_port_test/pods.yaml: document 3 (Deployment helloworld/pod-a): spec.template.spec.containers[0].ports[1].containerport: unknown field `containerport`: did you mean `containerPort`?";
    false_errors.retain(|e| !e.ends_with(real_typo));
    assert!(
        false_errors.is_empty(),
        "real manifests read as bad:\n{}",
        false_errors.join("\n")
    );
    assert!(objects > 200, "{objects}");
}

#[test]
fn every_bad_field_is_its_own_error() {
    let text = object_yaml(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "metadata: {name: p, labels: {ok: 'not ok'}}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{form: []}, {from: [{podSelector: {}, nameSpaceSelector: {}}]}]\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}, {ports: [{port: 0}]}]",
    );
    let loaded = load_yaml(&text);
    let mut fields: Vec<&str> = loaded
        .errors
        .iter()
        .map(|e| e.location.field.as_deref().unwrap_or(""))
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "metadata.labels[ok]",
            "spec.egress[0].to[0].ipBlock.cidr",
            "spec.egress[1].ports[0].port",
            "spec.ingress[0].form",
            "spec.ingress[1].from[0].nameSpaceSelector",
        ],
        "{:?}",
        loaded.errors
    );
    assert!(loaded.cluster.policies.is_empty());
}

#[test]
fn list_items_and_array_elements_are_named_by_index() {
    let good = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good"}}"#;
    let bad =
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}, "dta": {}}"#;
    let list =
        format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{good}, {good}, {bad}]}}"#);
    let loaded = load_yaml(&list);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let e = loaded.errors[0].to_string();
    assert!(e.contains("items[2]"), "{e}");
    assert!(
        e.contains("(ConfigMap default/bad)") && e.contains("dta"),
        "{e}"
    );

    let typed = format!("apiVersion: v1\nkind: ConfigMapList\nitems:\n- {good}\n- {bad}\n");
    let loaded = load_yaml(
        &format!("{good}\n---\n{typed}").replace(&format!("{good}\n---\n"), "a: 1\n---\n"),
    );
    let e = loaded
        .errors
        .iter()
        .map(ToString::to_string)
        .find(|e| e.contains("dta"))
        .unwrap();
    assert!(e.contains("document 2") && e.contains("items[1]"), "{e}");

    let bare = format!("[{good}, {bad}]");
    let loaded = load_yaml(&bare);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let e = loaded.errors[0].to_string();
    assert!(e.contains("[1]") && !e.contains("[0]"), "{e}");
}

#[test]
fn library_messages_are_put_in_plain_words() {
    let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: '1'\n  a: '2'\n";
    let loaded = load_yaml(dup);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let e = loaded.errors[0].to_string();
    assert!(e.contains("duplicate key `a`"), "{e}");
    assert!(
        !e.contains("DuplicateKeyPolicy") && !e.contains("Options"),
        "{e}"
    );
    assert!(loaded.cluster.config_maps.is_empty());

    // More nodes than the parser's budget allows.
    let huge = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\nx: [{}]\n",
        "0,".repeat(300_000)
    );
    let loaded = load_yaml(&huge);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let e = loaded.errors[0].to_string();
    assert!(e.contains("document too large"), "{e}");
    assert!(!e.contains("budget") && !e.contains("Nodes {"), "{e}");
}

#[test]
fn names_labels_and_selectors_are_validated_as_the_api_server_does() {
    // (kind, body, the field reported)
    let cases = [
        (
            "v1",
            "Service",
            "metadata: {name: 1db}\nspec: {ports: [{port: 80}]}",
            "metadata.name",
        ),
        ("v1", "Namespace", "metadata: {name: Prod}", "metadata.name"),
        (
            "v1",
            "ConfigMap",
            "metadata: {name: c, namespace: ../../x}",
            "metadata.namespace",
        ),
        (
            "v1",
            "ConfigMap",
            "metadata: {name: /etc/passwd}",
            "metadata.name",
        ),
        (
            "v1",
            "ConfigMap",
            "metadata: {name: c, labels: {'bad key': v}}",
            "metadata.labels[bad key]",
        ),
        (
            "v1",
            "Pod",
            "metadata: {name: p, labels: {app: 'has space'}}\nspec: {containers: [{name: c, image: i}]}",
            "metadata.labels[app]",
        ),
        (
            "apps/v1",
            "Deployment",
            "metadata: {name: d}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w, 'example.com/': x}}\n    spec: {containers: [{name: c, image: i}]}",
            "spec.template.metadata.labels[example.com/]",
        ),
        (
            "v1",
            "Service",
            "metadata: {name: s}\nspec: {selector: {app: 'a/b'}, ports: [{port: 80}]}",
            "spec.selector[app]",
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: p}\nspec: {podSelector: {matchLabels: {app: -web}}}",
            "spec.podSelector.matchLabels[app]",
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: p}\nspec: {podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}}",
            "spec.podSelector.matchExpressions[0].values",
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: p}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: 'a/b/c', operator: In, values: [x]}]}}]}]}",
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key",
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "metadata: {name: p}\nspec: {podSelector: {}, egress: [{to: [{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: ['x y']}]}}]}]}",
            "spec.egress[0].to[0].podSelector.matchExpressions[0].values[0]",
        ),
        (
            "batch/v1",
            "CronJob",
            &format!(
                "metadata: {{name: {}}}\nspec:\n  schedule: '* * * * *'\n  jobTemplate: {{spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: i}}]}}}}}}}}",
                "c".repeat(53)
            ),
            "metadata.name",
        ),
    ];
    for (api_version, kind, body, field) in cases {
        let loaded = load_yaml(&object_yaml(api_version, kind, body));
        assert_eq!(loaded.errors.len(), 1, "{kind} {body}: {:?}", loaded.errors);
        let e = &loaded.errors[0];
        assert_eq!(e.location.field.as_deref(), Some(field), "{e}");
        assert!(
            loaded.cluster.workloads.is_empty()
                && loaded.cluster.services.is_empty()
                && loaded.cluster.policies.is_empty()
                && loaded.cluster.config_maps.is_empty()
                && !loaded.cluster.namespaces.contains_key("Prod"),
            "{kind} {body} must be left out"
        );
    }
    // Long but valid: a 253-character ConfigMap name and a prefixed key.
    let ok = format!(
        "metadata: {{name: {}, labels: {{example.com/Tier_1.a: 'A-b_c.9'}}}}",
        [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        ]
        .join(".")
    );
    let loaded = load_yaml(&object_yaml("v1", "ConfigMap", &ok));
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
}

const NP_ALLOW_ALL_TO_DB: &str = "metadata: {name: db, namespace: shop}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{}]}";
const NP_DENY_ALL_TO_DB: &str = "metadata: {name: db, namespace: shop}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: []}";

#[test]
fn duplicates_warn_naming_both_places_and_the_later_one_wins() {
    let first = object_yaml("networking.k8s.io/v1", "NetworkPolicy", NP_ALLOW_ALL_TO_DB);
    let second = object_yaml("networking.k8s.io/v1", "NetworkPolicy", NP_DENY_ALL_TO_DB);
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: c, image: i}]}";
    let loaded = load_yaml(&format!("{pods}\n---\n{first}\n---\n{second}"));
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    assert_eq!(
        loaded.cluster.policies.len(),
        1,
        "{:?}",
        loaded.cluster.policies
    );
    assert!(
        loaded.cluster.policies[0].ingress.is_empty(),
        "the later policy (ingress: []) wins"
    );
    let dups: Vec<String> = loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| w.contains("duplicate"))
        .collect();
    assert_eq!(dups.len(), 1, "{:?}", loaded.warnings);
    assert!(
        dups[0].contains("document 3")
            && dups[0].contains("document 4")
            && dups[0].contains("NetworkPolicy shop/db"),
        "{}",
        dups[0]
    );
    // The engine sees only the later policy: web may not reach db.
    let opts = kubefence_core::engine::AnalyzeOptions::default();
    let e = kubefence_core::engine::explain(
        &loaded.cluster,
        "shop/web",
        "shop/db",
        Some((kubefence_core::Protocol::Tcp, 80)),
        &opts,
    )
    .unwrap();
    assert!(!e.is_allowed(), "both policies were enforced: {e:?}");

    // Across files (join): the later part wins too.
    let a = part_of_str(
        &format!("{pods}\n---\n{second}"),
        "a.yaml",
        &LoadOptions::default(),
    );
    let b = part_of_str(&first, "b.yaml", &LoadOptions::default());
    let merged = join(vec![a, b], &LoadOptions::default());
    assert_eq!(merged.cluster.policies.len(), 1);
    assert_eq!(
        merged.cluster.policies[0].ingress.len(),
        1,
        "b.yaml came later"
    );
    let w = merged
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("duplicate"))
        .unwrap();
    assert!(w.contains("a.yaml") && w.contains("b.yaml"), "{w}");
    let e = kubefence_core::engine::explain(
        &merged.cluster,
        "shop/web",
        "shop/db",
        Some((kubefence_core::Protocol::Tcp, 80)),
        &opts,
    )
    .unwrap();
    assert!(e.is_allowed());

    // Other kinds: a Deployment given twice is one workload, the later one.
    let d = |port: u16| {
        object_yaml(
            "apps/v1",
            "Deployment",
            &format!(
                "metadata: {{name: d}}\nspec:\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n    metadata: {{labels: {{app: w}}}}\n    spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: {port}}}]}}]}}"
            ),
        )
    };
    let loaded = load_yaml(&format!("{}\n---\n{}", d(80), d(81)));
    assert_eq!(ids(&loaded), ["default/Deployment/d"]);
    assert_eq!(loaded.cluster.workloads[0].containers[0].ports[0].port, 81);
    assert_eq!(
        loaded
            .warnings
            .iter()
            .filter(|w| w.to_string().contains("duplicate"))
            .count(),
        1
    );
}

#[test]
fn namespaces_used_but_not_given_are_one_warning_with_the_selectors_they_affect() {
    let objects = r#"apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: prom, namespace: monitoring, labels: {app: prom}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-monitoring, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  - from: [{podSelector: {}, namespaceSelector: {}}]
  - from: [{namespaceSelector: {matchLabels: {team: ops}}}]
  egress:
  - to: [{namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}}]
"#;
    let loaded = load_yaml(objects);
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w.contains("monitoring") && w.contains("shop"), "{w}");
    assert!(
        w.contains("shop/from-monitoring spec.ingress[2].from[0].namespaceSelector")
            && w.contains("shop/from-monitoring spec.egress[0].to[0].namespaceSelector"),
        "{w}"
    );
    assert!(
        !w.contains("spec.ingress[0]") && !w.contains("spec.ingress[1]"),
        "selectors on the name label or on nothing are evaluated faithfully: {w}"
    );

    // Given the Namespaces, nothing to say.
    let given = format!(
        "{objects}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: monitoring, labels: {{team: ops}}}}\n"
    );
    let loaded = load_yaml(&given);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_workload_selector_must_select_its_own_template() {
    let deployment = |selector: &str, labels: &str| {
        object_yaml(
            "apps/v1",
            "Deployment",
            &format!(
                "metadata: {{name: d}}\nspec:\n  selector: {selector}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: c, image: i}}]}}"
            ),
        )
    };
    let loaded = load_yaml(&deployment("{matchLabels: {app: web}}", "{app: api}"));
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert_eq!(
        loaded.errors[0].location.field.as_deref(),
        Some("spec.template.metadata.labels")
    );
    assert!(loaded.errors[0].message.contains("does not match template"));
    assert!(loaded.cluster.workloads.is_empty());

    let loaded = load_yaml(&deployment("{}", "{app: api}"));
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert_eq!(
        loaded.errors[0].location.field.as_deref(),
        Some("spec.selector")
    );
    assert!(loaded.errors[0].message.contains("empty selector"));

    let loaded = load_yaml(&deployment(
        "{matchExpressions: [{key: app, operator: In, values: [api, web]}]}",
        "{app: api, extra: x}",
    ));
    assert!(!loaded.has_errors(), "{:?}", loaded.errors);
}

#[test]
fn an_unknown_field_of_a_live_object_hints_at_a_newer_server() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, resourceVersion: '42'}\nfutureField: 1\n";
    let loaded = load_yaml(text);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let e = loaded.errors[0].to_string();
    assert!(e.contains("unknown field `futureField`"), "{e}");
    assert!(e.contains("newer"), "{e}");
}

/// `diff --before-cluster`: files merged after a live cluster's objects
/// replace the cluster's object of the same kind, namespace and name (as
/// `kubectl apply` would), and keep the rest; the replacement is said.
#[test]
fn merged_later_parts_replace_objects_of_the_same_identity() {
    let cluster = part_of_str(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api, namespace: shop}\nspec: {podSelector: {}, ingress: [{}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: keep, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Egress]}\n",
        "cluster",
        &LoadOptions::default(),
    );
    let files = part_of_str(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api, namespace: shop}\nspec: {podSelector: {matchLabels: {app: api}}}\n",
        "new.yaml",
        &LoadOptions::default(),
    );
    let merged = join(vec![cluster, files], &LoadOptions::default());
    let mut names: Vec<_> = merged
        .cluster
        .policies
        .iter()
        .map(|p| p.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["api", "keep"]);
    let api = merged
        .cluster
        .policies
        .iter()
        .find(|p| p.name == "api")
        .unwrap();
    assert_eq!(
        api.pod_selector.to_string(),
        "app=api",
        "the file's object wins"
    );
    assert!(
        merged
            .warnings
            .iter()
            .any(|w| w.message.contains("the later one is used")),
        "{:?}",
        merged.warnings
    );
}

/// A key given twice in one JSON object is an error naming the key and
/// where it is, as in YAML: whichever value a reader kept (JSON parsers
/// keep the last), the file says two things. Checked for one object, a
/// `kind: List` (its items are read on every core, each from its text), a
/// typed list and a bare array, for a duplicate deep in a selector (where
/// keeping the last would silently select other pods) and at the top.
#[test]
fn a_duplicate_json_key_is_an_error_as_in_yaml() {
    let policy = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web", "app": "db"}},
                 "policyTypes": ["Ingress"]}}"#;
    let top = r#"{"apiVersion": "v1", "kind": "ConfigMap", "kind": "Secret",
        "metadata": {"name": "c", "namespace": "shop"}}"#;
    let good = r#"{"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ok", "namespace": "shop"}, "data": {"a": "1"}}"#;
    let texts = [
        (policy.to_string(), "spec.podSelector.matchLabels.app"),
        (top.to_string(), "kind"),
        (
            format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{good}, {policy}]}}"#),
            "spec.podSelector.matchLabels.app",
        ),
        (
            format!(
                r#"{{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": [{policy}]}}"#
            ),
            "spec.podSelector.matchLabels.app",
        ),
        (format!("[{good}, {top}]"), "kind"),
    ];
    for (text, at) in &texts {
        let loaded = load_str(text, "test.json", &LoadOptions::default());
        assert_eq!(loaded.errors.len(), 1, "{text}: {:?}", loaded.errors);
        let e = loaded.errors[0].to_string();
        assert!(e.contains("duplicate key") && e.contains(at), "{text}: {e}");
        assert!(loaded.cluster.policies.is_empty(), "{text}");
    }
    // Many items: the list is read on every core.
    let many: Vec<String> = (0..300)
        .map(|i| good.replace("\"ok\"", &format!("\"ok-{i}\"")))
        .chain([policy.to_string()])
        .collect();
    let text = format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [{}]}}"#,
        many.join(",")
    );
    let loaded = load_str(&text, "test.json", &LoadOptions::default());
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert!(
        loaded.errors[0].to_string().contains("items[300]"),
        "{}",
        loaded.errors[0]
    );
    assert_eq!(loaded.cluster.config_maps.len(), 300);
}
