//! The quarantine API calls and the controller against the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kubefence_core::WorkloadKind;
use kubefence_core::quarantine::{Audit, Engine, Target};
use kubefence_k8s::crd::quarantine::{FINALIZER, Phase, Quarantine};
use serde_json::{Value, json};

use super::*;
use crate::error::{Error, Result};
use crate::fake::{FakeApi, Recorded};
use crate::fixtures::{
    allow_ingress_from_web, deployment_selecting, policy_path as netpol_path, quarantine_path,
    statefulset,
};
use kube::runtime::controller::Action;

const NP: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";

fn cfg() -> QuarantineConfig {
    QuarantineConfig {
        clock: Arc::new(|| "2026-11-24T23:40:00Z".parse::<Timestamp>().unwrap()),
        ..QuarantineConfig::default()
    }
}

fn audit() -> Audit {
    Audit {
        reason: "crypto miner".to_string(),
        finding: Some("ALERT-42".to_string()),
        requester: "alice".to_string(),
        time: "2026-11-24T23:40:00Z".to_string(),
    }
}

fn api_target() -> Target {
    Target::new(WorkloadKind::Deployment, "shop", "api")
}

fn with_api(selector: Value) -> (Client, FakeApi) {
    let (client, fake) = FakeApi::start();
    fake.add(&deployment_selecting("shop", "api", selector));
    (client, fake)
}

fn app_api() -> Value {
    json!({"matchLabels": {"app": "api"}})
}

/// The one runtime context over the fake (leading, default config).
fn rt(client: &Client) -> crate::Context {
    crate::Context::with_client(client.clone(), crate::OperatorConfig::default())
}

/// The Quarantine controller's reconcile context over the fake.
fn quarantines(client: Client) -> Arc<Quarantines> {
    Arc::new(Quarantines::new(Arc::new(rt(&client)), cfg()))
}

async fn quarantine(client: &Client, target: &Target, dry_run: bool) -> Result<ApplyOutcome> {
    let (plan, _) = plan(&rt(client), target, &audit(), Engine::NetworkPolicy, &cfg()).await?;
    apply(&rt(client), &plan, dry_run, &Holder::Cli).await
}

#[tokio::test]
async fn dry_run_sends_dry_run_all_and_persists_nothing() {
    let (client, fake) = with_api(app_api());
    let outcome = quarantine(&client, &api_target(), true).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Created);
    assert_eq!(
        fake.take_lines(),
        vec![
            "GET /apis/apps/v1/namespaces/shop/deployments/api".to_string(),
            format!("GET {NP}?"),
            // Every workload of the namespace: which others the selector
            // also matches (the core's `also_selects`).
            "GET /apis/apps/v1/namespaces/shop/deployments?".to_string(),
            "GET /apis/apps/v1/namespaces/shop/statefulsets?".to_string(),
            "GET /apis/apps/v1/namespaces/shop/daemonsets?".to_string(),
            "GET /apis/apps/v1/namespaces/shop/replicasets?".to_string(),
            "GET /apis/batch/v1/namespaces/shop/jobs?".to_string(),
            "GET /apis/batch/v1/namespaces/shop/cronjobs?".to_string(),
            "GET /api/v1/namespaces/shop/pods?".to_string(),
            format!("GET {NP}/kf-quarantine-deployment-api"),
            // Server-side apply only: one field manager, operation Apply.
            format!("PATCH {NP}/kf-quarantine-deployment-api?&dryRun=All&fieldManager=kubefence"),
        ]
    );
    assert_eq!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api")),
        None
    );
}

#[tokio::test]
async fn confirm_creates_a_deny_all_policy_with_audit_and_no_owner_reference() {
    let (client, fake) = with_api(app_api());
    quarantine(&client, &api_target(), false).await.unwrap();
    let log = fake.take_log();
    assert_eq!(
        log[10].line(),
        format!("PATCH {NP}/kf-quarantine-deployment-api?&fieldManager=kubefence")
    );
    let p = fake
        .get(&netpol_path("shop", "kf-quarantine-deployment-api"))
        .expect("created");
    assert_eq!(p["spec"]["podSelector"], app_api());
    assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(p["spec"]["ingress"], json!([]));
    assert_eq!(p["spec"]["egress"], json!([]));
    assert!(
        p["metadata"]["ownerReferences"].is_null(),
        "outlives the workload"
    );
    let labels = &p["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kubefence");
    assert_eq!(labels["kubefence.dev/source"], "quarantine");
    assert_eq!(labels["kubefence.dev/target-kind"], "deployment");
    assert_eq!(labels["kubefence.dev/target-name"], "api");
    assert_eq!(labels["kubefence.dev/finding"], "ALERT-42");
    assert_eq!(labels["kubefence.dev/requested-by"], "alice");
    assert_eq!(labels["kubefence.dev/quarantined-at"], "20261124T234000Z");
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubefence.dev/reason"], "crypto miner");
    assert_eq!(ann["kubefence.dev/finding"], "ALERT-42");
    assert_eq!(ann["kubefence.dev/requested-by"], "alice");
    assert_eq!(ann["kubefence.dev/quarantined-at"], "2026-11-24T23:40:00Z");
    // The target was only read: never patched, never restarted.
    assert!(
        log.iter()
            .all(|s| !s.uri.contains("/deployments/") || s.method == "GET")
    );
}

#[tokio::test]
async fn applying_twice_succeeds_once() {
    let (client, fake) = with_api(app_api());
    assert_eq!(
        quarantine(&client, &api_target(), false).await.unwrap(),
        ApplyOutcome::Created
    );
    fake.take_log();
    assert_eq!(
        quarantine(&client, &api_target(), false).await.unwrap(),
        ApplyOutcome::AlreadyIsolated
    );
    let lines = fake.take_lines();
    assert_eq!(
        lines[9..],
        [format!("GET {NP}/kf-quarantine-deployment-api")],
        "read it → ours and as planned: success, nothing written"
    );
}

