//! Stage 1: trains the LLM selector with multi-level reward attribution
//! (method §5) on a benchmark's train split, over real multi-agent runs.
//!
//! Each iteration takes `batch_size` training queries; for each, a random DAG of the stage-1
//! density range, the selector's choice at every position of every supernode (options: the
//! pool's models, then `skip`), one run of the system, every supernode's own output and the final
//! answer graded by the deterministic graders, each call's own cost — then the credit, the
//! REINFORCE loss and one clipped Adam step. A learning-curve line per iteration goes to
//! `<out>/curve.jsonl` ([`CurveRow`]); checkpoints (verified safetensors) to `<out>/`. Every `eval_every`
//! iterations and at the end, the selector is validated (method §5.5): argmax choices over the
//! full graph on the first `val_limit` queries of the valid split; `best.safetensors` keeps the
//! best validation accuracy, `validation.json` the last validation ([`Validation`]) with the policy per role.
//! After every iteration the weights, the optimiser's moments, the data order and the random
//! state are saved, so a rerun of the same command after a crash continues exactly where it
//! stopped (`fresh` starts over).
//!
//! With a SIMULATED pool (`pools/sim-paper.toml`, `pools/sim-credit.toml`) every note, file and
//! record says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use hieramas_bench::Checker;
use hieramas_bench::query::Query;
use hieramas_llm::{ChatModel, Embedder, Price};
use hieramas_local::pool::LocalModels;
use hieramas_reward::config::Stage1Config as Settings;
use hieramas_reward::reward::{NodeResult, credit, system_only};
use hieramas_reward::schedule::{learning_rate, temperature};
use hieramas_reward::selector::{
    self, Masks, Selector, SelectorConfig, SelectorInput, argmax, mask_logits,
};
use hieramas_reward::texts::{EmbeddingCache, MetadataCache, TaskMeta, Texts};
use hieramas_reward::train::{NodeTerm, Trainer, Variant, batch_loss, draw};
use hieramas_supernode::{Members, Sampling, Slot};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Plan, run_query};
use hieramas_topology::{Topology, generate, shapes};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, bail};
use crate::official::Official;
use crate::progress::Progress;
use crate::records::{CreditMode, CurveRow, Loss, RolePolicy, Validation};

/// The system a stage trains or runs: benchmark, pool, decision model, selector inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemConfig {
    pub benchmark: Benchmark,
    /// The pool whose models the selector chooses among: a pool file, or a built-in pool by its
    /// conventional path (`pools/local.toml`, `pools/paper.toml`, `pools/sim-paper.toml`,
    /// `pools/sim-credit.toml`; the last two SIMULATED).
    pub pool: PathBuf,
    /// The decision node's model (default: the pool's first; the paper uses gpt-5-mini).
    pub decision: Option<String>,
    /// Most tokens per call.
    pub max_tokens: u32,
    pub seed: u64,
    /// What embeds the selector's texts: `local` (all-MiniLM-L6-v2, in-process) or the id of an
    /// OpenAI-compatible `/v1/embeddings` model in `embedder_pool` (e.g. gte-large-en-v1.5, the
    /// paper's embedder, `pools/gte-large.toml`).
    pub embedder: String,
    /// Task metadata for the selector: `heuristic` (keywords) or the id of a pool model asked
    /// for it as JSON (the paper: gpt-4o-mini), cached on disk per (model, task) under
    /// `<embeddings>/../metadata`; unusable replies fall back to the heuristic.
    pub metadata: String,
    /// The pool file that holds `embedder` (default: `pool`).
    pub embedder_pool: Option<PathBuf>,
    /// Where embeddings are cached (default: `<out>/embeddings`).
    pub embeddings: Option<PathBuf>,
    /// The benchmark files (default: `$HIERAMAS_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// Stop once this much has been spent on model calls: calls beyond it fail, and so does the
    /// step (a rerun resumes where it stopped).
    pub budget: Option<hieramas_llm::Usd>,
    /// The budget's ledger file: every attempt's reservation and charge, so that what a killed
    /// run spent counts when it resumes (`hieramas_llm::budget`). Default with a budget: the
    /// step's output folder's `budget.jsonl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ledger: Option<PathBuf>,
    /// The role set: a TOML file (as `crates/hieramas-topology/roles/*.toml`) or a built-in
    /// name (default: the benchmark's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<PathBuf>,
    /// Record every model call to, and replay it from, this SQLite response cache (a hit costs
    /// nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
    /// The official behaviours restored (method §10; default: none, the fixed pipeline).
    #[serde(skip_serializing_if = "Official::is_fixed")]
    pub official: Official,
}

impl SystemConfig {
    /// The budget this system's calls are charged to (none without `budget`), its ledger
    /// `budget_ledger`, else `default_ledger`.
    pub fn open_budget(
        &self,
        default_ledger: Option<&Path>,
    ) -> Result<Option<Arc<hieramas_llm::Budget>>> {
        crate::models::open_budget(
            self.budget,
            self.budget_ledger.as_deref().or(default_ledger),
        )
    }
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            benchmark: Benchmark::Math,
            pool: PathBuf::from("pools/local.toml"),
            decision: None,
            max_tokens: 256,
            seed: 0,
            embedder: "local".into(),
            metadata: "heuristic".into(),
            embedder_pool: None,
            embeddings: None,
            data_dir: None,
            budget: None,
            budget_ledger: None,
            roles: None,
            cache: None,
            official: Official::default(),
        }
    }
}

impl SystemConfig {
    /// The role set of this system: [`SystemConfig::roles`], else the benchmark's.
    pub fn role_set(&self) -> Result<RoleSet> {
        crate::system::role_set(self.roles.as_deref(), self.benchmark.name())
    }
}

