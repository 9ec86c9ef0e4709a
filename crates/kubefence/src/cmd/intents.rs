//! `kubefence intents`: security intents offline.
//!
//! - `render`: what each engine would get for every binding of the input
//!   (SecurityIntents and bindings, kubefence's or Nimbus's, and the
//!   manifests whose workloads they select), and which workloads each
//!   binding selects. Nothing is sent anywhere.
//! - `import`: Nimbus objects (intent.security.nimbus.com/v1alpha1) as
//!   kubefence's (kubefence.dev/v1alpha1).

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use kubefence_core::intent::Options as IntentOptions;
use kubefence_core::ruleset::Engine;
use kubefence_k8s::intent as k8s_intent;
use kubefence_k8s::load::{self, Source};
use serde_json::{Value, json};

use crate::logging::{self, Place, Severity};
use crate::{exit, inputs};

const RENDER_HELP: &str = "\
Examples:
  kubefence intents render -f intents.yaml -f manifests/
  kubefence intents render -f nimbus-examples/ -f app.yaml --engine cilium -o json
  kubefence intents import -f nimbus-intents.yaml > intents.yaml

The catalogue of intent ids and what each means per engine: docs/intents.md.
An unknown id, a missing SecurityIntent or a bad parameter is reported for
its binding (exit 3); the binding's other intents are still rendered.";

/// Security intents: render them per engine, or import Nimbus's.
#[derive(Debug, Args)]
pub struct IntentsOpts {
    #[command(subcommand)]
    pub command: IntentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum IntentsCommand {
    /// Print what each engine would get, and which workloads each binding
    /// selects (offline).
    #[command(after_long_help = RENDER_HELP)]
    Render(RenderOpts),
    /// Convert Nimbus objects (intent.security.nimbus.com) to kubefence's.
    #[command(after_long_help = RENDER_HELP)]
    Import(ImportOpts),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Networkpolicy,
    Cilium,
    Clusternetworkpolicy,
    Adminnetworkpolicy,
    Kubearmor,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Networkpolicy => Self::NetworkPolicy,
            EngineArg::Cilium => Self::Cilium,
            EngineArg::Clusternetworkpolicy => Self::ClusterNetworkPolicy,
            EngineArg::Adminnetworkpolicy => Self::AdminNetworkPolicy,
            EngineArg::Kubearmor => Self::KubeArmor,
        }
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderOpts {
    /// Intents, bindings and manifests: files or directories (repeatable);
    /// `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<String>,
    /// Only these engines (repeatable; default: all five).
    #[arg(long, value_enum)]
    pub engine: Vec<EngineArg>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct ImportOpts {
    /// Nimbus SecurityIntent / SecurityIntentBinding /
    /// ClusterSecurityIntentBinding objects (repeatable); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

pub fn run(opts: &IntentsOpts) -> anyhow::Result<u8> {
    match &opts.command {
        IntentsCommand::Render(o) => render(o),
        IntentsCommand::Import(o) => import(o),
    }
}

fn sources(files: &[String]) -> anyhow::Result<Vec<Source>> {
    inputs::check_paths(files)?;
    Ok(files
        .iter()
        .map(|p| {
            if p == "-" {
                Source::Stdin
            } else {
                Source::Path(p.into())
            }
        })
        .collect())
}

/// Every object of the inputs as `(where, object)`, reporting what could
/// not be read.
fn raw_objects(sources: &[Source]) -> (Vec<(String, Value)>, bool) {
    let raw = load::read_objects(sources);
    for e in &raw.errors {
        logging::report_at(Severity::Error, &e.location, &e.message);
    }
    let objects = raw
        .objects
        .into_iter()
        .map(|(loc, o)| (loc.to_string(), o))
        .collect();
    (objects, !raw.errors.is_empty())
}

fn print(format: Format, documents: &[Value]) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&json!(documents))?;
            s.push('\n');
            s
        }
        Format::Yaml => {
            let mut s = String::new();
            for d in documents {
                s.push_str("---\n");
                s.push_str(&serde_saphyr::to_string(d)?);
            }
            s
        }
    };
    super::with_stdout(|out| out.write_all(text.as_bytes()))
}

fn render(opts: &RenderOpts) -> anyhow::Result<u8> {
    let sources = sources(&opts.files)?;
    let (objects, mut had_errors) = raw_objects(&sources);
    let intents = k8s_intent::read(&objects);
    for (location, message) in &intents.errors {
        logging::report(
            Severity::Error,
            Place::default(),
            &format!("{location}: {message}"),
        );
        had_errors = true;
    }
    if intents.bindings.is_empty() {
        bail!(
            "-f {}: no SecurityIntentBinding or ClusterSecurityIntentBinding was read (kubefence.dev or intent.security.nimbus.com)",
            opts.files.join(", ")
        );
    }
    // The manifests: the loader reads the workloads the bindings select
    // (it skips the intent kinds, which are not part of the cluster model).
    let loaded = load::load(&sources, &inputs::load_options("default", false));
    for e in &loaded.errors {
        logging::report_at(Severity::Error, &e.location, &e.message);
    }
    let mut engines: Vec<Engine> = opts.engine.iter().map(|&e| e.into()).collect();
    if engines.is_empty() {
        engines = Engine::ALL.to_vec();
    }
    engines.sort();
    engines.dedup();
    let resolved = k8s_intent::resolve_all(
        &intents,
        &loaded.cluster,
        &engines,
        &IntentOptions::default(),
    );
    let mut documents = Vec::new();
    for r in &resolved {
        for (intent, error) in &r.errors {
            logging::report(
                Severity::Error,
                Place::default(),
                &format!("{} in {}: intent {intent}: {error}", r.binding, r.namespace),
            );
            had_errors = true;
        }
        if r.selects.is_empty() {
            logging::report(
                Severity::Warning,
                Place::default(),
                &format!(
                    "{} in {}: selects no workload of the input",
                    r.binding, r.namespace
                ),
            );
        }
        documents.push(k8s_intent::document(r));
    }
    print(opts.output, &documents)?;
    Ok(if had_errors {
        exit::INPUT_ERRORS
    } else {
        exit::OK
    })
}

fn import(opts: &ImportOpts) -> anyhow::Result<u8> {
    let sources = sources(&opts.files)?;
    let (objects, mut had_errors) = raw_objects(&sources);
    let mut documents = Vec::new();
    for (location, object) in &objects {
        match k8s_intent::import(object) {
            Some((converted, dropped)) => {
                for field in dropped {
                    logging::report(
                        Severity::Warning,
                        Place::default(),
                        &format!("{location}: {field} has no kubefence equivalent; dropped"),
                    );
                }
                documents.push(converted);
            }
            None => {
                logging::report(
                    Severity::Error,
                    Place::default(),
                    &format!(
                        "{location}: {} {}: not a Nimbus intent object (intent.security.nimbus.com/v1alpha1 SecurityIntent, SecurityIntentBinding or ClusterSecurityIntentBinding)",
                        object["apiVersion"].as_str().unwrap_or("?"),
                        object["kind"].as_str().unwrap_or("?")
                    ),
                );
                had_errors = true;
            }
        }
    }
    if documents.is_empty() {
        bail!(
            "-f {}: no Nimbus intent object was read",
            opts.files.join(", ")
        );
    }
    print(opts.output, &documents)?;
    Ok(if had_errors {
        exit::INPUT_ERRORS
    } else {
        exit::OK
    })
}
