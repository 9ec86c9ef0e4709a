//! `kubefence agent --mode hubble`, the real binary, against the real API
//! server (tests/support) and an in-process Hubble Relay that replays
//! hand-written flows (`kubefence_testkit::hubble_relay`). The agent runs
//! as its own ServiceAccount bound to deploy/components/agent's ClusterRole,
//! so the RBAC that ships is the RBAC that is tested.
//!
//! What is shown: the NetworkNeighborhoods it writes through the API server
//! are what `kubefence learn` learns from the same flows (same neighbours,
//! same ports), a dropped flow and reply packets leave nothing, the DNS name
//! an answer gave is kept, the status is `learning` with the mode
//! annotated, no call was refused, and SIGTERM ends it cleanly.
//!
//! No pod runs here (no kubelet): the flows say what Cilium would have
//! seen; the API server is real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use kube::Api;
use kubefence_core::Protocol;
use kubefence_core::learn::{
    DnsRecord, Flow, FlowEndpoint, FlowWorkload, Learner, Neighborhood, TcpFlags, Verdict,
};
use kubefence_k8s::crd::learned::{NetworkNeighborhood, OtherGroup};
use kubefence_testkit::hubble_relay::{self, Generated, Script};
use serde_json::json;
use support::cluster::{self, deploy};
use support::namespace;

fn pod(ns: &str, app: &str, ip: &str) -> FlowEndpoint<'static> {
    FlowEndpoint {
        namespace: Some(Cow::Owned(ns.to_string())),
        labels: vec![
            (Cow::Borrowed("app"), Cow::Owned(app.to_string())),
            (Cow::Borrowed("pod-template-hash"), Cow::Borrowed("5d9c7b")),
        ],
        pod_name: Some(Cow::Owned(format!("{app}-5d9c7b-x2k4q"))),
        workloads: vec![FlowWorkload {
            name: Cow::Owned(app.to_string()),
            kind: Cow::Borrowed("Deployment"),
        }],
        ip: Some(ip.parse().unwrap()),
        ..FlowEndpoint::default()
    }
}

fn world(ip: &str) -> FlowEndpoint<'static> {
    FlowEndpoint {
        reserved: vec![kubefence_core::learn::ReservedIdentity::World],
        identity: Some(2),
        ip: Some(ip.parse().unwrap()),
        ..FlowEndpoint::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn flow(
    at: u32,
    source: FlowEndpoint<'static>,
    destination: FlowEndpoint<'static>,
    protocol: Protocol,
    ports: (u16, u16),
    syn_ack: Option<(bool, bool)>,
    is_reply: bool,
    verdict: Verdict,
) -> Flow<'static> {
    Flow {
        time: Some(Cow::Owned(format!("2026-11-29T10:00:{:02}.000000000Z", at))),
        source,
        destination,
        protocol: Some(protocol),
        source_port: Some(ports.0),
        destination_port: Some(ports.1),
        tcp_flags: syn_ack.map(|(syn, ack)| TcpFlags {
            syn,
            ack,
            ..TcpFlags::default()
        }),
        is_reply: Some(is_reply),
        verdict: Some(verdict),
        ..Flow::default()
    }
}

/// web → api TCP 8080 (SYN, the SYN-ACK reply), web → kube-dns UDP 53 and
/// its answer naming api.example.com, web → that address TCP 443, and a
/// dropped SYN web → api 9999.
fn flows(ns: &str) -> Vec<Flow<'static>> {
    let web = || pod(ns, "web", "10.244.1.10");
    let api = || pod(ns, "api", "10.244.2.20");
    let dns = || pod("kube-system", "kube-dns", "10.244.0.2");
    let external = "203.0.113.7";
    let mut answer = flow(
        3,
        dns(),
        web(),
        Protocol::Udp,
        (53, 40000),
        None,
        true,
        Verdict::Forwarded,
    );
    answer.dns = Some(DnsRecord {
        query: Cow::Borrowed("api.example.com."),
        ips: vec![external.parse::<IpAddr>().unwrap()],
    });
    vec![
        flow(
            1,
            web(),
            api(),
            Protocol::Tcp,
            (41000, 8080),
            Some((true, false)),
            false,
            Verdict::Forwarded,
        ),
        flow(
            1,
            api(),
            web(),
            Protocol::Tcp,
            (8080, 41000),
            Some((true, true)),
            true,
            Verdict::Forwarded,
        ),
        flow(
            2,
            web(),
            dns(),
            Protocol::Udp,
            (40000, 53),
            None,
            false,
            Verdict::Forwarded,
        ),
        answer,
        flow(
            4,
            web(),
            world(external),
            Protocol::Tcp,
            (41002, 443),
            Some((true, false)),
            false,
            Verdict::Forwarded,
        ),
        flow(
            5,
            web(),
            api(),
            Protocol::Tcp,
            (41003, 9999),
            Some((true, false)),
            false,
            Verdict::Dropped,
        ),
    ]
}

