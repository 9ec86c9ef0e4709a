//! The reconcile logic against the fake API server (one pass at a time),
//! and the whole controller loop driven by synthetic watch streams.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher::Event;
use kubefence_core::model::WorkloadKind;
use serde_json::json;
use tokio::sync::{mpsc, watch as tokio_watch};

use super::state::Kind;
use super::watch::{change, changes};
use super::*;
use crate::context::{Context, OperatorConfig};
use crate::fake::{FakeApi, Recorded};
use crate::fixtures::{self, World};
use crate::metrics::Metrics;

const DEPLOYMENT: Kind = Kind::Workload(WorkloadKind::Deployment);

struct Harness {
    fake: FakeApi,
    ctx: Arc<Context>,
    leader: tokio_watch::Sender<bool>,
    shutdown: tokio_watch::Sender<bool>,
}

fn harness(fake_faults: Option<(f64, u64)>) -> Harness {
    let (client, fake) = FakeApi::start();
    let fake = match fake_faults {
        Some((rate, seed)) => fake.with_faults(rate, seed),
        None => fake,
    };
    let config = OperatorConfig {
        leader_election: false,
        resync: Duration::from_secs(60),
        ..OperatorConfig::default()
    }
    .normalized();
    let (leader, leader_rx) = tokio_watch::channel(true);
    let (shutdown, shutdown_rx) = tokio_watch::channel(false);
    let ctx = Arc::new(Context::new(
        client,
        config,
        Arc::new(Metrics::default()),
        leader_rx,
        shutdown_rx,
    ));
    Harness {
        fake,
        ctx,
        leader,
        shutdown,
    }
}

/// shop (opted in): web → Service api → api (8080); db (5432) unused.
fn shop() -> World {
    World {
        namespaces: vec![
            fixtures::namespace("shop", true),
            fixtures::namespace("other", false),
        ],
        deployments: vec![
            fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://api:80")], &[]),
            fixtures::deployment("shop", "api", &[], &[("http", 8080)]),
            fixtures::deployment("shop", "db", &[], &[("pg", 5432)]),
            fixtures::deployment("other", "tool", &[], &[]),
        ],
        services: vec![
            fixtures::service("shop", "api", "api", 80, 8080),
            fixtures::service("shop", "db", "db", 5432, 5432),
        ],
        ..World::default()
    }
}

fn name(workload: &str) -> String {
    format!("kf-baseline-deployment-{workload}")
}

/// A controller that has listed `world` and the fake's policies.
async fn listed(h: &Harness, world: &World) -> Controller {
    let mut c = Controller::new(h.ctx.clone()).unwrap();
    for ch in world.initial_list() {
        c.handle(ch);
    }
    let mut policies = Box::pin(changes(Kind::NetworkPolicy, h.fake.policy_watch()));
    while let Some(ch) = policies.next().await {
        let done = matches!(ch, Change::InitDone(_));
        c.handle(ch);
        if done {
            break;
        }
    }
    assert!(c.synced());
    c
}

fn policy_writes(requests: &[Recorded]) -> Vec<(Method, String)> {
    requests
        .iter()
        .filter(|r| r.is_policy_write())
        .map(|r| (r.method.clone(), r.policy_name()))
        .collect()
}

fn patches(names: &[&str]) -> Vec<(Method, String)> {
    names.iter().map(|n| (Method::PATCH, name(n))).collect()
}

/// Creates are server-side applies too (PATCH, without force).
fn creates(names: &[&str]) -> Vec<(Method, String)> {
    names.iter().map(|n| (Method::PATCH, name(n))).collect()
}

