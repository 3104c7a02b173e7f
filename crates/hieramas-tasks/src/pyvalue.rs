//! Python values as the sandboxed runner reports them (a tagged encoding of builtin types), and
//! the trusted evalplus comparison of an output with the expected one.
//!
//! The runner encodes with `type(x) is ...` checks, so a subclass of a builtin or any other class
//! arrives as [`Py::Unsupported`], which equals nothing. Equality follows Python's `==` on
//! builtins: `1 == 1.0 == True`, `list != tuple`, `set == frozenset` with the same elements,
//! `nan != nan` (outputs and expectations are distinct objects, so identity never helps).

use serde_json::Value;

/// One Python value of a builtin type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Py {
    /// Lowercase hex as `format(x, "#x")` writes it (`0x1f`, `-0x1f`, `0x0`): unbounded, one
    /// spelling per value.
    Int(String),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    List(Vec<Py>),
    Tuple(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    Set(Vec<Py>),
    FrozenSet(Vec<Py>),
    /// Any other type (its name): never equal to anything.
    Unsupported(String),
    /// `["#", hex]`: a digest the runner sent for an input whose expected output is kept as one.
    Digest([u8; 32]),
}

const MAX_DEPTH: usize = 128;

impl Py {
    /// Decodes a tagged value; `Err` says what is malformed.
    pub(crate) fn decode(v: &Value) -> Result<Py, String> {
        Self::decode_at(v, 0)
    }

    fn decode_at(v: &Value, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let a = v.as_array().ok_or("not a tagged value")?;
        let tag = a.first().and_then(Value::as_str).ok_or("no tag")?;
        let arg = a.get(1);
        let items = |arg: Option<&Value>| -> Result<Vec<Py>, String> {
            arg.and_then(Value::as_array)
                .ok_or_else(|| format!("`{tag}` without items"))?
                .iter()
                .map(|x| Self::decode_at(x, depth + 1))
                .collect()
        };
        let text = |arg: Option<&Value>| -> Result<String, String> {
            arg.and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("`{tag}` without text"))
        };
        if a.len() != if tag == "n" { 1 } else { 2 } {
            return Err(format!("`{tag}` of the wrong length"));
        }
        Ok(match tag {
            "i" => decode_int(text(arg)?)?,
            "f" => {
                let s = text(arg)?;
                Py::Float(parse_float(&s).ok_or_else(|| format!("bad float {s:?}"))?)
            }
            "s" => Py::Str(text(arg)?),
            "b" => Py::Bool(arg.and_then(Value::as_bool).ok_or("`b` without a bool")?),
            "n" => Py::None,
            "l" => Py::List(items(arg)?),
            "t" => Py::Tuple(items(arg)?),
            "lN" | "tN" => {
                let v = text(arg)?
                    .split(' ')
                    .map(|tok| {
                        if tok.contains('x') {
                            decode_int(tok.to_string())
                        } else {
                            parse_float(tok)
                                .map(Py::Float)
                                .ok_or_else(|| format!("bad float {tok:?}"))
                        }
                    })
                    .collect::<Result<Vec<Py>, String>>()?;
                if tag == "lN" {
                    Py::List(v)
                } else {
                    Py::Tuple(v)
                }
            }
            "ls" | "ts" => {
                let v = arg
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("`{tag}` without items"))?
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(|s| Py::Str(s.to_string()))
                            .ok_or("not a str")
                    })
                    .collect::<Result<Vec<Py>, &str>>()?;
                if tag == "ls" {
                    Py::List(v)
                } else {
                    Py::Tuple(v)
                }
            }
            "S" => Py::Set(items(arg)?),
            "F" => Py::FrozenSet(items(arg)?),
            "d" => {
                let pairs = arg.and_then(Value::as_array).ok_or("`d` without items")?;
                let mut out = Vec::with_capacity(pairs.len());
                for p in pairs {
                    match p.as_array().map(Vec::as_slice) {
                        Some([k, v]) => out.push((
                            Self::decode_at(k, depth + 1)?,
                            Self::decode_at(v, depth + 1)?,
                        )),
                        _ => return Err("`d` item is not a [key, value] pair".into()),
                    }
                }
                Py::Dict(out)
            }
            "u" => Py::Unsupported(text(arg)?),
            "#" => {
                let mut d = [0u8; 32];
                hex::decode_to_slice(text(arg)?, &mut d).map_err(|e| format!("bad digest: {e}"))?;
                Py::Digest(d)
            }
            other => return Err(format!("unknown tag {other:?}")),
        })
    }

    fn type_name(&self) -> &str {
        match self {
            Py::Int(_) => "int",
            Py::Float(_) => "float",
            Py::Str(_) => "str",
            Py::Bool(_) => "bool",
            Py::None => "NoneType",
            Py::List(_) => "list",
            Py::Tuple(_) => "tuple",
            Py::Dict(_) => "dict",
            Py::Set(_) => "set",
            Py::FrozenSet(_) => "frozenset",
            Py::Unsupported(n) => n,
            Py::Digest(_) => "digest",
        }
    }

    /// `type(self) == type(other)`; an unsupported type is the type of nothing.
    fn same_type(&self, other: &Py) -> bool {
        !matches!(self, Py::Unsupported(_) | Py::Digest(_))
            && std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    fn number(&self) -> Option<Num<'_>> {
        match self {
            Py::Int(s) => Some(Num::Int(s)),
            Py::Bool(b) => Some(Num::Int(if *b { "0x1" } else { "0x0" })),
            Py::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }

    /// The value as a float, as `float(x)` gives it for numbers (`None` for others, and for
    /// ints too large for a float: Python raises `OverflowError`).
    fn as_f64(&self) -> Option<f64> {
        match self.number()? {
            Num::Float(f) => Some(f),
            Num::Int(s) => int_to_f64(s),
        }
    }
}

