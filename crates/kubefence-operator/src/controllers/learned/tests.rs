//! The learned controller against the one fake API server: groups that
//! are not installed, injected failures, refusals, and objects that are
//! not ours.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::context::OperatorConfig;
use crate::fake::FakeApi;

const NS: &str = "shop";
const GNP_PATH: &str =
    "/apis/kubefence.dev/v1alpha1/namespaces/shop/generatednetworkpolicies/deployment-web";
const KUBESCAPE: &str = "/apis/spdx.softwarecomposition.kubescape.io/";

fn context(fake: &FakeApi) -> Arc<Context> {
    let config = OperatorConfig {
        api_timeout: std::time::Duration::from_millis(500),
        learned: true,
        ..OperatorConfig::default()
    };
    Arc::new(Context::with_client(fake.client(), config))
}

/// Deployment `web`'s neighborhood (`app: web` calls `app: api` on TCP
/// 8080) in `api_version`'s group.
fn neighborhood(api_version: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "NetworkNeighborhood",
        "metadata": {
            "name": "deployment-web", "namespace": NS, "uid": uid,
            "labels": {
                "kubescape.io/workload-kind": "Deployment",
                "kubescape.io/workload-name": "web",
                "kubescape.io/workload-namespace": NS,
            },
            "annotations": {"kubescape.io/status": "completed"},
        },
        "spec": {
            "matchLabels": {"app": "web"},
            "containers": [{"name": "web", "egress": [{
                "identifier": "api", "type": "internal",
                "podSelector": {"matchLabels": {"app": "api"}},
                "ports": [{"name": "TCP-8080", "protocol": "TCP", "port": 8080}],
            }]}],
        },
    })
}

fn add_kubefence_neighborhood(fake: &FakeApi) {
    fake.insert(
        "/apis/kubefence.dev/v1alpha1/namespaces/shop/networkneighborhoods/deployment-web",
        neighborhood("kubefence.dev/v1alpha1", "nn-kf"),
    );
}

fn approve(fake: &FakeApi) {
    let mut gnp = fake.get(GNP_PATH).expect("the GeneratedNetworkPolicy");
    gnp["metadata"]["annotations"]["kubefence.dev/approved"] = json!("true");
    fake.insert(GNP_PATH, gnp);
}

/// Passes until one succeeds (at most `tries`).
async fn converge(ctx: &Context, installed: &mut Installed, tries: usize) -> Pass {
    for _ in 0..tries {
        if let Ok(pass) = reconcile(ctx, installed).await {
            return pass;
        }
    }
    panic!("no pass succeeded in {tries} tries");
}

#[tokio::test]
async fn a_group_whose_crd_is_not_installed_is_skipped_not_fatal() {
    let (_, fake) = FakeApi::start();
    fake.not_installed(KUBESCAPE);
    add_kubefence_neighborhood(&fake);
    let ctx = context(&fake);
    let mut installed = Installed::default();
    reconcile(&ctx, &mut installed)
        .await
        .expect("a missing group is skipped");
    assert_eq!(installed.neighborhoods.get(&Group::Kubescape), Some(&false));
    assert_eq!(installed.neighborhoods.get(&Group::Kubefence), Some(&true));
    let gnp = fake
        .get(GNP_PATH)
        .expect("generated from kubefence's group");
    assert_eq!(gnp["metadata"]["ownerReferences"][0]["uid"], "nn-kf");
    assert!(fake.policies().is_empty(), "nothing enforced unapproved");
}

#[tokio::test]
async fn without_kubefence_crds_a_pass_writes_nothing() {
    let (_, fake) = FakeApi::start();
    fake.not_installed("/apis/kubefence.dev/");
    fake.insert(
        "/apis/spdx.softwarecomposition.kubescape.io/v1beta1/namespaces/shop/networkneighborhoods/deployment-web",
        neighborhood("spdx.softwarecomposition.kubescape.io/v1beta1", "nn-ks"),
    );
    let ctx = context(&fake);
    let pass = reconcile(&ctx, &mut Installed::default()).await.unwrap();
    assert_eq!(pass.writes, 0);
    assert_eq!(fake.writes(), 0);
}

