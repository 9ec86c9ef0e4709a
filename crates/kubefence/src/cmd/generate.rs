//! `kubefence generate`: a baseline NetworkPolicy for every workload, from
//! what its manifests already say.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use kubefence_core::baseline::{self, Baseline, BaselineConfig, Scope};

use crate::cli::InputFiles;
use crate::exit;
use crate::inputs;
use crate::logging::{self, Place, Severity};
use crate::output::{self, Format, FormatParser};

const LONG_ABOUT: &str = "\
Generates one least-privilege NetworkPolicy per workload (Deployment,
StatefulSet, DaemonSet, ReplicaSet without an owner, Job, CronJob, bare Pod)
from what its manifests already say.

Each policy selects the workload's pods with its full spec.selector (plus
the pod template's labels that tell it apart where that selector also matches
another workload's pods) and allows:
  - DNS to the cluster resolver (UDP and TCP 53 by default);
  - traffic among the workload's own pods;
  - for every reference from workload A to a Service of workload B (an env
    value, a ConfigMap value, an argument or command word naming the Service:
    svc, svc:port, svc.ns, svc.ns.svc, svc.ns.svc.cluster.local, with or
    without scheme (jdbc:postgresql://… too), user, path and query, every
    host of a multi-host URL; host and port split across *_HOST/*_PORT or
    PGHOST/PGPORT variables; a flag's value that is exactly a Service's
    name, as in --cart_svc carts): A's egress to B's pods and B's ingress
    from A's pods, on the Service's target ports (every port when none is
    written);
  - ingress from the ingress controllers of the Ingress's class
    (ingressClassName or the kubernetes.io/ingress.class annotation), only
    on the ports it routes to the workload;
  - ingress from outside the cluster on the target ports of LoadBalancer,
    NodePort and externalIPs Services.
Nothing else. A bare word counts only as the value of a variable or flag
named like an address (*HOST, *_ADDR, *_URL, *_SERVICE, …: GET_HOSTS_FROM=dns
is not) or as a flag's value naming an existing Service; URL paths and query
values never count. Names that match no Service are reported as unresolved and
add no rule; hosts outside the cluster are reported as external (a
NetworkPolicy cannot name hosts); an Ingress class no controller serves, and
workloads no label tells apart, are reported too (--report). A workload with an empty selector gets no policy (it would
select every pod of its namespace) and is reported as an error.

Workloads annotated kubefence.dev/baseline: disabled are skipped. Protected
namespaces (kube-system, kube-public, kube-node-lease, and those of --config)
are skipped unless named with -n. Output is deterministic, byte for byte.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence generate -f manifests/ > policies.yaml
  kubefence generate -f manifests/ -n shop -o json
  kubefence generate -f manifests/ --out-dir policies/
  kubefence generate -f manifests/ --report text
  kubefence generate -f manifests/ --report json | jq '.unresolved'
  kubefence generate -f manifests/ --config kubefence.yaml
  kubectl get deploy,sts,ds,svc,ing,cm -A -o yaml | kubefence generate -f -

--config FILE (YAML; every field optional, unknown fields are errors):
  clusterDomain: cluster.local
  dns:                      # who every workload may query, and on which ports
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
  ingressControllers:       # default: ingress-nginx and the OpenShift router
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
      podSelector: {matchLabels: {app.kubernetes.io/name: ingress-nginx}}
      className: nginx        # the IngressClass it serves; omitted: Ingresses
                              # without a class
  externalCidrs: [0.0.0.0/0, ::/0]   # sources allowed to LoadBalancer/NodePort
  protectedNamespaces: [kube-system, kube-public, kube-node-lease]

Check what the policies allow before applying them:
  kubefence generate -f manifests/ > baseline.yaml
  kubefence analyze -f manifests/ -f baseline.yaml

Exit codes: 0 ok; 2 usage or fatal error (bad flag, missing file, bad
--config); 3 some documents or objects were bad, or some workloads could not
get a correct policy (reported on stderr); the rest was generated.";

/// Generate a baseline NetworkPolicy for every workload.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct GenerateOpts {
    #[command(flatten)]
    pub input: InputFiles,
    /// Generate only for this namespace (protected ones included when named);
    /// also the namespace of objects that name none. Default: every
    /// namespace but the protected ones, and `default` for unnamed objects.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Policy format: YAML documents, one NetworkPolicy a document, or one
    /// JSON `kind: List` (auto: yaml).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::POLICY_FORMATS), default_value = "auto")]
    pub output: Format,
    /// Write one file per policy, DIR/<namespace>/<name>.yaml (or .json),
    /// instead of printing; other files in DIR are left alone.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Print what was inferred (references, unresolved names, external
    /// hosts, errors, skipped workloads) instead of the policies.
    /// `text`: one section a list, one line an entry; `json`:
    /// {"references":[…],"unresolved":[…],"external":[…],"errors":[…],"skipped":[…]}.
    #[arg(long, value_name = "FORMAT", value_parser = FormatParser(output::REPORT_FORMATS))]
    pub report: Option<Format>,
    /// Baseline configuration (YAML): DNS and ingress controller selectors,
    /// cluster domain, external CIDRs, protected namespaces.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(opts: &GenerateOpts) -> anyhow::Result<u8> {
    let config = match &opts.config {
        Some(path) => read_config(path)?,
        None => BaselineConfig::default(),
    };
    let namespace = opts.namespace.as_deref().unwrap_or("default");
    let inputs::Inputs {
        cluster,
        had_errors: had_input_errors,
    } = inputs::read_input(
        &opts.input,
        opts.namespace.as_deref(),
        &opts
            .input
            .walk
            .apply(inputs::load_options(namespace, false)),
    )?;
    let scope = Scope {
        namespaces: opts
            .namespace
            .as_ref()
            .map(|ns| std::iter::once(ns.clone()).collect()),
    };
    let generated = baseline::build(&cluster, &config, &scope)?;
    let had_policy_errors = report_problems(&generated, opts.report.is_none());

    let format = opts.output.resolve(Format::Yaml, Format::Yaml);
    let mut refused = false;
    match (opts.report, &opts.out_dir) {
        (Some(report), _) => {
            super::with_stdout(|w| output::policies::write_report(w, &generated, report))?;
        }
        (None, Some(dir)) => refused = write_dir(dir, &generated, format)?,
        (None, None) => {
            super::with_stdout(|w| output::policies::write_policies(w, &generated, format))?;
        }
    }
    Ok(exit::with_input_errors(
        exit::OK,
        had_input_errors || had_policy_errors || refused,
    ))
}

pub(crate) fn read_config(path: &Path) -> anyhow::Result<BaselineConfig> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read", path.display()))?;
    Ok(kubefence_k8s::config::parse_baseline_config(
        &text,
        &path.display().to_string(),
    )?)
}

/// Prints the workloads that got no correct policy (always) and, unless the
/// report is being printed, a pointer to it when names were left
/// unresolved. Returns whether any workload is in error.
fn report_problems(generated: &Baseline, point_to_report: bool) -> bool {
    let report = &generated.report;
    for p in &report.errors {
        logging::report(
            Severity::Error,
            Place::object(&p.workload.to_string()),
            &p.message,
        );
    }
    for p in &report.skipped {
        logging::report(
            Severity::Info,
            Place::object(&p.workload.to_string()),
            &format!("skipped: {}", p.message),
        );
    }
    if point_to_report && (!report.unresolved.is_empty() || !report.external.is_empty()) {
        logging::report(
            Severity::Note,
            Place::default(),
            &format!(
                "note: {} unresolved {}, {} external {} (no rule added; see --report text)",
                report.unresolved.len(),
                plural(report.unresolved.len(), "name", "names"),
                report.external.len(),
                plural(report.external.len(), "host", "hosts"),
            ),
        );
    }
    // These change what the policies mean: said even without --report.
    for u in &report.unknown_ingress_classes {
        let class = u.class.as_deref().unwrap_or("(none)");
        logging::report(
            Severity::Warning,
            Place::object(&u.ingress.to_string()),
            &format!(
                "has class {class}, which no ingressControllers entry serves: no ingress from a controller was added for it (add one with className to --config)"
            ),
        );
    }
    for d in &report.indistinguishable {
        logging::report(
            Severity::Warning,
            Place::object(&d.workload.to_string()),
            &format!(
                "its policy selects {}, which also matches the pods of {}; no label of the pod template tells them apart",
                d.selector,
                d.also_selects.join(", ")
            ),
        );
    }
    !report.errors.is_empty()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Writes one file per policy under `dir` (never outside it, see
/// [`output::out_dir`]). Returns whether some policy was refused.
fn write_dir(dir: &Path, generated: &Baseline, format: Format) -> anyhow::Result<bool> {
    let entries = generated
        .policies
        .iter()
        .map(|p| {
            Ok(output::out_dir::Entry {
                namespace: &p.policy.namespace,
                name: &p.policy.name,
                object: format!("NetworkPolicy {}/{}", p.policy.namespace, p.policy.name),
                text: output::policies::policy_file(p, format)?,
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let outcome = output::out_dir::write_all(dir, output::policies::extension(format), entries)?;
    for link in &outcome.replaced_links {
        logging::report(
            Severity::Warning,
            Place::default(),
            &format!(
                "{} was a symbolic link: replaced by the policy file, not followed",
                link.display()
            ),
        );
    }
    for r in &outcome.refused {
        logging::report(
            Severity::Error,
            Place::object(&r.object),
            &format!("not written: {}", r.reason),
        );
    }
    logging::report(
        Severity::Note,
        Place::default(),
        &format!(
            "wrote {} {} to {}",
            outcome.written,
            plural(outcome.written, "policy", "policies"),
            dir.display()
        ),
    );
    Ok(!outcome.refused.is_empty())
}
