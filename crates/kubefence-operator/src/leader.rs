//! Leader election on a coordination.k8s.io Lease: a `watch::Receiver<bool>`
//! that is `true` while this replica may write. Every write of the write
//! layer ([`crate::cluster`]) checks it, and is abandoned when it turns
//! `false`; a replica that does not lead keeps its caches warm and writes
//! nothing.
//!
//! kube-lease-manager takes, renews and releases the Lease. It has two gaps
//! that this module closes:
//!
//! - **It never reports a loss it cannot see.** When renewals fail (the API
//!   server is unreachable, a renewal times out) it logs and retries, and its
//!   flag stays `true` forever, while the other replica takes the expired
//!   Lease and writes too. So the flag handed to the controllers is `true`
//!   only while a renewal by this replica, confirmed by the API server (the
//!   Lease is read every sixth of the lease, at most every 2 s, as client-go's
//!   followers do), is younger than the *renew deadline*: two
//!   thirds of the lease duration, as controller-runtime's defaults (10 s of
//!   15 s). The other replica cannot take the Lease before the full duration
//!   has passed since that renewal (it waits for the expiry, then up to a
//!   second more), so the old leader has stopped writing a third of the lease
//!   before the new one can start. Renewals run every third of the duration,
//!   so one failed renewal is retried before the deadline.
//! - **A follower sleeps until the Lease's expiry** even when the leader
//!   released it. The same reading sees the release, and the follower starts a
//!   fresh manager at once, so a rollout (SIGTERM, [`Election::release`])
//!   hands over in about a second instead of a lease duration.
//!
//! On losing the Lease the replica steps down (the flag turns `false`) and
//! stays up as a follower, rather than exiting as controller-runtime does:
//! every write goes through the write layer, which refuses and abandons
//! writes without the flag, the controllers already follow leadership both
//! ways, and a follower with warm caches takes over again faster than a
//! restarted pod. When the partition heals, kube-lease-manager reads the
//! Lease, sees the other holder and reports the loss itself.
//!
//! The wall-clock times in the Lease (`renewTime`) are this replica's own
//! (kube-lease-manager writes its clock), so the deadline is computed from
//! them once, when the renewal is seen, and then kept on the monotonic clock.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::{FIELD_MANAGER, OperatorConfig};
use crate::error::Result;

/// How long a failed start of the lease manager waits before the next try.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// A running election. Hand [`Election::flag`] to the controllers; call
/// [`Election::release`] in the shutdown path, after the writers stopped.
pub struct Election {
    flag: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Election {
    /// `true` while this replica may write.
    pub fn flag(&self) -> watch::Receiver<bool> {
        self.flag.clone()
    }

    /// Stops leading at once (the flag turns `false`) and gives the Lease
    /// back, so the other replica takes over without waiting for the
    /// expiry. Waits at most `limit` for the API server; a Lease that could
    /// not be released simply expires.
    pub async fn release(mut self, limit: Duration) {
        let Some(task) = self.task.take() else {
            return;
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::warn!(
                ?limit,
                "the Lease was not released in time; it expires by itself"
            );
        }
    }
}

/// Timing derived from the lease duration (whole seconds, at least 3).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Timing {
    /// `leaseDurationSeconds`.
    duration: u64,
    /// kube-lease-manager's grace: it renews `duration - grace` seconds
    /// after the last renewal (every third of the lease).
    grace: u64,
    /// How long a confirmed renewal lets this replica write.
    renew_deadline: Duration,
    /// How often the Lease is read (as client-go's followers do every
    /// 2 s): to confirm renewals, and to see a release.
    poll: Duration,
}

impl Timing {
    fn new(lease: Duration) -> Self {
        let duration = lease.as_secs().max(3);
        let interval = (duration / 3).max(1);
        let lease = Duration::from_secs(duration);
        Self {
            duration,
            grace: duration - interval,
            renew_deadline: lease * 2 / 3,
            poll: (lease / 6).min(Duration::from_secs(2)),
        }
    }
}

