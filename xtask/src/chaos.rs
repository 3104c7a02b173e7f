//! `cargo xtask chaos`: the pipeline's commands killed with SIGKILL at random moments while a
//! loopback server injects faults, then resumed, and checked against uninterrupted runs.
//!
//! A fault-injecting OpenAI-compatible server (`hieramas-testkit`) runs inside this process on
//! 127.0.0.1; each request draws, from a seed, a 429 with `Retry-After`, a 500/503, a dropped
//! connection, a garbled body, an answer slower than the client's timeout or (for the streaming
//! model) a cut SSE stream. The server bills every request it processed, as a provider would.
//! Four cases — `hieramas eval` (a multi-agent system), `hieramas train stage1`, `hieramas train
//! stage2-data` and `cargo xtask reproduce --profile smoke` on a pool of the server's models —
//! each run once uninterrupted (the reference), then again from nothing in rounds: killed (the
//! whole process group) after 2–35% of the reference's time, resumed, killed again, … and run
//! to the end once the case's share of `--kills` has landed (a round whose command finishes
//! before then is checked, and another round starts from nothing). After each round:
//!
//! - **nothing lost, nothing duplicated**: every JSONL output holds the reference's lines, each
//!   once (compared as multisets, volatile fields aside);
//! - **identical outputs**: every other output file equals the reference's — JSON and TOML with
//!   wall-clock fields, attempt counts and hashes over absolute paths left out and the run's
//!   folder written as `{out}`, everything else (checkpoints included) byte for byte; the
//!   budget ledger, caches and REPORT.md (wall times in prose) are not compared;
//! - **budget**: the ledger's money never passes the cap, and the provider's bill lies between
//!   the money the ledger knows from reported usage and all it charged (known + conservative
//!   estimates), so what we count is never less than what was billed.
//!
//! Last, the eval case runs under 40% of the money it needs, killed three times: it stops
//! when the money is spent, no record written twice, ledger and bill under the cap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hieramas_llm::{Price, Usage, Usd};
use hieramas_testkit::{Bill, Fault, RandomFaults, ServerOptions, TestServer};
use serde::Serialize;
use serde_json::Value;

/// The pool's models: (id, streaming, input $/M, output $/M).
const MODELS: [(&str, bool, &str, &str); 4] = [
    ("gpt-5-mini", false, "0.25", "2"),
    ("qwen3-80b", true, "0.10", "0.80"),
    ("llama-8b", false, "0.02", "0.05"),
    ("mistral-24b", false, "0.05", "0.10"),
];

/// The cap each command runs under (USD); generous, so that a chaos run is not stopped by the
/// money its retries and kills cost (`spent <= cap` is checked all the same). The smoke
/// reproduction echoes long prompts at up to 2048 tokens: more.
const CAP_USD: &str = "5";
const REPRODUCE_CAP_USD: &str = "100";

/// Fields that differ between two uninterrupted runs (wall-clock times, retry counts) or name
/// the run's own folder, left out when outputs are compared.
const VOLATILE: [&str; 11] = [
    "latency",
    "latency_ms",
    "wall_s",
    "wall_ms",
    "elapsed",
    "elapsed_s",
    "attempts",
    "secs",
    "seconds",
    "date",
    "machine",
];

/// Whether a field is a time, a retry count or a hash over absolute paths ([`VOLATILE`],
/// `latency*`, `*_ms`, `*_at`, `*_unix`, `config_hash`: an eval's configuration names its
/// checkpoints by path, and the configuration itself is compared with the paths made relative).
fn volatile(key: &str) -> bool {
    VOLATILE.contains(&key)
        || key == "config_hash"
        || key.starts_with("latency")
        || key.ends_with("_ms")
        || key.ends_with("_at")
        || key.ends_with("_unix")
}

