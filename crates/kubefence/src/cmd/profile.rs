//! `kubefence profile render`: an IsolationProfile's policy, offline, with
//! the guardrails' narrowings and the Effective analysis (which other
//! policies of the namespace reopen a path the profile closes), for CI.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use kubefence_core::Cluster;
use kubefence_core::profile::{self, Effectiveness, Profile, ProfileConfig};
use kubefence_k8s::crd::profile::IsolationProfile;
use serde_json::{Value, json};

use crate::exit;
use crate::inputs;

const RENDER_LONG_ABOUT: &str = "\
Builds the NetworkPolicy of every IsolationProfile found in the files (one
shared policy per profile: ingress only from the router, egress to the public
internet except the blocked ranges and the metadata address, DNS as the
profile says; a custom policy wrapped and narrowed to the same guardrails),
proves with the semantics engine that no rule reaches a blocked address, and
reports which other NetworkPolicies of the profile's namespace (read from the
same files) reopen a path the profile closes: NetworkPolicies add up, so a
policy that allows ingress from everywhere undoes the profile.

The files may mix profiles with any other manifests (NetworkPolicies,
workloads, pods, namespaces): objects of other kinds are the namespace the
analysis runs on. Nothing is sent to a cluster.";

const RENDER_AFTER_LONG_HELP: &str = "\
Examples:
  kubefence profile render -f profile.yaml
  kubefence profile render -f profile.yaml -f namespace-dump.yaml -o json
  kubectl get netpol,pods -n sandboxes -o yaml > ns.yaml && kubefence profile render -f profile.yaml -f ns.yaml

YAML (default): the policies, ready for `kubectl apply -f -`, each preceded by
comments giving the narrowings and the Effective verdict with every reopened
path; for spec.engine cilium, clusternetworkpolicy or adminnetworkpolicy, then
the guardrails as that engine's deny rules (egress to the blocked ranges),
which no namespace policy can override, so a path they deny is not counted as
reopened. JSON:
{\"profiles\":[{profile,policy,guardrails,narrowed,effective,reopenedPaths,pool}]}.

Exit codes: 0 every profile is effective; 1 some profile's paths are reopened
by another policy; 2 usage or fatal error (a profile that cannot be built:
empty selector, bad field); 3 some documents were bad (reported on stderr) and
the rest was rendered.";

#[derive(Debug, Args)]
pub struct ProfileOpts {
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print the policies of IsolationProfiles and their Effective analysis.
    #[command(long_about = RENDER_LONG_ABOUT, after_long_help = RENDER_AFTER_LONG_HELP)]
    Render(RenderOpts),
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderOpts {
    /// A file with IsolationProfiles and, optionally, the namespace's other
    /// objects (repeatable; `-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub output: RenderFormat,
    /// The namespace of profiles (and objects) that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The cluster's pod or service CIDR (repeatable): blocked too.
    #[arg(long = "cluster-cidr", value_name = "CIDR")]
    pub cluster_cidrs: Vec<ipnet::IpNet>,
}

pub fn run(opts: &ProfileOpts) -> anyhow::Result<u8> {
    match &opts.command {
        ProfileCommand::Render(r) => render(r),
    }
}

/// Every IsolationProfile document of `text` (other kinds are skipped).
fn profiles_in(text: &str, label: &str) -> anyhow::Result<Vec<IsolationProfile>> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).with_context(|| format!("{label}: not YAML or JSON"))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let items = match doc["kind"].as_str() {
            Some("List") => doc["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![doc],
        };
        for item in items {
            if item["kind"] != "IsolationProfile" {
                continue;
            }
            let p: IsolationProfile = serde_json::from_value(item)
                .with_context(|| format!("{label}: document {i}: not an IsolationProfile"))?;
            out.push(p);
        }
    }
    Ok(out)
}

struct Rendered {
    profile: Profile,
    built: profile::Built,
    effect: Effectiveness,
    /// The guardrail denies of an engine other than NetworkPolicy.
    guardrails: Option<Value>,
}

