//! Fitting the SIMULATED world to the paper's system-level results (`hieramas experiment
//! fit-sim`).
//!
//! The simulator's single models are calibrated to published single-model accuracies by
//! construction; how much a multi-agent system gains over them is not: it depends on how
//! correlated the models' errors are (`correlation`) and how often a synthesiser keeps a correct
//! candidate that several agree on (`agreement`). This module measures, on a grid of those two,
//! the accuracy of a *reference system* — the benchmark's roles on a random DAG of the stage-1
//! density range, every position a model drawn uniformly from the pool (a stage-1 selector at
//! the official scale barely leaves its initial, near-uniform policy), the given decision
//! model, W and sampling as in stage 1 — and picks the grid point closest to the paper's
//! number. For MMLU it then fits the hardness of the subjects held out of training to the
//! paper's unseen-subject accuracy. The other settings (rescue, uptake, misled, the level and
//! length hardness) stay as `fit.toml` has them: one published number per benchmark cannot
//! identify them.
//!
//! Every number it writes is SIMULATED.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use hieramas_bench::query::Query;
use hieramas_bench::runner::Checker;
use hieramas_llm::ChatModel;
use hieramas_sim::{Fitted, Hardness};
use hieramas_supernode::{Members, Sampling};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::generate;
use hieramas_topology::schedule::{Plan, run_query};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, ensure};
use crate::progress::Progress;

/// What to fit, and on what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimFitConfig {
    pub benchmark: Benchmark,
    /// A SIMULATED pool (the paper's: `pools/sim-paper.toml`).
    pub pool: PathBuf,
    /// The decision model (pool id).
    pub decision: String,
    /// The split the reference system is measured on, and how many of its queries.
    pub split: String,
    pub limit: Option<usize>,
    /// Runs per query (each its own DAG and members).
    pub repeats: usize,
    /// The published system accuracy to fit (%).
    pub target: f64,
    /// The published accuracy on MMLU subjects held out of training (%), fitted with the
    /// unseen hardness on `test_unseen`.
    pub unseen_target: Option<f64>,
    pub correlation: Vec<f64>,
    pub agreement: Vec<f64>,
    pub unseen: Vec<f64>,
    pub max_tokens: u32,
    pub seed: u64,
    pub data_dir: Option<PathBuf>,
}

impl SimFitConfig {
    /// The grids and sizes `benchmarks/simulator.md` ran, for `benchmark`, fitting the targets
    /// `fit.toml` records.
    pub fn new(benchmark: Benchmark) -> Result<SimFitConfig> {
        let shipped = hieramas_sim::fit::fitted(crate::sim::kind(benchmark))?;
        let target = shipped
            .target
            .with_context(|| format!("fit.toml has no target for {benchmark}"))?;
        Ok(SimFitConfig {
            benchmark,
            pool: PathBuf::from("pools/sim-paper.toml"),
            decision: "gpt-5-mini".into(),
            split: "test".into(),
            limit: Some(500),
            repeats: if benchmark == Benchmark::HumanevalPlus {
                4
            } else {
                1
            },
            target,
            unseen_target: shipped.unseen_target,
            correlation: (0..10).map(|i| f64::from(i) / 10.0).collect(),
            agreement: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            unseen: (0..=32).map(|i| f64::from(i) / 8.0).collect(),
            max_tokens: 2048,
            seed: 0,
            data_dir: None,
        })
    }
}

/// One grid point's measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    pub correlation: f64,
    pub agreement: f64,
    pub unseen: f64,
    /// Accuracy of the reference system (%), and its standard error.
    pub accuracy: f64,
    pub stderr: f64,
    pub runs: usize,
}

/// A single model alone on the fit's queries under the chosen settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleCheck {
    pub model: String,
    /// The accuracy the catalogue calibrates it to (%).
    pub calibrated: f64,
    /// What it scored alone (%).
    pub simulated: f64,
    pub stderr: f64,
}

