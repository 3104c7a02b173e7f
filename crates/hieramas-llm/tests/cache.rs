//! The SQLite response cache: replay without HTTP, replay-only misses, concurrent writers,
//! and durability across a crash.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hieramas_llm::{
    CacheMode, Cached, ChatModel, ChatRequest, Endpoint, LlmError, OpenAiClient, Price,
    ResponseCache, http_client,
};
use hieramas_testkit::TestServer;

fn model(s: &TestServer) -> OpenAiClient {
    let ep = Endpoint::new(
        "m",
        "m",
        s.base_url(),
        Price::per_million("1", "2").unwrap(),
    );
    OpenAiClient::new(ep, http_client().unwrap())
}

#[tokio::test]
async fn replay_serves_recorded_answers_without_http() {
    let s = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/cache.sqlite");
    let cache = Arc::new(ResponseCache::open(&path).unwrap());
    let recording = Cached::new(model(&s), cache.clone(), CacheMode::ReadWrite);
    let q = ChatRequest::user("record me").temperature(0.0);
    let live = recording.chat(&q).await.unwrap();
    assert!(!live.cached);
    assert_eq!(s.request_count(), 1);
    let again = recording.chat(&q).await.unwrap();
    assert_eq!(s.request_count(), 1, "a hit makes no HTTP call");
    assert!(again.cached);
    assert!(live.cost > hieramas_llm::Usd::ZERO);
    assert_eq!(
        (again.text.as_str(), again.usage, again.cost, again.saved),
        (live.text.as_str(), live.usage, live.cost, live.cost),
        "a hit reports the recorded cost, and saved all of it"
    );
    assert_eq!(live.saved, hieramas_llm::Usd::ZERO);

    // A fresh process would open the file again: replay-only serves it, with the server gone.
    drop((recording, cache, s));
    let cache = Arc::new(ResponseCache::open(&path).unwrap());
    let dead = TestServer::start().await.unwrap();
    let replay = Cached::new(model(&dead), cache, CacheMode::ReplayOnly);
    let r = replay.chat(&q).await.unwrap();
    assert_eq!(r.text, "echo: record me");
    assert_eq!(
        (r.cost, r.saved),
        (live.cost, live.cost),
        "replay reports the recorded cost, and that it saved it"
    );
    let miss = replay.chat(&q.clone().sample_index(1)).await.unwrap_err();
    assert!(
        matches!(miss, LlmError::CacheMiss { ref model, .. } if model == "m"),
        "{miss:?}"
    );
    assert!(miss.to_string().contains("replay-only"), "{miss}");
    assert_eq!(dead.request_count(), 0, "replay-only never calls the model");
}

#[tokio::test]
async fn off_mode_always_calls() {
    let s = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ResponseCache::open(dir.path().join("c.sqlite")).unwrap());
    let m = Cached::new(model(&s), cache.clone(), CacheMode::Off);
    m.chat(&ChatRequest::user("x")).await.unwrap();
    m.chat(&ChatRequest::user("x")).await.unwrap();
    assert_eq!(s.request_count(), 2);
    assert!(cache.is_empty().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let s = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ResponseCache::open(dir.path().join("c.sqlite")).unwrap());
    let m = Arc::new(Cached::new(model(&s), cache.clone(), CacheMode::ReadWrite));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                m.chat(&ChatRequest::user(format!("question {}", i % 100)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(cache.len().await.unwrap(), 100);
    let before = s.request_count();
    for i in 0..100 {
        let r = m
            .chat(&ChatRequest::user(format!("question {i}")))
            .await
            .unwrap();
        assert_eq!(r.text, format!("echo: question {i}"));
    }
    assert_eq!(s.request_count(), before, "all 100 served from the cache");
}

/// Child side of `crash_keeps_committed_answers`: writes answers until killed.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var("HIERAMAS_CACHE_CRASH_CHILD") else {
        return; // only runs when spawned by the test below
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = ResponseCache::open(&path).unwrap();
        for i in 0.. {
            let req = ChatRequest::user(format!("q{i}"));
            let resp = hieramas_llm::ChatResponse {
                model: "m".into(),
                provider_model: "m".into(),
                text: format!("a{i}"),
                finish_reason: hieramas_llm::FinishReason::Stop,
                usage: hieramas_llm::Usage::default(),
                cost: hieramas_llm::Usd::ZERO,
                latency: Duration::ZERO,
                attempts: 1,
                cached: false,
                saved: Default::default(),
            };
            cache
                .put(&hieramas_llm::cache::cache_key("m", &req), &req, &resp)
                .await
                .unwrap();
            // Tell the parent how many are committed: every line printed is durable.
            println!("committed {}", i + 1);
        }
    });
}