#[tokio::test]
async fn deployment_and_statefulset_named_alike_get_distinct_policies() {
    let (client, fake) = with_api(app_api());
    fake.add(&statefulset("shop", "api"));
    let sts = Target::new(WorkloadKind::StatefulSet, "shop", "api");
    quarantine(&client, &api_target(), false).await.unwrap();
    quarantine(&client, &sts, false).await.unwrap();
    let d = netpol_path("shop", "kf-quarantine-deployment-api");
    let s = netpol_path("shop", "kf-quarantine-statefulset-api");
    assert!(fake.get(&d).is_some() && fake.get(&s).is_some());
    assert_eq!(
        fake.get(&s).unwrap()["spec"]["podSelector"],
        json!({"matchLabels": {"app": "api", "kind": "sts"}})
    );

    fake.take_log();
    let uid = fake.get(&s).unwrap()["metadata"]["uid"].clone();
    let out = release(
        &rt(&client),
        &cfg(),
        &sts,
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap();
    assert_eq!(out, ReleaseOutcome::Released);
    let log = fake.take_log();
    assert_eq!(
        log.iter().map(|s| s.line()).collect::<Vec<_>>(),
        vec![
            format!("GET {NP}/kf-quarantine-statefulset-api"),
            format!("DELETE {NP}/kf-quarantine-statefulset-api?"),
            "POST /apis/events.k8s.io/v1/namespaces/shop/events?".to_string(),
        ]
    );
    assert_eq!(log[2].body.as_ref().unwrap()["reason"], "KubefenceReleased");
    // Deletes exactly the object it read and found ours.
    assert_eq!(log[1].body.as_ref().unwrap()["preconditions"]["uid"], uid);
    assert!(fake.get(&s).is_none());
    assert!(fake.get(&d).is_some(), "the Deployment's policy stays");
}

#[tokio::test]
async fn match_expressions_survive() {
    let selector = json!({
        "matchLabels": {"app": "api"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["back", "mid"]},
            {"key": "canary", "operator": "DoesNotExist"}
        ]
    });
    let (client, fake) = with_api(selector.clone());
    quarantine(&client, &api_target(), false).await.unwrap();
    let p = fake
        .get(&netpol_path("shop", "kf-quarantine-deployment-api"))
        .unwrap();
    // Sorted by key, values sorted: the same selector.
    assert_eq!(
        p["spec"]["podSelector"],
        json!({
            "matchLabels": {"app": "api"},
            "matchExpressions": [
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "In", "values": ["back", "mid"]}
            ]
        })
    );
}

#[tokio::test]
async fn an_empty_selector_is_refused_before_any_write() {
    let (client, fake) = with_api(json!({}));
    let err = quarantine(&client, &api_target(), false).await.unwrap_err();
    assert_eq!(err.reason(), "EmptySelector", "{err}");
    assert!(
        err.to_string().contains("Deployment/shop/api"),
        "names kind/namespace/name: {err}"
    );
    let lines = fake.take_lines();
    assert!(lines.iter().all(|l| l.starts_with("GET ")), "{lines:?}");
}

#[tokio::test]
async fn release_works_when_the_workload_is_gone() {
    let (client, fake) = with_api(app_api());
    quarantine(&client, &api_target(), false).await.unwrap();
    fake.delete_path("/apis/apps/v1/namespaces/shop/deployments/api");
    fake.take_log();
    let out = release(
        &rt(&client),
        &cfg(),
        &api_target(),
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap();
    assert_eq!(out, ReleaseOutcome::Released);
    let lines = fake.take_lines();
    assert!(
        lines.iter().all(|l| !l.contains("/deployments/")),
        "{lines:?}"
    );
    assert!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .is_none()
    );
}

#[tokio::test]
async fn release_with_the_policy_already_gone_is_success() {
    let (client, fake) = FakeApi::start();
    let out = release(
        &rt(&client),
        &cfg(),
        &api_target(),
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap();
    assert_eq!(out, ReleaseOutcome::NotQuarantined);
    assert_eq!(
        fake.take_lines(),
        vec![format!("GET {NP}/kf-quarantine-deployment-api")],
        "no DELETE"
    );
}

#[tokio::test]
async fn a_protected_namespace_makes_zero_api_requests() {
    let (client, fake) = FakeApi::start();
    let t = Target::new(WorkloadKind::DaemonSet, "kube-system", "kube-proxy");
    let err = plan(&rt(&client), &t, &audit(), Engine::NetworkPolicy, &cfg())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ProtectedNamespace");
    let err = release(
        &rt(&client),
        &cfg(),
        &t,
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "ProtectedNamespace");
    // The operator's own namespace, when configured.
    let mut own = cfg();
    own.protected_namespaces
        .insert("kubefence-system".to_string());
    let t = Target::new(WorkloadKind::Deployment, "kubefence-system", "x");
    assert!(
        plan(&rt(&client), &t, &audit(), Engine::Cilium, &own)
            .await
            .is_err()
    );
    drop(client);
    assert_eq!(fake.take_lines(), Vec::<String>::new());
}

#[tokio::test]
async fn a_same_named_foreign_policy_is_never_overwritten_nor_deleted() {
    let (client, fake) = with_api(app_api());
    let path = netpol_path("shop", "kf-quarantine-deployment-api");
    let foreign = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "kf-quarantine-deployment-api", "namespace": "shop",
                     "labels": {"team": "payments"}},
        "spec": {"podSelector": {}, "ingress": [{}]}
    });
    fake.insert(&path, foreign.clone());
    let err = quarantine(&client, &api_target(), false).await.unwrap_err();
    assert_eq!(err.reason(), "PolicyConflict");
    assert!(
        err.to_string()
            .contains("shop/kf-quarantine-deployment-api"),
        "{err}"
    );
    let err = release(
        &rt(&client),
        &cfg(),
        &api_target(),
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "PolicyConflict");
    let lines = fake.take_lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with("DELETE") && !l.starts_with("PUT") && !l.starts_with("PATCH")),
        "{lines:?}"
    );
    assert_eq!(
        fake.get(&path).unwrap()["metadata"]["labels"],
        foreign["metadata"]["labels"]
    );
}

#[tokio::test]
async fn a_default_install_answers_forbidden_and_mutates_nothing() {
    let (client, fake) = with_api(app_api());
    fake.forbid_writes(NP);
    let err = quarantine(&client, &api_target(), false).await.unwrap_err();
    assert_eq!(err.reason(), "Forbidden");
    assert!(
        err.to_string().contains("deploy/components/quarantine"),
        "{err}"
    );
    assert!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .is_none()
    );
}

