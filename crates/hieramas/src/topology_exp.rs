//! The topology experiment: holistic (the stage-2 classifier, per task) against per-edge
//! (GPTSwarm-style REINFORCE over edge probabilities, one graph for all tasks) topology
//! choice, with the same budget of runs, on held-out tasks; beside them a random candidate,
//! the best candidate (oracle), and the full graph.
//!
//! Steps, each resumable: stage-2 data on the first `train_limit` train tasks and on the first
//! `test_limit` tasks of `test_split` → the classifier → the edge-wise policy, trained on the
//! train tasks with as many runs as the classifier's data took → the full graph and the
//! edge-wise graph run on the held-out tasks → `REPORT.md` and `results.json`.

use std::path::PathBuf;

use futures_util::StreamExt;
use hieramas_bench::query::Query;
use hieramas_gnn::config::Stage2Config;
use hieramas_gnn::edgewise::{EdgePolicy, Sampled};
use hieramas_gnn::record::{Dataset, DatasetMeta, TaskRecord};
use hieramas_reward::config::Stage1Config;
use hieramas_tasks::data::DataDir;
use hieramas_topology::shapes;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::progress::Progress;
use crate::records::{Choice, FitOutput, HeldOut};
use crate::stage1::SystemConfig;
use crate::stage2::{DataConfig, FitConfig, TrainedSelector, choice, fmt};

/// The topology experiment's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopologyConfig {
    pub system: SystemConfig,
    /// The stage-1 selector checkpoint.
    pub stage1: PathBuf,
    /// Train tasks for the classifier's data (and the edge-wise policy's budget).
    pub train_limit: usize,
    /// Held-out tasks.
    pub test_limit: usize,
    pub test_split: String,
    /// Tasks (data generation) or runs (edge-wise) in flight at once.
    pub concurrency: usize,
    /// Adam learning rate of the edge logits (GPTSwarm: 0.1).
    pub edge_lr: f64,
    pub out: PathBuf,
    /// Start every step over.
    pub fresh: bool,
    /// The command that reproduces the run, for the report.
    pub command: String,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            system: SystemConfig::default(),
            stage1: PathBuf::from("selector.safetensors"),
            train_limit: 200,
            test_limit: 100,
            test_split: "test".into(),
            concurrency: 6,
            edge_lr: 0.1,
            out: PathBuf::from("results/experiments/topology"),
            fresh: false,
            command: String::new(),
        }
    }
}

/// What the experiment leaves: the report (also `<out>/REPORT.md`).
pub struct TopologyOutcome {
    pub report_md: String,
    pub report_path: PathBuf,
    pub simulated: bool,
}

/// The edge-wise policy after training, as `edgewise.json` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct EdgeRun {
    fingerprint: serde_json::Value,
    policy: EdgePolicy,
    /// Mean reward of each step's samples.
    curve: Vec<f64>,
    runs: usize,
    edges: Vec<(usize, usize)>,
}

#[derive(serde::Serialize)]
struct Row {
    method: String,
    accuracy: f64,
    /// Standard error of `accuracy` over the held-out tasks.
    stderr: f64,
    cost_usd: f64,
    top1_hit: Option<f64>,
    task_auc: Option<f64>,
}

#[derive(serde::Serialize)]
struct Results {
    simulated: bool,
    benchmark: String,
    command: String,
    train_tasks: usize,
    test_tasks: usize,
    budget_runs: usize,
    rows: Vec<Row>,
    classifier: FitOutput,
    edgewise_edges: Vec<[String; 2]>,
    edgewise_curve: Vec<f64>,
}

