//! The CLI's live-cluster reading (`kubefence_operator::live`, what
//! `kubefence analyze` does without `-f`) against a real kube-apiserver
//! (the harness of `tests/e2e.rs`), as ServiceAccounts with exactly the
//! rights a person would have: the ClusterRole of deploy/components/reader
//! bound cluster-wide, bound in one namespace, or nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use kube::Client;
use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_k8s::load::{self, LoadOptions};
use kubefence_operator::live::{self, LiveError, Scope};
use serde_json::{Value, json};

use support::cluster::{self, deploy};
use support::{create, namespace};

fn objects(ns: &str) -> Vec<Value> {
    vec![
        support::deployment(ns, "web", &[], &[("http", 8080)]),
        support::deployment(ns, "api", &[], &[("http", 8080)]),
        support::service(ns, "api", "api", 80, 8080),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "api-from-web", "namespace": ns},
               "spec": {"podSelector": {"matchLabels": {"app": "api"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                     "ports": [{"port": 8080}]}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "from-labelled-namespaces", "namespace": ns},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]}}),
    ]
}

/// Every ordered pair and what is allowed, as text: two reads of one
/// cluster compare equal when they allow the same.
fn connectivity(objects: Vec<Value>) -> Vec<String> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let loaded = load::load_str(&list.to_string(), "test", &LoadOptions::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let conn = analyze(&loaded.cluster, &AnalyzeOptions::default());
    let mut out = Vec::new();
    for (i, a) in conn.endpoints.iter().enumerate() {
        for (j, b) in conn.endpoints.iter().enumerate() {
            if i != j {
                out.push(format!("{} -> {}: {}", a.id, b.id, conn.allowed(i, j)));
            }
        }
    }
    out
}

async fn service_account(admin: &Client, ns: &str, name: &str) {
    create(
        admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": ns}}),
    )
    .await;
}

async fn install_reader_role(admin: &Client) {
    for object in cluster::kustomization_objects(&deploy().join("components/reader")).unwrap() {
        cluster::apply(admin, object).await.unwrap();
    }
}

/// Bound cluster-wide, the reader role reads a namespace, and every
/// namespace, as its manifests would be read from files: the same
/// connectivity, namespace labels included; small pages give the same.
#[tokio::test]
async fn the_reader_role_reads_the_cluster_as_files_are_read() {
    let Some(c) = cluster::cluster() else {
        return;
    };
    let admin = c.admin().await;
    install_reader_role(&admin).await;
    let ns = namespace(&admin, "live-read", false).await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(admin.clone());
    namespaces
        .patch(
            &ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "shop"}}})),
        )
        .await
        .unwrap();
    for o in objects(&ns) {
        create(&admin, o).await;
    }
    service_account(&admin, &ns, "reader").await;
    cluster::apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("{ns}-reader")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubefence-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}),
    )
    .await
    .unwrap();
    let (_, reader) = c.service_account_kubeconfig(&admin, &ns, "reader").await;
    // RBAC takes a moment to see a new binding.
    let mut read = None;
    for _ in 0..50 {
        match live::read(&reader, &Scope::Namespace(ns.clone())).await {
            Ok(r) => {
                read = Some(r);
                break;
            }
            Err(LiveError::Forbidden { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let read = read.expect("the reader role was never effective");
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    let mut expected = objects(&ns);
    expected.push(json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": ns, "labels": {"team": "shop"}}}));
    let files = connectivity(expected);
    assert_eq!(connectivity(read.objects.clone()), files);
    // The namespace's labels were read: web is open to its own namespace.
    assert!(
        files
            .iter()
            .any(|l| l.starts_with(&format!("{ns}/Deployment/api -> {ns}/Deployment/web: all"))),
        "{files:#?}"
    );
    // Pages of one object: the continue tokens are followed.
    let paged = live::read_paged(&reader, &Scope::Namespace(ns.clone()), 1)
        .await
        .unwrap();
    assert_eq!(connectivity(paged.objects), files);
    assert!(
        paged.requests > read.requests,
        "{} vs {}",
        paged.requests,
        read.requests
    );
    // Every namespace: this one's objects are among them.
    let all = live::read(&reader, &Scope::AllNamespaces).await.unwrap();
    let ours = all
        .objects
        .iter()
        .filter(|o| {
            o["metadata"]["namespace"] == ns.as_str() || o["metadata"]["name"] == ns.as_str()
        })
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(connectivity(ours), files);
    support::remove_namespace(&admin, &ns).await;
}

/// Without the role, the error names the call refused and the role that
/// grants it; with the role bound in one namespace only, that namespace is
/// read, its own Namespace object included (RBAC lets a RoleBinding grant
/// the get of its namespace), and every namespace is refused.
#[tokio::test]
async fn without_the_reader_role_the_error_names_the_missing_permission() {
    let Some(c) = cluster::cluster() else {
        return;
    };
    let admin = c.admin().await;
    install_reader_role(&admin).await;
    let ns = namespace(&admin, "live-denied", false).await;
    for o in objects(&ns) {
        create(&admin, o).await;
    }
    service_account(&admin, &ns, "nobody").await;
    let (_, nobody) = c.service_account_kubeconfig(&admin, &ns, "nobody").await;
    let err = live::read(&nobody, &Scope::Namespace(ns.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("cannot list deployments.apps in namespace {ns}"))
            && err.contains("deploy/components/reader"),
        "{err}"
    );

    service_account(&admin, &ns, "local").await;
    cluster::apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "local-reader", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubefence-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "local", "namespace": ns}]}),
    )
    .await
    .unwrap();
    let (_, local) = c.service_account_kubeconfig(&admin, &ns, "local").await;
    let mut read = None;
    for _ in 0..50 {
        if let Ok(r) = live::read(&local, &Scope::Namespace(ns.clone())).await {
            read = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let read = read.expect("the namespaced binding was never effective");
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert!(
        read.objects
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == ns.as_str())
    );
    assert_eq!(
        read.objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .count(),
        2
    );
    let err = live::read(&local, &Scope::AllNamespaces)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot list namespaces"), "{err}");
    support::remove_namespace(&admin, &ns).await;
}
