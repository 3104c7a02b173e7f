//! The flags of `train`, `experiment` and `run`, and how each set becomes the library's config
//! struct (`hieramas::stage1::Stage1Config`, …): parsing and defaults only, no logic.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hieramas::Benchmark;
use hieramas::official::Official;
use hieramas::records::CreditMode;
use hieramas::stage1::{Stage1Config, SystemConfig};
use hieramas::stage2::{DataConfig, FitConfig};
use hieramas::system::MasConfig;

/// A benchmark name, with the names the error lists.
pub fn benchmark(name: &str) -> Result<Benchmark> {
    Ok(name.parse::<Benchmark>()?)
}

/// A budget in USD (`5`, `0.50`, `$1.25`).
pub fn budget(usd: Option<&str>) -> Result<Option<hieramas::llm::Usd>> {
    usd.map(|b| hieramas::llm::Usd::parse(b).with_context(|| format!("--budget-usd {b}")))
        .transpose()
}

/// The system a stage trains or runs: benchmark, pool, decision model, selector inputs.
#[derive(clap::Args, Clone)]
pub struct SystemArgs {
    /// math, mmlu or humaneval-plus.
    #[arg(long)]
    pub benchmark: String,
    /// The pool whose models the selector chooses among (`pools/local.toml`, `pools/paper.toml`,
    /// `pools/sim-paper.toml` (SIMULATED) or a file).
    #[arg(long, default_value = "pools/local.toml")]
    pub pool: PathBuf,
    /// The decision node's model (default: the pool's first; the paper uses gpt-5-mini).
    #[arg(long)]
    pub decision: Option<String>,
    /// Most tokens per call.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What embeds the selector's texts: `local` (all-MiniLM-L6-v2, in-process) or the id of an
    /// OpenAI-compatible `/v1/embeddings` model in --embedder-pool — e.g. gte-large-en-v1.5, the
    /// paper's embedder, served by text-embeddings-inference or vLLM (`pools/gte-large.toml`).
    #[arg(long, default_value = "local")]
    pub embedder: String,
    /// Task metadata for the selector: `heuristic` (keywords) or the id of a --pool model asked
    /// for it as JSON (the paper: gpt-4o-mini), cached on disk per (model, task) under
    /// <embeddings>/../metadata; unusable replies fall back to the heuristic.
    #[arg(long, default_value = "heuristic")]
    pub metadata: String,
    /// The pool file that holds --embedder (default: --pool).
    #[arg(long)]
    pub embedder_pool: Option<PathBuf>,
    /// Where embeddings are cached (default: <out>/embeddings).
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// The benchmark files (default: $HIERAMAS_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bar and no line per iteration.
    #[arg(long)]
    pub quiet: bool,
    /// Stop once this much has been spent on model calls (USD, e.g. 5.00): calls beyond it
    /// fail, and so does the command (a rerun resumes where it stopped).
    #[arg(long)]
    pub budget_usd: Option<String>,
    /// Keep the budget's ledger (every attempt's reservation and charge) in this file, so that
    /// a rerun after a kill counts what was spent; default with --budget-usd:
    /// <out>/budget.jsonl. `hieramas budget FILE` shows it per model.
    #[arg(long)]
    pub budget_ledger: Option<PathBuf>,
    /// The role set: a TOML file (see crates/hieramas-topology/roles/) or a built-in name
    /// (math, mmlu, humaneval-plus, general); default: the benchmark's.
    #[arg(long)]
    pub roles: Option<PathBuf>,
    /// Record every model call to, and replay it from, this SQLite file (a hit costs $0).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub official: OfficialArgs,
}

/// The official behaviours to restore (method §10; `hieramas::official`).
#[derive(clap::Args, Clone, Default)]
pub struct OfficialArgs {
    /// Restore every official behaviour that we fix (= --official all): config-order
    /// execution, whole-text consensus, the official loss and clamp, decision-only label cost,
    /// W per stage, the zero-metadata skip decision and the joint task+role selector input.
    #[arg(long)]
    pub faithful: bool,
    /// Restore some official behaviours, comma-separated: config-order, whole-text-consensus,
    /// loss, decision-cost, width, checkpoints, skip-metadata, joint-input (or all).
    #[arg(long, value_name = "SWITCHES")]
    pub official: Option<String>,
}

