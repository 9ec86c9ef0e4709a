//! Real traffic through the agent's eBPF capture.
//!
//! Two "pods" are two network namespaces this test creates, joined by a
//! veth pair with addresses of 10.213.7.0/30, which exist only inside them:
//! no packet leaves the namespaces. A client in one opens 2,000 short TCP
//! connections and makes 500 UDP request/reply exchanges with a server in
//! the other (both are this test binary, run in the namespaces through
//! `ip netns exec`). The capture must report exactly those openings: each
//! once at the client (outgoing) and once at the server (incoming), with
//! the right ports, none for a reply, none lost; and the aggregation, with
//! a stub pod index for the two addresses, must fold them into one
//! neighbour per side and port with the exact counts.
//!
//! Needs root (namespaces, BPF). Without root the test says so and skips;
//! on a kernel without the feature it says which and skips; in CI
//! (`CI=true`) both are failures, so a CI machine that cannot run it is
//! noticed. `without_bpf_rights_the_capture_fails_clearly` runs the
//! capture without capabilities and checks the error names the rights.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubefence_agent::aggregate::{Aggregator, Outcome};
use kubefence_agent::capture::conntrack::{ConntrackCapture, Opening, connections_of};
use kubefence_agent::capture::ebpf::{CaptureStats, EbpfCapture, EbpfError, EbpfOptions};
use kubefence_agent::connection::{Connection, Direction};
use kubefence_agent::index::{PodIndex, PodRecord};
use kubefence_core::learn::{NeighborPeer, WorkloadRef};
use kubefence_core::{LabelSelector, Labels, Protocol};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 2);
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
const TCP_CONNECTIONS: usize = 2_000;
const UDP_EXCHANGES: usize = 500;
/// The client's UDP source ports: one per exchange, so each exchange is a
/// new 5-tuple (the kernel's ephemeral choice could repeat one within the
/// run, and a repeated 5-tuple within 30 s is the same flow, as for
/// conntrack).
const UDP_FIRST_SOURCE_PORT: u16 = 31_000;
/// Bound on the whole traffic run.
const DEADLINE: Duration = Duration::from_secs(120);

const ROLE_ENV: &str = "KUBEFENCE_NETNS_ROLE";

