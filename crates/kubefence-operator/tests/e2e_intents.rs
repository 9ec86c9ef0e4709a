//! End-to-end tests of security intents against a real kube-apiserver
//! (the harness of `tests/e2e.rs`: `scripts/test-apiserver.sh` builds it,
//! `KUBEFENCE_E2E_KUBECONFIG` points at another cluster,
//! `KUBEFENCE_E2E_SKIP` skips), with kube-controller-manager's garbage
//! collector running, so deleting a binding really deletes what it owns.
//!
//! The intents controller runs in-process as the operator's own
//! ServiceAccount (RBAC of deploy/, components included, judges it; the
//! audit log says whether anything was refused). The API server judges the
//! CRDs' schemas and CEL rules, server-side apply and its field managers,
//! ownerReferences; the engines' own CRDs (testdata/third-party) judge the
//! objects written for them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kubefence_operator::context::{Context, OperatorConfig};
use serde_json::{Value, json};

use support::cluster::{self, Cluster, FULL_INSTALL, operator_user};
use support::{CONVERGE, create, eventually, namespace, throughout};

/// One test's world: the cluster, an admin client, a namespace and the
/// intents controller running in-process as the operator.
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
        let ctx = Arc::new(Context::with_client(
            cluster.operator_client(FULL_INSTALL).await,
            OperatorConfig {
                intents: true,
                namespace: FULL_INSTALL.into(),
                // A short resync: the test of an engine installed later
                // does not rely on it (CRDs are watched), the others
                // show a resync writes nothing.
                resync: Duration::from_secs(2),
                ..OperatorConfig::default()
            }
            .normalized(),
        ));
        let controller = tokio::spawn(async move {
            let _ = kubefence_operator::controllers::intents::start(ctx).await;
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

    fn api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.admin.clone(), &self.ns, &kubefence(kind, plural))
    }

    fn intent_policies(&self) -> Api<DynamicObject> {
        self.api("IntentPolicy", "intentpolicies")
    }

    fn bindings(&self) -> Api<DynamicObject> {
        self.api("SecurityIntentBinding", "securityintentbindings")
    }

    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn policy(&self, name: &str) -> Option<NetworkPolicy> {
        self.policies().get_opt(name).await.unwrap()
    }

    async fn intent_policy(&self, name: &str) -> Option<DynamicObject> {
        self.intent_policies().get_opt(name).await.unwrap()
    }

    /// The operator's writes since `offset`, by the audit log.
    fn writes_since(&self, offset: u64) -> Option<Vec<String>> {
        self.cluster
            .requests_since(&operator_user(FULL_INSTALL), offset)
            .map(|r| r.into_iter().filter(|r| is_write(r)).collect())
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

fn kubefence(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "kubefence.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kubefence.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn is_write(request: &str) -> bool {
    ["create ", "patch ", "update ", "delete "]
        .iter()
        .any(|v| request.starts_with(v))
}

fn intent(name: &str, id: &str) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "SecurityIntent",
        "metadata": {"name": name},
        "spec": {"intent": {"id": id, "action": "Enforce"}},
    })
}

fn binding(ns: &str, name: &str, intents: &[&str], app: &str) -> Value {
    json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "SecurityIntentBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "intents": intents.iter().map(|i| json!({"name": i})).collect::<Vec<_>>(),
            "selector": {"matchLabels": {"app": app}},
        },
    })
}

/// SecurityIntents are cluster-scoped: each test names its own.
async fn create_intent(admin: &Client, name: &str, id: &str) {
    let object = intent(name, id);
    let api = support::dynamic_api(admin, &object).await;
    let _ = api.delete(name, &DeleteParams::default()).await;
    eventually(
        &format!("SecurityIntent {name} gone"),
        CONVERGE,
        async || api.get_opt(name).await.unwrap().is_none(),
        |gone| *gone,
    )
    .await;
    create(admin, object).await;
}

fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn adapter(status: &Value, engine: &str) -> Option<(String, String)> {
    status["adapterStatus"]
        .as_array()?
        .iter()
        .find(|a| a["engine"] == engine)
        .map(|a| {
            (
                a["state"].as_str().unwrap_or_default().to_string(),
                a["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn names(status: &Value) -> Vec<String> {
    status["policyNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The NetworkPolicy names of a status (other engines' CRDs may be
/// installed by another test of this binary).
fn np_names(status: &Value) -> Vec<String> {
    let mut out: Vec<String> = names(status)
        .into_iter()
        .filter(|n| n.starts_with("NetworkPolicy/"))
        .collect();
    out.sort();
    out
}

fn owner_uids(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<String> {
    meta.owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

/// A binding becomes an IntentPolicy owned by it, and the policy a
/// NetworkPolicy owned by the policy; both statuses say so, counted from
/// what exists; a resync over the unchanged cluster writes nothing; a hand
/// edit of the NetworkPolicy is reverted; deleting the binding deletes the
/// IntentPolicy and the NetworkPolicy (garbage collection).
#[tokio::test]
async fn a_binding_becomes_owned_policies_kept_true_and_collected_with_it() {
    let Some(w) = World::new("intents-life").await else {
        return;
    };
    support::garbage_collector::ensure(w.cluster, &w.admin, &w.ns).await;
    create_intent(&w.admin, "life-dns-only", "dnsOnly").await;
    let b = create(&w.admin, binding(&w.ns, "api", &["life-dns-only"], "api")).await;
    let np_name = "kf-intent-api-dnsonly";
    let np = eventually(
        "the dnsOnly NetworkPolicy",
        CONVERGE,
        async || w.policy(np_name).await,
        Option::is_some,
    )
    .await
    .unwrap();
    let ip = w.intent_policy("api").await.expect("the IntentPolicy");
    // Owned: binding → IntentPolicy → NetworkPolicy.
    assert_eq!(
        owner_uids(&ip.metadata),
        vec![b["metadata"]["uid"].as_str().unwrap().to_string()]
    );
    assert_eq!(
        owner_uids(&np.metadata),
        vec![ip.metadata.uid.clone().unwrap()]
    );
    let spec = np.spec.clone().unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Egress".to_string()]));
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app"],
        "api"
    );
    let status = eventually(
        "the IntentPolicy's status",
        CONVERGE,
        async || w.intent_policy("api").await.unwrap().data["status"].clone(),
        |s| np_names(s).len() == 1 && condition(s, "Ready").is_some(),
    )
    .await;
    assert_eq!(np_names(&status), vec![format!("NetworkPolicy/{np_name}")]);
    // The count is of the names listed, every engine's.
    assert_eq!(status["policies"], names(&status).len(), "{status:#}");
    assert_eq!(
        adapter(&status, "networkpolicy").unwrap().0,
        "Applied",
        "{status:#}"
    );
    // kubearmor cannot say dnsOnly: Unsupported, or not installed.
    let kubearmor = adapter(&status, "kubearmor").unwrap().0;
    assert!(
        ["Unsupported", "EngineNotInstalled"].contains(&kubearmor.as_str()),
        "{status:#}"
    );
    assert_eq!(condition(&status, "Ready").unwrap().0, "True");
    let bstatus = eventually(
        "the binding's status",
        CONVERGE,
        async || w.bindings().get("api").await.unwrap().data["status"].clone(),
        |s| condition(s, "Ready").is_some(),
    )
    .await;
    assert_eq!(bstatus["boundIntents"], 1, "{bstatus:#}");
    assert_eq!(bstatus["intentPolicies"], json!(["api"]));
    assert_eq!(condition(&bstatus, "Resolved").unwrap().0, "True");

    // Unchanged cluster: several resyncs (2 s) write nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let offset = w.cluster.audit_offset();
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Some(writes) = w.writes_since(offset) {
        assert!(
            writes.is_empty(),
            "writes over an unchanged cluster: {writes:#?}"
        );
    }

    // A hand edit (egress opened to everything) is reverted.
    let open = json!({"spec": {"egress": [{}]}});
    w.policies()
        .patch(np_name, &PatchParams::default(), &Patch::Merge(&open))
        .await
        .unwrap();
    eventually(
        "the edit reverted",
        CONVERGE,
        async || w.policy(np_name).await.unwrap().spec.unwrap().egress,
        |egress| egress.as_ref() == np.spec.as_ref().unwrap().egress.as_ref(),
    )
    .await;

    // Delete the binding: its IntentPolicy and NetworkPolicy go.
    w.bindings()
        .delete("api", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the IntentPolicy and NetworkPolicy collected",
        CONVERGE * 2,
        async || {
            (
                w.intent_policy("api").await.is_none(),
                w.policy(np_name).await.is_none(),
            )
        },
        |gone| *gone == (true, true),
    )
    .await;
    w.end().await;
}

/// Two bindings of one intent, and two intents in one binding: each
/// binding has its own IntentPolicy and objects; an unknown id is a
/// condition on the binding, and the other intents still apply.
#[tokio::test]
async fn bindings_of_one_intent_do_not_collide_and_an_unknown_id_is_a_condition() {
    let Some(w) = World::new("intents-two").await else {
        return;
    };
    create_intent(&w.admin, "two-dns-only", "dnsOnly").await;
    create_intent(&w.admin, "two-same-ns", "denyIngressFromOtherNamespaces").await;
    create_intent(&w.admin, "two-typo", "dnsOnyl").await;
    create(&w.admin, binding(&w.ns, "web", &["two-dns-only"], "web")).await;
    create(
        &w.admin,
        binding(
            &w.ns,
            "db",
            &["two-dns-only", "two-same-ns", "two-typo"],
            "db",
        ),
    )
    .await;
    for name in [
        "kf-intent-web-dnsonly",
        "kf-intent-db-dnsonly",
        "kf-intent-db-denyingressfromothernamespaces",
    ] {
        eventually(
            name,
            CONVERGE,
            async || w.policy(name).await,
            Option::is_some,
        )
        .await;
    }
    let web = w.policy("kf-intent-web-dnsonly").await.unwrap();
    assert_eq!(
        web.spec
            .unwrap()
            .pod_selector
            .unwrap()
            .match_labels
            .unwrap()["app"],
        "web"
    );
    let db = eventually(
        "db's status",
        CONVERGE,
        async || w.bindings().get("db").await.unwrap().data["status"].clone(),
        |s| condition(s, "Resolved").is_some(),
    )
    .await;
    let (state, reason, message) = condition(&db, "Resolved").unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "IntentsNotResolved")
    );
    assert!(
        message.contains("dnsOnyl") && message.contains("did you mean dnsOnly"),
        "{message}"
    );
    assert_eq!(db["boundIntents"], 2, "{db:#}");
    let status = eventually(
        "db's IntentPolicy status",
        CONVERGE,
        async || w.intent_policy("db").await.unwrap().data["status"].clone(),
        |s| np_names(s).len() == 2,
    )
    .await;
    assert_eq!(
        np_names(&status),
        vec![
            "NetworkPolicy/kf-intent-db-denyingressfromothernamespaces",
            "NetworkPolicy/kf-intent-db-dnsonly"
        ]
    );
    // Unbinding an intent removes its object, and its name from the status.
    w.bindings()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"intents": [{"name": "two-dns-only"}]}})),
        )
        .await
        .unwrap();
    eventually(
        "the unbound intent's policy removed and unlisted",
        CONVERGE,
        async || {
            (
                w.policy("kf-intent-db-denyingressfromothernamespaces")
                    .await
                    .is_none(),
                np_names(&w.intent_policy("db").await.unwrap().data["status"]),
            )
        },
        |(gone, names)| *gone && names == &["NetworkPolicy/kf-intent-db-dnsonly"],
    )
    .await;
    w.end().await;
}

