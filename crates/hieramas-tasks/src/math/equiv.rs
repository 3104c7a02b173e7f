//! Equivalence by meaning of two normalised answers.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use super::expr::{Budget, C, Expr, residues};
use super::{caps, eval_number, latex, normalize, re};

/// Items beyond which lists are compared in order only (an unordered matching is quadratic).
const MAX_UNORDERED: usize = 64;
/// Nesting of lists inside tuples inside sets … that is compared.
const MAX_NESTING: usize = 8;
/// Evaluation work for one call of [`equivalent`] (expression nodes visited).
const EVAL_BUDGET: u64 = 2_000_000;
/// Relative tolerance for numbers that are not both whole.
const REL_TOL: f64 = 1e-6;

/// Whether two answers mean the same thing (see the module doc). The pred/gold roles differ
/// in one rule only: a gold written as a decimal (`0.333`) is matched by a more precise
/// response (`\frac13`) that rounds to it.
pub fn equivalent(pred: &str, gold: &str) -> bool {
    let p = normalize(pred);
    let g = normalize(gold);
    if p.is_empty() || g.is_empty() {
        return false;
    }
    if p == g {
        return true;
    }
    let mut cx = Cx {
        budget: Budget(EVAL_BUDGET),
        calls: 0,
        cache: HashMap::new(),
        plain: HashMap::new(),
    };
    cx.any(&p, &g, 0)
}

struct Cx {
    budget: Budget,
    calls: u32,
    /// Each scalar spelling's [`Values`], computed once (list matching compares every pair).
    cache: HashMap<String, Values>,
    /// Whether a spelling is a plain scalar (no list, relation, structure or `\pm`), likewise.
    plain: HashMap<String, bool>,
}

/// What a scalar answer is, for comparison.
#[derive(Clone)]
enum Values {
    /// Words: compared as text.
    Text,
    /// Not parsed: equal only as a string.
    Unparsed,
    /// No variables: its value, if defined, and its residues if it is rational.
    Constant(Option<C>, Option<[u64; 3]>),
    /// Its values at the seeded points, and whether it has a branch cut.
    Function(Vec<Option<C>>, bool),
}

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[a-zA-Z]|[A-Z]{2,3}|\\[a-zA-Z]+|\\(?:mathbf|vec|bold|boldsymbol|overline|hat|mathrm)\{[a-zA-Z]{1,3}\}|m?\\angle ?[A-Z]{1,3})(?:_\{?[\w\\]+\}?)?(?:\([a-zA-Z,]*\))?$|^\((?:[a-zA-Z](?:_\{?\w+\}?)?,)+[a-zA-Z](?:_\{?\w+\}?)?\)$",
    )
});
/// The relations an answer may state.
const RELS: [&str; 8] = ["=", "\\le", "\\ge", "<", ">", "\\ne", "\\in", "\\approx"];

static BASE_FORM: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9A-Za-z]+)_\{(\d+)\}$"));
static CHOICE: LazyLock<Regex> = LazyLock::new(|| re(r"^\(([A-Z])\)"));
static INT: LazyLock<Regex> = LazyLock::new(|| re(r"^(-?)0*(\d+)$"));
static DECIMAL: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d*\.(\d+)$"));
static MIXED: LazyLock<Regex> = LazyLock::new(|| re(r"^(-?)(\d+)\\frac\{?(\d+)\}?\{?(\d+)\}?$"));
static MATRIX: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\\begin\{([pbBvV]?matrix|array)\}(?:\{[lcr|]*\})?(.*)\\end\{([pbBvV]?matrix|array)\}$")
});

