//! Colour for people: table headers in bold, `diff`'s changes and
//! `explain`'s verdict in green and red. Only when stdout is a terminal by
//! default (`--color auto`); `--color always|never` decide otherwise, and a
//! non-empty `NO_COLOR` (https://no-color.org) turns `auto` off. Set once
//! from the command line, before any output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};
use clap::ValueEnum;

/// `--color`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    Always,
    Never,
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Decides once, from `--color`, `NO_COLOR` and whether stdout is a
/// terminal.
pub fn init(choice: ColorChoice) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    ENABLED.store(
        decide(choice, no_color, std::io::stdout().is_terminal()),
        Ordering::Relaxed,
    );
}

fn decide(choice: ColorChoice, no_color: bool, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && !no_color,
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub const HEADER: Style = Style::new().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const BAD: Style = AnsiColor::Red.on_default();
pub const CHANGED: Style = AnsiColor::Yellow.on_default();

/// `text` in `style` when colour is on; as is otherwise. Callers pad
/// before painting: escape codes have no width.
pub fn paint(style: Style, text: &str) -> String {
    if enabled() {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_on_only_on_a_terminal_without_no_color() {
        assert!(decide(ColorChoice::Auto, false, true));
        assert!(!decide(ColorChoice::Auto, true, true));
        assert!(!decide(ColorChoice::Auto, false, false));
        assert!(decide(ColorChoice::Always, true, false));
        assert!(!decide(ColorChoice::Never, false, true));
    }
}
