//! The HTTP clients against a real server on 127.0.0.1 that injects faults on demand.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hieramas_llm::budget::{ledger_summary, worst_case_cost};
use hieramas_llm::{
    AnthropicClient, ApiKey, Budget, Budgeted, ChatModel, ChatRequest, Embedder, Endpoint,
    FinishReason, LlmError, Message, OpenAiClient, Price, RetryPolicy, Usd, http_client,
};
use hieramas_testkit::{Fault, ServerOptions, TestServer};

const KEY: &str = "sk-test-123";

fn price() -> Price {
    Price::per_million("0.15", "0.60").unwrap()
}

/// Quick retries so tests do not sleep: 4 attempts, back-off ≤ 20 ms.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(30),
    }
}

async fn server() -> TestServer {
    TestServer::start_with(ServerOptions {
        api_key: Some(KEY.into()),
        ..ServerOptions::default()
    })
    .await
    .unwrap()
}

fn endpoint(s: &TestServer) -> Endpoint {
    Endpoint {
        api_key: Some(ApiKey::new(KEY)),
        timeout: Duration::from_secs(5),
        retry: fast_retry(),
        ..Endpoint::new("mini", "openai/gpt-4o-mini", s.base_url(), price())
    }
}

fn client(s: &TestServer) -> OpenAiClient {
    OpenAiClient::new(endpoint(s), http_client().unwrap())
}

fn req() -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("be brief"),
        Message::user("what is seven times eight"),
    ])
    .temperature(0.2)
    .top_p(0.9)
    .max_tokens(100)
    .seed(7)
}

/// Every failure names the model it was for, in the value and in the message.
fn assert_names_model(e: &LlmError) {
    assert_eq!(e.model(), Some("mini"), "{e:?}");
    assert!(e.to_string().starts_with("mini:"), "{e}");
}

