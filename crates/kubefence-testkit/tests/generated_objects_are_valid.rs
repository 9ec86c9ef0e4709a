//! `generate` must never emit an object that the API server would reject:
//! every baseline policy of the demo applications and of synthetic
//! clusters (names up to the API server's limits included) has a valid name,
//! namespace, labels, annotation keys and selectors, checked with
//! kubefence-core's `validation` (apimachinery's rules), and reads back
//! through the strict loader without an error, as `kubectl apply` would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use kubefence_core::Cluster;
use kubefence_core::baseline::{self, BaselineConfig, Scope};
use kubefence_core::policy::Peer;
use kubefence_core::validation::{self, Invalid};
use kubefence_k8s::load::{LoadOptions, load_str};
use kubefence_k8s::render;
use kubefence_testkit::baseline_synth::baseline_cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every rule the API server applies to a generated policy, broken.
fn invalid_fields(p: &baseline::GeneratedPolicy) -> Vec<Invalid> {
    let np = &p.policy;
    let mut out = validation::object_meta(
        "NetworkPolicy",
        &np.name,
        Some(&np.namespace),
        &p.labels,
        &p.annotations,
    );
    out.extend(validation::selector(&np.pod_selector));
    for rule in np.ingress.iter().chain(&np.egress) {
        for peer in &rule.peers {
            if let Peer::Pods {
                namespace_selector,
                pod_selector,
            } = peer
            {
                for s in namespace_selector.iter().chain(pod_selector) {
                    out.extend(validation::selector(s));
                }
            }
        }
    }
    out
}

/// Generates the baseline of `cluster` and checks every policy; returns
/// how many were checked.
fn check_generated(cluster: &Cluster, what: &str) -> usize {
    let generated = baseline::build(cluster, &BaselineConfig::default(), &Scope::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    for p in &generated.policies {
        let invalid = invalid_fields(p);
        assert!(
            invalid.is_empty(),
            "{what}: {} would be rejected: {invalid:?}",
            p.workload
        );
        let yaml = serde_saphyr::to_string(&render::generated_policy(p)).unwrap();
        let loaded = load_str(&yaml, "generated.yaml", &LoadOptions::default());
        assert!(
            !loaded.has_errors(),
            "{what}: {} read back with errors: {:?}\n{yaml}",
            p.workload,
            loaded.errors
        );
        assert_eq!(
            loaded.cluster.policies,
            std::slice::from_ref(&p.policy),
            "{what}"
        );
    }
    generated.policies.len()
}

#[test]
fn demo_applications_get_only_valid_policies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for demo in [
        "examples/online-boutique/kubernetes-manifests.yaml",
        "testdata/third-party/demo-sock-shop/deploy/kubernetes/complete-demo.yaml",
        "testdata/third-party/demo-aks-store/aks-store-all-in-one.yaml",
        "testdata/guestbook/guestbook.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(demo)).unwrap();
        let loaded = load_str(&text, demo, &LoadOptions::default());
        assert!(!loaded.has_errors(), "{demo}: {:?}", loaded.errors);
        assert!(check_generated(&loaded.cluster, demo) >= 3, "{demo}");
    }
}

#[test]
fn synthetic_clusters_get_only_valid_policies() {
    for seed in 0..8 {
        let synth = baseline_cluster(40, 4, 3, seed);
        assert!(check_generated(&synth.cluster, &format!("seed {seed}")) >= 10);
    }
}

/// A DNS-1123 label of `len` characters (1..=63).
fn random_label(rng: &mut StdRng, len: usize) -> String {
    const INNER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    const EDGE: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|i| {
            let set = if i == 0 || i + 1 == len { EDGE } else { INNER };
            char::from(set[rng.random_range(0..set.len())])
        })
        .collect()
}

/// A DNS-1123 subdomain of about `len` characters (at most 253).
fn random_subdomain(rng: &mut StdRng, len: usize) -> String {
    let mut out = String::new();
    while out.len() + 2 <= len {
        if !out.is_empty() {
            out.push('.');
        }
        let room = (len - out.len()).min(63);
        let label_len = rng.random_range(1..=room);
        out.push_str(&random_label(rng, label_len));
    }
    if out.is_empty() {
        out = random_label(rng, 1);
    }
    out
}

#[test]
fn names_at_the_api_servers_limits_give_valid_policies() {
    for seed in 0..16 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut synth = baseline_cluster(12, 2, 2, seed);
        // Long namespaces (DNS-1123 labels) and long workload names
        // (subdomains with dots, digits first, up to 253 characters).
        let renamed: Vec<(String, String)> = synth
            .cluster
            .namespaces
            .keys()
            .map(|ns| (ns.clone(), random_label(&mut rng, 63)))
            .collect();
        for w in &mut synth.cluster.workloads {
            let len = [1, 62, 63, 64, 100, 253][rng.random_range(0..6)];
            w.name = random_subdomain(&mut rng, len);
            assert!(
                validation::dns1123_subdomain(&w.name).is_empty(),
                "{}",
                w.name
            );
        }
        for (old, new) in renamed {
            for w in synth
                .cluster
                .workloads
                .iter_mut()
                .filter(|w| w.namespace == old)
            {
                w.namespace = new.clone();
            }
            for s in synth
                .cluster
                .services
                .iter_mut()
                .filter(|s| s.namespace == old)
            {
                s.namespace = new.clone();
            }
            if let Some(mut n) = synth.cluster.namespaces.remove(&old) {
                n.name = new.clone();
                synth.cluster.namespaces.insert(new, n);
            }
        }
        check_generated(&synth.cluster, &format!("long names, seed {seed}"));
    }
}

#[test]
fn quarantine_names_and_labels_are_valid_for_any_target_and_audit() {
    use kubefence_core::WorkloadKind;
    use kubefence_core::quarantine::{self, Audit, Target};
    let texts = [
        "alice@example.com",
        "system:serviceaccount:sec:scanner",
        "ALERT 42: crypto-miner détecté",
        "",
        "-",
        "a_b.c",
    ];
    for seed in 0..64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let len = [1, 40, 63, 64, 200, 253][rng.random_range(0..6)];
        let namespace_len = rng.random_range(1..=63);
        let target = Target::new(
            [
                WorkloadKind::Deployment,
                WorkloadKind::StatefulSet,
                WorkloadKind::CronJob,
                WorkloadKind::Pod,
            ][rng.random_range(0..4)],
            random_label(&mut rng, namespace_len),
            random_subdomain(&mut rng, len),
        );
        let audit = Audit {
            reason: texts[rng.random_range(0..texts.len())].to_string(),
            finding: Some(texts[rng.random_range(0..texts.len())].to_string()),
            requester: texts[rng.random_range(0..texts.len())].to_string(),
            time: "2026-11-24T23:40:00Z".to_string(),
        };
        let labels = quarantine::labels(&target, &audit);
        let annotations = quarantine::annotations(&target, &audit);
        for name in [target.policy_name(), target.cluster_scoped_name()] {
            let invalid = validation::object_meta(
                "NetworkPolicy",
                &name,
                Some(&target.namespace),
                &labels,
                &annotations,
            );
            assert!(invalid.is_empty(), "{target}: {invalid:?}");
            assert!(name.len() <= 63, "{name}");
        }
    }
}