/// Splits at top-level (no bracket open) occurrences of any of `seps`; a separator that is a
/// command (`\cup`) does not match the start of a longer command. Returns the pieces and the
/// separators between them.
fn split_top(s: &str, seps: &[&str]) -> (Vec<String>, Vec<&'static str>) {
    let cs: Vec<char> = s.chars().collect();
    let seps: Vec<(Vec<char>, &str)> = seps.iter().map(|p| (p.chars().collect(), *p)).collect();
    let mut pieces = Vec::new();
    let mut found = Vec::new();
    let mut depth = 0i32;
    let mut last = 0;
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            let hit = seps.iter().find(|(p, _)| {
                cs.get(i..i + p.len()) == Some(p.as_slice())
                    && !(p.first() == Some(&'\\')
                        && p.get(1).is_some_and(char::is_ascii_alphabetic)
                        && cs.get(i + p.len()).is_some_and(char::is_ascii_alphabetic))
            });
            if let Some((p, name)) = hit {
                pieces.push(cs[last..i].iter().collect::<String>().trim().to_string());
                found.push(static_sep(name));
                i += p.len();
                last = i;
                continue;
            }
        }
        i += 1;
    }
    pieces.push(cs[last..].iter().collect::<String>().trim().to_string());
    (pieces, found)
}

/// The separators as `'static` strings (the callers pass literals).
fn static_sep(s: &str) -> &'static str {
    const ALL: [&str; 14] = [
        ",", "=", "\\le", "\\ge", "<", ">", "\\ne", "\\in", "\\cup", "\\\\", "&", "\\pm", "\\mp",
        ";",
    ];
    ALL.iter().find(|a| **a == s).copied().unwrap_or("?")
}

fn commas(s: &str) -> Vec<String> {
    split_top(s, &[","]).0
}

/// The partner of `s`'s first bracket is its last character.
fn wrapped(s: &str, open: char, close: char) -> Option<String> {
    let cs: Vec<char> = s.chars().collect();
    if cs.len() < 2 || cs.first() != Some(&open) || cs.last() != Some(&close) {
        return None;
    }
    let mut depth = 0i32;
    for (k, &c) in cs.iter().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 && k + 1 != cs.len() {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0).then(|| cs[1..cs.len() - 1].iter().collect())
}

enum Shape {
    /// A tuple or interval: its brackets matter, its items are in order.
    Seq(char, char, Vec<String>),
    Set(Vec<String>),
    Union(Vec<String>),
    Matrix(Vec<Vec<String>>),
}

fn shape(s: &str) -> Option<Shape> {
    let (parts, _) = split_top(s, &["\\cup"]);
    if parts.len() > 1 {
        return Some(Shape::Union(parts));
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
        if inner.trim().is_empty() {
            return Some(Shape::Set(Vec::new()));
        }
        return Some(Shape::Set(commas(inner)));
    }
    if s == "\\emptyset" {
        return Some(Shape::Set(Vec::new()));
    }
    if let Some(c) = caps(&MATRIX, s) {
        let (rows, _) = split_top(&c[2], &["\\\\"]);
        let mut m: Vec<Vec<String>> = rows.iter().map(|r| split_top(r, &["&"]).0).collect();
        while m
            .last()
            .is_some_and(|r| r.len() == 1 && r[0].trim().is_empty())
        {
            m.pop();
        }
        return Some(Shape::Matrix(m));
    }
    for open in ['(', '['] {
        for close in [')', ']'] {
            if let Some(inner) = wrapped(s, open, close) {
                let items = commas(&inner);
                if items.len() > 1 {
                    return Some(Shape::Seq(open, close, items));
                }
            }
        }
    }
    None
}

/// `a \pm b` as the two answers `a + b`, `a - b` (the first `\pm`/`\mp` only).
fn expand_pm(s: &str) -> Option<Vec<String>> {
    for (pm, a, b) in [("\\pm", "+", "-"), ("\\mp", "-", "+")] {
        if let Some((l, r)) = s.split_once(pm) {
            let l = l.trim_end();
            let plus = format!("{l}{a}{r}");
            let minus = format!("{l}{b}{r}");
            return Some(vec![plus, minus]);
        }
    }
    None
}

