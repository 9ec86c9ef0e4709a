//! End-to-end tests: the operator, as a process of its own with its own
//! ServiceAccount token, against a real kube-apiserver.
//!
//! By default against a local etcd and kube-apiserver started for this test
//! binary (built once by `scripts/test-apiserver.sh`, which `.ci/run` calls);
//! against the cluster of `KUBEFENCE_E2E_KUBECONFIG` when it is set (kind,
//! k3d: a throwaway cluster, the tests install the CRDs and RBAC); skipped
//! only when `KUBEFENCE_E2E_SKIP` is set. Without the binaries and without
//! either variable the tests fail, naming the script.
//!
//! ```sh
//! scripts/test-apiserver.sh
//! cargo test -p kubefence-operator --test e2e
//! KUBEFENCE_E2E_KUBECONFIG=$HOME/.kube/kind-config cargo test -p kubefence-operator --test e2e
//! ```
//!
//! Each test has its own namespace (`kf-e2e-<test>-<random>`). Tests that run
//! an operator take a lock (every operator watches every namespace), the
//! others run in parallel. The local server has no kubelet, scheduler, CNI
//! or kube-controller-manager: no pod runs, so the tests create workloads,
//! Services and policies as objects and check the API objects; nothing is
//! garbage collected by ownerReferences, so what the operator deletes it
//! deleted itself; deleted namespaces stay Terminating.
//!
//! Every test that runs an operator ends by checking the API server's audit
//! log: the operator's ServiceAccount never got a 403 (the RBAC in
//! `deploy/` is sufficient; `tests/deploy.rs` checks it grants nothing
//! more than the calls the code makes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use support::cluster::{self, Cluster, DEFAULT_INSTALL, FULL_INSTALL, operator_user};
use support::operator::{Operator, SPEC_ENV, Spec};
use support::{CONVERGE, create, deployment, eventually, namespace, policy, service, throughout};

/// Not a test: the operator process the tests start (support/operator.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not a test: the operator process the end-to-end tests start"]
async fn operator_process() {
    if let Ok(spec) = std::env::var(SPEC_ENV) {
        support::operator::run_child(&spec).await;
    }
}

/// One test's world: the cluster, an admin client, a namespace, an
/// operator, and where the audit log stood when it started.
struct World {
    cluster: &'static Cluster,
    admin: Client,
    ns: String,
    audit_from: u64,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl World {
    /// `None` when the end-to-end tests are skipped.
    async fn new(test: &str, opted_in: bool) -> Option<World> {
        let cluster = cluster::cluster()?;
        let lock = cluster::exclusive().await;
        let admin = cluster.admin().await;
        let ns = namespace(&admin, test, opted_in).await;
        Some(World {
            cluster,
            admin,
            audit_from: cluster.audit_offset(),
            ns,
            _lock: lock,
        })
    }

    /// An operator of the full install, ready (synced).
    async fn operator(&self, identity: &str) -> Operator {
        self.operator_with(Spec::new(identity)).await
    }

    async fn operator_with(&self, spec: Spec) -> Operator {
        let mut op = Operator::start(self.cluster, spec);
        op.ready().await;
        op
    }

    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn policy(&self, name: &str) -> Option<NetworkPolicy> {
        self.policies().get_opt(name).await.unwrap()
    }

    /// The policy `name` once `done` holds on it.
    async fn policy_when(
        &self,
        what: &str,
        name: &str,
        done: impl Fn(&Option<NetworkPolicy>) -> bool,
    ) -> Option<NetworkPolicy> {
        eventually(what, CONVERGE, async || self.policy(name).await, done).await
    }

    /// The operator of the full install got no 403 since the test began
    /// (the audit log of the local server; not checked elsewhere).
    fn assert_rbac_sufficient(&self) {
        let user = operator_user(FULL_INSTALL);
        match self.cluster.forbidden_since(&user, self.audit_from) {
            Some(forbidden) => assert!(
                forbidden.is_empty(),
                "{user} was refused (deploy/ RBAC insufficient): {forbidden:#?}"
            ),
            None => eprintln!("RBAC not checked: no audit log (not the local server)"),
        }
    }

    async fn finish(self, operators: Vec<Operator>) {
        for op in operators {
            op.stop().await;
        }
        self.assert_rbac_sufficient();
        support::remove_namespace(&self.admin, &self.ns).await;
    }
}

fn spec_text(p: &Option<NetworkPolicy>) -> String {
    p.as_ref()
        .map(|p| serde_json::to_string(&p.spec).unwrap())
        .unwrap_or_default()
}

/// `web` reads `BACKEND_URL=http://api:80`; the `api` Service sends port 80
/// to the pods' 8080.
async fn web_and_api(w: &World) {
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    create(
        &w.admin,
        deployment(&w.ns, "web", &[("BACKEND_URL", "http://api:80")], &[]),
    )
    .await;
    create(&w.admin, service(&w.ns, "api", "api", 80, 8080)).await;
}

const API_POLICY: &str = "kf-baseline-deployment-api";
const WEB_POLICY: &str = "kf-baseline-deployment-web";

/// The ingress rule of api's policy that admits web on 8080.
fn admits_web_on(p: &Option<NetworkPolicy>, port: i32) -> bool {
    let Some(p) = p else { return false };
    let spec = serde_json::to_value(&p.spec).unwrap();
    spec["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["port"] == port)
                && rule["from"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|peer| peer["podSelector"]["matchLabels"]["app"] == "web")
        })
}

/// web's egress to api's pods on `port`.
fn web_reaches_api_on(p: &Option<NetworkPolicy>, port: i32) -> bool {
    let Some(p) = p else { return false };
    let spec = serde_json::to_value(&p.spec).unwrap();
    spec["egress"].as_array().into_iter().flatten().any(|rule| {
        rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["port"] == port)
            && rule["to"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|peer| peer["podSelector"]["matchLabels"]["app"] == "api")
    })
}

