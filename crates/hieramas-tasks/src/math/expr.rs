//! Expression trees and their evaluation in complex floating point, with a work budget.
//!
//! Values are `f64` complex numbers: exact enough to tell a right answer from a wrong one at a
//! relative tolerance of 1e-6, and bounded in time and memory whatever the input (`2^{2^{100}}`
//! is just infinity, `1000!` is out of range, every node evaluated costs one unit of budget).

use std::collections::BTreeSet;

/// A complex number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    pub const fn real(re: f64) -> Self {
        Self { re, im: 0.0 }
    }
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    pub fn norm(self) -> f64 {
        self.re.hypot(self.im)
    }
    pub fn is_real(self) -> bool {
        self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    fn add(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }
    fn neg(self) -> Self {
        Self::new(-self.re, -self.im)
    }
    fn mul(self, o: Self) -> Self {
        if self.im == 0.0 && o.im == 0.0 {
            return Self::real(self.re * o.re);
        }
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn div(self, o: Self) -> Option<Self> {
        if o.re == 0.0 && o.im == 0.0 {
            return None;
        }
        if self.im == 0.0 && o.im == 0.0 {
            return Some(Self::real(self.re / o.re));
        }
        let d = o.re * o.re + o.im * o.im;
        Some(Self::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        ))
    }
    fn exp(self) -> Self {
        let m = self.re.exp();
        if self.im == 0.0 {
            return Self::real(m);
        }
        Self::new(m * self.im.cos(), m * self.im.sin())
    }
    fn ln(self) -> Option<Self> {
        let n = self.norm();
        (n > 0.0).then(|| Self::new(n.ln(), self.im.atan2(self.re)))
    }
    fn sqrt(self) -> Self {
        if self.im == 0.0 && self.re >= 0.0 {
            return Self::real(self.re.sqrt());
        }
        let r = self.norm().sqrt();
        let t = self.im.atan2(self.re) / 2.0;
        Self::new(r * t.cos(), r * t.sin())
    }
    fn powi(self, n: i64) -> Option<Self> {
        let mut base = if n < 0 {
            Self::real(1.0).div(self)?
        } else {
            self
        };
        let mut e = n.unsigned_abs();
        let mut acc = Self::real(1.0);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul(base);
            }
            base = base.mul(base);
            e >>= 1;
        }
        Some(acc)
    }
    fn pow(self, e: Self) -> Option<Self> {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 1024.0 {
            // Exact-ish repeated squaring; also right for negative bases.
            #[allow(clippy::cast_possible_truncation)]
            return self.powi(e.re as i64);
        }
        if self.re == 0.0 && self.im == 0.0 {
            return (e.re > 0.0).then_some(Self::real(0.0));
        }
        if self.im == 0.0 && self.re > 0.0 && e.im == 0.0 {
            return Some(Self::real(self.re.powf(e.re)));
        }
        // Odd roots of negative reals are taken real (`\sqrt[3]{-8} = -2`, `(-8)^{1/3}`).
        if self.im == 0.0 && self.re < 0.0 && e.im == 0.0 && e.re != 0.0 {
            let inv = 1.0 / e.re;
            if (inv - inv.round()).abs() < 1e-9 && inv.round().rem_euclid(2.0) == 1.0 {
                return Some(Self::real(-(-self.re).powf(e.re)));
            }
        }
        Some(e.mul(self.ln()?).exp())
    }
    fn sin(self) -> Self {
        Self::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }
    fn cos(self) -> Self {
        Self::new(
            self.re.cos() * self.im.cosh(),
            -self.re.sin() * self.im.sinh(),
        )
    }
}

/// Functions of one argument (and `log` with a base, `binom` with two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Exp,
    Sqrt,
    Abs,
    Floor,
    Ceil,
    Fact,
}

