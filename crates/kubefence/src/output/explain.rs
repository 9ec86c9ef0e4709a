//! `explain` output: the verdict, then each direction (egress at the source,
//! ingress at the destination) with the policies and rules that decide it.
//! The JSON form is documented in `docs/explain-json.md`.

use std::io::{self, Write};

use kubefence_core::engine::{DirectionVerdict, Explanation, PolicyVerdict};
use kubefence_core::{ConnSet, Direction, Protocol};
use serde::Serialize;

use super::Allowed;

fn probe_text(port: Option<(Protocol, u16)>) -> String {
    port.map_or_else(|| "any port".to_string(), |(p, n)| format!("{p}/{n}"))
}

/// `spec.ingress[2]`: where the rule is in the policy.
fn rule_path(direction: Direction, rule: usize) -> String {
    format!("spec.{direction}[{rule}]")
}

pub fn write_text<W: Write>(w: &mut W, x: &Explanation) -> io::Result<()> {
    let verdict = if x.is_allowed() {
        super::color::paint(super::color::GOOD, "ALLOWED")
    } else {
        super::color::paint(super::color::BAD, "DENIED")
    };
    writeln!(
        w,
        "{verdict}: {} -> {} ({})",
        x.from,
        x.to,
        probe_text(x.port)
    )?;
    writeln!(w, "  allowed: {}", x.allowed)?;
    for d in [&x.egress, &x.ingress] {
        writeln!(w)?;
        write_direction(w, d, x.port)?;
    }
    Ok(())
}

/// What a direction or policy allows: `allows TCP/5432`, or, when one port
/// was asked about and is not allowed, `does not allow TCP/22`.
fn allows_text(allowed: &ConnSet, port: Option<(Protocol, u16)>) -> String {
    match port {
        Some((p, n)) if allowed.is_empty() => format!("does not allow {p}/{n}"),
        _ => format!("allows {allowed}"),
    }
}

fn write_direction<W: Write>(
    w: &mut W,
    d: &DirectionVerdict,
    port: Option<(Protocol, u16)>,
) -> io::Result<()> {
    let role = match d.direction {
        Direction::Egress => "source",
        Direction::Ingress => "destination",
    };
    write!(w, "{} at {} ({role}): ", d.direction, d.subject)?;
    if !d.enforced {
        return writeln!(
            w,
            "not enforced: outside the cluster, no policy applies; allows {}",
            d.allowed
        );
    }
    if !d.isolated {
        return writeln!(
            w,
            "not isolated: no policy selects it for {}; allows {}",
            d.direction, d.allowed
        );
    }
    let names: Vec<&str> = d.policies.iter().map(|p| p.policy.as_str()).collect();
    writeln!(
        w,
        "isolated by {}; {}",
        names.join(", "),
        allows_text(&d.allowed, port)
    )?;
    for p in &d.policies {
        write_policy(w, d.direction, p, port)?;
    }
    Ok(())
}

fn write_policy<W: Write>(
    w: &mut W,
    direction: Direction,
    p: &PolicyVerdict,
    port: Option<(Protocol, u16)>,
) -> io::Result<()> {
    // "allows none", or "does not allow TCP/22" when a port was asked.
    let none = allows_text(&ConnSet::none(), port);
    for m in &p.allows {
        writeln!(
            w,
            "  {}: {} allows {}",
            p.policy,
            rule_path(direction, m.rule),
            m.allowed
        )?;
    }
    if let Some(miss) = &p.nearest_miss {
        match miss.rule {
            Some(r) => writeln!(
                w,
                "  {}: {none}; nearest rule {}: {}",
                p.policy,
                rule_path(direction, r),
                miss.reason
            )?,
            None => writeln!(w, "  {}: {none}: {}", p.policy, miss.reason)?,
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonExplanation<'a> {
    from: &'a str,
    to: &'a str,
    /// `"TCP/8080"`, or null when every port was asked about.
    port: Option<String>,
    verdict: &'static str,
    allowed: Allowed,
    egress: JsonDirection<'a>,
    ingress: JsonDirection<'a>,
}

#[derive(Serialize)]
struct JsonDirection<'a> {
    subject: &'a str,
    enforced: bool,
    isolated: bool,
    allowed: Allowed,
    policies: Vec<JsonPolicy<'a>>,
}

#[derive(Serialize)]
struct JsonPolicy<'a> {
    policy: &'a str,
    allows: Vec<JsonRule>,
    nearest_miss: Option<JsonMiss<'a>>,
}

