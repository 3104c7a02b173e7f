//! The evaluation runner: single-model baselines over a benchmark split, graded for real.
//!
//! - [`prompts`]: the `single`, `cot` and `sc` (self-consistency) baselines; prompts are data
//!   (`prompts.toml`).
//! - [`query`]: the queries of a seeded split ([`hieramas_tasks::splits`]) with their golds.
//! - [`runner`]: concurrent calls to any [`hieramas_llm::ChatModel`], grading with
//!   [`hieramas_tasks`] (MATH equivalence, MMLU letters, sandboxed HumanEval+), majority votes.
//! - [`log`]: the append-only JSONL results log, one durable record per query; a rerun after a
//!   crash skips what is there and never writes a query twice.
//! - [`reference`]: MoA-style layered propose–aggregate and multi-agent debate over several
//!   models (method §7).
//! - [`summary`]: accuracy, exact cost, tokens, latency percentiles.
//!
//! The `hieramas eval` command wires these to the model pools; this crate takes any
//! `Arc<dyn ChatModel>`.
//!
//! ```
//! use hieramas_bench::prompts::{Method, Prompts};
//! use hieramas_bench::runner::vote;
//! use hieramas_tasks::splits::Benchmark;
//!
//! let prompts = Prompts::builtin().unwrap();
//! let p = prompts.for_method(Benchmark::Mmlu, Method::Single);
//! let req = p.request("What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22");
//! assert!(req.messages.last().unwrap().content.starts_with("What is 2 + 2?"));
//! assert_eq!(prompts.samples(Method::Sc), 5);
//!
//! // Self-consistency: the first answer of the largest group wins; non-answers do not vote.
//! let answers = [None, Some('B'), Some('C'), Some('C'), Some('B')];
//! assert_eq!(vote(&answers, |a| *a, |x, y| x == y), Some(1));
//! ```

pub mod log;
pub mod prompts;
pub mod query;
pub mod reference;
pub mod runner;
pub mod summary;

use std::path::PathBuf;

pub use log::{Record, ResultLog};
pub use prompts::{Method, Prompt, Prompts};
pub use query::{Gold, Query, Selection};
pub use reference::{Ensemble, EnsembleSetup};
pub use runner::{
    Checker, EvalConfig, MasSetup, Planner, RunOutcome, Solver, logged_ids, prediction_extractor,
    resume, run,
};
pub use summary::Summary;

/// Errors of this crate, each saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Tasks(#[from] hieramas_tasks::TasksError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: the results log is in use by another run (locked): wait for it to finish, or write to another file",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("{source_name}: {detail}")]
    Prompts { source_name: String, detail: String },
    #[error("{0}")]
    Config(String),
}

/// The default results log of a configuration:
/// `<dir>/<benchmark>-<split>-<method>-<model>-<hash>.jsonl` (the model id's `/` as `_`).
pub fn results_path(dir: &std::path::Path, cfg: &EvalConfig) -> PathBuf {
    let model: String = cfg
        .model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!(
        "{}-{}-{}-{}-{}.jsonl",
        cfg.selection.benchmark.name(),
        cfg.selection.split,
        cfg.method.name(),
        model,
        cfg.hash()
    ))
}
