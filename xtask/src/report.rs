//! The report of `cargo xtask reproduce`: reads what the steps left (stage-1 curves, stage-2 data,
//! the classifier's report, the eval logs and summaries) and writes `REPORT.md`, `results.json`,
//! `results.csv`, the cost–accuracy Pareto plots and learning curves (`figures/`, SVG via
//! plotters) and the chosen topologies (`topologies/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::{Value, json};

use crate::reproduce::{Options, Outcome, Part, Profile, bench_dir, eval_log};

const PAPER: &str = include_str!("../paper.toml");

/// Lines of a JSONL file; a torn last line (a crash mid-write) is left out.
fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn json_file(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn pico(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// What training one benchmark of a part cost and showed.
#[derive(Default)]
struct Training {
    /// Stage 1: iterations run, and their cost incl. validations (pico-USD).
    iterations: usize,
    stage1_pico: u64,
    curve: Vec<Value>,
    last_validation: Option<Value>,
    /// Stage-2 data: tasks, runs, positives, cost.
    tasks: usize,
    runs: usize,
    positives: usize,
    data_pico: u64,
    /// The classifier's report.json.
    classifier: Option<Value>,
}

fn training(dir: &Path) -> Training {
    let mut t = Training::default();
    let s1 = dir.join("stage1");
    t.curve = jsonl(&s1.join("curve.jsonl"));
    t.last_validation = json_file(&s1.join("validation.json"));
    let val_queries = t
        .last_validation
        .as_ref()
        .and_then(|v| v["queries"].as_f64())
        .unwrap_or(0.0);
    t.iterations = t.curve.len();
    for l in &t.curve {
        t.stage1_pico += pico(&l["cost_pico"]) + pico(&l["metadata_cost_pico"]);
        if let Some(c) = l["val_cost_usd"].as_f64() {
            t.stage1_pico += (c * val_queries * 1e12).round() as u64;
        }
    }
    for task in jsonl(&dir.join("stage2-data").join("tasks.jsonl")) {
        t.tasks += 1;
        for r in task["runs"].as_array().into_iter().flatten() {
            t.runs += 1;
            t.positives += usize::from(r["label"].as_bool() == Some(true));
            t.data_pico += pico(&r["cost_pico"]);
        }
    }
    t.classifier = json_file(&dir.join("classifier").join("report.json"));
    t
}

/// What one method's eval left.
struct Evaluated {
    method: String,
    summary: Option<Value>,
    /// Spent by every record of the log (pico-USD).
    spent_pico: u64,
    records: Vec<Value>,
}

fn evaluated(run: &Path, part: &str, benchmark: &str, method: &str) -> Evaluated {
    let log = eval_log(run, part, benchmark, method);
    let records = jsonl(&log);
    Evaluated {
        method: method.to_string(),
        summary: json_file(&log.with_extension("summary.json")),
        spent_pico: records.iter().map(|r| pico(&r["cost_pico"])).sum(),
        records,
    }
}

/// The eval methods of a part (with `hieramas@unseen` for MMLU when it runs).
fn methods(part: &Part, benchmark: &str) -> Vec<String> {
    let mut m = part.methods.clone();
    if benchmark == "mmlu" && part.unseen.is_some() && m.iter().any(|x| x == "hieramas") {
        m.push("hieramas@unseen".into());
    }
    m
}

/// Everything the run has spent so far on model calls (USD): stage 1, stage-2 data and every
/// eval record.
pub fn spent_usd(run: &Path, profile: &Profile) -> Result<f64> {
    let mut total = 0u64;
    for part in &profile.part {
        for b in &part.benchmarks {
            let t = training(&bench_dir(run, &part.name, b));
            total += t.stage1_pico + t.data_pico;
            for m in methods(part, b) {
                total += evaluated(run, &part.name, b, &m).spent_pico;
            }
        }
    }
    Ok(total as f64 / 1e12)
}

/// Records per split of `benchmark` (`datasets/splits.toml`).
fn split_size(root: &Path, benchmark: &str, split: &str) -> Result<usize> {
    let path = root.join("datasets").join("splits.toml");
    let v: toml::Value = toml::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{}", path.display()))?;
    v["splits"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["benchmark"].as_str() == Some(benchmark) && s["split"].as_str() == Some(split))
        .and_then(|s| s["records"].as_integer())
        .map(|n| n as usize)
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
        for b in &part.benchmarks {
            let dir = bench_dir(sim_run, "sim", b);
            let t = training(&dir);
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
                match per_query(&[evaluated(sim_run, "sim", b, &m)], &m) {
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

fn bench_title(b: &str) -> &str {
    match b {
        "math" => "MATH",
        "mmlu" => "MMLU-Redux",
        "humaneval-plus" => "HumanEval+",
        other => other,
    }
}

/// The published numbers (percent) by method and column.
fn paper() -> Result<(String, BTreeMap<String, f64>)> {
    let v: toml::Value = toml::from_str(PAPER).context("xtask/paper.toml")?;
    let source = v["source"].as_str().unwrap_or_default().to_string();
    let mut m = BTreeMap::new();
    if let Some(t) = v.get("hieramas").and_then(|t| t.as_table()) {
        for (k, x) in t {
            if let Some(f) = x.as_float() {
                m.insert(k.clone(), f);
            }
        }
    }
    Ok((source, m))
}

pub fn write(o: &Options, outcomes: &[Outcome], wall_s: f64) -> Result<()> {
    let run = &o.run_dir;
    let figures = run.join("figures");
    let topo_dir = run.join("topologies");
    std::fs::create_dir_all(&figures)?;
    std::fs::create_dir_all(&topo_dir)?;
    let meta = machine();
    let (paper_source, paper) = paper()?;
    let ran = |s: &str| outcomes.iter().filter(|x| x.status == s).count();

    let mut md = format!(
        "# hieramas reproduce — profile `{}`\n\n{}\n\n",
        o.profile_name,
        crate::reproduce::one_line(&o.profile.description)
    );
    md.push_str(&format!(
        "- Date: {} · commit {} · machine: {}\n- This invocation: {:.0} s; {} steps ran, {} were finished earlier (kept), {} failed, {} blocked by a failed input; the steps themselves took {:.0} s in all\n- Data: {}\n\n",
        meta["date"].as_str().unwrap_or("?"),
        meta["commit"].as_str().unwrap_or("?"),
        meta["description"].as_str().unwrap_or("?"),
        wall_s,
        ran("ran"),
        ran("cached"),
        ran("failed"),
        ran("blocked"),
        outcomes.iter().map(|x| x.wall_s).sum::<f64>(),
        o.data_dir.display()
    ));

    let mut parts_json = Vec::new();
    let mut csv = String::from(
        "part,simulated,benchmark,method,split,queries,correct,accuracy,cost_usd,cost_per_query_usd,prompt_tokens,completion_tokens\n",
    );
    for part in &o.profile.part {
        let label = if part.simulated { "SIMULATED " } else { "" };
        let pool = o
            .pool
            .clone()
            .or_else(|| part.pool.clone())
            .unwrap_or_else(|| PathBuf::from("pools/local.toml (embedded default)"));
        md.push_str(&format!("## Part `{}` — {}\n\n", part.name, part.title));
        if part.simulated {
            md.push_str(
                "**Everything in this part is SIMULATED** (`hieramas-sim`: calibrated stand-ins for the paper's pool that look up the gold answer and are right with a calibrated probability; costs exact for the simulated token counts). It exercises the method at scale; it is not a result of real LLMs. What the simulator cannot show: its models have no content-dependent skill (a task's difficulty is a hash, not its text), so the classifier can learn only structure and unseen MMLU subjects are no harder than seen ones; how answers flow along edges is assumed, not fitted (`benchmarks/simulator.md`).\n\n",
            );
        } else {
            md.push_str(
                "Every number in this part comes from real model calls and real graders.\n\n",
            );
        }
        md.push_str(&format!(
            "Pool `{}`; decision node and baselines: {}; answers ≤ {} tokens; stage 1 {}; stage-2 data: {} train tasks × {} DAGs; test: {}.\n\n",
            pool.display(),
            part.decision.as_deref().unwrap_or("the pool's first model"),
            part.max_tokens,
            if part.stage1.iterations.is_none() && part.stage1.batch_size.is_none() {
                "at the official settings".to_string()
            } else {
                format!(
                    "reduced ({} iterations × batch {}, W = {}, {} validation queries)",
                    part.stage1.iterations.map_or("official".into(), |n| n.to_string()),
                    part.stage1.batch_size.map_or("official".into(), |n| n.to_string()),
                    part.stage1.width.map_or("official".into(), |n| n.to_string()),
                    part.stage1.val_limit.map_or("50".into(), |n| n.to_string())
                )
            },
            part.stage2_tasks
                .as_ref()
                .map_or("all".into(), |t| part
                    .benchmarks
                    .iter()
                    .map(|b| format!("{} {}", bench_title(b), t.get(b).map_or("all".into(), |n| n.to_string())))
                    .collect::<Vec<_>>()
                    .join(", ")),
            part.graphs.unwrap_or(5),
            part.benchmarks
                .iter()
                .map(|b| format!(
                    "{} {}",
                    bench_title(b),
                    o.limit
                        .or_else(|| part.test.as_ref().and_then(|t| t.get(b)))
                        .map_or("all".into(), |n| n.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));

        // Gather.
        let mut trained: BTreeMap<String, Training> = BTreeMap::new();
        let mut evals: BTreeMap<String, Vec<Evaluated>> = BTreeMap::new();
        for b in &part.benchmarks {
            trained.insert(b.clone(), training(&bench_dir(run, &part.name, b)));
            evals.insert(
                b.clone(),
                methods(part, b)
                    .iter()
                    .map(|m| evaluated(run, &part.name, b, m))
                    .collect(),
            );
        }
        let acc = |b: &str, m: &str| -> Option<(f64, usize)> {
            let e = evals.get(b)?.iter().find(|e| e.method == m)?;
            let s = e.summary.as_ref()?;
            Some((s["accuracy"].as_f64()?, s["queries"].as_u64()? as usize))
        };

        // Main table.
        let has_unseen = part.benchmarks.iter().any(|b| b == "mmlu") && part.unseen.is_some();
        md.push_str(&format!(
            "### Accuracy ({label}test split; queries in brackets)\n\n| method |"
        ));
        for b in &part.benchmarks {
            md.push_str(&format!(" {} |", bench_title(b)));
        }
        md.push_str(" average |");
        if has_unseen {
            md.push_str(" MMLU unseen |");
        }
        md.push_str("\n|---|");
        for _ in 0..part.benchmarks.len() + 1 + usize::from(has_unseen) {
            md.push_str("---:|");
        }
        md.push('\n');
        if !paper.is_empty() {
            md.push_str("| *HieraMAS, paper (reported)* |");
            let mut sum = Vec::new();
            for b in &part.benchmarks {
                match paper.get(b.as_str()) {
                    Some(v) => {
                        sum.push(*v);
                        md.push_str(&format!(" *{v:.1}* |"));
                    }
                    None => md.push_str(" |"),
                }
            }
            md.push_str(&avg_cell(&sum, part.benchmarks.len()));
            if has_unseen {
                md.push_str(
                    &paper
                        .get("mmlu-unseen")
                        .map_or(" |".into(), |v| format!(" *{v:.1}* |")),
                );
            }
            md.push('\n');
        }
        for m in &part.methods {
            md.push_str(&format!("| {label}{m} |"));
            let mut sum = Vec::new();
            for b in &part.benchmarks {
                match acc(b, m) {
                    Some((a, n)) => {
                        sum.push(a);
                        md.push_str(&format!(" {a:.1} ({n}) |"));
                    }
                    None => md.push_str(" — |"),
                }
            }
            md.push_str(&avg_cell(&sum, part.benchmarks.len()));
            if has_unseen {
                md.push_str(&match (m.as_str(), acc("mmlu", "hieramas@unseen")) {
                    ("hieramas", Some((a, n))) => format!(" {a:.1} ({n}) |"),
                    _ => " |".into(),
                });
            }
            md.push('\n');
        }
        md.push_str(&format!(
            "\nPaper numbers: {paper_source}. With n test queries one standard error is about √(p(1−p)/n): ±3 points at 90% and n = 100.\n\n"
        ));

        // Cost table.
        md.push_str(&format!("### Cost ({label}USD)\n\n| |"));
        for b in &part.benchmarks {
            md.push_str(&format!(" {} |", bench_title(b)));
        }
        md.push_str(" total |\n|---|");
        for _ in 0..=part.benchmarks.len() {
            md.push_str("---:|");
        }
        md.push('\n');
        let row = |name: String, f: &dyn Fn(&str) -> Option<u64>| {
            let mut line = format!("| {name} |");
            let mut total = 0;
            for b in &part.benchmarks {
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
        md.push_str(&row("training: stage 1 (incl. validation)".into(), &|b| {
            Some(trained[b].stage1_pico)
        }));
        md.push_str(&row("training: stage-2 data".into(), &|b| {
            Some(trained[b].data_pico)
        }));
        md.push_str(&row("**training total**".into(), &|b| {
            Some(trained[b].stage1_pico + trained[b].data_pico)
        }));
        let mut all_methods: Vec<String> = part.methods.clone();
        if has_unseen && part.methods.iter().any(|m| m == "hieramas") {
            all_methods.push("hieramas@unseen".into());
        }
        for m in &all_methods {
            md.push_str(&row(format!("inference: {m} (all queries)"), &|b| {
                evals[b]
                    .iter()
                    .find(|e| &e.method == m)
                    .map(|e| e.spent_pico)
            }));
        }
        md.push_str("\nPer query (inference, USD):\n\n| method |");
        for b in &part.benchmarks {
            md.push_str(&format!(" {} |", bench_title(b)));
        }
        md.push_str("\n|---|");
        for _ in &part.benchmarks {
            md.push_str("---:|");
        }
        md.push('\n');
        for m in &part.methods {
            md.push_str(&format!("| {m} |"));
            for b in &part.benchmarks {
                md.push_str(&match per_query(&evals[b], m) {
                    Some(c) => format!(" {c:.6} |"),
                    None => " — |".into(),
                });
            }
            md.push('\n');
        }
        md.push('\n');

        // Figures.
        md.push_str("### Cost–accuracy (Pareto front)\n\n");
        for b in &part.benchmarks {
            let points: Vec<(String, f64, f64)> = part
                .methods
                .iter()
                .filter_map(|m| Some((m.clone(), per_query(&evals[b], m)?, acc(b, m)?.0)))
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
        md.push_str("### Learning curves\n\n");
        for b in &part.benchmarks {
            let t = &trained[b];
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
                    v["accuracy"].as_f64().unwrap_or(0.0) * 100.0,
                    v["queries"],
                    v["cost_usd"].as_f64().unwrap_or(0.0)
                ));
            }
            md.push_str(&format!(
                ". Stage-2 data: {} tasks, {} runs, {} positive.",
                t.tasks, t.runs, t.positives
            ));
            if let Some(c) = &t.classifier {
                let f = &c["fit"];
                let best = f["best_epoch"].as_u64().unwrap_or(0) as usize;
                let e = f["epochs"]
                    .as_array()
                    .and_then(|e| e.get(best.saturating_sub(1)));
                if let Some(e) = e {
                    md.push_str(&format!(
                        " Classifier: best epoch {best} of {}, validation per-task ROC-AUC {}, top-1 hit {} (random {}).",
                        f["epochs"].as_array().map_or(0, Vec::len),
                        f3(&e["valid"]["task_auc"]),
                        f3(&e["valid"]["top1_hit"]),
                        f3(&e["valid"]["top1_random"])
                    ));
                }
            }
            md.push_str("\n\n");
        }

        // Chosen topologies.
        md.push_str("### Topologies HieraMAS chose\n\n");
        for b in &part.benchmarks {
            let Some(e) = evals[b].iter().find(|e| e.method == "hieramas") else {
                continue;
            };
            let mut counts: BTreeMap<Vec<(usize, usize)>, usize> = BTreeMap::new();
            for r in &e.records {
                let Some(edges) = r["trace"]["plan"]["edges"].as_array() else {
                    continue;
                };
                let mut es: Vec<(usize, usize)> = edges
                    .iter()
                    .filter_map(|x| Some((x[0].as_u64()? as usize, x[1].as_u64()? as usize)))
                    .collect();
                es.sort_unstable();
                *counts.entry(es).or_default() += 1;
            }
            let n: usize = counts.values().sum();
            if n == 0 {
                continue;
            }
            let mut ranked: Vec<(&Vec<(usize, usize)>, &usize)> = counts.iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let roles = hieramas_topology::roleset::RoleSet::builtin(b)?.names();
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

        // JSON + CSV.
        let mut benches = serde_json::Map::new();
        for b in &part.benchmarks {
            let t = &trained[b];
            let mut ms = serde_json::Map::new();
            for e in &evals[b] {
                ms.insert(
                    e.method.clone(),
                    json!({
                        "summary": e.summary,
                        "spent_usd": e.spent_pico as f64 / 1e12,
                        "records": e.records.len(),
                    }),
                );
                if let Some(s) = &e.summary {
                    let q = s["queries"].as_f64().unwrap_or(0.0);
                    let cost = s["cost_pico"].as_f64().unwrap_or(0.0) / 1e12;
                    csv.push_str(&format!(
                        "{},{},{b},{},{},{},{},{},{:.12},{},{},{}\n",
                        part.name,
                        part.simulated,
                        e.method.trim_end_matches("@unseen"),
                        s["split"].as_str().unwrap_or(""),
                        s["queries"],
                        s["correct"],
                        s["accuracy"],
                        cost,
                        if q > 0.0 {
                            format!("{:.12}", cost / q)
                        } else {
                            String::new()
                        },
                        s["prompt_tokens"],
                        s["completion_tokens"],
                    ));
                }
            }
            benches.insert(
                b.clone(),
                json!({
                    "stage1": {
                        "iterations": t.iterations,
                        "cost_usd": t.stage1_pico as f64 / 1e12,
                        "last_validation": t.last_validation.as_ref().map(|v| json!({
                            "accuracy": v["accuracy"], "queries": v["queries"], "cost_usd": v["cost_usd"],
                        })),
                    },
                    "stage2_data": {
                        "tasks": t.tasks, "runs": t.runs, "positives": t.positives,
                        "cost_usd": t.data_pico as f64 / 1e12,
                    },
                    "classifier": t.classifier.as_ref().map(|c| json!({
                        "best_epoch": c["fit"]["best_epoch"],
                        "epochs": c["fit"]["epochs"].as_array().map_or(0, Vec::len),
                        "best_selection": c["fit"]["best_selection"],
                    })),
                    "methods": ms,
                }),
            );
        }
        parts_json.push(json!({
            "name": part.name,
            "title": part.title,
            "simulated": part.simulated,
            "pool": pool,
            "settings": part,
            "benchmarks": benches,
        }));
    }

    md.push_str("## Steps\n\nEach step is one resumable `hieramas` command (outputs under this folder; `steps/<id>.json` marks a finished one):\n\n| step | this invocation | wall (s, when it ran) | command |\n|---|---|---:|---|\n");
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
    std::fs::write(run.join("REPORT.md"), md)?;
    std::fs::write(run.join("results.csv"), csv)?;
    std::fs::write(
        run.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "profile": o.profile_name,
            "description": crate::reproduce::one_line(&o.profile.description),
            "machine": meta,
            "wall_s": wall_s.round(),
            "paper": {"source": paper_source, "hieramas": paper},
            "parts": parts_json,
            "steps": outcomes,
        }))? + "\n",
    )?;
    println!(
        "\nreport: {}\n        results.csv · results.json · figures/ · topologies/",
        run.join("REPORT.md").display()
    );
    Ok(())
}

/// Date, commit and machine, for the report.
fn machine() -> Value {
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
    json!({
        "date": out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": out("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
            let dirty = out("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c} + uncommitted changes") } else { c }
        }),
        "description": format!("{}, {mem_gib:.0} GiB", crate::machine()),
    })
}

fn f3(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.3}"))
}

fn avg_cell(values: &[f64], of: usize) -> String {
    if values.len() == of && of > 0 {
        format!(" {:.1} |", values.iter().sum::<f64>() / of as f64)
    } else {
        " — |".into()
    }
}

/// Mean cost per query (USD) of `method` by its summary.
fn per_query(evals: &[Evaluated], method: &str) -> Option<f64> {
    let s = evals
        .iter()
        .find(|e| e.method == method)?
        .summary
        .as_ref()?;
    let q = s["queries"].as_f64().filter(|q| *q > 0.0)?;
    Some(s["cost_pico"].as_f64()? / 1e12 / q)
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
        let it = |l: &Value| l["iteration"].as_f64().unwrap_or(0.0);
        let n = t.curve.iter().map(it).fold(1.0, f64::max);
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
        let series = |key: &str| -> Vec<(f64, f64)> {
            t.curve
                .iter()
                .filter_map(|l| Some((it(l), l[key].as_f64()?)))
                .collect()
        };
        for (key, label, color) in [
            ("accuracy", "train batch solved", BLUE),
            ("system_reward", "system reward", GREEN),
            ("val_accuracy", "validation solved", RED),
        ] {
            let s = series(key);
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
        let epochs: Vec<Value> = t
            .classifier
            .as_ref()
            .and_then(|c| c["fit"]["epochs"].as_array().cloned())
            .unwrap_or_default();
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
        let ep = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<(f64, f64)> {
            epochs
                .iter()
                .filter_map(|e| Some((e["epoch"].as_f64()?, f(e)?)))
                .collect()
        };
        for (label, color, s) in [
            (
                "per-task ROC-AUC",
                BLUE,
                ep(&|e| e["valid"]["task_auc"].as_f64()),
            ),
            ("top-1 hit", RED, ep(&|e| e["valid"]["top1_hit"].as_f64())),
            (
                "top-1 hit, random",
                MAGENTA,
                ep(&|e| e["valid"]["top1_random"].as_f64()),
            ),
            (
                "train loss",
                BLACK,
                ep(&|e| e["loss"].as_f64().map(|l| l.min(1.05))),
            ),
        ] {
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

/// The SIMULATED parts' accuracy and cost per query, by `part/benchmark/method`.
fn tracked(results: &Value) -> BTreeMap<String, (f64, f64, u64)> {
    let mut rows = BTreeMap::new();
    for part in results["parts"].as_array().into_iter().flatten() {
        if part["simulated"].as_bool() != Some(true) {
            continue;
        }
        let name = part["name"].as_str().unwrap_or("?");
        for (b, v) in part["benchmarks"].as_object().into_iter().flatten() {
            for (m, e) in v["methods"].as_object().into_iter().flatten() {
                let s = &e["summary"];
                let (Some(acc), Some(q), Some(c)) = (
                    s["accuracy"].as_f64(),
                    s["queries"].as_u64().filter(|q| *q > 0),
                    s["cost_pico"].as_f64(),
                ) else {
                    continue;
                };
                rows.insert(format!("{name}/{b}/{m}"), (acc, c / 1e12 / q as f64, q));
            }
        }
    }
    rows
}

/// Compares the SIMULATED results of the run with `benchmarks/reproduce-baseline.json` (the
/// simulator is seeded, so they do not depend on the machine): fails when a method's accuracy
/// fell by more than two standard errors (at least 2 points) or its cost per query rose by
/// more than 10%. `record` writes the run's results as the baseline instead.
pub fn track(root: &Path, run: &Path, profile: &str, record: bool) -> Result<()> {
    let results: Value = json_file(&run.join("results.json")).context("no results.json")?;
    let now = tracked(&results);
    let path = root.join("benchmarks").join("reproduce-baseline.json");
    if record {
        let rows: serde_json::Map<String, Value> = now
            .iter()
            .map(|(k, (a, c, q))| {
                (
                    k.clone(),
                    json!({"accuracy": a, "cost_per_query_usd": c, "queries": q}),
                )
            })
            .collect();
        let v = json!({
            "note": "SIMULATED results of `cargo xtask reproduce` (hieramas-sim), tracked for regressions",
            "profile": profile,
            "date": results["machine"]["date"],
            "commit": results["machine"]["commit"],
            "rows": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")?;
        println!(
            "recorded the simulated results as the baseline in {}",
            path.display()
        );
        return Ok(());
    }
    let Some(base) = json_file(&path) else {
        println!(
            "no {} yet: nothing to compare (--record-baseline writes one)",
            path.display()
        );
        return Ok(());
    };
    if base["profile"].as_str() != Some(profile) {
        println!(
            "the tracked baseline is of profile {}, not {profile}: not compared",
            base["profile"]
        );
        return Ok(());
    }
    let mut worse = Vec::new();
    println!(
        "\nSIMULATED results against {} (commit {}):\n  {:<40} {:>14} {:>22}",
        path.display(),
        base["commit"].as_str().unwrap_or("?"),
        "row",
        "accuracy",
        "cost/query (USD)"
    );
    for (k, b) in base["rows"].as_object().into_iter().flatten() {
        let (Some(ba), Some(bc)) = (b["accuracy"].as_f64(), b["cost_per_query_usd"].as_f64())
        else {
            continue;
        };
        let Some((a, c, q)) = now.get(k) else {
            println!("  {k:<40} not run this time");
            continue;
        };
        let p = (ba / 100.0).clamp(0.01, 0.99);
        let allowed = (2.0 * (p * (1.0 - p) / *q as f64).sqrt() * 100.0).max(2.0);
        let flag = if ba - a > allowed || *c > bc * 1.10 {
            worse.push(k.clone());
            "  <- regression"
        } else {
            ""
        };
        println!("  {k:<40} {ba:>6.1} → {a:>5.1} {bc:>10.6} → {c:>9.6}{flag}");
    }
    if !worse.is_empty() {
        anyhow::bail!(
            "{} simulated result(s) regressed against {}: {} (accuracy down by more than two standard errors, or cost per query up by more than 10%)",
            worse.len(),
            path.display(),
            worse.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = Training {
            curve: vec![
                json!({"iteration": 1, "accuracy": 0.5, "system_reward": 0.4, "val_accuracy": 0.6}),
            ],
            classifier: Some(
                json!({"fit": {"epochs": [{"epoch": 1, "loss": 0.7, "valid": {"task_auc": 0.6, "top1_hit": 0.5, "top1_random": 0.4}}]}}),
            ),
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
        let results = |acc: f64, cost_pico: u64| {
            json!({
                "machine": {"date": "d", "commit": "c"},
                "parts": [
                    {"name": "sim", "simulated": true, "benchmarks": {"math": {"methods": {
                        "hieramas": {"summary": {"accuracy": acc, "queries": 100, "cost_pico": cost_pico}}
                    }}}},
                    {"name": "local", "simulated": false, "benchmarks": {"math": {"methods": {
                        "single": {"summary": {"accuracy": 0.0, "queries": 2, "cost_pico": 0}}
                    }}}}
                ]
            })
        };
        let write = |v: Value| std::fs::write(run.join("results.json"), v.to_string()).unwrap();
        write(results(90.0, 100_000_000));
        // Nothing recorded yet: nothing to compare.
        track(root, &run, "default", false).unwrap();
        track(root, &run, "default", true).unwrap();
        let base = json_file(&root.join("benchmarks/reproduce-baseline.json")).unwrap();
        let rows = base["rows"].as_object().unwrap();
        assert_eq!(rows.len(), 1, "only simulated rows: {rows:?}");
        assert_eq!(rows["sim/math/hieramas"]["cost_per_query_usd"], 1e-6);
        // Within noise (2 SE at 90%, n = 100: 6 points) and a cheaper run pass.
        write(results(85.0, 90_000_000));
        track(root, &run, "default", false).unwrap();
        // Accuracy down beyond noise, or cost up by more than 10%, fail.
        write(results(83.0, 100_000_000));
        let e = track(root, &run, "default", false).unwrap_err().to_string();
        assert!(e.contains("sim/math/hieramas"), "{e}");
        write(results(90.0, 111_000_000));
        assert!(track(root, &run, "default", false).is_err());
        // Another profile's baseline is not compared.
        assert!(track(root, &run, "paper", false).is_ok());
    }

    #[test]
    fn paper_numbers_parse() {
        let (source, m) = paper().unwrap();
        assert!(!source.is_empty());
        assert_eq!(m.get("mmlu"), Some(&95.2));
    }
}
