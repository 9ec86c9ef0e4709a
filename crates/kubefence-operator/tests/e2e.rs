//! End-to-end tests against a real cluster.
//!
//! Skipped unless `KUBEFENCE_E2E_KUBECONFIG` names a kubeconfig file (its
//! current context is used); also `#[ignore]`d so a plain `cargo test` never
//! touches a cluster. Run with:
//!
//! ```sh
//! KUBEFENCE_E2E_KUBECONFIG=$HOME/.kube/kind-config \
//!   cargo test -p kubefence-operator --test e2e -- --ignored --nocapture
//! ```
//!
//! The cluster needs no kubefence installation: the baseline controller runs
//! in the test process with the kubeconfig's credentials, in a temporary
//! namespace labelled `kubefence-e2e=<test>` (deleted at the end; leftover
//! ones can be removed with `kubectl delete ns -l kubefence-e2e`). A CNI that
//! enforces NetworkPolicy is not required: the tests check the API objects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kubefence_operator::context::{Context, OperatorConfig};
use kubefence_operator::controllers::baseline;
use kubefence_operator::fixtures;
use kubefence_operator::metrics::Metrics;
use serde_json::json;
use tokio::sync::watch;

const ENV: &str = "KUBEFENCE_E2E_KUBECONFIG";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn client() -> Option<Client> {
    let Some(path) = std::env::var_os(ENV) else {
        eprintln!("skipped: set {ENV} to a kubeconfig file to run the end-to-end tests");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig context");
    Some(Client::try_from(config).expect("client"))
}

/// Polls `get` until `done` holds on its result, for at most [`TIMEOUT`].
async fn eventually<T>(
    what: &str,
    mut get: impl AsyncFnMut() -> Option<T>,
    done: impl Fn(&Option<T>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let value = get().await;
        if done(&value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBEFENCE_E2E_KUBECONFIG and pass --ignored"]
async fn baseline_policies_follow_workloads() {
    let Some(client) = client().await else { return };
    let ns = format!("kubefence-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns,
        "labels": {"kubefence-e2e": "baseline", "kubefence.dev/baseline": "enabled"}}}))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let strip = |mut d: Deployment| {
        d.metadata.uid = None;
        d
    };
    deployments
        .create(
            &pp,
            &strip(fixtures::deployment(&ns, "api", &[], &[("http", 8080)])),
        )
        .await
        .unwrap();
    deployments
        .create(
            &pp,
            &strip(fixtures::deployment(
                &ns,
                "web",
                &[("BACKEND_URL", "http://api:80")],
                &[],
            )),
        )
        .await
        .unwrap();
    let mut svc = fixtures::service(&ns, "api", "api", 80, 8080);
    svc.metadata.uid = None;
    services.create(&pp, &svc).await.unwrap();

    let config = OperatorConfig {
        leader_election: false,
        resync: Duration::from_secs(30),
        ..OperatorConfig::default()
    }
    .normalized();
    let (_leader_tx, leader) = watch::channel(true);
    let (stop, shutdown) = watch::channel(false);
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        Arc::new(Metrics::default()),
        leader,
        shutdown,
    ));
    let controller = tokio::spawn(baseline::start(ctx));

    let get = |name: &'static str| {
        let policies = policies.clone();
        async move || {
            policies
                .get_opt(&format!("kf-baseline-deployment-{name}"))
                .await
                .ok()
                .flatten()
        }
    };
    // Created, owned by the workload, with web's reference on both ends.
    eventually("api's policy", get("api"), |p| {
        p.as_ref()
            .is_some_and(|p| serde_json::to_string(&p.spec).unwrap().contains("8080"))
    })
    .await;
    let api_policy = policies.get("kf-baseline-deployment-api").await.unwrap();
    assert_eq!(api_policy.metadata.owner_references.unwrap()[0].name, "api");

    // A hand edit is restored.
    policies
        .patch(
            "kf-baseline-deployment-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": []}})),
        )
        .await
        .unwrap();
    eventually("web's policy restored", get("web"), |p| {
        p.as_ref()
            .is_some_and(|p| serde_json::to_string(&p.spec).unwrap().contains("8080"))
    })
    .await;

    // The workload goes: so does its policy.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("web's policy deleted", get("web"), |p| p.is_none()).await;

    // The namespace opts out: every policy goes.
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubefence.dev/baseline": null}}})),
        )
        .await
        .unwrap();
    eventually("api's policy deleted", get("api"), |p| p.is_none()).await;

    stop.send(true).unwrap();
    let _ = controller.await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
