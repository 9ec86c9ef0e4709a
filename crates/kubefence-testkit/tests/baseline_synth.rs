//! The baseline builder on synthetic clusters whose call graph is known in
//! advance (`baseline_synth`): it must find exactly the intended references
//! (in every address form, across namespaces, through ConfigMaps and split
//! host/port variables), report exactly the dangling names, and the policies
//! must allow exactly the intended pairs, on the target port only — checked
//! with the engine on every seed, through the manifest loader, and with nca.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use kubefence_core::baseline::{self, BaselineConfig, Scope};
use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze};
use kubefence_core::{Cluster, ConnSet, Protocol};
use kubefence_testkit::baseline_synth::{
    BaselineSynth, CLUSTER_DNS_MANIFEST, TARGET_PORT, baseline_cluster, to_manifests,
};
use kubefence_testkit::{compare, nca};

const SEEDS: u64 = 24;

fn enforce(cluster: &Cluster) -> (baseline::Baseline, Cluster) {
    let generated =
        baseline::build(cluster, &BaselineConfig::default(), &Scope::default()).unwrap();
    let mut enforced = cluster.clone();
    enforced
        .policies
        .extend(generated.policies.iter().map(|p| p.policy.clone()));
    (generated, enforced)
}

fn allowed_pairs(conn: &Connectivity) -> BTreeSet<(String, String)> {
    let target = ConnSet::port(Protocol::Tcp, TARGET_PORT);
    let mut out = BTreeSet::new();
    for c in conn.connections() {
        let (a, b) = (&conn.endpoints[c.from], &conn.endpoints[c.to]);
        assert!(
            !a.is_external() && !b.is_external(),
            "{} -> {}: nothing is exposed outside",
            a.id,
            b.id
        );
        assert_eq!(*c.allowed, target, "{} -> {}", a.id, b.id);
        out.insert((a.id.clone(), b.id.clone()));
    }
    out
}

fn check(synth: &BaselineSynth, seed: u64) {
    let (generated, enforced) = enforce(&synth.cluster);
    assert!(generated.report.errors.is_empty(), "seed {seed}");
    assert_eq!(generated.policies.len(), synth.cluster.workloads.len());
    let found: BTreeSet<(String, String)> = generated
        .report
        .references
        .iter()
        .map(|r| (r.from.clone(), r.to.clone()))
        .collect();
    assert_eq!(found, synth.edges, "seed {seed}: references");
    let dangling: BTreeSet<(String, String)> = generated
        .report
        .unresolved
        .iter()
        .map(|u| (u.from.clone(), u.value.clone()))
        .collect();
    assert_eq!(dangling, synth.dangling, "seed {seed}: unresolved");
    let conn = analyze(&enforced, &AnalyzeOptions::default());
    assert_eq!(
        allowed_pairs(&conn),
        synth.edges,
        "seed {seed}: allowed pairs"
    );
}

#[test]
fn the_builder_finds_exactly_the_intended_call_graph() {
    for seed in 0..SEEDS {
        let synth = baseline_cluster(60, 4, 4, seed);
        assert!(!synth.edges.is_empty());
        check(&synth, seed);
    }
}

#[test]
fn manifests_read_through_the_loader_give_the_same_policies() {
    for seed in 0..4 {
        let synth = baseline_cluster(60, 4, 4, seed);
        let text = to_manifests(&synth);
        let loaded = kubefence_k8s::load::load_str(&text, "synth.yaml", &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.errors);
        let direct = enforce(&synth.cluster).0;
        let via_loader = enforce(&loaded.cluster).0;
        assert_eq!(via_loader.report, direct.report, "seed {seed}");
        assert_eq!(via_loader.policies.len(), direct.policies.len());
        for (a, b) in via_loader.policies.iter().zip(&direct.policies) {
            assert_eq!(a.policy, b.policy, "seed {seed}: {}", a.workload);
        }
    }
}

#[test]
fn nca_agrees_on_the_generated_policies() {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: needs nca (KUBEFENCE_SKIP_NCA=1)");
        return;
    }
    let nca_bin = nca::find_nca().unwrap_or_else(|e| panic!("{e}"));
    for seed in 0..2 {
        let synth = baseline_cluster(40, 3, 3, seed);
        let (generated, mut enforced) = enforce(&synth.cluster);
        let dns = kubefence_k8s::load::load_str(CLUSTER_DNS_MANIFEST, "dns", &Default::default());
        enforced.workloads.extend(dns.cluster.workloads);
        enforced.namespaces.extend(dns.cluster.namespaces);
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("baseline-synth")
            .join(format!("seed-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let policies: Vec<String> = generated
            .policies
            .iter()
            .map(|p| serde_saphyr::to_string(&kubefence_k8s::render::generated_policy(p)).unwrap())
            .collect();
        std::fs::write(
            dir.join("resources.yaml"),
            format!("{}---\n{CLUSTER_DNS_MANIFEST}", to_manifests(&synth)),
        )
        .unwrap();
        std::fs::write(dir.join("policies.yaml"), policies.join("---\n")).unwrap();
        let out = nca::run_connectivity(
            &nca_bin,
            &dir.join("policies.yaml"),
            &dir.join("resources.yaml"),
        )
        .unwrap();
        let edges = nca::parse_output(&out).unwrap();
        let conn = analyze(&enforced, &AnalyzeOptions::default());
        let mismatches = compare::compare(&conn, &edges);
        assert!(
            mismatches.is_empty(),
            "seed {seed} ({}):\n{}",
            dir.display(),
            compare::report(&mismatches, 20)
        );
    }
}
