//! The baseline builder: where references are found, what each policy
//! allows (checked with the semantics engine, not by reading the rules),
//! and what is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubefence_core::baseline::{BaselineConfig, Scope, build, service_names, service_selects};
use kubefence_core::engine::{AnalyzeOptions, explain};
use kubefence_core::model::{
    ConfigMap, Container, ContainerPort, EnvFromConfigMap, EnvValue, EnvVar, Ingress,
    IngressBackend, Namespace, Service, ServicePort, ServicePortRef, ServiceType, TargetPort,
    Workload, WorkloadKind,
};
use kubefence_core::selector::{LabelSelector, Labels};
use kubefence_core::{Cluster, Protocol};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn container(env: &[(&str, &str)], ports: &[(&str, u16)]) -> Container {
    Container {
        name: "main".into(),
        init: false,
        command: vec![],
        args: vec![],
        env: env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.to_string(),
                value: EnvValue::Literal(v.to_string()),
            })
            .collect(),
        env_from: vec![],
        ports: ports
            .iter()
            .map(|(n, p)| ContainerPort {
                name: Some(n.to_string()),
                port: *p,
                protocol: Protocol::Tcp,
            })
            .collect(),
    }
}

fn deployment(ns: &str, app: &str, c: Container) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: ns.into(),
        name: app.into(),
        uid: Some(format!("uid-{app}")),
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: LabelSelector::from_labels(labels(&[("app", app)])),
        pod_labels: labels(&[("app", app), ("version", "v1")]),
        containers: vec![c],
        pod_ips: vec![],
    }
}

fn service(ns: &str, name: &str, app: &str, port: u16, target: TargetPort) -> Service {
    Service {
        namespace: ns.into(),
        name: name.into(),
        selector: Some(labels(&[("app", app)])),
        service_type: ServiceType::ClusterIp,
        ports: vec![ServicePort {
            name: Some("main".into()),
            port,
            target_port: target,
            protocol: Protocol::Tcp,
        }],
        external_ips: vec![],
    }
}

/// shop: frontend → cart (Service cartservice:7070 → targetPort 7070),
/// cart → redis (Service redis-cart:6379 → named port "redis" = 6380);
/// batch talks to nobody; kube-system runs DNS.
fn shop() -> Cluster {
    let mut c = Cluster {
        workloads: vec![
            deployment(
                "shop",
                "frontend",
                container(
                    &[("CART_SERVICE_ADDR", "cartservice:7070")],
                    &[("http", 8080)],
                ),
            ),
            deployment(
                "shop",
                "cart",
                container(&[("REDIS_ADDR", "redis://redis-cart")], &[("grpc", 7070)]),
            ),
            deployment("shop", "redis", container(&[], &[("redis", 6380)])),
            deployment(
                "shop",
                "batch",
                container(&[("LOG_LEVEL", "info"), ("MODE", "cart")], &[]),
            ),
            Workload {
                kind: WorkloadKind::Deployment,
                namespace: "kube-system".into(),
                name: "coredns".into(),
                uid: None,
                labels: Labels::new(),
                annotations: Labels::new(),
                selector: LabelSelector::from_labels(labels(&[("k8s-app", "kube-dns")])),
                pod_labels: labels(&[("k8s-app", "kube-dns")]),
                containers: vec![container(&[], &[("dns", 53)])],
                pod_ips: vec![],
            },
        ],
        services: vec![
            service(
                "shop",
                "cartservice",
                "cart",
                7070,
                TargetPort::Number(7070),
            ),
            service(
                "shop",
                "redis-cart",
                "redis",
                6379,
                TargetPort::Name("redis".into()),
            ),
        ],
        ..Cluster::default()
    };
    for ns in ["shop", "kube-system"] {
        c.namespaces.insert(ns.into(), Namespace::implicit(ns));
    }
    c
}