/// Runs the topology experiment (every step resumes), reporting to `progress`.
pub async fn run(a: &TopologyConfig, progress: &mut dyn Progress) -> Result<TopologyOutcome> {
    let sys = &a.system;
    let benchmark = sys.benchmark;
    let cfg = Stage2Config::builtin(benchmark.name())?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let embeddings = sys
        .embeddings
        .clone()
        .unwrap_or_else(|| a.out.join("embeddings"));
    let with_cache = SystemConfig {
        embeddings: Some(embeddings.clone()),
        ..sys.clone()
    };
    let data_args = |split: &str, limit: usize, dir: &str| DataConfig {
        system: with_cache.clone(),
        stage1: a.stage1.clone(),
        split: split.into(),
        limit: Some(limit),
        graphs: None,
        width: None,
        concurrency: a.concurrency,
        out: Some(a.out.join(dir)),
        fresh: a.fresh,
    };
    // 1. Stage-2 data, train and held out.
    let train =
        crate::stage2::generate_data(&data_args("train", a.train_limit, "data-train"), progress)
            .await?;
    let test = crate::stage2::generate_data(
        &data_args(&a.test_split, a.test_limit, "data-test"),
        progress,
    )
    .await?;
    let label = if train.simulated { "SIMULATED " } else { "" };
    // 2. The classifier.
    let fitted = crate::stage2::fit(
        &FitConfig {
            data: train.dataset.dir.clone(),
            test: Some(test.dataset.dir.clone()),
            out: Some(a.out.join("classifier")),
            epochs: None,
            lr: None,
            batch_size: None,
            seed: None,
            predecessors: false,
        },
        progress,
    )?;
    let held = fitted.test.clone().context("no held-out report")?;

    // 3. The edge-wise policy with the same budget of runs.
    let data = DataDir::resolve(sys.data_dir.as_deref())?;
    let train_q = crate::sim::select(&data, benchmark, "train", Some(a.train_limit))?;
    let test_q = crate::sim::select(&data, benchmark, &a.test_split, Some(a.test_limit))?;
    let known: Vec<&Query> = train_q.iter().chain(&test_q).collect();
    let system =
        TrainedSelector::build(sys, &data, &known, &a.stage1, None, embeddings, None).await?;
    let names = system.stage.names.clone();
    let shape = Stage1Config::builtin(benchmark.name())?.reward();
    let budget: usize = train.records.iter().map(|r| r.runs.len()).sum();
    let meta: DatasetMeta = train.dataset.read_meta()?;
    let edge_run = edgewise(
        a, &system, &train_q, budget, &meta, &shape, &cfg, label, progress,
    )
    .await?;

    // 4. Full graph and the edge-wise graph on the held-out tasks.
    let fixed = fixed_graphs(
        a,
        &system,
        &test_q,
        &edge_run.edges,
        &shape,
        &cfg,
        label,
        progress,
    )
    .await?;

    // 5. The report.
    let row = |method: &str, c: &Choice, hit: Option<f64>, auc: Option<f64>| Row {
        method: method.into(),
        accuracy: c.accuracy,
        stderr: c.stderr,
        cost_usd: c.cost_usd,
        top1_hit: hit,
        task_auc: auc,
    };
    let rows = vec![
        row(
            "HieraMAS classifier (top-1 of the candidates)",
            &held.classifier,
            held.metrics.top1_hit,
            held.metrics.task_auc,
        ),
        row(
            "random candidate (expectation)",
            &held.random,
            held.metrics.top1_random,
            held.random_task_auc,
        ),
        row("best candidate (oracle)", &held.oracle, Some(1.0), None),
        row("full graph", &fixed[0], None, None),
        row(
            "edge-wise REINFORCE (one learned graph)",
            &fixed[1],
            None,
            None,
        ),
    ];
    let edge_names: Vec<[String; 2]> = edge_run
        .edges
        .iter()
        .map(|&(s, d)| [names[s].clone(), names[d].clone()])
        .collect();
    let command = a.command.clone();
    let results = Results {
        simulated: train.simulated,
        benchmark: benchmark.name().into(),
        command: command.clone(),
        train_tasks: train.records.len(),
        test_tasks: test.records.len(),
        budget_runs: budget,
        rows,
        classifier: fitted,
        edgewise_edges: edge_names,
        edgewise_curve: edge_run.curve.clone(),
    };
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    let report = report(&results, &held, cfg.graphs_per_task);
    std::fs::write(a.out.join("REPORT.md"), &report)?;
    Ok(TopologyOutcome {
        report_md: report,
        report_path: a.out.join("REPORT.md"),
        simulated: results.simulated,
    })
}