#[tokio::test]
async fn success_sends_the_openai_wire_format_and_prices_usage() {
    let s = server().await;
    let r = client(&s).chat(&req().stop("END")).await.unwrap();
    assert_eq!(r.text, "echo: what is seven times eight");
    assert_eq!(r.finish_reason, FinishReason::Stop);
    // The server counts words: (2 + 4) + (5 + 4) prompt, 6 completion.
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (15, 6));
    assert_eq!(r.cost, price().cost(r.usage));
    assert_eq!(r.cost, Usd::parse("0.00000585").unwrap()); // 15×0.15e-6 + 6×0.6e-6
    assert_eq!(
        (r.model.as_str(), r.provider_model.as_str()),
        ("mini", "openai/gpt-4o-mini")
    );
    assert_eq!(r.attempts, 1);
    let sent = &s.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test-123"));
    let b = &sent.body;
    assert_eq!(b["model"], "openai/gpt-4o-mini");
    assert_eq!(
        b["messages"][0],
        serde_json::json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(b["max_tokens"], 100);
    assert_eq!(b["seed"], 7);
    assert_eq!(b["stop"], serde_json::json!(["END"]));
    assert!((b["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!(b.get("stream").is_none());
}

#[tokio::test]
async fn provider_parameters_go_out_verbatim_and_a_call_overrides_the_pool() {
    let s = server().await;
    let mut ep = endpoint(&s);
    ep.params.insert("top_k".into(), serde_json::json!(40));
    ep.params.insert(
        "provider".into(),
        serde_json::json!({"order": ["groq"], "allow_fallbacks": false}),
    );
    // The keys the client owns are never replaced.
    ep.params.insert("model".into(), serde_json::json!("evil"));
    let c = OpenAiClient::new(ep, http_client().unwrap());
    let q = req()
        .extra("reasoning_effort", serde_json::json!("low"))
        .extra("top_k", serde_json::json!(5));
    c.chat(&q).await.unwrap();
    let b = &s.requests()[0].body;
    assert_eq!(b["model"], "openai/gpt-4o-mini");
    assert_eq!(b["reasoning_effort"], "low");
    assert_eq!(b["top_k"], 5, "the call's value wins over the pool's");
    assert_eq!(
        b["provider"],
        serde_json::json!({"order": ["groq"], "allow_fallbacks": false})
    );
}

#[tokio::test]
async fn max_tokens_reports_length() {
    let s = server().await;
    let r = client(&s)
        .chat(&ChatRequest::user("a b c d e").max_tokens(3))
        .await
        .unwrap();
    assert_eq!(r.text, "echo: a b");
    assert_eq!(r.finish_reason, FinishReason::Length);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let s = server().await;
    s.push_fault(Fault::rate_limited("1"));
    let t = Instant::now();
    let r = client(&s).chat(&req()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 not honoured: {:?}",
        t.elapsed()
    );
    assert_eq!(r.attempts, 2);
    assert_eq!(s.request_count(), 2);
    assert!(
        r.latency >= Duration::from_secs(1),
        "latency includes the wait"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let s = server().await;
    s.push_faults([Fault::status(500), Fault::status(503), Fault::status(502)]);
    let r = client(&s).chat(&req()).await.unwrap();
    assert_eq!(r.attempts, 4);
    assert_eq!(s.request_count(), 4);
}

#[tokio::test]
async fn persistent_failure_stops_at_the_attempt_limit() {
    let s = server().await;
    s.push_faults(std::iter::repeat_n(Fault::status(503), 10));
    let e = client(&s).chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    match &e {
        LlmError::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 4);
            assert!(
                matches!(**last, LlmError::Http { status: 503, .. }),
                "{last:?}"
            );
        }
        other => panic!("want RetriesExhausted, got {other:?}"),
    }
    assert!(e.to_string().contains("injected fault: HTTP 503"), "{e}");
    assert_eq!(s.request_count(), 4);
}

#[tokio::test]
async fn total_time_bound_stops_retries_early() {
    let s = server().await;
    s.push_faults(std::iter::repeat_n(Fault::rate_limited("5"), 3));
    let ep = Endpoint {
        retry: RetryPolicy {
            max_elapsed: Duration::from_secs(2),
            ..fast_retry()
        },
        ..endpoint(&s)
    };
    let t = Instant::now();
    let e = OpenAiClient::new(ep, http_client().unwrap())
        .chat(&req())
        .await
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "should give up instead of waiting 5 s"
    );
    assert!(
        matches!(e, LlmError::RetriesExhausted { attempts: 1, .. }),
        "{e:?}"
    );
    assert_eq!(s.request_count(), 1);
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_providers_message() {
    for status in [400u16, 401, 403, 404, 422] {
        let s = server().await;
        s.push_fault(Fault::Status {
            status,
            retry_after: None,
            body: Some(format!(
                r#"{{"error": {{"message": "provider says {status}", "type": "x"}}}}"#
            )),
        });
        let e = client(&s).chat(&req()).await.unwrap_err();
        assert_names_model(&e);
        assert!(
            matches!(e, LlmError::Http { status: got, .. } if got == status),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&format!("provider says {status}")),
            "{e}"
        );
        assert_eq!(s.request_count(), 1, "HTTP {status} must not be retried");
    }
}

#[tokio::test]
async fn wrong_key_is_a_401_from_the_server() {
    let s = server().await;
    let ep = Endpoint {
        api_key: Some(ApiKey::new("wrong")),
        ..endpoint(&s)
    };
    let e = OpenAiClient::new(ep, http_client().unwrap())
        .chat(&req())
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Http { status: 401, .. }), "{e:?}");
    assert!(e.to_string().contains("Incorrect API key"), "{e}");
}

