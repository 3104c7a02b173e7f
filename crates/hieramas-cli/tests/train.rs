//! `hieramas train stage1` end to end: a loopback pool of two priced models (hieramas-testkit,
//! `echo:` answers), the local MiniLM embedder, 2 iterations of 2 MATH training queries. The
//! learning curve has one line per iteration with finite loss and exact, non-zero cost, and the
//! final checkpoint loads (hash and tensor names verified); a run interrupted after its first
//! iteration and rerun ends with the same selector, bit for bit.

#![allow(clippy::unwrap_used)]

use hieramas_testkit::TestServer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage1_trains_and_leaves_a_verified_checkpoint() {
    if hieramas_local::model_for_tests("minilm-l6-v2").is_none() {
        return;
    }
    let Some(data) = hieramas_tasks::data::DataDir::for_tests() else {
        return;
    };
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    std::fs::write(&pool, server.pool_toml()).unwrap();
    let train = |out: &std::path::Path, extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
        cmd.args([
            "train",
            "stage1",
            "--benchmark",
            "math",
            "--iterations",
            "2",
        ])
        .args(["--batch-size", "2", "--max-tokens", "16", "--pool"])
        .arg(&pool)
        .arg("--data-dir")
        .arg(data.root())
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn");
        cmd
    };
    let go = |mut cmd: std::process::Command| async move {
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };

    // Straight through.
    let out = dir.path().join("run");
    let stderr = go(train(&out, &[])).await;
    assert!(stderr.contains("iter  2:"), "{stderr}");
    assert!(server.request_count() >= 4, "at least the decision calls");

    // Interrupted after the first iteration, then rerun: the same selector, bit for bit, and
    // the same curve.
    let out2 = dir.path().join("resumed");
    let stderr = go(train(&out2, &["--stop-after", "1"])).await;
    assert!(stderr.contains("stopped after iteration 1"), "{stderr}");
    let stderr = go(train(&out2, &[])).await;
    assert!(
        stderr.contains("resuming") && stderr.contains("iter  2:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("iter  1:"),
        "iteration 1 was not run again: {stderr}"
    );
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    assert!(
        read(out.join("selector.safetensors")) == read(out2.join("selector.safetensors")),
        "the resumed run's selector differs from the straight run's"
    );
    let curve_of = |o: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(o.join("curve.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(curve_of(&out), curve_of(&out2));

    // Other settings in the same folder are refused, not mixed in.
    let mut other = train(&out2, &[]);
    other.args(["--seed", "9"]);
    let output = tokio::task::spawn_blocking(move || other.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--fresh"));

    let curve: Vec<Value> = std::fs::read_to_string(out.join("curve.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(curve.len(), 2);
    for line in &curve {
        assert!(line["loss"].as_f64().unwrap().is_finite());
        assert!(
            line["cost_pico"].as_u64().unwrap() > 0,
            "the decision call is priced"
        );
    }
    let (_, selector) = hieramas_reward::selector::load(
        &out.join("selector.safetensors"),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    assert_eq!(selector.config.embed_dim, 384);
}
