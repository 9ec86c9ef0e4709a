//! `kubefence explain`: may A reach B (on a port), and why.

use anyhow::Context;
use clap::Args;
use kubefence_core::Protocol;
use kubefence_core::engine::explain;

use crate::cli::{InputFiles, ModelOpts};
use crate::exit;
use crate::inputs;
use crate::output::{self, Format, FormatParser};
use crate::progress::Phase;

const LONG_ABOUT: &str = "\
Explains whether one endpoint may reach another: the verdict, then each
direction: egress at the source and ingress at the destination. A direction is
not enforced (the endpoint is outside the cluster), not isolated (no policy
selects it for that direction: everything is allowed), or isolated by the
listed policies; then the rules that allow the connection are named
(spec.ingress[i] / spec.egress[i]), or, when a policy allows nothing, its
nearest rule and what did not match.

Endpoints: namespace/Kind/name (shop/Deployment/web), namespace/name when it
is unambiguous, an IP address or a CIDR (outside the cluster).";

const AFTER_LONG_HELP: &str = "\
Examples:
  kubefence explain -f manifests/ --from shop/frontend --to shop/cartservice --port 7070
  kubefence explain -f manifests/ --from shop/Deployment/web --to 10.0.0.0/8
  kubefence explain -f manifests/ --from 0.0.0.0/0 --to shop/web --port 53/UDP -o json
  if kubefence explain -f m/ --from a/x --to b/y --port 443 >/dev/null; then echo open; fi

Exit codes (like grep): 0 the connection is allowed; 1 it is denied; 2 usage
or fatal error (including an unknown endpoint); 3 some documents or objects
were bad (reported on stderr): the verdict was printed but may be incomplete.";

/// Why may (or may not) A reach B?
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct ExplainOpts {
    #[command(flatten)]
    pub input: InputFiles,
    /// Source endpoint: namespace/Kind/name, namespace/name, IP or CIDR.
    #[arg(long, value_name = "ENDPOINT")]
    pub from: String,
    /// Destination endpoint: namespace/Kind/name, namespace/name, IP or CIDR.
    #[arg(long, value_name = "ENDPOINT")]
    pub to: String,
    /// One port to ask about: 8080 (TCP), 8080/TCP, 53/UDP or UDP/53.
    #[arg(long, value_name = "PORT[/PROTO]", value_parser = parse_port)]
    pub port: Option<(Protocol, u16)>,
    /// Output format (auto: text).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatParser(output::EXPLAIN_FORMATS), default_value = "auto")]
    pub output: Format,
    #[command(flatten)]
    pub model: ModelOpts,
}

/// `8080`, `8080/TCP`, `53/udp`, `UDP/53`.
pub fn parse_port(s: &str) -> Result<(Protocol, u16), String> {
    let (port, protocol) = match s.split_once('/') {
        None => (s, "TCP"),
        Some((a, b)) if a.chars().all(|c| c.is_ascii_digit()) => (a, b),
        Some((a, b)) => (b, a),
    };
    let protocol: Protocol = protocol.parse()?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port {port:?}: expected a number from 1 to 65535"))?;
    if port == 0 {
        return Err("invalid port 0: expected a number from 1 to 65535".to_string());
    }
    Ok((protocol, port))
}

pub fn run(opts: &ExplainOpts) -> anyhow::Result<u8> {
    let inputs::Inputs {
        cluster,
        had_errors,
    } = inputs::read_model_input(&opts.input, &opts.model)?;
    let phase = Phase::start("explain", "explaining");
    let x = explain(
        &cluster,
        &opts.from,
        &opts.to,
        opts.port,
        &opts.model.analyze_options(),
    )
    .context("cannot explain")?;
    phase.done();
    super::with_stdout(|w| match opts.output.resolve(Format::Text, Format::Text) {
        Format::Json => output::explain::write_json(w, &x),
        _ => output::explain::write_text(w, &x),
    })?;
    let verdict = if x.is_allowed() {
        exit::OK
    } else {
        exit::NEGATIVE
    };
    Ok(exit::with_input_errors(verdict, had_errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_in_every_spelling() {
        assert_eq!(parse_port("8080"), Ok((Protocol::Tcp, 8080)));
        assert_eq!(parse_port("8080/TCP"), Ok((Protocol::Tcp, 8080)));
        assert_eq!(parse_port("53/udp"), Ok((Protocol::Udp, 53)));
        assert_eq!(parse_port("UDP/53"), Ok((Protocol::Udp, 53)));
        assert_eq!(parse_port("sctp/9"), Ok((Protocol::Sctp, 9)));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
        assert!(parse_port("80/ICMP").is_err());
        assert!(parse_port("http").is_err());
    }
}
