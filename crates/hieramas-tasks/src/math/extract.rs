//! The final answer of a free-text response.

use std::sync::LazyLock;

use regex::Regex;

use super::re;

/// Where each `{` closes (by position in `cs`), in one pass.
fn brace_partners(cs: &[char]) -> Vec<Option<usize>> {
    let mut partner = vec![None; cs.len()];
    let mut open = Vec::new();
    for (i, &c) in cs.iter().enumerate() {
        match c {
            '{' => open.push(i),
            '}' => {
                if let Some(o) = open.pop() {
                    partner[o] = Some(i);
                }
            }
            _ => {}
        }
    }
    partner
}

fn starts_with_at(cs: &[char], i: usize, pat: &str) -> bool {
    let mut k = i;
    for p in pat.chars() {
        if cs.get(k) != Some(&p) {
            return false;
        }
        k += 1;
    }
    true
}

/// The contents of every closed `\boxed{…}` / `\fbox{…}` (balanced braces) and unbraced
/// `\boxed 5` (to the next `$` or line end), in order of where they start.
fn boxes(text: &str) -> Vec<String> {
    let cs: Vec<char> = text.chars().collect();
    let partner = brace_partners(&cs);
    let mut out = Vec::new();
    for i in 0..cs.len() {
        if cs[i] != '\\' {
            continue;
        }
        let name_len = if starts_with_at(&cs, i, "\\boxed") {
            6
        } else if starts_with_at(&cs, i, "\\fbox") {
            5
        } else {
            continue;
        };
        let mut j = i + name_len;
        if cs.get(j) == Some(&'{') {
            if let Some(end) = partner[j] {
                out.push(cs[j + 1..end].iter().collect());
            }
            continue;
        }
        if cs.get(j) == Some(&' ') {
            while cs.get(j) == Some(&' ') {
                j += 1;
            }
            if cs.get(j) == Some(&'{') {
                if let Some(end) = partner[j] {
                    out.push(cs[j + 1..end].iter().collect());
                }
                continue;
            }
            let start = j;
            while j < cs.len() && cs[j] != '$' && cs[j] != '\n' {
                j += 1;
            }
            let s: String = cs[start..j].iter().collect();
            let s = s.trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// The content of the last `\boxed{…}` or `\fbox{…}` (balanced braces), or of an unbraced
/// `\boxed 5` (up to the next `$` or line end).
pub fn last_boxed(text: &str) -> Option<String> {
    boxes(text).pop()
}

/// Whether `s` is a format placeholder copied literally from a prompt ("answer", "<answer>",
/// "[your answer]", `\boxed{answer}`, "ANSWER", "...") rather than an answer. Single letters
/// are answers here ("(C)", "x"); [`extract_answer`] also skips a bare `N` or `X` right after
/// "the answer is".
pub fn is_placeholder(s: &str) -> bool {
    let mut t = s.trim().to_string();
    for _ in 0..4 {
        let before = t.clone();
        t = t
            .trim()
            .trim_matches(|c: char| matches!(c, '$' | '*' | '<' | '>' | '[' | ']' | '"' | '\'' | '`'))
            .trim_end_matches(['.', '!'])
            .trim()
            .to_string();
        for wrap in ["\\boxed{", "\\text{", "\\textbf{", "\\mathrm{", "{"] {
            if let Some(inner) = t.strip_prefix(wrap).and_then(|r| r.strip_suffix('}')) {
                t = inner.to_string();
            }
        }
        if t == before {
            break;
        }
    }
    let lower = t.to_lowercase().replace(['_', '-'], " ");
    matches!(
        lower.as_str(),
        "answer"
            | "your answer"
            | "final answer"
            | "the answer"
            | "your final answer"
            | "final_answer"
            | "answer here"
            | "your answer here"
            | "insert answer here"
            | "number"
            | "your number"
            | "..."
            | "…"
            | "?"
            | "??"
    )
}

static PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\banswer\s*(?:\*\*|__)?\s*(?:is|:|=|would be|will be|should be|to the problem is|to this problem is)\s*(?:\*\*|__)?\s*:?",
    )
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"));
static BOLD: LazyLock<Regex> = LazyLock::new(|| re(r"\*\*([^*\n]{1,200})\*\*"));
static DIGIT: LazyLock<Regex> = LazyLock::new(|| re(r"\d"));

/// The final answer of a free-text response (see the module doc for the order of attempts).
pub fn extract_answer(response: &str) -> Option<String> {
    // A reasoning model's answer follows its thinking.
    let text = response
        .rsplit_once("</think>")
        .map(|(_, after)| after)
        .filter(|a| !a.trim().is_empty())
        .unwrap_or(response);
    for b in boxes(text).iter().rev() {
        let b = b.trim();
        if !b.is_empty() && !is_placeholder(b) {
            return Some(b.to_string());
        }
    }
    let phrases: Vec<usize> = PHRASE.find_iter(text).map(|m| m.end()).collect();
    for &end in phrases.iter().rev() {
        let Some(rest) = text.get(end..) else {
            continue;
        };
        if let Some(a) = phrase_answer(rest) {
            return Some(a);
        }
    }
    // Only text after the last answer phrase (a placeholder one) can hold a bold or a number
    // that is not the answer's; the text before it holds the work.
    if let Some(a) = bold_final(text) {
        return Some(a);
    }
    last_math_or_number(text)
}

/// The answer right after an answer phrase: a math segment, or the text to the sentence end.
fn phrase_answer(rest: &str) -> Option<String> {
    let cs: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < cs.len() && (cs[i] == ' ' || cs[i] == '*' || cs[i] == '_') {
        i += 1;
    }
    let cs = &cs[i..];
    let ans = if let Some((seg, _)) = math_segment_at(cs, 0) {
        seg
    } else {
        // To the end of the sentence: a line end, or a `.` before a space or the end.
        let mut end = cs.len();
        for k in 0..cs.len() {
            if cs[k] == '\n' {
                end = k;
                break;
            }
            if cs[k] == '.' && cs.get(k + 1).is_none_or(|c| c.is_whitespace()) {
                end = k;
                break;
            }
        }
        cs[..end].iter().collect()
    };
    let ans = clean(&ans);
    if ans.is_empty() || is_placeholder(&ans) || ans == "N" || ans == "X" || ans.chars().count() > 300
    {
        return None;
    }
    Some(ans)
}

fn clean(s: &str) -> String {
    let mut t = s.trim().to_string();
    for _ in 0..3 {
        let before = t.clone();
        t = t
            .trim()
            .trim_matches('*')
            .trim()
            .trim_end_matches(['.', ',', ';', ':'])
            .trim()
            .to_string();
        if t.starts_with('$') && t.ends_with('$') && t.len() >= 2 {
            t = t.trim_matches('$').to_string();
        }
        if t == before {
            break;
        }
    }
    t
}

/// A math segment (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`) starting at `i`: its content and the
/// position after it.
fn math_segment_at(cs: &[char], i: usize) -> Option<(String, usize)> {
    let (open_len, close): (usize, &str) = if starts_with_at(cs, i, "$$") {
        (2, "$$")
    } else if starts_with_at(cs, i, "$") {
        (1, "$")
    } else if starts_with_at(cs, i, "\\(") {
        (2, "\\)")
    } else if starts_with_at(cs, i, "\\[") {
        (2, "\\]")
    } else {
        return None;
    };
    let start = i + open_len;
    let mut k = start;
    while k < cs.len() {
        if cs[k] == '\\' && close == "$" && cs.get(k + 1) == Some(&'$') {
            k += 2;
            continue;
        }
        if starts_with_at(cs, k, close) {
            let seg: String = cs[start..k].iter().collect();
            return Some((seg, k + close.chars().count()));
        }
        k += 1;
    }
    None
}

/// The last bold `**X**` that looks like a result (a digit, a command or a short token) when
/// no digit follows it.
fn bold_final(text: &str) -> Option<String> {
    let m = BOLD.captures_iter(text).last()?;
    let whole = m.get(0)?;
    let inner = m.get(1)?.as_str().trim();
    let after = text.get(whole.end()..)?;
    if DIGIT.is_match(after) || inner.ends_with(':') {
        return None;
    }
    let inner = inner
        .trim_start_matches("Final answer")
        .trim_start_matches("Final Answer")
        .trim_start_matches("Answer")
        .trim_start_matches(':')
        .trim();
    let looks = DIGIT.is_match(inner) || inner.contains('\\') || inner.chars().count() <= 3;
    let a = clean(inner);
    (looks && !a.is_empty() && !is_placeholder(&a)).then_some(a)
}

/// The later of the last math segment (its right-hand side after a top-level `=`) and the
/// last number.
fn last_math_or_number(text: &str) -> Option<String> {
    let cs: Vec<char> = text.chars().collect();
    let mut last_seg: Option<(String, usize)> = None;
    let mut i = 0;
    while i < cs.len() {
        if cs[i] == '$' || (cs[i] == '\\' && matches!(cs.get(i + 1), Some('(' | '['))) {
            if let Some((seg, next)) = math_segment_at(&cs, i) {
                let seg = rhs_of_last_eq(&seg);
                if !seg.trim().is_empty() && !is_placeholder(&seg) {
                    last_seg = Some((seg.trim().to_string(), next));
                }
                i = next;
                continue;
            }
        }
        i += 1;
    }
    let last_num = NUMBER.find_iter(text).last().map(|m| {
        let end_chars = text.get(..m.end()).map_or(0, |p| p.chars().count());
        (m.as_str().trim_end_matches(',').to_string(), end_chars)
    });
    match (last_seg, last_num) {
        (Some((s, se)), Some((n, ne))) => Some(if ne > se { n } else { s }),
        (Some((s, _)), None) => Some(s),
        (None, Some((n, _))) => Some(n),
        (None, None) => None,
    }
}

/// The part after the last `=` outside brackets (`7 \times 8 = 56` → `56`), or all of `s`.
fn rhs_of_last_eq(s: &str) -> String {
    let cs: Vec<char> = s.chars().collect();
    let mut depth = 0i32;
    let mut cut = None;
    for (k, &c) in cs.iter().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '=' if depth == 0 => cut = Some(k),
            _ => {}
        }
    }
    match cut {
        Some(k) => cs[k + 1..].iter().collect(),
        None => s.to_string(),
    }
}