/// What a fit found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimFit {
    pub simulated: bool,
    pub config: SimFitConfig,
    /// The settings chosen (`fit.toml`'s section for the benchmark, with the fitted values).
    pub fitted: Fitted,
    /// The reference system at the chosen settings.
    pub best: GridPoint,
    /// `best.accuracy − target`.
    pub residual: f64,
    /// The unseen-subject fit (MMLU): the chosen point on `test_unseen`, and its residual.
    pub unseen: Option<(GridPoint, f64)>,
    pub grid: Vec<GridPoint>,
    pub unseen_grid: Vec<GridPoint>,
    pub singles: Vec<SingleCheck>,
}

/// The queries of one measurement, with the models and the grading they share.
struct Bench {
    benchmark: Benchmark,
    data: DataDir,
    roles: hieramas_topology::roleset::RoleSet,
    width: usize,
    density: [f64; 2],
    checker: Checker,
    /// Verdicts by (query, answer): a simulated answer is one of a few texts per task, so
    /// HumanEval+ programs run once each.
    verdicts: HashMap<(String, String), bool>,
}

impl Bench {
    /// Accuracy (%) and its standard error of the reference system on `queries`.
    async fn reference(
        &mut self,
        cfg: &SimFitConfig,
        queries: &[Query],
        fitted: &Fitted,
        progress: &mut dyn Progress,
    ) -> Result<(f64, f64, usize)> {
        let refs: Vec<&Query> = queries.iter().collect();
        let mut models = self.models(cfg, &refs, fitted)?;
        let pool: Vec<Arc<dyn ChatModel>> = models
            .ids()
            .iter()
            .map(|id| models.get(id))
            .collect::<Result<_>>()?;
        ensure!(
            !pool.is_empty(),
            "{}: no selectable models",
            cfg.pool.display()
        );
        let decision = models.get(&cfg.decision)?;
        let names = self.roles.names();
        let extractor = crate::system::consensus_extractor(self.benchmark, Default::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        let (mut solved, mut runs) = (0usize, 0usize);
        for (i, q) in queries.iter().enumerate() {
            for r in 0..cfg.repeats {
                let topology = generate::random_dag(
                    &names,
                    self.density[0],
                    self.density[1],
                    cfg.seed
                        .wrapping_mul(1_000_003)
                        .wrapping_add((i * cfg.repeats + r) as u64),
                )?;
                let mut pick = || pool[rng.random_range(0..pool.len())].clone();
                let members: Vec<Members> = names
                    .iter()
                    .map(|_| Members {
                        proposers: (0..self.width).map(|_| Some(pick())).collect(),
                        synthesizer: Some(pick()),
                    })
                    .collect();
                let plan = Plan {
                    topology: &topology,
                    roles: &self.roles,
                    members,
                    decision: decision.clone(),
                    sampling: sampling(cfg),
                    faithful: false,
                    consensus: Some(extractor),
                    observer: None,
                };
                let trace = run_query(&plan, &q.task)
                    .await
                    .with_context(|| format!("{}: the reference system", q.id))?;
                solved += usize::from(self.correct(q, &trace.answer).await?);
                runs += 1;
            }
            progress.advance(1);
        }
        Ok(percent(solved, runs))
    }

    /// Accuracy (%) and its standard error of `model` alone on `queries`.
    async fn single(
        &mut self,
        cfg: &SimFitConfig,
        queries: &[Query],
        fitted: &Fitted,
        model: &str,
    ) -> Result<(f64, f64)> {
        let refs: Vec<&Query> = queries.iter().collect();
        let mut models = self.models(cfg, &refs, fitted)?;
        let m = models.get(model)?;
        let mut solved = 0;
        for q in queries {
            let mut req =
                hieramas_llm::ChatRequest::new(vec![hieramas_llm::Message::user(q.task.clone())]);
            req.max_tokens = Some(cfg.max_tokens);
            let r = m
                .chat(&req)
                .await
                .with_context(|| format!("{model} on {}", q.id))?;
            solved += usize::from(self.correct(q, &r.text).await?);
        }
        let (acc, se, _) = percent(solved, queries.len());
        Ok((acc, se))
    }

    fn models(
        &self,
        cfg: &SimFitConfig,
        queries: &[&Query],
        fitted: &Fitted,
    ) -> Result<crate::models::Models> {
        let pool = crate::models::load_pool(&cfg.pool)?;
        ensure!(
            crate::sim::uses_sim(&pool),
            "{}: fitting the simulator needs a SIMULATED pool",
            cfg.pool.display()
        );
        let mut models = crate::models::Models::new(pool, None);
        let book = crate::sim::book_with(&self.data, self.benchmark, queries, &fitted.hardness)?;
        models.simulate(book, fitted.settings(cfg.seed));
        Ok(models)
    }

    async fn correct(&mut self, q: &Query, answer: &str) -> Result<bool> {
        let key = (q.id.clone(), answer.to_string());
        if let Some(v) = self.verdicts.get(&key) {
            return Ok(*v);
        }
        let v = self
            .checker
            .grade(q, std::slice::from_ref(&key.1))
            .await?
            .correct;
        self.verdicts.insert(key, v);
        Ok(v)
    }
}

fn sampling(cfg: &SimFitConfig) -> Sampling {
    Sampling {
        temperature: Some(0.2),
        max_tokens: cfg.max_tokens,
        seed: Some(cfg.seed),
    }
}

/// Solved share in percent, its standard error, and the count.
fn percent(solved: usize, runs: usize) -> (f64, f64, usize) {
    if runs == 0 {
        return (0.0, 0.0, 0);
    }
    let p = solved as f64 / runs as f64;
    (
        100.0 * p,
        100.0 * (p * (1.0 - p) / runs as f64).sqrt(),
        runs,
    )
}

/// Measures the grid and picks the settings that fit the targets ([`closest`]). Starts from the
/// shipped `fit.toml` section of the benchmark.
pub async fn fit(cfg: &SimFitConfig, progress: &mut dyn Progress) -> Result<SimFit> {
    ensure!(
        !cfg.correlation.is_empty() && !cfg.agreement.is_empty() && cfg.repeats > 0,
        "fit-sim: empty grid or no repeats"
    );
    let data = DataDir::resolve(cfg.data_dir.as_deref())?;
    let kind = crate::sim::kind(cfg.benchmark);
    let shipped = hieramas_sim::fit::fitted(kind)?;
    let stage1 = hieramas_reward::config::Stage1Config::builtin(cfg.benchmark.name())?;
    let mut bench = Bench {
        benchmark: cfg.benchmark,
        roles: crate::system::role_set(None, crate::sim::kind(cfg.benchmark).roleset())?,
        width: stage1.width,
        density: stage1.density,
        checker: Checker::new(&data, cfg.benchmark).await?,
        data,
        verdicts: HashMap::new(),
    };
    let queries = crate::sim::select(&bench.data, cfg.benchmark, &cfg.split, cfg.limit)?;
    ensure!(
        !queries.is_empty(),
        "{}/{} selects no queries",
        cfg.benchmark,
        cfg.split
    );
    progress.note(crate::sim::BANNER);
    let points = cfg.correlation.len() * cfg.agreement.len();
    progress.start((points * queries.len()) as u64, 0, "queries");
    let mut grid = Vec::new();
    for &correlation in &cfg.correlation {
        for &agreement in &cfg.agreement {
            progress.message(&format!(
                "SIMULATED fit: correlation {correlation}, agreement {agreement}"
            ));
            let f = Fitted {
                correlation,
                agreement,
                ..shipped
            };
            let (accuracy, stderr, runs) = bench.reference(cfg, &queries, &f, progress).await?;
            grid.push(GridPoint {
                correlation,
                agreement,
                unseen: shipped.hardness.unseen,
                accuracy,
                stderr,
                runs,
            });
        }
    }
    progress.finish();
    let best = closest(&grid, cfg.target, |p| {
        (p.correlation - shipped.correlation).powi(2) + (p.agreement - shipped.agreement).powi(2)
    })?
    .clone();
    let mut fitted = Fitted {
        correlation: best.correlation,
        agreement: best.agreement,
        ..shipped
    };
    let mut unseen_grid = Vec::new();
    let mut unseen = None;
    if let Some(target) = cfg.unseen_target {
        let held_out = crate::sim::select(&bench.data, cfg.benchmark, "test_unseen", cfg.limit)?;
        progress.start((cfg.unseen.len() * held_out.len()) as u64, 0, "queries");
        for &u in &cfg.unseen {
            progress.message(&format!("SIMULATED fit: unseen hardness {u}"));
            let f = Fitted {
                hardness: Hardness {
                    unseen: u,
                    ..fitted.hardness
                },
                ..fitted
            };
            let (accuracy, stderr, runs) = bench.reference(cfg, &held_out, &f, progress).await?;
            unseen_grid.push(GridPoint {
                correlation: fitted.correlation,
                agreement: fitted.agreement,
                unseen: u,
                accuracy,
                stderr,
                runs,
            });
        }
        progress.finish();
        let b = closest(&unseen_grid, target, |p| {
            (p.unseen - shipped.hardness.unseen).abs()
        })?
        .clone();
        fitted.hardness.unseen = b.unseen;
        let residual = b.accuracy - target;
        unseen = Some((b, residual));
    }
    let mut singles = Vec::new();
    let catalogue = hieramas_sim::Catalogue::builtin()?;
    for spec in crate::models::load_pool(&cfg.pool)?.models {
        let (simulated, stderr) = bench.single(cfg, &queries, &fitted, &spec.id).await?;
        singles.push(SingleCheck {
            calibrated: 100.0 * catalogue.get(&spec.model)?.accuracy(kind),
            model: spec.id,
            simulated,
            stderr,
        });
    }
    Ok(SimFit {
        simulated: true,
        config: cfg.clone(),
        fitted,
        residual: best.accuracy - cfg.target,
        best,
        unseen,
        grid,
        unseen_grid,
        singles,
    })
}

/// The grid point to choose: one target leaves a ridge of points that fit it equally well, so
/// among the points within one standard error of the best residual, the one nearest the prior
/// (`distance`, the values `fit.toml` held); the first of equals.
fn closest(
    grid: &[GridPoint],
    target: f64,
    distance: impl Fn(&GridPoint) -> f64,
) -> Result<&GridPoint> {
    let off = |p: &GridPoint| (p.accuracy - target).abs();
    let best = grid
        .iter()
        .min_by(|a, b| off(a).total_cmp(&off(b)))
        .context("an empty grid")?;
    let tolerance = off(best) + best.stderr;
    grid.iter()
        .filter(|p| off(p) <= tolerance)
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .context("an empty grid")
}

impl SimFit {
    /// Writes `REPORT.md` ([`SimFit::report`]) and `fit.json` (this value) under `dir`;
    /// returns the report's path.
    pub fn write(&self, dir: &std::path::Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = dir.join("REPORT.md");
        std::fs::write(&md, self.report()).with_context(|| format!("writing {}", md.display()))?;
        crate::records::write_json_atomic(&dir.join("fit.json"), self)?;
        Ok(md)
    }

