//! An HTTP proxy in front of the API server that records every request of
//! one operator process and can cut it off:
//!
//! - [`Proxy::cut`]: a network partition (open connections, watches
//!   included, are closed; new ones are refused);
//! - [`Proxy::cut_leases`]: only the coordination.k8s.io requests fail
//!   (503), so Lease renewals fail while everything else passes: the
//!   leader could go on writing if nothing stopped it.
//!
//! The operator speaks plain HTTP to the proxy on loopback (its kubeconfig
//! points here, with its own ServiceAccount token, which the proxy passes
//! through untouched); the proxy speaks HTTPS to the API server, trusting
//! its serving certificate, with no credentials of its own (kube's
//! `Client::send`, made for proxies like this one).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const OPEN: u8 = 0;
const LEASES_CUT: u8 = 1;
const CUT: u8 = 2;

/// One request as the proxy saw it (when it was forwarded, or refused).
#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Whether it reached the API server.
    pub forwarded: bool,
}

impl Request {
    /// A write of a controller: anything but a read, and not the Lease.
    pub fn is_controller_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
            && !self.path.contains("/coordination.k8s.io/")
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<AtomicU8>,
    log: Arc<Mutex<Vec<Request>>>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

/// A client of the API server at `url` that trusts `ca_file` and carries
/// no credentials (the operator's token passes through).
async fn upstream_client(url: &str, ca_file: &Path) -> kube::Client {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": url, "certificate-authority": ca_file}}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "none"}}],
        "current-context": "local",
    });
    let kubeconfig: kube::config::Kubeconfig =
        serde_json::from_value(kubeconfig).unwrap_or_else(|e| super::fail(&e.to_string()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| super::fail(&format!("proxy upstream: {e}")));
    kube::Client::try_from(config).unwrap_or_else(|e| super::fail(&format!("proxy upstream: {e}")))
}

impl Proxy {
    /// Forwards every request to the API server at `url` (trusting
    /// `ca_file`) until cut.
    pub async fn start(url: &str, ca_file: &Path) -> Proxy {
        let upstream = upstream_client(url, ca_file).await;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| super::fail(&format!("proxy: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| super::fail(&format!("proxy: {e}")));
        let state = Arc::new(AtomicU8::new(OPEN));
        let log = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (state, log, connections) = (state.clone(), log.clone(), connections.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    if state.load(Ordering::SeqCst) == CUT {
                        // Partitioned: the connection is dropped at once.
                        continue;
                    }
                    let service = service_fn({
                        let (upstream, state, log) = (upstream.clone(), state.clone(), log.clone());
                        move |req| forward(upstream.clone(), state.clone(), log.clone(), req)
                    });
                    let mut set = connections.lock().unwrap_or_else(|p| p.into_inner());
                    set.spawn(async move {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Proxy {
            addr,
            state,
            log,
            connections,
            accept,
        }
    }

    /// The address for a kubeconfig.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The partition: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.state.store(CUT, Ordering::SeqCst);
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }

    /// Lease requests fail (503); the rest passes.
    pub fn cut_leases(&self) {
        self.state.store(LEASES_CUT, Ordering::SeqCst);
    }

    /// The partition heals.
    pub fn heal(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

type Answer = hyper::Response<http_body_util::Either<kube::client::Body, String>>;

async fn forward(
    upstream: kube::Client,
    state: Arc<AtomicU8>,
    log: Arc<Mutex<Vec<Request>>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Answer, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let refused = match state.load(Ordering::SeqCst) {
        OPEN => false,
        LEASES_CUT => path.contains("/coordination.k8s.io/"),
        _ => true,
    };
    log.lock().unwrap_or_else(|p| p.into_inner()).push(Request {
        at: Instant::now(),
        method: parts.method.to_string(),
        path: path.clone(),
        forwarded: !refused,
    });
    let plain = |code: u16, text: String| {
        let mut answer = hyper::Response::new(http_body_util::Either::Right(text));
        *answer.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or_default();
        answer
    };
    if refused {
        return Ok(plain(503, "partitioned by the test proxy".into()));
    }
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return Ok(plain(502, e.to_string())),
    };
    let request = hyper::Request::from_parts(parts, kube::client::Body::from(bytes));
    Ok(match upstream.send(request).await {
        Ok(answer) => answer.map(http_body_util::Either::Left),
        Err(e) => plain(502, e.to_string()),
    })
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