/// An int as `format(x, "#x")` writes it (the only spelling: equal ints have equal text).
fn decode_int(s: String) -> Result<Py, String> {
    let digits = s
        .strip_prefix('-')
        .unwrap_or(&s)
        .strip_prefix("0x")
        .unwrap_or("");
    let canonical = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0x0";
    if !canonical {
        return Err(format!("bad int {s:?}"));
    }
    Ok(Py::Int(s))
}

/// An expected output: the value, or (for a long one compared exactly) the sha256 of its normal
/// form as the runner computes it (`canon` in harness.py).
#[derive(Clone, Debug)]
pub(crate) enum Expected {
    Value(Py),
    Digest([u8; 32]),
}

/// Python's `float(repr)` for what `float.__repr__` writes: digits, `inf`, `-inf`, `nan`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.e".contains(&b)) =>
        {
            s.parse::<f64>().ok().filter(|f| f.is_finite())
        }
        _ => None,
    }
}

enum Num<'a> {
    Int(&'a str),
    Float(f64),
}

fn num_eq(a: Num<'_>, b: Num<'_>) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Float(x), Num::Float(y)) => x == y,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => {
            // Python compares an int and a float exactly.
            f.is_finite() && f.fract() == 0.0 && int_digits(f) == i
        }
    }
}

/// An integral finite float as `format(int(f), "#x")`.
fn int_digits(f: f64) -> String {
    if f == 0.0 {
        return "0x0".into();
    }
    let bits = f.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = (bits & ((1 << 52) - 1)) | if exp == 0 { 0 } else { 1 << 52 };
    // |f| = mantissa * 2^(exp - 1075); integral, so a negative shift drops only zero bits.
    let shift = exp.max(1) - 1075;
    let hex = if shift < 0 {
        format!("{:x}", mantissa >> (-shift))
    } else {
        let (q, r) = (shift / 4, shift % 4);
        format!("{:x}{}", (mantissa as u128) << r, "0".repeat(q as usize))
    };
    format!("{}0x{hex}", if f < 0.0 { "-" } else { "" })
}

