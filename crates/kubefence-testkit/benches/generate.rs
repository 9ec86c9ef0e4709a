//! `kubefence generate`'s builder on synthetic clusters with a known call
//! graph (`baseline_synth`): every workload has a Service and refers to
//! three others in assorted address forms (some across namespaces, some
//! through ConfigMaps). Each iteration builds every policy and the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kubefence_core::baseline::{BaselineConfig, Scope, build};
use kubefence_testkit::baseline_synth::baseline_cluster;

fn bench_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    for workloads in [1_000usize, 10_000] {
        let synth = baseline_cluster(workloads, 20, 3, 1);
        eprintln!(
            "baseline_cluster({workloads}, 20, 3): {} workloads, {} services, {} references",
            synth.cluster.workloads.len(),
            synth.cluster.services.len(),
            synth.edges.len()
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(workloads),
            &synth.cluster,
            |b, cluster| {
                b.iter(|| {
                    let built =
                        build(cluster, &BaselineConfig::default(), &Scope::default()).unwrap();
                    assert_eq!(built.policies.len(), cluster.workloads.len());
                    built.report.references.len()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
