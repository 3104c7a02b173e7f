//! A small LaTeX math tokenizer and parser: numbers, variables (greek, subscripts), `+ - * /
//! ^`, implicit products, `\frac` (and `\dfrac43`), `\sqrt[n]{}`, `\cdot \times \div`,
//! brackets, `|x|`, `!`, `\pi e i \infty`, trig/log/exp functions, `\binom`, floors.
//!
//! Input is an answer already normalised by [`super::normalize`]. Nesting deeper than
//! [`MAX_DEPTH`] is refused, so the parser's recursion is bounded whatever the input.

use super::expr::{C, Expr, Func};

/// The deepest nesting of brackets, fractions, powers and signs that is parsed.
pub(crate) const MAX_DEPTH: usize = 160;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Num(String),
    Letter(char),
    /// A command without its backslash: `frac`, `pi`, or one symbol (`{` for `\{`).
    Cmd(String),
    Sym(char),
}

const WORD_FUNCS: [&str; 16] = [
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sqrt", "sin", "cos", "tan", "cot",
    "sec", "csc", "log", "exp", "ln",
];

const GREEK: [&str; 34] = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
    "ell",
];

/// Commands that only style their argument.
const WRAPPERS: [&str; 14] = [
    "mathrm",
    "mathbf",
    "mathit",
    "text",
    "textbf",
    "textit",
    "mbox",
    "operatorname",
    "boldsymbol",
    "overline",
    "bar",
    "vec",
    "hat",
    "widehat",
];

/// Splits `s` into tokens; `\left`, `\right` and sizing commands are dropped.
pub(crate) fn tokenize(s: &str) -> Vec<Tok> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            let mut dot = false;
            while i < cs.len() && (cs[i].is_ascii_digit() || (cs[i] == '.' && !dot)) {
                dot |= cs[i] == '.';
                i += 1;
            }
            out.push(Tok::Num(cs[start..i].iter().collect()));
        } else if c == '\\' {
            i += 1;
            let start = i;
            while i < cs.len() && cs[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                if let Some(&d) = cs.get(i) {
                    i += 1;
                    out.push(Tok::Cmd(d.to_string()));
                }
                continue;
            }
            let name: String = cs[start..i].iter().collect();
            match name.as_str() {
                "left" | "right" | "bigl" | "bigr" | "Bigl" | "Bigr" | "big" | "Big" | "biggl"
                | "biggr" => {
                    if cs.get(i) == Some(&'.') {
                        i += 1;
                    }
                }
                "lvert" | "rvert" | "vert" | "mid" => out.push(Tok::Sym('|')),
                "lbrace" => out.push(Tok::Cmd("{".into())),
                "rbrace" => out.push(Tok::Cmd("}".into())),
                "langle" => out.push(Tok::Sym('(')),
                "rangle" => out.push(Tok::Sym(')')),
                "displaystyle" | "limits" => {}
                _ => out.push(Tok::Cmd(name)),
            }
        } else if c.is_ascii_alphabetic() {
            let word = WORD_FUNCS.iter().find(|w| {
                w.chars()
                    .enumerate()
                    .all(|(k, wc)| cs.get(i + k) == Some(&wc))
            });
            if let Some(w) = word {
                out.push(Tok::Cmd((*w).to_string()));
                i += w.len();
            } else {
                out.push(Tok::Letter(c));
                i += 1;
            }
        } else if c.is_alphabetic() {
            out.push(Tok::Letter(c));
            i += 1;
        } else {
            out.push(Tok::Sym(c));
            i += 1;
        }
    }
    out
}

/// The longest answer (in bytes, normalised) that is parsed: a longer one is no real answer,
/// and is compared as a string only.
pub(crate) const MAX_PARSE_LEN: usize = 2000;

/// Parses a whole expression; `None` if any token is left over or anything is unknown, or the
/// text is longer than [`MAX_PARSE_LEN`].
pub(crate) fn parse(s: &str) -> Option<Expr> {
    if s.len() > MAX_PARSE_LEN {
        return None;
    }
    let mut p = Parser {
        toks: tokenize(s),
        pos: 0,
        depth: 0,
        abs_open: 0,
    };
    let e = p.sum()?;
    (p.pos == p.toks.len()).then_some(e)
}

