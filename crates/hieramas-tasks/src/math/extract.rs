//! The final answer of a free-text response.

use std::sync::LazyLock;

use regex::Regex;

use super::latex::has_variables;
use super::{caps, re};

fn starts_with_at(cs: &[char], i: usize, pat: &str) -> bool {
    (i..).zip(pat.chars()).all(|(k, p)| cs.get(k) == Some(&p))
}

/// Where the contents of every closed `\boxed{…}` / `\fbox{…}` (balanced braces) and unbraced
/// `\boxed 5` (to the next `$` or line end) lie in `cs`, in order of where they start.
fn box_spans(cs: &[char]) -> Vec<(usize, usize)> {
    let partner = super::partners(cs, '{', '}');
    let mut out = Vec::new();
    for i in 0..cs.len() {
        if cs[i] != '\\' {
            continue;
        }
        let name_len = if starts_with_at(cs, i, "\\boxed") {
            6
        } else if starts_with_at(cs, i, "\\fbox") {
            5
        } else {
            continue;
        };
        let mut j = i + name_len;
        while cs.get(j) == Some(&' ') {
            j += 1;
        }
        if cs.get(j) == Some(&'{') {
            if let Some(end) = partner[j] {
                out.push((j + 1, end));
            }
            continue;
        }
        if j > i + name_len {
            let start = j;
            while j < cs.len() && cs[j] != '$' && cs[j] != '\n' {
                j += 1;
            }
            if j > start {
                out.push((start, j));
            }
        }
    }
    out
}

/// The last box whose content is neither empty nor a placeholder. Contents are built one at a
/// time, and a long one is no placeholder: nested boxes would make building them all
/// quadratic.
fn last_real_box(cs: &[char]) -> Option<String> {
    box_spans(cs).into_iter().rev().find_map(|(a, b)| {
        let s: String = cs[a..b].iter().collect();
        let t = s.trim();
        let real = !t.is_empty() && (b - a > 100 || !is_placeholder(t));
        real.then(|| t.to_string())
    })
}

/// The content of the last `\boxed{…}` or `\fbox{…}` (balanced braces), or of an unbraced
/// `\boxed 5` (up to the next `$` or line end).
pub fn last_boxed(text: &str) -> Option<String> {
    let cs: Vec<char> = text.chars().collect();
    let (a, b) = box_spans(&cs).pop()?;
    Some(cs[a..b].iter().collect())
}

/// Whether `s` is a format placeholder copied literally from a prompt ("answer", `<answer>`,
/// "[your answer]", `\boxed{answer}`, "ANSWER", "...") rather than an answer. Single letters
/// are answers here ("(C)", "x"); [`extract_answer`] also skips a bare `N` or `X` right after
/// "the answer is".
pub fn is_placeholder(s: &str) -> bool {
    let mut t = s.trim().to_string();
    for _ in 0..4 {
        let before = t.clone();
        t = t
            .trim()
            .trim_matches(|c: char| {
                matches!(c, '$' | '*' | '<' | '>' | '[' | ']' | '"' | '\'' | '`')
            })
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
        r"(?i)\b(?:the\s+)?(?:final\s+)?answer\s*(?:\*\*|__)?\s*(?:is|:|=|would be|will be|should be|to the problem is|to this problem is)\s*(?:\*\*|__)?\s*:?",
    )
});
static HEADING: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?im)^\s*(?:#+\s*|\*\*)(?:final\s+)?answer\s*:?\s*(?:\*\*)?\s*:?\s*$"));
static FILLER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?i:(?:therefore|thus|then|hence|so|simply|just|clearly|exactly|equal to|given by|approximately|about|indeed)\s*,?\s+)+",
    )
});
/// A number in plain text: `-12`, `1,200`, `3/4`, `.5`, and the Unicode forms models write
/// outside math mode (`√3/2`, `2√13`, `3π`, `−4`, `½`).
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"[-−]?(?:\d[\d,]*(?:\.\d+)?\s?)?(?:√\s?(?:\d+(?:\.\d+)?|\([^()\n]{1,40}\))|π)(?:\s?/\s?\d+)?|[-−]?\d[\d,]*(?:\.\d+)?(?:/\d+)?|[-−]?\.\d+|[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞]",
    )
});
static BOLD: LazyLock<Regex> = LazyLock::new(|| re(r"\*\*([^*\n]{1,200})\*\*"));
static DIGIT: LazyLock<Regex> = LazyLock::new(|| re(r"\d"));
static LABEL_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*[A-Za-z][A-Za-z ]{1,30}:\s*(\S.*)$"));
static IS_CLAUSE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:is|are|equals|was|be)\s+(?:equal\s+to\s+)?(?:(?:an?|the)\s+)?(\S.*)$")
});