#[tokio::test]
async fn the_plan_reports_paths_left_open_by_other_policies() {
    let (client, fake) = with_api(app_api());
    fake.add(&allow_ingress_from_web("shop"));
    let (p, _) = plan(
        &rt(&client),
        &api_target(),
        &audit(),
        Engine::NetworkPolicy,
        &cfg(),
    )
    .await
    .unwrap();
    assert!(!p.effective());
    let open: Vec<String> = p.open_paths().map(ToString::to_string).collect();
    assert_eq!(
        open,
        vec![
            "ingress from podSelector app=web on TCP/8080 (policy shop/api-from-web, spec.ingress[0])"
        ]
    );
    let (p, _) = plan(
        &rt(&client),
        &api_target(),
        &audit(),
        Engine::Cilium,
        &cfg(),
    )
    .await
    .unwrap();
    assert!(p.effective(), "Cilium's deny overrides the allow");
}

#[tokio::test]
async fn cilium_and_anp_write_their_own_kinds() {
    let (client, fake) = with_api(app_api());
    for engine in [Engine::Cilium, Engine::AdminNetworkPolicy] {
        let (p, _) = plan(&rt(&client), &api_target(), &audit(), engine, &cfg())
            .await
            .unwrap();
        apply(&rt(&client), &p, false, &Holder::Cli).await.unwrap();
    }
    let cnp = fake
        .get(
            "/apis/cilium.io/v2/namespaces/shop/ciliumnetworkpolicies/kf-quarantine-deployment-api",
        )
        .expect("CiliumNetworkPolicy");
    assert_eq!(cnp["spec"]["endpointSelector"], app_api());
    assert_eq!(
        cnp["spec"]["ingressDeny"],
        json!([
            {"fromEndpoints": [{"matchExpressions": [
                {"key": "io.kubernetes.pod.namespace", "operator": "Exists"}
            ]}]},
            {"fromEntities": ["world", "remote-node", "ingress", "health", "init", "unmanaged"]}
        ]),
        "everything but the pod's own node: kubelet probes keep passing"
    );
    assert_eq!(cnp["spec"]["egressDeny"], json!([{"toEntities": ["all"]}]));
    let anp_name = api_target().cluster_scoped_name();
    let anp = fake
        .get(&format!(
            "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies/{anp_name}"
        ))
        .expect("AdminNetworkPolicy");
    assert_eq!(anp["spec"]["priority"], 0);
    assert_eq!(anp["spec"]["ingress"][0]["action"], "Deny");
    assert_eq!(anp["spec"]["subject"]["pods"]["podSelector"], app_api());
}

// === the Quarantine resource ===

fn quarantine_object(dry_run: bool) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "Quarantine",
        "metadata": {"name": "incident-7", "namespace": "shop", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"target": {"kind": "Deployment", "name": "api"}, "reason": "crypto miner",
                 "findingRef": "ALERT-42", "dryRun": dry_run}
    })
}

fn read_q(fake: &FakeApi) -> Quarantine {
    serde_json::from_value(fake.get(&quarantine_path("shop", "incident-7")).unwrap()).unwrap()
}

fn condition(q: &Quarantine, type_: &str) -> (String, String) {
    let c = q
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn the_quarantine_resource_goes_through_planned_isolated_released() {
    let (client, fake) = with_api(app_api());
    let qpath = quarantine_path("shop", "incident-7");
    fake.insert(&qpath, quarantine_object(true));
    let ctx = quarantines(client.clone());
    let policy = netpol_path("shop", "kf-quarantine-deployment-api");

    // Dry run: Planned, nothing written but the status.
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    let q = read_q(&fake);
    let status = q.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Planned));
    assert_eq!(
        status.policy_name.as_deref(),
        Some("NetworkPolicy/kf-quarantine-deployment-api")
    );
    assert_eq!(status.selector.as_deref(), Some("app=api"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&q, "Ready"), ("False".into(), "DryRun".into()));
    assert_eq!(
        condition(&q, "Effective"),
        ("False".into(), "DryRun".into())
    );
    assert!(fake.get(&policy).is_none());
    let lines = fake.take_lines();
    assert!(lines.iter().any(|l| l.contains("dryRun=All")), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("/events")),
        "no event for a dry run"
    );

    // A resync of the unchanged object writes nothing but the dry run.
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    let lines = fake.take_lines();
    assert!(!lines.iter().any(|l| l.contains("/status")), "{lines:?}");

    // Confirmed: Isolated, Ready and Effective, one Event on the target.
    let mut obj = fake.get(&qpath).unwrap();
    obj["spec"]["dryRun"] = json!(false);
    obj["metadata"]["generation"] = json!(2);
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Isolated));
    assert_eq!(condition(&q, "Ready"), ("True".into(), "Isolated".into()));
    assert_eq!(
        condition(&q, "Effective"),
        ("True".into(), "NoPathRemains".into())
    );
    let p = fake.get(&policy).expect("policy created");
    assert!(
        p["metadata"]["annotations"]["kubefence.dev/requested-by"]
            .as_str()
            .unwrap()
            .starts_with("kubefence-operator for Quarantine shop/incident-7")
    );
    let log = fake.take_log();
    let events: Vec<&Value> = log
        .iter()
        .filter(|s| {
            s.uri
                .starts_with("/apis/events.k8s.io/v1/namespaces/shop/events")
        })
        .filter_map(|s| s.body.as_ref())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "KubefenceQuarantined");
    assert_eq!(events[0]["regarding"]["kind"], "Deployment");
    assert_eq!(events[0]["regarding"]["name"], "api");

    // Deleted: the finalizer releases, then lets the object go.
    let mut obj = fake.get(&qpath).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:50:00Z");
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    assert!(fake.get(&policy).is_none(), "released");
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Released));
    assert_eq!(condition(&q, "Ready"), ("False".into(), "Released".into()));
    assert!(q.metadata.finalizers.unwrap_or_default().is_empty());
    let log = fake.take_log();
    let reasons: Vec<&Value> = log
        .iter()
        .filter(|s| s.uri.contains("/events"))
        .filter_map(|s| s.body.as_ref().map(|b| &b["reason"]))
        .collect();
    assert_eq!(reasons, vec!["KubefenceReleased"]);
}

