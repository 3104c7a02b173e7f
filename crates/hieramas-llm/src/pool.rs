//! Model pools: which models exist, where they live, what they cost — read from TOML.
//!
//! ```toml
//! [pool]
//! name = "paper"
//! prices_date = "2026-11-22"          # when the prices were taken
//! prices_source = "OpenRouter /api/v1/models"
//!
//! [[models]]
//! id = "gpt-4o-mini"                  # pool id: what calls are recorded under
//! provider = "openrouter"             # openrouter | openai | anthropic | openai-compatible
//!                                     # | vllm | ollama | llamacpp | local
//! model = "openai/gpt-4o-mini"        # the provider's model name
//! input_per_mtok = 0.15               # USD per million prompt tokens (required)
//! output_per_mtok = 0.60              # USD per million completion tokens (required)
//! max_concurrency = 32                # calls in flight at once (default 16)
//! # base_url = "http://127.0.0.1:8080/v1"   # default per provider; env overrides below
//! # api_key_env = "MY_KEY"                  # default per provider
//! # timeout_s = 120
//! # max_attempts = 4                        # attempts per call, retries included (default 4)
//! # retry_base_s = 0.5                       # first back-off ceiling, doubling (default 0.5)
//! # stream = false
//! # exclude = false                          # left out of selection by default
//! ```
//!
//! Models are kept in file order: the stage-1 selector's output index is a model's position.
//! A model without a price is an error, never a silent $0 (use 0 for a free local model).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cost::{Price, deserialize_per_million};
use crate::error::LlmError;
#[cfg(feature = "http")]
use crate::types::{ChatModel, Embedder};
#[cfg(feature = "http")]
use std::sync::Arc;

/// The pool shipped as `pools/paper.toml`: the paper's nine OpenRouter models in the official
/// index order, with a dated price snapshot.
pub const PAPER_POOL_TOML: &str = include_str!("../pools/paper.toml");

/// Who serves a model and how to talk to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// `https://openrouter.ai/api/v1`, key `OPENROUTER_API_KEY`, attribution headers.
    Openrouter,
    /// `https://api.openai.com/v1`, key `OPENAI_API_KEY`.
    Openai,
    /// `https://api.anthropic.com/v1`, key `ANTHROPIC_API_KEY`, Messages API.
    Anthropic,
    /// Any OpenAI-compatible server; `base_url` required, key optional.
    OpenaiCompatible,
    /// vLLM's OpenAI server, default `http://127.0.0.1:8000/v1`.
    Vllm,
    /// Ollama's OpenAI endpoint, default `http://127.0.0.1:11434/v1`.
    Ollama,
    /// llama.cpp `llama-server`, default `http://127.0.0.1:8080/v1`.
    Llamacpp,
    /// In-process candle inference: built by `hieramas-local`, not by this crate.
    Local,
    /// SIMULATED models (calibrated to published accuracies): built by `hieramas-sim`, not by
    /// this crate. Never a real result.
    Sim,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openrouter => "openrouter",
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::OpenaiCompatible => "openai-compatible",
            Provider::Vllm => "vllm",
            Provider::Ollama => "ollama",
            Provider::Llamacpp => "llamacpp",
            Provider::Local => "local",
            Provider::Sim => "sim",
        }
    }

    /// (default base URL, environment variable that overrides it)
    pub fn default_base_url(self) -> Option<(&'static str, Option<&'static str>)> {
        match self {
            Provider::Openrouter => {
                Some(("https://openrouter.ai/api/v1", Some("OPENROUTER_BASE_URL")))
            }
            Provider::Openai => Some(("https://api.openai.com/v1", Some("OPENAI_BASE_URL"))),
            Provider::Anthropic => {
                Some(("https://api.anthropic.com/v1", Some("ANTHROPIC_BASE_URL")))
            }
            Provider::Vllm => Some(("http://127.0.0.1:8000/v1", None)),
            Provider::Ollama => Some(("http://127.0.0.1:11434/v1", None)),
            Provider::Llamacpp => Some(("http://127.0.0.1:8080/v1", None)),
            Provider::OpenaiCompatible | Provider::Local | Provider::Sim => None,
        }
    }

    /// (environment variable holding the key, whether a key is required)
    pub fn default_key_env(self) -> Option<(&'static str, bool)> {
        match self {
            Provider::Openrouter => Some(("OPENROUTER_API_KEY", true)),
            Provider::Openai => Some(("OPENAI_API_KEY", true)),
            Provider::Anthropic => Some(("ANTHROPIC_API_KEY", true)),
            _ => None,
        }
    }
}

