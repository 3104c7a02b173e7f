//! The embedding cache against a real OpenAI-compatible `/v1/embeddings` on 127.0.0.1
//! (hieramas-testkit): each text is embedded once, cached vectors come back bit-identical, and
//! only missing texts are sent.

#![allow(clippy::unwrap_used)]

use hieramas_llm::{Endpoint, OpenAiClient, Price, http_client};
use hieramas_reward::texts::EmbeddingCache;
use hieramas_testkit::{TestServer, fake_embedding};

#[tokio::test]
async fn texts_are_embedded_once_and_read_back_exactly() {
    let server = TestServer::start().await.unwrap();
    let client = OpenAiClient::new(
        Endpoint::new("gte", "gte", server.base_url(), Price::default()),
        http_client().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache {
        dir: dir.path().to_path_buf(),
    };
    let texts: Vec<String> = ["alpha", "beta gamma", "delta"].map(String::from).to_vec();
    let first = cache.embed(&client, &texts).await.unwrap();
    assert_eq!(server.request_count(), 1);
    assert_eq!(first[1], fake_embedding("beta gamma"));

    let again = cache.embed(&client, &texts).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(server.request_count(), 1, "all cached: no request");

    let mixed: Vec<String> = ["delta", "epsilon", "alpha"].map(String::from).to_vec();
    let v = cache.embed(&client, &mixed).await.unwrap();
    assert_eq!(server.request_count(), 2);
    let sent = &server.requests()[1].body["input"];
    assert_eq!(
        sent,
        &serde_json::json!(["epsilon"]),
        "only the missing text is sent"
    );
    assert_eq!(
        v,
        vec![
            first[2].clone(),
            fake_embedding("epsilon"),
            first[0].clone()
        ]
    );

    // Another embedder id never reads this one's vectors.
    let other = OpenAiClient::new(
        Endpoint::new("minilm", "minilm", server.base_url(), Price::default()),
        http_client().unwrap(),
    );
    cache.embed(&other, &texts[..1]).await.unwrap();
    assert_eq!(server.request_count(), 3);
}