/// The cluster with its baseline policies added.
fn enforced(c: &Cluster) -> Cluster {
    let b = build(c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let mut out = c.clone();
    out.policies
        .extend(b.policies.into_iter().map(|g| g.policy));
    out
}

fn allowed(c: &Cluster, from: &str, to: &str, protocol: Protocol, port: u16) -> bool {
    explain(
        c,
        from,
        to,
        Some((protocol, port)),
        &AnalyzeOptions::default(),
    )
    .unwrap()
    .is_allowed()
}

#[test]
fn references_are_allowed_at_both_ends_and_nothing_else() {
    let c = enforced(&shop());
    let tcp = Protocol::Tcp;
    assert!(allowed(&c, "shop/frontend", "shop/cart", tcp, 7070));
    assert!(
        !allowed(&c, "shop/frontend", "shop/cart", tcp, 7071),
        "only the target port"
    );
    assert!(
        !allowed(&c, "shop/cart", "shop/frontend", tcp, 8080),
        "references are one-way"
    );
    // The Service port is 6379; the named target port resolves to 6380.
    assert!(allowed(&c, "shop/cart", "shop/redis", tcp, 6380));
    assert!(!allowed(&c, "shop/cart", "shop/redis", tcp, 6379));
    assert!(
        !allowed(&c, "shop/frontend", "shop/redis", tcp, 6380),
        "no reference, no path"
    );
    for w in ["frontend", "cart", "redis", "batch"] {
        let from = format!("shop/{w}");
        assert!(
            allowed(&c, &from, "kube-system/coredns", Protocol::Udp, 53),
            "{w} DNS/UDP"
        );
        assert!(
            allowed(&c, &from, "kube-system/coredns", tcp, 53),
            "{w} DNS/TCP"
        );
        assert!(
            !allowed(&c, &from, "kube-system/coredns", tcp, 80),
            "{w}: DNS only"
        );
        assert!(
            !allowed(&c, &from, "203.0.113.10", tcp, 443),
            "{w}: no internet"
        );
        assert!(
            !allowed(&c, "203.0.113.10", &from, tcp, 8080),
            "{w}: nothing from outside"
        );
    }
    // `MODE=cart` in an ordinary variable is not a reference.
    assert!(!allowed(&c, "shop/batch", "shop/cart", tcp, 7070));
}

#[test]
fn the_report_says_where_each_reference_came_from() {
    let b = build(&shop(), &BaselineConfig::default(), &Scope::default()).unwrap();
    let refs: Vec<(&str, &str, &str, Vec<String>, &str)> = b
        .report
        .references
        .iter()
        .map(|r| {
            (
                r.from.as_str(),
                r.to.as_str(),
                r.service.as_str(),
                r.ports.clone(),
                r.via.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            (
                "shop/Deployment/cart",
                "shop/Deployment/redis",
                "shop/redis-cart",
                vec!["TCP/6380".to_string()],
                "env REDIS_ADDR"
            ),
            (
                "shop/Deployment/frontend",
                "shop/Deployment/cart",
                "shop/cartservice",
                vec!["TCP/7070".to_string()],
                "env CART_SERVICE_ADDR"
            ),
        ]
    );
    assert!(
        b.report.unresolved.is_empty() && b.report.external.is_empty(),
        "{:?}",
        b.report
    );
    // kube-system is protected: no policy for coredns.
    assert!(b.policies.iter().all(|p| p.policy.namespace == "shop"));
    assert!(
        b.report
            .skipped
            .iter()
            .any(|s| s.workload == "kube-system/Deployment/coredns")
    );
}

/// Changes a workload (and may add ConfigMaps) to plant one reference.
type Mutation = dyn Fn(&mut Workload, &mut Vec<ConfigMap>);

#[test]
fn every_reference_source_is_read() {
    let mut c = shop();
    let frontend = &mut c.workloads[0];
    frontend.containers[0].env.clear();
    // Each source names cartservice once; each must count.
    let sources: Vec<(&str, Box<Mutation>)> = vec![
        (
            "literal env",
            Box::new(|w, _| {
                w.containers[0].env.push(EnvVar {
                    name: "CART_ADDR".into(),
                    value: EnvValue::Literal("cartservice:7070".into()),
                })
            }),
        ),
        (
            "configMapKeyRef",
            Box::new(|w, maps| {
                maps.push(ConfigMap {
                    namespace: "shop".into(),
                    name: "addrs".into(),
                    data: [("cart".to_string(), "cartservice:7070".to_string())].into(),
                });
                w.containers[0].env.push(EnvVar {
                    name: "CART".into(),
                    value: EnvValue::ConfigMapKey {
                        name: "addrs".into(),
                        key: "cart".into(),
                    },
                });
            }),
        ),
        (
            "envFrom with prefix",
            Box::new(|w, maps| {
                maps.push(ConfigMap {
                    namespace: "shop".into(),
                    name: "common".into(),
                    data: [("CART_HOST".to_string(), "cartservice".to_string())].into(),
                });
                w.containers[0].env_from.push(EnvFromConfigMap {
                    name: "common".into(),
                    prefix: Some("APP_".into()),
                });
            }),
        ),
        (
            "args",
            Box::new(|w, _| {
                w.containers[0].args = vec!["--cart".into(), "cartservice:7070".into()]
            }),
        ),
        (
            "command flag",
            Box::new(|w, _| {
                w.containers[0].command = vec!["/app".into(), "--cart-addr=cartservice".into()]
            }),
        ),
        (
            "init container",
            Box::new(|w, _| {
                let mut init = container(&[], &[]);
                init.init = true;
                init.args = vec!["wait-for".into(), "cartservice:7070".into()];
                w.containers.push(init);
            }),
        ),
        (
            "HOST + PORT pair",
            Box::new(|w, _| {
                w.containers[0].env.push(EnvVar {
                    name: "CART_DB_HOST".into(),
                    value: EnvValue::Literal("cartservice".into()),
                });
                w.containers[0].env.push(EnvVar {
                    name: "CART_DB_PORT".into(),
                    value: EnvValue::Literal("7070".into()),
                });
            }),
        ),
        (
            "URL with user info, path and query",
            Box::new(|w, _| {
                w.containers[0].env.push(EnvVar {
                    name: "X".into(),
                    value: EnvValue::Literal(
                        "grpc://user:pw@cartservice.shop.svc.cluster.local:7070/v1?retry=3".into(),
                    ),
                })
            }),
        ),
        (
            "svc.ns",
            Box::new(|w, _| {
                w.containers[0].env.push(EnvVar {
                    name: "CART_URL".into(),
                    value: EnvValue::Literal("http://cartservice.shop:7070".into()),
                })
            }),
        ),
        (
            "svc.ns.svc in a list",
            Box::new(|w, _| {
                w.containers[0].env.push(EnvVar {
                    name: "PEERS".into(),
                    value: EnvValue::Literal("a.example.com:1, cartservice.shop.svc:7070".into()),
                })
            }),
        ),
    ];
    for (name, apply) in sources {
        let mut c = c.clone();
        let mut maps = Vec::new();
        apply(&mut c.workloads[0], &mut maps);
        c.config_maps = maps;
        let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
        let found: Vec<_> = b
            .report
            .references
            .iter()
            .filter(|r| r.from == "shop/Deployment/frontend")
            .collect();
        assert_eq!(found.len(), 1, "{name}: {:?}", b.report);
        assert_eq!(found[0].to, "shop/Deployment/cart", "{name}");
        assert_eq!(found[0].ports, ["TCP/7070"], "{name}");
        // The controller's index (the Services a workload could name) sees it.
        let frontend = c.workloads.iter().find(|w| w.name == "frontend").unwrap();
        assert!(
            service_names(&c, frontend).contains(&("shop".to_string(), "cartservice".to_string())),
            "{name}"
        );
        let e = enforced(&c);
        assert!(
            allowed(&e, "shop/frontend", "shop/cart", Protocol::Tcp, 7070),
            "{name}"
        );
    }
}

#[test]
fn unresolved_and_external_hosts_are_reported_not_allowed() {
    let mut c = shop();
    c.workloads[0].containers[0].env.extend([
        EnvVar {
            name: "SHOPPING_ASSISTANT_SERVICE_ADDR".into(),
            value: EnvValue::Literal("shoppingassistantservice:80".into()),
        },
        EnvVar {
            name: "PAYMENTS_URL".into(),
            value: EnvValue::Literal("https://api.stripe.com/v1".into()),
        },
        EnvVar {
            name: "TRACING".into(),
            value: EnvValue::Literal("zipkin.jaeger.svc.cluster.local".into()),
        },
        EnvVar {
            name: "CART_SERVICE_ALT".into(),
            value: EnvValue::Literal("cartservice:9999".into()),
        },
        EnvVar {
            name: "CONFIG_FILE".into(),
            value: EnvValue::Literal("settings.yaml".into()),
        },
        EnvVar {
            name: "SELF".into(),
            value: EnvValue::Literal("http://localhost:8080".into()),
        },
    ]);
    let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let unresolved: Vec<(&str, &str)> = b
        .report
        .unresolved
        .iter()
        .map(|u| (u.value.as_str(), u.reason.as_str()))
        .collect();
    assert!(
        unresolved.contains(&(
            "shoppingassistantservice:80",
            "no Service shop/shoppingassistantservice"
        )),
        "{unresolved:?}"
    );
    assert!(
        unresolved.contains(&(
            "zipkin.jaeger.svc.cluster.local",
            "no Service jaeger/zipkin"
        )),
        "{unresolved:?}"
    );
    assert!(
        unresolved
            .iter()
            .any(|(v, r)| *v == "cartservice:9999" && r.contains("has no port 9999")),
        "{unresolved:?}"
    );
    assert_eq!(unresolved.len(), 3, "{unresolved:?}");
    let external: Vec<(&str, Option<u16>)> = b
        .report
        .external
        .iter()
        .map(|e| (e.host.as_str(), e.port))
        .collect();
    assert_eq!(
        external,
        [("api.stripe.com", None)],
        "settings.yaml is a file, localhost is the pod itself"
    );
    let e = enforced(&c);
    assert!(!allowed(
        &e,
        "shop/frontend",
        "shop/cart",
        Protocol::Tcp,
        9999
    ));
}

#[test]
fn cross_namespace_references_name_the_namespace() {
    let mut c = shop();
    c.namespaces
        .insert("data".into(), Namespace::implicit("data"));
    c.namespaces
        .insert("other".into(), Namespace::implicit("other"));
    c.workloads
        .push(deployment("data", "pg", container(&[], &[("pg", 5432)])));
    c.workloads
        .push(deployment("other", "cart", container(&[], &[])));
    c.services.push(service(
        "data",
        "postgres",
        "pg",
        5432,
        TargetPort::Number(5432),
    ));
    c.workloads[1].containers[0].env.push(EnvVar {
        name: "DB_HOST".into(),
        value: EnvValue::Literal("postgres.data".into()),
    });
    let e = enforced(&c);
    assert!(allowed(&e, "shop/cart", "data/pg", Protocol::Tcp, 5432));
    // Same labels in another namespace: not allowed, the peer names `shop`.
    assert!(!allowed(&e, "other/cart", "data/pg", Protocol::Tcp, 5432));
}

#[test]
fn ingress_routed_and_exposed_workloads_accept_their_sources_only_on_routed_ports() {
    let mut c = shop();
    c.ingresses.push(Ingress {
        namespace: "shop".into(),
        name: "front".into(),
        class: None,
        backends: vec![IngressBackend {
            service: "frontend".into(),
            port: ServicePortRef::Name("main".into()),
        }],
    });
    c.services.push(service(
        "shop",
        "frontend",
        "frontend",
        80,
        TargetPort::Name("http".into()),
    ));
    let mut lb = service(
        "shop",
        "redis-public",
        "redis",
        6379,
        TargetPort::Number(6380),
    );
    lb.service_type = ServiceType::LoadBalancer;
    c.services.push(lb);
    c.namespaces
        .insert("ingress-nginx".into(), Namespace::implicit("ingress-nginx"));
    let mut controller = deployment("ingress-nginx", "controller", container(&[], &[]));
    controller
        .pod_labels
        .insert("app.kubernetes.io/name".into(), "ingress-nginx".into());
    c.workloads.push(controller);
    let e = enforced(&c);
    assert!(allowed(
        &e,
        "ingress-nginx/controller",
        "shop/frontend",
        Protocol::Tcp,
        8080
    ));
    assert!(
        !allowed(
            &e,
            "ingress-nginx/controller",
            "shop/frontend",
            Protocol::Tcp,
            80
        ),
        "the target port, not the Service port"
    );
    assert!(
        !allowed(
            &e,
            "ingress-nginx/controller",
            "shop/cart",
            Protocol::Tcp,
            7070
        ),
        "cart is not routed"
    );
    assert!(
        !allowed(&e, "198.51.100.4", "shop/frontend", Protocol::Tcp, 8080),
        "an Ingress is not a LoadBalancer"
    );
    assert!(allowed(
        &e,
        "198.51.100.4",
        "shop/redis",
        Protocol::Tcp,
        6380
    ));
    assert!(!allowed(
        &e,
        "198.51.100.4",
        "shop/redis",
        Protocol::Tcp,
        22
    ));
}

#[test]
fn opted_out_empty_selector_and_protected_workloads_get_no_policy() {
    let mut c = shop();
    c.workloads[3]
        .annotations
        .insert("kubefence.dev/baseline".into(), "disabled".into());
    c.workloads[2].selector = LabelSelector::everything();
    let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let names: Vec<&str> = b.policies.iter().map(|p| p.policy.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kf-baseline-deployment-cart",
            "kf-baseline-deployment-frontend"
        ]
    );
    assert!(
        b.report
            .errors
            .iter()
            .any(|e| e.workload == "shop/Deployment/redis"
                && e.message.contains("selector is empty"))
    );
    assert!(
        b.report
            .skipped
            .iter()
            .any(|s| s.workload == "shop/Deployment/batch" && s.message.contains("opted out"))
    );
    // cart references redis, whose selector is empty: the rule is refused,
    // never widened to the whole namespace.
    assert!(
        b.report
            .errors
            .iter()
            .any(|e| e.workload == "shop/Deployment/cart"
                && e.message.contains("cannot allow shop/Deployment/redis"))
    );
    for p in &b.policies {
        assert!(!p.policy.pod_selector.is_empty());
        for rule in p.policy.ingress.iter().chain(&p.policy.egress) {
            assert!(
                !rule.peers.is_empty(),
                "{}: a rule without peers allows everyone",
                p.policy.name
            );
        }
    }
    // Naming kube-system explicitly includes it.
    let scope = Scope {
        namespaces: Some(["kube-system".to_string()].into()),
    };
    let b = build(&c, &BaselineConfig::default(), &scope).unwrap();
    assert_eq!(b.policies.len(), 1);
    assert_eq!(b.policies[0].policy.name, "kf-baseline-deployment-coredns");
}

#[test]
fn policies_carry_ownership_and_explain_every_rule() {
    let b = build(&shop(), &BaselineConfig::default(), &Scope::default()).unwrap();
    let cart = b
        .policies
        .iter()
        .find(|p| p.workload == "shop/Deployment/cart")
        .unwrap();
    assert_eq!(cart.labels["app.kubernetes.io/managed-by"], "kubefence");
    assert_eq!(cart.labels["kubefence.dev/source"], "baseline");
    assert_eq!(cart.owner.uid.as_deref(), Some("uid-cart"));
    let note = &cart.annotations["kubefence.dev/rules"];
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(
        lines.len(),
        cart.policy.ingress.len() + cart.policy.egress.len(),
        "{note}"
    );
    assert!(
        note.contains("env CART_SERVICE_ADDR=cartservice:7070"),
        "{note}"
    );
    assert!(note.contains("env REDIS_ADDR=redis://redis-cart"), "{note}");
}

#[test]
fn building_twice_gives_identical_output_whatever_the_input_order() {
    let c = shop();
    let a = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let mut reversed = c.clone();
    reversed.workloads.reverse();
    reversed.services.reverse();
    let b = build(&reversed, &BaselineConfig::default(), &Scope::default()).unwrap();
    assert_eq!(a, b);
}

/// shop() plus `db` (Service `db`: 5432 and 5440) and a two-member Mongo
/// replica set (Services `mongo-a` and `mongo-b`, 27017), for the
/// reference forms of the docs.
fn shop_with_databases() -> Cluster {
    let mut c = shop();
    c.workloads.push(deployment(
        "shop",
        "db",
        container(&[], &[("pg", 5432), ("admin", 5440)]),
    ));
    let mut db = service("shop", "db", "db", 5432, TargetPort::Number(5432));
    db.ports.push(ServicePort {
        name: Some("admin".into()),
        port: 5440,
        target_port: TargetPort::Number(5440),
        protocol: Protocol::Tcp,
    });
    c.services.push(db);
    for member in ["mongo-a", "mongo-b"] {
        c.workloads.push(deployment(
            "shop",
            member,
            container(&[], &[("mongo", 27017)]),
        ));
        c.services.push(service(
            "shop",
            member,
            member,
            27017,
            TargetPort::Number(27017),
        ));
    }
    c
}

/// (destination, ports) of each reference; (value, reason) of each
/// unresolved name.
type Findings = (Vec<(String, Vec<String>)>, Vec<(String, String)>);

/// What the frontend references, as (destination, ports), and the
/// unresolved values, once `plant` has changed its first container.
fn frontend_findings(plant: impl Fn(&mut Container)) -> Findings {
    let mut c = shop_with_databases();
    c.workloads[0].containers[0].env.clear();
    plant(&mut c.workloads[0].containers[0]);
    let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let refs = b
        .report
        .references
        .iter()
        .filter(|r| r.from == "shop/Deployment/frontend")
        .map(|r| (r.to.clone(), r.ports.clone()))
        .collect();
    let unresolved = b
        .report
        .unresolved
        .iter()
        .filter(|u| u.from == "shop/Deployment/frontend")
        .map(|u| (u.value.clone(), u.reason.clone()))
        .collect();
    (refs, unresolved)
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&mut Container) {
    let vars: Vec<EnvVar> = pairs
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.to_string(),
            value: EnvValue::Literal(v.to_string()),
        })
        .collect();
    move |c: &mut Container| c.env = vars.clone()
}