/// Stage 1: the system, the estimator, and where the official settings
/// (`configs/stage1.toml` of hieramas-reward) are overridden. `Default` is the paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stage1Config {
    pub system: SystemConfig,
    /// Multi-level credit (default) or the system reward alone.
    pub credit: CreditMode,
    pub iterations: Option<usize>,
    pub batch_size: Option<usize>,
    /// Proposers per supernode.
    pub width: Option<usize>,
    /// Learning rate, start and end (instead of the official `lr_start` -> `lr_end`).
    pub lr: Option<f64>,
    /// Entropy bonus coefficient (instead of the official 1.0).
    pub entropy_coef: Option<f64>,
    /// Validate every N iterations (and after the last).
    pub eval_every: Option<usize>,
    /// Train on the first N queries of the train split only (in its seeded order).
    pub train_limit: Option<usize>,
    /// Validate on the first N queries of the valid split every `eval_every` iterations and at
    /// the end (0: never; the official code uses the whole split).
    pub val_limit: usize,
    /// Where the curve and checkpoints go (default `results/stage1/<benchmark>-<pool>`).
    pub out: Option<PathBuf>,
    /// Start over in `out` instead of resuming the run saved there.
    pub fresh: bool,
    /// Stop after this many iterations as if interrupted (for tests of resuming).
    pub stop_after: Option<usize>,
    /// Mask the `skip` option at every position. The official stage 1 lets the selector skip
    /// proposers and whole supernodes; a skipped supernode's node reward is 0, above a
    /// failure's −1, so multi-level credit learns to skip the supernodes that fail often. The
    /// credit experiment masks it to measure the choice of models alone.
    pub no_skip: bool,
}

impl Default for Stage1Config {
    fn default() -> Self {
        Stage1Config {
            system: SystemConfig::default(),
            credit: CreditMode::Multi,
            iterations: None,
            batch_size: None,
            width: None,
            lr: None,
            entropy_coef: None,
            eval_every: None,
            train_limit: None,
            val_limit: 50,
            out: None,
            fresh: false,
            stop_after: None,
            no_skip: false,
        }
    }
}

/// The budget ledger's file name in a step's output folder (when no other is given).
pub const BUDGET_LEDGER: &str = "budget.jsonl";

/// The file in a stage-1 output directory that says what it was trained with.
pub const TRAINED_WITH: &str = "trained-with.json";

/// `<out>/trained-with.json`: the configuration a stage-1 run was started with, and what it
/// resolved (the width, the decision model), for `hieramas export`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainedWith {
    pub config: Stage1Config,
    /// Proposers per supernode.
    pub width: usize,
    /// The decision node's model.
    pub decision: String,
    /// The pool's name.
    pub pool_name: String,
    /// Whether the pool has SIMULATED models.
    pub simulated: bool,
}

/// What `<out>/state.json` holds after each iteration.
#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeState {
    fingerprint: serde_json::Value,
    iterations_done: usize,
    cursor: usize,
    order: Vec<usize>,
    rng_word_pos: u128,
    #[serde(default)]
    best_val: Option<f64>,
    /// The weights and optimiser moments of this iteration (none in a state written before
    /// they were named here: `last.safetensors` and `last.adam.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<StateFiles>,
}

/// The files a resume loads, each with the sha256 of the bytes written. `state.json` is written
/// last and atomically, naming files of its own iteration: a kill at any moment leaves the
/// previous state and the files it names intact (the previous iteration's files are removed
/// only after the new state is on disk), so a half-written set is never loaded.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct StateFiles {
    weights: String,
    weights_sha256: String,
    adam: String,
    adam_sha256: String,
}

impl StateFiles {
    /// The files of a state written before they were named in it (not verifiable beyond the
    /// weights' sidecar).
    fn legacy(out: &std::path::Path) -> Result<StateFiles> {
        let adam = "last.adam.safetensors".to_string();
        Ok(StateFiles {
            weights: "last.safetensors".into(),
            weights_sha256: String::new(),
            adam_sha256: hieramas_checkpoint::file_sha256(&out.join(&adam))
                .map_err(selector::SelectorError::from)?,
            adam,
        })
    }
}

/// What a finished (or stopped) stage 1 leaves.
#[derive(Clone, Debug)]
pub struct Stage1Outcome {
    /// Where the curve and checkpoints are.
    pub out: PathBuf,
    /// The final selector (`<out>/selector.safetensors`; none when stopped early).
    pub selector: Option<PathBuf>,
    /// The last validation (none with `val_limit` 0).
    pub validation: Option<Validation>,
    /// The best validation accuracy (`<out>/best.safetensors`).
    pub best_accuracy: Option<f64>,
    /// Whether the pool is SIMULATED.
    pub simulated: bool,
}

/// A query's run, graded.
pub struct Graded {
    pub results: Vec<NodeResult>,
    pub final_ok: bool,
    pub decision_cost_pico: u64,
    pub total_cost_pico: u64,
}

/// Everything a query needs: the selector's inputs and the system around it.
pub struct Stage {
    pub benchmark: Benchmark,
    pub roles: RoleSet,
    pub names: Vec<String>,
    texts: Texts,
    pub cache: EmbeddingCache,
    pub embedder: Arc<dyn Embedder>,
    /// The model asked for task metadata and its cache (none: the keyword heuristic).
    metadata: Option<(Arc<dyn ChatModel>, MetadataCache)>,
    e_llm: Tensor,
    pub width: usize,
    skip: usize,
    pool_models: Vec<Arc<dyn ChatModel>>,
    pub decision: Arc<dyn ChatModel>,
    pub decision_id: String,
    pub checker: Checker,
    pub sampling: Sampling,
    pub masks: Masks,
    /// The selector's options: the pool's models, then `skip`.
    pub options: Vec<String>,
    pub simulated: bool,
    pub dev: Device,
    pub models: crate::models::Models,
    pub pool_name: String,
    /// Width of the embeddings.
    pub dim: usize,
    /// The official behaviours restored in every run of this system.
    pub official: Official,
    /// The role-aware selector's role inputs, one per role in `names` order (empty for the
    /// official joint input).
    pub role_embeddings: Vec<Tensor>,
}