/// Output files and folders not compared: the budget ledger (it records this run's retries and
/// kills, checked on its own), caches (content-addressed stores whose layout depends on write
/// order), logs of the commands' output.
const SKIPPED: [&str; 6] = [
    "budget.jsonl",
    "embeddings",
    "metadata",
    "cache",
    "chaos.log",
    "REPORT.md",
];

pub struct Options {
    /// Kills in all, shared out over the four cases.
    pub kills: usize,
    pub seed: u64,
    /// Where the references, the chaos runs and the report go.
    pub out: PathBuf,
    /// Smaller sizes (CI).
    pub quick: bool,
    /// Only the cases named (all when empty).
    pub only: Vec<String>,
}

/// What one case did, as `<out>/chaos.json` records it (summed over its rounds).
#[derive(Debug, Default, Serialize)]
pub struct CaseReport {
    pub case: String,
    pub reference_s: f64,
    pub chaos_s: f64,
    pub kills: usize,
    /// Rounds from an empty folder to a finished run (each compared with the reference).
    pub rounds: usize,
    pub runs: usize,
    pub files_compared: usize,
    pub lines_compared: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub differing_files: Vec<String>,
    pub cap_usd: f64,
    /// The most one round's ledger charged (each round runs under the cap).
    pub max_round_spent_usd: f64,
    pub ledger_known_usd: f64,
    pub ledger_total_usd: f64,
    pub billed_usd: f64,
    /// Rounds where the bill was not between the known money and all that was charged.
    pub money_errors: Vec<String>,
    pub attempts: u64,
    pub retries: u64,
    pub interrupted: u64,
}

impl CaseReport {
    fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.differing_files.is_empty()
            && self.max_round_spent_usd <= self.cap_usd
            && self.money_errors.is_empty()
    }
}

/// The whole run, `<out>/chaos.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub fault_rate: f64,
    pub requests: usize,
    pub cases: Vec<CaseReport>,
    pub tight_budget: Option<TightBudget>,
}

/// The eval case again under a cap it cannot finish within, killed as often: the money charged
/// and the provider's bill both stay under the cap, and no record is written twice.
#[derive(Debug, Default, Serialize)]
pub struct TightBudget {
    pub cap_usd: f64,
    pub kills: usize,
    pub runs: usize,
    /// Queries asked for, and records written before the cap stopped the run.
    pub queries: usize,
    pub records: usize,
    pub duplicated: usize,
    pub ledger_total_usd: f64,
    pub billed_usd: f64,
}

impl TightBudget {
    fn ok(&self) -> bool {
        self.duplicated == 0
            && self.ledger_total_usd <= self.cap_usd
            && self.billed_usd <= self.cap_usd
            && self.records > 0
            && self.records < self.queries
    }
}

/// Runs the eval case under `cap` (less than it needs), killed after 0.1-0.7 s until 3 kills
/// land, then to the end: it stops when the money is spent.
fn tight_budget(
    root: &Path,
    eval: &Case,
    cap: Usd,
    server: &TestServer,
    rng: &mut Rng,
    out: &Path,
) -> Result<TightBudget> {
    let dir = out.join("tight-budget");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    // Exact decimal digits (an f64 printed may carry more places than a pico-dollar).
    let cap_text = cap.to_string().trim_start_matches('$').to_string();
    let args: Vec<String> = eval
        .args
        .iter()
        .map(|a| {
            if a == CAP_USD {
                cap_text.clone()
            } else {
                a.clone()
            }
        })
        .collect();
    let queries = args
        .iter()
        .position(|a| a == "--limit")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .context("the eval case has a --limit")?;
    let case = Case {
        name: "tight-budget",
        program: eval.program.clone(),
        args,
        ledger: eval.ledger,
        cap: CAP_USD,
    };
    println!("\ntight budget: eval under {cap}, killed at random");
    let before = server.bills();
    let mut t = TightBudget {
        cap_usd: cap.as_f64(),
        queries,
        ..TightBudget::default()
    };
    let chaos = dir.join("chaos");
    loop {
        let mut child = spawn(root, &case, &chaos)?;
        t.runs += 1;
        let limit = (t.kills < 3).then(|| Duration::from_secs_f64(0.1 + 0.6 * rng.next()));
        match wait(&mut child, limit)? {
            None => {
                kill_group(&mut child)?;
                t.kills += 1;
            }
            // Finished, or stopped by the cap (an error exit): either way the last run.
            Some(_) => break,
        }
    }
    t.billed_usd = bill_usd(&before, &server.bills())?.as_f64();
    let ledger = hieramas_llm::budget::ledger_summary(&chaos.join(case.ledger))?;
    t.ledger_total_usd = ledger.values().map(|m| m.total()).sum::<Usd>().as_f64();
    let mut ids = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&chaos)? {
        let path = e?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name
            .as_deref()
            .is_some_and(|n| n.ends_with(".jsonl") && n != case.ledger)
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                let v: Value = serde_json::from_str(line)?;
                t.records += 1;
                if !ids.insert(v["query_id"].as_str().unwrap_or_default().to_string()) {
                    t.duplicated += 1;
                }
            }
        }
    }
    Ok(t)
}