fn args(words: &[&str]) -> impl Fn(&mut Container) {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    move |c: &mut Container| c.args = words.clone()
}

fn to(id: &str, ports: &[&str]) -> (String, Vec<String>) {
    (
        format!("shop/Deployment/{id}"),
        ports.iter().map(|p| p.to_string()).collect(),
    )
}

#[test]
fn a_bare_argument_after_a_flag_that_names_a_service_is_a_reference() {
    // `--cart_svc cartservice`: the flag's name says nothing, but the value
    // is exactly the name of a Service of the namespace.
    let (refs, unresolved) = frontend_findings(args(&["--cart_svc", "cartservice"]));
    assert_eq!(refs, [to("cart", &["TCP/7070"])]);
    assert!(unresolved.is_empty(), "{unresolved:?}");
    // The same as `--flag=value`, and after a single-dash flag.
    for words in [&["--cart_svc=cartservice"][..], &["-c", "cartservice"]] {
        let (refs, _) = frontend_findings(args(words));
        assert_eq!(refs, [to("cart", &["TCP/7070"])], "{words:?}");
    }
    // A redis replica's arguments name its leader and port apart.
    let (refs, _) = frontend_findings(args(&["--replicaof", "db", "5432"]));
    assert_eq!(refs, [to("db", &["TCP/5432", "TCP/5440"])]);
}

