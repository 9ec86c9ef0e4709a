//! What the real binary does with hostile or empty input: nothing read is not
//! a result, directory walks end and read what they can, `--out-dir` never
//! writes outside itself, and every diagnostic can be a JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubefence");

/// A command that has not ended after this long is taken to spin forever.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs kubefence in `dir`; `stdin: None` is a closed (empty) stdin. Kills
/// it and fails the test after [`TIMEOUT`], so a walk that never ends fails
/// instead of hanging the suite.
fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KUBEFENCE_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubefence");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("kubefence {args:?} ran for more than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.join().unwrap()).unwrap(),
        stderr: String::from_utf8(err.join().unwrap()).unwrap(),
    };
    eprintln!(
        "kubefence {args:?} -> {}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// A temp dir holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn deployment(namespace: &str, name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: "{name}", namespace: "{namespace}"}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx, ports: [{{containerPort: 8080}}]}}]
"#
    )
}

/// Two Deployments in `default`, so `analyze` has one pair each way.
fn apps() -> String {
    format!(
        "{}---\n{}",
        deployment("default", "web"),
        deployment("default", "db")
    )
}

/// Connections between workloads (the outside world left out).
fn workload_connections(stdout: &str) -> usize {
    let v: Value = serde_json::from_str(stdout).unwrap();
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            [&c["from"], &c["to"]]
                .iter()
                .all(|e| e.as_str().is_some_and(|e| e.contains("/Deployment/")))
        })
        .count()
}

const WEB: &str = "default/Deployment/web";
const DB: &str = "default/Deployment/db";

/// Every command that reads manifests, reading `paths` (each after `-f`).
fn manifest_commands(paths: &[&str]) -> Vec<Vec<String>> {
    let files: Vec<String> = paths
        .iter()
        .flat_map(|p| ["-f".into(), p.to_string()])
        .collect();
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .map(ToString::to_string)
            .chain(files.iter().cloned())
            .chain(tail.iter().map(ToString::to_string))
            .collect()
    };
    let mut diff_before: Vec<String> = vec!["diff".into(), "--before".into()];
    diff_before.extend(paths.iter().map(ToString::to_string));
    diff_before.extend(["--after".into(), "apps.yaml".into()]);
    let mut diff_after: Vec<String> = vec!["diff".into(), "--before".into(), "apps.yaml".into()];
    diff_after.push("--after".into());
    diff_after.extend(paths.iter().map(ToString::to_string));
    vec![
        with(&["analyze"], &[]),
        with(&["analyze"], &["-o", "json"]),
        with(&["explain"], &["--from", WEB, "--to", DB]),
        with(&["generate"], &[]),
        with(&["generate"], &["--out-dir", "out"]),
        with(
            &["quarantine", "deploy/web", "--offline", "--reason", "test"],
            &[],
        ),
        diff_before,
        diff_after,
    ]
}

fn run_args(dir: &Path, args: &[String], stdin: Option<&str>) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in(dir, &args, stdin)
}

// === 1. nothing read is not a result ===

