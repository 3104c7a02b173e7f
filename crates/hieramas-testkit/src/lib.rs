//! A fault-injecting, OpenAI- and Anthropic-compatible HTTP server that listens on 127.0.0.1,
//! for tests and benchmarks of LLM clients.
//!
//! It speaks the real wire formats — `POST /v1/chat/completions` (JSON and `stream: true` SSE),
//! `POST /v1/embeddings`, `POST /v1/messages` (Anthropic) and OpenRouter's `GET /api/v1/models` —
//! and answers deterministically: the reply to a chat is `echo: ` followed by the last user
//! message, with `usage` counted in whitespace-separated words. Requests that break the wire
//! format (no `model`, no `messages`, a missing Anthropic header) get the provider's error JSON
//! and status, so a client that sends the wrong shape fails here too.
//!
//! Faults are queued with [`TestServer::push_fault`]; each request takes the next queued fault
//! (or none) before it is answered. Every request is recorded for later inspection.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use hieramas_testkit::{Fault, TestServer};
//! let server = TestServer::start().await.unwrap();
//! server.push_fault(Fault::status(503));
//! let http = reqwest::Client::new();
//! let url = format!("{}/chat/completions", server.base_url());
//! let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi there"}]});
//! let first = http.post(&url).json(&body).send().await.unwrap();
//! assert_eq!(first.status(), 503);
//! let second: serde_json::Value = http.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
//! assert_eq!(second["choices"][0]["message"]["content"], "echo: hi there");
//! assert_eq!(server.request_count(), 2);
//! # }
//! ```

mod timer;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::timer::PreciseTimer;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A fault the server applies to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status, an optional `Retry-After` header value and a provider-style
    /// error body (or the given raw body).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    /// Sleep this long, then answer normally (use it to exceed a client's timeout).
    Delay(Duration),
    /// Read the request, then close the connection without writing a response.
    DropConnection,
    /// Answer `200` with a body that is not valid JSON.
    MalformedJson,
    /// Answer normally but leave `usage` out (JSON) or never send the usage chunk (SSE).
    MissingUsage,
    /// For a streaming request: send this many content deltas, then end the stream without a
    /// finish reason or `[DONE]`. With `abort`, the connection is cut mid-body instead of the
    /// body ending cleanly.
    TruncatedStream { deltas: usize, abort: bool },
    /// Answer `200` with an OpenRouter-style in-body error `{"error": {"code", "message"}}`.
    ErrorIn200 { code: u16, message: String },
}

impl Fault {
    /// A bare status fault with the provider's error JSON.
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// A `429` that asks the client to wait (`Retry-After` value, e.g. `"1"`).
    pub fn rate_limited(retry_after: &str) -> Self {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after.to_string()),
            body: None,
        }
    }
}

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Server behaviour that is not a one-off fault.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Added before every answer (a stand-in for model latency in benchmarks), timed to a
    /// fraction of a millisecond by a timer thread (tokio's timer would add up to 2 ms).
    pub latency: Duration,
    /// When set, OpenAI-style requests must carry `Authorization: Bearer <key>` and Anthropic
    /// requests `x-api-key: <key>`; others get `401`.
    pub api_key: Option<String>,
    /// Keep no request records (benchmarks with millions of requests).
    pub no_recording: bool,
    /// Faults drawn at random for requests that find the queue empty (chaos tests).
    pub random_faults: Option<RandomFaults>,
}

/// Faults the server injects by itself: each request (when no queued fault waits) gets one of
/// `faults` with probability `rate`, drawn from `seed` and the request's number.
#[derive(Clone, Debug, Default)]
pub struct RandomFaults {
    pub rate: f64,
    pub seed: u64,
    pub faults: Vec<Fault>,
}

