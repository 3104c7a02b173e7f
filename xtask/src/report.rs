//! The report of `cargo xtask reproduce`: reads what the steps left (stage-1 curves, stage-2 data,
//! the classifier's report, the eval logs and summaries — each as its typed record of
//! `hieramas::records`) and writes `REPORT.md`, `results.json` ([`Results`]), `results.csv`,
//! the cost–accuracy Pareto plots and learning curves (`figures/`, SVG via plotters) and the
//! chosen topologies (`topologies/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hieramas::records::{
    CurveRow, FitOutput, PlanRecord, Record, Summary, TaskRecord, Validation, read_json, read_jsonl,
};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use hieramas::Benchmark;

use crate::reproduce::{Options, Outcome, Part, Status, bench_dir, eval_log};

const PAPER: &str = include_str!("../paper.toml");

/// The records of a JSONL file that a step has not written yet are none; one that does not
/// parse is an error (a renamed field must not read as nothing).
fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(read_jsonl(path)?)
}

/// A JSON record a step may not have written yet.
fn record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_json(path)?))
}

/// What training one benchmark of a part cost and showed.
#[derive(Default)]
struct Training {
    /// Stage 1: iterations run, and their cost incl. validations (pico-USD).
    iterations: usize,
    stage1_pico: u64,
    curve: Vec<CurveRow>,
    last_validation: Option<Validation>,
    /// Stage-2 data: tasks, runs, positives, cost.
    tasks: usize,
    runs: usize,
    positives: usize,
    data_pico: u64,
    /// The classifier's report.json.
    classifier: Option<FitOutput>,
}

fn training(dir: &Path) -> Result<Training> {
    let mut t = Training::default();
    let s1 = dir.join("stage1");
    t.curve = lines(&s1.join("curve.jsonl"))?;
    t.last_validation = record(&s1.join("validation.json"))?;
    let val_queries = t.last_validation.as_ref().map_or(0, |v| v.queries) as f64;
    t.iterations = t.curve.len();
    for l in &t.curve {
        t.stage1_pico += l.cost_pico + l.metadata_cost_pico;
        if let Some(c) = l.val_cost_usd {
            t.stage1_pico += (c * val_queries * 1e12).round() as u64;
        }
    }
    let tasks: Vec<TaskRecord> = lines(&dir.join("stage2-data").join("tasks.jsonl"))?;
    for task in &tasks {
        t.tasks += 1;
        for r in &task.runs {
            t.runs += 1;
            t.positives += usize::from(r.label);
            t.data_pico += r.cost_pico;
        }
    }
    t.classifier = record(&dir.join("classifier").join("report.json"))?;
    Ok(t)
}

/// What one method's eval left.
struct Evaluated {
    method: String,
    summary: Option<Summary>,
    /// Spent by every record of the log (pico-USD).
    spent_pico: u64,
    records: Vec<Record>,
}

fn evaluated(run: &Path, part: &str, benchmark: Benchmark, method: &str) -> Result<Evaluated> {
    let log = eval_log(run, part, benchmark, method);
    // Read as the eval step does (complete lines only: a log cut by a crash still reports).
    let records: Vec<Record> = hieramas::bench::ResultLog::read(&log)?;
    Ok(Evaluated {
        method: method.to_string(),
        summary: record(&log.with_extension("summary.json"))?,
        spent_pico: records.iter().map(|r| r.cost_pico).sum(),
        records,
    })
}

/// The eval methods of a part (with the unseen-subject runs for MMLU when they run).
fn methods(part: &Part, benchmark: Benchmark) -> Vec<String> {
    let mut m = part.methods.clone();
    m.extend(crate::reproduce::unseen_methods(part, benchmark));
    m
}

/// `results.json`: the run, written by [`write`] and read back by [`track`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub profile: String,
    pub description: String,
    pub machine: Machine,
    pub wall_s: f64,
    pub paper: PaperNumbers,
    pub parts: Vec<PartResult>,
    pub steps: Vec<Outcome>,
}

/// Date, commit and machine of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub date: Option<String>,
    pub commit: Option<String>,
    pub description: String,
}

/// The published numbers (percent) by column, and where they are from.
#[derive(Debug, Serialize, Deserialize)]
pub struct PaperNumbers {
    pub source: String,
    /// Accuracy (%) by benchmark (and `mmlu-unseen`).
    pub hieramas: BTreeMap<String, f64>,
    /// The average accuracy as reported (not recomputed).
    #[serde(default)]
    pub average: Option<f64>,
    /// USD by benchmark, as reported.
    #[serde(default)]
    pub training_cost_usd: BTreeMap<String, f64>,
    #[serde(default)]
    pub inference_cost_usd: BTreeMap<String, f64>,
}

/// One part of the run.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartResult {
    pub name: String,
    pub title: String,
    pub simulated: bool,
    pub pool: PathBuf,
    pub settings: Part,
    pub benchmarks: BTreeMap<Benchmark, BenchResult>,
}