struct Case {
    name: &'static str,
    /// The command, with `{out}` for its output folder.
    program: PathBuf,
    args: Vec<String>,
    /// The budget ledger the command keeps, relative to `{out}`.
    ledger: &'static str,
    /// Its `--budget-usd`.
    cap: &'static str,
}

/// A small seeded generator for kill times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn run(root: &Path, hieramas: &Path, xtask: &Path, o: &Options) -> Result<Report> {
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let fault_rate = 0.15;
    let server = rt
        .block_on(TestServer::start_with(ServerOptions {
            random_faults: Some(RandomFaults {
                rate: fault_rate,
                seed: o.seed,
                faults: vec![
                    Fault::rate_limited("0.05"),
                    Fault::status(500),
                    Fault::status(503),
                    Fault::DropConnection,
                    Fault::MalformedJson,
                    Fault::Delay(Duration::from_millis(1500)),
                    Fault::TruncatedStream {
                        deltas: 1,
                        abort: true,
                    },
                ],
            }),
            ..ServerOptions::default()
        }))
        .context("starting the fault-injecting server")?;
    let pool = o.out.join("pool.toml");
    std::fs::write(&pool, pool_toml(&server.base_url()))
        .with_context(|| format!("writing {}", pool.display()))?;
    println!(
        "fault-injecting server on {} (faults on {:.0}% of requests, seed {}), pool {}",
        server.base_url(),
        100.0 * fault_rate,
        o.seed,
        pool.display()
    );

    let mut cases = cases(hieramas, xtask, &pool, &o.out, o.quick);
    if !o.only.is_empty() {
        cases.retain(|c| o.only.iter().any(|n| n == c.name));
        ensure!(
            !cases.is_empty(),
            "--only: no such case (eval, stage1, stage2-data, reproduce)"
        );
    }
    for case in &cases {
        let dir = o.out.join(case.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    let mut rng = Rng(o.seed);
    let mut reports = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // Kills shared out evenly, the first cases taking the remainder.
        let wanted = o.kills / cases.len() + usize::from(i < o.kills % cases.len());
        let report = run_case(root, case, wanted, &server, &mut rng, &o.out)?;
        println!(
            "  {}: {} kills over {} runs in {} rounds; {} files, {} lines compared: {} lost, {} duplicated, {} differ; at most ${:.6} of ${:.2} per round; charged ${:.6} (known ${:.6}), billed ${:.6}; {} attempts, {} retries, {} interrupted",
            report.case,
            report.kills,
            report.runs,
            report.rounds,
            report.files_compared,
            report.lines_compared,
            report.lost,
            report.duplicated,
            report.differing_files.len(),
            report.max_round_spent_usd,
            report.cap_usd,
            report.ledger_total_usd,
            report.ledger_known_usd,
            report.billed_usd,
            report.attempts,
            report.retries,
            report.interrupted,
        );
        for e in &report.money_errors {
            println!("    money: {e}");
        }
        for f in &report.differing_files {
            println!("    differs: {f}");
        }
        reports.push(report);
    }
    let tight = match (
        cases.iter().find(|c| c.name == "eval"),
        reports.iter().find(|r| r.case == "eval"),
    ) {
        (Some(eval), Some(r)) => {
            // 40% of what one round of the eval case charged: it cannot finish.
            let cap = Usd::from_pico((r.max_round_spent_usd * 0.4 * 1e12) as u64);
            Some(tight_budget(root, eval, cap, &server, &mut rng, &o.out)?)
        }
        _ => None,
    };
    if let Some(t) = &tight {
        println!(
            "  tight budget: eval under ${:.6} with {} kills over {} runs: {} of {} records ({} duplicated), charged ${:.6}, billed ${:.6}",
            t.cap_usd,
            t.kills,
            t.runs,
            t.records,
            t.queries,
            t.duplicated,
            t.ledger_total_usd,
            t.billed_usd
        );
    }
    let report = Report {
        seed: o.seed,
        fault_rate,
        requests: server.request_count(),
        cases: reports,
        tight_budget: tight,
    };
    let path = o.out.join("chaos.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let kills: usize = report.cases.iter().map(|c| c.kills).sum();
    let mut bad: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| !c.ok())
        .map(|c| c.case.as_str())
        .collect();
    if report.tight_budget.as_ref().is_some_and(|t| !t.ok()) {
        bad.push("tight budget");
    }
    println!(
        "chaos: {kills} kills, {} requests to the server; report {}",
        report.requests,
        path.display()
    );
    if !bad.is_empty() {
        bail!("chaos: {} failed its checks", bad.join(", "));
    }
    ensure!(
        kills >= o.kills,
        "only {kills} of the {} kills landed (the commands finished first)",
        o.kills
    );
    Ok(report)
}

