//! The reverse index: a change reaches exactly the workloads whose policy
//! can depend on it.

use std::collections::BTreeSet;

use kubefence_core::baseline::BaselineConfig;
use kubefence_core::model::WorkloadKind;
use kubefence_k8s::convert::{LiveObject, live_object};

use super::*;
use crate::fixtures;

fn live<T: serde::Serialize>(kind: &str, obj: &T) -> LiveObject {
    live_object(kind, serde_json::to_value(obj).unwrap()).unwrap()
}

fn wl(d: &k8s_openapi::api::apps::v1::Deployment) -> Workload {
    match live("Deployment", d) {
        LiveObject::Workload(w) => w,
        other => panic!("{other:?}"),
    }
}

fn svc(s: &k8s_openapi::api::core::v1::Service) -> Service {
    match live("Service", s) {
        LiveObject::Service(s) => s,
        other => panic!("{other:?}"),
    }
}

fn dep(name: &str) -> WorkloadKey {
    ("shop".into(), WorkloadKind::Deployment, name.into())
}

fn set(names: &[&str]) -> BTreeSet<WorkloadKey> {
    names.iter().map(|n| dep(n)).collect()
}

/// web → Service api → api; worker → Service db (via a ConfigMap) → db;
/// lonely names a Service `cache` that does not exist yet; idle names nothing.
fn world() -> State {
    let mut s = State::new(&BaselineConfig::default()).unwrap();
    s.set_config_map(
        ("shop".into(), "worker-config".into()),
        match live(
            "ConfigMap",
            &fixtures::config_map("shop", "worker-config", &[("DB_HOST", "db.shop")]),
        ) {
            LiveObject::ConfigMap(c) => Some(c),
            _ => None,
        },
    );
    for d in [
        fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://api:8080")], &[]),
        fixtures::deployment("shop", "api", &[], &[("http", 8080)]),
        fixtures::deployment("shop", "db", &[], &[("pg", 5432)]),
        fixtures::deployment("shop", "lonely", &[("CACHE_ADDR", "cache:6379")], &[]),
        fixtures::deployment("shop", "idle", &[("LOG_LEVEL", "info")], &[]),
        fixtures::deployment("shop", "cache", &[], &[]),
    ] {
        let w = wl(&d);
        s.set_workload(workload_key(&w), Some(w));
    }
    // The worker reads its address from the ConfigMap.
    let mut worker = wl(&fixtures::deployment("shop", "worker", &[], &[]));
    worker.containers[0]
        .env
        .push(kubefence_core::model::EnvVar {
            name: "DB_HOST".into(),
            value: kubefence_core::model::EnvValue::ConfigMapKey {
                name: "worker-config".into(),
                key: "DB_HOST".into(),
            },
        });
    s.set_workload(workload_key(&worker), Some(worker));
    s.set_service(
        ("shop".into(), "api".into()),
        Some(svc(&fixtures::service("shop", "api", "api", 80, 8080))),
    );
    s.set_service(
        ("shop".into(), "db".into()),
        Some(svc(&fixtures::service("shop", "db", "db", 5432, 5432))),
    );
    s
}

#[test]
fn a_service_change_reaches_its_referrers_and_targets_only() {
    let mut s = world();
    let api = ("shop".to_string(), "api".to_string());
    let changed = svc(&fixtures::service("shop", "api", "api", 80, 9090));
    assert_eq!(
        s.set_service(api.clone(), Some(changed)),
        set(&["api", "web"])
    );
    // Re-pointed at db: the old and the new target are both reached.
    let moved = svc(&fixtures::service("shop", "api", "db", 80, 5432));
    assert_eq!(
        s.set_service(api.clone(), Some(moved)),
        set(&["api", "db", "web"])
    );
    assert_eq!(s.set_service(api, None), set(&["db", "web"]));
}

