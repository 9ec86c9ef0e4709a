//! Isolation profiles on a generated namespace, checked with the semantics
//! engine and with IBM's network-config-analyzer.
//!
//! The namespace holds a pool of sandbox pods of one template, its router,
//! an unrelated pod, a client in another namespace and the cluster DNS. For
//! each profile variant the policy is rendered to YAML exactly as the CLI
//! prints it and read back, then, pod by pod:
//! - a sandbox reaches every public address on any port (when the profile
//!   allows the public internet), and no blocked address at all;
//! - a sandbox reaches no other sandbox, the router, or the other pods;
//! - DNS is exactly what the profile says: cluster DNS on UDP and TCP 53
//!   only, or nothing of the cluster resolver;
//! - the router reaches the sandboxes; no other pod or address does;
//! - nca, reading the same YAML, agrees with the engine on every pair.
//!
//! nca is required (`scripts/install-nca.sh`); `KUBEFENCE_SKIP_NCA=1` skips
//! only the nca half, with a notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kubefence_core::engine::{AnalyzeOptions, Connectivity, analyze};
use kubefence_core::ipset::IpSet;
use kubefence_core::policy::Rule;
use kubefence_core::profile::{self, CustomRules, Dns, Profile, ProfileConfig};
use kubefence_core::selector::LabelSelector;
use kubefence_core::{Cluster, ConnSet, Protocol};
use kubefence_k8s::load::{self, LoadOptions};
use kubefence_k8s::render;
use kubefence_testkit::baseline_synth::CLUSTER_DNS_MANIFEST;
use kubefence_testkit::{compare, nca};

const SANDBOXES: usize = 4;
const DNS_ID: &str = "kube-system/Deployment/coredns";
const ROUTER_ID: &str = "sandboxes/Pod/sandbox-router";
const NEIGHBOUR_ID: &str = "sandboxes/Pod/notebook";
const CLIENT_ID: &str = "other/Pod/client";

fn pod(namespace: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {labels}\nspec:\n  containers:\n  - name: main\n    image: busybox\n    ports:\n    - {{containerPort: 8888}}\n"
    )
}

/// The generated namespace: a pool of sandboxes of template `python` (each
/// with its own name label), the router, a neighbour and a client.
fn namespace_manifests() -> String {
    let mut docs = vec![
        CLUSTER_DNS_MANIFEST.trim_end().to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sandboxes\n  labels: {kubernetes.io/metadata.name: sandboxes}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n  labels: {kubernetes.io/metadata.name: other}\n".to_string(),
        pod(
            "sandboxes",
            "sandbox-router",
            "{app.kubernetes.io/component: router}",
        ),
        pod("sandboxes", "notebook", "{app: notebook}"),
        pod("other", "client", "{app: client}"),
    ];
    for i in 0..SANDBOXES {
        docs.push(pod(
            "sandboxes",
            &format!("sandbox-{i}"),
            &format!("{{template: python, sandbox: s{i}}}"),
        ));
    }
    docs.join("\n---\n")
}

fn sandbox_ids() -> Vec<String> {
    (0..SANDBOXES)
        .map(|i| format!("sandboxes/Pod/sandbox-{i}"))
        .collect()
}

fn load_texts(texts: &[(&str, &str)]) -> Cluster {
    let opts = LoadOptions::default();
    let loaded = load::join(
        texts
            .iter()
            .map(|(label, text)| load::part_of_str(text, label, &opts))
            .collect(),
        &opts,
    );
    assert!(!loaded.has_errors(), "load errors: {:?}", loaded.errors);
    loaded.cluster
}

fn nca_or_skip() -> Option<PathBuf> {
    if std::env::var("KUBEFENCE_SKIP_NCA").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: the nca half of this test (KUBEFENCE_SKIP_NCA=1)");
        return None;
    }
    Some(nca::find_nca().unwrap_or_else(|e| panic!("{e}")))
}

fn dns_conns() -> ConnSet {
    ConnSet::port(Protocol::Udp, 53).union(&ConnSet::port(Protocol::Tcp, 53))
}