/// The final answer of a free-text response (see the module doc for the order of attempts).
pub fn extract_answer(response: &str) -> Option<String> {
    // A reasoning model's answer follows its thinking.
    let text = response
        .rsplit_once("</think>")
        .map(|(_, after)| after)
        .filter(|a| !a.trim().is_empty())
        .unwrap_or(response);
    let cs: Vec<char> = text.chars().collect();
    if let Some(b) = last_real_box(&cs) {
        return Some(b);
    }
    // "# Answer" on a line of its own, the answer below it.
    if let Some(m) = HEADING.find_iter(text).last()
        && let Some(a) = text.get(m.end()..).and_then(first_nonempty_line)
    {
        let a = clean(&a);
        if !a.is_empty() && !is_placeholder(&a) {
            return Some(a);
        }
    }
    // Answer phrases, last first; each one's answer ends where the next phrase begins.
    let spans: Vec<(usize, usize)> = PHRASE
        .find_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    let mut work_end = text.len();
    for (k, &(start, end)) in spans.iter().enumerate().rev() {
        let stop = spans.get(k + 1).map_or(text.len(), |s| s.0);
        let Some(rest) = text.get(end..stop) else {
            continue;
        };
        match phrase_answer(rest) {
            Ok(a) => return Some(a),
            // A placeholder after the phrase: the answer is in the work before it.
            Err(true) => {
                if k + 1 == spans.len() || spans.get(k + 1).is_some_and(|s| s.0 == work_end) {
                    work_end = start;
                }
            }
            Err(false) => {}
        }
    }
    let work = text.get(..work_end).unwrap_or(text);
    if let Some(a) = bold_final(work) {
        return Some(a);
    }
    if let Some(a) = last_line_answer(work) {
        return Some(a);
    }
    if let Some(a) = math_only_last_line(work) {
        return Some(a);
    }
    last_math_or_number(work)
}

static NAME_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[a-zA-Z]|[A-Z]{2,3}|\\[a-zA-Z]+|\\(?:mathbf|vec|bold|boldsymbol|overline|hat|mathrm)\{[a-zA-Z]{1,3}\}|m?\\angle ?[A-Z]{1,3})(?:_\{?[\w\\]+\}?)?(?:\([a-zA-Z, ]*\))?$|^\((?:\s*[a-zA-Z]\s*,)+\s*[a-zA-Z]\s*\)$",
    )
});
/// `\le`, `\ne`, … (not `\left`), `<`, `>`.
static RELATION: LazyLock<Regex> =
    LazyLock::new(|| re(r"\\(?:ne|le|ge|leq|geq|neq|approx|lt|gt)(?:[^a-zA-Z]|$)|[<>]"));
static CLAUSE_END: LazyLock<Regex> = LazyLock::new(|| {
    re(r",\s+(?:so|and|which|since|because|as|but|where|thus|hence|while|giving)\b")
});
static WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?:^|[^\\A-Za-z])[A-Za-z]{3,}"));

/// A last line that is all math (a bare answer such as `\frac{x+1}{x-1}` or `7 \cdot 8 = 56`,
/// no words): the line, or its part after the last `=`.
fn math_only_last_line(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let delimited = ["$", "\\[", "\\]", "\\(", "\\)", "\\end", "&", "\\\\"]
        .iter()
        .any(|d| line.contains(d));
    if line.len() > 200 || line.ends_with(':') || delimited || WORD.is_match(line) {
        return None;
    }
    let a = clean(&rhs_of_last_eq(line));
    (!a.is_empty() && !is_placeholder(&a)).then_some(a)
}

fn first_nonempty_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The answer in the last line: "Quotient: x^2 + 1", "So the distance is 3√13 units."
fn last_line_answer(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    if line.chars().count() > 300 {
        return None;
    }
    let cs: Vec<char> = line.chars().collect();
    let (candidate, labelled) = if let Some(c) = caps(&LABEL_LINE, line) {
        (c.get(1)?.as_str().to_string(), true)
    } else {
        // The last sentence's clause after its first "is".
        let mut start = 0;
        for k in 0..cs.len() {
            let end_here = (cs[k] == '.' || cs[k] == '!' || cs[k] == '?')
                && cs.get(k + 1).is_some_and(|c| c.is_whitespace())
                && k + 2 < cs.len();
            if end_here && !math_open_before(&cs, k) {
                start = k + 1;
            }
        }
        let sentence: String = cs[start..].iter().collect();
        let c = caps(&IS_CLAUSE, sentence.trim())?;
        let clause = c.get(1)?.as_str();
        // Up to a following clause: "1/4, so we are done." (plain text only: math segments
        // are taken whole below).
        let plain = !clause.contains('$') && !clause.contains('\\');
        let clause = CLAUSE_END
            .find(clause)
            .filter(|_| plain)
            .and_then(|m| clause.get(..m.start()))
            .unwrap_or(clause);
        (clause.to_string(), false)
    };
    let a = if candidate.contains('$') || candidate.contains("\\(") {
        last_math_or_number(&candidate)?
    } else if labelled
        || (candidate.split_whitespace().count() <= 5 && candidate.chars().count() <= 60)
    {
        candidate
    } else {
        return None;
    };
    let a = clean(&a);
    (!a.is_empty() && !is_placeholder(&a)).then_some(a)
}