#[test]
fn a_new_service_reaches_who_named_it_before_it_existed() {
    let mut s = world();
    let cache = svc(&fixtures::service("shop", "cache", "cache", 6379, 6379));
    assert_eq!(
        s.set_service(("shop".into(), "cache".into()), Some(cache)),
        set(&["cache", "lonely"])
    );
}

#[test]
fn a_config_map_change_reaches_its_readers_and_their_old_and_new_targets() {
    let mut s = world();
    let key = ("shop".to_string(), "worker-config".to_string());
    let cm = match live(
        "ConfigMap",
        &fixtures::config_map("shop", "worker-config", &[("DB_HOST", "api")]),
    ) {
        LiveObject::ConfigMap(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s.set_config_map(key, Some(cm)),
        set(&["api", "db", "worker"])
    );
}

#[test]
fn a_workload_change_reaches_its_peers_old_and_new() {
    let mut s = world();
    let web = wl(&fixtures::deployment(
        "shop",
        "web",
        &[("BACKEND_URL", "http://db:5432")],
        &[],
    ));
    assert_eq!(
        s.set_workload(dep("web"), Some(web)),
        set(&["api", "db", "web"])
    );
    // The target side: api's referrers are reached when api changes.
    let api = wl(&fixtures::deployment("shop", "api", &[], &[("http", 8081)]));
    assert_eq!(s.set_workload(dep("api"), Some(api)), set(&["api"]));
    let db = wl(&fixtures::deployment("shop", "db", &[], &[("pg", 5433)]));
    assert_eq!(
        s.set_workload(dep("db"), Some(db)),
        set(&["db", "web", "worker"])
    );
    assert_eq!(
        s.set_workload(dep("db"), None),
        set(&["db", "web", "worker"])
    );
}

#[test]
fn unrelated_workloads_are_never_reached() {
    let mut s = world();
    let idle = wl(&fixtures::deployment(
        "shop",
        "idle",
        &[("LOG_LEVEL", "debug")],
        &[],
    ));
    assert_eq!(s.set_workload(dep("idle"), Some(idle)), set(&["idle"]));
}

#[test]
fn an_ingress_reaches_its_backends_and_the_ingress_controllers() {
    let mut s = world();
    let ctrl = {
        let mut d = fixtures::deployment("ingress-nginx", "controller", &[], &[]);
        let labels = d
            .spec
            .as_mut()
            .unwrap()
            .template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap();
        labels.insert("app.kubernetes.io/name".into(), "ingress-nginx".into());
        wl(&d)
    };
    s.set_workload(workload_key(&ctrl), Some(ctrl.clone()));
    let ing = match live("Ingress", &fixtures::ingress("shop", "front", "api", 80)) {
        LiveObject::Ingress(i) => i,
        other => panic!("{other:?}"),
    };
    let mut expected = set(&["api"]);
    expected.insert(workload_key(&ctrl));
    assert_eq!(
        s.set_ingress(("shop".into(), "front".into()), Some(ing)),
        expected
    );
    // Now api is routed: a change of api's Service reaches the controller too.
    let changed = svc(&fixtures::service("shop", "api", "api", 80, 9090));
    let mut expected = set(&["api", "web"]);
    expected.insert(workload_key(&ctrl));
    assert_eq!(
        s.set_service(("shop".into(), "api".into()), Some(changed)),
        expected
    );
}

/// A small random cluster using every kind of dependency: references by
/// env (literal and ConfigMap), args, cross-namespace names, named and
/// numeric target ports, exposed Services, Ingresses and an ingress
/// controller.
fn random_state(seed: u64) -> State {
    use kubefence_core::Protocol;
    use kubefence_core::model::{
        Container, ContainerPort, EnvValue, EnvVar, IngressBackend, Namespace, ServicePort,
        ServicePortRef, ServiceType, TargetPort,
    };
    use kubefence_core::selector::LabelSelector;
    let mut x = seed.max(1);
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut s = State::new(&BaselineConfig::default()).unwrap();
    let namespaces = ["a", "b", "ingress-nginx"];
    for ns in namespaces {
        let mut labels = Namespace::implicit(ns).labels;
        if next(3) > 0 {
            labels.insert("kubefence.dev/baseline".into(), "enabled".into());
        }
        s.set_namespace(
            ns.into(),
            Some(Namespace {
                name: ns.into(),
                labels,
            }),
        );
    }
    for i in 0..3 {
        let ns = namespaces[(i % 2) as usize];
        let cm = ConfigMap {
            namespace: ns.into(),
            name: format!("cm{i}"),
            data: [("ADDR".to_string(), format!("http://s{}:80", next(8)))].into(),
        };
        s.set_config_map((ns.into(), cm.name.clone()), Some(cm));
    }
    for i in 0..12u64 {
        let ns = namespaces[(i % 2) as usize];
        let app = format!("w{i}");
        let mut env = Vec::new();
        for _ in 0..next(3) {
            let target = format!("s{}", next(8));
            let value = match next(4) {
                0 => format!("http://{target}:80"),
                1 => format!("{target}.{}:80", namespaces[next(2) as usize]),
                2 => format!(
                    "{target}.{}.svc.cluster.local:8080",
                    namespaces[next(2) as usize]
                ),
                _ => format!("{target}:9999"),
            };
            env.push(EnvVar {
                name: format!("UPSTREAM_{}", next(100)),
                value: EnvValue::Literal(value),
            });
        }
        if next(4) == 0 {
            env.push(EnvVar {
                name: "BACKEND_ADDR".into(),
                value: EnvValue::ConfigMapKey {
                    name: format!("cm{}", next(3)),
                    key: "ADDR".into(),
                },
            });
        }
        let args = if next(3) == 0 {
            vec![format!("--server=s{}:80", next(8))]
        } else {
            vec![]
        };
        let mut pod_labels =
            kubefence_core::selector::Labels::from([("app".to_string(), app.clone())]);
        if i == 11 {
            pod_labels.insert("app.kubernetes.io/name".into(), "ingress-nginx".into());
        }
        let w = Workload {
            kind: WorkloadKind::Deployment,
            namespace: if i == 11 {
                "ingress-nginx".into()
            } else {
                ns.into()
            },
            name: app.clone(),
            uid: Some(format!("u{i}")),
            labels: Default::default(),
            annotations: Default::default(),
            selector: LabelSelector::from_labels([("app".to_string(), app.clone())].into()),
            pod_labels,
            containers: vec![Container {
                name: "main".into(),
                init: false,
                command: vec![],
                args,
                env,
                env_from: vec![],
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: 8000 + i as u16,
                    protocol: Protocol::Tcp,
                }],
            }],
            pod_ips: vec![],
        };
        s.set_workload(workload_key(&w), Some(w));
    }
    for i in 0..8u64 {
        for ns in ["a", "b"] {
            if next(4) == 0 {
                continue;
            }
            let svc = Service {
                namespace: ns.into(),
                name: format!("s{i}"),
                selector: Some([("app".to_string(), format!("w{}", next(12)))].into()),
                service_type: if next(5) == 0 {
                    ServiceType::LoadBalancer
                } else {
                    ServiceType::ClusterIp
                },
                ports: vec![ServicePort {
                    name: Some("web".into()),
                    port: 80,
                    target_port: if next(2) == 0 {
                        TargetPort::Name("http".into())
                    } else {
                        TargetPort::Number(8080)
                    },
                    protocol: Protocol::Tcp,
                }],
                external_ips: vec![],
            };
            s.set_service((ns.into(), svc.name.clone()), Some(svc));
        }
    }
    for i in 0..2u64 {
        let ing = kubefence_core::model::Ingress {
            namespace: "a".into(),
            name: format!("i{i}"),
            class: None,
            backends: vec![IngressBackend {
                service: format!("s{}", next(8)),
                port: ServicePortRef::Number(80),
            }],
        };
        s.set_ingress(("a".into(), ing.name.clone()), Some(ing));
    }
    s
}