#[tokio::test]
async fn baseline_policies_are_created_for_each_workload() {
    let Some(w) = World::new("create", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("create").await;
    let api = w
        .policy_when("api's policy admitting web on 8080", API_POLICY, |p| {
            admits_web_on(p, 8080)
        })
        .await
        .unwrap();
    w.policy_when("web's policy reaching api on 8080", WEB_POLICY, |p| {
        web_reaches_api_on(p, 8080)
    })
    .await;
    // Selects api's pods, labelled as kubefence's, owned by the workload.
    assert_eq!(
        serde_json::to_value(&api.spec.as_ref().unwrap().pod_selector).unwrap(),
        json!({"matchLabels": {"app": "api"}})
    );
    let labels = api.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kubefence");
    assert_eq!(labels["kubefence.dev/source"], "baseline");
    let deployment = w.deployments().get("api").await.unwrap();
    let owner = &api.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "api")
    );
    assert_eq!(Some(&owner.uid), deployment.metadata.uid.as_ref());
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn baseline_policies_follow_env_and_service_changes() {
    let Some(w) = World::new("update", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("update").await;
    w.policy_when("api admits web on 8080", API_POLICY, |p| {
        admits_web_on(p, 8080)
    })
    .await;
    // The Service now sends to 9090 (and the pods listen there).
    let services: Api<Service> = Api::namespaced(w.admin.clone(), &w.ns);
    services
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9090}]}}),
            ),
        )
        .await
        .unwrap();
    w.policy_when(
        "api admits web on 9090 (Service changed)",
        API_POLICY,
        |p| admits_web_on(p, 9090) && !admits_web_on(p, 8080),
    )
    .await;
    w.policy_when("web reaches api on 9090", WEB_POLICY, |p| {
        web_reaches_api_on(p, 9090) && !web_reaches_api_on(p, 8080)
    })
    .await;
    // web no longer reads the URL: neither end keeps the path.
    w.deployments()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "env": [{"name": "BACKEND_URL", "$patch": "delete"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    w.policy_when("api no longer admits web (env changed)", API_POLICY, |p| {
        p.is_some() && !admits_web_on(p, 9090)
    })
    .await;
    w.policy_when("web no longer reaches api", WEB_POLICY, |p| {
        p.is_some() && !web_reaches_api_on(p, 9090)
    })
    .await;
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn a_hand_edit_is_restored() {
    let Some(w) = World::new("edit", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("edit").await;
    let before = w
        .policy_when("web's policy", WEB_POLICY, |p| web_reaches_api_on(p, 8080))
        .await;
    w.policies()
        .patch(
            WEB_POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": []}})),
        )
        .await
        .unwrap();
    let after = w
        .policy_when("web's policy restored", WEB_POLICY, |p| {
            web_reaches_api_on(p, 8080)
        })
        .await;
    assert_eq!(spec_text(&after), spec_text(&before));
    w.finish(vec![op]).await;
}

/// Defect 2: an edit that widens the policy (an empty ingress rule allows
/// every source) must be restored like any other.
#[tokio::test]
async fn a_widening_hand_edit_is_restored() {
    let Some(w) = World::new("widen", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("widen").await;
    let before = w
        .policy_when("api's policy", API_POLICY, |p| admits_web_on(p, 8080))
        .await;
    let mut ingress =
        serde_json::to_value(&before.as_ref().unwrap().spec.as_ref().unwrap().ingress)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default();
    ingress.push(json!({}));
    w.policies()
        .patch(
            API_POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": ingress}})),
        )
        .await
        .unwrap();
    w.policy_when(
        "api's policy restored (no allow-all rule)",
        API_POLICY,
        |p| spec_text(p) == spec_text(&before),
    )
    .await;
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn a_hand_delete_is_restored() {
    let Some(w) = World::new("delete", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("delete").await;
    let before = w
        .policy_when("api's policy", API_POLICY, |p| admits_web_on(p, 8080))
        .await
        .unwrap();
    w.policies()
        .delete(API_POLICY, &DeleteParams::default())
        .await
        .unwrap();
    let after = w
        .policy_when("api's policy recreated", API_POLICY, |p| {
            p.as_ref()
                .is_some_and(|p| p.metadata.uid != before.metadata.uid)
        })
        .await;
    assert_eq!(spec_text(&after), spec_text(&Some(before)));
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn opting_out_removes_the_policies() {
    let Some(w) = World::new("optout", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("optout").await;
    w.policy_when("web's policy", WEB_POLICY, |p| p.is_some())
        .await;
    w.policy_when("api's policy", API_POLICY, |p| p.is_some())
        .await;
    // One workload opts out.
    w.deployments()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kubefence.dev/baseline": "disabled"}}}),
            ),
        )
        .await
        .unwrap();
    w.policy_when(
        "web's policy removed (workload opted out)",
        WEB_POLICY,
        |p| p.is_none(),
    )
    .await;
    assert!(w.policy(API_POLICY).await.is_some());
    // The namespace opts out.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(w.admin.clone())
        .patch(
            &w.ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubefence.dev/baseline": null}}})),
        )
        .await
        .unwrap();
    w.policy_when(
        "api's policy removed (namespace opted out)",
        API_POLICY,
        |p| p.is_none(),
    )
    .await;
    w.finish(vec![op]).await;
}

/// A workload deleted while no operator ran: the next one removes its
/// policy. (In a full cluster the garbage collector would also delete it
/// by its ownerReference; the local server has none, so this shows the
/// operator's own orphan sweep.)
#[tokio::test]
async fn an_orphan_left_while_stopped_is_removed() {
    let Some(w) = World::new("orphan", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("orphan-1").await;
    w.policy_when("web's policy", WEB_POLICY, |p| p.is_some())
        .await;
    op.stop().await;
    w.deployments()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    if w.cluster.local.is_some() {
        // No garbage collector on the local server: only the operator can
        // remove it (a full cluster's collector may be first).
        assert!(w.policy(WEB_POLICY).await.is_some());
    }
    let op = w.operator("orphan-2").await;
    w.policy_when("web's orphaned policy removed", WEB_POLICY, |p| p.is_none())
        .await;
    w.policy_when("api no longer admits web", API_POLICY, |p| {
        p.is_some() && !admits_web_on(p, 8080)
    })
    .await;
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn a_foreign_policy_with_our_name_is_left_alone() {
    let Some(w) = World::new("foreign", true).await else {
        return;
    };
    web_and_api(&w).await;
    let foreign = create(
        &w.admin,
        policy(&w.ns, WEB_POLICY, json!({"team": "web"}), "web"),
    )
    .await;
    let op = w.operator("foreign").await;
    w.policy_when("api's policy", API_POLICY, |p| admits_web_on(p, 8080))
        .await;
    let rv = foreign["metadata"]["resourceVersion"].clone();
    let unchanged = |p: &Option<NetworkPolicy>| {
        p.as_ref()
            .is_some_and(|p| json!(p.metadata.resource_version) == rv)
    };
    throughout(
        "the foreign policy untouched",
        Duration::from_secs(2),
        async || w.policy(WEB_POLICY).await,
        unchanged,
    )
    .await;
    // Its workload goes: the policy is still not ours to delete.
    w.deployments()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    w.policy_when("api no longer admits web", API_POLICY, |p| {
        p.is_some() && !admits_web_on(p, 8080)
    })
    .await;
    assert!(
        unchanged(&w.policy(WEB_POLICY).await),
        "foreign policy changed or deleted"
    );
    w.finish(vec![op]).await;
}

/// Defect 9: a GitOps copy of `kubefence generate` output (kubefence's
/// labels, no ownerReference) is someone else's: not overwritten.
#[tokio::test]
async fn a_gitops_copy_with_our_labels_is_not_overwritten() {
    let Some(w) = World::new("gitops", true).await else {
        return;
    };
    web_and_api(&w).await;
    let copy = create(
        &w.admin,
        policy(
            &w.ns,
            WEB_POLICY,
            json!({"app.kubernetes.io/managed-by": "kubefence", "kubefence.dev/source": "baseline"}),
            "web",
        ),
    )
    .await;
    let op = w.operator("gitops").await;
    w.policy_when("api's policy", API_POLICY, |p| admits_web_on(p, 8080))
        .await;
    let rv = copy["metadata"]["resourceVersion"].clone();
    throughout(
        "the GitOps copy untouched",
        Duration::from_secs(3),
        async || w.policy(WEB_POLICY).await,
        |p| {
            p.as_ref()
                .is_some_and(|p| json!(p.metadata.resource_version) == rv)
        },
    )
    .await;
    w.finish(vec![op]).await;
}

/// Defect 8: the policy has one field manager, kubefence's server-side
/// apply; a create by POST registers an `Update` manager whose fields a
/// later apply can never remove.
#[tokio::test]
async fn kubefence_policies_have_one_field_manager() {
    let Some(w) = World::new("managers", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("managers").await;
    let p = w
        .policy_when("api's policy", API_POLICY, |p| admits_web_on(p, 8080))
        .await
        .unwrap();
    let managers: Vec<(String, String)> = p
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        vec![("kubefence".to_string(), "Apply".to_string())],
        "managedFields"
    );
    w.finish(vec![op]).await;
}

// ---------------------------------------------------------------- Quarantine

fn quarantines(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = kube::discovery::ApiResource {
        group: "kubefence.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kubefence.dev/v1alpha1".into(),
        kind: "Quarantine".into(),
        plural: "quarantines".into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn quarantine(ns: &str, name: &str, target: &str, dry_run: bool) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "Quarantine",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "target": {"kind": "Deployment", "name": target},
            "reason": "e2e: suspected compromise",
            "dryRun": dry_run,
        },
    })
}

async fn quarantine_status(w: &World, name: &str) -> Option<Value> {
    quarantines(&w.admin, &w.ns)
        .get_opt(name)
        .await
        .unwrap()
        .map(|q| serde_json::to_value(q).unwrap())
}

fn phase(q: &Option<Value>) -> Option<String> {
    q.as_ref()?["status"]["phase"].as_str().map(String::from)
}

/// The NetworkPolicies of the namespace labelled as quarantine policies.
async fn quarantine_policies(w: &World) -> Vec<NetworkPolicy> {
    w.policies()
        .list(&ListParams::default().labels("kubefence.dev/source=quarantine"))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn quarantine_dry_run_persists_nothing() {
    let Some(w) = World::new("qdry", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    let op = w.operator("qdry").await;
    create(&w.admin, quarantine(&w.ns, "q", "api", true)).await;
    let q = eventually(
        "the dry run planned",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Planned"),
    )
    .await;
    assert!(q.as_ref().unwrap()["status"]["plan"].is_string(), "{q:?}");
    // The plan went to the server as a dry run (on the local server, whose
    // audit log shows it): validated and admitted there, persisted nowhere.
    if let Some(requests) = w
        .cluster
        .requests_since(&operator_user(FULL_INSTALL), w.audit_from)
    {
        assert!(
            // Every write is a server-side apply (one field manager), so
            // the would-be create is an apply patch with dryRun=All.
            requests.iter().any(|r| r.starts_with("patch ")
                && r.contains("/networkpolicies/")
                && r.contains("dryRun=All")),
            "no dry-run apply sent: {requests:#?}"
        );
    }
    throughout(
        "no policy persisted",
        Duration::from_secs(2),
        async || quarantine_policies(&w).await,
        Vec::is_empty,
    )
    .await;
    assert!(
        w.policies()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    w.finish(vec![op]).await;
}

/// The policy isolates exactly the target's pods, in both directions, with
/// no rule; the Quarantine holds a finalizer; deleting it releases.
fn isolates_api(p: &NetworkPolicy) -> bool {
    let spec = serde_json::to_value(&p.spec).unwrap();
    spec["podSelector"] == json!({"matchLabels": {"app": "api"}})
        && spec["policyTypes"] == json!(["Ingress", "Egress"])
        && spec["ingress"].as_array().is_none_or(Vec::is_empty)
        && spec["egress"].as_array().is_none_or(Vec::is_empty)
}

#[tokio::test]
async fn quarantine_isolates_and_release_removes_the_policy() {
    let Some(w) = World::new("qisolate", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    let op = w.operator("qisolate").await;
    create(&w.admin, quarantine(&w.ns, "q", "api", false)).await;
    let q = eventually(
        "isolated",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Isolated"),
    )
    .await
    .unwrap();
    let policies = quarantine_policies(&w).await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert!(isolates_api(&policies[0]), "{:?}", policies[0].spec);
    assert_eq!(
        q["status"]["policyName"].as_str().unwrap_or_default(),
        format!(
            "NetworkPolicy/{}",
            policies[0].metadata.name.as_deref().unwrap_or_default()
        )
    );
    assert_eq!(
        q["metadata"]["finalizers"],
        json!(["kubefence.dev/quarantine"])
    );
    // Release.
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    assert!(
        quarantine_policies(&w).await.is_empty(),
        "policy left after release"
    );
    w.finish(vec![op]).await;
}

/// Defect 1: the quarantine policy is watched like the baseline ones; a
/// hand edit that opens it is repaired.
#[tokio::test]
async fn a_hand_edit_of_the_quarantine_policy_is_repaired() {
    let Some(w) = World::new("qdrift", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    let op = w.operator("qdrift").await;
    create(&w.admin, quarantine(&w.ns, "q", "api", false)).await;
    eventually(
        "isolated",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Isolated"),
    )
    .await;
    let name = quarantine_policies(&w).await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    w.policies()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
        )
        .await
        .unwrap();
    w.policy_when("the quarantine policy repaired", &name, |p| {
        p.as_ref().is_some_and(isolates_api)
    })
    .await;
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    w.finish(vec![op]).await;
}

/// Defect 6: in a namespace opted in to baseline, the workload's own
/// baseline policy keeps its DNS and peers open, so a NetworkPolicy
/// quarantine cannot isolate it. The baseline policy is withheld while the
/// Quarantine is active and comes back on release.
#[tokio::test]
async fn the_baseline_policy_is_withheld_while_quarantined() {
    let Some(w) = World::new("qbaseline", true).await else {
        return;
    };
    web_and_api(&w).await;
    let op = w.operator("qbaseline").await;
    w.policy_when("api's baseline policy", API_POLICY, |p| {
        admits_web_on(p, 8080)
    })
    .await;
    create(&w.admin, quarantine(&w.ns, "q", "api", false)).await;
    eventually(
        "isolated",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Isolated"),
    )
    .await;
    w.policy_when(
        "api's baseline policy withheld",
        API_POLICY,
        Option::is_none,
    )
    .await;
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    w.policy_when("api's baseline policy restored", API_POLICY, |p| {
        admits_web_on(p, 8080)
    })
    .await;
    w.finish(vec![op]).await;
}

/// Defect 5: a Pod quarantine selects the pod by its labels, which its
/// siblings of the same ReplicaSet share (`pod-template-hash` included):
/// without `allowCollateral` it must refuse rather than isolate them all.
#[tokio::test]
async fn a_pod_quarantine_does_not_isolate_its_siblings() {
    let Some(w) = World::new("qpod", false).await else {
        return;
    };
    // Pods need the namespace's default ServiceAccount, which a
    // kube-controller-manager would have created.
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "default", "namespace": w.ns}}),
    )
    .await;
    for name in ["api-7d4b9-aaaaa", "api-7d4b9-bbbbb"] {
        create(
            &w.admin,
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": w.ns,
                             "labels": {"app": "api", "pod-template-hash": "7d4b9"}},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
            }),
        )
        .await;
    }
    let op = w.operator("qpod").await;
    let mut q = quarantine(&w.ns, "q", "api-7d4b9-aaaaa", false);
    q["spec"]["target"]["kind"] = json!("Pod");
    create(&w.admin, q).await;
    let q = eventually(
        "the Pod quarantine settled",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| matches!(phase(q).as_deref(), Some("Isolated" | "Failed")),
    )
    .await;
    let isolated = quarantine_policies(&w).await;
    assert!(
        isolated.is_empty() && phase(&q).as_deref() == Some("Failed"),
        "isolated the sibling too: {:?}",
        isolated.iter().map(|p| &p.spec).collect::<Vec<_>>()
    );
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    w.finish(vec![op]).await;
}

/// Defect 10: a Quarantine of a Pod without labels fails with
/// EmptySelector (a policy would select every pod of the namespace); once
/// the pod gets labels the operator retries by itself (it watches the
/// targets), without a change to the Quarantine.
#[tokio::test]
async fn an_empty_selector_quarantine_is_retried_when_the_target_gets_labels() {
    let Some(w) = World::new("qempty", false).await else {
        return;
    };
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "default", "namespace": w.ns}}),
    )
    .await;
    create(
        &w.admin,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": w.ns},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
        }),
    )
    .await;
    let op = w.operator("qempty").await;
    let mut q = quarantine(&w.ns, "q", "debug", false);
    q["spec"]["target"]["kind"] = json!("Pod");
    create(&w.admin, q).await;
    let reason = |q: &Option<Value>| {
        q.as_ref().and_then(|q| {
            q["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?["reason"]
                .as_str()
                .map(String::from)
        })
    };
    eventually(
        "refused: EmptySelector",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| reason(q).as_deref() == Some("EmptySelector"),
    )
    .await;
    assert!(quarantine_policies(&w).await.is_empty());
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(w.admin.clone(), &w.ns);
    pods.patch(
        "debug",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .unwrap();
    let q = eventually(
        "retried once labelled",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Isolated"),
    )
    .await;
    assert_eq!(reason(&q).as_deref(), Some("Isolated"));
    let isolated = quarantine_policies(&w).await;
    assert_eq!(isolated.len(), 1);
    assert_eq!(
        serde_json::to_value(&isolated[0].spec).unwrap()["podSelector"],
        json!({"matchLabels": {"app": "debug"}})
    );
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    w.finish(vec![op]).await;
}

/// The CLI's online `quarantine --confirm` and `release --confirm` run the
/// operator's own operations as the person who runs them; holding the
/// user-facing ClusterRole `kubefence-quarantine-writer` (bound in the
/// namespace) must be enough: no 403 anywhere (the role once lacked the
/// pods and workload lists of the collateral check and `also_selects`).
#[tokio::test]
async fn a_responder_with_the_writer_role_can_quarantine_and_release() {
    use kubefence_core::WorkloadKind;
    use kubefence_core::quarantine::{Audit, Engine, Target};
    use kubefence_operator::controllers::quarantine::{
        self as ops, ApplyOutcome, Holder, QuarantineConfig, ReleaseOutcome,
    };
    let Some(w) = World::new("qcli", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "responder", "namespace": w.ns}}),
    )
    .await;
    create(
        &w.admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "responder-writer", "namespace": w.ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "kubefence-quarantine-writer"},
               "subjects": [{"kind": "ServiceAccount", "name": "responder", "namespace": w.ns}]}),
    )
    .await;
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{}/serviceaccounts/responder/token",
        w.ns
    ))
    .header("content-type", "application/json")
    .body(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}})
        .to_string()
        .into_bytes(),
    )
    .unwrap();
    let answer: Value = w.admin.request(request).await.unwrap();
    let token = answer["status"]["token"].as_str().unwrap();
    // The operator's kubeconfig (same server and CA), with the responder's token.
    let path = w.cluster.operator_kubeconfig(FULL_INSTALL);
    let mut kubeconfig: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    kubeconfig["users"][0]["user"]["token"] = json!(token);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), kubeconfig.to_string()).unwrap();
    let responder = support::cluster::client_from(file.path()).await.unwrap();
    let rt = kubefence_operator::Context::with_client(
        responder,
        kubefence_operator::OperatorConfig {
            identity: "kubefence-cli".into(),
            ..kubefence_operator::OperatorConfig::default()
        },
    );
    let cfg = QuarantineConfig::default();
    let target = Target::new(WorkloadKind::Deployment, &w.ns, "api");
    let isolation = ops::isolate(
        &rt,
        &cfg,
        &ops::Request {
            target: target.clone(),
            audit: Audit {
                reason: "e2e: responder".into(),
                finding: None,
                requester: "responder".into(),
                time: "2026-11-29T00:00:00Z".into(),
            },
            engine: Engine::NetworkPolicy,
            dry_run: false,
            allow_collateral: false,
            holder: Holder::Cli,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("quarantine as the responder: {}", e.full_message()));
    assert_eq!(isolation.outcome, ApplyOutcome::Created);
    assert_eq!(quarantine_policies(&w).await.len(), 1);
    let released = ops::release(
        &rt,
        &cfg,
        &target,
        Engine::NetworkPolicy,
        false,
        &Holder::Cli,
        "responder",
    )
    .await
    .unwrap_or_else(|e| panic!("release as the responder: {}", e.full_message()));
    assert_eq!(released, ReleaseOutcome::Released);
    assert!(quarantine_policies(&w).await.is_empty());
    let user = format!("system:serviceaccount:{}:responder", w.ns);
    if let Some(refused) = w.cluster.forbidden_since(&user, w.audit_from) {
        assert!(refused.is_empty(), "the writer role lacks: {refused:?}");
    }
    w.finish(vec![]).await;
}

