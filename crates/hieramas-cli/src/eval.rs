//! `hieramas eval`: a baseline, a multi-agent system or a reference method over a benchmark
//! split, resumable.
//!
//! Records go to an append-only JSONL (default `results/eval/<benchmark>-<split>-<method>-
//! <model>-<config hash>.jsonl`); a rerun of the same command skips the queries already there,
//! so a crash (even `kill -9`) loses only the queries in flight. The summary covers every
//! record of the configuration among the selected queries, from this run and earlier ones.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hieramas_bench::{
    Checker, EnsembleSetup, EvalConfig, MasSetup, Method, Prompts, Selection, Solver, Summary,
};
use hieramas_llm::{Budget, Budgeted, ChatModel, Env, ModelSpec, Pool, Provider, Usd};
use hieramas_local::engine::EngineOptions;
use hieramas_local::pool::{LocalModels, local_pool};
use hieramas_supernode::Sampling;
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// math, mmlu or humaneval-plus.
    #[arg(long)]
    benchmark: String,
    /// A split of `datasets/splits.toml` (train, valid, test; mmlu also test_unseen).
    #[arg(long, default_value = "test")]
    split: String,
    /// single, cot, sc (self-consistency: majority vote over sampled cot answers), mas (a
    /// HieraMAS multi-agent system: --topology, --pool, --assign, --decision), moa (layered
    /// propose-aggregate over the --pool models, aggregator --decision) or debate (the --pool
    /// models debate; majority vote of the last round).
    #[arg(long, default_value = "single")]
    method: String,
    /// A model id of `pools/local.toml` (run in-process) or of `--pool`.
    #[arg(long, default_value = "local/smollm2-135m")]
    model: String,
    /// Only the first N queries of the split (the split is in seeded random order).
    #[arg(long)]
    limit: Option<usize>,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Stop starting queries once this much has been spent (USD, e.g. 0.50).
    #[arg(long)]
    budget_usd: Option<String>,
    /// Results JSONL (appended to; default under --out-dir, named by the configuration).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "results/eval")]
    out_dir: PathBuf,
    /// The benchmark files (default: $HIERAMAS_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Pool file: for baselines, where non-local models are found (default: the paper's
    /// pool); for mas, moa and debate, the models placed at the positions (default:
    /// pools/local.toml).
    #[arg(long)]
    pool: Option<PathBuf>,
    /// mas: the system (random topologies and assignments are seeded by --seed).
    #[command(flatten)]
    mas: crate::mas::MasArgs,
    /// Split seed (the committed splits use 0).
    #[arg(long, default_value_t = hieramas_tasks::splits::DEFAULT_SEED)]
    seed: u64,
    /// MMLU: also evaluate rows the Redux annotators flagged as wrong.
    #[arg(long)]
    keep_flagged: bool,
    /// Prompts file (default: the built-in `prompts.toml` of hieramas-bench).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// sc: votes per query (default from the prompts file).
    #[arg(long)]
    samples: Option<u32>,
    /// hieramas: the stage-1 selector checkpoint (`train stage1`).
    #[arg(long)]
    stage1: Option<PathBuf>,
    /// hieramas: the stage-2 classifier (`train stage2`: `classifier.safetensors`).
    #[arg(long)]
    stage2: Option<PathBuf>,
    /// hieramas: candidate DAGs scored per query (default: the benchmark's official count).
    #[arg(long)]
    candidates: Option<usize>,
    /// hieramas: run the candidate with the best `score − λ·expected cost (USD)` instead of the
    /// top score (the official rule).
    #[arg(long)]
    cost_lambda: Option<f64>,
    /// hieramas: what embeds tasks for the selector and the classifier (`local` or a --pool
    /// embeddings model; the one they were trained with).
    #[arg(long, default_value = "local")]
    embedder: String,
    /// hieramas: where embeddings are cached (default: <out-dir>/embeddings).
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// hieramas: run an ablation of method §7 instead — `fixed-llm` (every position is the
    /// decision model, the classifier picks the topology) or `random-graph` (learned model
    /// choice on one random DAG per query; --stage2 not needed).
    #[arg(long, value_enum)]
    ablation: Option<crate::stage2::Ablation>,
    /// hieramas: proposers per supernode (default: the role set's).
    #[arg(long)]
    width: Option<usize>,
}

