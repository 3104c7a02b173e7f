//! Criterion suites with regression tracking: `cargo xtask bench <suite>` runs the suite, reads
//! criterion's estimates of every benchmark that ran, and compares each mean with the recorded
//! baseline (`benchmarks/baseline.json`, keyed by profile and benchmark id). A mean slower than
//! the baseline by more than the threshold fails the task — on the machine the baseline was
//! recorded on; elsewhere the comparison is printed but cannot fail (other hardware, other
//! numbers). `--record` writes the new means as the baseline.
//!
//! `fast` is the part CI runs: the GNN and client-overhead suites in the dev profile (which
//! shares the test build: dependencies at opt-level 3) with criterion's `--quick`. On a shared
//! 2-core VM quick means vary up to ~1.8x between consecutive runs, so CI fails only at 3x.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// A criterion suite: its package and bench target.
pub struct Suite {
    pub name: &'static str,
    /// Where the bench target lives (for readers; the run selects targets by name).
    #[allow(dead_code)]
    pub package: &'static str,
    pub bench: &'static str,
}

pub const SUITES: [Suite; 4] = [
    Suite {
        name: "llm",
        package: "hieramas-llm",
        bench: "client_overhead",
    },
    Suite {
        name: "orchestration",
        package: "hieramas-topology",
        bench: "orchestration",
    },
    Suite {
        name: "gnn",
        package: "hieramas-gnn",
        bench: "gnn",
    },
    Suite {
        name: "serve",
        package: "hieramas-serve",
        bench: "serve",
    },
];

/// `benchmarks/baseline.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub machine: String,
    pub date: String,
    /// `"<profile>:<benchmark id>"` → mean, nanoseconds per iteration.
    pub means_ns: BTreeMap<String, f64>,
}

pub struct Options {
    pub record: bool,
    /// Fail when a mean exceeds the baseline by more than this fraction.
    pub threshold: f64,
    pub quick: bool,
    /// The cargo profile (`bench`, or `dev` for the fast part).
    pub profile: &'static str,
}

/// Runs `suites` and compares (or records) their means.
pub fn run(root: &Path, suites: &[&Suite], opts: &Options, machine: &str) -> Result<()> {
    let started = SystemTime::now();
    // One build for the whole workspace: features unify as in `cargo test --workspace`, so the
    // dev profile reuses the test build instead of compiling candle again with other features.
    let mut cmd = crate::cargo();
    cmd.args(["bench", "--profile", opts.profile, "--workspace"]);
    for s in suites {
        cmd.args(["--bench", s.bench]);
    }
    if opts.quick {
        cmd.args(["--", "--quick"]);
    }
    let names: Vec<&str> = suites.iter().map(|s| s.name).collect();
    crate::run(&mut cmd).with_context(|| format!("bench suites {}", names.join(", ")))?;
    let measured = read_estimates(&root.join("target/criterion"), started)?;
    if measured.is_empty() {
        bail!("criterion wrote no estimates under target/criterion");
    }
    let path = root.join("benchmarks/baseline.json");
    let mut baseline: Baseline = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}", path.display()))?,
        Err(_) => Baseline::default(),
    };
    let same_machine = baseline.machine == machine;
    let mut regressions = Vec::new();
    println!(
        "{:<60} {:>14} {:>14} {:>8}",
        "benchmark", "baseline", "now", "ratio"
    );
    for (id, mean) in &measured {
        let key = format!("{}:{id}", opts.profile);
        match baseline.means_ns.get(&key) {
            Some(&old) => {
                let ratio = mean / old;
                let flag = if ratio > 1.0 + opts.threshold {
                    regressions.push(format!("{key}: {} -> {} ({ratio:.2}x)", ns(old), ns(*mean)));
                    "  SLOWER"
                } else {
                    ""
                };
                println!(
                    "{:<60} {:>14} {:>14} {:>7.2}x{flag}",
                    key,
                    ns(old),
                    ns(*mean),
                    ratio
                );
            }
            None => println!("{:<60} {:>14} {:>14}", key, "-", ns(*mean)),
        }
    }
    if opts.record {
        for (id, mean) in measured {
            baseline
                .means_ns
                .insert(format!("{}:{id}", opts.profile), mean);
        }
        baseline.machine = machine.to_string();
        baseline.date = crate::today();
        std::fs::write(&path, serde_json::to_string_pretty(&baseline)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("recorded the baseline in {}", path.display());
        return Ok(());
    }
    if !regressions.is_empty() {
        if same_machine {
            bail!(
                "{} benchmark(s) slower than the baseline by more than {:.0}%:\n  {}",
                regressions.len(),
                100.0 * opts.threshold,
                regressions.join("\n  ")
            );
        }
        println!(
            "{} slower than the baseline, but it was recorded on another machine ({}); not failing",
            regressions.len(),
            baseline.machine
        );
    }
    Ok(())
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// Every benchmark whose estimates criterion wrote after `since`: id → mean (ns).
pub fn read_estimates(dir: &Path, since: SystemTime) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().is_none_or(|n| n != "benchmark.json")
                || p.parent()
                    .and_then(Path::file_name)
                    .is_none_or(|n| n != "new")
            {
                continue;
            }
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if !fresh {
                continue;
            }
            let meta: CriterionBenchmark = serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("{}: not a criterion benchmark.json", p.display()))?;
            let est_path = p.with_file_name("estimates.json");
            let est: CriterionEstimates =
                serde_json::from_str(&std::fs::read_to_string(&est_path)?).with_context(|| {
                    format!("{}: not a criterion estimates.json", est_path.display())
                })?;
            out.insert(meta.full_id, est.mean.point_estimate);
        }
    }
    Ok(out)
}

/// What xtask reads of criterion's `new/benchmark.json`.
#[derive(serde::Deserialize)]
struct CriterionBenchmark {
    full_id: String,
}

/// What xtask reads of criterion's `new/estimates.json`.
#[derive(serde::Deserialize)]
struct CriterionEstimates {
    mean: CriterionEstimate,
}

#[derive(serde::Deserialize)]
struct CriterionEstimate {
    point_estimate: f64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_only_fresh_estimates() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("gnn/score/new");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("benchmark.json"), r#"{"full_id": "gnn/score"}"#).unwrap();
        std::fs::write(
            b.join("estimates.json"),
            r#"{"mean": {"point_estimate": 1234.5}}"#,
        )
        .unwrap();
        let past = SystemTime::UNIX_EPOCH;
        let got = read_estimates(dir.path(), past).unwrap();
        assert_eq!(got.get("gnn/score"), Some(&1234.5));
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(read_estimates(dir.path(), future).unwrap().is_empty());
    }
}