/// One model of a pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSpec {
    pub id: String,
    pub provider: Provider,
    pub model: String,
    pub price: Price,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub max_concurrency: usize,
    pub timeout: Duration,
    /// Attempts per call and back-off (the pool file's `max_attempts`, `retry_base_s`).
    #[serde(skip_serializing_if = "crate::retry::RetryPolicy::is_default")]
    pub retry: crate::retry::RetryPolicy,
    pub stream: bool,
    /// Left out of selection unless asked for (the paper excludes `deepseek-r1-14b`).
    pub exclude: bool,
    /// Provider parameters sent verbatim with every request to this model (the pool file's
    /// `[models.params]` table: `reasoning_effort`, `top_k`, OpenRouter's `provider`, …); a
    /// call's own [`crate::ChatRequest::extra`] overrides them key by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Pool metadata from the `[pool]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMeta {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The date the prices were taken (`YYYY-MM-DD`); recorded with every run.
    pub prices_date: Option<String>,
    pub prices_source: Option<String>,
}

/// An ordered set of models.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool {
    pub meta: PoolMeta,
    pub models: Vec<ModelSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    pool: PoolMeta,
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    provider: Provider,
    model: String,
    #[serde(default, deserialize_with = "deserialize_per_million")]
    input_per_mtok: Option<u64>,
    #[serde(default, deserialize_with = "deserialize_per_million")]
    output_per_mtok: Option<u64>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    max_concurrency: Option<usize>,
    timeout_s: Option<f64>,
    max_attempts: Option<u32>,
    retry_base_s: Option<f64>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    exclude: bool,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
}

/// Environment variables a pool reads (keys, base-URL overrides). Pass [`Env::process`] in
/// programs and a hand-built one in tests.
#[derive(Clone, Debug, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn process() -> Env {
        Env(std::env::vars().collect())
    }
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl Pool {
    /// Reads a pool file.
    pub fn load(path: impl AsRef<Path>) -> Result<Pool, LlmError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| LlmError::Pool {
            source_name: path.display().to_string(),
            detail: format!("cannot read: {e}"),
        })?;
        Pool::from_toml(&text, &path.display().to_string())
    }

    /// The pool shipped as `pools/paper.toml`.
    pub fn paper() -> Pool {
        match Pool::from_toml(PAPER_POOL_TOML, "pools/paper.toml") {
            Ok(p) => p,
            Err(e) => unreachable!("shipped pool is invalid (a test checks this): {e}"),
        }
    }

    /// Parses pool TOML; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Pool, LlmError> {
        let err = |detail: String| LlmError::Pool {
            source_name: source_name.to_string(),
            detail,
        };
        let file: PoolFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if file.models.is_empty() {
            return Err(err("no [[models]]".into()));
        }
        let mut seen = HashSet::new();
        let mut models = Vec::with_capacity(file.models.len());
        for (i, m) in file.models.into_iter().enumerate() {
            let at = format!("models[{i}] (id {:?})", m.id);
            if m.id.trim().is_empty() {
                return Err(err(format!("models[{i}]: empty id")));
            }
            if m.id == "skip" {
                return Err(err(format!(
                    "{at}: \"skip\" is reserved for the selector's no-call option"
                )));
            }
            if !seen.insert(m.id.clone()) {
                return Err(err(format!("{at}: duplicate id")));
            }
            let price = match (m.input_per_mtok, m.output_per_mtok) {
                (Some(i), Some(o)) => Price {
                    input_pico_per_token: i,
                    output_pico_per_token: o,
                },
                _ => {
                    return Err(err(format!(
                        "{at} has no price: set both input_per_mtok and output_per_mtok \
                         (USD per million tokens; 0 for a free local model)"
                    )));
                }
            };
            if m.max_concurrency == Some(0) {
                return Err(err(format!("{at}: max_concurrency must be at least 1")));
            }
            if m.provider == Provider::OpenaiCompatible && m.base_url.is_none() {
                return Err(err(format!(
                    "{at}: provider openai-compatible needs base_url"
                )));
            }
            let timeout = match m.timeout_s {
                None => Duration::from_secs(120),
                Some(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                Some(s) => return Err(err(format!("{at}: timeout_s must be positive, got {s}"))),
            };
            let mut retry = crate::retry::RetryPolicy::default();
            if let Some(n) = m.max_attempts {
                if n == 0 {
                    return Err(err(format!("{at}: max_attempts must be at least 1")));
                }
                retry.max_attempts = n;
            }
            match m.retry_base_s {
                None => {}
                Some(s) if s >= 0.0 && s.is_finite() => {
                    retry.base_delay = Duration::from_secs_f64(s);
                }
                Some(s) => {
                    return Err(err(format!(
                        "{at}: retry_base_s must be a non-negative number, got {s}"
                    )));
                }
            }
            models.push(ModelSpec {
                id: m.id,
                provider: m.provider,
                model: m.model,
                price,
                base_url: m.base_url,
                api_key_env: m.api_key_env,
                max_concurrency: m.max_concurrency.unwrap_or(16),
                timeout,
                retry,
                stream: m.stream,
                exclude: m.exclude,
                params: m.params,
            });
        }
        Ok(Pool {
            meta: file.pool,
            models,
        })
    }

    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    /// A model by id, or an error listing the ids there are.
    pub fn require(&self, id: &str) -> Result<&ModelSpec, LlmError> {
        self.get(id).ok_or_else(|| LlmError::Pool {
            source_name: self.meta.name.clone(),
            detail: format!(
                "no model {id:?}; the pool has: {}",
                self.models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Pool ids in index order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.id.as_str())
    }

    /// Index of a model in the pool (the selector's output index).
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.models.iter().position(|m| m.id == id)
    }
}

