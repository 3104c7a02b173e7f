//! Requests, responses and the two traits every backend implements.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cost::{Price, Usd};
use crate::error::LlmError;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A chat request: messages plus sampling parameters. Unset parameters are left to the provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    /// Which of several samples of the same prompt this is (self-consistency draws several).
    /// Part of the cache key; never sent to a provider.
    #[serde(default)]
    pub sample_index: u32,
    /// Provider parameters sent verbatim in the request body (`reasoning_effort`, `top_k`,
    /// OpenRouter's `provider` routing, …), over the pool entry's `params`; part of the cache
    /// key. Local and SIMULATED models ignore them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages,
            ..ChatRequest::default()
        }
    }
    /// A request with a single user message.
    pub fn user(content: impl Into<String>) -> ChatRequest {
        ChatRequest::new(vec![Message::user(content)])
    }
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    pub fn sample_index(mut self, i: u32) -> Self {
        self.sample_index = i;
        self
    }
    /// A provider parameter sent verbatim (see [`ChatRequest::extra`]).
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

/// Tokens a call consumed, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
        }
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), |a, b| a + b)
    }
}

/// Why generation stopped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    ContentFilter,
    /// Anything else the provider said, verbatim.
    Other(String),
}

impl FinishReason {
    /// Maps OpenAI (`stop`, `length`, …) and Anthropic (`end_turn`, `max_tokens`, …) reasons.
    pub fn from_provider(s: &str) -> FinishReason {
        match s {
            "stop" | "end_turn" | "stop_sequence" | "eos" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "content_filter" | "refusal" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

/// The result of one chat call, carrying its own usage and exact cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The pool id of the model that answered (e.g. `gpt-4o-mini`).
    pub model: String,
    /// The model name the provider reported (e.g. `openai/gpt-4o-mini-2024-07-18`).
    pub provider_model: String,
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// `usage` priced with the model's price table; exact.
    pub cost: Usd,
    /// Wall time of the call, retries and back-off included.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
    /// HTTP attempts made (1 when the first succeeded; 0 for a cache hit).
    pub attempts: u32,
    /// Served from the response cache: `usage`, `cost` and `latency` are the recorded call's,
    /// and nothing was paid (`saved` is what it would have cost).
    #[serde(default)]
    pub cached: bool,
    /// What a cache hit saved (the recorded call's cost); zero for a live call. What was paid
    /// is `cost - saved`.
    #[serde(default)]
    pub saved: Usd,
}

/// Embeddings of several texts, in input order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
    pub cost: Usd,
    #[serde(with = "duration_ms")]
    pub latency: Duration,
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).map_err(serde::de::Error::custom)
    }
}

/// Anything that answers chat requests: an HTTP client, a local model, a cache in front of one.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The pool id calls are recorded under.
    fn id(&self) -> &str;
    /// The price table used for this model's costs.
    fn price(&self) -> Price;
    /// One completion. The response carries its own usage and cost.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
}

/// Anything that embeds texts.
#[async_trait]
pub trait Embedder: Send + Sync {
    fn id(&self) -> &str;
    /// Embeds `texts`, returning one vector per text in the same order.
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError>;
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn price(&self) -> Price {
        (**self).price()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req).await
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Box<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn price(&self) -> Price {
        (**self).price()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req).await
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Embedder for Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        (**self).embed(texts).await
    }
}
