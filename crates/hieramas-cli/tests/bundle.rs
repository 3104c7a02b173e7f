//! A trained system as a bundle, end to end on a loopback pool of two priced models
//! (hieramas-testkit, `echo:` answers) and the local MiniLM embedder: `train stage1`,
//! `train stage2-data`, `train stage2`, `export`; then `run --system` answers a free-form
//! question with a line per node, and with `--cache` a second run makes no call and costs $0;
//! `run --stage1 --stage2` answers without a bundle; a changed file is refused by name.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use hieramas_testkit::TestServer;
use serde_json::Value;

/// Runs `hieramas args…` off the async runtime: (success, stdout, stderr).
async fn hieramas(args: Vec<String>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
    cmd.args(args).env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(args: Vec<String>) -> (String, String) {
    let (success, stdout, stderr) = hieramas(args).await;
    assert!(success, "{stderr}");
    (stdout, stderr)
}

fn s(x: &str) -> String {
    x.to_string()
}

fn p(x: &Path) -> String {
    x.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_run_the_bundle_replay_it_for_free_and_refuse_a_changed_file() {
    hieramas_local::model_for_tests("minilm-l6-v2")
        .expect("the MiniLM embedder (cargo xtask models)");
    let data = hieramas_tasks::data::DataDir::resolve(None).unwrap();
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    std::fs::write(&pool, server.pool_toml()).unwrap();
    let emb = dir.path().join("embeddings");
    let common = || {
        vec![
            s("--benchmark"),
            s("math"),
            s("--pool"),
            p(&pool),
            s("--max-tokens"),
            s("16"),
            s("--data-dir"),
            p(data.root()),
            s("--embeddings"),
            p(&emb),
            s("--quiet"),
        ]
    };
    let s1 = dir.path().join("stage1");
    let train_cache = dir.path().join("train-cache.sqlite");
    let stage1 = |out: &Path| {
        let mut args = vec![s("train"), s("stage1")];
        args.extend(common());
        args.extend(
            [
                "--iterations",
                "1",
                "--batch-size",
                "2",
                "--train-limit",
                "2",
                "--val-limit",
                "0",
            ]
            .map(s),
        );
        args.extend([s("--cache"), p(&train_cache), s("--out"), p(out)]);
        args
    };
    ok(stage1(&s1)).await;
    // The same training again, elsewhere, through its cache: no request, the same selector.
    let trained_calls = server.request_count();
    assert!(trained_calls > 0);
    let again = dir.path().join("stage1-again");
    ok(stage1(&again)).await;
    assert_eq!(
        server.request_count(),
        trained_calls,
        "stage 1 replayed from its cache"
    );
    assert!(
        std::fs::read(s1.join("selector.safetensors")).unwrap()
            == std::fs::read(again.join("selector.safetensors")).unwrap()
    );
    let data2 = dir.path().join("data");
    let mut args = vec![s("train"), s("stage2-data")];
    args.extend(common());
    args.extend([s("--stage1"), p(&s1.join("selector.safetensors"))]);
    args.extend(["--limit", "2", "--graphs", "2"].map(s));
    args.extend([s("--out"), p(&data2)]);
    ok(args).await;
    let cls = dir.path().join("classifier");
    ok(vec![
        s("train"),
        s("stage2"),
        s("--data"),
        p(&data2),
        s("--out"),
        p(&cls),
        s("--epochs"),
        s("2"),
        s("--quiet"),
    ])
    .await;

    let bundle = dir.path().join("system");
    let (_, stderr) = ok(vec![
        s("export"),
        s("--stage1"),
        p(&s1),
        s("--stage2"),
        p(&cls),
        s("-o"),
        p(&bundle),
        s("--name"),
        s("loopback-math"),
    ])
    .await;
    assert!(stderr.contains("hieramas/loopback-math"), "{stderr}");
    let manifest = std::fs::read_to_string(bundle.join("system.toml")).unwrap();
    for field in [
        "benchmark = \"math\"",
        "decision = \"m1\"",
        "[files.pool]",
        "[files.selector]",
        "[files.classifier]",
        "train stage1",
        "train stage2",
        "export",
    ] {
        assert!(manifest.contains(field), "{field}: {manifest}");
    }

    // A free-form question, a line per node as it runs, the reply as JSON.
    let cache = dir.path().join("cache.sqlite");
    let run = |extra: Vec<String>| {
        let mut a = vec![s("run"), s("--system"), p(&bundle), s("--cache"), p(&cache)];
        a.extend(extra);
        a.push(s("Name a prime number between 10 and 20."));
        a
    };
    let before = server.request_count();
    let (stdout, stderr) = ok(run(vec![s("--json")])).await;
    let calls = server.request_count() - before;
    assert!(calls >= 2, "{stderr}");
    assert!(
        stderr.contains("] decision: m"),
        "a line per node: {stderr}"
    );
    let reply: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        reply["answer"].as_str().unwrap().starts_with("echo:"),
        "{stdout}"
    );
    let trace = &reply["trace"];
    assert_eq!(trace["calls"].as_array().unwrap().len(), calls);
    let cost = trace["total_cost_pico"].as_u64().unwrap();
    assert!(cost > 0, "priced models cost something: {stdout}");
    assert!(
        reply["plan"]["candidates"].as_u64().unwrap() >= 1,
        "{stdout}"
    );

    // The same question again through the cache: no call, $0, and what it saved.
    let (stdout2, stderr) = ok(run(vec![])).await;
    assert_eq!(
        server.request_count() - before,
        calls,
        "the replay called the server"
    );
    assert_eq!(stdout2.trim(), reply["answer"].as_str().unwrap().trim());
    assert!(
        stderr.contains(&format!("{calls} of {calls} calls answered from it")),
        "{stderr}"
    );
    assert!(
        stderr.contains("paid $0.00 (exact: 0 pico-USD)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(exact: {cost} pico-USD)")),
        "the system's cost is the same as live: {stderr}"
    );

    // Without a bundle: the training outputs themselves.
    let (stdout3, _) = ok(vec![
        s("run"),
        s("--stage1"),
        p(&s1),
        s("--stage2"),
        p(&cls),
        s("--quiet"),
        s("Name a prime number between 10 and 20."),
    ])
    .await;
    assert_eq!(
        stdout3.trim(),
        stdout2.trim(),
        "the same system, the same answer"
    );

    // One byte changed in the classifier: refused, naming the file.
    let file = bundle.join("classifier.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let (success, _, stderr) = hieramas(run(vec![])).await;
    assert!(!success);
    assert!(
        stderr.contains("classifier.safetensors") && stderr.contains("sha256"),
        "{stderr}"
    );
    // And a path escaping the bundle is refused before anything is read.
    let manifest = std::fs::read_to_string(bundle.join("system.toml")).unwrap();
    std::fs::write(
        bundle.join("system.toml"),
        manifest.replace("path = \"pool.toml\"", "path = \"../pool.toml\""),
    )
    .unwrap();
    let (success, _, stderr) = hieramas(run(vec![])).await;
    assert!(!success && stderr.contains("not a plain name"), "{stderr}");
}

/// A fixed system with the `general` role set answers in free form: no consensus override,
/// the decision node's words as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_system_answers_free_form_with_a_role_set_of_ones_own() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    std::fs::write(&pool, server.pool_toml()).unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        include_str!("../../hieramas-topology/roles/general.toml")
            .replace("name = \"Critic\"", "name = \"Reviewer\""),
    )
    .unwrap();
    let (stdout, stderr) = ok(vec![
        s("run"),
        s("--pool"),
        p(&pool),
        s("--roles"),
        p(&roles),
        s("--topology"),
        s("chain"),
        s("Why is the sky blue?"),
    ])
    .await;
    assert!(stdout.starts_with("echo:"), "{stdout}");
    assert!(stderr.contains("] Reviewer: m"), "{stderr}");
    assert!(!stderr.contains("consensus override"), "{stderr}");
    let (success, _, stderr) = hieramas(vec![
        s("run"),
        s("--pool"),
        p(&pool),
        s("--roles"),
        s("no-such-roles"),
        s("q"),
    ])
    .await;
    assert!(!success && stderr.contains("no-such-roles"), "{stderr}");
}
