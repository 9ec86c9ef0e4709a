//! Reading manifests: the one place that calls the loader, and the one that
//! reports what it could not read.

use std::path::Path;

use anyhow::{Context, bail};
use kubefence_core::Cluster;
use kubefence_k8s::load::{self, Granularity, LoadOptions, Loaded, Source};

use crate::cli::{InputFiles, LiveOpts, ModelOpts};
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
    let sources: Vec<Source> = paths.iter().map(|p| source_of(p)).collect();
    tracing::info!(inputs = paths.len(), "loading manifests");
    loaded(load::load(&sources, opts), flag, paths)
}

/// `-` is stdin, anything else a path.
pub fn source_of(path: &str) -> Source {
    if path == "-" {
        Source::Stdin
    } else {
        Source::Path(path.into())
    }
}

/// Reports what `loaded` could not read and fails when it read nothing
/// (`flag` and `paths` name the input in that error).
pub fn loaded(mut loaded: Loaded, flag: &str, paths: &[String]) -> anyhow::Result<Inputs> {
    let had_errors = report(&loaded);
    ensure_something_read(&loaded, flag, paths)?;
    let cluster = std::mem::take(&mut loaded.cluster);
    Ok(Inputs {
        cluster,
        had_errors,
    })
}

/// The input of a command with [`InputFiles`]: its `-f` paths, or without
/// any, the live cluster of the kubeconfig (`namespace` is `-n`).
pub fn read_input(
    input: &InputFiles,
    namespace: Option<&str>,
    opts: &LoadOptions,
) -> anyhow::Result<Inputs> {
    if !input.files.is_empty() {
        if input.live.any() {
            bail!(
                "--kubeconfig, --context and -A read a live cluster; -f reads files: give one or the other"
            );
        }
        return read(&input.files, opts, "-f");
    }
    read_live(&input.live, namespace, opts)
}

/// The input of a command with [`InputFiles`] and [`ModelOpts`], read as
/// its "read" phase (timed, with a spinner on a terminal).
pub fn read_model_input(input: &InputFiles, model: &ModelOpts) -> anyhow::Result<Inputs> {
    let phase = crate::progress::Phase::start("read", "reading manifests");
    let read = read_input(
        input,
        model.namespace.as_deref(),
        &input
            .walk
            .apply(load_options(model.namespace(), model.by_pod())),
    )?;
    phase.done();
    Ok(read)
}

/// Reads the live cluster (read-only, paginated lists; see
/// `kubefence_operator::live`) into the same loader that reads files.
pub fn read_live(
    live: &LiveOpts,
    namespace: Option<&str>,
    opts: &LoadOptions,
) -> anyhow::Result<Inputs> {
    let (text, source) = live_objects(live, namespace)?;
    loaded(load::load_str(&text, &source, opts), "the", &[source])
}

/// The live cluster's objects as one JSON `List` document, and the name of
/// that source (`cluster https://… (namespace shop)`).
pub fn live_objects(live: &LiveOpts, namespace: Option<&str>) -> anyhow::Result<(String, String)> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kubefence_operator::live::{self, Scope};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (read, source) = runtime.block_on(async {
        let options = KubeConfigOptions {
            context: live.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config: anyhow::Result<kube::Config> = match &live.kubeconfig {
            Some(path) => match Kubeconfig::read_from(path) {
                Ok(kubeconfig) => kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(Into::into),
                Err(e) => {
                    Err(anyhow::Error::from(e).context(format!("--kubeconfig {}", path.display())))
                }
            },
            None if live.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(Into::into),
            None => kube::Config::infer().await.map_err(Into::into),
        };
        let config = config.context(
            "the live cluster is to be read (no -f given, or diff --before-cluster), but there \
             is no usable kubeconfig: give -f PATH to read manifests, or --kubeconfig/--context",
        )?;
        let scope = match (live.all_namespaces, namespace) {
            (true, _) => Scope::AllNamespaces,
            (false, Some(ns)) => Scope::Namespace(ns.to_string()),
            (false, None) => Scope::Namespace(config.default_namespace.clone()),
        };
        let source = format!(
            "cluster {}{}",
            config.cluster_url,
            match &scope {
                Scope::AllNamespaces => " (all namespaces)".to_string(),
                Scope::Namespace(ns) => format!(" (namespace {ns})"),
            }
        );
        tracing::info!(%source, "reading the live cluster");
        let client = kube::Client::try_from(config).context("cannot build the API client")?;
        let read = live::read(&client, &scope).await?;
        anyhow::Ok((read, source))
    })?;
    tracing::info!(
        objects = read.objects.len(),
        requests = read.requests,
        "read the live cluster"
    );
    for w in &read.warnings {
        logging::report(Severity::Warning, logging::Place::default(), w);
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": read.objects});
    Ok((list.to_string(), source))
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
