//! End-to-end tests of isolation profiles against a real kube-apiserver
//! (the harness of `tests/e2e.rs`: `scripts/test-apiserver.sh` builds it,
//! `KUBEFENCE_E2E_KUBECONFIG` points at another cluster,
//! `KUBEFENCE_E2E_SKIP` skips).
//!
//! The profiles controller runs in-process here, over a client that counts
//! every request it sends (the local server has no kubelet: pods are API
//! objects, which is all the controller reads). The API server judges the
//! CRD's schema and CEL rules, server-side apply, ownerReferences and
//! field managers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kubefence_operator::context::{Context, OperatorConfig};
use serde_json::{Value, json};

use support::cluster::{self, Cluster, FULL_INSTALL, operator_user};
use support::{CONVERGE, create, eventually, namespace, throughout};

const POLICY: &str = "kf-profile-isolationprofile-python";

/// One test's world: the cluster, an admin client, a namespace and the
/// profiles controller running in-process as the operator's own
/// ServiceAccount (RBAC of deploy/ judges it; the audit log counts it).
struct World {
    cluster: &'static Cluster,
    admin: Client,
    ns: String,
    audit_from: u64,
    controller: tokio::task::JoinHandle<()>,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl World {
    async fn new(test: &str) -> Option<World> {
        let cluster = cluster::cluster()?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
        let lock = cluster::exclusive().await;
        let admin = cluster.admin().await;
        let ns = namespace(&admin, test, false).await;
        let audit_from = cluster.audit_offset();
        let client = cluster.operator_client(FULL_INSTALL).await;
        let config = OperatorConfig {
            profiles: true,
            namespace: FULL_INSTALL.into(),
            ..OperatorConfig::default()
        }
        .normalized();
        let ctx = Arc::new(Context::with_client(client, config));
        let controller = tokio::spawn(async move {
            let _ = kubefence_operator::controllers::profiles::start(ctx).await;
        });
        Some(World {
            cluster,
            admin,
            ns,
            audit_from,
            controller,
            _lock: lock,
        })
    }

    fn profiles(&self) -> Api<DynamicObject> {
        let resource = kube::core::ApiResource {
            group: "kubefence.dev".into(),
            version: "v1alpha1".into(),
            api_version: "kubefence.dev/v1alpha1".into(),
            kind: "IsolationProfile".into(),
            plural: "isolationprofiles".into(),
        };
        Api::namespaced_with(self.admin.clone(), &self.ns, &resource)
    }

    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn policy(&self) -> Option<NetworkPolicy> {
        self.policies().get_opt(POLICY).await.unwrap()
    }

    async fn status(&self, name: &str) -> Value {
        self.profiles()
            .get_opt(name)
            .await
            .unwrap()
            .map(|p| p.data["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// The controller's requests since `offset`, by the audit log.
    fn requests_since(&self, offset: u64) -> Option<Vec<String>> {
        self.cluster
            .requests_since(&operator_user(FULL_INSTALL), offset)
    }

    async fn end(self) {
        self.controller.abort();
        if let Some(refused) = self
            .cluster
            .forbidden_since(&operator_user(FULL_INSTALL), self.audit_from)
        {
            assert!(refused.is_empty(), "refused by RBAC: {refused:#?}");
        }
        support::remove_namespace(&self.admin, &self.ns).await;
    }
}

fn condition(status: &Value, type_: &str) -> Option<(String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn is_write(request: &str) -> bool {
    [
        "create ",
        "patch ",
        "update ",
        "delete ",
        "deletecollection ",
    ]
    .iter()
    .any(|v| request.starts_with(v))
}

fn sandbox_pod(ns: &str, i: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("sandbox-{i}"), "namespace": ns,
                     "labels": {"template": "python", "sandbox": format!("s{i}")}},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/sandbox:1"}]},
    })
}

fn python_profile(ns: &str, extra: Value) -> Value {
    let mut spec = json!({"podSelector": {"matchLabels": {"template": "python"}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    profile(ns, "python", spec)
}

fn egress_text(np: &Option<NetworkPolicy>) -> String {
    np.as_ref()
        .and_then(|p| p.spec.as_ref())
        .map(|s| serde_json::to_string(&s.egress).unwrap())
        .unwrap_or_default()
}

fn profile(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "IsolationProfile",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// The API server refuses, by the CRD's schema and CEL rules, a profile
/// whose selector is empty (it would isolate the whole namespace), bad
/// CIDRs and resolvers, an unknown engine, and a custom policy mixed with
/// the default rules' fields; a good one gets the defaults.
#[tokio::test]
async fn the_crd_refuses_bad_isolation_profiles() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let ns = namespace(&admin, "profile-crd", false).await;
    let good = profile(
        &ns,
        "good",
        json!({"podSelector": {"matchLabels": {"template": "python"}}}),
    );
    let api = support::dynamic_api(&admin, &good).await;
    let post = async |v: Value, dry_run: bool| {
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        api.create(
            &PostParams {
                dry_run,
                ..PostParams::default()
            },
            &obj,
        )
        .await
    };
    let sel = json!({"matchLabels": {"template": "python"}});
    for (what, spec) in [
        ("no selector", json!({})),
        ("empty selector", json!({"podSelector": {}})),
        (
            "empty lists",
            json!({"podSelector": {"matchLabels": {}, "matchExpressions": []}}),
        ),
        (
            "bad CIDR",
            json!({"podSelector": sel, "blockedCIDRs": ["10.0.0.0/8", "ten"]}),
        ),
        (
            "bad allowed CIDR",
            json!({"podSelector": sel, "allowedCIDRs": ["1.2.3.4"]}),
        ),
        (
            "public dns without resolvers",
            json!({"podSelector": sel, "dns": {"mode": "public"}}),
        ),
        (
            "a resolver that is no address",
            json!({"podSelector": sel, "dns": {"mode": "public", "resolvers": ["dns.google"]}}),
        ),
        (
            "resolvers with cluster dns",
            json!({"podSelector": sel, "dns": {"mode": "cluster", "resolvers": ["8.8.8.8"]}}),
        ),
        (
            "unknown engine",
            json!({"podSelector": sel, "engine": "iptables"}),
        ),
        (
            "policy with dns",
            json!({"podSelector": sel, "dns": {"mode": "none"}, "policy": {"egress": [{}]}}),
        ),
    ] {
        match post(profile(&ns, "bad", spec), false).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{what}: {e:?}"),
            other => panic!("{what}: accepted or wrong error: {other:?}"),
        }
    }
    let created = post(good, true).await.unwrap();
    assert_eq!(created.data["spec"]["engine"], "networkpolicy");
    assert_eq!(created.data["spec"]["enabled"], true);
    let custom = profile(
        &ns,
        "custom",
        json!({"podSelector": sel, "policy": {"egress": [{}]}, "allowedCIDRs": ["10.1.0.0/16"]}),
    );
    post(custom, true).await.unwrap();
    support::remove_namespace(&admin, &ns).await;
}

/// One policy for the pool, owned by the profile; creating 1,000 matching
/// pods makes the controller send no write at all (the API server's audit
/// log counts its requests); a resync of the unchanged cluster writes
/// nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_policy_for_many_pods_and_no_write_for_pods() {
    let Some(w) = World::new("profile-pods").await else {
        return;
    };
    let created = create(&w.admin, python_profile(&w.ns, json!({}))).await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let np = eventually(
        "the profile's policy",
        CONVERGE,
        async || w.policy().await,
        Option::is_some,
    )
    .await
    .unwrap();
    let owners = np.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].uid, uid);
    assert_eq!(owners[0].kind, "IsolationProfile");
    assert_eq!(owners[0].controller, Some(true));
    let labels = np.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubefence.dev/source"], "profile");
    assert_eq!(labels["kubefence.dev/profile"], "python");
    let managers: Vec<String> = np
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["kubefence".to_string()]);
    let status = eventually(
        "Ready",
        CONVERGE,
        async || w.status("python").await,
        |s| condition(s, "Ready").is_some_and(|c| c.0 == "True"),
    )
    .await;
    assert_eq!(status["policyName"], POLICY);
    assert_eq!(
        condition(&status, "Effective"),
        Some(("True".into(), "NoPathReopened".into()))
    );
    // Let the controller settle (its own status write comes back as an event).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // No kube-controller-manager on the local server: the namespace's
    // default ServiceAccount, which pod admission wants, is made here.
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": w.ns}}),
    )
    .await;
    let before = w.cluster.audit_offset();
    let pods: Api<Pod> = Api::namespaced(w.admin.clone(), &w.ns);
    let started = std::time::Instant::now();
    let results: Vec<_> = futures::stream::iter(0..1000)
        .map(|i| {
            let pods = pods.clone();
            let pod: Pod = serde_json::from_value(sandbox_pod(&w.ns, i)).unwrap();
            async move { pods.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .take(3)
        .collect();
    assert!(failed.is_empty(), "pods not created: {failed:?}");
    eprintln!("1,000 pods created in {:.1?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(requests) = w.requests_since(before) {
        let writes: Vec<&String> = requests.iter().filter(|r| is_write(r)).collect();
        eprintln!(
            "controller requests while 1,000 pods were created: {} ({} writes)",
            requests.len(),
            writes.len()
        );
        assert!(writes.is_empty(), "pods caused writes: {writes:#?}");
        let reads: Vec<&String> = requests
            .iter()
            .filter(|r| r.starts_with("get ") || r.starts_with("list "))
            .collect();
        assert!(reads.is_empty(), "pods caused reads: {reads:#?}");
    }
    // Still one policy for the whole pool.
    let all = w.policies().list(&Default::default()).await.unwrap();
    assert_eq!(all.items.len(), 1);
    w.end().await;
}

/// A hand edit of the policy is repaired; a profile change reaches the
/// policy at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_and_a_profile_change_propagates() {
    let Some(w) = World::new("profile-drift").await else {
        return;
    };
    create(&w.admin, python_profile(&w.ns, json!({}))).await;
    let np = eventually(
        "the policy",
        CONVERGE,
        async || w.policy().await,
        Option::is_some,
    )
    .await;
    let desired = egress_text(&np);
    assert!(desired.contains("169.254.0.0/16"), "{desired}");
    // Someone widens it: every egress allowed.
    w.policies()
        .patch(
            POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": [{}]}})),
        )
        .await
        .unwrap();
    eventually(
        "the edit repaired",
        CONVERGE,
        async || w.policy().await,
        |p| egress_text(p) == desired,
    )
    .await;
    // The profile changes: no DNS rule any more.
    w.profiles()
        .patch(
            "python",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"dns": {"mode": "none"}}})),
        )
        .await
        .unwrap();
    let np = eventually(
        "the change propagated",
        CONVERGE,
        async || w.policy().await,
        |p| {
            p.as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.egress.as_ref())
                .is_some_and(|e| e.len() == 1)
        },
    )
    .await;
    assert!(!egress_text(&np).contains("kube-dns"));
    // A hand delete is repaired too.
    w.policies()
        .delete(POLICY, &Default::default())
        .await
        .unwrap();
    eventually(
        "re-created",
        CONVERGE,
        async || w.policy().await,
        Option::is_some,
    )
    .await;
    w.end().await;
}

