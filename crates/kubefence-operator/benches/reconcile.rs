//! The operator at scale: 10,000 workloads (50 namespaces of 200
//! Deployments, each with its Service, each calling its two neighbours)
//! against the in-process fake API server.
//!
//! Reports, for a full reconcile (every policy created), a full resync of
//! the unchanged cluster, a Service change and an env change: CPU time of
//! the thread that runs the controller (from /proc/thread-self/schedstat;
//! the fake API answers on a thread of its own, whose CPU time is reported
//! apart as `api`: against a real cluster it is the API server's; so is
//! the kube client's request buffer task, spawned where the client is made,
//! which only hands requests over; `other threads` is whatever else of the
//! process ran, and stays near zero), wall time, and API writes, and asserts
//! that the writes equal the number of policies that changed (compared on
//! the fake server before and after). Also the builder alone, and the
//! memory of the caches (RSS growth from /proc/self/status while the
//! objects are listed into the controller one at a time).
//!
//! `cargo bench -p kubefence-operator --bench reconcile` (not run in CI; it
//! must compile). `-- --workloads N` for another size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::watcher::Event;
use kubefence_core::baseline::{Scope, build};
use kubefence_core::model::WorkloadKind;
use kubefence_operator::context::{Context, OperatorConfig};
use kubefence_operator::controllers::baseline::diff::Comparable;
use kubefence_operator::controllers::baseline::state::Kind;
use kubefence_operator::controllers::baseline::watch::{change, changes};
use kubefence_operator::controllers::baseline::{Change, Controller, Pass};
use kubefence_operator::fake::FakeApi;
use kubefence_operator::fixtures;
use kubefence_operator::metrics::Metrics;
use support::{cpu_ns, fake_on_its_own_thread, process_cpu_ns, rss_kib, thread_cpu_ns};
use tokio::sync::watch;

/// The allocator of the `kubefence` binary (crates/kubefence/src/main.rs):
/// what ships is what is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 50;
const DEPLOYMENT: Kind = Kind::Workload(WorkloadKind::Deployment);

fn workload(
    ns: &str,
    i: usize,
    per_ns: usize,
    port: u16,
) -> k8s_openapi::api::apps::v1::Deployment {
    let next = format!("http://s{}:80", (i + 1) % per_ns);
    let prev = format!("s{}:80", (i + per_ns - 1) % per_ns);
    fixtures::deployment(
        ns,
        &format!("w{i}"),
        &[
            ("NEXT_URL", &next),
            ("PREV_ADDR", &prev),
            ("LOG_LEVEL", "info"),
        ],
        &[("http", port)],
    )
}

type Snapshot = BTreeMap<(String, String), String>;

fn snapshot(fake: &FakeApi) -> Snapshot {
    fake.policies()
        .into_iter()
        .map(|(k, p)| {
            let spec = serde_json::to_string(&p.spec).unwrap();
            let labels = serde_json::to_string(&p.metadata.labels).unwrap();
            (k, format!("{spec}{labels}"))
        })
        .collect()
}

fn changed(before: &Snapshot, after: &Snapshot) -> usize {
    let mut n = 0;
    for (k, v) in after {
        if before.get(k) != Some(v) {
            n += 1;
        }
    }
    n + before.keys().filter(|k| !after.contains_key(*k)).count()
}

struct Measured {
    pass: Pass,
    cpu: Duration,
    api_cpu: Duration,
    /// Every thread of the process but these two (should be ~0: the
    /// operator's runtime is the measured thread alone).
    other_cpu: Duration,
    wall: Duration,
    writes: usize,
}

async fn measure(c: &mut Controller, fake: &FakeApi, api_thread: &str) -> Measured {
    fake.clear_requests();
    let (cpu0, api0, all0, t0) = (
        cpu_ns(),
        thread_cpu_ns(api_thread),
        process_cpu_ns(),
        Instant::now(),
    );
    let pass = c.reconcile().await;
    let (cpu, wall) = (Duration::from_nanos(cpu_ns() - cpu0), t0.elapsed());
    let api_cpu = Duration::from_nanos(thread_cpu_ns(api_thread) - api0);
    let all = Duration::from_nanos(process_cpu_ns().saturating_sub(all0));
    let other_cpu = all.saturating_sub(cpu + api_cpu);
    let writes = fake
        .requests()
        .iter()
        .filter(|r| r.is_policy_write())
        .count();
    fake.clear_requests();
    Measured {
        pass,
        cpu,
        api_cpu,
        other_cpu,
        wall,
        writes,
    }
}

