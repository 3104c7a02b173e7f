//! Stage 2 (method §6): `hieramas train stage2-data` runs random topologies per task with the
//! stage-1 selector's choices and labels them; `hieramas train stage2` trains the graph
//! classifier on that data (and reports on a held-out dataset).
//!
//! Data generation, as the official scripts, but with two fixes (method §10): the stage-1
//! weights are always loaded (the official MATH and MMLU scripts silently run an untrained
//! selector), and the system reward that ranks a task's runs prices every call of the run, not
//! only the decision call — with ties (successes clamped at the reward floor) broken by the
//! lower cost, see `TaskRecord::label`. A task's candidate DAGs are distinct (the official five draws repeat
//! graphs, most of all for MATH, whose generator can make only 9). Every task's line is written
//! when its runs finish, so a rerun of the same command continues where it stopped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use futures_util::StreamExt;
use hieramas_bench::query::Query;
use hieramas_gnn::config::{Stage2Config, role_sentences};
use hieramas_gnn::fit::{FitReport, fit, groups};
use hieramas_gnn::metrics::{Metrics, evaluate, top1};
use hieramas_gnn::model::{Classifier, ClassifierConfig, Direction, init};
use hieramas_gnn::record::{Dataset, DatasetMeta, Run, TaskRecord};
use hieramas_gnn::select::CostModel;
use hieramas_reward::config::Stage1Config;
use hieramas_reward::selector::{self, Selector};
use hieramas_supernode::Members;
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::{Topology, generate};

use crate::train::{Stage, SystemArgs};

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

/// What a data generation leaves.
pub struct DataOutcome {
    pub dataset: Dataset,
    pub records: Vec<TaskRecord>,
    pub simulated: bool,
}

/// The system of stage 2: the stage-1 system and its trained selector.
pub struct System {
    pub stage: Stage,
    pub selector: Selector,
}

impl System {
    /// Loads the stage-1 selector from `stage1` and builds the system of `sys` around it;
    /// SIMULATED models know the `known` queries.
    pub async fn build(
        sys: &SystemArgs,
        data: &DataDir,
        known: &[&Query],
        stage1: &Path,
        width: Option<usize>,
        cache_dir: PathBuf,
        budget: Option<std::sync::Arc<hieramas_llm::Budget>>,
    ) -> Result<System> {
        let benchmark: Benchmark = sys.benchmark.parse()?;
        let width = width.unwrap_or(RoleSet::builtin(benchmark.name())?.width);
        let stage = Stage::build(sys, data, known, cache_dir, width, None, budget).await?;
        let (_, selector) = selector::load(stage1, &stage.dev, DType::F32).with_context(|| {
            format!(
                "--stage1 {}: train one with `hieramas train stage1 --benchmark {}`",
                stage1.display(),
                benchmark.name()
            )
        })?;
        if selector.config.embed_dim != stage.dim {
            bail!(
                "--stage1 {} reads {}-d embeddings, but --embedder {} gives {}-d: use the embedder it was trained with",
                stage1.display(),
                selector.config.embed_dim,
                sys.embedder,
                stage.dim
            );
        }
        if selector.config.max_positions < width + 1 {
            bail!(
                "--stage1 {} has {} positions; W = {width} needs {}",
                stage1.display(),
                selector.config.max_positions,
                width + 1
            );
        }
        Ok(System { stage, selector })
    }

    /// The classifier's task embedding: the task's first 2000 characters (method §4.3).
    pub async fn task_embedding(&self, q: &Query) -> Result<Vec<f32>> {
        let head: String = q.task.chars().take(2000).collect();
        let mut e = self
            .stage
            .cache
            .embed(self.stage.embedder.as_ref(), &[head])
            .await?;
        e.pop().context("the embedder returned nothing")
    }

    /// One run of `edges` on `q` with `members`, graded and rewarded.
    pub async fn run(
        &self,
        q: &Query,
        edges: &[(usize, usize)],
        members: &[Members],
        shape: &hieramas_reward::reward::RewardShape,
    ) -> Result<Run> {
        let topology = Topology::new(self.stage.names.clone(), edges)?;
        let g = self.stage.run(q, &topology, members.to_vec()).await?;
        Ok(Run {
            edges: edges.iter().map(|&(s, d)| [s, d]).collect(),
            selected: Stage::selected(members),
            // The fix of method §10: every call's cost, not the decision call's alone.
            reward: shape.reward(g.final_ok, hieramas_llm::Usd::from_pico(g.total_cost_pico)),
            solved: g.final_ok,
            cost_pico: g.total_cost_pico,
            rank: 0,
            label: false,
        })
    }
}

