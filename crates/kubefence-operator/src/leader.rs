//! Leader election with a coordination.k8s.io Lease (kube-lease-manager):
//! a `watch::Receiver<bool>` that is `true` while this replica holds the
//! Lease. Every writer checks it; a replica that is not the leader keeps
//! its caches warm and writes nothing.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::context::{FIELD_MANAGER, OperatorConfig};
use crate::error::Result;

/// Lease duration and renewal grace, in seconds.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// Starts the election; the Lease is released when every receiver is gone.
/// Without leader election (one replica) the flag is always `true`.
pub async fn elect(client: Client, cfg: &OperatorConfig) -> Result<watch::Receiver<bool>> {
    if !cfg.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive as long as anyone listens.
        tokio::spawn(async move { tx.closed().await });
        return Ok(rx);
    }
    let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await?;
    let (rx, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::error!(error = %e, "leader election stopped"),
            Err(e) => tracing::error!(error = %e, "leader election task failed"),
        }
    });
    Ok(rx)
}
