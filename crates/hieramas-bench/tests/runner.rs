//! The runner against a real OpenAI-compatible server on 127.0.0.1 (hieramas-testkit, which
//! answers `echo: <last user message>` and counts usage in words): records, exact costs,
//! resume without duplicates, torn lines, failures and the budget.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hieramas_bench::prompts::{Method, Prompt};
use hieramas_bench::{
    BenchError, Checker, EvalConfig, Gold, Query, Record, ResultLog, RunOutcome, Selection,
    Summary, resume, run,
};
use hieramas_llm::{
    Budget, Budgeted, ChatModel, Endpoint, OpenAiClient, Price, RetryPolicy, Usd, http_client,
};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use hieramas_testkit::{Fault, TestServer};

fn price() -> Price {
    // $1 per million input tokens, $2 per million output tokens.
    Price::per_million("1", "2").unwrap()
}

fn model(s: &TestServer) -> Arc<dyn ChatModel> {
    let endpoint = Endpoint {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..Endpoint::new("echo", "echo-1", s.base_url(), price())
    };
    Arc::new(OpenAiClient::new(endpoint, http_client().unwrap()))
}

/// The whole resumable flow, as `hieramas eval` runs it, with `config(2)`.
async fn go(server: &TestServer, qs: &[Query], path: &Path) -> (RunOutcome, Vec<Record>) {
    resume(
        &config(2),
        model(server),
        qs,
        &checker().await,
        path,
        |_| {},
    )
    .await
    .unwrap()
}

/// MMLU-style queries whose echoed task decides the verdict: even ones answer the gold.
fn queries(n: usize) -> Vec<Query> {
    (0..n)
        .map(|i| Query {
            id: format!("q/{i}"),
            task: format!("The answer is ({}).", if i % 2 == 0 { 'B' } else { 'C' }),
            gold: Gold::Mmlu {
                letter: 'B',
                choices: vec!["w".into(), "x".into(), "y".into(), "z".into()],
            },
        })
        .collect()
}

fn config(concurrency: usize) -> EvalConfig {
    EvalConfig {
        selection: Selection {
            benchmark: Benchmark::Mmlu,
            split: "test".into(),
            seed: 0,
            limit: None,
            keep_flagged: false,
        },
        method: Method::Single,
        model: "echo".into(),
        model_fingerprint: "openai:echo-1:1000000/2000000".into(),
        prompt: Prompt {
            system: String::new(),
            user: "{task}".into(),
            temperature: 0.0,
            max_tokens: 16,
        },
        samples: 1,
        concurrency,
        mas: serde_json::Value::Null,
        system_seed: 0,
    }
}

async fn checker() -> Checker {
    Checker::new(&DataDir::new("/nonexistent"), Benchmark::Mmlu)
        .await
        .unwrap()
}

#[tokio::test]
async fn records_are_graded_priced_and_durable() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/run.jsonl");
    let (mut log, existing) = ResultLog::open(&path).unwrap();
    assert!(existing.is_empty());
    let qs = queries(6);
    let mut seen = Vec::new();
    let out = run(
        &config(3),
        model(&server),
        &qs,
        &checker().await,
        &mut log,
        &HashSet::new(),
        |r| seen.push(r.query_id.clone()),
    )
    .await
    .unwrap();
    assert_eq!((out.written, out.resumed), (6, 0));
    assert!(out.failed.is_empty() && !out.budget_exhausted);
    assert!(server.max_in_flight() <= 3, "concurrency 3 was exceeded");

    // `log` is still open (and locked): read without opening for writing.
    let records = ResultLog::read(&path).unwrap();
    assert_eq!(records.len(), 6);
    let ids: HashSet<_> = records.iter().map(|r| r.query_id.clone()).collect();
    assert_eq!(ids, seen.into_iter().collect());
    for r in &records {
        let even = r.query_id.ends_with(['0', '2', '4']);
        assert_eq!(r.correct, even, "{r:?}");
        assert_eq!(r.extracted.as_deref(), Some(if even { "B" } else { "C" }));
        assert_eq!(r.responses.len(), 1);
        assert!(r.responses[0].starts_with("echo: The answer is"));
        // The server counts words (+4 per message): prompt "The answer is (B)." = 8,
        // reply "echo: The answer is (B)." = 5.
        assert_eq!((r.prompt_tokens, r.completion_tokens), (8, 5));
        assert_eq!(r.cost_pico, 8 * 1_000_000 + 5 * 2_000_000);
        assert_eq!(r.config_hash, config(3).hash());
    }
    let refs: Vec<&Record> = records.iter().collect();
    let s = Summary::of(&refs);
    assert_eq!((s.queries, s.correct), (6, 3));
    assert_eq!(s.accuracy, 50.0);
    assert_eq!(s.cost, "$0.000108");
    assert!(s.table().lines().nth(1).unwrap().contains("$0.000108"));
}

