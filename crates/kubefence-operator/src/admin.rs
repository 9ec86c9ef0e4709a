//! The admin server: `/healthz` (the process serves), `/readyz` (every
//! controller has listed its watches and reconciled once) and `/metrics`
//! (Prometheus text format). Small and separate from the reconcile tasks.
//! The node agent serves its own figures with the same server
//! ([`serve_endpoints`]).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::context::Readiness;
use crate::metrics::Metrics;

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// What `/readyz` and `/metrics` answer.
pub trait Endpoints: Send + Sync + 'static {
    /// The OpenMetrics text of a scrape.
    fn metrics(&self) -> String;
    fn ready(&self) -> bool;
}

struct OperatorEndpoints {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl Endpoints for OperatorEndpoints {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }
    fn ready(&self) -> bool {
        self.readiness.is_ready()
    }
}

fn route(req: &Request<Incoming>, endpoints: &dyn Endpoints) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" | "/livez" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if endpoints.ready() => respond(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            endpoints.metrics(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the operator's figures until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) {
    serve_endpoints(
        listener,
        Arc::new(OperatorEndpoints { metrics, readiness }),
        shutdown,
    )
    .await;
}

/// Serves `endpoints` until `shutdown` turns true.
pub async fn serve_endpoints(
    listener: TcpListener,
    endpoints: Arc<dyn Endpoints>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let endpoints = Arc::clone(&endpoints);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let response = route(&req, endpoints.as_ref());
                        async move { Ok::<_, Infallible>(response) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %e, "admin connection");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.write("apply", "networkpolicies");
        let readiness = Arc::new(Readiness::default());
        readiness.register("baseline");
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, metrics, readiness.clone(), rx));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set("baseline", true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("kubefence_api_writes_total"), "{m}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        tx.send(true).unwrap();
        server.await.unwrap();
    }
}