impl Func {
    /// The function a LaTeX command (without the backslash) or plain word names.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sin" => Self::Sin,
            "cos" => Self::Cos,
            "tan" | "tg" => Self::Tan,
            "cot" | "ctg" => Self::Cot,
            "sec" => Self::Sec,
            "csc" => Self::Csc,
            "arcsin" | "asin" => Self::Asin,
            "arccos" | "acos" => Self::Acos,
            "arctan" | "atan" => Self::Atan,
            "sinh" => Self::Sinh,
            "cosh" => Self::Cosh,
            "tanh" => Self::Tanh,
            "ln" | "log" => Self::Ln,
            "exp" => Self::Exp,
            _ => return None,
        })
    }
    /// The inverse written `f^{-1}`, for the trig functions.
    pub fn inverse(self) -> Option<Self> {
        Some(match self {
            Self::Sin => Self::Asin,
            Self::Cos => Self::Acos,
            Self::Tan => Self::Atan,
            _ => return None,
        })
    }
    fn apply(self, z: C) -> Option<C> {
        let one = C::real(1.0);
        let real_only = |f: fn(f64) -> f64| z.is_real().then(|| C::real(f(z.re)));
        Some(match self {
            Self::Sin => z.sin(),
            Self::Cos => z.cos(),
            Self::Tan => z.sin().div(z.cos())?,
            Self::Cot => z.cos().div(z.sin())?,
            Self::Sec => one.div(z.cos())?,
            Self::Csc => one.div(z.sin())?,
            Self::Asin => {
                if !z.is_real() || z.re.abs() > 1.0 {
                    return None;
                }
                C::real(z.re.asin())
            }
            Self::Acos => {
                if !z.is_real() || z.re.abs() > 1.0 {
                    return None;
                }
                C::real(z.re.acos())
            }
            Self::Atan => real_only(f64::atan)?,
            Self::Sinh => z.exp().add(z.neg().exp().neg()).mul(C::real(0.5)),
            Self::Cosh => z.exp().add(z.neg().exp()).mul(C::real(0.5)),
            Self::Tanh => {
                let (a, b) = (z.exp(), z.neg().exp());
                a.add(b.neg()).div(a.add(b))?
            }
            Self::Ln => z.ln()?,
            Self::Exp => z.exp(),
            Self::Sqrt => z.sqrt(),
            Self::Abs => C::real(z.norm()),
            Self::Floor => real_only(f64::floor)?,
            Self::Ceil => real_only(f64::ceil)?,
            Self::Fact => {
                if !z.is_real() || z.re < 0.0 || z.re.fract() != 0.0 || z.re > 170.0 {
                    return None;
                }
                let mut acc = 1.0f64;
                let mut k = 2.0;
                while k <= z.re {
                    acc *= k;
                    k += 1.0;
                }
                C::real(acc)
            }
        })
    }
}