/// A NetworkPolicy of the name an intent wants, written by someone else
/// (no ownerReference, no labels of kubefence), is never touched: the
/// IntentPolicy says who holds the name.
#[tokio::test]
async fn an_object_kubefence_does_not_own_is_never_touched() {
    let Some(w) = World::new("intents-foreign").await else {
        return;
    };
    create_intent(&w.admin, "foreign-dns-only", "dnsOnly").await;
    let theirs = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "kf-intent-api-dnsonly", "namespace": w.ns},
        "spec": {"podSelector": {"matchLabels": {"team": "theirs"}}, "policyTypes": ["Ingress"]},
    });
    create(&w.admin, theirs).await;
    let before = w.policy("kf-intent-api-dnsonly").await.unwrap();
    create(
        &w.admin,
        binding(&w.ns, "api", &["foreign-dns-only"], "api"),
    )
    .await;
    let status = eventually(
        "the IntentPolicy's Ready condition",
        CONVERGE,
        async || {
            w.intent_policy("api")
                .await
                .map(|p| p.data["status"].clone())
                .unwrap_or_default()
        },
        |s| condition(s, "Ready").is_some(),
    )
    .await;
    let (state, reason, message) = condition(&status, "Ready").unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "PolicyNameTaken")
    );
    assert!(message.contains("kf-intent-api-dnsonly"), "{message}");
    assert!(np_names(&status).is_empty(), "{status:#}");
    throughout(
        "their NetworkPolicy untouched",
        Duration::from_secs(3),
        async || w.policy("kf-intent-api-dnsonly").await.unwrap(),
        |now| {
            now.metadata.resource_version == before.metadata.resource_version
                && now.metadata.owner_references.is_none()
        },
    )
    .await;
    w.end().await;
}