#[tokio::test]
async fn the_finalizer_keeps_a_quarantine_until_it_is_released() {
    let Some(w) = World::new("qfinalizer", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    let op = w.operator("qfinalizer-1").await;
    create(&w.admin, quarantine(&w.ns, "q", "api", false)).await;
    eventually(
        "isolated",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Isolated"),
    )
    .await;
    op.stop().await;
    // Deleted while no operator runs: the finalizer holds it, and the
    // isolation stays.
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    let q = quarantine_status(&w, "q").await;
    assert!(
        q.as_ref()
            .is_some_and(|q| q["metadata"]["deletionTimestamp"].is_string()),
        "held by the finalizer: {q:?}"
    );
    assert_eq!(quarantine_policies(&w).await.len(), 1);
    let op = w.operator("qfinalizer-2").await;
    eventually(
        "released and gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    assert!(quarantine_policies(&w).await.is_empty());
    w.finish(vec![op]).await;
}

/// `deploy/base` alone: the operator may not read targets nor write
/// quarantine policies. A Quarantine fails saying Forbidden, nothing is
/// created, and it can still be deleted.
#[tokio::test]
async fn a_default_install_answers_forbidden_and_the_quarantine_is_deletable() {
    let Some(w) = World::new("qdefault", false).await else {
        return;
    };
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    let mut spec = Spec::new("qdefault");
    spec.install_ns = DEFAULT_INSTALL.into();
    let default_audit = w.cluster.audit_offset();
    let op = w.operator_with(spec).await;
    create(&w.admin, quarantine(&w.ns, "q", "api", false)).await;
    let q = eventually(
        "failed",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        |q| phase(q).as_deref() == Some("Failed"),
    )
    .await
    .unwrap();
    let conditions = q["status"]["conditions"].to_string();
    assert!(
        conditions.contains("Forbidden") || conditions.contains("forbidden"),
        "{conditions}"
    );
    assert!(
        w.policies()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    quarantines(&w.admin, &w.ns)
        .delete("q", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Quarantine gone",
        CONVERGE,
        async || quarantine_status(&w, "q").await,
        Option::is_none,
    )
    .await;
    // The server did refuse it (and only on the opt-in rights).
    if let Some(refused) = w
        .cluster
        .forbidden_since(&operator_user(DEFAULT_INSTALL), default_audit)
    {
        assert!(!refused.is_empty(), "the default install was never refused");
        for r in &refused {
            assert!(
                r.contains("/deployments/") || r.contains("/networkpolicies"),
                "refused outside the opt-in rights: {r}"
            );
        }
    }
    w.finish(vec![op]).await;
}

// ---------------------------------------------------- CRD schema validation

/// The API server itself rejects what the CRD's schema forbids.
#[tokio::test]
async fn the_crd_schema_rejects_bad_quarantines() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let ns = namespace(&admin, "crd", false).await;
    let api = quarantines(&admin, &ns);
    let post = async |v: Value| {
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        api.create(&PostParams::default(), &obj).await
    };
    let good = quarantine(&ns, "good", "api", true);
    let mut bad_engine = quarantine(&ns, "engine", "api", true);
    bad_engine["spec"]["engine"] = json!("iptables");
    let mut bad_kind = quarantine(&ns, "kind", "api", true);
    bad_kind["spec"]["target"]["kind"] = json!("Service");
    let mut no_reason = quarantine(&ns, "reason", "api", true);
    no_reason["spec"].as_object_mut().unwrap().remove("reason");
    let mut no_target_name = quarantine(&ns, "name", "api", true);
    no_target_name["spec"]["target"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let mut dry_run_text = quarantine(&ns, "dryrun", "api", true);
    dry_run_text["spec"]["dryRun"] = json!("no");
    for (what, v) in [
        ("engine iptables", bad_engine),
        ("target kind Service", bad_kind),
        ("no reason", no_reason),
        ("no target name", no_target_name),
        ("dryRun a string", dry_run_text),
    ] {
        match post(v).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{what}: {e:?}"),
            other => panic!("{what}: accepted or wrong error: {other:?}"),
        }
    }
    // A good one passes (a server-side dry run: nothing is left behind for
    // the operators of other tests), with the schema's defaults applied.
    let obj: DynamicObject = serde_json::from_value(good).unwrap();
    let created = api
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &obj,
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["engine"], "networkpolicy");
    assert!(
        api.get_opt("good").await.unwrap().is_none(),
        "dry run persisted"
    );
    support::remove_namespace(&admin, &ns).await;
}

/// Defect 3: `spec.target` and `spec.engine` are immutable (CEL), so a
/// Quarantine cannot be pointed at another workload after isolating one.
#[tokio::test]
async fn the_crd_makes_target_and_engine_immutable() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let ns = namespace(&admin, "cel", false).await;
    let api = quarantines(&admin, &ns);
    let obj: DynamicObject = serde_json::from_value(quarantine(&ns, "q", "api", true)).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    for (what, patch) in [
        ("target", json!({"spec": {"target": {"name": "other"}}})),
        ("engine", json!({"spec": {"engine": "cilium"}})),
    ] {
        match api
            .patch("q", &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{what}: {e:?}"),
            other => panic!("changing spec.{what} accepted: {other:?}"),
        }
    }
    api.delete("q", &DeleteParams::default()).await.unwrap();
    support::remove_namespace(&admin, &ns).await;
}