impl RandomFaults {
    fn draw(&self, n: u64) -> Option<Fault> {
        if self.faults.is_empty() {
            return None;
        }
        let x = splitmix64(self.seed ^ splitmix64(n));
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        (u < self.rate).then(|| {
            let i = (splitmix64(x) % self.faults.len() as u64) as usize;
            self.faults[i].clone()
        })
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the server, as a provider, bills one model: every OpenAI chat request it processed —
/// answered, or answered in a way the client could not use (garbled, cut, late, without
/// usage, connection dropped) — but not error statuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bill {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

struct State {
    options: ServerOptions,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    catalog: Mutex<Value>,
    bills: Mutex<std::collections::BTreeMap<String, Bill>>,
    /// Times `options.latency` (only when it is set).
    timer: Option<PreciseTimer>,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> InFlight<'a> {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not poison the server for the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running server; it stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server with default options on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<TestServer> {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server with the given options on a free port of 127.0.0.1.
    pub async fn start_with(options: ServerOptions) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let timer = if options.latency.is_zero() {
            None
        } else {
            PreciseTimer::start()
        };
        let state = Arc::new(State {
            options,
            timer,
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            catalog: Mutex::new(default_catalog()),
            bills: Mutex::new(Default::default()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    // Errors here are the faults we inject (dropped connections) or clients
                    // going away; neither concerns the server.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(TestServer { addr, state, task })
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: the base URL an OpenAI-compatible client is given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A hieramas pool file (TOML) with two OpenAI-compatible models served here: `m1` at
    /// $1/$2 and `m2` at $3/$4 per million input/output tokens.
    pub fn pool_toml(&self) -> String {
        let model = |id: &str, input: u32, output: u32| {
            format!(
                "\n[[models]]\nid = \"{id}\"\nprovider = \"openai-compatible\"\nmodel = \"{id}\"\nbase_url = \"{}\"\ninput_per_mtok = {input}\noutput_per_mtok = {output}\n",
                self.base_url()
            )
        };
        format!(
            "[pool]\nname = \"loopback\"\n{}{}",
            model("m1", 1, 2),
            model("m2", 3, 4)
        )
    }

    /// `http://127.0.0.1:PORT/api/v1`: OpenRouter's layout (chat under it, and `/models`).
    pub fn openrouter_base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Queues a fault; the next request that arrives takes it.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.state.faults).push_back(fault);
    }

    /// Queues several faults, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Faults queued and not yet taken.
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.faults).len()
    }

    /// Number of HTTP requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same moment (a request counts from
    /// when its body has been read until its answer's headers are sent).
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request received so far (empty with `no_recording`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// What the server billed so far, per `model` name (see [`Bill`]).
    pub fn bills(&self) -> std::collections::BTreeMap<String, Bill> {
        lock(&self.state.bills).clone()
    }

    /// Replaces the body served at `GET /api/v1/models`.
    pub fn set_models_catalog(&self, catalog: Value) {
        *lock(&self.state.catalog) = catalog;
    }
}

fn default_catalog() -> Value {
    json!({"data": [
        {"id": "qwen/qwen3-8b", "pricing": {"prompt": "0.00000005", "completion": "0.0000004"}},
        {"id": "openai/gpt-4o-mini", "pricing": {"prompt": "0.00000015", "completion": "0.0000006"}},
    ]})
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn json_resp(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

fn openai_error(status: StatusCode, message: &str) -> Response<Body> {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    json_resp(
        status,
        &json!({"error": {"message": message, "type": kind, "code": status.as_u16()}}),
    )
}

fn anthropic_error(status: StatusCode, message: &str) -> Response<Body> {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    json_resp(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    OpenAiChat,
    OpenAiEmbeddings,
    Anthropic,
    Catalog,
    Unknown,
}

fn route(method: &Method, path: &str) -> Api {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions" | "/api/v1/chat/completions") => Api::OpenAiChat,
        (&Method::POST, "/v1/embeddings" | "/api/v1/embeddings") => Api::OpenAiEmbeddings,
        (&Method::POST, "/v1/messages") => Api::Anthropic,
        (&Method::GET, "/api/v1/models") => Api::Catalog,
        _ => Api::Unknown,
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let raw = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let number = state.count.fetch_add(1, Ordering::SeqCst) as u64;
    let _in_flight = InFlight::enter(&state);
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body,
    };
    if !state.options.no_recording {
        lock(&state.requests).push(recorded.clone());
    }
    let fault = lock(&state.faults).pop_front().or_else(|| {
        state
            .options
            .random_faults
            .as_ref()
            .and_then(|r| r.draw(number))
    });
    match &state.timer {
        Some(timer) => timer.sleep(state.options.latency).await,
        None if !state.options.latency.is_zero() => tokio::time::sleep(state.options.latency).await,
        None => {}
    }
    let api = route(&method, &path);
    let error = |status: StatusCode, msg: &str| {
        if api == Api::Anthropic {
            anthropic_error(status, msg)
        } else {
            openai_error(status, msg)
        }
    };

    if api == Api::OpenAiChat
        && !matches!(fault, Some(Fault::Status { .. } | Fault::ErrorIn200 { .. }))
        && state
            .options
            .api_key
            .as_deref()
            .is_none_or(|key| recorded.header("authorization") == Some(&format!("Bearer {key}")))
    {
        bill(&state, &recorded.body);
    }
    let mut fault_for_answer = None;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match body {
                Some(b) => full(status, "application/json", b),
                None => error(status, &format!("injected fault: HTTP {}", status.as_u16())),
            };
            if let Some(ra) = retry_after.and_then(|s| HeaderValue::from_str(&s).ok()) {
                resp.headers_mut().insert(RETRY_AFTER, ra);
            }
            return Ok(resp);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::DropConnection) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected fault: connection dropped",
            ));
        }
        Some(Fault::MalformedJson) => {
            return Ok(full(
                StatusCode::OK,
                "application/json",
                "{\"id\": \"chatcmpl-broken\", \"choices\": [{\"message\": ",
            ));
        }
        Some(Fault::ErrorIn200 { code, message }) => {
            return Ok(json_resp(
                StatusCode::OK,
                &json!({"error": {"code": code, "message": message}}),
            ));
        }
        Some(f @ (Fault::MissingUsage | Fault::TruncatedStream { .. })) => {
            fault_for_answer = Some(f)
        }
        None => {}
    }

    let key = state.options.api_key.as_deref();
    Ok(match api {
        Api::OpenAiChat | Api::OpenAiEmbeddings => {
            if let Some(key) = key
                && recorded.header("authorization") != Some(&format!("Bearer {key}"))
            {
                return Ok(openai_error(
                    StatusCode::UNAUTHORIZED,
                    "Incorrect API key provided",
                ));
            }
            if api == Api::OpenAiChat {
                openai_chat(&recorded.body, fault_for_answer)
            } else {
                openai_embeddings(&recorded.body)
            }
        }
        Api::Anthropic => {
            if let Some(key) = key
                && recorded.header("x-api-key") != Some(key)
            {
                return Ok(anthropic_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid x-api-key",
                ));
            }
            if recorded.header("anthropic-version").is_none() {
                return Ok(anthropic_error(
                    StatusCode::BAD_REQUEST,
                    "anthropic-version: header is required",
                ));
            }
            anthropic_messages(&recorded.body, fault_for_answer)
        }
        Api::Catalog => json_resp(StatusCode::OK, &lock(&state.catalog)),
        Api::Unknown => openai_error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        ),
    })
}

