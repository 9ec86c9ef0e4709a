//! `generate` output: the policies (YAML documents or one JSON `List`), one
//! policy as a file's text, and the report of what was inferred.

use std::io::Write;

use kubefence_core::baseline::{Baseline, GeneratedPolicy};
use kubefence_k8s::render::{self, NetworkPolicyObject};

use super::Format;

/// The report (`--report text|json`).
pub fn write_report<W: Write>(
    w: &mut W,
    generated: &Baseline,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *w, &generated.report)?;
            writeln!(w)
        }
        _ => w.write_all(generated.report.to_text().as_bytes()),
    }
}

/// Every policy to `w`: YAML documents separated by `---`, or one JSON List.
pub fn write_policies<W: Write>(
    w: &mut W,
    generated: &Baseline,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = generated
                .policies
                .iter()
                .map(|p| policy_json(&render::generated_policy(p)))
                .collect::<Result<_, _>>()?;
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            serde_json::to_writer_pretty(&mut *w, &list)?;
            writeln!(w)
        }
        _ => {
            for (i, p) in generated.policies.iter().enumerate() {
                if i > 0 {
                    w.write_all(b"---\n")?;
                }
                w.write_all(policy_yaml(&render::generated_policy(p))?.as_bytes())?;
            }
            Ok(())
        }
    }
}

/// The file extension of a policy file in `format`.
pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        _ => "yaml",
    }
}

/// One policy as the text of its own file.
pub fn policy_file(policy: &GeneratedPolicy, format: Format) -> std::io::Result<String> {
    let object = render::generated_policy(policy);
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&policy_json(&object)?)?;
            s.push('\n');
            Ok(s)
        }
        _ => policy_yaml(&object),
    }
}

/// A policy as JSON with apiVersion and kind first (k8s-openapi adds them).
fn policy_json(policy: &NetworkPolicyObject) -> std::io::Result<serde_json::Value> {
    serde_json::to_value(policy).map_err(std::io::Error::other)
}

fn policy_yaml(policy: &NetworkPolicyObject) -> std::io::Result<String> {
    serde_saphyr::to_string(policy).map_err(std::io::Error::other)
}