    /// The fit as Markdown: the chosen settings, residuals, the grid, the single models.
    pub fn report(&self) -> String {
        let c = &self.config;
        let f = &self.fitted;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# SIMULATED — simulator fit, {}\n\nEvery number here is SIMULATED (hieramas-sim).\n",
            c.benchmark
        );
        let _ = writeln!(
            md,
            "Reference system: the {} roles on a random DAG of density {:?}, W = {}, every position drawn uniformly from `{}`, decision `{}`; {} queries of `{}` x {} runs.\n",
            c.benchmark,
            hieramas_reward::config::Stage1Config::builtin(c.benchmark.name())
                .map(|s| s.density)
                .unwrap_or_default(),
            hieramas_reward::config::Stage1Config::builtin(c.benchmark.name())
                .map(|s| s.width)
                .unwrap_or_default(),
            c.pool.display(),
            c.decision,
            self.best.runs / c.repeats.max(1),
            c.split,
            c.repeats
        );
        let _ = writeln!(
            md,
            "Fitted: correlation = {}, agreement = {}{} (assumed, from fit.toml: rescue {}, uptake {}, misled {}, hardness level {} / length {}).\n",
            f.correlation,
            f.agreement,
            self.unseen
                .as_ref()
                .map(|(p, _)| format!(", unseen hardness = {}", p.unseen))
                .unwrap_or_default(),
            f.rescue,
            f.uptake,
            f.misled,
            f.hardness.level,
            f.hardness.length
        );
        let _ = writeln!(
            md,
            "| target | published | reference system | residual |\n|---|---:|---:|---:|\n| {} {} | {:.2} | {:.2} ± {:.2} | {:+.2} |",
            c.benchmark, c.split, c.target, self.best.accuracy, self.best.stderr, self.residual
        );
        if let (Some((p, r)), Some(t)) = (&self.unseen, c.unseen_target) {
            let _ = writeln!(
                md,
                "| {} test_unseen | {t:.2} | {:.2} ± {:.2} | {r:+.2} |",
                c.benchmark, p.accuracy, p.stderr
            );
        }
        let _ = writeln!(
            md,
            "\n## Grid (accuracy % of the reference system)\n\n| correlation \\ agreement | {} |\n|---|{}",
            c.agreement
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(c.agreement.len())
        );
        for &rho in &c.correlation {
            let row: Vec<String> = self
                .grid
                .iter()
                .filter(|p| p.correlation == rho)
                .map(|p| format!("{:.1}", p.accuracy))
                .collect();
            let _ = writeln!(md, "| {rho} | {} |", row.join(" | "));
        }
        if !self.unseen_grid.is_empty() {
            let _ = writeln!(
                md,
                "\n## Unseen-subject hardness (test_unseen)\n\n| hardness | accuracy % |\n|---:|---:|"
            );
            for p in &self.unseen_grid {
                let _ = writeln!(md, "| {} | {:.1} ± {:.1} |", p.unseen, p.accuracy, p.stderr);
            }
        }
        let _ = writeln!(
            md,
            "\n## Single models at the fitted settings ({} `{}` queries)\n\n| model | calibrated to | simulated alone | residual |\n|---|---:|---:|---:|",
            self.best.runs / c.repeats.max(1),
            c.split
        );
        for s in &self.singles {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} ± {:.1} | {:+.1} |",
                s.model,
                s.calibrated,
                s.simulated,
                s.stderr,
                s.simulated - s.calibrated
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(correlation: f64, accuracy: f64) -> GridPoint {
        GridPoint {
            correlation,
            agreement: 0.5,
            unseen: 0.0,
            accuracy,
            stderr: 1.0,
            runs: 400,
        }
    }

    #[test]
    fn the_choice_is_the_prior_nearest_point_on_the_ridge() {
        let grid = [
            point(0.0, 97.1),
            point(0.3, 96.2),
            point(0.6, 96.6),
            point(0.9, 93.0),
        ];
        let prior = |p: &GridPoint| (p.correlation - 0.3).abs();
        // 96.6 fits best; 96.2 and 97.1 are within one standard error of it; 0.3 is the prior.
        assert_eq!(closest(&grid, 96.67, prior).unwrap().correlation, 0.3);
        // Far from everything but the last point: that one.
        assert_eq!(closest(&grid, 92.0, prior).unwrap().correlation, 0.9);
        assert!(closest(&[], 90.0, prior).is_err());
    }

    #[test]
    fn percent_and_its_standard_error() {
        let (p, se, n) = percent(90, 100);
        assert_eq!((p, n), (90.0, 100));
        assert!((se - 3.0).abs() < 1e-9);
        assert_eq!(percent(0, 0), (0.0, 0.0, 0));
    }
}
