//! A pool file drives real HTTP calls: the shipped paper pool, pointed at a loopback server
//! laid out like OpenRouter, through the budget and cache wrappers; and the price sync.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hieramas_llm::pricing::{diff_prices, fetch_openrouter_prices, rewrite_pool_prices};
use hieramas_llm::{
    Budget, Budgeted, CacheMode, Cached, ChatModel, ChatRequest, Env, Pool, Price, ResponseCache,
    Usd, http_client,
};
use hieramas_testkit::{ServerOptions, TestServer};

#[tokio::test]
async fn paper_pool_calls_openrouter_layout_with_exact_costs() {
    let s = TestServer::start_with(ServerOptions {
        api_key: Some("or-key".into()),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let env = Env::from_pairs([
        ("OPENROUTER_API_KEY", "or-key".to_string()),
        ("OPENROUTER_BASE_URL", s.openrouter_base_url()),
    ]);
    let pool = Pool::paper();
    let http = http_client().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ResponseCache::open(dir.path().join("cache.sqlite")).unwrap());
    let budget = Budget::new(Usd::parse("0.01").unwrap());

    let mut total = Usd::ZERO;
    for id in ["gpt-4o-mini", "qwen3-8b", "gpt-5-mini"] {
        let spec = pool.require(id).unwrap();
        let model = Cached::new(
            Budgeted::new(spec.connect(&env, &http).unwrap(), budget.clone()),
            cache.clone(),
            CacheMode::ReadWrite,
        );
        let r = model
            .chat(&ChatRequest::user("two plus two").max_tokens(50))
            .await
            .unwrap();
        assert_eq!(r.model, id);
        assert_eq!(
            r.cost,
            spec.price.cost(r.usage),
            "{id}: cost from its own usage and price"
        );
        total += r.cost;
        let sent = s.requests().pop().unwrap();
        assert_eq!(sent.path, "/api/v1/chat/completions");
        assert_eq!(sent.body["model"], spec.model.as_str());
        assert_eq!(sent.header("authorization"), Some("Bearer or-key"));
        assert_eq!(sent.header("x-title"), Some("hieramas"));
        assert!(sent.header("http-referer").is_some());
        // Same call again: served by the cache, not charged to the budget again.
        let again = model
            .chat(&ChatRequest::user("two plus two").max_tokens(50))
            .await
            .unwrap();
        assert!(again.cached);
    }
    assert_eq!(s.request_count(), 3);
    assert_eq!(
        budget.spent(),
        total,
        "the budget saw exactly the three live calls"
    );
}

#[tokio::test]
async fn price_sync_reads_the_catalogue_and_rewrites_the_pool() {
    let s = TestServer::start().await.unwrap();
    s.set_models_catalog(serde_json::json!({"data": [
        {"id": "openai/gpt-4o-mini", "pricing": {"prompt": "0.0000002", "completion": "0.0000008"}},
        {"id": "qwen/qwen3-8b", "pricing": {"prompt": "0.00000005", "completion": "0.0000004"}},
    ]}));
    let catalogue = fetch_openrouter_prices(&http_client().unwrap(), &s.openrouter_base_url())
        .await
        .unwrap();
    let pool = Pool::paper();
    let changes = diff_prices(&pool, &catalogue);
    let text =
        rewrite_pool_prices(hieramas_llm::pool::PAPER_POOL_TOML, &changes, "2031-05-06").unwrap();
    let synced = Pool::from_toml(&text, "synced").unwrap();
    assert_eq!(
        synced.require("gpt-4o-mini").unwrap().price,
        Price::per_million("0.2", "0.8").unwrap()
    );
    assert_eq!(
        synced.require("qwen3-8b").unwrap().price,
        pool.require("qwen3-8b").unwrap().price
    );
    assert_eq!(
        synced.require("gpt-5-mini").unwrap().price,
        pool.require("gpt-5-mini").unwrap().price,
        "models missing from the catalogue keep their price"
    );
    assert_eq!(synced.meta.prices_date.as_deref(), Some("2031-05-06"));
    assert_eq!(s.requests()[0].path, "/api/v1/models");
}
