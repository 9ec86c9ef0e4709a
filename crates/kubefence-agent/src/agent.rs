//! The agent's loop: watches, capture, aggregation and writes, joined.
//!
//! Phases: load and attach the capture (a host that cannot capture is an
//! error that says why, before any API call); start the Pod and Service
//! watches and wait (bounded) for the first list of this node's pods, while
//! events wait in the ring buffer, so the first connections are
//! attributed; then, until shutdown, fold
//! every connection in and, once a second, write the workloads that are
//! due ([`crate::writer`]). On shutdown the workloads still dirty are
//! written once more.
//!
//! With the Hubble input there is no capture to load and no watch: flows
//! are read into the core learner, which is drained into the aggregator
//! once a second, before the writes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use k8s_openapi::jiff::Timestamp;
use kubefence_core::IpNet;
use kubefence_core::learn::{Learner, WorkloadRef};
use tokio::sync::watch;

use crate::aggregate::{Aggregator, Outcome};
use crate::capture::Mode;
use crate::capture::conntrack::{ConntrackCapture, connections_of};
use crate::capture::ebpf::EbpfCapture;
use crate::capture::hubble::{self, HubbleError, HubbleOptions};
use crate::index::PodIndex;
use crate::object::{STATUS_LEARNING, WriteContext, status_at};
use crate::telemetry::Telemetry;
use crate::writer::{WriteSchedule, write};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name (the pods watched are `spec.nodeName=<node>`).
    pub node: String,
    /// The cluster's pod and Service networks: an address inside them that
    /// no index entry names is an unknown peer, never an external one.
    pub cluster_cidrs: Vec<IpNet>,
    /// How long a deleted pod's addresses still name it.
    pub pod_grace: Duration,
    /// Entries (workload, direction, peer, protocol, port) held at most.
    pub max_entries: usize,
    /// At most one write per workload per this interval.
    pub write_interval: Duration,
    /// How long a neighborhood stays `learning` after its first write.
    pub learning_period: Duration,
    /// How long to wait for the first list of this node's pods.
    pub sync_timeout: Duration,
    /// How long the last writes may take once told to stop.
    pub shutdown_timeout: Duration,
}

/// Where connections come from.
#[derive(Debug)]
pub enum Source {
    /// The eBPF capture, started ([`EbpfCapture::start`]: started first, so
    /// a host that cannot capture is told before any API call).
    Ebpf(Box<EbpfCapture>),
    /// Conntrack's new-connection events (subscribed already).
    Conntrack(ConntrackCapture),
    /// Hubble Relay's flow stream.
    Hubble(HubbleOptions),
}