#[test]
fn ordinary_words_in_arguments_are_not_references() {
    for words in [
        // Not after a flag.
        &["serve", "cartservice"][..],
        // After a flag not named like an address, and no Service has it.
        &["--mode", "fast"],
        &["--mode=fast"],
        // A flag followed by another flag.
        &["--verbose", "--cart_svc"],
        // The words of a script are no flag's value (Online Boutique's
        // loadgenerator init container: `sh -exc "... reach frontend ..."`).
        &["-exc", "echo could not reach cartservice - retrying"],
        // A flag for a name, not a host (as OTEL_SERVICE_NAME=... is not).
        &["--service-name", "cartservice"],
        &["--service.name=cartservice"],
    ] {
        let (refs, unresolved) = frontend_findings(args(words));
        assert!(refs.is_empty(), "{words:?}: {refs:?}");
        assert!(unresolved.is_empty(), "{words:?}: {unresolved:?}");
    }
    // A flag named like an address whose value names no Service: unresolved.
    let (refs, unresolved) = frontend_findings(args(&["--db-host", "nosuchdb"]));
    assert!(refs.is_empty());
    assert_eq!(
        unresolved,
        [(
            "nosuchdb".to_string(),
            "no Service shop/nosuchdb".to_string()
        )]
    );
}

