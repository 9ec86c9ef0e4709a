//! What every controller shares: the client, the config, metrics, the event
//! recorder, the leader flag, the shutdown signal and readiness.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kubefence_core::baseline::BaselineConfig;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// The field manager of every write, and the events' reporting controller.
pub const FIELD_MANAGER: &str = "kubefence";
/// The namespace label that opts a namespace in to baseline policies.
pub const OPT_IN_LABEL: &str = "kubefence.dev/baseline";
/// Its value.
pub const OPT_IN_VALUE: &str = "enabled";

/// How the operator runs (from `kubefence operator` flags and `--config`).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Shared with `generate`: DNS and ingress-controller selectors, cluster
    /// domain, protected namespaces (the operator's own is added).
    pub baseline: BaselineConfig,
    /// Every namespace but the protected ones, without the opt-in label.
    pub all_namespaces: bool,
    /// The operator's own namespace (holds the Lease; never baselined).
    pub namespace: String,
    /// This replica's name in the Lease and in events.
    pub identity: String,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    /// Off only for a single replica (development).
    pub leader_election: bool,
    pub lease_name: String,
    /// How long a Lease holds without renewal (at least 3 s). The leader
    /// stops writing two thirds of it after its last confirmed renewal.
    pub lease_duration: Duration,
    /// A full recompute this often, as a safety net (writes only differences).
    pub resync: Duration,
    /// Every API call gives up after this long (then backs off and retries).
    pub api_timeout: Duration,
    /// Writes in flight at once.
    pub write_concurrency: usize,
    /// Run the learned controller (NetworkNeighborhoods → reviewed
    /// GeneratedNetworkPolicies; needs `deploy/components/learned`).
    pub learned: bool,
    /// Run the profiles controller (IsolationProfiles → one NetworkPolicy
    /// each; needs `deploy/components/profiles`).
    pub profiles: bool,
    /// Run the intents controller (security intents and their bindings →
    /// IntentPolicies → each served engine's objects; needs
    /// `deploy/components/intents`).
    pub intents: bool,
    /// The cluster's pod and service CIDRs: blocked for every profile.
    pub profile_cluster_cidrs: Vec<ipnet::IpNet>,
    /// With the profiles controller and agent-sandbox installed: give every
    /// SandboxTemplate its default profile (`--sandbox-template-defaults`).
    pub sandbox_template_defaults: bool,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            baseline: BaselineConfig::default(),
            all_namespaces: false,
            namespace: "kubefence-system".into(),
            identity: "kubefence".into(),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            leader_election: true,
            lease_name: "kubefence-operator".into(),
            lease_duration: Duration::from_secs(15),
            resync: Duration::from_secs(300),
            api_timeout: Duration::from_secs(10),
            write_concurrency: 8,
            learned: false,
            profiles: false,
            intents: false,
            profile_cluster_cidrs: Vec::new(),
            sandbox_template_defaults: true,
        }
    }
}

impl OperatorConfig {
    /// The config with the operator's own namespace protected.
    pub fn normalized(mut self) -> Self {
        self.baseline
            .protected_namespaces
            .insert(self.namespace.clone());
        self
    }
}

/// Readiness: each controller registers a flag and sets it once its watches
/// have listed everything and its first reconcile is done.
#[derive(Debug, Default)]
pub struct Readiness {
    flags: Mutex<BTreeMap<&'static str, bool>>,
}

impl Readiness {
    pub fn register(&self, name: &'static str) {
        self.with(|f| {
            f.entry(name).or_insert(false);
        });
    }

    pub fn set(&self, name: &'static str, ready: bool) {
        self.with(|f| {
            f.insert(name, ready);
        });
    }

    /// Ready when at least one controller is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        self.with(|f| !f.is_empty() && f.values().all(|r| *r))
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, bool>) -> T) -> T {
        let mut guard = match self.flags.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// The event recorder, split by the object an event is about.
///
/// kube's [`Recorder`] keeps every event of the last six minutes (to count
/// repeats as a series) and sweeps that whole cache on every publish: with
/// one recorder, the 10,000 events of a first pass cost 10,000 sweeps of up
/// to 10,000 entries each. Each shard sweeps only its own; all events about
/// one object go through the same shard, so repeats are counted as before.
pub struct EventRecorders(Vec<Recorder>);

impl EventRecorders {
    const SHARDS: usize = 64;

    fn new(client: &Client, reporter: &Reporter) -> Self {
        Self(
            (0..Self::SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
        )
    }

    /// The recorder of events about `regarding`.
    pub fn about(&self, regarding: &ObjectReference) -> &Recorder {
        let mut hasher = std::hash::DefaultHasher::new();
        (&regarding.kind, &regarding.namespace, &regarding.name).hash(&mut hasher);
        let shard = (hasher.finish() % Self::SHARDS as u64) as usize;
        &self.0[shard]
    }
}

/// Shared by every controller (`Arc<Context>`).
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
    pub recorder: EventRecorders,
    /// `true` while this replica holds the Lease; only then may it write.
    pub leader: watch::Receiver<bool>,
    /// Turns `true` once, on SIGTERM: every controller stops.
    pub shutdown: watch::Receiver<bool>,
    pub readiness: Arc<Readiness>,
}

impl Context {
    pub fn new(
        client: Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        leader: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(config.identity.clone()),
        };
        Self {
            recorder: EventRecorders::new(&client, &reporter),
            client,
            config,
            metrics,
            leader,
            shutdown,
            readiness: Arc::default(),
        }
    }

    /// The context of a one-shot command (the CLI's online `quarantine`
    /// and `release`): the current kubeconfig context (or the in-cluster
    /// config), events reported as `kubefence` instance `identity`, always
    /// allowed to write, never shut down.
    pub async fn for_command(identity: &str) -> crate::error::Result<Self> {
        let client = Client::try_default().await?;
        let config = OperatorConfig {
            identity: identity.to_string(),
            ..OperatorConfig::default()
        };
        Ok(Self::with_client(client, config))
    }

    /// A context over `client` that leads and never shuts down (one-shot
    /// commands and tests).
    pub fn with_client(client: Client, config: OperatorConfig) -> Self {
        // The senders go: the receivers keep their last value.
        let (_, leader) = watch::channel(true);
        let (_, shutdown) = watch::channel(false);
        Self::new(
            client,
            config,
            Arc::new(Metrics::default()),
            leader,
            shutdown,
        )
    }

    /// Resolves when this replica stops leading or shutdown is asked. A
    /// closed channel keeps its last value (a one-shot context leads for
    /// ever): it never resolves then, so a controller waiting on it with a
    /// timer waits for the timer, never spins.
    pub async fn lost_or_stopped(&self) {
        let mut leader = self.leader.clone();
        let mut shutdown = self.shutdown.clone();
        let lost = async {
            if leader.wait_for(|leads| !*leads).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let stopped = async {
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = lost => {}
            () = stopped => {}
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}
