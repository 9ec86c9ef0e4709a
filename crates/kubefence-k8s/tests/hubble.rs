//! The Hubble reader on the hand-written flow files of testdata/flows (see
//! its README for the case each shows), gzip, overlong records, and the
//! core learner fed from it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kubefence_core::Protocol;
use kubefence_core::learn::flows::{
    Flow, FlowEvent, FlowService, FlowType, FlowWorkload, ReservedIdentity, TrafficDirection,
    Verdict,
};
use kubefence_k8s::learn::hubble::{self, FlowError, MAX_RECORD_BYTES};

fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/flows")
}

fn path(name: &str) -> String {
    flows_dir().join(name).to_string_lossy().into_owned()
}

fn read_all(name: &str) -> (Vec<Flow<'static>>, Vec<FlowError>, u64) {
    let mut reader = hubble::open(&path(name)).unwrap();
    let mut flows = Vec::new();
    let mut errors = Vec::new();
    for item in reader.by_ref() {
        match item {
            Ok(f) => flows.push(f),
            Err(e) => errors.push(e),
        }
    }
    (flows, errors, reader.skipped_records)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn jsonpb_lines_give_flows_and_skip_other_records() {
    let (flows, errors, skipped) = read_all("jsonpb-tcp.jsonl");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(flows.len(), 3);
    assert_eq!(skipped, 2, "node_status and lost_events");
    let syn = &flows[0];
    assert_eq!(syn.time.as_deref(), Some("2026-03-01T10:00:00.000000001Z"));
    assert_eq!(syn.protocol, Some(Protocol::Tcp));
    assert_eq!(syn.source_port, Some(43210));
    assert_eq!(syn.destination_port, Some(7070));
    assert!(syn.tcp_flags.unwrap().is_opening());
    assert_eq!(syn.is_reply, Some(false));
    assert_eq!(syn.verdict, Some(Verdict::Forwarded));
    assert_eq!(syn.flow_type, Some(FlowType::L3L4));
    assert_eq!(syn.event, Some(FlowEvent::Trace));
    assert_eq!(syn.traffic_direction, Some(TrafficDirection::Egress));
    assert_eq!(syn.source.ip, Some(ip("10.244.0.15")));
    assert_eq!(syn.source.namespace.as_deref(), Some("shop"));
    assert_eq!(
        syn.source.pod_name.as_deref(),
        Some("frontend-7d4b9c-x2kzq")
    );
    assert_eq!(syn.source.identity, Some(5678));
    assert_eq!(
        syn.source.workloads,
        [FlowWorkload {
            name: "frontend".into(),
            kind: "Deployment".into()
        }]
    );
    // `k8s:` prefix removed, sorted by key, Cilium's own labels kept.
    assert_eq!(
        syn.source.labels,
        [
            ("app", "frontend"),
            ("io.cilium.k8s.policy.cluster", "default"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("pod-template-hash", "7d4b9c"),
        ]
        .map(|(k, v)| (k.into(), v.into()))
    );
    assert_eq!(
        syn.destination.service,
        Some(FlowService {
            namespace: "shop".into(),
            name: "cartservice".into()
        })
    );
    let reply = &flows[1];
    assert_eq!(reply.is_reply, Some(true));
    assert!(!reply.tcp_flags.unwrap().is_opening());
    // No `time` in the flow: the jsonpb wrapper's.
    assert_eq!(
        flows[2].time.as_deref(),
        Some("2026-03-01T10:00:00.000300000Z")
    );
}

#[test]
fn a_json_array_of_bare_flows_is_read_element_by_element() {
    let (flows, errors, _) = read_all("json-array.json");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(flows.len(), 3);
    let query = &flows[0];
    assert_eq!(query.protocol, Some(Protocol::Udp));
    assert_eq!(query.destination_port, Some(53));
    // Absent is_reply is unknown, not false.
    assert_eq!(query.is_reply, None);
    let answer = flows[1].dns.as_ref().unwrap();
    assert_eq!(answer.query, "api.stripe.com.");
    assert_eq!(answer.ips, [ip("203.0.113.7"), ip("2001:db8::7")]);
    assert_eq!(flows[1].flow_type, Some(FlowType::L7));
    let world = &flows[2];
    assert_eq!(world.destination.reserved, [ReservedIdentity::World]);
    assert!(world.destination.labels.is_empty());
    assert_eq!(world.destination.namespace, None);
}

#[test]
fn camel_case_names_numbered_enums_and_wrapped_booleans_are_read() {
    let (flows, errors, _) = read_all("json-camel-numbers.jsonl");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(flows.len(), 2);
    let sctp = &flows[0];
    assert_eq!(sctp.protocol, Some(Protocol::Sctp));
    assert_eq!(sctp.source_port, Some(3000));
    assert_eq!(sctp.destination_port, Some(9899));
    assert_eq!(sctp.verdict, Some(Verdict::Forwarded));
    assert_eq!(sctp.flow_type, Some(FlowType::L3L4));
    assert_eq!(sctp.traffic_direction, Some(TrafficDirection::Egress));
    assert_eq!(sctp.is_reply, Some(false));
    assert_eq!(sctp.event, Some(FlowEvent::PolicyVerdict));
    assert_eq!(sctp.destination.pod_name.as_deref(), Some("signal-0"));
    assert_eq!(flows[1].verdict, Some(Verdict::Dropped));
    assert_eq!(flows[1].is_reply, Some(true));
}

#[test]
fn malformed_lines_are_errors_with_file_and_line_and_the_rest_is_read() {
    let (flows, errors, _) = read_all("malformed.jsonl");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 5], "{errors:?}");
    for e in &errors {
        assert!(e.file.ends_with("malformed.jsonl"), "{e}");
    }
    assert!(errors[0].message.starts_with("not JSON"), "{}", errors[0]);
    assert!(errors[2].message.contains("not-an-ip"), "{}", errors[2]);
    assert_eq!(flows.len(), 3);
    // Unknown enum values are kept, missing l4 is no protocol: no panic.
    let odd = &flows[1];
    assert_eq!(odd.verdict, Some(Verdict::Other("SOMETHING_NEW".into())));
    assert_eq!(odd.flow_type, Some(FlowType::Other("L9".into())));
    assert_eq!(
        odd.traffic_direction,
        Some(TrafficDirection::Unknown("SIDEWAYS".into()))
    );
    assert_eq!(odd.protocol, None);
    assert_eq!(flows[2].source_port, Some(43212));
}