fn event_reasons(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.is_event())
        .filter_map(|r| r.body.as_ref()?.get("reason")?.as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn first_write_creates_then_updates_are_server_side_apply_with_our_field_manager() {
    let h = harness(None);
    let mut c = listed(&h, &shop()).await;
    let pass = c.reconcile().await;
    assert_eq!((pass.created, pass.updated, pass.deleted), (3, 0, 0));
    let requests = h.fake.requests();
    // A policy the cache does not know is created by an apply without
    // force: one field manager from the first write on.
    assert_eq!(policy_writes(&requests), creates(&["api", "db", "web"]));
    let create = requests
        .iter()
        .find(|r| r.is_policy_write() && r.policy_name() == name("api"))
        .unwrap();
    assert_eq!(
        create.uri,
        format!(
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/{}?&fieldManager=kubefence",
            name("api")
        )
    );
    let managers: Vec<(Option<String>, Option<String>)> = h
        .fake
        .policy("shop", &name("api"))
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.manager, e.operation))
        .collect();
    assert_eq!(
        managers,
        vec![(Some("kubefence".to_string()), Some("Apply".to_string()))],
        "no Update entry whose fields a later apply could never remove"
    );
    let body = create.body.as_ref().unwrap();
    assert_eq!(body["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(body["kind"], "NetworkPolicy");
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubefence"
    );
    assert_eq!(
        body["metadata"]["labels"]["kubefence.dev/source"],
        "baseline"
    );
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "uid-shop-api"}])
    );
    assert_eq!(
        body["spec"]["podSelector"],
        json!({"matchLabels": {"app": "api"}})
    );
    // api accepts web on 8080.
    let ingress = body["spec"]["ingress"].to_string();
    assert!(
        ingress.contains("\"port\":8080") && ingress.contains("\"app\":\"web\""),
        "{ingress}"
    );
    assert_eq!(event_reasons(&requests), vec!["PolicyCreated"; 3]);
    // Nothing in namespaces that did not opt in.
    assert!(h.fake.policies().keys().all(|(ns, _)| ns == "shop"));

    // A change to one of ours is a server-side apply on the version seen.
    h.fake.clear_requests();
    let seen = h
        .fake
        .policy("shop", &name("api"))
        .unwrap()
        .metadata
        .resource_version;
    let api = fixtures::deployment(
        "shop",
        "api",
        &[("DB_URL", "postgres://db:5432")],
        &[("http", 8080)],
    );
    c.handle(change(DEPLOYMENT, Event::Apply(api)));
    c.reconcile().await;
    let requests = h.fake.requests();
    let apply = requests
        .iter()
        .find(|r| r.is_policy_write() && r.policy_name() == name("api"))
        .unwrap();
    assert_eq!(apply.method, Method::PATCH);
    assert_eq!(
        apply.uri,
        format!(
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/{}?&force=true&fieldManager=kubefence",
            name("api")
        )
    );
    let body = apply.body.as_ref().unwrap();
    assert_eq!(
        body["metadata"]["resourceVersion"].as_str(),
        seen.as_deref()
    );
}

#[tokio::test]
async fn a_foreign_policy_the_cache_has_not_seen_yet_is_never_taken_over() {
    // Someone creates a policy with our name on the server; the operator's
    // watch has not delivered it yet when it writes.
    let h = harness(None);
    let mut c = listed(&h, &shop()).await;
    h.fake.put(fixtures::foreign_policy("shop", &name("api")));
    let before = h.fake.policy("shop", &name("api")).unwrap();
    c.reconcile().await;
    let after = h.fake.policy("shop", &name("api")).unwrap();
    assert_eq!(
        after.spec, before.spec,
        "the create met a conflict; their spec is unchanged"
    );
    assert!(
        !after
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("app.kubernetes.io/managed-by")
    );
    // The others were created.
    assert!(h.fake.policy("shop", &name("db")).is_some());

    // Same for one of ours replaced by a foreign one between the cache's
    // view and the write: the apply carries the version seen and is refused.
    let (h, mut c) = after_first_pass(&shop()).await;
    h.fake.remove("shop", &name("db"));
    h.fake.put(fixtures::foreign_policy("shop", &name("db")));
    let foreign = h.fake.policy("shop", &name("db")).unwrap();
    let db = fixtures::deployment(
        "shop",
        "db",
        &[("API_URL", "http://api:80")],
        &[("pg", 5432)],
    );
    c.handle(change(DEPLOYMENT, Event::Apply(db)));
    c.reconcile().await;
    let refused = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.is_policy_write() && r.policy_name() == name("db"))
        .count();
    assert_eq!(refused, 1, "db's policy was due for an update, and tried");
    assert_eq!(h.fake.policy("shop", &name("db")).unwrap(), foreign);
}

/// A same-named copy with the same spec (no field conflicts): the apply
/// merges into it, sees another manager in the answer, and gives back
/// what it claimed at once.
#[tokio::test]
async fn a_create_that_met_an_identical_foreign_copy_gives_it_back() {
    let h = harness(None);
    let mut c = listed(&h, &shop()).await;
    c.reconcile().await;
    let ours = h.fake.policy("shop", &name("db")).unwrap();
    h.fake.remove("shop", &name("db"));
    let mut copy = fixtures::foreign_policy("shop", &name("db"));
    copy.spec = ours.spec.clone();
    h.fake.put(copy);
    // The cache still believes db's policy is gone (no watch events here).
    c.handle(Change::Delete(ObjectRef {
        kind: Kind::NetworkPolicy,
        namespace: "shop".into(),
        name: name("db"),
    }));
    c.request_full();
    let pass = c.reconcile().await;
    assert_eq!(pass.created, 0);
    assert_eq!(pass.failed, 1);
    let after = h.fake.policy("shop", &name("db")).unwrap();
    let labels = after.metadata.labels.unwrap_or_default();
    assert!(
        !labels.contains_key("app.kubernetes.io/managed-by"),
        "not made ours: {labels:?}"
    );
    assert!(
        after
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|e| e.manager.as_deref() != Some("kubefence")),
        "kubefence holds no field of it"
    );
}

