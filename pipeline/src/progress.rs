//! Progress display: bars on a terminal (rank 0 only), plain log lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Decides whether bars are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    bars: bool,
}

impl Progress {
    /// Bars when `enabled` (rank 0, not quiet) and stderr is a terminal.
    pub fn new(enabled: bool) -> Self {
        Progress {
            bars: enabled && std::io::stderr().is_terminal(),
        }
    }

    /// A bar of `len` units (0 if not known yet) for `stage`.
    pub fn bar(&self, len: u64, stage: &str, unit: &str) -> Bar {
        let pb = if self.bars {
            let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
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
