//! `hieramas grade`: the deterministic graders over files in ecosystem formats.
//!
//! - `humaneval-plus --samples S.jsonl`: evalplus sample lines `{"task_id", "solution"}` or
//!   `{"task_id", "completion"}` (then the program is prompt + completion); writes
//!   `S.eval.jsonl` (one line per sample, input order) and prints pass@1 on base and plus.
//! - `math --pairs P.jsonl`, `mmlu --pairs P.jsonl`: lines `{"gold", "response"}` (MMLU may
//!   add `"choices"`); one `{"correct", "extracted"}` line per pair on stdout, a summary on
//!   stderr. A pair that cannot be graded (malformed line, bad gold, a grader error) gets
//!   `{"line", "correct": false, "error"}` on its line and the rest are still graded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hieramas_tasks::data::{DataDir, read_jsonl};
use hieramas_tasks::humaneval::{Grader, Isolation, SandboxOptions, default_cache_dir};
use hieramas_tasks::{math, mmlu};
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum GradeCommand {
    /// Runs evalplus-format samples against HumanEval+ base and plus inputs, sandboxed.
    HumanevalPlus {
        #[arg(long)]
        samples: PathBuf,
        /// The benchmark files (default: $HIERAMAS_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Programs run at once (default: the number of cores).
        #[arg(long)]
        parallel: Option<usize>,
        /// Where bubblewrap cannot run, run programs as plain processes (rlimits only, with
        /// this user's files and network) instead of refusing; verdicts say `sandboxed: false`.
        #[arg(long)]
        allow_unsandboxed: bool,
    },
    /// Grades `{"gold", "response"}` lines as MATH answers.
    Math {
        #[arg(long)]
        pairs: PathBuf,
    },
    /// Grades `{"gold", "response", "choices"?}` lines as MMLU letters.
    Mmlu {
        #[arg(long)]
        pairs: PathBuf,
    },
}

pub fn run(cmd: GradeCommand) -> Result<()> {
    match cmd {
        GradeCommand::HumanevalPlus {
            samples,
            data_dir,
            parallel,
            allow_unsandboxed,
        } => humaneval_plus(&samples, data_dir.as_deref(), parallel, allow_unsandboxed),
        GradeCommand::Math { pairs } => {
            #[derive(Deserialize)]
            struct Pair {
                gold: String,
                response: String,
            }
            grade_pairs(&pairs, |p: Pair| {
                let v = math::grade(&p.response, &p.gold);
                Ok(PairVerdict {
                    correct: v.correct,
                    extracted: v.extracted,
                })
            })
        }
        GradeCommand::Mmlu { pairs } => {
            #[derive(Deserialize)]
            struct Pair {
                gold: serde_json::Value,
                response: String,
                #[serde(default)]
                choices: Option<Vec<String>>,
            }
            grade_pairs(&pairs, |p: Pair| {
                let Some(gold) = mmlu::parse_gold(&p.gold) else {
                    return Err(format!(
                        "field `gold`: {} is neither a letter A-D nor an index 0-3",
                        p.gold
                    ));
                };
                let v = mmlu::grade(&p.response, gold, p.choices.as_deref());
                Ok(PairVerdict {
                    correct: v.correct,
                    extracted: v.extracted.map(String::from),
                })
            })
        }
    }
}

/// One output line of `grade math|mmlu`: the verdict, or what went wrong with that pair.
#[derive(Serialize)]
struct PairVerdict {
    correct: bool,
    extracted: Option<String>,
}

#[derive(Serialize)]
struct PairError {
    line: usize,
    correct: bool,
    error: String,
}

/// Grades each line of `path` on its own: a malformed line, an unusable gold or a grader that
/// fails (even by panicking) is reported on that pair's output line (`{"line", "correct":
/// false, "error"}`) and counted, and the rest are still graded. Only an unreadable file stops.
fn grade_pairs<P: serde::de::DeserializeOwned>(
    path: &Path,
    grade: impl Fn(P) -> Result<PairVerdict, String>,
) -> Result<()> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    let (mut n, mut correct, mut errors) = (0usize, 0usize, 0usize);
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        n += 1;
        let verdict = hieramas_tasks::data::parse_line::<P>(path, i + 1, &text)
            .map_err(|e| e.to_string())
            .and_then(|pair| {
                hieramas_tasks::catch_grader(|| grade(pair)).unwrap_or_else(|e| Err(e.to_string()))
            });
        let out = match verdict {
            Ok(v) => {
                correct += usize::from(v.correct);
                serde_json::to_string(&v)?
            }
            Err(error) => {
                errors += 1;
                eprintln!("{}:{}: {error}", path.display(), i + 1);
                serde_json::to_string(&PairError {
                    line: i + 1,
                    correct: false,
                    error,
                })?
            }
        };
        writeln!(stdout, "{out}")?;
    }
    stdout.flush()?;
    let pct = if n == 0 {
        0.0
    } else {
        100.0 * correct as f64 / n as f64
    };
    eprintln!("{correct}/{n} correct ({pct:.1}%), {errors} pair(s) not graded");
    Ok(())
}