#[tokio::test]
async fn no_write_when_nothing_changed() {
    let h = harness(None);
    let mut c = listed(&h, &shop()).await;
    c.reconcile().await;
    h.fake.clear_requests();
    c.request_full();
    let pass = c.reconcile().await;
    assert_eq!(pass.examined, 3);
    assert_eq!(pass.writes(), 0);
    assert_eq!(
        h.fake.requests(),
        vec![],
        "a full pass over an unchanged cluster sends nothing"
    );
    // The echo of our own writes (watch events) does not cause writes either.
    let mut c2 = listed(&h, &shop()).await;
    c2.request_full();
    assert_eq!(c2.reconcile().await.writes(), 0);
    assert_eq!(h.fake.requests(), vec![]);
}

async fn after_first_pass(world: &World) -> (Harness, Controller) {
    let h = harness(None);
    let mut c = listed(&h, world).await;
    c.reconcile().await;
    h.fake.clear_requests();
    (h, c)
}

#[tokio::test]
async fn env_change_updates_both_ends_of_old_and_new_references() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let web = fixtures::deployment("shop", "web", &[("BACKEND_URL", "postgres://db:5432")], &[]);
    c.handle(change(DEPLOYMENT, Event::Apply(web)));
    let pass = c.reconcile().await;
    assert_eq!(pass.examined, 3, "web, api (loses web) and db (gains web)");
    assert_eq!(
        policy_writes(&h.fake.requests()),
        patches(&["api", "db", "web"])
    );
    assert_eq!(event_reasons(&h.fake.requests()), vec!["PolicyUpdated"; 3]);
}

#[tokio::test]
async fn label_change_updates_the_workload_and_its_peers() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let mut web: Deployment =
        fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://api:80")], &[]);
    let spec = web.spec.as_mut().unwrap();
    spec.selector.match_labels = Some([("app".to_string(), "web-v2".to_string())].into());
    spec.template.metadata.as_mut().unwrap().labels =
        Some([("app".to_string(), "web-v2".to_string())].into());
    c.handle(change(DEPLOYMENT, Event::Apply(web)));
    c.reconcile().await;
    assert_eq!(policy_writes(&h.fake.requests()), patches(&["api", "web"]));
    let api = h.fake.policy("shop", &name("api")).unwrap();
    assert!(serde_json::to_string(&api.spec).unwrap().contains("web-v2"));
}

#[tokio::test]
async fn port_change_updates_both_ends() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let api = fixtures::deployment("shop", "api", &[], &[("http", 8080)]);
    c.handle(change(DEPLOYMENT, Event::Apply(api)));
    assert_eq!(
        c.reconcile().await.writes(),
        0,
        "same object again: nothing to do"
    );
    let svc = fixtures::service("shop", "api", "api", 80, 9090);
    c.handle(change(Kind::Service, Event::Apply(svc)));
    let pass = c.reconcile().await;
    assert_eq!(
        pass.examined, 2,
        "only the Service's referrer and target are looked at"
    );
    assert_eq!(policy_writes(&h.fake.requests()), patches(&["api", "web"]));
    let web = h.fake.policy("shop", &name("web")).unwrap();
    assert!(serde_json::to_string(&web.spec).unwrap().contains("9090"));
}

#[tokio::test]
async fn service_change_recomputes_only_affected_workloads() {
    let (h, mut c) = after_first_pass(&shop()).await;
    // Re-point Service api at db's pods.
    let svc = fixtures::service("shop", "api", "db", 80, 5432);
    c.handle(change(Kind::Service, Event::Apply(svc)));
    let pending: Vec<String> = c.pending().iter().map(|k| k.2.clone()).collect();
    assert_eq!(pending, vec!["api", "db", "web"]);
    let pass = c.reconcile().await;
    assert_eq!(pass.examined, 3);
    assert_eq!(
        policy_writes(&h.fake.requests()),
        patches(&["api", "db", "web"])
    );
    // A Service nobody names and that selects nothing reaches nobody.
    h.fake.clear_requests();
    c.handle(change(
        Kind::Service,
        Event::Apply(fixtures::service("shop", "unused", "nothing", 1, 1)),
    ));
    assert!(c.pending().is_empty());
    assert_eq!(c.reconcile().await, Pass::default());
    assert_eq!(h.fake.requests(), vec![]);
}

