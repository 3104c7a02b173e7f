//! `hieramas-llm`: calling LLMs with exact, per-call costs.
//!
//! Everything that answers a prompt implements [`ChatModel`]; everything that embeds text
//! implements [`Embedder`]. Every [`ChatResponse`] carries its own [`Usage`] and its exact
//! [`Usd`] cost, priced from the model's [`Price`]: costs are summed along a query's call tree,
//! never read from a global counter.
//!
//! Backends (feature `http`, on by default): [`OpenAiClient`] for any OpenAI-compatible server
//! (OpenRouter, OpenAI, vLLM, Ollama, llama.cpp, `hieramas serve`), including SSE streaming and
//! `/v1/embeddings`, and [`AnthropicClient`] for the Messages API. Both retry rate limits,
//! server errors, timeouts and broken connections with exponential back-off and full jitter
//! ([`RetryPolicy`]), honour `Retry-After`, fail at once on client errors with the provider's
//! message, and cap calls in flight per model.
//!
//! Wrappers compose: [`Budgeted`] refuses calls once a USD cap would be exceeded; [`Cached`]
//! (feature `cache`) records answers in SQLite and replays them (a hit costs nothing and says
//! what it saved). Provider parameters (`reasoning_effort`, `top_k`, OpenRouter routing) go
//! out verbatim: a pool entry's `[models.params]` table, or a call's [`ChatRequest::extra`].
//!
//! Models come from a [`Pool`] file (TOML); see [`pool`] for the format.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hieramas_llm::{ChatModel, ChatRequest, Endpoint, OpenAiClient, Price, http_client};
//! # let server = hieramas_testkit::TestServer::start().await?;
//! # let base_url = server.base_url();
//! // Any OpenAI-compatible server: here a local test server on 127.0.0.1.
//! let price = Price::per_million("0.15", "0.60")?;
//! let model = OpenAiClient::new(Endpoint::new("mini", "gpt-4o-mini", base_url, price), http_client()?);
//! let resp = model.chat(&ChatRequest::user("What is 7*8?").temperature(0.2).max_tokens(64)).await?;
//! println!("{} ({} tokens, {})", resp.text, resp.usage.total(), resp.cost);
//! assert_eq!(resp.cost, price.cost(resp.usage));
//! # Ok(()) }
//! ```

pub mod budget;
pub mod cost;
pub mod error;
pub mod limit;
pub mod pool;
pub mod retry;
pub mod sse;
pub mod types;

#[cfg(feature = "http")]
pub mod anthropic;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod openai;
#[cfg(feature = "http")]
pub mod pricing;

#[cfg(feature = "cache")]
pub mod cache;

pub use budget::{Budget, Budgeted};
pub use cost::{Price, Usd};
pub use error::LlmError;
pub use limit::Limited;
pub use pool::{Env, ModelSpec, Pool, Provider};
pub use retry::RetryPolicy;
pub use types::{
    ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, FinishReason, Message, Role, Usage,
};

#[cfg(feature = "http")]
pub use anthropic::AnthropicClient;
#[cfg(feature = "http")]
pub use http::{ApiKey, Endpoint, http_client};
#[cfg(feature = "http")]
pub use openai::OpenAiClient;

#[cfg(feature = "cache")]
pub use cache::{CacheMode, Cached, ResponseCache};
