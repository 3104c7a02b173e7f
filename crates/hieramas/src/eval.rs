//! Evaluation: a baseline, a multi-agent system, HieraMAS or a reference method over a
//! benchmark split, resumable.
//!
//! Records go to an append-only JSONL (default `results/eval/<benchmark>-<split>-<method>-
//! <model>-<config hash>.jsonl`); a rerun of the same configuration skips the queries already
//! there, so a crash (even `kill -9`) loses only the queries in flight. The summary covers every
//! record of the configuration among the selected queries, from this run and earlier ones.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use hieramas_bench::query::Query;
use hieramas_bench::{
    Checker, EnsembleSetup, EvalConfig, Method, Prompt, Prompts, Record, RunOutcome, Selection,
    Solver, Summary,
};
use hieramas_llm::{Budget, Budgeted, ChatModel, Provider, Usd};
use hieramas_local::pool::local_pool;
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, bail};
use crate::models::{Models, load_pool};
use crate::progress::Progress;
use crate::records::{Ablation, EvalConfigRecord};
use crate::stage1::SystemConfig;
use crate::stage2::{Hieramas, HieramasConfig};
use crate::system::{MasConfig, System};

/// What to evaluate, and where; `Default` is a single-model baseline of SmolLM2 on MATH test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalOptions {
    pub benchmark: Benchmark,
    /// A split of `datasets/splits.toml` (train, valid, test; mmlu also test_unseen).
    pub split: String,
    pub method: Method,
    /// The baselines' model: a model of `pools/local.toml` (run in-process) or of `pool`.
    pub model: String,
    /// Only the first N queries of the split (the split is in seeded random order).
    pub limit: Option<usize>,
    /// Queries in flight at once.
    pub concurrency: usize,
    /// Stop starting queries once this much has been spent.
    pub budget: Option<Usd>,
    /// The budget's ledger file, so that what a killed run spent counts when it resumes
    /// (`hieramas_llm::budget`). Default with a budget: `out` with the extension
    /// `budget.jsonl`, else `<out_dir>/budget.jsonl` (shared by the evals there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ledger: Option<PathBuf>,
    /// Results JSONL (appended to; default under `out_dir`, named by the configuration).
    pub out: Option<PathBuf>,
    pub out_dir: PathBuf,
    /// The benchmark files (default: `$HIERAMAS_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// For baselines, where non-local models are found (default: the paper's pool); for mas,
    /// moa, debate and hieramas, the models placed at the positions (default:
    /// `pools/local.toml`).
    pub pool: Option<PathBuf>,
    /// mas: the system (random topologies and assignments are seeded by `seed`); its
    /// `decision` is also moa's aggregator and HieraMAS's decision model, its `max_tokens`
    /// every method's (the baselines' default: the prompts file).
    pub mas: MasConfig,
    /// Which queries: the split's seed (the committed splits use 0).
    pub split_seed: u64,
    /// The system's own randomness: a random topology or assignment, a simulated pool. Apart
    /// from `split_seed`, so trying another random graph keeps the test queries.
    pub seed: u64,
    /// MMLU: also evaluate rows the Redux annotators flagged as wrong.
    pub keep_flagged: bool,
    /// Prompts file (default: the built-in `prompts.toml` of hieramas-bench).
    pub prompts: Option<PathBuf>,
    /// sc: votes per query (default from the prompts file).
    pub samples: Option<u32>,
    /// hieramas: the stage-1 selector checkpoint.
    pub stage1: Option<PathBuf>,
    /// hieramas: the stage-2 classifier.
    pub stage2: Option<PathBuf>,
    /// hieramas: candidate DAGs scored per query (default: the benchmark's official count).
    pub candidates: Option<usize>,
    /// hieramas: the cost-aware rule's λ instead of the top score (the official rule).
    pub cost_lambda: Option<f64>,
    /// hieramas: what embeds tasks (`local` or a pool embeddings model; the one it was trained
    /// with).
    pub embedder: String,
    /// hieramas: where embeddings are cached (default: `<out_dir>/embeddings`).
    pub embeddings: Option<PathBuf>,
    /// hieramas: an ablation of method §7 instead.
    pub ablation: Option<Ablation>,
    /// hieramas: proposers per supernode (default: the role set's).
    pub width: Option<usize>,
    /// Record every model call to, and replay it from, this SQLite response cache (a hit costs
    /// nothing; the summary counts hits and what they saved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            benchmark: Benchmark::Math,
            split: "test".into(),
            method: Method::Single,
            model: "local/smollm2-135m".into(),
            limit: None,
            concurrency: 4,
            budget: None,
            budget_ledger: None,
            out: None,
            out_dir: PathBuf::from("results/eval"),
            data_dir: None,
            pool: None,
            mas: MasConfig::default(),
            split_seed: hieramas_tasks::splits::DEFAULT_SEED,
            seed: 0,
            keep_flagged: false,
            prompts: None,
            samples: None,
            stage1: None,
            stage2: None,
            candidates: None,
            cost_lambda: None,
            embedder: "local".into(),
            embeddings: None,
            ablation: None,
            width: None,
            cache: None,
        }
    }
}