#[cfg(feature = "http")]
impl ModelSpec {
    /// The HTTP endpoint for this model: base URL and key resolved from the spec and `env`.
    pub fn endpoint(&self, env: &Env) -> Result<crate::http::Endpoint, LlmError> {
        use crate::http::{ApiKey, Endpoint};
        if self.provider == Provider::Local {
            return Err(LlmError::UnsupportedProvider {
                model: self.id.clone(),
                provider: "local".into(),
                hint: "local models run in-process: get them from the `hieramas` crate's factory (hieramas::models::Models), which loads them with hieramas-local".into(),
            });
        }
        if self.provider == Provider::Sim {
            return Err(LlmError::UnsupportedProvider {
                model: self.id.clone(),
                provider: "sim".into(),
                hint: "simulated models answer known tasks only: get them from the `hieramas` crate's factory (hieramas::models::Models::simulate_queries)".into(),
            });
        }
        let base_url = match (&self.base_url, self.provider.default_base_url()) {
            (Some(u), _) => u.clone(),
            (None, Some((default, over))) => {
                over.and_then(|v| env.get(v)).unwrap_or(default).to_string()
            }
            (None, None) => {
                return Err(LlmError::Pool {
                    source_name: self.id.clone(),
                    detail: "no base_url".into(),
                });
            }
        };
        let (key_var, required) = match (&self.api_key_env, self.provider.default_key_env()) {
            (Some(v), _) => (Some(v.as_str()), true),
            (None, Some((v, req))) => (Some(v), req),
            (None, None) => (None, false),
        };
        let api_key = key_var.and_then(|v| env.get(v)).map(ApiKey::new);
        if let (Some(var), None, true) = (key_var, &api_key, required) {
            return Err(LlmError::MissingApiKey {
                model: self.id.clone(),
                var: var.to_string(),
            });
        }
        let mut headers = Vec::new();
        if self.provider == Provider::Openrouter {
            headers.push((
                "HTTP-Referer".to_string(),
                env.get("OPENROUTER_APP_URL")
                    .unwrap_or("https://github.com/hieramas/hieramas")
                    .to_string(),
            ));
            headers.push((
                "X-Title".to_string(),
                env.get("OPENROUTER_APP_TITLE")
                    .unwrap_or("hieramas")
                    .to_string(),
            ));
        }
        Ok(Endpoint {
            id: self.id.clone(),
            model: self.model.clone(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            headers,
            price: self.price,
            max_concurrency: self.max_concurrency,
            timeout: self.timeout,
            retry: self.retry.clone(),
            params: self.params.clone(),
            budget: None,
        })
    }

    /// A chat client for this model.
    pub fn connect(
        &self,
        env: &Env,
        http: &reqwest::Client,
    ) -> Result<Arc<dyn ChatModel>, LlmError> {
        self.connect_budgeted(env, http, None)
    }

    /// A chat client for this model whose every attempt, retries included, is charged to
    /// `budget` ([`crate::budget`]). Put a response cache in front of it, not behind: a cache
    /// hit then reserves nothing.
    pub fn connect_budgeted(
        &self,
        env: &Env,
        http: &reqwest::Client,
        budget: Option<Arc<crate::Budget>>,
    ) -> Result<Arc<dyn ChatModel>, LlmError> {
        let mut endpoint = self.endpoint(env)?;
        endpoint.budget = budget;
        Ok(match self.provider {
            Provider::Anthropic => Arc::new(crate::anthropic::AnthropicClient::new(
                endpoint,
                http.clone(),
            )),
            _ => Arc::new(
                crate::openai::OpenAiClient::new(endpoint, http.clone())
                    .with_streaming(self.stream),
            ),
        })
    }

    /// An embeddings client for this model (OpenAI-compatible providers only).
    pub fn connect_embedder(
        &self,
        env: &Env,
        http: &reqwest::Client,
    ) -> Result<Arc<dyn Embedder>, LlmError> {
        if self.provider == Provider::Anthropic {
            return Err(LlmError::UnsupportedProvider {
                model: self.id.clone(),
                provider: "anthropic".into(),
                hint: "the Anthropic API has no embeddings endpoint".into(),
            });
        }
        Ok(Arc::new(crate::openai::OpenAiClient::new(
            self.endpoint(env)?,
            http.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [pool]
        name = "t"
        [[models]]
        id = "a"
        provider = "openai-compatible"
        model = "m"
        base_url = "http://127.0.0.1:1/v1"
        input_per_mtok = 0.1
        output_per_mtok = "0.2"
    "#;

    #[test]
    fn parses_minimal_pool() {
        let p = Pool::from_toml(MINIMAL, "t.toml").unwrap();
        assert_eq!(p.models[0].price, Price::per_million("0.1", "0.2").unwrap());
        assert_eq!(p.models[0].max_concurrency, 16);
        assert_eq!(p.index_of("a"), Some(0));
        assert!(
            p.require("zzz")
                .unwrap_err()
                .to_string()
                .contains("the pool has: a")
        );
    }

    #[test]
    fn missing_price_is_an_error_naming_the_model() {
        let text = MINIMAL.replace("output_per_mtok = \"0.2\"", "");
        let e = Pool::from_toml(&text, "pools/x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pools/x.toml") && e.contains("\"a\"") && e.contains("no price"),
            "{e}"
        );
    }

    #[test]
    fn rejects_bad_pools() {
        let cases = [
            (MINIMAL.replace("id = \"a\"", "id = \"skip\""), "reserved"),
            (
                format!(
                    "{MINIMAL}\n[[models]]\nid=\"a\"\nprovider=\"openai\"\nmodel=\"x\"\ninput_per_mtok=0\noutput_per_mtok=0"
                ),
                "duplicate",
            ),
            (
                MINIMAL.replace("base_url = \"http://127.0.0.1:1/v1\"", ""),
                "needs base_url",
            ),
            (
                MINIMAL.replace("input_per_mtok = 0.1", "input_per_mtok = -0.1"),
                "negative",
            ),
            (
                MINIMAL.replace("provider = \"openai-compatible\"", "provider = \"nope\""),
                "unknown variant",
            ),
            (
                MINIMAL.replace("model = \"m\"", "model = \"m\"\nmax_concurency = 3"),
                "unknown field",
            ),
            ("[pool]\nname='x'".to_string(), "no [[models]]"),
        ];
        for (text, want) in cases {
            let e = Pool::from_toml(&text, "p.toml").unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in {e}");
        }
    }

    #[test]
    fn paper_pool_is_the_official_order() {
        let p = Pool::paper();
        let ids: Vec<&str> = p.ids().collect();
        assert_eq!(
            ids,
            [
                "qwen3-8b",
                "qwen3-80b",
                "deepseek-r1-14b",
                "llama-8b",
                "deepseek-v3",
                "gemma-3-27b",
                "gpt-5-nano",
                "gpt-5-mini",
                "gpt-4o-mini"
            ]
        );
        assert!(p.get("deepseek-r1-14b").unwrap().exclude);
        assert_eq!(p.models.iter().filter(|m| m.exclude).count(), 1);
        assert!(p.models.iter().all(|m| m.provider == Provider::Openrouter));
        assert!(p.meta.prices_date.is_some());
        assert_eq!(
            p.get("gpt-5-mini").unwrap().price,
            Price::per_million("0.25", "2").unwrap()
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn endpoints_resolve_keys_and_overrides() {
        let p = Pool::paper();
        let m = p.get("gpt-4o-mini").unwrap();
        let e = m.endpoint(&Env::default()).unwrap_err();
        assert!(
            matches!(e, LlmError::MissingApiKey { ref var, .. } if var == "OPENROUTER_API_KEY")
        );
        let env = Env::from_pairs([
            ("OPENROUTER_API_KEY", "k"),
            ("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1/"),
        ]);
        let ep = m.endpoint(&env).unwrap();
        assert_eq!(ep.base_url, "http://127.0.0.1:9/api/v1");
        assert_eq!(ep.model, "openai/gpt-4o-mini");
        assert!(ep.headers.iter().any(|(k, _)| k == "X-Title"));
        let local = Pool::from_toml(&MINIMAL.replace("openai-compatible", "local"), "l").unwrap();
        assert!(matches!(
            local.models[0].endpoint(&env),
            Err(LlmError::UnsupportedProvider { .. })
        ));
    }
}