/// A policy someone else made with the profile's name is never taken
/// over: the status says PolicyNameTaken and the object stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_same_named_policy_is_left_alone() {
    let Some(w) = World::new("profile-foreign").await else {
        return;
    };
    let foreign = create(
        &w.admin,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": POLICY, "namespace": w.ns},
            "spec": {"podSelector": {"matchLabels": {"app": "theirs"}}, "policyTypes": ["Ingress"]},
        }),
    )
    .await;
    let version = foreign["metadata"]["resourceVersion"].clone();
    create(&w.admin, python_profile(&w.ns, json!({}))).await;
    eventually(
        "PolicyNameTaken",
        CONVERGE,
        async || w.status("python").await,
        |s| condition(s, "Ready") == Some(("False".into(), "PolicyNameTaken".into())),
    )
    .await;
    throughout(
        "the foreign policy untouched",
        Duration::from_secs(2),
        async || w.policy().await,
        |p| {
            p.as_ref()
                .map(|p| json!(p.metadata.resource_version) == version)
                .unwrap_or(false)
        },
    )
    .await;
    w.end().await;
}

/// A custom `egress: [{}]` stays guarded (narrowed, reported); another
/// policy that opens ingress from everywhere turns Effective False, naming
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_policies_stay_guarded_and_effective_follows_other_policies() {
    let Some(w) = World::new("profile-effective").await else {
        return;
    };
    create(
        &w.admin,
        python_profile(&w.ns, json!({"policy": {"egress": [{}], "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "router"}}}]}]}})),
    )
    .await;
    let np = eventually(
        "the policy",
        CONVERGE,
        async || w.policy().await,
        Option::is_some,
    )
    .await;
    let egress = egress_text(&np);
    assert!(
        egress.contains("0.0.0.0/0") && egress.contains("10.0.0.0/8"),
        "{egress}"
    );
    let status = eventually(
        "narrowing reported",
        CONVERGE,
        async || w.status("python").await,
        |s| s["narrowed"].as_array().is_some_and(|n| !n.is_empty()),
    )
    .await;
    assert!(
        status["narrowed"][0]
            .as_str()
            .unwrap()
            .contains("spec.policy.egress[0]")
    );

    create(
        &w.admin,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all-in", "namespace": w.ns},
            "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
        }),
    )
    .await;
    let status = eventually(
        "Effective False",
        CONVERGE,
        async || w.status("python").await,
        |s| condition(s, "Effective") == Some(("False".into(), "PathsReopened".into())),
    )
    .await;
    assert_eq!(
        status["reopenedPaths"][0]["policy"],
        format!("{}/allow-all-in", w.ns)
    );
    assert_eq!(status["reopenedPaths"][0]["direction"], "ingress");

    w.end().await;
}

/// agent-sandbox's four CRDs (testdata/third-party/agent-sandbox, verbatim
/// from upstream), installed unless the cluster already serves them;
/// returns once SandboxTemplate is served.
async fn install_agent_sandbox(admin: &Client) {
    use kubefence_k8s::sandbox::{EXTENSIONS_GROUP, TEMPLATE_KIND};
    let served = async || {
        kube::discovery::group(admin, EXTENSIONS_GROUP)
            .await
            .ok()
            .and_then(|g| g.recommended_kind(TEMPLATE_KIND))
            .is_some()
    };
    if served().await {
        return;
    }
    let dir = support::apiserver::repo_root().join("testdata/third-party/agent-sandbox/crds");
    for entry in std::fs::read_dir(&dir).unwrap() {
        for crd in cluster::yaml_docs(&entry.unwrap().path()).unwrap() {
            cluster::apply(admin, crd).await.unwrap();
        }
    }
    eventually(
        "agent-sandbox's CRDs served",
        CONVERGE,
        async || served().await,
        |s| *s,
    )
    .await;
}

/// An object of agent-sandbox (v1beta1, the version its CRDs store).
fn agent_sandbox(kind: &str, ns: &str, name: &str, owner: Option<&Value>, spec: Value) -> Value {
    let group = if kind == "Sandbox" {
        "agents.x-k8s.io"
    } else {
        "extensions.agents.x-k8s.io"
    };
    let mut meta = json!({"name": name, "namespace": ns});
    if let Some(o) = owner {
        meta["ownerReferences"] = json!([{
            "apiVersion": o["apiVersion"], "kind": o["kind"],
            "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true,
        }]);
    }
    json!({"apiVersion": format!("{group}/v1beta1"), "kind": kind, "metadata": meta, "spec": spec})
}

fn pod_template() -> Value {
    json!({"spec": {"containers": [{"name": "main", "image": "registry.invalid/sandbox:1"}]}})
}

/// A sandbox's pod as agent-sandbox's controller makes it: owned by its
/// Sandbox, labelled with the Sandbox's name hash and (when `template`)
/// with the template hash.
fn sandbox_pod_of(ns: &str, sandbox: &Value, template: Option<&str>) -> Value {
    use kubefence_k8s::sandbox::{SANDBOX_NAME_HASH_LABEL, TEMPLATE_REF_HASH_LABEL, name_hash};
    let name = sandbox["metadata"]["name"].as_str().unwrap();
    let mut labels = json!({SANDBOX_NAME_HASH_LABEL: name_hash(name)});
    if let Some(t) = template {
        labels[TEMPLATE_REF_HASH_LABEL] = json!(name_hash(t));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "ownerReferences": [{"apiVersion": sandbox["apiVersion"], "kind": "Sandbox",
                                          "name": name, "uid": sandbox["metadata"]["uid"], "controller": true}]},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/sandbox:1"}]},
    })
}

