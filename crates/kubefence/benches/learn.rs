//! `kubefence learn --flows` end to end but for printing: a jsonpb flow file
//! of 100k or 1M synthetic flows (200 workloads, 5 % replies, 10 %
//! external; `kubefence_testkit::flowgen`) streamed by the Hubble reader
//! into the core learner, then the policies built. The files are written
//! once to a temporary directory and read from it every iteration, as the
//! command reads them.
//!
//! Run: `cargo bench -p kubefence --bench learn` (not run in CI). The whole
//! command's figures (and peak memory) are taken on the release binary:
//! see README "Performance".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kubefence_core::learn::{LearnOptions, Learner, build};
use kubefence_k8s::learn::hubble;

fn learn_file(path: &Path) -> usize {
    let mut learner = Learner::new();
    let mut reader = hubble::open(path.to_str().unwrap()).unwrap();
    reader.learn_into(&mut learner, hubble::default_workers(), |e| {
        panic!("unreadable flow: {e}")
    });
    let (neighborhoods, _) = learner.finish(None);
    let learned = build(&neighborhoods, &[], &LearnOptions::default()).unwrap();
    learned.policies.len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("learn");
    group.sample_size(10);
    for (label, flows) in [("100k", 100_000usize), ("1M", 1_000_000)] {
        let path = dir.path().join(format!("flows-{label}.jsonl"));
        let mut out = BufWriter::new(File::create(&path).unwrap());
        kubefence_testkit::flowgen::write_jsonpb(&mut out, flows, 1).unwrap();
        drop(out);
        assert_eq!(learn_file(&path), kubefence_testkit::flowgen::WORKLOADS);
        group.throughput(Throughput::Elements(flows as u64));
        group.bench_function(label, |b| b.iter(|| learn_file(&path)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
