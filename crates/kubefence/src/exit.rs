//! Exit codes: part of the command-line API, documented in `--help` and the
//! README.

/// Success: the command ran and every input was read. `explain`: allowed.
pub const OK: u8 = 0;
/// `explain`: the connection is denied. `diff --exit-code`: differences.
/// `quarantine`: paths stay open through other policies (not effective).
pub const NEGATIVE: u8 = 1;
/// Usage error or fatal error (bad flags, missing file, unknown endpoint,
/// nothing read at all).
pub const FATAL: u8 = 2;
/// Some documents or objects were bad: they were reported on stderr, and
/// the rest was analysed and printed.
pub const INPUT_ERRORS: u8 = 3;

/// The text shown under every `--help`.
pub const HELP: &str = "\
Exit codes:
  0  success (explain: the connection is allowed; diff: see --exit-code)
  1  explain: the connection is denied; diff --exit-code: connectivity differs;
     quarantine: paths stay open through other policies (not effective)
  2  usage error or fatal error (bad flag, missing file, unknown endpoint,
     nothing read: an empty file, directory or stdin is not an empty result)
  3  input errors: some documents or objects were bad and were reported on
     stderr; the rest was analysed and printed (takes precedence over 0 and 1)";

/// Whether the error comes from writing to a closed pipe (`| head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io_kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            // JSON output wraps write errors in serde_json's own error.
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        io_kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// `code`, or [`INPUT_ERRORS`] when some input was bad.
pub fn with_input_errors(code: u8, had_input_errors: bool) -> u8 {
    if had_input_errors { INPUT_ERRORS } else { code }
}

#[cfg(test)]
mod tests {
    use std::io;

    use anyhow::Context;

    use super::*;

    #[test]
    fn broken_pipe_is_found_through_context() {
        let e: anyhow::Result<()> = Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        assert!(is_broken_pipe(&e.context("writing stdout").unwrap_err()));
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
        let json: anyhow::Error =
            serde_json::Error::io(io::Error::from(io::ErrorKind::BrokenPipe)).into();
        assert!(is_broken_pipe(&json.context("writing JSON")));
    }

    #[test]
    fn input_errors_win() {
        assert_eq!(with_input_errors(NEGATIVE, true), INPUT_ERRORS);
        assert_eq!(with_input_errors(NEGATIVE, false), NEGATIVE);
        assert_eq!(with_input_errors(OK, false), OK);
    }
}
