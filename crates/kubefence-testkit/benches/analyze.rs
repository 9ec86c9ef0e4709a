//! `analyze` on synthetic clusters of the benchmark profile (`synth::scaled`):
//! namespaces, workloads and Services, a default-deny, DNS and in-namespace
//! policy per namespace, and per-workload selector, namespace-selector and
//! ipBlock rules with endPort.
//!
//! Each iteration computes the connectivity and walks every allowed
//! connection (what `kubefence analyze` prints), so lazy expansion is not
//! mistaken for speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_testkit::{scaled, to_cluster};

fn bench_analyze(c: &mut Criterion) {
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10);
    for workloads in [1_000usize, 5_000] {
        let cluster = to_cluster(&scaled(workloads, 20, 1));
        eprintln!(
            "scaled({workloads}, 20): {} workloads, {} policies",
            cluster.workloads.len(),
            cluster.policies.len()
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(workloads),
            &cluster,
            |b, cluster| {
                b.iter(|| {
                    let result = analyze(cluster, &AnalyzeOptions::default());
                    result.connections().count()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_analyze);
criterion_main!(benches);
