//! `hieramas eval` end to end on the embedded model: MMLU, 20 queries, killed with SIGKILL
//! part-way, then rerun — nothing logged is lost or repeated, and the rerun completes the set.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn eval(data: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hieramas"));
    c.args([
        "eval",
        "--benchmark",
        "mmlu",
        "--method",
        "single",
        "--model",
        "local/smollm2-135m",
        "--limit",
        "20",
        "--concurrency",
        "2",
        "--data-dir",
    ])
    .arg(data)
    .arg("--out")
    .arg(out)
    .env("RUST_LOG", "warn");
    c
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn kill_9_then_rerun_loses_and_duplicates_nothing() {
    if hieramas_local::model_for_tests("smollm2-135m").is_none() {
        return;
    }
    let Some(data) = hieramas_tasks::data::DataDir::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mmlu.jsonl");

    let mut child = eval(data.root(), &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while lines(&out).len() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "eval finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no record after 10 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read_to_string(&out).unwrap();
    let killed_at = before.lines().count();
    assert!(
        killed_at < 20,
        "the run was not interrupted ({killed_at} records)"
    );

    let rerun = eval(data.root(), &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "rerun failed: {stderr}");
    let after = std::fs::read_to_string(&out).unwrap();
    assert!(
        after.starts_with(before.trim_end_matches(|c| c != '\n')),
        "logged records changed"
    );
    let records: Vec<serde_json::Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| r["query_id"].as_str().unwrap())
        .collect();
    assert_eq!(records.len(), 20, "records: {}", records.len());
    assert_eq!(ids.len(), 20, "a query was logged twice");
    let resumed = format!(
        "{} resumed",
        before.trim_end_matches(|c| c != '\n').lines().count()
    );
    assert!(stderr.contains(&resumed), "{stderr}");
    for r in &records {
        assert_eq!(r["model"], "local/smollm2-135m");
        assert!(r["responses"][0].as_str().is_some());
        assert!(r["completion_tokens"].as_u64().unwrap() > 0);
    }
    // The summary covers all 20, from both runs.
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    let row = stdout.lines().nth(1).unwrap();
    assert!(row.contains("local/smollm2-135m  20"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["queries"], 20);
    let correct = records.iter().filter(|r| r["correct"] == true).count();
    assert_eq!(summary["correct"], correct);

    // A third run has nothing to do and asks the model nothing.
    let third = eval(data.root(), &out).output().unwrap();
    assert!(third.status.success());
    assert_eq!(lines(&out).len(), 20);
    assert!(String::from_utf8_lossy(&third.stderr).contains("0 new, 20 resumed"));
}