impl OfficialArgs {
    pub fn official(&self) -> Result<Official> {
        let listed: Official = self.official.as_deref().unwrap_or("").parse()?;
        Ok(if self.faithful {
            listed.union(Official::all())
        } else {
            listed
        })
    }
}

impl SystemArgs {
    pub fn config(&self) -> Result<SystemConfig> {
        Ok(SystemConfig {
            benchmark: benchmark(&self.benchmark)?,
            pool: self.pool.clone(),
            decision: self.decision.clone(),
            max_tokens: self.max_tokens,
            seed: self.seed,
            embedder: self.embedder.clone(),
            metadata: self.metadata.clone(),
            embedder_pool: self.embedder_pool.clone(),
            embeddings: self.embeddings.clone(),
            data_dir: self.data_dir.clone(),
            budget: budget(self.budget_usd.as_deref())?,
            budget_ledger: self.budget_ledger.clone(),
            roles: self.roles.clone(),
            cache: self.cache.clone(),
            official: self.official.official()?,
        })
    }
}

#[derive(clap::Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    /// Multi-level credit (`multi`, default) or the system reward alone (`system`).
    #[arg(long, default_value = "multi")]
    pub credit: CreditMode,
    /// Instead of the official settings (`configs/stage1.toml` of hieramas-reward):
    #[arg(long)]
    pub iterations: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Proposers per supernode.
    #[arg(long)]
    pub width: Option<usize>,
    /// Learning rate, start and end (instead of the official `lr_start` -> `lr_end`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Entropy bonus coefficient (instead of the official 1.0).
    #[arg(long)]
    pub entropy_coef: Option<f64>,
    /// Validate every N iterations (and after the last).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Train on the first N queries of the train split only (in its seeded order).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validate on the first N queries of the valid split every `eval_every` iterations and at
    /// the end (0: never; the official code uses the whole split).
    #[arg(long, default_value_t = 50)]
    pub val_limit: usize,
    /// Where the curve and checkpoints go (default results/stage1/<benchmark>-<pool>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start over in --out instead of resuming the run saved there.
    #[arg(long)]
    pub fresh: bool,
    /// Stop after this many iterations as if interrupted (for tests of resuming).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Mask the `skip` option (official: the selector may skip proposers and supernodes).
    #[arg(long)]
    pub no_skip: bool,
}

impl TrainArgs {
    pub fn config(&self) -> Result<Stage1Config> {
        Ok(Stage1Config {
            system: self.system.config()?,
            credit: self.credit,
            iterations: self.iterations,
            batch_size: self.batch_size,
            width: self.width,
            lr: self.lr,
            entropy_coef: self.entropy_coef,
            eval_every: self.eval_every,
            train_limit: self.train_limit,
            val_limit: self.val_limit,
            out: self.out.clone(),
            fresh: self.fresh,
            stop_after: self.stop_after,
            no_skip: self.no_skip,
        })
    }
}

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    /// The stage-1 selector checkpoint (`hieramas train stage1`: `selector.safetensors` or
    /// `best.safetensors`).
    #[arg(long)]
    pub stage1: PathBuf,
    /// The split whose tasks are run (`train` for the classifier's data; another split gives a
    /// held-out set).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Only the first N tasks of the split (in its seeded order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Distinct random DAGs per task (official: 5).
    #[arg(long)]
    pub graphs: Option<usize>,
    /// Proposers per supernode (default: the role set's).
    #[arg(long)]
    pub width: Option<usize>,
    /// Tasks in flight at once (official: 6 for MATH and HumanEval, 8 for MMLU).
    #[arg(long, default_value_t = 6)]
    pub concurrency: usize,
    /// The dataset directory (default results/stage2/<benchmark>-<pool>/data-<split>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start over in --out.
    #[arg(long)]
    pub fresh: bool,
}

