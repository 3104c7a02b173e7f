//! OpenAI-compatible chat and embeddings client: OpenRouter, OpenAI, vLLM, Ollama, llama.cpp
//! `llama-server`, and `hieramas serve`.

use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::cost::Price;
use crate::error::LlmError;
use crate::http::{Endpoint, HttpCore, error_chain, in_body_error};
use crate::sse::SseParser;
use crate::types::{
    ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, FinishReason, Usage,
};

/// A chat (and embeddings) client for one model behind an OpenAI-compatible API.
pub struct OpenAiClient {
    core: HttpCore,
    stream: bool,
}

/// What one successful attempt produced, before pricing.
struct Completion {
    provider_model: String,
    text: String,
    finish_reason: FinishReason,
    usage: Usage,
}

impl OpenAiClient {
    /// A client for `endpoint`, sending requests through `http` (share one client between
    /// models to share connections; see [`crate::http_client`]).
    pub fn new(endpoint: Endpoint, http: reqwest::Client) -> OpenAiClient {
        OpenAiClient {
            core: HttpCore::new(endpoint, http),
            stream: false,
        }
    }

    /// Whether [`ChatModel::chat`] uses `stream: true` (SSE) under the hood. Streaming keeps
    /// long generations flowing through proxies; the result is the same.
    pub fn with_streaming(mut self, stream: bool) -> OpenAiClient {
        self.stream = stream;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.core.endpoint
    }

    /// Streams one completion, handing each text delta to `on_delta` as it arrives, and returns
    /// the whole response with usage and cost. A failure before any text was delivered is
    /// retried; one after is not (the caller has already seen the text).
    pub async fn chat_streaming(
        &self,
        req: &ChatRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatResponse, LlmError> {
        let start = Instant::now();
        let ep = &self.core.endpoint;
        let req = self.core.capped(req);
        let mut retrier = ep.retry.retrier(&ep.id);
        loop {
            let n = retrier.start_attempt();
            let attempt = self.attempt_stream(&req, Some(&mut *on_delta));
            match self.core.charged(n, &req, attempt, |c| c.usage).await {
                Ok(c) => return Ok(self.finish(c, start, n)),
                Err(e) => retrier.wait_or_give_up(e).await?,
            }
        }
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Value {
        let mut b = json!({
            "model": self.core.endpoint.model,
            "messages": req.messages,
        });
        if let Some(t) = req.temperature {
            b["temperature"] = json!(t);
        }
        if let Some(p) = req.top_p {
            b["top_p"] = json!(p);
        }
        if let Some(n) = req.max_tokens {
            b["max_tokens"] = json!(n);
        }
        if !req.stop.is_empty() {
            b["stop"] = json!(req.stop);
        }
        if let Some(s) = req.seed {
            b["seed"] = json!(s);
        }
        if stream {
            b["stream"] = json!(true);
            b["stream_options"] = json!({"include_usage": true});
        }
        self.core.endpoint.add_params(&mut b, &req.extra);
        b
    }

    fn finish(&self, c: Completion, start: Instant, attempts: u32) -> ChatResponse {
        let ep = &self.core.endpoint;
        ChatResponse {
            model: ep.id.clone(),
            provider_model: c.provider_model,
            text: c.text,
            finish_reason: c.finish_reason,
            usage: c.usage,
            cost: ep.price.cost(c.usage),
            latency: start.elapsed(),
            attempts,
            cached: false,
            saved: Default::default(),
        }
    }

    fn url(&self) -> String {
        self.core.endpoint.url("chat/completions")
    }

    async fn attempt_json(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        let _permit = self.core.permit().await;
        let v = self
            .core
            .post_json("chat/completions", &self.body(req, false), &[])
            .await?;
        let url = self.url();
        let model = &self.core.endpoint.id;
        let choice = v["choices"].get(0).ok_or_else(|| {
            self.core.malformed(
                &url,
                "no choices in answer".into(),
                v.to_string().as_bytes(),
            )
        })?;
        let text = match &choice["message"]["content"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(), // e.g. a reasoning model that spent max_tokens thinking
            other => {
                return Err(self.core.malformed(
                    &url,
                    format!("message.content is {other}"),
                    v.to_string().as_bytes(),
                ));
            }
        };
        let usage = parse_usage(&v["usage"]).ok_or_else(|| LlmError::MissingUsage {
            model: model.clone(),
            url: url.clone(),
        })?;
        Ok(Completion {
            provider_model: v["model"]
                .as_str()
                .unwrap_or(&self.core.endpoint.model)
                .to_string(),
            text,
            finish_reason: choice["finish_reason"]
                .as_str()
                .map(FinishReason::from_provider)
                .unwrap_or_else(|| FinishReason::Other("none".into())),
            usage,
        })
    }

    async fn attempt_stream(
        &self,
        req: &ChatRequest,
        mut sink: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, LlmError> {
        let _permit = self.core.permit().await;
        let url = self.url();
        let model = self.core.endpoint.id.clone();
        let resp = self
            .core
            .post("chat/completions", &self.body(req, true), &[])
            .await?;
        let mut parser = SseParser::new();
        let mut bytes = resp.bytes_stream();
        let mut text = String::new();
        let mut finish: Option<String> = None;
        let mut usage: Option<Usage> = None;
        let mut provider_model = None;
        let mut done = false;
        let mut delivered = false;
        let truncated = |detail: String, delivered: bool| LlmError::TruncatedStream {
            model: model.clone(),
            url: url.clone(),
            detail,
            delivered,
        };
        'read: loop {
            let (events, at_end) = match bytes.next().await {
                Some(Ok(chunk)) => (parser.feed(&chunk), false),
                Some(Err(e)) => {
                    if e.is_timeout() && !delivered {
                        return Err(self.core.transport_error(&url, e));
                    }
                    return Err(truncated(
                        format!("connection broke: {}", error_chain(&e)),
                        delivered,
                    ));
                }
                None => (parser.finish().into_iter().collect(), true),
            };
            for ev in events {
                if ev.data.trim() == "[DONE]" {
                    done = true;
                    break 'read;
                }
                let v: Value = serde_json::from_str(&ev.data).map_err(|e| {
                    if delivered {
                        truncated(format!("undecodable event {:?}: {e}", ev.data), true)
                    } else {
                        self.core.malformed(
                            &url,
                            format!("undecodable SSE event: {e}"),
                            ev.data.as_bytes(),
                        )
                    }
                })?;
                if let Some((status, message)) = in_body_error(&v) {
                    if delivered {
                        return Err(truncated(
                            format!("provider error mid-stream: {message}"),
                            true,
                        ));
                    }
                    return Err(LlmError::Http {
                        model: model.clone(),
                        status,
                        url: url.clone(),
                        message,
                        retry_after: None,
                    });
                }
                if let Some(m) = v["model"].as_str() {
                    provider_model.get_or_insert_with(|| m.to_string());
                }
                if let Some(u) = parse_usage(&v["usage"]) {
                    usage = Some(u);
                }
                if let Some(choice) = v["choices"].get(0) {
                    if let Some(delta) = choice["delta"]["content"].as_str()
                        && !delta.is_empty()
                    {
                        text.push_str(delta);
                        if let Some(sink) = sink.as_mut() {
                            sink(delta);
                            delivered = true;
                        }
                    }
                    if let Some(f) = choice["finish_reason"].as_str() {
                        finish = Some(f.to_string());
                    }
                }
            }
            if at_end {
                break;
            }
        }
        if !done && finish.is_none() {
            return Err(truncated(
                "no finish_reason and no [DONE]".into(),
                delivered,
            ));
        }
        let usage = usage.ok_or(LlmError::MissingUsage {
            model: model.clone(),
            url: url.clone(),
        })?;
        Ok(Completion {
            provider_model: provider_model.unwrap_or_else(|| self.core.endpoint.model.clone()),
            text,
            finish_reason: finish
                .as_deref()
                .map(FinishReason::from_provider)
                .unwrap_or(FinishReason::Stop),
            usage,
        })
    }
}

fn parse_usage(v: &Value) -> Option<Usage> {
    let prompt = v.get("prompt_tokens")?.as_u64()?;
    // Embeddings report only prompt/total tokens.
    let completion = v
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
    })
}