#[test]
fn gzip_is_recognised_by_its_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("flows.log");
    let plain = std::fs::read(flows_dir().join("jsonpb-tcp.jsonl")).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&plain).unwrap();
    encoder.finish().unwrap();
    let flows: Vec<Flow> = hubble::open(gz.to_str().unwrap())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let (expected, _, _) = read_all("jsonpb-tcp.jsonl");
    assert_eq!(flows, expected);
}

#[test]
fn an_overlong_record_is_skipped_and_reading_goes_on() {
    let good = std::fs::read_to_string(flows_dir().join("jsonpb-tcp.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    let mut text = String::with_capacity(MAX_RECORD_BYTES + 4096);
    text.push_str(first);
    text.push('\n');
    text.push_str(&"x".repeat(MAX_RECORD_BYTES + 10));
    text.push('\n');
    text.push_str(first);
    text.push('\n');
    let reader = hubble::from_reader(std::io::Cursor::new(text.into_bytes()), "big.jsonl").unwrap();
    let results: Vec<_> = reader.collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("big.jsonl", 2));
    assert!(e.message.contains("longer than"), "{e}");
}

#[test]
fn arrays_that_break_off_are_errors_not_panics() {
    for (text, line) in [
        ("[{\"IP\": {\"source\": \"10.0.0.1\"}},\n{\"IP\": ", 2),
        ("[{\"IP\": {\"source\": \"10.0.0.1\"}}", 1),
        ("[\n 3 ]", 2),
    ] {
        let results: Vec<_> =
            hubble::from_reader(std::io::Cursor::new(text.as_bytes().to_vec()), "a.json")
                .unwrap()
                .collect();
        let errors: Vec<&FlowError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errors.len(), 1, "{text}: {results:?}");
        assert_eq!(errors[0].line, line, "{text}: {:?}", errors[0]);
    }
    // An empty array and an empty file hold no flows and no errors.
    for text in ["[]", " [ \n ] ", "", "\n\n"] {
        let results: Vec<_> =
            hubble::from_reader(std::io::Cursor::new(text.as_bytes().to_vec()), "e.json")
                .unwrap()
                .collect();
        assert!(results.is_empty(), "{text:?}: {results:?}");
    }
}