/// `float(x)` of an int in hex (`None` past the float range: Python raises OverflowError).
fn int_to_f64(s: &str) -> Option<f64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let digits = rest.strip_prefix("0x")?;
    let v = if digits.len() <= 32 {
        u128::from_str_radix(digits, 16).ok()? as f64
    } else if digits.len() > 256 {
        return None;
    } else {
        // The leading 32 hex digits (128 bits) then a power of two: the low bits only matter
        // for rounding ties far below what any check here can see.
        let head = u128::from_str_radix(&digits[..32], 16).ok()? as f64;
        head * 2f64.powi(4 * (digits.len() - 32) as i32)
    };
    v.is_finite().then_some(if neg { -v } else { v })
}

/// Python's `a == b` for builtin values.
pub(crate) fn py_eq(a: &Py, b: &Py) -> bool {
    if let (Some(x), Some(y)) = (a.number(), b.number()) {
        return num_eq(x, y);
    }
    match (a, b) {
        (Py::Str(x), Py::Str(y)) => x == y,
        (Py::None, Py::None) => true,
        (Py::List(x), Py::List(y)) | (Py::Tuple(x), Py::Tuple(y)) => seq_eq(x, y),
        (Py::Set(x) | Py::FrozenSet(x), Py::Set(y) | Py::FrozenSet(y)) => {
            x.len() == y.len()
                && x.iter().all(|i| y.iter().any(|j| py_eq(i, j)))
                && y.iter().all(|j| x.iter().any(|i| py_eq(i, j)))
        }
        (Py::Dict(x), Py::Dict(y)) => {
            // Same size, every key of each found in the other (a forged dict with repeated
            // keys cannot cover the other's), and equal values under each key.
            x.len() == y.len()
                && y.iter().all(|(k, _)| x.iter().any(|(k2, _)| py_eq(k, k2)))
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| py_eq(k, k2))
                        .is_some_and(|(_, v2)| py_eq(v, v2))
                })
        }
        _ => false,
    }
}

fn seq_eq(x: &[Py], y: &[Py]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b))
}

/// evalplus `is_floats`: a float, or a non-empty list or tuple of floats.
pub(crate) fn is_floats(x: &Py) -> bool {
    match x {
        Py::Float(_) => true,
        Py::List(v) | Py::Tuple(v) => !v.is_empty() && v.iter().all(|i| matches!(i, Py::Float(_))),
        _ => false,
    }
}

/// A value as numpy would make an array of it: shape and elements (row-major); `None` where
/// numpy would fail (ragged, non-numeric).
fn to_array(x: &Py) -> Option<(Vec<usize>, Vec<f64>)> {
    match x {
        Py::List(v) | Py::Tuple(v) => {
            let mut shape: Option<Vec<usize>> = None;
            let mut data = Vec::new();
            for i in v {
                let (s, d) = to_array(i)?;
                match &shape {
                    None => shape = Some(s),
                    Some(prev) if *prev == s => {}
                    Some(_) => return None,
                }
                data.extend(d);
            }
            let mut full = vec![v.len()];
            full.extend(shape.unwrap_or_default());
            Some((full, data))
        }
        _ => Some((vec![], vec![x.as_f64()?])),
    }
}

/// `numpy.allclose(out, exp, rtol, atol)` (no NaN equality), with numpy's broadcasting.
pub(crate) fn allclose(out: &Py, exp: &Py, rtol: f64, atol: f64) -> bool {
    let (Some((sa, da)), Some((sb, db))) = (to_array(out), to_array(exp)) else {
        return false;
    };
    let n = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut p = vec![1; n - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (pa, pb) = (pad(&sa), pad(&sb));
    let mut shape = Vec::with_capacity(n);
    for (&x, &y) in pa.iter().zip(&pb) {
        if x != y && x != 1 && y != 1 {
            return false;
        }
        shape.push(if x == 1 { y } else { x });
    }
    let strides = |p: &[usize]| {
        let mut st = vec![0; n];
        let mut acc = 1;
        for d in (0..n).rev() {
            st[d] = if p[d] == 1 { 0 } else { acc };
            acc *= p[d];
        }
        st
    };
    let (ta, tb) = (strides(&pa), strides(&pb));
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; n];
    for _ in 0..total {
        let ia: usize = idx.iter().zip(&ta).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&tb).map(|(i, s)| i * s).sum();
        let (a, b) = (da[ia], db[ib]);
        let close = if a.is_finite() && b.is_finite() {
            (a - b).abs() <= atol + rtol * b.abs()
        } else {
            a == b
        };
        if !close {
            return false;
        }
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    true
}

