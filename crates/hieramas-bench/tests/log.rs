//! The results log against crashes and a second writer: a write torn inside a multi-byte
//! character is dropped on reopen, and a log held by one process is refused to another.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use hieramas_bench::{BenchError, Record, ResultLog};

fn record(id: &str, response: &str) -> Record {
    Record {
        query_id: id.to_string(),
        config_hash: "h".to_string(),
        benchmark: "math".to_string(),
        split: "test".to_string(),
        method: "single".to_string(),
        model: "m".to_string(),
        prompt_hash: "p".to_string(),
        responses: vec![response.to_string()],
        extracted: Some("56".to_string()),
        correct: true,
        base_pass: None,
        error: None,
        prompt_tokens: 3,
        completion_tokens: 4,
        cost_pico: 5,
        latency_ms: 6,
        cached_calls: 0,
        saved_pico: 0,
        finished_at: 7,
        trace: None,
    }
}

#[test]
fn a_write_torn_inside_a_multibyte_character_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let kept = [
        record("q/0", "7×8 = 56, so the answer is $\\boxed{56}$"),
        record("q/1", "答案是 56 ✓"),
    ];
    {
        let (mut log, existing) = ResultLog::open(&path).unwrap();
        assert!(existing.is_empty());
        for r in &kept {
            log.append(r).unwrap();
        }
    }
    let whole = std::fs::read(&path).unwrap();
    // A crash cuts the next record inside the three bytes of '答'.
    let line = serde_json::to_string(&record("q/2", "答案是 42")).unwrap();
    let at = line.find('答').unwrap() + 1;
    assert!(!line.is_char_boundary(at));
    let mut torn = whole.clone();
    torn.extend_from_slice(&line.as_bytes()[..at]);
    std::fs::write(&path, &torn).unwrap();
    assert!(
        std::fs::read_to_string(&path).is_err(),
        "the file is not UTF-8 any more"
    );

    // A reader sees the complete lines and leaves the file alone.
    assert_eq!(ResultLog::read(&path).unwrap(), kept);
    assert_eq!(std::fs::read(&path).unwrap(), torn);
    // The writer cuts the torn bytes off and appends after the last complete line.
    let (mut log, existing) = ResultLog::open(&path).unwrap();
    assert_eq!(existing, kept);
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    let next = record("q/2", "答案是 42");
    log.append(&next).unwrap();
    drop(log);
    let all = ResultLog::read(&path).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2], next);
}

#[test]
fn a_complete_line_that_is_not_utf8_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut bytes = serde_json::to_vec(&record("q/0", "ok")).unwrap();
    bytes.push(b'\n');
    bytes.extend_from_slice(b"{\"query_id\": \"\xff\"}\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = ResultLog::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("run.jsonl:2") && err.contains("not UTF-8"),
        "{err}"
    );
}

/// `flock(1)` from util-linux: another process taking or testing the same lock.
fn flock() -> Command {
    let probe = Command::new("flock").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs flock(1) (util-linux)"
    );
    Command::new("flock")
}

#[test]
fn a_second_process_on_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");

    // This process writes: another process cannot take the log's lock.
    let (log, _) = ResultLog::open(&path).unwrap();
    let other = flock()
        .arg("--nonblock")
        .arg(&path)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(
        other.code(),
        Some(1),
        "flock(1) got the lock of an open log"
    );
    // Nor can a second writer in this process (flock locks per open file).
    let err = ResultLog::open(&path).unwrap_err();
    assert!(matches!(err, BenchError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("run.jsonl"), "{err}");
    // Reading is not writing: allowed while the log is held.
    assert!(ResultLog::read(&path).unwrap().is_empty());
    drop(log);

    // Another process holds the log: this one is refused until it lets go.
    let (ready, hold) = (dir.path().join("ready"), dir.path().join("hold"));
    std::fs::write(&hold, "").unwrap();
    let mut holder = flock()
        .arg(&path)
        .arg("sh")
        .arg("-c")
        .arg("touch \"$1\"; while [ -e \"$2\" ]; do sleep 0.05; done")
        .arg("sh")
        .arg(&ready)
        .arg(&hold)
        .spawn()
        .unwrap();
    while !ready.exists() {
        assert!(
            holder.try_wait().unwrap().is_none(),
            "flock(1) exited early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = ResultLog::open(&path).unwrap_err();
    assert!(matches!(err, BenchError::Locked { .. }), "{err:?}");
    std::fs::remove_file(&hold).unwrap();
    assert!(holder.wait().unwrap().success());
    let (_log, existing) = ResultLog::open(&path).unwrap();
    assert!(existing.is_empty());
}
