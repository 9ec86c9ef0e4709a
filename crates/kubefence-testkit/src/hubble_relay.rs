//! An in-process Hubble Relay for tests: serves `observer.Observer/GetFlows`
//! on a loopback port, replaying flows (read from a `hubble observe` file by
//! the tests) as the gRPC messages a Relay sends. The service is written as
//! tonic's generated server code would be: the agent's message types are
//! written with prost's derive, without a `.proto` compiler.
//!
//! A script can break the first stream after some flows (as a restarting
//! Relay does); a later stream honours the request's `since`, as Relay
//! does, so a client that resumes from its last flow loses nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use kubefence_agent::capture::hubble::proto;
use kubefence_core::Protocol;
use kubefence_core::learn::{Flow, FlowEndpoint, TrafficDirection, Verdict};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// What the Relay does with each stream.
#[derive(Clone, Default)]
pub struct Script {
    /// Break the first stream with `UNAVAILABLE` after this many flows.
    pub break_first_after: Option<usize>,
    /// After the flows given, keep sending generated ones, for ever.
    pub generated: Option<Generated>,
}

/// Flows made on the fly: the `i`-th is `flow(i)`, `per_second` of them a
/// second.
#[derive(Clone)]
pub struct Generated {
    pub per_second: u64,
    pub flow: Arc<dyn Fn(u64) -> proto::GetFlowsResponse + Send + Sync>,
}

/// The generated flows, paced.
fn generated(g: Generated) -> FlowStream {
    let started = tokio::time::Instant::now();
    stream::unfold(0u64, move |i| {
        let g = g.clone();
        async move {
            let due = started + std::time::Duration::from_secs_f64(i as f64 / g.per_second as f64);
            tokio::time::sleep_until(due).await;
            Some((Ok((g.flow)(i)), i + 1))
        }
    })
    .boxed()
}

/// A running Relay; stops when dropped.
pub struct Relay {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<proto::GetFlowsRequest>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Relay {
    /// `http://127.0.0.1:port`, as `--hubble-relay` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every GetFlows request received, in order.
    pub fn requests(&self) -> Vec<proto::GetFlowsRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Observer {
    responses: Arc<Vec<proto::GetFlowsResponse>>,
    script: Script,
    requests: Arc<Mutex<Vec<proto::GetFlowsRequest>>>,
}

impl NamedService for Observer {
    const NAME: &'static str = "observer.Observer";
}

/// Starts a Relay on a free loopback port.
pub async fn start(
    responses: Vec<proto::GetFlowsResponse>,
    script: Script,
) -> std::io::Result<Relay> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let observer = Observer {
        responses: Arc::new(responses),
        script,
        requests: Arc::clone(&requests),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(observer)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    Ok(Relay {
        address,
        requests,
        stop: Some(stop),
    })
}

type FlowStream = BoxStream<'static, Result<proto::GetFlowsResponse, Status>>;

struct GetFlows(Observer);

impl tonic::server::ServerStreamingService<proto::GetFlowsRequest> for GetFlows {
    type Response = proto::GetFlowsResponse;
    type ResponseStream = FlowStream;
    type Future = BoxFuture<'static, Result<Response<FlowStream>, Status>>;

    fn call(&mut self, request: Request<proto::GetFlowsRequest>) -> Self::Future {
        let observer = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            let first = {
                let mut requests = observer
                    .requests
                    .lock()
                    .map_err(|_| Status::internal("lock"))?;
                requests.push(request.clone());
                requests.len() == 1
            };
            let since = request.since.map(|t| (t.seconds, t.nanos));
            let selected: Vec<proto::GetFlowsResponse> = observer
                .responses
                .iter()
                .filter(|r| {
                    let time = r.time.map(|t| (t.seconds, t.nanos));
                    since.is_none_or(|s| time.is_some_and(|t| t >= s))
                })
                .filter(|r| node_matches(r, &request.whitelist))
                .cloned()
                .collect();
            let served: FlowStream = match observer.script.break_first_after {
                Some(n) if first => stream::iter(selected.into_iter().take(n).map(Ok))
                    .chain(stream::once(async {
                        Err(Status::unavailable("relay restarting"))
                    }))
                    .boxed(),
                // `follow`: after the flows it holds, the stream stays open.
                _ => match observer.script.generated.clone() {
                    Some(g) => stream::iter(selected.into_iter().map(Ok))
                        .chain(generated(g))
                        .boxed(),
                    None => stream::iter(selected.into_iter().map(Ok))
                        .chain(stream::pending())
                        .boxed(),
                },
            };
            Ok(Response::new(served))
        })
    }
}

fn node_matches(response: &proto::GetFlowsResponse, whitelist: &[proto::FlowFilter]) -> bool {
    whitelist.is_empty()
        || whitelist
            .iter()
            .any(|f| f.node_name.is_empty() || f.node_name.contains(&response.node_name))
}

impl<B> tower_service::Service<http::Request<B>> for Observer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let observer = self.clone();
        Box::pin(async move {
            if request.uri().path() != proto::GET_FLOWS {
                return Ok(Status::unimplemented(request.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.server_streaming(GetFlows(observer), request).await)
        })
    }
}

/// The gRPC message a Relay would send for `flow`, observed on `node`.
pub fn to_response(flow: &Flow<'_>, node: &str) -> proto::GetFlowsResponse {
    let time = flow.time.as_deref().and_then(timestamp);
    proto::GetFlowsResponse {
        response_types: Some(proto::ResponseTypes::Flow(to_proto(flow, node))),
        node_name: node.to_string(),
        time,
    }
}