fn is_text(s: &str) -> bool {
    if s.len() > latex::MAX_PARSE_LEN {
        return true;
    }
    let toks = latex::tokenize(s);
    let mut run = 0;
    for t in &toks {
        if matches!(t, latex::Tok::Letter(c) if c.is_alphabetic()) {
            run += 1;
            if run >= 3 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// A text answer's words, lower case, without articles and filler nouns ("an even function"
/// is "even").
fn text_key(s: &str) -> String {
    const FILLER: [&str; 9] = [
        "a", "an", "the", "function", "is", "it", "answer", "graph", "shape",
    ];
    let lower: String = s
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .flat_map(char::to_lowercase)
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !FILLER.contains(w))
        .collect()
}

impl Cx {
    fn any(&mut self, p: &str, g: &str, depth: usize) -> bool {
        if p == g {
            return true;
        }
        self.calls += 1;
        if depth > MAX_NESTING || p.is_empty() || g.is_empty() || self.calls > 20_000 {
            return false;
        }
        // An option letter followed by the option's text: "(C) Plane" for "C".
        if g.len() == 1
            && g.chars().all(|c| c.is_ascii_alphabetic())
            && let Some(c) = caps(&CHOICE, p)
        {
            return c[1].eq_ignore_ascii_case(g);
        }
        // A number in a base: its digits and base; without a base its digits alone (`52` for
        // `52_{8}`), but two different bases differ.
        match (caps(&BASE_FORM, p), caps(&BASE_FORM, g)) {
            (Some(a), Some(b)) => {
                return a[1].eq_ignore_ascii_case(&b[1]) && a[2] == b[2];
            }
            (Some(a), None) => return a[1].eq_ignore_ascii_case(g),
            (None, Some(b)) => return p.eq_ignore_ascii_case(&b[1]),
            (None, None) => {}
        }
        if self.is_plain(p) && self.is_plain(g) {
            return self.scalar(p, g);
        }
        // Lists of answers (solutions, or the items of a `\pm`).
        let (pl, gl) = (commas(p), commas(g));
        if pl.len() > 1 || gl.len() > 1 {
            return self.lists(unpack_set(pl), unpack_set(gl), depth);
        }
        if let Some(r) = self.relation(p, g, depth) {
            return r;
        }
        match (shape(p), shape(g)) {
            (Some(a), Some(b)) => return self.shapes(a, b, depth),
            (Some(Shape::Set(xs)), None) if xs.len() == 1 => return self.any(&xs[0], g, depth + 1),
            (None, Some(Shape::Set(xs))) if xs.len() == 1 => return self.any(p, &xs[0], depth + 1),
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        let (pp, gp) = (expand_pm(p), expand_pm(g));
        if pp.is_some() || gp.is_some() {
            let pl = pp.unwrap_or_else(|| vec![p.to_string()]);
            let gl = gp.unwrap_or_else(|| vec![g.to_string()]);
            return self.lists(pl, gl, depth);
        }
        self.scalar(p, g)
    }

    /// Unordered lists: a matching of every pred item to a distinct gold item.
    fn lists(&mut self, p: Vec<String>, g: Vec<String>, depth: usize) -> bool {
        let expand = |xs: Vec<String>| -> Vec<String> {
            xs.into_iter()
                .flat_map(|x| expand_pm(&x).unwrap_or_else(|| vec![x]))
                .collect()
        };
        let (p, g) = (expand(p), expand(g));
        if p.len() != g.len() {
            return false;
        }
        if p.len() > MAX_UNORDERED {
            return p.iter().zip(&g).all(|(a, b)| self.any(a, b, depth + 1));
        }
        let mut used = vec![false; g.len()];
        for a in &p {
            let mut hit = None;
            for (j, b) in g.iter().enumerate() {
                if !used[j] && self.any(a, b, depth + 1) {
                    hit = Some(j);
                    break;
                }
            }
            match hit {
                Some(j) => used[j] = true,
                None => return false,
            }
        }
        true
    }

    fn shapes(&mut self, a: Shape, b: Shape, depth: usize) -> bool {
        match (a, b) {
            (Shape::Seq(o1, c1, x), Shape::Seq(o2, c2, y)) => {
                o1 == o2
                    && c1 == c2
                    && x.len() == y.len()
                    && x.iter().zip(&y).all(|(a, b)| self.any(a, b, depth + 1))
            }
            (Shape::Set(x), Shape::Set(y)) | (Shape::Union(x), Shape::Union(y)) => {
                self.lists(x, y, depth)
            }
            (Shape::Matrix(x), Shape::Matrix(y)) => {
                x.len() == y.len()
                    && x.iter().zip(&y).all(|(r, s)| {
                        r.len() == s.len()
                            && r.iter().zip(s).all(|(a, b)| self.any(a, b, depth + 1))
                    })
            }
            // A vector written as a tuple.
            (Shape::Matrix(m), Shape::Seq(_, _, y)) | (Shape::Seq(_, _, y), Shape::Matrix(m)) => {
                let flat: Option<Vec<String>> = if m.len() == 1 {
                    m.into_iter().next()
                } else if m.iter().all(|r| r.len() == 1) {
                    Some(m.into_iter().flatten().collect())
                } else {
                    None
                };
                flat.is_some_and(|x| {
                    x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| self.any(a, b, depth + 1))
                })
            }
            _ => false,
        }
    }

    /// Equations and inequalities; `None` when neither side is one.
    fn relation(&mut self, p: &str, g: &str, depth: usize) -> Option<bool> {
        let (pp, po) = split_top(p, &RELS);
        let (gp, go) = split_top(g, &RELS);
        if po.is_empty() && go.is_empty() {
            return None;
        }
        let assign = |parts: &[String], ops: &[&str]| -> Option<String> {
            let value_ops = ops.iter().all(|o| *o == "=" || *o == "\\in" || *o == "?");
            (value_ops && parts.len() >= 2)
                .then(|| parts.last().cloned())
                .flatten()
        };
        let name_lhs = |parts: &[String]| parts.first().is_some_and(|l| NAME.is_match(l));
        // A left side that names the value (`x`, `f(x)`, `(x, y)`) or computes it (`7 \cdot 8`).
        // …or gives a nonzero constant on the right (`a + b = -1`; `5x - 7y + 4 = 0` is an
        // equation), or ends a chain (`x = 2 + 3 = 5`).
        let value_lhs = |parts: &[String]| {
            name_lhs(parts)
                || parts.first().is_some_and(|l| is_constant(l))
                || parts
                    .last()
                    .is_some_and(|r| is_constant(r) && eval_number(r).is_none_or(|v| v != 0.0))
                || parts.len() >= 3
        };
        if go.is_empty() {
            // `x = 5` against `5`; `7 \cdot 8 = 56` against `56`.
            return Some(match assign(&pp, &po) {
                Some(v) if !v.is_empty() && value_lhs(&pp) => self.any(&v, g, depth + 1),
                _ => inequality_interval(&pp, &po).is_some_and(|i| self.any(&i, g, depth + 1)),
            });
        }
        if po.is_empty() {
            return Some(match assign(&gp, &go) {
                Some(v) if !v.is_empty() && value_lhs(&gp) => self.any(p, &v, depth + 1),
                _ => inequality_interval(&gp, &go).is_some_and(|i| self.any(p, &i, depth + 1)),
            });
        }
        if po.iter().all(|o| *o == "=") && go.iter().all(|o| *o == "=") {
            if let (Some(pv), Some(gv)) = (assign(&pp, &po), assign(&gp, &go))
                && name_lhs(&pp)
                && name_lhs(&gp)
                && pp[0] == gp[0]
            {
                return Some(self.any(&pv, &gv, depth + 1));
            }
            if pp.len() == 2
                && gp.len() == 2
                && let Some(r) = self.equation(&pp[0], &pp[1], &gp[0], &gp[1])
            {
                return Some(r);
            }
            return Some(
                pp.len() == gp.len() && pp.iter().zip(&gp).all(|(a, b)| self.any(a, b, depth + 1)),
            );
        }
        // `x \in [a, b]` against `a \le x \le b`.
        let as_set = |parts: &[String], ops: &[&'static str]| -> Option<String> {
            if ops == ["\\in"] && name_lhs(parts) {
                return parts.get(1).cloned();
            }
            inequality_interval(parts, ops)
        };
        if po.contains(&"\\in") || go.contains(&"\\in") {
            return Some(match (as_set(&pp, &po), as_set(&gp, &go)) {
                (Some(a), Some(b)) => self.any(&a, &b, depth + 1),
                _ => false,
            });
        }
        // Inequalities, read in one direction.
        let (pp, po) = rightwards(pp, po);
        let (gp, go) = rightwards(gp, go);
        if po == go
            && pp.len() == gp.len()
            && pp.iter().zip(&gp).all(|(a, b)| self.any(a, b, depth + 1))
        {
            return Some(true);
        }
        Some(
            match (inequality_interval(&pp, &po), inequality_interval(&gp, &go)) {
                (Some(a), Some(b)) => self.any(&a, &b, depth + 1),
                _ => false,
            },
        )
    }

    /// Two equations `pl = pr`, `gl = gr` with variables: `pl - pr` and `gl - gr` proportional.
    fn equation(&mut self, pl: &str, pr: &str, gl: &str, gr: &str) -> Option<bool> {
        let diff = |l: &str, r: &str| -> Option<Expr> {
            Some(Expr::Sum(vec![
                (false, latex::parse(l)?),
                (true, latex::parse(r)?),
            ]))
        };
        let (f, g) = (diff(pl, pr)?, diff(gl, gr)?);
        let mut vars = BTreeSet::new();
        f.vars(&mut vars);
        g.vars(&mut vars);
        if vars.is_empty() || vars.len() > 12 {
            return None;
        }
        let mut ratio: Option<C> = None;
        let mut valid = 0;
        for k in 0..POINTS {
            let env = |v: &str| Some(point(v, k));
            let (Some(a), Some(b)) = (
                f.eval(&env, &mut self.budget),
                g.eval(&env, &mut self.budget),
            ) else {
                continue;
            };
            if !a.is_finite() || !b.is_finite() {
                continue;
            }
            let (za, zb) = (a.norm() < 1e-9, b.norm() < 1e-9);
            if za != zb {
                return Some(false);
            }
            valid += 1;
            if za {
                continue;
            }
            let r = cdiv(b, a);
            match ratio {
                None => ratio = Some(r),
                Some(r0) => {
                    if !close_c(r, r0) {
                        return Some(false);
                    }
                }
            }
        }
        Some(valid >= 3 && ratio.is_some())
    }

    fn is_plain(&mut self, s: &str) -> bool {
        if let Some(&b) = self.plain.get(s) {
            return b;
        }
        let b = commas(s).len() == 1
            && split_top(s, &RELS).1.is_empty()
            && shape(s).is_none()
            && expand_pm(s).is_none();
        self.plain.insert(s.to_string(), b);
        b
    }

    fn values(&mut self, s: &str) -> Values {
        if let Some(v) = self.cache.get(s) {
            return v.clone();
        }
        let v = if is_text(s) {
            Values::Text
        } else {
            match value_expr(s) {
                None => Values::Unparsed,
                Some(e) => {
                    let mut vars = BTreeSet::new();
                    e.vars(&mut vars);
                    if vars.is_empty() {
                        let v = e.eval(&|_| None, &mut self.budget);
                        Values::Constant(v, residues(&e, &mut self.budget))
                    } else if vars.len() > 12 {
                        Values::Unparsed
                    } else {
                        let at = (0..POINTS)
                            .map(|k| e.eval(&|v: &str| Some(point(v, k)), &mut self.budget))
                            .collect();
                        Values::Function(at, e.branchy())
                    }
                }
            }
        };
        self.cache.insert(s.to_string(), v.clone());
        v
    }

    fn scalar(&mut self, p: &str, g: &str) -> bool {
        if p == g {
            return true;
        }
        let (vp, vg) = (self.values(p), self.values(g));
        if matches!(vp, Values::Text) || matches!(vg, Values::Text) {
            return text_key(p) == text_key(g);
        }
        if let (Some(a), Some(b)) = (caps(&INT, p), caps(&INT, g)) {
            let zero = |c: &regex::Captures| &c[2] == "0";
            let sign = |c: &regex::Captures| !c[1].is_empty() && !zero(c);
            return a[2] == b[2] && sign(&a) == sign(&b);
        }
        let (at_p, at_g, branchy) = match (vp, vg) {
            (Values::Text | Values::Unparsed, _) | (_, Values::Text | Values::Unparsed) => {
                return false;
            }
            (Values::Constant(a, ra), Values::Constant(b, rb)) => {
                let infinite = |v: Option<C>| v.is_some_and(|v| !v.is_finite());
                if ra.is_some() != rb.is_some() && (infinite(a) || infinite(b)) {
                    // A rational too large for floating point is no infinity.
                    return false;
                }
                if let (Some(ra), Some(rb)) = (ra, rb) {
                    // Two rationals: equal exactly, or a decimal approximation of the other.
                    let approx = DECIMAL.is_match(p) || DECIMAL.is_match(g);
                    if ra == rb || !approx {
                        return ra == rb;
                    }
                }
                return match (a, b) {
                    (Some(a), Some(b)) => numbers_match(a, b, p, g),
                    _ => false,
                };
            }
            (Values::Constant(a, _), Values::Function(at, br)) => (vec![a; POINTS], at, br),
            (Values::Function(at, br), Values::Constant(b, _)) => (at, vec![b; POINTS], br),
            (Values::Function(a, ba), Values::Function(b, bb)) => (a, b, ba || bb),
        };
        let mut valid = 0;
        for (k, (a, b)) in at_p.into_iter().zip(at_g).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                continue;
            };
            if !a.is_finite() || !b.is_finite() {
                continue;
            }
            let agree = close_c(a, b);
            if k < POSITIVE_POINTS {
                if !agree {
                    return false;
                }
                valid += 1;
            } else if !agree && !branchy {
                return false;
            }
        }
        valid >= 3
    }
}

