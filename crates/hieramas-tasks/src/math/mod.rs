//! MATH grading: the final answer of a response and whether it means the gold answer.
//!
//! - [`extract_answer`] finds the final answer, trying in order: the last real `\boxed{…}` /
//!   `\fbox{…}` (nested braces); an "# Answer" / "**Final Answer**" heading and the line under
//!   it; the last "final answer is …" / "the answer is …" / "Answer: …" phrase (Minerva's "The
//!   final answer is $X$. I hope it is correct." included; its math segment, else its sentence);
//!   a bold final `**X**`; the last line ("Quotient: …", "… is 3√13 units."); a last line that
//!   is all math; the later of the last math segment (`$…$`, `\[…\]`; its part after `=`) and
//!   the last number. A format placeholder copied literally ("The answer is N" or "X",
//!   `\boxed{answer}`, `<answer>`, `[answer]`, "ANSWER") is no answer: the work before it is
//!   searched instead. Text after `</think>` is used when there is any.
//! - [`normalize`] spells an answer canonically: Unicode math as LaTeX (`π`, `√13`, `×`, `−`,
//!   `½`, `°`, `≤`, `∞`, `x²`), delimiters and boxes, `\left`/`\right`, `\dfrac`, `\text{}`,
//!   units, degrees, `\$`, `\%`, thousands separators, base subscripts, ordinals, repeating
//!   decimals, "or"/"and" lists, trailing `.`.
//! - [`equivalent`] compares by meaning: strings; option letters ("(C) Plane" is `C`); lists of
//!   answers in any order (`\pm` expanded); equations (`x = 5` is `5`; `y = 2x + 3` is
//!   `2x - y + 3 = 0`, proportional `lhs - rhs`) and inequalities (as intervals); tuples and
//!   intervals in order with their brackets, sets and unions in any order, matrices entry-wise
//!   (a one-row or one-column matrix is a tuple); numbers in a base (`52_8`; `52` for it, but
//!   not `52_9`); then scalars: text by its words, integers exactly (any length), rationals
//!   exactly by their residues modulo three primes (`2^{100} - 3` is not `2^{100} - 2`), other
//!   constants by value (radicals, π, complex numbers; relative tolerance 1e-6; a decimal
//!   response for an exact gold needs 6 significant digits; two decimals as written must be
//!   equal; a gold decimal with 2+ places is matched by an exact value that rounds to it),
//!   expressions in variables by their values at 9 seeded points (6 positive, 3 of mixed
//!   sign, which may differ across branch cuts).
//!
//! Every function here is total and bounded: no `str` is sliced at a byte index, the parser
//! refuses nesting deeper than a limit and answers longer than 2000 bytes, evaluation has a
//! work budget (`2^{2^{100}}` is infinite, `1000!` undefined), list matching and nesting are
//! capped, and each scalar is evaluated once per comparison; a 10 kB adversarial response
//! grades in about a millisecond (release).

mod equiv;
mod expr;
mod extract;
mod latex;
mod unicode;

use std::sync::LazyLock;

use regex::Regex;

/// Where each `open` closes (by position in `cs`), in one pass; unmatched ones are `None`.
fn partners(cs: &[char], open: char, close: char) -> Vec<Option<usize>> {
    let mut partner = vec![None; cs.len()];
    let mut stack = Vec::new();
    for (i, &c) in cs.iter().enumerate() {
        if c == open {
            stack.push(i);
        } else if c == close
            && let Some(o) = stack.pop()
        {
            partner[o] = Some(i);
        }
    }
    partner
}

pub use equiv::equivalent;
pub use extract::{extract_answer, is_placeholder, last_boxed};

/// What the grader read from a response and whether it is right.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub correct: bool,
    /// The extracted final answer, if any was found.
    pub extracted: Option<String>,
}

/// Grades `response` against the gold answer `gold`.
pub fn grade(response: &str, gold: &str) -> Verdict {
    let extracted = extract_answer(response);
    let correct = extracted.as_deref().is_some_and(|a| equivalent(a, gold));
    Verdict { correct, extracted }
}