#[tokio::test]
async fn without_the_opt_in_rights_a_quarantine_fails_and_can_still_be_deleted() {
    // A default install: the operator may list policies and write
    // Quarantines, but not read targets nor read or write policies.
    let (client, fake) = with_api(app_api());
    fake.forbid("/apis/apps/v1/namespaces/shop/deployments/");
    fake.forbid(&format!("{NP}/"));
    fake.forbid_writes(NP);
    let qpath = quarantine_path("shop", "incident-7");
    fake.insert(&qpath, quarantine_object(false));
    let ctx = quarantines(client);
    let policy = netpol_path("shop", "kf-quarantine-deployment-api");

    let _ = reconcile(Arc::new(read_q(&fake)), ctx.clone()).await;
    let q = read_q(&fake);
    let status = q.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let ready = condition(&q, "Ready");
    assert_eq!(ready.0, "False");
    assert!(fake.get(&policy).is_none());
    let writes: Vec<String> = fake
        .take_lines()
        .into_iter()
        .filter(|l| !l.starts_with("GET "))
        .filter(|l| !l.contains("/quarantines/") && !l.contains("/events"))
        .collect();
    assert!(writes.is_empty(), "nothing but the Quarantine: {writes:?}");

    // Deleting it does not hang on the finalizer: nothing was isolated.
    let mut obj = fake.get(&qpath).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:50:00Z");
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let q = read_q(&fake);
    assert!(q.metadata.finalizers.unwrap_or_default().is_empty());
    assert!(fake.get(&policy).is_none());
}

#[tokio::test]
async fn a_quarantine_with_an_open_path_is_not_effective() {
    let (client, fake) = with_api(app_api());
    fake.add(&allow_ingress_from_web("shop"));
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let ctx = quarantines(client);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let q = read_q(&fake);
    let status = q.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Isolated));
    assert_eq!(
        condition(&q, "Effective"),
        ("False".into(), "PathsRemain".into())
    );
    assert_eq!(status.remaining_paths.len(), 1);
    assert_eq!(status.remaining_paths[0].policy, "shop/api-from-web");
    assert_eq!(status.remaining_paths[0].rule, "spec.ingress[0]");
    assert_eq!(status.remaining_paths[0].ports, "TCP/8080");
}

#[tokio::test]
async fn a_quarantine_in_a_protected_namespace_fails_without_touching_policies() {
    let (client, fake) = FakeApi::start();
    let mut obj = quarantine_object(false);
    obj["metadata"]["namespace"] = json!("kube-system");
    let qpath = quarantine_path("kube-system", "incident-7");
    fake.insert(&qpath, obj);
    let ctx = quarantines(client);
    let q: Quarantine = serde_json::from_value(fake.get(&qpath).unwrap()).unwrap();
    reconcile(Arc::new(q), ctx).await.unwrap();
    let lines = fake.take_lines();
    assert_eq!(
        lines,
        vec![format!(
            "PATCH {qpath}/status?&force=true&fieldManager=kubefence"
        )]
    );
    let q: Quarantine = serde_json::from_value(fake.get(&qpath).unwrap()).unwrap();
    assert_eq!(q.status.unwrap().phase, Some(Phase::Failed));
}

#[tokio::test]
async fn a_new_quarantine_first_gets_the_finalizer() {
    let (client, fake) = with_api(app_api());
    let mut obj = quarantine_object(true);
    // The API server stores no empty list (omitempty): the finalizer
    // patch tests for its absence.
    obj["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    let qpath = quarantine_path("shop", "incident-7");
    fake.insert(&qpath, obj);
    let ctx = quarantines(client);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let lines = fake.take_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(&format!("PATCH {qpath}")), "{lines:?}");
    assert_eq!(
        read_q(&fake).metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
}

#[tokio::test]
async fn a_release_dry_run_sends_dry_run_all_and_keeps_the_policy() {
    let (client, fake) = with_api(app_api());
    quarantine(&client, &api_target(), false).await.unwrap();
    fake.take_log();
    let out = release(
        &rt(&client),
        &cfg(),
        &api_target(),
        Engine::NetworkPolicy,
        true,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap();
    assert_eq!(out, ReleaseOutcome::Released);
    let log = fake.take_log();
    assert_eq!(
        log.iter().map(|s| s.line()).collect::<Vec<_>>(),
        vec![
            format!("GET {NP}/kf-quarantine-deployment-api"),
            format!("DELETE {NP}/kf-quarantine-deployment-api?"),
        ]
    );
    // kube sends a delete's dryRun in DeleteOptions, which the API server
    // honours as it does `?dryRun=All`.
    assert_eq!(log[1].body.as_ref().unwrap()["dryRun"], json!(["All"]));
    assert!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .is_some()
    );
}

async fn isolated(fake: &FakeApi, ctx: &Arc<Quarantines>) {
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    reconcile(Arc::new(read_q(fake)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(read_q(fake).status.unwrap().phase, Some(Phase::Isolated));
    fake.take_log();
}

fn edit_spec(fake: &FakeApi, field: &str, value: Value) {
    let qpath = quarantine_path("shop", "incident-7");
    let mut obj = fake.get(&qpath).unwrap();
    obj["spec"][field] = value;
    obj["metadata"]["generation"] = json!(obj["metadata"]["generation"].as_i64().unwrap() + 1);
    fake.insert(&qpath, obj);
}

#[tokio::test]
async fn changing_the_engine_replaces_the_policy_without_a_gap() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    isolated(&fake, &ctx).await;
    edit_spec(&fake, "engine", json!("cilium"));
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let lines = fake.take_lines();
    let create = lines
        .iter()
        .position(|l| {
            l.starts_with("PATCH /apis/cilium.io/v2/namespaces/shop/ciliumnetworkpolicies/")
        })
        .expect("CiliumNetworkPolicy created");
    let delete = lines
        .iter()
        .position(|l| l.starts_with(&format!("DELETE {NP}/kf-quarantine-deployment-api")))
        .expect("the NetworkPolicy released");
    assert!(create < delete, "the new policy exists first: {lines:?}");
    let q = read_q(&fake);
    assert_eq!(
        q.status.unwrap().policy_name.as_deref(),
        Some("CiliumNetworkPolicy/kf-quarantine-deployment-api")
    );
}

#[tokio::test]
async fn back_to_dry_run_releases_and_plans() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    isolated(&fake, &ctx).await;
    edit_spec(&fake, "dryRun", json!(true));
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    assert!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .is_none()
    );
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Planned));
    assert_eq!(condition(&q, "Ready"), ("False".into(), "DryRun".into()));
}