/// What an evaluation leaves.
pub struct EvalOutcome {
    /// Every record of the configuration among the selected queries.
    pub summary: Summary,
    pub records: Vec<Record>,
    /// What this run did (written, resumed, failed, budget).
    pub run: RunOutcome,
    /// Queries selected.
    pub queries: usize,
    pub records_path: PathBuf,
    pub summary_path: PathBuf,
    pub config_path: PathBuf,
}

/// What every method's preparation reads: the options, the data, the selected queries (what
/// SIMULATED models must know), the budget every call is charged to.
struct Inputs<'a> {
    o: &'a EvalOptions,
    data: &'a DataDir,
    known: &'a [&'a Query],
    budget: Option<Arc<Budget>>,
}

/// The solver of a method, its name in records, and what defines it.
struct Prepared {
    solver: Solver,
    model_id: String,
    fingerprint: String,
    description: serde_json::Value,
}

/// The prompts of `o`, with `samples` applied.
fn prompts(o: &EvalOptions) -> Result<Prompts> {
    let mut prompts = match &o.prompts {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Prompts::from_toml(&text, &p.display().to_string())?
        }
        None => Prompts::builtin()?,
    };
    if let Some(k) = o.samples {
        if k == 0 {
            bail!("samples must be at least 1");
        }
        prompts.sc.samples = k;
    }
    Ok(prompts)
}

/// The models of the multi-model methods' pool (default: the local pool), SIMULATED ones
/// given the queries' answers; and the pool's name.
fn pool_models(cx: &Inputs<'_>, progress: &mut dyn Progress) -> Result<(Models, String)> {
    let Inputs {
        o,
        data,
        known,
        budget,
    } = cx;
    let pool = match &o.pool {
        Some(p) => load_pool(p)?,
        None => local_pool()?,
    };
    let name = pool.meta.name.clone();
    let mut models = Models::new(pool, budget.clone()).with_cache(o.cache.as_deref())?;
    if models.simulate_queries(data, o.benchmark, known, o.seed)? {
        progress.note(crate::sim::BANNER);
    }
    Ok((models, name))
}