/// The value of a numeric expression (numbers, `+ - * / ^`, `\frac`, `\sqrt`, `\pi`, `e`,
/// functions, implicit products), if it has no variables and a finite real value.
pub fn eval_number(s: &str) -> Option<f64> {
    let n = normalize(s);
    let e = latex::parse(&n)?;
    let mut vars = std::collections::BTreeSet::new();
    e.vars(&mut vars);
    if !vars.is_empty() {
        return None;
    }
    let v = e.eval(&|_| None, &mut expr::Budget(100_000))?;
    (v.is_real() && v.re.is_finite()).then_some(v.re)
}

/// `r`'s captures in `s`, tried only where the (fast, DFA) `is_match` says so: capture
/// matching on long input is slower by a large constant.
fn caps<'h>(r: &Regex, s: &'h str) -> Option<regex::Captures<'h>> {
    r.is_match(s).then(|| r.captures(s)).flatten()
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("static regex {s:?}: {e}"))
}

static TEXT_CMD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mathsf|mbox|operatorname|hbox)\s*\{([^{}]*)\}",
    )
});
static UNIT_TEXT_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(.*?[\d}).])\s*\\(?:text|mbox|mathrm|textrm|textnormal)\s*\{\s*[a-zA-Z][a-zA-Z .^{}0-9/]*\}(?:\^\{?[23]\}?)?$",
    )
});
static UNIT_WORDS_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(-?[\d.,]+|-?\\frac\{\d+\}\{\d+\}|-?\d*\\sqrt\{\d+\})\s+(?:[a-zA-Z]{2,}\.?(?:\^\{?[23]\}?)?\s*)+$",
    )
});
static THOUSANDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:[a-zA-Z]\s*=\s*)?-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$|^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")
});
static BASE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^([0-9A-Za-z]+)(?:_\{?(\d+)\}?|\s*(?:in\s+)?base[\s-]*(\d+)|\s*\(base\s*(\d+)\))$")
});
/// `\ ` (a space) but not the end of a row break `\\ `.
static ESCAPED_SPACE: LazyLock<Regex> = LazyLock::new(|| re(r"(^|[^\\])\\ "));
static ORDINAL: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d+)(?:st|nd|rd|th)\b"));
static ARTICLE: LazyLock<Regex> = LazyLock::new(|| re(r"^(?i:the|an?)\s+"));
static REPEATING: LazyLock<Regex> = LazyLock::new(|| re(r"^(-?)(\d*)\.(\d*)\\overline\{(\d+)\}$"));
static LETTER_CHOICE: LazyLock<Regex> = LazyLock::new(|| re(r"^\(([A-Ea-e])\)$"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));
static OR_AND: LazyLock<Regex> = LazyLock::new(|| re(r"\s+(?:or|and)\s+"));