#[tokio::test]
async fn opt_out_deletes_the_policy_and_only_ours() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let uid = h
        .fake
        .policy("shop", &name("web"))
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let mut web = fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://api:80")], &[]);
    web.metadata.annotations =
        Some([("kubefence.dev/baseline".to_string(), "disabled".to_string())].into());
    c.handle(change(DEPLOYMENT, Event::Apply(web)));
    c.reconcile().await;
    let requests = h.fake.requests();
    // api keeps accepting web: the pair keeps working.
    assert_eq!(
        policy_writes(&requests),
        vec![(Method::DELETE, name("web"))]
    );
    let delete = requests
        .iter()
        .find(|r| r.method == Method::DELETE)
        .unwrap();
    assert_eq!(
        delete.body.as_ref().unwrap()["preconditions"]["uid"],
        json!(uid)
    );
    assert_eq!(event_reasons(&requests), vec!["PolicyDeleted"]);
    assert!(h.fake.policy("shop", &name("web")).is_none());

    // The namespace opts out: every policy goes.
    h.fake.clear_requests();
    c.handle(change(
        Kind::Namespace,
        Event::Apply(fixtures::namespace("shop", false)),
    ));
    c.reconcile().await;
    assert_eq!(
        policy_writes(&h.fake.requests()),
        vec![(Method::DELETE, name("api")), (Method::DELETE, name("db"))]
    );
    assert!(h.fake.policies().is_empty());
}

#[tokio::test]
async fn orphans_are_deleted_and_policies_not_ours_left_alone() {
    let h = harness(None);
    // An owned policy whose workload is gone…
    let mut orphan = fixtures::foreign_policy("shop", &name("gone"));
    orphan.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "kubefence".to_string(),
            ),
            ("kubefence.dev/source".to_string(), "baseline".to_string()),
        ]
        .into(),
    );
    // (written by the operator earlier: its server-side apply)
    orphan.metadata.managed_fields = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some("kubefence".into()),
            operation: Some("Apply".into()),
            ..Default::default()
        },
    ]);
    h.fake.put(orphan);
    // …`kubefence generate` output applied with kubectl (same labels, no
    // workload here, not written by the operator: not its to delete)…
    let mut generated = fixtures::foreign_policy("shop", &name("legacy"));
    generated.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "kubefence".to_string(),
            ),
            ("kubefence.dev/source".to_string(), "baseline".to_string()),
        ]
        .into(),
    );
    h.fake.put(generated);
    // …a policy of another source (never ours to delete here)…
    let mut quarantine = fixtures::foreign_policy("shop", "kf-quarantine-deployment-web");
    quarantine.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "kubefence".to_string(),
            ),
            ("kubefence.dev/source".to_string(), "quarantine".to_string()),
        ]
        .into(),
    );
    h.fake.put(quarantine);
    // …and someone else's policy with the name web's would have.
    h.fake.put(fixtures::foreign_policy("shop", &name("web")));
    let before_web: NetworkPolicy = h.fake.policy("shop", &name("web")).unwrap();
    h.fake.clear_requests();

    let mut c = listed(&h, &shop()).await;
    let pass = c.reconcile().await;
    assert_eq!((pass.created, pass.deleted, pass.conflicts), (2, 1, 1));
    let requests = h.fake.requests();
    assert_eq!(
        policy_writes(&requests),
        vec![
            (Method::PATCH, name("api")),
            (Method::PATCH, name("db")),
            (Method::DELETE, name("gone")),
        ]
    );
    assert_eq!(
        h.fake.policy("shop", &name("web")),
        Some(before_web),
        "foreign policy untouched"
    );
    assert!(
        h.fake
            .policy("shop", "kf-quarantine-deployment-web")
            .is_some()
    );
    assert!(h.fake.policy("shop", &name("legacy")).is_some());
    let reasons = event_reasons(&requests);
    assert!(
        reasons.contains(&"PolicyNameTaken".to_string()),
        "{reasons:?}"
    );

    // Reported once, not on every pass.
    h.fake.clear_requests();
    c.request_full();
    assert_eq!(c.reconcile().await.conflicts, 1);
    assert_eq!(h.fake.requests(), vec![]);
}

#[tokio::test]
async fn unresolved_references_are_reported_once() {
    let mut world = shop();
    world.deployments.push(fixtures::deployment(
        "shop",
        "lost",
        &[("BACKEND_URL", "http://missing:80")],
        &[],
    ));
    let h = harness(None);
    let mut c = listed(&h, &world).await;
    c.reconcile().await;
    let reasons = event_reasons(&h.fake.requests());
    assert_eq!(
        reasons
            .iter()
            .filter(|r| *r == "UnresolvedReference")
            .count(),
        1,
        "{reasons:?}"
    );
    h.fake.clear_requests();
    c.request_full();
    c.reconcile().await;
    assert_eq!(h.fake.requests(), vec![]);
}

