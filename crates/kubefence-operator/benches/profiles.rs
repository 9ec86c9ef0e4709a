//! The profiles controller at scale: 1,000 IsolationProfiles in 100
//! namespaces and 50,000 matching pods, against the in-process fake API
//! server (on a thread of its own: its CPU time, the API server's in a real
//! cluster, is reported apart).
//!
//! Reports the CPU time of the thread that runs the pass (from
//! /proc/thread-self/schedstat), its wall time and its API writes for the
//! first pass (every policy and status created: asserts one policy write
//! per profile) and for a resync of the unchanged cluster (asserts no
//! request at all), and the memory: RSS growth while the caches are filled
//! (50,000 pods as metadata, the profiles) and during the first pass (the
//! builds the controller keeps, and the fake API server's stored objects:
//! they share the process).
//!
//! `cargo bench -p kubefence-operator --bench profiles` (not run in CI; it
//! must compile). `-- --profiles N --pods-per-profile M` for another size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kubefence_k8s::crd::profile::IsolationProfile;
use kubefence_operator::context::{Context, OperatorConfig};
use kubefence_operator::controllers::profiles::{Pass, Snapshot, State, pass};
use kubefence_operator::fake::FakeApi;
use serde_json::json;
use support::{cpu_ns, fake_on_its_own_thread, rss_kib, thread_cpu_ns};

/// The allocator of the `kubefence` binary: what ships is what is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROFILES_PER_NAMESPACE: usize = 10;

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

/// A pod as the controller's metadata cache keeps it (no managed fields,
/// no annotations).
fn pod(ns: usize, i: usize, p: usize) -> PartialObjectMeta<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("sandbox-{i}-{p}"), "namespace": format!("ns-{ns}"),
                     "uid": format!("pod-{ns}-{i}-{p}"),
                     "labels": {"template": format!("t{i}"), "sandbox": format!("s{p}")},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("runner-{i}"), "uid": format!("rs-{ns}-{i}"),
                                          "controller": true}]},
    }))
    .unwrap()
}

struct Measured {
    cpu: Duration,
    api_cpu: Duration,
    wall: Duration,
    pass: Pass,
    requests: usize,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    ctx: &Context,
    state: &mut State,
    snapshot: &Snapshot,
    fake: &FakeApi,
    api_thread: &str,
) -> Measured {
    fake.clear_requests();
    let (cpu0, api0, t0) = (cpu_ns(), thread_cpu_ns(api_thread), Instant::now());
    let done = runtime.block_on(pass(ctx, state, snapshot)).unwrap();
    let wall = t0.elapsed();
    let cpu = Duration::from_nanos(cpu_ns() - cpu0);
    let api_cpu = Duration::from_nanos(thread_cpu_ns(api_thread) - api0);
    Measured {
        cpu,
        api_cpu,
        wall,
        pass: done,
        requests: fake.requests().len(),
    }
}

fn report(what: &str, m: &Measured) {
    println!(
        "{what:<28} cpu {:>8.1} ms   api {:>8.1} ms   wall {:>8.1} ms   policy writes {:>5}   status writes {:>5}   requests {:>5}",
        m.cpu.as_secs_f64() * 1e3,
        m.api_cpu.as_secs_f64() * 1e3,
        m.wall.as_secs_f64() * 1e3,
        m.pass.policy_writes,
        m.pass.status_writes,
        m.requests,
    );
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let profiles = arg("--profiles", 1000);
    let per_profile = arg("--pods-per-profile", 50);
    let namespaces = profiles.div_ceil(PROFILES_PER_NAMESPACE);
    let (client, fake, api_thread) = fake_on_its_own_thread();
    // One thread runs the pass: its CPU time is the controller's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = runtime
        .block_on(async { Context::with_client(client, OperatorConfig::default().normalized()) });
    let mut state = State::new(Default::default());

    let (rss0, _) = rss_kib();
    let pods: Vec<Arc<PartialObjectMeta<Pod>>> = (0..namespaces)
        .flat_map(|ns| {
            (0..PROFILES_PER_NAMESPACE)
                .flat_map(move |i| (0..per_profile).map(move |p| Arc::new(pod(ns, i, p))))
        })
        .take(profiles * per_profile)
        .collect();
    let (rss1, _) = rss_kib();
    let objects: Vec<Arc<IsolationProfile>> = (0..namespaces)
        .flat_map(|ns| (0..PROFILES_PER_NAMESPACE).map(move |i| (ns, i)))
        .take(profiles)
        .map(|(ns, i)| Arc::new(profile(ns, i, None)))
        .collect();
    let (rss2, _) = rss_kib();
    for p in &objects {
        fake.add(p.as_ref());
    }
    println!(
        "{profiles} profiles in {namespaces} namespaces, {} matching pods",
        pods.len()
    );
    let first = Snapshot {
        profiles: objects,
        pods: pods.clone(),
        ..Snapshot::default()
    };
    let (rss3, _) = rss_kib();
    let m = measure(&runtime, &ctx, &mut state, &first, &fake, &api_thread);
    let (rss4, _) = rss_kib();
    report("first pass", &m);
    assert_eq!(
        m.pass.policy_writes, profiles,
        "one policy write per profile"
    );
    let policy_writes = fake
        .requests()
        .iter()
        .filter(|r| r.is_policy_write())
        .count();
    assert_eq!(
        policy_writes, profiles,
        "the fake saw one policy write each"
    );

    // The resync: the caches hold what the server stored.
    let policies = fake.policies().into_values().map(Arc::new).collect();
    let stored: Vec<Arc<IsolationProfile>> = first
        .profiles
        .iter()
        .map(|p| {
            let ns = p.metadata.namespace.clone().unwrap();
            let name = p.metadata.name.clone().unwrap();
            let object = fake
                .get(&format!(
                    "/apis/kubefence.dev/v1alpha1/namespaces/{ns}/isolationprofiles/{name}"
                ))
                .unwrap();
            let mut p = (**p).clone();
            p.status = serde_json::from_value(object["status"].clone()).unwrap();
            Arc::new(p)
        })
        .collect();
    drop(first);
    let resync = Snapshot {
        profiles: stored,
        policies,
        pods,
        ..Snapshot::default()
    };
    let m = measure(&runtime, &ctx, &mut state, &resync, &fake, &api_thread);
    report("resync (unchanged)", &m);
    assert_eq!(
        m.requests, 0,
        "a resync of an unchanged cluster sends nothing"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "memory (RSS growth): pod cache {:.1} MiB ({} pods), profiles {:.1} MiB, first pass {:.1} MiB (the controller's builds kept between passes, and the fake API server's 2,000 stored objects and request log: one process), snapshot {:.1} MiB",
        mib(rss1.saturating_sub(rss0)),
        resync.pods.len(),
        mib(rss2.saturating_sub(rss1)),
        mib(rss4.saturating_sub(rss3)),
        mib(rss3.saturating_sub(rss2)),
    );
}
