//! Reading manifests: the one place that calls the loader, and the one that
//! reports what it could not read.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use kubefence_core::Cluster;
use kubefence_k8s::load::{self, Granularity, LoadOptions, Loaded, Source};

/// Loads every path (`-` is stdin; directories are read recursively by the
/// loader). Returns the cluster, the input errors and the skipped objects,
/// each already formatted for stderr.
pub fn load_inputs(
    paths: &[String],
    namespace: &str,
    by_pod: bool,
) -> (Cluster, Vec<String>, Vec<String>) {
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
    let opts = load_options(namespace, by_pod);
    tracing::info!(inputs = paths.len(), "loading manifests");
    split(load::load(&sources, &opts))
}

pub fn load_options(namespace: &str, by_pod: bool) -> LoadOptions {
    LoadOptions {
        default_namespace: namespace.to_string(),
        granularity: if by_pod {
            Granularity::Pod
        } else {
            Granularity::Workload
        },
    }
}

/// A loader result as (cluster, errors, skipped) with printable messages.
pub fn split(loaded: Loaded) -> (Cluster, Vec<String>, Vec<String>) {
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let errors = loaded.errors.iter().map(ToString::to_string).collect();
    let skipped = loaded
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{}: skipped {} ({}): not used by the analysis",
                s.location, s.kind, s.api_version
            )
        })
        .collect();
    (loaded.cluster, errors, skipped)
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

/// Prints input errors (always) and skipped objects (as info logs, shown
/// with `-v`) to stderr. Returns whether there were input errors.
pub fn report(errors: &[String], skipped: &[String]) -> bool {
    for s in skipped {
        tracing::info!("{s}");
    }
    if !skipped.is_empty() {
        tracing::debug!(count = skipped.len(), "objects skipped");
    }
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for e in errors {
        // Nowhere to report a failing stderr.
        let _ = writeln!(err, "kubefence: {e}");
    }
    !errors.is_empty()
}