#[tokio::test]
async fn followers_write_nothing() {
    let h = harness(None);
    h.leader.send(false).unwrap();
    let mut c = listed(&h, &shop()).await;
    c.request_full();
    assert_eq!(c.reconcile().await, Pass::default());
    assert_eq!(h.fake.requests(), vec![]);
    h.leader.send(true).unwrap();
    c.request_full();
    assert_eq!(c.reconcile().await.created, 3);
}

#[tokio::test]
async fn bad_objects_are_ignored_without_panicking() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let mut bad = fixtures::service("shop", "api", "api", 80, 8080);
    bad.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 0;
    c.handle(change(Kind::Service, Event::Apply(bad)));
    assert_eq!(c.reconcile().await.writes(), 0);
    assert_eq!(h.fake.requests(), vec![]);
}

// === the whole loop ===

struct Running {
    h: Harness,
    tx: mpsc::UnboundedSender<Change>,
    task: tokio::task::JoinHandle<crate::Result<()>>,
}

fn start(h: Harness, world: &World) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    for ch in world.initial_list() {
        tx.send(ch).unwrap();
    }
    let synthetic =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let policies = changes(Kind::NetworkPolicy, h.fake.policy_watch());
    let stream = futures::stream::select(synthetic, policies);
    let task = tokio::spawn(run(h.ctx.clone(), stream));
    Running { h, tx, task }
}

/// Lets simulated time pass until `done` holds (at most `limit`).
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while tokio::time::Instant::now() - start < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test(start_paused = true)]
async fn the_loop_keeps_policies_true() {
    let world = World {
        namespaces: vec![fixtures::namespace("shop", true)],
        ..World::default()
    };
    let r = start(harness(None), &world);
    let fake = r.h.fake.clone();
    let ready = r.h.ctx.readiness.clone();
    ready.register(NAME);
    assert!(
        eventually(Duration::from_secs(5), || ready.is_ready()).await,
        "ready after the lists"
    );

    // Create a workload: its policy appears.
    r.tx.send(change(
        DEPLOYMENT,
        Event::Apply(fixtures::deployment("shop", "api", &[], &[("http", 8080)])),
    ))
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || fake
            .policy("shop", &name("api"))
            .is_some())
        .await
    );

    // Change its env: the policy is updated.
    r.tx.send(change(
        Kind::Service,
        Event::Apply(fixtures::service("shop", "db", "db", 5432, 5432)),
    ))
    .unwrap();
    r.tx.send(change(
        DEPLOYMENT,
        Event::Apply(fixtures::deployment("shop", "db", &[], &[("pg", 5432)])),
    ))
    .unwrap();
    r.tx.send(change(
        DEPLOYMENT,
        Event::Apply(fixtures::deployment(
            "shop",
            "api",
            &[("DB_HOST", "db")],
            &[("http", 8080)],
        )),
    ))
    .unwrap();
    let egress_to_db = |fake: &FakeApi| {
        fake.policy("shop", &name("api"))
            .is_some_and(|p| serde_json::to_string(&p.spec).unwrap().contains("5432"))
    };
    assert!(eventually(Duration::from_secs(5), || egress_to_db(&fake)).await);

    // A hand edit is restored.
    let mut edited = fake.policy("shop", &name("api")).unwrap();
    edited.spec.as_mut().unwrap().egress = None;
    fake.put(edited);
    assert!(!egress_to_db(&fake));
    assert!(eventually(Duration::from_secs(5), || egress_to_db(&fake)).await);

    // A hand delete is restored.
    fake.remove("shop", &name("api"));
    assert!(eventually(Duration::from_secs(5), || egress_to_db(&fake)).await);

    // A resync of the unchanged cluster writes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.clear_requests();
    tokio::time::sleep(Duration::from_secs(150)).await; // two resyncs
    assert_eq!(
        fake.requests(),
        vec![],
        "resyncs of an unchanged cluster send nothing"
    );

    // Delete the workload: its policy goes.
    r.tx.send(change(
        DEPLOYMENT,
        Event::Delete(fixtures::deployment("shop", "api", &[], &[])),
    ))
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || fake
            .policy("shop", &name("api"))
            .is_none())
        .await
    );

    // SIGTERM: the loop ends cleanly.
    r.h.shutdown.send(true).unwrap();
    assert!(matches!(r.task.await, Ok(Ok(()))));
}

/// The world of the fault test: 12 workloads in 3 namespaces, each
/// referencing the next through a Service.
fn chain_world() -> World {
    let mut w = World::default();
    for ns in ["a", "b", "c"] {
        w.namespaces.push(fixtures::namespace(ns, true));
        for i in 0..4 {
            let next = (i + 1) % 4;
            w.deployments.push(fixtures::deployment(
                ns,
                &format!("w{i}"),
                &[("NEXT_URL", &format!("http://s{next}:80"))],
                &[("http", 8000 + i)],
            ));
            w.services.push(fixtures::service(
                ns,
                &format!("s{i}"),
                &format!("w{i}"),
                80,
                8000 + i,
            ));
        }
    }
    w
}