/// evalplus's `_poly(xs, x)` for HumanEval/32: `sum(coeff * math.pow(x, i))`.
fn poly(xs: &[Py], x: f64) -> Option<f64> {
    let mut sum = 0.0f64;
    for (i, c) in xs.iter().enumerate() {
        let p = x.powf(i as f64);
        if !p.is_finite() && x.is_finite() {
            return None; // math.pow raises OverflowError
        }
        sum += c.as_f64()? * p;
    }
    Some(sum)
}

/// The state of one part's checks (evalplus raises `atol` to 1e-6 for good once it meets a
/// float expectation).
pub(crate) struct Checker {
    pub(crate) atol: f64,
    pub(crate) find_zero: bool,
}

impl Checker {
    /// evalplus `unsafe_execute`'s check of one output: `Err` says why it fails.
    pub(crate) fn check(&mut self, input: &Value, out: &Py, exp: &Expected) -> Result<(), String> {
        let exp = match exp {
            Expected::Value(v) => v,
            Expected::Digest(d) => {
                // Stored as a digest only where evalplus compares exactly (atol stays 0).
                return if self.find_zero || self.atol != 0.0 {
                    Err(
                        "an expected output kept as a digest cannot be compared approximately"
                            .into(),
                    )
                } else if matches!(out, Py::Digest(o) if o == d) {
                    Ok(())
                } else {
                    Err(match out {
                        Py::Unsupported(t) => {
                            format!("returned a {t}, which is not a builtin type")
                        }
                        _ => "wrong output".into(),
                    })
                };
            }
        };
        if self.find_zero {
            let xs = input
                .as_array()
                .and_then(|a| a.first())
                .map(|xs| Py::decode(&plain_to_tagged(xs)))
                .and_then(Result::ok);
            let Some(Py::List(xs)) = xs else {
                return Err("find_zero input is not a list of coefficients".into());
            };
            let x = out
                .as_f64()
                .ok_or_else(|| format!("returned {}, expected a number", out.type_name()))?;
            return match poly(&xs, x) {
                Some(v) if v.abs() <= self.atol => Ok(()),
                _ => Err(format!("poly(xs, x) is not within {} of 0", self.atol)),
            };
        }
        let exact = py_eq(out, exp);
        if self.atol == 0.0 && is_floats(exp) {
            self.atol = 1e-6;
        }
        if !exact && self.atol != 0.0 {
            if !out.same_type(exp) {
                return Err(format!(
                    "returned {}, expected {}",
                    out.type_name(),
                    exp.type_name()
                ));
            }
            if let (Py::List(a) | Py::Tuple(a), Py::List(b) | Py::Tuple(b)) = (out, exp)
                && a.len() != b.len()
            {
                return Err("wrong length".into());
            }
            if !allclose(out, exp, 1e-7, self.atol) {
                return Err("not close to the expected output".into());
            }
            Ok(())
        } else if !exact {
            Err(match out {
                Py::Unsupported(t) => format!("returned a {t}, which is not a builtin type"),
                _ if !out.same_type(exp) && out.number().is_none() => format!(
                    "wrong output: returned {}, expected {}",
                    out.type_name(),
                    exp.type_name()
                ),
                _ => "wrong output".into(),
            })
        } else {
            Ok(())
        }
    }
}

