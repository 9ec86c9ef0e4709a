//! The Quarantine controller in the shared runtime.
//!
//! kube-runtime's `Controller` writes as soon as it runs, so this entry runs
//! it only while this replica leads: it waits for the lease, runs the
//! controller until the lease is lost or shutdown is asked, and waits again.
//! Reading Quarantines and writing their status is in the base ClusterRole;
//! reading targets and creating or deleting quarantine policies is the
//! opt-in `deploy/components/quarantine`, so a default install answers a
//! Quarantine with a Failed status saying Forbidden, and mutates nothing.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{QuarantineConfig, Quarantines, run_until};
use crate::context::Context;
use crate::error::Result;

pub const NAME: &str = "quarantine";

/// How long reconciles in flight get to finish when the lease is lost.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub fn start(ctx: Arc<Context>) -> BoxFuture<'static, Result<()>> {
    Box::pin(run(ctx))
}

/// The quarantine config the operator's own config implies: the protected
/// namespaces of `--config` (the operator's namespace included), and the
/// operator as requester.
pub fn config(ctx: &Context) -> QuarantineConfig {
    let mut cfg = QuarantineConfig::for_operator(&ctx.config.namespace);
    cfg.protected_namespaces
        .extend(ctx.config.baseline.protected_namespaces.iter().cloned());
    cfg
}

async fn run(ctx: Arc<Context>) -> Result<()> {
    // Nothing to sync before serving: a follower is ready without watching.
    ctx.readiness.register(NAME);
    ctx.readiness.set(NAME, true);
    let quarantines = Arc::new(Quarantines::new(ctx.clone(), config(&ctx)));
    let mut leader = ctx.leader.clone();
    let shutdown = ctx.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if !*leader.borrow_and_update() {
            let mut shutdown = shutdown.clone();
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        tracing::info!(controller = NAME, "leading: reconciling Quarantines");
        // One watcher of the lease and the shutdown signal tells both the
        // controller (a graceful stop) and the grace timer below.
        let (stop_tx, stop_rx) = watch::channel(false);
        let watching = tokio::spawn({
            let (leader, shutdown) = (leader.clone(), shutdown.clone());
            async move {
                lost_or_stopped(leader, shutdown).await;
                let _ = stop_tx.send(true);
            }
        });
        // Reconciles in flight get a grace period to finish. A controller
        // whose first list never succeeded (no CRD, no RBAC) still waits for
        // its cache and does not end by itself: it is dropped after it.
        tokio::select! {
            () = run_until(quarantines.clone(), stopped(stop_rx.clone())) => {}
            () = async { stopped(stop_rx).await; tokio::time::sleep(GRACE).await } => {
                tracing::warn!(controller = NAME, "did not stop within the grace period; dropped");
            }
        }
        watching.abort();
        tracing::info!(controller = NAME, "stopped reconciling Quarantines");
    }
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves when the lease is lost or shutdown is asked.
async fn lost_or_stopped(mut leader: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if !*leader.borrow_and_update() || *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { return },
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::context::OperatorConfig;
    use crate::fake::FakeApi;
    use crate::metrics::Metrics;

    fn quarantine_requests(fake: &FakeApi) -> usize {
        fake.requests()
            .iter()
            .filter(|r| r.uri.contains("/apis/kubefence.dev/"))
            .count()
    }

    #[tokio::test]
    async fn only_the_leader_reconciles_quarantines() {
        let (client, fake) = FakeApi::start();
        let (leader, leader_rx) = watch::channel(false);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Context::new(
            client,
            OperatorConfig::default().normalized(),
            Arc::new(Metrics::default()),
            leader_rx,
            shutdown_rx,
        ));
        let task = tokio::spawn(start(ctx.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(fake.requests().is_empty(), "a follower sends nothing");
        assert!(ctx.readiness.is_ready(), "a follower is ready");

        leader.send(true).unwrap();
        let mut waited = 0;
        while quarantine_requests(&fake) == 0 && waited < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert!(
            quarantine_requests(&fake) > 0,
            "the leader watches Quarantines"
        );

        // Within the grace period it stops, or is dropped.
        leader.send(false).unwrap();
        tokio::time::sleep(GRACE + Duration::from_millis(500)).await;
        fake.clear_requests();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(quarantine_requests(&fake), 0, "a lost lease stops it");

        shutdown.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("stops on shutdown");
        assert!(matches!(done, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn it_stops_when_the_lease_is_lost_or_on_shutdown() {
        let (leader_tx, leader_rx) = watch::channel(true);
        let (stop_tx, stop_rx) = watch::channel(false);
        let waiting = tokio::spawn(lost_or_stopped(leader_rx.clone(), stop_rx.clone()));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "leading and running: keeps going");
        leader_tx.send(false).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("stops when the lease is lost")
            .unwrap();

        leader_tx.send(true).unwrap();
        let waiting = tokio::spawn(lost_or_stopped(leader_rx, stop_rx));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        stop_tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }
}