/// A canonical spelling of an answer, for string comparison (and the parser's input).
pub fn normalize(answer: &str) -> String {
    let mut s = unicode::to_latex(answer.trim()).replace(['\n', '\r', '\t'], " ");
    // Math delimiters and boxes around the whole answer.
    for _ in 0..4 {
        let t = s.trim().trim_end_matches('.').trim_end();
        let inner = [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")]
            .iter()
            .find_map(|(o, c)| {
                t.strip_prefix(o)
                    .and_then(|r| r.strip_suffix(c))
                    .filter(|_| t.len() >= o.len() + c.len())
            })
            .map(str::to_string)
            .or_else(|| {
                (t.starts_with("\\boxed") || t.starts_with("\\fbox"))
                    .then(|| last_boxed(t))
                    .flatten()
            })
            .or_else(|| brace_group(t));
        match inner {
            Some(i) if i.trim() != t => s = i,
            _ => break,
        }
    }
    for (from, to) in [
        ("\\right.", ""),
        ("\\left.", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\! ", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\qquad", " "),
        ("\\quad", " "),
        ("~", " "),
        ("{,}", ","),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\dbinom", "\\binom"),
        ("\\tbinom", "\\binom"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\leqslant", "\\le "),
        ("\\geqslant", "\\ge "),
        ("\\leq", "\\le "),
        ("\\geq", "\\ge "),
        ("\\neq", "\\ne "),
        ("\\varnothing", "\\emptyset "),
        ("\\lbrace", "\\{"),
        ("\\rbrace", "\\}"),
        ("\\vert", "|"),
        ("\\lvert", "|"),
        ("\\rvert", "|"),
        ("\\tfrac", "\\frac"),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    if s.contains("\\ ") {
        s = ESCAPED_SPACE.replace_all(&s, "$1 ").into_owned();
    }
    let mut t = s.trim().to_string();
    // The rules for the shape of a whole answer (units, bases, ordinals …) are for short
    // answers: on long text they would only cost time.
    let short = t.len() <= SHORT;
    if let Some(c) = short.then(|| caps(&UNIT_TEXT_AT_END, &t)).flatten() {
        t = c[1].to_string();
    }
    for _ in 0..4 {
        let u = TEXT_CMD.replace_all(&t, "$1");
        if u == t {
            break;
        }
        t = u.into_owned();
    }
    t = t
        .trim()
        .trim_end_matches(['.', ','])
        .trim_start_matches(':')
        .trim()
        .to_string();
    // "≈ 3.14" as an answer: the value.
    if let Some(rest) = t.strip_prefix("\\approx") {
        t = rest.trim().to_string();
    }
    if short {
        t = answer_shape(t);
    }
    if t.contains(" or ") || t.contains(" and ") {
        t = OR_AND.replace_all(&t, ",").into_owned();
    }
    t = collapse_spaces(&t);
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    if t.contains("-.") || t.contains("{.") || t.contains("(.") {
        t = t
            .replace("-.", "-0.")
            .replace("{.", "{0.")
            .replace("(.", "(0.");
    }
    if let Some(c) = short.then(|| caps(&LETTER_CHOICE, &t)).flatten() {
        t = c[1].to_uppercase();
    }
    if t.chars().all(char::is_alphabetic) {
        t = t.to_lowercase();
    }
    t
}

/// The inside of `{…}` when the braces enclose all of `s`.
fn brace_group(s: &str) -> Option<String> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let mut depth = 0i32;
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0).then(|| inner.to_string())
}

/// Spaces removed, except one between letters (`\sin x`, `a b`), which they separate.
fn collapse_spaces(s: &str) -> String {
    let s = SPACES.replace_all(s, " ");
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (k, &c) in cs.iter().enumerate() {
        if c == ' ' {
            let prev = k.checked_sub(1).and_then(|j| cs.get(j));
            let next = cs.get(k + 1);
            if prev.is_some_and(|p| p.is_alphabetic()) && next.is_some_and(|n| n.is_alphabetic()) {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `0.\overline{3}` as `\frac{1}{3}`, `1.2\overline{45}` as a fraction likewise (up to 15
/// digits).
fn repeating_decimal(s: &str) -> Option<String> {
    let c = caps(&REPEATING, s)?;
    let (whole, fixed, rep) = (&c[2], &c[3], &c[4]);
    if whole.len() + fixed.len() + rep.len() > 15 {
        return None;
    }
    let all: u64 = format!("{whole}{fixed}{rep}").parse().ok()?;
    let head: u64 = format!("{whole}{fixed}0").parse::<u64>().ok()? / 10;
    let den = (10u64.checked_pow(u32::try_from(rep.len()).ok()?)? - 1)
        .checked_mul(10u64.checked_pow(u32::try_from(fixed.len()).ok()?)?)?;
    Some(format!(
        "{}\\frac{{{}}}{{{den}}}",
        &c[1],
        all.checked_sub(head)?
    ))
}

/// Answers longer than this (bytes) skip the whole-answer shape rules of [`normalize`].
const SHORT: usize = 300;

/// Units after a number, ordinals, a leading article, a base subscript, a repeating decimal,
/// thousands separators.
fn answer_shape(mut t: String) -> String {
    if let Some(c) = caps(&UNIT_WORDS_AT_END, &t) {
        t = c[1].to_string();
    }
    if ORDINAL.is_match(&t) {
        t = ORDINAL.replace_all(&t, "$1").into_owned();
    }
    if let Some(m) = ARTICLE.find(&t) {
        t = t.get(m.end()..).unwrap_or_default().to_string();
    }
    if let Some(c) = caps(&UNIT_WORDS_AT_END, &t) {
        t = c[1].to_string();
    }
    // A base subscript in one spelling: `52_8`, `52_{8}`, `52 in base 8` are `52_{8}`.
    if let Some(c) = caps(&BASE, &t) {
        let base = (2..=4).find_map(|k| c.get(k)).map_or("", |m| m.as_str());
        t = format!("{}_{{{base}}}", &c[1]);
    }
    if let Some(f) = repeating_decimal(&t) {
        t = f;
    }
    if THOUSANDS.is_match(&t) {
        t = t.replace([',', ' '], "");
    }
    t
}