/// Builds the profile, renders it, reads it back with the namespace, and
/// checks every property; returns the analysis.
fn check(case: &str, profile: &Profile) -> Connectivity {
    let cfg = ProfileConfig::default();
    let built = profile::build(profile, &cfg).unwrap();
    let mut rendered = render::network_policy(&built.policy);
    rendered.metadata.labels = Some(built.labels.clone());
    let policy_yaml = serde_saphyr::to_string(&rendered).unwrap();
    let resources = namespace_manifests();
    let cluster = load_texts(&[
        ("resources.yaml", resources.as_str()),
        ("policy.yaml", policy_yaml.as_str()),
    ]);
    assert_eq!(cluster.policies.len(), 1, "{case}: the policy reads back");
    let conn = analyze(&cluster, &AnalyzeOptions::default());
    let idx = |id: &str| {
        conn.endpoint_index(id)
            .unwrap_or_else(|| panic!("{case}: no endpoint {id}"))
    };
    let blocked: IpSet = built.blocked.clone();
    let sandboxes = sandbox_ids();
    let mut public_checked = 0;
    for s in &sandboxes {
        let from = idx(s);
        for (e, endpoint) in conn.endpoints.iter().enumerate() {
            let allowed = conn.allowed(from, e);
            match &endpoint.addresses {
                Some(addresses) => {
                    if addresses.intersects(&blocked) {
                        assert!(
                            allowed.is_empty(),
                            "{case}: {s} reaches blocked {} on {allowed}",
                            endpoint.id
                        );
                    } else if profile.public_internet && profile.custom.is_none() {
                        assert!(
                            allowed.is_all(),
                            "{case}: {s} -> public {} only {allowed}",
                            endpoint.id
                        );
                        public_checked += 1;
                    }
                    // Nothing outside reaches a sandbox.
                    assert!(
                        conn.allowed(e, from).is_empty(),
                        "{case}: {} reaches {s}",
                        endpoint.id
                    );
                }
                None if endpoint.id == *s => {}
                None if endpoint.id == DNS_ID => {
                    let want = match profile.dns {
                        Dns::Cluster if profile.custom.is_none() => dns_conns(),
                        _ => ConnSet::none(),
                    };
                    assert_eq!(allowed, want, "{case}: {s} -> DNS");
                }
                None => assert!(
                    allowed.is_empty(),
                    "{case}: {s} reaches {} on {allowed}",
                    endpoint.id
                ),
            }
        }
        assert!(
            conn.allowed(idx(ROUTER_ID), from).is_all(),
            "{case}: the router reaches {s}"
        );
        for other in [NEIGHBOUR_ID, CLIENT_ID, DNS_ID] {
            assert!(
                conn.allowed(idx(other), from).is_empty(),
                "{case}: {other} reaches {s}"
            );
        }
        for other in &sandboxes {
            if other != s {
                assert!(
                    conn.allowed(idx(other), from).is_empty(),
                    "{case}: sandbox {other} reaches {s}"
                );
            }
        }
    }
    if profile.public_internet && profile.custom.is_none() {
        assert!(
            public_checked > 0,
            "{case}: some public endpoint was checked"
        );
    }

    if let Some(nca_bin) = nca_or_skip() {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("profiles")
            .join(case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resources.yaml"), &resources).unwrap();
        std::fs::write(dir.join("policies.yaml"), &policy_yaml).unwrap();
        let out = nca::run_connectivity(
            &nca_bin,
            &dir.join("policies.yaml"),
            &dir.join("resources.yaml"),
        )
        .unwrap();
        std::fs::write(dir.join("nca.txt"), &out).unwrap();
        let edges = nca::parse_output(&out).unwrap();
        let mismatches = compare::compare(&conn, &edges);
        assert!(
            mismatches.is_empty(),
            "{case}: kubefence and nca disagree (case in {}):\n{}",
            dir.display(),
            compare::report(&mismatches, 20)
        );
    }
    conn
}

fn python() -> Profile {
    Profile::new(
        "sandboxes",
        "python",
        LabelSelector::from_labels([("template".to_string(), "python".to_string())].into()),
    )
}

/// Public addresses that the engine and nca must both see as reachable on
/// any port from a sandbox under the default profile.
#[test]
fn default_profile_public_internet_router_in_cluster_dns() {
    let conn = check("default", &python());
    let s = conn.endpoint_index("sandboxes/Pod/sandbox-0").unwrap();
    let google = conn
        .endpoints
        .iter()
        .position(|e| {
            e.addresses
                .as_ref()
                .is_some_and(|a| a.contains("8.8.8.8".parse().unwrap()))
        })
        .unwrap();
    assert!(conn.allowed(s, google).is_all());
}

#[test]
fn dns_none_reaches_no_resolver_in_the_cluster() {
    let mut p = python();
    p.dns = Dns::None;
    check("dns-none", &p);
}

#[test]
fn dns_public_reaches_only_the_listed_resolvers_on_53() {
    let mut p = python();
    p.public_internet = false;
    p.dns = Dns::Public {
        resolvers: vec!["8.8.8.8".parse().unwrap()],
    };
    let conn = check("dns-public", &p);
    let s = conn.endpoint_index("sandboxes/Pod/sandbox-0").unwrap();
    for (e, endpoint) in conn.endpoints.iter().enumerate() {
        let Some(addresses) = &endpoint.addresses else {
            continue;
        };
        let allowed = conn.allowed(s, e);
        if addresses.contains("8.8.8.8".parse().unwrap()) {
            assert_eq!(allowed, dns_conns(), "{}", endpoint.id);
        } else {
            assert!(allowed.is_empty(), "{} {allowed}", endpoint.id);
        }
    }
}

/// A custom policy that tries `egress: [{}]` (and lets the router in) is
/// wrapped and narrowed: the public internet, nothing private, no pod.
#[test]
fn custom_allow_all_egress_stays_guarded() {
    let mut p = python();
    p.custom = Some(CustomRules {
        ingress: vec![Rule {
            peers: vec![profile::router_peer()],
            ports: vec![],
        }],
        egress: vec![Rule::default()],
    });
    let conn = check("custom-egress-all", &p);
    let s = conn.endpoint_index("sandboxes/Pod/sandbox-0").unwrap();
    let google = conn
        .endpoints
        .iter()
        .position(|e| {
            e.addresses
                .as_ref()
                .is_some_and(|a| a.contains("8.8.8.8".parse().unwrap()))
        })
        .unwrap();
    assert!(conn.allowed(s, google).is_all());
}
