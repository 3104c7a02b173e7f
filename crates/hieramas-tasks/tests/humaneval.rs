//! HumanEval+ grading on the real tasks: every canonical solution passes base and plus; wrong
//! programs of the usual kinds fail.

#![allow(clippy::unwrap_used)]

use hieramas_tasks::data::DataDir;
use hieramas_tasks::humaneval::{Grader, SandboxOptions, Status, default_cache_dir};

fn grader() -> Option<Grader> {
    let dir = DataDir::for_tests()?;
    Some(Grader::new(
        dir.humaneval_plus().unwrap(),
        default_cache_dir(),
        SandboxOptions::default(),
    ))
}

#[test]
fn every_canonical_solution_passes_base_and_plus() {
    let Some(g) = grader() else { return };
    let dir = DataDir::resolve(None).unwrap();
    let samples: Vec<(String, String)> = dir
        .humaneval_plus()
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.task_id.clone(),
                // A comment at the end, so that the program is run and compared (the reference
                // program itself passes without a run).
                format!(
                    "{}{}\n# graded by running\n",
                    t.prompt, t.canonical_solution
                ),
            )
        })
        .collect();
    g.prepare().unwrap();
    let results = g.grade_many(&samples, &|_| {});
    let mut failures = Vec::new();
    for ((id, _), r) in samples.iter().zip(&results) {
        let r = r.as_ref().unwrap();
        if !r.plus_pass() {
            failures.push(format!("{id}: {:?}", r.first_error()));
        }
    }
    assert_eq!(samples.len(), 164);
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wrong_programs_fail() {
    let Some(g) = grader() else { return };
    let task = |id: &str| g.task(id).unwrap();
    let t0 = task("HumanEval/0");
    let t2 = task("HumanEval/2");
    let t13 = task("HumanEval/13");
    let cases = [
        // Off by one: compares with <= threshold instead of <. The base inputs miss it; the
        // plus inputs catch it.
        (
            "HumanEval/0",
            format!(
                "{}    for i, a in enumerate(numbers):\n        for j, b in enumerate(numbers):\n            if i != j and abs(a - b) <= threshold:\n                return True\n    return False\n",
                t0.prompt
            ),
            Status::Pass,
        ),
        // Wrong type: returns a string.
        (
            "HumanEval/2",
            format!("{}    return str(number % 1.0)\n", t2.prompt),
            Status::Fail,
        ),
        // Infinite loop.
        (
            "HumanEval/13",
            format!("{}    while True:\n        pass\n", t13.prompt),
            Status::Timeout,
        ),
        // Exception.
        (
            "HumanEval/13",
            format!("{}    raise ValueError('nope')\n", t13.prompt),
            Status::Fail,
        ),
        // Prints instead of returning.
        (
            "HumanEval/13",
            format!("{}    import math\n    print(math.gcd(a, b))\n", t13.prompt),
            Status::Fail,
        ),
        // Syntax error.
        (
            "HumanEval/13",
            format!("{}    return gcd(a b)\n", t13.prompt),
            Status::Fail,
        ),
        // Misses the entry point.
        (
            "HumanEval/13",
            "def gcd(a, b):\n    return 1\n".to_string(),
            Status::Fail,
        ),
        // Right on the base inputs only: the plus inputs catch it.
        (
            "HumanEval/0",
            format!(
                "{}    if len(numbers) > 6:\n        return False\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)\n",
                t0.prompt
            ),
            Status::Pass,
        ),
    ];
    for (id, code, base_status) in cases {
        let r = g.grade(id, &code).unwrap();
        assert_eq!(r.base.status, base_status, "{id}: {code}\n{r:?}");
        assert!(!r.plus_pass(), "{id} must fail: {code}");
        assert!(r.first_error().is_some());
    }
}

