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

use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

use support::cluster;
use support::namespace;

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
