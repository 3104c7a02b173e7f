//! `hieramas serve`: loaded local models behind the OpenAI wire format.
//!
//! - `GET /v1/models`
//! - `POST /v1/chat/completions`, with `stream: true` as server-sent events (a role chunk, text
//!   deltas, a finish chunk, a usage chunk when `stream_options.include_usage`, `[DONE]`)
//! - `POST /v1/embeddings` (`input` a string or an array of strings)
//!
//! Errors are OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`) with 400 for a
//! malformed request, 404 for an unknown model or path, 500 for a failure of the model.
//! Concurrent requests to one model are decoded together by its batching engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hieramas_llm::{
    ChatModel, ChatRequest, ChatResponse, Embedder, FinishReason, LlmError, Message,
};
use hieramas_local::chat::LocalChatModel;
use hieramas_local::minilm::MiniLm;
use hieramas_local::pool::EMBEDDER_ID;
use serde::Deserialize;
use serde_json::{Value, json};

/// What the server answers with.
#[derive(Default)]
pub struct State {
    pub chat: BTreeMap<String, Arc<LocalChatModel>>,
    pub embedder: Option<Arc<MiniLm>>,
    next_id: AtomicU64,
}

type Shared = Arc<State>;

/// Binds `addr`, prints `listening on http://ADDR` on stdout (tests read the port from it), and
/// serves until Ctrl-C.
pub async fn serve(addr: SocketAddr, state: State) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    tracing::info!("serving {} model(s) at http://{local}/v1", state.chat.len());
    axum::serve(listener, router(Arc::new(state)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint: the server has /v1/models, /v1/chat/completions and /v1/embeddings")
                .code("not_found")
        })
        .with_state(state)
}

/// An OpenAI-style error response.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn param(mut self, p: &'static str) -> ApiError {
        self.param = Some(p);
        self
    }
    fn code(mut self, c: &'static str) -> ApiError {
        self.code = Some(c);
        self
    }
    fn from_llm(e: LlmError) -> ApiError {
        match e {
            LlmError::InvalidRequest { detail, .. } => ApiError::bad(detail),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
    fn body(&self) -> Value {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

fn unknown_model(state: &State, model: &str) -> ApiError {
    let mut ids: Vec<&str> = state.chat.keys().map(String::as_str).collect();
    if state.embedder.is_some() {
        ids.push(EMBEDDER_ID);
    }
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn models(AxState(state): AxState<Shared>) -> axum::Json<Value> {
    let mut data: Vec<Value> = state
        .chat
        .keys()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "hieramas-local"}))
        .collect();
    if state.embedder.is_some() {
        data.push(json!({"id": EMBEDDER_ID, "object": "model", "created": 0, "owned_by": "hieramas-local"}));
    }
    axum::Json(json!({"object": "list", "data": data}))
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    content: WireContent,
}

/// A message's content: a string, or an array of `{"type": "text", "text": …}` parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
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
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<WireMessage>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    n: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
    })
}

fn to_request(b: ChatBody) -> Result<ChatRequest, ApiError> {
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

fn usage_json(r: &ChatResponse) -> Value {
    json!({
        "prompt_tokens": r.usage.prompt_tokens,
        "completion_tokens": r.usage.completion_tokens,
        "total_tokens": r.usage.total(),
    })
}

async fn chat(AxState(state): AxState<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let b: ChatBody = parse(&body)?;
    let model_id = b.model.clone();
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

async fn embeddings(AxState(state): AxState<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let b: EmbeddingsBody = parse(&body)?;
    let Some(embedder) = state.embedder.clone().filter(|_| b.model == EMBEDDER_ID) else {
        return Err(unknown_model(&state, &b.model));
    };
    if b.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(
            ApiError::bad("only encoding_format \"float\" is supported").param("encoding_format")
        );
    }
    let texts: Vec<String> = match serde_json::from_value::<OneOrMany>(b.input) {
        Ok(i) => i.into_vec(),
        Err(_) => {
            return Err(ApiError::bad(
                "input must be a string or an array of strings (token arrays are not supported)",
            )
            .param("input"));
        }
    };
    let out = embedder.embed(&texts).await.map_err(ApiError::from_llm)?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": EMBEDDER_ID,
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
        let e = ApiError::from_llm(LlmError::Backend {
            model: "m".into(),
            detail: "boom".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["error"]["type"], "server_error");
    }
}
