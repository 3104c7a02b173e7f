//! SIMULATED pools: the gold book a simulated model looks answers up in, built from the queries
//! of the run, the banner every output of such a run carries, and the seeded query selection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Context, Result};
use hieramas_bench::query::{Gold, Query};
use hieramas_llm::pool::{Pool, Provider};
use hieramas_sim::{Answer, Features, GoldBook, GoldTask, Hardness, Kind};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;

/// Whether any model of `pool` is simulated.
pub fn uses_sim(pool: &Pool) -> bool {
    pool.models.iter().any(|m| m.provider == Provider::Sim)
}

/// The line every run that uses simulated models shows and records.
pub const BANNER: &str = "SIMULATED: this run uses simulated models (hieramas-sim), calibrated to published accuracies; its numbers are not results of real models";

pub fn kind(b: Benchmark) -> Kind {
    match b {
        Benchmark::Math => Kind::Math,
        Benchmark::Mmlu => Kind::Mmlu,
        Benchmark::HumanevalPlus => Kind::Humaneval,
    }
}

/// The gold book of `queries` (HumanEval+ solutions come from the dataset in `data`), each
/// task with its content hardness under the shipped fit (`hieramas_sim::fit`).
pub fn book(data: &DataDir, benchmark: Benchmark, queries: &[&Query]) -> Result<Arc<GoldBook>> {
    let hardness = hieramas_sim::fit::fitted(kind(benchmark))?.hardness;
    book_with(data, benchmark, queries, &hardness)
}

/// [`book`] with the content hardness of `hardness`.
pub fn book_with(
    data: &DataDir,
    benchmark: Benchmark,
    queries: &[&Query],
    hardness: &Hardness,
) -> Result<Arc<GoldBook>> {
    let code: HashMap<String, (String, String)> = if benchmark == Benchmark::HumanevalPlus {
        data.humaneval_plus()
            .context("reading HumanEval+ for the simulated models' answers")?
            .into_iter()
            .map(|t| (t.task_id, (t.prompt, t.canonical_solution)))
            .collect()
    } else {
        HashMap::new()
    };
    let content = Content::of(data, benchmark)?;
    let tasks = queries
        .iter()
        .map(|q| {
            let answer = match &q.gold {
                Gold::Math(a) => Answer::Math(a.clone()),
                Gold::Mmlu { letter, .. } => Answer::Letter(*letter),
                Gold::Code { task_id } => {
                    let (prompt, solution) = code
                        .get(task_id)
                        .with_context(|| format!("{task_id}: not in HumanEval+"))?
                        .clone();
                    Answer::Code { prompt, solution }
                }
            };
            Ok(GoldTask {
                kind: kind(benchmark),
                task: q.task.clone(),
                answer,
                hardness: hardness.of(&content.features(q)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(GoldBook::new(tasks)))
}

/// What the dataset says of a task's content beyond its text: MATH levels, the MMLU subjects
/// held out of training.
struct Content {
    levels: HashMap<String, u8>,
    unseen_subjects: HashSet<String>,
}

impl Content {
    fn of(data: &DataDir, benchmark: Benchmark) -> Result<Content> {
        let mut c = Content {
            levels: HashMap::new(),
            unseen_subjects: HashSet::new(),
        };
        match benchmark {
            Benchmark::Math => {
                let problems = data.math_train()?.into_iter().chain(data.math500()?);
                c.levels = problems
                    .filter_map(|p| p.level.map(|l| (p.id, l)))
                    .collect();
            }
            Benchmark::Mmlu => {
                c.unseen_subjects = select(data, benchmark, "test_unseen", None)?
                    .iter()
                    .map(|q| mmlu_subject(&q.id).to_string())
                    .collect();
            }
            Benchmark::HumanevalPlus => {}
        }
        Ok(c)
    }

    fn features(&self, q: &Query) -> Features {
        Features {
            level: self.levels.get(&q.id).copied(),
            chars: q.task.chars().count(),
            unseen: self.unseen_subjects.contains(mmlu_subject(&q.id)),
        }
    }
}

/// The subject of an MMLU-Redux id (`anatomy/3` → `anatomy`).
fn mmlu_subject(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(s, _)| s)
}

/// The first `limit` queries of `split` in its seeded order (all without a limit).
pub fn select(
    data: &DataDir,
    benchmark: Benchmark,
    split: &str,
    limit: Option<usize>,
) -> Result<Vec<Query>> {
    Ok(hieramas_bench::query::load(
        data,
        &hieramas_bench::Selection {
            benchmark,
            split: split.into(),
            seed: hieramas_tasks::splits::DEFAULT_SEED,
            limit,
            keep_flagged: false,
        },
    )?)
}
