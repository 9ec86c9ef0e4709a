//! Differential test: kubefence's engine against IBM's network-config-analyzer.
//!
//! For seeds 0..300, `small_random` builds a cluster that uses every
//! NetworkPolicy feature; nca reads its YAML, kubefence analyzes the same
//! cluster, and every ordered pair of endpoints must agree (workload pairs
//! exactly, external addresses on probes).
//!
//! nca is required: run `scripts/install-nca.sh` (or set `KUBEFENCE_NCA`).
//! `KUBEFENCE_SKIP_NCA=1` skips the test with a notice. `KUBEFENCE_NCA_CASES`
//! changes the number of cases. Cases are written under
//! `$CARGO_TARGET_TMPDIR/differential-nca/<path>/seed-<n>/` for reproduction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kubefence_core::Cluster;
use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_testkit::{
    SynthCluster, differential_case, differential_case_for, nca, small_random, to_cluster,
};

const DEFAULT_CASES: u64 = 300;
const THREADS: usize = 2;

/// How a test turns a synthetic cluster into the core model.
type ClusterPath = fn(&SynthCluster, &str) -> Result<Cluster, String>;

/// Built directly from the generator's representation.
fn direct(synth: &SynthCluster, _yaml: &str) -> Result<Cluster, String> {
    Ok(to_cluster(synth))
}

/// Read from the very YAML text nca reads, through kubefence's loader.
fn via_loader(_synth: &SynthCluster, yaml: &str) -> Result<Cluster, String> {
    let loaded = kubefence_k8s::load::load_str(yaml, "synth.yaml", &Default::default());
    if loaded.has_errors() {
        return Err(format!("loader errors: {:?}", loaded.errors));
    }
    Ok(loaded.cluster)
}

// The loader path checks the YAML reader and nca against the same text; the
// direct path keeps the engine check independent of the loader.
fn cluster_paths() -> Vec<(&'static str, ClusterPath)> {
    vec![
        ("direct", direct as ClusterPath),
        ("loader", via_loader as ClusterPath),
    ]
}

/// The nca executable; `None` (with a notice) when skipping is asked for.
/// Without nca and without `KUBEFENCE_SKIP_NCA=1` the test fails and says
/// how to install it.
fn nca_or_skip(test: &str) -> Option<PathBuf> {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: {test} needs nca (KUBEFENCE_SKIP_NCA=1)");
        return None;
    }
    match nca::find_nca() {
        Ok(p) => Some(p),
        Err(e) => panic!("{e}"),
    }
}

/// Pair counts over all cases: (pairs, all allowed, none, partial).
#[derive(Default)]
struct Stats {
    pairs: AtomicU64,
    all: AtomicU64,
    none: AtomicU64,
    partial: AtomicU64,
}