#[tokio::test]
async fn through_injected_failures_it_converges_to_one_approved_policy() {
    let (_, fake) = FakeApi::start();
    fake.not_installed(KUBESCAPE);
    add_kubefence_neighborhood(&fake);
    let fake = fake.with_faults(0.3, 11);
    let ctx = context(&fake);
    let mut installed = Installed::default();
    converge(&ctx, &mut installed, 60).await;
    // The create may have been answered late (a timeout after the write):
    // a later pass finds it and brings it up to date.
    let stable = converge(&ctx, &mut installed, 60).await;
    assert!(fake.get(GNP_PATH).is_some());
    approve(&fake);
    loop {
        let pass = converge(&ctx, &mut installed, 60).await;
        if pass.writes == 0 {
            break;
        }
    }
    let _ = stable;
    fake.heal();
    let pass = reconcile(&ctx, &mut installed).await.unwrap();
    assert_eq!(pass.writes, 0, "a converged pass writes nothing");
    let policies = fake.policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    let np = fake
        .policy(NS, "deployment-web")
        .expect("the approved policy");
    let managers: Vec<String> = np
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["kubefence".to_string()]);
    let gnp = fake.get(GNP_PATH).unwrap();
    let gnp_spec: kubefence_k8s::learn::objects::EmbeddedNetworkPolicy =
        serde_json::from_value(gnp["spec"].clone()).unwrap();
    assert_eq!(
        gnp["metadata"]["annotations"][APPROVED_HASH_ANNOTATION].as_str(),
        Some(spec_hash(&gnp_spec).unwrap().as_str()),
        "the approved spec's hash is recorded"
    );
    assert_eq!(
        np.metadata.owner_references.unwrap()[0].uid,
        gnp["metadata"]["uid"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_refused_write_fails_the_pass_and_enforces_nothing() {
    let (_, fake) = FakeApi::start();
    fake.not_installed(KUBESCAPE);
    add_kubefence_neighborhood(&fake);
    fake.forbid_writes("/apis/kubefence.dev/v1alpha1/namespaces/shop/generatednetworkpolicies");
    let ctx = context(&fake);
    let err = reconcile(&ctx, &mut Installed::default())
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), Some(403), "{}", err.full_message());
    assert!(fake.policies().is_empty());
}

#[tokio::test]
async fn a_copy_with_our_labels_that_kubefence_did_not_write_is_left_alone() {
    let (_, fake) = FakeApi::start();
    fake.not_installed(KUBESCAPE);
    add_kubefence_neighborhood(&fake);
    let ctx = context(&fake);
    let mut installed = Installed::default();
    reconcile(&ctx, &mut installed).await.unwrap();
    approve(&fake);
    // A GitOps tool applied a copy with kubefence's learned labels first.
    let gnp_uid = fake.get(GNP_PATH).unwrap()["metadata"]["uid"].clone();
    fake.insert(
        "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/deployment-web",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deployment-web", "namespace": NS,
                "labels": {"app.kubernetes.io/managed-by": "kubefence", "kubefence.dev/source": "learned"},
                "ownerReferences": [{"apiVersion": "kubefence.dev/v1alpha1", "kind": "GeneratedNetworkPolicy",
                    "name": "deployment-web", "uid": gnp_uid}],
                "managedFields": [{"manager": "argocd", "operation": "Apply"}]},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
        }),
    );
    let before = fake.policy(NS, "deployment-web").unwrap();
    let pass = reconcile(&ctx, &mut installed).await.unwrap();
    assert_eq!(pass.conflicts.len(), 1, "{:?}", pass.conflicts);
    assert_eq!(fake.policy(NS, "deployment-web").unwrap(), before);
    let gnp = fake.get(GNP_PATH).unwrap();
    assert_eq!(
        gnp["status"]["conditions"][0]["reason"], REASON_CONFLICT,
        "{gnp}"
    );
    assert!(
        gnp["metadata"]["annotations"][APPROVED_HASH_ANNOTATION].is_null(),
        "no approval recorded for a policy not applied"
    );
}

/// A context whose leader and shutdown senders are gone (a one-shot
/// context, as `Context::with_client` makes: it leads for ever) must wait
/// for the resync between passes, not loop on the closed channels and run
/// pass after pass against the API server.
#[tokio::test]
async fn closed_leader_and_shutdown_channels_do_not_spin_the_controller() {
    let (_, fake) = FakeApi::start();
    add_kubefence_neighborhood(&fake);
    let ctx = context(&fake);
    fake.clear_requests();
    let controller = tokio::spawn(start(ctx));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    controller.abort();
    let requests = fake.requests().len();
    // One pass (discovery, lists, watches, a few writes) is a few dozen
    // requests; a resync of 300 s allows no second one in 1.5 s.
    assert!(
        requests < 100,
        "{requests} requests in 1.5 s with a 300 s resync: the controller spins"
    );
}
