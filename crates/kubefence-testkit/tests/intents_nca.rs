//! The NetworkPolicies the intent adapters write, checked by an independent
//! analyzer: on generated namespaces (the bound workload, a decoy that
//! matches only the binding's matchLabels, peers in other namespaces, the
//! cluster DNS, a monitoring namespace), network-config-analyzer must find
//! the same connectivity as kubefence's engine, whose meaning per intent is
//! asserted in kubefence-core's tests/intents.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use kubefence_core::engine::{AnalyzeOptions, analyze};
use kubefence_core::intent::{self, Intent, Options, Subject};
use kubefence_core::policy::PolicyTypes;
use kubefence_core::ruleset::Engine;
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use kubefence_k8s::adapters;
use kubefence_testkit::baseline_synth::CLUSTER_DNS_MANIFEST;
use kubefence_testkit::{compare, nca};

fn deployment(ns: &str, name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let labels = labels.join(", ");
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{{labels}}}}}\n  template:\n    metadata: {{labels: {{{labels}}}}}\n    spec:\n      containers:\n      - name: main\n        image: x\n        ports:\n        - {{name: http, containerPort: 8080, protocol: TCP}}\n        - {{name: metrics, containerPort: 9090, protocol: TCP}}\n"
    )
}

fn namespace(ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{kubernetes.io/metadata.name: {ns}}}}}\n"
    )
}

fn resources(namespaces: usize) -> String {
    let mut out = String::from(CLUSTER_DNS_MANIFEST);
    for n in 0..namespaces {
        let ns = format!("ns{n}");
        out.push_str(&namespace(&ns));
        out.push_str(&deployment(&ns, "peer", &[("app", "peer")]));
    }
    out.push_str(&deployment("ns0", "w0", &[("app", "w0"), ("tier", "web")]));
    out.push_str(&deployment(
        "ns0",
        "w0-batch",
        &[("app", "w0"), ("tier", "batch")],
    ));
    out.push_str(&namespace("monitoring"));
    out.push_str(&deployment(
        "monitoring",
        "prometheus",
        &[("app", "prometheus")],
    ));
    out
}

fn intent(id: &str, params: &[(&str, &[&str])]) -> Intent {
    Intent {
        name: id.to_lowercase(),
        id: id.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        ..Intent::default()
    }
}

/// The NetworkPolicy YAML of the intents bound together to ns0's w0.
fn policies(intents: &[Intent]) -> String {
    let subject = Subject {
        binding: "bind".into(),
        namespace: "ns0".into(),
        selector: LabelSelector::new(
            Labels::from([("app".to_string(), "w0".to_string())]),
            vec![Requirement::new("tier", Operator::In, ["web"]).unwrap()],
        ),
    };
    let sets: Vec<_> = intents
        .iter()
        .map(|i| intent::resolve(i, &subject, &Options::default()).unwrap())
        .collect();
    let opts = adapters::Options {
        network_policy: kubefence_core::ruleset::NetworkPolicyOptions {
            isolated_elsewhere: PolicyTypes {
                ingress: sets.iter().any(|s| s.ingress.isolate),
                egress: sets.iter().any(|s| s.egress.isolate),
            },
        },
        ..adapters::Options::default()
    };
    let mut out = String::new();
    for set in &sets {
        let o = adapters::render(Engine::NetworkPolicy, set, &opts)
            .unwrap()
            .object;
        writeln!(out, "---\n{}", serde_saphyr::to_string(&o).unwrap()).unwrap();
    }
    out
}

#[test]
fn nca_agrees_on_every_network_intent() {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: needs nca (KUBEFENCE_SKIP_NCA=1)");
        return;
    }
    let nca_bin = nca::find_nca().unwrap_or_else(|e| panic!("{e}"));
    let cases: Vec<(&str, Vec<Intent>)> = vec![
        ("dnsOnly", vec![intent("dnsOnly", &[])]),
        (
            "denyExternalEgress",
            vec![intent("denyExternalEgress", &[])],
        ),
        (
            "denyIngressFromOtherNamespaces",
            vec![intent("denyIngressFromOtherNamespaces", &[])],
        ),
        ("isolateNamespace", vec![intent("isolateNamespace", &[])]),
        (
            "denyMetadataAccess",
            vec![intent("denyMetadataAccess", &[])],
        ),
        (
            "allowFromMonitoring",
            vec![
                intent("isolateNamespace", &[]),
                intent(
                    "allowFromMonitoring",
                    &[("podLabels", &["app=prometheus"]), ("ports", &["9090"])],
                ),
            ],
        ),
    ];
    for namespaces in [2, 3] {
        let resources = resources(namespaces);
        for (name, intents) in &cases {
            let policies = policies(intents);
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("intents-nca")
                .join(format!("{name}-{namespaces}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("resources.yaml"), &resources).unwrap();
            std::fs::write(dir.join("policies.yaml"), &policies).unwrap();
            let loaded = kubefence_k8s::load::load_str(
                &format!("{resources}{policies}"),
                "intents.yaml",
                &Default::default(),
            );
            assert!(!loaded.has_errors(), "{name}: {:?}", loaded.errors);
            assert_eq!(loaded.cluster.policies.len(), intents.len(), "{name}");
            let ours = analyze(&loaded.cluster, &AnalyzeOptions::default());
            let out = nca::run_connectivity(
                &nca_bin,
                &dir.join("policies.yaml"),
                &dir.join("resources.yaml"),
            )
            .unwrap();
            let edges = nca::parse_output(&out).unwrap();
            let mismatches = compare::compare(&ours, &edges);
            assert!(
                mismatches.is_empty(),
                "{name} ({}):\n{}",
                dir.display(),
                compare::report(&mismatches, 20)
            );
        }
    }
}