/// Neighbours and ports, without the evidence counts (Hubble's replayed
/// flows may be read twice across a reconnection).
fn shape(n: &Neighborhood) -> (BTreeSet<String>, BTreeSet<String>) {
    let side = |list: &[kubefence_core::learn::Neighbor]| {
        list.iter()
            .flat_map(|nb| {
                nb.ports
                    .iter()
                    .map(move |p| format!("{:?} {:?} {}", nb.peer, p.protocol, p.port))
            })
            .collect()
    };
    (side(&n.ingress), side(&n.egress))
}

/// The agent's own identity in `ns`, bound to the ClusterRole that ships;
/// its kubeconfig.
async fn agent_identity(
    c: &cluster::Cluster,
    admin: &kube::Client,
    ns: &str,
) -> std::path::PathBuf {
    for object in cluster::yaml_docs(&deploy().join("components/agent/clusterrole.yaml")).unwrap() {
        cluster::apply(admin, object).await.unwrap();
    }
    support::create(
        admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "kubefence-agent", "namespace": ns}}),
    )
    .await;
    cluster::apply(
        admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("{ns}-agent")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubefence-agent"},
               "subjects": [{"kind": "ServiceAccount", "name": "kubefence-agent", "namespace": ns}]}),
    )
    .await
    .unwrap();
    let (kubeconfig, _) = c
        .service_account_kubeconfig(admin, ns, "kubefence-agent")
        .await;
    kubeconfig
}

/// `kubefence agent --mode hubble` as a process, with its logs.
struct Agent {
    child: std::process::Child,
    admin_addr: std::net::SocketAddr,
    logs: tempfile::TempDir,
}