impl Stats {
    fn add(&self, cluster: &Cluster) {
        let conn = analyze(cluster, &AnalyzeOptions::default());
        let n = conn.endpoints.len();
        for i in 0..n {
            for j in 0..n {
                if i == j || conn.endpoints[i].is_external() && conn.endpoints[j].is_external() {
                    continue;
                }
                let a = conn.allowed(i, j);
                self.pairs.fetch_add(1, Ordering::Relaxed);
                let bucket = if a.is_all() {
                    &self.all
                } else if a.is_empty() {
                    &self.none
                } else {
                    &self.partial
                };
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn engine_agrees_with_nca_on_small_random_clusters() {
    let Some(nca_bin) = nca_or_skip("differential test against nca") else {
        return;
    };
    let cases: u64 = std::env::var("KUBEFENCE_NCA_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential-nca");
    let started = Instant::now();

    let stats = Stats::default();
    let next = AtomicU64::new(0);
    let failed = Mutex::new(Vec::<(u64, String)>::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= cases {
                        break;
                    }
                    let dir = root.join(format!("seed-{seed}"));
                    for msg in run_seed(seed, &nca_bin, &dir, &stats) {
                        failed.lock().unwrap().push((seed, msg));
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort();
    let failures: Vec<String> = failed.into_iter().map(|(_, msg)| msg).collect();
    eprintln!(
        "differential nca: {cases} cases x {} path(s) in {:.1}s, {} failing; \
         {} endpoint pairs compared (all: {}, none: {}, partial: {})",
        cluster_paths().len(),
        started.elapsed().as_secs_f64(),
        failures.len(),
        stats.pairs.load(Ordering::Relaxed),
        stats.all.load(Ordering::Relaxed),
        stats.none.load(Ordering::Relaxed),
        stats.partial.load(Ordering::Relaxed),
    );
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(10).collect();
        panic!(
            "{} case(s) disagree with nca:\n\n{}",
            failures.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Runs one seed: nca once, every reading of the cluster against it.
/// Returns a message per disagreement or error.
fn run_seed(seed: u64, nca_bin: &Path, dir: &Path, stats: &Stats) -> Vec<String> {
    let synth = small_random(seed);
    let yaml = kubefence_testkit::to_yaml(&synth);
    let mut clusters = Vec::new();
    for (name, build) in cluster_paths() {
        match build(&synth, &yaml) {
            Ok(c) => clusters.push((name, c)),
            Err(e) => return vec![format!("seed {seed} [{name}]: cannot build cluster: {e}")],
        }
    }
    if let Some((_, direct)) = clusters.first() {
        stats.add(direct);
    }
    let readings: Vec<(&str, &Cluster)> = clusters.iter().map(|(n, c)| (*n, c)).collect();
    match differential_case_for(&synth, &readings, nca_bin, dir) {
        Ok(results) => results
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(name, m)| {
                format!(
                    "seed {seed} [{name}]: {} pair(s) differ (case in {}):\n{}",
                    m.len(),
                    dir.display(),
                    kubefence_testkit::compare::report(&m, 5)
                )
            })
            .collect(),
        Err(e) => vec![format!("seed {seed}: {e} (case in {})", dir.display())],
    }
}

/// The harness is not vacuous: analyzing the clusters without their
/// policies must disagree with nca on most seeds.
#[test]
fn harness_detects_a_wrong_answer() {
    let Some(nca_bin) = nca_or_skip("harness self-check") else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential-nca/mutant");
    let mut detected = 0;
    for seed in 0..10 {
        let synth = small_random(seed);
        let mut cluster = to_cluster(&synth);
        cluster.policies.clear();
        let dir = root.join(format!("seed-{seed}"));
        let mismatches = differential_case(&synth, &cluster, &nca_bin, &dir).unwrap();
        if !mismatches.is_empty() {
            detected += 1;
        }
    }
    assert!(detected >= 7, "only {detected}/10 mutants detected");
}

/// The benchmark profile agrees with nca too (a small instance of it).
#[test]
fn scaled_cluster_agrees_with_nca() {
    let Some(nca_bin) = nca_or_skip("scaled differential test") else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential-nca/scaled");
    let mut sizes = vec![(60, 4, 1), (40, 3, 2)];
    // KUBEFENCE_NCA_SCALED=W,N,S adds one bigger case (nca is slow there).
    if let Ok(v) = std::env::var("KUBEFENCE_NCA_SCALED") {
        let n: Vec<u64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if let [w, ns, seed] = n[..] {
            sizes.push((w as usize, ns as usize, seed));
        }
    }
    for (workloads, namespaces, seed) in sizes {
        let synth = kubefence_testkit::scaled(workloads, namespaces, seed);
        let cluster = to_cluster(&synth);
        let dir = root.join(format!("w{workloads}-n{namespaces}-s{seed}"));
        let mismatches = differential_case(&synth, &cluster, &nca_bin, &dir).unwrap();
        assert!(
            mismatches.is_empty(),
            "scaled({workloads}, {namespaces}, {seed}) disagrees with nca (case in {}):\n{}",
            dir.display(),
            kubefence_testkit::compare::report(&mismatches, 10)
        );
    }
}
