//! Logs go to stderr through `tracing`; stdout carries results only.
//!
//! Diagnostics (input errors, warnings, skipped objects, notes, fatal errors)
//! go through [`report`]: `kubefence: WHERE: MESSAGE` lines in text, or with
//! `--log-format json` one JSON object a line with the keys `level`,
//! `message`, `file`, `document`, `object` and `field` (null when unknown),
//! beside `tracing`'s own JSON lines (flattened: `level` and `message` at
//! the top too). Colour only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use kubefence_k8s::load::Location;
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalOpts, LogFormat};

/// The format chosen at start-up; text until then.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// `KUBEFENCE_LOG` (an `EnvFilter` directive) wins over `-v`.
pub fn init(global: &GlobalOpts) {
    let _ = FORMAT.set(global.log_format);
    let level = match global.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KUBEFENCE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A second subscriber (only possible in tests) is not an error.
    let _ = match global.log_format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something was not read or not done; always shown.
    Error,
    /// Done, but not as the user may expect; always shown.
    Warning,
    /// What was done (`wrote 12 policies`); always shown.
    Note,
    /// Shown with `-v` (skipped objects).
    Info,
}

impl Severity {
    fn level(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warning => "WARN",
            Self::Note | Self::Info => "INFO",
        }
    }
}

/// Where a diagnostic points; all optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Place<'a> {
    pub file: Option<&'a str>,
    pub document: Option<usize>,
    /// Where in a list: `items[3]`, `[3]`.
    pub item: Option<&'a str>,
    /// `namespace/Kind/name`, or `Kind namespace/name`.
    pub object: Option<&'a str>,
    pub field: Option<&'a str>,
}

impl<'a> Place<'a> {
    pub fn object(object: &'a str) -> Self {
        Self {
            object: Some(object),
            ..Self::default()
        }
    }
}

impl<'a> From<&'a Location> for Place<'a> {
    fn from(l: &'a Location) -> Self {
        Self {
            file: Some(l.file.as_str()).filter(|f| !f.is_empty()),
            document: l.document,
            item: l.item.as_deref(),
            object: l.object.as_deref(),
            field: l.field.as_deref(),
        }
    }
}

/// The text form of a place, as the loader's `Location` prints it.
fn place_text(place: &Place<'_>) -> String {
    let mut out = String::new();
    if let Some(file) = place.file {
        out.push_str(file);
        if let Some(d) = place.document {
            out.push_str(&format!(": document {d}"));
        }
        if let Some(item) = place.item {
            out.push_str(&format!(": {item}"));
        }
        if let Some(o) = place.object {
            out.push_str(&format!(" ({o})"));
        }
    } else if let Some(o) = place.object {
        out.push_str(o);
    }
    if let Some(field) = place.field {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(field);
    }
    out
}

/// One diagnostic on stderr, in the chosen log format.
pub fn report(severity: Severity, place: Place<'_>, message: &str) {
    if severity == Severity::Info && !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let line = match format() {
        LogFormat::Json => json_line(severity, &place, message),
        LogFormat::Text => {
            let at = place_text(&place);
            let prefix = match severity {
                Severity::Warning => "warning: ",
                _ => "",
            };
            if at.is_empty() {
                format!("kubefence: {prefix}{message}")
            } else {
                format!("kubefence: {prefix}{at}: {message}")
            }
        }
    };
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    // Nowhere to report a failing stderr.
    let _ = writeln!(err, "{line}");
}

/// A loader diagnostic (`Location` and message).
pub fn report_at(severity: Severity, location: &Location, message: &str) {
    report(severity, Place::from(location), message);
}

fn json_line(severity: Severity, place: &Place<'_>, message: &str) -> String {
    serde_json::json!({
        "level": severity.level(),
        "message": message,
        "file": place.file,
        "document": place.document,
        "item": place.item,
        "object": place.object,
        "field": place.field,
    })
    .to_string()
}

/// A usage error before logging is set up: a JSON line when the arguments
/// ask for `--log-format json`, else clap's own text.
pub fn usage_error(e: &clap::Error, args: &[std::ffi::OsString]) -> u8 {
    let wants_json = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    if wants_json && e.use_stderr() {
        let _ = FORMAT.set(LogFormat::Json);
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        report(Severity::Error, Place::default(), message);
        return crate::exit::FATAL;
    }
    // Help and --version go to stdout with 0; usage errors to stderr with 2.
    let _ = e.print();
    u8::try_from(e.exit_code()).unwrap_or(crate::exit::FATAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_print_like_the_loader_locations() {
        let l = Location {
            file: "a.yaml".into(),
            document: Some(2),
            item: Some("items[3]".into()),
            object: Some("NetworkPolicy default/x".into()),
            field: Some("spec.ingress[0]".into()),
        };
        assert_eq!(place_text(&Place::from(&l)), l.to_string());
        let l = Location {
            file: "a.yaml".into(),
            ..Location::default()
        };
        assert_eq!(place_text(&Place::from(&l)), l.to_string());
        assert_eq!(
            place_text(&Place::object("shop/Deployment/x")),
            "shop/Deployment/x"
        );
    }

    #[test]
    fn json_lines_have_every_key() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line(Severity::Error, &Place::object("o"), "m")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"level": "ERROR", "message": "m", "file": null,
                "document": null, "item": null, "object": "o", "field": null})
        );
    }
}
