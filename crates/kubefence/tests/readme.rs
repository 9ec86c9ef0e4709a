//! Every `kubefence …` command in README.md's code blocks runs as written,
//! from the repository root, on the bundled example.
//!
//! A line's expected exit code is 0 unless its comment says `exit N`. A
//! command fed by a pipe (`kubectl get … | kubefence …`) reads the bundled
//! manifests on stdin instead; what follows a pipe out of kubefence
//! (`| dot -Tsvg`) and redirections (`> file`) are replaced by capturing
//! stdout. Commands that need a cluster (`quarantine` without `--offline`,
//! `release`, `operator`) run against no cluster: they must get as far as
//! trying to reach it, which proves their flags parse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The lines of fenced `sh` code blocks that run kubefence.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && matches!(fence, "sh" | "bash" | "shell" | "console");
            continue;
        }
        let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if in_sh && (line.starts_with("kubefence ") || line.contains("| kubefence ")) {
            out.push(line.to_string());
        }
    }
    out
}

/// Splits a command line into words as sh does for plain words and
/// single- or double-quoted strings; stops at an unquoted `#`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => break,
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    words
}

/// The exit code a line documents (`# … exit 1: …`), else 0.
fn expected_code(line: &str) -> i32 {
    line.split_once('#')
        .and_then(|(_, comment)| comment.split_once("exit "))
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct Step {
    args: Vec<String>,
    /// Fed by a pipe from another tool.
    piped_in: bool,
    /// `> FILE`: stdout is kept in FILE (relative to the working directory).
    redirect: Option<String>,
    needs_cluster: bool,
    code: i32,
}

fn parse(line: &str) -> Step {
    let words = shell_words(line);
    let start = words
        .iter()
        .position(|w| w == "kubefence")
        .expect("a kubefence command");
    let piped_in = start > 0;
    let mut args = Vec::new();
    let mut redirect = None;
    let mut rest = words[start + 1..].iter();
    while let Some(w) = rest.next() {
        match w.as_str() {
            // What follows is another tool reading kubefence's output,
            // with its own redirections.
            "|" => break,
            ">" => redirect = rest.next().cloned(),
            _ => args.push(w.clone()),
        }
    }
    let sub = args.first().map(String::as_str).unwrap_or_default();
    let needs_cluster = matches!(sub, "release" | "operator" | "run-operator")
        || (sub == "quarantine" && !args.iter().any(|a| a == "--offline"));
    Step {
        args,
        piped_in,
        redirect,
        needs_cluster,
        code: expected_code(line),
    }
}

#[test]
fn every_readme_command_runs_on_the_bundled_example() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme_commands(&readme);
    assert!(lines.len() >= 10, "found the examples: {lines:?}");
    // The examples refer to examples/ from the repository root; their
    // outputs (baseline.yaml) go to a scratch directory that links to it.
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        root.join("examples").canonicalize().unwrap(),
        work.path().join("examples"),
    )
    .unwrap();
    let manifests =
        std::fs::read_to_string(root.join("examples/online-boutique/kubernetes-manifests.yaml"))
            .unwrap();
    let mut failures = Vec::new();
    for line in &lines {
        let step = parse(line);
        let mut cmd = Command::new(BIN);
        cmd.args(&step.args)
            .current_dir(work.path())
            .env_remove("KUBEFENCE_LOG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", work.path().join("no-kubeconfig"))
            .stdin(if step.piped_in {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if step.piped_in {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(manifests.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{line}\n  -> {code}\n{stderr}");
        if let Some(file) = &step.redirect {
            std::fs::write(work.path().join(file), &out.stdout).unwrap();
        }
        let ok = if step.needs_cluster {
            code == 2 && stderr.contains("cannot reach the cluster")
        } else {
            code == step.code && !out.stdout.is_empty()
        };
        if !ok {
            failures.push(format!("{line}: exit {code}\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_parser_reads_quotes_pipes_redirections_and_comments() {
    let step =
        parse(r#"kubefence quarantine deploy/api --reason "crypto miner" --confirm  # isolate"#);
    assert_eq!(
        step.args,
        [
            "quarantine",
            "deploy/api",
            "--reason",
            "crypto miner",
            "--confirm"
        ]
    );
    assert!(step.needs_cluster);
    let step = parse("kubectl get pods -o yaml | kubefence analyze -f -");
    assert!(step.piped_in);
    assert_eq!(step.args, ["analyze", "-f", "-"]);
    let step = parse("kubefence generate -f m/ > baseline.yaml");
    assert_eq!(step.redirect.as_deref(), Some("baseline.yaml"));
    assert_eq!(step.args, ["generate", "-f", "m/"]);
    let step = parse("kubefence analyze -f m/ -o dot | dot -Tsvg > connectivity.svg");
    assert_eq!(step.redirect, None);
    assert_eq!(step.args, ["analyze", "-f", "m/", "-o", "dot"]);
    assert_eq!(
        parse("kubefence diff --exit-code   # exit 1: differs").code,
        1
    );
    assert_eq!(parse("kubefence demo").code, 0);
}
