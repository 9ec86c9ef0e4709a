//! The Hubble input (`--mode hubble`, for Cilium clusters): flows streamed
//! from Hubble Relay's gRPC `GetFlows`, read into the same flow record the
//! `learn` command reads from `hubble observe` files, and folded by the same
//! learner (`kubefence_core::learn::Learner`): replies, drops, DNS answers
//! and Cilium's reserved identities are treated exactly as `learn` treats
//! them. Cilium attributes each end itself (namespace, labels, workloads),
//! so this mode needs no Pod watch.
//!
//! A broken stream is opened again with exponential backoff (1 s doubling
//! to `max_backoff`), from the time of the last flow read (`since`), so
//! what Relay still holds of the gap is not lost. Flows Hubble itself lost
//! (`lost_events`) are counted.

pub mod proto;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kubefence_core::Protocol;
use kubefence_core::learn::{
    DnsRecord, Flow, FlowEndpoint, FlowEvent, FlowService, FlowWorkload, TcpFlags,
};
use kubefence_k8s::learn::hubble::{
    DIRECTIONS, FLOW_TYPES, VERDICTS, dns_ips, endpoint_ip, endpoint_labels, enum_name, flow_type,
    l4_port, traffic_direction, verdict,
};
use tokio::sync::watch;
use tonic::transport::Endpoint;

/// Where the flows come from.
#[derive(Clone, Debug)]
pub struct HubbleOptions {
    /// Hubble Relay's address, `http://host:port` (plaintext gRPC, Relay's
    /// default: `http://hubble-relay.kube-system.svc:80`).
    pub address: String,
    /// Only the flows observed on these nodes (Relay's node-name patterns);
    /// empty: every node.
    pub nodes: Vec<String>,
    /// The longest wait between two attempts to open the stream.
    pub max_backoff: Duration,
    /// How long connecting may take before it counts as a failure.
    pub connect_timeout: Duration,
}

