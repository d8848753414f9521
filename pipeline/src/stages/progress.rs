//! Progress display: bars on a terminal (rank 0 only), plain log lines otherwise.
//!
//! Stages running side by side (`-j`) each get their own line: every bar is
//! drawn through one [`MultiProgress`].

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Decides whether bars are drawn, and draws them together.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Bars when `enabled` (rank 0, not quiet) and stderr is a terminal.
    pub fn new(enabled: bool) -> Self {
        Progress {
            bars: (enabled && std::io::stderr().is_terminal())
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar of `len` units (0 if not known yet) for `stage`.
    pub fn bar(&self, len: u64, stage: &str, unit: &str) -> Bar {
        let pb = if let Some(multi) = &self.bars {
            let pb = multi.add(ProgressBar::new(len));
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>12}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{eta}})"
                ))
                .expect("static template"),
            );
            pb.set_prefix(stage.to_string());
            pb
        } else {
            ProgressBar::hidden()
        };
        Bar { pb }
    }
}

/// A progress bar, possibly hidden.
pub struct Bar {
    pb: ProgressBar,
}

impl Bar {
    /// Sets the position.
    pub fn set_position(&self, pos: u64) {
        self.pb.set_position(pos);
    }
    /// Sets the length.
    pub fn set_length(&self, len: u64) {
        self.pb.set_length(len);
    }
    /// Prints a line above a visible bar, or logs it.
    pub fn println_or_log(&self, line: &str) {
        if self.pb.is_hidden() {
            tracing::info!("{line}");
        } else {
            self.pb.println(line);
        }
    }
    /// Removes the bar.
    pub fn finish_and_clear(&self) {
        self.pb.finish_and_clear();
    }
}