/// Issue 10 defect 11, as the API server serves and enforces the CRD:
/// printer columns Engine, DryRun and Ready; conditions a map keyed by
/// type (two of one type refused); the status bounded (an over-long list
/// or message refused), and the operator's `bounded` status accepted.
#[tokio::test]
async fn the_crd_bounds_the_status_and_shows_readiness() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kubefence_k8s::crd::quarantine::{
        CONDITION_EFFECTIVE, CONDITION_READY, QuarantineStatus, RemainingPathStatus, bounds,
        set_condition,
    };
    // The lock: no operator runs meanwhile to write this Quarantine's status.
    let Some(w) = World::new("crdstatus", false).await else {
        return;
    };
    let crd = Api::<CustomResourceDefinition>::all(w.admin.clone())
        .get("quarantines.kubefence.dev")
        .await
        .unwrap();
    let version = &crd.spec.versions[0];
    let columns: Vec<(String, String)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.type_.clone()))
        .collect();
    for (name, type_) in [
        ("Engine", "string"),
        ("DryRun", "boolean"),
        ("Ready", "string"),
    ] {
        assert!(
            columns.contains(&(name.to_string(), type_.to_string())),
            "{name} ({type_}) not among the served columns {columns:?}"
        );
    }
    let api = quarantines(&w.admin, &w.ns);
    let obj: DynamicObject = serde_json::from_value(quarantine(&w.ns, "q", "api", true)).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let write = async |status: &Value| {
        api.patch_status(
            "q",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    };
    let refused = async |what: &str, status: Value| match write(&status).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{what}: {e:?}"),
        other => panic!("{what}: accepted: {other:?}"),
    };

    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let path = RemainingPathStatus {
        direction: "ingress".into(),
        policy: format!("{}/allow-web", w.ns),
        rule: "spec.ingress[0]".into(),
        peer: "x".repeat(3000),
        ports: "TCP/8080".into(),
        endpoints: vec!["10.0.0.1:8080".into(); 40],
        overridden: false,
    };
    let mut huge = QuarantineStatus {
        plan: Some("p".repeat(5000)),
        remaining_paths: vec![path; bounds::REMAINING_PATHS * 2],
        ..QuarantineStatus::default()
    };
    set_condition(
        &mut huge.conditions,
        CONDITION_READY,
        false,
        "DryRun",
        &"m".repeat(40_000),
        None,
        &now,
    );
    set_condition(
        &mut huge.conditions,
        CONDITION_EFFECTIVE,
        true,
        "NoPathRemains",
        "ok",
        None,
        &now,
    );

    // Each bound alone is enforced by the server.
    let mut long_list = huge.clone().bounded();
    long_list
        .remaining_paths
        .extend(long_list.remaining_paths.clone());
    refused(
        "remainingPaths past its maxItems",
        serde_json::to_value(&long_list).unwrap(),
    )
    .await;
    let mut long_message = huge.clone().bounded();
    long_message.conditions[0].message = "m".repeat(bounds::MESSAGE + 1);
    refused(
        "a condition message past its maxLength",
        serde_json::to_value(&long_message).unwrap(),
    )
    .await;
    let mut twice = huge.clone().bounded();
    twice.conditions.push(twice.conditions[0].clone());
    refused(
        "two Ready conditions",
        serde_json::to_value(&twice).unwrap(),
    )
    .await;
    refused("the unbounded status", serde_json::to_value(&huge).unwrap()).await;

    // What the operator writes (bounded) is accepted, and reads back whole.
    let bounded = huge.clone().bounded();
    write(&serde_json::to_value(&bounded).unwrap())
        .await
        .unwrap();
    let stored = api.get("q").await.unwrap();
    let stored: QuarantineStatus = serde_json::from_value(stored.data["status"].clone()).unwrap();
    assert_eq!(stored.remaining_paths.len(), bounds::REMAINING_PATHS);
    assert_eq!(
        stored.remaining_paths_omitted,
        Some(bounds::REMAINING_PATHS as i64)
    );
    assert_eq!(stored.conditions.len(), 2);
    api.delete("q", &DeleteParams::default()).await.unwrap();
    w.finish(vec![]).await;
}