#[tokio::test]
async fn an_unreadable_policy_makes_the_plan_not_effective() {
    let (client, fake) = with_api(app_api());
    fake.insert(
        &netpol_path("shop", "odd"),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "odd", "namespace": "shop"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}
        }),
    );
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let ctx = quarantines(client);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Isolated));
    assert_eq!(
        condition(&q, "Effective"),
        ("False".into(), "UnreadablePolicies".into())
    );
}

#[tokio::test]
async fn deleting_one_of_two_quarantines_of_a_workload_keeps_it_isolated() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    let policy = netpol_path("shop", "kf-quarantine-deployment-api");
    let mut second = quarantine_object(false);
    second["metadata"]["name"] = json!("incident-8");
    let second_path = quarantine_path("shop", "incident-8");
    fake.insert(&second_path, second);
    isolated(&fake, &ctx).await;
    let q8: Quarantine = serde_json::from_value(fake.get(&second_path).unwrap()).unwrap();
    reconcile(Arc::new(q8), ctx.clone()).await.unwrap();

    // incident-7 goes; incident-8 still wants the workload isolated.
    let qpath = quarantine_path("shop", "incident-7");
    let mut obj = fake.get(&qpath).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:50:00Z");
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    assert!(fake.get(&policy).is_some(), "still isolated by incident-8");
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Released));
    assert!(q.metadata.finalizers.unwrap_or_default().is_empty());
    fake.delete_path(&qpath);

    // incident-8 goes: now the policy is released.
    let mut obj = fake.get(&second_path).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:55:00Z");
    fake.insert(&second_path, obj);
    let q8: Quarantine = serde_json::from_value(fake.get(&second_path).unwrap()).unwrap();
    reconcile(Arc::new(q8), ctx).await.unwrap();
    assert!(fake.get(&policy).is_none());
}

// === ownership: recorded on the object, never read from a status ===

fn quarantine_uid(fake: &FakeApi) -> String {
    read_q(fake).metadata.uid.unwrap()
}

#[tokio::test]
async fn the_policy_records_the_quarantine_that_holds_it() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    isolated(&fake, &ctx).await;
    let p = fake
        .get(&netpol_path("shop", "kf-quarantine-deployment-api"))
        .unwrap();
    assert_eq!(
        p["metadata"]["labels"]["kubefence.dev/quarantine-uid"],
        json!(quarantine_uid(&fake))
    );
}

#[tokio::test]
async fn a_forged_status_never_deletes_another_namespaces_admin_network_policy() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    // Another team's quarantine of their own `api`, cluster-scoped, with
    // every label kubefence sets.
    let theirs = Target::new(WorkloadKind::Deployment, "payments", "api");
    let anp_name = theirs.cluster_scoped_name();
    let anp_path =
        format!("/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies/{anp_name}");
    fake.insert(
        &anp_path,
        json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy",
            "metadata": {"name": anp_name, "labels": {
                "app.kubernetes.io/managed-by": "kubefence",
                "kubefence.dev/source": "quarantine",
                "kubefence.dev/quarantine-uid": "uid-of-their-quarantine"},
                "annotations": {"kubefence.dev/target": theirs.id()}},
            "spec": {"priority": 0}
        }),
    );
    // A Quarantine in shop whose status someone with status rights edited
    // to name that object.
    let mut q = quarantine_object(false);
    q["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:50:00Z");
    q["status"] = json!({"phase": "Isolated",
                         "policyName": format!("AdminNetworkPolicy/{anp_name}")});
    fake.insert(&quarantine_path("shop", "incident-7"), q);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    assert!(
        fake.get(&anp_path).is_some(),
        "not this Quarantine's to delete"
    );
    let deletes: Vec<String> = fake
        .take_lines()
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert!(
        deletes.iter().all(|l| !l.contains("adminnetworkpolicies")),
        "{deletes:?}"
    );
}

#[tokio::test]
async fn a_policy_that_merely_carries_kubefences_labels_is_not_a_quarantines() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    let path = netpol_path("shop", "kf-quarantine-deployment-api");
    // Made by someone else (or by the CLI) with kubefence's labels, no uid.
    let planted = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "kf-quarantine-deployment-api", "namespace": "shop",
                     "labels": {"app.kubernetes.io/managed-by": "kubefence",
                                "kubefence.dev/source": "quarantine"},
                     "annotations": {"kubefence.dev/target": "Deployment/shop/api"}},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{}]}
    });
    fake.insert(&path, planted.clone());
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let err = reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "PolicyConflict", "retried with backoff");
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Failed));
    assert_eq!(condition(&q, "Ready").1, "PolicyConflict");

    // Deleting the Quarantine leaves it alone.
    let qpath = quarantine_path("shop", "incident-7");
    let mut obj = fake.get(&qpath).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-24T23:50:00Z");
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let p = fake.get(&path).expect("never deleted");
    assert_eq!(p["spec"], planted["spec"], "never rewritten");
    let writes: Vec<String> = fake
        .take_lines()
        .into_iter()
        .filter(|l| l.contains("/networkpolicies/") && !l.starts_with("GET"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn the_cli_does_not_release_a_policy_a_quarantine_resource_holds() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client.clone());
    isolated(&fake, &ctx).await;
    let err = release(
        &rt(&client),
        &cfg(),
        &api_target(),
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "alice",
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "HeldByQuarantine", "{err}");
    assert!(err.to_string().contains(&quarantine_uid(&fake)), "{err}");
    assert!(
        fake.get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .is_some()
    );
}

// === collateral: the pods a plan selects beyond the target's own ===

