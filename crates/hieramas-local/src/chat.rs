//! Local chat models behind hieramas-llm's [`ChatModel`]: a prompt format (data, from
//! `models.toml`), a tokenizer and a batching [`Engine`].

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hieramas_llm::{
    ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, Price, Role, Usage,
};
use serde::Deserialize;

use crate::LocalError;
use crate::engine::{Engine, EngineOptions, Finish, GenParams, Generation, Net};
use crate::fetch::ModelEntry;
use crate::tokenizer::GgufTokenizer;

/// How a model's chat prompts are written (from `models.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFormat {
    /// Prepend the tokenizer's BOS token.
    #[serde(default)]
    pub bos: bool,
    /// One turn; `{role}` and `{content}` are filled in. Special tokens in the template are
    /// tokens; in the content they are plain text.
    pub turn: String,
    /// Appended after the last turn to start the answer.
    pub generation_prompt: String,
    /// Role names as the template spells them.
    pub user_role: String,
    pub assistant_role: String,
    /// `None`: the system text is prepended to the first user turn (Gemma has no system role).
    pub system_role: Option<String>,
    /// Used when a request has no system message and the model has a system role.
    pub default_system: Option<String>,
    /// Token ids that end a completion.
    pub stop_ids: Vec<u32>,
    /// Context cap (prompt + completion) for loading; keeps RoPE tables and caches small.
    pub max_context: usize,
    /// A base (pre-trained, not instruction-tuned) model: it continues text rather than
    /// follows turns, so its "template" is a completion — `prefix` (a few worked examples),
    /// then the turns as plain text — and it stops at `stop` (the start of the next question)
    /// as well as at `stop_ids`.
    #[serde(default)]
    pub base: bool,
    /// Text after BOS and before the first turn (a base model's few-shot examples).
    #[serde(default)]
    pub prefix: String,
    /// Stop strings added to every request's own (cut from the completion).
    #[serde(default)]
    pub stop: Vec<String>,
}

impl ChatFormat {
    /// Token ids of the prompt for `messages`.
    pub fn render(
        &self,
        messages: &[hieramas_llm::Message],
        tok: &GgufTokenizer,
    ) -> Result<Vec<u32>, LocalError> {
        let mut ids = Vec::new();
        if self.bos {
            ids.push(
                tok.bos_id
                    .ok_or_else(|| LocalError::Format("the tokenizer has no BOS token".into()))?,
            );
        }
        let (before, after) = self
            .turn
            .split_once("{content}")
            .ok_or_else(|| LocalError::Format("chat turn template has no {content}".into()))?;
        if !self.prefix.is_empty() {
            ids.extend(tok.encode(&self.prefix)?);
        }
        let mut turns: Vec<(&str, String)> = Vec::new();
        let mut pending_system: Option<String> = None;
        let has_system = messages.iter().any(|m| m.role == Role::System);
        if let (Some(role), Some(default), false) =
            (&self.system_role, &self.default_system, has_system)
        {
            turns.push((role, default.clone()));
        }
        for m in messages {
            match (m.role, &self.system_role) {
                (Role::System, Some(role)) => turns.push((role, m.content.clone())),
                (Role::System, None) => {
                    let p = pending_system.get_or_insert_with(String::new);
                    if !p.is_empty() {
                        p.push_str("\n\n");
                    }
                    p.push_str(&m.content);
                }
                (Role::User, _) => {
                    let content = match pending_system.take() {
                        Some(s) => format!("{s}\n\n{}", m.content),
                        None => m.content.clone(),
                    };
                    turns.push((&self.user_role, content));
                }
                (Role::Assistant, _) => turns.push((&self.assistant_role, m.content.clone())),
            }
        }
        if let Some(s) = pending_system {
            turns.push((&self.user_role, s));
        }
        for (role, content) in turns {
            ids.extend(tok.encode_with_special(&before.replace("{role}", role))?);
            ids.extend(tok.encode(&content)?);
            ids.extend(tok.encode_with_special(&after.replace("{role}", role))?);
        }
        ids.extend(tok.encode_with_special(&self.generation_prompt)?);
        Ok(ids)
    }
}

/// A local GGUF chat model, loaded and ready: implements [`ChatModel`].
pub struct LocalChatModel {
    id: String,
    model: String,
    tokenizer: Arc<GgufTokenizer>,
    format: ChatFormat,
    engine: Engine,
    price: Price,
    /// Default completion length when a request sets none.
    pub default_max_tokens: usize,
}