/// Two adapters writing their status entries at the same moment: both
/// are recorded (server-side apply of the status subresource, one field
/// manager per engine), neither overwrites the other, and a name is never
/// listed twice.
#[tokio::test]
async fn concurrent_status_writes_of_two_adapters_are_both_recorded() {
    use kubefence_k8s::crd::intent::{AdapterState, AdapterStatus, IntentPolicy};
    use kubefence_operator::controllers::intents::{EngineEntry, apply_adapter_status};
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let admin = cluster.admin().await;
    let ns = namespace(&admin, "intents-status", false).await;
    let object = json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "IntentPolicy",
        "metadata": {"name": "concurrent", "namespace": ns},
        "spec": {"binding": "SecurityIntentBinding/x/y",
                 "selector": {"matchLabels": {"app": "api"}}, "intents": []},
    });
    create(&admin, object).await;
    let ctx = Context::with_client(
        cluster.operator_client(FULL_INSTALL).await,
        OperatorConfig::default(),
    );
    let ips: Api<IntentPolicy> = Api::namespaced(admin.clone(), &ns);
    let ip = ips.get("concurrent").await.unwrap();
    let entry = |engine: &str, kind: &str| EngineEntry {
        status: AdapterStatus {
            engine: engine.into(),
            state: AdapterState::Applied,
            message: None,
        },
        names: vec![format!("{kind}/kf-intent-y-dnsonly")],
        taken: Vec::new(),
    };
    for round in 0..5 {
        let np = entry("networkpolicy", "NetworkPolicy");
        let cilium = entry("cilium", "CiliumNetworkPolicy");
        let (a, b) = tokio::join!(
            apply_adapter_status(&ctx, &ip, &np),
            apply_adapter_status(&ctx, &ip, &cilium)
        );
        a.unwrap();
        b.unwrap();
        let status = serde_json::to_value(ips.get("concurrent").await.unwrap().status).unwrap();
        let mut listed = names(&status);
        listed.sort();
        assert_eq!(
            listed,
            vec![
                "CiliumNetworkPolicy/kf-intent-y-dnsonly",
                "NetworkPolicy/kf-intent-y-dnsonly"
            ],
            "round {round}: {status:#}"
        );
        assert_eq!(adapter(&status, "networkpolicy").unwrap().0, "Applied");
        assert_eq!(adapter(&status, "cilium").unwrap().0, "Applied");
    }
    // One adapter's names going away leaves the other's.
    let none = EngineEntry {
        names: Vec::new(),
        ..entry("cilium", "CiliumNetworkPolicy")
    };
    apply_adapter_status(&ctx, &ip, &none).await.unwrap();
    let status = serde_json::to_value(ips.get("concurrent").await.unwrap().status).unwrap();
    assert_eq!(names(&status), vec!["NetworkPolicy/kf-intent-y-dnsonly"]);
    support::remove_namespace(&admin, &ns).await;
}

