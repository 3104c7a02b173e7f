//! The OpenAI wire format: errors, request parsing, and the local models' chat and
//! embeddings endpoints.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use hieramas_llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, Message};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;

/// An OpenAI-style error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn param(mut self, p: &'static str) -> ApiError {
        self.param = Some(p);
        self
    }
    pub fn code(mut self, c: &'static str) -> ApiError {
        self.code = Some(c);
        self
    }
    pub fn from_llm(e: LlmError) -> ApiError {
        match e {
            LlmError::InvalidRequest { detail, .. } => ApiError::bad(detail),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
    pub fn body(&self) -> Value {
        let kind = match self.status {
            s if s.is_server_error() => "server_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::FORBIDDEN => "permission_error",
            _ => "invalid_request_error",
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    }
}

pub fn unknown_model(state: &crate::State, model: &str) -> ApiError {
    let ids = state.model_ids();
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "the model {model:?} is not served here; models: {}",
            ids.join(", ")
        ),
    )
    .param("model")
    .code("model_not_found")
}

/// `finish_reason` as OpenAI spells it.
pub fn finish_str(f: &FinishReason) -> &str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(s) => s,
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub async fn models(AxState(state): AxState<Shared>) -> axum::Json<Value> {
    let owner = |id: &str| {
        if state.systems.contains_key(id) {
            "hieramas"
        } else {
            "hieramas-local"
        }
    };
    let data: Vec<Value> = state
        .model_ids()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": owner(&id)}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

#[derive(Deserialize)]
pub struct WireMessage {
    role: String,
    content: WireContent,
}

/// A message's content: a string, or an array of `{"type": "text", "text": …}` parts.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`'s body (the fields this server reads).
#[derive(Deserialize)]
pub struct ChatBody {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<OneOrMany>,
    pub seed: Option<u64>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
}

/// Reads a request body of at most `limit` bytes (a longer one is a 413).
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over this server's limit of {limit} bytes"),
        )
        .code("request_too_large")
    })
}

pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
    })
}

pub fn to_request(b: ChatBody) -> Result<ChatRequest, ApiError> {
    if b.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad("only n = 1 is supported").param("n"));
    }
    if b.messages.is_empty() {
        return Err(ApiError::bad("messages must not be empty").param("messages"));
    }
    let mut messages = Vec::with_capacity(b.messages.len());
    for (i, m) in b.messages.into_iter().enumerate() {
        let text = match m.content {
            WireContent::Text(t) => t,
            WireContent::Parts(parts) => {
                let mut t = String::new();
                for p in parts {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(s)) => t.push_str(s),
                        _ => {
                            return Err(ApiError::bad(format!(
                                "messages[{i}]: only text content parts are supported"
                            ))
                            .param("messages"));
                        }
                    }
                }
                t
            }
        };
        messages.push(match m.role.as_str() {
            "system" | "developer" => Message::system(text),
            "user" => Message::user(text),
            "assistant" => Message::assistant(text),
            other => {
                return Err(ApiError::bad(format!(
                    "messages[{i}]: role {other:?} is not supported (system, developer, user, assistant are)"
                ))
                .param("messages"));
            }
        });
    }
    let mut req = ChatRequest::new(messages);
    req.temperature = b.temperature;
    req.top_p = b.top_p;
    req.max_tokens = b.max_completion_tokens.or(b.max_tokens);
    req.stop = b.stop.map(OneOrMany::into_vec).unwrap_or_default();
    req.seed = b.seed;
    Ok(req)
}

pub fn usage_json(r: &ChatResponse) -> Value {
    json!({
        "prompt_tokens": r.usage.prompt_tokens,
        "completion_tokens": r.usage.completion_tokens,
        "total_tokens": r.usage.total(),
    })
}