/// Hex sha256 recorded in a checkpoint's sidecar (what identifies the stage-1 weights).
pub fn checkpoint_sha(path: &Path) -> Result<String> {
    let mut side = path.as_os_str().to_owned();
    side.push(".json");
    let text = std::fs::read_to_string(PathBuf::from(&side))
        .with_context(|| format!("reading {}", PathBuf::from(&side).display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["sha256"].as_str().unwrap_or_default().to_string())
}

/// Appends each task line the stream yields to `ds` as soon as it comes (a crash loses only the
/// tasks in flight), keeps it in `done`, and finishes the bar.
pub async fn append_each(
    stream: impl futures_util::Stream<Item = Result<TaskRecord>>,
    ds: &Dataset,
    done: &mut Vec<TaskRecord>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let mut stream = std::pin::pin!(stream);
    while let Some(r) = stream.next().await {
        let r = r?;
        ds.append(&r)?;
        done.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

pub fn progress(quiet: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} {{elapsed_precise}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// `hieramas train stage2-data`.
pub async fn data(a: DataArgs) -> Result<DataOutcome> {
    let sys = &a.system;
    let benchmark: Benchmark = sys.benchmark.parse()?;
    let mut cfg = Stage2Config::builtin(benchmark.name())?;
    if let Some(g) = a.graphs {
        cfg.graphs_per_task = g.max(1);
    }
    let data_dir = DataDir::resolve(sys.data_dir.as_deref())?;
    let queries = crate::sim::select(&data_dir, benchmark, &a.split, a.limit)?;
    if queries.is_empty() {
        bail!("{benchmark}/{} selects no queries", a.split);
    }
    let pool_name = crate::mas::load_pool(&sys.pool)?.meta.name;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("results/stage2")
            .join(format!(
                "{}-{}",
                benchmark.name(),
                pool_name.replace('/', "_")
            ))
            .join(format!("data-{}", a.split))
    });
    let known: Vec<&Query> = queries.iter().collect();
    let cache_dir = sys
        .embeddings
        .clone()
        .unwrap_or_else(|| out.join("embeddings"));
    let system = System::build(sys, &data_dir, &known, &a.stage1, a.width, cache_dir, None).await?;
    let stage = &system.stage;
    let ds = Dataset { dir: out.clone() };
    let sentences = role_sentences(benchmark.name(), &stage.names)?;
    let role_features = stage
        .cache
        .embed(stage.embedder.as_ref(), &sentences)
        .await?;
    let meta = DatasetMeta {
        benchmark: benchmark.name().into(),
        roles: stage.names.clone(),
        role_sentences: sentences,
        role_features,
        embedder: stage.embedder.id().to_string(),
        simulated: stage.simulated,
        settings: serde_json::json!({
            "pool": stage.models.specs(stage.ids().iter().chain([&stage.decision_id]))?,
            "decision": stage.decision_id,
            "stage1_sha256": checkpoint_sha(&a.stage1)?,
            "split": a.split,
            "graphs_per_task": cfg.graphs_per_task,
            "density": cfg.density,
            "top": cfg.top,
            "width": stage.width,
            "max_tokens": sys.max_tokens,
            "seed": sys.seed,
        }),
    };
    if a.fresh && ds.dir.exists() {
        for p in [ds.meta_path(), ds.tasks_path()] {
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    let mut done = match ds.read_meta() {
        Ok(old) if old == meta => {
            let records = ds.read_tasks()?;
            ds.rewrite_tasks(&records)?;
            records
        }
        Ok(_) => bail!(
            "{} holds stage-2 data made with other settings (pool, stage-1 weights, graphs, seed); use another --out, or --fresh",
            out.display()
        ),
        Err(_) => {
            ds.write_meta(&meta)?;
            if ds.tasks_path().exists() {
                std::fs::remove_file(ds.tasks_path())
                    .with_context(|| format!("removing {}", ds.tasks_path().display()))?;
            }
            Vec::new()
        }
    };
    let have: std::collections::HashSet<String> = done.iter().map(|r| r.task_id.clone()).collect();
    let todo: Vec<(usize, &Query)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| !have.contains(&q.id))
        .collect();
    let label = if stage.simulated { "SIMULATED " } else { "" };
    if !sys.quiet {
        eprintln!(
            "{label}stage-2 data · {benchmark}/{} · {} tasks ({} done) x {} DAGs · density {:?} · stage 1 {} · out {}",
            a.split,
            queries.len(),
            done.len(),
            cfg.graphs_per_task,
            cfg.density,
            a.stage1.display(),
            out.display()
        );
    }
    let bar = progress(sys.quiet, queries.len(), "tasks");
    bar.set_position(done.len() as u64);
    bar.set_message(format!("{label}stage-2 data"));
    let shape = Stage1Config::builtin(benchmark.name())?.reward();
    let names = stage.names.clone();
    let system = &system;
    let shape = &shape;
    let cfg_ref = &cfg;
    let stream = futures_util::stream::iter(todo)
        .map(|(idx, q)| {
            let names = names.clone();
            async move {
                let embedding = system.task_embedding(q).await?;
                let (members, _) = system
                    .stage
                    .argmax_members(&system.selector, q, cfg_ref.datagen_synth_skip)
                    .await?;
                let pool = generate::pool(
                    &names,
                    cfg_ref.graphs_per_task,
                    cfg_ref.density[0],
                    cfg_ref.density[1],
                    sys.seed.wrapping_mul(1_000_003).wrapping_add(idx as u64),
                )?;
                let mut runs = Vec::with_capacity(pool.graphs.len());
                for g in &pool.graphs {
                    let edges: Vec<(usize, usize)> = g.edges().collect();
                    runs.push(
                        system
                            .run(q, &edges, &members, shape)
                            .await
                            .with_context(|| format!("{}: a stage-2 run", q.id))?,
                    );
                }
                let mut r = TaskRecord {
                    task_id: q.id.clone(),
                    embedding,
                    runs,
                };
                r.label(cfg_ref.top);
                anyhow::Ok(r)
            }
        })
        .buffered(a.concurrency.max(1));
    append_each(stream, &ds, &mut done, &bar).await?;
    // The file may hold more tasks (an earlier, larger --limit): report and return the selected.
    let selected: std::collections::HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    done.retain(|r| selected.contains(r.task_id.as_str()));
    if !sys.quiet {
        let runs: usize = done.iter().map(|r| r.runs.len()).sum();
        let pos: usize = done.iter().map(TaskRecord::positives).sum();
        let solved: usize = done
            .iter()
            .map(|r| r.runs.iter().filter(|x| x.solved).count())
            .sum();
        eprintln!(
            "{label}stage-2 data: {} tasks, {runs} runs, {:.1}% solved, {pos} positives -> {}",
            done.len(),
            100.0 * solved as f64 / runs.max(1) as f64,
            ds.tasks_path().display()
        );
    }
    Ok(DataOutcome {
        dataset: ds,
        records: done,
        simulated: stage.simulated,
    })
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

/// How a choice rule fares on a dataset whose every candidate was run.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    pub tasks: usize,
    pub accuracy: f64,
    /// Mean cost per query, USD.
    pub cost_usd: f64,
}

/// The outcome of picking one run per task by `pick` (`None`: the mean over all runs, i.e. a
/// uniformly random pick in expectation).
pub fn choice(
    records: &[TaskRecord],
    pick: impl Fn(usize, &TaskRecord) -> Option<usize>,
) -> Choice {
    let (mut acc, mut cost) = (0.0, 0.0);
    for (i, t) in records.iter().enumerate() {
        let n = t.runs.len().max(1) as f64;
        match pick(i, t) {
            Some(k) => {
                acc += f64::from(u8::from(t.runs[k].solved));
                cost += t.runs[k].cost_pico as f64 / 1e12;
            }
            None => {
                acc += t.runs.iter().filter(|r| r.solved).count() as f64 / n;
                cost += t
                    .runs
                    .iter()
                    .map(|r| r.cost_pico as f64 / 1e12)
                    .sum::<f64>()
                    / n;
            }
        }
    }
    let n = records.len().max(1) as f64;
    Choice {
        tasks: records.len(),
        accuracy: acc / n,
        cost_usd: cost / n,
    }
}

/// The classifier's results on a held-out dataset.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HeldOut {
    pub metrics: Metrics,
    /// Task ROC-AUC of random scores (mean of 100 seeded draws), for reference.
    pub random_task_auc: Option<f64>,
    /// Running the classifier's top-1 candidate.
    pub classifier: Choice,
    /// A uniformly random candidate (expectation over the candidates).
    pub random: Choice,
    /// The best candidate by reward (what a perfect classifier would run).
    pub oracle: Choice,
}

/// What `train stage2` writes to `report.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FitOutput {
    pub simulated: bool,
    pub benchmark: String,
    pub settings: Stage2Config,
    pub direction: Direction,
    pub fit: FitReport,
    pub cost_model: CostModel,
    pub test: Option<HeldOut>,
}

/// Scores of every held-out task's candidates and how the choices fare.
pub fn held_out(cls: &Classifier, records: &[TaskRecord], seed: u64) -> Result<HeldOut> {
    let refs: Vec<&TaskRecord> = records.iter().collect();
    let g = groups(cls, &refs)?;
    let metrics = evaluate(&g);
    // Random scores' task ROC-AUC, averaged over 100 seeded draws (its expectation is ½).
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let draws: Vec<f64> = (0..100)
        .filter_map(|_| {
            let random_groups: Vec<_> = g
                .iter()
                .map(|x| hieramas_gnn::metrics::Group {
                    scores: x.scores.iter().map(|_| rng.random::<f64>()).collect(),
                    labels: x.labels.clone(),
                })
                .collect();
            evaluate(&random_groups).task_auc
        })
        .collect();
    let random_task_auc =
        (!draws.is_empty()).then(|| draws.iter().sum::<f64>() / draws.len() as f64);
    Ok(HeldOut {
        metrics,
        random_task_auc,
        classifier: choice(records, |i, _| top1(&g[i].scores)),
        random: choice(records, |_, _| None),
        oracle: choice(records, |_, t| {
            let rewards: Vec<f64> = t.runs.iter().map(|r| r.reward).collect();
            top1(&rewards)
        }),
    })
}

/// `hieramas train stage2`.
pub fn train(a: FitArgs) -> Result<FitOutput> {
    let ds = Dataset {
        dir: a.data.clone(),
    };
    let meta = ds.read_meta().with_context(|| {
        format!(
            "--data {}: make it with `hieramas train stage2-data`",
            a.data.display()
        )
    })?;
    let records = ds.read_tasks()?;
    if records.is_empty() {
        bail!("--data {} holds no tasks yet", a.data.display());
    }
    let mut cfg = Stage2Config::builtin(&meta.benchmark)?;
    if let Some(e) = a.epochs {
        cfg.epochs = e.max(1);
    }
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b.max(1);
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    let direction = if a.predecessors {
        Direction::Predecessors
    } else {
        Direction::Successors
    };
    let out = a.out.clone().unwrap_or_else(|| {
        a.data
            .parent()
            .map_or_else(|| PathBuf::from("classifier"), |p| p.join("classifier"))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let label = if meta.simulated { "SIMULATED " } else { "" };
    if meta.simulated && !a.quiet {
        eprintln!("{}", crate::sim::BANNER);
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let config = ClassifierConfig {
        roles: meta.roles.clone(),
        role_dim: meta.role_features.first().map_or(0, Vec::len),
        task_dim: records[0].embedding.len(),
        gcn_out: 128,
        hidden: 64,
        dropout: cfg.dropout,
        direction,
    };
    let cls = Classifier::new(
        config.clone(),
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    init(&varmap, cfg.seed, &meta.role_features)?;
    let runs: usize = records.iter().map(|r| r.runs.len()).sum();
    let pos: usize = records.iter().map(TaskRecord::positives).sum();
    if !a.quiet {
        eprintln!(
            "{label}stage 2 · {} · {} tasks, {runs} graphs, {pos} positive · up to {} epochs, batch {}, lr {} · out {}",
            meta.benchmark,
            records.len(),
            cfg.epochs,
            cfg.batch_size,
            cfg.lr,
            out.display()
        );
    }
    let quiet = a.quiet;
    let report = fit(&cls, &varmap, &records, &cfg, |e| {
        if !quiet {
            eprintln!(
                "{label}epoch {:>2}: loss {:.4}  lr {:.2e}  valid task ROC-AUC {}  top-1 hit {} (random {})",
                e.epoch,
                e.loss,
                e.lr,
                fmt(e.valid.task_auc),
                fmt(e.valid.top1_hit),
                fmt(e.valid.top1_random)
            );
        }
    })?;
    let cost_model = CostModel::fit(&records);
    let path = out.join("classifier.safetensors");
    hieramas_gnn::model::save(
        &varmap,
        &config,
        serde_json::json!({
            "benchmark": meta.benchmark,
            "embedder": meta.embedder,
            "simulated": meta.simulated,
            "cost_model": cost_model,
            "data": a.data,
        }),
        &path,
    )?;
    let test = match &a.test {
        Some(dir) => {
            let t = Dataset { dir: dir.clone() };
            let tmeta = t.read_meta()?;
            if tmeta.roles != meta.roles || tmeta.embedder != meta.embedder {
                bail!(
                    "--test {}: roles or embedder differ from --data",
                    dir.display()
                );
            }
            let recs = t.read_tasks()?;
            let overlap = recs
                .iter()
                .filter(|r| records.iter().any(|x| x.task_id == r.task_id))
                .count();
            if overlap > 0 {
                bail!(
                    "--test {}: {overlap} of its tasks are in --data; a held-out set must not share tasks",
                    dir.display()
                );
            }
            Some(held_out(&cls, &recs, cfg.seed)?)
        }
        None => None,
    };
    let output = FitOutput {
        simulated: meta.simulated,
        benchmark: meta.benchmark.clone(),
        settings: cfg,
        direction,
        fit: report,
        cost_model,
        test,
    };
    let json = serde_json::to_string_pretty(&output)?;
    std::fs::write(out.join("report.json"), json + "\n")
        .with_context(|| format!("writing {}", out.join("report.json").display()))?;
    if !a.quiet {
        eprintln!(
            "{label}classifier: {} (best epoch {}, valid task ROC-AUC {:.3})",
            path.display(),
            output.fit.best_epoch,
            output.fit.best_selection
        );
        if let Some(h) = &output.test {
            eprintln!(
                "{label}held out ({} tasks): task ROC-AUC {} (random scores {}), top-1 hit {} (random {}); accuracy {:.1}% top-1 vs {:.1}% random vs {:.1}% oracle",
                h.metrics.tasks,
                fmt(h.metrics.task_auc),
                fmt(h.random_task_auc),
                fmt(h.metrics.top1_hit),
                fmt(h.metrics.top1_random),
                100.0 * h.classifier.accuracy,
                100.0 * h.random.accuracy,
                100.0 * h.oracle.accuracy
            );
        }
    }
    Ok(output)
}

pub fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// A loaded classifier with what its sidecar says.
pub struct Loaded {
    pub classifier: Classifier,
    pub cost_model: CostModel,
    pub embedder: String,
    pub simulated: bool,
    _varmap: VarMap,
}

/// Loads `train stage2`'s `classifier.safetensors`.
pub fn load_classifier(path: &Path) -> Result<Loaded> {
    let (varmap, classifier, meta) = hieramas_gnn::model::load(path, &Device::Cpu)?;
    Ok(Loaded {
        classifier,
        cost_model: serde_json::from_value(meta.extra["cost_model"].clone()).unwrap_or_default(),
        embedder: meta.extra["embedder"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        simulated: meta.extra["simulated"].as_bool().unwrap_or(false),
        _varmap: varmap,
    })
}

/// The ablations of method §7 that change one part of HieraMAS at test time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ablation {
    /// Every proposer and synthesiser is the decision model; the classifier still picks the
    /// topology (the official `--fixed_llm`).
    FixedLlm,
    /// The learned model choice on one seeded random DAG per query; no classifier (the
    /// official `--random_graph`).
    RandomGraph,
}

impl Ablation {
    pub fn name(self) -> &'static str {
        match self {
            Ablation::FixedLlm => "fixed-llm",
            Ablation::RandomGraph => "random-graph",
        }
    }
}

/// HieraMAS at test time (method §6.4): per query, distinct random candidate DAGs (seeded by
/// the seed and the query id), scored by the classifier; the top-1 (or the cost-aware choice)
/// runs with the stage-1 selector's models chosen as the official inference does
/// ([`test_time_choice`]: role skipping, top-N rotation). Unlike the official code the skip
/// decision reads the task's real metadata embedding, not a zero vector (method §10).
pub struct Hieramas {
    pub system: System,
    /// The classifier (not needed by the random-graph ablation).
    pub classifier: Option<Loaded>,
    /// One of the paper's ablations (method §7) instead of the method itself.
    pub ablation: Option<Ablation>,
    pub candidates: usize,
    pub density: [f64; 2],
    pub rule: hieramas_gnn::select::Rule,
    pub seed: u64,
    /// Proposers take the top-N models of one random proposer row (method §6.4).
    pub rotation: usize,
    /// At most this many answer roles are skipped.
    pub skip_roles: usize,
}

impl Hieramas {
    fn query_seed(&self, q: &Query) -> u64 {
        use sha2::Digest;
        let h = sha2::Sha256::digest(q.id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        self.seed.wrapping_add(u64::from_le_bytes(b))
    }

    async fn choose(&self, q: &Query) -> Result<(hieramas_bench::MasSetup, serde_json::Value)> {
        let stage = &self.system.stage;
        let random_graph = self.ablation == Some(Ablation::RandomGraph);
        let pool = generate::pool(
            &stage.names,
            if random_graph { 1 } else { self.candidates },
            self.density[0],
            self.density[1],
            self.query_seed(q),
        )?;
        let graphs: Vec<Vec<[usize; 2]>> = pool
            .graphs
            .iter()
            .map(|g| g.edges().map(|(s, d)| [s, d]).collect())
            .collect();
        let (k, score) = match (&self.classifier, random_graph) {
            (Some(c), false) => {
                let embedding = self.system.task_embedding(q).await?;
                let scores = c.classifier.score(&graphs, &embedding)?;
                let edge_counts: Vec<usize> = graphs.iter().map(Vec::len).collect();
                let k =
                    hieramas_gnn::select::choose(&scores, &edge_counts, self.rule, &c.cost_model)
                        .context("no candidate topology")?;
                (k, Some(scores[k]))
            }
            (None, false) => bail!("HieraMAS needs the stage-2 classifier"),
            (_, true) => (0, None),
        };
        let (logits, _) = stage.logits(&self.system.selector, q).await?;
        let rows: Vec<Vec<Vec<f64>>> = logits
            .iter()
            .map(|l| l.to_dtype(DType::F64)?.to_vec2())
            .collect::<candle_core::Result<_>>()?;
        let answers: Vec<bool> = stage.roles.roles.iter().map(|r| r.answer).collect();
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(self.query_seed(q));
        let acts = test_time_choice(
            &rows,
            &answers,
            stage.ids().len(),
            self.rotation,
            self.skip_roles,
            &mut rng,
        );
        let fixed = self.ablation == Some(Ablation::FixedLlm);
        let members: Vec<Members> = if fixed {
            let width = stage.width;
            (0..stage.names.len())
                .map(|_| Members {
                    proposers: vec![Some(stage.decision.clone()); width],
                    synthesizer: Some(stage.decision.clone()),
                })
                .collect()
        } else {
            acts.iter().map(|a| stage.members(a)).collect()
        };
        // The fixed-LLM ablation runs every role.
        let skipped: Vec<&String> = acts
            .iter()
            .take(if fixed { 0 } else { acts.len() })
            .zip(&stage.names)
            .filter(|(a, _)| a.iter().all(|&k| k == stage.ids().len()))
            .map(|(_, n)| n)
            .collect();
        let plan = serde_json::json!({
            "candidates": graphs.len(),
            "chosen": k,
            "score": score,
            "edges": graphs[k],
            "ablation": self.ablation,
            "rule": self.rule,
            "selected": Stage::selected(&members),
            "skipped_roles": skipped,
        });
        let setup = hieramas_bench::MasSetup {
            topology: pool.graphs[k].clone(),
            roles: stage.roles.clone(),
            members,
            decision: stage.decision.clone(),
            sampling: stage.sampling,
            faithful: false,
            consensus: Some(hieramas_bench::prediction_extractor(stage.benchmark)),
        };
        Ok((setup, plan))
    }
}

#[async_trait::async_trait]
impl hieramas_bench::Planner for Hieramas {
    async fn plan(
        &self,
        q: &Query,
    ) -> Result<(hieramas_bench::MasSetup, serde_json::Value), String> {
        self.choose(q).await.map_err(|e| format!("{e:#}"))
    }
}

/// The test-time models of every supernode (method §6.4 steps 3-4) from the selector's raw
/// logits (`logits[role][position][option]`, positions: proposers then the synthesiser; option
/// `skip` is the skip column):
///
/// - at most `skip_roles` answer roles whose synthesiser row has `skip` as its argmax are
///   skipped, the highest skip probability first, and at least one answer role always stays;
/// - every other role's proposers take the top `rotation` models (never `skip`) of one random
///   proposer row, round-robin, and its synthesiser the argmax of its own row without `skip`.
///
/// Returns the option at every position per role; a skipped role is `skip` everywhere.
pub fn test_time_choice(
    logits: &[Vec<Vec<f64>>],
    answers: &[bool],
    skip: usize,
    rotation: usize,
    skip_roles: usize,
    rng: &mut impl rand::Rng,
) -> Vec<Vec<usize>> {
    let best = |row: &[f64], n: usize| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..row.len()).filter(|&k| k != skip).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        idx.truncate(n.max(1));
        idx
    };
    // Roles that would rather skip, by the softmax probability of `skip` in the synthesiser row.
    let mut wants_skip: Vec<(usize, f64)> = Vec::new();
    for (i, rows) in logits.iter().enumerate() {
        let Some(synth) = rows.last() else { continue };
        if !answers.get(i).copied().unwrap_or(true) || skip >= synth.len() {
            continue;
        }
        let max = synth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = synth.iter().map(|v| (v - max).exp()).sum();
        let argmax = hieramas_gnn::metrics::top1(synth);
        if argmax == Some(skip) {
            wants_skip.push((i, (synth[skip] - max).exp() / z));
        }
    }
    wants_skip.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let answering = answers.iter().filter(|&&a| a).count();
    let allowed = skip_roles.min(answering.saturating_sub(1));
    let skipped: Vec<usize> = wants_skip.iter().take(allowed).map(|w| w.0).collect();
    logits
        .iter()
        .enumerate()
        .map(|(i, rows)| {
            let width = rows.len().saturating_sub(1);
            if skipped.contains(&i) || rows.is_empty() {
                return vec![skip; rows.len()];
            }
            let row = rng.random_range(0..width.max(1));
            let top = best(&rows[row.min(rows.len() - 1)], rotation);
            let mut act: Vec<usize> = (0..width).map(|j| top[j % top.len()]).collect();
            act.push(best(&rows[width], 1)[0]);
            act
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    /// Two proposers + synthesiser over options [a, b, c, skip].
    fn role(prop: [f64; 4], synth: [f64; 4]) -> Vec<Vec<f64>> {
        vec![prop.to_vec(), prop.to_vec(), synth.to_vec()]
    }

    #[test]
    fn rotation_and_role_skipping_as_the_official_inference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let logits = vec![
            role([1.0, 3.0, 2.0, 9.0], [0.0, 1.0, 0.0, 5.0]), // prefers skip, p(skip) high
            role([3.0, 1.0, 2.0, 0.0], [0.0, 2.0, 0.0, 2.5]), // prefers skip, less sure
            role([0.0, 1.0, 2.0, 0.0], [5.0, 0.0, 0.0, 1.0]), // keeps
        ];
        let answers = [true, true, true];
        // Nothing skipped when not allowed: proposers alternate the row's top two (never
        // skip), the synthesiser takes its argmax without skip.
        let a = test_time_choice(&logits, &answers, 3, 2, 0, &mut rng);
        assert_eq!(a[0], vec![1, 2, 1]);
        assert_eq!(a[1], vec![0, 2, 1]);
        assert_eq!(a[2], vec![2, 1, 0]);
        // One allowed: the surer one goes.
        let a = test_time_choice(&logits, &answers, 3, 2, 1, &mut rng);
        assert_eq!(a[0], vec![3, 3, 3]);
        assert_eq!(a[1], vec![0, 2, 1]);
        // Many allowed: both go, the third answer role stays.
        let a = test_time_choice(&logits, &answers, 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2], a[2][2]), (3, 3, 0));
        // Never the last answer role, and never a role whose output is not an answer.
        let a = test_time_choice(&logits[..2], &[true, true], 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2]), (3, 1));
        let a = test_time_choice(&logits[..2], &[false, true], 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2]), (1, 1));
        // rotation 1: every proposer takes the row's best.
        let a = test_time_choice(&logits[2..], &[true], 3, 1, 0, &mut rng);
        assert_eq!(a[0], vec![2, 2, 0]);
    }
}
