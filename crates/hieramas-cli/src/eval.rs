//! `hieramas eval`: flags → [`hieramas::eval::EvalOptions`], a progress bar, the summary
//! table. The evaluation itself (resumable records, the methods) is `hieramas::eval`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use hieramas::eval::EvalOptions;
use hieramas::records::Ablation;

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
    /// Keep the budget's ledger in this file (what a killed run spent counts when it resumes);
    /// default with --budget-usd: next to --out, else <out-dir>/budget.jsonl.
    #[arg(long)]
    budget_ledger: Option<PathBuf>,
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
    mas: crate::args::MasArgs,
    /// Which queries: the split's seed (the committed splits use 0).
    #[arg(long, default_value_t = hieramas_tasks::splits::DEFAULT_SEED)]
    split_seed: u64,
    /// The system's own randomness (a random topology or assignment, a simulated pool); the
    /// test queries stay those of --split-seed.
    #[arg(long, default_value_t = 0)]
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
    #[arg(long)]
    ablation: Option<Ablation>,
    /// hieramas and mas: proposers per supernode (default: the role set's); mas with 1 is one
    /// call per role, no synthesis (the paper's in-framework baselines).
    #[arg(long)]
    width: Option<usize>,
    /// Record every model call to, and replay it from, this SQLite file (a hit costs $0; the
    /// summary counts hits and what they saved).
    #[arg(long)]
    cache: Option<PathBuf>,
}

impl EvalArgs {
    fn options(&self) -> Result<EvalOptions> {
        Ok(EvalOptions {
            benchmark: crate::args::benchmark(&self.benchmark)?,
            split: self.split.clone(),
            method: self.method.parse()?,
            model: self.model.clone(),
            limit: self.limit,
            concurrency: self.concurrency,
            budget: crate::args::budget(self.budget_usd.as_deref())?,
            budget_ledger: self.budget_ledger.clone(),
            out: self.out.clone(),
            out_dir: self.out_dir.clone(),
            data_dir: self.data_dir.clone(),
            pool: self.pool.clone(),
            mas: hieramas::system::MasConfig {
                width: self.width,
                ..self.mas.config()?
            },
            split_seed: self.split_seed,
            seed: self.seed,
            keep_flagged: self.keep_flagged,
            prompts: self.prompts.clone(),
            samples: self.samples,
            stage1: self.stage1.clone(),
            stage2: self.stage2.clone(),
            candidates: self.candidates,
            cost_lambda: self.cost_lambda,
            embedder: self.embedder.clone(),
            embeddings: self.embeddings.clone(),
            ablation: self.ablation,
            width: self.width,
            cache: self.cache.clone(),
        })
    }
}

pub async fn run(a: EvalArgs) -> Result<()> {
    let options = a.options()?;
    let mut bar = crate::bar::Bar::new(false);
    let out = hieramas::eval::evaluate(&options, &mut bar).await?;
    drop(bar);
    println!("{}", out.summary.table());
    eprintln!(
        "{} new, {} resumed; records: {}; summary: {}; configuration: {}",
        out.run.written,
        out.run.resumed,
        out.records_path.display(),
        out.summary_path.display(),
        out.config_path.display()
    );
    if out.run.budget_exhausted {
        eprintln!(
            "stopped: the budget of ${} is spent",
            a.budget_usd.unwrap_or_default()
        );
    }
    if let Some((id, e)) = out.run.failed.first() {
        bail!(
            "{} queries failed (first: {id}: {e}); rerun the same command to retry them",
            out.run.failed.len()
        );
    }
    if out.records.len() < out.queries && !out.run.budget_exhausted {
        bail!(
            "{} of {} queries have no record",
            out.queries - out.records.len(),
            out.queries
        );
    }
    Ok(())
}
