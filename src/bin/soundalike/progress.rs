//! Progress on stderr, shown only to a person: hidden when stderr is not a terminal, and with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A bar over `total` bytes, or a spinner with a byte count when the total is unknown (stdin).
    pub fn bytes(total: Option<u64>, quiet: bool) -> Self {
        Self::new(
            total,
            quiet,
            "{bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            "{bytes} read ({bytes_per_sec})",
        )
    }

    /// A bar over `total` items.
    pub fn items(total: Option<u64>, quiet: bool, what: &str) -> Self {
        Self::new(
            total,
            quiet,
            &format!("{{pos}}/{{len}} {what} ({{eta}} left) {{msg}}"),
            &format!("{{pos}} {what} ({{elapsed}}) {{msg}}"),
        )
    }

    fn new(total: Option<u64>, quiet: bool, bar_text: &str, spinner_text: &str) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
                quiet,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(&format!("{{bar:30}} {bar_text}"))
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(&format!("{{spinner}} {spinner_text}"))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, quiet }
    }

    pub fn set(&self, position: u64) {
        self.bar.set_position(position);
    }

    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    /// Says what the long work is doing now (shown after the count).
    pub fn stage(&self, message: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    /// Prints a line on stderr without tearing the bar (nothing with `--quiet`).
    pub fn warn(&self, line: &str) {
        if !self.quiet {
            self.bar.suspend(|| crate::stderr::line(line));
        }
    }

    /// Prints a line on stderr without tearing the bar, even with `--quiet` (for what a person must see).
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| crate::stderr::line(line));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // On an error the bar must not stay on screen above the error line.
        self.bar.finish_and_clear();
    }
}

/// `n` and a noun, in the plural unless there is one: "1 file", "2 files".
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A size in a unit that shows it: "812 bytes", "4.6 KB", "33.6 MB", "1250.3 MB" (powers of 1000, as the
/// MB/s beside them; no GB, so that large runs keep their precision).
pub fn size(bytes: u64) -> String {
    let value = bytes as f64;
    match bytes {
        0..1_000 => counted(bytes, "byte"),
        1_000..1_000_000 => format!("{:.1} KB", value / 1e3),
        _ => format!("{:.1} MB", value / 1e6),
    }
}
