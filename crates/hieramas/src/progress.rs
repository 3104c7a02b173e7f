//! How a long step reports progress: a callback the caller implements (the CLI draws a bar),
//! never printing from the library.

/// What a step says while it works. Every method has a do-nothing default; [`Silent`] is the
/// progress of a caller that wants none.
pub trait Progress: Send {
    /// Work of `total` items (`unit`: "queries", "tasks", "runs") starts, `done` already done.
    fn start(&mut self, total: u64, done: u64, unit: &str) {
        let _ = (total, done, unit);
    }
    /// `n` more items are done.
    fn advance(&mut self, n: u64) {
        let _ = n;
    }
    /// What is being done now ("iter 3/12 T=4.10").
    fn message(&mut self, message: &str) {
        let _ = message;
    }
    /// A line worth keeping (a summary of an iteration or an epoch, a notice).
    fn note(&mut self, line: &str) {
        let _ = line;
    }
    /// The work started by the last [`Progress::start`] is over.
    fn finish(&mut self) {}
}

/// No progress reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Every note, kept in order (for a caller that shows them later, or a test).
#[derive(Clone, Debug, Default)]
pub struct Notes {
    pub lines: Vec<String>,
    /// Items advanced in all.
    pub advanced: u64,
}

impl Progress for Notes {
    fn advance(&mut self, n: u64) {
        self.advanced += n;
    }
    fn note(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
}