impl Source {
    pub fn mode(&self) -> Mode {
        match self {
            Self::Ebpf(_) => Mode::Ebpf,
            Self::Conntrack(_) => Mode::Conntrack,
            Self::Hubble(_) => Mode::Hubble,
        }
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the eBPF capture cannot start: {0}")]
    Capture(#[from] crate::capture::ebpf::EbpfError),
    #[error("the Hubble input cannot start: {0}")]
    Hubble(#[from] HubbleError),
    #[error("reading the ring buffer failed: {0}")]
    Read(std::io::Error),
    #[error("the agent's state lock was poisoned by a panic")]
    Poisoned,
}

/// The state the capture and the writer share.
struct Shared {
    index: Arc<Mutex<PodIndex>>,
    aggregator: Mutex<Aggregator>,
    /// The Hubble input's flows since the last drain.
    learner: Mutex<Learner>,
    telemetry: Arc<Telemetry>,
}

/// Neighborhood writes in flight at once.
const WRITE_CONCURRENCY: usize = 8;

/// Runs the agent until `shutdown` turns true. An eBPF capture is started
/// already; its events wait in the ring buffer until the pods of this node
/// are listed.
pub async fn run(
    client: kube::Client,
    source: Source,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
) -> Result<(), AgentError> {
    let mode = source.mode();
    telemetry.set_mode(mode);
    let shared = Arc::new(Shared {
        index: Arc::new(Mutex::new(PodIndex::new(
            config.pod_grace,
            config.cluster_cidrs.clone(),
        ))),
        aggregator: Mutex::new(Aggregator::new(config.max_entries)),
        learner: Mutex::new(Learner::new()),
        telemetry: Arc::clone(&telemetry),
    });
    let (reader, watches) = match source {
        Source::Ebpf(mut capture) => {
            // DNS answers (with --dns) name the external addresses.
            {
                let index = Arc::clone(&shared.index);
                let telemetry = Arc::clone(&telemetry);
                capture.on_dns(move |payload| match crate::dns::parse(payload) {
                    Ok(Some(answer)) => {
                        telemetry.dns_answers.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut index) = index.lock() {
                            index.learn_names(&answer.names, &answer.addresses, Instant::now());
                        }
                    }
                    Ok(None) => {}
                    Err(_) => {
                        telemetry.dns_unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let watches = start_watches(&client, &config, &shared).await;
            tracing::info!(%mode, node = %config.node, "capturing every new TCP and UDP connection of this node");
            telemetry.ready.store(true, Ordering::Relaxed);
            let stats = Arc::clone(&telemetry.capture);
            let reader = {
                let shared = Arc::clone(&shared);
                let stats = Arc::clone(&stats);
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    capture
                        .run(stats, stop, move |connection| {
                            let now = Instant::now();
                            let time = Timestamp::now().to_string();
                            let outcome = match (shared.index.lock(), shared.aggregator.lock()) {
                                (Ok(index), Ok(mut aggregator)) => {
                                    aggregator.record(&connection, &index, now, &time)
                                }
                                _ => return,
                            };
                            shared.telemetry.count(outcome, 1);
                        })
                        .await
                        .map_err(AgentError::Read)
                })
            };
            (reader, watches)
        }
        Source::Conntrack(capture) => {
            let watches = start_watches(&client, &config, &shared).await;
            tracing::info!(%mode, node = %config.node, "reading conntrack's new connections of this network namespace");
            telemetry.ready.store(true, Ordering::Relaxed);
            let stats = Arc::clone(&telemetry.capture);
            let reader = {
                let shared = Arc::clone(&shared);
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    capture
                        .run(stats, stop, move |opening| {
                            let now = Instant::now();
                            let time = Timestamp::now().to_string();
                            let (Ok(index), Ok(mut aggregator)) =
                                (shared.index.lock(), shared.aggregator.lock())
                            else {
                                return;
                            };
                            let connections = connections_of(&opening, &index, now);
                            if connections.is_empty() {
                                shared.telemetry.count(Outcome::LocalNotAPod, 1);
                            }
                            for connection in connections {
                                let outcome = aggregator.record(&connection, &index, now, &time);
                                shared.telemetry.count(outcome, 1);
                            }
                        })
                        .await
                        .map_err(AgentError::Read)
                })
            };
            (reader, watches)
        }
        Source::Hubble(options) => {
            hubble::check_address(&options.address)?;
            tracing::info!(%mode, relay = %options.address, nodes = ?options.nodes, "learning from Hubble Relay's flows");
            telemetry.ready.store(true, Ordering::Relaxed);
            let stats = Arc::clone(&telemetry.hubble);
            let reader = {
                let shared = Arc::clone(&shared);
                let stats = Arc::clone(&stats);
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    hubble::run(options, stats, stop, move |flow| {
                        if let Ok(mut learner) = shared.learner.lock() {
                            learner.observe(&flow);
                        }
                    })
                    .await
                    .map_err(AgentError::Hubble)
                })
            };
            (reader, Vec::new())
        }
    };

    let mut schedule = WriteSchedule::new(config.write_interval);
    let mut learning: HashMap<WorkloadRef, Timestamp> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
        flush(
            &client,
            &shared,
            &config,
            mode,
            &mut schedule,
            &mut learning,
            false,
        )
        .await?;
        if last_report.elapsed() >= Duration::from_secs(60) {
            report(&shared, mode);
            last_report = Instant::now();
        }
    }
    // Whatever is still unwritten is written once, whatever the schedule,
    // within the time the pod has left (past it the kubelet kills us
    // anyway; saying what was not written is better).
    let final_flush = flush(
        &client,
        &shared,
        &config,
        mode,
        &mut schedule,
        &mut learning,
        true,
    );
    match tokio::time::timeout(config.shutdown_timeout, final_flush).await {
        Ok(result) => result?,
        Err(_) => {
            let unwritten = shared
                .aggregator
                .lock()
                .map(|a| a.dirty().len())
                .unwrap_or_default();
            tracing::warn!(
                unwritten,
                "stopping before every changed neighborhood was written (--shutdown-timeout-seconds)"
            );
        }
    }
    report(&shared, mode);
    for watch in watches {
        watch.abort();
    }
    match reader.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Starts the Pod and Service watches and waits (bounded) for the first
/// list of this node's pods.
async fn start_watches(
    client: &kube::Client,
    config: &AgentConfig,
    shared: &Arc<Shared>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (synced_tx, mut synced) = watch::channel(false);
    let pods = tokio::spawn(crate::watch::watch_pods(
        client.clone(),
        config.node.clone(),
        Arc::clone(&shared.index),
        synced_tx,
    ));
    let services = tokio::spawn(crate::watch::watch_services(
        client.clone(),
        Arc::clone(&shared.index),
    ));
    if tokio::time::timeout(config.sync_timeout, synced.wait_for(|s| *s))
        .await
        .is_err()
    {
        tracing::warn!(
            node = %config.node,
            "the pods of this node were not listed within {:?}; capturing anyway (connections of \
             pods not yet listed are counted as not attributed)",
            config.sync_timeout
        );
    }
    vec![pods, services]
}