/// One benchmark of a part.
#[derive(Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub stage1: Stage1Result,
    pub stage2_data: DataResult,
    pub classifier: Option<ClassifierResult>,
    pub methods: BTreeMap<String, MethodResult>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Stage1Result {
    pub iterations: usize,
    pub cost_usd: f64,
    pub last_validation: Option<ValidationResult>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ValidationResult {
    pub accuracy: f64,
    pub queries: usize,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DataResult {
    pub tasks: usize,
    pub runs: usize,
    pub positives: usize,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClassifierResult {
    pub best_epoch: usize,
    pub epochs: usize,
    pub best_selection: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MethodResult {
    pub summary: Option<Summary>,
    pub spent_usd: f64,
    pub records: usize,
}

/// `datasets/splits.toml`, as far as the report reads it.
#[derive(Deserialize)]
struct SplitsToml {
    splits: Vec<SplitEntry>,
}

#[derive(Deserialize)]
struct SplitEntry {
    benchmark: Benchmark,
    split: String,
    records: usize,
}

/// Records per split of `benchmark` (`datasets/splits.toml`).
fn split_size(root: &Path, benchmark: Benchmark, split: &str) -> Result<usize> {
    let path = root.join("datasets").join("splits.toml");
    let v: SplitsToml = toml::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{}", path.display()))?;
    v.splits
        .iter()
        .find(|s| s.benchmark == benchmark && s.split == split)
        .map(|s| s.records)
        .with_context(|| format!("no {benchmark}/{split} in {}", path.display()))
}

/// What the profile of `o` would cost, scaled from the SIMULATED part `sim` of the run in
/// `sim_run` (the default profile: the same pool prices, simulated token counts): stage 1 as
/// it cost there, stage-2 data per task, each method per query. `None` when that run has no
/// simulated stage 1 yet.
pub fn estimate(o: &Options, sim_run: &Path) -> Result<Option<String>> {
    let mut lines = Vec::new();
    let mut total = 0.0;
    for part in &o.profile.part {
        for &b in &part.benchmarks {
            let dir = bench_dir(sim_run, "sim", b);
            let t = training(&dir)?;
            if t.iterations == 0 {
                return Ok(None);
            }
            // A limit beyond the split runs the whole split.
            let train = split_size(&o.root, b, "train")?;
            let tasks = part
                .stage2_tasks
                .as_ref()
                .and_then(|x| x.get(b))
                .map_or(train, |n| n.min(train));
            let test = split_size(&o.root, b, "test")?;
            let queries = o
                .limit
                .or_else(|| part.test.as_ref().and_then(|x| x.get(b)))
                .map_or(test, |n| n.min(test));
            let per_task = if t.tasks > 0 {
                t.data_pico as f64 / t.tasks as f64
            } else {
                0.0
            };
            let mut usd = (t.stage1_pico as f64 + per_task * tasks as f64) / 1e12;
            let mut missing = Vec::new();
            for m in methods(part, b) {
                let n = if m.ends_with("@unseen") {
                    part.unseen
                        .unwrap_or(0)
                        .min(split_size(&o.root, b, "test_unseen")?)
                } else {
                    queries
                };
                match per_query(&evaluated(sim_run, "sim", b, &m)?) {
                    Some(c) => usd += c * n as f64,
                    None => missing.push(m),
                }
            }
            total += usd;
            lines.push(format!(
                "   {:<11} ~${usd:.2}  (stage 1, {tasks} stage-2 tasks, {queries} test queries per method{})",
                bench_title(b),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!("; no simulated figure for {}", missing.join(", "))
                }
            ));
        }
    }
    Ok(Some(format!(
        "{}\n   total ~${total:.2} — scaled from the SIMULATED run in {} (paper prices, simulated token counts; real completions may be longer or shorter)",
        lines.join("\n"),
        sim_run.display()
    )))
}

fn usd(p: u64) -> String {
    let d = p as f64 / 1e12;
    if d == 0.0 {
        "$0".into()
    } else if d >= 1.0 {
        format!("${d:.2}")
    } else {
        format!("${d:.4}")
    }
}

fn bench_title(b: Benchmark) -> &'static str {
    match b {
        Benchmark::Math => "MATH",
        Benchmark::Mmlu => "MMLU-Redux",
        Benchmark::HumanevalPlus => "HumanEval+",
    }
}

/// The published numbers and where they are from (`xtask/paper.toml`).
fn paper() -> Result<PaperNumbers> {
    toml::from_str(PAPER).context("xtask/paper.toml")
}

/// What the steps of one part left, per benchmark.
struct Gathered {
    trained: BTreeMap<Benchmark, Training>,
    evals: BTreeMap<Benchmark, Vec<Evaluated>>,
}

impl Gathered {
    fn of(run: &Path, part: &Part) -> Result<Gathered> {
        let mut trained = BTreeMap::new();
        let mut evals = BTreeMap::new();
        for &b in &part.benchmarks {
            trained.insert(b, training(&bench_dir(run, &part.name, b))?);
            evals.insert(
                b,
                methods(part, b)
                    .iter()
                    .map(|m| evaluated(run, &part.name, b, m))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        Ok(Gathered { trained, evals })
    }

    fn eval(&self, b: Benchmark, m: &str) -> Option<&Evaluated> {
        self.evals.get(&b)?.iter().find(|e| e.method == m)
    }

    /// Accuracy (percent) and queries of `m` on `b`.
    fn acc(&self, b: Benchmark, m: &str) -> Option<(f64, usize)> {
        let s = self.eval(b, m)?.summary.as_ref()?;
        Some((s.accuracy, s.queries))
    }
}

fn sim_label(part: &Part) -> &'static str {
    if part.simulated { "SIMULATED " } else { "" }
}

const CSV_HEADER: &str = "part,simulated,benchmark,method,split,queries,correct,accuracy,cost_usd,cost_per_query_usd,prompt_tokens,completion_tokens\n";

pub fn write(o: &Options, outcomes: &[Outcome], wall_s: f64) -> Result<()> {
    let run = &o.run_dir;
    let figures = run.join("figures");
    let topo_dir = run.join("topologies");
    std::fs::create_dir_all(&figures)?;
    std::fs::create_dir_all(&topo_dir)?;
    let meta = machine();
    let paper = paper()?;
    let mut md = header(o, outcomes, wall_s, &meta);
    let mut parts = Vec::new();
    let mut csv = String::from(CSV_HEADER);
    let mut gathered = BTreeMap::new();
    for part in &o.profile.part {
        gathered.insert(part.name.clone(), Gathered::of(run, part)?);
    }
    md.push_str(&official_section(o, &gathered, &paper));
    for part in &o.profile.part {
        let Some(g) = gathered.remove(&part.name) else {
            continue;
        };
        md.push_str(&part_intro(o, part));
        md.push_str(&accuracy_table(part, &g, &paper));
        md.push_str(&cost_tables(part, &g, &paper));
        md.push_str(&pareto_section(part, &g, &figures)?);
        md.push_str(&curves_section(part, &g, &figures)?);
        md.push_str(&topologies_section(part, &g, &topo_dir)?);
        csv.push_str(&csv_rows(part, &g));
        parts.push(part_result(o, part, g));
    }
    md.push_str(&steps_table(outcomes));
    std::fs::write(run.join("REPORT.md"), md)?;
    std::fs::write(run.join("results.csv"), csv)?;
    let results = Results {
        profile: o.profile_name.clone(),
        description: crate::reproduce::one_line(&o.profile.description),
        machine: meta,
        wall_s: wall_s.round(),
        paper,
        parts,
        steps: outcomes.to_vec(),
    };
    std::fs::write(
        run.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    println!(
        "\nreport: {}\n        results.csv · results.json · figures/ · topologies/",
        run.join("REPORT.md").display()
    );
    Ok(())
}

/// Ours beside the official code's behaviour (`--faithful`): for every part run both ways, each
/// method both ran, accuracy and cost per query side by side (with the paper's reported
/// HieraMAS numbers). Empty when no part ran the official way.
fn official_section(
    o: &Options,
    gathered: &BTreeMap<String, Gathered>,
    paper: &PaperNumbers,
) -> String {
    let mut md = String::new();
    for official in o.profile.part.iter().filter(|p| p.official.is_some()) {
        let Some(ours) = official
            .name
            .strip_suffix(crate::reproduce::OFFICIAL_SUFFIX)
            .and_then(|n| o.profile.part.iter().find(|p| p.name == n))
        else {
            continue;
        };
        let (Some(go), Some(gf)) = (gathered.get(&ours.name), gathered.get(&official.name)) else {
            continue;
        };
        let label = if ours.simulated {
            "**SIMULATED** (`hieramas-sim`), both. "
        } else {
            ""
        };
        md.push_str(&format!(
            "## Ours beside the official code — part `{}` vs `{}`\n\n{label}The same pool, sizes and seeds; `{}` restores the official behaviours `{}` (method §10; each is also a switch of `hieramas --official`, so one can be flipped at a time). Accuracy in % (queries in brackets); cost per query in USD.\n\n| benchmark | method | ours: accuracy | official: accuracy | ours: cost/query | official: cost/query |\n|---|---|---:|---:|---:|---:|\n",
            ours.name,
            official.name,
            official.name,
            official.official()
        ));
        for &b in &official.benchmarks {
            if let Some(v) = paper.hieramas.get(b.name()) {
                md.push_str(&format!(
                    "| {} | *HieraMAS, paper (reported)* | | *{v}* | | {} |\n",
                    bench_title(b),
                    paper
                        .inference_cost_usd
                        .get(b.name())
                        .map_or(String::new(), |c| format!("*${c} (whole test split)*"))
                ));
            }
            for m in methods(official, b) {
                let cell = |g: &Gathered| {
                    let acc = g
                        .acc(b, &m)
                        .map_or("—".into(), |(a, n)| format!("{a:.1} ({n})"));
                    let cost = g
                        .eval(b, &m)
                        .and_then(per_query)
                        .map_or("—".into(), |c| format!("{c:.6}"));
                    (acc, cost)
                };
                let ((ao, co), (af, cf)) = (cell(go), cell(gf));
                md.push_str(&format!(
                    "| {} | {m} | {ao} | {af} | {co} | {cf} |\n",
                    bench_title(b)
                ));
            }
        }
        md.push('\n');
    }
    md
}

/// The title and what this invocation did.
fn header(o: &Options, outcomes: &[Outcome], wall_s: f64, meta: &Machine) -> String {
    let ran = |s: Status| outcomes.iter().filter(|x| x.status == s).count();
    let mut md = format!(
        "# hieramas reproduce — profile `{}`\n\n{}\n\n",
        o.profile_name,
        crate::reproduce::one_line(&o.profile.description)
    );
    md.push_str(&format!(
        "- Date: {} · commit {} · machine: {}\n- This invocation: {:.0} s; {} steps ran, {} were finished earlier (kept), {} failed, {} blocked by a failed input; the steps themselves took {:.0} s in all\n- Data: {}\n\n",
        meta.date.as_deref().unwrap_or("?"),
        meta.commit.as_deref().unwrap_or("?"),
        meta.description,
        wall_s,
        ran(Status::Ran),
        ran(Status::Cached),
        ran(Status::Failed),
        ran(Status::Blocked),
        outcomes.iter().map(|x| x.wall_s).sum::<f64>(),
        o.data_dir.display()
    ));
    md
}

/// The pool a part ran.
fn part_pool(o: &Options, part: &Part) -> PathBuf {
    o.pool
        .clone()
        .or_else(|| part.pool.clone())
        .unwrap_or_else(|| PathBuf::from("pools/local.toml (embedded default)"))
}

/// A part's heading: SIMULATED or real, its pool and sizes.
fn part_intro(o: &Options, part: &Part) -> String {
    let mut md = format!("## Part `{}` — {}\n\n", part.name, part.title);
    if part.simulated {
        md.push_str(
            "**Everything in this part is SIMULATED** (`hieramas-sim`: calibrated stand-ins for the paper's pool that look up the gold answer and are right with a calibrated probability; costs exact for the simulated token counts). It exercises the method at scale; it is not a result of real LLMs. How much a system gains over its models (the correlation of their errors, how synthesisers treat agreeing candidates) and how much harder held-out MMLU subjects are were fitted to the paper's HieraMAS accuracies on a reference system (residuals within 2 points there); a task's content enters only through its MATH level, its length and whether its MMLU subject was held out; how answers flow along edges (uptake, misled) is assumed, not fitted (`benchmarks/simulator.md`).\n\n",
        );
    } else {
        md.push_str("Every number in this part comes from real model calls and real graders.\n\n");
    }
    let official = |n: Option<usize>| n.map_or("official".into(), |n| n.to_string());
    let stage1 = if part.stage1.iterations.is_none() && part.stage1.batch_size.is_none() {
        "at the official settings".to_string()
    } else {
        format!(
            "reduced ({} iterations × batch {}, W = {}, {} validation queries)",
            official(part.stage1.iterations),
            official(part.stage1.batch_size),
            official(part.stage1.width),
            part.stage1.val_limit.map_or("50".into(), |n| n.to_string())
        )
    };
    let per_bench = |n: &dyn Fn(Benchmark) -> Option<usize>| {
        part.benchmarks
            .iter()
            .map(|&b| {
                format!(
                    "{} {}",
                    bench_title(b),
                    n(b).map_or("all".into(), |n| n.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stage2 = match &part.stage2_tasks {
        Some(t) => per_bench(&|b| t.get(b)),
        None => "all".into(),
    };
    let test = per_bench(&|b| {
        o.limit
            .or_else(|| part.test.as_ref().and_then(|t| t.get(b)))
    });
    md.push_str(&format!(
        "Pool `{}`; decision node and baselines: {}; answers ≤ {} tokens; stage 1 {stage1}; stage-2 data: {stage2} train tasks × {} DAGs; test: {test}.\n\n",
        part_pool(o, part).display(),
        part.decision.as_deref().unwrap_or("the pool's first model"),
        part.max_tokens,
        part.graphs.unwrap_or(5),
    ));
    let bundles: Vec<String> = part
        .benchmarks
        .iter()
        .map(|&b| crate::reproduce::bench_dir(&o.run_dir, &part.name, b).join("system"))
        .filter(|d| d.join("system.toml").is_file())
        .map(|d| format!("`{}`", d.strip_prefix(&o.run_dir).unwrap_or(&d).display()))
        .collect();
    if !bundles.is_empty() {
        md.push_str(&format!(
            "The trained systems, as bundles: {} — ask one a question with `hieramas run --system DIR \"…\"`, serve it with `hieramas serve --system DIR`.\n\n",
            bundles.join(", ")
        ));
    }
    md
}

fn has_unseen(part: &Part) -> bool {
    part.benchmarks.contains(&Benchmark::Mmlu) && part.unseen.is_some()
}

/// Accuracy per method and benchmark, the paper's row first.
fn accuracy_table(part: &Part, g: &Gathered, paper: &PaperNumbers) -> String {
    let label = sim_label(part);
    let unseen = has_unseen(part);
    let mut md = format!("### Accuracy ({label}test split; queries in brackets)\n\n| method |");
    for &b in &part.benchmarks {
        md.push_str(&format!(" {} |", bench_title(b)));
    }
    md.push_str(" average |");
    if unseen {
        md.push_str(" MMLU unseen |");
    }
    md.push_str("\n|---|");
    for _ in 0..part.benchmarks.len() + 1 + usize::from(unseen) {
        md.push_str("---:|");
    }
    md.push('\n');
    let reported = &paper.hieramas;
    if !reported.is_empty() {
        md.push_str("| *HieraMAS, paper (reported)* |");
        for &b in &part.benchmarks {
            match reported.get(b.name()) {
                Some(v) => md.push_str(&format!(" *{v}* |")),
                None => md.push_str(" |"),
            }
        }
        // The paper's average as it reports it, not recomputed from the columns shown.
        md.push_str(&match paper.average {
            Some(v) if part.benchmarks.len() == 3 => format!(" *{v}* |"),
            _ => " |".into(),
        });
        if unseen {
            md.push_str(
                &reported
                    .get("mmlu-unseen")
                    .map_or(" |".into(), |v| format!(" *{v}* |")),
            );
        }
        md.push('\n');
    }
    for m in &part.methods {
        md.push_str(&format!("| {label}{m} |"));
        let mut sum = Vec::new();
        for &b in &part.benchmarks {
            match g.acc(b, m) {
                Some((a, n)) => {
                    sum.push(a);
                    md.push_str(&format!(" {a:.1} ({n}) |"));
                }
                None => md.push_str(" — |"),
            }
        }
        md.push_str(&avg_cell(&sum, part.benchmarks.len()));
        if unseen {
            md.push_str(&match g.acc(Benchmark::Mmlu, &format!("{m}@unseen")) {
                Some((a, n)) => format!(" {a:.1} ({n}) |"),
                None => " |".into(),
            });
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\nPaper numbers: {}; its average is shown as reported. With n test queries one standard error is about √(p(1−p)/n): ±3 points at 90% and n = 100.\n\n",
        paper.source
    ));
    md
}

/// What training and each method cost, in all and per query.
fn cost_tables(part: &Part, g: &Gathered, paper: &PaperNumbers) -> String {
    let label = sim_label(part);
    let mut md = format!("### Cost ({label}USD)\n\n| |");
    for &b in &part.benchmarks {
        md.push_str(&format!(" {} |", bench_title(b)));
    }
    md.push_str(" total |\n|---|");
    for _ in 0..=part.benchmarks.len() {
        md.push_str("---:|");
    }
    md.push('\n');
    let row = |name: String, f: &dyn Fn(Benchmark) -> Option<u64>| {
        let mut line = format!("| {name} |");
        let mut total = 0;
        for &b in &part.benchmarks {
            match f(b) {
                Some(p) => {
                    total += p;
                    line.push_str(&format!(" {} |", usd(p)));
                }
                None => line.push_str(" — |"),
            }
        }
        line.push_str(&format!(" {} |\n", usd(total)));
        line
    };
    let trained = |b: Benchmark| g.trained.get(&b);
    md.push_str(&row("training: stage 1 (incl. validation)".into(), &|b| {
        trained(b).map(|t| t.stage1_pico)
    }));
    md.push_str(&row("training: stage-2 data".into(), &|b| {
        trained(b).map(|t| t.data_pico)
    }));
    md.push_str(&row("**training total**".into(), &|b| {
        trained(b).map(|t| t.stage1_pico + t.data_pico)
    }));
    let reported = |name: &str, of: &BTreeMap<String, f64>| {
        if of.is_empty() {
            return String::new();
        }
        let mut line = format!("| *{name}, paper (reported)* |");
        for &b in &part.benchmarks {
            match of.get(b.name()) {
                Some(v) => line.push_str(&format!(" *{v:.2}* |")),
                None => line.push_str(" |"),
            }
        }
        line.push_str(" |\n");
        line
    };
    md.push_str(&reported("training total", &paper.training_cost_usd));
    let split: Vec<String> = part
        .benchmarks
        .iter()
        .filter_map(|&b| {
            let p = paper.training_cost_usd.get(b.name())?;
            let t = trained(b)?;
            Some(format!(
                "{} stage 1 {} + stage-2 data {} (paper: ${p:.2})",
                bench_title(b),
                usd(t.stage1_pico),
                usd(t.data_pico)
            ))
        })
        .collect();
    let mut money = String::new();
    if !split.is_empty() {
        money.push_str(&format!(
            "\nWhere the training money goes ({label}ours): {}. The paper's training cost is closest to our stage 1 alone (validation included); stage-2 data generation — every train task run with the whole system on several random DAGs (method §6.1) — is most of ours, and MMLU's stage 1 runs W = 6 (method §10.9). The paper does not say which steps its number covers.\n",
            split.join("; ")
        ));
    }
    let mut all_methods: Vec<String> = part.methods.clone();
    all_methods.extend(crate::reproduce::unseen_methods(part, Benchmark::Mmlu));
    for m in &all_methods {
        md.push_str(&row(format!("inference: {m} (all queries)"), &|b| {
            g.eval(b, m).map(|e| e.spent_pico)
        }));
    }
    md.push_str(&reported(
        "inference: HieraMAS, whole test split",
        &paper.inference_cost_usd,
    ));
    md.push_str(&money);
    md.push_str("\nPer query (inference, USD):\n\n| method |");
    for &b in &part.benchmarks {
        md.push_str(&format!(" {} |", bench_title(b)));
    }
    md.push_str("\n|---|");
    for _ in &part.benchmarks {
        md.push_str("---:|");
    }
    md.push('\n');
    for m in &part.methods {
        md.push_str(&format!("| {m} |"));
        for &b in &part.benchmarks {
            md.push_str(&match g.eval(b, m).and_then(per_query) {
                Some(c) => format!(" {c:.6} |"),
                None => " — |".into(),
            });
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

/// Cost against accuracy per benchmark, with the Pareto front.
fn pareto_section(part: &Part, g: &Gathered, figures: &Path) -> Result<String> {
    let label = sim_label(part);
    let mut md = String::from("### Cost–accuracy (Pareto front)\n\n");
    for &b in &part.benchmarks {
        let points: Vec<(String, f64, f64)> = part
            .methods
            .iter()
            .filter_map(|m| Some((m.clone(), per_query(g.eval(b, m)?)?, g.acc(b, m)?.0)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let file = format!("pareto-{}-{b}.svg", part.name);
        let title = format!("{label}{} — cost vs accuracy", bench_title(b));
        std::fs::write(figures.join(&file), pareto_svg(&title, &points)?)?;
        md.push_str(&format!("![{title}](figures/{file})\n\n"));
        let front = pareto_front(&points);
        md.push_str(&format!(
            "{}: on the front (no method both cheaper and at least as accurate): {}.\n\n",
            bench_title(b),
            front
                .iter()
                .map(|i| format!("`{}`", points[*i].0))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(md)
}

/// Stage 1 and classifier learning curves per benchmark.
fn curves_section(part: &Part, g: &Gathered, figures: &Path) -> Result<String> {
    let label = sim_label(part);
    let mut md = String::from("### Learning curves\n\n");
    for &b in &part.benchmarks {
        let Some(t) = g.trained.get(&b) else { continue };
        if t.curve.is_empty() && t.classifier.is_none() {
            continue;
        }
        let file = format!("curves-{}-{b}.svg", part.name);
        let title = format!("{label}{}", bench_title(b));
        std::fs::write(figures.join(&file), curves_svg(&title, t)?)?;
        md.push_str(&format!("![{title} learning curves](figures/{file})\n\n"));
        md.push_str(&format!(
            "- {}: stage 1 ran {} iterations",
            bench_title(b),
            t.iterations
        ));
        if let Some(v) = &t.last_validation {
            md.push_str(&format!(
                "; last validation {:.1}% of {} at ${:.6}/query",
                v.accuracy * 100.0,
                v.queries,
                v.cost_usd
            ));
        }
        md.push_str(&format!(
            ". Stage-2 data: {} tasks, {} runs, {} positive.",
            t.tasks, t.runs, t.positives
        ));
        if let Some(c) = &t.classifier {
            let f = &c.fit;
            if let Some(e) = f.epochs.get(f.best_epoch.saturating_sub(1)) {
                md.push_str(&format!(
                    " Classifier: best epoch {} of {}, validation per-task ROC-AUC {}, top-1 hit {} (random {}).",
                    f.best_epoch,
                    f.epochs.len(),
                    f3(e.valid.task_auc),
                    f3(e.valid.top1_hit),
                    f3(e.valid.top1_random)
                ));
            }
        }
        md.push_str("\n\n");
    }
    Ok(md)
}

/// The topologies HieraMAS chose most, drawn.
fn topologies_section(part: &Part, g: &Gathered, topo_dir: &Path) -> Result<String> {
    let label = sim_label(part);
    let mut md = String::from("### Topologies HieraMAS chose\n\n");
    for &b in &part.benchmarks {
        let Some(e) = g.eval(b, "hieramas") else {
            continue;
        };
        let mut counts: BTreeMap<Vec<(usize, usize)>, usize> = BTreeMap::new();
        for r in &e.records {
            let Some(plan) = PlanRecord::of(r) else {
                continue;
            };
            let mut es: Vec<(usize, usize)> = plan.edges.iter().map(|&[s, d]| (s, d)).collect();
            es.sort_unstable();
            *counts.entry(es).or_default() += 1;
        }
        let n: usize = counts.values().sum();
        if n == 0 {
            continue;
        }
        let mut ranked: Vec<(&Vec<(usize, usize)>, &usize)> = counts.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let roles = hieramas_topology::roleset::RoleSet::builtin(b.name())?.names();
        let edges: usize = counts.iter().map(|(e, c)| e.len() * c).sum();
        md.push_str(&format!(
            "- {}: {} distinct topologies over {n} queries (candidates are drawn per query), {:.1} edges on average; {}:\n\n",
            bench_title(b),
            counts.len(),
            edges as f64 / n as f64,
            if counts.len() == n { "two of them" } else { "the most chosen" }
        ));
        for (k, (edges, c)) in ranked.iter().take(2).enumerate() {
            let t = hieramas_topology::Topology::new(roles.clone(), edges)
                .with_context(|| format!("a chosen {b} topology"))?;
            let file = format!("{}-{b}-chosen-{}.svg", part.name, k + 1);
            let title = format!(
                "{label}{} · chosen for {c} of {n} queries · {} edges",
                bench_title(b),
                t.edge_count()
            );
            std::fs::write(topo_dir.join(&file), t.to_svg(&title))?;
            md.push_str(&format!("  ![{title}](topologies/{file})\n\n"));
        }
    }
    md.push('\n');
    Ok(md)
}

/// A CSV row per method with a summary.
fn csv_rows(part: &Part, g: &Gathered) -> String {
    let mut csv = String::new();
    for &b in &part.benchmarks {
        for e in g.evals.get(&b).into_iter().flatten() {
            let Some(s) = &e.summary else { continue };
            let cost = s.cost_pico as f64 / 1e12;
            csv.push_str(&format!(
                "{},{},{b},{},{},{},{},{},{:.12},{},{},{}\n",
                part.name,
                part.simulated,
                e.method.trim_end_matches("@unseen"),
                s.split,
                s.queries,
                s.correct,
                s.accuracy,
                cost,
                if s.queries > 0 {
                    format!("{:.12}", cost / s.queries as f64)
                } else {
                    String::new()
                },
                s.prompt_tokens,
                s.completion_tokens,
            ));
        }
    }
    csv
}

/// A part as `results.json` keeps it.
fn part_result(o: &Options, part: &Part, g: Gathered) -> PartResult {
    let mut benchmarks = BTreeMap::new();
    let Gathered { trained, mut evals } = g;
    for (b, t) in trained {
        let methods = evals
            .remove(&b)
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e.method,
                    MethodResult {
                        summary: e.summary,
                        spent_usd: e.spent_pico as f64 / 1e12,
                        records: e.records.len(),
                    },
                )
            })
            .collect();
        benchmarks.insert(
            b,
            BenchResult {
                stage1: Stage1Result {
                    iterations: t.iterations,
                    cost_usd: t.stage1_pico as f64 / 1e12,
                    last_validation: t.last_validation.map(|v| ValidationResult {
                        accuracy: v.accuracy,
                        queries: v.queries,
                        cost_usd: v.cost_usd,
                    }),
                },
                stage2_data: DataResult {
                    tasks: t.tasks,
                    runs: t.runs,
                    positives: t.positives,
                    cost_usd: t.data_pico as f64 / 1e12,
                },
                classifier: t.classifier.map(|c| ClassifierResult {
                    best_epoch: c.fit.best_epoch,
                    epochs: c.fit.epochs.len(),
                    best_selection: c.fit.best_selection,
                }),
                methods,
            },
        );
    }
    PartResult {
        name: part.name.clone(),
        title: part.title.clone(),
        simulated: part.simulated,
        pool: part_pool(o, part),
        settings: part.clone(),
        benchmarks,
    }
}

/// Every step of the profile and how this invocation found or left it.
fn steps_table(outcomes: &[Outcome]) -> String {
    let mut md = String::from(
        "## Steps\n\nEach step is one resumable `hieramas` command (outputs under this folder; `steps/<id>.json` marks a finished one):\n\n| step | this invocation | wall (s, when it ran) | command |\n|---|---|---:|---|\n",
    );
    for x in outcomes {
        md.push_str(&format!(
            "| {} | {}{} | {:.0} | `{}` |\n",
            x.step.id,
            x.status,
            x.error.as_ref().map_or(String::new(), |e| format!(": {e}")),
            x.wall_s,
            crate::reproduce::command_line(&x.step.args).replace('|', "\\|")
        ));
    }
    md
}

/// Date, commit and machine, for the report.
fn machine() -> Machine {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Machine {
        date: out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: out("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
            let dirty = out("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} + uncommitted changes")
            } else {
                c
            }
        }),
        description: format!("{}, {mem_gib:.0} GiB", crate::machine()),
    }
}

fn f3(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.3}"))
}

fn avg_cell(values: &[f64], of: usize) -> String {
    if values.len() == of && of > 0 {
        format!(" {:.1} |", values.iter().sum::<f64>() / of as f64)
    } else {
        " — |".into()
    }
}

/// Mean cost per query (USD) of an eval by its summary.
fn per_query(e: &Evaluated) -> Option<f64> {
    let s = e.summary.as_ref()?;
    (s.queries > 0).then(|| s.cost_pico as f64 / 1e12 / s.queries as f64)
}

/// Indices of the points no other point dominates (cheaper or equal and at least as accurate,
/// one of them strictly), by cost.
pub fn pareto_front(points: &[(String, f64, f64)]) -> Vec<usize> {
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (_, c, a) = &points[i];
            !points
                .iter()
                .enumerate()
                .any(|(j, (_, cj, aj))| j != i && cj <= c && aj >= a && (cj < c || aj > a))
        })
        .collect();
    front.sort_by(|&i, &j| points[i].1.total_cmp(&points[j].1));
    front
}

fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
    (lo - span * pad, hi + span * pad)
}

fn pareto_svg(title: &str, points: &[(String, f64, f64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let (x0, x1) = range(points.iter().map(|p| p.1), 0.15);
        let (y0, y1) = range(points.iter().map(|p| p.2), 0.15);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x0.max(0.0)..x1, y0.max(0.0)..y1.min(100.0).max(y0 + 1.0))?;
        chart
            .configure_mesh()
            .x_desc("cost per query (USD)")
            .y_desc("accuracy (%)")
            .x_label_formatter(&|x| format!("{x:.4}"))
            .draw()?;
        let front: Vec<(f64, f64)> = pareto_front(points)
            .into_iter()
            .map(|i| (points[i].1, points[i].2))
            .collect();
        chart
            .draw_series(LineSeries::new(front, RED.stroke_width(2)))?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart.draw_series(points.iter().map(|(name, c, a)| {
            let color = if name.starts_with("hieramas") {
                BLUE
            } else {
                BLACK
            };
            EmptyElement::at((*c, *a))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(name.clone(), (7, -14), ("sans-serif", 13))
        }))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn curves_svg(title: &str, t: &Training) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(480);
        // Stage 1: training accuracy and system reward per iteration, validation accuracy.
        let n = t
            .curve
            .iter()
            .map(|l| l.iteration as f64)
            .fold(1.0, f64::max);
        let mut c = ChartBuilder::on(&left)
            .caption(format!("{title} · stage 1 (selector)"), ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..n + 0.5, 0.0..1.05)?;
        c.configure_mesh()
            .x_desc("iteration")
            .y_desc("share / reward")
            .draw()?;
        let series = |f: fn(&CurveRow) -> Option<f64>| -> Vec<(f64, f64)> {
            t.curve
                .iter()
                .filter_map(|l| Some((l.iteration as f64, f(l)?)))
                .collect()
        };
        type Row = fn(&CurveRow) -> Option<f64>;
        let stage1: [(&str, RGBColor, Row); 3] = [
            ("train batch solved", BLUE, |l| Some(l.accuracy)),
            ("system reward", GREEN, |l| Some(l.system_reward)),
            ("validation solved", RED, |l| l.val_accuracy),
        ];
        for (label, color, f) in stage1 {
            let s = series(f);
            c.draw_series(LineSeries::new(s.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            c.draw_series(s.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        // Stage 2: validation per-task ROC-AUC, top-1 hit (and its random expectation), loss.
        let epochs = t.classifier.as_ref().map_or(&[][..], |c| &c.fit.epochs[..]);
        let m = epochs.len().max(1) as f64;
        let mut c = ChartBuilder::on(&right)
            .caption(
                format!("{title} · stage 2 (classifier)"),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..m + 0.5, 0.0..1.05)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("validation")
            .draw()?;
        type Of = fn(&hieramas::records::Epoch) -> Option<f64>;
        let stage2: [(&str, RGBColor, Of); 4] = [
            ("per-task ROC-AUC", BLUE, |e| e.valid.task_auc),
            ("top-1 hit", RED, |e| e.valid.top1_hit),
            ("top-1 hit, random", MAGENTA, |e| e.valid.top1_random),
            ("train loss", BLACK, |e| Some(e.loss.min(1.05))),
        ];
        for (label, color, f) in stage2 {
            let s: Vec<(f64, f64)> = epochs
                .iter()
                .filter_map(|e| Some((e.epoch as f64, f(e)?)))
                .collect();
            c.draw_series(LineSeries::new(s, color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// `benchmarks/reproduce-baseline.json`: the SIMULATED results a later run is compared with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub note: String,
    pub profile: String,
    pub date: Option<String>,
    pub commit: Option<String>,
    /// By `part/benchmark/method`.
    pub rows: BTreeMap<String, BaselineRow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineRow {
    /// Percent.
    pub accuracy: f64,
    pub cost_per_query_usd: f64,
    pub queries: usize,
}

/// Whether a row is the baseline's: the same accuracy and queries, and the same cost per query
/// up to the last bit a JSON float may lose on the way through serde_json's parser.
fn same_row(base: &BaselineRow, now: &BaselineRow) -> bool {
    base.accuracy == now.accuracy
        && base.queries == now.queries
        && (base.cost_per_query_usd - now.cost_per_query_usd).abs()
            <= 1e-12
                * base
                    .cost_per_query_usd
                    .abs()
                    .max(now.cost_per_query_usd.abs())
}

/// The SIMULATED parts' accuracy and cost per query, by `part/benchmark/method`.
fn tracked(results: &Results) -> BTreeMap<String, BaselineRow> {
    let mut rows = BTreeMap::new();
    // The official-code parts (`--faithful`) are not part of the tracked pipeline.
    for part in results
        .parts
        .iter()
        .filter(|p| p.simulated && p.settings.official.is_none())
    {
        for (b, v) in &part.benchmarks {
            for (m, e) in &v.methods {
                let Some(s) = e.summary.as_ref().filter(|s| s.queries > 0) else {
                    continue;
                };
                rows.insert(
                    format!("{}/{}/{m}", part.name, b.name()),
                    BaselineRow {
                        accuracy: s.accuracy,
                        cost_per_query_usd: s.cost_pico as f64 / 1e12 / s.queries as f64,
                        queries: s.queries,
                    },
                );
            }
        }
    }
    rows
}

/// What a difference from the tracked baseline does (`cargo xtask reproduce --baseline-check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Check {
    /// Print regressions as a warning; exit 0 (a user's run).
    Warn,
    /// Fail on a regression.
    Fail,
    /// Fail unless every row is identical to the baseline (CI: the simulation is seeded and
    /// must not drift across machines or CPU load).
    Identical,
}

/// The tracked baseline of a profile: `benchmarks/reproduce-baseline.json` for `default`,
/// `benchmarks/reproduce-baseline-<profile>.json` for the others.
pub fn baseline_path(root: &Path, profile: &str) -> PathBuf {
    let name = if profile == "default" {
        "reproduce-baseline.json".to_string()
    } else {
        format!("reproduce-baseline-{profile}.json")
    };
    root.join("benchmarks").join(name)
}

/// Compares the SIMULATED results of the run with the profile's tracked baseline
/// ([`baseline_path`]; the simulator is seeded, so they do not depend on the machine): a
/// regression is a method's accuracy down by more than two standard errors (at least 2
/// points) or its cost per query up by more than 10%; `check` says whether it fails the run.
/// `record` writes the run's results as the baseline instead.
pub fn track(
    root: &Path,
    run: &Path,
    profile: &str,
    record_baseline: bool,
    check: Check,
) -> Result<()> {
    let results: Results = read_json(&run.join("results.json"))?;
    let now = tracked(&results);
    let path = baseline_path(root, profile);
    if record_baseline {
        let v = Baseline {
            note: "SIMULATED results of `cargo xtask reproduce` (hieramas-sim), tracked for regressions".into(),
            profile: profile.into(),
            date: results.machine.date.clone(),
            commit: results.machine.commit.clone(),
            rows: now,
        };
        std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")?;
        println!(
            "recorded the simulated results as the baseline in {}",
            path.display()
        );
        return Ok(());
    }
    let Some(base) = record::<Baseline>(&path)? else {
        println!(
            "no {} yet: nothing to compare (--record-baseline writes one)",
            path.display()
        );
        return Ok(());
    };
    if base.profile != profile {
        bail!(
            "{} is the baseline of profile {}, not {profile}",
            path.display(),
            base.profile
        );
    }
    let mut worse = Vec::new();
    println!(
        "\nSIMULATED results against {} (commit {}):\n  {:<40} {:>14} {:>22}",
        path.display(),
        base.commit.as_deref().unwrap_or("?"),
        "row",
        "accuracy",
        "cost/query (USD)"
    );
    for (k, b) in &base.rows {
        let Some(n) = now.get(k) else {
            println!("  {k:<40} not run this time");
            continue;
        };
        let (ba, bc, a, c) = (
            b.accuracy,
            b.cost_per_query_usd,
            n.accuracy,
            n.cost_per_query_usd,
        );
        let p = (ba / 100.0).clamp(0.01, 0.99);
        let allowed = (2.0 * (p * (1.0 - p) / n.queries as f64).sqrt() * 100.0).max(2.0);
        let flag = if ba - a > allowed || c > bc * 1.10 {
            worse.push(k.clone());
            "  <- regression"
        } else {
            ""
        };
        let same = if same_row(b, n) { "  (identical)" } else { "" };
        println!("  {k:<40} {ba:>6.1} → {a:>5.1} {bc:>10.6} → {c:>9.6}{flag}{same}");
    }
    let identical = base
        .rows
        .iter()
        .filter(|(k, b)| now.get(*k).is_some_and(|n| same_row(b, n)))
        .count();
    println!(
        "  {identical} of {} rows identical to the baseline (accuracy and queries equal, cost per query to 1e-12 relative: the JSON float's last bit)",
        base.rows.len()
    );
    if check == Check::Identical && identical < base.rows.len() {
        let differ: Vec<&str> = base
            .rows
            .iter()
            .filter(|(k, b)| !now.get(*k).is_some_and(|n| same_row(b, n)))
            .map(|(k, _)| k.as_str())
            .collect();
        bail!(
            "{} simulated row(s) differ from {}: {} (the simulation is seeded: it must not depend on the machine or its load)",
            differ.len(),
            path.display(),
            differ.join(", ")
        );
    }
    if !worse.is_empty() {
        let what = format!(
            "{} simulated result(s) regressed against {}: {} (accuracy down by more than two standard errors, or cost per query up by more than 10%)",
            worse.len(),
            path.display(),
            worse.join(", ")
        );
        if check == Check::Warn {
            println!(
                "warning: {what}. The run's results stand; CI fails on this (--baseline-check fail)."
            );
        } else {
            bail!(what);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pareto_front_keeps_only_undominated_points_by_cost() {
        let p = |n: &str, c: f64, a: f64| (n.to_string(), c, a);
        let pts = vec![
            p("cheap", 1.0, 80.0),
            p("dominated", 2.0, 79.0),
            p("better", 3.0, 90.0),
            p("tie-cost-worse", 3.0, 85.0),
            p("best", 5.0, 95.0),
            p("same-acc-dearer", 6.0, 95.0),
        ];
        assert_eq!(pareto_front(&pts), vec![0, 2, 4]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn figures_render_as_svg() {
        let pts = vec![
            ("a".to_string(), 0.001, 90.0),
            ("hieramas".to_string(), 0.002, 95.0),
        ];
        let svg = pareto_svg("t", &pts).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("hieramas") && svg.contains("Pareto"));
        let row: CurveRow = serde_json::from_value(json!({
            "iteration": 1, "temperature": 10.0, "lr": 0.002, "loss": 0.3, "grad_norm": 1.0,
            "system_reward": 0.4, "accuracy": 0.5, "node_accuracy": 0.5, "cost_pico": 1,
            "cost_usd": 1e-12, "metadata_cost_pico": 0, "variant": "Fixed", "credit": "multi",
            "simulated": true, "val_accuracy": 0.6, "val_cost_usd": 0.001
        }))
        .unwrap();
        let fit: hieramas::records::FitReport = serde_json::from_value(json!({
            "train_tasks": [], "valid_tasks": [], "train_samples": 0, "pos_weight": 1.0,
            "epochs": [{"epoch": 1, "loss": 0.7, "lr": 0.001, "selection": 0.6, "valid":
                {"tasks": 2, "samples": 10, "task_auc": 0.6, "auc_tasks": 2, "pooled_auc": 0.6,
                 "accuracy": 0.5, "top1_hit": 0.5, "top1_random": 0.4, "hit_tasks": 2}}],
            "best_epoch": 1, "best_selection": 0.6, "stopped_early": false
        }))
        .unwrap();
        let t = Training {
            curve: vec![row],
            classifier: Some(FitOutput {
                simulated: true,
                benchmark: "math".into(),
                settings: hieramas::records::Stage2Config::builtin("math").unwrap(),
                direction: hieramas::records::Direction::Successors,
                fit,
                cost_model: hieramas::records::CostModel::default(),
                test: None,
            }),
            ..Training::default()
        };
        let svg = curves_svg("t", &t).unwrap();
        assert!(svg.contains("per-task ROC-AUC") && svg.contains("validation solved"));
    }

    #[test]
    fn simulated_results_are_tracked_against_a_recorded_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let (root, run) = (dir.path(), dir.path().join("run"));
        std::fs::create_dir_all(root.join("benchmarks")).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let part = crate::reproduce::profile("default").unwrap().part[0].clone();
        let results = |acc: f64, cost_pico: u64| {
            let summary = |accuracy: f64, queries: usize, cost_pico: u64| Summary {
                benchmark: "math".into(),
                split: "test".into(),
                method: "hieramas".into(),
                model: "m".into(),
                config_hash: "h".into(),
                queries,
                correct: 0,
                accuracy,
                base_accuracy: None,
                cost_pico,
                cost: String::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                latency_ms_p50: 0,
                latency_ms_p90: 0,
                latency_ms_p99: 0,
                cached_calls: 0,
                saved_pico: 0,
            };
            let bench = |m: &str, s: Summary| {
                let methods = BTreeMap::from([(
                    m.to_string(),
                    MethodResult {
                        summary: Some(s),
                        spent_usd: 0.0,
                        records: 0,
                    },
                )]);
                BTreeMap::from([(
                    Benchmark::Math,
                    BenchResult {
                        stage1: Stage1Result {
                            iterations: 0,
                            cost_usd: 0.0,
                            last_validation: None,
                        },
                        stage2_data: DataResult {
                            tasks: 0,
                            runs: 0,
                            positives: 0,
                            cost_usd: 0.0,
                        },
                        classifier: None,
                        methods,
                    },
                )])
            };
            let part_result = |name: &str, simulated: bool, benchmarks| PartResult {
                name: name.into(),
                title: String::new(),
                simulated,
                pool: PathBuf::new(),
                settings: part.clone(),
                benchmarks,
            };
            Results {
                profile: "default".into(),
                description: String::new(),
                machine: Machine {
                    date: Some("d".into()),
                    commit: Some("c".into()),
                    description: String::new(),
                },
                wall_s: 0.0,
                paper: PaperNumbers {
                    source: String::new(),
                    hieramas: BTreeMap::new(),
                    average: None,
                    training_cost_usd: BTreeMap::new(),
                    inference_cost_usd: BTreeMap::new(),
                },
                parts: vec![
                    part_result("sim", true, bench("hieramas", summary(acc, 100, cost_pico))),
                    part_result("local", false, bench("single", summary(0.0, 2, 0))),
                ],
                steps: Vec::new(),
            }
        };
        let write = |v: Results| {
            std::fs::write(run.join("results.json"), serde_json::to_string(&v).unwrap()).unwrap()
        };
        write(results(90.0, 100_000_000));
        // Nothing recorded yet: nothing to compare.
        let fail = Check::Fail;
        track(root, &run, "default", false, fail).unwrap();
        track(root, &run, "default", true, fail).unwrap();
        let base: Baseline = read_json(&root.join("benchmarks/reproduce-baseline.json")).unwrap();
        assert_eq!(base.rows.len(), 1, "only simulated rows: {:?}", base.rows);
        assert_eq!(base.rows["sim/math/hieramas"].cost_per_query_usd, 1e-6);
        track(root, &run, "default", false, Check::Identical).unwrap();
        // Within noise (2 SE at 90%, n = 100: 6 points) and a cheaper run pass, but are not
        // identical.
        write(results(85.0, 90_000_000));
        track(root, &run, "default", false, fail).unwrap();
        let e = track(root, &run, "default", false, Check::Identical)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 simulated row(s) differ"), "{e}");
        // Accuracy down beyond noise, or cost up by more than 10%, fail — or warn only.
        write(results(83.0, 100_000_000));
        let e = track(root, &run, "default", false, fail)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sim/math/hieramas"), "{e}");
        track(root, &run, "default", false, Check::Warn).unwrap();
        write(results(90.0, 111_000_000));
        assert!(track(root, &run, "default", false, fail).is_err());
        // Each profile has its own baseline: none yet for `paper`.
        assert!(track(root, &run, "paper", false, fail).is_ok());
        assert_eq!(
            baseline_path(root, "smoke"),
            root.join("benchmarks/reproduce-baseline-smoke.json")
        );
    }

    #[test]
    fn paper_numbers_parse() {
        let p = paper().unwrap();
        assert!(!p.source.is_empty());
        assert_eq!(p.hieramas.get("mmlu"), Some(&95.2));
        assert_eq!(p.average, Some(94.61));
        assert_eq!(p.training_cost_usd.get("math"), Some(&2.03));
        assert_eq!(p.inference_cost_usd.get("mmlu"), Some(&1.29));
    }
}
