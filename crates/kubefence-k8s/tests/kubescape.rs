//! Kubescape's learned-policy objects (testdata/third-party/kubescape, from
//! kubescape/storage and kubescape/node-agent): every example is read and
//! converted, and what it says is checked against the file itself; the
//! strict reading, the status rules (K1/K2 of CASES.md), the group
//! conversion and the core round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kubefence_core::Protocol;
use kubefence_core::learn::{Neighbor, NeighborPeer, Neighborhood, ObservedPort};
use kubefence_core::selector::LabelSelector;
use kubefence_k8s::crd::learned::{self, OtherGroup};
use kubefence_k8s::learn::generated::generated_policy;
use kubefence_k8s::learn::neighborhood::{
    check_legacy_status, check_status, known_servers, legacy_neighbors, neighborhood,
    neighborhood_object,
};
use kubefence_k8s::learn::objects::{Group, KUBEFENCE_API_VERSION};
use kubefence_k8s::learn::read::{LearnedInput, read, read_str};
use kubefence_k8s::load::Source;
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/third-party/kubescape")
        .join(path)
}

fn read_file(path: &str) -> LearnedInput {
    let input = read(&[Source::Path(data(path))]);
    assert!(input.errors.is_empty(), "{path}: {:?}", input.errors);
    input
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector::from_labels(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn tcp(port: u16) -> ObservedPort {
    ObservedPort {
        protocol: Protocol::Tcp,
        port,
        name: None,
    }
}

fn address(ip: &str, dns: &[&str]) -> NeighborPeer {
    NeighborPeer::Address {
        ip: ip.parse().unwrap(),
        dns_names: dns.iter().map(|s| s.to_string()).collect(),
    }
}

fn neighbor(peer: NeighborPeer, ports: &[ObservedPort]) -> Neighbor {
    Neighbor {
        peer,
        ports: ports.iter().cloned().collect(),
        evidence: None,
    }
}

#[test]
fn artifact_network_neighborhood_converts_to_its_neighbours() {
    let input = read_file("artifacts/networkneighborhood/01-example.yaml");
    assert_eq!(input.neighborhoods.len(), 1);
    let placed = &input.neighborhoods[0];
    assert_eq!(placed.group, Group::Kubescape);
    let n = neighborhood(&placed.object, "default").unwrap();
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    let n = n.value;
    assert_eq!(n.workload.kind, "deployment");
    assert_eq!(n.workload.name, "nginx");
    assert_eq!(n.workload.namespace, "kubescape");
    assert_eq!(n.selector, sel(&[("app", "nginx")]));
    assert_eq!(
        n.ingress,
        vec![neighbor(
            NeighborPeer::Pods {
                namespace_selector: Some(sel(&[("name", "kubescape")])),
                pod_selector: Some(sel(&[("app", "kubescape-ui")])),
            },
            &[tcp(6379)]
        )]
    );
    assert_eq!(
        n.egress,
        vec![neighbor(
            address("123.5.2.3", &["stripe.com"]),
            &[tcp(5978)]
        )]
    );
    // K2: `ready` is not a status Kubescape's current generator accepts.
    let refused = check_status(&placed.object.metadata).unwrap_err();
    assert!(refused.message.contains("\"ready\""), "{refused}");
}

#[test]
fn artifact_network_neighbors_of_the_earlier_kind_convert_too() {
    let input = read_file("artifacts/networkneighborses/01-example.yaml");
    assert_eq!(input.legacy_neighbors.len(), 1);
    let object = &input.legacy_neighbors[0].object;
    let n = legacy_neighbors(object, "default").unwrap().value;
    assert_eq!(n.workload.name, "nginx");
    assert_eq!(n.ingress.len(), 1);
    assert_eq!(
        n.egress,
        vec![neighbor(
            address("123.5.2.3", &["stripe.com"]),
            &[tcp(5978)]
        )]
    );
    // Its status is in a plain `status` annotation, which is not the
    // kubescape.io/status key: no policy.
    assert!(check_legacy_status(&object.metadata).is_err());
}

#[test]
fn artifact_known_servers_become_named_cidrs() {
    let input = read_file("artifacts/knownservers/01-example.yaml");
    assert_eq!(input.known_servers.len(), 1);
    let servers = known_servers(&input.known_servers[0].object).unwrap();
    let got: Vec<(String, String, String, String)> = servers
        .iter()
        .map(|s| {
            (
                s.object.clone(),
                s.name.clone(),
                s.server.clone(),
                s.ip_block.to_string(),
            )
        })
        .collect();
    // The file writes 12.3.4.23/24 and 190.56.3.2/16: the same addresses as
    // their networks.
    assert_eq!(
        got,
        [
            ("github", "github-workflows", "github.com", "12.3.4.0/24"),
            (
                "github",
                "github-repositories",
                "github.com",
                "190.56.0.0/16"
            ),
        ]
        .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
    );
}

#[test]
fn artifact_generated_network_policy_reads_as_a_policy() {
    // Kubescape's example has no apiVersion at all.
    let input = read_file("artifacts/generatednetworkpolicies/01-example.yaml");
    assert_eq!(input.generated.len(), 1);
    let (policy, refs) = generated_policy(&input.generated[0].object, "default").unwrap();
    assert_eq!(policy.namespace, "default");
    assert_eq!(policy.name, "deployment-nginx");
    assert_eq!(policy.pod_selector, sel(&[("app", "nginx")]));
    assert!(policy.policy_types.ingress && policy.policy_types.egress);
    assert_eq!(policy.ingress.len(), 1);
    assert_eq!(policy.egress.len(), 1);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].ip_block.to_string(), "123.5.2.3/32");
    assert_eq!(refs[0].original_ip, "123.5.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(refs[0].dns.as_deref(), Some("stripe.com"));
    assert_eq!(refs[0].name.as_deref(), Some("stripe.com"));
    assert_eq!(refs[0].server, None);
}

#[test]
fn node_agent_neighborhoods_without_neighbours_convert_to_empty_lists() {
    for (file, name) in [
        (
            "node-agent/collection_networkneighborhood.json",
            "collection",
        ),
        ("node-agent/nginx_networkneighborhood.json", "nginx"),
    ] {
        let input = read_file(file);
        assert_eq!(input.neighborhoods.len(), 1, "{file}");
        let object = &input.neighborhoods[0].object;
        check_status(&object.metadata).unwrap();
        let n = neighborhood(object, "shop").unwrap().value;
        assert_eq!(n.workload.kind, "Deployment", "{file}");
        assert_eq!(n.workload.name, name, "{file}");
        // Neither a workload-namespace label nor a namespace: the default.
        assert_eq!(n.workload.namespace, "shop", "{file}");
        assert_eq!(n.selector, sel(&[("app", name)]), "{file}");
        assert!(n.ingress.is_empty() && n.egress.is_empty(), "{file}");
    }
}

#[test]
fn node_agent_user_defined_neighborhood_is_generated_from_once_its_template_is_filled() {
    let text = std::fs::read_to_string(data("node-agent/known-network-neighborhood.yaml")).unwrap();
    // As the file's usage says: sed "s/{{NAMESPACE}}/$NS/g".
    let filled = text.replace("{{NAMESPACE}}", "team-a");
    let input = read_str(&filled, "known-network-neighborhood.yaml");
    assert!(input.errors.is_empty(), "{:?}", input.errors);
    let object = &input.neighborhoods[0].object;
    // K1: managed-by User.
    check_status(&object.metadata).unwrap();
    let n = neighborhood(object, "default").unwrap().value;
    assert_eq!(n.workload.namespace, "team-a");
    assert_eq!(n.workload.name, "curl-fusioncore-deployment");
    assert!(n.ingress.is_empty());
    // `dns` and `dnsNames` both say fusioncore.ai. (the root dot dropped).
    assert_eq!(
        n.egress,
        vec![neighbor(
            address("162.0.217.171", &["fusioncore.ai"]),
            &[tcp(80)]
        )]
    );
    // Unfilled, the template's namespace is not a namespace.
    let raw = read_str(&text, "known-network-neighborhood.yaml");
    assert!(raw.neighborhoods.is_empty());
    assert!(
        raw.errors
            .iter()
            .any(|e| e.location.field.as_deref() == Some("metadata.namespace")),
        "{:?}",
        raw.errors
    );
}

/// Every neighbour of Kubescape's big test file (181 ingress, 62 egress
/// entries) is in the conversion with all its ports, checked against the
/// JSON read independently.
#[test]
fn big_network_neighbors_keeps_every_neighbour_and_port() {
    let path = "v1-testdata/BigNetworkNeighbors.json";
    let input = read_file(path);
    assert_eq!(input.legacy_neighbors.len(), 1);
    let object = &input.legacy_neighbors[0].object;
    check_legacy_status(&object.metadata).unwrap();
    let n = legacy_neighbors(object, "default").unwrap();
    let n = n.value;
    assert_eq!(n.workload.namespace, "antimalware-services");
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(data(path)).unwrap()).unwrap();
    let mut checked = 0;
    for (direction, converted) in [("ingress", &n.ingress), ("egress", &n.egress)] {
        for entry in raw["spec"][direction].as_array().unwrap() {
            let ports: BTreeSet<(String, u16)> = entry["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["protocol"].as_str().unwrap().to_string(),
                        u16::try_from(p["port"].as_u64().unwrap()).unwrap(),
                    )
                })
                .collect();
            let ip = entry["ipAddress"].as_str().unwrap_or_default();
            let matches = |peer: &NeighborPeer| match peer {
                NeighborPeer::Address { ip: a, .. } => !ip.is_empty() && a.to_string() == ip,
                NeighborPeer::Pods { pod_selector, .. } => {
                    ip.is_empty()
                        && entry["podSelector"]["matchLabels"]
                            .as_object()
                            .is_some_and(|labels| {
                                pod_selector.as_ref().is_some_and(|s| {
                                    labels.iter().all(|(k, v)| {
                                        s.match_labels.get(k).map(String::as_str) == v.as_str()
                                    })
                                })
                            })
                }
                NeighborPeer::Reserved(_) => false,
            };
            let found = converted
                .iter()
                .find(|c| {
                    matches(&c.peer)
                        && ports.iter().all(|(proto, port)| {
                            c.ports
                                .iter()
                                .any(|p| p.protocol.as_str() == proto && p.port == *port)
                        })
                })
                .unwrap_or_else(|| panic!("{direction} entry not converted: {entry}"));
            assert!(found.evidence.is_none());
            checked += 1;
        }
    }
    assert_eq!(checked, 181 + 62);
}