#[derive(Serialize)]
struct JsonRule {
    rule: usize,
    allowed: Allowed,
}

#[derive(Serialize)]
struct JsonMiss<'a> {
    rule: Option<usize>,
    reason: &'a str,
}

fn json_direction(d: &DirectionVerdict) -> JsonDirection<'_> {
    JsonDirection {
        subject: &d.subject,
        enforced: d.enforced,
        isolated: d.isolated,
        allowed: Allowed::from(&d.allowed),
        policies: d
            .policies
            .iter()
            .map(|p| JsonPolicy {
                policy: &p.policy,
                allows: p
                    .allows
                    .iter()
                    .map(|m| JsonRule {
                        rule: m.rule,
                        allowed: Allowed::from(&m.allowed),
                    })
                    .collect(),
                nearest_miss: p.nearest_miss.as_ref().map(|m| JsonMiss {
                    rule: m.rule,
                    reason: &m.reason,
                }),
            })
            .collect(),
    }
}

pub fn write_json<W: Write>(w: &mut W, x: &Explanation) -> io::Result<()> {
    let doc = JsonExplanation {
        from: &x.from,
        to: &x.to,
        port: x.port.map(|(p, n)| format!("{p}/{n}")),
        verdict: if x.is_allowed() { "allowed" } else { "denied" },
        allowed: Allowed::from(&x.allowed),
        egress: json_direction(&x.egress),
        ingress: json_direction(&x.ingress),
    };
    serde_json::to_writer_pretty(&mut *w, &doc).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, explain};
    use serde_json::{Value, json};

    use super::*;
    use crate::output::fixtures::shop;

    fn run(from: &str, to: &str, port: Option<(Protocol, u16)>) -> (String, Value) {
        let x = explain(&shop(true), from, to, port, &AnalyzeOptions::default()).unwrap();
        let mut text = Vec::new();
        write_text(&mut text, &x).unwrap();
        let mut js = Vec::new();
        write_json(&mut js, &x).unwrap();
        (
            String::from_utf8(text).unwrap(),
            serde_json::from_slice(&js).unwrap(),
        )
    }

    #[test]
    fn allowed_names_the_rule() {
        let (text, v) = run("shop/web", "shop/db", Some((Protocol::Tcp, 5432)));
        assert!(
            text.starts_with("ALLOWED: shop/Deployment/web -> shop/Deployment/db (TCP/5432)\n"),
            "{text}"
        );
        assert!(
            text.contains("egress at shop/Deployment/web (source): not isolated"),
            "{text}"
        );
        assert!(text.contains("ingress at shop/Deployment/db (destination): isolated by shop/db-from-web; allows TCP/5432"), "{text}");
        assert!(
            text.contains("  shop/db-from-web: spec.ingress[0] allows TCP/5432"),
            "{text}"
        );
        assert_eq!(v["verdict"], "allowed");
        assert_eq!(v["port"], "TCP/5432");
        assert_eq!(v["allowed"], json!(["TCP/5432"]));
        assert_eq!(v["egress"]["isolated"], false);
        assert_eq!(
            v["ingress"]["policies"],
            json!([{"policy": "shop/db-from-web",
                    "allows": [{"rule": 0, "allowed": ["TCP/5432"]}],
                    "nearest_miss": null}])
        );
    }

    #[test]
    fn denied_gives_the_nearest_miss() {
        let (text, v) = run("shop/db", "shop/web", None);
        assert!(
            text.starts_with("DENIED: shop/Deployment/db -> shop/Deployment/web (any port)\n"),
            "{text}"
        );
        assert!(
            text.contains("  shop/web-deny: allows none: it has no ingress rules"),
            "{text}"
        );
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["allowed"], json!([]));
        assert_eq!(v["port"], Value::Null);
        assert_eq!(
            v["ingress"]["policies"][0]["nearest_miss"]["rule"],
            Value::Null
        );

        let (text, _) = run("shop/web", "shop/db", Some((Protocol::Udp, 53)));
        assert!(
            text.contains("nearest rule spec.ingress[0]: the peer matches but the ports do not"),
            "{text}"
        );
    }

    #[test]
    fn external_source_is_not_enforced() {
        let (text, v) = run("8.8.8.8", "shop/db", None);
        assert!(text.contains("egress at 8.8.8.8"), "{text}");
        assert!(text.contains("not enforced"), "{text}");
        assert_eq!(v["egress"]["enforced"], false);
    }
}