/// Starts the election. Without leader election (one replica) the flag is
/// always `true` and releasing does nothing. Dropping the [`Election`]
/// stops it and releases the Lease in the background (best effort; the
/// shutdown path awaits [`Election::release`] instead).
pub async fn elect(client: Client, cfg: &OperatorConfig) -> Result<Election> {
    if !cfg.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive as long as anyone listens.
        tokio::spawn(async move { tx.closed().await });
        return Ok(Election {
            flag: rx,
            stop: None,
            task: None,
        });
    }
    let params = Params {
        client,
        namespace: cfg.namespace.clone(),
        lease_name: cfg.lease_name.clone(),
        identity: cfg.identity.clone(),
        timing: Timing::new(cfg.lease_duration),
        api_timeout: cfg.api_timeout,
    };
    // The first start reports its error (no Lease rights, no namespace):
    // an operator that can never lead should fail visibly at startup.
    let manager = params.start_manager().await?;
    let (flag_tx, flag) = watch::channel(false);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(supervise(params, manager, flag_tx, stopped));
    Ok(Election {
        flag,
        stop: Some(stop),
        task: Some(task),
    })
}

struct Params {
    client: Client,
    namespace: String,
    lease_name: String,
    identity: String,
    timing: Timing,
    api_timeout: Duration,
}

/// A running kube-lease-manager: its "holder" flag and its task.
struct Manager {
    holds: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Params {
    async fn start_manager(&self) -> Result<Manager> {
        let build = LeaseManagerBuilder::new(self.client.clone(), &self.lease_name)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(self.timing.duration)
            .with_grace(self.timing.grace)
            // One field manager per replica: taking a free Lease is a
            // server-side apply of holderIdentity, and only distinct managers
            // make two replicas' simultaneous takes conflict (409).
            .with_field_manager(format!("{FIELD_MANAGER}-{}", self.identity))
            .build();
        let manager = match tokio::time::timeout(self.api_timeout, build).await {
            Ok(built) => built?,
            Err(_) => return Err(crate::Error::Timeout(self.api_timeout)),
        };
        let (holds, task) = manager.watch().await;
        Ok(Manager { holds, task })
    }
}

/// Reads the Lease after `delay`: what the API server has stored.
async fn read_lease(
    api: Api<Lease>,
    name: String,
    delay: Duration,
    limit: Duration,
) -> std::result::Result<Option<Lease>, String> {
    tokio::time::sleep(delay).await;
    match tokio::time::timeout(limit, api.get_opt(&name)).await {
        Ok(Ok(lease)) => Ok(lease),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// What the Lease says about this replica.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Observed {
    /// Held by this replica, renewed at `renewed`.
    Ours { renewed: SystemTime },
    /// Held by another replica (or in our name without a renewal time).
    Theirs,
    /// Nobody holds it (released, or not there).
    Free,
}

fn observe(lease: Option<&Lease>, identity: &str) -> Observed {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Observed::Free;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Observed::Free,
        Some(holder) if holder != identity => Observed::Theirs,
        Some(_) => match &spec.renew_time {
            Some(renewed) => Observed::Ours {
                renewed: renewed.0.into(),
            },
            None => Observed::Theirs,
        },
    }
}

/// Until when a renewal made at `renewed` lets this replica write, on the
/// monotonic clock (`now` is the same moment on both clocks).
fn confirmed_until(renewed: SystemTime, timing: &Timing, now: (Instant, SystemTime)) -> Instant {
    let deadline = renewed + timing.renew_deadline;
    now.0 + deadline.duration_since(now.1).unwrap_or(Duration::ZERO)
}

/// The election's state, from the manager's flag and the Lease as read.
struct State {
    /// kube-lease-manager says this replica holds the Lease.
    holds: bool,
    /// The last confirmed renewal allows writes until then.
    confirmed_until: Option<Instant>,
    /// The last reading of the Lease.
    seen: Observed,
}

impl State {
    fn leads(&self, now: Instant) -> bool {
        self.holds && self.confirmed_until.is_some_and(|t| now < t)
    }