fn report(what: &str, m: &Measured, changed: usize) {
    println!(
        "{what:<34} cpu {:>9.1} ms  (api {:>7.1} ms, other threads {:>5.1} ms)  wall {:>9.1} ms  examined {:>6}  writes {:>6}  changed policies {:>6}",
        m.cpu.as_secs_f64() * 1e3,
        m.api_cpu.as_secs_f64() * 1e3,
        m.other_cpu.as_secs_f64() * 1e3,
        m.wall.as_secs_f64() * 1e3,
        m.pass.examined,
        m.writes,
        changed
    );
    assert_eq!(
        m.writes, changed,
        "{what}: writes must equal changed policies"
    );
    assert_eq!(m.pass.failed, 0);
}

/// Lists namespaces, Deployments and Services (and empty lists of the other
/// kinds) into `c`, one object at a time.
fn list_into(c: &mut Controller, workloads: usize, per_ns: usize) {
    let mut feed = |ch: Change| c.handle(ch);
    feed(Change::Init(Kind::Namespace));
    for n in 0..NAMESPACES {
        feed(change(
            Kind::Namespace,
            Event::InitApply(fixtures::namespace(&format!("ns{n}"), true)),
        ));
    }
    feed(Change::InitDone(Kind::Namespace));
    for kind in [DEPLOYMENT, Kind::Service] {
        feed(Change::Init(kind));
        for n in 0..NAMESPACES {
            let ns = format!("ns{n}");
            for i in 0..per_ns {
                if n * per_ns + i >= workloads {
                    break;
                }
                let ch = if kind == DEPLOYMENT {
                    change(kind, Event::InitApply(workload(&ns, i, per_ns, 8080)))
                } else {
                    let svc = fixtures::service(&ns, &format!("s{i}"), &format!("w{i}"), 80, 8080);
                    change(kind, Event::InitApply(svc))
                };
                feed(ch);
            }
        }
        feed(Change::InitDone(kind));
    }
    for k in WorkloadKind::ALL
        .into_iter()
        .filter(|k| *k != WorkloadKind::Deployment)
    {
        feed(Change::Init(Kind::Workload(k)));
        feed(Change::InitDone(Kind::Workload(k)));
    }
    for kind in [Kind::Ingress, Kind::ConfigMap, Kind::NetworkPolicy] {
        feed(Change::Init(kind));
        feed(Change::InitDone(kind));
    }
}

/// The memory of the cache of watched objects (state and index), in a
/// fresh process; writes the desired policies to `out` as JSON lines.
fn object_cache(workloads: usize, per_ns: usize, out: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (client, _fake) = FakeApi::start();
        let (_l, leader) = watch::channel(true);
        let (_s, shutdown) = watch::channel(false);
        let ctx = Arc::new(Context::new(
            client,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            leader,
            shutdown,
        ));
        let mut c = Controller::new(ctx).unwrap();
        let (r0, _) = rss_kib();
        list_into(&mut c, workloads, per_ns);
        let (r1, _) = rss_kib();
        println!(
            "cache of watched objects + index: {:.1} MiB",
            r1.saturating_sub(r0) as f64 / 1024.0
        );
        let built = build(
            &c.state().cluster(),
            &Default::default(),
            &Scope { namespaces: None },
        )
        .unwrap();
        let mut lines = String::new();
        for g in &built.policies {
            let mut np = kubefence_k8s::render::generated_policy(g);
            // As the watch delivers them after the first pass.
            np.metadata.uid = Some(format!("uid-{}", g.policy.name));
            np.metadata.resource_version = Some("12345".into());
            lines.push_str(&serde_json::to_string(&np).unwrap());
            lines.push('\n');
        }
        std::fs::write(out, lines).unwrap();
    });
}

