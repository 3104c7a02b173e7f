//! Stage 2 (method §6): [`generate_data`] runs random topologies per task with the stage-1
//! selector's choices and labels them; [`fit`] trains the graph classifier on that data (and
//! reports on a held-out dataset); [`Hieramas`] is the trained system's test-time planner.
//!
//! Data generation, as the official scripts, but with two fixes (method §10): the stage-1
//! weights are always loaded (the official MATH and MMLU scripts silently run an untrained
//! selector), and the system reward that ranks a task's runs prices every call of the run, not
//! only the decision call — with ties (successes clamped at the reward floor) broken by the
//! lower cost, see `TaskRecord::label`. A task's candidate DAGs are distinct (the official five draws repeat
//! graphs, most of all for MATH, whose generator can make only 9). Every task's line is written
//! when its runs finish, so a rerun of the same command continues where it stopped.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use futures_util::StreamExt;
use hieramas_bench::query::Query;
use hieramas_gnn::config::{Stage2Config, role_sentences};
use hieramas_gnn::fit::{fit as gnn_fit, groups};
use hieramas_gnn::metrics::{evaluate, top1};
use hieramas_gnn::model::{Classifier, ClassifierConfig, init};
use hieramas_gnn::record::{Dataset, DatasetMeta, Run, TaskRecord};
use hieramas_gnn::select::CostModel;
use hieramas_reward::config::Stage1Config;
use hieramas_reward::selector::{self, Selector};
use hieramas_supernode::Members;
use hieramas_tasks::data::DataDir;
use hieramas_topology::{Topology, generate};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, bail};
use crate::progress::Progress;
use crate::records::{Ablation, Choice, Direction, FitOutput, HeldOut, PlanRecord};
use crate::stage1::{Stage, SystemConfig};

/// Stage-2 data generation: the stage-1 system, its checkpoint, which tasks, how many DAGs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    pub system: SystemConfig,
    /// The stage-1 selector checkpoint (`selector.safetensors` or `best.safetensors`).
    pub stage1: PathBuf,
    /// The split whose tasks are run (`train` for the classifier's data; another split gives a
    /// held-out set).
    pub split: String,
    /// Only the first N tasks of the split (in its seeded order).
    pub limit: Option<usize>,
    /// Distinct random DAGs per task (official: 5).
    pub graphs: Option<usize>,
    /// Proposers per supernode (default: the role set's).
    pub width: Option<usize>,
    /// Tasks in flight at once (official: 6 for MATH and HumanEval, 8 for MMLU).
    pub concurrency: usize,
    /// The dataset directory (default `results/stage2/<benchmark>-<pool>/data-<split>`).
    pub out: Option<PathBuf>,
    /// Start over in `out`.
    pub fresh: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            system: SystemConfig::default(),
            stage1: PathBuf::from("selector.safetensors"),
            split: "train".into(),
            limit: None,
            graphs: None,
            width: None,
            concurrency: 6,
            out: None,
            fresh: false,
        }
    }
}

/// What a data generation leaves.
pub struct DataOutcome {
    pub dataset: Dataset,
    pub records: Vec<TaskRecord>,
    pub simulated: bool,
}

/// The system of stage 2: the stage-1 system and its trained selector.
pub struct TrainedSelector {
    pub stage: Stage,
    pub selector: Selector,
}

impl TrainedSelector {
    /// Loads the stage-1 selector from `stage1` and builds the system of `sys` around it;
    /// SIMULATED models know the `known` queries.
    pub async fn build(
        sys: &SystemConfig,
        data: &DataDir,
        known: &[&Query],
        stage1: &Path,
        width: Option<usize>,
        cache_dir: PathBuf,
        budget: Option<std::sync::Arc<hieramas_llm::Budget>>,
    ) -> Result<TrainedSelector> {
        let benchmark = sys.benchmark;
        let width = width.unwrap_or(sys.role_set()?.width);
        let stage = Stage::build(sys, data, known, cache_dir, width, None, budget).await?;
        let (_, selector) = selector::load(stage1, &stage.dev, DType::F32).with_context(|| {
            format!(
                "stage-1 checkpoint {}: train one with stage 1 (`hieramas train stage1 --benchmark {}`)",
                stage1.display(),
                benchmark.name()
            )
        })?;
        if selector.config.embed_dim != stage.dim {
            bail!(
                "stage-1 checkpoint {} reads {}-d embeddings, but the embedder {} gives {}-d: use the embedder it was trained with",
                stage1.display(),
                selector.config.embed_dim,
                sys.embedder,
                stage.dim
            );
        }
        stage.check_selector(&selector.config, stage1)?;
        if selector.config.max_positions < width + 1 {
            bail!(
                "stage-1 checkpoint {} has {} positions; W = {width} needs {}",
                stage1.display(),
                selector.config.max_positions,
                width + 1
            );
        }
        Ok(TrainedSelector { stage, selector })
    }

