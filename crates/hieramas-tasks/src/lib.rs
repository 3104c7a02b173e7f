//! Benchmarks that grade for real: MATH, MMLU-Redux 2.0 and HumanEval+ v0.1.10.
//!
//! - [`data`]: loaders for the benchmark files under a data directory (`HIERAMAS_DATA_DIR`);
//!   a malformed line is an error naming file, line and field.
//! - [`math`]: final-answer extraction and LaTeX-aware equivalence.
//! - [`mmlu`]: option-letter extraction.
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
        "no data directory: set HIERAMAS_DATA_DIR (or pass --data-dir) to the folder holding math/, mmlu_redux/ and humaneval_plus/"
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
}