#[test]
fn crash_keeps_committed_answers() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.sqlite");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HIERAMAS_CACHE_CRASH_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut committed = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while committed < 300 {
        let line = lines.next().unwrap().unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-write
    child.wait().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = ResponseCache::open(&path).unwrap();
        let n = cache.len().await.unwrap();
        assert!(
            n >= committed,
            "{n} stored < {committed} reported committed"
        );
        for i in 0..committed {
            let key = hieramas_llm::cache::cache_key("m", &ChatRequest::user(format!("q{i}")));
            let hit = cache
                .get(&key)
                .await
                .unwrap()
                .expect("committed answer survives");
            assert_eq!(hit.text, format!("a{i}"));
        }
    });
}

#[tokio::test]
async fn the_key_covers_the_server_and_the_provider_parameters() {
    let a = TestServer::start().await.unwrap();
    let b = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ResponseCache::open(dir.path().join("c.sqlite")).unwrap());
    let pool = |s: &TestServer, params: &str| {
        hieramas_llm::Pool::from_toml(
            &format!(
                "[pool]\nname = \"p\"\n[[models]]\nid = \"m\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{}\"\ninput_per_mtok = 1\noutput_per_mtok = 2\n{params}",
                s.base_url()
            ),
            "p",
        )
        .unwrap()
    };
    let q = ChatRequest::user("same words").temperature(0.0);
    let on = |s: &TestServer, params: &str| {
        let p = pool(s, params);
        Cached::for_spec(model(s), &p.models[0], cache.clone(), CacheMode::ReadWrite)
    };
    assert!(!on(&a, "").chat(&q).await.unwrap().cached);
    assert!(on(&a, "").chat(&q).await.unwrap().cached);
    // The same pool id on another server, or with other provider parameters, is another model.
    assert!(!on(&b, "").chat(&q).await.unwrap().cached);
    let routed = "[models.params]\ntop_k = 5\n";
    assert!(!on(&a, routed).chat(&q).await.unwrap().cached);
    assert!(on(&a, routed).chat(&q).await.unwrap().cached);
    // A call's own extra parameters are part of the request, so of the key.
    let q2 = q
        .clone()
        .extra("reasoning_effort", serde_json::json!("low"));
    assert!(!on(&a, "").chat(&q2).await.unwrap().cached);
    assert_eq!((a.request_count(), b.request_count()), (3, 1));
}

#[tokio::test]
async fn a_budget_is_not_charged_for_cache_hits() {
    let s = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ResponseCache::open(dir.path().join("c.sqlite")).unwrap());
    let budget = hieramas_llm::Budget::new(hieramas_llm::Usd::parse("1").unwrap());
    let m = hieramas_llm::Budgeted::new(
        Cached::new(model(&s), cache, CacheMode::ReadWrite),
        budget.clone(),
    );
    let q = ChatRequest::user("pay once").max_tokens(8);
    let live = m.chat(&q).await.unwrap();
    assert_eq!(budget.spent(), live.cost);
    let hit = m.chat(&q).await.unwrap();
    assert!(hit.cached);
    assert_eq!(budget.spent(), live.cost, "the hit was not paid for");
}
