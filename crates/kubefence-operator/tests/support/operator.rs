//! The operator under test, as a process of its own: this test binary run
//! again with only its `operator_process` entry, which calls
//! `kubefence_operator::run` (what `kubefence operator` calls) with the
//! config of [`Spec`] and `KUBECONFIG` set to the operator's ServiceAccount
//! kubeconfig. A process can be killed (leader election) and its Lease
//! outlives it, as in a cluster.
//!
//! It stops gracefully when its stdin closes (as on SIGTERM), so it also
//! goes away when the test process dies; [`Operator`]'s `Drop` kills it.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;

/// The environment variable that carries the [`Spec`] to the child.
pub const SPEC_ENV: &str = "KUBEFENCE_E2E_OPERATOR";
/// The test entry that runs the operator (see `operator_process` in e2e.rs).
pub const ENTRY: &str = "operator_process";

/// What one operator process runs with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// Where its ServiceAccount and RBAC are installed (also its Lease).
    pub install_ns: String,
    pub identity: String,
    pub lease_name: String,
    pub lease_seconds: u64,
    pub resync_seconds: u64,
    pub admin_addr: SocketAddr,
    /// The API server address to use instead of the kubeconfig's (a
    /// [`super::proxy::Proxy`] in front of it).
    #[serde(default)]
    pub server: Option<String>,
    /// Runs the learned controller too.
    #[serde(default)]
    pub learned: bool,
}

impl Spec {
    /// The full install, one replica under its own Lease name.
    pub fn new(identity: &str) -> Self {
        Self {
            install_ns: super::cluster::FULL_INSTALL.into(),
            identity: identity.into(),
            lease_name: format!("kubefence-e2e-{identity}"),
            lease_seconds: 15,
            resync_seconds: 300,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            server: None,
            learned: false,
        }
    }

    pub fn config(&self) -> kubefence_operator::OperatorConfig {
        kubefence_operator::OperatorConfig {
            namespace: self.install_ns.clone(),
            identity: self.identity.clone(),
            admin_addr: self.admin_addr,
            leader_election: true,
            lease_name: self.lease_name.clone(),
            lease_duration: Duration::from_secs(self.lease_seconds),
            resync: Duration::from_secs(self.resync_seconds),
            learned: self.learned,
            ..kubefence_operator::OperatorConfig::default()
        }
    }
}

pub struct Operator {
    pub spec: Spec,
    child: Child,
    stdin: Option<ChildStdin>,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the process (it has not necessarily listed anything yet:
    /// see [`Operator::ready`]).
    pub fn start(cluster: &Cluster, mut spec: Spec) -> Operator {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| fail(&format!("free port: {e}")));
        spec.admin_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = cluster.work.join(format!("operator-{}.log", spec.identity));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| fail(&e.to_string()));
        let err = out.try_clone().unwrap_or_else(|e| fail(&e.to_string()));
        let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
        let kubeconfig = match &spec.server {
            None => cluster.operator_kubeconfig(&spec.install_ns).to_path_buf(),
            Some(server) => {
                let path = cluster
                    .work
                    .join(format!("operator-{}.kubeconfig", spec.identity));
                redirect_kubeconfig(cluster.operator_kubeconfig(&spec.install_ns), server, &path);
                path
            }
        };
        let mut child = Command::new(exe)
            .args([ENTRY, "--exact", "--ignored", "--nocapture"])
            .env("KUBECONFIG", &kubeconfig)
            .env(
                SPEC_ENV,
                serde_json::to_string(&spec).unwrap_or_else(|e| fail(&e.to_string())),
            )
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start the operator: {e}")));
        let stdin = child.stdin.take();
        Operator {
            spec,
            child,
            stdin,
            log,
        }
    }

    /// Waits until `/readyz` answers 200 (every controller synced).
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                fail(&format!("operator exited ({status}):\n{}", self.log_text()));
            }
            if Instant::now() > deadline {
                fail(&format!("operator not ready in 30 s:\n{}", self.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One plain HTTP GET on the admin port: (status, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.spec.admin_addr)
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// The sum of every sample of `metric` (all label sets) on `/metrics`.
    pub async fn metric(&self, metric: &str) -> f64 {
        let Some((200, body)) = self.get("/metrics").await else {
            return f64::NAN;
        };
        body.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Graceful stop (stdin closed: the operator's shutdown path), waiting
    /// for the process to end (async: a proxy in this runtime may carry its
    /// last requests).
    pub async fn stop(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fail(&format!(
            "operator did not stop in 20 s:\n{}",
            self.log_text()
        ));
    }

    /// SIGTERM (what the kubelet sends on a rollout), then waits for the
    /// process to end. Returns its log. Async: a proxy in this runtime may
    /// carry the operator's last requests (the Lease's release).
    pub async fn terminate(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            fail(&format!("kill -TERM failed: {status:?}"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.log_text();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fail(&format!(
            "operator did not stop in 20 s after SIGTERM:\n{}",
            self.log_text()
        ));
    }

    /// SIGKILL: no shutdown path runs, the Lease is not released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id (for its CPU time and memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A copy of the kubeconfig at `from` (JSON, as the harness writes them)
/// whose clusters point at `server`.
fn redirect_kubeconfig(from: &std::path::Path, server: &str, to: &std::path::Path) {
    let text = std::fs::read_to_string(from).unwrap_or_else(|e| fail(&e.to_string()));
    let mut kc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(&e.to_string()));
    for c in kc["clusters"].as_array_mut().into_iter().flatten() {
        c["cluster"]["server"] = serde_json::Value::String(server.to_string());
    }
    std::fs::write(to, kc.to_string()).unwrap_or_else(|e| fail(&e.to_string()));
}

#[allow(clippy::panic)]
fn fail(message: &str) -> ! {
    panic!("{message}")
}

/// The body of the `operator_process` entry: runs the operator of the
/// [`Spec`] in `KUBEFENCE_E2E_OPERATOR` until stdin closes or SIGTERM.
pub async fn run_child(spec: &str) {
    let spec: Spec = serde_json::from_str(spec).unwrap_or_else(|e| fail(&e.to_string()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Plain text: tests read the log (`is_leader=false`).
        .with_ansi(false)
        .try_init();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let shutdown = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .unwrap_or_else(|e| fail(&e.to_string()));
        tokio::select! {
            _ = rx => tracing::info!("stdin closed: stopping"),
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
    };
    if let Err(e) = kubefence_operator::run(spec.config(), shutdown).await {
        fail(&format!("operator failed: {e}"));
    }
}