fn pod(name: &str, owner: Option<(&str, &str, &str)>, labels: Value) -> (String, Value) {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "uid": format!("uid-pod-{name}")},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    });
    if let Some((kind, owner_name, uid)) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": owner_name, "uid": uid, "controller": true}]);
    }
    (format!("/api/v1/namespaces/shop/pods/{name}"), p)
}

/// A Deployment `api` (uid-deploy) with ReplicaSet api-7d9f and two pods,
/// plus, when `stranger`, a bare pod with the same labels.
fn api_with_pods(fake: &FakeApi, stranger: bool) {
    let mut d = deployment_selecting("shop", "api", app_api());
    d.metadata.uid = Some("uid-deploy".into());
    fake.add(&d);
    fake.insert(
        "/apis/apps/v1/namespaces/shop/replicasets/api-7d9f",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "api-7d9f", "namespace": "shop", "uid": "uid-rs",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "api", "uid": "uid-deploy", "controller": true}]},
               "spec": {"selector": {"matchLabels": {"app": "api", "pod-template-hash": "7d9f"}},
                        "template": {"metadata": {"labels": {"app": "api", "pod-template-hash": "7d9f"}},
                                     "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
    );
    let labels = json!({"app": "api", "pod-template-hash": "7d9f"});
    for name in ["api-7d9f-aaaaa", "api-7d9f-bbbbb"] {
        let (path, p) = pod(
            name,
            Some(("ReplicaSet", "api-7d9f", "uid-rs")),
            labels.clone(),
        );
        fake.insert(&path, p);
    }
    if stranger {
        let (path, p) = pod("debug", None, json!({"app": "api"}));
        fake.insert(&path, p);
    }
}

#[tokio::test]
async fn a_pod_quarantine_that_would_isolate_its_siblings_is_refused_before_any_write() {
    let (client, fake) = FakeApi::start();
    api_with_pods(&fake, false);
    let mut q = quarantine_object(false);
    q["spec"]["target"] = json!({"kind": "Pod", "name": "api-7d9f-aaaaa"});
    fake.insert(&quarantine_path("shop", "incident-7"), q);
    let ctx = quarantines(client);
    let err = reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Collateral", "retried with backoff");
    let status = read_q(&fake);
    assert_eq!(status.status.as_ref().unwrap().phase, Some(Phase::Failed));
    assert_eq!(condition(&status, "Ready").1, "Collateral");
    let message = status.status.as_ref().unwrap().conditions[1]
        .message
        .clone();
    assert!(message.contains("picks 2 pod(s), only 1"), "{message}");
    assert!(message.contains("api-7d9f-bbbbb"), "{message}");
    let writes: Vec<String> = fake
        .take_lines()
        .into_iter()
        .filter(|l| l.contains("networkpolicies") && !l.starts_with("GET"))
        .collect();
    assert!(writes.is_empty(), "refused before any write: {writes:?}");

    // Allowed explicitly: isolated, and the status says how many pods.
    let qpath = quarantine_path("shop", "incident-7");
    let mut obj = fake.get(&qpath).unwrap();
    obj["spec"]["allowCollateral"] = json!(true);
    fake.insert(&qpath, obj);
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let q = read_q(&fake);
    let status = q.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Isolated));
    assert!(
        status
            .plan
            .unwrap()
            .contains("2 pod(s) (1 of the target's own)"),
        "the count is reported"
    );
}

#[tokio::test]
async fn a_deployment_quarantine_selects_its_own_pods_and_refuses_a_stranger() {
    let (client, fake) = FakeApi::start();
    api_with_pods(&fake, false);
    let (p, reference) = plan(
        &rt(&client),
        &api_target(),
        &audit(),
        Engine::NetworkPolicy,
        &cfg(),
    )
    .await
    .unwrap();
    let selection = selected_pods(&rt(&client), &p, reference.uid.as_deref())
        .await
        .unwrap();
    assert_eq!((selection.selected, selection.own), (2, 2));
    assert!(check_collateral(&p, &selection, false).is_ok());

    let (path, stranger) = pod("debug", None, json!({"app": "api"}));
    fake.insert(&path, stranger);
    let selection = selected_pods(&rt(&client), &p, reference.uid.as_deref())
        .await
        .unwrap();
    assert_eq!((selection.selected, selection.own), (3, 2));
    assert_eq!(selection.others, vec!["debug".to_string()]);
    let err = check_collateral(&p, &selection, false).unwrap_err();
    assert_eq!(err.reason(), "Collateral");
}

// === drift of the quarantine policy ===

fn widen_quarantine_policy(fake: &FakeApi) {
    let path = netpol_path("shop", "kf-quarantine-deployment-api");
    let mut p = fake.get(&path).unwrap();
    p["spec"]["ingress"] = json!([{}]);
    fake.insert(&path, p);
}

#[tokio::test]
async fn a_hand_edited_quarantine_policy_is_restored() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    isolated(&fake, &ctx).await;
    let path = netpol_path("shop", "kf-quarantine-deployment-api");
    let before = fake.get(&path).unwrap();
    widen_quarantine_policy(&fake);
    let edited_rv = fake.get(&path).unwrap()["metadata"]["resourceVersion"].clone();
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let after = fake.get(&path).unwrap();
    assert_eq!(after["spec"], before["spec"], "allows nothing again");
    assert_eq!(
        after["metadata"]["annotations"]["kubefence.dev/quarantined-at"],
        before["metadata"]["annotations"]["kubefence.dev/quarantined-at"],
        "the audit trail is kept as first written"
    );
    let applies: Vec<Recorded> = fake
        .take_log()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.uri.contains("/networkpolicies/"))
        .collect();
    assert_eq!(applies.len(), 1);
    assert!(applies[0].uri.contains("force=true"), "{}", applies[0].uri);
    assert_eq!(
        applies[0].body.as_ref().unwrap()["metadata"]["resourceVersion"],
        edited_rv,
        "applied on exactly the version read"
    );
    let q = read_q(&fake);
    assert_eq!(condition(&q, "Ready"), ("True".into(), "Isolated".into()));
}