impl Stage {
    /// The system of `sys` with `width` proposers per supernode; SIMULATED models (if the pool
    /// has them) answer the `known` queries. Embeddings are cached in `cache_dir`.
    pub async fn build(
        sys: &SystemConfig,
        data: &DataDir,
        known: &[&Query],
        cache_dir: PathBuf,
        width: usize,
        clamp: Option<f64>,
        budget: Option<Arc<hieramas_llm::Budget>>,
    ) -> Result<Stage> {
        let benchmark = sys.benchmark;
        let roles = sys.role_set()?;
        let names = roles.names();
        let checker = Checker::new(data, benchmark).await?;
        let pool = crate::models::load_pool(&sys.pool)?;
        let pool_name = pool.meta.name.clone();
        let budget = match budget {
            Some(b) => Some(b),
            None => sys.open_budget(None)?,
        };
        let mut models =
            crate::models::Models::new(pool, budget).with_cache(sys.cache.as_deref())?;
        let simulated = models.simulate_queries(data, benchmark, known, sys.seed)?;
        let ids = models.ids();
        if ids.is_empty() {
            bail!("{}: the pool has no selectable models", sys.pool.display());
        }
        let skip = ids.len();
        let pool_models: Vec<Arc<dyn ChatModel>> =
            ids.iter().map(|id| models.get(id)).collect::<Result<_>>()?;
        let decision_id = sys.decision.clone().unwrap_or_else(|| ids[0].clone());
        let decision = models.get(&decision_id)?;
        let texts = Texts::builtin()?;
        let embedder: Arc<dyn Embedder> = if sys.embedder == "local" {
            Arc::new(
                LocalModels::from_env()?
                    .embedder(Price::default())
                    .context("loading the all-MiniLM-L6-v2 embedder")?,
            )
        } else {
            let file = sys.embedder_pool.as_ref().unwrap_or(&sys.pool);
            crate::models::load_pool(file)?
                .require(&sys.embedder)
                .with_context(|| format!("embedder {} in {}", sys.embedder, file.display()))?
                .connect_embedder(&hieramas_llm::Env::process(), &hieramas_llm::http_client()?)
                .with_context(|| format!("embedder {}", sys.embedder))?
        };
        let metadata = match sys.metadata.as_str() {
            "heuristic" => None,
            id => Some((
                models
                    .get(id)
                    .with_context(|| format!("metadata model {id}"))?,
                MetadataCache {
                    dir: cache_dir.with_file_name("metadata"),
                },
            )),
        };
        let cache = EmbeddingCache { dir: cache_dir };
        let mut options: Vec<String> = ids.clone();
        options.push("skip".into());
        let profile_texts: Vec<String> = options.iter().map(|id| texts.profile(id)).collect();
        let profiles = cache.embed(embedder.as_ref(), &profile_texts).await?;
        let dim = profiles[0].len();
        let dev = Device::Cpu;
        let e_llm = Tensor::from_vec(profiles.concat(), (profiles.len(), dim), &dev)?;
        let role_embeddings = if sys.official.joint_input {
            Vec::new()
        } else {
            let role_texts: Vec<String> = names.iter().map(|r| texts.role(r)).collect();
            cache
                .embed(embedder.as_ref(), &role_texts)
                .await?
                .iter()
                .map(|e| Tensor::new(e.as_slice(), &dev))
                .collect::<candle_core::Result<Vec<_>>>()?
        };
        Ok(Stage {
            benchmark,
            roles,
            names,
            texts,
            cache,
            embedder,
            metadata,
            e_llm,
            width,
            skip,
            pool_models,
            decision,
            decision_id,
            checker,
            sampling: Sampling {
                temperature: Some(0.2),
                max_tokens: sys.max_tokens,
                seed: Some(sys.seed),
            },
            masks: Masks {
                excluded: Vec::new(), // the pool's `exclude`d models are not options at all
                skip,
                synth_may_skip: true, // skip learning is on in every official stage-1 script
                clamp,
            },
            options,
            simulated,
            dev,
            models,
            pool_name,
            dim,
            official: sys.official,
            role_embeddings,
        })
    }

    /// What the selector reads for a (task, role) pair in this system: the official joint text
    /// or the role-aware separate embeddings.
    pub fn selector_input(&self) -> SelectorInput {
        if self.official.joint_input {
            SelectorInput::Joint
        } else {
            SelectorInput::Separate
        }
    }

    /// The selector this system trains: the official sizes for its embeddings, its input, and
    /// for the role-aware input a learned embedding per role.
    pub fn selector_config(&self) -> SelectorConfig {
        let input = self.selector_input();
        let roles = match input {
            SelectorInput::Joint => 0,
            SelectorInput::Separate => self.names.len(),
        };
        SelectorConfig::official(self.dim)
            .with_input(input)
            .with_roles(roles)
    }

    /// Refuses a selector made for another input than this system gives it, or for another
    /// number of roles.
    pub fn check_selector(&self, sel: &SelectorConfig, path: &Path) -> Result<()> {
        if sel.roles != 0 && sel.roles != self.names.len() {
            bail!(
                "stage-1 checkpoint {} holds a selector for {} roles, but this system has {} ({})",
                path.display(),
                sel.roles,
                self.names.len(),
                self.names.join(", ")
            );
        }
        if sel.input != self.selector_input() {
            bail!(
                "stage-1 checkpoint {} holds a selector with the {} task/role input, but this system gives the {} one ({}): run with the setting it was trained with",
                path.display(),
                sel.input.name(),
                self.selector_input().name(),
                if self.official.joint_input {
                    "--official joint-input / --faithful"
                } else {
                    "without --official joint-input"
                }
            );
        }
        Ok(())
    }

    /// The pool's selectable model ids (the options without `skip`).
    pub fn ids(&self) -> &[String] {
        &self.options[..self.skip]
    }

    /// The selector's argmax members of every supernode for `q`; also what the metadata call
    /// cost (pico-USD).
    pub async fn argmax_members(
        &self,
        sel: &Selector,
        q: &Query,
        synth_may_skip: bool,
    ) -> Result<(Vec<Members>, u64)> {
        let (logits, meta_cost) = self.logits(sel, q, false).await?;
        let masks = Masks {
            synth_may_skip,
            ..self.masks.clone()
        };
        let mut members = Vec::with_capacity(logits.len());
        for l in &logits {
            members.push(self.members(&argmax(&mask_logits(l, &masks)?)?));
        }
        Ok((members, meta_cost))
    }