/// An expression: sums and products are flat lists, so long chains stay shallow.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    /// A number as written (its digits kept for exact arithmetic) and its value.
    Lit(String, f64),
    Const(C),
    Var(String),
    /// Terms, each negated or not.
    Sum(Vec<(bool, Expr)>),
    /// Factors, each inverted (a divisor) or not.
    Prod(Vec<(bool, Expr)>),
    Neg(Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Call(Func, Box<Expr>),
    Log(Box<Expr>, Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
}

/// Evaluation work allowed for one comparison (nodes visited).
pub(crate) struct Budget(pub u64);

impl Budget {
    fn spend(&mut self) -> Option<()> {
        self.0 = self.0.checked_sub(1)?;
        Some(())
    }
}

impl Expr {
    /// The value with `env` giving each variable; `None` outside the domain, for an unknown
    /// variable, or when the budget runs out.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<C>, budget: &mut Budget) -> Option<C> {
        budget.spend()?;
        let v = match self {
            Self::Num(x) | Self::Lit(_, x) => C::real(*x),
            Self::Const(c) => *c,
            Self::Var(v) => env(v)?,
            Self::Sum(terms) => {
                let mut acc = C::real(0.0);
                for (neg, t) in terms {
                    let x = t.eval(env, budget)?;
                    acc = acc.add(if *neg { x.neg() } else { x });
                }
                acc
            }
            Self::Prod(factors) => {
                let mut acc = C::real(1.0);
                for (inv, f) in factors {
                    let x = f.eval(env, budget)?;
                    acc = if *inv { acc.div(x)? } else { acc.mul(x) };
                }
                acc
            }
            Self::Neg(e) => e.eval(env, budget)?.neg(),
            Self::Pow(b, e) => {
                let b = b.eval(env, budget)?;
                let e = e.eval(env, budget)?;
                b.pow(e)?
            }
            Self::Call(f, a) => f.apply(a.eval(env, budget)?)?,
            Self::Log(base, a) => {
                let b = base.eval(env, budget)?.ln()?;
                a.eval(env, budget)?.ln()?.div(b)?
            }
            Self::Binom(n, k) => {
                let (n, k) = (n.eval(env, budget)?, k.eval(env, budget)?);
                if !n.is_real() || !k.is_real() || k.re.fract() != 0.0 || k.re < 0.0 {
                    return None;
                }
                if k.re > 1000.0 {
                    return None;
                }
                let mut acc = 1.0f64;
                let mut j = 0.0;
                while j < k.re {
                    acc = acc * (n.re - j) / (j + 1.0);
                    j += 1.0;
                }
                C::real(acc)
            }
        };
        (!v.re.is_nan() && !v.im.is_nan()).then_some(v)
    }

    /// The names of the free variables.
    pub fn vars(&self, out: &mut BTreeSet<String>) {
        match self {
            Self::Num(_) | Self::Lit(..) | Self::Const(_) => {}
            Self::Var(v) => {
                out.insert(v.clone());
            }
            Self::Sum(xs) | Self::Prod(xs) => xs.iter().for_each(|(_, x)| x.vars(out)),
            Self::Neg(e) | Self::Call(_, e) => e.vars(out),
            Self::Pow(a, b) | Self::Log(a, b) | Self::Binom(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// Whether the expression has a branch cut (roots, logs, non-integer powers), where two
    /// spellings of one function may differ at negative arguments.
    pub fn branchy(&self) -> bool {
        match self {
            Self::Num(_) | Self::Lit(..) | Self::Const(_) | Self::Var(_) => false,
            Self::Sum(xs) | Self::Prod(xs) => xs.iter().any(|(_, x)| x.branchy()),
            Self::Neg(e) => e.branchy(),
            Self::Call(f, e) => {
                matches!(f, Func::Sqrt | Func::Ln | Func::Asin | Func::Acos) || e.branchy()
            }
            Self::Pow(a, b) => {
                !matches!(**b, Self::Num(x) | Self::Lit(_, x) if x.fract() == 0.0) || a.branchy()
            }
            Self::Log(_, _) | Self::Binom(_, _) => true,
        }
    }
}

/// Primes below 2^31 for exact arithmetic on rationals by residues (products fit in `u64`).
const PRIMES: [u64; 3] = [2_147_483_647, 2_147_483_629, 2_147_483_587];

/// The value modulo each of [`PRIMES`] of an expression built from integer and decimal
/// literals with `+ - * /`, whole powers and factorials; `None` for anything else (variables,
/// constants, roots, division by a multiple of a prime). Two rationals with equal residues
/// are equal (but for a chance of about 1e-28), however large: `2^{100} - 3` is not
/// `2^{100} - 2`, and `\frac{3992005}{3988009}` is not `\frac{3992004}{3988009}`.
pub(crate) fn residues(e: &Expr, budget: &mut Budget) -> Option<[u64; 3]> {
    let mut out = [0; 3];
    for (slot, &p) in out.iter_mut().zip(&PRIMES) {
        *slot = modp(e, p, budget)?;
    }
    Some(out)
}

fn pow_mod(mut b: u64, mut e: u64, p: u64) -> u64 {
    let mut acc = 1 % p;
    b %= p;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * b % p;
        }
        b = b * b % p;
        e >>= 1;
    }
    acc
}

fn inv_mod(b: u64, p: u64) -> Option<u64> {
    (!b.is_multiple_of(p)).then(|| pow_mod(b, p - 2, p))
}

/// A literal's digits as a rational modulo `p`.
fn literal_mod(s: &str, p: u64) -> Option<u64> {
    let mut num = 0u64;
    let mut scale = 1u64;
    let mut after_dot = false;
    for c in s.chars() {
        if c == '.' {
            after_dot = true;
            continue;
        }
        let d = u64::from(c.to_digit(10)?);
        num = (num * 10 + d) % p;
        if after_dot {
            scale = scale * 10 % p;
        }
    }
    Some(num * inv_mod(scale, p)? % p)
}

fn modp(e: &Expr, p: u64, budget: &mut Budget) -> Option<u64> {
    budget.spend()?;
    Some(match e {
        Expr::Lit(s, _) => literal_mod(s, p)?,
        Expr::Num(x) => {
            if x.fract() != 0.0 || x.abs() >= 9.0e15 {
                return None;
            }
            #[allow(clippy::cast_possible_truncation)]
            let n = x.abs() as u64 % p;
            if *x < 0.0 { (p - n) % p } else { n }
        }
        Expr::Sum(terms) => {
            let mut acc = 0;
            for (neg, t) in terms {
                let v = modp(t, p, budget)?;
                acc = (acc + if *neg { p - v } else { v }) % p;
            }
            acc
        }
        Expr::Prod(factors) => {
            let mut acc = 1;
            for (inv, f) in factors {
                let v = modp(f, p, budget)?;
                acc = acc * if *inv { inv_mod(v, p)? } else { v } % p;
            }
            acc
        }
        Expr::Neg(x) => (p - modp(x, p, budget)?) % p,
        Expr::Pow(b, x) => {
            // The exponent must be a whole number, known exactly (small).
            let ev = x.eval(&|_| None, budget)?;
            if !ev.is_real() || ev.re.fract() != 0.0 || ev.re.abs() > 1e12 {
                return None;
            }
            let bv = modp(b, p, budget)?;
            #[allow(clippy::cast_possible_truncation)]
            let k = ev.re.abs() as u64;
            let r = pow_mod(bv, k, p);
            if ev.re < 0.0 { inv_mod(r, p)? } else { r }
        }
        Expr::Call(Func::Fact, x) => {
            let n = x.eval(&|_| None, budget)?;
            if !n.is_real() || n.re < 0.0 || n.re.fract() != 0.0 || n.re > 100_000.0 {
                return None;
            }
            let mut acc = 1u64;
            let mut k = 2.0;
            while k <= n.re {
                budget.spend()?;
                #[allow(clippy::cast_possible_truncation)]
                let kk = k as u64;
                acc = acc * (kk % p) % p;
                k += 1.0;
            }
            acc
        }
        _ => return None,
    })
}