fn pool_toml(base_url: &str) -> String {
    let mut s = String::from(
        "# Written by `cargo xtask chaos`: models of the fault-injecting loopback server.\n[pool]\nname = \"chaos\"\n",
    );
    for (id, stream, input, output) in MODELS {
        s.push_str(&format!(
            "\n[[models]]\nid = \"{id}\"\nprovider = \"openai-compatible\"\nmodel = \"{id}\"\nbase_url = \"{base_url}\"\ninput_per_mtok = {input}\noutput_per_mtok = {output}\ntimeout_s = 0.5\nmax_attempts = 30\nretry_base_s = 0.01\nstream = {stream}\n"
        ));
    }
    s
}

fn cases(hieramas: &Path, xtask: &Path, pool: &Path, out: &Path, quick: bool) -> Vec<Case> {
    let pool = pool.display().to_string();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let system = |extra: &[&str]| {
        let mut v = strings(&[
            "--benchmark",
            "math",
            "--pool",
            &pool,
            "--decision",
            "gpt-5-mini",
            "--max-tokens",
            "64",
            "--budget-usd",
            CAP_USD,
        ]);
        v.extend(strings(extra));
        v
    };
    let (eval_n, iterations, data_n) = if quick {
        ("12", "4", "3")
    } else {
        ("40", "8", "8")
    };
    let eval = strings(&[
        "eval",
        "--benchmark",
        "math",
        "--method",
        "mas",
        "--pool",
        &pool,
        "--decision",
        "gpt-5-mini",
        "--width",
        "2",
        "--max-tokens",
        "64",
        "--limit",
        eval_n,
        "--concurrency",
        "4",
        "--budget-usd",
        CAP_USD,
        "--out-dir",
        "{out}",
    ]);
    let mut stage1 = strings(&["train", "stage1"]);
    stage1.extend(system(&[
        "--iterations",
        iterations,
        "--batch-size",
        "2",
        "--val-limit",
        "2",
        "--out",
        "{out}",
        "--quiet",
    ]));
    let reference_stage1 = out
        .join("stage1")
        .join("reference")
        .join("selector.safetensors");
    let mut data = strings(&["train", "stage2-data"]);
    data.extend(system(&[
        "--stage1",
        &reference_stage1.display().to_string(),
        "--limit",
        data_n,
        "--graphs",
        "3",
        "--concurrency",
        "4",
        "--out",
        "{out}",
        "--quiet",
    ]));
    let reproduce = strings(&[
        "reproduce",
        "--profile",
        "smoke",
        "--pool",
        &pool,
        "--run",
        "{out}",
        "--budget-usd",
        REPRODUCE_CAP_USD,
        "--yes",
    ]);
    vec![
        Case {
            name: "eval",
            program: hieramas.to_path_buf(),
            args: eval,
            ledger: "budget.jsonl",
            cap: CAP_USD,
        },
        Case {
            name: "stage1",
            program: hieramas.to_path_buf(),
            args: stage1,
            ledger: "budget.jsonl",
            cap: CAP_USD,
        },
        Case {
            name: "stage2-data",
            program: hieramas.to_path_buf(),
            args: data,
            ledger: "budget.jsonl",
            cap: CAP_USD,
        },
        Case {
            name: "reproduce",
            program: xtask.to_path_buf(),
            args: reproduce,
            ledger: "budget.jsonl",
            cap: REPRODUCE_CAP_USD,
        },
    ]
}

