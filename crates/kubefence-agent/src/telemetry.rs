//! The agent's counters and gauges, and their Prometheus exposition
//! (`/metrics` of `kubefence agent --admin-addr`, served by the operator's
//! admin server). The counters are the atomics the capture, the input and
//! the writer already keep; a scrape reads them, nothing is counted twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::aggregate::Outcome;
use crate::capture::Mode;
use crate::capture::ebpf::CaptureStats;
use crate::capture::hubble::HubbleStats;

/// Everything the agent counts. Shared by the agent's tasks and the admin
/// server.
#[derive(Debug, Default)]
pub struct Telemetry {
    mode: Mutex<Option<Mode>>,
    /// Connections (eBPF) or neighbour entries (Hubble) by outcome.
    pub outcomes: Mutex<BTreeMap<Outcome, u64>>,
    pub writes: AtomicU64,
    pub write_failures: AtomicU64,
    pub conflicts: AtomicU64,
    /// Entries, workloads and pods held, as of the last flush.
    pub entries: AtomicU64,
    pub workloads: AtomicU64,
    pub pods: AtomicU64,
    /// The kernel capture's counters, eBPF or conntrack (zero in Hubble
    /// mode).
    pub capture: Arc<CaptureStats>,
    /// The Hubble input's counters (zero in eBPF mode).
    pub hubble: Arc<HubbleStats>,
    /// DNS answers read (`--dns`), and DNS messages that could not be read
    /// (truncated past 512 bytes, or not DNS).
    pub dns_answers: AtomicU64,
    pub dns_unreadable: AtomicU64,
    /// The input runs and, in eBPF mode, this node's pods were listed.
    pub ready: AtomicBool,
}

impl Telemetry {
    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = Some(mode);
        }
    }

    pub fn mode(&self) -> Option<Mode> {
        self.mode.lock().ok().and_then(|m| *m)
    }

    pub fn count(&self, outcome: Outcome, n: u64) {
        if let Ok(mut o) = self.outcomes.lock() {
            *o.entry(outcome).or_default() += n;
        }
    }

    /// Events read from the input: ring buffer records, or Hubble flows.
    pub fn events(&self) -> u64 {
        self.capture.events.load(Ordering::Relaxed) + self.hubble.flows.load(Ordering::Relaxed)
    }

    /// Events lost before the agent read them: the ring buffer was full,
    /// or Hubble reported losses.
    pub fn lost(&self) -> u64 {
        self.capture.lost.load(Ordering::Relaxed) + self.hubble.lost.load(Ordering::Relaxed)
    }

    pub fn malformed(&self) -> u64 {
        self.capture.malformed.load(Ordering::Relaxed)
            + self.hubble.malformed.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text of a scrape.
    pub fn encode(self: &Arc<Self>) -> String {
        let mut registry = Registry::with_prefix("kubefence_agent");
        registry.register_collector(Box::new(Arc::clone(self)));
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &registry) {
            Ok(()) => text,
            Err(e) => format!("# encoding failed: {e}\n"),
        }
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
}

impl Collector for Telemetry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(mode) = self.mode() {
            let mut family = encoder.encode_descriptor(
                "mode_info",
                "How the agent sees connections (ebpf, conntrack or hubble)",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("mode", mode.as_str())];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut encoder,
            "events",
            "Events read from the input (ring buffer records, or Hubble flows)",
            self.events(),
        )?;
        counter(
            &mut encoder,
            "lost_events",
            "Events lost before the agent read them (ring buffer full, or lost as Hubble reported)",
            self.lost(),
        )?;
        counter(
            &mut encoder,
            "malformed_events",
            "Events that could not be read (counted and skipped)",
            self.malformed(),
        )?;
        counter(
            &mut encoder,
            "stream_reconnects",
            "Times the Hubble flow stream was opened again",
            self.hubble.reconnects.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "dns_answers",
            "DNS answers read (--dns): they name external addresses",
            self.dns_answers.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "dns_unreadable",
            "DNS messages that could not be read (longer than 512 bytes, or not DNS)",
            self.dns_unreadable.load(Ordering::Relaxed),
        )?;
        {
            let outcomes = self.outcomes.lock().map(|o| o.clone()).unwrap_or_default();
            let mut family = encoder.encode_descriptor(
                "connections",
                "Connections (eBPF) or learned entries (Hubble) by what became of them",
                None,
                MetricType::Counter,
            )?;
            for (outcome, n) in outcomes {
                let labels = [("outcome", outcome.as_str())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut encoder,
            "neighborhood_writes",
            "NetworkNeighborhoods written",
            self.writes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "neighborhood_write_failures",
            "NetworkNeighborhood writes that failed (retried at the next slot)",
            self.write_failures.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "neighborhood_write_conflicts",
            "NetworkNeighborhood writes that met a newer version (merged again)",
            self.conflicts.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "entries",
            "(workload, direction, peer, protocol, port) entries held",
            self.entries.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "workloads",
            "Workloads with a neighborhood held",
            self.workloads.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "pods",
            "Pods of this node in the address index",
            self.pods.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "ready",
            "1 once the input runs (and, with eBPF, this node's pods are listed)",
            u64::from(self.is_ready()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_reads_the_counters_the_agent_keeps() {
        let t = Arc::new(Telemetry::default());
        t.set_mode(Mode::Hubble);
        t.hubble.flows.store(12, Ordering::Relaxed);
        t.hubble.lost.store(3, Ordering::Relaxed);
        t.capture.lost.store(2, Ordering::Relaxed);
        t.count(Outcome::New, 5);
        t.count(Outcome::Known, 7);
        t.writes.store(4, Ordering::Relaxed);
        t.entries.store(9, Ordering::Relaxed);
        let text = t.encode();
        for line in [
            "kubefence_agent_mode_info{mode=\"hubble\"} 1",
            "kubefence_agent_events_total 12",
            "kubefence_agent_lost_events_total 5",
            "kubefence_agent_connections_total{outcome=\"new\"} 5",
            "kubefence_agent_connections_total{outcome=\"known\"} 7",
            "kubefence_agent_neighborhood_writes_total 4",
            "kubefence_agent_entries 9",
            "kubefence_agent_ready 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
