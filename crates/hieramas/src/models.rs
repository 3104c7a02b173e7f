//! `hieramas run`: one query through a HieraMAS multi-agent system — the benchmark's role set
//! on a topology, pool models at every position, the decision node — printing the answer and
//! optionally writing the trace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hieramas_llm::{Budget, Budgeted, ChatModel, Env, Limited, ModelSpec, Pool, Provider};
use hieramas_local::engine::EngineOptions;
use hieramas_local::pool::{LocalModels, local_pool};
use hieramas_supernode::{Members, Sampling};
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Extractor, Plan, run_query};
use hieramas_topology::{Topology, generate, shapes};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The role set: math, mmlu or humaneval-plus.
    #[arg(long)]
    benchmark: String,
    /// A pool TOML file; `pools/local.toml` and `pools/paper.toml` name the built-in pools.
    #[arg(long, default_value = "pools/local.toml")]
    pool: PathBuf,
    #[command(flatten)]
    mas: MasArgs,
    /// Seed of `--topology random` and `--assign random`, and of sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Write the trace (JSON) here.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// The query.
    query: String,
}

/// The flags that define a multi-agent system, shared by `hieramas run` and `hieramas eval
/// --method mas`.
#[derive(clap::Args)]
pub struct MasArgs {
    /// full, chain, star, empty, random (seeded, density 0.3-0.7), or a .json/.dot file.
    #[arg(long, default_value = "full")]
    pub topology: String,
    /// round-robin (pool models in turn over every position), random (seeded) or fixed:MODEL.
    #[arg(long, default_value = "round-robin")]
    pub assign: String,
    /// The decision node's model (default: the pool's first).
    #[arg(long)]
    pub decision: Option<String>,
    /// The official execution: config order, backward edges unused.
    #[arg(long)]
    pub faithful: bool,
    /// Most tokens per call (mas, moa, debate: default 256; the baselines: default from the
    /// prompts file).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Turn off the consensus override (method §3.3: when every supernode's extracted
    /// prediction agrees, it is the answer, whatever the decision node says).
    #[arg(long)]
    pub no_consensus: bool,
}

impl MasArgs {
    /// Most tokens per call of a multi-agent system.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(256)
    }
}

/// A pool file, or one of the built-in pools by its conventional path.
pub fn load_pool(path: &Path) -> Result<Pool> {
    if path.exists() {
        return Pool::load(path).with_context(|| format!("{}", path.display()));
    }
    match path.file_name().and_then(|n| n.to_str()) {
        Some("local.toml") => Ok(local_pool()?),
        Some("paper.toml") => Ok(Pool::paper()),
        Some(name) if hieramas_sim::POOLS.iter().any(|(n, _)| *n == name) => {
            let text = hieramas_sim::POOLS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, t)| t);
            Ok(Pool::from_toml(text, name)?)
        }
        _ => bail!(
            "{}: no such pool file (built in: pools/local.toml, pools/paper.toml, pools/sim-paper.toml, pools/sim-credit.toml)",
            path.display()
        ),
    }
}

/// Connects pool models on first use and hands out one shared instance per id.
pub struct Models {
    pool: Pool,
    /// Every model handed out is charged to this budget when set.
    budget: Option<Arc<Budget>>,
    local: Option<LocalModels>,
    http: Option<reqwest::Client>,
    open: HashMap<String, Arc<dyn ChatModel>>,
    /// What `provider = "sim"` models answer from (see [`Models::simulate`]).
    sim: Option<(Arc<hieramas_sim::GoldBook>, hieramas_sim::Settings)>,
}

impl Models {
    pub fn new(pool: Pool, budget: Option<Arc<Budget>>) -> Models {
        Models {
            pool,
            budget,
            local: None,
            http: None,
            open: HashMap::new(),
            sim: None,
        }
    }

    /// Lets the pool's SIMULATED models answer the tasks of `book`.
    pub fn simulate(
        &mut self,
        book: Arc<hieramas_sim::GoldBook>,
        settings: hieramas_sim::Settings,
    ) {
        self.sim = Some((book, settings));
    }

