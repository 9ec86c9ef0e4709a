//! The Hubble input against an in-process Hubble Relay (gRPC on loopback,
//! `kubefence_testkit::hubble_relay`) that replays flow files: what the
//! agent reads from the stream is what `kubefence learn` reads from the same
//! file, and a stream that breaks is opened again from its last flow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubefence_agent::capture::hubble::{self, HubbleOptions, HubbleStats};
use kubefence_core::learn::Flow;
use kubefence_testkit::hubble_relay::{self, Script};
use tokio::sync::watch;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/flows")
        .join(name)
}

fn read_file(path: &std::path::Path) -> Vec<Flow<'static>> {
    kubefence_k8s::learn::hubble::open(path.to_str().unwrap())
        .unwrap()
        .map(|f| f.unwrap())
        .collect()
}

/// The flow with its time as an instant: `hubble observe` writes 0 to 9
/// fractional digits, the agent always nine.
fn normalized(mut flow: Flow<'static>) -> Flow<'static> {
    flow.time = flow.time.map(|t| {
        let instant: jiff::Timestamp = t.parse().unwrap();
        instant.to_string().into()
    });
    flow
}

struct Run {
    flows: Arc<Mutex<Vec<Flow<'static>>>>,
    stats: Arc<HubbleStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), hubble::HubbleError>>,
}

fn read_from(url: String, nodes: Vec<String>) -> Run {
    let flows = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(HubbleStats::default());
    let (stop, stopped) = watch::channel(false);
    let mut options = HubbleOptions::new(url);
    options.nodes = nodes;
    options.max_backoff = Duration::from_millis(200);
    let task = {
        let flows = Arc::clone(&flows);
        let stats = Arc::clone(&stats);
        tokio::spawn(hubble::run(options, stats, stopped, move |f| {
            flows.lock().unwrap().push(f);
        }))
    };
    Run {
        flows,
        stats,
        stop,
        task,
    }
}

impl Run {
    async fn until(&self, count: usize) -> Vec<Flow<'static>> {
        for _ in 0..200 {
            if self.flows.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.flows.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the input stops when told")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn flows_read_from_relay_are_the_flows_read_from_the_file() {
    for name in [
        "jsonpb-tcp.jsonl",
        "json-array.json",
        "json-camel-numbers.jsonl",
        "jsonpb-no-is-reply.jsonl",
    ] {
        let expected = read_file(&testdata(name));
        assert!(!expected.is_empty(), "{name} holds flows");
        let mut responses: Vec<_> = expected
            .iter()
            .map(|f| hubble_relay::to_response(f, "kind-worker"))
            .collect();
        // Hubble's own losses are counted, not read as flows.
        responses.insert(1, hubble_relay::lost(7));
        let relay = hubble_relay::start(responses, Script::default())
            .await
            .unwrap();
        let run = read_from(relay.url(), Vec::new());
        let read = run.until(expected.len()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(run.stats.lost.load(Ordering::Relaxed), 7, "{name}");
        assert_eq!(run.stats.malformed.load(Ordering::Relaxed), 0, "{name}");
        assert_eq!(run.stats.reconnects.load(Ordering::Relaxed), 0, "{name}");
        assert!(run.stats.connected.load(Ordering::Relaxed), "{name}");
        run.stop().await;
        assert_eq!(
            read.into_iter().map(normalized).collect::<Vec<_>>(),
            expected.into_iter().map(normalized).collect::<Vec<_>>(),
            "{name}: the gRPC stream and the file disagree"
        );
        let requests = relay.requests();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].follow, "the agent follows the stream");
        assert!(requests[0].since.is_none() && requests[0].whitelist.is_empty());
    }
}

/// 500 generated flows; Relay breaks the first stream after 200. The agent
/// opens it again from the time of the 200th flow: every flow is read, the
/// 200th's instant twice at most, nothing lost.
#[tokio::test]
async fn a_broken_stream_is_opened_again_from_its_last_flow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let mut out = std::fs::File::create(&file).unwrap();
    kubefence_testkit::flowgen::write_jsonpb(&mut out, 500, 7).unwrap();
    drop(out);
    let expected = read_file(&file);
    assert_eq!(expected.len(), 500);
    let responses: Vec<_> = expected
        .iter()
        .map(|f| hubble_relay::to_response(f, "kind-worker"))
        .collect();
    let relay = hubble_relay::start(
        responses,
        Script {
            break_first_after: Some(200),
            ..Script::default()
        },
    )
    .await
    .unwrap();
    let run = read_from(relay.url(), Vec::new());
    let read = run.until(500).await;
    assert_eq!(run.stats.reconnects.load(Ordering::Relaxed), 1);
    run.stop().await;

    let requests = relay.requests();
    assert_eq!(
        requests.len(),
        2,
        "one stream, then one more after the break"
    );
    let resumed_at = requests[1].since.expect("the second stream resumes");
    let resumed_at: jiff::Timestamp = hubble::rfc3339(resumed_at).unwrap().parse().unwrap();
    let last_before_break: jiff::Timestamp =
        expected[199].time.as_deref().unwrap().parse().unwrap();
    assert_eq!(
        resumed_at, last_before_break,
        "resumed at the 200th flow's time"
    );
    let read: Vec<_> = read.into_iter().map(normalized).collect();
    let expected: Vec<_> = expected.into_iter().map(normalized).collect();
    assert!(read[..200] == expected[..200], "the first stream's flows");
    // After the break: the flows at or after the 200th's instant, in order.
    let instant = |f: &Flow<'_>| -> jiff::Timestamp { f.time.as_deref().unwrap().parse().unwrap() };
    let again: Vec<_> = expected
        .iter()
        .filter(|f| instant(f) >= last_before_break)
        .cloned()
        .collect();
    assert_eq!(read.len() - 200, again.len(), "flows of the second stream");
    assert!(read[200..] == again[..], "the second stream's flows");
    let lost = expected.iter().filter(|f| !read.contains(f)).count();
    assert_eq!(lost, 0, "flows lost across the break");
}

#[tokio::test]
async fn a_node_filter_is_sent_to_relay() {
    let expected = read_file(&testdata("jsonpb-tcp.jsonl"));
    let mut responses: Vec<_> = expected
        .iter()
        .map(|f| hubble_relay::to_response(f, "node-a"))
        .collect();
    responses.extend(
        expected
            .iter()
            .map(|f| hubble_relay::to_response(f, "node-b")),
    );
    let relay = hubble_relay::start(responses, Script::default())
        .await
        .unwrap();
    let run = read_from(relay.url(), vec!["node-b".to_string()]);
    let read = run.until(expected.len()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stop().await;
    assert_eq!(read.len(), expected.len(), "only node-b's flows");
    assert_eq!(
        relay.requests()[0].whitelist[0].node_name,
        vec!["node-b".to_string()]
    );
}

/// A Relay that is not there: the input keeps trying (with backoff) and
/// stops at once when told, without an error.
#[tokio::test]
async fn a_relay_that_is_down_is_retried_until_shutdown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let run = read_from(format!("http://{address}"), Vec::new());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(run.stats.reconnects.load(Ordering::Relaxed) >= 2);
    assert!(!run.stats.connected.load(Ordering::Relaxed));
    run.stop().await;
}

#[test]
fn an_address_that_is_not_a_url_is_refused() {
    let err = hubble::check_address("not a url").unwrap_err();
    assert!(err.to_string().contains("--hubble-relay"), "{err}");
}
