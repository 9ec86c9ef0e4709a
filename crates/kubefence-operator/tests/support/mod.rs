//! The end-to-end tests' harness: a real API server ([`apiserver`]), the
//! cluster shared by the tests with `deploy/` installed ([`cluster`]), the
//! operator as a process of its own ([`operator`]), and small helpers.
//! Objects are written here as JSON, independently of the crate's own
//! builders, as a user would write them.

#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod garbage_collector;
pub mod operator;
pub mod proxy;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// How long a test waits for the operator to converge.
pub const CONVERGE: Duration = Duration::from_secs(20);

/// How long a CRD just created may take to be served by discovery: a setup
/// step, not a behaviour under test. Under the whole suite on 2 cores the
/// API server took over 20 s for the AdminNetworkPolicy CRD (a large
/// schema) in two CI runs; a longer bound only makes a real failure slower.
const CRD_SERVED: Duration = Duration::from_secs(90);

/// Polls `get` every 100 ms until `done` holds, for at most `limit`;
/// panics with `what` and the last value otherwise. Returns the value.
pub async fn eventually<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut get: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let value = get().await;
        if done(&value) {
            return value;
        }
        if Instant::now() > deadline {
            fail(&format!(
                "timed out after {limit:?} waiting for {what}; last: {value:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks `check` holds at every poll for `period` (nothing happens that
/// should not).
pub async fn throughout<T: std::fmt::Debug>(
    what: &str,
    period: Duration,
    mut get: impl AsyncFnMut() -> T,
    check: impl Fn(&T) -> bool,
) {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        let value = get().await;
        if !check(&value) {
            fail(&format!("{what} broken: {value:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::panic)]
pub fn fail(message: &str) -> ! {
    panic!("{message}")
}

/// A namespace of one test (`kf-e2e-<test>-<random>`), opted in to
/// baseline policies or not.
pub async fn namespace(client: &Client, test: &str, opted_in: bool) -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 3];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("kf-e2e-{test}-{suffix}").replace('_', "-");
    let mut labels = json!({"kubefence-e2e": test.replace('_', "-")});
    if opted_in {
        labels["kubefence.dev/baseline"] = json!("enabled");
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .unwrap_or_else(|e| fail(&e.to_string()));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| fail(&format!("create namespace {name}: {e}")));
    name
}

/// Ends a test's namespace: opted out first (on the local server a deleted
/// namespace stays Terminating for ever, with its objects: no
/// kube-controller-manager), then deleted.
pub async fn remove_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubefence.dev/baseline": null}}})),
        )
        .await;
    let _ = namespaces.delete(name, &Default::default()).await;
}

/// A Deployment `name` (pods labelled `app: <name>`) with env vars and
/// named container ports.
pub fn deployment(ns: &str, name: &str, env: &[(&str, &str)], ports: &[(&str, u16)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1", "env": env, "ports": ports}]},
            },
        },
    })
}

/// A ClusterIP Service `name` selecting `app: <app>`.
pub fn service(ns: &str, name: &str, app: &str, port: u16, target: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    })
}

/// A NetworkPolicy as a person or a GitOps tool would write it.
pub fn policy(ns: &str, name: &str, labels: Value, app: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]},
    })
}

/// Creates `object` (POST) as `client`.
pub async fn create(client: &Client, object: Value) -> Value {
    let api = dynamic_api(client, &object).await;
    let obj: DynamicObject =
        serde_json::from_value(object.clone()).unwrap_or_else(|e| fail(&e.to_string()));
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| fail(&format!("create {}: {e}", describe(&object))));
    serde_json::to_value(created).unwrap_or_else(|e| fail(&e.to_string()))
}

/// The API of `object`'s kind, in its namespace.
pub async fn dynamic_api(client: &Client, object: &Value) -> Api<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(
        group,
        version,
        object["kind"].as_str().unwrap_or_default(),
    );
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| fail(&format!("discovery of {gvk:?}: {e}")));
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn describe(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Installs the real CRDs kept in `testdata/third-party/<dir>/crds/` (each
/// `dir` one project: cilium, network-policy-api, kubearmor), unless
/// already served, and waits until discovery serves each kind.
pub async fn install_third_party_crds(admin: &Client, dirs: &[&str]) {
    let root = apiserver::repo_root().join("testdata/third-party");
    for dir in dirs {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir).join("crds"))
            .unwrap_or_else(|e| fail(&format!("testdata/third-party/{dir}/crds: {e}")))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            let docs = cluster::yaml_docs(&path).unwrap_or_else(|e| fail(&e));
            for crd in docs {
                let group = crd["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let kind = crd["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let served = async || {
                    kube::discovery::group(admin, &group)
                        .await
                        .ok()
                        .is_some_and(|g| g.recommended_kind(&kind).is_some())
                };
                if served().await {
                    continue;
                }
                if let Err(e) = cluster::apply(admin, crd.clone()).await {
                    fail(&format!("installing the {kind} CRD: {e}"));
                }
                eventually(
                    &format!("{kind} served"),
                    CRD_SERVED,
                    async || served().await,
                    |s| *s,
                )
                .await;
            }
        }
    }
}

/// The `kubefence` binary of this build (target/<profile>/kubefence, built
/// by `cargo test --workspace` before any test runs). `None` when it was
/// not built (`cargo test -p kubefence-operator` alone), which CI never is.
pub fn kubefence_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("kubefence");
    if bin.is_file() {
        Some(bin)
    } else if std::env::var_os("CI").is_some() {
        fail(&format!(
            "{} is missing: CI runs cargo test --workspace, which builds it",
            bin.display()
        ));
    } else {
        eprintln!(
            "skipped: {} is not built (cargo build -p kubefence)",
            bin.display()
        );
        None
    }
}