impl DataArgs {
    pub fn config(&self) -> Result<DataConfig> {
        Ok(DataConfig {
            system: self.system.config()?,
            stage1: self.stage1.clone(),
            split: self.split.clone(),
            limit: self.limit,
            graphs: self.graphs,
            width: self.width,
            concurrency: self.concurrency,
            out: self.out.clone(),
            fresh: self.fresh,
        })
    }
}

#[derive(clap::Args, Clone)]
pub struct FitArgs {
    /// A dataset of `train stage2-data`.
    #[arg(long)]
    pub data: PathBuf,
    /// A held-out dataset (another split, same settings) to report on.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Where the classifier and its report go (default: <data>/../classifier).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of the official settings (`configs/stage2.toml` of hieramas-gnn):
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Aggregate over predecessors (execution direction) instead of the official successors.
    #[arg(long)]
    pub predecessors: bool,
    #[arg(long)]
    pub quiet: bool,
}

impl FitArgs {
    pub fn config(&self) -> FitConfig {
        FitConfig {
            data: self.data.clone(),
            test: self.test.clone(),
            out: self.out.clone(),
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            seed: self.seed,
            predecessors: self.predecessors,
        }
    }
}

#[derive(clap::Args)]
pub struct CreditArgs {
    /// Seeds per estimator.
    #[arg(long, default_value_t = 10)]
    seeds: usize,
    /// Iterations per run (the official 12 are too few to move the selector much; see the report).
    #[arg(long, default_value_t = 48)]
    iterations: usize,
    /// Learning rate (default: the official 2e-3 of MATH).
    #[arg(long)]
    lr: Option<f64>,
    /// Entropy bonus coefficient (default: the official 1.0).
    #[arg(long)]
    entropy_coef: Option<f64>,
    /// Queries per iteration (default: the official 6 of MATH).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Train on the first N MATH train queries (shared by all runs, so embeddings are computed once).
    #[arg(long, default_value_t = 200)]
    train_limit: usize,
    /// Validation queries (the first N of MATH valid).
    #[arg(long, default_value_t = 100)]
    val_limit: usize,
    /// A SIMULATED pool with per-role fitness.
    #[arg(long, default_value = "pools/sim-credit.toml")]
    pool: PathBuf,
    #[arg(long, default_value = "results/credit-experiment")]
    out: PathBuf,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start every run over.
    #[arg(long)]
    fresh: bool,
    /// Only these estimators, comma-separated (system-official, multi-official, system-fixed,
    /// multi-fixed, aware-system-fixed, aware-multi-fixed); default: all.
    #[arg(long, value_delimiter = ',')]
    arms: Vec<String>,
    /// Let the selector choose `skip` as the official stage 1 does (default: masked, so the
    /// experiment measures the choice of models; a skipped supernode earns node reward 0, more
    /// than a failure).
    #[arg(long)]
    skip: bool,
}

impl CreditArgs {
    pub fn config(&self) -> hieramas::credit::CreditConfig {
        hieramas::credit::CreditConfig {
            seeds: self.seeds,
            iterations: self.iterations,
            lr: self.lr,
            entropy_coef: self.entropy_coef,
            batch_size: self.batch_size,
            train_limit: self.train_limit,
            val_limit: self.val_limit,
            pool: self.pool.clone(),
            out: self.out.clone(),
            data_dir: self.data_dir.clone(),
            fresh: self.fresh,
            arms: self.arms.clone(),
            skip: self.skip,
        }
    }
}