/// agent-sandbox: a SandboxTemplate (fixtures judged by the real CRDs)
/// gets the default profile, selecting its pods by agent-sandbox's own
/// template label and owned by the template; a template's networkPolicy is
/// wrapped with the guardrails; a pod of the template that lacks the label
/// (a pool-less sandbox of older agent-sandbox versions) is reported by a
/// Warning event on the template and held by the uncovered policy through
/// its sandbox-name-hash; the annotation opts out and removes both
/// policies; no pod and no template is ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_templates_get_the_default_profile_and_coverage() {
    use kubefence_k8s::sandbox::{TEMPLATE_REF_HASH_LABEL, name_hash};
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    install_agent_sandbox(&cluster.admin().await).await;
    let Some(w) = World::new("sandbox-templates").await else {
        return;
    };
    let ns = w.ns.clone();
    let template = create(
        &w.admin,
        agent_sandbox(
            "SandboxTemplate",
            &ns,
            "python",
            None,
            json!({"podTemplate": pod_template()}),
        ),
    )
    .await;
    let np = eventually(
        "the template's policy",
        CONVERGE,
        async || {
            w.policies()
                .get_opt("kf-profile-sandboxtemplate-python")
                .await
                .unwrap()
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let spec = np.spec.clone().unwrap();
    let selector = spec.pod_selector.clone().unwrap();
    assert_eq!(
        selector.match_labels.unwrap()[TEMPLATE_REF_HASH_LABEL],
        name_hash("python"),
        "selected as agent-sandbox selects the template's pods"
    );
    let owner = &np.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "SandboxTemplate");
    assert_eq!(owner.uid, template["metadata"]["uid"].as_str().unwrap());
    let ingress = serde_json::to_value(&spec.ingress).unwrap();
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "agent-sandbox-system",
        "{ingress}"
    );
    assert_eq!(
        ingress[0]["from"][0]["podSelector"]["matchLabels"]["app"],
        "sandbox-router"
    );
    let egress = egress_text(&Some(np.clone()));
    assert!(
        egress.contains("0.0.0.0/0")
            && egress.contains("10.0.0.0/8")
            && !egress.contains("\"port\":53"),
        "public internet out, private ranges and cluster DNS blocked: {egress}"
    );

    // A template's own rules are wrapped with the guardrails.
    create(
        &w.admin,
        agent_sandbox(
            "SandboxTemplate",
            &ns,
            "custom",
            None,
            json!({"podTemplate": pod_template(), "networkPolicy": {"egress": [{}]}}),
        ),
    )
    .await;
    let custom = eventually(
        "the custom template's policy",
        CONVERGE,
        async || {
            w.policies()
                .get_opt("kf-profile-sandboxtemplate-custom")
                .await
                .unwrap()
        },
        Option::is_some,
    )
    .await;
    let egress = egress_text(&custom);
    assert!(
        egress.contains("0.0.0.0/0") && egress.contains("169.254.0.0/16"),
        "`egress: [{{}}]` narrowed to the public internet: {egress}"
    );

    // Coverage: a warm pool's sandbox whose pod carries the template label,
    // and a claimed sandbox whose pod does not.
    let pool = create(
        &w.admin,
        agent_sandbox(
            "SandboxWarmPool",
            &ns,
            "pool",
            None,
            json!({"replicas": 1, "sandboxTemplateRef": {"name": "python"}}),
        ),
    )
    .await;
    let claim = create(
        &w.admin,
        agent_sandbox(
            "SandboxClaim",
            &ns,
            "claim",
            None,
            json!({"warmPoolRef": {"name": "pool"}}),
        ),
    )
    .await;
    let warm = create(
        &w.admin,
        agent_sandbox(
            "Sandbox",
            &ns,
            "warm",
            Some(&pool),
            json!({"podTemplate": pod_template()}),
        ),
    )
    .await;
    let claimed = create(
        &w.admin,
        agent_sandbox(
            "Sandbox",
            &ns,
            "claimed",
            Some(&claim),
            json!({"podTemplate": pod_template()}),
        ),
    )
    .await;
    // No kube-controller-manager here: the namespace's default
    // ServiceAccount, which pod admission wants, is made by hand.
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
    )
    .await;
    let pods_from = w.cluster.audit_offset();
    create(&w.admin, sandbox_pod_of(&ns, &warm, Some("python"))).await;
    create(&w.admin, sandbox_pod_of(&ns, &claimed, None)).await;
    // Pods wake nothing; a Sandbox change does.
    let sandboxes = support::dynamic_api(&w.admin, &claimed).await;
    sandboxes
        .patch(
            "claimed",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubefence-e2e": "touched"}}})),
        )
        .await
        .unwrap();
    let held = eventually(
        "the uncovered policy",
        CONVERGE,
        async || {
            w.policies()
                .get_opt("kf-profile-sandboxtemplate-python-uncovered")
                .await
                .unwrap()
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let expr = &held
        .spec
        .clone()
        .unwrap()
        .pod_selector
        .unwrap()
        .match_expressions
        .unwrap()[0];
    assert_eq!(expr.key, "agents.x-k8s.io/sandbox-name-hash");
    assert_eq!(
        expr.values.clone().unwrap(),
        vec![name_hash("claimed")],
        "only the missed pod"
    );
    assert_eq!(
        held.spec.as_ref().unwrap().egress,
        np.spec.as_ref().unwrap().egress,
        "the same rules as the template's policy"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.admin.clone(), &ns);
    let warned = eventually(
        "a PodsNotSelected event on the template",
        CONVERGE,
        async || {
            events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("PodsNotSelected")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("python")
                })
                .collect::<Vec<_>>()
        },
        |e| !e.is_empty(),
    )
    .await;
    assert_eq!(warned[0].type_.as_deref(), Some("Warning"));
    assert!(
        warned[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("{ns}/claimed")),
        "{warned:?}"
    );

    // Opting out removes both policies.
    support::dynamic_api(&w.admin, &template)
        .await
        .patch(
            "python",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kubefence.dev/isolation": "disabled"}}}),
            ),
        )
        .await
        .unwrap();
    eventually(
        "both policies gone",
        CONVERGE,
        async || {
            (
                w.policies()
                    .get_opt("kf-profile-sandboxtemplate-python")
                    .await
                    .unwrap()
                    .is_some(),
                w.policies()
                    .get_opt("kf-profile-sandboxtemplate-python-uncovered")
                    .await
                    .unwrap()
                    .is_some(),
            )
        },
        |present| *present == (false, false),
    )
    .await;
    let written: Vec<String> = w
        .requests_since(pods_from)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| is_write(r) && (r.contains("/pods") || r.contains("/sandbox")))
        .collect();
    assert!(
        written.is_empty(),
        "pods and agent-sandbox's objects are never written: {written:?}"
    );
    // Leave no template behind for the next tests' controllers (the local
    // server never finishes deleting a namespace).
    for (object, name) in [
        (&template, "python"),
        (&claimed, "claimed"),
        (&warm, "warm"),
        (&claim, "claim"),
        (&pool, "pool"),
    ] {
        let _ = support::dynamic_api(&w.admin, object)
            .await
            .delete(name, &Default::default())
            .await;
    }
    let custom_template = agent_sandbox("SandboxTemplate", &ns, "custom", None, json!({}));
    let _ = support::dynamic_api(&w.admin, &custom_template)
        .await
        .delete("custom", &Default::default())
        .await;
    w.end().await;
}

