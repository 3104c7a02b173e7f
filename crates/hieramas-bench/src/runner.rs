//! Runs a method over queries: concurrent calls, real grading, one durable record per query.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::future::join_all;
use hieramas_llm::{ChatModel, ChatResponse, LlmError};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::humaneval::{self, Grader, SandboxOptions};
use hieramas_tasks::splits::Benchmark;
use hieramas_tasks::{math, mmlu};
use serde::Serialize;
use sha2::{Digest, Sha256};

use hieramas_supernode::{Members, Sampling};
use hieramas_topology::Topology;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Extractor, Plan, ScheduleError, run_query};

use crate::BenchError;
use crate::log::{Record, ResultLog};
use crate::prompts::{Method, Prompt};
use crate::query::{Gold, Query, Selection};
use crate::reference::EnsembleSetup;

/// Bumped when grading changes in a way that changes verdicts, so old records are not reused.
pub const GRADER_VERSION: u32 = 2;

/// Everything that decides an evaluation's records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalConfig {
    pub selection: Selection,
    pub method: Method,
    /// The pool id calls are made to.
    pub model: String,
    /// What identifies the model beyond its id (provider, provider model, price); part of the
    /// hash, so a repriced or repointed model starts a fresh log.
    pub model_fingerprint: String,
    pub prompt: Prompt,
    /// Calls per query (`sc`: the number of votes).
    pub samples: u32,
    /// Queries in flight at once.
    pub concurrency: usize,
    /// For `mas`: what defines the system (topology, role set, assignment, decision model,
    /// execution order); part of the hash. `null` for the baselines.
    pub mas: serde_json::Value,
    /// Seeds the system's own randomness (a random graph or assignment, a simulated pool),
    /// apart from the split's seed; part of the hash when not 0.
    #[serde(default)]
    pub system_seed: u64,
}