    /// The classifier's task embedding: the task's first 2000 characters (method §4.3).
    pub async fn task_embedding(&self, q: &Query) -> Result<Vec<f32>> {
        let head = hieramas_reward::texts::task_text(&q.task);
        let mut e = self
            .stage
            .cache
            .embed(self.stage.embedder.as_ref(), &[head])
            .await?;
        e.pop().context("the embedder returned nothing")
    }

    /// One task's stage-2 line: its embedding, the selector's argmax models, and a run of each
    /// of its distinct random DAGs (seeded by `seed`), labelled.
    pub async fn task_record(
        &self,
        q: &Query,
        cfg: &Stage2Config,
        shape: &hieramas_reward::reward::RewardShape,
        seed: u64,
    ) -> Result<TaskRecord> {
        let embedding = self.task_embedding(q).await?;
        let (members, _) = self
            .stage
            .argmax_members(&self.selector, q, cfg.datagen_synth_skip)
            .await?;
        let pool = generate::pool(
            &self.stage.names,
            cfg.graphs_per_task,
            cfg.density[0],
            cfg.density[1],
            seed,
        )?;
        let mut runs = Vec::with_capacity(pool.graphs.len());
        for g in &pool.graphs {
            let edges: Vec<(usize, usize)> = g.edges().collect();
            runs.push(
                self.run(q, &edges, &members, shape)
                    .await
                    .with_context(|| format!("{}: a stage-2 run", q.id))?,
            );
        }
        let mut r = TaskRecord {
            task_id: q.id.clone(),
            embedding,
            runs,
        };
        r.label(cfg.top);
        Ok(r)
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
            // The fix of method §10.6: every call's cost, not the decision call's alone
            // (`official.decision_cost` restores that).
            reward: shape.reward(
                g.final_ok,
                hieramas_llm::Usd::from_pico(if self.stage.official.decision_cost {
                    g.decision_cost_pico
                } else {
                    g.total_cost_pico
                }),
            ),
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
/// tasks in flight), keeps it in `done`, and reports each to `progress`.
pub async fn append_each(
    stream: impl futures_util::Stream<Item = Result<TaskRecord>>,
    ds: &Dataset,
    done: &mut Vec<TaskRecord>,
    progress: &mut dyn Progress,
) -> Result<()> {
    let mut stream = std::pin::pin!(stream);
    while let Some(r) = stream.next().await {
        let r = r?;
        ds.append(&r)?;
        done.push(r);
        progress.advance(1);
    }
    progress.finish();
    Ok(())
}

/// `hieramas train stage2-data`.
/// Opens the dataset in `ds` for `meta`: its tasks so far (a torn last line dropped), or a new
/// one (`fresh`, or none there yet); refuses data of other settings.
fn open_dataset(ds: &Dataset, meta: &DatasetMeta, fresh: bool) -> Result<Vec<TaskRecord>> {
    let out = &ds.dir;
    if fresh && ds.dir.exists() {
        for p in [ds.meta_path(), ds.tasks_path()] {
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    Ok(match ds.read_meta() {
        Ok(old) if &old == meta => {
            let records = ds.read_tasks()?;
            ds.rewrite_tasks(&records)?;
            records
        }
        Ok(_) => bail!(
            "{} holds stage-2 data made with other settings (pool, stage-1 weights, graphs, seed); use another out directory (--out), or start over there (`fresh`, --fresh)",
            out.display()
        ),
        Err(_) => {
            ds.write_meta(meta)?;
            if ds.tasks_path().exists() {
                std::fs::remove_file(ds.tasks_path())
                    .with_context(|| format!("removing {}", ds.tasks_path().display()))?;
            }
            Vec::new()
        }
    })
}

/// Generates stage-2 data (method §6.1) as `a` says, reporting to `progress`; resumes the
/// dataset in the out directory unless `a.fresh`.
pub async fn generate_data(a: &DataConfig, progress: &mut dyn Progress) -> Result<DataOutcome> {
    let sys = &a.system;
    let benchmark = sys.benchmark;
    let mut cfg = Stage2Config::builtin(benchmark.name())?;
    if let Some(g) = a.graphs {
        cfg.graphs_per_task = g.max(1);
    }
    let data_dir = DataDir::resolve(sys.data_dir.as_deref())?;
    let queries = crate::sim::select(&data_dir, benchmark, &a.split, a.limit)?;
    if queries.is_empty() {
        bail!("{benchmark}/{} selects no queries", a.split);
    }
    let pool_name = crate::models::load_pool(&sys.pool)?.meta.name;
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
    // The official scripts generate the data at stage 1's W (MMLU: 6; method §10.9), ours at
    // the W the system answers with.
    let width = match a.width {
        Some(w) => Some(w),
        None if sys.official.width => Some(Stage1Config::builtin(benchmark.name())?.width),
        None => None,
    };
    let budget = sys.open_budget(Some(&out.join(crate::stage1::BUDGET_LEDGER)))?;
    let system =
        TrainedSelector::build(sys, &data_dir, &known, &a.stage1, width, cache_dir, budget).await?;
    let stage = &system.stage;
    if stage.simulated {
        progress.note(crate::sim::BANNER);
    }
    let ds = Dataset { dir: out.clone() };
    // One writer per dataset: a second process on the same --out is refused.
    let _lock = ds.lock()?;
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
    let mut meta = meta;
    if !sys.official.is_fixed() {
        meta.settings["official"] = sys.official.to_string().into();
    }
    let mut done = open_dataset(&ds, &meta, a.fresh)?;
    let have: std::collections::HashSet<String> = done.iter().map(|r| r.task_id.clone()).collect();
    let todo: Vec<(usize, &Query)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| !have.contains(&q.id))
        .collect();
    let label = if stage.simulated { "SIMULATED " } else { "" };
    progress.note(&format!(
        "{label}stage-2 data · {benchmark}/{} · {} tasks ({} done) x {} DAGs · density {:?} · stage 1 {} · out {}",
        a.split,
        queries.len(),
        done.len(),
        cfg.graphs_per_task,
        cfg.density,
        a.stage1.display(),
        out.display()
    ));
    progress.start(queries.len() as u64, done.len() as u64, "tasks");
    progress.message(&format!("{label}stage-2 data"));
    let shape = Stage1Config::builtin(benchmark.name())?.reward();
    let system = &system;
    let shape = &shape;
    let cfg_ref = &cfg;
    let stream = futures_util::stream::iter(todo)
        .map(|(idx, q)| {
            let seed = sys.seed.wrapping_mul(1_000_003).wrapping_add(idx as u64);
            system.task_record(q, cfg_ref, shape, seed)
        })
        .buffered(a.concurrency.max(1));
    append_each(stream, &ds, &mut done, progress).await?;
    // The file may hold more tasks (an earlier, larger --limit): report and return the selected.
    let selected: std::collections::HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    done.retain(|r| selected.contains(r.task_id.as_str()));
    let runs: usize = done.iter().map(|r| r.runs.len()).sum();
    let pos: usize = done.iter().map(TaskRecord::positives).sum();
    let solved: usize = done
        .iter()
        .map(|r| r.runs.iter().filter(|x| x.solved).count())
        .sum();
    progress.note(&format!(
        "{label}stage-2 data: {} tasks, {runs} runs, {:.1}% solved, {pos} positives -> {}",
        done.len(),
        100.0 * solved as f64 / runs.max(1) as f64,
        ds.tasks_path().display()
    ));
    Ok(DataOutcome {
        dataset: ds,
        records: done,
        simulated: stage.simulated,
    })
}

/// Fitting the stage-2 classifier: the data, a held-out set, and where the official settings
/// (`configs/stage2.toml` of hieramas-gnn) are overridden.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitConfig {
    /// A dataset of [`generate_data`].
    pub data: PathBuf,
    /// A held-out dataset (another split, same settings) to report on.
    pub test: Option<PathBuf>,
    /// Where the classifier and its report go (default: `<data>/../classifier`).
    pub out: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
    /// Aggregate over predecessors (execution direction) instead of the official successors.
    pub predecessors: bool,
}

impl FitConfig {
    /// Where the classifier goes: `out`, else `<data>/../classifier`.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            self.data
                .parent()
                .map_or_else(|| PathBuf::from("classifier"), |p| p.join("classifier"))
        })
    }
}

