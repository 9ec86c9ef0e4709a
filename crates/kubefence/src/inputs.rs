//! Reading manifests: the one place that calls the loader, and the one that
//! reports what it could not read.

use std::path::Path;

use anyhow::bail;
use kubefence_core::Cluster;
use kubefence_k8s::load::{self, Granularity, LoadOptions, Loaded, Source};

use crate::logging::{self, Severity};

/// What a command read: the cluster, and whether some input was bad (the
/// errors were reported already).
pub struct Inputs {
    pub cluster: Cluster,
    pub had_errors: bool,
}

/// Checks and loads every path (`-` is stdin; directories are read
/// recursively by the loader), reports what could not be read, and fails
/// when nothing at all was read: an empty input is not an empty result.
/// `flag` names the paths in that error (`-f`, `--before`).
/// `opts` come from [`load_options`] and the walk flags (`--include-hidden`).
pub fn read(paths: &[String], opts: &LoadOptions, flag: &str) -> anyhow::Result<Inputs> {
    check_paths(paths)?;
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| {
            if p == "-" {
                Source::Stdin
            } else {
                Source::Path(p.into())
            }
        })
        .collect();
    tracing::info!(inputs = paths.len(), "loading manifests");
    let loaded = load::load(&sources, opts);
    let had_errors = report(&loaded);
    ensure_something_read(&loaded, flag, paths)?;
    Ok(Inputs {
        cluster: loaded.cluster,
        had_errors,
    })
}

pub fn load_options(namespace: &str, by_pod: bool) -> LoadOptions {
    LoadOptions {
        default_namespace: namespace.to_string(),
        granularity: if by_pod {
            Granularity::Pod
        } else {
            Granularity::Workload
        },
        ..LoadOptions::default()
    }
}

/// Fails when `loaded` holds no object that kubefence reads: analysing
/// nothing would print "no connection is allowed", a verdict about nothing.
fn ensure_something_read(loaded: &Loaded, flag: &str, paths: &[String]) -> anyhow::Result<()> {
    let c = &loaded.cluster;
    let empty = c.namespaces.is_empty()
        && c.workloads.is_empty()
        && c.services.is_empty()
        && c.ingresses.is_empty()
        && c.config_maps.is_empty()
        && c.policies.is_empty();
    if !empty {
        return Ok(());
    }
    let sources = paths
        .iter()
        .map(|p| if p == "-" { "<stdin>" } else { p.as_str() })
        .collect::<Vec<_>>()
        .join(", ");
    let mut kinds: Vec<&str> = loaded.skipped.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let skipped = if kinds.is_empty() {
        String::new()
    } else {
        format!(
            " ({} objects of kinds kubefence does not read: {})",
            loaded.skipped.len(),
            kinds.join(", ")
        )
    };
    bail!("{flag} {sources}: nothing to work on: no Kubernetes object was read{skipped}");
}

/// Fails (a usage error) when a path does not exist or stdin is named twice:
/// a typo in `-f` must not silently analyse less.
pub fn check_paths<'a>(paths: impl IntoIterator<Item = &'a String>) -> anyhow::Result<()> {
    let mut stdin_seen = false;
    for p in paths {
        if p == "-" {
            if stdin_seen {
                bail!("stdin (-) can be read only once");
            }
            stdin_seen = true;
        } else if !Path::new(p).exists() {
            bail!("{p}: no such file or directory");
        }
    }
    Ok(())
}

/// Reports input errors (always) and skipped objects (with `-v`) on
/// stderr. Returns whether there were input errors.
pub fn report(loaded: &Loaded) -> bool {
    for s in &loaded.skipped {
        logging::report_at(
            Severity::Info,
            &s.location,
            &format!(
                "skipped {} ({}): not used by the analysis",
                s.kind, s.api_version
            ),
        );
    }
    if !loaded.skipped.is_empty() {
        tracing::debug!(count = loaded.skipped.len(), "objects skipped");
    }
    for w in &loaded.warnings {
        logging::report_at(Severity::Warning, &w.location, &w.message);
    }
    for e in &loaded.errors {
        logging::report_at(Severity::Error, &e.location, &e.message);
    }
    loaded.has_errors()
}