impl EvalConfig {
    /// sha256 (hex, first 16 digits) of everything that decides the responses and verdicts.
    /// The limit and the concurrency are not part of it: a larger `--limit` extends a run.
    pub fn hash(&self) -> String {
        let s = &self.selection;
        let mut key = serde_json::json!({
            "benchmark": s.benchmark.name(),
            "split": s.split,
            "seed": s.seed,
            "keep_flagged": s.keep_flagged,
            "method": self.method.name(),
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "prompt": self.prompt,
            "samples": self.samples,
            "grader_version": GRADER_VERSION,
            "mas": self.mas,
        });
        // Absent when 0, so logs written before the split and system seeds were apart keep
        // their hash.
        if self.system_seed != 0
            && let Some(m) = key.as_object_mut()
        {
            m.insert("system_seed".into(), self.system_seed.into());
        }
        let digest = Sha256::digest(key.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

/// Grades responses; for HumanEval+ it holds the sandboxed grader.
#[derive(Clone)]
pub struct Checker {
    code: Option<Arc<Grader>>,
}

impl Checker {
    /// A checker for `benchmark`. For HumanEval+ this computes (or loads from the cache) the
    /// canonical solutions' expected outputs, which takes a while the first time.
    pub async fn new(data: &DataDir, benchmark: Benchmark) -> Result<Checker, BenchError> {
        Self::with_sandbox(data, benchmark, SandboxOptions::default()).await
    }

    /// [`Checker::new`] with the HumanEval+ sandbox's options (e.g. `allow_unsandboxed`).
    pub async fn with_sandbox(
        data: &DataDir,
        benchmark: Benchmark,
        sandbox: SandboxOptions,
    ) -> Result<Checker, BenchError> {
        if benchmark != Benchmark::HumanevalPlus {
            return Ok(Checker { code: None });
        }
        let tasks = data.humaneval_plus()?;
        let grader = Arc::new(Grader::new(tasks, humaneval::default_cache_dir(), sandbox));
        let g = grader.clone();
        tokio::task::spawn_blocking(move || g.prepare())
            .await
            .map_err(|e| BenchError::Config(format!("the grader thread failed: {e}")))??;
        Ok(Checker { code: Some(grader) })
    }

    /// Grades the responses of one query (a majority vote when there are several).
    pub async fn grade(&self, q: &Query, responses: &[String]) -> Result<Graded, BenchError> {
        match &q.gold {
            Gold::Math(gold) => {
                // A grader that fails on this query (it never should) is this record's error.
                let graded = hieramas_tasks::catch_grader(|| {
                    let verdicts: Vec<math::Verdict> =
                        responses.iter().map(|r| math::grade(r, gold)).collect();
                    let winner = vote(
                        &verdicts,
                        |v| v.extracted.clone(),
                        |a, b| math::equivalent(a, b),
                    );
                    (verdicts, winner)
                });
                let (verdicts, winner) = match graded {
                    Ok(v) => v,
                    Err(e) => return Ok(Graded::failed(e.to_string())),
                };
                Ok(match winner {
                    Some(i) => Graded {
                        extracted: verdicts[i].extracted.clone(),
                        correct: verdicts[i].correct,
                        ..Graded::default()
                    },
                    None => Graded::default(),
                })
            }
            Gold::Mmlu { letter, choices } => {
                let graded = hieramas_tasks::catch_grader(|| {
                    let verdicts: Vec<mmlu::Verdict> = responses
                        .iter()
                        .map(|r| mmlu::grade(r, *letter, Some(choices)))
                        .collect();
                    let winner = vote(&verdicts, |v| v.extracted, |a, b| a == b);
                    (verdicts, winner)
                });
                let (verdicts, winner) = match graded {
                    Ok(v) => v,
                    Err(e) => return Ok(Graded::failed(e.to_string())),
                };
                Ok(match winner {
                    Some(i) => Graded {
                        extracted: verdicts[i].extracted.map(String::from),
                        correct: verdicts[i].correct,
                        ..Graded::default()
                    },
                    None => Graded::default(),
                })
            }
            Gold::Code { task_id } => {
                let grader = self.code.clone().ok_or_else(|| {
                    BenchError::Config("a HumanEval+ query needs a HumanEval+ checker".into())
                })?;
                let task = grader
                    .task(task_id)
                    .ok_or_else(|| hieramas_tasks::TasksError::UnknownTask(task_id.clone()))?;
                let programs: Vec<String> = responses
                    .iter()
                    .map(|r| humaneval::program_from_response(task, r))
                    .collect();
                // The vote is over programs, compared without blank lines and trailing spaces.
                let normal = |p: &String| {
                    p.lines()
                        .map(str::trim_end)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let Some(i) = vote(&programs, |p| Some(normal(p)), |a, b| a == b) else {
                    return Ok(Graded::default());
                };
                let program = programs[i].clone();
                let id = task_id.clone();
                let outcome = tokio::task::spawn_blocking(move || grader.grade(&id, &program))
                    .await
                    .map_err(|e| BenchError::Config(format!("the grader thread failed: {e}")))??;
                Ok(Graded {
                    extracted: Some(programs[i].clone()),
                    correct: outcome.plus_pass(),
                    base_pass: Some(outcome.base_pass()),
                    error: outcome.first_error(),
                })
            }
        }
    }
}

/// A query's verdict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graded {
    pub extracted: Option<String>,
    pub correct: bool,
    pub base_pass: Option<bool>,
    pub error: Option<String>,
}

impl Graded {
    /// Wrong, with `error` saying why the response could not be graded.
    fn failed(error: String) -> Graded {
        Graded {
            error: Some(error),
            ..Graded::default()
        }
    }
}

/// The index of the first item of the largest group of equal answers (ties: the group whose
/// first item comes first); items without an answer do not vote. `None` if nothing answered.
pub fn vote<T, A>(
    items: &[T],
    answer: impl Fn(&T) -> Option<A>,
    same: impl Fn(&A, &A) -> bool,
) -> Option<usize> {
    let mut groups: Vec<(A, usize, usize)> = Vec::new(); // (representative, count, first index)
    for (i, item) in items.iter().enumerate() {
        let Some(a) = answer(item) else { continue };
        match groups.iter_mut().find(|(rep, _, _)| same(rep, &a)) {
            Some(g) => g.1 += 1,
            None => groups.push((a, 1, i)),
        }
    }
    let mut best: Option<(usize, usize)> = None; // (count, first index)
    for (_, count, first) in groups {
        if best.is_none_or(|(c, _)| count > c) {
            best = Some((count, first));
        }
    }
    best.map(|(_, i)| i)
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// Records written by this run.
    pub written: usize,
    /// Queries skipped because the log already had them.
    pub resumed: usize,
    /// Queries whose calls failed (id, error); they have no record and run again next time.
    pub failed: Vec<(String, String)>,
    /// The budget refused a call; no query was started after that.
    pub budget_exhausted: bool,
}

/// Runs `cfg` on `queries`, skipping those in `done`, appending one record per finished query
/// to `log` (then calling `on_record`). Calls that fail leave their query without a record; a
/// budget refusal stops the run after the queries in flight.
pub async fn run(
    cfg: &EvalConfig,
    solver: impl Into<Solver>,
    queries: &[Query],
    checker: &Checker,
    log: &mut ResultLog,
    done: &HashSet<String>,
    mut on_record: impl FnMut(&Record),
) -> Result<RunOutcome, BenchError> {
    let hash = cfg.hash();
    let solver: Solver = solver.into();
    let mut outcome = RunOutcome::default();
    let todo: Vec<&Query> = queries
        .iter()
        .filter(|q| {
            let skip = done.contains(&q.id);
            outcome.resumed += usize::from(skip);
            !skip
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut results = futures_util::stream::iter(todo)
        .map(|q| {
            let solver = solver.clone();
            let stop = stop.clone();
            async move {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return (q, Err(None));
                }
                let r = match &solver {
                    Solver::Model(m) => answer(cfg, m.as_ref(), q).await.map_err(Failure::from),
                    Solver::Mas(setup) => answer_mas(setup, q).await,
                    Solver::Ensemble(setup) => answer_ensemble(setup, q).await,
                    Solver::Planned(planner) => answer_planned(planner.as_ref(), q).await,
                };
                if let Err(f) = &r
                    && f.budget
                {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                (q, r.map_err(Some))
            }
        })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some((q, r)) = results.next().await {
        let answered = match r {
            Ok(a) => a,
            Err(None) => continue, // not started: the budget ran out before
            Err(Some(f)) => {
                outcome.budget_exhausted |= f.budget;
                tracing::warn!("{}: {}", q.id, f.message);
                outcome.failed.push((q.id.clone(), f.message));
                continue;
            }
        };
        let texts = answered.texts;
        let graded = checker.grade(q, &texts).await?;
        let record = Record {
            query_id: q.id.clone(),
            config_hash: hash.clone(),
            benchmark: cfg.selection.benchmark.name().to_string(),
            split: cfg.selection.split.clone(),
            method: cfg.method.name().to_string(),
            model: cfg.model.clone(),
            prompt_hash: answered.prompt_hash,
            responses: texts,
            extracted: graded.extracted,
            correct: graded.correct,
            base_pass: graded.base_pass,
            error: graded.error,
            prompt_tokens: answered.prompt_tokens,
            completion_tokens: answered.completion_tokens,
            cost_pico: answered.cost_pico,
            latency_ms: answered.latency_ms,
            cached_calls: answered.cached_calls,
            saved_pico: answered.saved_pico,
            trace: answered.trace,
            finished_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        log.append(&record)?;
        outcome.written += 1;
        on_record(&record);
    }
    Ok(outcome)
}

/// What answers a query: one model (the baselines) or a multi-agent system.
#[derive(Clone)]
pub enum Solver {
    Model(Arc<dyn ChatModel>),
    Mas(Arc<MasSetup>),
    /// MoA or debate (reference methods).
    Ensemble(Arc<EnsembleSetup>),
    /// A multi-agent system chosen per query (HieraMAS: topology and models per task).
    Planned(Arc<dyn Planner>),
}

/// Chooses the multi-agent system for each query.
#[async_trait::async_trait]
pub trait Planner: Send + Sync {
    /// The system that answers `q`, and what to record about the choice (kept in the record's
    /// trace as `plan`). An error fails the query with its message.
    async fn plan(&self, q: &Query) -> Result<(MasSetup, serde_json::Value), String>;
}

impl From<Arc<dyn ChatModel>> for Solver {
    fn from(m: Arc<dyn ChatModel>) -> Solver {
        Solver::Model(m)
    }
}

/// A multi-agent system: role set on a topology, models at every position, the decision node.
#[derive(Clone)]
pub struct MasSetup {
    pub topology: Topology,
    pub roles: RoleSet,
    pub members: Vec<Members>,
    pub decision: Arc<dyn ChatModel>,
    pub sampling: Sampling,
    pub faithful: bool,
    /// The consensus override's extractor (method §3.3); `None`: off.
    pub consensus: Option<Extractor>,
}

impl MasSetup {
    /// The scheduler's plan of this system (one per query).
    pub fn plan(&self) -> Plan<'_> {
        Plan {
            topology: &self.topology,
            roles: &self.roles,
            members: self.members.clone(),
            decision: self.decision.clone(),
            sampling: self.sampling,
            faithful: self.faithful,
            consensus: self.consensus,
            observer: None,
        }
    }
}

struct Answered {
    texts: Vec<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_pico: u64,
    cached_calls: u32,
    saved_pico: u64,
    prompt_hash: String,
    latency_ms: u64,
    trace: Option<serde_json::Value>,
}

/// Why a query has no answer; `budget` when the budget refused a call.
struct Failure {
    message: String,
    budget: bool,
}

impl From<LlmError> for Failure {
    fn from(e: LlmError) -> Failure {
        Failure {
            budget: matches!(e, LlmError::BudgetExceeded { .. }),
            message: e.to_string(),
        }
    }
}

/// The prediction the benchmark's grader would extract, for the consensus override: MATH's
/// normalised final answer, MMLU's letter, HumanEval's first code block.
pub fn prediction_extractor(benchmark: Benchmark) -> Extractor {
    match benchmark {
        Benchmark::Math => |t| math::extract_answer(t).map(|a| math::normalize(&a)),
        Benchmark::Mmlu => |t| mmlu::extract_letter(t, None).map(String::from),
        Benchmark::HumanevalPlus => |t| {
            humaneval::fenced_blocks(t)
                .first()
                .map(|b| b.trim().to_string())
        },
    }
}

/// One query through the multi-agent system; the record keeps its trace.
async fn answer_mas(setup: &MasSetup, q: &Query) -> Result<Answered, Failure> {
    let started = Instant::now();
    let trace = run_query(&setup.plan(), &q.task).await.map_err(|e| {
        let budget = match &e {
            ScheduleError::Node(n) => matches!(n.llm(), Some(LlmError::BudgetExceeded { .. })),
            ScheduleError::Decision(d) => matches!(d, LlmError::BudgetExceeded { .. }),
            _ => false,
        };
        Failure {
            message: e.to_string(),
            budget,
        }
    })?;
    Ok(Answered {
        texts: vec![trace.answer.clone()],
        prompt_tokens: trace.calls.iter().map(|c| c.usage.prompt_tokens).sum(),
        completion_tokens: trace.calls.iter().map(|c| c.usage.completion_tokens).sum(),
        cost_pico: trace.total_cost_pico,
        cached_calls: trace.cached_calls as u32,
        saved_pico: trace.saved_pico,
        prompt_hash: hex::encode(Sha256::digest(q.task.as_bytes())),
        latency_ms: started.elapsed().as_millis() as u64,
        trace: serde_json::to_value(&trace).ok(),
    })
}

/// One query through the system its planner chose; the trace keeps the choice as `plan`.
async fn answer_planned(planner: &dyn Planner, q: &Query) -> Result<Answered, Failure> {
    let (setup, plan) = planner.plan(q).await.map_err(|message| Failure {
        message,
        budget: false,
    })?;
    let mut answered = answer_mas(&setup, q).await?;
    if let Some(serde_json::Value::Object(t)) = &mut answered.trace {
        t.insert("plan".into(), plan);
    }
    Ok(answered)
}

/// One query through MoA or debate; the record keeps every call.
async fn answer_ensemble(setup: &EnsembleSetup, q: &Query) -> Result<Answered, Failure> {
    let started = Instant::now();
    let trace = setup.run(&q.task).await.map_err(Failure::from)?;
    Ok(Answered {
        texts: trace.answers.clone(),
        prompt_tokens: trace.calls.iter().map(|c| c.prompt_tokens).sum(),
        completion_tokens: trace.calls.iter().map(|c| c.completion_tokens).sum(),
        cost_pico: trace.calls.iter().map(|c| c.cost_pico).sum(),
        cached_calls: trace.calls.iter().map(|c| u32::from(c.cached)).sum(),
        saved_pico: trace.calls.iter().map(|c| c.saved_pico).sum(),
        prompt_hash: hex::encode(Sha256::digest(q.task.as_bytes())),
        latency_ms: started.elapsed().as_millis() as u64,
        trace: serde_json::to_value(&trace).ok(),
    })
}

/// The calls of one query: one, or `samples` seeded samples at once.
async fn answer(cfg: &EvalConfig, model: &dyn ChatModel, q: &Query) -> Result<Answered, LlmError> {
    let base = cfg.prompt.request(&q.task);
    let prompt_hash = hex::encode(Sha256::digest(
        serde_json::to_string(&base.messages)
            .unwrap_or_default()
            .as_bytes(),
    ));
    let started = Instant::now();
    let requests: Vec<_> = (0..cfg.samples.max(1))
        .map(|i| {
            if cfg.samples > 1 {
                base.clone().seed(u64::from(i)).sample_index(i)
            } else {
                base.clone()
            }
        })
        .collect();
    let responses: Vec<ChatResponse> = join_all(requests.iter().map(|r| model.chat(r)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Answered {
        texts: responses.iter().map(|r| r.text.clone()).collect(),
        prompt_tokens: responses.iter().map(|r| r.usage.prompt_tokens).sum(),
        completion_tokens: responses.iter().map(|r| r.usage.completion_tokens).sum(),
        cost_pico: responses.iter().map(|r| r.cost.pico()).sum(),
        cached_calls: responses.iter().map(|r| u32::from(r.cached)).sum(),
        saved_pico: responses.iter().map(|r| r.saved.pico()).sum(),
        prompt_hash,
        latency_ms: started.elapsed().as_millis() as u64,
        trace: None,
    })
}

/// Opens (or creates) the log at `path`, runs the queries it does not hold yet for `cfg`, and
/// returns what this run did with every record of `cfg` among `queries` — earlier runs' and
/// this one's — in log order. This is a whole resumable evaluation.
pub async fn resume(
    cfg: &EvalConfig,
    solver: impl Into<Solver>,
    queries: &[Query],
    checker: &Checker,
    path: &std::path::Path,
    on_record: impl FnMut(&Record),
) -> Result<(RunOutcome, Vec<Record>), BenchError> {
    let (mut log, existing) = ResultLog::open(path)?;
    let hash = cfg.hash();
    let wanted: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let mut records: Vec<Record> = existing
        .into_iter()
        .filter(|r| r.config_hash == hash && wanted.contains(r.query_id.as_str()))
        .collect();
    let done: HashSet<String> = records.iter().map(|r| r.query_id.clone()).collect();
    let mut fresh = Vec::new();
    let mut on_record = on_record;
    let outcome = run(cfg, solver, queries, checker, &mut log, &done, |r| {
        on_record(r);
        fresh.push(r.clone());
    })
    .await?;
    records.extend(fresh);
    Ok((outcome, records))
}

/// The ids of `cfg`'s queries already in the log at `path` (empty if there is no log).
pub fn logged_ids(cfg: &EvalConfig, path: &std::path::Path) -> Result<HashSet<String>, BenchError> {
    let records = ResultLog::read(path)?;
    let hash = cfg.hash();
    Ok(records
        .into_iter()
        .filter(|r| r.config_hash == hash)
        .map(|r| r.query_id)
        .collect())
}
