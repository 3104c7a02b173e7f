//! Our graders against the committed labelled agreement sets (`tests/fixtures/`): the targets
//! of the grading issue, MATH ≥ 97 % and MMLU ≥ 99 % agreement, held in CI.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use hieramas_tasks::agreement::{
    Agreement, fixtures_dir, load_math, load_mmlu, score_math, score_mmlu,
};

fn show(name: &str, a: &Agreement) {
    eprintln!(
        "{name}: {}/{} agree ({:.1}%), mean {:.0} µs, max {:.0} µs per pair",
        a.agree,
        a.pairs,
        100.0 * a.rate(),
        a.mean_micros,
        a.max_micros
    );
    for d in &a.disagreements {
        eprintln!(
            "  {}: label {} graded {} (read {:?})",
            d.id, d.label, d.graded, d.extracted
        );
    }
}

#[test]
fn math_grader_agrees_with_the_labelled_set() {
    let pairs = load_math(&fixtures_dir()).unwrap();
    assert!(pairs.len() >= 400, "only {} MATH pairs", pairs.len());
    let ids: HashSet<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), pairs.len(), "duplicate ids in math_pairs.jsonl");
    for label in [true, false] {
        assert!(
            pairs.iter().filter(|p| p.correct == label).count() >= 100,
            "fewer than 100 pairs labelled {label}"
        );
    }
    let a = score_math(&pairs);
    show("MATH", &a);
    assert!(a.rate() >= 0.97, "MATH agreement {:.3} < 0.97", a.rate());
}

#[test]
fn mmlu_grader_agrees_with_the_labelled_set() {
    let pairs = load_mmlu(&fixtures_dir()).unwrap();
    assert!(pairs.len() >= 200, "only {} MMLU pairs", pairs.len());
    let ids: HashSet<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), pairs.len(), "duplicate ids in mmlu_pairs.jsonl");
    for p in &pairs {
        assert_eq!(p.choices.len(), 4, "{}: {} choices", p.id, p.choices.len());
        assert!(
            ["A", "B", "C", "D"].contains(&p.gold.as_str()),
            "{}: gold {:?}",
            p.id,
            p.gold
        );
    }
    for label in [true, false] {
        assert!(
            pairs.iter().filter(|p| p.correct == label).count() >= 60,
            "fewer than 60 pairs labelled {label}"
        );
    }
    let a = score_mmlu(&pairs);
    show("MMLU", &a);
    assert!(a.rate() >= 0.99, "MMLU agreement {:.3} < 0.99", a.rate());
}
