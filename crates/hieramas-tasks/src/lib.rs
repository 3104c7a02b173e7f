//! Benchmarks that grade for real: MATH, MMLU-Redux 2.0 and HumanEval+ v0.1.10.
//!
//! - [`data`]: loaders for the benchmark files under a data directory (`HIERAMAS_DATA_DIR`);
//!   a malformed line is an error naming file, line and field.
//! - [`math`]: final-answer extraction and LaTeX-aware equivalence.
//! - [`mmlu`]: option-letter extraction.
//! - [`agreement`]: the labelled agreement sets and a grader's agreement with them.
//! - [`splits`]: seeded train/valid/test splits, reproducible from (dataset sha256, seed).
//! - [`humaneval`]: programs run in a bubblewrap sandbox on the base and plus inputs; their
//!   outputs are compared outside it with evalplus semantics.
//!
//! Grading is a pure function of (task, response), except the sandbox; nothing here calls an
//! LLM.
//!
//! ```
//! use hieramas_tasks::{math, mmlu};
//!
//! let v = math::grade("so the total is $\\boxed{\\dfrac{1}{2}}$.", "0.5");
//! assert!(v.correct);
//! assert_eq!(v.extracted.as_deref(), Some("\\dfrac{1}{2}"));
//! assert!(math::equivalent("x = 1,000", "1000"));
//! assert!(!math::equivalent("(1, 2]", "[1, 2]"));
//!
//! assert_eq!(mmlu::extract_letter("Reasoning... The answer is (C).", None), Some('C'));
//! assert!(mmlu::grade("Answer: **b**", 'B', None).correct);
//! ```

pub mod agreement;
pub mod data;
pub mod humaneval;
pub mod math;
pub mod mmlu;
mod pyvalue;
mod sandbox;
pub mod splits;

use std::path::PathBuf;

/// Errors of this crate, each saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    #[error(
        "no data directory: set HIERAMAS_DATA_DIR (or pass --data-dir) to the folder holding math/, mmlu_redux/ and humaneval_plus/ (a checkout has them in datasets/)"
    )]
    NoDataDir,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: field `{field}`: {detail}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        field: String,
        detail: String,
    },
    #[error("unknown benchmark {0:?} (math, mmlu, humaneval-plus)")]
    UnknownBenchmark(String),
    #[error("{benchmark} has no split {split:?} (it has {known})")]
    UnknownSplit {
        benchmark: &'static str,
        split: String,
        known: String,
    },
    #[error("committed splits under {} differ from the data: {detail}", dir.display())]
    SplitsDiffer { dir: PathBuf, detail: String },
    #[error("unknown task {0:?}")]
    UnknownTask(String),
    #[error("no sandbox: {0}")]
    NoSandbox(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("grader error: {0}")]
    Grader(String),
}

/// Runs a grader, turning a panic into [`TasksError::Grader`]. The graders are property-tested
/// never to panic; this is the last line that keeps one pair from aborting a whole run if one
/// ever does (the pair is reported as not graded, the rest go on).
pub fn catch_grader<T>(f: impl FnOnce() -> T) -> Result<T, TasksError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the grader panicked".into());
        TasksError::Grader(text)
    })
}
