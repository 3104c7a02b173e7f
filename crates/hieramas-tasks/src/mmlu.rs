//! MMLU grading: the option letter a response settles on.
//!
//! In order: an explicit statement ("the answer is (B)", "Answer: **B**", "\boxed{B}", the
//! last one wins); a response that is only a letter ("B", "(B)", "B.", "B) text"); the last
//! parenthesised letter "(B)"; the one option whose text the response quotes. Lower-case
//! letters count only in the explicit forms, and a bare capital "A" inside a sentence never
//! counts (it is an article).

use std::sync::LazyLock;

use regex::Regex;

/// What the grader read from a response and whether it is right.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub correct: bool,
    pub extracted: Option<char>,
}

/// Grades `response` against the gold letter; `choices` (the option texts) enable matching a
/// response that quotes an option instead of naming its letter.
pub fn grade(response: &str, gold: char, choices: Option<&[String]>) -> Verdict {
    let extracted = extract_letter(response, choices);
    Verdict {
        correct: extracted == Some(gold.to_ascii_uppercase()),
        extracted,
    }
}

static EXPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i:answer|choice|option)\s*(?i:is|would be|should be|:)\s*(?i:option|choice)?\s*:?\s*\s*(?:[*_]*[(\[]\s*([A-Da-d])\s*[)\]]|\*\*\s*([A-Da-d])\s*\*\*|[*_]*([A-D]))[*_]*(?:[^A-Za-z0-9]|$)|\\boxed\{\s*(?:\\text\{)?\s*\(?([A-Da-d])\)?\s*\}?\s*\}",
    )
    .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static ONLY_LETTER: LazyLock<Regex> = LazyLock::new(|| {
    // "B", "(B)", "[B]", "B.", or a leading "B." / "B)" / "B:" / "(B)" before the option text.
    Regex::new(
        r"^[*_]*(?:[(\[]?([A-D])[)\]]?[.:]?[*_]*$|[(\[]([A-D])[)\]]|([A-D])[.):][*_]*(?:\s|$))",
    )
    .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static PAREN_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([A-D])\)").unwrap_or_else(|e| panic!("static regex: {e}")));

/// The letter `A`-`D` the response picks, if one can be read.
pub fn extract_letter(response: &str, choices: Option<&[String]>) -> Option<char> {
    let letter = |m: regex::Match| m.as_str().chars().next().map(|c| c.to_ascii_uppercase());
    if let Some(c) = EXPLICIT.captures_iter(response).last() {
        if let Some(l) = (1..=4).find_map(|i| c.get(i)).and_then(letter) {
            return Some(l);
        }
    }
    if let Some(c) = ONLY_LETTER.captures(response.trim()) {
        if let Some(l) = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .and_then(letter)
        {
            return Some(l);
        }
    }
    if let Some(m) = PAREN_LETTER.captures_iter(response).last() {
        return m.get(1).and_then(letter);
    }
    let choices = choices?;
    let lower = normalize_text(response);
    let hits: Vec<usize> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let c = normalize_text(c);
            !c.is_empty() && lower.contains(&c)
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => Some(char::from(b'A' + *i as u8)),
        _ => None,
    }
}

fn normalize_text(s: &str) -> String {
    let s: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a gold label written as a letter (`"B"`, `"(b)"`) or an index (`1`, `"1"`).
pub fn parse_gold(v: &serde_json::Value) -> Option<char> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .filter(|&i| i < 4)
            .map(|i| char::from(b'A' + i as u8)),
        serde_json::Value::String(s) => {
            let t = s.trim().trim_matches(|c| c == '(' || c == ')').trim();
            match t.len() {
                1 => {
                    let c = t.chars().next()?.to_ascii_uppercase();
                    if ('A'..='D').contains(&c) {
                        Some(c)
                    } else {
                        t.parse::<u8>()
                            .ok()
                            .filter(|&i| i < 4)
                            .map(|i| char::from(b'A' + i))
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}