#[tokio::test]
async fn a_drifted_policy_that_cannot_be_repaired_is_reported() {
    let (client, fake) = with_api(app_api());
    let ctx = quarantines(client);
    isolated(&fake, &ctx).await;
    widen_quarantine_policy(&fake);
    fake.forbid_writes(&netpol_path("shop", "kf-quarantine-deployment-api"));
    let err = reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap_err();
    assert_eq!(err.reason(), "Drifted", "retried with backoff");
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Isolated));
    assert_eq!(condition(&q, "Ready"), ("False".into(), "Drifted".into()));
    assert_eq!(
        condition(&q, "Effective"),
        ("False".into(), "Drifted".into())
    );
}

// === defect 10: backoff, the runtime's recorder and metrics, retry on target change ===

#[tokio::test]
async fn failures_back_off_exponentially_per_quarantine_and_a_success_resets() {
    let (client, fake) = with_api(app_api());
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let ctx = quarantines(client);
    let q = Arc::new(read_q(&fake));
    let err = Error::TargetNotFound {
        target: "Deployment/shop/api".into(),
    };
    let delays: Vec<Action> = (0..4)
        .map(|_| error_policy(q.clone(), &err, ctx.clone()))
        .collect();
    let secs = |s| Action::requeue(std::time::Duration::from_secs(s));
    assert_eq!(delays, vec![secs(1), secs(2), secs(4), secs(8)]);
    // Another Quarantine has its own count.
    let mut other = (*q).clone();
    other.metadata.name = Some("incident-8".into());
    assert_eq!(error_policy(Arc::new(other), &err, ctx.clone()), secs(1));
    // Capped at five minutes.
    for _ in 0..20 {
        error_policy(q.clone(), &err, ctx.clone());
    }
    assert_eq!(error_policy(q.clone(), &err, ctx.clone()), secs(300));
    // A reconcile that succeeds starts over.
    reconcile(q.clone(), ctx.clone()).await.unwrap();
    assert_eq!(error_policy(q, &err, ctx), secs(1));
}

#[tokio::test]
async fn reconciles_errors_and_writes_are_counted_in_the_runtime_metrics() {
    let (client, fake) = with_api(app_api());
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let ctx = quarantines(client);
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    fake.forbid_writes(&netpol_path("shop", "kf-quarantine-deployment-api"));
    widen_quarantine_policy(&fake);
    reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap_err();
    let text = ctx.ctx.metrics.encode();
    for needle in [
        "kubefence_reconciles_total{controller=\"quarantine\"} 2",
        "kubefence_reconcile_errors_total{controller=\"quarantine\",error=\"drifted\"} 1",
        "kubefence_reconcile_duration_seconds_count{controller=\"quarantine\"} 2",
        "kubefence_api_writes_total{verb=\"apply\",resource=\"networkpolicies\"} 2",
        "kubefence_api_writes_total{verb=\"apply\",resource=\"quarantines/status\"} 2",
        "kubefence_api_writes_total{verb=\"create\",resource=\"events\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}

#[tokio::test]
async fn events_come_from_the_runtime_recorder_with_this_replicas_identity() {
    let (client, fake) = with_api(app_api());
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let config = crate::OperatorConfig {
        identity: "kubefence-7f9c-abcde".into(),
        ..crate::OperatorConfig::default()
    };
    let rt = Arc::new(crate::Context::with_client(client, config));
    let ctx = Arc::new(Quarantines::new(rt, cfg()));
    reconcile(Arc::new(read_q(&fake)), ctx).await.unwrap();
    let events: Vec<Value> = fake
        .take_log()
        .into_iter()
        .filter(|s| s.uri.contains("/events"))
        .filter_map(|s| s.body)
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "KubefenceQuarantined");
    assert_eq!(events[0]["reportingController"], "kubefence");
    assert_eq!(events[0]["reportingInstance"], "kubefence-7f9c-abcde");
}

/// A Quarantine whose last reconcile failed with `reason`, as the store
/// holds it.
fn failed_with(fake: &FakeApi, target: Value, reason: &str) -> Quarantine {
    let mut q = quarantine_object(false);
    q["spec"]["target"] = target;
    q["status"] = json!({"phase": "Failed", "conditions": [{
        "type": "Ready", "status": "False", "reason": reason, "message": "m",
        "lastTransitionTime": "2026-11-24T23:40:00Z"}]});
    fake.insert(&quarantine_path("shop", "incident-7"), q);
    read_q(fake)
}

fn dynamic(kind: &str, ns: &str, name: &str) -> kube::api::DynamicObject {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}}))
    .unwrap()
}

#[tokio::test]
async fn a_change_of_the_target_wakes_a_quarantine_that_waits_for_it() {
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    let (_, fake) = FakeApi::start();
    let (store, mut writer) = reflector::store::<Quarantine>();
    let pod = json!({"kind": "Pod", "name": "debug"});
    let q = failed_with(&fake, pod.clone(), "EmptySelector");
    writer.apply_watcher_event(&Event::Apply(q.clone()));
    let woken = waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "shop", "debug"));
    assert_eq!(woken, vec![ObjectRef::from_obj(&q)]);
    // Not another pod, not the same name in another namespace or kind.
    assert!(waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "shop", "other")).is_empty());
    assert!(waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "web", "debug")).is_empty());
    assert!(
        waiting_for(
            &store,
            WorkloadKind::Deployment,
            &dynamic("Deployment", "shop", "debug")
        )
        .is_empty()
    );
    // A missing target is waited for too; any other state is not (an
    // isolated target's pods change all the time).
    let q = failed_with(&fake, pod.clone(), "TargetNotFound");
    writer.apply_watcher_event(&Event::Apply(q));
    assert_eq!(
        waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "shop", "debug")).len(),
        1
    );
    let q = failed_with(&fake, pod, "Collateral");
    writer.apply_watcher_event(&Event::Apply(q));
    assert!(waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "shop", "debug")).is_empty());
}

