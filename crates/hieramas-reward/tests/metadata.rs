//! Task metadata from an LLM over real HTTP (hieramas-testkit on 127.0.0.1, which echoes the
//! last user message): a usable JSON reply is parsed, an unusable one falls back to the keyword
//! heuristic, and either result is cached per (model, task) so the model is asked (and paid)
//! once.

#![allow(clippy::unwrap_used)]

use hieramas_llm::{Endpoint, OpenAiClient, Price, Usd, http_client};
use hieramas_reward::texts::{MetaSource, MetadataCache, TaskMeta};
use hieramas_testkit::TestServer;

#[tokio::test]
async fn metadata_is_asked_once_per_task_and_falls_back_to_the_heuristic() {
    let server = TestServer::start().await.unwrap();
    let model = OpenAiClient::new(
        Endpoint::new(
            "meta",
            "meta",
            server.base_url(),
            Price::per_million("1", "2").unwrap(),
        ),
        http_client().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = MetadataCache {
        dir: dir.path().to_path_buf(),
    };
    // The echo of a task that is itself a JSON object reads as a usable reply.
    let task = r#"{"type": "Coding", "difficulty": "medium", "domain": "strings", "description": "Reverse a string.", "key_skills": ["slicing", "python"]}"#;
    let first = cache.get(&model, task).await.unwrap();
    assert_eq!(first.source, MetaSource::Llm);
    assert_eq!(first.meta.kind.as_deref(), Some("coding"));
    assert_eq!(first.meta.key_skills, vec!["slicing", "python"]);
    assert!(first.cost > Usd::ZERO, "the call is priced");
    assert_eq!(server.request_count(), 1);
    let again = cache.get(&model, task).await.unwrap();
    assert_eq!((again.meta, again.source), (first.meta, MetaSource::Cache));
    assert_eq!(again.cost, Usd::ZERO, "a cache hit costs nothing");
    assert_eq!(server.request_count(), 1, "cached: not asked again");

    // A reply without JSON: the heuristic, cached as well.
    let task = "Compute 2 + 2.";
    let fetched = cache.get(&model, task).await.unwrap();
    assert_eq!(fetched.source, MetaSource::Heuristic);
    assert_eq!(fetched.meta, TaskMeta::heuristic(task));
    assert!(
        fetched.cost > Usd::ZERO,
        "the unusable reply was still paid for"
    );
    assert_eq!(
        cache.get(&model, task).await.unwrap().source,
        MetaSource::Cache
    );
    assert_eq!(server.request_count(), 2);
}