/// The outcome of picking one run per task by `pick` (`None`: the mean over all runs, i.e. a
/// uniformly random pick in expectation).
pub fn choice(
    records: &[TaskRecord],
    pick: impl Fn(usize, &TaskRecord) -> Option<usize>,
) -> Choice {
    let (solved, cost) = per_task(records, pick);
    let n = records.len().max(1) as f64;
    Choice {
        tasks: records.len(),
        accuracy: solved.iter().sum::<f64>() / n,
        stderr: hieramas_gnn::metrics::standard_error(&solved).unwrap_or(0.0),
        cost_usd: cost.iter().sum::<f64>() / n,
    }
}

/// Per task, the solved share and the cost (USD) of running the candidate `pick` gives (all of
/// them on average for `None`).
fn per_task(
    records: &[TaskRecord],
    pick: impl Fn(usize, &TaskRecord) -> Option<usize>,
) -> (Vec<f64>, Vec<f64>) {
    records
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n = t.runs.len().max(1) as f64;
            match pick(i, t) {
                Some(k) => (
                    f64::from(u8::from(t.runs[k].solved)),
                    t.runs[k].cost_pico as f64 / 1e12,
                ),
                None => (
                    t.runs.iter().filter(|r| r.solved).count() as f64 / n,
                    t.runs
                        .iter()
                        .map(|r| r.cost_pico as f64 / 1e12)
                        .sum::<f64>()
                        / n,
                ),
            }
        })
        .unzip()
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
    let (chosen, _) = per_task(records, |i, _| top1(&g[i].scores));
    let (random, _) = per_task(records, |_, _| None);
    let gains: Vec<f64> = chosen.iter().zip(&random).map(|(c, r)| c - r).collect();
    let classifier_vs_random = hieramas_gnn::metrics::standard_error(&gains)
        .map(|se| (gains.iter().sum::<f64>() / gains.len() as f64, se));
    Ok(HeldOut {
        metrics,
        random_task_auc,
        classifier_vs_random,
        classifier: choice(records, |i, _| top1(&g[i].scores)),
        random: choice(records, |_, _| None),
        oracle: choice(records, |_, t| {
            let rewards: Vec<f64> = t.runs.iter().map(|r| r.reward).collect();
            top1(&rewards)
        }),
    })
}

