//! kubefence-operator: controllers that keep kubefence policies true in a
//! live cluster, and the runtime they share.
//!
//! ```text
//!            ┌────────────── run(config, shutdown) ──────────────┐
//!            │ Client · Metrics · Recorder · leader (Lease)      │
//!            │ shutdown · Readiness             = Arc<Context>   │
//!            └──────┬──────────────────┬─────────────────┬───────┘
//!    controllers::all()          admin server        leader.rs
//!      baseline (watches ─▶ index ─▶ build ─▶ diff ─▶ SSA)   /healthz /readyz /metrics
//!      quarantine (Quarantines, policies, targets ─▶ plan ─▶ SSA, finalizer, status)
//!      learned (NetworkNeighborhoods ─▶ learn::build ─▶ GNP; approved ─▶ SSA), opt-in
//! ```
//!
//! Every API call lives in this crate: writes in [`cluster`] (timeout,
//! metrics, field manager [`context::FIELD_MANAGER`]), watches in each
//! controller, the Lease in [`leader`]; [`rbac::CALLS`] lists them for the
//! RBAC test. Controllers register in [`controllers::all`]; all share one
//! [`Context`] and one [`Error`]. The CLI's online `quarantine` and
//! `release` run the Quarantine controller's own operations
//! ([`controllers::quarantine::isolate`], [`controllers::quarantine::release`])
//! over [`Context::for_command`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod cluster;
pub mod context;
pub mod controllers;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "fake")]
pub mod fixtures;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod rbac;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use context::{Context, OperatorConfig};
pub use error::{Error, Result};

/// How long running controllers get to finish after the shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the operator until `shutdown` resolves (SIGTERM) or a controller
/// fails: admin server, leader election, then every registered controller.
pub async fn run(
    config: OperatorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let config = config.normalized();
    // Fail early on a bad config, before any API call.
    controllers::baseline::state::State::new(&config.baseline)?;
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .map_err(Error::Admin)?;
    tracing::info!(addr = %config.admin_addr, "admin server listening");

    let election = leader::elect(client.clone(), &config).await?;
    let release_limit = config.api_timeout;
    let ctx = Arc::new(Context::new(
        client,
        config,
        metrics.clone(),
        election.flag(),
        stop_rx.clone(),
    ));
    let admin = tokio::spawn(admin::serve(
        listener,
        metrics,
        ctx.readiness.clone(),
        stop_rx,
    ));

    let mut tasks = JoinSet::new();
    for c in controllers::all(&ctx.config) {
        tracing::info!(controller = c.name, "starting");
        let fut = (c.start)(ctx.clone());
        tasks.spawn(async move { (c.name, fut.await) });
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let outcome = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutdown signal received");
            Ok(())
        }
        Some(done) = tasks.join_next() => match done {
            Ok((name, Ok(()))) => Err(Error::ControllerStopped(name)),
            Ok((name, Err(e))) => {
                tracing::error!(controller = name, error = %e, "controller failed");
                Err(e)
            }
            Err(_) => Err(Error::ControllerStopped("a controller task")),
        },
    };
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tasks.abort_all();
    }
    admin.abort();
    drop(ctx);
    // Only now that no controller writes: give the Lease back, so the other
    // replica takes over at once instead of after the lease duration (a
    // rollout). Awaited here, before the process exits.
    election.release(release_limit).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    use kubefence_core::baseline::{ExpressionConfig, IngressControllerConfig, SelectorConfig};

    #[tokio::test]
    async fn a_bad_config_fails_before_any_api_call() {
        let mut config = OperatorConfig::default();
        config
            .baseline
            .ingress_controllers
            .push(IngressControllerConfig {
                namespace_selector: SelectorConfig {
                    match_labels: Default::default(),
                    match_expressions: vec![ExpressionConfig {
                        key: "a".into(),
                        operator: "Near".into(),
                        values: vec![],
                    }],
                },
                pod_selector: SelectorConfig::default(),
                class_name: None,
            });
        // No kubeconfig is needed to fail: the config is checked first.
        let err = run(config, std::future::pending()).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
