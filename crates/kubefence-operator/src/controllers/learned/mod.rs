//! The learned controller: NetworkNeighborhoods (Kubescape's
//! `spdx.softwarecomposition.kubescape.io/v1beta1` and kubefence's
//! `kubefence.dev/v1alpha1`, each optional) and KnownServers become one
//! GeneratedNetworkPolicy per workload (`kubefence.dev`), built by the core
//! `learn::build` exactly as `kubefence learn --neighborhood` builds it and
//! owned by the workload's neighborhoods. Its NetworkPolicy is applied only
//! once a person approves it.
//!
//! ```text
//!  NN (either group) + KnownServers ──▶ learn::build ──▶ GNP (SSA, ownerReference → NN)
//!  GNP annotated kubefence.dev/approved: "true"
//!      ──▶ NetworkPolicy (SSA, ownerReference → GNP); spec hash ─▶ kubefence.dev/approved-hash
//!  generated spec changes ──▶ approval withdrawn; the approved NetworkPolicy stays
//!  GNP status: condition Enforced (True, or False with ApprovalNeeded / PolicyConflict / Invalid)
//! ```
//!
//! Shadow mode by default: without an approval nothing is enforced. An
//! approval holds for one spec: when the generated spec changes, the
//! controller first removes the approval annotation (a JSON patch that
//! tests it), then writes the new spec on the version it just wrote, so no
//! crash or concurrent approval leaves an approval on a spec nobody
//! reviewed; the last approved NetworkPolicy stays until the new spec is
//! approved.
//!
//! Ownership (DESIGN.md): an object is changed or deleted only when it
//! carries kubefence's learned labels and was written by kubefence's field
//! manager; a NetworkPolicy also only by the GeneratedNetworkPolicy that
//! owns it. A foreign object with the same name is left alone, and said so
//! in the status.
//!
//! Every pass lists everything afresh; watches (started for each group
//! found installed) only wake the loop, and a resync runs a pass anyway.
//! A group whose CRD is not installed is skipped with one log line, and
//! picked up at a later pass when it appears. It writes only while this
//! replica leads; it is off unless `OperatorConfig::learned` (`kubefence
//! operator --learned`), and its rights are the opt-in
//! `deploy/components/learned`.

mod reconcile;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kubefence_core::naming::{self, Source};
use kubefence_k8s::learn::Group;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use reconcile::{
    APPROVED_HASH_ANNOTATION, CONDITION, Installed, Pass, REASON_APPROVAL_NEEDED, REASON_CONFLICT,
    REASON_ENFORCED, REASON_INVALID, is_ours, reconcile, spec_hash,
};

use crate::context::Context;
use crate::error::Result;

pub const NAME: &str = "learned";

/// Events closer than this make one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// The first retry after a failed pass, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn start(ctx: Arc<Context>) -> BoxFuture<'static, Result<()>> {
    Box::pin(run(ctx))
}

/// What a watch is of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watched {
    Neighborhoods(Group),
    KnownServers(Group),
    Generated,
    Policies,
}

async fn run(ctx: Arc<Context>) -> Result<()> {
    // A follower is ready without watching (as the Quarantine controller).
    ctx.readiness.register(NAME);
    ctx.readiness.set(NAME, true);
    let wake = Arc::new(Notify::new());
    let mut watches: JoinSet<()> = JoinSet::new();
    let mut watching: BTreeSet<Watched> = BTreeSet::new();
    let mut installed = Installed::default();
    let mut leader = ctx.leader.clone();
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if !*leader.borrow_and_update() {
            watches.abort_all();
            watching.clear();
            installed = Installed::default();
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let started = std::time::Instant::now();
        let delay = match reconcile(&ctx, &mut installed).await {
            Ok(pass) => {
                ctx.metrics
                    .reconciled(NAME, started.elapsed().as_secs_f64());
                if pass.writes > 0 {
                    tracing::debug!(controller = NAME, writes = pass.writes, "pass done");
                }
                backoff = MIN_BACKOFF;
                ctx.config.resync
            }
            Err(e) => {
                ctx.metrics.error(NAME, &e.metric_label());
                tracing::warn!(controller = NAME, error = %e.full_message(), retry_in = ?backoff, "pass failed");
                let now = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                now
            }
        };
        for w in wanted_watches(&installed) {
            if watching.insert(w.clone()) {
                watches.spawn(watch(ctx.clone(), w, wake.clone()));
            }
        }
        // Not `leader.changed()`: on a closed channel (a one-shot context)
        // it returns at once, and the loop would run pass after pass.
        tokio::select! {
            () = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            () = tokio::time::sleep(delay) => {}
            () = ctx.lost_or_stopped() => {}
        }
    }
}

/// The watches the installed groups call for.
fn wanted_watches(installed: &Installed) -> Vec<Watched> {
    let mut out = Vec::new();
    if installed.generated != Some(true) {
        return out;
    }
    out.push(Watched::Generated);
    out.push(Watched::Policies);
    for (group, on) in &installed.neighborhoods {
        if *on {
            out.push(Watched::Neighborhoods(*group));
        }
    }
    for (group, on) in &installed.known_servers {
        if *on {
            out.push(Watched::KnownServers(*group));
        }
    }
    out
}

/// Wakes the loop at every change of `what` until aborted. A watch error
/// (the CRD removed, a lost connection) is retried with backoff by the
/// watcher; the pass, not the watch, decides what is installed.
async fn watch(ctx: Arc<Context>, what: Watched, wake: Arc<Notify>) {
    let config = watcher::Config::default();
    let resource: ApiResource = match &what {
        Watched::Neighborhoods(g) => reconcile::neighborhoods_resource(*g),
        Watched::KnownServers(g) => reconcile::known_servers_resource(*g),
        Watched::Generated => {
            reconcile::resource_of::<kubefence_k8s::crd::learned::GeneratedNetworkPolicy>()
        }
        Watched::Policies => {
            let api: Api<NetworkPolicy> = Api::all(ctx.client.clone());
            let selector = format!("{}={}", naming::SOURCE_LABEL, Source::Learned.as_str());
            let stream = watcher(api, config.labels(&selector)).default_backoff();
            return drain(stream, &what, &wake).await;
        }
    };
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    drain(watcher(api, config).default_backoff(), &what, &wake).await;
}

async fn drain<T>(
    stream: impl futures::Stream<Item = std::result::Result<T, watcher::Error>>,
    what: &Watched,
    wake: &Notify,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => wake.notify_one(),
            Err(e) => {
                tracing::debug!(controller = NAME, watch = ?what, error = %e, "watch error; retrying")
            }
        }
    }
}