impl LocalChatModel {
    /// Loads the GGUF at `path` described by `entry` (which must have a `chat` format) and
    /// starts its batching worker. `id` is the pool id responses carry; `price` a notional
    /// price (zero for a true local cost).
    pub fn load(
        id: &str,
        entry: &ModelEntry,
        path: &Path,
        price: Price,
        opts: EngineOptions,
    ) -> Result<LocalChatModel, LocalError> {
        let format = entry.chat.clone().ok_or_else(|| {
            LocalError::Format(format!(
                "model {} has no chat format in models.toml",
                entry.id
            ))
        })?;
        let load = |e: String| LocalError::Load {
            path: path.display().to_string(),
            detail: e,
        };
        // Buffered: the GGUF header is read in many small pieces (Gemma: 262k vocabulary strings).
        let mut f =
            std::io::BufReader::new(std::fs::File::open(path).map_err(|e| load(e.to_string()))?);
        let content = candle_core::quantized::gguf_file::Content::read(&mut f)
            .map_err(|e| load(e.to_string()))?;
        // The tokenizer (Gemma: 262k pieces, merges derived from scores, ~1 s) is built on
        // another core while the weights load.
        let (tokenizer, net) = std::thread::scope(|s| {
            let tokenizer = s.spawn(|| GgufTokenizer::from_gguf(&content));
            let net = Net::load(&content, &mut f, Some(format.max_context));
            let tokenizer = tokenizer
                .join()
                .map_err(|_| LocalError::Format("building the tokenizer panicked".into()));
            (tokenizer, net)
        });
        let tokenizer = Arc::new(tokenizer??);
        let net = net?;
        tracing::info!(model = id, context = net.context(), "local model loaded");
        Ok(LocalChatModel {
            id: id.to_string(),
            model: entry.id.clone(),
            engine: Engine::start(net, tokenizer.clone(), opts),
            tokenizer,
            format,
            price,
            default_max_tokens: 512,
        })
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    pub fn format(&self) -> &ChatFormat {
        &self.format
    }

    /// The model's name in the local manifest (e.g. `smollm2-135m`).
    pub fn model_name(&self) -> &str {
        &self.model
    }

    /// What its batching worker has done so far.
    pub fn engine_stats(&self) -> crate::engine::EngineStats {
        self.engine.stats()
    }

    fn err(&self, e: LocalError) -> LlmError {
        match e {
            LocalError::Request(detail) => LlmError::InvalidRequest {
                model: self.id.clone(),
                detail,
            },
            other => LlmError::Backend {
                model: self.id.clone(),
                detail: other.to_string(),
            },
        }
    }

    /// Like [`ChatModel::chat`], sending text to `deltas` as it is generated.
    pub async fn chat_streaming(
        &self,
        req: &ChatRequest,
        deltas: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let prompt = self
            .format
            .render(&req.messages, &self.tokenizer)
            .map_err(|e| self.err(e))?;
        let params = self.params(req)?;
        let g: Generation = self
            .engine
            .generate(prompt, params, deltas)
            .await
            .map_err(|e| self.err(e))?;
        let usage = Usage {
            prompt_tokens: g.prompt_tokens as u64,
            completion_tokens: g.completion_tokens as u64,
        };
        // A completion template ends with "Answer:"; the space the model writes after it is
        // not part of the answer.
        let text = if self.format.base {
            g.text.trim_start().to_string()
        } else {
            g.text
        };
        Ok(ChatResponse {
            model: self.id.clone(),
            provider_model: self.model.clone(),
            text,
            finish_reason: match g.finish {
                Finish::Stop => FinishReason::Stop,
                Finish::Length => FinishReason::Length,
            },
            cost: self.price.cost(usage),
            usage,
            latency: started.elapsed(),
            attempts: 1,
            cached: false,
            saved: Default::default(),
        })
    }

    fn params(&self, req: &ChatRequest) -> Result<GenParams, LlmError> {
        let invalid = |detail: String| LlmError::InvalidRequest {
            model: self.id.clone(),
            detail,
        };
        let temperature = req.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(invalid(format!(
                "temperature {temperature} is outside [0, 2]"
            )));
        }
        let top_p = req.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid(format!("top_p {top_p} is outside (0, 1]")));
        }
        let max_tokens = req
            .max_tokens
            .map_or(self.default_max_tokens, |m| m as usize);
        if max_tokens == 0 {
            return Err(invalid("max_tokens must be at least 1".into()));
        }
        // Without a seed, each sample index still gets its own reproducible stream.
        let seed = req
            .seed
            .unwrap_or(0x5eed_0000 + u64::from(req.sample_index));
        Ok(GenParams {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop_ids: self.format.stop_ids.clone(),
            stop_strings: req.stop.iter().chain(&self.format.stop).cloned().collect(),
        })
    }
}

#[async_trait]
impl ChatModel for LocalChatModel {
    fn id(&self) -> &str {
        &self.id
    }
    fn price(&self) -> Price {
        self.price
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.chat_streaming(req, None).await
    }
}
