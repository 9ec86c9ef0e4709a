//! The compact views of `analyze` (`--classes`, `--group namespace`) and
//! its filters (`--focus`, `--from`, `--to`) against the pair-by-pair JSON
//! of the same input: expanding the classes, summing the pairs up by
//! namespace, or filtering the pairs by hand must give exactly what the
//! compact view says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use kubefence_testkit::{ScaledProfile, scaled_with, write_json_case};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn kubefence(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("KUBEFENCE_LOG")
        .output()
        .expect("spawn kubefence");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_of(args: &[&str]) -> Value {
    let (code, stdout, stderr) = kubefence(args);
    assert_eq!(code, 0, "kubefence {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

/// A synthetic cluster with open namespaces, ipBlocks and cross-namespace
/// rules, as JSON lists.
fn synthetic(dir: &Path) -> String {
    let synth = scaled_with(&ScaledProfile {
        workloads: 60,
        namespaces: 9,
        seed: 5,
        open_namespace_every: Some(3),
        policies_per_100_workloads: 90,
    });
    write_json_case(&synth, dir).unwrap();
    dir.display().to_string()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/online-boutique")
        .display()
        .to_string()
}

type Pairs = BTreeMap<(String, String), Value>;

/// The pair-by-pair connections of `analyze -o json` (with extra flags).
fn pairs(input: &str, extra: &[&str]) -> Pairs {
    let mut args = vec!["analyze", "-f", input, "-o", "json"];
    args.extend_from_slice(extra);
    let v = json_of(&args);
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["from"].as_str().unwrap().to_string(),
                    c["to"].as_str().unwrap().to_string(),
                ),
                c["allowed"].clone(),
            )
        })
        .collect()
}

/// The pairs that `--classes -o json` describes, expanded.
fn expanded_classes(v: &Value) -> Pairs {
    let members: BTreeMap<u64, Vec<String>> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let mut out = Pairs::new();
    let external = |id: &str| !id.contains('/') || id.contains(':') || id.contains('.');
    for block in v["open"].as_array().unwrap() {
        assert_eq!(block["allowed"], "all");
        for f in block["from"].as_array().unwrap() {
            for t in block["to"].as_array().unwrap() {
                for a in &members[&f.as_u64().unwrap()] {
                    for b in &members[&t.as_u64().unwrap()] {
                        if a != b && !(external(a) && external(b)) {
                            out.insert((a.clone(), b.clone()), block["allowed"].clone());
                        }
                    }
                }
            }
        }
    }
    for c in v["connections"].as_array().unwrap() {
        let from = &members[&c["from"].as_u64().unwrap()];
        let to = &members[&c["to"].as_u64().unwrap()];
        for a in from {
            for b in to {
                if a != b {
                    let old = out.insert((a.clone(), b.clone()), c["allowed"].clone());
                    assert!(old.is_none(), "{a} -> {b} is in two class connections");
                }
            }
        }
    }
    out
}

#[test]
fn classes_expand_to_exactly_the_pairs_and_list_every_endpoint_once() {
    let dir = tempfile::tempdir().unwrap();
    for input in [example(), synthetic(dir.path())] {
        let all = pairs(&input, &[]);
        let v = json_of(&["analyze", "-f", &input, "--classes", "-o", "json"]);
        assert_eq!(expanded_classes(&v), all, "{input}");
        let mut seen = BTreeSet::new();
        for class in v["classes"].as_array().unwrap() {
            for m in class["members"].as_array().unwrap() {
                assert!(seen.insert(m.as_str().unwrap().to_string()), "{m} twice");
            }
        }
        let endpoints = json_of(&["analyze", "-f", &input, "-o", "json"])["endpoints"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(seen.len(), endpoints, "every endpoint in one class");
        assert!(
            v["classes"].as_array().unwrap().len() < endpoints,
            "endpoints that behave alike share a class"
        );
    }
}

#[test]
fn the_namespace_matrix_sums_the_pairs_up() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic(dir.path());
    let all = pairs(&input, &[]);
    let endpoints = json_of(&["analyze", "-f", &input, "-o", "json"])["endpoints"].clone();
    let group_of: BTreeMap<String, String> = endpoints
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["namespace"].as_str().unwrap_or("(external)").to_string(),
            )
        })
        .collect();
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (from, to) in all.keys() {
        *expected
            .entry((group_of[from].clone(), group_of[to].clone()))
            .or_default() += 1;
    }
    let v = json_of(&[
        "analyze",
        "-f",
        &input,
        "--group",
        "namespace",
        "-o",
        "json",
    ]);
    let got: BTreeMap<(String, String), u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["from"].as_str().unwrap().to_string(),
                    c["to"].as_str().unwrap().to_string(),
                ),
                c["pairs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // `of` counts every ordered pair of distinct endpoints of the two groups.
    let size = |g: &str| group_of.values().filter(|n| *n == g).count() as u64;
    for c in v["connections"].as_array().unwrap() {
        let (f, t) = (c["from"].as_str().unwrap(), c["to"].as_str().unwrap());
        let of = if f == t {
            size(f) * (size(f) - 1)
        } else {
            size(f) * size(t)
        };
        assert_eq!(c["of"].as_u64().unwrap(), of, "{f} -> {t}");
    }
    let (code, table, _) = kubefence(&["analyze", "-f", &input, "--group", "namespace"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("FROM"), "{table}");
}

#[test]
fn focus_from_and_to_keep_exactly_the_pairs_asked_about() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic(dir.path());
    let all = pairs(&input, &[]);
    let some = all
        .keys()
        .map(|(from, _)| from.clone())
        .find(|from| from.starts_with("ns-"))
        .unwrap();
    let namespace = some.split('/').next().unwrap().to_string();

    let focused = pairs(&input, &["--focus", &some]);
    let expected: Pairs = all
        .iter()
        .filter(|((f, t), _)| *f == some || *t == some)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(focused, expected);

    let from_ns = pairs(&input, &["--from", &namespace, "--to", "0.0.0.0/0"]);
    let expected: Pairs = all
        .iter()
        .filter(|((f, t), _)| f.starts_with(&format!("{namespace}/")) && t.contains('.'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(from_ns, expected);

    // The class view with a focus lists class connections that hold a kept
    // pair, and every kept pair is among them.
    let v = json_of(&[
        "analyze",
        "-f",
        &input,
        "--classes",
        "-o",
        "json",
        "--focus",
        &some,
    ]);
    let expanded = expanded_classes(&v);
    for (pair, allowed) in pairs(&input, &["--focus", &some]) {
        assert_eq!(expanded.get(&pair), Some(&allowed), "{pair:?}");
    }
}

#[test]
fn a_filter_that_names_nothing_is_an_error() {
    let (code, _, stderr) = kubefence(&["analyze", "-f", &example(), "--focus", "nope/web"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--focus \"nope/web\" names no endpoint"),
        "{stderr}"
    );
    let (code, _, stderr) = kubefence(&["analyze", "-f", &example(), "--classes", "-o", "dot"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--classes writes table or json"),
        "{stderr}"
    );
}
