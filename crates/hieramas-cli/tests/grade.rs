//! `hieramas grade` end to end on the ecosystem file formats: evalplus samples (canonical
//! solutions pass, wrong ones fail, `S.eval.jsonl` is written), MATH and MMLU pairs, and errors
//! that name file, line and field.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use hieramas_tasks::data::DataDir;
use serde_json::{Value, json};

fn hieramas(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hieramas"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn write_lines(path: &std::path::Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn humaneval_plus_samples_are_graded_and_written_beside() {
    let Some(data) = DataDir::for_tests() else {
        return;
    };
    let tasks = data.humaneval_plus().unwrap();
    let t0 = &tasks[0];
    let t2 = &tasks[2];
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("s.jsonl");
    write_lines(
        &samples,
        &[
            // Canonical, as a whole solution and as a completion.
            json!({"task_id": t0.task_id, "solution": format!("{}{}", t0.prompt, t0.canonical_solution)}),
            json!({"task_id": t2.task_id, "completion": t2.canonical_solution}),
            // Wrong: prints instead of returning, and an infinite loop.
            json!({"task_id": t2.task_id, "completion": "    print(number % 1.0)\n"}),
            json!({"task_id": t0.task_id, "completion": "    while True:\n        pass\n"}),
        ],
    );
    let out = hieramas(&[
        "grade",
        "humaneval-plus",
        "--samples",
        samples.to_str().unwrap(),
        "--data-dir",
        data.root().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two tasks, each one right and one wrong sample: pass@1 50 on both.
    assert!(
        stdout.contains("pass@1 base: 50.0") && stdout.contains("pass@1 plus: 50.0"),
        "{stdout}"
    );
    let eval: Vec<Value> = std::fs::read_to_string(dir.path().join("s.eval.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let passes: Vec<(bool, bool)> = eval
        .iter()
        .map(|e| {
            (
                e["base_pass"].as_bool().unwrap(),
                e["plus_pass"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        passes,
        [(true, true), (true, true), (false, false), (false, false)]
    );
    assert_eq!(eval[3]["base_status"], "timeout");
    assert!(eval[2]["error"].as_str().is_some());

    // An unknown task names the file, line and field.
    write_lines(
        &samples,
        &[json!({"task_id": "HumanEval/999", "solution": "x"})],
    );
    let out = hieramas(&[
        "grade",
        "humaneval-plus",
        "--samples",
        samples.to_str().unwrap(),
        "--data-dir",
        data.root().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("s.jsonl:1: field `task_id`"), "{stderr}");
}

#[test]
fn math_and_mmlu_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("p.jsonl");
    write_lines(
        &pairs,
        &[
            json!({"gold": "\\frac{1}{2}", "response": "so $\\boxed{0.5}$"}),
            json!({"gold": "3", "response": "The answer is 4."}),
        ],
    );
    let out = hieramas(&["grade", "math", "--pairs", pairs.to_str().unwrap()]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"correct": true, "extracted": "0.5"}));
    assert_eq!(lines[1], json!({"correct": false, "extracted": "4"}));

    // Unicode answers never abort the run; a malformed line is reported on its own line.
    std::fs::write(
        &pairs,
        concat!(
            r#"{"gold": "2\\pi", "response": "The circumference is 2π ≈ 6.28, so the answer is $2\\pi$."}"#,
            "\n",
            r#"{"gold": "\\sqrt{13}", "response": "AB = √13 — final answer: √13"}"#,
            "\n",
            r#"{"gold": "5"}"#,
            "\n",
            r#"{"gold": "½", "response": "π√×−½° ∞ ≤ \\boxed{½}"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = hieramas(&["grade", "math", "--pairs", pairs.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert_eq!(lines[0]["correct"], json!(true), "{stderr}");
    assert_eq!(lines[1]["correct"], json!(true), "{stderr}");
    assert_eq!(lines[2]["line"], json!(3));
    assert!(stderr.contains("p.jsonl:3: field `response`"), "{stderr}");
    assert!(lines[3].get("error").is_none(), "{}", lines[3]);

    write_lines(
        &pairs,
        &[
            json!({"gold": "B", "response": "Answer: (B)"}),
            json!({"gold": 2, "response": "It is blue.", "choices": ["red", "green", "blue", "pink"]}),
            json!({"gold": "E", "response": "A"}),
        ],
    );
    // A pair that cannot be graded is reported on its own line; the others are still graded.
    let out = hieramas(&["grade", "mmlu", "--pairs", pairs.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("p.jsonl:3: field `gold`"), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["correct"], json!(true));
    assert_eq!(lines[2]["line"], json!(3));
    assert_eq!(lines[2]["correct"], json!(false));

    write_lines(
        &pairs,
        &[
            json!({"gold": "B", "response": "Answer: (B)"}),
            json!({"gold": 2, "response": "It is blue.", "choices": ["red", "green", "blue", "pink"]}),
        ],
    );
    let out = hieramas(&["grade", "mmlu", "--pairs", pairs.to_str().unwrap()]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"correct": true, "extracted": "B"}));
    assert_eq!(lines[1], json!({"correct": true, "extracted": "C"}));
}
