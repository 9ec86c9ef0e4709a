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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kubefence_core::IpNet;
use kubefence_core::learn::{Learner, WorkloadRef};
use tokio::sync::watch;

use crate::aggregate::{Aggregator, Outcome};
use crate::capture::Mode;
use crate::capture::ebpf::{CaptureStats, EbpfCapture};
use crate::capture::hubble::{self, HubbleError, HubbleOptions, HubbleStats};
use crate::index::PodIndex;
use crate::object::{STATUS_LEARNING, WriteContext, status_at};
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
}

/// Where connections come from.
#[derive(Debug)]
pub enum Source {
    /// The eBPF capture, started ([`EbpfCapture::start`]: started first, so
    /// a host that cannot capture is told before any API call).
    Ebpf(Box<EbpfCapture>),
    /// Hubble Relay's flow stream.
    Hubble(HubbleOptions),
}

impl Source {
    pub fn mode(&self) -> Mode {
        match self {
            Self::Ebpf(_) => Mode::Ebpf,
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

/// The agent's counters (logged each minute; the figures of the report).
#[derive(Debug, Default)]
pub struct AgentStats {
    pub outcomes: Mutex<BTreeMap<Outcome, u64>>,
    pub writes: AtomicU64,
    pub write_failures: AtomicU64,
    pub conflicts: AtomicU64,
}

impl AgentStats {
    fn count(&self, outcome: Outcome) {
        if let Ok(mut o) = self.outcomes.lock() {
            *o.entry(outcome).or_default() += 1;
        }
    }
}

/// The state the capture and the writer share.
struct Shared {
    index: Arc<Mutex<PodIndex>>,
    aggregator: Mutex<Aggregator>,
    /// The Hubble input's flows since the last drain.
    learner: Mutex<Learner>,
    stats: AgentStats,
}

/// The input's own counters.
enum InputStats {
    Ebpf(Arc<CaptureStats>),
    Hubble(Arc<HubbleStats>),
}

/// Runs the agent until `shutdown` turns true. An eBPF capture is started
/// already; its events wait in the ring buffer until the pods of this node
/// are listed.
pub async fn run(
    client: kube::Client,
    source: Source,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let mode = source.mode();
    let shared = Arc::new(Shared {
        index: Arc::new(Mutex::new(PodIndex::new(
            config.pod_grace,
            config.cluster_cidrs.clone(),
        ))),
        aggregator: Mutex::new(Aggregator::new(config.max_entries)),
        learner: Mutex::new(Learner::new()),
        stats: AgentStats::default(),
    });
    let (input_stats, reader, watches) = match source {
        Source::Ebpf(capture) => {
            let watches = start_watches(&client, &config, &shared).await;
            tracing::info!(%mode, node = %config.node, "capturing every new TCP and UDP connection of this node");
            let stats = Arc::new(CaptureStats::default());
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
                            shared.stats.count(outcome);
                        })
                        .await
                        .map_err(AgentError::Read)
                })
            };
            (InputStats::Ebpf(stats), reader, watches)
        }
        Source::Hubble(options) => {
            hubble::check_address(&options.address)?;
            tracing::info!(%mode, relay = %options.address, nodes = ?options.nodes, "learning from Hubble Relay's flows");
            let stats = Arc::new(HubbleStats::default());
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
            (InputStats::Hubble(stats), reader, Vec::new())
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
            report(&shared, &input_stats, mode);
            last_report = Instant::now();
        }
    }
    // Whatever is still unwritten is written once, whatever the schedule.
    flush(
        &client,
        &shared,
        &config,
        mode,
        &mut schedule,
        &mut learning,
        true,
    )
    .await?;
    report(&shared, &input_stats, mode);
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
            if let Ok(mut o) = shared.stats.outcomes.lock() {
                *o.entry(outcome).or_default() += n;
            }
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
            Mode::Ebpf => aggregator.forget_gone(&index),
            Mode::Hubble => aggregator.forget_idle(now, config.write_interval * 10),
        };
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
    for snapshot in due {
        let workload = snapshot.neighborhood.workload.clone();
        schedule.attempted(&workload, now);
        let context = WriteContext {
            now: wall,
            learning_period: config.learning_period,
            mode: mode.as_str(),
        };
        match write(client, &snapshot, &context).await {
            Ok(written) => {
                shared.stats.writes.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut aggregator) = shared.aggregator.lock() {
                    aggregator.written(&workload);
                }
                match written.learning_since {
                    Some(since) if written.status == STATUS_LEARNING => {
                        learning.insert(workload.clone(), since);
                    }
                    _ => {
                        learning.remove(&workload);
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
                shared.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%namespace, %name, "neighborhood changed meanwhile; merged again later");
            }
            Err(e) => {
                shared.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "neighborhood not written; retried at the next slot");
            }
        }
    }
    schedule.forget_older_than(now, config.write_interval * 10);
    Ok(())
}

fn report(shared: &Shared, input: &InputStats, mode: Mode) {
    let outcomes = shared
        .stats
        .outcomes
        .lock()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{}={v}", k.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let (entries, workloads) = shared
        .aggregator
        .lock()
        .map(|a| (a.entries(), a.workloads()))
        .unwrap_or_default();
    let pods = shared
        .index
        .lock()
        .map(|i| i.pod_count())
        .unwrap_or_default();
    let (events, lost, malformed, reconnects) = match input {
        InputStats::Ebpf(c) => (
            c.events.load(Ordering::Relaxed),
            c.lost.load(Ordering::Relaxed),
            c.malformed.load(Ordering::Relaxed),
            0,
        ),
        InputStats::Hubble(h) => (
            h.flows.load(Ordering::Relaxed),
            h.lost.load(Ordering::Relaxed),
            h.malformed.load(Ordering::Relaxed),
            h.reconnects.load(Ordering::Relaxed),
        ),
    };
    tracing::info!(
        %mode,
        events,
        lost,
        malformed,
        reconnects,
        %outcomes,
        entries,
        workloads,
        pods,
        writes = shared.stats.writes.load(Ordering::Relaxed),
        write_failures = shared.stats.write_failures.load(Ordering::Relaxed),
        conflicts = shared.stats.conflicts.load(Ordering::Relaxed),
        "agent"
    );
}
