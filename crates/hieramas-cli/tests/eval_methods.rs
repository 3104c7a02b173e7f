//! `hieramas eval --method mas|moa|debate` end to end against a loopback OpenAI-compatible
//! server (hieramas-testkit, `echo:` answers) named in a pool file, on 2 MMLU test queries:
//! every record keeps all its calls, totals are exact, and the configuration file says what
//! ran.

#![allow(clippy::unwrap_used)]

use hieramas_testkit::TestServer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mas_moa_and_debate_keep_every_call_and_say_what_ran() {
    let Some(data) = hieramas_tasks::data::DataDir::for_tests() else {
        return;
    };
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    std::fs::write(&pool, server.pool_toml()).unwrap();
    // (method, extra flags, calls per query, responses per record)
    for (method, extra, calls, responses) in [
        ("mas", &[][..], 8 * 3 + 1, 1),
        // The paper's in-framework baseline: one call per role (no proposers, no synthesis)
        // of one fixed model, which also decides.
        (
            "mas",
            &["--width", "1", "--assign", "fixed:m2", "--decision", "m2"][..],
            8 + 1,
            1,
        ),
        ("moa", &[][..], 2 * 3 + 1, 1),
        ("debate", &[][..], 3 * 2, 3),
        // The paper's debate: three agents of one model.
        ("debate", &["--assign", "fixed:m2"][..], 3 * 2, 3),
    ] {
        let out = dir.path().join(format!("{method}{}.jsonl", extra.len()));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
        cmd.args([
            "eval",
            "--benchmark",
            "mmlu",
            "--method",
            method,
            "--limit",
            "2",
        ])
        .args(extra)
        .args(["--max-tokens", "32", "--pool"])
        .arg(&pool)
        .arg("--data-dir")
        .arg(data.root())
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn");
        let before = server.request_count();
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{method}: {stderr}");
        assert_eq!(server.request_count() - before, 2 * calls, "{method}");

        let records: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "{method}");
        for r in &records {
            let tcalls = r["trace"]["calls"].as_array().unwrap();
            assert_eq!(tcalls.len(), calls, "{method}");
            let cost: u64 = tcalls
                .iter()
                .map(|c| c["cost_pico"].as_u64().unwrap())
                .sum();
            assert_eq!(r["cost_pico"].as_u64().unwrap(), cost, "{method}");
            assert!(cost > 0);
            assert_eq!(
                r["responses"].as_array().unwrap().len(),
                responses,
                "{method}"
            );
            assert_eq!(r["method"], method);
            let models: std::collections::BTreeSet<&str> = tcalls
                .iter()
                .map(|c| c["model"].as_str().unwrap())
                .collect();
            if method == "debate" {
                let want: &[&str] = if extra.is_empty() {
                    &["m1", "m2"]
                } else {
                    &["m2"]
                };
                assert_eq!(models.into_iter().collect::<Vec<_>>(), want, "{extra:?}");
            }
            if method == "mas" && !extra.is_empty() {
                // One call at position 0 of every role, then the decision node's; one model.
                for c in &tcalls[..tcalls.len() - 1] {
                    assert_eq!(c["position"], 0, "{c}");
                }
                assert_eq!(tcalls.last().unwrap()["position"], "decision");
                assert!(tcalls.iter().all(|c| c["model"] == "m2"), "{tcalls:?}");
                let mut nodes: Vec<&str> =
                    tcalls.iter().map(|c| c["node"].as_str().unwrap()).collect();
                nodes.sort();
                nodes.dedup();
                assert_eq!(nodes.len(), 8 + 1, "every role once, and the decision");
            }
        }
        // Every request honoured the cap.
        for req in server.requests().iter().skip(before) {
            assert_eq!(req.body["max_tokens"], 32, "{method}");
        }
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(out.with_extension("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["config_hash"], records[0]["config_hash"]);
        match method {
            "mas" => {
                assert_eq!(
                    config["mas"]["topology"]["roles"].as_array().unwrap().len(),
                    8
                );
                assert_eq!(config["mas"]["consensus"], true);
            }
            "moa" => assert_eq!(config["mas"]["ensemble"]["kind"], "moa"),
            _ => assert_eq!(config["mas"]["ensemble"]["rounds"], 2),
        }
    }
}

/// `eval --cache`: a second evaluation of the same queries (a fresh log, so every query runs
/// again) is answered from the cache: no request, $0, and the summary counts the hits and what
/// they saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_with_a_cache_replays_for_free_and_says_what_it_saved() {
    let data = hieramas_tasks::data::DataDir::resolve(None).unwrap();
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    std::fs::write(&pool, server.pool_toml()).unwrap();
    let cache = dir.path().join("cache.sqlite");
    let eval = |out: std::path::PathBuf| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
        cmd.args([
            "eval",
            "--benchmark",
            "mmlu",
            "--method",
            "moa",
            "--limit",
            "2",
        ])
        .args(["--max-tokens", "32", "--pool"])
        .arg(&pool)
        .arg("--data-dir")
        .arg(data.root())
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn");
        async move {
            let output = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "{stderr}");
            let summary: Value = serde_json::from_str(
                &std::fs::read_to_string(out.with_extension("summary.json")).unwrap(),
            )
            .unwrap();
            (summary, format!("{stdout}{stderr}"))
        }
    };
    let (live, _) = eval(dir.path().join("a.jsonl")).await;
    let calls = server.request_count();
    assert_eq!(calls, 2 * (2 * 3 + 1));
    assert!(live["cost_pico"].as_u64().unwrap() > 0);
    assert_eq!(live["cached_calls"], 0);
    let (replay, printed) = eval(dir.path().join("b.jsonl")).await;
    assert_eq!(server.request_count(), calls, "the replay made no request");
    assert_eq!(
        replay["cost_pico"], live["cost_pico"],
        "the method's cost does not depend on the cache"
    );
    assert_eq!(replay["cached_calls"].as_u64().unwrap() as usize, calls);
    assert_eq!(replay["saved_pico"], live["cost_pico"]);
    assert_eq!(replay["accuracy"], live["accuracy"]);
    assert!(printed.contains("answered from it"), "{printed}");
    assert!(printed.contains("paid $0.00"), "{printed}");
}