/// The edge-wise REINFORCE policy (GPTSwarm-style), trained on the train tasks with `budget`
/// runs, or the one saved with the same settings.
#[allow(clippy::too_many_arguments)]
async fn edgewise(
    a: &TopologyConfig,
    system: &TrainedSelector,
    train_q: &[Query],
    budget: usize,
    meta: &DatasetMeta,
    shape: &hieramas_reward::reward::RewardShape,
    cfg: &Stage2Config,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<EdgeRun> {
    let sys = &a.system;
    let names = system.stage.names.clone();
    let fingerprint = serde_json::json!({
        "data": meta.settings,
        "budget": budget,
        "lr": a.edge_lr,
        "graphs": cfg.graphs_per_task,
    });
    let edge_path = a.out.join("edgewise.json");
    let saved: Option<EdgeRun> = std::fs::read_to_string(&edge_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|r: &EdgeRun| r.fingerprint == fingerprint && !a.fresh);
    Ok(match saved {
        Some(r) => r,
        None => {
            let mut policy = EdgePolicy::new(names.len(), 0.0);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(sys.seed);
            let mut curve = Vec::new();
            let mut runs = 0usize;
            progress.start(budget as u64, 0, "runs");
            progress.message(&format!("{label}edge-wise REINFORCE"));
            let per_step = cfg.graphs_per_task.max(1);
            let mut k = 0usize;
            while runs < budget && !train_q.is_empty() {
                let q = &train_q[k % train_q.len()];
                k += 1;
                let (members, _) = system
                    .stage
                    .argmax_members(&system.selector, q, cfg.datagen_synth_skip)
                    .await?;
                let n = per_step.min(budget - runs);
                let samples: Vec<Sampled> = (0..n).map(|_| policy.sample(&mut rng)).collect();
                let results: Vec<Result<f64>> = futures_util::stream::iter(&samples)
                    .map(|s| {
                        let members = &members;
                        let shape = &shape;
                        let system = &system;
                        async move { Ok(system.run(q, &s.edges, members, shape).await?.reward) }
                    })
                    .buffered(a.concurrency.max(1))
                    .collect()
                    .await;
                let mut batch = Vec::with_capacity(n);
                for (s, r) in samples.into_iter().zip(results) {
                    batch.push((s, r?));
                }
                runs += n;
                progress.advance(n as u64);
                curve.push(policy.update(&batch, a.edge_lr));
            }
            progress.finish();
            let r = EdgeRun {
                fingerprint,
                edges: policy.best(),
                policy,
                curve,
                runs,
            };
            std::fs::write(&edge_path, serde_json::to_string_pretty(&r)? + "\n")
                .with_context(|| format!("writing {}", edge_path.display()))?;
            r
        }
    })
}

/// The full graph and the edge-wise graph, each run on every held-out task (resumable).
#[allow(clippy::too_many_arguments)]
async fn fixed_graphs(
    a: &TopologyConfig,
    system: &TrainedSelector,
    test_q: &[Query],
    edgewise: &[(usize, usize)],
    shape: &hieramas_reward::reward::RewardShape,
    cfg: &Stage2Config,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<Vec<Choice>> {
    let names = system.stage.names.clone();
    let full: Vec<(usize, usize)> = shapes::full(names.clone())?.edges().collect();
    let mut fixed = Vec::new();
    for (slug, edges) in [("full", full), ("edgewise", edgewise.to_vec())] {
        let ds = Dataset {
            dir: a.out.join(format!("eval-{slug}")),
        };
        if a.fresh && ds.tasks_path().exists() {
            std::fs::remove_file(ds.tasks_path())?;
        }
        std::fs::create_dir_all(&ds.dir)?;
        let mut done = ds.read_tasks()?;
        // Results of another graph (the edge-wise one changed) are not reused.
        let want: Vec<[usize; 2]> = edges.iter().map(|&(s, d)| [s, d]).collect();
        done.retain(|r| r.runs.first().is_some_and(|x| x.edges == want));
        ds.rewrite_tasks(&done)?;
        let have: std::collections::HashSet<String> =
            done.iter().map(|r| r.task_id.clone()).collect();
        let todo: Vec<&Query> = test_q.iter().filter(|q| !have.contains(&q.id)).collect();
        progress.start(test_q.len() as u64, done.len() as u64, "held-out tasks");
        progress.message(&format!("{label}{slug} graph"));
        let stream = futures_util::stream::iter(todo)
            .map(|q| {
                let (system, shape, edges) = (&system, &shape, &edges);
                async move {
                    let (members, _) = system
                        .stage
                        .argmax_members(&system.selector, q, cfg.datagen_synth_skip)
                        .await?;
                    let run = system.run(q, edges, &members, shape).await?;
                    Ok::<_, crate::error::Error>(TaskRecord {
                        task_id: q.id.clone(),
                        embedding: Vec::new(),
                        runs: vec![run],
                    })
                }
            })
            .buffered(a.concurrency.max(1));
        crate::stage2::append_each(stream, &ds, &mut done, progress).await?;
        fixed.push(choice(&done, |_, _| Some(0)));
    }
    Ok(fixed)
}

fn report(r: &Results, held: &HeldOut, graphs: usize) -> String {
    let mut s = String::new();
    if r.simulated {
        s.push_str(&format!("> {}\n\n", crate::sim::BANNER));
    }
    let sim = if r.simulated { "SIMULATED " } else { "" };
    s.push_str(&format!(
        "# {sim}Topology choice: holistic (classifier) vs per-edge (REINFORCE) — {}\n\n",
        r.benchmark
    ));
    s.push_str(&format!("Command: `{}`\n\n", r.command));
    s.push_str(&format!(
        "Train tasks {} ({} runs = the edge-wise budget); held-out tasks {}, each with {graphs} distinct candidate DAGs run once.\n\n",
        r.train_tasks, r.budget_runs, r.test_tasks
    ));
    s.push_str("| method | accuracy ± s.e. | cost / query (USD) | top-1 hit | task ROC-AUC |\n|---|---:|---:|---:|---:|\n");
    for row in &r.rows {
        s.push_str(&format!(
            "| {} | {:.1}% ± {:.1} | {:.6} | {} | {} |\n",
            row.method,
            100.0 * row.accuracy,
            100.0 * row.stderr,
            row.cost_usd,
            fmt(row.top1_hit),
            fmt(row.task_auc)
        ));
    }
    s.push_str(&format!(
        "\nClassifier: best epoch {} of {}, validation task ROC-AUC {:.3}; held out: {} tasks with both labels, {} with a positive; pooled ROC-AUC {}.\n",
        r.classifier.fit.best_epoch,
        r.classifier.fit.epochs.len(),
        r.classifier.fit.best_selection,
        held.metrics.auc_tasks,
        held.metrics.hit_tasks,
        fmt(held.metrics.pooled_auc)
    ));
    s.push_str(&format!(
        "\nEdge-wise learned graph: {}.\n",
        if r.edgewise_edges.is_empty() {
            "no edges".to_string()
        } else {
            r.edgewise_edges
                .iter()
                .map(|[a, b]| format!("{a} → {b}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    s.push_str(&significance(r, held));
    s.push_str("\nTop-1 hit: share of held-out tasks with a positive candidate whose chosen candidate is positive (random: the mean share of positives). Task ROC-AUC: mean over held-out tasks with both labels (random: seeded random scores).\n");
    s
}

/// The differences that decide, each with its standard error and z = difference / s.e.
/// (|z| ≥ 1.96: significant at the 5% level, two-sided, normal approximation).
fn significance(r: &Results, held: &HeldOut) -> String {
    let m = &held.metrics;
    let z = |d: f64, se: f64| if se > 0.0 { d / se } else { f64::NAN };
    let verdict = |z: f64| {
        if z.abs() >= 1.96 {
            "significant at 5%"
        } else {
            "not significant at 5%"
        }
    };
    let mut s =
        String::from("\nSignificance (held-out tasks; z = difference / standard error):\n\n");
    if let (Some(auc), Some(se)) = (m.task_auc, m.task_auc_se) {
        let zz = z(auc - 0.5, se);
        s.push_str(&format!(
            "- Classifier task ROC-AUC {auc:.3} ± {se:.3} vs 0.5 (chance), over {} tasks: z = {zz:.2}, {}.\n",
            m.auc_tasks,
            verdict(zz)
        ));
    }
    if let (Some(hit), Some(random), Some(se)) = (m.top1_hit, m.top1_random, m.top1_gain_se) {
        let zz = z(hit - random, se);
        s.push_str(&format!(
            "- Top-1 hit {hit:.3} vs a random pick {random:.3} (paired over {} tasks with a positive): {:+.3} ± {se:.3}, z = {zz:.2}, {}.\n",
            m.hit_tasks,
            hit - random,
            verdict(zz)
        ));
    }
    if let Some((d, se)) = held.classifier_vs_random {
        let zz = z(d, se);
        s.push_str(&format!(
            "- Accuracy, classifier's top-1 vs a random candidate (paired per task): {:+.1} ± {:.1} points, z = {zz:.2}, {}.\n",
            100.0 * d,
            100.0 * se,
            verdict(zz)
        ));
    }
    let classifier = r.rows.first();
    for other in r.rows.iter().skip(3) {
        if let Some(c) = classifier {
            let d = c.accuracy - other.accuracy;
            let se = (c.stderr.powi(2) + other.stderr.powi(2)).sqrt();
            let zz = z(d, se);
            s.push_str(&format!(
                "- Accuracy, classifier vs {} (unpaired): {:+.1} ± {:.1} points, z = {zz:.2}, {}.\n",
                other.method,
                100.0 * d,
                100.0 * se,
                verdict(zz)
            ));
        }
    }
    s
}
