//! Leader election with a coordination.k8s.io Lease (kube-lease-manager):
//! a `watch::Receiver<bool>` that is `true` while this replica holds the
//! Lease. Every writer checks it; a replica that is not the leader keeps
//! its caches warm and writes nothing.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::context::{FIELD_MANAGER, OperatorConfig};
use crate::error::Result;

/// Starts the election; the Lease is released when every receiver is gone.
/// Without leader election (one replica) the flag is always `true`.
pub async fn elect(client: Client, cfg: &OperatorConfig) -> Result<watch::Receiver<bool>> {
    if !cfg.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive as long as anyone listens.
        tokio::spawn(async move { tx.closed().await });
        return Ok(rx);
    }
    let duration = cfg.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(duration)
        // Renew halfway: a slow renewal still lands before the Lease expires.
        .with_grace((duration / 2).max(1))
        // One field manager per replica: taking a free Lease is a
        // server-side apply of holderIdentity, and only distinct managers
        // make two replicas' simultaneous takes conflict (409).
        .with_field_manager(format!("{FIELD_MANAGER}-{}", cfg.identity))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake::FakeApi;

    fn config(identity: &str) -> OperatorConfig {
        OperatorConfig {
            identity: identity.into(),
            lease_duration: Duration::from_secs(4),
            ..OperatorConfig::default()
        }
    }

    async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done()
    }

    /// Two replicas: one leads, the other follows through renewals, and
    /// takes over when the leader lets go. Real time (the Lease's expiry is
    /// wall-clock time): about 4 to 7 seconds.
    #[tokio::test]
    async fn one_replica_leads_and_the_other_takes_over() {
        let fake = FakeApi::default();
        let a = elect(fake.client(), &config("replica-a")).await.unwrap();
        assert!(
            until(Duration::from_secs(5), || *a.borrow()).await,
            "a leads"
        );
        let b = elect(fake.client(), &config("replica-b")).await.unwrap();
        // Past a renewal (at 2 s): a renews, b never leads meanwhile.
        let both = until(Duration::from_millis(3000), || *a.borrow() && *b.borrow()).await;
        assert!(!both, "never two leaders");
        assert!(*a.borrow() && !*b.borrow());
        assert_eq!(
            fake.lease_holder("kubefence-system", "kubefence-operator")
                .as_deref(),
            Some("replica-a")
        );
        // a goes away (its last receiver dropped): it releases the Lease.
        drop(a);
        assert!(
            until(Duration::from_secs(10), || *b.borrow()).await,
            "b takes over"
        );
        assert_eq!(
            fake.lease_holder("kubefence-system", "kubefence-operator")
                .as_deref(),
            Some("replica-b")
        );
    }

    /// Both replicas start at once: the simultaneous takes conflict and
    /// exactly one leads, at every moment checked.
    #[tokio::test]
    async fn simultaneous_starts_elect_exactly_one() {
        let fake = FakeApi::default();
        let (ca, cb) = (config("replica-a"), config("replica-b"));
        let (a, b) = tokio::join!(elect(fake.client(), &ca), elect(fake.client(), &cb));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(until(Duration::from_secs(5), || *a.borrow() || *b.borrow()).await);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(2500) {
            assert!(!(*a.borrow() && *b.borrow()), "two leaders");
            assert!(*a.borrow() || *b.borrow(), "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let holder = fake.lease_holder("kubefence-system", "kubefence-operator");
        let leader = if *a.borrow() {
            "replica-a"
        } else {
            "replica-b"
        };
        assert_eq!(holder.as_deref(), Some(leader));
    }
}