#[tokio::test]
async fn an_empty_selector_is_retried_once_the_target_has_labels() {
    let (client, fake) = FakeApi::start();
    let (path, bare) = pod("debug", None, json!({}));
    fake.insert(&path, bare);
    let mut q = quarantine_object(false);
    q["spec"]["target"] = json!({"kind": "Pod", "name": "debug"});
    fake.insert(&quarantine_path("shop", "incident-7"), q);
    let ctx = quarantines(client);
    let action = reconcile(Arc::new(read_q(&fake)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change(), "no blind retries");
    let q = read_q(&fake);
    assert_eq!(condition(&q, "Ready").1, "EmptySelector");
    assert!(waits_for_target_label(&q));
    // Labelled: the watch wakes it, and the reconcile isolates.
    let (path, labelled) = pod("debug", None, json!({"app": "debug"}));
    fake.insert(&path, labelled);
    reconcile(Arc::new(q), ctx).await.unwrap();
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Isolated));
    assert!(!waits_for_target_label(&q));
}

/// Whether the target watch would wake `q` on a change of pod `debug`.
fn waits_for_target_label(q: &Quarantine) -> bool {
    let (store, mut writer) = kube::runtime::reflector::store::<Quarantine>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(q.clone()));
    !waiting_for(&store, WorkloadKind::Pod, &dynamic("Pod", "shop", "debug")).is_empty()
}

// === issue 9 leftover: the online plan says which other workloads it isolates ===

#[tokio::test]
async fn the_online_plan_names_the_other_workloads_the_selector_also_matches() {
    let (client, fake) = with_api(app_api());
    // A canary whose pods carry app=api too; a worker that does not; a
    // ReplicaSet of the api Deployment (part of it, not another workload).
    let mut canary = serde_json::to_value(deployment_selecting(
        "shop",
        "api-canary",
        json!({"matchLabels": {"track": "canary"}}),
    ))
    .unwrap();
    canary["spec"]["template"]["metadata"]["labels"] = json!({"app": "api", "track": "canary"});
    fake.add(&canary);
    fake.add(&deployment_selecting(
        "shop",
        "worker",
        json!({"matchLabels": {"app": "worker"}}),
    ));
    fake.insert(
        "/apis/apps/v1/namespaces/shop/replicasets/api-7d9f",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "api-7d9f", "namespace": "shop",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "api", "uid": "u", "controller": true}]},
               "spec": {"selector": {"matchLabels": {"app": "api"}},
                        "template": {"metadata": {"labels": {"app": "api"}},
                                     "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
    );
    let (p, _) = plan(
        &rt(&client),
        &api_target(),
        &audit(),
        Engine::NetworkPolicy,
        &cfg(),
    )
    .await
    .unwrap();
    assert_eq!(
        p.also_selects,
        vec!["shop/Deployment/api-canary".to_string()]
    );
}

// === faults: timeouts, 409/429/500 ===

/// The Quarantine controller over the fake with a short API timeout.
fn quarantines_with_timeout(client: Client, timeout: std::time::Duration) -> Arc<Quarantines> {
    let config = crate::OperatorConfig {
        api_timeout: timeout,
        ..crate::OperatorConfig::default()
    };
    let rt = Arc::new(crate::Context::with_client(client, config));
    Arc::new(Quarantines::new(rt, cfg()))
}

#[tokio::test]
async fn a_hung_api_call_times_out_and_is_retried_with_backoff() {
    let (client, fake) = with_api(app_api());
    fake.insert(
        &quarantine_path("shop", "incident-7"),
        quarantine_object(false),
    );
    let ctx = quarantines_with_timeout(client, std::time::Duration::from_millis(200));
    // The API server stops answering reads of the target.
    fake.hang("/apis/apps/v1/namespaces/shop/deployments/api");
    let reconciled = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reconcile(Arc::new(read_q(&fake)), ctx.clone()),
    )
    .await
    .expect("a reconcile never hangs on a call");
    let err = reconciled.unwrap_err();
    assert_eq!(err.reason(), "Timeout", "{err}");
    assert_eq!(
        error_policy(Arc::new(read_q(&fake)), &err, ctx.clone()),
        Action::requeue(std::time::Duration::from_secs(1))
    );
    let q = read_q(&fake);
    assert_eq!(q.status.as_ref().unwrap().phase, Some(Phase::Failed));
    assert_eq!(condition(&q, "Ready").1, "Timeout");
    assert!(ctx.ctx.metrics.encode().contains(
        "kubefence_reconcile_errors_total{controller=\"quarantine\",error=\"timeout\"} 1"
    ));
}

#[tokio::test]
async fn a_quarantine_converges_through_injected_faults() {
    for seed in [1, 7, 42] {
        let (client, fake) = with_api(app_api());
        fake.insert(
            &quarantine_path("shop", "incident-7"),
            quarantine_object(false),
        );
        // A reconcile makes some fifteen calls: one in ten fails.
        let fake = fake.with_faults(0.1, seed);
        let ctx = quarantines_with_timeout(client, std::time::Duration::from_millis(100));
        let mut failures = 0;
        let mut isolated = false;
        for _ in 0..60 {
            // A fault may hit the read of the Quarantine itself.
            let Some(q) = fake.get(&quarantine_path("shop", "incident-7")) else {
                break;
            };
            let q: Quarantine = serde_json::from_value(q).unwrap();
            if q.status.as_ref().and_then(|s| s.phase) == Some(Phase::Isolated)
                && condition(&q, "Ready").0 == "True"
            {
                isolated = true;
                break;
            }
            match reconcile(Arc::new(q), ctx.clone()).await {
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    assert!(
                        matches!(
                            e.metric_label().as_str(),
                            "api_409" | "api_429" | "api_500" | "timeout"
                        ),
                        "only injected faults: {}",
                        e.full_message()
                    );
                }
            }
        }
        assert!(isolated, "seed {seed}: not isolated after 60 reconciles");
        assert!(failures > 0, "seed {seed}: no fault was injected");
        fake.heal();
        // Exactly one policy, denying everything; a timed-out write that
        // did happen left no second object and no stray manager.
        let policies = fake.policies();
        assert_eq!(policies.len(), 1, "seed {seed}: {:?}", policies.keys());
        let p = fake
            .get(&netpol_path("shop", "kf-quarantine-deployment-api"))
            .unwrap();
        assert_eq!(p["spec"]["ingress"], json!([]));
        assert_eq!(p["spec"]["egress"], json!([]));
        let managers: Vec<&Value> = p["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["manager"])
            .collect();
        assert_eq!(managers, vec!["kubefence"], "seed {seed}");
    }
}
