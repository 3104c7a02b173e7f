//! `cargo xtask reproduce`: runs a profile of `reproduce.toml` — every method on a documented
//! subset of each benchmark's test split, through `hieramas eval` (resumable: a rerun reuses
//! the records already written) — then writes the report: `results/<run>/REPORT.md`,
//! `results.csv`, `results.json` and `topologies/*.svg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const PROFILES: &str = include_str!("../reproduce.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Profiles {
    profile: BTreeMap<String, Profile>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    description: String,
    benchmarks: Vec<String>,
    /// Queries per benchmark — one number for all, or a table by benchmark (absent: the whole
    /// test split).
    limit: Option<Limit>,
    max_tokens: Option<u32>,
    samples: u32,
    concurrency: usize,
    methods: Vec<String>,
    /// The single-model baselines' model (default: the pool's first).
    model: Option<String>,
}

impl Profile {
    /// The description on one line.
    pub fn description_line(&self) -> String {
        self.description
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Limit {
    All(usize),
    Each(BTreeMap<String, usize>),
}

/// The profile called `name`.
pub fn profile(name: &str) -> Result<Profile> {
    let all: Profiles = toml::from_str(PROFILES).context("xtask/reproduce.toml")?;
    let names: Vec<&String> = all.profile.keys().collect();
    all.profile
        .get(name)
        .cloned()
        .with_context(|| format!("no profile {name:?} in xtask/reproduce.toml (have {names:?})"))
}

/// What one `hieramas eval` run was and how it ended.
#[derive(Clone, Debug, Serialize)]
struct Job {
    benchmark: String,
    method: String,
    /// `results/<run>/logs/<benchmark>-<method>.jsonl`
    log: PathBuf,
    args: Vec<String>,
    wall_s: f64,
    /// Records this invocation wrote (the others were resumed from an earlier run's log).
    new_records: usize,
    error: Option<String>,
    summary: Option<serde_json::Value>,
}

pub struct Options {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub pool: Option<PathBuf>,
    pub profile_name: String,
    pub profile: Profile,
    pub run_dir: PathBuf,
    /// The baselines' model.
    pub model: String,
    pub limit: Option<usize>,
}

/// Runs every job of the profile, then writes the report. Fails (after the report) when a job
/// did.
pub fn run(o: &Options) -> Result<()> {
    let p = &o.profile;
    let limit_of = |benchmark: &str| limit_for(o.limit, p.limit.as_ref(), benchmark);
    let logs = o.run_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let started = Instant::now();
    let mut jobs = Vec::new();
    let total = p.benchmarks.len() * p.methods.len();
    for benchmark in &p.benchmarks {
        for method in &p.methods {
            let label = method.replace(':', "-");
            let log = logs.join(format!("{benchmark}-{label}.jsonl"));
            let mut args: Vec<String> = ["eval", "--benchmark", benchmark, "--split", "test"]
                .map(String::from)
                .to_vec();
            match method.split_once(':') {
                Some(("mas", topology)) => {
                    args.extend(["--method", "mas", "--topology", topology].map(String::from));
                }
                Some(_) => bail!("unknown method {method:?} in profile {}", o.profile_name),
                None if matches!(method.as_str(), "single" | "cot" | "sc") => {
                    args.extend(["--method".into(), method.clone()]);
                    args.extend(["--model".into(), o.model.clone()]);
                }
                None => args.extend(["--method".into(), method.clone()]),
            }
            if let Some(n) = limit_of(benchmark) {
                args.extend(["--limit".into(), n.to_string()]);
            }
            if let Some(n) = p.max_tokens {
                args.extend(["--max-tokens".into(), n.to_string()]);
            }
            if method == "sc" {
                args.extend(["--samples".into(), p.samples.to_string()]);
            }
            args.extend(["--concurrency".into(), p.concurrency.to_string()]);
            if let Some(pool) = &o.pool {
                args.extend(["--pool".into(), pool.display().to_string()]);
            }
            args.extend(["--data-dir".into(), o.data_dir.display().to_string()]);
            args.extend(["--out".into(), log.display().to_string()]);

            println!(
                "\n[{}/{total}] {benchmark} · {method}   ({:.0} s so far)",
                jobs.len() + 1,
                started.elapsed().as_secs_f64()
            );
            let before = count_lines(&log);
            let t = Instant::now();
            let status = crate::cargo()
                .current_dir(&o.root)
                .args(["run", "-q", "-p", "hieramas-cli", "--"])
                .args(&args)
                .status()
                .context("cannot start cargo run -p hieramas-cli")?;
            let summary_path = log.with_extension("summary.json");
            let summary = std::fs::read_to_string(&summary_path)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok());
            let new_records = count_lines(&log).saturating_sub(before);
            jobs.push(Job {
                benchmark: benchmark.clone(),
                method: method.clone(),
                log,
                args,
                wall_s: t.elapsed().as_secs_f64(),
                new_records,
                error: (!status.success()).then(|| format!("hieramas eval exited with {status}")),
                summary,
            });
        }
    }
    let wall = started.elapsed().as_secs_f64();
    write_report(o, &jobs, wall)?;
    let failed: Vec<String> = jobs
        .iter()
        .filter(|j| j.error.is_some())
        .map(|j| format!("{} {}", j.benchmark, j.method))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed: {}; rerun the same command to resume them",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Queries of `benchmark`: the command line's `--limit`, else the profile's.
fn limit_for(given: Option<usize>, profile: Option<&Limit>, benchmark: &str) -> Option<usize> {
    given.or(match profile? {
        Limit::All(n) => Some(*n),
        Limit::Each(m) => m.get(benchmark).copied(),
    })
}

fn write_report(o: &Options, jobs: &[Job], wall_s: f64) -> Result<()> {
    let limits: BTreeMap<&str, Option<usize>> = o
        .profile
        .benchmarks
        .iter()
        .map(|b| (b.as_str(), limit_for(o.limit, o.profile.limit.as_ref(), b)))
        .collect();
    let dir = &o.run_dir;
    let topo_dir = dir.join("topologies");
    std::fs::create_dir_all(&topo_dir)?;
    let simulated = false; // every call of these runs reached a real model
    let pool_name = o.pool.as_ref().map_or_else(
        || "local (embedded default)".to_string(),
        |p| p.display().to_string(),
    );

    // One SVG per (benchmark, topology) actually run.
    let mut pictures = Vec::new();
    for j in jobs.iter().filter(|j| j.method.starts_with("mas:")) {
        let config = j.log.with_extension("config.json");
        let Ok(text) = std::fs::read_to_string(&config) else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}", config.display()))?;
        let t = hieramas_topology::Topology::from_json(&v["mas"]["topology"].to_string())
            .with_context(|| format!("the topology in {}", config.display()))?;
        let name = j.method.trim_start_matches("mas:");
        let file = format!("{}-{name}.svg", j.benchmark);
        let title = format!(
            "{} · {name} · {} edges, density {:.2}",
            j.benchmark,
            t.edge_count(),
            t.density()
        );
        std::fs::write(topo_dir.join(&file), t.to_svg(&title))?;
        pictures.push((j.benchmark.clone(), name.to_string(), file));
    }

    // results.json and results.csv
    let rows: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let s = j.summary.clone().unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "benchmark": j.benchmark,
                "method": j.method,
                "model": s["model"],
                "queries": s["queries"],
                "correct": s["correct"],
                "accuracy": s["accuracy"],
                "base_accuracy": s["base_accuracy"],
                "cost_pico": s["cost_pico"],
                "cost": s["cost"],
                "prompt_tokens": s["prompt_tokens"],
                "completion_tokens": s["completion_tokens"],
                "latency_ms_p50": s["latency_ms_p50"],
                "latency_ms_p90": s["latency_ms_p90"],
                "config_hash": s["config_hash"],
                "wall_s": (j.wall_s * 10.0).round() / 10.0,
                "new_records": j.new_records,
                "log": j.log.strip_prefix(dir).unwrap_or(&j.log),
                "error": j.error,
                "simulated": simulated,
            })
        })
        .collect();
    let meta = machine();
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "profile": o.profile_name,
            "settings": o.profile,
            "limits": limits,
            "pool": pool_name,
            "baseline_model": o.model,
            "machine": meta,
            "wall_s": wall_s.round(),
            "simulated": simulated,
            "runs": rows,
            "commands": jobs.iter().map(|j| command_line(&j.args)).collect::<Vec<_>>(),
        }))? + "\n",
    )?;
    let cols = [
        "benchmark",
        "method",
        "model",
        "queries",
        "correct",
        "accuracy",
        "base_accuracy",
        "cost_pico",
        "cost",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms_p50",
        "latency_ms_p90",
        "config_hash",
        "wall_s",
        "new_records",
        "error",
        "simulated",
    ];
    let mut csv = cols.join(",") + "\n";
    for r in &rows {
        let cells: Vec<String> = cols.iter().map(|c| csv_cell(&r[*c])).collect();
        csv.push_str(&(cells.join(",") + "\n"));
    }
    std::fs::write(dir.join("results.csv"), csv)?;

    // REPORT.md
    let mut md = format!(
        "# hieramas reproduce — profile `{}`\n\n{}\n\n",
        o.profile_name, o.profile.description
    );
    md.push_str(&format!(
        "- Date: {} · commit {} · machine: {}\n- Pool: {pool_name}; single-model baselines on `{}`\n\
         - Subset: the first queries of each benchmark's seeded **test** split (`datasets/splits/`, seed 0, in split order; the order is seeded random, so they are a fair sample): {}\n\
         - Answers capped at {} tokens; self-consistency {} votes; {} queries in flight\n\
         - Wall time of this invocation: {:.0} s for {} runs, which wrote {} of the {} records (the others were resumed from `logs/` of an earlier invocation)\n- Every number below comes from real model calls and real graders; nothing is simulated.\n\n",
        meta["date"].as_str().unwrap_or("?"),
        meta["commit"].as_str().unwrap_or("?"),
        meta["description"].as_str().unwrap_or("?"),
        o.model,
        limits
            .iter()
            .map(|(b, n)| match n {
                Some(n) => format!("{b} {n}"),
                None => format!("{b} all"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        o.profile.max_tokens.map_or("the prompts' default".into(), |n| n.to_string()),
        o.profile.samples,
        o.profile.concurrency,
        wall_s,
        jobs.len(),
        jobs.iter().map(|j| j.new_records).sum::<usize>(),
        rows.iter().filter_map(|r| r["queries"].as_u64()).sum::<u64>()
    ));
    if o.pool.is_none() {
        md.push_str(
            "These are 135M- and 270M-parameter models: the accuracies show the pipeline working \
             end to end on real inference, not the paper's numbers (those need `--pool \
             pools/paper.toml --profile full`).\n\n",
        );
    }
    for b in &o.profile.benchmarks {
        md.push_str(&format!(
            "## {b}\n\n| method | model | queries | accuracy | cost (USD) | prompt tok | completion tok | latency p50 / p90 (s) | wall (s) / new records |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for (j, r) in jobs.iter().zip(&rows).filter(|(j, _)| &j.benchmark == b) {
            if let Some(e) = &j.error
                && j.summary.is_none()
            {
                md.push_str(&format!(
                    "| {} | — | — | failed: {e} | | | | | |\n",
                    j.method
                ));
                continue;
            }
            let acc = match (r["accuracy"].as_f64(), r["base_accuracy"].as_f64()) {
                (Some(a), Some(base)) => format!("{a:.1}% (base {base:.1}%)"),
                (Some(a), None) => format!("{a:.1}%"),
                _ => "—".into(),
            };
            let secs = |k: &str| {
                r[k].as_f64()
                    .map_or("—".into(), |ms| format!("{:.1}", ms / 1000.0))
            };
            md.push_str(&format!(
                "| {}{} | {} | {} | {} | {} | {} | {} | {} / {} | {:.0} / {} |\n",
                j.method,
                if j.error.is_some() {
                    " (incomplete)"
                } else {
                    ""
                },
                r["model"].as_str().unwrap_or("—"),
                r["queries"],
                acc,
                r["cost"].as_str().unwrap_or("—"),
                r["prompt_tokens"],
                r["completion_tokens"],
                secs("latency_ms_p50"),
                secs("latency_ms_p90"),
                j.wall_s,
                j.new_records
            ));
        }
        for (_, name, file) in pictures.iter().filter(|(pb, _, _)| pb == b) {
            md.push_str(&format!(
                "\nTopology `{name}`: ![{b} {name}](topologies/{file})\n"
            ));
        }
        md.push('\n');
    }
    md.push_str(
        "## Not run yet\n\n- Stage 1 (LLM selector trained with multi-level rewards) and stage 2 \
         (GNN topology classifier) are not implemented yet; the MAS rows use round-robin model \
         assignment and a fixed (full) or seeded random topology.\n\n",
    );
    md.push_str(
        "## Commands\n\nEach row is one resumable `hieramas eval` (records in `logs/`):\n\n```\n",
    );
    for j in jobs {
        md.push_str(&command_line(&j.args));
        md.push('\n');
    }
    md.push_str("```\n");
    std::fs::write(dir.join("REPORT.md"), md)?;
    println!(
        "\nreport: {}\n        {} · {} · {} SVG",
        dir.join("REPORT.md").display(),
        dir.join("results.csv").display(),
        dir.join("results.json").display(),
        pictures.len()
    );
    Ok(())
}

fn command_line(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("hieramas {}", quoted.join(" "))
}

fn csv_cell(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Date, commit and machine, for the report.
fn machine() -> serde_json::Value {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    serde_json::json!({
        "date": out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": out("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
            let dirty = out("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c} + uncommitted changes") } else { c }
        }),
        "cpu": cpu,
        "cores": cores,
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "description": format!("{cores} cores ({cpu}), {mem_gib:.0} GiB"),
    })
}

/// `results/<profile>-<pool>` unless named.
pub fn run_dir(root: &Path, name: Option<&str>, profile: &str, pool: Option<&Path>) -> PathBuf {
    let pool = pool
        .and_then(|p| p.file_stem())
        .map_or("local".to_string(), |s| s.to_string_lossy().into_owned());
    root.join("results")
        .join(name.map_or_else(|| format!("{profile}-{pool}"), String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_name_known_methods() {
        for name in ["default", "full"] {
            let p = profile(name).unwrap();
            assert!(!p.methods.is_empty() && !p.benchmarks.is_empty());
            for m in &p.methods {
                let ok = matches!(m.as_str(), "single" | "cot" | "sc" | "moa" | "debate")
                    || m.starts_with("mas:");
                assert!(ok, "{name}: {m}");
            }
        }
        assert!(profile("nope").unwrap_err().to_string().contains("default"));
    }

    #[test]
    fn limits_come_from_the_command_line_then_the_profile() {
        let each = Limit::Each(BTreeMap::from([("math".to_string(), 2)]));
        assert_eq!(limit_for(None, Some(&each), "math"), Some(2));
        assert_eq!(limit_for(None, Some(&each), "mmlu"), None);
        assert_eq!(limit_for(Some(5), Some(&each), "math"), Some(5));
        assert_eq!(limit_for(None, Some(&Limit::All(3)), "mmlu"), Some(3));
        assert_eq!(limit_for(None, None, "mmlu"), None);
    }

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        assert_eq!(csv_cell(&serde_json::json!("a,b")), "\"a,b\"");
        assert_eq!(
            csv_cell(&serde_json::json!("say \"x\"")),
            "\"say \"\"x\"\"\""
        );
        assert_eq!(csv_cell(&serde_json::json!(1.5)), "1.5");
        assert_eq!(csv_cell(&serde_json::Value::Null), "");
        assert_eq!(
            command_line(&["eval".into(), "a b".into(), "it's".into()]),
            "hieramas eval 'a b' 'it'\\''s'"
        );
    }
}