/// Issue 10 defect 12: every object of `deploy/` (the base, the
/// Deployment, its Service, NetworkPolicy and PodDisruptionBudget included,
/// and every component) passes the API server's own validation: a
/// server-side dry run of its apply, nothing persisted.
#[tokio::test]
async fn every_object_of_deploy_passes_server_side_validation() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let root = cluster::deploy();
    let mut dirs = vec![root.join("base")];
    let mut pending = vec![root.join("components")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            }
        }
        if dir.join("kustomization.yaml").is_file() {
            dirs.push(dir);
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut validated = 0;
    for dir in &dirs {
        for object in cluster::kustomization_objects(dir).unwrap() {
            let what = format!(
                "{} {} ({})",
                object["kind"].as_str().unwrap_or("?"),
                object["metadata"]["name"].as_str().unwrap_or("?"),
                dir.display()
            );
            kinds.insert(object["kind"].as_str().unwrap_or_default().to_string());
            cluster::validate(&admin, object)
                .await
                .unwrap_or_else(|e| panic!("{what}: refused by the API server: {e}"));
            validated += 1;
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ClusterRole",
        "CustomResourceDefinition",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/: {kinds:?}");
    }
    // Nothing persisted: the dry run left no NetworkPolicy behind.
    let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), FULL_INSTALL);
    assert!(
        policies
            .get_opt("kubefence-operator")
            .await
            .unwrap()
            .is_none()
    );
    eprintln!(
        "{validated} objects of {} kustomizations validated",
        dirs.len()
    );
}

// ---------------------------------------------------------- Leader election