/// Under `dns: public` the cluster resolver is blocked: a pod whose
/// dnsPolicy still points at it is named in the profile's warnings; a pod
/// with dnsPolicy None is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_public_warns_about_pods_that_still_use_the_cluster_resolver() {
    let Some(w) = World::new("profile-dns-public").await else {
        return;
    };
    create(
        &w.admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": w.ns}}),
    )
    .await;
    create(&w.admin, sandbox_pod(&w.ns, 1)).await;
    let mut resolved = sandbox_pod(&w.ns, 2);
    resolved["spec"]["dnsPolicy"] = json!("None");
    resolved["spec"]["dnsConfig"] = json!({"nameservers": ["1.1.1.1"]});
    create(&w.admin, resolved).await;
    create(
        &w.admin,
        python_profile(
            &w.ns,
            json!({"dns": {"mode": "public", "resolvers": ["1.1.1.1"]}}),
        ),
    )
    .await;
    let status = eventually(
        "a dns warning",
        CONVERGE,
        async || w.status("python").await,
        |s| {
            s["warnings"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|t| t.as_str().unwrap_or_default().contains("dns: public"))
            })
        },
    )
    .await;
    let warning = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t.as_str().filter(|t| t.contains("dns: public")))
        .unwrap()
        .to_string();
    assert!(
        warning.contains(&format!("{}/sandbox-1 (ClusterFirst)", w.ns)),
        "{warning}"
    );
    assert!(!warning.contains("sandbox-2"), "{warning}");
    assert!(warning.starts_with("1 pod(s)"), "{warning}");
    w.end().await;
}