#[test]
fn files_hold_one_object_a_list_or_a_bare_array() {
    let nn = r#"{"apiVersion": "spdx.softwarecomposition.kubescape.io/v1beta1", "kind": "NetworkNeighborhood",
        "metadata": {"name": "deployment-a", "namespace": "shop", "annotations": {"kubescape.io/status": "completed"},
          "labels": {"kubescape.io/workload-kind": "Deployment", "kubescape.io/workload-name": "a"}},
        "spec": {"matchLabels": {"app": "a"}, "containers": [{"name": "a", "ingress": [], "egress": []}]}}"#;
    let ks = r#"{"apiVersion": "kubefence.dev/v1alpha1", "kind": "KnownServer", "metadata": {"name": "k"},
        "spec": [{"ipBlock": "10.0.0.0/8", "name": "corp", "server": "corp.example"}]}"#;
    let array = format!("[{nn}, {ks}]");
    let list = format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{nn}, {ks}]}}"#);
    for (label, text) in [("array", array), ("list", list)] {
        let input = read_str(&text, label);
        assert!(input.errors.is_empty(), "{label}: {:?}", input.errors);
        assert_eq!(input.neighborhoods.len(), 1, "{label}");
        assert_eq!(input.known_servers.len(), 1, "{label}");
        assert_eq!(input.known_servers[0].group, Group::Kubefence, "{label}");
        assert_eq!(
            input.neighborhoods[0].location.item.as_deref(),
            Some(if label == "array" { "[0]" } else { "items[0]" })
        );
    }
    let one = read_str(nn, "one");
    assert_eq!(one.neighborhoods.len(), 1);
}

