//! Orchestration cost of one MAS query, and throughput against a slow loopback server.
//!
//! - `overhead`: the MATH role set (3 roles × W = 2 + decision, full topology) with a
//!   zero-latency in-process model (it answers at once, cost 0): what scheduling, prompt
//!   building and tracing cost per query. Target < 100 µs.
//! - `throughput` (printed, not timed by criterion): 1,000 queries, 256 in flight, against the
//!   loopback OpenAI-compatible test server that sleeps 50 ms per call; wall time compared with
//!   the ideal `critical path × waves`. Target ideal ÷ wall ≥ 0.95, on a warm connection pool
//!   (a first, cold pass, which also opens the client's connections, is printed before it).
//!   Printed after them: the same with an in-process model that sleeps 50 ms (the scheduler
//!   alone, without HTTP).
//!
//! Results are recorded in `benchmarks/orchestration.md`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::StreamExt;
use hieramas_llm::{ChatModel, Endpoint, OpenAiClient, Price, http_client};
use hieramas_supernode::{Members, Sampling};
use hieramas_testkit::{ServerOptions, TestServer};
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Plan, run_query};
use hieramas_topology::shapes;
use instant::{instant_model, sleeping_model};

mod instant {
    use std::sync::Arc;
    use std::time::Duration;

    use hieramas_llm::{
        ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, Price, Usage, Usd,
    };

    /// Answers every request with a fixed text, after `delay` (zero: at once) — an in-process
    /// stand-in for inference, used only to measure orchestration.
    pub struct Instant0 {
        pub delay: Duration,
    }

    #[async_trait::async_trait]
    impl ChatModel for Instant0 {
        fn id(&self) -> &str {
            "instant"
        }
        fn price(&self) -> Price {
            Price::default()
        }
        async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(ChatResponse {
                model: "instant".into(),
                provider_model: "instant".into(),
                text: "The answer is 56".into(),
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    prompt_tokens: 10,
                    completion_tokens: 4,
                },
                cost: Usd::ZERO,
                latency: Duration::ZERO,
                attempts: 1,
                cached: false,
                saved: Default::default(),
            })
        }
    }

    pub fn instant_model() -> Arc<dyn ChatModel> {
        Arc::new(Instant0 {
            delay: Duration::ZERO,
        })
    }

    pub fn sleeping_model(delay: Duration) -> Arc<dyn ChatModel> {
        Arc::new(Instant0 { delay })
    }
}

fn plan<'a>(
    t: &'a hieramas_topology::Topology,
    roles: &'a RoleSet,
    m: Arc<dyn ChatModel>,
) -> Plan<'a> {
    Plan {
        topology: t,
        roles,
        members: (0..t.len())
            .map(|_| Members::fixed(m.clone(), roles.width))
            .collect(),
        decision: m,
        sampling: Sampling::default(),
        faithful: false,
        consensus: None,
        observer: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Leaked so that queries can be spawned as tasks of their own ('static plans).
    let roles: &'static RoleSet = Box::leak(Box::new(RoleSet::builtin("math").unwrap()));
    let t: &'static hieramas_topology::Topology =
        Box::leak(Box::new(shapes::full(roles.names()).unwrap()));
    let p = plan(t, roles, instant_model());
    c.bench_function("mas_query_overhead_math_full_w2", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(run_query(&p, "What is 7*8?").await.unwrap());
        })
    });

    // Throughput against a 50 ms server.
    // The server gets a runtime (threads) of its own, as a server process would have.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loopback-server")
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt
        .block_on(TestServer::start_with(ServerOptions {
            latency: Duration::from_millis(50),
            no_recording: true,
            ..ServerOptions::default()
        }))
        .unwrap();
    let endpoint = Endpoint {
        max_concurrency: 4096,
        timeout: Duration::from_secs(60),
        ..Endpoint::new(
            "slow",
            "slow",
            server.base_url(),
            Price::per_million("1", "2").unwrap(),
        )
    };
    let m: Arc<dyn ChatModel> = Arc::new(OpenAiClient::new(endpoint, http_client().unwrap()));
    let mut p = plan(t, roles, m);
    // Answers of at most 128 words, as a model with `max_tokens = 128` gives: the echo server
    // would otherwise return whole prompts, which grow along the graph with every echoed
    // proposal — megabytes of JSON per query that no real model would send back.
    p.sampling.max_tokens = 128;
    let (queries, in_flight) = (1000usize, 256usize);
    // Full topology over 3 roles: a chain of 3 supernodes (proposers ∥, then synth) + decision.
    let critical_path = 0.050 * (3.0 * 2.0 + 1.0);
    let ideal = critical_path * queries.div_ceil(in_flight) as f64;
    // Every query is a task of its own, so the runtime spreads them over its workers (polled
    // inside one `block_on`, they would all run on the calling thread).
    let go = |p: Arc<Plan<'static>>, label: &str| {
        let cpu0 = cpu_seconds();
        let started = Instant::now();
        rt.block_on(async {
            futures_util::stream::iter(0..queries)
                .map(|i| {
                    let p = p.clone();
                    tokio::spawn(async move { run_query(&p, &format!("query {i}")).await.unwrap() })
                })
                .buffer_unordered(in_flight)
                .for_each(|_| async {})
                .await;
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "throughput ({label}): {queries} queries, {in_flight} in flight, 50 ms/call: wall {wall:.3} s, ideal {ideal:.3} s, ideal/wall {:.3}; CPU {cpu:.2} s",
            ideal / wall
        );
    };
    // The first pass opens the client's connections (up to 512: two proposers per query);
    // the second runs on a warm pool, as a long-running process does.
    let p = Arc::new(p);
    go(p.clone(), "loopback HTTP server, cold: connections opened");
    go(p, "loopback HTTP server, warm connection pool");
    // The same with an in-process model that sleeps 50 ms: the scheduler alone, no HTTP.
    let mut p = plan(t, roles, sleeping_model(Duration::from_millis(50)));
    p.sampling.max_tokens = 128;
    go(Arc::new(p), "in-process 50 ms model");
}

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

criterion_group!(benches, bench);
criterion_main!(benches);
