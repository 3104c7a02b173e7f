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
    let Some(data) = prerequisites() else {
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
        .args([
            "--batch-size",
            "2",
            "--max-tokens",
            "16",
            "--val-limit",
            "2",
        ])
        .arg("--pool")
        .arg(&pool)
        .arg("--data-dir")
        .arg(data.root())
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn");
        cmd
    };

    // Straight through.
    let out = dir.path().join("run");
    let (_, stderr) = succeed(train(&out, &[])).await;
    assert!(stderr.contains("iter  2:"), "{stderr}");
    assert!(server.request_count() >= 4, "at least the decision calls");

    // Interrupted after the first iteration, then rerun: the same selector, bit for bit, and
    // the same curve.
    let out2 = dir.path().join("resumed");
    let (_, stderr) = succeed(train(&out2, &["--stop-after", "1"])).await;
    assert!(stderr.contains("stopped after iteration 1"), "{stderr}");
    // The state names iteration 1's files by sha256.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["iterations_done"], 1);
    assert_eq!(state["files"]["weights"], "last-1.safetensors");
    assert_eq!(state["files"]["adam"], "last-1.adam.safetensors");
    // A copy whose optimiser file changed after the state was written is refused by its hash.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    for e in std::fs::read_dir(&out2).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), corrupt.join(e.file_name())).unwrap();
        }
    }
    let adam = corrupt.join("last-1.adam.safetensors");
    let mut bytes = std::fs::read(&adam).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&adam, bytes).unwrap();
    let mut bad = train(&corrupt, &[]);
    let output = tokio::task::spawn_blocking(move || bad.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("last-1.adam.safetensors") && stderr.contains("sha256"),
        "{stderr}"
    );
    // A kill while iteration 2 was being saved left half of its files: the state still names
    // iteration 1's, and the rerun does not read the torn ones.
    std::fs::write(out2.join("last-2.safetensors"), b"torn").unwrap();
    std::fs::write(out2.join(".last-2.adam.safetensors.tmp"), b"torn").unwrap();
    let (_, stderr) = succeed(train(&out2, &[])).await;
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
    // One iteration's resume files remain, the last one's.
    let mut resume_files: Vec<String> = std::fs::read_dir(&out2)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("last"))
        .collect();
    resume_files.sort();
    assert_eq!(
        resume_files,
        [
            "last-2.adam.safetensors",
            "last-2.safetensors",
            "last-2.safetensors.json"
        ]
    );

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
    // MATH validates every 2 iterations: the last line carries it, best.safetensors exists.
    assert!(curve[0].get("val_accuracy").is_none());
    let acc = curve[1]["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(curve[1]["simulated"], Value::Bool(false));
    assert!(out.join("best.safetensors").exists());
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("validation.json")).unwrap())
            .unwrap();
    assert_eq!(v["queries"], 2);
    for line in &curve {
        assert!(line["loss"].as_f64().unwrap().is_finite());
        assert!(
            line["cost_pico"].as_u64().unwrap() > 0,
            "the decision call is priced"
        );
    }
    assert_eq!(embed_dim(&out), 384);

    // Embeddings from an OpenAI-compatible /v1/embeddings model instead of MiniLM (the paper's
    // gte-large is served this way): the loopback server's 8-d vectors reach the selector.
    let before = server.request_count();
    let out3 = dir.path().join("remote-embedder");
    // Metadata asked of a pool model (the echo is no JSON: the heuristic), cached per task.
    succeed(train(&out3, &["--embedder", "m1", "--metadata", "m2"])).await;
    assert!(server.request_count() > before);
    let cached = walk(&out3.join("metadata"));
    assert!(cached >= 4, "one metadata file per task seen: {cached}");
    let paid: u64 = curve_of(&out3)
        .iter()
        .map(|l| l["metadata_cost_pico"].as_u64().unwrap())
        .sum();
    assert!(paid > 0, "metadata calls are priced and logged");
    assert_eq!(embed_dim(&out3), 8);
}