pub async fn run(a: EvalArgs) -> Result<()> {
    let benchmark: Benchmark = a.benchmark.parse()?;
    let method: Method = a.method.parse()?;
    let mut prompts = match &a.prompts {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Prompts::from_toml(&text, &p.display().to_string())?
        }
        None => Prompts::builtin()?,
    };
    if let Some(k) = a.samples {
        if k == 0 {
            bail!("--samples must be at least 1");
        }
        prompts.sc.samples = k;
    }
    let data = DataDir::resolve(a.data_dir.as_deref())?;
    let selection = Selection {
        benchmark,
        split: a.split.clone(),
        seed: a.seed,
        limit: a.limit,
        keep_flagged: a.keep_flagged,
    };
    let queries = hieramas_bench::query::load(&data, &selection)?;
    if queries.is_empty() {
        bail!("{benchmark}/{} selects no queries", a.split);
    }

    let budget = match &a.budget_usd {
        Some(b) => Some(Budget::new(
            Usd::parse(b).with_context(|| format!("--budget-usd {b}"))?,
        )),
        None => None,
    };
    let mut prompt = prompts.for_method(benchmark, method);
    if let Some(n) = a.mas.max_tokens {
        prompt.max_tokens = n;
    } else if matches!(
        method,
        Method::Mas | Method::Moa | Method::Debate | Method::Hieramas
    ) {
        prompt.max_tokens = a.mas.max_tokens();
    }
    let (solver, model_id, fingerprint, mas_description): (
        Solver,
        String,
        String,
        serde_json::Value,
    ) = if method == Method::Mas {
        let pool = match &a.pool {
            Some(p) => crate::mas::load_pool(p)?,
            None => local_pool()?,
        };
        let pool_name = pool.meta.name.clone();
        let mut models = crate::mas::Models::new(pool, budget.clone());
        simulate_if_needed(&mut models, &data, benchmark, &queries, a.seed)?;
        let mas = crate::mas::build(benchmark.name(), &a.mas, &mut models, a.seed)?;
        let description = mas.description.clone();
        let setup = MasSetup {
            topology: mas.topology,
            roles: mas.roles,
            members: mas.members,
            decision: mas.decision,
            sampling: Sampling {
                temperature: Some(0.0),
                max_tokens: a.mas.max_tokens(),
                seed: Some(a.seed),
            },
            faithful: a.mas.faithful,
            consensus: mas.consensus,
        };
        (
            Solver::Mas(Arc::new(setup)),
            format!("mas:{pool_name}:{}", a.mas.topology),
            String::new(),
            description,
        )
    } else if method == Method::Hieramas {
        use crate::stage2::Ablation;
        let needs_classifier = a.ablation != Some(Ablation::RandomGraph);
        let Some(stage1) = &a.stage1 else {
            bail!("--method hieramas needs --stage1 (from `hieramas train stage1`)");
        };
        if needs_classifier && a.stage2.is_none() {
            bail!(
                "--method hieramas needs --stage2 (from `hieramas train stage2`; only --ablation random-graph does without)"
            );
        }
        let embeddings = a
            .embeddings
            .clone()
            .unwrap_or_else(|| a.out_dir.join("embeddings"));
        let sys = crate::train::SystemArgs {
            benchmark: a.benchmark.clone(),
            pool: a
                .pool
                .clone()
                .unwrap_or_else(|| PathBuf::from("pools/local.toml")),
            decision: a.mas.decision.clone(),
            max_tokens: a.mas.max_tokens(),
            seed: a.seed,
            embedder: a.embedder.clone(),
            metadata: "heuristic".into(),
            embedder_pool: None,
            embeddings: Some(embeddings.clone()),
            data_dir: a.data_dir.clone(),
            quiet: false,
            budget_usd: None,
        };
        let known: Vec<&hieramas_bench::Query> = queries.iter().collect();
        let system = crate::stage2::System::build(
            &sys,
            &data,
            &known,
            stage1,
            a.width,
            embeddings,
            budget.clone(),
        )
        .await?;
        let classifier = match &a.stage2 {
            Some(path) if needs_classifier => Some((path, crate::stage2::load_classifier(path)?)),
            _ => None,
        };
        if let Some((stage2, classifier)) = &classifier {
            let c = &classifier.classifier.config;
            if c.task_dim != system.stage.dim || c.roles != system.stage.names {
                bail!(
                    "--stage2 {}: made for roles {:?} and {}-d task embeddings, not this system's {:?} and {}-d",
                    stage2.display(),
                    c.roles,
                    c.task_dim,
                    system.stage.names,
                    system.stage.dim
                );
            }
            if classifier.embedder != system.stage.embedder.id() {
                bail!(
                    "--stage2 {} read {} embeddings; --embedder gives {}",
                    stage2.display(),
                    classifier.embedder,
                    system.stage.embedder.id()
                );
            }
            if classifier.simulated && !system.stage.simulated {
                eprintln!(
                    "warning: --stage2 {} was trained on SIMULATED data; its choices for real models are untested",
                    stage2.display()
                );
            }
        }
        let settings = hieramas_gnn::config::Stage2Config::builtin(benchmark.name())?;
        let rule = match a.cost_lambda {
            Some(lambda) => hieramas_gnn::select::Rule::CostAware { lambda },
            None => hieramas_gnn::select::Rule::Top1,
        };
        let mut candidates = a.candidates.unwrap_or(settings.candidates).max(1);
        // A small space (MATH: 9 DAGs over 3 roles) cannot give more: score all it has.
        let probe = hieramas_topology::generate::pool(
            &system.stage.names,
            candidates,
            settings.candidate_density[0],
            settings.candidate_density[1],
            a.seed,
        )?;
        if probe.graphs.len() < candidates {
            eprintln!(
                "{} roles with density {:?} give {} distinct DAGs, not {candidates}: scoring all of them",
                system.stage.names.len(),
                settings.candidate_density,
                probe.graphs.len()
            );
            candidates = probe.graphs.len();
        }
        let stage = &system.stage;
        let description = serde_json::json!({
            "stage1": stage1,
            "stage1_sha256": crate::stage2::checkpoint_sha(stage1)?,
            "stage2": classifier.as_ref().map(|c| c.0),
            "stage2_sha256": classifier.as_ref().map(|c| crate::stage2::checkpoint_sha(c.0)).transpose()?,
            "ablation": a.ablation,
            "candidates": candidates,
            "width": stage.width,
            "density": settings.candidate_density,
            "rule": rule,
            "rotation": settings.rotation,
            "skip_roles": settings.skip_roles,
            "decision": stage.decision_id,
            "pool": stage.models.specs(stage.ids().iter().chain([&stage.decision_id]))?,
        });
        let label = match a.ablation {
            Some(x) => format!("hieramas-{}", x.name()),
            None => "hieramas".to_string(),
        };
        let name = if stage.simulated && !stage.pool_name.contains("SIMULATED") {
            format!("SIMULATED-{label}:{}", stage.pool_name)
        } else {
            format!("{label}:{}", stage.pool_name)
        };
        let planner = crate::stage2::Hieramas {
            system,
            classifier: classifier.map(|c| c.1),
            ablation: a.ablation,
            candidates,
            density: settings.candidate_density,
            rule,
            seed: a.seed,
            rotation: settings.rotation,
            skip_roles: settings.skip_roles,
        };
        (
            Solver::Planned(Arc::new(planner)),
            name,
            String::new(),
            description,
        )
    } else if let Some(ensemble) = prompts.ensemble(method) {
        let pool = match &a.pool {
            Some(p) => crate::mas::load_pool(p)?,
            None => local_pool()?,
        };
        let pool_name = pool.meta.name.clone();
        let mut models = crate::mas::Models::new(pool, budget.clone());
        simulate_if_needed(&mut models, &data, benchmark, &queries, a.seed)?;
        let ids = models.ids();
        let aggregator_id = a.mas.decision.clone().unwrap_or_else(|| ids[0].clone());
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
        (
            Solver::Ensemble(Arc::new(setup)),
            format!("{}:{pool_name}", method.name()),
            String::new(),
            description,
        )
    } else {
        let (spec, model) = connect(&a.model, a.pool.as_deref(), |models| {
            simulate_if_needed(models, &data, benchmark, &queries, a.seed)
        })?;
        let model: Arc<dyn ChatModel> = match &budget {
            Some(b) => Arc::new(Budgeted::new(model, b.clone())),
            None => model,
        };
        let fingerprint = format!(
            "{}:{}:{}/{}",
            spec.provider.as_str(),
            spec.model,
            spec.price.input_pico_per_token,
            spec.price.output_pico_per_token
        );
        (
            Solver::Model(model),
            if spec.provider == Provider::Sim {
                format!("SIMULATED-{}", a.model)
            } else {
                a.model.clone()
            },
            fingerprint,
            serde_json::Value::Null,
        )
    };
    let cfg = EvalConfig {
        selection,
        method,
        model: model_id,
        model_fingerprint: fingerprint,
        prompt,
        samples: prompts.samples(method),
        concurrency: a.concurrency.max(1),
        mas: mas_description,
    };
    let path = a
        .out
        .clone()
        .unwrap_or_else(|| hieramas_bench::results_path(&a.out_dir, &cfg));
    let hash = cfg.hash();
    // What produced the records (the system, its topology and models included), for reports.
    let config_path = path.with_extension("config.json");
    if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut config_json = serde_json::to_value(&cfg)?;
    config_json["config_hash"] = serde_json::Value::String(hash.clone());
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(&config_json)? + "\n",
    )
    .with_context(|| format!("writing {}", config_path.display()))?;
    let wanted: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let logged = hieramas_bench::logged_ids(&cfg, &path)?;
    let done = logged
        .iter()
        .filter(|id| wanted.contains(id.as_str()))
        .count();
    eprintln!(
        "{benchmark}/{} · {} · {} · {} queries ({done} already in {}) · config {hash}",
        a.split,
        method.name(),
        cfg.model,
        queries.len(),
        path.display()
    );

    let checker = Checker::new(&data, benchmark)
        .await
        .context("preparing the grader")?;
    let bar = indicatif::ProgressBar::new(queries.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(done as u64);
    let (mut correct, mut n) = (0, 0);
    let (outcome, records) = hieramas_bench::resume(&cfg, solver, &queries, &checker, &path, |r| {
        n += 1;
        correct += usize::from(r.correct);
        bar.set_message(accuracy_msg(correct, n));
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();

    let refs: Vec<&hieramas_bench::Record> = records.iter().collect();
    let summary = Summary::of(&refs);
    println!("{}", summary.table());
    let summary_path = path.with_extension("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("writing {}", summary_path.display()))?;
    eprintln!(
        "{} new, {} resumed; records: {}; summary: {}; configuration: {}",
        outcome.written,
        outcome.resumed,
        path.display(),
        summary_path.display(),
        config_path.display()
    );
    if outcome.budget_exhausted {
        eprintln!(
            "stopped: the budget of ${} is spent",
            a.budget_usd.unwrap_or_default()
        );
    }
    if let Some((id, e)) = outcome.failed.first() {
        bail!(
            "{} queries failed (first: {id}: {e}); rerun the same command to retry them",
            outcome.failed.len()
        );
    }
    if records.len() < queries.len() && !outcome.budget_exhausted {
        bail!(
            "{} of {} queries have no record",
            queries.len() - records.len(),
            queries.len()
        );
    }
    Ok(())
}

/// Gives a pool's SIMULATED models the answers of `queries` (and says so), if it has any.
fn simulate_if_needed(
    models: &mut crate::mas::Models,
    data: &DataDir,
    benchmark: Benchmark,
    queries: &[hieramas_bench::query::Query],
    seed: u64,
) -> Result<()> {
    if models.uses_sim() {
        eprintln!("{}", crate::sim::BANNER);
        let all: Vec<&hieramas_bench::query::Query> = queries.iter().collect();
        models.simulate(
            crate::sim::book(data, benchmark, &all)?,
            hieramas_sim::Settings {
                seed,
                ..hieramas_sim::Settings::default()
            },
        );
    }
    Ok(())
}

fn accuracy_msg(correct: usize, n: usize) -> String {
    if n == 0 {
        "this run: accuracy -".into()
    } else {
        format!(
            "this run: accuracy {:.1}%",
            100.0 * correct as f64 / n as f64
        )
    }
}

/// The model `id`: in-process when it is a local model, SIMULATED when the pool says so (given
/// the answers by `simulate`), else a client from the pool file.
fn connect(
    id: &str,
    pool: Option<&std::path::Path>,
    simulate: impl FnOnce(&mut crate::mas::Models) -> Result<()>,
) -> Result<(ModelSpec, Arc<dyn ChatModel>)> {
    if let Some(spec) = local_pool()?.get(id).cloned() {
        let m = LocalModels::from_env()?
            .chat(&spec, EngineOptions::default())
            .with_context(|| format!("loading {id}"))?;
        return Ok((spec, Arc::new(m)));
    }
    let pool = match pool {
        Some(p) => crate::mas::load_pool(p)?,
        None => Pool::paper(),
    };
    let spec = pool.require(id)?.clone();
    if spec.provider == Provider::Sim {
        let mut models = crate::mas::Models::new(pool, None);
        simulate(&mut models)?;
        let m = models.get(id)?;
        return Ok((spec, m));
    }
    if spec.provider == Provider::Local {
        bail!("{id} is a local model but not in pools/local.toml");
    }
    let m = spec.connect(&Env::process(), &hieramas_llm::http_client()?)?;
    Ok((spec, m))
}
