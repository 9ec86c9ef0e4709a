//! `quarantine` output: the plan as text, YAML or JSON.

use std::io::Write;

use kubefence_core::quarantine::{Engine, Plan};
use kubefence_k8s::quarantine::{plan_document, policy_api};

use super::Format;

/// The plan in `format` (text, yaml or json); `result` says what happened.
pub fn write_plan<W: Write>(
    w: &mut W,
    plan: &Plan,
    result: &str,
    dry_run: bool,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Yaml | Format::Json => {
            let mut doc = plan_document(plan, dry_run);
            doc["result"] = serde_json::json!(result);
            let text = if format == Format::Json {
                serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?
            } else {
                serde_saphyr::to_string(&doc).map_err(std::io::Error::other)?
            };
            writeln!(w, "{}", text.trim_end())
        }
        _ => write_text(w, plan, result),
    }
}

fn write_text(w: &mut impl Write, plan: &Plan, result: &str) -> std::io::Result<()> {
    let api = policy_api(plan.engine);
    let scope = if api.namespaced {
        format!("{}/{}", plan.target.namespace, plan.policy_name)
    } else {
        plan.policy_name.clone()
    };
    writeln!(w, "quarantine {} (engine {})", plan.target, plan.engine)?;
    writeln!(w, "  policy:    {} {scope}", api.kind)?;
    writeln!(w, "  selects:   {}", plan.selector)?;
    if !plan.also_selects.is_empty() {
        writeln!(
            w,
            "  also:      the selector matches the pods of {} too: they are isolated with the target",
            plan.also_selects.join(", ")
        )?;
    }
    writeln!(
        w,
        "  denies:    all ingress and all egress of those pods; they keep running"
    )?;
    writeln!(w, "  result:    {}", result)?;
    let open = plan.open_paths().count();
    for u in &plan.unreadable_policies {
        writeln!(w, "  unreadable policy (paths unknown): {u}")?;
    }
    if plan.remaining_paths.is_empty() && !plan.effective() {
        writeln!(w, "  effective: NOT KNOWN, some policies could not be read")?;
        return Ok(());
    }
    if plan.remaining_paths.is_empty() {
        writeln!(
            w,
            "  effective: yes, no other policy lets traffic reach or leave these pods"
        )?;
        return Ok(());
    }
    if open == 0 {
        writeln!(
            w,
            "  effective: yes, {} path(s) allowed by other policies are overridden by the {} deny rules (if the CNI enforces {}):",
            plan.remaining_paths.len(),
            api.kind,
            api.kind
        )?;
    } else {
        writeln!(
            w,
            "  effective: NO, {open} path(s) stay open: NetworkPolicies are additive, a deny-all cannot cut what another policy allows:"
        )?;
    }
    for p in &plan.remaining_paths {
        writeln!(w, "    {p}")?;
        if !p.endpoints.is_empty() {
            writeln!(w, "      known peers: {}", p.endpoints.join(", "))?;
        }
    }
    if open > 0 && plan.engine != Engine::Cilium {
        writeln!(
            w,
            "  hint:      --engine cilium (or adminnetworkpolicy, for in-cluster peers) overrides allows; see docs/quarantine.md"
        )?;
    }
    Ok(())
}