/// An engine whose CRD is installed while the controller runs: its adapter
/// starts (CRDs are watched), writes the engine's object (which the
/// engine's own CRD accepts) owned by the IntentPolicy, and the status
/// moves from EngineNotInstalled to Applied.
#[tokio::test]
async fn an_engine_installed_later_gets_its_objects() {
    let Some(w) = World::new("intents-later").await else {
        return;
    };
    create_intent(&w.admin, "later-metadata", "denyMetadataAccess").await;
    create(&w.admin, binding(&w.ns, "api", &["later-metadata"], "api")).await;
    let cilium_served = kube::discovery::group(&w.admin, "cilium.io")
        .await
        .ok()
        .is_some_and(|g| g.recommended_kind("CiliumNetworkPolicy").is_some());
    if !cilium_served {
        let status = eventually(
            "cilium EngineNotInstalled",
            CONVERGE,
            async || {
                w.intent_policy("api")
                    .await
                    .map(|p| p.data["status"].clone())
                    .unwrap_or_default()
            },
            |s| adapter(s, "cilium").is_some(),
        )
        .await;
        assert_eq!(adapter(&status, "cilium").unwrap().0, "EngineNotInstalled");
    }
    support::install_third_party_crds(&w.admin, &["cilium"]).await;
    let cnps = Api::<DynamicObject>::namespaced_with(
        w.admin.clone(),
        &w.ns,
        &ApiResource {
            group: "cilium.io".into(),
            version: "v2".into(),
            api_version: "cilium.io/v2".into(),
            kind: "CiliumNetworkPolicy".into(),
            plural: "ciliumnetworkpolicies".into(),
        },
    );
    let cnp = eventually(
        "the CiliumNetworkPolicy",
        CONVERGE,
        async || {
            cnps.get_opt("kf-intent-api-denymetadataaccess")
                .await
                .unwrap()
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let ip = w.intent_policy("api").await.unwrap();
    assert_eq!(
        owner_uids(&cnp.metadata),
        vec![ip.metadata.uid.clone().unwrap()]
    );
    assert!(
        cnp.data["spec"]["egressDeny"]
            .to_string()
            .contains("169.254.169.254/32"),
        "{:#}",
        cnp.data
    );
    let status = eventually(
        "cilium Applied",
        CONVERGE,
        async || w.intent_policy("api").await.unwrap().data["status"].clone(),
        |s| adapter(s, "cilium").is_some_and(|a| a.0 == "Applied"),
    )
    .await;
    assert!(
        names(&status)
            .contains(&"CiliumNetworkPolicy/kf-intent-api-denymetadataaccess".to_string()),
        "{status:#}"
    );
    w.end().await;
}

/// A ClusterSecurityIntentBinding applies in the namespaces its
/// namespaceSelector selects, and follows their labels; its
/// ClusterNetworkPolicies (cluster-scoped, so not owned: they carry their
/// IntentPolicy's uid) go when their IntentPolicy does, and with the
/// binding.
#[tokio::test]
async fn a_cluster_binding_follows_namespace_labels_and_its_cluster_objects_go_with_it() {
    let Some(w) = World::new("intents-csib").await else {
        return;
    };
    support::garbage_collector::ensure(w.cluster, &w.admin, &w.ns).await;
    support::install_third_party_crds(&w.admin, &["network-policy-api"]).await;
    let other = namespace(&w.admin, "intents-csib-other", false).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(w.admin.clone());
    let select = |ns: &str, on: bool| {
        let namespaces = namespaces.clone();
        let ns = ns.to_string();
        let value = if on { json!(w.ns.clone()) } else { Value::Null };
        async move {
            namespaces
                .patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"kubefence-e2e-csib": value}}})),
                )
                .await
                .unwrap();
        }
    };
    select(&w.ns, true).await;
    create_intent(&w.admin, "csib-dns-only", "dnsOnly").await;
    // Named after the test's namespace: unique in the cluster.
    let name = w.ns.clone();
    create(
        &w.admin,
        json!({
            "apiVersion": "kubefence.dev/v1alpha1",
            "kind": "ClusterSecurityIntentBinding",
            "metadata": {"name": name},
            "spec": {
                "intents": [{"name": "csib-dns-only"}],
                "selector": {"matchLabels": {"app": "api"}},
                "namespaceSelector": {"matchLabels": {"kubefence-e2e-csib": w.ns}},
            },
        }),
    )
    .await;
    let ip_name = format!("cluster-{name}");
    let ips = |ns: &str| {
        Api::<DynamicObject>::namespaced_with(
            w.admin.clone(),
            ns,
            &kubefence("IntentPolicy", "intentpolicies"),
        )
    };
    let cnps = Api::<DynamicObject>::all_with(
        w.admin.clone(),
        &ApiResource {
            group: "policy.networking.k8s.io".into(),
            version: "v1alpha2".into(),
            api_version: "policy.networking.k8s.io/v1alpha2".into(),
            kind: "ClusterNetworkPolicy".into(),
            plural: "clusternetworkpolicies".into(),
        },
    );
    let cnps_of = |uid: String| {
        let cnps = cnps.clone();
        async move {
            cnps.list(
                &kube::api::ListParams::default()
                    .labels(&format!("kubefence.dev/intent-policy-uid={uid}")),
            )
            .await
            .unwrap()
            .items
        }
    };
    let ip = eventually(
        "the IntentPolicy in the selected namespace",
        CONVERGE,
        async || ips(&w.ns).get_opt(&ip_name).await.unwrap(),
        Option::is_some,
    )
    .await
    .unwrap();
    let uid = ip.metadata.uid.clone().unwrap();
    eventually(
        "its NetworkPolicy",
        CONVERGE,
        async || w.policy(&format!("kf-intent-{ip_name}-dnsonly")).await,
        Option::is_some,
    )
    .await;
    let cnp = eventually(
        "its ClusterNetworkPolicy",
        CONVERGE,
        async || cnps_of(uid.clone()).await,
        |l| l.len() == 1,
    )
    .await;
    assert!(
        cnp[0].metadata.owner_references.is_none(),
        "{:?}",
        cnp[0].metadata
    );
    assert!(ips(&other).get_opt(&ip_name).await.unwrap().is_none());

    // The other namespace labelled: it gets one too. The first unlabelled:
    // its IntentPolicy and ClusterNetworkPolicy go.
    select(&other, true).await;
    let other_ip = eventually(
        "the IntentPolicy in the newly selected namespace",
        CONVERGE,
        async || ips(&other).get_opt(&ip_name).await.unwrap(),
        Option::is_some,
    )
    .await
    .unwrap();
    let other_uid = other_ip.metadata.uid.clone().unwrap();
    select(&w.ns, false).await;
    eventually(
        "the unselected namespace's IntentPolicy and ClusterNetworkPolicy gone",
        CONVERGE,
        async || {
            (
                ips(&w.ns).get_opt(&ip_name).await.unwrap().is_none(),
                cnps_of(uid.clone()).await.is_empty(),
            )
        },
        |gone| *gone == (true, true),
    )
    .await;
    let status = eventually(
        "the binding's status",
        CONVERGE,
        async || {
            Api::<DynamicObject>::all_with(
                w.admin.clone(),
                &kubefence(
                    "ClusterSecurityIntentBinding",
                    "clustersecurityintentbindings",
                ),
            )
            .get(&name)
            .await
            .unwrap()
            .data["status"]
                .clone()
        },
        |s| s["intentPolicies"] == json!([format!("{other}/{ip_name}")]),
    )
    .await;
    assert_eq!(condition(&status, "Ready").unwrap().0, "True", "{status:#}");

    // The binding deleted: the IntentPolicy is collected, and with it gone
    // the controller removes its ClusterNetworkPolicy.
    eventually(
        "the other namespace's ClusterNetworkPolicy",
        CONVERGE,
        async || cnps_of(other_uid.clone()).await,
        |l| l.len() == 1,
    )
    .await;
    Api::<DynamicObject>::all_with(
        w.admin.clone(),
        &kubefence(
            "ClusterSecurityIntentBinding",
            "clustersecurityintentbindings",
        ),
    )
    .delete(&name, &DeleteParams::background())
    .await
    .unwrap();
    eventually(
        "everything of the binding gone",
        CONVERGE * 2,
        async || {
            (
                ips(&other).get_opt(&ip_name).await.unwrap().is_none(),
                cnps_of(other_uid.clone()).await.is_empty(),
            )
        },
        |gone| *gone == (true, true),
    )
    .await;
    support::remove_namespace(&w.admin, &other).await;
    w.end().await;
}