#[test]
fn unknown_fields_are_errors_with_their_path_and_a_suggestion() {
    let text = r#"
apiVersion: spdx.softwarecomposition.kubescape.io/v1beta1
kind: NetworkNeighborhood
metadata:
  name: deployment-a
  labels: {kubescape.io/workload-kind: Deployment, kubescape.io/workload-name: a}
spec:
  matchLabels: {app: a}
  containers:
  - name: a
    egress:
    - type: internal
      podSelectr: {matchLabels: {app: b}}
      ports: [{name: TCP-80, protocol: TCP, port: 80}]
"#;
    let input = read_str(text, "nn.yaml");
    assert!(
        input.neighborhoods.is_empty(),
        "a typo must not read as a neighbour without peers"
    );
    let messages: Vec<String> = input.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "nn.yaml: document 1 (NetworkNeighborhood deployment-a): spec.containers[0].egress[0].podSelectr: \
          unknown field `podSelectr`: did you mean `podSelector`?"
        ]
    );
}

#[test]
fn other_kinds_are_skipped_not_read() {
    let input = read_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
         apiVersion: spdx.softwarecomposition.kubescape.io/v1beta1\nkind: ApplicationProfile\nmetadata: {name: y}\n",
        "mixed.yaml",
    );
    assert!(input.is_empty());
    assert_eq!(input.skipped.len(), 2);
    assert!(input.errors.is_empty());
}