    /// Takes in a reading of the Lease; `true` when a follower should start
    /// a fresh manager (the Lease was just released).
    fn read(&mut self, seen: Observed, timing: &Timing) -> bool {
        let released = seen == Observed::Free && self.seen != Observed::Free;
        self.confirmed_until = match seen {
            Observed::Ours { renewed } => Some(confirmed_until(
                renewed,
                timing,
                (Instant::now(), SystemTime::now()),
            )),
            Observed::Theirs | Observed::Free => None,
        };
        self.seen = seen;
        released && !self.holds
    }
}

fn publish(flag: &watch::Sender<bool>, leads: bool, why: &str) {
    flag.send_if_modified(|current| {
        if *current == leads {
            return false;
        }
        *current = leads;
        tracing::info!(is_leader = leads, reason = why, "leader election");
        true
    });
}

async fn supervise(
    params: Params,
    mut manager: Manager,
    flag: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut state = State {
        holds: false,
        confirmed_until: None,
        // A Lease free at start is the first manager's to take.
        seen: Observed::Free,
    };
    let api: Api<Lease> = Api::namespaced(params.client.clone(), &params.namespace);
    let read = |delay| {
        read_lease(
            api.clone(),
            params.lease_name.clone(),
            delay,
            params.api_timeout,
        )
    };
    // Kept across iterations: another branch firing does not restart it.
    let mut reading = Box::pin(read(Duration::ZERO));
    loop {
        let deadline = state.confirmed_until.filter(|_| state.holds);
        let mut why = "";
        let mut restart = false;
        tokio::select! {
            _ = &mut stopped => break,
            changed = manager.holds.changed() => match changed {
                Ok(()) => {
                    state.holds = *manager.holds.borrow_and_update();
                    why = if state.holds { "took the Lease" } else { "the Lease is another's" };
                    // Confirm a take at once rather than at the next reading.
                    reading.set(read(Duration::ZERO));
                }
                // The manager's task ended (it never should while we hold
                // its receiver): start another.
                Err(_) => restart = true,
            },
            lease = &mut reading => {
                reading.set(read(params.timing.poll));
                match lease {
                    Ok(lease) => {
                        restart = state.read(observe(lease.as_ref(), &params.identity), &params.timing);
                        why = match state.seen {
                            Observed::Ours { .. } => "renewal confirmed",
                            Observed::Theirs => "the Lease is another's",
                            Observed::Free => "the Lease is free",
                        };
                    }
                    Err(e) => tracing::debug!(error = %e, "could not read the Lease"),
                }
            }
            () = sleep_until(deadline) => {
                why = "no renewal confirmed within the renew deadline";
            }
        }
        publish(&flag, state.leads(Instant::now()), why);
        if restart {
            // A follower's manager sleeps until the old expiry even when the
            // Lease was released: a fresh one reads it and takes it at once.
            manager.task.abort();
            state.holds = false;
            publish(&flag, false, "restarting the lease manager");
            manager = loop {
                let next = tokio::select! {
                    _ = &mut stopped => return,
                    started = params.start_manager() => started,
                };
                match next {
                    Ok(m) => break m,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not restart the lease manager");
                        tokio::time::sleep(RESTART_BACKOFF).await;
                    }
                }
            };
        }
    }
    // Shutdown: stop writing first, then give the Lease back (dropping the
    // manager's receiver makes it release and end).
    publish(&flag, false, "shutting down");
    let Manager { holds, task } = manager;
    drop(holds);
    match task.await {
        Ok(Ok(_)) => tracing::info!("lease released"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not release the Lease; it expires by itself")
        }
        Err(e) => tracing::warn!(error = %e, "lease manager task failed"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn renewals_run_every_third_and_the_deadline_is_two_thirds() {
        let t = Timing::new(Duration::from_secs(15));
        assert_eq!((t.duration, t.grace), (15, 10));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.poll, Duration::from_secs(2));
        let t = Timing::new(Duration::from_millis(500));
        assert_eq!((t.duration, t.grace), (3, 2));
        for secs in 3..=120 {
            let t = Timing::new(Duration::from_secs(secs));
            let renew_every = Duration::from_secs(t.duration - t.grace);
            // A leader whose renewals succeed stays confirmed: at every
            // reading the last renewal is at most `renew_every` old, and
            // the next reading comes before that confirmation runs out.
            assert!(renew_every + t.poll < t.renew_deadline, "{secs} s: {t:?}");
            // And it stops writing before anyone else may take the Lease.
            assert!(t.renew_deadline < Duration::from_secs(t.duration));
        }
    }

    #[test]
    fn the_deadline_counts_from_the_renewal_not_from_when_it_was_seen() {
        let timing = Timing::new(Duration::from_secs(15));
        let now = (Instant::now(), SystemTime::now());
        // Seen 4 s after it was written: 6 s of the 10 s remain.
        let until = confirmed_until(now.1 - Duration::from_secs(4), &timing, now);
        assert_eq!(until - now.0, Duration::from_secs(6));
        // Seen after the deadline: nothing remains.
        let until = confirmed_until(now.1 - Duration::from_secs(11), &timing, now);
        assert_eq!(until, now.0);
    }

    #[test]
    fn only_our_renewals_confirm() {
        let lease = |holder: Option<&str>| Lease {
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: holder.map(String::from),
                renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    k8s_openapi::jiff::Timestamp::now(),
                )),
                lease_duration_seconds: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            observe(Some(&lease(Some("a"))), "a"),
            Observed::Ours { .. }
        ));
        assert_eq!(observe(Some(&lease(Some("b"))), "a"), Observed::Theirs);
        assert_eq!(observe(Some(&lease(None)), "a"), Observed::Free);
        assert_eq!(observe(Some(&lease(Some(""))), "a"), Observed::Free);
        assert_eq!(observe(None, "a"), Observed::Free);
    }

    /// Two replicas: one leads, the other follows through renewals, and
    /// takes over at once when the leader releases the Lease (well before
    /// the lease duration). Real time (the Lease's expiry is wall-clock
    /// time): about 4 seconds.
    #[tokio::test]
    async fn one_replica_leads_and_the_other_takes_over_on_release() {
        let fake = FakeApi::default();
        let a = elect(fake.client(), &config("replica-a")).await.unwrap();
        let fa = a.flag();
        assert!(
            until(Duration::from_secs(5), || *fa.borrow()).await,
            "a leads"
        );
        let b = elect(fake.client(), &config("replica-b")).await.unwrap();
        let fb = b.flag();
        // Past a few renewals (every second): a renews, b never leads meanwhile.
        let both = until(Duration::from_millis(2500), || *fa.borrow() && *fb.borrow()).await;
        assert!(!both, "never two leaders");
        assert!(*fa.borrow() && !*fb.borrow());
        assert_eq!(
            fake.lease_holder("kubefence-system", "kubefence-operator")
                .as_deref(),
            Some("replica-a")
        );
        let released = std::time::Instant::now();
        a.release(Duration::from_secs(5)).await;
        assert!(!*fa.borrow(), "a stopped leading before it released");
        assert!(
            until(Duration::from_secs(10), || *fb.borrow()).await,
            "b takes over"
        );
        let takeover = released.elapsed();
        assert!(
            takeover < Duration::from_secs(2),
            "b took over {takeover:?} after the release (lease 4 s)"
        );
        assert_eq!(
            fake.lease_holder("kubefence-system", "kubefence-operator")
                .as_deref(),
            Some("replica-b")
        );
        b.release(Duration::from_secs(5)).await;
    }

    /// Both replicas start at once: the simultaneous takes conflict and
    /// exactly one leads, at every moment checked.
    #[tokio::test]
    async fn simultaneous_starts_elect_exactly_one() {
        let fake = FakeApi::default();
        let (ca, cb) = (config("replica-a"), config("replica-b"));
        let (a, b) = tokio::join!(elect(fake.client(), &ca), elect(fake.client(), &cb));
        let (ea, eb) = (a.unwrap(), b.unwrap());
        let (a, b) = (ea.flag(), eb.flag());
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