/// The tests that make traffic take turns: they use the same addresses,
/// and the eBPF capture sees every namespace's sockets.
static TRAFFIC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (with the reason) outside CI; fails in CI.
fn skip(reason: &str) {
    if in_ci() {
        panic!("cannot run the real-traffic test in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

fn is_root() -> bool {
    // /proc/self/status `Uid:` real, effective, ...
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces and their veth pair; removed on drop.
struct Namespaces {
    client: String,
    server: String,
    /// The server's end of the veth pair.
    server_dev: String,
}

impl Namespaces {
    fn create() -> Result<Self, String> {
        // Unique per test of this process: tests run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (a, b) = (format!("kfa{id}"), format!("kfb{id}"));
        let ns = Self {
            client: format!("kf-client-{id}"),
            server: format!("kf-server-{id}"),
            server_dev: b.clone(),
        };
        run(&["ip", "netns", "add", &ns.client])?;
        run(&["ip", "netns", "add", &ns.server])?;
        run(&[
            "ip", "link", "add", &a, "netns", &ns.client, "type", "veth", "peer", "name", &b,
            "netns", &ns.server,
        ])?;
        for (netns, dev, addr) in [
            (&ns.client, &a, format!("{CLIENT_IP}/30")),
            (&ns.server, &b, format!("{SERVER_IP}/30")),
        ] {
            run(&["ip", "-n", netns, "addr", "add", &addr, "dev", dev])?;
            run(&["ip", "-n", netns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", netns, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        let _ = run(&["ip", "netns", "del", &self.client]);
        let _ = run(&["ip", "netns", "del", &self.server]);
    }
}

/// Runs this test binary's `traffic_role` test inside `netns`.
fn spawn_role(netns: &str, role: &str) -> std::io::Result<Child> {
    spawn_role_with(netns, role, Stdio::null())
}

fn spawn_role_with(netns: &str, role: &str, stdin: Stdio) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(exe)
        .args([
            "--exact",
            "traffic_role",
            "--include-ignored",
            "--nocapture",
        ])
        .env(ROLE_ENV, role)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Waits for `child` to exit within `deadline`, killing it past that.
fn wait_bounded(child: &mut Child, deadline: Instant) -> Result<(), String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exited with {status}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The traffic itself, run in a namespace by `spawn_role` (ignored when
/// run directly).
#[test]
#[ignore = "run inside a network namespace by real_tcp_and_udp_connections_are_counted_exactly_once"]
fn traffic_role() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("server") => server(),
        Ok("client") => client(),
        Ok("bench-server") => bench_server(),
        Ok("bench-client") => bench_client(),
        Ok("conntrack") => conntrack_role(),
        Ok("dns-server") => dns_server(),
        Ok("dns-client") => dns_client(),
        _ => {}
    }
}

fn server() {
    let tcp = TcpListener::bind((SERVER_IP, TCP_PORT)).unwrap();
    let udp = UdpSocket::bind((SERVER_IP, UDP_PORT)).unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let udp_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..UDP_EXCHANGES {
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            udp.send_to(&buf[..n], from).unwrap();
        }
    });
    for _ in 0..TCP_CONNECTIONS {
        let (mut stream, _) = tcp.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        stream.write_all(&byte).unwrap();
    }
    udp_thread.join().unwrap();
}

fn client() {
    for _ in 0..TCP_CONNECTIONS {
        let mut stream = TcpStream::connect((SERVER_IP, TCP_PORT)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
    }
    for i in 0..UDP_EXCHANGES {
        let port = UDP_FIRST_SOURCE_PORT + u16::try_from(i).unwrap();
        let socket = UdpSocket::bind((CLIENT_IP, port)).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        socket.send_to(b"q", (SERVER_IP, UDP_PORT)).unwrap();
        let mut buf = [0u8; 8];
        let (_, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(from, SocketAddr::from((SERVER_IP, UDP_PORT)));
    }
}

/// A pod index holding one pod `<name>-0` of Deployment `test/<name>`
/// (selected by `app: <name>`) per address.
fn stub_index(pods: &[(Ipv4Addr, &str)]) -> PodIndex {
    let mut index = PodIndex::new(Duration::from_secs(30), vec![]);
    for (ip, name) in pods {
        index.upsert_pod(
            PodRecord {
                namespace: "test".into(),
                name: format!("{name}-0"),
                workload: WorkloadRef {
                    kind: "Deployment".into(),
                    namespace: "test".into(),
                    name: (*name).into(),
                },
                selector: LabelSelector::from_labels(Labels::from([(
                    "app".into(),
                    (*name).into(),
                )])),
            },
            vec![(*ip).into()],
        );
    }
    index
}

fn is_test_address(c: &Connection) -> bool {
    [c.local.ip(), c.remote.ip()]
        .iter()
        .all(|ip| *ip == CLIENT_IP || *ip == SERVER_IP)
}

fn mount_tracefs_if_needed() {
    let tracefs = Path::new("/sys/kernel/tracing");
    if !tracefs.join("events").exists()
        && tracefs.exists()
        && let Err(e) = run(&["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"])
    {
        eprintln!("could not mount tracefs: {e}");
    }
}

/// Starts the capture, or says why the test cannot run (`None`).
fn start_capture() -> Option<EbpfCapture> {
    if !is_root() {
        skip("needs root (network namespaces and BPF)");
        return None;
    }
    mount_tracefs_if_needed();
    match EbpfCapture::start(&EbpfOptions::default()) {
        Ok(capture) => Some(capture),
        Err(e @ (EbpfError::KernelTooOld(_) | EbpfError::NoTracefs | EbpfError::NoCgroup2(_))) => {
            skip(&format!("this machine lacks a kernel feature: {e}"));
            None
        }
        Err(e) => panic!("the eBPF capture did not start: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_tcp_and_udp_connections_are_counted_exactly_once() {
    let _turn = TRAFFIC.lock().await;
    let Some(capture) = start_capture() else {
        return;
    };
    let namespaces = Namespaces::create().unwrap();
    let seen: Arc<Mutex<Vec<Connection>>> = Arc::default();
    let stats = Arc::new(CaptureStats::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reader = {
        let seen = Arc::clone(&seen);
        let stats = Arc::clone(&stats);
        tokio::spawn(capture.run(stats, stopped, move |c| {
            // The machine has other traffic: keep the test's only.
            if is_test_address(&c) {
                seen.lock().unwrap().push(c);
            }
        }))
    };

    let started = Instant::now();
    let (client_ns, server_ns) = (namespaces.client.clone(), namespaces.server.clone());
    let traffic = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        let mut server = spawn_role(&server_ns, "server").map_err(|e| e.to_string())?;
        let mut ready = String::new();
        let stdout = server.stdout.take().ok_or("no server stdout")?;
        let mut lines = BufReader::new(stdout);
        while !ready.contains("ready") {
            ready.clear();
            if lines.read_line(&mut ready).map_err(|e| e.to_string())? == 0 {
                let _ = server.kill();
                return Err("the server exited before it was ready".into());
            }
        }
        let mut client = spawn_role(&client_ns, "client").map_err(|e| e.to_string())?;
        let client_result = wait_bounded(&mut client, deadline).map_err(|e| format!("client: {e}"));
        let server_result = wait_bounded(&mut server, deadline).map_err(|e| format!("server: {e}"));
        client_result.and(server_result)
    });
    traffic.await.unwrap().unwrap();
    let traffic_time = started.elapsed();

    // Events are read as they come; wait (bounded) for the last ones.
    let expected = 2 * (TCP_CONNECTIONS + UDP_EXCHANGES);
    let wait_until = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, so that an extra (wrong) event would show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    reader.await.unwrap().unwrap();
    drop(namespaces);
    let seen = seen.lock().unwrap().clone();
    eprintln!(
        "{} connections in {traffic_time:?}; {} test events, {} events read in all, {} lost",
        TCP_CONNECTIONS + UDP_EXCHANGES,
        seen.len(),
        stats.events.load(std::sync::atomic::Ordering::Relaxed),
        stats.lost.load(std::sync::atomic::Ordering::Relaxed),
    );

    assert_eq!(
        stats.lost.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "events lost"
    );
    assert_eq!(
        stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Per (direction, protocol, local address, remote address, the
    // destination port): how many.
    let mut counts: BTreeMap<(Direction, Protocol, String, String, u16), usize> = BTreeMap::new();
    for c in &seen {
        *counts
            .entry((
                c.direction,
                c.protocol,
                c.local.ip().to_string(),
                c.remote.ip().to_string(),
                c.destination_port(),
            ))
            .or_default() += 1;
    }
    let (client, server) = (CLIENT_IP.to_string(), SERVER_IP.to_string());
    let expected_counts = BTreeMap::from([
        (
            (
                Direction::Outgoing,
                Protocol::Tcp,
                client.clone(),
                server.clone(),
                TCP_PORT,
            ),
            TCP_CONNECTIONS,
        ),
        (
            (
                Direction::Incoming,
                Protocol::Tcp,
                server.clone(),
                client.clone(),
                TCP_PORT,
            ),
            TCP_CONNECTIONS,
        ),
        (
            (
                Direction::Outgoing,
                Protocol::Udp,
                client.clone(),
                server.clone(),
                UDP_PORT,
            ),
            UDP_EXCHANGES,
        ),
        (
            (
                Direction::Incoming,
                Protocol::Udp,
                server.clone(),
                client.clone(),
                UDP_PORT,
            ),
            UDP_EXCHANGES,
        ),
    ]);
    assert_eq!(
        counts, expected_counts,
        "openings by direction, protocol, ends and port"
    );
    // Each opening is a distinct connection: the client's source ports are
    // all different per protocol, on both sides' records.
    for (direction, protocol) in [
        (Direction::Outgoing, Protocol::Tcp),
        (Direction::Incoming, Protocol::Tcp),
        (Direction::Outgoing, Protocol::Udp),
        (Direction::Incoming, Protocol::Udp),
    ] {
        let ephemeral: std::collections::BTreeSet<u16> = seen
            .iter()
            .filter(|c| c.direction == direction && c.protocol == protocol)
            .map(|c| match direction {
                Direction::Outgoing => c.local.port(),
                Direction::Incoming => c.remote.port(),
            })
            .collect();
        let n = if protocol == Protocol::Tcp {
            TCP_CONNECTIONS
        } else {
            UDP_EXCHANGES
        };
        assert_eq!(
            ephemeral.len(),
            n,
            "{direction} {protocol}: distinct client ports"
        );
    }

    // The aggregation, with a stub index for the two "pods".
    let workload = |name: &str| WorkloadRef {
        kind: "Deployment".into(),
        namespace: "test".into(),
        name: name.into(),
    };
    let selector =
        |app: &str| LabelSelector::from_labels(Labels::from([("app".into(), app.into())]));
    let index = stub_index(&[(CLIENT_IP, "client"), (SERVER_IP, "server")]);
    let mut aggregator = Aggregator::new(1_000);
    let now = Instant::now();
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    for c in &seen {
        *outcomes
            .entry(aggregator.record(c, &index, now, "2026-01-01T00:00:00Z"))
            .or_default() += 1;
    }
    assert_eq!(outcomes[&Outcome::New], 4, "{outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), seen.len());
    let client_hood = aggregator
        .snapshot(&workload("client"))
        .unwrap()
        .neighborhood;
    let server_hood = aggregator
        .snapshot(&workload("server"))
        .unwrap()
        .neighborhood;
    assert!(
        client_hood.ingress.is_empty(),
        "no reply became an ingress neighbour"
    );
    assert!(
        server_hood.egress.is_empty(),
        "no reply became an egress neighbour"
    );
    assert_eq!(client_hood.egress.len(), 1);
    assert_eq!(server_hood.ingress.len(), 1);
    assert_eq!(
        client_hood.egress[0].peer,
        NeighborPeer::Pods {
            namespace_selector: None,
            pod_selector: Some(selector("server"))
        }
    );
    let ports = |n: &kubefence_core::learn::Neighbor| -> Vec<(Protocol, u16)> {
        n.ports.iter().map(|p| (p.protocol, p.port)).collect()
    };
    let expected_ports = vec![(Protocol::Tcp, TCP_PORT), (Protocol::Udp, UDP_PORT)];
    assert_eq!(ports(&client_hood.egress[0]), expected_ports);
    assert_eq!(ports(&server_hood.ingress[0]), expected_ports);
    let connections = client_hood.egress[0].evidence.as_ref().unwrap().connections;
    assert_eq!(connections, (TCP_CONNECTIONS + UDP_EXCHANGES) as u64);
}

/// Without capabilities the capture must fail at once, naming the rights
/// it needs (the parent runs this binary's `capture_without_rights` test
/// under `setpriv` with every capability dropped).
#[test]
fn without_bpf_rights_the_capture_fails_clearly() {
    if !is_root() {
        // Not root: this process itself has no rights; check it here.
        check_no_rights();
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip("setpriv (util-linux) is needed to drop capabilities");
        return;
    }
    mount_tracefs_if_needed();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(exe)
        .args([
            "--exact",
            "capture_without_rights",
            "--include-ignored",
            "--nocapture",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = wait_bounded(&mut child, deadline);
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    assert!(result.is_ok(), "{result:?}: {out}");
    assert!(out.contains("1 passed"), "{out}");
    assert!(
        out.contains("capture error: no rights") || out.contains("failed before loading"),
        "{out}"
    );
    assert!(out.contains("conntrack error:"), "{out}");
}

#[test]
#[ignore = "run without capabilities by without_bpf_rights_the_capture_fails_clearly"]
fn capture_without_rights() {
    check_no_rights();
}

fn check_no_rights() {
    let started = Instant::now();
    match EbpfCapture::start(&EbpfOptions::default()) {
        Ok(_) => panic!("the capture started without capabilities"),
        Err(e @ EbpfError::NoRights { .. }) => {
            let text = e.to_string();
            println!("capture error: {text}");
            assert!(
                text.contains("CAP_BPF") && text.contains("CAP_PERFMON"),
                "{text}"
            );
        }
        // A host without the feature fails before the rights matter; that
        // is clear too.
        Err(
            e @ (EbpfError::KernelTooOld(_)
            | EbpfError::NoTracefs
            | EbpfError::NoCgroup2(_)
            | EbpfError::NotBuilt),
        ) => {
            println!("failed before loading, clearly: {e}");
        }
        Err(e) => panic!("unclear failure without rights: {e}"),
    }
    // The conntrack fallback needs CAP_NET_ADMIN, and says so.
    match ConntrackCapture::start() {
        Ok(_) => panic!("the conntrack capture subscribed without capabilities"),
        Err(e) => {
            let text = e.to_string();
            println!("conntrack error: {text}");
            assert!(text.contains("CAP_NET_ADMIN"), "{text}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it must not hang"
    );
}

/// Server ports of the benchmark: many, so that a high connection rate
/// does not run out of 4-tuples (TIME_WAIT).
const BENCH_PORTS: std::ops::Range<u16> = 9000..9016;
/// Seconds of traffic per rate (`KUBEFENCE_BENCH_SECONDS`, default 5; 600
/// for the memory run).
fn bench_seconds() -> u64 {
    std::env::var("KUBEFENCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn bench_server() {
    let listeners: Vec<TcpListener> = BENCH_PORTS
        .map(|p| TcpListener::bind((SERVER_IP, p)).unwrap())
        .collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                // Until the parent kills the server.
                while let Ok((stream, _)) = l.accept() {
                    drop(stream);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Opens connections at `KUBEFENCE_BENCH_RATE` per second for
/// `bench_seconds()`, from 4 threads; prints how many it opened.
fn bench_client() {
    let rate: u64 = std::env::var("KUBEFENCE_BENCH_RATE")
        .unwrap()
        .parse()
        .unwrap();
    let threads = 4u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let per_thread = rate / threads;
                let seconds = bench_seconds();
                let total = per_thread * seconds;
                let mut opened = 0u64;
                let ports: Vec<u16> = BENCH_PORTS.collect();
                while opened < total && started.elapsed() < Duration::from_secs(seconds * 3) {
                    // Pace: connection `opened` is due at opened / per_thread s.
                    let due = Duration::from_secs_f64(opened as f64 / per_thread as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let port = ports[((opened + t) % ports.len() as u64) as usize];
                    if TcpStream::connect((SERVER_IP, port)).is_ok() {
                        opened += 1;
                    }
                }
                opened
            })
        })
        .collect();
    let opened: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("opened {opened} in {:?}", started.elapsed());
}

/// This process's CPU time (user + system) and resident memory.
fn cpu_and_rss() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    (Duration::from_millis(ticks * 10), rss_kib)
}

/// The benchmark: connections per second between the two namespaces at
/// each rate of `KUBEFENCE_BENCH_RATES` (default 1000,10000,50000) for 5 s,
/// with the capture and the aggregation in this process; reports the
/// connections opened, the events read, lost events, this process's CPU
/// (as % of one core) and its resident memory. Run with
/// `cargo test --release -p kubefence-agent --test netns -- --ignored --nocapture capture_benchmark`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, as root"]
async fn capture_benchmark() {
    let _turn = TRAFFIC.lock().await;
    let Some(mut capture) = start_capture() else {
        return;
    };
    let rates: Vec<u64> = std::env::var("KUBEFENCE_BENCH_RATES")
        .unwrap_or_else(|_| "1000,10000,50000".into())
        .split(',')
        .map(|r| r.trim().parse().unwrap())
        .collect();
    for rate in rates {
        let namespaces = Namespaces::create().unwrap();
        // Long runs at high rates need the client's 4-tuples back quickly.
        for setting in [
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65000",
        ] {
            run(&[
                "ip",
                "netns",
                "exec",
                &namespaces.client,
                "sysctl",
                "-qw",
                setting,
            ])
            .unwrap();
        }
        let index = stub_index(&[(CLIENT_IP, "client"), (SERVER_IP, "server")]);
        let aggregator = Arc::new(Mutex::new(Aggregator::new(100_000)));
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stats = Arc::new(CaptureStats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (cpu0, _) = cpu_and_rss();
        let reader = {
            let aggregator = Arc::clone(&aggregator);
            let counted = Arc::clone(&counted);
            let stats = Arc::clone(&stats);
            tokio::spawn(capture.run(stats, stopped, move |c| {
                if is_test_address(&c) {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    aggregator
                        .lock()
                        .unwrap()
                        .record(&c, &index, Instant::now(), "t");
                }
            }))
        };
        let (client_ns, server_ns) = (namespaces.client.clone(), namespaces.server.clone());
        let started = Instant::now();
        // Memory over the run: one sample a minute.
        let sampler = {
            let aggregator = Arc::clone(&aggregator);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let mut minute = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    minute += 1;
                    let (_, rss) = cpu_and_rss();
                    eprintln!(
                        "rate {rate}/s, minute {minute}: RSS {} MiB, events {}, lost {}, entries {}",
                        rss / 1024,
                        stats.events.load(std::sync::atomic::Ordering::Relaxed),
                        stats.lost.load(std::sync::atomic::Ordering::Relaxed),
                        aggregator.lock().unwrap().entries()
                    );
                }
            })
        };
        let opened = tokio::task::spawn_blocking(move || -> String {
            let mut server = spawn_role(&server_ns, "bench-server").unwrap();
            let mut lines = BufReader::new(server.stdout.take().unwrap());
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            let mut client = Command::new("ip")
                .args(["netns", "exec", &client_ns])
                .arg(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "traffic_role",
                    "--include-ignored",
                    "--nocapture",
                ])
                .env(ROLE_ENV, "bench-client")
                .env("KUBEFENCE_BENCH_RATE", rate.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = String::new();
            client
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            let _ = client.wait();
            let _ = server.kill();
            let _ = server.wait();
            out.lines()
                .find(|l| l.starts_with("opened"))
                .unwrap_or("opened ?")
                .to_string()
        })
        .await
        .unwrap();
        let elapsed = started.elapsed();
        sampler.abort();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.send(true).unwrap();
        // The capture is moved into the reader; take a new one for the next rate.
        reader.await.unwrap().unwrap();
        let (cpu1, rss) = cpu_and_rss();
        drop(namespaces);
        let cpu = (cpu1 - cpu0).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
        eprintln!(
            "rate {rate}/s: {opened}; test events {} (2 per connection), lost {}, malformed {}, \
             CPU {cpu:.1}% of a core (this process: capture + aggregation), RSS {} MiB, entries {}",
            counted.load(std::sync::atomic::Ordering::Relaxed),
            stats.lost.load(std::sync::atomic::Ordering::Relaxed),
            stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
            rss / 1024,
            aggregator.lock().unwrap().entries(),
        );
        capture = EbpfCapture::start(&EbpfOptions::default()).unwrap();
    }
}

/// The conntrack capture in the server's namespace: subscribes, says
/// `ready`, reads until its stdin closes, then prints each opening
/// (`proto source destination server`) and its counters.
fn conntrack_role() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let capture = ConntrackCapture::start().unwrap();
        let stats = Arc::new(CaptureStats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let seen: Arc<Mutex<Vec<Opening>>> = Arc::default();
        let reader = {
            let seen = Arc::clone(&seen);
            tokio::spawn(capture.run(Arc::clone(&stats), stopped, move |o| {
                seen.lock().unwrap().push(o);
            }))
        };
        println!("ready");
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut rest = String::new();
            let _ = std::io::stdin().read_to_string(&mut rest);
        })
        .await
        .unwrap();
        stop.send(true).unwrap();
        reader.await.unwrap().unwrap();
        for o in seen.lock().unwrap().iter() {
            println!("{} {} {} {}", o.protocol, o.source, o.destination, o.server);
        }
        println!(
            "stats {} {} {}",
            stats.events.load(std::sync::atomic::Ordering::Relaxed),
            stats.lost.load(std::sync::atomic::Ordering::Relaxed),
            stats.malformed.load(std::sync::atomic::Ordering::Relaxed)
        );
    });
}

/// The conntrack fallback, with real traffic: conntrack is turned on in the
/// server's namespace (an nftables rule that matches on connection state;
/// `scripts/install-bpf-toolchain.sh` installs `nft`), the capture listens
/// there, and the same 2,000 TCP connections and 500 UDP exchanges must
/// each be reported once, from the client to the server's port, none from
/// a reply; attributed with a stub pod index for the two addresses, each
/// opening is the client's outgoing connection and the server's incoming
/// one.
#[test]
fn conntrack_reports_each_new_connection_once() {
    if !is_root() {
        skip("needs root (network namespaces and a netfilter netlink socket)");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        skip("nft (nftables) is needed to turn conntrack on in the test's namespace");
        return;
    }
    let _turn = TRAFFIC.blocking_lock();
    let namespaces = Namespaces::create().unwrap();
    // Any rule on connection state makes the kernel track connections in
    // this namespace (conntrack is per namespace and on demand).
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &namespaces.server, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(
            b"table inet kubefence_test {\n  chain input {\n    type filter hook input priority 0;\n    ct state new counter accept\n  }\n}\n",
        )
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft rule");

    let deadline = Instant::now() + DEADLINE;
    let mut capture = spawn_role_with(&namespaces.server, "conntrack", Stdio::piped()).unwrap();
    let mut capture_out = BufReader::new(capture.stdout.take().unwrap());
    // The test harness prints its own lines first.
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert_ne!(
            capture_out.read_line(&mut line).unwrap(),
            0,
            "the capture exited before it subscribed"
        );
    }

    let mut server = spawn_role(&namespaces.server, "server").unwrap();
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    line.clear();
    while !line.contains("ready") {
        line.clear();
        assert_ne!(server_out.read_line(&mut line).unwrap(), 0, "server exited");
    }
    let mut client = spawn_role(&namespaces.client, "client").unwrap();
    wait_bounded(&mut client, deadline).unwrap();
    wait_bounded(&mut server, deadline).unwrap();
    // A moment for the last events, then the capture prints what it saw.
    std::thread::sleep(Duration::from_millis(500));
    drop(capture.stdin.take());
    let mut report = String::new();
    capture_out.read_to_string(&mut report).unwrap();
    wait_bounded(&mut capture, deadline).unwrap();
    drop(namespaces);

    let mut openings = Vec::new();
    let mut stats = None;
    for l in report.lines() {
        let fields: Vec<&str> = l.split_whitespace().collect();
        match fields.as_slice() {
            ["stats", events, lost, malformed] => {
                stats = Some((
                    events.parse::<u64>().unwrap(),
                    lost.parse::<u64>().unwrap(),
                    malformed.parse::<u64>().unwrap(),
                ));
            }
            [protocol @ ("TCP" | "UDP"), source, destination, server] => openings.push(Opening {
                protocol: if *protocol == "TCP" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                },
                source: source.parse().unwrap(),
                destination: destination.parse().unwrap(),
                server: server.parse().unwrap(),
            }),
            // The test harness's own lines.
            _ => {}
        }
    }
    let (events, lost, malformed) = stats.expect("the capture's counters");
    eprintln!(
        "conntrack: {} openings, {events} events, {lost} lost, {malformed} malformed",
        openings.len()
    );
    assert_eq!((lost, malformed), (0, 0));
    let mut counts: BTreeMap<(Protocol, SocketAddr, SocketAddr), usize> = BTreeMap::new();
    for o in &openings {
        assert_eq!(o.source.ip(), CLIENT_IP, "only the client opens: {o:?}");
        assert_eq!(o.destination, o.server, "no NAT here: {o:?}");
        *counts
            .entry((o.protocol, SocketAddr::from((CLIENT_IP, 0)), o.destination))
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            (
                (
                    Protocol::Tcp,
                    SocketAddr::from((CLIENT_IP, 0)),
                    SocketAddr::from((SERVER_IP, TCP_PORT))
                ),
                TCP_CONNECTIONS
            ),
            (
                (
                    Protocol::Udp,
                    SocketAddr::from((CLIENT_IP, 0)),
                    SocketAddr::from((SERVER_IP, UDP_PORT))
                ),
                UDP_EXCHANGES
            ),
        ]),
        "openings by protocol and port"
    );
    let distinct: std::collections::BTreeSet<_> =
        openings.iter().map(|o| (o.protocol, o.source)).collect();
    assert_eq!(distinct.len(), TCP_CONNECTIONS + UDP_EXCHANGES, "each once");

    // Attribution: both ends pods of this "node".
    let index = stub_index(&[(CLIENT_IP, "client"), (SERVER_IP, "server")]);
    let now = Instant::now();
    let mut by_direction: BTreeMap<(Direction, Protocol, u16), usize> = BTreeMap::new();
    for o in &openings {
        for c in connections_of(o, &index, now) {
            *by_direction
                .entry((c.direction, c.protocol, c.destination_port()))
                .or_default() += 1;
        }
    }
    assert_eq!(
        by_direction,
        BTreeMap::from([
            (
                (Direction::Outgoing, Protocol::Tcp, TCP_PORT),
                TCP_CONNECTIONS
            ),
            (
                (Direction::Incoming, Protocol::Tcp, TCP_PORT),
                TCP_CONNECTIONS
            ),
            (
                (Direction::Outgoing, Protocol::Udp, UDP_PORT),
                UDP_EXCHANGES
            ),
            (
                (Direction::Incoming, Protocol::Udp, UDP_PORT),
                UDP_EXCHANGES
            ),
        ])
    );
}

/// An address "outside the cluster" in the server's namespace, that a DNS
/// answer names.
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 9, 9);
const EXTERNAL_NAME: &str = "api.example.test";

/// Answers one DNS query on port 53 (with `EXTERNAL_IP` for any name) and
/// accepts one TCP connection on `EXTERNAL_IP:443`.
fn dns_server() {
    let udp = UdpSocket::bind((SERVER_IP, 53)).unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    let tcp = TcpListener::bind((EXTERNAL_IP, 443)).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = udp.recv_from(&mut buf).unwrap();
    let query = simple_dns::Packet::parse(&buf[..n]).unwrap();
    let mut reply = simple_dns::Packet::new_reply(query.id());
    reply.questions = query.questions.clone();
    reply.answers.push(simple_dns::ResourceRecord::new(
        query.questions[0].qname.clone(),
        simple_dns::CLASS::IN,
        60,
        simple_dns::rdata::RData::A(simple_dns::rdata::A {
            address: u32::from(EXTERNAL_IP),
        }),
    ));
    udp.send_to(&reply.build_bytes_vec().unwrap(), from)
        .unwrap();
    let (mut stream, _) = tcp.accept().unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap();
}

/// Asks for `EXTERNAL_NAME` and connects to the address the answer gives.
fn dns_client() {
    let mut query = simple_dns::Packet::new_query(42);
    query.questions.push(simple_dns::Question::new(
        simple_dns::Name::new_unchecked(EXTERNAL_NAME),
        simple_dns::QTYPE::TYPE(simple_dns::TYPE::A),
        simple_dns::QCLASS::CLASS(simple_dns::CLASS::IN),
        false,
    ));
    let socket = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
        .send_to(&query.build_bytes_vec().unwrap(), (SERVER_IP, 53))
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let answer = simple_dns::Packet::parse(&buf[..n]).unwrap();
    let address = match &answer.answers[0].rdata {
        simple_dns::rdata::RData::A(a) => Ipv4Addr::from(a.address),
        other => panic!("answer {other:?}"),
    };
    let mut stream = TcpStream::connect((address, 443)).unwrap();
    stream.write_all(b"x").unwrap();
}

/// `--dns`: the eBPF capture copies the DNS answer a "pod" receives, and
/// the connection it then opens to the answered address is an external
/// neighbour named by that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_name_the_external_addresses() {
    let _turn = TRAFFIC.lock().await;
    if !is_root() {
        skip("needs root (network namespaces and BPF)");
        return;
    }
    mount_tracefs_if_needed();
    let mut capture = match EbpfCapture::start(&EbpfOptions {
        dns: true,
        ..EbpfOptions::default()
    }) {
        Ok(c) => c,
        Err(e @ (EbpfError::KernelTooOld(_) | EbpfError::NoTracefs | EbpfError::NoCgroup2(_))) => {
            skip(&format!("this machine lacks a kernel feature: {e}"));
            return;
        }
        Err(e) => panic!("the eBPF capture (with DNS) did not start: {e}"),
    };
    let namespaces = Namespaces::create().unwrap();
    run(&[
        "ip",
        "-n",
        &namespaces.server,
        "addr",
        "add",
        &format!("{EXTERNAL_IP}/32"),
        "dev",
        &namespaces.server_dev,
    ])
    .unwrap();
    run(&[
        "ip",
        "-n",
        &namespaces.client,
        "route",
        "add",
        &format!("{EXTERNAL_IP}/32"),
        "via",
        &SERVER_IP.to_string(),
    ])
    .unwrap();

    let answers: Arc<Mutex<Vec<kubefence_agent::dns::DnsAnswer>>> = Arc::default();
    {
        let answers = Arc::clone(&answers);
        capture.on_dns(move |payload| {
            if let Ok(Some(a)) = kubefence_agent::dns::parse(payload)
                && a.addresses.contains(&EXTERNAL_IP.into())
            {
                answers.lock().unwrap().push(a);
            }
        });
    }
    let seen: Arc<Mutex<Vec<Connection>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reader = {
        let seen = Arc::clone(&seen);
        tokio::spawn(
            capture.run(Arc::new(CaptureStats::default()), stopped, move |c| {
                if c.local.ip() == CLIENT_IP && c.remote.ip() == EXTERNAL_IP {
                    seen.lock().unwrap().push(c);
                }
            }),
        )
    };
    let (client_ns, server_ns) = (namespaces.client.clone(), namespaces.server.clone());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut server = spawn_role(&server_ns, "dns-server").unwrap();
        let mut lines = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert_ne!(lines.read_line(&mut line).unwrap(), 0, "dns server exited");
        }
        let mut client = spawn_role(&client_ns, "dns-client").unwrap();
        wait_bounded(&mut client, deadline).unwrap();
        wait_bounded(&mut server, deadline).unwrap();
    })
    .await
    .unwrap();
    let wait_until = Instant::now() + Duration::from_secs(5);
    while (answers.lock().unwrap().is_empty() || seen.lock().unwrap().is_empty())
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    reader.await.unwrap().unwrap();
    drop(namespaces);

    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1, "one answer, copied once: {answers:?}");
    assert_eq!(
        answers[0].names,
        std::collections::BTreeSet::from([EXTERNAL_NAME.to_string()])
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].direction, Direction::Outgoing);

    // The neighbour the aggregation makes of it: the address, named.
    let mut index = stub_index(&[(CLIENT_IP, "client")]);
    let now = Instant::now();
    assert!(index.learn_names(&answers[0].names, &answers[0].addresses, now));
    let mut aggregator = Aggregator::new(100);
    assert_eq!(aggregator.record(&seen[0], &index, now, "t"), Outcome::New);
    let workload = WorkloadRef {
        kind: "Deployment".into(),
        namespace: "test".into(),
        name: "client".into(),
    };
    let egress = aggregator.snapshot(&workload).unwrap().neighborhood.egress;
    assert_eq!(egress.len(), 1);
    assert_eq!(
        egress[0].peer,
        NeighborPeer::Address {
            ip: EXTERNAL_IP.into(),
            dns_names: std::collections::BTreeSet::from([EXTERNAL_NAME.to_string()]),
        }
    );
}
