//! `synth`: writes a synthetic cluster as manifests, for whole-command
//! benchmarks (`kubefence analyze` against `nca` on identical input).
//!
//! ```text
//! synth --workloads 1000 --namespaces 20 --seed 1 --out DIR
//! synth --small --seed 7 --out DIR
//! ```
//!
//! Writes `DIR/resources.yaml` (Namespaces, workloads, Services) and
//! `DIR/policies.yaml` (NetworkPolicies); with `--json`, `DIR/resources.json`
//! and `DIR/policies.json` (each a `kind: List`). `--open-every N` leaves the
//! default-deny policy out of every N-th namespace; `--policies-per-100 N`
//! sets the number of policies per 100 workloads (44 by default).
//!
//! `synth --baseline --workloads 10000 --refs 3 --out DIR` writes instead
//! `DIR/manifests.yaml`: workloads calling each other through Services and
//! ConfigMaps, no policies (input for `kubefence generate`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: synth [--workloads N] [--namespaces N] [--seed S] [--open-every N] [--policies-per-100 N] [--json] [--small] [--analyze] [--baseline [--refs N]] --out DIR";

struct Args {
    workloads: usize,
    namespaces: usize,
    seed: u64,
    small: bool,
    analyze: bool,
    baseline: bool,
    refs: usize,
    open_every: Option<usize>,
    policies_per_100: usize,
    json: bool,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        workloads: 1000,
        namespaces: 20,
        seed: 1,
        small: false,
        analyze: false,
        baseline: false,
        refs: 3,
        open_every: None,
        policies_per_100: 44,
        json: false,
        out: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--workloads" => args.workloads = parse_num(&value("--workloads")?)?,
            "--namespaces" => args.namespaces = parse_num(&value("--namespaces")?)?,
            "--seed" => args.seed = parse_num(&value("--seed")?)?,
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--small" => args.small = true,
            "--analyze" => args.analyze = true,
            "--baseline" => args.baseline = true,
            "--refs" => args.refs = parse_num(&value("--refs")?)?,
            "--open-every" => args.open_every = Some(parse_num(&value("--open-every")?)?),
            "--policies-per-100" => {
                args.policies_per_100 = parse_num(&value("--policies-per-100")?)?;
            }
            "--json" => args.json = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.out.as_os_str().is_empty() {
        return Err(format!("--out is required\n{USAGE}"));
    }
    Ok(args)
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.baseline {
        return write_baseline(&args);
    }
    let cluster = if args.small {
        kubefence_testkit::small_random(args.seed)
    } else {
        kubefence_testkit::scaled_with(&kubefence_testkit::ScaledProfile {
            workloads: args.workloads,
            namespaces: args.namespaces,
            seed: args.seed,
            open_namespace_every: args.open_every,
            policies_per_100_workloads: args.policies_per_100,
        })
    };
    let written = if args.json {
        kubefence_testkit::write_json_case(&cluster, &args.out)
    } else {
        kubefence_testkit::write_case(&cluster, &args.out)
    };
    if let Err(e) = written {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "wrote {} namespaces, {} workloads, {} services, {} policies to {}",
        cluster.namespaces.len(),
        cluster.workloads.len(),
        cluster.services.len(),
        cluster.policies.len(),
        args.out.display()
    );
    if args.analyze {
        // The direct path (no YAML): build the core cluster and analyze it.
        let started = std::time::Instant::now();
        let core = kubefence_testkit::to_cluster(&cluster);
        let built = started.elapsed();
        let conn = kubefence_core::engine::analyze(&core, &Default::default());
        let analyzed = started.elapsed();
        let connections = conn.connection_count();
        eprintln!(
            "analyze: {} endpoints, {} connections; build {:.1} ms, analyze {:.1} ms, count {:.1} ms",
            conn.endpoints.len(),
            connections,
            built.as_secs_f64() * 1e3,
            (analyzed - built).as_secs_f64() * 1e3,
            (started.elapsed() - analyzed).as_secs_f64() * 1e3,
        );
    }
    ExitCode::SUCCESS
}

fn write_baseline(args: &Args) -> ExitCode {
    let synth = kubefence_testkit::baseline_synth::baseline_cluster(
        args.workloads,
        args.namespaces,
        args.refs,
        args.seed,
    );
    let path = args.out.join("manifests.yaml");
    let written = std::fs::create_dir_all(&args.out).and_then(|()| {
        std::fs::write(
            &path,
            kubefence_testkit::baseline_synth::to_manifests(&synth),
        )
    });
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "wrote {} workloads, {} services, {} config maps, {} references to {}",
        synth.cluster.workloads.len(),
        synth.cluster.services.len(),
        synth.cluster.config_maps.len(),
        synth.edges.len(),
        path.display()
    );
    if args.analyze {
        // The builder alone, on the cluster model (no YAML).
        let before = peak_rss_kib();
        let started = std::time::Instant::now();
        let built = kubefence_core::baseline::build(
            &synth.cluster,
            &Default::default(),
            &Default::default(),
        );
        let elapsed = started.elapsed();
        match built {
            Ok(b) => eprintln!(
                "generate: {} policies, {} references in {:.1} ms; peak RSS {} KiB (before building: {} KiB)",
                b.policies.len(),
                b.report.references.len(),
                elapsed.as_secs_f64() * 1e3,
                peak_rss_kib().unwrap_or(0),
                before.unwrap_or(0)
            ),
            Err(e) => {
                eprintln!("generate: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// VmHWM from /proc/self/status (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
