#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ruleset::{Engine, NetworkPolicyOptions, to_network_policy};
use crate::selector::{Operator, Requirement};

fn subject() -> Subject {
    Subject {
        binding: "web".into(),
        namespace: "shop".into(),
        selector: LabelSelector::new(
            Labels::from([("app".to_string(), "api".to_string())]),
            vec![Requirement::new("tier", Operator::In, ["web", "edge"]).unwrap()],
        ),
    }
}

fn intent(id: &str) -> Intent {
    Intent {
        name: format!("si-{id}"),
        id: id.into(),
        ..Intent::default()
    }
}

#[test]
fn every_catalogue_entry_resolves_to_something_an_engine_expresses() {
    for e in CATALOGUE {
        let mut i = intent(e.id);
        if e.id == "egressOnlyToFQDNs" {
            i.params
                .insert("fqdns".into(), vec!["api.example.com".into()]);
        }
        let rules = resolve(&i, &subject(), &Options::default()).unwrap();
        rules.check().unwrap();
        assert!(
            Engine::ALL.iter().any(|engine| engine.expresses(&rules)),
            "{}",
            e.id
        );
        // The binding's full selector, matchExpressions included.
        assert_eq!(rules.subject, subject().selector, "{}", e.id);
        assert_eq!(rules.labels[crate::naming::SOURCE_LABEL], "intent");
        assert_eq!(rules.labels[INTENT_ID_LABEL], e.id);
    }
}

#[test]
fn an_unknown_id_is_an_error_with_a_suggestion() {
    let err = resolve(&intent("dnsonly"), &subject(), &Options::default()).unwrap_err();
    assert_eq!(
        err,
        IntentError::UnknownId {
            id: "dnsonly".into(),
            suggestion: Some("dnsOnly")
        }
    );
    assert!(err.to_string().contains("did you mean dnsOnly"));
    let err = resolve(&intent("mineBitcoin"), &subject(), &Options::default()).unwrap_err();
    assert!(matches!(
        err,
        IntentError::UnknownId {
            suggestion: None,
            ..
        }
    ));
}

#[test]
fn unknown_and_bad_params_are_refused() {
    let mut i = intent("dnsOnly");
    i.params.insert("port".into(), vec!["53".into()]);
    assert!(matches!(
        resolve(&i, &subject(), &Options::default()),
        Err(IntentError::UnknownParam { .. })
    ));
    let mut i = intent("egressOnlyToFQDNs");
    assert!(matches!(
        resolve(&i, &subject(), &Options::default()),
        Err(IntentError::BadParam { .. })
    ));
    i.params.insert("fqdns".into(), vec!["not a name".into()]);
    assert!(matches!(
        resolve(&i, &subject(), &Options::default()),
        Err(IntentError::BadParam { .. })
    ));
    let mut i = intent("denyExternalEgress");
    i.params
        .insert("allowCIDRs".into(), vec!["10.0.0.1/8".into()]);
    let err = resolve(&i, &subject(), &Options::default()).unwrap_err();
    assert!(err.to_string().contains("did you mean 10.0.0.0/8"), "{err}");
    let mut i = intent("allowFromMonitoring");
    i.params.insert("ports".into(), vec!["TCP/9000-80".into()]);
    assert!(resolve(&i, &subject(), &Options::default()).is_err());
}

#[test]
fn an_empty_selector_is_refused() {
    let mut s = subject();
    s.selector = LabelSelector::everything();
    assert!(matches!(
        resolve(&intent("dnsOnly"), &s, &Options::default()),
        Err(IntentError::EmptySelector { .. })
    ));
}

#[test]
fn fqdns_are_unsupported_by_networkpolicy_with_the_reason() {
    let mut i = intent("egressOnlyToFQDNs");
    i.params
        .insert("fqdns".into(), vec!["*.example.com".into()]);
    let rules = resolve(&i, &subject(), &Options::default()).unwrap();
    let err = to_network_policy(&rules, &NetworkPolicyOptions::default()).unwrap_err();
    assert!(err.reason.contains("not DNS names"), "{err}");
    assert!(err.reason.contains("cilium"), "{err}");
}

#[test]
fn allow_from_monitoring_needs_isolation_elsewhere_in_networkpolicy() {
    let mut i = intent("allowFromMonitoring");
    i.params
        .insert("podLabels".into(), vec!["app=prometheus".into()]);
    let rules = resolve(&i, &subject(), &Options::default()).unwrap();
    let err = to_network_policy(&rules, &NetworkPolicyOptions::default()).unwrap_err();
    assert!(err.reason.contains("also isolates"), "{err}");
    let opts = NetworkPolicyOptions {
        isolated_elsewhere: crate::policy::PolicyTypes {
            ingress: true,
            egress: false,
        },
    };
    let np = to_network_policy(&rules, &opts).unwrap();
    assert!(np.policy_types.ingress && !np.policy_types.egress);
    assert_eq!(np.ingress.len(), 1);
}

#[test]
fn audit_is_unsupported_by_the_network_engines() {
    let mut i = intent("dnsOnly");
    i.enforcement = Enforcement::Audit;
    let rules = resolve(&i, &subject(), &Options::default()).unwrap();
    assert!(to_network_policy(&rules, &NetworkPolicyOptions::default()).is_err());
}

#[test]
fn kubearmor_intents_keep_nimbus_paths() {
    let rules = resolve(
        &intent("swDeploymentTools"),
        &subject(),
        &Options::default(),
    )
    .unwrap();
    let paths: Vec<&str> = rules.process.iter().map(|p| p.path.as_str()).collect();
    for p in [
        "/usr/bin/apt",
        "/sbin/apk",
        "/usr/bin/make",
        "/usr/local/bin/curl",
        "/bin/wget",
    ] {
        assert!(paths.contains(&p), "{p}");
    }
    let mut sorted = paths.clone();
    sorted.dedup();
    assert_eq!(sorted, paths, "no path twice");
    let pkg = resolve(&intent("pkgMgrs"), &subject(), &Options::default()).unwrap();
    assert!(pkg.process.iter().all(|p| !p.path.contains("curl")));
    let sa = resolve(
        &intent("unAuthorizedSaTokenAccess"),
        &subject(),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(sa.file[0].path, SA_TOKEN_DIR);
    assert!(sa.file[0].directory && sa.file[0].recursive);
    let dns = resolve(&intent("dnsManipulation"), &subject(), &Options::default()).unwrap();
    assert_eq!(dns.file[0].path, RESOLV_CONF);
    assert!(dns.file[0].read_only);
    assert!(dns.egress.isolate);
}

#[test]
fn names_fit_and_cluster_names_carry_the_namespace() {
    let mut s = subject();
    s.binding = "b".repeat(80);
    let rules = resolve(
        &intent("denyIngressFromOtherNamespaces"),
        &s,
        &Options::default(),
    )
    .unwrap();
    assert!(rules.name.len() <= 63, "{}", rules.name);
    assert!(rules.cluster_name.len() <= 63);
    let other = Subject {
        namespace: "shop2".into(),
        ..subject()
    };
    let a = resolve(&intent("dnsOnly"), &subject(), &Options::default()).unwrap();
    let b = resolve(&intent("dnsOnly"), &other, &Options::default()).unwrap();
    assert_eq!(a.name, b.name);
    assert_ne!(a.cluster_name, b.cluster_name);
    assert!(crate::validation::label_value(&rules.labels[BINDING_LABEL]).is_empty());
}
