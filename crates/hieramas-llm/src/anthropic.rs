//! Anthropic Messages API client (`POST /v1/messages`).
//!
//! Mapping from the common request: system messages are joined into the top-level `system`
//! field; consecutive messages of one role are merged (the API wants alternating turns);
//! `max_tokens` is required by the API and defaults to [`AnthropicClient::DEFAULT_MAX_TOKENS`];
//! `stop` becomes `stop_sequences`; `seed` has no Anthropic equivalent and is not sent.
//! Usage maps `input_tokens` (plus any cache-read/-creation input tokens) to prompt tokens and
//! `output_tokens` to completion tokens.

use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::cost::Price;
use crate::error::LlmError;
use crate::http::{Endpoint, HttpCore};
use crate::types::{ChatModel, ChatRequest, ChatResponse, FinishReason, Role, Usage};

/// The API version header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A chat client for one model behind the Anthropic Messages API.
pub struct AnthropicClient {
    core: HttpCore,
}

impl AnthropicClient {
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// `endpoint.base_url` is the API root with its version, e.g. `https://api.anthropic.com/v1`.
    pub fn new(endpoint: Endpoint, http: reqwest::Client) -> AnthropicClient {
        AnthropicClient {
            core: HttpCore::new(endpoint, http).without_bearer(),
        }
    }

    /// The request body this client sends for `req`.
    pub fn body(&self, req: &ChatRequest) -> Result<Value, LlmError> {
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let mut turns: Vec<(Role, String)> = Vec::new();
        for m in req.messages.iter().filter(|m| m.role != Role::System) {
            match turns.last_mut() {
                Some((role, text)) if *role == m.role => {
                    text.push_str("\n\n");
                    text.push_str(&m.content);
                }
                _ => turns.push((m.role, m.content.clone())),
            }
        }
        if turns.first().map(|t| t.0) != Some(Role::User) {
            return Err(LlmError::InvalidRequest {
                model: self.core.endpoint.id.clone(),
                detail: "the Anthropic API needs the first non-system message to be from the user"
                    .into(),
            });
        }
        let messages: Vec<Value> = turns
            .iter()
            .map(|(role, text)| json!({"role": role.as_str(), "content": text}))
            .collect();
        let mut b = json!({
            "model": self.core.endpoint.model,
            "max_tokens": req.max_tokens.unwrap_or(Self::DEFAULT_MAX_TOKENS),
            "messages": messages,
        });
        if !system.is_empty() {
            b["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = req.temperature {
            b["temperature"] = json!(t);
        }
        if let Some(p) = req.top_p {
            b["top_p"] = json!(p);
        }
        if !req.stop.is_empty() {
            b["stop_sequences"] = json!(req.stop);
        }
        self.core.endpoint.add_params(&mut b, &req.extra);
        Ok(b)
    }

    async fn attempt(&self, body: &Value) -> Result<(Value, Usage), LlmError> {
        let _permit = self.core.permit().await;
        let ep = &self.core.endpoint;
        let key = ep.api_key.as_ref().map(|k| k.expose()).unwrap_or("");
        let headers = [("x-api-key", key), ("anthropic-version", ANTHROPIC_VERSION)];
        let v = self.core.post_json("messages", body, &headers).await?;
        let u = &v["usage"];
        let usage = match (u["input_tokens"].as_u64(), u["output_tokens"].as_u64()) {
            (Some(i), Some(o)) => Usage {
                prompt_tokens: i
                    + u["cache_creation_input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_read_input_tokens"].as_u64().unwrap_or(0),
                completion_tokens: o,
            },
            _ => {
                return Err(LlmError::MissingUsage {
                    model: ep.id.clone(),
                    url: ep.url("messages"),
                });
            }
        };
        Ok((v, usage))
    }
}

#[async_trait]
impl ChatModel for AnthropicClient {
    fn id(&self) -> &str {
        &self.core.endpoint.id
    }

    fn price(&self) -> Price {
        self.core.endpoint.price
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let start = Instant::now();
        let req = self.core.capped(req);
        let req = req.as_ref();
        let body = self.body(req)?;
        if req.seed.is_some() {
            tracing::debug!(model = %self.core.endpoint.id, "the Anthropic API has no seed; not sent");
        }
        let ep = &self.core.endpoint;
        let ((v, usage), attempts) = ep
            .retry
            .run(&ep.id, |n| {
                self.core
                    .charged(n, req, self.attempt(&body), |(_, u): &(Value, Usage)| *u)
            })
            .await?;
        let blocks = v["content"].as_array().ok_or_else(|| {
            self.core.malformed(
                &ep.url("messages"),
                "no content array".into(),
                v.to_string().as_bytes(),
            )
        })?;
        let text: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        Ok(ChatResponse {
            model: ep.id.clone(),
            provider_model: v["model"].as_str().unwrap_or(&ep.model).to_string(),
            text,
            finish_reason: v["stop_reason"]
                .as_str()
                .map(FinishReason::from_provider)
                .unwrap_or_else(|| FinishReason::Other("none".into())),
            usage,
            cost: ep.price.cost(usage),
            latency: start.elapsed(),
            attempts,
            cached: false,
            saved: Default::default(),
        })
    }
}