/// The changes applied after the initial list, in order.
fn chain_changes() -> Vec<Change> {
    vec![
        // env change
        change(
            DEPLOYMENT,
            Event::Apply(fixtures::deployment(
                "a",
                "w0",
                &[("NEXT_URL", "http://s2:80")],
                &[("http", 8000)],
            )),
        ),
        // port change
        change(
            Kind::Service,
            Event::Apply(fixtures::service("b", "s1", "w1", 80, 9001)),
        ),
        change(
            DEPLOYMENT,
            Event::Apply(fixtures::deployment(
                "b",
                "w1",
                &[("NEXT_URL", "http://s2:80")],
                &[("http", 9001)],
            )),
        ),
        // delete
        change(
            DEPLOYMENT,
            Event::Delete(fixtures::deployment("c", "w3", &[], &[])),
        ),
        // opt-out of a namespace
        change(
            Kind::Namespace,
            Event::Apply(fixtures::namespace("c", false)),
        ),
    ]
}

type Stored = Vec<(
    (String, String),
    Option<serde_json::Value>,
    Option<std::collections::BTreeMap<String, String>>,
)>;

fn stored(fake: &FakeApi) -> Stored {
    fake.policies()
        .into_iter()
        .map(|(k, p)| (k, serde_json::to_value(&p.spec).ok(), p.metadata.labels))
        .collect()
}

async fn converge(faults: Option<(f64, u64)>) -> (Stored, usize, usize) {
    let r = start(harness(faults), &chain_world());
    let fake = r.h.fake.clone();
    tokio::time::sleep(Duration::from_secs(30)).await;
    for ch in chain_changes() {
        r.tx.send(ch).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Backoff is at most 5 minutes and a resync runs every minute.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    fake.heal();
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let faulted = fake.requests().iter().filter(|r| r.faulted).count();
    let total = fake.requests().len();
    r.h.shutdown.send(true).unwrap();
    let _ = r.task.await;
    (stored(&fake), faulted, total)
}

#[tokio::test(start_paused = true)]
async fn converges_when_a_fifth_of_the_calls_fail() {
    let (expected, _, _) = converge(None).await;
    // a: 4, b: 4, c: opted out.
    assert_eq!(expected.len(), 8, "{expected:#?}");
    assert!(
        expected
            .iter()
            .all(|((ns, _), _, _)| ns == "a" || ns == "b")
    );
    for seed in [7, 42, 1234] {
        let (got, faulted, total) = converge(Some((0.2, seed))).await;
        assert!(
            faulted > 0 && faulted < total,
            "seed {seed}: {faulted} of {total} failed"
        );
        // Same names (no duplicate, no orphan), same content.
        assert_eq!(got, expected, "seed {seed}");
    }
}

#[tokio::test]
async fn status_only_updates_change_nothing() {
    let (h, mut c) = after_first_pass(&shop()).await;
    let mut web = fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://api:80")], &[]);
    web.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        ready_replicas: Some(3),
        ..Default::default()
    });
    web.metadata.resource_version = Some("999".into());
    c.handle(change(DEPLOYMENT, Event::Apply(web)));
    assert!(c.pending().is_empty());
    assert_eq!(c.reconcile().await, Pass::default());
    assert_eq!(h.fake.requests(), vec![]);
}

/// A quarantine NetworkPolicy of Deployment `shop/<workload>`, as the
/// Quarantine controller or the CLI writes it.
fn quarantine_policy(workload: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("kf-quarantine-deployment-{workload}"), "namespace": "shop",
                     "uid": "uid-q", "resourceVersion": "7",
                     "labels": {"app.kubernetes.io/managed-by": "kubefence",
                                "kubefence.dev/source": "quarantine",
                                "kubefence.dev/quarantine-uid": "uid-quarantine-7"},
                     "annotations": {"kubefence.dev/target": format!("Deployment/shop/{workload}")}},
        "spec": {"podSelector": {"matchLabels": {"app": workload}},
                 "policyTypes": ["Ingress", "Egress"]}
    }))
    .unwrap()
}