fn scope_of(s: &State) -> kubefence_core::baseline::Scope {
    kubefence_core::baseline::Scope {
        namespaces: Some(
            s.namespaces()
                .filter(|n| n.labels.contains_key("kubefence.dev/baseline"))
                .map(|n| n.name.clone())
                .collect(),
        ),
    }
}

#[test]
fn neighbourhood_builds_like_the_whole_cluster() {
    use kubefence_core::baseline::build;
    let cfg = BaselineConfig::default();
    let (mut references, mut unresolved, mut routed) = (0, 0, 0);
    for seed in 1..=60u64 {
        let s = random_state(seed);
        let scope = scope_of(&s);
        let whole = build(&s.cluster(), &cfg, &scope).unwrap();
        references += whole.report.references.len();
        unresolved += whole.report.unresolved.len();
        routed += whole
            .policies
            .iter()
            .filter(|p| p.workload.starts_with("ingress-nginx/") && p.policy.egress.len() > 2)
            .count();
        let keys: Vec<WorkloadKey> = s.workloads().map(workload_key).collect();
        // Each workload alone, and a few pairs.
        let mut target_sets: Vec<BTreeSet<WorkloadKey>> =
            keys.iter().map(|k| BTreeSet::from([k.clone()])).collect();
        for i in 0..keys.len() {
            target_sets.push(BTreeSet::from([
                keys[i].clone(),
                keys[(i * 7 + 3) % keys.len()].clone(),
            ]));
        }
        for targets in target_sets {
            let part = build(&s.neighbourhood(&targets), &cfg, &scope).unwrap();
            let ids: BTreeSet<String> = targets
                .iter()
                .map(|k| format!("{}/{}/{}", k.0, k.1, k.2))
                .collect();
            let pick = |b: &kubefence_core::baseline::Baseline| {
                let policies: Vec<_> = b
                    .policies
                    .iter()
                    .filter(|p| ids.contains(&p.workload))
                    .cloned()
                    .collect();
                let unresolved: Vec<_> = b
                    .report
                    .unresolved
                    .iter()
                    .filter(|u| ids.contains(&u.from))
                    .cloned()
                    .collect();
                (policies, unresolved)
            };
            assert_eq!(pick(&part), pick(&whole), "seed {seed}, targets {ids:?}");
        }
    }
    // The generator does exercise what the neighbourhood must carry.
    assert!(
        references > 100 && unresolved > 20 && routed > 5,
        "{references} {unresolved} {routed}"
    );
}

