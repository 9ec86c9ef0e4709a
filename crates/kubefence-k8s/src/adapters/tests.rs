#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubefence_core::intent::{self, CATALOGUE, Intent, Options as IntentOptions, Subject};
use kubefence_core::ruleset::{Engine, RuleSet};
use kubefence_core::selector::{LabelSelector, Labels, Operator, Requirement};
use serde_json::{Value, json};

use super::*;

fn subject(expressions: bool) -> Subject {
    Subject {
        binding: "web".into(),
        namespace: "shop".into(),
        selector: LabelSelector::new(
            Labels::from([("app".to_string(), "api".to_string())]),
            if expressions {
                vec![Requirement::new("tier", Operator::In, ["web"]).unwrap()]
            } else {
                Vec::new()
            },
        ),
    }
}

fn rules(id: &str, params: &[(&str, &[&str])], expressions: bool) -> RuleSet {
    let intent = Intent {
        name: id.to_lowercase(),
        id: id.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        ..Intent::default()
    };
    intent::resolve(&intent, &subject(expressions), &IntentOptions::default()).unwrap()
}

fn spec(engine: Engine, r: &RuleSet) -> Value {
    render(engine, r, &Options::default()).unwrap().object["spec"].clone()
}

#[test]
fn every_object_carries_kind_name_labels_and_no_owner() {
    for entry in CATALOGUE {
        let params: &[(&str, &[&str])] = if entry.id == "egressOnlyToFQDNs" {
            &[("fqdns", &["api.example.com"])]
        } else {
            &[]
        };
        let r = rules(entry.id, params, false);
        let mut rendered = 0;
        for engine in Engine::ALL {
            let Ok(out) = render(engine, &r, &Options::default()) else {
                continue;
            };
            rendered += 1;
            let o = out.object;
            let a = api(engine);
            assert_eq!(o["apiVersion"], a.api_version(), "{} {engine}", entry.id);
            assert_eq!(o["kind"], a.kind);
            assert_eq!(o["metadata"]["name"], object_name(engine, &r));
            assert_eq!(o["metadata"]["namespace"].is_null(), !a.namespaced);
            assert_eq!(o["metadata"]["labels"]["kubefence.dev/source"], "intent");
            assert!(o["metadata"]["ownerReferences"].is_null());
        }
        assert!(rendered > 0, "{}: no engine", entry.id);
    }
}

#[test]
fn cilium_fqdns_come_with_dns_visibility() {
    let r = rules(
        "egressOnlyToFQDNs",
        &[
            ("fqdns", &["api.example.com", "*.cdn.example.com"]),
            ("ports", &["443"]),
        ],
        false,
    );
    let s = spec(Engine::Cilium, &r);
    let egress = s["egress"].as_array().unwrap();
    let dns = &egress[0];
    assert_eq!(dns["toEndpoints"][0]["matchLabels"]["k8s-app"], "kube-dns");
    assert_eq!(
        dns["toEndpoints"][0]["matchLabels"]["io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"],
        "kube-system"
    );
    assert_eq!(
        dns["toPorts"][0]["rules"]["dns"],
        json!([{"matchPattern": "*"}])
    );
    assert_eq!(
        egress[1]["toFQDNs"],
        json!([{"matchName": "api.example.com"}])
    );
    assert_eq!(
        egress[2]["toFQDNs"],
        json!([{"matchPattern": "*.cdn.example.com"}])
    );
    assert_eq!(
        egress[1]["toPorts"][0]["ports"],
        json!([{"port": "443", "protocol": "TCP"}])
    );
    assert!(
        s.get("enableDefaultDeny").is_none(),
        "isolated: Cilium's default deny"
    );
    // The engines that cannot name hosts say so.
    for engine in [
        Engine::NetworkPolicy,
        Engine::ClusterNetworkPolicy,
        Engine::AdminNetworkPolicy,
    ] {
        let err = render(engine, &r, &Options::default()).unwrap_err();
        assert!(err.reason.contains("DNS names"), "{engine}: {err}");
    }
}

