//! Prometheus metrics (prometheus-client), served on `/metrics`.
//!
//! | metric | labels |
//! |---|---|
//! | `kubefence_reconciles_total` | `controller` |
//! | `kubefence_reconcile_errors_total` | `controller`, `error` |
//! | `kubefence_reconcile_duration_seconds` (histogram) | `controller` |
//! | `kubefence_managed_policies` (gauge) | `source` |
//! | `kubefence_api_writes_total` | `verb`, `resource` |

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every metric of the operator; cheap to update from any task.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    managed: Family<Labels, Gauge>,
    writes: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubefence");
        let reconciles = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let managed = Family::<Labels, Gauge>::default();
        let writes = Family::<Labels, Counter>::default();
        registry.register("reconciles", "Reconcile runs", reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors", errors.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "managed_policies",
            "Policies kubefence manages, by source",
            managed.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server",
            writes.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            duration,
            managed,
            writes,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &str, seconds: f64) {
        let l = labels(&[("controller", controller)]);
        self.reconciles.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(seconds);
    }

    pub fn error(&self, controller: &str, error: &str) {
        self.errors
            .get_or_create(&labels(&[("controller", controller), ("error", error)]))
            .inc();
    }

    pub fn set_managed(&self, source: &str, count: usize) {
        self.managed
            .get_or_create(&labels(&[("source", source)]))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn write(&self, verb: &str, resource: &str) {
        self.writes
            .get_or_create(&labels(&[("verb", verb), ("resource", resource)]))
            .inc();
    }

    /// The current value of the writes counter (tests and benchmarks).
    pub fn writes(&self, verb: &str, resource: &str) -> u64 {
        self.writes
            .get_or_create(&labels(&[("verb", verb), ("resource", resource)]))
            .get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let m = Metrics::default();
        m.reconciled("baseline", 0.01);
        m.error("baseline", "api_500");
        m.set_managed("baseline", 3);
        m.write("apply", "networkpolicies");
        let text = m.encode();
        for needle in [
            "kubefence_reconciles_total{controller=\"baseline\"} 1",
            "kubefence_reconcile_errors_total{controller=\"baseline\",error=\"api_500\"} 1",
            "kubefence_reconcile_duration_seconds_bucket",
            "kubefence_managed_policies{source=\"baseline\"} 3",
            "kubefence_api_writes_total{verb=\"apply\",resource=\"networkpolicies\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        assert_eq!(m.writes("apply", "networkpolicies"), 1);
    }
}