#[tokio::test]
async fn a_rerun_skips_what_is_logged_and_a_torn_line_is_dropped() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let qs = queries(8);
    go(&server, &qs[..5], &path).await;
    assert_eq!(server.request_count(), 5);
    // A crash in the middle of a write leaves half a line.
    let before = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{before}{{\"query_id\":\"q/5\",\"conf")).unwrap();

    let (_, records) = ResultLog::open(&path).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "the torn line is cut off"
    );
    let (out, all) = go(&server, &qs, &path).await;
    assert_eq!((out.written, out.resumed), (3, 5));
    assert_eq!(all.len(), 8);
    assert_eq!(server.request_count(), 8, "no query was asked twice");
    let (_, records) = ResultLog::open(&path).unwrap();
    let ids: Vec<_> = records.iter().map(|r| r.query_id.clone()).collect();
    assert_eq!(ids.len(), 8);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        8,
        "duplicates: {ids:?}"
    );
    assert!(std::fs::read_to_string(&path).unwrap().starts_with(&before));
}

#[tokio::test]
async fn a_malformed_line_in_the_middle_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    std::fs::write(&path, "{\"query_id\": 3}\n{}\n").unwrap();
    let err = ResultLog::open(&path).unwrap_err();
    assert!(matches!(err, BenchError::Tasks(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("run.jsonl:1") && msg.contains("query_id"),
        "{msg}"
    );
}

#[tokio::test]
async fn failed_calls_leave_no_record_and_run_again() {
    let server = TestServer::start().await.unwrap();
    server.push_fault(Fault::status(400));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let qs = queries(3);
    let (out, records) = go(&server, &qs, &path).await;
    assert_eq!((out.written, records.len()), (2, 2));
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].0, "q/0");
    assert!(out.failed[0].1.contains("400"), "{:?}", out.failed);
    let (out, records) = go(&server, &qs, &path).await;
    assert_eq!(records.len(), 3);
    assert_eq!((out.written, out.resumed, out.failed.len()), (1, 2, 0));
}