/// Runs the evaluation `o` (resuming its log), reporting to `progress`; writes the records, the
/// summary ([`Summary`]) and the configuration ([`EvalConfigRecord`]).
pub async fn evaluate(o: &EvalOptions, progress: &mut dyn Progress) -> Result<EvalOutcome> {
    let benchmark = o.benchmark;
    let method = o.method;
    let prompts = prompts(o)?;
    let data = DataDir::resolve(o.data_dir.as_deref())?;
    let selection = Selection {
        benchmark,
        split: o.split.clone(),
        seed: o.split_seed,
        limit: o.limit,
        keep_flagged: o.keep_flagged,
    };
    let queries = hieramas_bench::query::load(&data, &selection)?;
    if queries.is_empty() {
        bail!("{benchmark}/{} selects no queries", o.split);
    }
    let known: Vec<&Query> = queries.iter().collect();
    let ledger = match (&o.budget_ledger, o.budget) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(_)) => Some(match &o.out {
            Some(out) => out.with_extension("budget.jsonl"),
            None => o.out_dir.join(crate::stage1::BUDGET_LEDGER),
        }),
        (None, None) => None,
    };
    let budget = crate::models::open_budget(o.budget, ledger.as_deref())?;
    let mut prompt = prompts.for_method(benchmark, method);
    if let Some(n) = o.mas.max_tokens {
        prompt.max_tokens = n;
    } else if matches!(
        method,
        Method::Mas | Method::Moa | Method::Debate | Method::Hieramas
    ) {
        prompt.max_tokens = o.mas.max_tokens();
    }
    let cx = Inputs {
        o,
        data: &data,
        known: &known,
        budget,
    };
    let prepared = match method {
        Method::Mas => prepare_mas(&cx, progress)?,
        Method::Hieramas => prepare_hieramas(&cx, progress).await?,
        _ => match prompts.ensemble(method) {
            Some(ensemble) => prepare_ensemble(&cx, ensemble, &prompt, progress)?,
            None => prepare_single(&cx, progress)?,
        },
    };
    let cfg = EvalConfig {
        selection,
        method,
        model: prepared.model_id,
        model_fingerprint: prepared.fingerprint,
        prompt,
        samples: prompts.samples(method),
        concurrency: o.concurrency.max(1),
        mas: prepared.description,
        system_seed: o.seed,
    };
    let path = o
        .out
        .clone()
        .unwrap_or_else(|| hieramas_bench::results_path(&o.out_dir, &cfg));
    let hash = cfg.hash();
    // What produced the records (the system, its topology and models included), for reports.
    let config_path = path.with_extension("config.json");
    if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::records::write_json_atomic(
        &config_path,
        &EvalConfigRecord {
            config: &cfg,
            config_hash: hash.clone(),
        },
    )?;
    let wanted: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let logged = hieramas_bench::logged_ids(&cfg, &path)?;
    let done = logged
        .iter()
        .filter(|id| wanted.contains(id.as_str()))
        .count();
    progress.note(&format!(
        "{benchmark}/{} · {} · {} · {} queries ({done} already in {}) · config {hash}",
        o.split,
        method.name(),
        cfg.model,
        queries.len(),
        path.display()
    ));

    let checker = Checker::new(&data, benchmark)
        .await
        .context("preparing the grader")?;
    progress.start(queries.len() as u64, done as u64, "queries");
    let (mut correct, mut n) = (0, 0);
    let (run, records) =
        hieramas_bench::resume(&cfg, prepared.solver, &queries, &checker, &path, |r| {
            n += 1;
            correct += usize::from(r.correct);
            progress.message(&format!(
                "this run: accuracy {:.1}%",
                100.0 * correct as f64 / n as f64
            ));
            progress.advance(1);
        })
        .await?;
    progress.finish();

    let refs: Vec<&Record> = records.iter().collect();
    let summary = Summary::of(&refs);
    let summary_path = path.with_extension("summary.json");
    crate::records::write_json_atomic(&summary_path, &summary)?;
    Ok(EvalOutcome {
        summary,
        records,
        run,
        queries: queries.len(),
        records_path: path,
        summary_path,
        config_path,
    })
}

/// `mas`: a fixed system of the pool.
fn prepare_mas(cx: &Inputs<'_>, progress: &mut dyn Progress) -> Result<Prepared> {
    let o = cx.o;
    let (mut models, pool_name) = pool_models(cx, progress)?;
    let system = System::fixed(
        crate::system::Answer::Benchmark(o.benchmark),
        &o.mas,
        &mut models,
        o.seed,
        0.0,
    )?;
    let setup = system.setup().context("a fixed system has a setup")?;
    Ok(Prepared {
        solver: Solver::Mas(Arc::new(setup)),
        model_id: format!("mas:{pool_name}:{}", o.mas.topology),
        fingerprint: String::new(),
        description: system.description,
    })
}

/// `hieramas`: the trained system (or one of its ablations).
async fn prepare_hieramas(cx: &Inputs<'_>, progress: &mut dyn Progress) -> Result<Prepared> {
    let Inputs {
        o,
        data,
        known,
        budget,
    } = cx;
    let Some(stage1) = &o.stage1 else {
        bail!(
            "HieraMAS needs the stage-1 checkpoint (`stage1`, --stage1; `hieramas train stage1` makes one)"
        );
    };
    let cfg = HieramasConfig {
        system: SystemConfig {
            benchmark: o.benchmark,
            pool: o
                .pool
                .clone()
                .unwrap_or_else(|| PathBuf::from("pools/local.toml")),
            decision: o.mas.decision.clone(),
            max_tokens: o.mas.max_tokens(),
            seed: o.seed,
            embedder: o.embedder.clone(),
            metadata: "heuristic".into(),
            embedder_pool: None,
            embeddings: Some(
                o.embeddings
                    .clone()
                    .unwrap_or_else(|| o.out_dir.join("embeddings")),
            ),
            data_dir: o.data_dir.clone(),
            budget: None,
            budget_ledger: None,
            roles: None,
            cache: o.cache.clone(),
            official: o.mas.official,
        },
        stage1: stage1.clone(),
        stage2: o.stage2.clone(),
        ablation: o.ablation,
        candidates: o.candidates,
        cost_lambda: o.cost_lambda,
        width: o.width,
    };
    let loaded = Hieramas::load(&cfg, data, known, budget.clone(), progress).await?;
    Ok(Prepared {
        solver: Solver::Planned(Arc::new(loaded.planner)),
        model_id: loaded.name,
        fingerprint: String::new(),
        description: loaded.description,
    })
}