#[test]
fn floats_compare_with_tolerance_and_completions_are_programs() {
    let Some(g) = grader() else { return };
    let t2 = g.task("HumanEval/2").unwrap();
    // truncate_number: a different float computation of the same value passes (atol 1e-6).
    let r = g
        .grade(
            "HumanEval/2",
            &format!("{}    return number - int(number) + 1e-9\n", t2.prompt),
        )
        .unwrap();
    assert!(r.plus_pass(), "{r:?}");
    let r = g
        .grade(
            "HumanEval/2",
            &format!("{}    return number - int(number) + 1e-3\n", t2.prompt),
        )
        .unwrap();
    assert!(!r.base_pass(), "{r:?}");
}

#[test]
fn programs_from_chat_responses() {
    use hieramas_tasks::humaneval::{fenced_blocks, program_from_response};
    let task: hieramas_tasks::data::HumanEvalTask = serde_json::from_str(
        &serde_json::json!({
            "task_id": "T/0", "prompt": "import math\n\ndef f(x):\n    \"\"\"Doc.\"\"\"\n",
            "entry_point": "f", "canonical_solution": "    return x\n", "test": "",
            "base_input": [[1]], "plus_input": [], "atol": 0
        })
        .to_string(),
    )
    .unwrap();
    // A whole function in a fence, after some prose: the prompt's imports stay.
    let p = program_from_response(
        &task,
        "Sure!\n```python\ndef f(x):\n    return math.floor(x)\n```\nDone.",
    );
    assert!(p.starts_with("import math\n"), "{p}");
    assert!(p.ends_with("def f(x):\n    return math.floor(x)\n"), "{p}");
    // A response that repeats the whole prompt and completes it is the program as it stands.
    let whole = format!("{}{}", task.prompt, task.canonical_solution);
    let p = program_from_response(&task, &format!("```python\n{whole}```"));
    assert_eq!(p, whole);
    // A bare body completes the prompt.
    let p = program_from_response(&task, "    return x + 1");
    assert_eq!(p, format!("{}    return x + 1\n", task.prompt));
    // The block that defines the entry point wins over an example block; an unclosed fence counts.
    assert_eq!(
        fenced_blocks("```\nf(1)\n```\n```python\ndef f(x):\n  return 2"),
        ["f(1)\n", "def f(x):\n  return 2\n"]
    );
    let p = program_from_response(
        &task,
        "```\nprint(f(1))\n```\n```python\ndef f(x):\n    return 2\n```",
    );
    assert!(
        p.ends_with("def f(x):\n    return 2\n") && !p.contains("print"),
        "{p}"
    );
}

#[test]
fn an_identical_program_is_run_once_and_keeps_its_verdict() {
    let Some(g) = grader() else { return };
    let t = g.task("HumanEval/2").unwrap();
    let right = format!("{}{}\n# mine\n", t.prompt, t.canonical_solution);
    let wrong = format!("{}    return 0.0\n", t.prompt);
    let id = t.task_id.clone();
    let first = g.grade(&id, &right).unwrap();
    let runs = g.sandbox_runs();
    assert!(first.plus_pass());
    assert_eq!(g.grade(&id, &right).unwrap(), first);
    assert_eq!(g.sandbox_runs(), runs, "the same program is not run again");
    // Another program, or the same program for another task, runs.
    let failed = g.grade(&id, &wrong).unwrap();
    assert!(!failed.base_pass());
    assert_eq!(g.sandbox_runs(), runs + 1);
    assert_eq!(g.grade(&id, &wrong).unwrap(), failed);
    assert_eq!(g.sandbox_runs(), runs + 1);
    assert!(!g.grade("HumanEval/0", &right).unwrap().base_pass());
    assert_eq!(g.sandbox_runs(), runs + 2);
}

