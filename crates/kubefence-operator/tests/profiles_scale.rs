//! The profiles controller at scale, on the in-process fake API server:
//! 1,000 IsolationProfiles in 100 namespaces and 50,000 matching pods.
//! The first pass writes one policy (and one status) per profile; a resync
//! of the unchanged cluster sends no request at all. The pass times are
//! printed (`cargo test --release -p kubefence-operator --test
//! profiles_scale -- --nocapture` for the figures of the issue).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kubefence_k8s::crd::profile::IsolationProfile;
use kubefence_operator::context::{Context, OperatorConfig};
use kubefence_operator::controllers::profiles::{Snapshot, State, pass};
use kubefence_operator::fake::FakeApi;
use serde_json::json;

const NAMESPACES: usize = 100;
const PER_NAMESPACE: usize = 10;
const PODS_PER_PROFILE: usize = 50;

fn profile(ns: usize, i: usize, status: Option<serde_json::Value>) -> IsolationProfile {
    let mut v = json!({
        "apiVersion": "kubefence.dev/v1alpha1",
        "kind": "IsolationProfile",
        "metadata": {"name": format!("template-{i}"), "namespace": format!("ns-{ns}"),
                     "uid": format!("uid-{ns}-{i}"), "generation": 1},
        "spec": {"podSelector": {"matchLabels": {"template": format!("t{i}")}}},
    });
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn pods() -> Vec<Arc<PartialObjectMeta<Pod>>> {
    let mut out = Vec::new();
    for ns in 0..NAMESPACES {
        for i in 0..PER_NAMESPACE {
            for p in 0..PODS_PER_PROFILE {
                let meta: PartialObjectMeta<Pod> = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("sandbox-{i}-{p}"), "namespace": format!("ns-{ns}"),
                                 "labels": {"template": format!("t{i}"), "sandbox": format!("s{p}")}},
                }))
                .unwrap();
                out.push(Arc::new(meta));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_profiles_and_fifty_thousand_pods() {
    let (client, fake) = FakeApi::start();
    let ctx = Context::with_client(client, OperatorConfig::default().normalized());
    let mut state = State::new(Default::default());
    let pods = pods();
    assert_eq!(pods.len(), 50_000);
    let profiles: Vec<Arc<IsolationProfile>> = (0..NAMESPACES)
        .flat_map(|ns| (0..PER_NAMESPACE).map(move |i| Arc::new(profile(ns, i, None))))
        .collect();
    for p in &profiles {
        fake.add(p.as_ref());
    }
    fake.clear_requests();
    let first = Snapshot {
        profiles,
        policies: Vec::new(),
        pods: pods.clone(),
        ..Snapshot::default()
    };
    let started = Instant::now();
    let done = pass(&ctx, &mut state, &first).await.unwrap();
    let first_time = started.elapsed();
    assert_eq!(done.policy_writes, 1000);
    assert_eq!(done.status_writes, 1000);
    let policy_writes = fake
        .requests()
        .iter()
        .filter(|r| r.is_policy_write())
        .count();
    assert_eq!(policy_writes, 1000, "one policy write per profile");

    // The resync: the caches now hold what the server stored.
    let policies = fake.policies().into_values().map(Arc::new).collect();
    let profiles: Vec<Arc<IsolationProfile>> = (0..NAMESPACES)
        .flat_map(|ns| (0..PER_NAMESPACE).map(move |i| (ns, i)))
        .map(|(ns, i)| {
            let stored = fake
                .get(&format!(
                    "/apis/kubefence.dev/v1alpha1/namespaces/ns-{ns}/isolationprofiles/template-{i}"
                ))
                .unwrap();
            Arc::new(profile(ns, i, Some(stored["status"].clone())))
        })
        .collect();
    assert_eq!(profiles[0].status.as_ref().unwrap().matched_pods, Some(50));
    fake.clear_requests();
    let resync = Snapshot {
        profiles,
        policies,
        pods,
        ..Snapshot::default()
    };
    let started = Instant::now();
    let done = pass(&ctx, &mut state, &resync).await.unwrap();
    let resync_time = started.elapsed();
    assert_eq!(done.policy_writes + done.status_writes, 0, "{done:?}");
    assert!(fake.requests().is_empty(), "{:?}", fake.take_lines());
    eprintln!(
        "1,000 profiles, 50,000 pods: first pass {first_time:.2?} (1,000 policy + 1,000 status writes), resync {resync_time:.2?} (0 requests)"
    );
}