/// `moa`, `debate`: the reference methods over the pool.
fn prepare_ensemble(
    cx: &Inputs<'_>,
    ensemble: hieramas_bench::Ensemble,
    prompt: &Prompt,
    progress: &mut dyn Progress,
) -> Result<Prepared> {
    let o = cx.o;
    let (mut models, pool_name) = pool_models(cx, progress)?;
    // `--assign fixed:MODEL`: every agent is MODEL (the official debate baseline: 3 agents of
    // one model, method §7.6); otherwise the pool's models in turn.
    let ids = match o.mas.assign.strip_prefix("fixed:") {
        Some(id) => {
            models
                .get(id)
                .with_context(|| format!("--assign fixed:{id}"))?;
            vec![id.to_string()]
        }
        None if o.mas.assign == "round-robin" => models.ids(),
        None => bail!(
            "{}: the agents are the pool's models in turn (round-robin) or one model (fixed:MODEL), not {:?}",
            o.method.name(),
            o.mas.assign
        ),
    };
    let Some(first) = ids.first() else {
        bail!("the pool {pool_name} has no selectable models");
    };
    let aggregator_id = o.mas.decision.clone().unwrap_or_else(|| first.clone());
    let specs = models.specs(ids.iter().chain([&aggregator_id]))?;
    let description = serde_json::json!({
        "ensemble": ensemble,
        "models": ids,
        "aggregator": aggregator_id,
        "specs": specs,
    });
    let setup = EnsembleSetup {
        ensemble,
        prompt: prompt.clone(),
        models: ids.iter().map(|id| models.get(id)).collect::<Result<_>>()?,
        aggregator: models.get(&aggregator_id)?,
    };
    Ok(Prepared {
        solver: Solver::Ensemble(Arc::new(setup)),
        model_id: format!("{}:{pool_name}", o.method.name()),
        fingerprint: String::new(),
        description,
    })
}

/// `single`, `cot`, `sc`: one model.
fn prepare_single(cx: &Inputs<'_>, progress: &mut dyn Progress) -> Result<Prepared> {
    let Inputs {
        o,
        data,
        known,
        budget,
    } = cx;
    let (spec, model) = crate::models::single(
        &o.model,
        o.pool.as_deref(),
        data,
        o.benchmark,
        known,
        o.seed,
        budget.clone(),
    )?;
    let simulated = spec.provider == Provider::Sim;
    if simulated {
        progress.note(crate::sim::BANNER);
    }
    let model: Arc<dyn ChatModel> = match &o.cache {
        Some(path) => Arc::new(hieramas_llm::Cached::for_spec(
            model,
            &spec,
            Arc::new(
                hieramas_llm::ResponseCache::open(path)
                    .with_context(|| format!("response cache {}", path.display()))?,
            ),
            hieramas_llm::CacheMode::ReadWrite,
        )),
        None => model,
    };
    // An HTTP client charges each attempt itself (`models::single`); in-process models here.
    let model: Arc<dyn ChatModel> = match &budget {
        Some(b) if matches!(spec.provider, Provider::Local | Provider::Sim) => {
            Arc::new(Budgeted::new(model, b.clone()))
        }
        _ => model,
    };
    let fingerprint = format!(
        "{}:{}:{}/{}",
        spec.provider.as_str(),
        spec.model,
        spec.price.input_pico_per_token,
        spec.price.output_pico_per_token
    );
    Ok(Prepared {
        solver: Solver::Model(model),
        model_id: if simulated {
            format!("SIMULATED-{}", o.model)
        } else {
            o.model.clone()
        },
        fingerprint,
        description: serde_json::Value::Null,
    })
}
