//! The progress bar every long command draws: [`hieramas::Progress`] on indicatif, notes
//! printed above the bar on stderr; `--quiet` hides both.

use hieramas::Progress;

/// A progress bar on stderr.
pub struct Bar {
    bar: indicatif::ProgressBar,
    quiet: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        Bar {
            bar: indicatif::ProgressBar::hidden(),
            quiet,
        }
    }
}

/// A bar of `total` `unit`s on stderr, in the one style every command uses (shared by
/// threads: `inc` takes `&self`).
pub fn counter(total: u64, unit: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

impl Progress for Bar {
    fn start(&mut self, total: u64, done: u64, unit: &str) {
        self.bar.finish_and_clear();
        self.bar = if self.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            counter(total, unit)
        };
        self.bar.set_position(done);
    }
    fn advance(&mut self, n: u64) {
        self.bar.inc(n);
    }
    fn message(&mut self, message: &str) {
        self.bar.set_message(message.to_string());
    }
    fn note(&mut self, line: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