fn with_status(
    annotations: &[(&str, &str)],
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        annotations: Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// K1 and K2 of CASES.md.
#[test]
fn status_rules_generate_only_from_learning_completed_or_user_managed() {
    for ok in [
        vec![("kubescape.io/status", "learning")],
        vec![("kubescape.io/status", "completed")],
        vec![("kubescape.io/managed-by", "User")],
        vec![
            ("kubescape.io/managed-by", "User"),
            ("kubescape.io/status", "not-ready"),
        ],
    ] {
        assert!(check_status(&with_status(&ok)).is_ok(), "{ok:?}");
    }
    for (bad, named) in [
        (vec![("kubescape.io/status", "not-ready")], "\"not-ready\""),
        (
            vec![("kubescape.io/status", "initializing")],
            "\"initializing\"",
        ),
        (vec![], "no status"),
        (vec![("kubescape.io/managed-by", "user")], "no status"),
    ] {
        let e = check_status(&with_status(&bad)).unwrap_err();
        assert!(e.message.contains(named), "{bad:?}: {e}");
    }
}

fn nn_with_egress(egress: &str) -> LearnedInput {
    let text = format!(
        r#"{{"apiVersion": "spdx.softwarecomposition.kubescape.io/v1beta1", "kind": "NetworkNeighborhood",
        "metadata": {{"name": "deployment-a", "namespace": "shop",
          "labels": {{"kubescape.io/workload-kind": "Deployment", "kubescape.io/workload-name": "a"}}}},
        "spec": {{"matchLabels": {{"app": "a"}}, "containers": [{{"name": "a", "egress": {egress}}}]}}}}"#
    );
    let input = read_str(&text, "nn.json");
    assert!(input.errors.is_empty(), "{:?}", input.errors);
    input
}