#[test]
fn the_reference_program_passes_without_a_run_whatever_the_clock() {
    let Some(g) = grader() else { return };
    let t = g.task("HumanEval/13").unwrap();
    let reference = format!("{}{}", t.prompt, t.canonical_solution);
    let id = t.task_id.clone();
    let first = g.grade(&id, &reference).unwrap();
    let runs = g.sandbox_runs();
    assert!(first.plus_pass(), "{:?}", first.first_error());
    // Whitespace at the very end changes nothing; nothing is run for it.
    let trailing = format!("{}{}\n\n  \n", t.prompt, t.canonical_solution.trim_end());
    assert_eq!(g.grade(&id, &trailing).unwrap(), first);
    assert_eq!(g.sandbox_runs(), runs, "the reference program is not run");
    // Anything else is run: a comment, or the reference of another task.
    let commented = format!("{reference}# a comment\n");
    assert!(g.grade(&id, &commented).unwrap().plus_pass());
    assert_eq!(g.sandbox_runs(), runs + 1);
    assert!(!g.grade("HumanEval/0", &reference).unwrap().base_pass());
    assert_eq!(g.sandbox_runs(), runs + 2);
}

/// HumanEval/13 alone (a grader over one task prepares in a moment).
fn only_task_13(dir: &DataDir) -> Vec<hieramas_tasks::data::HumanEvalTask> {
    dir.humaneval_plus()
        .unwrap()
        .into_iter()
        .filter(|t| t.task_id == "HumanEval/13")
        .collect()
}

#[test]
fn a_tampered_cache_is_recomputed() {
    let Some(dir) = DataDir::for_tests() else {
        return;
    };
    let tasks = || only_task_13(&dir);
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("humaneval-plus");
    let g = || Grader::new(tasks(), &cache, SandboxOptions::default());
    let wrong = format!("{}    return -1\n", tasks()[0].prompt);
    assert!(!g().grade("HumanEval/13", &wrong).unwrap().base_pass());
    // Every expected output replaced by -1: the wrong program would pass with it.
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for part in ["base", "plus"] {
        for o in c[part]["outputs"].as_array_mut().unwrap() {
            *o = serde_json::json!(["i", "-0x1"]);
        }
    }
    std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
    // A file of another grader version: deleted when the task's outputs are recomputed.
    let stale = cache.join("HumanEval_13-000000000000000000000000.json");
    std::fs::write(&stale, b"{}").unwrap();
    let r = g().grade("HumanEval/13", &wrong).unwrap();
    assert!(!stale.exists());
    assert!(!r.base_pass(), "the tampered cache was used: {r:?}");
    // Recomputed and recorded again: the file is back to the canonical outputs.
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(again, c);
    // The index lives beside the cache directory, not in it.
    assert!(home.path().join("humaneval-plus.index.json").exists());
    assert!(!cache.join("humaneval-plus.index.json").exists());
}

#[test]
fn without_bubblewrap_the_grader_refuses_unless_allowed() {
    let Some(dir) = DataDir::for_tests() else {
        return;
    };
    let tasks = || only_task_13(&dir);
    let t = tasks().remove(0);
    let right = format!("{}{}", t.prompt, t.canonical_solution);
    let home = tempfile::tempdir().unwrap();
    let missing = SandboxOptions {
        bwrap: "/nonexistent/bwrap".into(),
        ..SandboxOptions::default()
    };
    let g = Grader::new(tasks(), home.path(), missing.clone());
    let e = g.grade("HumanEval/13", &right).unwrap_err().to_string();
    assert!(
        e.contains("bubblewrap") && e.contains("--allow-unsandboxed"),
        "{e}"
    );
    assert!(g.prepare().is_err());
    let g = Grader::new(
        tasks(),
        home.path(),
        SandboxOptions {
            allow_unsandboxed: true,
            ..missing
        },
    );
    assert_eq!(
        g.isolation().unwrap(),
        hieramas_tasks::humaneval::Isolation::Unsandboxed
    );
    let r = g.grade("HumanEval/13", &right).unwrap();
    assert!(r.plus_pass() && !r.sandboxed, "{r:?}");
    // The verdict is still decided outside the program.
    let liar = format!(
        "class L:\n    def __eq__(self, o): return True\n{}    return L()\n",
        t.prompt
    );
    let r = g.grade("HumanEval/13", &liar).unwrap();
    assert!(!r.base_pass() && !r.sandboxed, "{r:?}");
}