/// The memory of the two policy caches, in a fresh process, from the JSON
/// lines `object_cache` wrote (read before measuring; each policy is parsed
/// on its own, so only the caches grow).
fn policy_caches(file: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (client, _fake) = FakeApi::start();
        let (_l, leader) = watch::channel(true);
        let (_s, shutdown) = watch::channel(false);
        let ctx = Arc::new(Context::new(
            client,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            leader,
            shutdown,
        ));
        let mut c = Controller::new(ctx).unwrap();
        let mut desired: std::collections::HashMap<(String, String), Comparable> =
            std::collections::HashMap::new();
        let (r0, _) = rss_kib();
        c.handle(Change::Init(Kind::NetworkPolicy));
        for line in text.lines() {
            let np: k8s_openapi::api::networking::v1::NetworkPolicy =
                serde_json::from_str(line).unwrap();
            c.handle(change(Kind::NetworkPolicy, Event::InitApply(np)));
        }
        let (r1, _) = rss_kib();
        for line in text.lines() {
            // As `Controller` keeps them: what is compared (what the
            // rendered object reads as is what the builder's policy reads
            // as), by (namespace, name); not the object.
            let np: k8s_openapi::api::networking::v1::NetworkPolicy =
                serde_json::from_str(line).unwrap();
            let key = (
                np.metadata.namespace.clone().unwrap(),
                np.metadata.name.clone().unwrap(),
            );
            desired.insert(key, Comparable::of(&np));
        }
        let (r2, _) = rss_kib();
        println!(
            "cache of observed policies: {:.1} MiB; of desired policies: {:.1} MiB ({} each)",
            r1.saturating_sub(r0) as f64 / 1024.0,
            r2.saturating_sub(r1) as f64 / 1024.0,
            desired.len()
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workloads: usize = args
        .iter()
        .position(|a| a == "--workloads")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10_000);
    let per_ns = workloads.div_ceil(NAMESPACES);
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(out) = value("--object-cache") {
        object_cache(workloads, per_ns, &out);
        return;
    }
    if let Some(file) = value("--policy-caches") {
        policy_caches(&file);
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, fake, api_thread) = fake_on_its_own_thread();
    runtime.block_on(async move {
        let config = OperatorConfig {
            leader_election: false,
            write_concurrency: 16,
            ..OperatorConfig::default()
        }
        .normalized();
        let (_leader_tx, leader) = watch::channel(true);
        let (_stop, shutdown) = watch::channel(false);
        let ctx = Arc::new(Context::new(client, config, Arc::new(Metrics::default()), leader, shutdown));
        let mut c = Controller::new(ctx).unwrap();

        // List everything into the controller, one object at a time.
        let (rss0, _) = rss_kib();
        list_into(&mut c, workloads, per_ns);
        let (rss1, _) = rss_kib();
        let counts = c.state().counts();
        println!(
            "{workloads} workloads, {} Services, {NAMESPACES} namespaces listed (RSS growth {:.1} MiB)",
            counts[2],
            (rss1.saturating_sub(rss0)) as f64 / 1024.0
        );

        // The builder alone, on the same snapshot.
        let cluster = c.state().cluster();
        let t0 = Instant::now();
        let cpu0 = cpu_ns();
        let built = build(&cluster, &Default::default(), &Scope { namespaces: None }).unwrap();
        println!(
            "{:<34} cpu {:>9.1} ms  wall {:>9.1} ms  ({} policies)",
            "baseline::build alone",
            (cpu_ns() - cpu0) as f64 / 1e6,
            t0.elapsed().as_secs_f64() * 1e3,
            built.policies.len()
        );
        drop((cluster, built));

        // 1. Full reconcile: every policy is created.
        let before = snapshot(&fake);
        let m = measure(&mut c, &fake, &api_thread).await;
        let after = snapshot(&fake);
        report("full reconcile (all created)", &m, changed(&before, &after));
        assert_eq!(after.len(), workloads);

        // 2. Full resync of the unchanged cluster: nothing to write.
        c.request_full();
        let m = measure(&mut c, &fake, &api_thread).await;
        report("full resync, nothing changed", &m, 0);

        // 3. A Service's target port changes: its workload and both referrers.
        let before = snapshot(&fake);
        c.handle(change(Kind::Service, Event::Apply(fixtures::service("ns7", "s10", "w10", 80, 9090))));
        c.handle(change(DEPLOYMENT, Event::Apply(workload("ns7", 10, per_ns, 9090))));
        let m = measure(&mut c, &fake, &api_thread).await;
        report("Service port change", &m, changed(&before, &snapshot(&fake)));

        // 4. One workload's env changes (a new reference).
        let before = snapshot(&fake);
        let mut d = workload("ns3", 5, per_ns, 8080);
        let env = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0]
            .env
            .as_mut()
            .unwrap();
        env[2].value = Some(format!("http://s{}:80", per_ns / 2));
        env[2].name = "EXTRA_URL".into();
        c.handle(change(DEPLOYMENT, Event::Apply(d)));
        let m = measure(&mut c, &fake, &api_thread).await;
        report("one workload's env change", &m, changed(&before, &snapshot(&fake)));

        // 5. A Service nobody uses: nothing looked at, nothing written.
        c.handle(change(Kind::Service, Event::Apply(fixtures::service("ns1", "unused", "nothing", 1, 1))));
        let m = measure(&mut c, &fake, &api_thread).await;
        report("unrelated Service added", &m, 0);

        // The caches, each measured in a fresh process (RSS growth is only
        // meaningful where little has been freed before).
        let file = std::env::temp_dir().join(format!("kubefence-bench-{}.jsonl", std::process::id()));
        let file = file.to_string_lossy().to_string();
        for args in [
            vec!["--object-cache".to_string(), file.clone(), "--workloads".into(), workloads.to_string()],
            vec!["--policy-caches".to_string(), file.clone()],
        ] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(&args)
                .output()
                .unwrap();
            print!("{}", String::from_utf8_lossy(&out.stdout));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = std::fs::remove_file(&file);

        let (rss, hwm) = rss_kib();
        println!(
            "process RSS {:.1} MiB, peak {:.1} MiB (includes the fake server's {} stored policies)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            fake.policies().len()
        );
        // Keep the policy watch type used so the adapter stays exercised here.
        let _ = changes(Kind::NetworkPolicy, fake.policy_watch());
    });
}