pub async fn chat(AxState(state): AxState<Shared>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, state.limits.max_body_bytes).await?;
    let b: ChatBody = parse(&body)?;
    let model_id = b.model.clone();
    if let Some(system) = state.systems.get(&model_id).cloned() {
        return crate::system::chat(state, system, b).await;
    }
    let Some(model) = state.chat.get(&model_id).cloned() else {
        return Err(unknown_model(&state, &model_id));
    };
    let stream = b.stream;
    let include_usage = b.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let req = to_request(b)?;
    let id = format!("chatcmpl-{}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let created = unix_now();
    if !stream {
        let r = model.chat(&req).await.map_err(ApiError::from_llm)?;
        return Ok(axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": finish_str(&r.finish_reason),
            }],
            "usage": usage_json(&r),
        }))
        .into_response());
    }
    // Validate before the 200 goes out: parameter errors must still be a 400.
    let (etx, erx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Option<&str>| {
            Event::default().data(
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model_id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                })
                .to_string(),
            )
        };
        let (dtx, mut drx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let generation = model.chat_streaming(&req, Some(dtx));
        tokio::pin!(generation);
        let mut first_tx = Some(first_tx);
        let send = |e: Event, first: &mut Option<tokio::sync::oneshot::Sender<_>>| {
            if let Some(tx) = first.take() {
                let _ = tx.send(Ok(()));
                let _ = etx.send(chunk(json!({"role": "assistant", "content": ""}), None));
            }
            etx.send(e).is_ok()
        };
        let result = loop {
            tokio::select! {
                biased;
                Some(d) = drx.recv() => {
                    if !send(chunk(json!({"content": d}), None), &mut first_tx) {
                        return; // the client went away: dropping `generation` ends it
                    }
                }
                r = &mut generation => break r,
            }
        };
        match result {
            Err(e) => match first_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(ApiError::from_llm(e)));
                }
                None => {
                    let err = ApiError::from_llm(e).body().to_string();
                    let _ = etx.send(Event::default().data(err));
                }
            },
            Ok(r) => {
                while let Ok(d) = drx.try_recv() {
                    send(chunk(json!({"content": d}), None), &mut first_tx);
                }
                send(
                    chunk(json!({}), Some(finish_str(&r.finish_reason))),
                    &mut first_tx,
                );
                if include_usage {
                    let usage = json!({
                        "id": id, "object": "chat.completion.chunk", "created": created,
                        "model": model_id, "choices": [], "usage": usage_json(&r),
                    });
                    let _ = etx.send(Event::default().data(usage.to_string()));
                }
                let _ = etx.send(Event::default().data("[DONE]"));
            }
        }
    });
    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the generation task ended without an answer",
            ));
        }
    }
    let events = futures_util::stream::unfold(erx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Ok(Sse::new(events).into_response())
}

#[derive(Deserialize)]
struct EmbeddingsBody {
    model: String,
    input: Value,
    encoding_format: Option<String>,
}

/// An embedding as OpenAI's `encoding_format: "base64"` sends it: the little-endian f32 bytes,
/// base64 (standard alphabet, padded).
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn embeddings(AxState(state): AxState<Shared>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, state.limits.max_body_bytes).await?;
    let b: EmbeddingsBody = parse(&body)?;
    let Some(embedder) = state.embedder.clone().filter(|e| b.model == e.id()) else {
        return Err(unknown_model(&state, &b.model));
    };
    let base64 = match b.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "encoding_format {other:?}: use \"float\" or \"base64\""
            ))
            .param("encoding_format"));
        }
    };
    let texts: Vec<String> = match serde_json::from_value::<OneOrMany>(b.input) {
        Ok(i) => i.into_vec(),
        Err(_) => {
            return Err(ApiError::bad(
                "input must be a string or an array of strings (token arrays are not supported)",
            )
            .param("input"));
        }
    };
    // The encoder computes on the calling thread: keep it off the async workers.
    let model_id = embedder.id().to_string();
    let handle = tokio::runtime::Handle::current();
    let out = tokio::task::spawn_blocking(move || handle.block_on(embedder.embed(&texts)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from_llm)?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(base64_f32(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model_id,
        "usage": {"prompt_tokens": out.usage.prompt_tokens, "total_tokens": out.usage.prompt_tokens},
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(body: Value) -> Result<ChatRequest, ApiError> {
        to_request(parse(body.to_string().as_bytes())?)
    }

    #[test]
    fn openai_request_fields_map_onto_a_chat_request() {
        let r = request(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
            ],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 3, "stop": "X", "n": 1,
        }))
        .unwrap();
        assert_eq!(
            r.messages,
            [
                Message::system("be brief"),
                Message::user("ab"),
                Message::assistant("c")
            ]
        );
        assert_eq!(
            (r.temperature, r.top_p, r.max_tokens, r.seed),
            (Some(0.5), Some(0.9), Some(7), Some(3))
        );
        assert_eq!(r.stop, ["X"]);
        // max_completion_tokens wins over the older max_tokens; stop may be an array.
        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 7, "max_completion_tokens": 9, "stop": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!((r.max_tokens, r.stop.len()), (Some(9), 2));
    }

    #[test]
    fn unsupported_requests_are_400s_naming_the_parameter() {
        let cases = [
            (json!({"model": "m", "messages": []}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
                "n",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}),
                "messages",
            ),
        ];
        for (body, param) in cases {
            let e = request(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} was accepted"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param, Some(param), "{body}");
            assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        }
        let e = request(json!({"messages": []})).err().unwrap();
        assert!(e.message.contains("model"), "{}", e.message);
        let e = ApiError::from_llm(hieramas_llm::LlmError::Backend {
            model: "m".into(),
            detail: "boom".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["error"]["type"], "server_error");
    }
}

#[cfg(test)]
mod base64_tests {
    use super::base64_f32;

    #[test]
    fn base64_is_little_endian_f32_as_openai_sends_it() {
        // 1.0f32 = 00 00 80 3f; -2.5f32 = 00 00 20 c0.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[]), "");
        // Three floats: 12 bytes, no padding.
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]).len(), 16);
    }
}
