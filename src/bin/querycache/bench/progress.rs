//! Progress on stderr: an indicatif bar per stage when stderr is a terminal, and in
//! every case one plain line when a stage starts and one when it ends, so logs (CI,
//! redirected stderr) show the same story without control characters.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Where progress goes; decided once per run.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    bars: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        Self {
            bars: std::io::stderr().is_terminal(),
        }
    }

    /// Starts a stage of `len` steps of `unit` (shown on the bar).
    pub fn stage(&self, label: impl Into<String>, len: u64, unit: &str) -> Stage {
        let label = label.into();
        let bar = self.bars.then(|| {
            let template =
                format!("{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{elapsed}})");
            let style = ProgressStyle::with_template(&template)
                .expect("the template is a constant with known keys")
                .progress_chars("=> ");
            let bar = ProgressBar::new(len)
                .with_style(style)
                .with_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            eprintln!("{label} …");
        }
        Stage {
            bar,
            label,
            started: Instant::now(),
        }
    }
}

/// One stage in progress.
#[derive(Debug)]
pub struct Stage {
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
}

impl Stage {
    /// Sets how many steps are done.
    pub fn set_position(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Ends the stage with a one-line summary.
    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: {summary} ({:.1} s)",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}