/// Folds the Hubble flows read since the last drain into the aggregator,
/// through the core learner (the rules of `kubefence learn`).
fn drain_learner(shared: &Shared, now: Instant) -> Result<(), AgentError> {
    let learner = {
        let mut learner = shared.learner.lock().map_err(|_| AgentError::Poisoned)?;
        std::mem::take(&mut *learner)
    };
    let (neighborhoods, report) = learner.finish(None);
    if report.flows.read == 0 {
        return Ok(());
    }
    let mut aggregator = shared.aggregator.lock().map_err(|_| AgentError::Poisoned)?;
    for neighborhood in &neighborhoods {
        for (outcome, n) in aggregator.absorb(neighborhood, now) {
            shared.telemetry.count(outcome, n);
        }
    }
    let left_out: u64 = report.left_out.iter().map(|l| l.count).sum();
    if left_out > 0 {
        tracing::debug!(
            left_out,
            "Hubble flows that cannot become a neighbour (see `kubefence learn` for why)"
        );
    }
    Ok(())
}

/// Writes the workloads that are due: changed neighbours, or a status that
/// is due to turn `completed`.
async fn flush(
    client: &kube::Client,
    shared: &Shared,
    config: &AgentConfig,
    mode: Mode,
    schedule: &mut WriteSchedule,
    learning: &mut HashMap<WorkloadRef, Timestamp>,
    final_flush: bool,
) -> Result<(), AgentError> {
    let now = Instant::now();
    let wall = Timestamp::now();
    if mode == Mode::Hubble {
        drain_learner(shared, now)?;
    }
    let due: Vec<_> = {
        let mut index = shared.index.lock().map_err(|_| AgentError::Poisoned)?;
        index.purge(now);
        let mut aggregator = shared.aggregator.lock().map_err(|_| AgentError::Poisoned)?;
        match mode {
            Mode::Ebpf | Mode::Conntrack => aggregator.forget_gone(&index),
            Mode::Hubble => aggregator.forget_idle(now, config.write_interval * 10),
        };
        let t = &shared.telemetry;
        t.entries
            .store(aggregator.entries() as u64, Ordering::Relaxed);
        t.workloads
            .store(aggregator.workloads() as u64, Ordering::Relaxed);
        t.pods.store(index.pod_count() as u64, Ordering::Relaxed);
        let mut workloads = aggregator.dirty();
        for (workload, since) in learning.iter() {
            if status_at(*since, wall, config.learning_period) != STATUS_LEARNING
                && !workloads.contains(workload)
            {
                workloads.push(workload.clone());
            }
        }
        workloads
            .into_iter()
            .filter(|w| final_flush || schedule.due(w, now))
            .filter_map(|w| aggregator.snapshot(&w))
            .collect()
    };
    let context = WriteContext {
        now: wall,
        learning_period: config.learning_period,
        mode: mode.as_str(),
    };
    for snapshot in &due {
        schedule.attempted(&snapshot.neighborhood.workload, now);
    }
    // A few writes at a time: each is a read and an apply of one object,
    // independent of the others; one at a time, 200 workloads took longer
    // than a pod's termination grace period at shutdown.
    let results: Vec<_> = futures::stream::iter(due.iter().map(|snapshot| {
        let context = &context;
        async move {
            (
                &snapshot.neighborhood.workload,
                write(client, snapshot, context).await,
            )
        }
    }))
    .buffer_unordered(WRITE_CONCURRENCY)
    .collect()
    .await;
    for (workload, result) in results {
        match result {
            Ok(written) => {
                shared.telemetry.writes.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut aggregator) = shared.aggregator.lock() {
                    aggregator.written(workload);
                }
                match written.learning_since {
                    Some(since) if written.status == STATUS_LEARNING => {
                        learning.insert(workload.clone(), since);
                    }
                    _ => {
                        learning.remove(workload);
                    }
                }
                tracing::debug!(
                    workload = %format!("{}/{}/{}", workload.kind, workload.namespace, workload.name),
                    status = %written.status,
                    created = written.created,
                    "neighborhood written"
                );
            }
            Err(crate::writer::WriteError::Conflict { namespace, name }) => {
                shared.telemetry.conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%namespace, %name, "neighborhood changed meanwhile; merged again later");
            }
            Err(e) => {
                shared
                    .telemetry
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "neighborhood not written; retried at the next slot");
            }
        }
    }
    schedule.forget_older_than(now, config.write_interval * 10);
    Ok(())
}

/// The figures of the minute in the log (the same as `/metrics`), and the
/// size gauges brought up to date.
fn report(shared: &Shared, mode: Mode) {
    let t = &shared.telemetry;
    let outcomes = t
        .outcomes
        .lock()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{}={v}", k.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    tracing::info!(
        %mode,
        events = t.events(),
        lost = t.lost(),
        malformed = t.malformed(),
        reconnects = t.hubble.reconnects.load(Ordering::Relaxed),
        %outcomes,
        entries = t.entries.load(Ordering::Relaxed),
        workloads = t.workloads.load(Ordering::Relaxed),
        pods = t.pods.load(Ordering::Relaxed),
        writes = t.writes.load(Ordering::Relaxed),
        write_failures = t.write_failures.load(Ordering::Relaxed),
        conflicts = t.conflicts.load(Ordering::Relaxed),
        "agent"
    );
}