async fn lease_holder(admin: &Client, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), FULL_INSTALL)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// Two operator processes share a Lease: one writes, the other does not;
/// the leader is killed (no release), the other takes over within the
/// lease duration and writes.
#[tokio::test]
async fn leader_election_one_writer_and_takeover_after_a_kill() {
    let Some(w) = World::new("leader", true).await else {
        return;
    };
    const LEASE_SECONDS: u64 = 4;
    let lease = format!("kubefence-e2e-leader-{}", &w.ns[w.ns.len() - 6..]);
    let spec = |identity: &str| Spec {
        lease_name: lease.clone(),
        lease_seconds: LEASE_SECONDS,
        ..Spec::new(identity)
    };
    let mut a = w.operator_with(spec("replica-a")).await;
    eventually(
        "replica-a leads",
        CONVERGE,
        async || lease_holder(&w.admin, &lease).await,
        |h| h.as_deref() == Some("replica-a"),
    )
    .await;
    let b = w.operator_with(spec("replica-b")).await;
    create(&w.admin, deployment(&w.ns, "api", &[], &[("http", 8080)])).await;
    w.policy_when("api's policy (written by the leader)", API_POLICY, |p| {
        p.is_some()
    })
    .await;
    // Through a renewal or two: a keeps the Lease; b never writes.
    throughout(
        "one leader, one writer",
        Duration::from_secs(LEASE_SECONDS + 1),
        async || {
            (
                lease_holder(&w.admin, &lease).await,
                b.metric("kubefence_api_writes_total").await,
            )
        },
        |(holder, b_writes)| holder.as_deref() == Some("replica-a") && *b_writes == 0.0,
    )
    .await;
    assert!(
        a.metric("kubefence_api_writes_total").await > 0.0,
        "the leader wrote"
    );

    a.kill();
    let killed = Instant::now();
    create(&w.admin, deployment(&w.ns, "web", &[], &[])).await;
    eventually(
        "replica-b leads",
        Duration::from_secs(LEASE_SECONDS * 3),
        async || lease_holder(&w.admin, &lease).await,
        |h| h.as_deref() == Some("replica-b"),
    )
    .await;
    let takeover = killed.elapsed();
    // The Lease expires at most LEASE_SECONDS after the kill (the last
    // renewal was before it), and the follower looks every half lease.
    let bound = Duration::from_secs(LEASE_SECONDS + LEASE_SECONDS / 2 + 1);
    assert!(
        takeover <= bound,
        "took over after {takeover:?} (lease {LEASE_SECONDS} s, bound {bound:?})"
    );
    w.policy_when(
        "web's policy (written by the new leader)",
        WEB_POLICY,
        |p| p.is_some(),
    )
    .await;
    assert!(b.metric("kubefence_api_writes_total").await > 0.0);
    // What the step-down tests read is what a change of leadership logs.
    assert!(b.log_text().contains("is_leader=true"), "{}", b.log_text());
    eprintln!("leader killed; the other took over after {takeover:.1?}");
    w.finish(vec![b]).await;
}

/// Two operator processes on one Lease, each behind its own recording
/// proxy, and a namespace where new workloads keep arriving.
struct Pair {
    a: Operator,
    b: Operator,
    proxy_a: support::proxy::Proxy,
    proxy_b: support::proxy::Proxy,
    lease: String,
}

impl Pair {
    /// replica-a leads, replica-b follows (both ready).
    async fn start(w: &World, local: &support::apiserver::LocalServer, lease_seconds: u64) -> Pair {
        use support::proxy::Proxy;
        let proxy_a = Proxy::start(&local.url, &local.ca_file).await;
        let proxy_b = Proxy::start(&local.url, &local.ca_file).await;
        let lease = format!("kubefence-e2e-{}", &w.ns["kf-e2e-".len()..]);
        let spec = |identity: &str, proxy: &Proxy| Spec {
            lease_name: lease.clone(),
            lease_seconds,
            server: Some(proxy.url()),
            ..Spec::new(identity)
        };
        let a = w.operator_with(spec("replica-a", &proxy_a)).await;
        eventually(
            "replica-a leads",
            CONVERGE,
            async || lease_holder(&w.admin, &lease).await,
            |h| h.as_deref() == Some("replica-a"),
        )
        .await;
        let b = w.operator_with(spec("replica-b", &proxy_b)).await;
        Pair {
            a,
            b,
            proxy_a,
            proxy_b,
            lease,
        }
    }
}

/// The controller writes (not the Lease) that reached the API server.
fn writes(proxy: &support::proxy::Proxy) -> Vec<support::proxy::Request> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.forwarded && r.is_controller_write())
        .collect()
}

/// Never two writers: every write of replica-a (behind `proxy_a`) reached
/// the API server before the first write of replica-b; both wrote. Returns
/// a's last and b's first write.
fn assert_one_writer_at_a_time(
    proxy_a: &support::proxy::Proxy,
    proxy_b: &support::proxy::Proxy,
) -> (Instant, Instant) {
    let (a, b) = (writes(proxy_a), writes(proxy_b));
    let last_a = a.iter().map(|r| r.at).max().expect("replica-a wrote");
    let first_b = b.iter().map(|r| r.at).min().expect("replica-b wrote");
    let overlap: Vec<_> = a.iter().filter(|r| r.at >= first_b).collect();
    assert!(
        overlap.is_empty(),
        "two writers: replica-a still wrote after replica-b's first write ({:?}): {overlap:#?}",
        b.iter().find(|r| r.at == first_b)
    );
    (last_a, first_b)
}