fn render(opts: &RenderOpts) -> anyhow::Result<u8> {
    inputs::check_paths(opts.files.iter())?;
    let mut found = Vec::new();
    let mut texts = Vec::new();
    for file in &opts.files {
        let text = if file == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read stdin")?;
            s
        } else {
            std::fs::read_to_string(file).with_context(|| format!("{file}: cannot read"))?
        };
        found.extend(profiles_in(&text, file)?);
        texts.push((file.clone(), text));
    }
    if found.is_empty() {
        anyhow::bail!("no IsolationProfile in {}", opts.files.join(", "));
    }
    // The other objects, read as every other command reads manifests.
    let load = inputs::load_options(&opts.namespace, false);
    let loaded = kubefence_k8s::load::join(
        texts
            .iter()
            .map(|(label, text)| kubefence_k8s::load::part_of_str(text, label, &load))
            .collect(),
        &load,
    );
    let had_errors = inputs::report(&loaded);
    let cluster: Cluster = loaded.cluster;
    let cfg = ProfileConfig {
        cluster_cidrs: opts.cluster_cidrs.clone(),
        ..ProfileConfig::default()
    };
    let mut rendered = Vec::new();
    for p in &found {
        let core = kubefence_k8s::profile::to_core(p, &opts.namespace).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "IsolationProfile {}: {}",
                p.metadata.name.clone().unwrap_or_default(),
                list.join("; ")
            )
        })?;
        if !p.spec.enabled {
            tracing::warn!(profile = %core.id(), "spec.enabled is false: no policy");
            continue;
        }
        let built = profile::build(&core, &cfg)?;
        let mut with = cluster.clone();
        with.policies.retain(|np| np.id() != built.policy.id());
        with.policies.push(built.policy.clone());
        with.add_implicit_namespaces();
        let effect = profile::reopened_paths(&core, &built, &with);
        let guardrails = match kubefence_k8s::adapters::profile_guardrails(&core, &built) {
            None => None,
            Some(Ok(r)) => {
                for warning in &r.warnings {
                    tracing::warn!(profile = %core.id(), "{warning}");
                }
                Some(r.object)
            }
            Some(Err(e)) => anyhow::bail!("IsolationProfile {}: {e}", core.id()),
        };
        rendered.push(Rendered {
            profile: core,
            built,
            effect,
            guardrails,
        });
    }
    super::with_stdout(|w| match opts.output {
        RenderFormat::Yaml => write_yaml(w, &rendered),
        RenderFormat::Json => write_json(w, &rendered),
    })?;
    let code = if rendered.iter().all(|r| r.effect.effective()) {
        exit::OK
    } else {
        exit::NEGATIVE
    };
    Ok(exit::with_input_errors(code, had_errors))
}

/// The policy as applied: the rendered object with kubefence's labels.
fn policy_object(r: &Rendered) -> Value {
    let mut np = kubefence_k8s::render::network_policy(&r.built.policy);
    np.metadata.labels = Some(r.built.labels.clone());
    let mut v = serde_json::to_value(&np).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!("networking.k8s.io/v1"));
        o.insert("kind".into(), json!("NetworkPolicy"));
    }
    v
}

fn write_yaml<W: Write>(w: &mut W, rendered: &[Rendered]) -> std::io::Result<()> {
    for r in rendered {
        writeln!(w, "---")?;
        writeln!(w, "# IsolationProfile {}", r.profile.id())?;
        for n in &r.built.narrowed {
            writeln!(w, "# narrowed by the guardrails: {n}")?;
        }
        if r.effect.effective() {
            writeln!(
                w,
                "# Effective: True (no other policy of the namespace reopens a path the profile closes)"
            )?;
        } else {
            writeln!(
                w,
                "# Effective: False ({} path(s) reopened by other policies):",
                r.effect.reopened.len()
            )?;
            for path in &r.effect.reopened {
                writeln!(w, "#   {path}")?;
                for e in &path.endpoints {
                    writeln!(w, "#     {e}")?;
                }
            }
        }
        let yaml = serde_saphyr::to_string(&policy_object(r)).map_err(std::io::Error::other)?;
        w.write_all(yaml.as_bytes())?;
        if let Some(object) = &r.guardrails {
            writeln!(w, "---")?;
            writeln!(
                w,
                "# The guardrails as {} denies: no namespace policy can reopen a blocked range",
                r.profile.engine.as_str()
            )?;
            let yaml = serde_saphyr::to_string(object).map_err(std::io::Error::other)?;
            w.write_all(yaml.as_bytes())?;
        }
    }
    Ok(())
}

fn write_json<W: Write>(w: &mut W, rendered: &[Rendered]) -> std::io::Result<()> {
    let profiles: Vec<Value> = rendered
        .iter()
        .map(|r| {
            json!({
                "profile": r.profile.id(),
                "policy": policy_object(r),
                "guardrails": r.guardrails,
                "narrowed": r.built.narrowed,
                "effective": r.effect.effective(),
                "reopenedPaths": r.effect.reopened,
                "pool": r.effect.pool,
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut *w, &json!({ "profiles": profiles }))?;
    writeln!(w)
}
