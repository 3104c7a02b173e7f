//! MATH grading: the final answer of a response and whether it equals the gold answer.
//!
//! Extraction takes the last `\boxed{…}` (balanced braces; `\fbox` and the unbraced `\boxed 5`
//! too), else the last "the answer is …" / "answer: …", else the last number. Equivalence
//! normalises LaTeX (`\left`/`\right`, `\dfrac`/`\tfrac`, `\text{}`, units, degrees, `\$`,
//! `\%`, thousands separators, trailing `.`, `x = 5` → `5`), then compares the strings, then
//! the values of numeric expressions (fractions, decimals, radicals, π; relative tolerance
//! 1e-6), then tuples, intervals and sets element by element.

use std::sync::LazyLock;

use regex::Regex;

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

/// The content of the last `\boxed{…}` or `\fbox{…}` (balanced braces), or of an unbraced
/// `\boxed 5` (up to the next `$` or line end).
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| (i, m.len())))
        .max_by_key(|&(i, _)| i)?;
    let rest = &text[start.0 + start.1..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(inner[..i].to_string());
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    if let Some(unbraced) = rest.strip_prefix(' ') {
        let end = unbraced.find(['$', '\n']).unwrap_or(unbraced.len());
        let s = unbraced[..end].trim();
        return (!s.is_empty()).then(|| s.to_string());
    }
    None
}

static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:final answer|the answer)\s*(?:is|:)\s*:?\s*(.+)|answer\s*:\s*(.+)")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// The final answer of a free-text response (see the module doc for the order of attempts).
pub fn extract_answer(response: &str) -> Option<String> {
    if let Some(b) = last_boxed(response) {
        let b = b.trim();
        if !b.is_empty() {
            return Some(b.to_string());
        }
    }
    if let Some(c) = ANSWER_IS.captures_iter(response).last() {
        let raw = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        let s = raw
            .trim()
            .trim_matches(|c| c == '*' || c == '$')
            .trim()
            .trim_end_matches('.')
            .trim_matches(|c| c == '*' || c == '$')
            .trim();
        if !s.is_empty() {
            return Some(s.to_string());
        }
    }
    NUMBER
        .find_iter(response)
        .last()
        .map(|m| m.as_str().trim_end_matches(',').to_string())
}

static TEXT_CMD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static UNIT_TEXT_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(.*?[\d}).])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .^{}0-9]*\}$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static UNIT_WORDS_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(-?[\d.,]+|-?\\frac\{\d+\}\{\d+\})\s*(?:[a-zA-Z]+\.?(?:\^\{?[23]\}?)?\s*)+$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static THOUSANDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*([^=]+)$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static FRAC_SHORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\\frac(\d|\{[^{}]*\})(\d|\{[^{}]*\})")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static SQRT_SHORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\sqrt(\d)").unwrap_or_else(|e| panic!("static regex: {e}")));
static SIMPLE_SLASH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(-?\d+)/(\d+)$").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static LETTER_CHOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\(([A-Ea-e])\)$").unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// A canonical spelling of an answer, for string comparison.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().replace(['\n', '\r'], " ");
    // Math delimiters around the whole answer, then a box around it.
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if s.len() >= open.len() + close.len() && s.starts_with(open) && s.ends_with(close) {
            s = s[open.len()..s.len() - close.len()].trim().to_string();
        }
    }
    if s.starts_with("\\boxed") || s.starts_with("\\fbox") {
        if let Some(b) = last_boxed(&s) {
            s = b;
        }
    }
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", " "),
        ("~", " "),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\degree", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\le ", "\\leq "),
        ("\\ge ", "\\geq "),
    ] {
        s = s.replace(from, to);
    }
    let mut t = s.trim().to_string();
    if let Some(c) = UNIT_TEXT_AT_END.captures(&t) {
        t = c[1].to_string();
    }
    t = TEXT_CMD.replace_all(&t, "$1").into_owned();
    t = t.trim().trim_end_matches('.').trim().to_string();
    if let Some(c) = ASSIGNMENT.captures(&t) {
        t = c[1].trim().to_string();
    }
    if let Some(c) = UNIT_WORDS_AT_END.captures(&t) {
        t = c[1].to_string();
    }
    if THOUSANDS.is_match(&t) {
        t = t.replace(',', "");
    }
    t.retain(|c| !c.is_whitespace());
    t = FRAC_SHORT
        .replace_all(&t, |c: &regex::Captures| {
            format!("\\frac{}{}", braced(&c[1]), braced(&c[2]))
        })
        .into_owned();
    t = SQRT_SHORT.replace_all(&t, "\\sqrt{$1}").into_owned();
    if let Some(c) = SIMPLE_SLASH.captures(&t) {
        t = format!("\\frac{{{}}}{{{}}}", &c[1], &c[2]);
    }
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    t = t.replace("-.", "-0.").replace("{.", "{0.");
    if let Some(c) = LETTER_CHOICE.captures(&t) {
        t = c[1].to_uppercase();
    }
    if t.chars().all(|c| c.is_alphabetic()) {
        t = t.to_lowercase();
    }
    t
}