/// Policies are additive: while its baseline policy exists, a quarantined
/// workload keeps DNS and its peers, and a deny-all can never isolate it.
#[tokio::test]
async fn a_quarantined_workload_loses_its_baseline_policy_until_released() {
    let (h, mut c) = after_first_pass(&shop()).await;
    assert!(h.fake.policy("shop", &name("api")).is_some());
    let quarantine = quarantine_policy("api");
    c.handle(change(
        Kind::NetworkPolicy,
        Event::Apply(quarantine.clone()),
    ));
    c.reconcile().await;
    assert_eq!(
        policy_writes(&h.fake.requests()),
        vec![(Method::DELETE, name("api"))],
        "withheld while quarantined, nothing else touched"
    );
    assert!(h.fake.policy("shop", &name("api")).is_none());

    // A resync keeps it withheld.
    h.fake.clear_requests();
    c.request_full();
    c.reconcile().await;
    assert_eq!(policy_writes(&h.fake.requests()), vec![]);

    // Released: the baseline policy comes back.
    c.handle(change(Kind::NetworkPolicy, Event::Delete(quarantine)));
    c.reconcile().await;
    assert!(
        h.fake.policy("shop", &name("api")).is_some(),
        "restored on release"
    );
}

// === the loop and a slow API server ===

/// `n` workloads in namespace `slow`, each with its Service.
fn slow_world(n: usize) -> World {
    let mut w = World {
        namespaces: vec![fixtures::namespace("slow", true)],
        ..World::default()
    };
    for i in 0..n {
        w.deployments.push(fixtures::deployment(
            "slow",
            &format!("w{i}"),
            &[("NEXT_URL", &format!("http://s{}:80", (i + 1) % n))],
            &[("http", 8080)],
        ));
        w.services.push(fixtures::service(
            "slow",
            &format!("s{i}"),
            &format!("w{i}"),
            80,
            8080,
        ));
    }
    w
}

/// Defect 7: the first pass (every create) used to run inside the only
/// loop that reads the watches, so nothing was read until the last write
/// came back. Now the writes run off the loop: with every API call taking
/// 5 s, the loop still takes every change at once, and the writes of one
/// policy changed many times while the server is slow are coalesced (the
/// queue holds one entry per policy, never a backlog) and end on the last
/// version.
#[tokio::test(start_paused = true)]
async fn the_loop_keeps_reading_the_watches_while_writes_are_slow() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = harness(None);
    let fake = h.fake.clone().with_latency(Duration::from_secs(5));
    let world = slow_world(40);
    let (tx, rx) = mpsc::unbounded_channel();
    for ch in world.initial_list() {
        tx.send(ch).unwrap();
    }
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    let synthetic =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .inspect(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            });
    let policies = changes(Kind::NetworkPolicy, fake.policy_watch());
    let task = tokio::spawn(run(
        h.ctx.clone(),
        futures::stream::select(synthetic, policies),
    ));
    let listed = world.initial_list().len();
    assert!(
        eventually(Duration::from_secs(5), || read.load(Ordering::SeqCst)
            == listed)
        .await,
        "the initial lists are read"
    );
    // The first pass is under way: 40 creates at 5 s each, 8 at a time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fake.policies().is_empty(), "the writes are still slow");

    // 60 changes to one workload while the server is slow.
    for i in 0..60 {
        let target = format!("http://s{}:80", i % 40);
        tx.send(change(
            DEPLOYMENT,
            Event::Apply(fixtures::deployment(
                "slow",
                "w0",
                &[("NEXT_URL", &target)],
                &[("http", 8080)],
            )),
        ))
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        read.load(Ordering::SeqCst),
        listed + 60,
        "every change is read while the writes are in flight"
    );
    assert!(fake.policies().len() < 40, "the writes are still slow");

    // Everything converges, on the last version of w0.
    assert!(
        eventually(Duration::from_secs(300), || fake.policies().len() == 40).await,
        "every policy is written"
    );
    let last_target = "Service slow/s19";
    assert!(
        eventually(Duration::from_secs(60), || {
            fake.policy("slow", &name("w0")).is_some_and(|p| {
                serde_json::to_string(&p.metadata.annotations)
                    .unwrap()
                    .contains(last_target)
            })
        })
        .await,
        "w0's policy reflects its last env ({last_target})"
    );
    let w0_writes = fake
        .requests()
        .iter()
        .filter(|r| r.is_policy_write() && r.policy_name() == name("w0"))
        .count();
    assert!(
        w0_writes <= 3,
        "60 changes to one workload during slow writes are at most a few writes, not 60: {w0_writes}"
    );
    h.shutdown.send(true).unwrap();
    assert!(matches!(task.await, Ok(Ok(()))));
}

