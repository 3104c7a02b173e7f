//! Queries of a benchmark split: the task text a model sees and the gold it is graded against.

use std::collections::HashMap;

use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::{Benchmark, SplitSet};

use crate::BenchError;

/// One query of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The dataset id (`test/algebra/1.json`, `anatomy/3`, `HumanEval/0`).
    pub id: String,
    /// The task as the model sees it (method §8.1 preprocessing).
    pub task: String,
    pub gold: Gold,
}

/// What a response is graded against.
#[derive(Clone, Debug, PartialEq)]
pub enum Gold {
    /// The reference answer (last `\boxed{}` of the solution).
    Math(String),
    /// The gold letter and the options (for option-text matching).
    Mmlu { letter: char, choices: Vec<String> },
    /// The HumanEval+ task id; the program is run against its base and plus inputs.
    Code { task_id: String },
}

/// Which queries to load.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Selection {
    pub benchmark: Benchmark,
    pub split: String,
    pub seed: u64,
    /// The first `limit` queries of the split (in its seeded rank order).
    pub limit: Option<usize>,
    /// MMLU: keep rows the Redux annotators flagged as wrong (dropped by default).
    pub keep_flagged: bool,
}

/// Loads the selected queries, in split order.
pub fn load(data: &DataDir, sel: &Selection) -> Result<Vec<Query>, BenchError> {
    let set = SplitSet::compute(data, sel.benchmark, sel.seed)?;
    let ids = set.get(&sel.split)?;
    let mut by_id: HashMap<String, Query> = match sel.benchmark {
        Benchmark::Math => data
            .math_train()?
            .into_iter()
            .chain(data.math500()?)
            .map(|p| Query {
                id: p.id,
                task: p.problem,
                gold: Gold::Math(p.answer),
            })
            .map(|q| (q.id.clone(), q))
            .collect(),
        Benchmark::Mmlu => data
            .mmlu_redux(!sel.keep_flagged)?
            .into_iter()
            .map(|q| Query {
                task: q.render(),
                gold: Gold::Mmlu {
                    letter: q.gold_letter(),
                    choices: q.choices.to_vec(),
                },
                id: q.id,
            })
            .map(|q| (q.id.clone(), q))
            .collect(),
        Benchmark::HumanevalPlus => data
            .humaneval_plus()?
            .into_iter()
            .map(|t| Query {
                id: t.task_id.clone(),
                task: t.prompt,
                gold: Gold::Code { task_id: t.task_id },
            })
            .map(|q| (q.id.clone(), q))
            .collect(),
    };
    // Flagged MMLU rows are absent from `by_id` and so skipped; the limit counts kept queries.
    let queries = ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .take(sel.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(queries)
}