#[derive(clap::Args)]
pub struct FitSimArgs {
    /// math, mmlu or humaneval-plus.
    #[arg(long)]
    benchmark: String,
    /// A SIMULATED pool.
    #[arg(long, default_value = "pools/sim-paper.toml")]
    pool: PathBuf,
    /// The reference system's decision model.
    #[arg(long, default_value = "gpt-5-mini")]
    decision: String,
    #[arg(long, default_value = "test")]
    split: String,
    /// Queries of the split (and of test_unseen).
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// Runs per query (default: 4 for HumanEval+, whose test split is small; else 1).
    #[arg(long)]
    repeats: Option<usize>,
    /// The accuracy to fit (%; default: the paper's, as fit.toml records it).
    #[arg(long)]
    target: Option<f64>,
    #[arg(long, default_value = "results/fit-sim")]
    pub out: PathBuf,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl FitSimArgs {
    pub fn config(&self) -> Result<hieramas::simfit::SimFitConfig> {
        let mut c = hieramas::simfit::SimFitConfig::new(benchmark(&self.benchmark)?)?;
        c.pool = self.pool.clone();
        c.decision = self.decision.clone();
        c.split = self.split.clone();
        c.limit = Some(self.limit);
        if let Some(r) = self.repeats {
            c.repeats = r;
        }
        if let Some(t) = self.target {
            c.target = t;
        }
        c.data_dir = self.data_dir.clone();
        Ok(c)
    }
}

#[derive(clap::Args, Clone)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub system: SystemArgs,
    /// The stage-1 selector checkpoint.
    #[arg(long)]
    pub stage1: PathBuf,
    /// Train tasks for the classifier's data (and the edge-wise policy's budget).
    #[arg(long, default_value_t = 200)]
    pub train_limit: usize,
    /// Held-out tasks.
    #[arg(long, default_value_t = 100)]
    pub test_limit: usize,
    #[arg(long, default_value = "test")]
    pub test_split: String,
    /// Tasks (data generation) or runs (edge-wise) in flight at once.
    #[arg(long, default_value_t = 6)]
    pub concurrency: usize,
    /// Adam learning rate of the edge logits (GPTSwarm: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub edge_lr: f64,
    #[arg(long, default_value = "results/experiments/topology")]
    pub out: PathBuf,
    /// Start every step over.
    #[arg(long)]
    pub fresh: bool,
}

impl TopologyArgs {
    pub fn config(&self) -> Result<hieramas::topology_exp::TopologyConfig> {
        Ok(hieramas::topology_exp::TopologyConfig {
            system: self.system.config()?,
            stage1: self.stage1.clone(),
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            test_split: self.test_split.clone(),
            concurrency: self.concurrency,
            edge_lr: self.edge_lr,
            out: self.out.clone(),
            fresh: self.fresh,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}

/// The flags that define a multi-agent system, shared by `hieramas run` and `hieramas eval
/// --method mas`.
#[derive(clap::Args)]
pub struct MasArgs {
    /// full, chain, star, empty, random (seeded, density 0.3-0.7), or a .json/.dot file.
    #[arg(long, default_value = "full")]
    pub topology: String,
    /// round-robin (pool models in turn over every position), random (seeded) or fixed:MODEL.
    #[arg(long, default_value = "round-robin")]
    pub assign: String,
    /// The decision node's model (default: the pool's first).
    #[arg(long)]
    pub decision: Option<String>,
    #[command(flatten)]
    pub official: OfficialArgs,
    /// Most tokens per call (mas, moa, debate: default 256; the baselines: default from the
    /// prompts file).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Turn off the consensus override (method §3.3: when every supernode's extracted
    /// prediction agrees, it is the answer, whatever the decision node says).
    #[arg(long)]
    pub no_consensus: bool,
    /// The role set: a TOML file (see crates/hieramas-topology/roles/) or a built-in name
    /// (math, mmlu, humaneval-plus, general); default: the benchmark's.
    #[arg(long)]
    pub roles: Option<String>,
}

impl MasArgs {
    pub fn config(&self) -> Result<MasConfig> {
        Ok(MasConfig {
            topology: self.topology.clone(),
            assign: self.assign.clone(),
            decision: self.decision.clone(),
            official: self.official.official()?,
            max_tokens: self.max_tokens,
            consensus: !self.no_consensus,
            roles: self.roles.clone(),
            width: None,
        })
    }
}
