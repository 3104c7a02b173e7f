//! hieramas-serve in-process on a free loopback port: a multi-agent system over a loopback
//! pool (hieramas-testkit, `echo:` answers, priced) served as `hieramas/echo`, driven over raw
//! HTTP — chat plain and streamed, usage and cost summed over every call, the trace by id —
//! and the guards: in-flight cap (429 + Retry-After), body cap (413), bearer token (401),
//! Host check (403); embeddings as floats and as OpenAI's base64.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hieramas::models::Models;
use hieramas::system::{Answer, MasConfig};
use hieramas_serve::{Limits, ServedSystem, State};
use hieramas_testkit::{ServerOptions, TestServer};
use serde_json::{Value, json};

const MODEL: &str = "hieramas/echo";

/// The model server (keep it alive) and a state serving a free-form system over it.
async fn system_state(latency_ms: u64, limits: Limits) -> (TestServer, State) {
    let backend = TestServer::start_with(ServerOptions {
        latency: Duration::from_millis(latency_ms),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let pool = hieramas_llm::Pool::from_toml(&backend.pool_toml(), "loopback").unwrap();
    let mut models = Models::new(pool, None);
    let system = hieramas::System::fixed(
        Answer::FreeForm,
        &MasConfig {
            topology: "chain".into(),
            ..MasConfig::default()
        },
        &mut models,
        0,
        0.0,
    )
    .unwrap();
    let mut state = State::new(limits);
    state.add_system(ServedSystem {
        id: MODEL.into(),
        system: Arc::new(system),
    });
    (backend, state)
}

/// Serves `state` on a free loopback port: its base URL (`http://127.0.0.1:PORT/v1`).
async fn start(state: State) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hieramas_serve::serve(
        listener,
        state,
        std::future::pending(),
    ));
    format!("http://{addr}/v1")
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn post_json(http: &reqwest::Client, url: String, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn ask(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Why is the sky blue?"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_is_an_openai_model_with_its_cost_and_trace() {
    let (backend, state) = system_state(0, Limits::default()).await;
    let base = start(state).await;
    let http = reqwest::Client::new();

    let models = get_json(&http, format!("{base}/models")).await;
    assert_eq!(models["data"][0]["id"], MODEL);
    assert_eq!(models["data"][0]["owned_by"], "hieramas");

    // Plain: the answer, usage summed over every call, the exact cost, and the trace by id.
    let r = post_json(&http, format!("{base}/chat/completions"), &ask(false)).await;
    let answer = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.starts_with("echo:"), "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let ext = &r["hieramas"];
    let calls = ext["calls"].as_u64().unwrap() as usize;
    assert_eq!(
        calls,
        3 * 3 + 1,
        "3 roles x (2 proposers + synth) + decision"
    );
    assert_eq!(backend.request_count(), calls);
    let trace: Value = http
        .get(format!(
            "{base}/traces/{}",
            ext["trace_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(trace["model"], MODEL);
    assert_eq!(trace["question"], "Why is the sky blue?");
    let tcalls = trace["reply"]["trace"]["calls"].as_array().unwrap();
    assert_eq!(tcalls.len(), calls);
    let sum = |f: &str| -> u64 { tcalls.iter().map(|c| c["usage"][f].as_u64().unwrap()).sum() };
    assert_eq!(
        r["usage"]["prompt_tokens"].as_u64().unwrap(),
        sum("prompt_tokens")
    );
    assert_eq!(
        r["usage"]["completion_tokens"].as_u64().unwrap(),
        sum("completion_tokens")
    );
    let pico: u64 = tcalls
        .iter()
        .map(|c| c["cost_pico"].as_u64().unwrap())
        .sum();
    assert!(pico > 0);
    assert_eq!(ext["cost_pico"].as_u64().unwrap(), pico);
    let missing = http
        .get(format!("{base}/traces/trace-000"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Streamed: a comment per finished node, the same answer as deltas, the finish chunk with
    // the extension, the usage chunk, [DONE].
    let text = http
        .post(format!("{base}/chat/completions"))
        .json(&ask(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let comments = text
        .lines()
        .filter(|l| l.starts_with(": hieramas node"))
        .count();
    assert_eq!(comments, 4, "3 roles + the decision node: {text}");
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, answer, "the same system, the same answer");
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"] == "stop")
        .unwrap();
    assert_eq!(
        finish["hieramas"]["calls"].as_u64().unwrap() as usize,
        calls
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], r["usage"]);

    // Concurrent requests all answer (the pool's models are shared between them).
    let many = futures_util::future::join_all((0..8).map(|_| {
        http.post(format!("{base}/chat/completions"))
            .json(&ask(false))
            .send()
    }))
    .await;
    assert!(many.iter().all(|r| r.as_ref().unwrap().status() == 200));

    // A conversation that does not end with a user message is a 400 naming `messages`.
    let bad = post_json(
        &http,
        format!("{base}/chat/completions"),
        &json!({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}),
    )
    .await;
    assert_eq!(bad["error"]["param"], "messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_refuse_what_they_should() {
    let (_backend, state) = system_state(
        300,
        Limits {
            max_in_flight: 1,
            max_body_bytes: 2000,
            api_key: Some("sk-local-test".into()),
            ..Limits::default()
        },
    )
    .await;
    let base = start(state).await;
    let http = reqwest::Client::new();
    let post = |body: Value, key: Option<&str>| {
        let mut r = http.post(format!("{base}/chat/completions")).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // No key, a wrong key: 401, OpenAI-shaped.
    for key in [None, Some("sk-wrong")] {
        let r = post(ask(false), key).await.unwrap();
        assert_eq!(r.status(), 401);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_api_key");
    }
    // A body over the cap: 413.
    let big = json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let r = post(big, Some("sk-local-test")).await.unwrap();
    assert_eq!(r.status(), 413);
    // A Host that is not the loopback server's (DNS rebinding): 403.
    let r = http
        .get(format!("{base}/models"))
        .bearer_auth("sk-local-test")
        .header("Host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // One request in flight (a system run of 4 x 300 ms): the second gets 429 + Retry-After.
    let first = tokio::spawn(post(ask(false), Some("sk-local-test")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = post(ask(false), Some("sk-local-test")).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    // Its place is free again.
    let r = http
        .get(format!("{base}/models"))
        .bearer_auth("sk-local-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_as_floats_and_as_openai_base64() {
    let backend = TestServer::start().await.unwrap();
    let spec = hieramas_llm::Pool::from_toml(&backend.pool_toml(), "p")
        .unwrap()
        .models[0]
        .clone();
    let embedder = spec
        .connect_embedder(
            &hieramas_llm::Env::default(),
            &hieramas_llm::http_client().unwrap(),
        )
        .unwrap();
    let mut state = State::new(Limits::default());
    state.embedder = Some(embedder);
    let base = start(state).await;
    let http = reqwest::Client::new();
    let get = |format: Option<&str>| {
        let mut body = json!({"model": "m1", "input": ["alpha", "beta"]});
        if let Some(f) = format {
            body["encoding_format"] = json!(f);
        }
        http.post(format!("{base}/embeddings")).json(&body).send()
    };
    let floats: Value = get(None).await.unwrap().json().await.unwrap();
    let b64: Value = get(Some("base64")).await.unwrap().json().await.unwrap();
    for i in 0..2 {
        let want: Vec<f32> = floats["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let text = b64["data"][i]["embedding"].as_str().unwrap();
        let bytes = decode_base64(text);
        let got: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, want);
        assert_eq!(want, hieramas_testkit::fake_embedding(["alpha", "beta"][i]));
    }
    let bad = get(Some("int8")).await.unwrap();
    assert_eq!(bad.status(), 400);
}

/// A plain base64 decoder (standard alphabet, padded), independent of the server's encoder.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let mut out = Vec::new();
    for quad in s.as_bytes().chunks(4) {
        let n = quad.iter().fold(0u32, |acc, &c| (acc << 6) | val(c));
        let pad = quad.iter().filter(|&&c| c == b'=').count();
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}
