//! Random faults and the provider's bill.
#![allow(clippy::unwrap_used)]

use hieramas_testkit::{Bill, Fault, RandomFaults, ServerOptions, TestServer};

async fn post(s: &TestServer, model: &str, text: &str, max_tokens: u64) -> u16 {
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    });
    match reqwest::Client::new()
        .post(format!("{}/chat/completions", s.base_url()))
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn random_faults_follow_the_seed_and_the_bill_counts_processed_requests() {
    let start = |rate: f64| {
        TestServer::start_with(ServerOptions {
            random_faults: Some(RandomFaults {
                rate,
                seed: 7,
                faults: vec![Fault::status(503), Fault::MalformedJson],
            }),
            ..ServerOptions::default()
        })
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        let s = start(0.5).await.unwrap();
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(post(&s, "m", "one two three", 2).await);
        }
        let errors = statuses.iter().filter(|&&c| c == 503).count() as u64;
        assert!(errors > 0 && errors < 40, "{statuses:?}");
        // Every request but the 503s is billed: 1 message of 3 words (+4), "echo: one" cut
        // at max_tokens = 2 words.
        assert_eq!(
            s.bills()["m"],
            Bill {
                requests: 40 - errors,
                prompt_tokens: (40 - errors) * 7,
                completion_tokens: (40 - errors) * 2,
            }
        );
        seen.push(statuses);
    }
    assert_eq!(seen[0], seen[1], "the same seed gives the same faults");
    let s = start(0.0).await.unwrap();
    assert_eq!(post(&s, "m", "x", 5).await, 200);
    assert_eq!(s.bills()["m"].requests, 1);
}