impl HubbleOptions {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            nodes: Vec::new(),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the input cannot start at all (a Relay that is down is not one of
/// them: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum HubbleError {
    #[error("--hubble-relay {address:?} is not a gRPC address (http://host:port): {message}")]
    Address { address: String, message: String },
}

/// The input's counters (logged each minute; the agent's metrics).
#[derive(Debug, Default)]
pub struct HubbleStats {
    /// Flows read from the stream.
    pub flows: AtomicU64,
    /// Flows that could not be read into a flow record (an address or a
    /// port out of range): counted and skipped.
    pub malformed: AtomicU64,
    /// Events Hubble reported lost before they reached the agent
    /// (`lost_events`: its ring buffer or its queue overran).
    pub lost: AtomicU64,
    /// Times the stream was opened again after it broke or could not open.
    pub reconnects: AtomicU64,
    /// Whether the stream is open now.
    pub connected: AtomicBool,
}

/// Checks the address before anything runs.
pub fn check_address(address: &str) -> Result<Endpoint, HubbleError> {
    Endpoint::from_shared(address.to_string()).map_err(|e| HubbleError::Address {
        address: address.to_string(),
        message: e.to_string(),
    })
}

/// Streams flows into `sink` until `shutdown` turns true, opening the
/// stream again whenever it breaks.
pub async fn run(
    options: HubbleOptions,
    stats: Arc<HubbleStats>,
    mut shutdown: watch::Receiver<bool>,
    mut sink: impl FnMut(Flow<'static>),
) -> Result<(), HubbleError> {
    let endpoint = check_address(&options.address)?.connect_timeout(options.connect_timeout);
    let first_backoff = Duration::from_secs(1).min(options.max_backoff);
    let mut backoff = first_backoff;
    let mut since: Option<proto::Timestamp> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        // A new stream resumes at the last flow read: the flows of that
        // instant may be read twice, which adds to evidence counts only.
        let attempt = stream_once(&endpoint, &options, since, &stats, &mut shutdown, |t, f| {
            since = t.or(since);
            sink(f);
        });
        let outcome = attempt.await;
        stats.connected.store(false, Ordering::Relaxed);
        match outcome {
            Stream::Stopped => return Ok(()),
            Stream::Broke { read_any, error } => {
                if read_any {
                    backoff = first_backoff;
                }
                tracing::warn!(
                    relay = %options.address,
                    error = %error,
                    retry_in = ?backoff,
                    "the Hubble flow stream is not open; opening it again"
                );
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

enum Stream {
    Stopped,
    Broke { read_any: bool, error: String },
}

/// One stream, from opening to its end. `sink` gets each flow with its
/// time (where the next stream resumes).
async fn stream_once(
    endpoint: &Endpoint,
    options: &HubbleOptions,
    since: Option<proto::Timestamp>,
    stats: &HubbleStats,
    shutdown: &mut watch::Receiver<bool>,
    mut sink: impl FnMut(Option<proto::Timestamp>, Flow<'static>),
) -> Stream {
    let channel = tokio::select! {
        c = endpoint.connect() => match c {
            Ok(c) => c,
            Err(e) => return Stream::Broke { read_any: false, error: error_chain(&e) },
        },
        _ = shutdown.wait_for(|s| *s) => return Stream::Stopped,
    };
    let request = proto::GetFlowsRequest {
        follow: true,
        since,
        whitelist: if options.nodes.is_empty() {
            Vec::new()
        } else {
            vec![proto::FlowFilter {
                node_name: options.nodes.clone(),
            }]
        },
        ..proto::GetFlowsRequest::default()
    };
    let mut stream = match proto::get_flows(channel, request).await {
        Ok(s) => s,
        Err(status) => {
            return Stream::Broke {
                read_any: false,
                error: status.to_string(),
            };
        }
    };
    stats.connected.store(true, Ordering::Relaxed);
    tracing::info!(relay = %options.address, "reading flows from Hubble Relay");
    let mut read_any = false;
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = shutdown.wait_for(|s| *s) => return Stream::Stopped,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Stream::Broke {
                    read_any,
                    error: "Relay ended the stream".to_string(),
                };
            }
            Err(status) => {
                return Stream::Broke {
                    read_any,
                    error: status.to_string(),
                };
            }
        };
        read_any = true;
        match response.response_types {
            Some(proto::ResponseTypes::Flow(flow)) => {
                stats.flows.fetch_add(1, Ordering::Relaxed);
                let time = flow.time.or(response.time);
                match to_flow(flow, response.time) {
                    Ok(f) => sink(time, f),
                    Err(e) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "a Hubble flow skipped");
                    }
                }
            }
            Some(proto::ResponseTypes::LostEvents(lost)) => {
                stats
                    .lost
                    .fetch_add(lost.num_events_lost, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// An error with its causes (tonic's transport errors say little at the
/// top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// RFC 3339 in UTC with nine fractional digits, always: the learner
/// compares times as text, which orders them only when every time has the
/// same shape (`…:00Z` would sort after `…:00.5Z`).
pub fn rfc3339(t: proto::Timestamp) -> Option<String> {
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let whole = k8s_openapi::jiff::Timestamp::from_second(t.seconds)
        .ok()?
        .to_string();
    Some(format!("{}.{nanos:09}Z", whole.strip_suffix('Z')?))
}

/// A gRPC flow as the flow record every source is read into; the rules are
/// those of the `hubble observe` reader (`kubefence_k8s::learn::hubble`).
pub fn to_flow(
    f: proto::Flow,
    response_time: Option<proto::Timestamp>,
) -> Result<Flow<'static>, String> {
    let (ip_source, ip_destination) = f.ip.map_or((String::new(), String::new()), |i| {
        (i.source, i.destination)
    });
    let source = endpoint(f.source, &ip_source, "IP.source", f.source_service)?;
    let destination = endpoint(
        f.destination,
        &ip_destination,
        "IP.destination",
        f.destination_service,
    )?;
    let (protocol, source_port, destination_port, tcp_flags) = match f.l4.and_then(|l| l.protocol) {
        Some(proto::Protocol::Tcp(t)) => (
            Some(Protocol::Tcp),
            t.source_port,
            t.destination_port,
            t.flags.map(|f| TcpFlags {
                syn: f.syn,
                ack: f.ack,
                fin: f.fin,
                rst: f.rst,
                psh: f.psh,
                urg: f.urg,
                ece: f.ece,
                cwr: f.cwr,
                ns: f.ns,
            }),
        ),
        Some(proto::Protocol::Udp(p)) => {
            (Some(Protocol::Udp), p.source_port, p.destination_port, None)
        }
        Some(proto::Protocol::Sctp(p)) => (
            Some(Protocol::Sctp),
            p.source_port,
            p.destination_port,
            None,
        ),
        _ => (None, 0, 0, None),
    };
    let port = l4_port;
    let dns = match f.l7.and_then(|l| l.dns) {
        None => None,
        Some(d) => Some(DnsRecord {
            ips: dns_ips(d.ips.iter().map(String::as_str))?,
            query: Cow::Owned(d.query),
        }),
    };
    // proto3 does not tell an absent enum from its zero value: zero
    // ("unknown") is read as absent, as `hubble observe -o jsonpb`, which
    // leaves zero values out, would have it.
    let named =
        |n: i32, names: &'static [&'static str]| (n != 0).then(|| enum_name(i64::from(n), names));
    Ok(Flow {
        time: f.time.or(response_time).and_then(rfc3339).map(Cow::Owned),
        source,
        destination,
        protocol,
        source_port: port(source_port, "source_port")?,
        destination_port: port(destination_port, "destination_port")?,
        tcp_flags,
        is_reply: f.is_reply,
        traffic_direction: named(f.traffic_direction, DIRECTIONS).map(|d| traffic_direction(&d)),
        verdict: named(f.verdict, VERDICTS).map(|v| verdict(&v)),
        flow_type: named(f.r#type, FLOW_TYPES).map(|t| flow_type(&t)),
        event: f
            .event_type
            .and_then(|e| u32::try_from(e.r#type).ok())
            .map(FlowEvent::from_monitor_type),
        dns,
    })
}

fn endpoint(
    e: Option<proto::Endpoint>,
    ip: &str,
    ip_field: &str,
    service: Option<proto::Service>,
) -> Result<FlowEndpoint<'static>, String> {
    let non_empty = |s: String| (!s.is_empty()).then_some(Cow::Owned(s));
    let service = service
        .and_then(|s| Some((non_empty(s.namespace)?, non_empty(s.name)?)))
        .map(|(namespace, name)| FlowService { namespace, name });
    let ip = endpoint_ip(Some(ip), ip_field)?;
    let Some(e) = e else {
        return Ok(FlowEndpoint {
            ip,
            service,
            ..FlowEndpoint::default()
        });
    };
    let (labels, reserved) = endpoint_labels(e.labels.into_iter().map(Cow::Owned));
    Ok(FlowEndpoint {
        namespace: non_empty(e.namespace),
        labels,
        reserved,
        pod_name: non_empty(e.pod_name),
        workloads: e
            .workloads
            .into_iter()
            .map(|w| FlowWorkload {
                name: Cow::Owned(w.name),
                kind: Cow::Owned(w.kind),
            })
            .collect(),
        // Identity 0 is "no identity" in Cilium, not a number to keep.
        identity: (e.identity != 0).then_some(e.identity),
        ip,
        service,
    })
}
