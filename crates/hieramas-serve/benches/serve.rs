//! A served system under load: a multi-agent system (free-form, the `general` role set on a
//! chain: 3 roles x (2 proposers, then a synthesiser) + the decision node = 7 calls on the
//! critical path, 10 in all) over a loopback pool whose every call takes 50 ms
//! (hieramas-testkit), served by hieramas-serve on 127.0.0.1.
//!
//! - `serve/direct_1`: one question through `System::answer_with`, in-process (no server);
//! - `serve/http_1`: the same question as one HTTP request to the server;
//! - `serve/http_64`: 64 requests at once (one iteration = all 64 answered).
//!
//! After the runs it prints `ideal / wall` for 64 concurrent requests (ideal: the critical
//! path, 7 x 50 ms — every request could run in parallel) and serve's own overhead per request
//! (the median over 31 back-to-back pairs of an HTTP answer minus a direct one). Targets:
//! ratio >= 0.9, overhead < 1 ms.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hieramas::models::Models;
use hieramas::system::{Answer, MasConfig};
use hieramas_serve::{Limits, ServedSystem, State};
use hieramas_testkit::{ServerOptions, TestServer};

const LATENCY: Duration = Duration::from_millis(50);
const CRITICAL_PATH_CALLS: u32 = 7;
const CONCURRENT: usize = 64;
const MODEL: &str = "hieramas/bench";
const PAIRS: usize = 31;

fn pool_toml(base_url: &str) -> String {
    let model = |id: &str| {
        format!(
            "\n[[models]]\nid = \"{id}\"\nprovider = \"openai-compatible\"\nmodel = \"{id}\"\nbase_url = \"{base_url}\"\ninput_per_mtok = 1\noutput_per_mtok = 2\nmax_concurrency = 4096\n"
        )
    };
    format!("[pool]\nname = \"bench\"\n{}{}", model("m1"), model("m2"))
}

/// Runs `f` `iters` times, keeping each run's wall time in `samples`; the total.
fn timed(samples: &RefCell<Vec<Duration>>, iters: u64, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        f();
        let d = t.elapsed();
        samples.borrow_mut().push(d);
        total += d;
    }
    total
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The model server gets a thread and a runtime of its own, as a real provider would be
    // another process: its work does not queue behind the system's on the same workers.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        rt.block_on(async {
            let backend = TestServer::start_with(ServerOptions {
                latency: LATENCY,
                no_recording: true,
                ..ServerOptions::default()
            })
            .await
            .expect("loopback model server");
            tx.send(backend.base_url()).expect("send");
            std::future::pending::<()>().await;
            drop(backend);
        });
    });
    let backend_url = rx.recv().expect("backend url");
    let pool =
        hieramas_llm::Pool::from_toml(&pool_toml(&backend_url), "bench").expect("bench pool");
    let mut models = Models::new(pool, None);
    let system = Arc::new(
        hieramas::System::fixed(
            Answer::FreeForm,
            &MasConfig {
                topology: "chain".into(),
                ..MasConfig::default()
            },
            &mut models,
            0,
            0.0,
        )
        .expect("system"),
    );
    let mut state = State::new(Limits::default());
    state.add_system(ServedSystem {
        id: MODEL.into(),
        system: system.clone(),
    });
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(hieramas_serve::serve(
            listener,
            state,
            std::future::pending(),
        ));
        format!("http://{addr}/v1/chat/completions")
    });
    let http = reqwest::Client::new();
    let body = serde_json::json!({"model": MODEL,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
    let ask = || {
        let (http, base, body) = (http.clone(), base.clone(), body.clone());
        async move {
            let r = http.post(&base).json(&body).send().await.expect("request");
            assert_eq!(r.status(), 200);
            r.bytes().await.expect("body");
        }
    };
    // Warm the connections.
    rt.block_on(async {
        futures_util::future::join_all((0..CONCURRENT).map(|_| ask())).await;
    });

    let direct = RefCell::new(Vec::new());
    let one = RefCell::new(Vec::new());
    let many = RefCell::new(Vec::new());
    let mut g = c.benchmark_group("serve");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("direct_1", |b| {
        b.iter_custom(|iters| {
            timed(&direct, iters, || {
                rt.block_on(system.answer_with("Why is the sky blue?", None))
                    .expect("answer");
            })
        })
    });
    g.bench_function("http_1", |b| {
        b.iter_custom(|iters| {
            timed(&one, iters, || {
                rt.block_on(ask());
            })
        })
    });
    let direct_many = RefCell::new(Vec::new());
    g.bench_function("direct_64", |b| {
        b.iter_custom(|iters| {
            timed(&direct_many, iters, || {
                rt.block_on(futures_util::future::join_all(
                    (0..CONCURRENT).map(|_| system.answer_with("Why is the sky blue?", None)),
                ));
            })
        })
    });
    g.bench_function("http_64", |b| {
        b.iter_custom(|iters| {
            timed(&many, iters, || {
                rt.block_on(futures_util::future::join_all(
                    (0..CONCURRENT).map(|_| ask()),
                ));
            })
        })
    });
    g.finish();

    // Serve's overhead, paired: a direct answer and an HTTP one back to back, the order
    // alternating, so that drift of the machine or the model server between the criterion
    // runs above does not enter the difference.
    let mut diffs: Vec<f64> = Vec::with_capacity(PAIRS);
    for i in 0..PAIRS {
        let direct_once = || {
            let t = Instant::now();
            rt.block_on(system.answer_with("Why is the sky blue?", None))
                .expect("answer");
            t.elapsed().as_secs_f64()
        };
        let http_once = || {
            let t = Instant::now();
            rt.block_on(ask());
            t.elapsed().as_secs_f64()
        };
        let (d, h) = if i % 2 == 0 {
            let d = direct_once();
            (d, http_once())
        } else {
            let h = http_once();
            (direct_once(), h)
        };
        diffs.push(h - d);
    }
    diffs.sort_by(f64::total_cmp);
    let overhead = diffs[PAIRS / 2];

    let ideal = LATENCY * CRITICAL_PATH_CALLS;
    let wall = median(&many.borrow());
    let (d, h) = (median(&direct.borrow()), median(&one.borrow()));
    let ratio = ideal.as_secs_f64() / wall.as_secs_f64();
    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!(
        "serve summary: {CONCURRENT} concurrent requests: ideal {:.1} ms / wall {:.1} ms = {ratio:.3} (target >= 0.9: {}; without serve {:.1} ms); \
         one request: direct {:.2} ms, through serve {:.2} ms (medians of the runs above); serve's overhead, median of {PAIRS} back-to-back pairs: {:.3} ms (target < 1 ms: {}); \
         {} + {} + {} samples",
        ideal.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3,
        met(ratio >= 0.9),
        median(&direct_many.borrow()).as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        h.as_secs_f64() * 1e3,
        overhead * 1e3,
        met(overhead < 1e-3),
        direct.borrow().len(),
        one.borrow().len(),
        many.borrow().len(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