    /// The selector's raw logits (`W + 1` rows by options) for every supernode of `q`, and what
    /// the metadata call cost (pico-USD); with `zero_meta` a zero metadata vector instead of the
    /// task's (the official test-time skip decision, method §10.10).
    pub async fn logits(
        &self,
        sel: &Selector,
        q: &Query,
        zero_meta: bool,
    ) -> Result<(Vec<Tensor>, u64)> {
        let (roles, meta, meta_cost) = self.inputs(q).await?;
        let meta = if zero_meta { meta.zeros_like()? } else { meta };
        let logits = roles
            .iter()
            .enumerate()
            .map(|(i, r)| sel.role_logits(&self.e_llm, r, &meta, self.width + 1, Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((logits, meta_cost))
    }

    /// The names at every position of `members` (`skip` for none), per supernode.
    pub fn selected(members: &[Members]) -> Vec<Vec<String>> {
        let name = |m: &Option<Arc<dyn ChatModel>>| {
            m.as_ref()
                .map_or_else(|| "skip".to_string(), |m| m.id().to_string())
        };
        members
            .iter()
            .map(|m| {
                m.proposers
                    .iter()
                    .chain(std::iter::once(&m.synthesizer))
                    .map(name)
                    .collect()
            })
            .collect()
    }

    /// The selector's (task, role) input for every role — the task+role embedding (official),
    /// or the task's embedding followed by the role's (role-aware) — the metadata embedding,
    /// and what the metadata call cost (pico-USD; zero for the heuristic or a cached answer).
    pub async fn inputs(&self, q: &Query) -> Result<(Vec<Tensor>, Tensor, u64)> {
        let mut inputs: Vec<String> = if self.official.joint_input {
            self.names
                .iter()
                .map(|r| self.texts.task_role(&q.task, r))
                .collect()
        } else {
            vec![hieramas_reward::texts::task_text(&q.task)]
        };
        let (meta, meta_cost) = match &self.metadata {
            Some((model, cache)) => {
                let f = cache.get(model.as_ref(), &q.task).await?;
                (f.meta, f.cost.pico())
            }
            None => (TaskMeta::heuristic(&q.task), 0),
        };
        inputs.push(meta.summary());
        let mut emb = self.cache.embed(self.embedder.as_ref(), &inputs).await?;
        let meta = emb.pop().context("the embedder returned nothing")?;
        let meta = Tensor::new(meta.as_slice(), &self.dev)?;
        let roles = if self.official.joint_input {
            emb.iter()
                .map(|e| Tensor::new(e.as_slice(), &self.dev))
                .collect::<candle_core::Result<Vec<_>>>()?
        } else {
            let task = Tensor::new(
                emb.first()
                    .context("the embedder returned nothing")?
                    .as_slice(),
                &self.dev,
            )?;
            self.role_embeddings
                .iter()
                .map(|r| Tensor::cat(&[&task, r], 0))
                .collect::<candle_core::Result<Vec<_>>>()?
        };
        Ok((roles, meta, meta_cost))
    }

    /// The models at every position of one supernode for the options `act`.
    pub fn members(&self, act: &[usize]) -> Members {
        let pick = |a: usize| (a != self.skip).then(|| self.pool_models[a].clone());
        let mut proposers: Vec<Option<Arc<dyn ChatModel>>> =
            act[..self.width].iter().map(|&a| pick(a)).collect();
        let synthesizer = pick(act[self.width]);
        // Every proposer skipped: the official fallback model answers (here: the decision
        // model).
        if synthesizer.is_some() && proposers.iter().all(Option::is_none) {
            proposers[0] = Some(self.decision.clone());
        }
        Members {
            proposers,
            synthesizer,
        }
    }

    /// One run of the system; every supernode's own output and the final answer graded.
    pub async fn run(
        &self,
        q: &Query,
        topology: &Topology,
        members: Vec<Members>,
    ) -> Result<Graded> {
        let plan = Plan {
            topology,
            roles: &self.roles,
            members,
            decision: self.decision.clone(),
            sampling: self.sampling,
            faithful: self.official.config_order,
            consensus: Some(crate::system::consensus_extractor(
                self.benchmark,
                self.official,
            )),
            observer: None,
        };
        let trace = run_query(&plan, &q.task)
            .await
            .with_context(|| format!("{}: the multi-agent run", q.id))?;
        let mut results = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let node_calls: Vec<_> = trace.calls.iter().filter(|c| &c.node == name).collect();
            let skipped = trace.nodes[i].skipped;
            let output = node_calls
                .iter()
                .find(|c| c.position == Slot::Synth)
                .or_else(|| node_calls.first())
                .map(|c| c.text.clone());
            let ok = match (&output, skipped) {
                (Some(text), false) => {
                    self.checker
                        .grade(q, std::slice::from_ref(text))
                        .await?
                        .correct
                }
                _ => false,
            };
            results.push(NodeResult {
                solved: ok,
                cost: hieramas_llm::Usd::from_pico(node_calls.iter().map(|c| c.cost_pico).sum()),
                skipped,
                answers: self.roles.roles[i].answer,
            });
        }
        let final_ok = self
            .checker
            .grade(q, std::slice::from_ref(&trace.answer))
            .await?
            .correct;
        let decision_cost_pico = trace
            .calls
            .iter()
            .find(|c| c.position == Slot::Decision)
            .map_or(0, |c| c.cost_pico);
        Ok(Graded {
            results,
            final_ok,
            decision_cost_pico,
            total_cost_pico: trace.total_cost_pico,
        })
    }

    /// Iteration `it`'s batch: the next queries of `order`, each on its seeded random DAG of
    /// the stage-1 density range, run and credited.
    #[allow(clippy::too_many_arguments)]
    async fn batch(
        &self,
        sel: &Selector,
        queries: &[Query],
        order: &mut Order,
        it: usize,
        seed: u64,
        est: &Estimator<'_>,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<Vec<NodeTerm>>, Tally)> {
        let settings = est.settings;
        let mut batch: Vec<Vec<NodeTerm>> = Vec::new();
        let mut tally = Tally::default();
        for k in 0..settings.batch_size {
            let q = &queries[order.next()];
            let topology = generate::random_dag(
                &self.names,
                settings.density[0],
                settings.density[1],
                seed.wrapping_mul(1_000_003)
                    .wrapping_add((it * settings.batch_size + k) as u64),
            )?;
            let terms = self
                .episode(sel, q, &topology, est, &mut order.rng, &mut tally)
                .await?;
            batch.push(terms);
            progress.advance(1);
        }
        Ok((batch, tally))
    }

    /// One training query (method §5.2-5.4): the selector draws every supernode's models at
    /// temperature `est.t`, the system runs on `topology`, every supernode's output and the
    /// answer are graded, and each supernode's choices get their credit. Adds to `tally`.
    async fn episode(
        &self,
        sel: &Selector,
        q: &Query,
        topology: &Topology,
        est: &Estimator<'_>,
        rng: &mut rand_chacha::ChaCha8Rng,
        tally: &mut Tally,
    ) -> Result<Vec<NodeTerm>> {
        let (settings, t, variant, shape) = (est.settings, est.t, est.variant, est.shape);
        let (role_inputs, meta, meta_cost) = self.inputs(q).await?;
        tally.metadata_pico += meta_cost;
        let mut logits = Vec::with_capacity(self.names.len());
        let mut actions = Vec::with_capacity(self.names.len());
        let mut members = Vec::with_capacity(self.names.len());
        for (i, role) in role_inputs.iter().enumerate() {
            let l = mask_logits(
                &sel.role_logits(&self.e_llm, role, &meta, settings.width + 1, Some(i))?,
                &self.masks,
            )?;
            let act = draw(&l, t, variant, rng)?;
            members.push(self.members(&act));
            logits.push(l);
            actions.push(act);
        }
        let g = self.run(q, topology, members).await?;
        // Node accuracy over the supernodes that ran and whose output is an answer.
        let graded = g.results.iter().filter(|r| r.answers && !r.skipped);
        tally.node_solved += graded.clone().filter(|r| r.solved).count();
        tally.nodes_run += graded.count();
        let decision_cost = hieramas_llm::Usd::from_pico(g.decision_cost_pico);
        let c = match est.credit {
            CreditMode::Multi => credit(shape, &g.results, g.final_ok, decision_cost),
            CreditMode::System => system_only(shape, g.results.len(), g.final_ok, decision_cost),
        };
        tally.solved += usize::from(g.final_ok);
        tally.cost_pico += g.total_cost_pico;
        tally.reward_sum += c.system;
        Ok(logits
            .into_iter()
            .zip(actions)
            .zip(c.mixed)
            .map(|((logits, actions), credit)| NodeTerm {
                logits,
                actions,
                credit,
            })
            .collect())
    }

    /// Argmax choices over the full graph on `queries`, and the policy per role.
    async fn validate(
        &self,
        sel: &Selector,
        queries: &[Query],
        iteration: usize,
        progress: &mut dyn Progress,
    ) -> Result<Validation> {
        let (masks, options) = (&self.masks, &self.options);
        let full = shapes::full(self.names.to_vec())?;
        let k = options.len();
        let mut policy: Vec<RolePolicy> = self
            .names
            .iter()
            .map(|r| RolePolicy {
                role: r.clone(),
                proposer_prob: vec![0.0; k],
                proposer_argmax: vec![0.0; k],
                synth_argmax: vec![0.0; k],
            })
            .collect();
        let (mut solved, mut cost) = (0usize, 0u64);
        for (done, q) in queries.iter().enumerate() {
            progress.message(&format!("validating {}/{}", done + 1, queries.len()));
            let (roles, meta, _) = self.inputs(q).await?;
            let mut members = Vec::with_capacity(roles.len());
            for (i, role) in roles.iter().enumerate() {
                let l = mask_logits(
                    &sel.role_logits(&self.e_llm, role, &meta, self.width + 1, Some(i))?,
                    masks,
                )?;
                let act = argmax(&l)?;
                let probs: Vec<Vec<f64>> = candle_nn::ops::softmax_last_dim(&l)?
                    .to_dtype(DType::F64)?
                    .to_vec2()?;
                let p = &mut policy[i];
                for (row, &a) in probs[..self.width].iter().zip(&act) {
                    for (acc, v) in p.proposer_prob.iter_mut().zip(row) {
                        *acc += v;
                    }
                    p.proposer_argmax[a] += 1.0;
                }
                p.synth_argmax[act[self.width]] += 1.0;
                members.push(self.members(&act));
            }
            let g = self.run(q, &full, members).await?;
            solved += usize::from(g.final_ok);
            cost += g.total_cost_pico;
        }
        let n = queries.len().max(1) as f64;
        let rows = n * self.width as f64;
        for p in &mut policy {
            p.proposer_prob.iter_mut().for_each(|v| *v /= rows);
            p.proposer_argmax.iter_mut().for_each(|v| *v /= rows);
            p.synth_argmax.iter_mut().for_each(|v| *v /= n);
        }
        Ok(Validation {
            simulated: self.simulated,
            iteration,
            queries: queries.len(),
            accuracy: solved as f64 / n,
            cost_usd: cost as f64 / 1e12 / n,
            options: options.to_vec(),
            policy,
        })
    }
}

/// The official settings of the benchmark with `cfg`'s overrides.
fn settings(cfg: &Stage1Config) -> Result<Settings> {
    let mut s = Settings::builtin(cfg.system.benchmark.name())?;
    if let Some(n) = cfg.iterations {
        s.iterations = n.max(1);
    }
    if let Some(n) = cfg.batch_size {
        s.batch_size = n.max(1);
    }
    if let Some(n) = cfg.width {
        s.width = n.max(1);
    }
    if let Some(lr) = cfg.lr {
        s.lr_start = lr;
        s.lr_end = lr;
    }
    if let Some(c) = cfg.entropy_coef {
        s.entropy_coef = c;
    }
    if let Some(n) = cfg.eval_every {
        s.eval_every = n.max(1);
    }
    Ok(s)
}

/// Where a stage-1 run of `cfg` keeps its files.
pub fn out_dir(cfg: &Stage1Config) -> Result<PathBuf> {
    if let Some(out) = &cfg.out {
        return Ok(out.clone());
    }
    let pool_name = crate::models::load_pool(&cfg.system.pool)?.meta.name;
    Ok(PathBuf::from("results/stage1").join(format!(
        "{}-{}",
        cfg.system.benchmark.name(),
        pool_name.replace('/', "_")
    )))
}

/// What `<out>/state.json` lets a rerun continue from, or none (a fresh start); refuses a
/// state of other settings.
fn resume_state(
    state_path: &std::path::Path,
    out: &std::path::Path,
    fingerprint: &serde_json::Value,
    fresh: bool,
) -> Result<Option<ResumeState>> {
    if fresh && state_path.exists() {
        std::fs::remove_file(state_path)
            .with_context(|| format!("removing {}", state_path.display()))?;
    }
    let Ok(text) = std::fs::read_to_string(state_path) else {
        return Ok(None);
    };
    let st: ResumeState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a training state", state_path.display()))?;
    if &st.fingerprint != fingerprint {
        bail!(
            "{} holds a run with other settings (benchmark, pool, loss, credit, settings, seed); \
             use another out directory (--out), or start over there (`fresh`, --fresh)",
            out.display()
        );
    }
    Ok(Some(st))
}

/// The curve file with exactly the first `keep` lines of the old one (a crash may have left a
/// line of an iteration whose state was not saved), open for appending.
fn open_curve(path: &std::path::Path, keep: usize) -> Result<std::fs::File> {
    use std::io::Write;
    let kept: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .take(keep)
        .map(String::from)
        .collect();
    let mut curve = std::fs::File::create(path).context("creating curve.jsonl")?;
    for l in &kept {
        writeln!(curve, "{l}").context("writing curve.jsonl")?;
    }
    Ok(curve)
}

/// Trains the stage-1 selector (method §5) as `cfg` says, reporting to `progress`; resumes the
/// run saved in the out directory unless `cfg.fresh`.
pub async fn train(cfg: &Stage1Config, progress: &mut dyn Progress) -> Result<Stage1Outcome> {
    let sys = &cfg.system;
    let benchmark = sys.benchmark;
    let settings = settings(cfg)?;
    let variant = if cfg.system.official.loss {
        Variant::Faithful
    } else {
        Variant::Fixed
    };
    let (queries, val, out, mut stage) = prepare(cfg, &settings, variant).await?;
    if cfg.no_skip {
        stage.masks.excluded.push(stage.skip);
        stage.masks.synth_may_skip = false;
    }
    let (simulated, dev) = (stage.simulated, stage.dev.clone());
    if simulated {
        progress.note(crate::sim::BANNER);
    }
    let fingerprint = fingerprint(cfg, &stage, &settings, variant)?;
    let state_path = out.join("state.json");
    let resumed = resume_state(&state_path, &out, &fingerprint, cfg.fresh)?;
    crate::records::write_json_atomic(
        &out.join(TRAINED_WITH),
        &TrainedWith {
            config: cfg.clone(),
            width: settings.width,
            decision: stage.decision_id.clone(),
            pool_name: stage.pool_name.clone(),
            simulated,
        },
    )?;
    let resume_files = match &resumed {
        Some(st) => Some(match &st.files {
            Some(f) => f.clone(),
            None => StateFiles::legacy(&out)?,
        }),
        None => None,
    };
    let (varmap, sel, mut trainer) = selector_and_trainer(
        resume_files.as_ref().map(|f| (out.as_path(), f)),
        &settings,
        stage.selector_config(),
        &dev,
        sys.seed,
    )?;
    let shape = settings.reward();
    let mut order = Order::new(queries.len(), sys.seed);
    let mut start = 0;
    let mut best_val: Option<f64> = None;
    if let Some(st) = &resumed {
        order.resume(st);
        start = st.iterations_done;
        best_val = st.best_val;
        progress.note(&format!(
            "resuming {} after iteration {start} (of {})",
            out.display(),
            settings.iterations
        ));
    }
    let label = if simulated { "SIMULATED " } else { "" };
    progress.note(&format!(
        "{label}stage 1 · {benchmark} · pool {} ({} models + skip, {} decides) · {} iterations x {} queries · W = {} · {variant:?} loss · {:?} credit · out {}",
        stage.pool_name,
        stage.ids().len(),
        stage.decision_id,
        settings.iterations,
        settings.batch_size,
        settings.width,
        cfg.credit,
        out.display()
    ));
    let curve_path = out.join("curve.jsonl");
    let mut curve = open_curve(&curve_path, start)?;
    let mut last_val: Option<Validation> = None;
    progress.start(
        (settings.iterations * settings.batch_size) as u64,
        (start * settings.batch_size) as u64,
        "queries",
    );
    for it in start..settings.iterations {
        if cfg.stop_after.is_some_and(|n| it >= n) {
            progress.finish();
            progress.note(&format!(
                "stopped after iteration {it} (stop_after); rerun to resume"
            ));
            let (selector, validation, best_accuracy) = (None, None, best_val);
            return Ok(Stage1Outcome {
                out,
                selector,
                validation,
                best_accuracy,
                simulated,
            });
        }
        let (t, lr) = schedule(&settings, it);
        trainer.set_learning_rate(lr);
        progress.message(&format!(
            "{label}iter {}/{} T={t:.2}",
            it + 1,
            settings.iterations
        ));
        let est = Estimator {
            settings: &settings,
            t,
            variant,
            credit: cfg.credit,
            shape: &shape,
        };
        let (batch, tally) = stage
            .batch(&sel, &queries, &mut order, it, sys.seed, &est, progress)
            .await?;
        let loss = batch_loss(&batch, t, settings.entropy_coef, variant)?;
        let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let norm = trainer.step(&loss)?;
        let done = it + 1;
        // Validation every `eval_every` iterations and after the last.
        let validation = if !val.is_empty()
            && (done % settings.eval_every.max(1) == 0 || done == settings.iterations)
        {
            let v = stage.validate(&sel, &val, done, progress).await?;
            if best_val.is_none_or(|b| v.accuracy > b) {
                best_val = Some(v.accuracy);
                selector::save(&varmap, &sel.config, &out.join("best.safetensors"))?;
            }
            Some(v)
        } else {
            None
        };
        let row = tally.row(
            [done as f64, t, lr, loss_value, norm],
            &est,
            simulated,
            validation.as_ref(),
        );
        {
            use std::io::Write;
            writeln!(curve, "{}", serde_json::to_string(&row)?).context("writing curve.jsonl")?;
            curve.sync_data().ok();
        }
        progress.note(&iteration_line(label, &row, validation.as_ref()));
        if let Some(v) = validation {
            crate::records::write_json_atomic(&out.join("validation.json"), &v)?;
            last_val = Some(v);
        }
        // The state that lets a rerun continue exactly: weights, optimiser, data order, rng.
        let st = order.state(fingerprint.clone(), done, best_val);
        save_iteration(&out, &varmap, &sel, &trainer, st, settings.checkpoint_every)?;
    }
    progress.finish();
    let path = out.join("selector.safetensors");
    selector::save(&varmap, &sel.config, &path)?;
    // A finished run that was resumed has its last validation on disk.
    let last_val = last_val.or_else(|| {
        let path = out.join("validation.json");
        (!val.is_empty()).then(|| crate::records::read_json(&path).ok())?
    });
    progress.note(&format!(
        "{label}selector: {} (+ .json); best validation: {}; curve: {}",
        path.display(),
        best_val.map_or("-".into(), |b| format!("{:.1}%", 100.0 * b)),
        curve_path.display()
    ));
    Ok(Stage1Outcome {
        out,
        selector: Some(path),
        validation: last_val,
        best_accuracy: best_val,
        simulated,
    })
}

/// The queries (train, then validation), the out directory and the system of a stage-1 run.
async fn prepare(
    cfg: &Stage1Config,
    settings: &Settings,
    variant: Variant,
) -> Result<(Vec<Query>, Vec<Query>, PathBuf, Stage)> {
    let sys = &cfg.system;
    let benchmark = sys.benchmark;
    let data = DataDir::resolve(sys.data_dir.as_deref())?;
    let queries = crate::sim::select(&data, benchmark, "train", cfg.train_limit)?;
    if queries.is_empty() {
        bail!("{benchmark}/train selects no queries");
    }
    let val = if cfg.val_limit == 0 {
        Vec::new()
    } else {
        crate::sim::select(&data, benchmark, "valid", Some(cfg.val_limit))?
    };
    let out = out_dir(cfg)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let all: Vec<&Query> = queries.iter().chain(&val).collect();
    let cache_dir = sys
        .embeddings
        .clone()
        .unwrap_or_else(|| out.join("embeddings"));
    // The official clamp to ±10 (also at validation, as the official code leaves it). The
    // fixed variant drops it: logits that pass +10 tie there and get no gradient, so the
    // policy freezes uniform over the clamped options (measured on pools/sim-credit.toml:
    // after 100 iterations every model's logit sits at +10). Softmax needs no clamp.
    let clamp = (variant == Variant::Faithful).then_some(10.0);
    let budget = sys.open_budget(Some(&out.join(BUDGET_LEDGER)))?;
    let stage = Stage::build(sys, &data, &all, cache_dir, settings.width, clamp, budget).await?;
    Ok((queries, val, out, stage))
}

/// Saves what lets a rerun continue exactly after an iteration: the weights, the optimiser's
/// moments (files of this iteration, `last-<n>.*`), then the state naming them (data order,
/// rng, sha256 of each file), then removes the previous iteration's files; every
/// `checkpoint_every` iterations a checkpoint.
fn save_iteration(
    out: &std::path::Path,
    varmap: &VarMap,
    sel: &Selector,
    trainer: &Trainer,
    mut st: ResumeState,
    checkpoint_every: usize,
) -> Result<()> {
    let done = st.iterations_done;
    let weights = format!("last-{done}.safetensors");
    let adam = format!("last-{done}.adam.safetensors");
    let weights_sha256 = selector::save(varmap, &sel.config, &out.join(&weights))?;
    let adam_sha256 = trainer.save(&out.join(&adam))?;
    st.files = Some(StateFiles {
        weights,
        weights_sha256,
        adam,
        adam_sha256,
    });
    crate::records::write_json_atomic(&out.join("state.json"), &st)?;
    remove_stale_iteration_files(out, done)?;
    if done.is_multiple_of(checkpoint_every.max(1)) {
        selector::save(
            varmap,
            &sel.config,
            &out.join(format!("iter{done}.safetensors")),
        )?;
    }
    Ok(())
}

/// Removes the resume files of iterations other than `keep` (and of the unnamed layout), and
/// temporary files a killed save left.
fn remove_stale_iteration_files(out: &std::path::Path, keep: usize) -> Result<()> {
    let own = format!("last-{keep}.");
    let entries = std::fs::read_dir(out).with_context(|| format!("listing {}", out.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", out.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = (name.starts_with("last-") && !name.starts_with(&own))
            || name.starts_with(".last-")
            || matches!(
                name,
                "last.safetensors" | "last.safetensors.json" | "last.adam.safetensors"
            );
        if stale {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Everything that decides a stage-1 run; a resumed run must match it.
fn fingerprint(
    cfg: &Stage1Config,
    stage: &Stage,
    settings: &Settings,
    variant: Variant,
) -> Result<serde_json::Value> {
    let sys = &cfg.system;
    let ids = stage.ids();
    let mut fingerprint = serde_json::json!({
        "benchmark": sys.benchmark.name(),
        "pool": stage.models.specs(ids.iter().chain([&stage.decision_id]))?,
        "options": ids,
        "decision": stage.decision_id,
        "variant": format!("{variant:?}"),
        "credit": cfg.credit,
        "settings": settings,
        "max_tokens": sys.max_tokens,
        "seed": sys.seed,
        "train_limit": cfg.train_limit,
        "embedder": stage.embedder.id(),
        "embedding_dim": stage.dim,
    });
    if sys.metadata != "heuristic" {
        fingerprint["metadata"] = sys.metadata.clone().into();
    }
    if cfg.no_skip {
        fingerprint["no_skip"] = true.into();
    }
    // Written only for the role-aware selector, so an official run's fingerprint is unchanged.
    if stage.selector_input() != SelectorInput::Joint {
        fingerprint["selector_input"] = stage.selector_input().name().into();
    }
    Ok(fingerprint)
}

/// The selector (seeded, or the one a saved state names) and its optimiser.
fn selector_and_trainer(
    resume_from: Option<(&std::path::Path, &StateFiles)>,
    settings: &Settings,
    config: SelectorConfig,
    dev: &Device,
    seed: u64,
) -> Result<(VarMap, Selector, Trainer)> {
    let (varmap, sel) = match resume_from {
        Some((out, files)) => {
            let path = out.join(&files.weights);
            // The state must name these bytes: weights and sidecar of another iteration would
            // pass the sidecar's own check.
            let meta: selector::CheckpointMeta =
                hieramas_checkpoint::read_sidecar(&path).map_err(selector::SelectorError::from)?;
            if !files.weights_sha256.is_empty() && meta.sha256 != files.weights_sha256 {
                bail!(
                    "{}: sha256 {} is not the {} that state.json records",
                    path.display(),
                    meta.sha256,
                    files.weights_sha256
                );
            }
            let (varmap, sel) = selector::load(&path, dev, DType::F32)?;
            if sel.config != config {
                bail!(
                    "{}: the saved selector's configuration {:?} is not this run's {:?}",
                    path.display(),
                    sel.config,
                    config
                );
            }
            (varmap, sel)
        }
        None => {
            let varmap = VarMap::new();
            let sel = Selector::new(config, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
            selector::init_seeded(&varmap, seed)?;
            (varmap, sel)
        }
    };
    let mut trainer = Trainer::new(
        &varmap,
        settings.lr_start,
        settings.weight_decay,
        settings.grad_clip,
    )?;
    if let Some((out, files)) = resume_from {
        trainer.load(&out.join(&files.adam), &files.adam_sha256)?;
    }
    Ok((varmap, sel, trainer))
}

/// The training queries' order: a seeded shuffle, drawn through and reshuffled when used up;
/// the same rng draws the selector's choices.
struct Order {
    rng: rand_chacha::ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
}

impl Order {
    fn new(n: usize, seed: u64) -> Order {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Order {
            rng,
            order,
            cursor: 0,
        }
    }

    fn resume(&mut self, st: &ResumeState) {
        self.rng.set_word_pos(st.rng_word_pos);
        self.order = st.order.clone();
        self.cursor = st.cursor;
    }

    /// The next query's index.
    fn next(&mut self) -> usize {
        if self.cursor == self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        self.cursor += 1;
        self.order[self.cursor - 1]
    }

    fn state(
        &self,
        fingerprint: serde_json::Value,
        iterations_done: usize,
        best_val: Option<f64>,
    ) -> ResumeState {
        ResumeState {
            fingerprint,
            iterations_done,
            cursor: self.cursor,
            order: self.order.clone(),
            rng_word_pos: self.rng.get_word_pos(),
            best_val,
            files: None,
        }
    }
}

/// Iteration `it`'s temperature and learning rate (method §5.3).
fn schedule(settings: &Settings, it: usize) -> (f64, f64) {
    let t = temperature(
        it,
        settings.iterations,
        settings.temperature_start,
        settings.temperature_min,
    );
    let lr = learning_rate(
        it,
        settings.iterations,
        settings.lr_start,
        settings.lr_end,
        settings.warmup_ratio,
    );
    (t, lr)
}

fn loss_of(variant: Variant) -> Loss {
    match variant {
        Variant::Faithful => Loss::Faithful,
        Variant::Fixed => Loss::Fixed,
    }
}

/// The note of one iteration.
fn iteration_line(label: &str, row: &CurveRow, validation: Option<&Validation>) -> String {
    format!(
        "{label}iter {:>2}: loss {:>8.3}  reward {:>6.3}  accuracy {:>5.1}%  node accuracy {:>5.1}%  cost ${:.6}{}",
        row.iteration,
        row.loss,
        row.system_reward,
        100.0 * row.accuracy,
        100.0 * row.node_accuracy,
        row.cost_usd,
        validation.map_or(String::new(), |v| format!(
            "  | valid {:>5.1}% of {} at ${:.6}/query",
            100.0 * v.accuracy,
            v.queries,
            v.cost_usd
        ))
    )
}

/// How an iteration draws and credits: the settings, the temperature, the loss, the credit.
struct Estimator<'a> {
    settings: &'a Settings,
    t: f64,
    variant: Variant,
    credit: CreditMode,
    shape: &'a hieramas_reward::reward::RewardShape,
}

/// What one iteration's queries added up to.
#[derive(Default)]
struct Tally {
    solved: usize,
    node_solved: usize,
    nodes_run: usize,
    cost_pico: u64,
    reward_sum: f64,
    metadata_pico: u64,
}

impl Tally {
    /// The curve line of the iteration: `[iteration, temperature, lr, loss, grad_norm]`, then
    /// what the batch added up to.
    fn row(
        &self,
        [iteration, temperature, lr, loss, grad_norm]: [f64; 5],
        est: &Estimator<'_>,
        simulated: bool,
        validation: Option<&Validation>,
    ) -> CurveRow {
        let n = est.settings.batch_size as f64;
        CurveRow {
            iteration: iteration as usize,
            temperature,
            lr,
            loss,
            grad_norm,
            system_reward: self.reward_sum / n,
            accuracy: self.solved as f64 / n,
            node_accuracy: self.node_accuracy(),
            cost_pico: self.cost_pico,
            cost_usd: self.cost_pico as f64 / 1e12,
            metadata_cost_pico: self.metadata_pico,
            variant: loss_of(est.variant),
            credit: est.credit,
            simulated,
            val_accuracy: validation.map(|v| v.accuracy),
            val_cost_usd: validation.map(|v| v.cost_usd),
        }
    }

    fn node_accuracy(&self) -> f64 {
        if self.nodes_run == 0 {
            0.0
        } else {
            self.node_solved as f64 / self.nodes_run as f64
        }
    }
}