fn braced(s: &str) -> String {
    if s.starts_with('{') {
        s.to_string()
    } else {
        format!("{{{s}}}")
    }
}

/// Whether two answers mean the same thing (see the module doc).
pub fn equivalent(pred: &str, gold: &str) -> bool {
    equivalent_normalized(&normalize(pred), &normalize(gold), 0)
}

fn equivalent_normalized(p: &str, g: &str, depth: usize) -> bool {
    if p == g {
        return true;
    }
    if p.is_empty() || g.is_empty() || depth > 4 {
        return false;
    }
    if let (Some(a), Some(b)) = (eval_number(p), eval_number(g)) {
        return close(a, b);
    }
    let (ps, gs) = (structure(p), structure(g));
    match (ps, gs) {
        (Some(ps), Some(gs)) => {
            if ps.open != gs.open || ps.close != gs.close || ps.items.len() != gs.items.len() {
                return false;
            }
            if ps.ordered {
                ps.items
                    .iter()
                    .zip(&gs.items)
                    .all(|(a, b)| equivalent_normalized(a, b, depth + 1))
            } else {
                // Unordered: a matching of pred items to gold items.
                let mut used = vec![false; gs.items.len()];
                ps.items.iter().all(|a| {
                    let hit = gs
                        .items
                        .iter()
                        .enumerate()
                        .find(|(j, b)| !used[*j] && equivalent_normalized(a, b, depth + 1));
                    match hit {
                        Some((j, _)) => {
                            used[j] = true;
                            true
                        }
                        None => false,
                    }
                })
            }
        }
        _ => false,
    }
}

fn close(a: f64, b: f64) -> bool {
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    if a.fract() == 0.0 && b.fract() == 0.0 {
        // Whole numbers (counts, years, large products) must match exactly.
        return a == b;
    }
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-3)
}

/// A bracketed or comma-separated answer split at its top-level commas (or `\cup`).
struct Structure {
    open: &'static str,
    close: &'static str,
    items: Vec<String>,
    ordered: bool,
}