impl Agent {
    fn start(
        bin: &std::path::Path,
        kubeconfig: &std::path::Path,
        relay: &str,
        extra: &[&str],
    ) -> Agent {
        let admin_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let logs = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(bin)
            .args(["agent", "--mode", "hubble", "--hubble-relay", relay])
            .args(["--learning-period-seconds", "3600"])
            .args(["--admin-addr", &admin_addr.to_string()])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBEFENCE_LOG", "info")
            .env_remove("NODE_NAME")
            .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child,
            admin_addr,
            logs,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("err")).unwrap_or_default()
    }

    /// SIGTERM, and the exit status (bounded).
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        // The agent's own bound is --shutdown-timeout-seconds (20 s).
        let asked = std::time::Instant::now();
        for _ in 0..300 {
            if let Some(s) = self.child.try_wait().unwrap() {
                eprintln!("the agent stopped {:?} after SIGTERM", asked.elapsed());
                return (s, self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        panic!("the agent did not stop on SIGTERM:\n{}", self.stderr())
    }
}

/// A counter of the agent's `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    let text = scrape(addr, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

/// One GET on the agent's admin server, the whole answer.
async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn the_hubble_agent_writes_what_learn_learns_through_the_api_server() {
    let Some(c) = cluster::cluster() else {
        return;
    };
    let Some(bin) = support::kubefence_binary() else {
        return;
    };
    let admin = c.admin().await;
    let ns = namespace(&admin, "agent-hubble", false).await;

    let kubeconfig = agent_identity(c, &admin, &ns).await;

    let flows = flows(&ns);
    let relay = hubble_relay::start(
        flows
            .iter()
            .map(|f| hubble_relay::to_response(f, "kind-worker"))
            .collect(),
        Script::default(),
    )
    .await
    .unwrap();
    let audit_from = c.audit_offset();
    let agent = Agent::start(
        &bin,
        &kubeconfig,
        &relay.url(),
        &["--write-interval-seconds", "1"],
    );
    let admin_addr = agent.admin_addr;

    let neighborhoods: Api<NetworkNeighborhood> = Api::namespaced(admin.clone(), &ns);
    let written = support::eventually(
        "the agent's neighborhoods",
        Duration::from_secs(30),
        async || {
            let web = neighborhoods.get_opt("deployment-web").await.ok().flatten();
            let api = neighborhoods.get_opt("deployment-api").await.ok().flatten();
            web.zip(api)
        },
        Option::is_some,
    )
    .await
    .unwrap();

    // What `kubefence learn` learns from the same flows.
    let mut learner = Learner::new();
    for f in &flows {
        learner.observe(f);
    }
    let (learned, _) = learner.finish(None);
    let learned_of = |name: &str| {
        learned
            .iter()
            .find(|n| n.workload.name == name && n.workload.namespace == ns)
            .unwrap_or_else(|| panic!("learn has no {name}: {learned:?}"))
    };
    for (object, name) in [(&written.0, "web"), (&written.1, "api")] {
        let annotations = object.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations["kubescape.io/status"], "learning", "{name}");
        assert_eq!(annotations["kubefence.dev/agent-mode"], "hubble", "{name}");
        let read = kubefence_k8s::learn::neighborhood::neighborhood(&object.to_other_group(), &ns)
            .unwrap()
            .value;
        assert_eq!(
            shape(&read),
            shape(learned_of(name)),
            "{name}: the agent wrote what learn learns"
        );
    }
    // And what that is, checked by hand.
    let text = serde_json::to_string(&written.0.spec).unwrap();
    assert!(text.contains("TCP-8080"), "web calls api on 8080: {text}");
    assert!(text.contains("UDP-53"), "web asks kube-dns: {text}");
    assert!(
        text.contains("203.0.113.7") && text.contains("api.example.com"),
        "{text}"
    );
    assert!(
        !text.contains("9999"),
        "a dropped flow is no neighbour: {text}"
    );
    let api_text = serde_json::to_string(&written.1.spec).unwrap();
    assert!(api_text.contains("TCP-8080"), "{api_text}");
    assert!(
        !api_text.contains("41000") && !text.contains("41000"),
        "replies and client ports leave nothing"
    );

    // Its figures, as Prometheus reads them: six flows read, none lost,
    // both neighborhoods written, the mode.
    let metrics = support::eventually(
        "the agent's metrics",
        Duration::from_secs(10),
        async || scrape(admin_addr, "/metrics").await,
        |m| m.contains("kubefence_agent_neighborhood_writes_total"),
    )
    .await;
    for line in [
        "kubefence_agent_mode_info{mode=\"hubble\"} 1",
        "kubefence_agent_events_total 6",
        "kubefence_agent_lost_events_total 0",
        "kubefence_agent_malformed_events_total 0",
        "kubefence_agent_ready 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    let writes = metric(admin_addr, "kubefence_agent_neighborhood_writes_total")
        .await
        .unwrap();
    assert!(writes >= 2, "{metrics}");
    assert!(
        scrape(admin_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // SIGTERM: a clean stop.
    let (status, err) = agent.stop().await;
    assert!(status.success(), "agent exit {status}:\n{err}");
    assert!(err.contains("mode=hubble"), "the mode is logged:\n{err}");

    let user = format!("system:serviceaccount:{ns}:kubefence-agent");
    if let Some(refused) = c.forbidden_since(&user, audit_from) {
        assert!(
            refused.is_empty(),
            "calls the ClusterRole refused: {refused:?}"
        );
    }
    support::remove_namespace(&admin, &ns).await;
}

/// The API load of the agent with 200 workloads whose neighbourhoods change
/// all the time: 1,000 flows a second, each a new port between two of the
/// 200 (every workload has a new neighbour entry every second), for two
/// minutes after the first writes, with the default write interval (30 s).
/// The bound is one write per workload per 30 s: 400 a minute. Prints the
/// writes a minute from the agent's counter and from the API server's audit
/// log (every request the agent made). A measurement (2.5 minutes): run by
/// hand with
/// `cargo test -p kubefence-operator --test e2e_agent -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement of 2.5 minutes: run by hand"]
async fn api_writes_per_minute_with_200_workloads() {
    let Some(c) = cluster::cluster() else {
        return;
    };
    let Some(bin) = support::kubefence_binary() else {
        return;
    };
    let admin = c.admin().await;
    let ns = namespace(&admin, "agent-writes", false).await;
    let kubeconfig = agent_identity(c, &admin, &ns).await;
    const WORKLOADS: u64 = 200;
    let flow_ns = ns.clone();
    let relay = hubble_relay::start(
        Vec::new(),
        Script {
            generated: Some(Generated {
                per_second: 1_000,
                flow: std::sync::Arc::new(move |i| {
                    let (from, to) = (i % WORKLOADS, (i / WORKLOADS + i) % WORKLOADS);
                    let port = u16::try_from(1_000 + i / WORKLOADS % 60_000).unwrap_or(1_000);
                    let mut f = flow(
                        0,
                        pod(
                            &flow_ns,
                            &format!("w{from}"),
                            &format!("10.244.{}.{}", from / 250, from % 250 + 1),
                        ),
                        pod(
                            &flow_ns,
                            &format!("w{to}"),
                            &format!("10.244.{}.{}", to / 250, to % 250 + 1),
                        ),
                        Protocol::Tcp,
                        (40_000, port),
                        Some((true, false)),
                        false,
                        Verdict::Forwarded,
                    );
                    f.time = None;
                    hubble_relay::to_response(&f, "kind-worker")
                }),
            }),
            ..Script::default()
        },
    )
    .await
    .unwrap();
    let user = format!("system:serviceaccount:{ns}:kubefence-agent");
    let agent = Agent::start(
        &bin,
        &kubeconfig,
        &relay.url(),
        &["--max-entries", "10000000"],
    );
    let addr = agent.admin_addr;
    // The first writes (every workload is new) come within a second or two.
    support::eventually(
        "the first writes",
        Duration::from_secs(30),
        async || metric(addr, "kubefence_agent_neighborhood_writes_total").await,
        |w| w.is_some_and(|w| w >= WORKLOADS),
    )
    .await;
    let mut figures = Vec::new();
    for minute in 1..=2 {
        let writes_before = metric(addr, "kubefence_agent_neighborhood_writes_total")
            .await
            .unwrap();
        let audit_before = c.audit_offset();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let writes = metric(addr, "kubefence_agent_neighborhood_writes_total")
            .await
            .unwrap()
            - writes_before;
        let requests = c.requests_since(&user, audit_before).unwrap_or_default();
        let api_writes = requests
            .iter()
            .filter(|r| {
                r.starts_with("patch ") || r.starts_with("create ") || r.starts_with("update ")
            })
            .count();
        let failures = metric(addr, "kubefence_agent_neighborhood_write_failures_total")
            .await
            .unwrap_or(0);
        let events = metric(addr, "kubefence_agent_events_total")
            .await
            .unwrap_or(0);
        eprintln!(
            "minute {minute}: {writes} neighborhood writes (agent counter), {api_writes} write \
             requests and {} requests in all (audit log), {failures} failures so far, {events} flows read so far",
            requests.len()
        );
        figures.push((writes, api_writes));
    }
    let (status, err) = agent.stop().await;
    assert!(status.success(), "{err}");
    for (writes, api_writes) in figures {
        assert!(
            writes <= 2 * WORKLOADS + WORKLOADS / 10,
            "{writes} writes in a minute"
        );
        assert!(
            api_writes as u64 <= 2 * writes + WORKLOADS,
            "{api_writes} API writes in a minute"
        );
    }
    support::remove_namespace(&admin, &ns).await;
}