/// Starts the case's command in a process group of its own (a kill reaches its children:
/// reproduce's steps), output appended to `<dir>/../<name>.log`.
fn spawn(root: &Path, case: &Case, dir: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.with_extension("log");
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("{out}", &dir.display().to_string()))
        .collect();
    Command::new(&case.program)
        .args(&args)
        .current_dir(root)
        .env_remove("CI")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} {}", case.program.display(), args.join(" ")))
}

/// Waits up to `limit` (forever without one); `None` if still running.
fn wait(child: &mut Child, limit: Option<Duration>) -> Result<Option<std::process::ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL to the child's whole process group, then reaps it.
fn kill_group(child: &mut Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -KILL -{} failed", child.id());
    child.wait()?;
    Ok(())
}

fn run_case(
    root: &Path,
    case: &Case,
    wanted: usize,
    server: &TestServer,
    rng: &mut Rng,
    out: &Path,
) -> Result<CaseReport> {
    let dir = out.join(case.name);
    let reference = dir.join("reference");
    let chaos = dir.join("chaos");
    println!("\n{}: reference run", case.name);
    let t = Instant::now();
    let mut child = spawn(root, case, &reference)?;
    let status = wait(&mut child, None)?.context("the reference run")?;
    ensure!(
        status.success(),
        "{}: the reference run failed ({status}); see {}",
        case.name,
        reference.with_extension("log").display()
    );
    let reference_s = t.elapsed().as_secs_f64();
    let mut report = CaseReport {
        case: case.name.into(),
        reference_s,
        cap_usd: Usd::parse(case.cap)?.as_f64(),
        ..CaseReport::default()
    };
    // Rounds: from an empty folder, killed and resumed until the command finishes, then
    // compared with the reference; another round while kills are still wanted.
    let t = Instant::now();
    loop {
        if chaos.exists() {
            std::fs::remove_dir_all(&chaos)
                .with_context(|| format!("clearing {}", chaos.display()))?;
        }
        report.rounds += 1;
        println!(
            "{}: chaos round {}, killed after 2-35% of the reference's {:.0} s ({} of {wanted} kills so far)",
            case.name, report.rounds, reference_s, report.kills
        );
        let before = server.bills();
        loop {
            let mut child = spawn(root, case, &chaos)?;
            report.runs += 1;
            let limit = (report.kills < wanted)
                .then(|| Duration::from_secs_f64(reference_s * (0.02 + 0.33 * rng.next())));
            match wait(&mut child, limit)? {
                None => {
                    kill_group(&mut child)?;
                    report.kills += 1;
                }
                Some(status) => {
                    ensure!(
                        status.success(),
                        "{}: a chaos run failed ({status}); see {}",
                        case.name,
                        chaos.with_extension("log").display()
                    );
                    break;
                }
            }
        }
        let billed = bill_usd(&before, &server.bills())?;
        let mut cmp = Comparison::default();
        compare_dirs(&reference, &chaos, &reference, &chaos, &mut cmp)?;
        let ledger = hieramas_llm::budget::ledger_summary(&chaos.join(case.ledger))?;
        let known: Usd = ledger.values().map(|m| m.known).sum();
        let total: Usd = ledger.values().map(|m| m.total()).sum();
        report.files_compared += cmp.files;
        report.lines_compared += cmp.lines;
        report.lost += cmp.lost;
        report.duplicated += cmp.duplicated;
        report.differing_files.extend(cmp.differing);
        report.max_round_spent_usd = report.max_round_spent_usd.max(total.as_f64());
        if known > billed || billed > total {
            report.money_errors.push(format!(
                "round {}: known {known}, billed {billed}, charged {total}",
                report.rounds
            ));
        }
        report.ledger_known_usd += known.as_f64();
        report.ledger_total_usd += total.as_f64();
        report.billed_usd += billed.as_f64();
        report.attempts += ledger.values().map(|m| m.attempts).sum::<u64>();
        report.retries += ledger.values().map(|m| m.retries).sum::<u64>();
        report.interrupted += ledger.values().map(|m| m.interrupted).sum::<u64>();
        if report.kills >= wanted {
            break;
        }
    }
    report.chaos_s = t.elapsed().as_secs_f64();
    Ok(report)
}