#[test]
fn nothing_read_is_a_fatal_error_naming_what_was_empty() {
    let dir = dir_with(&[
        ("apps.yaml", &apps()),
        ("empty.yaml", ""),
        ("comments.yaml", "# nothing here\n---\n# nor here\n"),
        (
            "null-items.yaml",
            "apiVersion: v1\nkind: List\nitems: null\n",
        ),
        (
            "empty-list.json",
            "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": []}",
        ),
        ("no-manifests/README.md", "not a manifest\n"),
    ]);
    std::fs::create_dir(dir.path().join("empty-dir")).unwrap();
    for source in [
        "empty.yaml",
        "comments.yaml",
        "null-items.yaml",
        "empty-list.json",
        "empty-dir",
        "no-manifests",
    ] {
        for args in manifest_commands(&[source]) {
            let run = run_args(dir.path(), &args, None);
            assert_eq!(run.code, 2, "{args:?}: no input at all is fatal");
            assert_eq!(run.stdout, "", "{args:?}: no result is printed");
            assert!(
                run.stderr.contains(source),
                "{args:?}: the message names {source}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("no Kubernetes object"),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    assert!(!dir.path().join("out").exists(), "nothing was written");
    // A closed or empty stdin.
    for stdin in [None, Some(""), Some("\n# only a comment\n")] {
        for args in manifest_commands(&["-"]) {
            let run = run_args(dir.path(), &args, stdin);
            assert_eq!(run.code, 2, "{args:?} with stdin {stdin:?}");
            assert_eq!(run.stdout, "");
            assert!(run.stderr.contains("<stdin>"), "{}", run.stderr);
        }
    }
}

#[test]
fn one_empty_source_among_others_is_an_input_error() {
    let dir = dir_with(&[("apps.yaml", &apps()), ("empty.yaml", "")]);
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-f",
            "apps.yaml",
            "-f",
            "empty.yaml",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(run.code, 3, "the rest is analysed, the empty file reported");
    assert!(run.stderr.contains("empty.yaml"), "{}", run.stderr);
    assert_eq!(workload_connections(&run.stdout), 2);
}

// === 2. --out-dir never writes outside the directory ===

/// Every file under `root`, relative, sorted (symlinks listed, not followed).
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn out_dir_never_writes_outside_itself() {
    // The workdir holds the manifests and, one level down, the out dir, so a
    // namespace of `..` or `../..` would land in places we can list.
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let absolute = root.path().join("absolute-target");
    let hostile = [
        deployment("..", "dotdot"),
        deployment("../..", "up-two"),
        deployment(absolute.to_str().unwrap(), "absolute"),
        deployment(".", "dot"),
        deployment("a/b", "slash"),
        deployment("default", "../../escape"),
        deployment("default", "x/../../y"),
    ];
    let text = format!(
        "{}---\n{}",
        deployment("default", "ok"),
        hostile.join("---\n")
    );
    std::fs::write(work.join("apps.yaml"), text).unwrap();
    let before_root = files_under(root.path());
    let run = run_in(
        &work,
        &["generate", "-f", "apps.yaml", "--out-dir", "out"],
        None,
    );
    assert_ne!(run.code, 0, "a refused object is not success");
    assert_ne!(run.code, 2, "the other policies are still written");
    // The good policy is written where it belongs...
    let out = work.join("out");
    assert_eq!(
        files_under(&out),
        ["default/kf-baseline-deployment-ok.yaml"],
        "only the good policy is written, no temp file left"
    );
    // ...and nothing else appeared anywhere.
    let mut after_root = files_under(root.path());
    after_root.retain(|f| !f.starts_with("work/out/"));
    assert_eq!(after_root, before_root, "nothing written outside --out-dir");
    assert!(!absolute.exists());
    for name in ["dotdot", "up-two", "absolute", "dot", "slash"] {
        assert!(run.stderr.contains(name), "{name} is named: {}", run.stderr);
    }
}

#[test]
fn out_dir_does_not_write_through_symlinks() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(work.join("out")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        work.join("apps.yaml"),
        format!(
            "{}---\n{}",
            deployment("linked", "web"),
            deployment("default", "web")
        ),
    )
    .unwrap();
    // out/linked -> outside: a namespace directory that leads away.
    std::os::unix::fs::symlink(&outside, work.join("out/linked")).unwrap();
    // out/default/<policy>.yaml -> outside/victim: a file that leads away.
    std::fs::create_dir_all(work.join("out/default")).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(
        &victim,
        work.join("out/default/kf-baseline-deployment-web.yaml"),
    )
    .unwrap();

    let run = run_in(
        &work,
        &["generate", "-f", "apps.yaml", "--out-dir", "out"],
        None,
    );
    assert_eq!(files_under(&outside), ["victim"], "nothing written outside");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(run.code, 3, "the linked namespace is refused");
    assert!(run.stderr.contains("linked"), "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    // The file link was replaced by the policy, not written through.
    let written = work.join("out/default/kf-baseline-deployment-web.yaml");
    let meta = std::fs::symlink_metadata(&written).unwrap();
    assert!(meta.file_type().is_file(), "the link was replaced");
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("kind: NetworkPolicy")
    );
}

// === 3. directory walks ===

#[test]
fn a_symlink_cycle_is_walked_once() {
    let dir = dir_with(&[("m/a/apps.yaml", &apps())]);
    // m/a/loop -> .. (m), and m/b -> a: a cycle and a second way in.
    std::os::unix::fs::symlink("..", dir.path().join("m/a/loop")).unwrap();
    std::os::unix::fs::symlink("a", dir.path().join("m/b")).unwrap();
    let run = run_in(dir.path(), &["analyze", "-f", "m", "-o", "json"], None);
    assert_eq!(run.code, 0, "a cycle is not an input error: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let workloads: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .filter(|id| id.contains("/Deployment/"))
        .collect();
    assert_eq!(workloads, [DB, WEB], "each workload once: {v}");
}

#[test]
fn an_unreadable_file_is_one_error_and_its_siblings_are_read() {
    let dir = dir_with(&[("m/apps.yaml", &apps())]);
    let m = dir.path().join("m");
    std::os::unix::fs::symlink("nowhere.yaml", m.join("dangling.yaml")).unwrap();
    std::os::unix::fs::symlink("self.yaml", m.join("self.yaml")).unwrap();
    std::fs::write(m.join("latin1.yaml"), b"kind: Pod\nname: caf\xe9\n").unwrap();
    // Unreadable by permissions, where that means anything (not as root).
    let locked = m.join("locked.yaml");
    std::fs::write(&locked, apps()).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let permissions_bite = std::fs::read(&locked).is_err();
    if !permissions_bite {
        eprintln!("running as root: chmod 000 does not block reads; that case is skipped");
        std::fs::remove_file(&locked).unwrap();
    }

    let run = run_in(dir.path(), &["analyze", "-f", "m", "-o", "json"], None);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(workload_connections(&run.stdout), 2, "apps.yaml was read");
    let line = |needle: &str| -> String {
        run.stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line names {needle}: {}", run.stderr))
            .to_string()
    };
    assert!(line("dangling.yaml").contains("broken symbolic link"));
    assert!(line("self.yaml").contains("symlink loop"));
    assert!(line("latin1.yaml").contains("UTF-8"));
    if permissions_bite {
        assert!(line("locked.yaml").contains("permission denied"));
    }
    std::fs::set_permissions(m, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok();
}

// === 4. hidden folders and Helm charts ===

#[test]
fn hidden_folders_are_skipped() {
    let dir = dir_with(&[
        ("repo/apps.yaml", &apps()),
        ("repo/.git/config.yaml", "not: [valid\n"),
        (
            "repo/.github/workflows/ci.yml",
            "name: ci\non: [push]\njobs: {}\n",
        ),
        ("repo/.hidden.yaml", "{{ nope\n"),
    ]);
    let run = run_in(dir.path(), &["analyze", "-f", "repo", "-o", "json"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(without_undeclared_namespaces(&run.stderr), "");
    // Named explicitly, a hidden directory is read (and its workflow is no
    // Kubernetes object).
    let run = run_in(dir.path(), &["analyze", "-f", "repo/.github"], None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("ci.yml"), "{}", run.stderr);
}

/// The endpoint ids of an `analyze -o json` output.
fn endpoint_ids(stdout: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(stdout).unwrap();
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn include_hidden_reads_hidden_folders_and_files() {
    let dir = dir_with(&[
        ("repo/apps.yaml", &apps()),
        ("repo/.k8s/extra.yaml", &deployment("default", "hidden-dir")),
        (
            "repo/sub/.extra.yaml",
            &deployment("default", "hidden-file"),
        ),
    ]);
    let walked = |extra: &[&str]| {
        let mut args = vec!["analyze", "-f", "repo", "-o", "json"];
        args.extend_from_slice(extra);
        let run = run_in(dir.path(), &args, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        endpoint_ids(&run.stdout)
    };
    let by_default = walked(&[]);
    assert!(
        by_default.iter().all(|id| !id.contains("hidden")),
        "{by_default:?}"
    );
    assert!(by_default.contains(&"default/Deployment/web".to_string()));
    let included = walked(&["--include-hidden"]);
    for id in [
        "default/Deployment/web",
        "default/Deployment/hidden-dir",
        "default/Deployment/hidden-file",
    ] {
        assert!(included.contains(&id.to_string()), "{id} in {included:?}");
    }
    // Every command that walks directories takes it, and says so in --help.
    for command in [
        &["analyze", "--help"][..],
        &["explain", "--help"],
        &["generate", "--help"],
        &["diff", "--help"],
        &["quarantine", "--help"],
    ] {
        let run = run_in(dir.path(), command, None);
        assert_eq!(run.code, 0, "{command:?}: {}", run.stderr);
        assert!(
            run.stdout.contains("--include-hidden"),
            "{command:?}: {}",
            run.stdout
        );
    }
}

const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "chart.fullname" . }}
  labels:
    {{- include "chart.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  template:
    spec:
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"#;

const TEMPLATED_CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: alerts}
data:
  template.tmpl: |
    {{ range .Alerts }}{{ .Labels.alertname }}{{ end }}
"#;

#[test]
fn a_helm_chart_gets_one_hint_instead_of_yaml_errors() {
    let dir = dir_with(&[
        ("repo/apps.yaml", &apps()),
        ("repo/alerts.yaml", TEMPLATED_CONFIGMAP),
        (
            "repo/chart/Chart.yaml",
            "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
        ),
        ("repo/chart/values.yaml", "replicaCount: 1\n"),
        ("repo/chart/templates/deployment.yaml", TEMPLATE),
        ("repo/chart/templates/service.yaml", TEMPLATE),
        (
            "repo/chart/templates/_helpers.tpl",
            "{{- define \"x\" -}}\n",
        ),
    ]);
    let run = run_in(dir.path(), &["analyze", "-f", "repo", "-o", "json"], None);
    assert_eq!(run.code, 3, "the chart was not read: {}", run.stderr);
    assert_eq!(
        without_undeclared_namespaces(&run.stderr).lines().count(),
        1,
        "one hint: {}",
        run.stderr
    );
    assert!(run.stderr.contains("helm template"), "{}", run.stderr);
    assert!(run.stderr.contains("chart"), "{}", run.stderr);
    assert_eq!(workload_connections(&run.stdout), 2);

    // The templates directory named directly: still one hint.
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-f",
            "repo/apps.yaml",
            "-f",
            "repo/chart/templates",
        ],
        None,
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        without_undeclared_namespaces(&run.stderr).lines().count(),
        1,
        "one hint: {}",
        run.stderr
    );
    assert!(run.stderr.contains("helm template"), "{}", run.stderr);
}

// === 5. --log-format json ===

#[test]
fn log_format_json_makes_every_diagnostic_a_json_line() {
    let dir = dir_with(&[
        ("apps.yaml", &apps()),
        (
            "bad.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\nnot: [valid\n",
        ),
        ("empty.yaml", ""),
    ]);
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "-v",
            "--log-format",
            "json",
            "-f",
            "apps.yaml",
            "-f",
            "bad.yaml",
            "-f",
            "empty.yaml",
        ],
        None,
    );
    assert_eq!(run.code, 3);
    let lines: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let find = |needle: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no line says {needle}: {}", run.stderr))
    };
    let yaml_error = find("invalid YAML");
    assert_eq!(yaml_error["file"], "bad.yaml");
    assert_eq!(yaml_error["document"], 2);
    assert_eq!(yaml_error["level"], "ERROR");
    let skipped = find("ServiceAccount");
    assert_eq!(skipped["file"], "bad.yaml");
    assert_eq!(skipped["document"], 1);
    assert_eq!(find("no Kubernetes object")["file"], "empty.yaml");

    // A fatal error, and a usage error.
    let run = run_in(
        dir.path(),
        &["--log-format", "json", "analyze", "-f", "missing.yaml"],
        None,
    );
    assert_eq!(run.code, 2);
    let line: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert!(line["message"].as_str().unwrap().contains("missing.yaml"));
    let run = run_in(
        dir.path(),
        &[
            "analyze",
            "--log-format=json",
            "-f",
            "apps.yaml",
            "-o",
            "xml",
        ],
        None,
    );
    assert_eq!(run.code, 2);
    for l in run.stderr.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
    }
}

