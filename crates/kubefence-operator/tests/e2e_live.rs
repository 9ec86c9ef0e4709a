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

fn run(bin: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI as a person with the reader role runs it: `analyze` without -f
/// gives what `analyze -f` of the same objects gives, and `report` draws
/// it; `diff --before-cluster` shows what applying a policy would remove;
/// `generate` reads the cluster too.
#[tokio::test]
async fn the_cli_reads_the_live_cluster_like_files() {
    let Some(c) = cluster::cluster() else {
        return;
    };
    let Some(bin) = support::kubefence_binary() else {
        return;
    };
    let admin = c.admin().await;
    install_reader_role(&admin).await;
    let ns = namespace(&admin, "live-cli", false).await;
    for o in objects(&ns) {
        create(&admin, o).await;
    }
    service_account(&admin, &ns, "person").await;
    cluster::apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "person-reader", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubefence-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "person", "namespace": ns}]}),
    )
    .await
    .unwrap();
    let (kubeconfig, _) = c.service_account_kubeconfig(&admin, &ns, "person").await;
    let kubeconfig = kubeconfig.display().to_string();
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("objects.json");
    let mut expected = objects(&ns);
    // The namespace as the API server has it (the test's own label).
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(admin.clone());
    let labels = namespaces.get(&ns).await.unwrap().metadata.labels;
    expected.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}));
    std::fs::write(
        &files,
        json!({"apiVersion": "v1", "kind": "List", "items": expected}).to_string(),
    )
    .unwrap();
    let files = files.display().to_string();
    let mut live = None;
    for _ in 0..50 {
        let r = run(
            &bin,
            &[
                "analyze",
                "--kubeconfig",
                &kubeconfig,
                "-n",
                &ns,
                "-o",
                "json",
            ],
        );
        if r.0 == 0 {
            live = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, live, _) = live.expect("analyze of the live cluster never succeeded");
    let (code, offline, stderr) = run(&bin, &["analyze", "-f", &files, "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let connections = |text: &str| -> Value {
        let v: Value = serde_json::from_str(text).unwrap();
        v["connections"].clone()
    };
    assert_eq!(connections(&live), connections(&offline));
    assert!(connections(&live).as_array().is_some_and(|a| !a.is_empty()));

    // The HTML report of the live cluster draws what analyze found.
    let (code, html, stderr) = run(&bin, &["report", "--kubeconfig", &kubeconfig, "-n", &ns]);
    assert_eq!(code, 0, "{stderr}");
    let analysis: Value = serde_json::from_str(&live).unwrap();
    assert_eq!(
        html.matches("<path class=\"edge").count(),
        analysis["connections"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(
        html.matches("<g class=\"node").count(),
        analysis["endpoints"].as_array().map_or(0, Vec::len)
    );
    assert!(html.contains("From the live cluster."), "{html}");

    // A deny-all for web: applying it would remove web's paths.
    let deny = work.path().join("deny-web.yaml");
    std::fs::write(
        &deny,
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-web, namespace: {ns}}}\nspec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Egress]}}\n"),
    )
    .unwrap();
    let (code, out, stderr) = run(
        &bin,
        &[
            "diff",
            "--before-cluster",
            "--kubeconfig",
            &kubeconfig,
            "-n",
            &ns,
            "--after",
            &deny.display().to_string(),
            "-o",
            "json",
            "--exit-code",
        ],
    );
    assert_eq!(code, 1, "connectivity changes: {stderr}");
    let d: Value = serde_json::from_str(&out).unwrap();
    let removed = d["removed"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|r| r["from"] == format!("{ns}/Deployment/web")
                && r["to"] == format!("{ns}/Deployment/api")),
        "{out}"
    );
    assert!(d["added"].as_array().unwrap().is_empty(), "{out}");
    let (code, out, stderr) = run(&bin, &["generate", "--kubeconfig", &kubeconfig, "-n", &ns]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains("kind: NetworkPolicy") && out.contains(&format!("namespace: {ns}")),
        "{out}"
    );
    support::remove_namespace(&admin, &ns).await;
}
