//! Loads manifest files as `kubefence analyze -f` does and prints how long
//! each step took, to profile the loader alone (`perf record` on this is
//! far quicker to rebuild than the whole binary):
//!
//!   cargo run --release -p kubefence-k8s --example load_cluster -- FILES...
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use kubefence_k8s::load::{LoadOptions, Source, load};

/// The `kubefence` binary's allocator, so that what is profiled here is
/// what `kubefence analyze` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let sources: Vec<Source> = std::env::args()
        .skip(1)
        .map(|p| Source::Path(p.into()))
        .collect();
    let started = Instant::now();
    let loaded = load(&sources, &LoadOptions::default());
    let loaded_in = started.elapsed();
    println!(
        "loaded {} workloads, {} policies, {} services, {} namespaces in {:.3} s ({} errors)",
        loaded.cluster.workloads.len(),
        loaded.cluster.policies.len(),
        loaded.cluster.services.len(),
        loaded.cluster.namespaces.len(),
        loaded_in.as_secs_f64(),
        loaded.errors.len()
    );
    let started = Instant::now();
    drop(loaded);
    println!("dropped in {:.3} s", started.elapsed().as_secs_f64());
}