/// `hieramas train stage2`.
/// The classifier's results on the held-out dataset in `dir`, which must have the training
/// data's roles and embedder and share none of its tasks.
fn held_out_of(
    cls: &Classifier,
    dir: &Path,
    meta: &DatasetMeta,
    records: &[TaskRecord],
    seed: u64,
) -> Result<HeldOut> {
    let t = Dataset {
        dir: dir.to_path_buf(),
    };
    let tmeta = t.read_meta()?;
    if tmeta.roles != meta.roles || tmeta.embedder != meta.embedder {
        bail!(
            "held-out data {}: roles or embedder differ from the training data",
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
            "held-out data {}: {overlap} of its tasks are in the training data; a held-out set must not share tasks",
            dir.display()
        );
    }
    held_out(cls, &recs, seed)
}

/// Fits the stage-2 classifier (method §6.2-6.3) as `a` says, reporting each epoch to
/// `progress`; writes `classifier.safetensors` and `report.json` ([`FitOutput`]).
pub fn fit(a: &FitConfig, progress: &mut dyn Progress) -> Result<FitOutput> {
    let ds = Dataset {
        dir: a.data.clone(),
    };
    let meta = ds.read_meta().with_context(|| {
        format!(
            "stage-2 data {}: make it with stage-2 data generation (`hieramas train stage2-data`)",
            a.data.display()
        )
    })?;
    let records = ds.read_tasks()?;
    if records.is_empty() {
        bail!("stage-2 data {} holds no tasks yet", a.data.display());
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
    let out = a.out_dir();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let label = if meta.simulated { "SIMULATED " } else { "" };
    if meta.simulated {
        progress.note(crate::sim::BANNER);
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
    progress.note(&format!(
        "{label}stage 2 · {} · {} tasks, {runs} graphs, {pos} positive · up to {} epochs, batch {}, lr {} · out {}",
        meta.benchmark,
        records.len(),
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        out.display()
    ));
    progress.start(cfg.epochs as u64, 0, "epochs");
    let report = gnn_fit(&cls, &varmap, &records, &cfg, |e| {
        progress.advance(1);
        progress.note(&format!(
            "{label}epoch {:>2}: loss {:.4}  lr {:.2e}  valid task ROC-AUC {}  top-1 hit {} (random {})",
            e.epoch,
            e.loss,
            e.lr,
            fmt(e.valid.task_auc),
            fmt(e.valid.top1_hit),
            fmt(e.valid.top1_random)
        ));
    })?;
    progress.finish();
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
        Some(dir) => Some(held_out_of(&cls, dir, &meta, &records, cfg.seed)?),
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
    crate::records::write_json_atomic(&out.join("report.json"), &output)?;
    progress.note(&format!(
        "{label}classifier: {} (best epoch {}, valid task ROC-AUC {:.3})",
        path.display(),
        output.fit.best_epoch,
        output.fit.best_selection
    ));
    if let Some(h) = &output.test {
        progress.note(&format!(
            "{label}held out ({} tasks): task ROC-AUC {} (random scores {}), top-1 hit {} (random {}); accuracy {:.1}% top-1 vs {:.1}% random vs {:.1}% oracle",
            h.metrics.tasks,
            fmt(h.metrics.task_auc),
            fmt(h.random_task_auc),
            fmt(h.metrics.top1_hit),
            fmt(h.metrics.top1_random),
            100.0 * h.classifier.accuracy,
            100.0 * h.random.accuracy,
            100.0 * h.oracle.accuracy
        ));
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

/// HieraMAS at test time (method §6.4): per query, distinct random candidate DAGs (seeded by
/// the seed and the query id), scored by the classifier; the top-1 (or the cost-aware choice)
/// runs with the stage-1 selector's models chosen as the official inference does
/// ([`test_time_choice`]: role skipping, top-N rotation). Unlike the official code the skip
/// decision reads the task's real metadata embedding, not a zero vector (method §10).
pub struct Hieramas {
    pub system: TrainedSelector,
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

/// What a trained HieraMAS is made of: the stage-1 system and checkpoint, the stage-2
/// classifier, and the test-time settings (the benchmark's official ones unless set).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HieramasConfig {
    pub system: SystemConfig,
    /// The stage-1 selector checkpoint.
    pub stage1: PathBuf,
    /// The stage-2 classifier (`classifier.safetensors`; not needed by the random-graph
    /// ablation).
    pub stage2: Option<PathBuf>,
    /// One of the paper's ablations (method §7) instead of the method itself.
    pub ablation: Option<Ablation>,
    /// Candidate DAGs scored per query (default: the benchmark's official count).
    pub candidates: Option<usize>,
    /// Run the candidate with the best `score − λ·expected cost (USD)` instead of the top score
    /// (the official rule).
    pub cost_lambda: Option<f64>,
    /// Proposers per supernode (default: the role set's).
    pub width: Option<usize>,
}

impl Default for HieramasConfig {
    fn default() -> Self {
        HieramasConfig {
            system: SystemConfig::default(),
            stage1: PathBuf::from("selector.safetensors"),
            stage2: None,
            ablation: None,
            candidates: None,
            cost_lambda: None,
            width: None,
        }
    }
}

/// A loaded HieraMAS: the planner, what defines it (for configuration hashes), and its name in
/// reports (`hieramas:<pool>`, `SIMULATED-hieramas-fixed-llm:<pool>`, …).
pub struct LoadedHieramas {
    pub planner: Hieramas,
    pub description: serde_json::Value,
    pub name: String,
}

impl Hieramas {
    /// Loads the trained system of `cfg`; SIMULATED models (if the pool has them) know the
    /// `known` queries; every call is charged to `budget` when set. Notices (a SIMULATED pool,
    /// fewer candidates than asked) go to `progress`.
    pub async fn load(
        cfg: &HieramasConfig,
        data: &DataDir,
        known: &[&Query],
        budget: Option<std::sync::Arc<hieramas_llm::Budget>>,
        progress: &mut dyn Progress,
    ) -> Result<LoadedHieramas> {
        let needs_classifier = cfg.ablation != Some(Ablation::RandomGraph);
        if needs_classifier && cfg.stage2.is_none() {
            bail!(
                "HieraMAS needs the stage-2 classifier (`stage2`, --stage2; `hieramas train stage2` makes one); only the random-graph ablation does without"
            );
        }
        let sys = &cfg.system;
        let embeddings = sys
            .embeddings
            .clone()
            .unwrap_or_else(|| PathBuf::from("results/eval/embeddings"));
        let system =
            TrainedSelector::build(sys, data, known, &cfg.stage1, cfg.width, embeddings, budget)
                .await?;
        if system.stage.simulated {
            progress.note(crate::sim::BANNER);
        }
        let classifier = match &cfg.stage2 {
            Some(path) if needs_classifier => Some((path, load_classifier(path)?)),
            _ => None,
        };
        if let Some((stage2, classifier)) = &classifier {
            let c = &classifier.classifier.config;
            if c.task_dim != system.stage.dim || c.roles != system.stage.names {
                bail!(
                    "stage-2 classifier {}: made for roles {:?} and {}-d task embeddings, not this system's {:?} and {}-d",
                    stage2.display(),
                    c.roles,
                    c.task_dim,
                    system.stage.names,
                    system.stage.dim
                );
            }
            if classifier.embedder != system.stage.embedder.id() {
                bail!(
                    "stage-2 classifier {} read {} embeddings; the embedder gives {}",
                    stage2.display(),
                    classifier.embedder,
                    system.stage.embedder.id()
                );
            }
            if classifier.simulated && !system.stage.simulated {
                progress.note(&format!(
                    "warning: the stage-2 classifier {} was trained on SIMULATED data; its choices for real models are untested",
                    stage2.display()
                ));
            }
        }
        let settings = Stage2Config::builtin(sys.benchmark.name())?;
        let rule = match cfg.cost_lambda {
            Some(lambda) => hieramas_gnn::select::Rule::CostAware { lambda },
            None => hieramas_gnn::select::Rule::Top1,
        };
        let mut candidates = cfg.candidates.unwrap_or(settings.candidates).max(1);
        // A small space (MATH: 9 DAGs over 3 roles) cannot give more: score all it has.
        let probe = generate::pool(
            &system.stage.names,
            candidates,
            settings.candidate_density[0],
            settings.candidate_density[1],
            sys.seed,
        )?;
        if probe.graphs.len() < candidates {
            progress.note(&format!(
                "{} roles with density {:?} give {} distinct DAGs, not {candidates}: scoring all of them",
                system.stage.names.len(),
                settings.candidate_density,
                probe.graphs.len()
            ));
            candidates = probe.graphs.len();
        }
        let stage = &system.stage;
        let description = serde_json::json!({
            "stage1": cfg.stage1,
            "stage1_sha256": checkpoint_sha(&cfg.stage1)?,
            "stage2": classifier.as_ref().map(|c| c.0),
            "stage2_sha256": classifier.as_ref().map(|c| checkpoint_sha(c.0)).transpose()?,
            "ablation": cfg.ablation,
            "candidates": candidates,
            "width": stage.width,
            "density": settings.candidate_density,
            "rule": rule,
            "rotation": settings.rotation,
            "skip_roles": settings.skip_roles,
            "decision": stage.decision_id,
            "pool": stage.models.specs(stage.ids().iter().chain([&stage.decision_id]))?,
        });
        let label = match cfg.ablation {
            Some(x) => format!("hieramas-{}", x.name()),
            None => "hieramas".to_string(),
        };
        let name = if stage.simulated && !stage.pool_name.contains("SIMULATED") {
            format!("SIMULATED-{label}:{}", stage.pool_name)
        } else {
            format!("{label}:{}", stage.pool_name)
        };
        let planner = Hieramas {
            system,
            classifier: classifier.map(|c| c.1),
            ablation: cfg.ablation,
            candidates,
            density: settings.candidate_density,
            rule,
            seed: sys.seed,
            rotation: settings.rotation,
            skip_roles: settings.skip_roles,
        };
        Ok(LoadedHieramas {
            planner,
            description,
            name,
        })
    }

    fn query_seed(&self, q: &Query) -> u64 {
        use sha2::Digest;
        let h = sha2::Sha256::digest(q.id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        self.seed.wrapping_add(u64::from_le_bytes(b))
    }

    /// The topology and models for `q`, and the record of that choice.
    pub async fn choose(&self, q: &Query) -> Result<(hieramas_bench::MasSetup, PlanRecord)> {
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
        let to_rows = |logits: Vec<candle_core::Tensor>| {
            logits
                .iter()
                .map(|l| l.to_dtype(DType::F64)?.to_vec2())
                .collect::<candle_core::Result<Vec<Vec<Vec<f64>>>>>()
        };
        let (logits, _) = stage.logits(&self.system.selector, q, false).await?;
        let rows = to_rows(logits)?;
        let skip_rows = if stage.official.skip_metadata {
            let (logits, _) = stage.logits(&self.system.selector, q, true).await?;
            Some(to_rows(logits)?)
        } else {
            None
        };
        let answers: Vec<bool> = stage.roles.roles.iter().map(|r| r.answer).collect();
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(self.query_seed(q));
        let acts = test_time_choice(
            &rows,
            skip_rows.as_deref(),
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
        let plan = PlanRecord {
            candidates: graphs.len(),
            chosen: k,
            score,
            edges: graphs[k].clone(),
            ablation: self.ablation,
            rule: self.rule,
            selected: Stage::selected(&members),
            skipped_roles: skipped.into_iter().cloned().collect(),
        };
        let setup = hieramas_bench::MasSetup {
            topology: pool.graphs[k].clone(),
            roles: stage.roles.clone(),
            members,
            decision: stage.decision.clone(),
            sampling: stage.sampling,
            faithful: stage.official.config_order,
            consensus: Some(crate::system::consensus_extractor(
                stage.benchmark,
                stage.official,
            )),
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
        let (setup, plan) = self.choose(q).await.map_err(|e| e.report())?;
        let plan = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
        Ok((setup, plan))
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
/// `skip_logits` (default: `logits`) are the rows the skip decision reads: the official code
/// reads them with a zero metadata vector (method §10.10).
///
/// Returns the option at every position per role; a skipped role is `skip` everywhere.
pub fn test_time_choice(
    logits: &[Vec<Vec<f64>>],
    skip_logits: Option<&[Vec<Vec<f64>>]>,
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
    for (i, rows) in skip_logits.unwrap_or(logits).iter().enumerate() {
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
        let a = test_time_choice(&logits, None, &answers, 3, 2, 0, &mut rng);
        assert_eq!(a[0], vec![1, 2, 1]);
        assert_eq!(a[1], vec![0, 2, 1]);
        assert_eq!(a[2], vec![2, 1, 0]);
        // One allowed: the surer one goes.
        let a = test_time_choice(&logits, None, &answers, 3, 2, 1, &mut rng);
        assert_eq!(a[0], vec![3, 3, 3]);
        assert_eq!(a[1], vec![0, 2, 1]);
        // Many allowed: both go, the third answer role stays.
        let a = test_time_choice(&logits, None, &answers, 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2], a[2][2]), (3, 3, 0));
        // Never the last answer role, and never a role whose output is not an answer.
        let a = test_time_choice(&logits[..2], None, &[true, true], 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2]), (3, 1));
        let a = test_time_choice(&logits[..2], None, &[false, true], 3, 2, 5, &mut rng);
        assert_eq!((a[0][2], a[1][2]), (1, 1));
        // rotation 1: every proposer takes the row's best.
        let a = test_time_choice(&logits[2..], None, &[true], 3, 1, 0, &mut rng);
        assert_eq!(a[0], vec![2, 2, 0]);
        // The skip decision reads its own rows (the official zero-metadata ones): the third
        // role wants to skip there, the first does not; the models still come from `logits`.
        let skip_rows = vec![
            role([1.0, 3.0, 2.0, 9.0], [9.0, 1.0, 0.0, 0.0]),
            role([3.0, 1.0, 2.0, 0.0], [0.0, 2.0, 0.0, 0.0]),
            role([0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]),
        ];
        let a = test_time_choice(&logits, Some(&skip_rows), &answers, 3, 2, 1, &mut rng);
        assert_eq!(a[2], vec![3, 3, 3]);
        assert_eq!(a[0][2], 1, "kept, its synthesiser from the real rows");
    }
}