    /// Whether any model of the pool is simulated.
    pub fn uses_sim(&self) -> bool {
        crate::sim::uses_sim(&self.pool)
    }

    /// The selectable ids (not `exclude`d), in pool order.
    pub fn ids(&self) -> Vec<String> {
        self.pool
            .models
            .iter()
            .filter(|m| !m.exclude)
            .map(|m| m.id.clone())
            .collect()
    }

    /// The pool entries of `ids` (each once) by id, as JSON: what identifies each model in a
    /// configuration hash (provider, model, price).
    pub fn specs<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String>,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut used: Vec<&String> = ids.into_iter().collect();
        used.sort();
        used.dedup();
        used.into_iter()
            .map(|id| Ok((id.clone(), serde_json::to_value(self.spec(id)?)?)))
            .collect()
    }

    /// The pool entry of `id`.
    pub fn spec(&self, id: &str) -> Result<&ModelSpec> {
        Ok(self.pool.require(id)?)
    }

    pub fn get(&mut self, id: &str) -> Result<Arc<dyn ChatModel>> {
        if let Some(m) = self.open.get(id) {
            return Ok(m.clone());
        }
        let spec: ModelSpec = self.pool.require(id)?.clone();
        let m: Arc<dyn ChatModel> = if spec.provider == Provider::Local {
            if self.local.is_none() {
                self.local = Some(LocalModels::from_env()?);
            }
            let local = self.local.as_ref().context("local models")?;
            let m = local
                .chat(&spec, EngineOptions::default())
                .with_context(|| format!("loading {id}"))?;
            // HTTP clients hold their `max_concurrency` themselves; in-process ones get it here.
            Arc::new(Limited::new(Arc::new(m), spec.max_concurrency))
        } else if spec.provider == Provider::Sim {
            let (book, settings) = self.sim.clone().with_context(|| {
                format!("{id} is SIMULATED; only `hieramas eval` and `hieramas train` can run it (they give it the tasks' answers)")
            })?;
            let catalogue = hieramas_sim::Catalogue::builtin()?;
            let m = hieramas_sim::SimModel::new(
                id,
                &spec.model,
                catalogue.get(&spec.model)?.clone(),
                spec.price,
                book,
                settings,
            )?;
            Arc::new(m)
        } else {
            if self.http.is_none() {
                self.http = Some(hieramas_llm::http_client()?);
            }
            let http = self.http.as_ref().context("http client")?;
            spec.connect(&Env::process(), http)?
        };
        let m: Arc<dyn ChatModel> = match &self.budget {
            Some(b) => Arc::new(Budgeted::new(m, b.clone())),
            None => m,
        };
        self.open.insert(id.to_string(), m.clone());
        Ok(m)
    }
}

/// The model id at every position: `[role][0..W]` proposers, then the synthesiser.
pub fn assignment(
    assign: &str,
    ids: &[String],
    roles: usize,
    width: usize,
    seed: u64,
) -> Result<Vec<Vec<String>>> {
    if ids.is_empty() {
        bail!("the pool has no selectable models");
    }
    let slots = width + 1;
    Ok(match assign {
        "round-robin" => (0..roles)
            .map(|r| {
                (0..slots)
                    .map(|p| ids[(r * slots + p) % ids.len()].clone())
                    .collect()
            })
            .collect(),
        "random" => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..roles)
                .map(|_| {
                    (0..slots)
                        .map(|_| ids[rng.random_range(0..ids.len())].clone())
                        .collect()
                })
                .collect()
        }
        other => match other.strip_prefix("fixed:") {
            Some(m) if ids.iter().any(|i| i == m) => vec![vec![m.to_string(); slots]; roles],
            Some(m) => bail!("--assign fixed:{m}: not in the pool ({})", ids.join(", ")),
            None => bail!("--assign {other:?}: use round-robin, random or fixed:MODEL"),
        },
    })
}

