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
