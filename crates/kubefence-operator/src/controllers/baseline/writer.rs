//! The writes of the baseline controller (and the rare read of a ConfigMap
//! whose data was not kept), run off its event loop.
//!
//! ```text
//!   event loop ── plan ─▶ queued (one entry per policy name, newest plan wins)
//!        │                    │ bounded channel (reserve before taking one)
//!        │                    ▼
//!        │              writer task: at most `write_concurrency` calls at once
//!        ◀── outcomes ────────┘
//! ```
//!
//! The loop that reads the watches never waits for the API server: it plans,
//! hands jobs over a bounded channel (when the writer is busy the jobs stay
//! in the loop's queue, which holds at most one entry per policy, so a burst
//! of changes to one workload is one write, never a growing backlog), and
//! takes the outcomes back between watch events.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tokio::sync::mpsc;

use super::diff::SpecDigest;
use super::state::{ObjKey, ObservedPolicy};
use super::watch::written_policy;
use crate::cluster;
use crate::context::Context;
use crate::error::Result;

/// A desired policy to write, and what its spec reads as (so the answer
/// need not be converted again when it holds the spec sent).
#[derive(Clone, Debug)]
pub struct Desired {
    pub np: Box<NetworkPolicy>,
    pub spec: Option<SpecDigest>,
}

/// What one write does.
#[derive(Clone, Debug)]
pub enum Write {
    /// Nothing by that name in the cache: create, never take over.
    Create(Desired),
    /// Ours, seen at this resourceVersion: apply on exactly that version.
    Apply(Desired, Option<String>),
    /// Ours and no longer wanted: delete exactly that object (uid).
    Delete(Option<String>),
}

/// An Event to record on a workload (best effort).
#[derive(Clone, Debug)]
pub struct Note {
    pub on: ObjectReference,
    pub warning: bool,
    pub reason: &'static str,
    pub text: String,
}

/// One unit of work for the writer.
#[derive(Debug)]
pub enum Job {
    Write(ObjKey, Write),
    Event(Note),
    /// Read one ConfigMap whose data a workload now reads but the cache
    /// did not keep, as of watch generation `u64`.
    Fetch(ObjKey, u64),
}

/// What came back from a job.
#[derive(Debug)]
pub enum Outcome {
    /// The policy as stored (`None`: deleted) and what it reads as;
    /// `created` for a create.
    Written {
        key: ObjKey,
        created: bool,
        result: Result<Option<Box<ObservedPolicy>>>,
    },
    /// An Event was published (or not: events are best effort).
    Published,
    Fetched {
        key: ObjKey,
        generation: u64,
        result: Result<super::watch::Fetched>,
    },
}

/// Runs one job against the API server.
pub async fn perform(ctx: &Context, job: Job) -> Outcome {
    match job {
        Job::Write(key, Write::Create(d)) => Outcome::Written {
            result: cluster::create_network_policy(ctx, &d.np)
                .await
                .map(|stored| Some(Box::new(written_policy(&stored, &d.np, d.spec)))),
            key,
            created: true,
        },
        Job::Write(key, Write::Apply(d, seen)) => Outcome::Written {
            result: cluster::apply_network_policy(ctx, &d.np, seen)
                .await
                .map(|stored| Some(Box::new(written_policy(&stored, &d.np, d.spec)))),
            key,
            created: false,
        },
        Job::Write(key, Write::Delete(uid)) => Outcome::Written {
            result: cluster::delete_network_policy(ctx, &key.0, &key.1, uid)
                .await
                .map(|()| None),
            key,
            created: false,
        },
        Job::Event(n) => {
            cluster::publish_event(ctx, &n.on, n.warning, n.reason, n.text).await;
            Outcome::Published
        }
        Job::Fetch(key, generation) => Outcome::Fetched {
            result: super::watch::fetch_config_map(ctx, &key.0, &key.1).await,
            key,
            generation,
        },
    }
}

/// The writer task: takes jobs from `jobs` while fewer than
/// `write_concurrency` are running, sends each outcome to `outcomes`, and
/// ends once `jobs` is closed and the running ones are done.
pub async fn run(
    ctx: std::sync::Arc<Context>,
    mut jobs: mpsc::Receiver<Job>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let limit = ctx.config.write_concurrency.max(1);
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            job = jobs.recv(), if open && running.len() < limit => match job {
                Some(job) => {
                    let ctx = ctx.clone();
                    running.push(async move { perform(&ctx, job).await });
                }
                None => open = false,
            },
            Some(outcome) = running.next(), if !running.is_empty() => {
                // The loop is gone only at shutdown: nothing to tell then.
                let _ = outcomes.send(outcome);
            }
            else => return,
        }
    }
}