#[test]
fn a_host_and_port_that_no_service_can_have_is_unresolved() {
    let (refs, unresolved) = frontend_findings(env(&[("CART_ADDR", "no_such_svc:4040")]));
    assert!(refs.is_empty());
    assert_eq!(unresolved.len(), 1, "{unresolved:?}");
    assert_eq!(unresolved[0].0, "no_such_svc:4040");
    assert!(unresolved[0].1.contains("no_such_svc"), "{unresolved:?}");
    // The same in an argument, and in a variable with an ordinary name.
    for plant in [
        Box::new(args(&["--cart", "no_such_svc:4040"])) as Box<dyn Fn(&mut Container)>,
        Box::new(env(&[("UPSTREAMS", "no_such_svc:4040")])),
    ] {
        let (refs, unresolved) = frontend_findings(plant);
        assert!(refs.is_empty());
        assert_eq!(unresolved.len(), 1, "{unresolved:?}");
    }
}

#[test]
fn jdbc_and_other_nested_scheme_urls_are_read() {
    for value in [
        "jdbc:postgresql://db:5432/app",
        "jdbc:postgresql://db.shop.svc.cluster.local:5432/app?ssl=true",
        "jdbc:mysql:loadbalance://db:5432/app",
        "jdbc:oracle:thin:@//db:5432/XE",
        "jdbc:oracle:thin:@db:5432:XE",
    ] {
        let (refs, unresolved) = frontend_findings(env(&[("SPRING_DATASOURCE_URL", value)]));
        assert_eq!(refs, [to("db", &["TCP/5432"])], "{value}");
        assert!(unresolved.is_empty(), "{value}: {unresolved:?}");
    }
}