/// A plain JSON input (as in HumanEvalPlus.jsonl) in the tagged encoding, as Python's
/// `json.loads` would make it (arrays are lists, numbers with a fraction or exponent floats).
pub(crate) fn plain_to_tagged(v: &Value) -> Value {
    use serde_json::json;
    match v {
        Value::Null => json!(["n"]),
        Value::Bool(b) => json!(["b", b]),
        Value::Number(n) if n.is_f64() => {
            json!(["f", format!("{}", n.as_f64().unwrap_or(f64::NAN))])
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => json!([
                "i",
                format!("{}{:#x}", if i < 0 { "-" } else { "" }, i.unsigned_abs())
            ]),
            (_, Some(u)) => json!(["i", format!("{u:#x}")]),
            _ => json!(["f", format!("{}", n.as_f64().unwrap_or(f64::NAN))]),
        },
        Value::String(s) => json!(["s", s]),
        Value::Array(a) => json!(["l", a.iter().map(plain_to_tagged).collect::<Vec<_>>()]),
        Value::Object(o) => json!([
            "d",
            o.iter()
                .map(|(k, v)| json!([["s", k], plain_to_tagged(v)]))
                .collect::<Vec<_>>()
        ]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn py(v: Value) -> Py {
        Py::decode(&v).unwrap()
    }

    #[test]
    fn python_equality_on_builtins() {
        let one = py(json!(["i", "0x1"]));
        assert!(py_eq(&one, &py(json!(["f", "1.0"]))));
        assert!(py_eq(&one, &py(json!(["b", true]))));
        assert!(!py_eq(&one, &py(json!(["s", "1"]))));
        assert!(!py_eq(&py(json!(["f", "nan"])), &py(json!(["f", "nan"]))));
        assert!(py_eq(&py(json!(["f", "-0.0"])), &py(json!(["i", "0x0"]))));
        let big = "0x20000000000001";
        assert!(!py_eq(
            &py(json!(["i", big])),
            &py(json!(["f", "9007199254740992.0"]))
        ));
        assert!(py_eq(
            &py(json!(["i", "0x20000000000000"])),
            &py(json!(["f", "9007199254740992.0"]))
        ));
        assert!(py_eq(
            &py(json!(["f", "1e+16"])),
            &py(json!(["i", "0x2386f26fc10000"]))
        ));
        assert!(!py_eq(
            &py(json!(["l", [["i", "0x1"]]])),
            &py(json!(["t", [["i", "0x1"]]]))
        ));
        assert!(py_eq(
            &py(json!(["S", [["i", "0x1"], ["i", "0x2"]]])),
            &py(json!(["F", [["i", "0x2"], ["f", "1.0"]]]))
        ));
        let d1 = py(json!([
            "d",
            [[["i", "0x1"], ["s", "a"]], [["i", "0x2"], ["s", "b"]]]
        ]));
        let d2 = py(json!([
            "d",
            [[["b", true], ["s", "a"]], [["i", "0x2"], ["s", "b"]]]
        ]));
        let forged = py(json!([
            "d",
            [[["i", "0x1"], ["s", "a"]], [["i", "0x1"], ["s", "a"]]]
        ]));
        assert!(py_eq(&d1, &d2));
        assert!(!py_eq(&forged, &d1));
        let u = py(json!(["u", "Liar"]));
        assert!(!py_eq(&u, &u));
        assert!(Py::decode(&json!(["i", "0x01"])).is_err());
        assert!(Py::decode(&json!(["i", "1.5"])).is_err());
        assert!(Py::decode(&json!(["i", "12"])).is_err());
        assert!(Py::decode(&json!(["i", "-0x0"])).is_err());
        for f in [
            1.0,
            -3.0,
            4503599627370497.0,
            1e300,
            -2f64.powi(70),
            123456789.0,
        ] {
            let hex = int_digits(f);
            assert!(py_eq(&Py::Float(f), &py(json!(["i", hex]))), "{f} {hex}");
            assert_eq!(int_to_f64(&hex), Some(f));
        }
        assert!(Py::decode(&json!(["f", "0x1p3"])).is_err());
        assert!(Py::decode(&json!(["n", 1])).is_err());
    }

    #[test]
    fn evalplus_float_checks() {
        let mut c = Checker {
            atol: 0.0,
            find_zero: false,
        };
        let inp = json!([]);
        // Float expectation: atol becomes 1e-6 and stays.
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "0.5000001"])),
                &Expected::Value(py(json!(["f", "0.5"])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "0.501"])),
                &Expected::Value(py(json!(["f", "0.5"])))
            )
            .is_err()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["i", "0x1"])),
                &Expected::Value(py(json!(["f", "1.0000001"])))
            )
            .is_err()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["l", [["f", "1.0"], ["i", "0x2"]]])),
                &Expected::Value(py(json!(["l", [["f", "1.0000001"], ["f", "2.0"]]])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["t", [["f", "1.0"]]])),
                &Expected::Value(py(json!(["l", [["f", "1.0000001"]]])))
            )
            .is_err()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "inf"])),
                &Expected::Value(py(json!(["f", "inf"])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "nan"])),
                &Expected::Value(py(json!(["f", "nan"])))
            )
            .is_err()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["u", "float"])),
                &Expected::Value(py(json!(["f", "0.5"])))
            )
            .is_err()
        );
        // Exact checks without atol.
        let mut c = Checker {
            atol: 0.0,
            find_zero: false,
        };
        assert!(
            c.check(
                &inp,
                &py(json!(["s", "a"])),
                &Expected::Value(py(json!(["s", "a"])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["i", "0x2"])),
                &Expected::Value(py(json!(["i", "0x3"])))
            )
            .is_err()
        );
        // find_zero: the oracle, whatever the expected output.
        let mut c = Checker {
            atol: 1e-4,
            find_zero: true,
        };
        let inp = json!([[-6, 11, -6, 1]]);
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "1.0"])),
                &Expected::Value(py(json!(["f", "3.0"])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["i", "0x2"])),
                &Expected::Value(py(json!(["f", "3.0"])))
            )
            .is_ok()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["f", "1.5"])),
                &Expected::Value(py(json!(["f", "1.0"])))
            )
            .is_err()
        );
        assert!(
            c.check(
                &inp,
                &py(json!(["s", "1.0"])),
                &Expected::Value(py(json!(["f", "1.0"])))
            )
            .is_err()
        );
    }

    #[test]
    fn digests_are_compared_as_digests() {
        let d = [7u8; 32];
        let sent = py(json!(["#", hex::encode(d)]));
        let mut c = Checker {
            atol: 0.0,
            find_zero: false,
        };
        assert!(c.check(&json!(null), &sent, &Expected::Digest(d)).is_ok());
        assert!(
            c.check(
                &json!(null),
                &py(json!(["#", hex::encode([8u8; 32])])),
                &Expected::Digest(d)
            )
            .is_err()
        );
        assert!(
            c.check(&json!(null), &py(json!(["l", []])), &Expected::Digest(d))
                .is_err()
        );
        // A digest where a value is expected is not equal to it.
        assert!(
            c.check(&json!(null), &sent, &Expected::Value(py(json!(["l", []]))))
                .is_err()
        );
        assert!(!py_eq(&sent, &sent));
    }

    #[test]
    fn numpy_broadcasting() {
        let a = py(json!(["l", [["l", [["f", "1.0"]]]]]));
        let b = py(json!(["l", [["l", [["f", "1.0"], ["f", "1.0"]]]]]));
        assert!(allclose(&a, &b, 1e-7, 1e-6));
        let c = py(json!(["l", [["l", [["f", "1.0"], ["f", "2.0"]]]]]));
        assert!(!allclose(&a, &c, 1e-7, 1e-6));
        let ragged = py(json!(["l", [["l", []], ["l", [["f", "1.0"]]]]]));
        assert!(!allclose(&ragged, &ragged, 1e-7, 1e-6));
    }
}