/// A set written as the only item of a list stands for its items (`\{1, 2\}` vs `1, 2`).
fn unpack_set(xs: Vec<String>) -> Vec<String> {
    if xs.len() == 1
        && let Some(Shape::Set(items)) = shape(&xs[0])
    {
        return items;
    }
    xs
}

/// An inequality chain with `>`/`\ge` turned around to read with `<`/`\le`.
fn rightwards(
    mut parts: Vec<String>,
    mut ops: Vec<&'static str>,
) -> (Vec<String>, Vec<&'static str>) {
    if !ops.is_empty() && ops.iter().all(|o| *o == ">" || *o == "\\ge") {
        parts.reverse();
        ops.reverse();
        for o in &mut ops {
            *o = if *o == ">" { "<" } else { "\\le" };
        }
    }
    (parts, ops)
}

/// `x > 3` as `(3,\infty)`, `-1 \le x < 2` as `[-1,2)` (one variable, `<`-direction).
fn inequality_interval(parts: &[String], ops: &[&'static str]) -> Option<String> {
    let (parts, ops) = rightwards(parts.to_vec(), ops.to_vec());
    let open = |o: &str| match o {
        "<" => Some(true),
        "\\le" => Some(false),
        _ => None,
    };
    match (parts.as_slice(), ops.as_slice()) {
        ([a, x, b], [o1, o2]) if NAME.is_match(x) => Some(format!(
            "{}{a},{b}{}",
            if open(o1)? { '(' } else { '[' },
            if open(o2)? { ')' } else { ']' }
        )),
        ([x, b], [o]) if NAME.is_match(x) => {
            Some(format!("(-\\infty,{b}{}", if open(o)? { ')' } else { ']' }))
        }
        ([a, x], [o]) if NAME.is_match(x) => {
            Some(format!("{}{a},\\infty)", if open(o)? { '(' } else { '[' }))
        }
        _ => None,
    }
}

/// Whether `s` parses to an expression without variables.
fn is_constant(s: &str) -> bool {
    latex::parse(s).is_some_and(|e| {
        let mut vars = BTreeSet::new();
        e.vars(&mut vars);
        vars.is_empty()
    })
}

/// The expression of a value; a mixed number `2\frac{1}{2}` is `2 + 1/2`.
fn value_expr(s: &str) -> Option<Expr> {
    if let Some(c) = caps(&MIXED, s) {
        let whole: f64 = c[2].parse().ok()?;
        let n: f64 = c[3].parse().ok()?;
        let d: f64 = c[4].parse().ok()?;
        if d == 0.0 {
            return None;
        }
        let v = whole + n / d;
        return Some(Expr::Num(if c[1].is_empty() { v } else { -v }));
    }
    latex::parse(s)
}

const POINTS: usize = 9;
/// The first points have every variable positive; the rest mix signs.
const POSITIVE_POINTS: usize = 6;

/// The value of variable `name` at point `k`: seeded by the name, so the same everywhere.
fn point(name: &str, k: usize) -> C {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)]
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    let v = 0.35 + 2.4 * u;
    if k >= POSITIVE_POINTS && (z & 1 == 0 || k == POSITIVE_POINTS) {
        C::real(-v)
    } else {
        C::real(v)
    }
}