#[tokio::test]
async fn the_budget_stops_the_run() {
    let server = TestServer::start().await.unwrap();
    // Each call reserves its worst case: 4 prompt-ish tokens + 16 max tokens at $2/M, so a
    // cap of $0.0001 admits a few calls, not twenty.
    let budget = Budget::new(Usd::parse("0.0001").unwrap());
    let m: Arc<dyn ChatModel> = Arc::new(Budgeted::new(model(&server), budget.clone()));
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = ResultLog::open(&dir.path().join("run.jsonl")).unwrap();
    let qs = queries(20);
    let out = run(
        &config(1),
        m,
        &qs,
        &checker().await,
        &mut log,
        &HashSet::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(out.budget_exhausted);
    assert!(out.written > 0 && out.written < 20, "{out:?}");
    assert_eq!(
        server.request_count(),
        out.written,
        "a refused call made no request"
    );
    assert!(budget.spent() <= budget.cap());
}

#[test]
fn the_config_hash_covers_what_decides_responses() {
    let base = config(2);
    let mut wider = base.clone();
    wider.concurrency = 9;
    wider.selection.limit = Some(3);
    assert_eq!(
        base.hash(),
        wider.hash(),
        "limit and concurrency do not change responses"
    );
    let mut other = base.clone();
    other.prompt.user = "Q: {task}".into();
    assert_ne!(base.hash(), other.hash());
    let mut other = base.clone();
    other.model_fingerprint = "openai:echo-2:1000000/2000000".into();
    assert_ne!(base.hash(), other.hash());
    let mut other = base.clone();
    other.method = Method::Cot;
    assert_ne!(base.hash(), other.hash());
}

#[tokio::test]
async fn a_multi_agent_system_answers_and_its_trace_is_kept() {
    use hieramas_bench::{MasSetup, Solver};
    use hieramas_supernode::{Members, Sampling};
    use hieramas_topology::roleset::RoleSet;
    use hieramas_topology::shapes;

    let server = TestServer::start().await.unwrap();
    let roles = RoleSet::builtin("mmlu").unwrap();
    let m = model(&server);
    let setup = MasSetup {
        topology: shapes::chain(roles.names()).unwrap(),
        members: (0..roles.roles.len())
            .map(|_| Members::fixed(m.clone(), roles.width))
            .collect(),
        roles,
        decision: m,
        sampling: Sampling::default(),
        faithful: false,
        consensus: None,
    };
    let mut cfg = config(2);
    cfg.method = Method::Mas;
    cfg.mas = serde_json::json!({"topology": "chain"});
    assert_ne!(
        cfg.hash(),
        config(2).hash(),
        "the system is part of the hash"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mas.jsonl");
    let qs = queries(2);
    let (out, records) = resume(
        &cfg,
        Solver::Mas(Arc::new(setup)),
        &qs,
        &checker().await,
        &path,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((out.written, records.len()), (2, 2));
    // 8 roles x (2 proposers + synth) + decision per query.
    assert_eq!(server.request_count(), 2 * (8 * 3 + 1));
    for r in &records {
        let trace = r.trace.as_ref().unwrap();
        assert_eq!(trace["calls"].as_array().unwrap().len(), 25);
        assert_eq!(r.cost_pico, trace["total_cost_pico"].as_u64().unwrap());
        assert_eq!(
            r.prompt_tokens + r.completion_tokens,
            trace["total_tokens"].as_u64().unwrap()
        );
        assert_eq!(r.responses, [trace["answer"].as_str().unwrap()]);
        assert_eq!(r.method, "mas");
    }
}

/// MoA and debate over two models on the loopback server: the layer/round structure reaches
/// the wire, every call is in the record, and the totals are exact.
#[tokio::test]
async fn moa_and_debate_run_their_rounds_and_keep_every_call() {
    use hieramas_bench::reference::{DebateSettings, Ensemble, MoaSettings};
    use hieramas_bench::{EnsembleSetup, Solver};

    let prompts = hieramas_bench::Prompts::builtin().unwrap();
    let moa = Ensemble::Moa(MoaSettings {
        layers: 2,
        width: 3,
        ..prompts.moa.clone()
    });
    let debate = Ensemble::Debate(DebateSettings {
        agents: 3,
        rounds: 2,
        ..prompts.debate.clone()
    });
    for (method, ensemble, calls, answers) in [
        (Method::Moa, moa, 2 * 3 + 1, 1),
        (Method::Debate, debate, 3 * 2, 3),
    ] {
        let server = TestServer::start().await.unwrap();
        let m = model(&server);
        let setup = EnsembleSetup {
            ensemble,
            prompt: config(1).prompt,
            models: vec![m.clone(), m.clone()],
            aggregator: m,
        };
        assert_eq!(setup.calls_per_query(), calls);
        let mut cfg = config(2);
        cfg.method = method;
        let dir = tempfile::tempdir().unwrap();
        let qs = queries(2);
        let (out, records) = resume(
            &cfg,
            Solver::Ensemble(Arc::new(setup)),
            &qs,
            &checker().await,
            &dir.path().join("r.jsonl"),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(out.written, 2, "{method:?}");
        assert_eq!(server.request_count(), 2 * calls, "{method:?}");
        let last_user = |body: &serde_json::Value| -> String {
            let msgs = body["messages"].as_array().unwrap();
            msgs.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let prompts: Vec<String> = server
            .requests()
            .iter()
            .map(|r| last_user(&r.body))
            .collect();
        // Later steps show earlier answers: MoA numbers the previous layer's three answers,
        // debate labels every earlier answer by round and agent.
        let marker = if method == Method::Moa {
            "3. echo: "
        } else {
            "Round 1, agent 3:\necho: "
        };
        let follow_ups = prompts.iter().filter(|p| p.contains(marker)).count();
        let expected = if method == Method::Moa { 2 * 4 } else { 2 * 3 };
        assert_eq!(follow_ups, expected, "{method:?}: {prompts:#?}");
        for r in &records {
            let trace = r.trace.as_ref().unwrap();
            let tcalls = trace["calls"].as_array().unwrap();
            assert_eq!(tcalls.len(), calls);
            let sum = |k: &str| tcalls.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
            assert_eq!(r.cost_pico, sum("cost_pico"));
            assert_eq!(r.prompt_tokens, sum("prompt_tokens"));
            assert_eq!(r.completion_tokens, sum("completion_tokens"));
            assert_eq!(r.responses.len(), answers);
            assert_eq!(r.method, method.name());
        }
    }
}
