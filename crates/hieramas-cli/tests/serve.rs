//! End to end: `hieramas serve` on a free loopback port, driven by the `hieramas-llm` OpenAI
//! client (chat, streaming, embeddings, concurrent requests) and by raw HTTP for bad requests.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use hieramas_llm::{
    ChatModel, ChatRequest, Embedder, Endpoint, FinishReason, LlmError, Message, OpenAiClient,
    Price, http_client,
};
use serde_json::{Value, json};

const MODEL: &str = "local/smollm2-135m";

/// The server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Option<Server> {
    hieramas_local::model_for_tests("smollm2-135m")?;
    hieramas_local::model_for_tests("minilm-l6-v2")?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hieramas"))
        .args(["serve", "--addr", "127.0.0.1:0", "--model", MODEL])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Some(Server {
        child,
        base: format!("{addr}/v1"),
    })
}

fn client(s: &Server, model: &str) -> OpenAiClient {
    OpenAiClient::new(
        Endpoint::new(model, model, &s.base, Price::default()),
        http_client().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_speaks_the_openai_api() {
    let Some(s) = start() else { return };
    let http = reqwest::Client::new();

    // /v1/models lists the chat model and the embedder.
    let models: Value = http
        .get(format!("{}/models", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL, "local/minilm-l6-v2"]);

    // Chat, plain and streamed: the same greedy text and usage.
    let req = ChatRequest::new(vec![
        Message::system("You are a helpful assistant."),
        Message::user("What is the capital of France?"),
    ])
    .temperature(0.0)
    .max_tokens(24);
    let plain = client(&s, MODEL).chat(&req).await.unwrap();
    assert!(plain.text.contains("Paris"), "{:?}", plain.text);
    assert_eq!(plain.finish_reason, FinishReason::Stop);
    assert!(plain.usage.prompt_tokens > 10 && plain.usage.completion_tokens > 1);
    let streaming = client(&s, MODEL).with_streaming(true);
    let mut deltas = Vec::new();
    let streamed = streaming
        .chat_streaming(&req, &mut |d| deltas.push(d.to_string()))
        .await
        .unwrap();
    assert_eq!(streamed.text, plain.text);
    assert_eq!(streamed.usage, plain.usage);
    assert!(deltas.len() > 1, "text arrives in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), plain.text);

    // Concurrent requests all come back, each the same as alone.
    let questions = [
        "Name a colour.",
        "What is 2+2?",
        "Say hello.",
        "Name a fruit.",
    ];
    let greedy = |q: &str| ChatRequest::user(q).temperature(0.0).max_tokens(16);
    let mut alone = Vec::new();
    for q in questions {
        alone.push(client(&s, MODEL).chat(&greedy(q)).await.unwrap().text);
    }
    let handles: Vec<_> = questions
        .iter()
        .map(|q| {
            let (c, r) = (client(&s, MODEL), greedy(q));
            tokio::spawn(async move { c.chat(&r).await.unwrap().text })
        })
        .collect();
    for (h, a) in handles.into_iter().zip(&alone) {
        assert_eq!(&h.await.unwrap(), a);
    }

    // Embeddings through the client.
    let texts = vec![
        "a cat sat on the mat".to_string(),
        "stocks fell on Tuesday".to_string(),
    ];
    let e = client(&s, "local/minilm-l6-v2")
        .embed(&texts)
        .await
        .unwrap();
    assert_eq!(e.vectors.len(), 2);
    assert!(e.vectors.iter().all(|v| v.len() == 384));
    assert!(e.usage.prompt_tokens >= 8);

    // Bad requests: OpenAI-style errors with the right status, not retried by the client.
    let err = client(&s, MODEL)
        .chat(&ChatRequest::user("hi").temperature(5.0))
        .await
        .unwrap_err();
    match &err {
        LlmError::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("temperature"), "{message}");
        }
        other => panic!("expected a 400, got {other}"),
    }
    let post = |body: String| {
        http.post(format!("{}/chat/completions", s.base))
            .body(body)
            .send()
    };
    let r = post("{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let r = post(
        json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let r = post(json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": true, "top_p": 0}).to_string())
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a streamed request with bad parameters fails before the stream starts"
    );
    let r = http
        .post(format!("{}/embeddings", s.base))
        .body(json!({"model": "local/minilm-l6-v2", "input": [[1, 2, 3]]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(format!("{}/nope", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