#[test]
fn host_variables_without_a_port_reach_every_port_of_the_service() {
    for var in ["PGHOST", "DBHOST", "DB_HOST", "MYSQLHOST"] {
        let (refs, unresolved) = frontend_findings(env(&[(var, "db")]));
        assert_eq!(refs, [to("db", &["TCP/5432", "TCP/5440"])], "{var}");
        assert!(unresolved.is_empty(), "{var}: {unresolved:?}");
    }
    // libpq's PGHOST + PGPORT are joined like DB_HOST + DB_PORT.
    let (refs, _) = frontend_findings(env(&[("PGHOST", "db"), ("PGPORT", "5440")]));
    assert_eq!(refs, [to("db", &["TCP/5440"])]);
}

#[test]
fn words_that_are_not_addresses_are_not_references() {
    // The guestbook frontend's setting, and other variables that merely
    // mention an address word.
    for (var, value) in [
        ("GET_HOSTS_FROM", "dns"),
        ("HOSTS_FILE_MODE", "db"),
        ("URL_SCHEME", "https"),
        ("ADDRESS_FAMILY", "ipv4"),
    ] {
        let (refs, unresolved) = frontend_findings(env(&[(var, value)]));
        assert!(refs.is_empty(), "{var}={value}: {refs:?}");
        assert!(unresolved.is_empty(), "{var}={value}: {unresolved:?}");
    }
}

#[test]
fn every_host_of_a_url_is_a_reference_and_its_query_is_not() {
    let (refs, unresolved) = frontend_findings(env(&[(
        "MONGO_URL",
        "mongodb://u:p@mongo-a:27017,mongo-b:27017/x?replicaSet=rs0&w=majority",
    )]));
    assert_eq!(
        refs,
        [to("mongo-a", &["TCP/27017"]), to("mongo-b", &["TCP/27017"])]
    );
    assert!(unresolved.is_empty(), "{unresolved:?}");
    // Query values after commas are not hosts either.
    let (refs, unresolved) = frontend_findings(env(&[(
        "MONGO_URL",
        "mongodb://mongo-a:27017/x?readPreferenceTags=dc:ny,rack:1",
    )]));
    assert_eq!(refs, [to("mongo-a", &["TCP/27017"])]);
    assert!(unresolved.is_empty(), "{unresolved:?}");
    // A list of URLs is still a list.
    let (refs, _) = frontend_findings(env(&[(
        "BACKENDS",
        "http://mongo-a:27017/a,http://mongo-b:27017/b",
    )]));
    assert_eq!(
        refs,
        [to("mongo-a", &["TCP/27017"]), to("mongo-b", &["TCP/27017"])]
    );
}

/// The guestbook's redis: leader and follower both select `app: redis`;
/// their pods differ by `role`. The follower replicates from the leader
/// (`redis-server --replicaof redis-leader 6379`); nothing else refers to
/// either. `leader_kind` is ReplicaSet or Deployment.
fn guestbook(leader_kind: WorkloadKind) -> Cluster {
    let redis = |name: &str, role: &str| {
        let mut w = deployment("gb", name, container(&[], &[("redis", 6379)]));
        w.selector = LabelSelector::from_labels(labels(&[("app", "redis")]));
        w.pod_labels = labels(&[
            ("app", "redis"),
            ("role", role),
            ("tier", "backend"),
            ("pod-template-hash", "5d8f7c9b4"),
        ]);
        w
    };
    let mut leader = redis("redis-leader", "leader");
    leader.kind = leader_kind;
    let mut follower = redis("redis-follower", "follower");
    follower.containers[0].command = vec!["redis-server".into()];
    follower.containers[0].args = vec!["--replicaof".into(), "redis-leader".into(), "6379".into()];
    let frontend = deployment(
        "gb",
        "frontend",
        container(&[("GET_HOSTS_FROM", "dns")], &[("http", 80)]),
    );
    let redis_service = |name: &str, role: &str| Service {
        selector: Some(labels(&[
            ("app", "redis"),
            ("role", role),
            ("tier", "backend"),
        ])),
        ..service("gb", name, "redis", 6379, TargetPort::Number(6379))
    };
    let mut c = shop();
    c.workloads = vec![leader, follower, frontend, c.workloads[4].clone()];
    c.services = vec![
        redis_service("redis-leader", "leader"),
        redis_service("redis-follower", "follower"),
        service("gb", "frontend", "frontend", 80, TargetPort::Number(80)),
    ];
    c.namespaces.insert("gb".into(), Namespace::implicit("gb"));
    c
}