/// A `lost_events` message.
pub fn lost(count: u64) -> proto::GetFlowsResponse {
    proto::GetFlowsResponse {
        response_types: Some(proto::ResponseTypes::LostEvents(proto::LostEvent {
            source: 3,
            num_events_lost: count,
        })),
        node_name: String::new(),
        time: None,
    }
}

fn timestamp(text: &str) -> Option<proto::Timestamp> {
    let t: jiff::Timestamp = text.parse().ok()?;
    Some(proto::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    })
}

/// The inverse of the agent's reading, written from flow.proto's numbers.
fn to_proto(flow: &Flow<'_>, node: &str) -> proto::Flow {
    let ports = |f: &Flow<'_>| proto::Ports {
        source_port: f.source_port.map_or(0, u32::from),
        destination_port: f.destination_port.map_or(0, u32::from),
    };
    let l4 = flow.protocol.map(|p| proto::Layer4 {
        protocol: Some(match p {
            Protocol::Tcp => proto::Protocol::Tcp(proto::Tcp {
                source_port: flow.source_port.map_or(0, u32::from),
                destination_port: flow.destination_port.map_or(0, u32::from),
                flags: flow.tcp_flags.map(|f| proto::TcpFlags {
                    fin: f.fin,
                    syn: f.syn,
                    rst: f.rst,
                    psh: f.psh,
                    ack: f.ack,
                    urg: f.urg,
                    ece: f.ece,
                    cwr: f.cwr,
                    ns: f.ns,
                }),
            }),
            Protocol::Udp => proto::Protocol::Udp(ports(flow)),
            Protocol::Sctp => proto::Protocol::Sctp(ports(flow)),
        }),
    });
    let service = |e: &FlowEndpoint<'_>| {
        e.service.as_ref().map(|s| proto::Service {
            name: s.name.to_string(),
            namespace: s.namespace.to_string(),
        })
    };
    proto::Flow {
        time: flow.time.as_deref().and_then(timestamp),
        verdict: match &flow.verdict {
            None | Some(Verdict::Other(_)) => 0,
            Some(Verdict::Forwarded) => 1,
            Some(Verdict::Dropped) => 2,
            Some(Verdict::Error) => 3,
            Some(Verdict::Audit) => 4,
            Some(Verdict::Redirected) => 5,
            Some(Verdict::Traced) => 6,
            Some(Verdict::Translated) => 7,
        },
        ip: Some(proto::Ip {
            source: flow.source.ip.map(|i| i.to_string()).unwrap_or_default(),
            destination: flow
                .destination
                .ip
                .map(|i| i.to_string())
                .unwrap_or_default(),
        }),
        l4,
        source: Some(endpoint(&flow.source)),
        destination: Some(endpoint(&flow.destination)),
        r#type: match &flow.flow_type {
            None | Some(kubefence_core::learn::FlowType::Other(_)) => 0,
            Some(kubefence_core::learn::FlowType::L3L4) => 1,
            Some(kubefence_core::learn::FlowType::L7) => 2,
            Some(kubefence_core::learn::FlowType::Sock) => 3,
        },
        node_name: node.to_string(),
        l7: flow.dns.as_ref().map(|d| proto::Layer7 {
            r#type: 2,
            dns: Some(proto::Dns {
                query: d.query.to_string(),
                ips: d.ips.iter().map(ToString::to_string).collect(),
            }),
        }),
        event_type: flow.event.as_ref().map(|e| proto::CiliumEventType {
            r#type: match e {
                kubefence_core::learn::FlowEvent::Drop => 1,
                kubefence_core::learn::FlowEvent::Trace => 4,
                kubefence_core::learn::FlowEvent::PolicyVerdict => 5,
                kubefence_core::learn::FlowEvent::TraceSock => 7,
                kubefence_core::learn::FlowEvent::AccessLog => 129,
                kubefence_core::learn::FlowEvent::Other(n) => i32::try_from(*n).unwrap_or(0),
            },
            sub_type: 0,
        }),
        source_service: service(&flow.source),
        destination_service: service(&flow.destination),
        traffic_direction: match &flow.traffic_direction {
            None | Some(TrafficDirection::Unknown(_)) => 0,
            Some(TrafficDirection::Ingress) => 1,
            Some(TrafficDirection::Egress) => 2,
        },
        is_reply: flow.is_reply,
    }
}

fn endpoint(e: &FlowEndpoint<'_>) -> proto::Endpoint {
    let mut labels: Vec<String> = e
        .labels
        .iter()
        .map(|(k, v)| format!("k8s:{k}={v}"))
        .collect();
    for r in &e.reserved {
        use kubefence_core::learn::ReservedIdentity as R;
        labels.push(format!(
            "reserved:{}",
            match r {
                R::World => "world",
                R::Host => "host",
                R::RemoteNode => "remote-node",
                R::KubeApiserver => "kube-apiserver",
                R::Health => "health",
                R::Init => "init",
                R::Ingress => "ingress",
                R::Unmanaged => "unmanaged",
                R::Unknown(name) => name,
            }
        ));
    }
    proto::Endpoint {
        id: 0,
        identity: e.identity.unwrap_or(0),
        namespace: e.namespace.as_deref().unwrap_or_default().to_string(),
        labels,
        pod_name: e.pod_name.as_deref().unwrap_or_default().to_string(),
        workloads: e
            .workloads
            .iter()
            .map(|w| proto::Workload {
                name: w.name.to_string(),
                kind: w.kind.to_string(),
            })
            .collect(),
    }
}
