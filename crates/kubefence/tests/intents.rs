//! `kubefence intents render` and `import` on Nimbus objects read unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/intents")
        .join(name)
        .display()
        .to_string()
}

fn kubefence(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubefence"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn render_lists_selected_workloads_objects_per_engine_and_unknown_ids() {
    let (intents, app) = (fixture("intents.yaml"), fixture("app.yaml"));
    let (code, stdout, stderr) = kubefence(&[
        "intents", "render", "-f", &intents, "-f", &app, "-o", "json",
    ]);
    // The unknown id is an input error of its binding, not a crash.
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("did you mean dnsOnly"), "{stderr}");
    let docs: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!(d["binding"], "SecurityIntentBinding/shop/web");
    assert_eq!(d["selects"], serde_json::json!(["shop/Deployment/api"]));
    let engines = d["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 5, "every engine by default");
    let kinds: Vec<&str> = engines
        .iter()
        .flat_map(|e| e["objects"].as_array().unwrap())
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "NetworkPolicy",
        "CiliumNetworkPolicy",
        "ClusterNetworkPolicy",
        "AdminNetworkPolicy",
        "KubeArmorPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    let (code, stdout, _) = kubefence(&[
        "intents",
        "render",
        "-f",
        &intents,
        "-f",
        &app,
        "--engine",
        "kubearmor",
        "-o",
        "json",
    ]);
    assert_eq!(code, 3);
    let docs: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(docs[0]["engines"].as_array().unwrap().len(), 1);
}

#[test]
fn render_without_bindings_is_a_usage_error() {
    let (code, _, stderr) = kubefence(&["intents", "render", "-f", &fixture("app.yaml")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no SecurityIntentBinding"), "{stderr}");
}

#[test]
fn import_converts_nimbus_objects_and_they_render_the_same() {
    let intents = fixture("intents.yaml");
    let (code, stdout, stderr) = kubefence(&["intents", "import", "-f", &intents]);
    // The kubefence.dev SecurityIntent in the file is not Nimbus's: reported.
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not a Nimbus intent object"), "{stderr}");
    assert!(stdout.contains("apiVersion: kubefence.dev/v1alpha1"));
    assert!(!stdout.contains("nimbus"));
    assert!(stdout.contains("action: Enforce"));
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("converted.yaml");
    std::fs::write(&converted, stdout).unwrap();
    let render = |files: &[&str]| {
        let mut args = vec!["intents", "render", "-o", "json"];
        for f in files {
            args.extend(["-f", f]);
        }
        let (_, out, _) = kubefence(&args);
        let docs: Vec<Value> = serde_json::from_str(&out).unwrap();
        docs[0]["engines"].clone()
    };
    let app = fixture("app.yaml");
    let converted = converted.display().to_string();
    // The imported binding refers to "typo", which import did not convert:
    // render both with the original file's kubefence intent alongside.
    assert_eq!(
        render(&[&intents, &app]),
        render(&[&converted, &intents, &app])
    );
}

/// Nimbus's own `dnsManipulation` example renders as Nimbus's adapters
/// write it: the NetworkPolicy and KubeArmorPolicy specs its e2e tests
/// expect (testdata/third-party/nimbus, verbatim), compared field by field
/// (Nimbus's empty `{}` sections of a KubeArmorPolicy are Go zero values
/// and carry nothing).
#[test]
fn nimbus_dns_manipulation_renders_as_nimbus_expects() {
    let nimbus =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/third-party/nimbus");
    let input = nimbus.join("examples/namespaced/dns-manipulation-si-sib.yaml");
    let (code, stdout, stderr) = kubefence(&[
        "intents",
        "render",
        "-f",
        &input.display().to_string(),
        "--engine",
        "networkpolicy",
        "--engine",
        "kubearmor",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let docs: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(docs.len(), 1, "{stdout}");
    let object = |kind: &str| -> Value {
        docs[0]["engines"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["objects"].as_array().unwrap())
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {stdout}"))
            .clone()
    };
    let expected = |file: &str| -> Value {
        let text =
            std::fs::read_to_string(nimbus.join("tests/e2e/dns-manipulation").join(file)).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    };
    // A rule's ports are a set: compared in one order.
    fn ports_sorted(mut spec: Value) -> Value {
        for rule in spec["egress"].as_array_mut().into_iter().flatten() {
            if let Some(ports) = rule["ports"].as_array_mut() {
                ports.sort_by_key(|p| p.to_string());
            }
        }
        spec
    }
    let netpol = expected("netpol.yaml");
    assert_eq!(
        ports_sorted(object("NetworkPolicy")["spec"].clone()),
        ports_sorted(netpol["spec"].clone())
    );
    let ksp = expected("ksp.yaml");
    let ours = object("KubeArmorPolicy");
    for (field, value) in ksp["spec"].as_object().unwrap() {
        if value.as_object().is_some_and(|o| o.is_empty()) {
            continue;
        }
        assert_eq!(&ours["spec"][field], value, "spec.{field}");
    }
}
