//! Client overhead per call against the loopback test server: calls/s at concurrency 1 and
//! 256, for our `OpenAiClient` (JSON and SSE) and, as the floor, a bare reqwest POST of the
//! same body. The server answers at once, so the numbers are client + server + loopback cost.
//! Results are recorded in `benchmarks/llm-client.md`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use hieramas_llm::{ChatModel, ChatRequest, Endpoint, OpenAiClient, Price, http_client};
use hieramas_testkit::{ServerOptions, TestServer};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(TestServer::start_with(ServerOptions {
            no_recording: true,
            ..ServerOptions::default()
        }))
        .unwrap();
    let http = http_client().unwrap();
    let endpoint = Endpoint {
        max_concurrency: 512,
        ..Endpoint::new(
            "bench",
            "bench-model",
            server.base_url(),
            Price::per_million("0.15", "0.6").unwrap(),
        )
    };
    let json_client = Arc::new(OpenAiClient::new(endpoint.clone(), http.clone()));
    let sse_client = Arc::new(OpenAiClient::new(endpoint, http.clone()).with_streaming(true));
    let req = ChatRequest::user("What is 7*8? Answer with a number.")
        .temperature(0.2)
        .max_tokens(64);
    let url = format!("{}/chat/completions", server.base_url());
    let raw_body = serde_json::json!({"model": "bench-model", "messages": req.messages, "temperature": 0.2, "max_tokens": 64});

    let mut g = c.benchmark_group("llm_client");
    for conc in [1usize, 256] {
        g.throughput(Throughput::Elements(conc as u64));
        g.bench_with_input(BenchmarkId::new("reqwest_raw", conc), &conc, |b, &n| {
            b.to_async(&rt).iter(|| async {
                let calls = (0..n).map(|_| async {
                    let v: serde_json::Value = http
                        .post(&url)
                        .json(&raw_body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    black_box(v);
                });
                join_all(calls).await
            })
        });
        for (name, client) in [("openai_json", &json_client), ("openai_sse", &sse_client)] {
            g.bench_with_input(BenchmarkId::new(name, conc), &conc, |b, &n| {
                b.to_async(&rt).iter(|| async {
                    let calls =
                        (0..n).map(|_| async { black_box(client.chat(&req).await.unwrap()) });
                    join_all(calls).await
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