#[async_trait]
impl ChatModel for OpenAiClient {
    fn id(&self) -> &str {
        &self.core.endpoint.id
    }

    fn price(&self) -> Price {
        self.core.endpoint.price
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let start = Instant::now();
        let ep = &self.core.endpoint;
        let req = self.core.capped(req);
        let usage = |c: &Completion| c.usage;
        let (c, attempts) = if self.stream {
            ep.retry
                .run(&ep.id, |n| {
                    self.core
                        .charged(n, &req, self.attempt_stream(&req, None), usage)
                })
                .await?
        } else {
            ep.retry
                .run(&ep.id, |n| {
                    self.core.charged(n, &req, self.attempt_json(&req), usage)
                })
                .await?
        };
        Ok(self.finish(c, start, attempts))
    }
}

#[async_trait]
impl Embedder for OpenAiClient {
    fn id(&self) -> &str {
        &self.core.endpoint.id
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        let start = Instant::now();
        let ep = &self.core.endpoint;
        let url = ep.url("embeddings");
        let body = json!({"model": ep.model, "input": texts});
        let (v, _) = ep
            .retry
            .run(&ep.id, |_| async {
                let _permit = self.core.permit().await;
                self.core.post_json("embeddings", &body, &[]).await
            })
            .await?;
        let bad = |detail: String| self.core.malformed(&url, detail, v.to_string().as_bytes());
        let data = v["data"]
            .as_array()
            .ok_or_else(|| bad("no data array".into()))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (pos, item) in data.iter().enumerate() {
            let idx = item["index"].as_u64().map(|i| i as usize).unwrap_or(pos);
            let emb = item["embedding"]
                .as_array()
                .ok_or_else(|| bad(format!("data[{pos}].embedding is not an array")))?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad(format!("data[{pos}].embedding has a non-number")))?;
            let slot = vectors.get_mut(idx).ok_or_else(|| {
                bad(format!(
                    "index {idx} out of range for {} inputs",
                    texts.len()
                ))
            })?;
            *slot = Some(emb);
        }
        let vectors = vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| bad(format!("no embedding for input {i}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let usage = parse_usage(&v["usage"])
            .or_else(|| {
                v["usage"]["total_tokens"].as_u64().map(|t| Usage {
                    prompt_tokens: t,
                    completion_tokens: 0,
                })
            })
            .ok_or_else(|| LlmError::MissingUsage {
                model: ep.id.clone(),
                url: url.clone(),
            })?;
        Ok(Embeddings {
            model: ep.id.clone(),
            vectors,
            usage,
            cost: ep.price.cost(usage),
            latency: start.elapsed(),
        })
    }
}