/// The embedding width of the selector a run left (loading verifies hash and tensor names).
fn embed_dim(out: &std::path::Path) -> usize {
    let (_, selector) = hieramas_reward::selector::load(
        &out.join("selector.safetensors"),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    selector.config.embed_dim
}

/// Runs `cmd` off the async runtime; asserts it succeeded; (stdout, stderr).
async fn succeed(mut cmd: std::process::Command) -> (String, String) {
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// The embedder and the datasets, when present (under CI their absence fails the test).
fn prerequisites() -> Option<hieramas_tasks::data::DataDir> {
    hieramas_local::model_for_tests("minilm-l6-v2")?;
    hieramas_tasks::data::DataDir::for_tests()
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The same command on the SIMULATED credit pool: labelled everywhere, validated with a policy
/// per role; and `experiment credit` writes its table and chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage1_on_a_simulated_pool_is_labelled_and_the_experiment_reports() {
    let Some(data) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let embeddings = dir.path().join("embeddings");
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
        cmd.args(args).env("RUST_LOG", "warn");
        succeed(cmd)
    };
    let s = |x: &str| x.to_string();
    let p = |x: &std::path::Path| x.display().to_string();
    let (_, stderr) = run(vec![
        s("train"),
        s("stage1"),
        s("--benchmark"),
        s("math"),
        // Not a file here: the built-in pool of that name.
        s("--pool"),
        s("pools/sim-credit.toml"),
        s("--iterations"),
        s("2"),
        s("--batch-size"),
        s("3"),
        s("--eval-every"),
        s("1"),
        s("--train-limit"),
        s("6"),
        s("--val-limit"),
        s("4"),
        s("--data-dir"),
        p(data.root()),
        s("--out"),
        p(&out),
        s("--embeddings"),
        p(&embeddings),
    ])
    .await;
    assert!(
        stderr.contains("SIMULATED: this run uses simulated models"),
        "{stderr}"
    );
    assert!(stderr.contains("SIMULATED iter  2:"), "{stderr}");
    for line in std::fs::read_to_string(out.join("curve.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["simulated"], Value::Bool(true));
        assert!(
            v["cost_pico"].as_u64().unwrap() > 0,
            "simulated calls are priced"
        );
        assert!(
            v["val_accuracy"].as_f64().is_some(),
            "validated every iteration"
        );
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("validation.json")).unwrap())
            .unwrap();
    assert_eq!(v["simulated"], Value::Bool(true));
    assert_eq!(
        v["options"].as_array().unwrap().len(),
        5,
        "four models + skip"
    );
    let policy = v["policy"].as_array().unwrap();
    assert_eq!(policy.len(), 3, "the MATH roles");
    for role in policy {
        let total: f64 = role["proposer_prob"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "a distribution: {total}");
        let argmax: f64 = role["proposer_argmax"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((argmax - 1.0).abs() < 1e-9);
    }
    assert!(v["cost_usd"].as_f64().unwrap() > 0.0);

    let report = dir.path().join("credit");
    let (stdout, _) = run(vec![
        s("experiment"),
        s("credit"),
        s("--seeds"),
        s("1"),
        s("--iterations"),
        s("1"),
        s("--batch-size"),
        s("2"),
        s("--train-limit"),
        s("4"),
        s("--val-limit"),
        s("2"),
        s("--data-dir"),
        p(data.root()),
        s("--out"),
        p(&report),
    ])
    .await;
    assert!(stdout.starts_with("# SIMULATED"), "{stdout}");
    let md = std::fs::read_to_string(report.join("REPORT.md")).unwrap();
    for arm in [
        "official selector, system-only, official loss",
        "official selector, multi-level, official loss",
        "official selector, system-only, fixed loss",
        "official selector, multi-level, fixed loss",
        "role-aware selector, system-only, fixed loss",
        "role-aware selector, multi-level, fixed loss",
    ] {
        assert!(md.contains(&format!("| {arm} |")), "{md}");
    }
    assert!(
        md.contains("Inspector: `model-b`"),
        "the optimum by construction: {md}"
    );
    let svg = std::fs::read_to_string(report.join("credit.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("SIMULATED") && svg.trim_end().ends_with("</svg>")
    );
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(
        results["runs"].as_array().unwrap().len(),
        6,
        "6 estimators x 1 seed"
    );
}

/// Stage 2 end to end on the SIMULATED credit pool: a stage-1 selector; `experiment topology`
/// (stage-2 data, the classifier with its held-out report, the edge-wise policy, the full and
/// edge-wise graphs on held-out tasks, the report); stage-2 data resumed after a crash left a
/// cut-off line gives the same file; `eval --method hieramas` records its choice per query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage2_end_to_end_on_a_simulated_pool() {
    let Some(data) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emb = dir.path().join("embeddings");
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
        cmd.args(args).env("RUST_LOG", "warn");
        succeed(cmd)
    };
    let s = |x: &str| x.to_string();
    let p = |x: &std::path::Path| x.display().to_string();
    let common = |v: &mut Vec<String>| {
        v.extend([
            s("--benchmark"),
            s("math"),
            s("--pool"),
            s("pools/sim-credit.toml"),
            s("--data-dir"),
            p(data.root()),
            s("--embeddings"),
            p(&emb),
        ]);
    };
    let s1 = dir.path().join("s1");
    let mut args = vec![s("train"), s("stage1")];
    common(&mut args);
    args.extend([
        s("--iterations"),
        s("1"),
        s("--batch-size"),
        s("2"),
        s("--train-limit"),
        s("4"),
        s("--val-limit"),
        s("0"),
        s("--out"),
        p(&s1),
    ]);
    run(args).await;
    let stage1 = s1.join("selector.safetensors");
    // The default selector is the role-aware one, and its checkpoint says so; a system asked for
    // the official joint input refuses it with both names, instead of reading the wrong width.
    let (_, selector) = hieramas_reward::selector::load(
        &stage1,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    assert_eq!(
        selector.config.input,
        hieramas_reward::selector::SelectorInput::Separate
    );
    let mut args = vec![s("eval"), s("--method"), s("hieramas")];
    common(&mut args);
    args.extend([
        s("--stage1"),
        p(&stage1),
        s("--ablation"),
        s("random-graph"),
        s("--official"),
        s("joint-input"),
        s("--limit"),
        s("1"),
        s("--out"),
        p(&dir.path().join("refused.jsonl")),
    ]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"));
    cmd.args(args).env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("separate task/role input") && stderr.contains("gives the joint one"),
        "{stderr}"
    );

    let topo = dir.path().join("topo");
    let mut args = vec![s("experiment"), s("topology")];
    common(&mut args);
    args.extend([
        s("--stage1"),
        p(&stage1),
        s("--train-limit"),
        s("10"),
        s("--test-limit"),
        s("4"),
        s("--out"),
        p(&topo),
    ]);
    let (_, stderr) = run(args.clone()).await;
    assert!(stderr.contains("SIMULATED stage-2 data"), "{stderr}");
    let md = std::fs::read_to_string(topo.join("REPORT.md")).unwrap();
    assert!(md.starts_with("> SIMULATED"), "{md}");
    for row in [
        "| HieraMAS classifier",
        "| random candidate",
        "| best candidate (oracle)",
        "| full graph |",
        "| edge-wise REINFORCE",
    ] {
        assert!(md.contains(row), "{row}: {md}");
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(topo.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["simulated"], Value::Bool(true));
    assert_eq!(results["budget_runs"], 50, "10 tasks x 5 DAGs");
    assert_eq!(results["test_tasks"], 4);
    let tasks = std::fs::read_to_string(topo.join("data-train/tasks.jsonl")).unwrap();
    assert_eq!(tasks.lines().count(), 10);
    for line in tasks.lines() {
        let t: Value = serde_json::from_str(line).unwrap();
        assert_eq!(t["embedding"].as_array().unwrap().len(), 384);
        let runs = t["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 5);
        let mut distinct: Vec<String> = runs.iter().map(|r| r["edges"].to_string()).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "distinct candidates");
        let pos = runs.iter().filter(|r| r["label"] == Value::Bool(true));
        assert!(pos.clone().count() <= 2);
        assert!(pos.clone().all(|r| r["solved"] == Value::Bool(true)));
        assert!(runs.iter().all(|r| r["cost_pico"].as_u64().unwrap() > 0));
    }
    // A second run of the same command resumes every step.
    let (_, stderr) = run(args).await;
    assert!(stderr.contains("(10 done)"), "{stderr}");

    // A crash mid-way: 6 complete lines and half of the 7th; the rerun completes the file
    // exactly as the straight run wrote it.
    let cut = dir.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(topo.join("data-train/meta.json"), cut.join("meta.json")).unwrap();
    let lines: Vec<&str> = tasks.lines().collect();
    let partial = format!(
        "{}\n{}",
        lines[..6].join("\n"),
        &lines[6][..lines[6].len() / 2]
    );
    std::fs::write(cut.join("tasks.jsonl"), partial).unwrap();
    let mut args = vec![s("train"), s("stage2-data")];
    common(&mut args);
    args.extend([
        s("--stage1"),
        p(&stage1),
        s("--limit"),
        s("10"),
        s("--out"),
        p(&cut),
    ]);
    let (_, stderr) = run(args).await;
    assert!(stderr.contains("(6 done)"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(cut.join("tasks.jsonl")).unwrap(),
        tasks
    );

    // The classifier at test time.
    let evals = dir.path().join("eval");
    let mut args = vec![s("eval"), s("--method"), s("hieramas")];
    common(&mut args);
    args.retain(|a| a != "--embeddings" && a != &p(&emb));
    args.extend([
        s("--stage1"),
        p(&stage1),
        s("--stage2"),
        p(&topo.join("classifier/classifier.safetensors")),
        s("--limit"),
        s("3"),
        s("--out-dir"),
        p(&evals),
    ]);
    let (stdout, stderr) = run(args).await;
    assert!(stdout.contains("hieramas"), "{stdout}");
    assert!(stderr.contains("give 9 distinct DAGs"), "{stderr}");
    let records = std::fs::read_dir(&evals)
        .unwrap()
        .flatten()
        .find(|e| e.path().to_string_lossy().ends_with(".jsonl"))
        .unwrap()
        .path();
    let text = std::fs::read_to_string(records).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let plan = &r["trace"]["plan"];
        assert_eq!(plan["candidates"], 9, "{r}");
        assert!(plan["chosen"].as_u64().unwrap() < 9);
        assert_eq!(plan["selected"].as_array().unwrap().len(), 3);
        assert_eq!(plan["edges"].as_array().unwrap().len(), 2, "MATH DAGs: {r}");
    }

    // The ablations of method §7: fixed-LLM (the decision model everywhere, the classifier's
    // topology) and random-graph (one random DAG, learned models, no classifier needed).
    let ablation = |name: &str, stage2: bool| {
        let mut args = vec![s("eval"), s("--method"), s("hieramas")];
        common(&mut args);
        args.extend([s("--stage1"), p(&stage1), s("--ablation"), s(name)]);
        if stage2 {
            args.extend([
                s("--stage2"),
                p(&topo.join("classifier/classifier.safetensors")),
            ]);
        }
        let out = evals.join(format!("{name}.jsonl"));
        args.extend([s("--limit"), s("3"), s("--out"), p(&out)]);
        (args, out)
    };
    let (args, out) = ablation("fixed-llm", true);
    let (stdout, _) = run(args).await;
    assert!(stdout.contains("hieramas-fixed-llm"), "{stdout}");
    for line in std::fs::read_to_string(out).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let plan = &r["trace"]["plan"];
        assert_eq!(plan["ablation"], "fixed-llm");
        let models: Vec<&Value> = plan["selected"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p.as_array().unwrap())
            .collect();
        assert!(
            models.iter().all(|m| *m == models[0] && *m != "skip"),
            "{plan}"
        );
        assert_eq!(plan["candidates"], 9);
    }
    let (args, out) = ablation("random-graph", false);
    let (stdout, _) = run(args).await;
    assert!(stdout.contains("hieramas-random-graph"), "{stdout}");
    let text = std::fs::read_to_string(out).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let plan = &r["trace"]["plan"];
        assert_eq!(plan["candidates"], 1, "{plan}");
        assert_eq!(plan["score"], Value::Null);
    }
    // HieraMAS itself refuses to run without its classifier.
    let (mut args, _) = ablation("fixed-llm", false);
    args.retain(|a| a != "--ablation" && a != "fixed-llm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hieramas"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stage2"));
}