/// The reader feeds the core learner: the SYN is one connection, its reply
/// and the later ACK of the same 5-tuple are not another.
#[test]
fn the_learner_counts_the_jsonpb_connection_once() {
    let mut learner = kubefence_core::learn::Learner::new();
    for flow in hubble::open(&path("jsonpb-tcp.jsonl")).unwrap() {
        learner.observe(&flow.unwrap());
    }
    let (neighborhoods, report) = learner.finish(None);
    assert_eq!(report.flows.replies, 1);
    let frontend = neighborhoods
        .iter()
        .find(|n| n.workload.name == "frontend")
        .unwrap();
    assert_eq!(frontend.egress.len(), 1);
    let evidence = frontend.egress[0].evidence.as_ref().unwrap();
    assert_eq!(evidence.connections, 1);
    assert_eq!(
        frontend.egress[0]
            .ports
            .iter()
            .map(|p| p.port)
            .collect::<Vec<_>>(),
        [7070]
    );
}

/// Everything a reader gives, in order: flows (owned) and errors.
type Stream = (Vec<Result<Flow<'static>, FlowError>>, u64);

fn by_iterator(text: &[u8]) -> Stream {
    let mut reader = hubble::from_reader(std::io::Cursor::new(text.to_vec()), "s.jsonl").unwrap();
    let items = reader.by_ref().collect();
    (items, reader.skipped_records)
}

fn by_visits(text: &[u8]) -> Stream {
    let mut reader = hubble::from_reader(std::io::Cursor::new(text.to_vec()), "s.jsonl").unwrap();
    let mut items = Vec::new();
    reader.for_each_flow(|item| items.push(item.map(|f| f.clone().into_owned())));
    (items, reader.skipped_records)
}

#[test]
fn for_each_flow_gives_what_the_iterator_gives() {
    for entry in std::fs::read_dir(flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let text = std::fs::read(&path).unwrap();
        let (items, skipped) = by_iterator(&text);
        assert!(!items.is_empty(), "{}", path.display());
        assert_eq!(by_visits(&text), (items, skipped), "{}", path.display());
    }
}

/// A long stream with unreadable and overlong lines among the flows comes
/// out of `for_each_flow` as out of the iterator: same order, same line
/// numbers, same skipped count.
#[test]
fn for_each_flow_keeps_order_and_line_numbers_over_a_long_stream() {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for name in [
        "jsonpb-tcp.jsonl",
        "malformed.jsonl",
        "json-camel-numbers.jsonl",
    ] {
        let text = std::fs::read(flows_dir().join(name)).unwrap();
        lines.extend(text.split(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    let mut text = Vec::new();
    let mut n = 0usize;
    // One overlong line among them.
    while n < 20_000 {
        let line = &lines[n % lines.len()];
        // Make every line a distinct flow, so a reordering shows.
        let line =
            String::from_utf8_lossy(line).replace("2026-", &format!("{:06}-", n % 1_000_000));
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
        if n == 7_000 {
            text.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
            text.push(b'\n');
        }
        n += 1;
    }
    let (items, skipped) = by_iterator(&text);
    let errors = items.iter().filter(|i| i.is_err()).count();
    assert!(errors > 100, "{errors}");
    assert!(items.len() > 10_000, "{}", items.len());
    let (visited, visited_skipped) = by_visits(&text);
    assert_eq!(visited_skipped, skipped);
    assert_eq!(visited.len(), items.len());
    for (i, (a, b)) in visited.iter().zip(&items).enumerate() {
        assert_eq!(a, b, "item {i}");
    }
}

/// What a whole read gave: the learner's result, the errors in order (file
/// and line), the records visited and skipped, and every flow (as text,
/// sorted: the workers see them in no particular order).
type Learned = (String, Vec<(String, usize)>, u64, u64, Vec<String>);

fn learned_sequentially(text: &[u8]) -> Learned {
    let mut reader = hubble::from_reader(std::io::Cursor::new(text.to_vec()), "s.jsonl").unwrap();
    let mut learner = kubefence_core::learn::Learner::new();
    let (mut errors, mut flows, mut records) = (Vec::new(), Vec::new(), 0u64);
    reader.for_each_flow(|item| {
        records += 1;
        match item {
            Ok(flow) => {
                learner.observe(flow);
                flows.push(format!("{flow:?}"));
            }
            Err(e) => errors.push((e.file, e.line)),
        }
    });
    flows.sort();
    let finished = format!("{:?}", learner.finish(None));
    (finished, errors, records, reader.skipped_records, flows)
}

fn learned_in_parallel(text: &[u8], workers: usize, block_bytes: usize) -> Learned {
    use kubefence_core::learn::Learner;
    let mut reader = hubble::from_reader(std::io::Cursor::new(text.to_vec()), "s.jsonl")
        .unwrap()
        .with_block_bytes(block_bytes);
    let mut errors = Vec::new();
    let folded = reader.fold_parallel(
        workers,
        || (Learner::new(), Vec::new()),
        |(learner, flows): &mut (Learner, Vec<String>), flow, hints: hubble::EndpointHints| {
            learner.observe_hinted(flow, hints.source, hints.destination);
            flows.push(format!("{flow:?}"));
        },
        |(learner, flows), (other, more)| {
            learner.merge(other);
            flows.extend(more);
        },
        |e| errors.push((e.file, e.line)),
    );
    let (learner, mut flows) = folded.state;
    flows.sort();
    let finished = format!("{:?}", learner.finish(None));
    (
        finished,
        errors,
        folded.records,
        reader.skipped_records,
        flows,
    )
}

/// Reading with several threads, in blocks of any size (down to one byte,
/// so that every record is cut at every place), gives exactly what reading
/// record by record gives: the same flows, the same errors on the same
/// lines in the same order, and the same learned result. Every hand-written
/// file is read so, and a long stream of all of them with an overlong line.
#[test]
fn reading_in_parallel_gives_what_reading_in_order_gives() {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(flows_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let mut long = Vec::new();
    for (i, (name, text)) in inputs.iter().enumerate().cycle().take(200) {
        if name.ends_with(".json") {
            continue;
        }
        long.extend_from_slice(text);
        long.push(b'\n');
        if i == 3 {
            long.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
            long.push(b'\n');
        }
    }
    inputs.push(("long stream".into(), long));
    // No newline at the end, and whitespace-only lines.
    inputs.push((
        "ragged".into(),
        b"\n  \n{\"IP\": {\"source\": \"10.0.0.1\"}}\n\n{\"IP\": {\"source\": \"10.0.0.2\"}}"
            .to_vec(),
    ));
    for (name, text) in &inputs {
        let expected = learned_sequentially(text);
        assert!(!expected.4.is_empty(), "{name}: no flow read");
        for workers in [1, 2, 3] {
            for block_bytes in [1, 100, 4096, hubble::BLOCK_BYTES] {
                if block_bytes < 4096 && text.len() > 100_000 {
                    continue;
                }
                let got = learned_in_parallel(text, workers, block_bytes);
                assert_eq!(
                    got, expected,
                    "{name}: {workers} workers, blocks of {block_bytes} bytes"
                );
            }
        }
    }
}