/// Bills a well-formed OpenAI chat request for the answer the server computes for it.
fn bill(state: &State, body: &Value) {
    let (Some(model), Some(messages)) = (body["model"].as_str(), body["messages"].as_array())
    else {
        return;
    };
    let reply = echo_reply(
        messages,
        body["max_tokens"].as_u64(),
        &stop_list(&body["stop"]),
        None,
    );
    let mut bills = lock(&state.bills);
    let b = bills.entry(model.to_string()).or_default();
    b.requests += 1;
    b.prompt_tokens += reply.prompt_tokens;
    b.completion_tokens += reply.completion_tokens;
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The deterministic model behind the server: echo the last user message, honouring
/// `max_tokens` (counted in words) and `stop` strings.
struct Reply {
    text: String,
    finish: &'static str,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn echo_reply(
    messages: &[Value],
    max_tokens: Option<u64>,
    stop: &[String],
    system: Option<&str>,
) -> Reply {
    let mut prompt_tokens = system.map(|s| words(s) + 4).unwrap_or(0);
    let mut last_user = "";
    for m in messages {
        let content = m["content"].as_str().unwrap_or("");
        prompt_tokens += words(content) + 4;
        if m["role"] == "user" {
            last_user = content;
        }
    }
    let mut text = format!("echo: {last_user}");
    let mut finish = "stop";
    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    if let Some(max) = max_tokens {
        let ws: Vec<&str> = text.split_whitespace().collect();
        if ws.len() as u64 > max {
            text = ws[..max as usize].join(" ");
            finish = "length";
        }
    }
    let completion_tokens = words(&text);
    Reply {
        text,
        finish,
        prompt_tokens,
        completion_tokens,
    }
}

fn stop_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

fn openai_chat(body: &Value, fault: Option<Fault>) -> Response<Body> {
    let Some(model) = body["model"].as_str() else {
        return openai_error(StatusCode::BAD_REQUEST, "'model' is a required property");
    };
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "'messages' must be a non-empty array",
        );
    };
    if messages.iter().any(|m| {
        !matches!(m["role"].as_str(), Some("system" | "user" | "assistant"))
            || !m["content"].is_string()
    }) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "each message needs a role and a string content",
        );
    }
    let reply = echo_reply(
        messages,
        body["max_tokens"].as_u64(),
        &stop_list(&body["stop"]),
        None,
    );
    let usage = json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    });
    let missing_usage = fault == Some(Fault::MissingUsage);
    if body["stream"] == true {
        let include_usage = body["stream_options"]["include_usage"] == true && !missing_usage;
        let truncate = match fault {
            Some(Fault::TruncatedStream { deltas, abort }) => Some((deltas, abort)),
            _ => None,
        };
        return openai_stream(model, &reply, include_usage.then_some(usage), truncate);
    }
    let mut v = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": reply.finish,
        }],
    });
    if !missing_usage {
        v["usage"] = usage;
    }
    json_resp(StatusCode::OK, &v)
}

