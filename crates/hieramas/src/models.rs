//! The pool → models factory: every provider a pool file can name (HTTP, local in-process,
//! SIMULATED) becomes an `Arc<dyn ChatModel>`, one shared instance per id, charged to a budget
//! when one is set. [`load_pool`] reads a pool file or a built-in pool by its conventional path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hieramas_bench::query::Query;
use hieramas_llm::{
    Budget, Budgeted, CacheMode, Cached, ChatModel, Env, Limited, ModelSpec, Pool, Provider,
    ResponseCache, Usd,
};
use hieramas_local::engine::EngineOptions;
use hieramas_local::pool::{LOCAL_POOL_TOML, LocalModels, local_pool};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;

use crate::error::{Context, Result, bail};

/// A pool file, or one of the built-in pools by its conventional path.
pub fn load_pool(path: &Path) -> Result<Pool> {
    let (text, source) = pool_source(path)?;
    Ok(Pool::from_toml(&text, &source)?)
}

/// The TOML of a pool file, or of a built-in pool by its conventional path, and the name its
/// errors go by.
pub fn pool_source(path: &Path) -> Result<(String, String)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        return Ok((text, path.display().to_string()));
    }
    let builtin = match path.file_name().and_then(|n| n.to_str()) {
        Some("local.toml") => Some((LOCAL_POOL_TOML, "pools/local.toml")),
        Some("paper.toml") => Some((hieramas_llm::pool::PAPER_POOL_TOML, "pools/paper.toml")),
        Some(name) => hieramas_sim::POOLS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| (*t, *n)),
        None => None,
    };
    match builtin {
        Some((text, source)) => Ok((text.to_string(), source.to_string())),
        None => bail!(
            "{}: no such pool file (built in: pools/local.toml, pools/paper.toml, pools/sim-paper.toml, pools/sim-paper-qwen.toml, pools/sim-credit.toml)",
            path.display()
        ),
    }
}

/// The budget a command charges its calls to: none without a `cap`; kept in the `ledger` file
/// when one is given (what earlier, perhaps killed, runs spent counts; the file is locked while
/// open); a ledger without a cap records without limiting.
pub fn open_budget(cap: Option<Usd>, ledger: Option<&Path>) -> Result<Option<Arc<Budget>>> {
    Ok(match (cap, ledger) {
        (None, None) => None,
        (Some(cap), None) => Some(Budget::new(cap)),
        (cap, Some(path)) => Some(
            Budget::open(cap.unwrap_or(Usd::from_pico(u64::MAX / 2)), path)
                .with_context(|| format!("opening the budget ledger {}", path.display()))?,
        ),
    })
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
    /// Every model handed out records to and replays from this cache when set.
    cache: Option<Arc<ResponseCache>>,
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
            cache: None,
        }
    }

    /// Puts the SQLite response cache at `path` in front of every model handed out from now
    /// on (record on a miss, replay on a hit: a hit costs nothing). The key covers the model's
    /// provider, provider model name, base URL, pool id and parameters, and the whole request.
    pub fn with_cache(mut self, path: Option<&Path>) -> Result<Models> {
        if let Some(path) = path {
            self.cache =
                Some(Arc::new(ResponseCache::open(path).with_context(|| {
                    format!("response cache {}", path.display())
                })?));
        }
        Ok(self)
    }

    /// Lets the pool's SIMULATED models answer the tasks of `book`.
    pub fn simulate(
        &mut self,
        book: Arc<hieramas_sim::GoldBook>,
        settings: hieramas_sim::Settings,
    ) {
        self.sim = Some((book, settings));
    }

    /// Gives the pool's SIMULATED models the answers of `queries`, if it has any; whether it
    /// did (every output of such a run must say SIMULATED: [`crate::sim::BANNER`]).
    pub fn simulate_queries(
        &mut self,
        data: &DataDir,
        benchmark: Benchmark,
        queries: &[&Query],
        seed: u64,
    ) -> Result<bool> {
        if !self.uses_sim() {
            return Ok(false);
        }
        self.simulate(
            crate::sim::book(data, benchmark, queries)?,
            hieramas_sim::fit::fitted(crate::sim::kind(benchmark))?.settings(seed),
        );
        Ok(true)
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
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
                format!("{id} is SIMULATED: it answers only the tasks it is given (Models::simulate_queries)")
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
            // Every attempt, retries included, is charged by the client itself, behind the
            // cache (a hit reserves nothing).
            spec.connect_budgeted(&Env::process(), http, self.budget.clone())?
        };
        let in_process = matches!(spec.provider, Provider::Local | Provider::Sim);
        let m: Arc<dyn ChatModel> = match &self.cache {
            Some(c) => Arc::new(Cached::for_spec(m, &spec, c.clone(), CacheMode::ReadWrite)),
            None => m,
        };
        let m: Arc<dyn ChatModel> = match &self.budget {
            Some(b) if in_process => Arc::new(Budgeted::new(m, b.clone())),
            _ => m,
        };
        self.open.insert(id.to_string(), m.clone());
        Ok(m)
    }
}

/// The model `id` alone (a baseline's): in-process when it is a local model, SIMULATED when
/// `pool` says so (answering `queries`), else a client from `pool` (default: the paper's).
/// Also its pool entry. An HTTP client charges every attempt to `budget`; in-process models
/// are the caller's to wrap in [`Budgeted`].
pub fn single(
    id: &str,
    pool: Option<&Path>,
    data: &DataDir,
    benchmark: Benchmark,
    queries: &[&Query],
    seed: u64,
    budget: Option<Arc<Budget>>,
) -> Result<(ModelSpec, Arc<dyn ChatModel>)> {
    if let Some(spec) = local_pool()?.get(id).cloned() {
        let m = LocalModels::from_env()?
            .chat(&spec, EngineOptions::default())
            .with_context(|| format!("loading {id}"))?;
        return Ok((spec, Arc::new(m)));
    }
    let pool = match pool {
        Some(p) => load_pool(p)?,
        None => Pool::paper(),
    };
    let spec = pool.require(id)?.clone();
    if spec.provider == Provider::Sim {
        let mut models = Models::new(pool, None);
        models.simulate_queries(data, benchmark, queries, seed)?;
        let m = models.get(id)?;
        return Ok((spec, m));
    }
    if spec.provider == Provider::Local {
        bail!("{id} is a local model but not in pools/local.toml");
    }
    let m = spec.connect_budgeted(&Env::process(), &hieramas_llm::http_client()?, budget)?;
    Ok((spec, m))
}
