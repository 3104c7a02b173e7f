//! MMLU letter extraction: the forms the issue names, traps, and properties.

#![allow(clippy::unwrap_used)]

use hieramas_tasks::mmlu::{extract_letter, grade, parse_gold};
use proptest::prelude::*;

#[test]
fn letter_forms() {
    let cases = [
        ("B", Some('B')),
        ("(B)", Some('B')),
        ("B.", Some('B')),
        ("**C**", Some('C')),
        ("D) Paris is the capital", Some('D')),
        ("Answer: B", Some('B')),
        ("answer: (c)", Some('C')),
        ("The answer is B.", Some('B')),
        ("the correct answer is **(D)**", Some('D')),
        (
            "Let me think. Option A is wrong. The answer is C",
            Some('C'),
        ),
        ("I pick (A) first... no, (B).", Some('B')),
        ("$\\boxed{D}$", Some('D')),
        ("A cell is the unit of life.", None),
        ("The answer is a bit unclear", None),
        ("", None),
        ("Everything here is uncertain", None),
    ];
    for (text, want) in cases {
        assert_eq!(extract_letter(text, None), want, "{text:?}");
    }
}

#[test]
fn option_text_match_when_no_letter_is_given() {
    let choices: Vec<String> = ["Paris", "London", "Berlin", "Madrid"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        extract_letter("It is London, of course", Some(&choices)),
        Some('B')
    );
    // Two options quoted: ambiguous.
    assert_eq!(extract_letter("Not Paris but Berlin", Some(&choices)), None);
    assert!(grade("madrid!", 'D', Some(&choices)).correct);
    assert!(!grade("madrid!", 'A', Some(&choices)).correct);
}

#[test]
fn gold_labels() {
    assert_eq!(parse_gold(&serde_json::json!("b")), Some('B'));
    assert_eq!(parse_gold(&serde_json::json!("(C)")), Some('C'));
    assert_eq!(parse_gold(&serde_json::json!(3)), Some('D'));
    assert_eq!(parse_gold(&serde_json::json!("0")), Some('A'));
    assert_eq!(parse_gold(&serde_json::json!(4)), None);
    assert_eq!(parse_gold(&serde_json::json!("E")), None);
}

proptest! {
    #[test]
    fn explicit_statements_win_over_earlier_mentions(
        noise in "[a-z ,.]{0,60}", first in 0u8..4, last in 0u8..4,
        form in 0usize..5,
    ) {
        let l = |i: u8| char::from(b'A' + i);
        let tail = match form {
            0 => format!("The answer is {}.", l(last)),
            1 => format!("Answer: ({})", l(last)),
            2 => format!("answer: **{}**", l(last)),
            3 => format!("Final answer is {}", l(last)),
            _ => format!("\\boxed{{{}}}", l(last)),
        };
        let text = format!("Option ({}) looks tempting; {noise}\n{tail}", l(first));
        prop_assert_eq!(extract_letter(&text, None), Some(l(last)));
    }

    #[test]
    fn prose_without_letters_extracts_nothing(text in "[a-z ,.]{0,80}") {
        prop_assert_eq!(extract_letter(&text, None), None);
    }
}