#[test]
fn deny_metadata_is_a_deny_without_isolation() {
    let r = rules("denyMetadataAccess", &[], false);
    let s = spec(Engine::Cilium, &r);
    assert_eq!(s["enableDefaultDeny"], json!({"egress": false}));
    assert_eq!(
        s["egressDeny"][0]["toCIDRSet"],
        json!([{"cidr": "169.254.169.254/32"}])
    );
    assert_eq!(
        s["egressDeny"][1]["toCIDRSet"],
        json!([{"cidr": "fd00:ec2::254/128"}])
    );
    assert!(s.get("egress").is_none());
    let cnp = spec(Engine::ClusterNetworkPolicy, &r);
    assert_eq!(
        cnp["egress"],
        json!([{
            "name": "kubefence-intent-denymetadataaccess-deny-metadata-egress",
            "action": "Deny",
            "to": [{"networks": ["169.254.169.254/32"]}, {"networks": ["fd00:ec2::254/128"]}],
        }])
    );
    assert!(cnp.get("ingress").is_none());
}

#[test]
fn tiered_engines_allow_then_deny_the_rest() {
    let r = rules("dnsOnly", &[], true);
    let cnp = spec(Engine::ClusterNetworkPolicy, &r);
    let anp = spec(Engine::AdminNetworkPolicy, &r);
    assert_eq!(cnp["tier"], "Admin");
    assert!(anp.get("tier").is_none());
    let actions = |s: &Value| -> Vec<String> {
        s["egress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(actions(&cnp), ["Accept", "Deny"]);
    assert_eq!(actions(&anp), ["Allow", "Deny"]);
    assert_eq!(
        cnp["egress"][0]["protocols"],
        json!([{"tcp": {"destinationPort": {"number": 53}}}, {"udp": {"destinationPort": {"number": 53}}}])
    );
    assert_eq!(
        anp["egress"][0]["ports"],
        json!([{"portNumber": {"protocol": "TCP", "port": 53}}, {"portNumber": {"protocol": "UDP", "port": 53}}])
    );
    // The full selector, matchExpressions included.
    assert_eq!(
        cnp["subject"]["pods"]["podSelector"],
        json!({"matchLabels": {"app": "api"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]})
    );
    let baseline = render(
        Engine::ClusterNetworkPolicy,
        &r,
        &Options {
            tier: Tier::Baseline,
            priority: 500,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(baseline.object["spec"]["tier"], "Baseline");
    assert_eq!(baseline.object["spec"]["priority"], 500);
}

#[test]
fn ingress_isolation_in_tiered_engines_warns_about_outside_sources() {
    let r = rules("denyIngressFromOtherNamespaces", &[], false);
    let out = render(Engine::ClusterNetworkPolicy, &r, &Options::default()).unwrap();
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("outside the cluster")),
        "{:?}",
        out.warnings
    );
    assert_eq!(
        out.object["spec"]["ingress"][0]["from"],
        json!([{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}])
    );
}

#[test]
fn privileged_ports_ranges() {
    let r = rules("denyPrivilegedPorts", &[], false);
    let cnp = spec(Engine::ClusterNetworkPolicy, &r);
    assert_eq!(
        cnp["ingress"][0]["protocols"][0],
        json!({"tcp": {"destinationPort": {"range": {"start": 1, "end": 1023}}}})
    );
    let cilium = spec(Engine::Cilium, &r);
    assert_eq!(cilium["enableDefaultDeny"], json!({"ingress": false}));
    assert_eq!(
        cilium["ingressDeny"][0]["toPorts"][0]["ports"][0],
        json!({"port": "1", "protocol": "TCP", "endPort": 1023})
    );
    assert!(render(Engine::NetworkPolicy, &r, &Options::default()).is_err());
}

#[test]
fn kubearmor_writes_nimbus_rules_and_refuses_expressions() {
    let r = rules("unAuthorizedSaTokenAccess", &[], false);
    let s = spec(Engine::KubeArmor, &r);
    assert_eq!(s["selector"], json!({"matchLabels": {"app": "api"}}));
    assert_eq!(
        s["file"],
        json!({"matchDirectories": [{"dir": "/run/secrets/kubernetes.io/serviceaccount/", "recursive": true}]})
    );
    assert_eq!(s["action"], "Block");
    let dns = spec(Engine::KubeArmor, &rules("dnsManipulation", &[], false));
    assert_eq!(
        dns["file"],
        json!({"matchPaths": [{"path": "/etc/resolv.conf", "readOnly": true}]})
    );
    let with_expr = rules("pkgMgrs", &[], true);
    let err = render(Engine::KubeArmor, &with_expr, &Options::default()).unwrap_err();
    assert!(err.reason.contains("matchLabels only"), "{err}");
    // A network engine finds nothing in a process intent, and says so.
    let err = render(
        Engine::NetworkPolicy,
        &rules("pkgMgrs", &[], false),
        &Options::default(),
    )
    .unwrap_err();
    assert!(err.reason.contains("no network rules"));
}