/// The CRDs of the engines kubefence writes for (Cilium v1.18.4,
/// network-policy-api's ClusterNetworkPolicy and last AdminNetworkPolicy,
/// KubeArmor; verbatim in testdata/third-party), installed unless served.
async fn install_engine_crds(admin: &Client) {
    support::install_third_party_crds(admin, &["cilium", "network-policy-api", "kubearmor"]).await;
}

/// Every object kubefence writes for another engine is one that engine's
/// real CRD accepts (server-side dry run: schema, formats, CEL): each
/// catalogue intent on each engine that expresses it, a quarantine's
/// deny-all, and an isolation profile's guardrail denies.
#[tokio::test]
async fn engine_objects_pass_the_engines_own_crds() {
    use kubefence_core::intent::{self, CATALOGUE, Intent, Subject};
    use kubefence_core::profile::{self, Profile, ProfileConfig};
    use kubefence_core::ruleset::Engine;
    use kubefence_core::selector::{LabelSelector, Labels};
    use kubefence_k8s::adapters;
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let _lock = cluster::exclusive().await;
    let admin = cluster.admin().await;
    install_engine_crds(&admin).await;
    let ns = namespace(&admin, "engine-objects", false).await;
    let selector =
        LabelSelector::from_labels(Labels::from([("app".to_string(), "api".to_string())]));
    let mut objects: Vec<(String, Value)> = Vec::new();
    for entry in CATALOGUE {
        let params = if entry.id == "egressOnlyToFQDNs" {
            [(
                "fqdns".to_string(),
                vec![
                    "api.example.com".to_string(),
                    "*.cdn.example.com".to_string(),
                ],
            )]
            .into()
        } else {
            Default::default()
        };
        let intent = Intent {
            name: entry.id.to_lowercase(),
            id: entry.id.into(),
            params,
            ..Intent::default()
        };
        let subject = Subject {
            binding: "web".into(),
            namespace: ns.clone(),
            selector: selector.clone(),
        };
        let rules = intent::resolve(&intent, &subject, &Default::default()).unwrap();
        for engine in Engine::ALL {
            if let Ok(r) = adapters::render(engine, &rules, &adapters::Options::default()) {
                objects.push((format!("intent {} on {engine}", entry.id), r.object));
            }
        }
    }
    let target = kubefence_core::model::Workload {
        kind: kubefence_core::model::WorkloadKind::Deployment,
        namespace: ns.clone(),
        name: "api".into(),
        uid: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        selector: selector.clone(),
        pod_labels: Labels::from([("app".to_string(), "api".to_string())]),
        containers: vec![],
        pod_ips: vec![],
    };
    let audit = kubefence_core::quarantine::Audit {
        reason: "crypto miner".into(),
        finding: Some("ALERT-42".into()),
        requester: "e2e".into(),
        time: "2026-11-29T12:00:00Z".into(),
    };
    for engine in [
        kubefence_core::quarantine::Engine::NetworkPolicy,
        kubefence_core::quarantine::Engine::Cilium,
        kubefence_core::quarantine::Engine::AdminNetworkPolicy,
        kubefence_core::quarantine::Engine::ClusterNetworkPolicy,
    ] {
        let plan = kubefence_core::quarantine::plan(
            &target,
            &audit,
            engine,
            &kubefence_core::Cluster::default(),
            &Default::default(),
        )
        .unwrap();
        objects.push((
            format!("quarantine on {}", engine.as_str()),
            kubefence_k8s::quarantine::render(&plan),
        ));
    }
    let mut pool = Profile::new(&ns, "python", selector.clone());
    for engine in [
        Engine::Cilium,
        Engine::ClusterNetworkPolicy,
        Engine::AdminNetworkPolicy,
    ] {
        pool.engine = engine;
        let built = profile::build(&pool, &ProfileConfig::default()).unwrap();
        let r = adapters::profile_guardrails(&pool, &built)
            .unwrap()
            .unwrap();
        objects.push((format!("profile guardrails on {engine}"), r.object));
    }
    // The check can fail: the same guardrails with a field the CRD does
    // not know, and with a CIDR that is not one, are refused. (A
    // server-side apply of an undeclared field is answered 500 "field not
    // declared in schema", which the kube client logs as an error.)
    let cilium = objects
        .iter()
        .find(|(what, _)| what == "profile guardrails on cilium")
        .map(|(_, o)| o.clone())
        .unwrap();
    let mut unknown = cilium.clone();
    unknown["spec"]["egressDenyAll"] = json!(true);
    let refused = cluster::validate(&admin, unknown).await.unwrap_err();
    assert!(refused.contains("egressDenyAll"), "{refused}");
    let mut bad_cidr = cilium;
    bad_cidr["spec"]["egressDeny"][0]["toCIDRSet"][0]["cidr"] = json!("not-a-cidr");
    let refused = cluster::validate(&admin, bad_cidr.clone())
        .await
        .unwrap_err();
    assert!(refused.contains("not-a-cidr"), "{refused}");
    let mut engines_seen = std::collections::BTreeSet::new();
    for (what, object) in objects {
        engines_seen.insert(object["kind"].as_str().unwrap().to_string());
        if let Err(e) = cluster::validate(&admin, object.clone()).await {
            panic!("{what}: refused by the CRD: {e}\n{object:#}");
        }
    }
    for kind in [
        "CiliumNetworkPolicy",
        "ClusterNetworkPolicy",
        "AdminNetworkPolicy",
        "KubeArmorPolicy",
        "NetworkPolicy",
    ] {
        assert!(engines_seen.contains(kind), "no {kind} was checked");
    }
    support::remove_namespace(&admin, &ns).await;
}