#[tokio::test]
async fn a_request_the_server_rejects_is_a_400() {
    let s = server().await;
    let e = client(&s)
        .chat(&ChatRequest::new(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Http { status: 400, .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("'messages' must be a non-empty array"),
        "{e}"
    );
    assert_eq!(s.request_count(), 1);
}

#[tokio::test]
async fn slow_answer_times_out_and_is_retried() {
    let s = server().await;
    s.push_fault(Fault::Delay(Duration::from_secs(3)));
    let ep = Endpoint {
        timeout: Duration::from_millis(300),
        ..endpoint(&s)
    };
    let c = OpenAiClient::new(ep, http_client().unwrap());
    let t = Instant::now();
    let r = c.chat(&req()).await.unwrap();
    assert_eq!(r.attempts, 2);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "did not wait out the slow answer"
    );

    s.push_faults(std::iter::repeat_n(Fault::Delay(Duration::from_secs(3)), 4));
    let e = c.chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    assert!(matches!(e.root(), LlmError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("request timeout"), "{e}");
}

#[tokio::test]
async fn dropped_connection_is_retried() {
    let s = server().await;
    s.push_faults([Fault::DropConnection, Fault::DropConnection]);
    let r = client(&s).chat(&req()).await.unwrap();
    assert_eq!(r.attempts, 3);

    s.push_faults(std::iter::repeat_n(Fault::DropConnection, 4));
    let e = client(&s).chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    assert!(matches!(e.root(), LlmError::Connection { .. }), "{e:?}");
}

#[tokio::test]
async fn malformed_json_is_retried_then_reported() {
    let s = server().await;
    s.push_fault(Fault::MalformedJson);
    assert_eq!(client(&s).chat(&req()).await.unwrap().attempts, 2);

    s.push_faults(std::iter::repeat_n(Fault::MalformedJson, 4));
    let e = client(&s).chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    match e.root() {
        LlmError::Malformed { excerpt, .. } => assert!(excerpt.contains("chatcmpl-broken")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_usage_is_an_error_not_a_free_call() {
    let s = server().await;
    s.push_fault(Fault::MissingUsage);
    let e = client(&s).chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    assert!(matches!(e, LlmError::MissingUsage { .. }), "{e:?}");
    assert!(e.to_string().contains("cost cannot be computed"), "{e}");
    assert_eq!(s.request_count(), 1);
}

#[tokio::test]
async fn in_body_errors_follow_their_code() {
    let s = server().await;
    s.push_fault(Fault::ErrorIn200 {
        code: 429,
        message: "upstream rate limited".into(),
    });
    assert_eq!(client(&s).chat(&req()).await.unwrap().attempts, 2);
    s.push_fault(Fault::ErrorIn200 {
        code: 400,
        message: "context too long".into(),
    });
    let e = client(&s).chat(&req()).await.unwrap_err();
    assert!(
        matches!(e, LlmError::Http { status: 400, .. })
            && e.to_string().contains("context too long"),
        "{e}"
    );
}

#[tokio::test]
async fn streaming_gives_the_same_answer_and_deltas() {
    let s = server().await;
    let plain = client(&s).chat(&req()).await.unwrap();
    let streaming = client(&s).with_streaming(true);
    let via_trait = streaming.chat(&req()).await.unwrap();
    let mut deltas = Vec::new();
    let via_cb = streaming
        .chat_streaming(&req(), &mut |d| deltas.push(d.to_string()))
        .await
        .unwrap();
    for r in [&via_trait, &via_cb] {
        assert_eq!(r.text, plain.text);
        assert_eq!(r.usage, plain.usage);
        assert_eq!(r.cost, plain.cost);
        assert_eq!(r.finish_reason, FinishReason::Stop);
    }
    assert!(deltas.len() > 3, "streamed in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), plain.text);
    let sent = &s.requests()[1].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn truncated_stream_is_retried_when_nothing_was_delivered() {
    let s = server().await;
    let c = client(&s).with_streaming(true);
    s.push_fault(Fault::TruncatedStream {
        deltas: 2,
        abort: false,
    });
    let r = c.chat(&req()).await.unwrap();
    assert_eq!(
        (r.attempts, r.text.as_str()),
        (2, "echo: what is seven times eight")
    );

    s.push_fault(Fault::TruncatedStream {
        deltas: 2,
        abort: true,
    });
    assert_eq!(c.chat(&req()).await.unwrap().attempts, 2);

    s.push_faults(std::iter::repeat_n(
        Fault::TruncatedStream {
            deltas: 1,
            abort: false,
        },
        4,
    ));
    let e = c.chat(&req()).await.unwrap_err();
    assert_names_model(&e);
    assert!(
        matches!(
            e.root(),
            LlmError::TruncatedStream {
                delivered: false,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn truncated_stream_after_delivery_is_not_retried() {
    let s = server().await;
    let c = client(&s).with_streaming(true);
    s.push_fault(Fault::TruncatedStream {
        deltas: 2,
        abort: false,
    });
    let mut seen = String::new();
    let e = c
        .chat_streaming(&req(), &mut |d| seen.push_str(d))
        .await
        .unwrap_err();
    assert_names_model(&e);
    assert!(
        matches!(
            e,
            LlmError::TruncatedStream {
                delivered: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(seen, "echo: what");
    assert_eq!(s.request_count(), 1);

    s.push_fault(Fault::TruncatedStream {
        deltas: 3,
        abort: true,
    });
    let e = c.chat_streaming(&req(), &mut |_| {}).await.unwrap_err();
    assert!(
        matches!(
            e,
            LlmError::TruncatedStream {
                delivered: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("connection broke"), "{e}");
}

#[tokio::test]
async fn streaming_without_usage_is_an_error() {
    let s = server().await;
    s.push_fault(Fault::MissingUsage);
    let e = client(&s)
        .with_streaming(true)
        .chat(&req())
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::MissingUsage { .. }), "{e:?}");
}

#[tokio::test]
async fn concurrency_is_capped_per_model() {
    let s = TestServer::start_with(ServerOptions {
        latency: Duration::from_millis(50),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let ep = Endpoint {
        max_concurrency: 3,
        ..endpoint(&s)
    };
    let c = Arc::new(OpenAiClient::new(ep, http_client().unwrap()));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.chat(&ChatRequest::user(format!("q{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.request_count(), 12);
    assert_eq!(
        s.max_in_flight(),
        3,
        "exactly the cap: no more, and the cap was used"
    );
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_with_cost() {
    let s = server().await;
    let texts: Vec<String> = ["alpha beta", "gamma", "delta epsilon zeta"]
        .map(String::from)
        .to_vec();
    let e = client(&s).embed(&texts).await.unwrap();
    assert_eq!(e.vectors.len(), 3);
    for (t, v) in texts.iter().zip(&e.vectors) {
        assert_eq!(v, &hieramas_testkit::fake_embedding(t));
    }
    assert_eq!(e.usage.prompt_tokens, 6);
    assert_eq!(e.cost, price().cost(e.usage));
    assert_eq!(s.requests()[0].path, "/v1/embeddings");
}

fn anthropic(s: &TestServer) -> AnthropicClient {
    let ep = Endpoint {
        api_key: Some(ApiKey::new(KEY)),
        retry: fast_retry(),
        ..Endpoint::new(
            "claude",
            "claude-haiku-4-5",
            s.base_url(),
            Price::per_million("1", "5").unwrap(),
        )
    };
    AnthropicClient::new(ep, http_client().unwrap())
}

#[tokio::test]
async fn anthropic_wire_format_and_usage_mapping() {
    let s = server().await;
    let r = ChatRequest::new(vec![
        Message::system("sys one"),
        Message::user("first"),
        Message::user("second part"),
        Message::system("sys two"),
    ])
    .stop("STOP")
    .seed(3);
    let resp = anthropic(&s).chat(&r).await.unwrap();
    assert_eq!(resp.text, "echo: first\n\nsecond part");
    assert_eq!(resp.finish_reason, FinishReason::Stop);
    let sent = &s.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("authorization"),
        None,
        "Anthropic takes the key in x-api-key only"
    );
    let b = &sent.body;
    assert_eq!(b["system"], "sys one\n\nsys two");
    assert_eq!(
        b["messages"].as_array().unwrap().len(),
        1,
        "consecutive user turns merged"
    );
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["stop_sequences"], serde_json::json!(["STOP"]));
    assert!(b.get("seed").is_none());
    // input: "sys one sys two" 4 words + 4, "first\n\nsecond part" 3 words + 4 = 15
    assert_eq!(
        (resp.usage.prompt_tokens, resp.usage.completion_tokens),
        (15, 4)
    );
    assert_eq!(resp.cost, Usd::parse("0.000035").unwrap());
}

#[tokio::test]
async fn anthropic_retries_overload_and_fails_fast_on_auth() {
    let s = server().await;
    s.push_fault(Fault::status(529));
    let r = anthropic(&s)
        .chat(&ChatRequest::user("hi").max_tokens(1))
        .await
        .unwrap();
    assert_eq!(
        (r.attempts, r.finish_reason.clone()),
        (2, FinishReason::Length)
    );

    s.push_fault(Fault::status(401));
    let e = anthropic(&s)
        .chat(&ChatRequest::user("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.model(), Some("claude"));
    assert!(
        matches!(e, LlmError::Http { status: 401, .. }) && e.to_string().contains("injected fault"),
        "{e}"
    );

    s.push_fault(Fault::MissingUsage);
    let e = anthropic(&s)
        .chat(&ChatRequest::user("hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::MissingUsage { .. }), "{e:?}");

    let e = anthropic(&s)
        .chat(&ChatRequest::new(vec![Message::assistant("x")]))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::InvalidRequest { .. }), "{e:?}");
}

#[tokio::test]
async fn budget_refuses_before_calling_and_never_passes_the_cap() {
    let s = server().await;
    // Worst case of `req()`: (8+16)+(25+16)=65 prompt + 100 completion tokens = $0.00006975.
    // After the first call ($0.00000585) a second worst case no longer fits under $0.00007.
    let budget = Budget::new(Usd::parse("0.00007").unwrap());
    let m = Budgeted::new(client(&s), budget.clone());
    let first = m.chat(&req()).await.unwrap();
    assert_eq!(budget.spent(), first.cost);
    assert_eq!(budget.reserved(), Usd::ZERO);
    let e = m.chat(&req()).await.unwrap_err();
    assert!(matches!(e, LlmError::BudgetExceeded { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("budget of $0.00007 would be exceeded"),
        "{e}"
    );
    assert_eq!(s.request_count(), 1, "a refused call makes no request");
    // A smaller call still fits.
    m.chat(&ChatRequest::user("hi").max_tokens(5))
        .await
        .unwrap();
    assert!(budget.spent() <= budget.cap());
}

#[tokio::test]
async fn a_budgeted_call_sends_the_max_tokens_it_reserved() {
    let s = server().await;
    let budget = Budget::new(Usd::parse("1").unwrap());
    let mut m = Budgeted::new(client(&s), budget.clone());
    m.chat(&ChatRequest::user("hi")).await.unwrap();
    m.default_max_tokens = 321;
    m.chat(&ChatRequest::user("hi")).await.unwrap();
    m.chat(&ChatRequest::user("hi").max_tokens(9))
        .await
        .unwrap();
    let sent: Vec<_> = s
        .requests()
        .iter()
        .map(|r| r.body["max_tokens"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            serde_json::json!(4096),
            serde_json::json!(321),
            serde_json::json!(9)
        ]
    );
    // Unbudgeted, an unset max_tokens stays unset on the wire.
    client(&s).chat(&ChatRequest::user("hi")).await.unwrap();
    assert!(s.requests()[3].body.get("max_tokens").is_none());
}

#[tokio::test]
async fn nothing_listens_is_a_connection_error() {
    let s = server().await;
    let mut ep = endpoint(&s);
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Port just released: nothing listens (a loopback port, so no traffic leaves the machine).
    ep.retry = RetryPolicy::none();
    let e = OpenAiClient::new(ep, http_client().unwrap())
        .chat(&req())
        .await
        .unwrap_err();
    assert_names_model(&e);
    assert!(matches!(e, LlmError::Connection { .. }), "{e:?}");
}

fn budgeted_client(s: &TestServer, budget: &Arc<Budget>) -> OpenAiClient {
    OpenAiClient::new(
        Endpoint {
            budget: Some(budget.clone()),
            ..endpoint(s)
        },
        http_client().unwrap(),
    )
}

#[tokio::test]
async fn every_attempt_is_charged_and_the_ledger_counts_retries() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budget.jsonl");
    let budget = Budget::open(Usd::parse("1").unwrap(), &path).unwrap();
    let m = budgeted_client(&s, &budget);
    // Billed or not: a 503 is an error answer (free); a garbled body and a connection cut
    // after the request may have been processed (charged their worst case).
    s.push_faults([
        Fault::status(503),
        Fault::MalformedJson,
        Fault::DropConnection,
    ]);
    let r = m.chat(&req()).await.unwrap();
    assert_eq!((r.attempts, s.request_count()), (4, 4));
    let worst = worst_case_cost(price(), &req(), 4096);
    let mini = budget.summary()["mini"].clone();
    assert_eq!(
        (
            mini.calls,
            mini.attempts,
            mini.retries,
            mini.failed,
            mini.interrupted
        ),
        (1, 4, 3, 3, 0)
    );
    assert_eq!((mini.known, mini.estimated), (r.cost, worst + worst));
    assert_eq!(budget.spent(), r.cost + worst + worst);
    drop((m, budget));
    assert_eq!(ledger_summary(&path).unwrap()["mini"], mini);
}

#[tokio::test]
async fn retries_stop_at_the_cap() {
    let s = server().await;
    let worst = worst_case_cost(price(), &req(), 4096);
    // Room for two attempts' worst cases, not three.
    let budget = Budget::new(Usd::from_pico(worst.pico() * 5 / 2));
    let m = budgeted_client(&s, &budget);
    s.push_faults([
        Fault::MalformedJson,
        Fault::MalformedJson,
        Fault::MalformedJson,
    ]);
    let e = m.chat(&req()).await.unwrap_err();
    assert!(matches!(e, LlmError::BudgetExceeded { .. }), "{e:?}");
    assert_eq!(s.request_count(), 2, "the third attempt was never sent");
    assert_eq!(budget.spent(), worst + worst);
    assert!(budget.spent() <= budget.cap());
    assert_eq!(budget.summary()["mini"].retries, 1);
}

#[tokio::test]
async fn a_budgeted_endpoint_sends_the_max_tokens_it_reserved() {
    let s = server().await;
    let budget = Budget::new(Usd::parse("1").unwrap());
    let m = budgeted_client(&s, &budget);
    m.chat(&ChatRequest::user("hi")).await.unwrap();
    assert_eq!(s.requests()[0].body["max_tokens"], serde_json::json!(4096));
}
