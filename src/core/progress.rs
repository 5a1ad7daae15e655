//! Progress bars: indicatif on a terminal's stderr, or nothing at all. The core asks for bars;
//! only the CLI decides whether they are drawn.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Hands out progress bars, drawn or hidden.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    drawn: bool,
}

impl Progress {
    /// Bars that are never drawn (tests, `--quiet`, `--json`, stderr not a terminal).
    pub fn hidden() -> Progress {
        Progress { drawn: false }
    }

    /// Bars drawn on stderr.
    pub fn stderr() -> Progress {
        Progress { drawn: true }
    }

    /// A bar of `len` steps; `len` 0 gives a spinner.
    pub fn bar(&self, what: &str, len: u64) -> ProgressBar {
        if !self.drawn {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len).filter(|&l| l > 0), ProgressDrawTarget::stderr());
        let template = if len > 0 {
            "{prefix:>10} [{bar:30}] {human_pos}/{human_len} {per_sec} {eta}"
        } else {
            "{prefix:>10} {spinner} {human_pos} {per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar
    }
}