/// Defect 7: every watch lists with `resourceVersion=0` (served from the
/// API server's watch cache), not with a quorum read of etcd.
#[tokio::test]
async fn the_watches_list_from_the_api_server_cache() {
    let (client, fake) = FakeApi::start();
    let mut stream = watch::cluster_changes(&client);
    // The fake serves the NetworkPolicy list; the other kinds answer 404
    // and are retried, each list request recorded.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(ch) = stream.next().await {
            if matches!(ch, Change::InitDone(Kind::NetworkPolicy)) {
                break;
            }
        }
    })
    .await;
    let lists: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && !r.uri.contains("watch="))
        .map(|r| r.uri.clone())
        .collect();
    let paths: std::collections::BTreeSet<&str> =
        lists.iter().filter_map(|u| u.split('?').next()).collect();
    assert_eq!(
        paths.len(),
        Kind::all().len(),
        "one list per kind: {paths:#?}"
    );
    for uri in &lists {
        assert!(
            uri.contains("resourceVersion=0&") || uri.ends_with("resourceVersion=0"),
            "{uri}"
        );
    }
}

/// A workload added after the first pass reads a ConfigMap key nothing read
/// before (so the cache did not keep it): the controller reads that
/// ConfigMap (a list by name, the right it already has) before planning,
/// and the reference is in both policies.
#[tokio::test]
async fn a_new_reader_of_config_map_data_not_kept_gets_it_fetched() {
    let mut world = shop();
    let conf = fixtures::config_map(
        "shop",
        "conf",
        &[("api", "http://api:80"), ("db", "db:5432")],
    );
    world.config_maps.push(conf.clone());
    let (h, mut c) = after_first_pass(&world).await;
    h.fake.put_config_map(&conf);
    let mut tool: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "tool", "namespace": "shop", "uid": "uid-tool"},
        "spec": {"selector": {"matchLabels": {"app": "tool"}},
                 "template": {"metadata": {"labels": {"app": "tool"}},
                              "spec": {"containers": [{"name": "main", "image": "x",
                                  "env": [{"name": "DB_ADDR", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "db"}}}]}]}}}
    }))
    .unwrap();
    tool.metadata.resource_version = Some("1".into());
    c.handle(change(DEPLOYMENT, Event::Apply(tool)));
    h.fake.clear_requests();
    let pass = c.reconcile().await;
    assert_eq!(pass.failed, 0);
    let requests = h.fake.requests();
    assert!(
        requests.iter().any(|r| r.method == Method::GET
            && r.uri.starts_with("/api/v1/namespaces/shop/configmaps?")
            && r.uri.contains("fieldSelector=metadata.name%3Dconf")),
        "{requests:#?}"
    );
    let spec =
        |w: &str| serde_json::to_string(&h.fake.policy("shop", &name(w)).unwrap().spec).unwrap();
    assert!(spec("tool").contains("5432"), "{}", spec("tool"));
    assert!(spec("db").contains("\"tool\""), "{}", spec("db"));
}

/// A full pass over a cluster whose objects did not change since the last
/// full build compares against the desired cache instead of building; it
/// still compares every policy, so a hand edit that a follower dropped is
/// repaired on becoming leader. A change of anything the builder reads
/// makes the next full pass build again.
#[tokio::test]
async fn an_unchanged_resync_builds_nothing_and_still_repairs_every_policy() {
    let h = harness(None);
    let mut c = listed(&h, &shop()).await;
    let first = c.reconcile().await;
    assert!(first.built && first.full);
    let original = h.fake.policy("shop", &name("web")).unwrap();
    c.request_full();
    let resync = c.reconcile().await;
    assert!(resync.full && !resync.built, "{resync:?}");
    assert_eq!((resync.examined, resync.writes()), (3, 0));

    // A widening hand edit seen while following: dropped by the follower.
    h.leader.send(false).unwrap();
    let mut edited = original.clone();
    edited.metadata.managed_fields = None;
    if let Some(spec) = edited.spec.as_mut() {
        spec.ingress
            .get_or_insert_default()
            .push(Default::default());
    }
    h.fake.put(edited);
    let stored = h.fake.policy("shop", &name("web")).unwrap();
    c.handle(change(Kind::NetworkPolicy, Event::Apply(stored)));
    assert_eq!(c.reconcile().await, Pass::default());

    h.leader.send(true).unwrap();
    h.fake.clear_requests();
    c.request_full();
    let repaired = c.reconcile().await;
    assert!(repaired.full && !repaired.built, "{repaired:?}");
    assert_eq!(policy_writes(&h.fake.requests()), patches(&["web"]));
    let restored = h.fake.policy("shop", &name("web")).unwrap();
    assert_eq!(restored.spec, original.spec, "the edit is undone");

    // An env change: the next full pass builds again.
    let mut web = fixtures::deployment("shop", "web", &[("BACKEND_URL", "http://db:5432")], &[]);
    web.metadata.resource_version = Some("2".into());
    c.handle(change(DEPLOYMENT, Event::Apply(web)));
    c.request_full();
    let rebuilt = c.reconcile().await;
    assert!(rebuilt.full && rebuilt.built, "{rebuilt:?}");
    assert!(rebuilt.updated >= 2, "web and db change: {rebuilt:?}");
}