fn structure(s: &str) -> Option<Structure> {
    let unions = split_top(s, "\\cup");
    if unions.len() > 1 {
        return Some(Structure {
            open: "",
            close: "\\cup",
            items: unions,
            ordered: true,
        });
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
        return Some(Structure {
            open: "{",
            close: "}",
            items: split_top(inner, ","),
            ordered: false,
        });
    }
    let opens: [(&str, &'static str); 2] = [("(", "("), ("[", "[")];
    let closes: [(&str, &'static str); 2] = [(")", ")"), ("]", "]")];
    for (o, on) in opens {
        for (c, cn) in closes {
            if let Some(inner) = s.strip_prefix(o).and_then(|r| r.strip_suffix(c)) {
                if !balanced(inner) {
                    continue;
                }
                let items = split_top(inner, ",");
                if items.len() > 1 {
                    return Some(Structure {
                        open: on,
                        close: cn,
                        items,
                        ordered: true,
                    });
                }
            }
        }
    }
    let items = split_top(s, ",");
    (items.len() > 1).then_some(Structure {
        open: "",
        close: "",
        items,
        ordered: false,
    })
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// Splits at `sep` where no bracket is open.
fn split_top(s: &str, sep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut last = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && s[i..].starts_with(sep) {
            out.push(s[last..i].to_string());
            i += sep.len();
            last = i;
            continue;
        }
        i += 1;
    }
    out.push(s[last..].to_string());
    out
}

/// The value of a numeric expression: numbers, `+ - * /`, `^`, parentheses and braces,
/// `\frac`, `\sqrt` (and `\sqrt[n]`), `\pi`, `\cdot`, `\times`, implicit products. `None` for
/// anything else (variables, commas, …).
pub fn eval_number(s: &str) -> Option<f64> {
    let mut p = Parser {
        s: s.as_bytes(),
        i: 0,
        s_str: s,
    };
    let v = p.expr()?;
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    s_str: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek_str(&self, t: &str) -> bool {
        self.s_str[self.i..].starts_with(t)
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.peek_str(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Option<f64> {
        let mut v = self.term()?;
        loop {
            if self.eat("+") {
                v += self.term()?;
            } else if self.peek_str("-") {
                self.i += 1;
                v -= self.term()?;
            } else {
                return Some(v);
            }
        }
    }
    fn term(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            if self.eat("*") || self.eat("\\cdot") || self.eat("\\times") {
                v *= self.unary()?;
            } else if self.eat("/") || self.eat("\\div") {
                v /= self.unary()?;
            } else if self.starts_atom() {
                v *= self.power()?;
            } else {
                return Some(v);
            }
        }
    }
    fn unary(&mut self) -> Option<f64> {
        if self.eat("-") {
            return Some(-self.unary()?);
        }
        if self.eat("+") {
            return self.unary();
        }
        self.power()
    }
    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.eat("^") {
            let e = if self.peek_str("{") || self.peek_str("(") {
                self.atom()?
            } else {
                self.digit_atom()?
            };
            return Some(base.powf(e));
        }
        Some(base)
    }
    fn starts_atom(&self) -> bool {
        matches!(self.s.get(self.i), Some(b'0'..=b'9' | b'(' | b'{' | b'.'))
            || self.peek_str("\\frac")
            || self.peek_str("\\sqrt")
            || self.peek_str("\\pi")
    }
    fn digit_atom(&mut self) -> Option<f64> {
        let c = *self.s.get(self.i)?;
        c.is_ascii_digit().then(|| {
            self.i += 1;
            f64::from(c - b'0')
        })
    }
    fn braced(&mut self) -> Option<f64> {
        if !self.eat("{") {
            return self.digit_atom();
        }
        let v = self.expr()?;
        self.eat("}").then_some(v)
    }
    fn atom(&mut self) -> Option<f64> {
        if self.eat("(") {
            let v = self.expr()?;
            return self.eat(")").then_some(v);
        }
        if self.peek_str("{") {
            return self.braced();
        }
        if self.eat("\\frac") {
            let n = self.braced()?;
            let d = self.braced()?;
            return Some(n / d);
        }
        if self.eat("\\sqrt") {
            let root = if self.eat("[") {
                let r = self.expr()?;
                if !self.eat("]") {
                    return None;
                }
                r
            } else {
                2.0
            };
            let v = self.braced()?;
            return Some(v.powf(1.0 / root));
        }
        if self.eat("\\pi") {
            return Some(std::f64::consts::PI);
        }
        let start = self.i;
        while matches!(self.s.get(self.i), Some(b'0'..=b'9' | b'.')) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        self.s_str[start..self.i].parse().ok()
    }
}