fn openai_stream(
    model: &str,
    reply: &Reply,
    usage: Option<Value>,
    truncate: Option<(usize, bool)>,
) -> Response<Body> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<String> =
        vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string()];
    let pieces: Vec<String> = split_keep_spaces(&reply.text);
    let limit = truncate.map(|(n, _)| n).unwrap_or(usize::MAX);
    for p in pieces.iter().take(limit) {
        events.push(chunk(json!({"content": p}), Value::Null).to_string());
    }
    let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = Vec::new();
    let mut push_event = |data: &str| {
        // Split every event across two frames so clients must reassemble lines.
        let text = format!("data: {data}\n\n");
        let mid = text.len() / 2;
        let bytes = Bytes::from(text);
        frames.push(Ok(Frame::data(bytes.slice(..mid))));
        frames.push(Ok(Frame::data(bytes.slice(mid..))));
    };
    for e in &events {
        push_event(e);
    }
    let mut abort_after_flush = false;
    match truncate {
        Some((_, abort)) => abort_after_flush = abort,
        None => {
            push_event(&chunk(json!({}), json!(reply.finish)).to_string());
            if let Some(u) = usage {
                push_event(
                    &json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
                            "model": model, "choices": [], "usage": u})
                    .to_string(),
                );
            }
            push_event("[DONE]");
        }
    }
    use futures_util::StreamExt;
    let mut stream = futures_util::stream::iter(frames).boxed();
    if abort_after_flush {
        // Let the deltas reach the client, then cut the connection mid-body.
        stream = stream
            .chain(futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected fault: stream cut",
                ))
            }))
            .boxed();
    }
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

/// Splits text into word pieces whose concatenation is the text ("a b" -> ["a", " b"]).
fn split_keep_spaces(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        if ch.is_whitespace() && !cur.trim().is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn openai_embeddings(body: &Value) -> Response<Body> {
    let Some(model) = body["model"].as_str() else {
        return openai_error(StatusCode::BAD_REQUEST, "'model' is a required property");
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "'input' must be a string or an array of strings",
            );
        }
    };
    let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    // Answer in reverse order: the wire format says clients must sort by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(s)}))
        .collect();
    json_resp(
        StatusCode::OK,
        &json!({"object": "list", "model": model, "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// A deterministic 8-dimensional vector derived from the text (FNV-1a per dimension).
pub fn fake_embedding(s: &str) -> Vec<f32> {
    (0..8u64)
        .map(|d| {
            let mut h: u64 = 0xcbf29ce484222325 ^ d;
            for b in s.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
            ((h % 2001) as f32 / 1000.0) - 1.0
        })
        .collect()
}

fn anthropic_messages(body: &Value, fault: Option<Fault>) -> Response<Body> {
    let Some(model) = body["model"].as_str() else {
        return anthropic_error(StatusCode::BAD_REQUEST, "model: Field required");
    };
    let Some(max_tokens) = body["max_tokens"].as_u64() else {
        return anthropic_error(StatusCode::BAD_REQUEST, "max_tokens: Field required");
    };
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "messages: at least one message is required",
        );
    };
    if messages
        .iter()
        .any(|m| !matches!(m["role"].as_str(), Some("user" | "assistant")))
    {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "messages: roles must be 'user' or 'assistant' (system goes in the top-level 'system')",
        );
    }
    if messages[0]["role"] != "user" {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "messages: first message must use the user role",
        );
    }
    let reply = echo_reply(
        messages,
        Some(max_tokens),
        &stop_list(&body["stop_sequences"]),
        body["system"].as_str(),
    );
    let mut v = json!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": if reply.finish == "length" { "max_tokens" } else { "end_turn" },
        "stop_sequence": null,
    });
    if fault != Some(Fault::MissingUsage) {
        v["usage"] =
            json!({"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens});
    }
    json_resp(StatusCode::OK, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_text() {
        let s = "echo:  a b\tc ";
        assert_eq!(split_keep_spaces(s).concat(), s);
        assert_eq!(split_keep_spaces("a b"), vec!["a", " b"]);
    }

    #[test]
    fn echo_honours_stop_and_max_tokens() {
        let msgs = vec![json!({"role": "user", "content": "one two three four"})];
        let r = echo_reply(&msgs, Some(2), &[], None);
        assert_eq!((r.text.as_str(), r.finish), ("echo: one", "length"));
        let r = echo_reply(&msgs, None, &["three".into()], None);
        assert_eq!((r.text.as_str(), r.finish), ("echo: one two ", "stop"));
        assert_eq!(r.prompt_tokens, 8);
    }
}
