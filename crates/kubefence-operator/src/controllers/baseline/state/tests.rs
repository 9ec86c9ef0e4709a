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