/// The money of what the server billed between two snapshots, at the pool's prices.
fn bill_usd(before: &BTreeMap<String, Bill>, after: &BTreeMap<String, Bill>) -> Result<Usd> {
    let mut total = Usd::ZERO;
    for (model, b) in after {
        let a = before.get(model).copied().unwrap_or_default();
        let (_, _, input, output) = MODELS
            .iter()
            .find(|m| m.0 == model)
            .with_context(|| format!("the server billed an unknown model {model:?}"))?;
        total += Price::per_million(input, output)?.cost(Usage {
            prompt_tokens: b.prompt_tokens - a.prompt_tokens,
            completion_tokens: b.completion_tokens - a.completion_tokens,
        });
    }
    Ok(total)
}

#[derive(Default)]
struct Comparison {
    files: usize,
    lines: usize,
    lost: usize,
    duplicated: usize,
    differing: Vec<String>,
}

fn compare_dirs(
    a: &Path,
    b: &Path,
    root_a: &Path,
    root_b: &Path,
    cmp: &mut Comparison,
) -> Result<()> {
    let names = |d: &Path| -> Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).with_context(|| format!("reading {}", d.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            // Temp files of crash-safe writes are the writer's business; SKIPPED are not
            // compared.
            if !name.starts_with('.') && !SKIPPED.contains(&name.as_str()) {
                v.push(name);
            }
        }
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    for n in na.iter().filter(|n| !nb.contains(n)) {
        cmp.differing
            .push(format!("{}: missing after chaos", a.join(n).display()));
    }
    for n in nb.iter().filter(|n| !na.contains(n)) {
        cmp.differing
            .push(format!("{}: not in the reference", b.join(n).display()));
    }
    for n in na.iter().filter(|n| nb.contains(n)) {
        let (pa, pb) = (a.join(n), b.join(n));
        if pa.is_dir() {
            compare_dirs(&pa, &pb, root_a, root_b, cmp)?;
            continue;
        }
        cmp.files += 1;
        let (ba, bb) = (std::fs::read(&pa)?, std::fs::read(&pb)?);
        let ra = root_a.display().to_string();
        let rb = root_b.display().to_string();
        let same = if n.ends_with(".jsonl") {
            let la = jsonl_lines(&ba, &ra)?;
            let lb = jsonl_lines(&bb, &rb)?;
            cmp.lines += la.len();
            let (lost, dup) = multiset_diff(&la, &lb);
            cmp.lost += lost;
            cmp.duplicated += dup;
            lost == 0 && dup == 0
        } else if n.ends_with(".json") {
            json_norm(&ba, &ra)? == json_norm(&bb, &rb)?
        } else if n.ends_with(".toml") {
            toml_norm(&ba, &ra)? == toml_norm(&bb, &rb)?
        } else if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&ba), std::str::from_utf8(&bb)) {
            ta.replace(&ra, "{out}") == tb.replace(&rb, "{out}")
        } else {
            ba == bb
        };
        if !same {
            cmp.differing.push(pb.display().to_string());
        }
    }
    Ok(())
}