/// What Kubescape reads wrongly is read right.
#[test]
fn a_neighbour_without_selector_or_address_is_left_out_not_allow_any() {
    let input = nn_with_egress(
        r#"[{"identifier": "x", "type": "external", "ports": [{"name": "TCP-443", "protocol": "TCP", "port": 443}]}]"#,
    );
    let n = neighborhood(&input.neighborhoods[0].object, "default").unwrap();
    assert!(n.value.egress.is_empty());
    assert_eq!(n.warnings.len(), 1);
    assert_eq!(n.warnings[0].field, "spec.containers[0].egress[0]");
}

#[test]
fn ipv6_neighbours_stay_ipv6_and_ports_need_a_number() {
    let input = nn_with_egress(
        r#"[{"type": "external", "ipAddress": "2001:db8::7", "ports": [{"name": "TCP-443", "protocol": "tcp", "port": 443}]}]"#,
    );
    let n = neighborhood(&input.neighborhoods[0].object, "default")
        .unwrap()
        .value;
    assert_eq!(
        n.egress,
        vec![neighbor(address("2001:db8::7", &[]), &[tcp(443)])]
    );
    let input = nn_with_egress(
        r#"[{"type": "external", "ipAddress": "10.1.2.3", "ports": [{"name": "TCP-", "protocol": "TCP"}]}]"#,
    );
    let errors = neighborhood(&input.neighborhoods[0].object, "default").unwrap_err();
    assert_eq!(
        errors[0].field,
        "spec.containers[0].egress[0].ports[0].port"
    );
}

#[test]
fn neighbours_of_every_container_kind_merge_per_peer() {
    // K9: the same peer in containers, initContainers and
    // ephemeralContainers is one neighbour with the union of the ports.
    let port = |p: u16| format!(r#"{{"name": "TCP-{p}", "protocol": "TCP", "port": {p}}}"#);
    let peer = |ports: &[u16]| {
        format!(
            r#"[{{"type": "external", "ipAddress": "10.0.0.1", "ports": [{}]}}]"#,
            ports.iter().map(|p| port(*p)).collect::<Vec<_>>().join(",")
        )
    };
    let text = format!(
        r#"{{"apiVersion": "spdx.softwarecomposition.kubescape.io/v1beta1", "kind": "NetworkNeighborhood",
        "metadata": {{"name": "deployment-a", "labels": {{"kubescape.io/workload-kind": "Deployment", "kubescape.io/workload-name": "a"}}}},
        "spec": {{"matchLabels": {{"app": "a"}},
          "containers": [{{"name": "a", "ingress": {}}}],
          "initContainers": [{{"name": "i", "ingress": {}}}],
          "ephemeralContainers": [{{"name": "e", "ingress": {}}}]}}}}"#,
        peer(&[80, 443]),
        peer(&[90, 443]),
        peer(&[100, 443])
    );
    let input = read_str(&text, "k9.json");
    let n = neighborhood(&input.neighborhoods[0].object, "default")
        .unwrap()
        .value;
    assert_eq!(
        n.ingress,
        vec![neighbor(
            address("10.0.0.1", &[]),
            &[tcp(80), tcp(90), tcp(100), tcp(443)]
        )]
    );
}

#[test]
fn neighborhood_without_selector_or_kind_label_is_an_error() {
    let text = r#"{"apiVersion": "kubefence.dev/v1alpha1", "kind": "NetworkNeighborhood",
        "metadata": {"name": "x", "labels": {"kubescape.io/workload-name": "a"}}, "spec": {}}"#;
    let input = read_str(text, "x.json");
    let errors = neighborhood(&input.neighborhoods[0].object, "default").unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["metadata.labels[kubescape.io/workload-kind]", "spec"]
    );
}

