//! The checker: majority votes over equivalent answers, and HumanEval+ programs run for real
//! (when `HIERAMAS_DATA_DIR` is set; required under CI).

#![allow(clippy::unwrap_used)]

use hieramas_bench::{Checker, Gold, Query};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;

fn q(gold: Gold) -> Query {
    Query {
        id: "x".into(),
        task: String::new(),
        gold,
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[tokio::test]
async fn votes_group_equivalent_answers() {
    let c = Checker::new(&DataDir::new("/nonexistent"), Benchmark::Math)
        .await
        .unwrap();
    let math = q(Gold::Math("\\frac{1}{2}".into()));
    let g = c
        .grade(
            &math,
            &s(&[
                "\\boxed{1/3}",
                "so \\boxed{0.5}",
                "\\boxed{\\dfrac12}",
                "\\boxed{1/3}",
            ]),
        )
        .await
        .unwrap();
    // 0.5 and \dfrac12 are one group of two, tied with 1/3; the group seen first wins.
    assert_eq!(g.extracted.as_deref(), Some("1/3"));
    assert!(!g.correct);
    let g = c
        .grade(
            &math,
            &s(&[
                "no idea",
                "\\boxed{0.5}",
                "\\boxed{1/3}",
                "\\boxed{\\dfrac12}",
            ]),
        )
        .await
        .unwrap();
    assert_eq!(g.extracted.as_deref(), Some("0.5"));
    assert!(g.correct);

    let mmlu = q(Gold::Mmlu {
        letter: 'B',
        choices: s(&["red", "green", "blue", "black"]),
    });
    let g = c
        .grade(
            &mmlu,
            &s(&["hmm", "(C)", "The answer is green.", "Answer: B"]),
        )
        .await
        .unwrap();
    assert_eq!(g.extracted.as_deref(), Some("B"));
    assert!(g.correct);
    let g = c.grade(&mmlu, &s(&["hmm", "no"])).await.unwrap();
    assert_eq!((g.extracted, g.correct), (None, false));
}

#[tokio::test]
async fn humaneval_responses_run_in_the_sandbox() {
    let Some(data) = DataDir::for_tests() else {
        return;
    };
    let c = Checker::new(&data, Benchmark::HumanevalPlus).await.unwrap();
    let task = q(Gold::Code {
        task_id: "HumanEval/53".into(),
    });
    let right = "```python\ndef add(x: int, y: int):\n    return x + y\n```";
    let wrong = "```python\ndef add(x: int, y: int):\n    return x - y\n```";
    let g = c.grade(&task, &s(&[right])).await.unwrap();
    assert!(g.correct && g.base_pass == Some(true), "{g:?}");
    let g = c.grade(&task, &s(&[wrong])).await.unwrap();
    assert!(!g.correct && g.base_pass == Some(false), "{g:?}");
    assert!(g.error.is_some());
    // Self-consistency over programs: two identical wrong ones outvote one right one.
    let g = c
        .grade(&task, &s(&[right, wrong, &format!("{wrong}\n\n")]))
        .await
        .unwrap();
    assert!(!g.correct, "{g:?}");
    assert!(g.extracted.unwrap().contains("x - y"));
}