/// Whether `s` has variables: parsed, or (unparsable) by its letters outside commands.
pub(crate) fn has_variables(s: &str) -> bool {
    match parse(s) {
        Some(e) => {
            let mut vars = std::collections::BTreeSet::new();
            e.vars(&mut vars);
            !vars.is_empty()
        }
        None => tokenize(s).iter().any(|t| matches!(t, Tok::Letter(_))),
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    abs_open: usize,
}

fn is_sym(t: Option<&Tok>, c: char) -> bool {
    matches!(t, Some(Tok::Sym(x)) if *x == c)
}

fn cmd_is(t: Option<&Tok>, names: &[&str]) -> bool {
    matches!(t, Some(Tok::Cmd(x)) if names.contains(&x.as_str()))
}

fn is_func_cmd(t: Option<&Tok>) -> bool {
    matches!(t, Some(Tok::Cmd(x)) if Func::from_name(x).is_some())
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat_sym(&mut self, c: char) -> bool {
        let hit = is_sym(self.peek(), c);
        if hit {
            self.pos += 1;
        }
        hit
    }
    fn eat_cmd(&mut self, names: &[&str]) -> bool {
        let hit = cmd_is(self.peek(), names);
        if hit {
            self.pos += 1;
        }
        hit
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn sum(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.sum_inner();
        self.leave();
        r
    }
    fn sum_inner(&mut self) -> Option<Expr> {
        let mut terms = vec![(false, self.term()?)];
        loop {
            if self.eat_sym('+') {
                terms.push((false, self.term()?));
            } else if self.eat_sym('-') {
                terms.push((true, self.term()?));
            } else {
                break;
            }
        }
        Some(if terms.len() == 1 {
            terms.pop().map(|(_, t)| t)?
        } else {
            Expr::Sum(terms)
        })
    }

    fn term(&mut self) -> Option<Expr> {
        let mut factors = vec![(false, self.unary()?)];
        loop {
            if self.eat_sym('*') || self.eat_cmd(&["cdot", "times", "ast"]) {
                factors.push((false, self.unary()?));
            } else if self.eat_sym('/') || self.eat_cmd(&["div"]) {
                factors.push((true, self.unary()?));
            } else if self.starts_atom() {
                // Two bare numbers side by side ("2 3") are no product.
                let last_num = matches!(factors.last(), Some((_, Expr::Num(_) | Expr::Lit(..))))
                    && matches!(self.peek(), Some(Tok::Num(_)));
                if last_num {
                    return None;
                }
                factors.push((false, self.power()?));
            } else {
                break;
            }
        }
        Some(if factors.len() == 1 && !factors[0].0 {
            factors.pop().map(|(_, f)| f)?
        } else {
            Expr::Prod(factors)
        })
    }

    fn unary(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = if self.eat_sym('-') {
            self.unary().map(|e| Expr::Neg(Box::new(e)))
        } else if self.eat_sym('+') {
            self.unary()
        } else {
            self.power()
        };
        self.leave();
        r
    }

    fn power(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.power_inner();
        self.leave();
        r
    }
    fn power_inner(&mut self) -> Option<Expr> {
        let mut base = self.atom()?;
        loop {
            if self.eat_sym('!') {
                base = Expr::Call(Func::Fact, Box::new(base));
            } else if self.eat_sym('^') {
                let e = self.exponent()?;
                base = Expr::Pow(Box::new(base), Box::new(e));
            } else if self.eat_sym('\'') {
                // A prime: part of a name, as in f'(x); not modelled.
                return None;
            } else {
                return Some(base);
            }
        }
    }

    /// The exponent after `^`: a braced group, a signed atom, or a whole number.
    fn exponent(&mut self) -> Option<Expr> {
        if self.eat_sym('-') {
            return self.exponent().map(|e| Expr::Neg(Box::new(e)));
        }
        if self.eat_sym('+') {
            return self.exponent();
        }
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_)) => self.atom(),
            _ => self.group(),
        }
    }

    /// A LaTeX argument: `{…}`, or one token (one digit of a number: `\frac43`).
    fn group(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.group_inner();
        self.leave();
        r
    }
    fn group_inner(&mut self) -> Option<Expr> {
        if self.eat_sym('{') {
            let e = self.sum()?;
            return self.eat_sym('}').then_some(e);
        }
        if let Some(Tok::Num(n)) = self.peek() {
            let mut chars = n.chars();
            let first = chars.next()?;
            let rest: String = chars.collect();
            if first == '.' || rest.is_empty() {
                return self.atom();
            }
            let v = f64::from(first.to_digit(10)?);
            self.toks[self.pos] = Tok::Num(rest);
            return Some(Expr::Num(v));
        }
        self.atom()
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_)) => true,
            Some(Tok::Sym(c)) => *c == '(' || *c == '{' || (*c == '|' && self.abs_open == 0),
            Some(Tok::Cmd(c)) => {
                Func::from_name(c).is_some()
                    || GREEK.contains(&c.as_str())
                    || WRAPPERS.contains(&c.as_str())
                    || [
                        "frac", "dfrac", "tfrac", "cfrac", "sqrt", "pi", "infty", "lfloor",
                        "lceil", "binom", "dbinom", "tbinom", "log",
                    ]
                    .contains(&c.as_str())
            }
            None => false,
        }
    }

    /// A variable's name with its subscript, as in `x_1`, `a_{n+1}`.
    fn subscript(&mut self, mut name: String) -> Option<String> {
        if !self.eat_sym('_') {
            return Some(name);
        }
        name.push('_');
        if self.eat_sym('{') {
            let mut depth = 1usize;
            loop {
                let t = self.peek()?.clone();
                self.pos += 1;
                match t {
                    Tok::Sym('{') => depth += 1,
                    Tok::Sym('}') => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(name);
                        }
                    }
                    _ => {}
                }
                push_tok(&mut name, &t);
            }
        }
        let t = self.peek()?.clone();
        self.pos += 1;
        push_tok(&mut name, &t);
        Some(name)
    }

    fn atom(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.atom_inner();
        self.leave();
        r
    }
    fn atom_inner(&mut self) -> Option<Expr> {
        let t = self.peek()?.clone();
        self.pos += 1;
        match t {
            Tok::Num(n) => {
                let v = n.parse::<f64>().ok()?;
                Some(Expr::Lit(n, v))
            }
            Tok::Letter('e') if !is_sym(self.peek(), '_') => {
                Some(Expr::Const(C::real(std::f64::consts::E)))
            }
            Tok::Letter('i') if !is_sym(self.peek(), '_') => Some(Expr::Const(C::new(0.0, 1.0))),
            Tok::Letter(c) => self.subscript(c.to_string()).map(Expr::Var),
            Tok::Sym('(') => {
                let e = self.sum()?;
                self.eat_sym(')').then_some(e)
            }
            Tok::Sym('{') => {
                let e = self.sum()?;
                self.eat_sym('}').then_some(e)
            }
            Tok::Sym('|') => {
                self.abs_open += 1;
                let e = self.sum();
                self.abs_open -= 1;
                let e = e?;
                self.eat_sym('|')
                    .then(|| Expr::Call(Func::Abs, Box::new(e)))
            }
            Tok::Cmd(c) => self.command(&c),
            Tok::Sym(_) => None,
        }
    }

    fn command(&mut self, c: &str) -> Option<Expr> {
        match c {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let n = self.group()?;
                let d = self.group()?;
                Some(Expr::Prod(vec![(false, n), (true, d)]))
            }
            "sqrt" => {
                if self.eat_sym('[') {
                    let n = self.sum()?;
                    if !self.eat_sym(']') {
                        return None;
                    }
                    let x = self.group()?;
                    let inv = Expr::Prod(vec![(false, Expr::Num(1.0)), (true, n)]);
                    return Some(Expr::Pow(Box::new(x), Box::new(inv)));
                }
                Some(Expr::Call(Func::Sqrt, Box::new(self.group()?)))
            }
            "binom" | "dbinom" | "tbinom" => {
                let n = self.group()?;
                let k = self.group()?;
                Some(Expr::Binom(Box::new(n), Box::new(k)))
            }
            "pi" => Some(Expr::Const(C::real(std::f64::consts::PI))),
            "infty" => Some(Expr::Const(C::real(f64::INFINITY))),
            "lfloor" | "lceil" => {
                let e = self.sum()?;
                let (close, f) = if c == "lfloor" {
                    ("rfloor", Func::Floor)
                } else {
                    ("rceil", Func::Ceil)
                };
                self.eat_cmd(&[close]).then(|| Expr::Call(f, Box::new(e)))
            }
            "log" => {
                if self.eat_sym('_') {
                    let base = self.group()?;
                    let arg = self.func_arg()?;
                    return Some(Expr::Log(Box::new(base), Box::new(arg)));
                }
                self.apply(Func::Ln)
            }
            _ if GREEK.contains(&c) => self.subscript(c.to_string()).map(Expr::Var),
            _ if WRAPPERS.contains(&c) => self.group(),
            _ => self.apply(Func::from_name(c)?),
        }
    }

    /// `f x`, `f(x)`, `f^2 x`, `f^{-1}(x)`.
    fn apply(&mut self, f: Func) -> Option<Expr> {
        let mut f = f;
        let mut power = None;
        if self.eat_sym('^') {
            let e = self.exponent()?;
            if matches!(&e, Expr::Neg(x) if matches!(**x, Expr::Num(v) | Expr::Lit(_, v) if v == 1.0))
            {
                f = f.inverse()?;
            } else {
                power = Some(e);
            }
        }
        let arg = self.func_arg()?;
        let call = Expr::Call(f, Box::new(arg));
        Some(match power {
            Some(p) => Expr::Pow(Box::new(call), Box::new(p)),
            None => call,
        })
    }

    /// A function's argument: a parenthesised expression, or the implicit product up to the
    /// next operator or function (`\sin 2x \cos x` is `sin(2x) cos(x)`).
    fn func_arg(&mut self) -> Option<Expr> {
        if is_sym(self.peek(), '(') {
            return self.power();
        }
        let mut factors = vec![(false, self.power()?)];
        while self.starts_atom() && !is_func_cmd(self.peek()) && !cmd_is(self.peek(), &["log"]) {
            factors.push((false, self.power()?));
        }
        Some(if factors.len() == 1 {
            factors.pop().map(|(_, f)| f)?
        } else {
            Expr::Prod(factors)
        })
    }
}

fn push_tok(name: &mut String, t: &Tok) {
    match t {
        Tok::Num(n) => name.push_str(n),
        Tok::Letter(c) | Tok::Sym(c) => name.push(*c),
        Tok::Cmd(c) => {
            name.push('\\');
            name.push_str(c);
        }
    }
}
