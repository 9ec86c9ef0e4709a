//! Logs go to stderr through `tracing`; stdout carries results only.

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalOpts, LogFormat};

/// `KUBEFENCE_LOG` (an `EnvFilter` directive) wins over `-v`.
pub fn init(global: &GlobalOpts) {
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
        .with_target(false);
    // A second subscriber (only possible in tests) is not an error.
    let _ = match global.log_format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
