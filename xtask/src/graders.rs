//! `cargo xtask bench graders`: our MATH and MMLU graders beside HF math-verify on the
//! committed labelled agreement sets (`crates/hieramas-tasks/tests/fixtures/`).
//!
//! math-verify is installed into `target/graders-venv` on first use (PyPI; never a runtime
//! dependency of hieramas) and driven by `xtask/graders/grade_with_math_verify.py`. Both graders see the
//! same pairs; the table printed at the end is what `benchmarks/graders.md` records.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use hieramas_tasks::agreement::{
    self, Agreement, Disagreement, MathPair, MmluPair, score_math, score_mmlu,
};
use serde::Deserialize;

/// The math-verify release measured; bump it deliberately and re-record.
const MATH_VERIFY: &str = "math-verify==0.9.0";

/// One line of `grade_with_math_verify.py`'s output.
#[derive(Deserialize)]
struct MvVerdict {
    set: String,
    id: String,
    correct: bool,
    #[serde(default)]
    error: Option<String>,
    micros: f64,
}

pub fn run(root: &Path, machine: &str, date: &str) -> Result<()> {
    let dir = agreement::fixtures_dir();
    let math = agreement::load_math(&dir)?;
    let mmlu = agreement::load_mmlu(&dir)?;
    let ours = [("MATH", score_math(&math)), ("MMLU", score_mmlu(&mmlu))];

    let venv = root.join("target/graders-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        crate::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        crate::run(Command::new(venv.join("bin/pip")).args(["install", "-q", MATH_VERIFY]))?;
    }
    let out = Command::new(&python)
        .arg(root.join("xtask/graders/grade_with_math_verify.py"))
        .arg(dir.join("math_pairs.jsonl"))
        .arg(dir.join("mmlu_pairs.jsonl"))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "grade_with_math_verify.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut verdicts: HashMap<(String, String), MvVerdict> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: MvVerdict = serde_json::from_str(line).with_context(|| {
            format!("grade_with_math_verify.py wrote an unreadable line: {line}")
        })?;
        verdicts.insert((v.set.clone(), v.id.clone()), v);
    }
    let labels = |set: &str| -> Vec<(String, bool)> {
        match set {
            "MATH" => math
                .iter()
                .map(|p: &MathPair| (p.id.clone(), p.correct))
                .collect(),
            _ => mmlu
                .iter()
                .map(|p: &MmluPair| (p.id.clone(), p.correct))
                .collect(),
        }
    };
    let mut theirs = Vec::new();
    for (set, _) in &ours {
        let key = set.to_lowercase();
        let mut a = Agreement::default();
        let mut total = 0.0;
        for (id, label) in labels(set) {
            let v = verdicts.get(&(key.clone(), id.clone())).with_context(|| {
                format!("grade_with_math_verify.py gave no verdict for {set} pair {id}")
            })?;
            a.pairs += 1;
            total += v.micros;
            a.max_micros = a.max_micros.max(v.micros);
            if v.correct == label {
                a.agree += 1;
            } else {
                a.disagreements.push(Disagreement {
                    id,
                    label,
                    graded: v.correct,
                    extracted: v.error.clone(),
                });
            }
        }
        a.mean_micros = total / a.pairs.max(1) as f64;
        theirs.push(a);
    }

    for ((set, o), m) in ours.iter().zip(&theirs) {
        println!("\n{set}: pairs where a grader differs from the label");
        let ids = |a: &Agreement| -> Vec<String> {
            a.disagreements.iter().map(|d| d.id.clone()).collect()
        };
        println!(
            "  hieramas ({}): {}",
            o.disagreements.len(),
            ids(o).join(" ")
        );
        println!(
            "  math-verify ({}): {}",
            m.disagreements.len(),
            ids(m).join(" ")
        );
        for d in &o.disagreements {
            println!(
                "    hieramas {}: label {} graded {} (read {:?})",
                d.id, d.label, d.graded, d.extracted
            );
        }
    }
    println!("\nmachine: {machine}; date: {date}; math-verify: {MATH_VERIFY}\n");
    println!(
        "| set | pairs | hieramas agree | math-verify agree | hieramas mean / max per pair | math-verify mean / max per pair |"
    );
    println!("|---|---|---|---|---|---|");
    for ((set, o), m) in ours.iter().zip(&theirs) {
        println!(
            "| {set} | {} | {} ({:.1}%) | {} ({:.1}%) | {:.0} µs / {:.1} ms | {:.0} µs / {:.1} ms |",
            o.pairs,
            o.agree,
            100.0 * o.rate(),
            m.agree,
            100.0 * m.rate(),
            o.mean_micros,
            o.max_micros / 1e3,
            m.mean_micros,
            m.max_micros / 1e3,
        );
    }
    println!(
        "\nMMLU with math-verify: its StringExtractionConfig (letters A-D), for reference; it is not built for chat-style letter answers."
    );
    println!("record the table in benchmarks/graders.md");
    Ok(())
}