fn sample_neighborhood() -> Neighborhood {
    Neighborhood {
        workload: kubefence_core::learn::WorkloadRef {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
        selector: sel(&[("app", "web")]),
        ingress: vec![neighbor(
            NeighborPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(sel(&[("app", "client")])),
            },
            &[tcp(8080)],
        )],
        egress: vec![
            neighbor(address("10.1.2.3", &["db.example.com"]), &[tcp(5432)]),
            neighbor(address("2001:db8::1", &[]), &[tcp(443), tcp(80)]),
            neighbor(
                NeighborPeer::Pods {
                    namespace_selector: Some(sel(&[(
                        "kubernetes.io/metadata.name",
                        "kube-system",
                    )])),
                    pod_selector: Some(sel(&[("k8s-app", "kube-dns")])),
                },
                &[
                    tcp(53),
                    ObservedPort {
                        protocol: Protocol::Udp,
                        port: 53,
                        name: None,
                    },
                ],
            ),
        ],
    }
}

#[test]
fn core_neighborhoods_round_trip_through_both_groups() {
    let core = sample_neighborhood();
    let (object, skipped) = neighborhood_object(&core);
    assert!(skipped.is_empty());
    check_status(&object.metadata).unwrap();
    // Kubescape's group → kubefence's → Kubescape's: the same object.
    let ours: learned::NetworkNeighborhood = object.to_other_group();
    assert_eq!(ours.api_version, KUBEFENCE_API_VERSION);
    let back = ours.to_other_group();
    assert_eq!(back, object);
    // Written as YAML and read again, in kubefence's group: the same core.
    let yaml = serde_saphyr::to_string(&ours).unwrap();
    let input = read_str(&yaml, "ours.yaml");
    assert!(input.errors.is_empty(), "{:?}\n{yaml}", input.errors);
    assert_eq!(input.neighborhoods[0].group, Group::Kubefence);
    let mut expected = core.clone();
    expected.egress.sort_by(|a, b| a.peer.cmp(&b.peer));
    let again = neighborhood(&input.neighborhoods[0].object, "default")
        .unwrap()
        .value;
    assert_eq!(again, expected);
}

#[test]
fn reserved_peers_cannot_be_written_as_neighbours_and_are_returned() {
    let mut core = sample_neighborhood();
    core.egress.push(neighbor(
        NeighborPeer::Reserved(kubefence_core::learn::ReservedPeer::KubeApiserver),
        &[tcp(443)],
    ));
    let (object, skipped) = neighborhood_object(&core);
    assert_eq!(
        skipped,
        [NeighborPeer::Reserved(
            kubefence_core::learn::ReservedPeer::KubeApiserver
        )]
    );
    let egress = object.spec.containers.unwrap()[0].egress.clone().unwrap();
    assert_eq!(egress.len(), 3);
}

#[test]
fn generated_policies_move_between_groups_unchanged() {
    let input = read_file("artifacts/generatednetworkpolicies/01-example.yaml");
    let theirs = &input.generated[0].object;
    let ours: learned::GeneratedNetworkPolicy = theirs.to_other_group();
    assert_eq!(ours.spec, theirs.spec);
    assert_eq!(ours.policy_ref, theirs.policy_ref);
    let back = ours.to_other_group();
    assert_eq!(
        generated_policy(&back, "default").unwrap(),
        generated_policy(theirs, "default").unwrap()
    );
}

#[test]
fn the_learned_crds_are_registered() {
    let names: Vec<String> = kubefence_k8s::crd::all_crds()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for name in [
        "generatednetworkpolicies.kubefence.dev",
        "knownservers.kubefence.dev",
        "networkneighborhoods.kubefence.dev",
    ] {
        assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    let known = kubefence_k8s::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "KnownServer")
        .unwrap();
    assert_eq!(known.spec.scope, "Cluster");
}