/// A topology over `names` by shape name, or from a .json/.dot file.
pub fn topology(spec: &str, names: Vec<String>, seed: u64) -> Result<Topology> {
    Ok(match spec {
        "full" => shapes::full(names)?,
        "chain" => shapes::chain(names)?,
        "star" => shapes::star(names)?,
        "empty" => shapes::empty(names)?,
        "random" => generate::random_dag(&names, 0.3, 0.7, seed)?,
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--topology {path}: not a shape (full, chain, star, empty, random) nor a readable file"))?;
            let t = if path.ends_with(".dot") || path.ends_with(".gv") {
                Topology::from_dot(&text)
            } else {
                Topology::from_json(&text)
            }
            .with_context(|| path.to_string())?;
            if t.roles() != names.as_slice() {
                bail!(
                    "{path}: its roles {:?} are not the role set's {:?} (same names, same order)",
                    t.roles(),
                    names
                );
            }
            t
        }
    })
}

/// A multi-agent system ready to run, and what defines it (for config hashes and reports).
pub struct Mas {
    pub topology: Topology,
    pub consensus: Option<Extractor>,
    pub roles: RoleSet,
    pub members: Vec<Members>,
    pub decision: Arc<dyn ChatModel>,
    pub description: serde_json::Value,
}

/// The benchmark's role set on `topology`, pool models placed by `assign`, the decision model.
pub fn build(benchmark: &str, args: &MasArgs, models: &mut Models, seed: u64) -> Result<Mas> {
    let roles = RoleSet::builtin(benchmark)?;
    let topology = topology(&args.topology, roles.names(), seed)?;
    let ids = models.ids();
    let slots = assignment(&args.assign, &ids, roles.roles.len(), roles.width, seed)?;
    let mut members = Vec::with_capacity(slots.len());
    for role_slots in &slots {
        let (synth, proposers) = role_slots.split_last().context("empty assignment")?;
        members.push(Members {
            proposers: proposers
                .iter()
                .map(|id| models.get(id).map(Some))
                .collect::<Result<_>>()?,
            synthesizer: Some(models.get(synth)?),
        });
    }
    let decision_id = args.decision.clone().unwrap_or_else(|| ids[0].clone());
    // Everything that decides the answers: prompts, topology, who sits where, and what each
    // model id is (provider, model, price), so an edited role set or a repriced pool is a new
    // configuration.
    let specs = models.specs(slots.iter().flatten().chain([&decision_id]))?;
    let description = serde_json::json!({
        "benchmark": benchmark,
        "roles": serde_json::to_value(&roles)?,
        "topology": serde_json::from_str::<serde_json::Value>(&topology.to_json())?,
        "assignment": slots,
        "decision": decision_id,
        "models": specs,
        "faithful": args.faithful,
        "max_tokens": args.max_tokens(),
        "consensus": !args.no_consensus,
    });
    let consensus = match benchmark.parse::<Benchmark>() {
        Ok(b) if !args.no_consensus => Some(hieramas_bench::prediction_extractor(b)),
        _ => None,
    };
    Ok(Mas {
        decision: models.get(&decision_id)?,
        consensus,
        topology,
        roles,
        members,
        description,
    })
}

pub async fn run(a: RunArgs) -> Result<()> {
    let mut models = Models::new(load_pool(&a.pool)?, None);
    let mas = build(&a.benchmark, &a.mas, &mut models, a.seed)?;
    let topology = mas.topology;
    let plan = Plan {
        topology: &topology,
        roles: &mas.roles,
        members: mas.members,
        decision: mas.decision,
        sampling: Sampling {
            temperature: Some(a.temperature),
            max_tokens: a.mas.max_tokens(),
            seed: Some(a.seed),
        },
        faithful: a.mas.faithful,
        consensus: mas.consensus,
    };
    let started = std::time::Instant::now();
    let trace = run_query(&plan, &a.query).await?;
    println!("{}", trace.answer.trim());
    if let Some(p) = &trace.consensus {
        eprintln!("[consensus override: every supernode predicted {p:?}]");
    }
    eprintln!(
        "[{} roles, {} edges ({}), {} calls, {} tokens, ${:.6} (exact: {} pico-USD), {:.1} s]",
        topology.len(),
        topology.edge_count(),
        if a.mas.faithful {
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