#[test]
fn workloads_whose_selectors_overlap_are_told_apart_by_their_pod_labels() {
    for leader_kind in [WorkloadKind::ReplicaSet, WorkloadKind::Deployment] {
        let c = guestbook(leader_kind);
        let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
        assert!(b.report.indistinguishable.is_empty(), "{:?}", b.report);
        assert!(b.report.unresolved.is_empty(), "{:?}", b.report.unresolved);
        let refs: Vec<(&str, &str, &[String])> = b
            .report
            .references
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.ports.as_slice()))
            .collect();
        let leader_id = format!("gb/{leader_kind}/redis-leader");
        assert_eq!(
            refs,
            [(
                "gb/Deployment/redis-follower",
                leader_id.as_str(),
                &["TCP/6379".to_string()][..]
            )]
        );
        // The policies select by role, not by the shared `app: redis`.
        let leader_policy = b.policies.iter().find(|p| p.workload == leader_id).unwrap();
        assert_eq!(
            leader_policy.policy.pod_selector.to_string(),
            "app=redis,role=leader"
        );
        assert!(
            leader_policy.annotations["kubefence.dev/selector"]
                .contains("also matches the pods of gb/Deployment/redis-follower"),
            "{:?}",
            leader_policy.annotations
        );

        let e = enforced(&c);
        let tcp = Protocol::Tcp;
        assert!(allowed(
            &e,
            "gb/redis-follower",
            "gb/redis-leader",
            tcp,
            6379
        ));
        for port in [6380, 22, 16379] {
            assert!(
                !allowed(&e, "gb/redis-follower", "gb/redis-leader", tcp, port),
                "{port}"
            );
        }
        for port in [6379, 22] {
            assert!(
                !allowed(&e, "gb/redis-leader", "gb/redis-follower", tcp, port),
                "leader -> follower {port}: no reference"
            );
        }
        for redis in ["gb/redis-leader", "gb/redis-follower"] {
            assert!(!allowed(&e, "gb/frontend", redis, tcp, 6379), "{redis}");
            assert!(
                allowed(&e, redis, "kube-system/coredns", Protocol::Udp, 53),
                "{redis} DNS"
            );
        }
    }
}

#[test]
fn a_workload_with_fewer_labels_is_told_apart_by_what_it_lacks() {
    let mut c = guestbook(WorkloadKind::Deployment);
    // The leader's pods carry only `app: redis`.
    c.workloads[0].pod_labels = labels(&[("app", "redis")]);
    c.services[0].selector = Some(labels(&[("app", "redis")]));
    c.services[0].name = "redis-leader".into();
    let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let leader = b
        .policies
        .iter()
        .find(|p| p.workload == "gb/Deployment/redis-leader")
        .unwrap();
    assert_eq!(
        leader.policy.pod_selector.to_string(),
        "app=redis,!role,!tier"
    );
    let e = enforced(&c);
    assert!(allowed(
        &e,
        "gb/redis-follower",
        "gb/redis-leader",
        Protocol::Tcp,
        6379
    ));
    assert!(!allowed(
        &e,
        "gb/redis-leader",
        "gb/redis-follower",
        Protocol::Tcp,
        6379
    ));
}

#[test]
fn workloads_no_label_tells_apart_are_reported_not_silently_widened() {
    let mut c = guestbook(WorkloadKind::Deployment);
    // The follower's pods now look exactly like the leader's.
    c.workloads[1].pod_labels = c.workloads[0].pod_labels.clone();
    let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
    let found: Vec<(&str, &[String])> = b
        .report
        .indistinguishable
        .iter()
        .map(|d| (d.workload.as_str(), d.also_selects.as_slice()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "gb/Deployment/redis-follower",
                &["gb/Deployment/redis-leader".to_string()][..]
            ),
            (
                "gb/Deployment/redis-leader",
                &["gb/Deployment/redis-follower".to_string()][..]
            ),
        ]
    );
    let text = b.report.to_text();
    assert!(text.contains("indistinguishable (2):"), "{text}");
    let follower = b
        .policies
        .iter()
        .find(|p| p.workload == "gb/Deployment/redis-follower")
        .unwrap();
    assert!(
        follower.annotations["kubefence.dev/selector"].contains("no label of the pod template"),
        "{:?}",
        follower.annotations
    );
    assert!(
        follower.annotations["kubefence.dev/rules"].contains("no label tells them apart"),
        "{:?}",
        follower.annotations
    );
    // Still never wider than the pods' own labels say.
    for p in &b.policies {
        assert!(!p.policy.pod_selector.is_empty());
    }
}