fn cm(name: &str, data: &[(&str, &str)]) -> Option<ConfigMap> {
    match live("ConfigMap", &fixtures::config_map("shop", name, data)) {
        LiveObject::ConfigMap(c) => Some(c),
        _ => None,
    }
}

/// A Deployment whose env reads `(ConfigMap, key)` pairs (`key` "*":
/// every key, by envFrom).
fn reader(name: &str, reads: &[(&str, &str)]) -> Workload {
    use kubefence_core::model::{EnvFromConfigMap, EnvValue, EnvVar};
    let mut w = wl(&fixtures::deployment("shop", name, &[], &[]));
    for (map, key) in reads {
        if *key == "*" {
            w.containers[0].env_from.push(EnvFromConfigMap {
                name: map.to_string(),
                prefix: None,
            });
        } else {
            w.containers[0].env.push(EnvVar {
                name: format!("V_{}", key.to_ascii_uppercase()),
                value: EnvValue::ConfigMapKey {
                    name: map.to_string(),
                    key: key.to_string(),
                },
            });
        }
    }
    w
}

fn kept(s: &State, name: &str) -> Vec<String> {
    s.config_maps
        .get(&("shop".to_string(), name.to_string()))
        .map(|c| c.data.keys().cloned().collect())
        .unwrap_or_default()
}