/// Creates a Deployment in `ns` every 250 ms until dropped: there is
/// always something for a leader to write.
fn keep_creating_workloads(admin: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let (admin, ns) = (admin.clone(), ns.to_string());
    tokio::spawn(async move {
        for i in 0.. {
            create(&admin, deployment(&ns, &format!("w{i}"), &[], &[])).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Defect 4: a leader whose Lease renewals fail (the coordination API
/// answers 503, everything else still works, so nothing else would stop it)
/// must stop writing before the other replica may take the Lease: the
/// writes of the two, as the API server received them, never interleave.
#[tokio::test]
async fn a_leader_whose_renewals_fail_stops_writing_before_the_other_starts() {
    let Some(w) = World::new("renewfail", true).await else {
        return;
    };
    let Some(local) = w.cluster.local.as_ref() else {
        eprintln!("skipped: needs the local server (recording proxies)");
        w.finish(vec![]).await;
        return;
    };
    const LEASE_SECONDS: u64 = 4;
    let pair = Pair::start(&w, local, LEASE_SECONDS).await;
    let creating = keep_creating_workloads(&w.admin, &w.ns);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pair.proxy_a.cut_leases();
    let cut = Instant::now();
    eventually(
        "replica-b leads",
        Duration::from_secs(LEASE_SECONDS * 3),
        async || lease_holder(&w.admin, &pair.lease).await,
        |h| h.as_deref() == Some("replica-b"),
    )
    .await;
    let takeover = cut.elapsed();
    // The new leader writes for the workloads that keep coming.
    eventually(
        "replica-b writes",
        CONVERGE,
        async || writes(&pair.proxy_b).len(),
        |n| *n > 0,
    )
    .await;
    creating.abort();
    let (last_a, first_b) = assert_one_writer_at_a_time(&pair.proxy_a, &pair.proxy_b);
    // Not vacuous: replica-a went on writing after its renewals began to
    // fail (it did lead then), and stepped down by itself.
    assert!(last_a > cut, "replica-a never wrote after the cut");
    assert!(
        pair.a.log_text().contains("is_leader=false"),
        "{}",
        pair.a.log_text()
    );
    eprintln!(
        "renewals cut; replica-a's last write {:.1?} after, replica-b led {takeover:.1?} after and first wrote {:.1?} after",
        last_a - cut,
        first_b - cut
    );
    let Pair { a, b, .. } = pair;
    w.finish(vec![a, b]).await;
}

/// Defect 4: a leader cut off from the API server cannot renew its Lease;
/// once the lease duration has passed since its last renewal it must stop
/// leading (exit, as controller-runtime does, or drop the leader flag:
/// the baseline controller logs `leadership changed ... is_leader=false`),
/// since by then the other replica has taken over and writes.
#[tokio::test]
async fn a_partitioned_leader_stops_leading_within_the_lease() {
    let Some(w) = World::new("partition", true).await else {
        return;
    };
    let Some(local) = w.cluster.local.as_ref() else {
        eprintln!("skipped: the partition needs the local server");
        w.finish(vec![]).await;
        return;
    };
    const LEASE_SECONDS: u64 = 4;
    let mut pair = Pair::start(&w, local, LEASE_SECONDS).await;
    pair.proxy_a.cut();
    let cut = Instant::now();
    eventually(
        "replica-b leads",
        Duration::from_secs(LEASE_SECONDS * 3),
        async || lease_holder(&w.admin, &pair.lease).await,
        |h| h.as_deref() == Some("replica-b"),
    )
    .await;
    // b leads now; a, still cut off, must have stepped down already.
    let stepped_down = eventually(
        "replica-a steps down",
        Duration::from_secs(1),
        async || pair.a.exited() || pair.a.log_text().contains("is_leader=false"),
        |down| *down,
    )
    .await;
    assert!(stepped_down);
    eprintln!("partitioned; replica-b led {:.1?} after", cut.elapsed());
    pair.proxy_a.heal();
    let Pair { a, b, .. } = pair;
    drop(a);
    w.finish(vec![b]).await;
}

/// Defect 4: on SIGTERM (a rollout) the leader stops writing and gives the
/// Lease back in its shutdown path, so the other replica takes over at
/// once, not after the lease duration (15 s here); the two never write at
/// the same time.
#[tokio::test]
async fn sigterm_releases_the_lease_and_the_other_takes_over_at_once() {
    let Some(w) = World::new("sigterm", true).await else {
        return;
    };
    let Some(local) = w.cluster.local.as_ref() else {
        eprintln!("skipped: needs the local server (recording proxies)");
        w.finish(vec![]).await;
        return;
    };
    const LEASE_SECONDS: u64 = 15;
    let pair = Pair::start(&w, local, LEASE_SECONDS).await;
    let creating = keep_creating_workloads(&w.admin, &w.ns);
    // The follower has seen the Lease held: without a release it would
    // wait for the expiry, up to 15 s from the last renewal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        lease_holder(&w.admin, &pair.lease).await.as_deref(),
        Some("replica-a")
    );
    let Pair {
        a,
        b,
        proxy_a,
        proxy_b,
        lease,
    } = pair;
    let terminated = Instant::now();
    let a_log = a.terminate().await;
    eventually(
        "replica-b leads",
        Duration::from_secs(LEASE_SECONDS + 5),
        async || lease_holder(&w.admin, &lease).await,
        |h| h.as_deref() == Some("replica-b"),
    )
    .await;
    let takeover = terminated.elapsed();
    eventually(
        "replica-b writes",
        CONVERGE,
        async || writes(&proxy_b).len(),
        |n| *n > 0,
    )
    .await;
    creating.abort();
    assert_one_writer_at_a_time(&proxy_a, &proxy_b);
    assert!(
        takeover < Duration::from_secs(5),
        "took over {takeover:?} after SIGTERM (lease {LEASE_SECONDS} s): the Lease was not released\n{a_log}"
    );
    eprintln!("SIGTERM; replica-b led {takeover:.1?} after");
    w.finish(vec![b]).await;
}

// ------------------------------------------------------------------ Learned

/// The name the builder gives the policy of Deployment `web` (Kubescape's
/// `<kind>-<name>`), for both the GeneratedNetworkPolicy and its
/// NetworkPolicy.
const LEARNED_POLICY: &str = "deployment-web";

fn learned_kind(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = kube::discovery::ApiResource {
        group: "kubefence.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kubefence.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn generated_policies(w: &World) -> Api<DynamicObject> {
    learned_kind(
        &w.admin,
        &w.ns,
        "GeneratedNetworkPolicy",
        "generatednetworkpolicies",
    )
}

fn neighborhoods(w: &World) -> Api<DynamicObject> {
    learned_kind(
        &w.admin,
        &w.ns,
        "NetworkNeighborhood",
        "networkneighborhoods",
    )
}

/// A kubefence.dev NetworkNeighborhood of Deployment `web` (pods `app:
/// web`), as Kubescape's node agent writes them: `web` was seen calling
/// pods `app: api` on TCP `port`.
fn web_neighborhood(ns: &str, port: u16) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "NetworkNeighborhood",
        "metadata": {
            "name": "deployment-web",
            "namespace": ns,
            "labels": {
                "kubescape.io/workload-kind": "Deployment",
                "kubescape.io/workload-name": "web",
                "kubescape.io/workload-namespace": ns,
            },
            "annotations": {"kubescape.io/status": "completed"},
        },
        "spec": {
            "matchLabels": {"app": "web"},
            "containers": [{
                "name": "web",
                "ingress": [],
                "egress": [{
                    "identifier": format!("api-{port}"),
                    "type": "internal",
                    "podSelector": {"matchLabels": {"app": "api"}},
                    "ports": [{"name": format!("TCP-{port}"), "protocol": "TCP", "port": port}],
                }],
            }],
        },
    })
}

async fn learned_operator(w: &World) -> Operator {
    let mut spec = Spec::new("learned");
    spec.learned = true;
    w.operator_with(spec).await
}

async fn generated(w: &World) -> Option<Value> {
    generated_policies(w)
        .get_opt(LEARNED_POLICY)
        .await
        .unwrap()
        .map(|g| serde_json::to_value(g).unwrap())
}

/// The TCP ports the value's egress rules allow (a GNP's `spec.spec` or a
/// NetworkPolicy's `spec`).
fn egress_ports(spec: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = spec["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .filter(|p| *p != 53)
        .collect();
    out.sort();
    out
}

fn gnp_ports(g: &Option<Value>) -> Vec<i64> {
    g.as_ref()
        .map(|g| egress_ports(&g["spec"]["spec"]))
        .unwrap_or_default()
}

fn np_ports(p: &Option<NetworkPolicy>) -> Vec<i64> {
    p.as_ref()
        .map(|p| egress_ports(&serde_json::to_value(&p.spec).unwrap()))
        .unwrap_or_default()
}

fn condition_reason(g: &Option<Value>) -> Option<String> {
    g.as_ref()?["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Enforced")?["reason"]
        .as_str()
        .map(String::from)
}

fn annotation_of(g: &Option<Value>, key: &str) -> Option<String> {
    g.as_ref()?["metadata"]["annotations"][key]
        .as_str()
        .map(String::from)
}

async fn approve(w: &World) {
    generated_policies(w)
        .patch(
            LEARNED_POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kubefence.dev/approved": "true"}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn learned_a_neighborhood_gets_a_generated_policy_and_nothing_is_enforced() {
    let Some(w) = World::new("learned-shadow", false).await else {
        return;
    };
    let op = learned_operator(&w).await;
    let nn = create(&w.admin, web_neighborhood(&w.ns, 8080)).await;
    let g = eventually(
        "a GeneratedNetworkPolicy waiting for approval",
        CONVERGE,
        async || generated(&w).await,
        |g| gnp_ports(g) == vec![8080] && condition_reason(g).as_deref() == Some("ApprovalNeeded"),
    )
    .await
    .unwrap();
    let owners = g["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0]["uid"], nn["metadata"]["uid"]);
    assert_eq!(owners[0]["kind"], "NetworkNeighborhood");
    assert_eq!(owners[0]["apiVersion"], "kubefence.dev/v1alpha1");
    assert_eq!(g["metadata"]["labels"]["kubefence.dev/source"], "learned");
    assert_eq!(
        g["spec"]["spec"]["podSelector"]["matchLabels"]["app"],
        "web"
    );
    // Shadow mode: no NetworkPolicy without an approval.
    throughout(
        "no NetworkPolicy before approval",
        Duration::from_secs(2),
        async || w.policy(LEARNED_POLICY).await,
        |p| p.is_none(),
    )
    .await;
    // Kubescape's group is not installed here: skipped, said once, no crash.
    let log = op.log_text();
    let skipped = log
        .lines()
        .filter(|l| {
            l.contains("NetworkNeighborhoods not served (CRD not installed): skipped")
                && l.contains("spdx.softwarecomposition.kubescape.io")
        })
        .count();
    assert_eq!(skipped, 1, "{log}");
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn learned_approval_applies_and_a_change_waits_for_a_new_approval() {
    let Some(w) = World::new("learned-approval", false).await else {
        return;
    };
    let op = learned_operator(&w).await;
    create(&w.admin, web_neighborhood(&w.ns, 8080)).await;
    eventually(
        "the GeneratedNetworkPolicy",
        CONVERGE,
        async || generated(&w).await,
        |g| gnp_ports(g) == vec![8080],
    )
    .await;
    approve(&w).await;
    let np = w
        .policy_when("the approved policy applied", LEARNED_POLICY, |p| {
            np_ports(p) == vec![8080]
        })
        .await
        .unwrap();
    let managers: Vec<(String, String)> = np
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        vec![("kubefence".to_string(), "Apply".to_string())],
        "server-side apply by kubefence only"
    );
    let g = eventually(
        "the approval recorded",
        CONVERGE,
        async || generated(&w).await,
        |g| {
            condition_reason(g).as_deref() == Some("Enforced")
                && annotation_of(g, "kubefence.dev/approved-hash").is_some()
        },
    )
    .await
    .unwrap();
    let owner = &np.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "GeneratedNetworkPolicy");
    assert_eq!(Some(owner.uid.as_str()), g["metadata"]["uid"].as_str());
    // The approval holds while the spec does not change.
    throughout(
        "the approval of an unchanged spec",
        Duration::from_secs(2),
        async || generated(&w).await,
        |g| annotation_of(g, "kubefence.dev/approved").as_deref() == Some("true"),
    )
    .await;

    // The workload is seen calling another port: a new spec, a new approval.
    neighborhoods(&w)
        .patch(
            "deployment-web",
            &PatchParams::apply("kubefence-e2e").force(),
            &Patch::Apply(web_neighborhood(&w.ns, 9090)),
        )
        .await
        .unwrap();
    eventually(
        "the new spec, waiting for approval",
        CONVERGE,
        async || generated(&w).await,
        |g| {
            gnp_ports(g) == vec![9090]
                && annotation_of(g, "kubefence.dev/approved").is_none()
                && condition_reason(g).as_deref() == Some("ApprovalNeeded")
        },
    )
    .await;
    throughout(
        "the approved policy kept until the new spec is approved",
        Duration::from_secs(2),
        async || w.policy(LEARNED_POLICY).await,
        |p| np_ports(p) == vec![8080],
    )
    .await;
    approve(&w).await;
    w.policy_when("the newly approved policy", LEARNED_POLICY, |p| {
        np_ports(p) == vec![9090]
    })
    .await;

    // The neighborhood goes: its generated policy and the NetworkPolicy go.
    neighborhoods(&w)
        .delete("deployment-web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the GeneratedNetworkPolicy removed",
        CONVERGE,
        async || generated(&w).await,
        Option::is_none,
    )
    .await;
    w.policy_when("the NetworkPolicy removed", LEARNED_POLICY, Option::is_none)
        .await;
    w.finish(vec![op]).await;
}

#[tokio::test]
async fn learned_a_foreign_policy_with_the_learned_name_is_left_alone() {
    let Some(w) = World::new("learned-foreign", false).await else {
        return;
    };
    let theirs = create(
        &w.admin,
        policy(&w.ns, LEARNED_POLICY, json!({"team": "payments"}), "web"),
    )
    .await;
    let op = learned_operator(&w).await;
    create(&w.admin, web_neighborhood(&w.ns, 8080)).await;
    eventually(
        "the GeneratedNetworkPolicy",
        CONVERGE,
        async || generated(&w).await,
        |g| gnp_ports(g) == vec![8080],
    )
    .await;
    approve(&w).await;
    eventually(
        "a conflict in the status",
        CONVERGE,
        async || generated(&w).await,
        |g| condition_reason(g).as_deref() == Some("PolicyConflict"),
    )
    .await;
    throughout(
        "their policy untouched",
        Duration::from_secs(2),
        async || w.policy(LEARNED_POLICY).await,
        |p| {
            p.as_ref()
                .and_then(|p| p.metadata.resource_version.clone())
                .as_deref()
                == theirs["metadata"]["resourceVersion"].as_str()
        },
    )
    .await;
    w.finish(vec![op]).await;
}

// ------------------------------------------------------------------ Intents

fn intent_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = kube::discovery::ApiResource {
        group: "kubefence.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kubefence.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// The intent CRDs as the API server enforces them: a binding with an empty
/// selector is refused (it would select every pod), one with
/// matchExpressions is accepted; an IntentPolicy's `policyNames` is a set
/// (a duplicate is refused) and `adapterStatus` a map keyed by engine.
#[tokio::test]
async fn the_intent_crds_refuse_empty_selectors_and_duplicate_policy_names() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let ns = namespace(&admin, "intentcrd", false).await;
    let bindings = intent_api(
        &admin,
        &ns,
        "SecurityIntentBinding",
        "securityintentbindings",
    );
    let binding = |selector: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "kubefence.dev/v1alpha1",
            "kind": "SecurityIntentBinding",
            "metadata": {"name": "b", "namespace": ns},
            "spec": {"intents": [{"name": "dns-only"}], "selector": selector},
        }))
        .unwrap()
    };
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for (what, selector) in [
        ("empty", json!({})),
        (
            "empty lists",
            json!({"matchLabels": {}, "matchExpressions": []}),
        ),
    ] {
        match bindings.create(&dry, &binding(selector)).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                assert!(e.message.contains("selector is empty"), "{what}: {e:?}");
            }
            other => panic!("{what} selector accepted: {other:?}"),
        }
    }
    bindings
        .create(
            &dry,
            &binding(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]}),
            ),
        )
        .await
        .unwrap();

    let policies = intent_api(&admin, &ns, "IntentPolicy", "intentpolicies");
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "IntentPolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"binding": "SecurityIntentBinding/b", "selector": {"matchLabels": {"app": "api"}},
                 "intents": [{"name": "dns-only", "id": "dnsOnly", "action": "Enforce", "rules": {"name": "x"}}]},
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let status = |names: Value| {
        json!({"status": {"policies": 1, "policyNames": names,
                          "adapterStatus": [{"engine": "networkpolicy", "state": "Applied"}]}})
    };
    policies
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(status(json!(["NetworkPolicy/kf-intent-b-dnsonly"]))),
        )
        .await
        .unwrap();
    match policies
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(status(json!(["NetworkPolicy/x", "NetworkPolicy/x"]))),
        )
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("duplicate policyNames accepted: {other:?}"),
    }
    policies
        .delete("p", &DeleteParams::default())
        .await
        .unwrap();
    support::remove_namespace(&admin, &ns).await;
}
