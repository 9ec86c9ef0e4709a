//! Reads Hubble flow files into the core learner and builds the policies,
//! as `kubefence learn --flows` does but without the CLI around it, to
//! profile the reading and learning alone (`perf record` on this is far
//! quicker to rebuild than the whole binary):
//!
//!   cargo run --release -p kubefence-k8s --example learn_flows -- FLOWS...
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use kubefence_core::learn::{LearnOptions, Learner, build};
use kubefence_k8s::learn::hubble;

/// The `kubefence` binary's allocator, so that what is profiled here is
/// what `kubefence learn` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut learner = Learner::new();
    let mut errors = 0u64;
    // KUBEFENCE_FLOW_WORKERS=1 profiles one worker alone.
    let workers = std::env::var("KUBEFENCE_FLOW_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(hubble::default_workers);
    for path in std::env::args().skip(1) {
        let mut reader = hubble::open(&path).expect("readable flow file");
        reader.learn_into(&mut learner, workers, |_| errors += 1);
    }
    let (neighborhoods, report) = learner.finish(None);
    let learned = build(&neighborhoods, &[], &LearnOptions::default()).expect("policies");
    println!(
        "{} flows read, {errors} unreadable, {} policies",
        report.flows.read,
        learned.policies.len()
    );
}