/// Defect 7: the cache kept every ConfigMap's data in the cluster. Now,
/// once every kind has listed, a ConfigMap keeps only the keys some
/// workload's env reads (all of them for envFrom), on every later event
/// too; data a new reader needs that was not kept is fetched, and a fetch
/// answered after a newer watch event is not taken.
#[test]
fn the_config_map_cache_keeps_only_the_keys_some_workload_reads() {
    let mut s = State::new(&BaselineConfig::default()).unwrap();
    let secretish = "x".repeat(4096);
    // ConfigMaps listed before the workloads that read them.
    s.set_config_map(
        ("shop".into(), "conf".into()),
        cm(
            "conf",
            &[
                ("url", "http://api:80"),
                ("other", "db:5432"),
                ("blob", &secretish),
            ],
        ),
    );
    s.set_config_map(
        ("shop".into(), "unused".into()),
        cm("unused", &[("a", "b")]),
    );
    s.set_config_map(
        ("shop".into(), "env".into()),
        cm("env", &[("A_URL", "http://cache:6379"), ("B", "c")]),
    );
    let web = reader("web", &[("conf", "url"), ("env", "*")]);
    s.set_workload(workload_key(&web), Some(web));
    assert_eq!(
        kept(&s, "conf").len(),
        3,
        "everything until every kind has listed"
    );
    s.prune_config_maps();
    assert_eq!(kept(&s, "conf"), ["url"]);
    assert!(kept(&s, "unused").is_empty());
    assert_eq!(kept(&s, "env"), ["A_URL", "B"]);
    assert!(s.config_maps_to_fetch().is_empty());

    // A later update: still only what is read.
    s.set_config_map(
        ("shop".into(), "conf".into()),
        cm(
            "conf",
            &[
                ("url", "http://api:81"),
                ("other", "db:5432"),
                ("blob", "y"),
            ],
        ),
    );
    assert_eq!(kept(&s, "conf"), ["url"]);
    // The index still reads the value through the cache.
    assert!(
        s.index.deps[&dep("web")]
            .refs
            .contains(&("shop".to_string(), "api".to_string()))
    );

    // A new reader of a key that was not kept: the ConfigMap is fetched.
    let tool = reader("tool", &[("conf", "other")]);
    s.set_workload(workload_key(&tool), Some(tool));
    let key: ObjKey = ("shop".into(), "conf".into());
    assert_eq!(s.config_maps_to_fetch(), &BTreeSet::from([key.clone()]));
    let generation = s.config_map_generation(&key);
    // A watch event came before the answer: the answer is not taken, and
    // the event brought the newly read key anyway.
    s.set_config_map(
        key.clone(),
        cm(
            "conf",
            &[
                ("url", "http://api:81"),
                ("other", "db:5433"),
                ("blob", "z"),
            ],
        ),
    );
    let stale = cm("conf", &[("url", "http://api:81"), ("other", "db:5432")]);
    let affected = s.fetched(key.clone(), generation, stale);
    assert!(affected.is_empty());
    assert_eq!(kept(&s, "conf"), ["other", "url"]);
    assert_eq!(
        s.config_maps[&key].data["other"], "db:5433",
        "the newer event's value stays"
    );
    assert!(s.config_maps_to_fetch().is_empty());
    assert!(
        s.index.deps[&dep("tool")]
            .refs
            .contains(&("shop".to_string(), "db".to_string()))
    );

    // A third reader, answered in time: taken, and its readers re-indexed.
    let third = reader("third", &[("conf", "blob")]);
    s.set_workload(workload_key(&third), Some(third));
    let generation = s.config_map_generation(&key);
    let fresh = cm(
        "conf",
        &[
            ("url", "u"),
            ("other", "db:5433"),
            ("blob", "http://cache:1"),
        ],
    );
    let affected = s.fetched(key.clone(), generation, fresh);
    assert!(affected.contains(&dep("third")));
    assert_eq!(kept(&s, "conf"), ["blob", "other", "url"]);
    assert!(
        s.index.deps[&dep("third")]
            .refs
            .contains(&("shop".to_string(), "cache".to_string()))
    );
}