#[derive(Deserialize)]
struct Sample {
    task_id: String,
    #[serde(default)]
    solution: Option<String>,
    #[serde(default)]
    completion: Option<String>,
}

fn humaneval_plus(
    samples_path: &Path,
    data_dir: Option<&Path>,
    parallel: Option<usize>,
    allow_unsandboxed: bool,
) -> Result<()> {
    let dir = DataDir::resolve(data_dir)?;
    let tasks = dir.humaneval_plus()?;
    let samples: Vec<Sample> = read_jsonl(samples_path)?;
    let mut opts = SandboxOptions {
        allow_unsandboxed,
        ..SandboxOptions::default()
    };
    if let Some(p) = parallel {
        opts.parallelism = p.max(1);
    }
    let grader = Grader::new(tasks, default_cache_dir(), opts);
    let mut programs = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let Some(task) = grader.task(&s.task_id) else {
            bail!(
                "{}:{}: field `task_id`: unknown task {:?}",
                samples_path.display(),
                i + 1,
                s.task_id
            );
        };
        let program = match (&s.solution, &s.completion) {
            (Some(sol), _) => sol.clone(),
            (None, Some(c)) => format!("{}{}", task.prompt, c),
            (None, None) => bail!(
                "{}:{}: field `solution`: the sample has neither `solution` nor `completion`",
                samples_path.display(),
                i + 1
            ),
        };
        programs.push((s.task_id.clone(), program));
    }
    if grader.isolation()? == Isolation::Unsandboxed {
        eprintln!(
            "warning: bubblewrap cannot run here: programs run UNSANDBOXED (rlimits only, with this user's files and network); verdicts say \"sandboxed\": false"
        );
    }
    let bar = crate::bar::counter(programs.len() as u64, "programs");
    bar.set_message("expected outputs");
    grader
        .prepare()
        .context("computing the expected outputs from the canonical solutions")?;
    bar.set_message("grading");
    let results = grader.grade_many(&programs, &|n| bar.inc(n as u64));
    bar.finish_and_clear();

    let out_path = eval_path(samples_path);
    let tmp = out_path.with_extension("jsonl.tmp");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    // Per task: (samples, base passes, plus passes), for pass@1 as evalplus averages it.
    let mut per_task: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for ((task_id, _), r) in programs.iter().zip(results) {
        let r = r.with_context(|| format!("grading a sample of {task_id}"))?;
        let e = per_task.entry(task_id).or_default();
        e.0 += 1;
        e.1 += usize::from(r.base_pass());
        e.2 += usize::from(r.plus_pass());
        let line = serde_json::json!({
            "task_id": task_id,
            "base_pass": r.base_pass(),
            "plus_pass": r.plus_pass(),
            "base_status": r.base.status,
            "plus_status": r.plus.status,
            "error": r.first_error(),
            "sandboxed": r.sandboxed,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, &out_path).with_context(|| format!("writing {}", out_path.display()))?;
    let tasks = per_task.len().max(1) as f64;
    let pass_at_1 = |pick: fn(&(usize, usize, usize)) -> usize| {
        100.0
            * per_task
                .values()
                .map(|t| pick(t) as f64 / t.0 as f64)
                .sum::<f64>()
            / tasks
    };
    println!(
        "humaneval+ ({} samples, {} tasks)\npass@1 base: {:.1}\npass@1 plus: {:.1}\nper-sample verdicts: {}",
        programs.len(),
        per_task.len(),
        pass_at_1(|t| t.1),
        pass_at_1(|t| t.2),
        out_path.display()
    );
    Ok(())
}

/// `S.jsonl` → `S.eval.jsonl`.
fn eval_path(samples: &Path) -> PathBuf {
    let name = samples
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    samples.with_file_name(format!("{stem}.eval.jsonl"))
}
