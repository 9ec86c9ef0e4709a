//! Phases of a command (reading files, building the model, analysing,
//! writing): each is timed and logged at info level (`-v`: `phase=read
//! seconds=1.84`), and, when stderr is a terminal, one that runs longer than
//! a second shows a spinner with its name and elapsed time on stderr until
//! it ends. stdout never sees any of it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A phase shows its spinner only when it lasts longer than this.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A running phase; [`Phase::done`] ends it.
pub struct Phase {
    name: &'static str,
    started: Instant,
    spinner: Option<ProgressBar>,
}

impl Phase {
    /// Starts the phase `name` (`read`, `index`, `analyse`, `write`), said
    /// to a person as `what` (`reading manifests`).
    pub fn start(name: &'static str, what: &'static str) -> Self {
        let spinner = std::io::stderr().is_terminal().then(|| spinner(what));
        Self {
            name,
            started: Instant::now(),
            spinner,
        }
    }

    /// Ends the phase and logs how long it took.
    pub fn done(self) -> Duration {
        let elapsed = self.started.elapsed();
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
        log(self.name, elapsed);
        elapsed
    }
}

/// Logs a phase measured elsewhere (the engine's own index and connection
/// phases).
pub fn log(name: &str, elapsed: Duration) {
    tracing::info!(phase = %name, seconds = %format!("{:.3}", elapsed.as_secs_f64()), "phase done");
}

/// A spinner that stays hidden for its first second, so quick phases draw
/// nothing.
fn spinner(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(what);
    // Shown from a thread after SHOW_AFTER; it only holds a weak handle, so
    // a phase that ended first is left alone.
    let delayed = bar.downgrade();
    std::thread::spawn(move || {
        std::thread::sleep(SHOW_AFTER);
        if let Some(bar) = delayed.upgrade()
            && !bar.is_finished()
        {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
        }
    });
    bar
}