fn cdiv(a: C, b: C) -> C {
    let d = b.re * b.re + b.im * b.im;
    C::new(
        (a.re * b.re + a.im * b.im) / d,
        (a.im * b.re - a.re * b.im) / d,
    )
}

fn close_c(a: C, b: C) -> bool {
    let d = C::new(a.re - b.re, a.im - b.im).norm();
    d <= REL_TOL * a.norm().max(b.norm()) || d <= 1e-9
}

/// Two constant values: whole numbers exactly, others to [`REL_TOL`], and a gold written as a
/// decimal with `d >= 2` places matched by an exact value (a fraction, a radical, π; not another
/// decimal: `2.54` is not `2.5`) that rounds to it.
fn numbers_match(a: C, b: C, p: &str, g: &str) -> bool {
    if !a.is_finite() || !b.is_finite() {
        return a.is_real() && b.is_real() && a.re == b.re && a.re.is_infinite();
    }
    if !(a.is_real() && b.is_real()) {
        return close_c(a, b);
    }
    let (x, y) = (a.re, b.re);
    if x == y {
        return true;
    }
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.fract() == 0.0 && y.fract() == 0.0 && x.abs() < EXACT && y.abs() < EXACT {
        return false;
    }
    // A decimal approximation of an exact gold needs the digits to show it (`6366.2` is not
    // `\frac{20000}{\pi}` although within 1e-6).
    let literal = |s: &str| DECIMAL.is_match(s) || INT.is_match(s);
    if literal(p) && literal(g) {
        // Two numbers as written: `306956.73` is not `306956.63`.
        return false;
    }
    if DECIMAL.is_match(p) && !literal(g) && significant_digits(p) < 6 {
        return false;
    }
    if (x - y).abs() <= REL_TOL * x.abs().max(y.abs()) {
        return true;
    }
    // Only for two or more places: a gold `4.5` is as often exact as rounded (and `2\sqrt5`
    // is not 4.5).
    if let Some(gd) = caps(&DECIMAL, g).map(|c| c[1].len()).filter(|&d| d >= 2)
        && !literal(p)
    {
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
        let half_ulp = 0.5 * 10f64.powi(-(gd.min(300) as i32));
        return (x - y).abs() <= half_ulp * (1.0 + 1e-9);
    }
    false
}

fn significant_digits(s: &str) -> usize {
    s.chars()
        .filter(char::is_ascii_digit)
        .skip_while(|&c| c == '0')
        .count()
}