/// A JSONL file's lines, each normalised and re-serialised.
fn jsonl_lines(bytes: &[u8], root: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(json_norm(line, root)?);
    }
    Ok(out)
}

/// (lines of `a` missing from `b`, lines of `b` beyond `a`'s count), as multisets.
fn multiset_diff(a: &[String], b: &[String]) -> (usize, usize) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for l in a {
        *counts.entry(l).or_default() += 1;
    }
    for l in b {
        *counts.entry(l).or_default() -= 1;
    }
    let lost = counts
        .values()
        .filter(|&&c| c > 0)
        .map(|&c| c as usize)
        .sum();
    let extra = counts
        .values()
        .filter(|&&c| c < 0)
        .map(|&c| (-c) as usize)
        .sum();
    (lost, extra)
}

fn toml_norm(bytes: &[u8], root: &str) -> Result<String> {
    let text = std::str::from_utf8(bytes).context("not UTF-8")?;
    let mut v: Value = serde_json::to_value(toml::from_str::<toml::Value>(text)?)?;
    normalise(&mut v, root);
    Ok(serde_json::to_string(&v)?)
}

fn json_norm(bytes: &[u8], root: &str) -> Result<String> {
    let mut v: Value = serde_json::from_slice(bytes).context("not JSON")?;
    normalise(&mut v, root);
    Ok(serde_json::to_string(&v)?)
}

/// Drops [`VOLATILE`] keys, writes the run's folder as `{out}`, and sorts arrays of objects
/// that concurrent work fills in finishing order (a trace's calls).
fn normalise(v: &mut Value, root: &str) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !volatile(k));
            // A bundle's hash of a JSON sidecar covers the paths inside it; the sidecar itself
            // is compared with the paths made relative.
            if m.get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with(".json"))
            {
                m.remove("sha256");
            }
            for (k, x) in m.iter_mut() {
                normalise(x, root);
                if k == "calls"
                    && let Value::Array(a) = x
                {
                    a.sort_by_key(|c| c.to_string());
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalise(x, root)),
        // A reproduce step finished by an earlier (killed) invocation reads `cached`.
        Value::String(s) if s == "cached" => *s = "ran".into(),
        Value::String(s) if s.contains(root) => *s = s.replace(root, "{out}"),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_and_a_duplicated_line_are_counted() {
        let a = ["x".to_string(), "y".into(), "z".into()];
        let b = ["x".to_string(), "x".into(), "z".into()];
        assert_eq!(multiset_diff(&a, &b), (1, 1));
        assert_eq!(multiset_diff(&a, &a), (0, 0));
    }

    #[test]
    fn volatile_fields_and_the_run_folder_are_left_out() {
        let a = json_norm(
            br#"{"latency":1,"path":"/r1/x","calls":[{"n":2},{"n":1}],"k":1}"#,
            "/r1",
        )
        .unwrap();
        let b = json_norm(
            br#"{"latency":9,"path":"/r2/x","calls":[{"n":1},{"n":2}],"k":1}"#,
            "/r2",
        )
        .unwrap();
        assert_eq!(a, b);
        let c = json_norm(br#"{"k":2}"#, "/r").unwrap();
        assert_ne!(a, c);
    }
}