/// A small cluster around Kubescape's example workload: nginx, the UI it
/// admits, the same UI in a namespace it does not admit, and a bystander.
const EXAMPLE_CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kubescape, labels: {name: kubescape}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {name: other}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: kubescape}
spec:
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: nginx, ports: [{containerPort: 6379}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kubescape-ui, namespace: kubescape}
spec:
  selector: {matchLabels: {app: kubescape-ui}}
  template:
    metadata: {labels: {app: kubescape-ui}}
    spec: {containers: [{name: ui, image: ui}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kubescape-ui, namespace: other}
spec:
  selector: {matchLabels: {app: kubescape-ui}}
  template:
    metadata: {labels: {app: kubescape-ui}}
    spec: {containers: [{name: ui, image: ui}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: kubescape}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec: {containers: [{name: redis, image: redis, ports: [{containerPort: 5978}]}]}
"#;

/// Kubescape's NN example → kubefence's GeneratedNetworkPolicy (written
/// out and read back) allows exactly the connections Kubescape's expected
/// GeneratedNetworkPolicy allows, compared by the engine over the whole
/// cluster and the external address space, not as text.
#[test]
fn kubescape_example_learns_a_policy_allowing_what_kubescapes_allows() {
    use kubefence_core::engine::{AnalyzeOptions, analyze, diff};
    use kubefence_core::learn::{LearnOptions, build};
    use kubefence_k8s::learn::generated::generated_object;
    use kubefence_k8s::load::{LoadOptions, load_str};

    let nn = read_file("artifacts/networkneighborhood/01-example.yaml");
    // The status gate (K1/K2) is the command's; the example says `ready`.
    let neighborhood = neighborhood(&nn.neighborhoods[0].object, "default")
        .unwrap()
        .value;
    let learned = build(&[neighborhood], &[], &LearnOptions::default()).unwrap();
    assert!(learned.report.left_out.is_empty(), "{:?}", learned.report);
    assert_eq!(learned.policies.len(), 1);
    let ours = &learned.policies[0];
    let object = generated_object(
        "deployment-nginx",
        &ours.workload,
        &ours.policy,
        &ours.refs,
        ours.annotations.clone(),
    );
    let yaml = serde_saphyr::to_string(&object).unwrap();
    let back = read_str(&yaml, "ours.yaml");
    assert!(back.errors.is_empty(), "{:?}\n{yaml}", back.errors);
    let (our_policy, our_refs) = generated_policy(&back.generated[0].object, "default").unwrap();

    let expected = read_file("artifacts/generatednetworkpolicies/01-example.yaml");
    let (mut their_policy, their_refs) =
        generated_policy(&expected.generated[0].object, "default").unwrap();
    // Kubescape's example writes its output in `default` because the NN it
    // read names no namespace; the workload (and ours) is in kubescape.
    assert_eq!(our_policy.namespace, "kubescape");
    their_policy.namespace = our_policy.namespace.clone();

    let cluster = || {
        let loaded = load_str(EXAMPLE_CLUSTER, "cluster.yaml", &LoadOptions::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.cluster
    };
    let mut with_theirs = cluster();
    with_theirs.policies.push(their_policy);
    let mut with_ours = cluster();
    with_ours.policies.push(our_policy);
    let opts = AnalyzeOptions::default();
    let differences = diff(&with_theirs, &with_ours, &opts);
    assert!(differences.is_empty(), "{differences:?}");

    // And the comparison is not vacuous: the policy admits the UI of its
    // own namespace on 6379 only, not the one of another namespace.
    let c = analyze(&with_ours, &opts);
    let index = |id: &str| c.endpoints.iter().position(|e| e.id == id).unwrap();
    let nginx = index("kubescape/Deployment/nginx");
    let ui = index("kubescape/Deployment/kubescape-ui");
    let foreign_ui = index("other/Deployment/kubescape-ui");
    let allowed = c.allowed(ui, nginx);
    assert!(allowed == kubefence_core::ConnSet::port(Protocol::Tcp, 6379));
    assert!(c.allowed(foreign_ui, nginx).is_empty());
    assert!(
        c.allowed(nginx, index("kubescape/Deployment/redis"))
            .is_empty()
    );

    // The policyRef says the same.
    let strip = |refs: Vec<kubefence_core::learn::PolicyRef>| {
        refs.into_iter()
            .map(|r| (r.ip_block, r.original_ip, r.dns))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(our_refs), strip(their_refs));
}