/// Whether a `$` math segment is open at position `k` (an odd number of `$` before it).
fn math_open_before(cs: &[char], k: usize) -> bool {
    cs[..k].iter().filter(|&&c| c == '$').count() % 2 == 1
}

fn first_math_segment(cs: &[char]) -> Option<String> {
    (0..cs.len()).find_map(|i| {
        (cs[i] == '$' || cs[i] == '\\')
            .then(|| math_segment_at(cs, i).map(|(s, _)| s))
            .flatten()
    })
}

/// The answer right after an answer phrase: a math segment, or the text to the sentence end;
/// `Err(true)` for a placeholder, `Err(false)` for nothing.
fn phrase_answer(rest: &str) -> Result<String, bool> {
    let cs: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < cs.len() && (cs[i].is_whitespace() || cs[i] == '*' || cs[i] == '_') {
        i += 1;
    }
    let mut cs = &cs[i..];
    // "the answer is therefore 5"
    let head: String = cs.iter().take(40).collect();
    if let Some(m) = FILLER.find(&head) {
        let skip = head.get(..m.end()).map_or(0, |h| h.chars().count());
        cs = &cs[skip..];
    }
    let line_end = cs.iter().position(|&c| c == '\n').unwrap_or(cs.len());
    let choice = cs.len() >= 3
        && cs[0] == '('
        && cs[1].is_ascii_uppercase()
        && cs[2] == ')'
        && cs.get(3).is_none_or(|c| !c.is_alphanumeric());
    let ans = if choice {
        cs[..3].iter().collect()
    } else if let Some((seg, _)) = math_segment_at(cs, 0) {
        seg
    } else if let Some(seg) = first_math_segment(&cs[..line_end]) {
        seg
    } else {
        // To the end of the sentence: a line end, or a `.` before a space or the end.
        let mut end = line_end;
        for k in 0..line_end {
            if cs[k] == '.' && cs.get(k + 1).is_none_or(|c| c.is_whitespace()) {
                end = k;
                break;
            }
        }
        cs[..end].iter().collect()
    };
    let ans = clean(&ans);
    if ans.is_empty() || ans.chars().count() > 300 {
        return Err(false);
    }
    if is_placeholder(&ans) || ans == "N" || ans == "X" {
        return Err(true);
    }
    Ok(ans)
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
    // In the last paragraph, and a result rather than a heading.
    let looks = !after.contains("\n\n") && inner.chars().count() <= 60;
    let a = clean(inner);
    (looks && !a.is_empty() && !is_placeholder(&a)).then_some(a)
}

/// The later of the last math segment (its right-hand side after a top-level `=`) and the
/// last number.
fn last_math_or_number(text: &str) -> Option<String> {
    let cs: Vec<char> = text.chars().collect();
    let mut last_seg: Option<(String, usize)> = None;
    // Segments with a relation (`x \neq 0`) count only when there is no other.
    let mut last_rel: Option<(String, usize)> = None;
    // The text with each math segment as one space; positions are counted in it.
    let mut outside = String::new();
    let mut out_len = 0usize;
    let mut i = 0;
    while i < cs.len() {
        if (cs[i] == '$' || (cs[i] == '\\' && matches!(cs.get(i + 1), Some('(' | '['))))
            && let Some((seg, next)) = math_segment_at(&cs, i)
        {
            let relation = RELATION.is_match(&seg);
            let seg = rhs_of_last_eq(&seg);
            outside.push(' ');
            out_len += 1;
            if !seg.trim().is_empty() && !is_placeholder(&seg) {
                let slot = if relation {
                    &mut last_rel
                } else {
                    &mut last_seg
                };
                *slot = Some((seg.trim().to_string(), out_len));
            }
            i = next;
            continue;
        }
        outside.push(cs[i]);
        out_len += 1;
        i += 1;
    }
    // Numbers outside math segments (those inside belong to their segment).
    let last_num = NUMBER.find_iter(&outside).last().map(|m| {
        let end_chars = outside.get(..m.end()).map_or(0, |p| p.chars().count());
        (m.as_str().trim_end_matches(',').to_string(), end_chars)
    });
    match (last_seg.or(last_rel), last_num) {
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
    let mut cuts = Vec::new();
    for (k, &c) in cs.iter().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '=' if depth == 0 => cuts.push(k),
            _ => {}
        }
    }
    let Some(&k) = cuts.last() else {
        return s.to_string();
    };
    // The value on the right (`x = 5`, `7 \cdot 8 = 56`, `a + b = -1`), unless this is an
    // equation: letters on the left (not just a name) and `0` or letters on the right
    // (`5x - 7y + 4 = 0`).
    let from = cuts.len().checked_sub(2).map_or(0, |j| cuts[j] + 1);
    let lhs: String = cs[from..k].iter().collect();
    let lhs = lhs.trim();
    let rhs: String = cs[k + 1..].iter().collect();
    let equation = !NAME_LIKE.is_match(lhs)
        && has_variables(lhs)
        && (rhs.trim() == "0" || has_variables(&rhs));
    if equation { s.to_string() } else { rhs }
}