/// shop() with the frontend behind an Ingress of `class`, and two
/// controllers: ingress-nginx and traefik (each in its own namespace).
fn shop_behind_an_ingress(class: Option<&str>) -> Cluster {
    let mut c = shop();
    c.ingresses.push(Ingress {
        namespace: "shop".into(),
        name: "front".into(),
        class: class.map(String::from),
        backends: vec![IngressBackend {
            service: "frontend".into(),
            port: ServicePortRef::Number(80),
        }],
    });
    c.services.push(service(
        "shop",
        "frontend",
        "frontend",
        80,
        TargetPort::Name("http".into()),
    ));
    for (ns, key, value) in [
        ("ingress-nginx", "app.kubernetes.io/name", "ingress-nginx"),
        ("traefik", "app.kubernetes.io/name", "traefik"),
    ] {
        c.namespaces.insert(ns.into(), Namespace::implicit(ns));
        let mut controller = deployment(ns, "controller", container(&[], &[]));
        controller.pod_labels.insert(key.into(), value.into());
        c.workloads.push(controller);
    }
    c
}

/// The default config plus traefik, serving IngressClass `traefik`.
fn config_with_traefik() -> BaselineConfig {
    let mut cfg = BaselineConfig::default();
    cfg.ingress_controllers
        .push(kubefence_core::baseline::IngressControllerConfig {
            namespace_selector: kubefence_core::baseline::SelectorConfig::labels(&[(
                "kubernetes.io/metadata.name",
                "traefik",
            )]),
            pod_selector: kubefence_core::baseline::SelectorConfig::labels(&[(
                "app.kubernetes.io/name",
                "traefik",
            )]),
            class_name: Some("traefik".into()),
        });
    cfg
}

fn enforced_with(c: &Cluster, cfg: &BaselineConfig) -> Cluster {
    let b = build(c, cfg, &Scope::default()).unwrap();
    let mut out = c.clone();
    out.policies
        .extend(b.policies.into_iter().map(|g| g.policy));
    out
}

#[test]
fn an_ingress_with_a_class_is_opened_only_to_that_class_controller() {
    let cfg = config_with_traefik();
    let reaches = |c: &Cluster, controller: &str| {
        allowed(c, controller, "shop/frontend", Protocol::Tcp, 8080)
    };
    // (class, nginx reaches, traefik reaches)
    for (class, nginx, traefik) in [
        (Some("traefik"), false, true),
        (Some("nginx"), true, false),
        // No class: the entries without className (ingress-nginx's, by
        // default), as before classes were read.
        (None, true, false),
    ] {
        let c = shop_behind_an_ingress(class);
        let b = build(&c, &cfg, &Scope::default()).unwrap();
        assert!(b.report.unknown_ingress_classes.is_empty(), "{class:?}");
        let e = enforced_with(&c, &cfg);
        assert_eq!(reaches(&e, "ingress-nginx/controller"), nginx, "{class:?}");
        assert_eq!(reaches(&e, "traefik/controller"), traefik, "{class:?}");
    }
}

#[test]
fn an_ingress_of_an_unknown_class_is_reported_and_opens_nothing() {
    let c = shop_behind_an_ingress(Some("haproxy"));
    let cfg = config_with_traefik();
    let b = build(&c, &cfg, &Scope::default()).unwrap();
    let unknown: Vec<(&str, Option<&str>, &[String])> = b
        .report
        .unknown_ingress_classes
        .iter()
        .map(|u| {
            (
                u.ingress.as_str(),
                u.class.as_deref(),
                u.workloads.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        unknown,
        [(
            "shop/front",
            Some("haproxy"),
            &["shop/Deployment/frontend".to_string()][..]
        )]
    );
    assert!(
        b.report
            .to_text()
            .contains("Ingress shop/front (class \"haproxy\")"),
        "{}",
        b.report.to_text()
    );
    let e = enforced_with(&c, &cfg);
    for controller in ["ingress-nginx/controller", "traefik/controller"] {
        assert!(
            !allowed(&e, controller, "shop/frontend", Protocol::Tcp, 8080),
            "{controller}"
        );
    }
    // An Ingress without a class, when every controller names its class:
    // reported too.
    let c = shop_behind_an_ingress(None);
    let mut cfg = config_with_traefik();
    cfg.ingress_controllers.retain(|e| e.class_name.is_some());
    let b = build(&c, &cfg, &Scope::default()).unwrap();
    assert_eq!(b.report.unknown_ingress_classes.len(), 1);
    assert_eq!(b.report.unknown_ingress_classes[0].class, None);
}

/// The names a controller indexes workloads by (`service_names`) and the
/// Service matching it uses (`service_selects`) cover every reference the
/// builder makes: a change to a Service always reaches the workloads whose
/// policy depends on it.
#[test]
fn service_names_and_matching_cover_every_reference_the_builder_makes() {
    let mut checked = 0;
    for c in [shop(), shop_with_databases()] {
        let b = build(&c, &BaselineConfig::default(), &Scope::default()).unwrap();
        for r in &b.report.references {
            let from = c.workloads.iter().find(|w| w.id() == r.from).unwrap();
            let to = c.workloads.iter().find(|w| w.id() == r.to).unwrap();
            let (ns, name) = r.service.split_once('/').unwrap();
            let svc = c
                .services
                .iter()
                .find(|s| s.namespace == ns && s.name == name)
                .unwrap();
            assert!(
                service_names(&c, from).contains(&(ns.to_string(), name.to_string())),
                "{r:?}"
            );
            assert!(service_selects(svc, to), "{r:?}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} references checked");
}