#[test]
fn no_colour_when_stderr_is_not_a_terminal() {
    let dir = dir_with(&[("apps.yaml", &apps())]);
    let run = run_in(dir.path(), &["analyze", "-vv", "-f", "apps.yaml"], None);
    assert_eq!(run.code, 0);
    assert!(!run.stderr.is_empty(), "-vv logs something");
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
}

// === 8. one copy of the Online Boutique data ===

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn online_boutique_is_kept_once() {
    let example = repo_root().join("examples/online-boutique");
    assert!(example.join("LICENSE").is_file());
    assert!(example.join("kubernetes-manifests.yaml").is_file());
    assert!(
        !repo_root()
            .join("testdata/third-party/demo-online-boutique")
            .exists(),
        "a second copy of Online Boutique"
    );
}

#[test]
fn a_fifo_in_a_directory_is_reported_not_read() {
    let dir = dir_with(&[("m/apps.yaml", &apps())]);
    let fifo = dir.path().join("m/pipe.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    // Reading a FIFO nobody writes to would block forever.
    let run = run_in(dir.path(), &["analyze", "-f", "m", "-o", "json"], None);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("pipe.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert_eq!(workload_connections(&run.stdout), 2);
}

/// stderr without the loader's warning that the input declares no
/// Namespace objects (these fixtures use `default` without declaring it).
fn without_undeclared_namespaces(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.contains("namespaces used but not given"))
        .map(|l| format!("{l}\n"))
        .collect()
}
