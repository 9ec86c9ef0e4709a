//! The baseline controller at scale against a real kube-apiserver (the
//! local one of the end-to-end tests, see `tests/support`): 2,000
//! workloads (20 opted-in namespaces of 100 Deployments, each with its
//! Service, each calling its two neighbours), the operator as a process of
//! its own with its own ServiceAccount.
//!
//! Measures the first full reconcile (operator start until every policy
//! exists: wall time, the operator process's CPU time, its API requests by
//! verb from the API server's audit log), an unchanged resync (CPU and
//! writes over one resync period: there must be none), and the operator's
//! resident memory at steady state.
//!
//! A measurement, not a test of behaviour: ignored by default.
//!
//! ```sh
//! scripts/test-apiserver.sh
//! cargo test -p kubefence-operator --release --test scale -- --ignored --nocapture
//! KUBEFENCE_SCALE_WORKLOADS=500 cargo test -p kubefence-operator --release --test scale -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

/// The allocator of the `kubefence` binary (crates/kubefence/src/main.rs):
/// the operator process measured here is this test binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, PostParams};

use support::cluster::{self, FULL_INSTALL, operator_user};
use support::operator::{Operator, SPEC_ENV, Spec};
use support::{deployment, namespace, service};

/// Not a test: the operator process the measurement starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not a test: the operator process the measurement starts"]
async fn operator_process() {
    if let Ok(spec) = std::env::var(SPEC_ENV) {
        support::operator::run_child(&spec).await;
    }
}

const NAMESPACES: usize = 20;
/// The resync period of the measured operator.
const RESYNC: Duration = Duration::from_secs(30);

/// (user + system CPU time, resident memory) of process `pid`.
fn process_usage(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 after ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    let cpu = Duration::from_millis(ticks * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (cpu, rss_kib)
}

/// Requests by verb and resource (`watch` counts each watch once per audit
/// stage).
fn by_verb(requests: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in requests {
        let (verb, uri) = r.split_once(' ').unwrap_or((r, ""));
        let path = uri.split('?').next().unwrap_or_default();
        let resource = ["networkpolicies", "events", "leases", "configmaps"]
            .into_iter()
            .find(|res| path.contains(&format!("/{res}")))
            .unwrap_or("other");
        *out.entry(format!("{verb} {resource}")).or_default() += 1;
    }
    out
}

/// Writes of policies and events (Lease renewals are the leader election's).
fn writes(verbs: &BTreeMap<String, usize>) -> usize {
    verbs
        .iter()
        .filter(|(k, _)| {
            let (verb, resource) = k.split_once(' ').unwrap_or_default();
            matches!(verb, "create" | "patch" | "update" | "delete")
                && matches!(resource, "networkpolicies" | "events")
        })
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (a few minutes): run with --ignored --nocapture"]
async fn baseline_at_scale_against_a_real_api_server() {
    let Some(cluster) = cluster::cluster() else {
        return;
    };
    let _lock = cluster::exclusive().await;
    let admin = cluster.admin().await;
    let workloads: usize = std::env::var("KUBEFENCE_SCALE_WORKLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let per_ns = workloads.div_ceil(NAMESPACES);

    // The world, written by the admin before the operator starts.
    let setup = Instant::now();
    let mut namespaces = Vec::new();
    for n in 0..NAMESPACES {
        namespaces.push(namespace(&admin, &format!("scale{n}"), true).await);
    }
    let mut objects = Vec::new();
    for (n, ns) in namespaces.iter().enumerate() {
        for i in 0..per_ns {
            if n * per_ns + i >= workloads {
                break;
            }
            let next = format!("http://s{}:80", (i + 1) % per_ns);
            let prev = format!("s{}:80", (i + per_ns - 1) % per_ns);
            objects.push((
                ns.clone(),
                deployment(
                    ns,
                    &format!("w{i}"),
                    &[
                        ("NEXT_URL", &next),
                        ("PREV_ADDR", &prev),
                        ("LOG_LEVEL", "info"),
                    ],
                    &[("http", 8080)],
                ),
                service(ns, &format!("s{i}"), &format!("w{i}"), 80, 8080),
            ));
        }
    }
    futures::stream::iter(objects)
        .for_each_concurrent(16, |(ns, d, s)| {
            let admin = admin.clone();
            async move {
                let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
                let services: Api<Service> = Api::namespaced(admin, &ns);
                deployments
                    .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
                    .await
                    .unwrap();
                services
                    .create(&PostParams::default(), &serde_json::from_value(s).unwrap())
                    .await
                    .unwrap();
            }
        })
        .await;
    eprintln!(
        "{workloads} Deployments and Services in {NAMESPACES} namespaces written in {:.1?}",
        setup.elapsed()
    );

    let policies: Api<NetworkPolicy> = Api::all(admin.clone());
    let ours = ListParams::default().labels("kubefence.dev/source=baseline");
    let count = async || {
        policies
            .list_metadata(&ours)
            .await
            .map_or(0, |l| l.items.len())
    };

    // 1. The first full reconcile: start to every policy written.
    let user = operator_user(FULL_INSTALL);
    let audit_from = cluster.audit_offset();
    let started = Instant::now();
    let spec = Spec {
        resync_seconds: RESYNC.as_secs(),
        ..Spec::new("scale")
    };
    let op = Operator::start(cluster, spec);
    let pid = op.pid();
    loop {
        if count().await >= workloads {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not converged in 10 min ({} of {workloads}):\n{}",
            count().await,
            op.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let full_wall = started.elapsed();
    // The writes are done; let the echoes and events settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (full_cpu, _) = process_usage(pid);
    let audit_full = cluster.audit_offset();
    let full = by_verb(
        &cluster
            .requests_since(&user, audit_from)
            .unwrap_or_default(),
    );

    // 2. Unchanged resyncs: over two resync periods, CPU and writes.
    let (cpu0, _) = process_usage(pid);
    tokio::time::sleep(RESYNC * 2 + Duration::from_secs(2)).await;
    let (cpu1, rss) = process_usage(pid);
    let all_after = cluster
        .requests_since(&user, audit_full)
        .unwrap_or_default();
    let resync = by_verb(&all_after);

    println!("--- baseline controller, {workloads} workloads, real kube-apiserver ---");
    println!(
        "full reconcile: wall {:.2} s (operator start to the last policy), operator CPU {:.2} s, API requests {:?} ({} writes)",
        full_wall.as_secs_f64(),
        full_cpu.as_secs_f64(),
        full,
        writes(&full)
    );
    println!(
        "two unchanged resyncs ({} s apart): operator CPU {:.2} s in {:.0} s, API requests {:?} ({} writes)",
        RESYNC.as_secs(),
        (cpu1 - cpu0).as_secs_f64(),
        (RESYNC * 2).as_secs_f64() + 2.0,
        resync,
        writes(&resync)
    );
    println!(
        "operator resident memory at steady state: {:.1} MiB",
        rss as f64 / 1024.0
    );
    assert_eq!(count().await, workloads);
    // Policy writes only: the resync writes nothing (events are writes too,
    // and none is due either).
    assert_eq!(writes(&resync), 0, "{all_after:#?}");

    op.stop().await;
    for ns in &namespaces {
        support::remove_namespace(&admin, ns).await;
    }
}