/// An engine that can deny gets the guardrails as its own deny object,
/// owned (namespaced) or swept (cluster-scoped) by the controller: another
/// policy's egress to a private range then reopens nothing, while its
/// ingress from everywhere still does; an engine change replaces the
/// object, a hand edit is undone, and deleting the profile removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_that_deny_get_the_guardrails_as_denies() {
    use kubefence_core::profile::{Profile, guardrail_names};
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    install_engine_crds(&cluster.admin().await).await;
    let Some(w) = World::new("profile-engines").await else {
        return;
    };
    let dynamic = |kind: &str, namespaced: bool| {
        let (group, version, plural) = match kind {
            "CiliumNetworkPolicy" => ("cilium.io", "v2", "ciliumnetworkpolicies"),
            _ => (
                "policy.networking.k8s.io",
                "v1alpha1",
                "adminnetworkpolicies",
            ),
        };
        let resource = kube::core::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        };
        if namespaced {
            Api::<DynamicObject>::namespaced_with(w.admin.clone(), &w.ns, &resource)
        } else {
            Api::<DynamicObject>::all_with(w.admin.clone(), &resource)
        }
    };
    let (cnp_name, anp_name) = guardrail_names(&Profile::new(&w.ns, "python", Default::default()));
    let cnps = dynamic("CiliumNetworkPolicy", true);
    let anps = dynamic("AdminNetworkPolicy", false);
    let created = create(&w.admin, python_profile(&w.ns, json!({"engine": "cilium"}))).await;
    let cnp = eventually(
        "the CiliumNetworkPolicy denies",
        CONVERGE,
        async || cnps.get_opt(&cnp_name).await.unwrap(),
        Option::is_some,
    )
    .await
    .unwrap();
    let text = cnp.data["spec"].to_string();
    assert!(
        text.contains("egressDeny")
            && text.contains("10.0.0.0/8")
            && text.contains("169.254.0.0/16"),
        "{text}"
    );
    assert_eq!(
        cnp.metadata.owner_references.as_ref().unwrap()[0].uid,
        created["metadata"]["uid"].as_str().unwrap()
    );
    assert!(w.policy().await.is_some(), "the NetworkPolicy still allows");
    eventually(
        "Ready",
        CONVERGE,
        async || w.status("python").await,
        |s| condition(s, "Ready") == Some(("True".into(), "PolicyInSync".into())),
    )
    .await;

    // Egress to a private range reopens nothing under the denies; ingress
    // from everywhere still reopens a path.
    create(
        &w.admin,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "to-private", "namespace": w.ns},
            "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}], "policyTypes": ["Egress"]},
        }),
    )
    .await;
    create(
        &w.admin,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all-in", "namespace": w.ns},
            "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
        }),
    )
    .await;
    let status = eventually(
        "Effective False for the ingress path only",
        CONVERGE,
        async || w.status("python").await,
        |s| condition(s, "Effective") == Some(("False".into(), "PathsReopened".into())),
    )
    .await;
    let paths = status["reopenedPaths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{paths:#?}");
    assert_eq!(paths[0]["policy"], format!("{}/allow-all-in", w.ns));

    // Another engine: its object replaces the old one.
    w.profiles()
        .patch(
            "python",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"engine": "adminnetworkpolicy"}})),
        )
        .await
        .unwrap();
    let anp = eventually(
        "the AdminNetworkPolicy, and no CiliumNetworkPolicy",
        CONVERGE,
        async || {
            (
                anps.get_opt(&anp_name).await.unwrap(),
                cnps.get_opt(&cnp_name).await.unwrap().is_some(),
            )
        },
        |(anp, cnp)| anp.is_some() && !cnp,
    )
    .await
    .0
    .unwrap();
    assert_eq!(anp.data["spec"]["priority"], 5);
    // A hand edit is undone.
    anps.patch(
        &anp_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"priority": 500}})),
    )
    .await
    .unwrap();
    eventually(
        "the priority back at 5",
        CONVERGE,
        async || {
            anps.get_opt(&anp_name)
                .await
                .unwrap()
                .map(|a| a.data["spec"]["priority"].clone())
        },
        |p| *p == Some(json!(5)),
    )
    .await;
    // Deleting the profile removes the cluster-scoped object (no owner
    // can hold it).
    w.profiles()
        .delete("python", &Default::default())
        .await
        .unwrap();
    eventually(
        "the AdminNetworkPolicy gone",
        CONVERGE,
        async || anps.get_opt(&anp_name).await.unwrap().is_none(),
        |gone| *gone,
    )
    .await;
    w.end().await;
}
