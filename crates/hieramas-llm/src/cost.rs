//! Exact money: USD held as an integer count of pico-dollars (1e-12 USD), and per-token prices.
//!
//! Every provider price we know of is a decimal with at most 12 places per token (OpenRouter
//! quotes strings like `"0.00000005"`), so a cost `tokens × price` is an exact integer here and
//! sums along a query's call tree are exact and order-independent — no float drift between a
//! total and the sum of its parts.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Usage;

/// Pico-dollars in one dollar.
pub const PICO_PER_USD: u64 = 1_000_000_000_000;

/// An exact amount of US dollars (pico-dollar resolution). Serialises as a JSON number of
/// dollars; values below $9,000 round-trip exactly through `f64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub const fn from_pico(pico: u64) -> Usd {
        Usd(pico)
    }

    pub const fn pico(self) -> u64 {
        self.0
    }

    /// Parses a decimal number of dollars (`"0.25"`, `"1e-7"`, `"3"`), exactly.
    pub fn parse(s: &str) -> Result<Usd, PriceError> {
        decimal_to_scaled(s, 12).map(Usd)
    }

    /// Nearest amount to a float number of dollars (for user input such as `--budget-usd 2.5`).
    pub fn from_f64(usd: f64) -> Result<Usd, PriceError> {
        // Rust prints the shortest decimal that round-trips, so this parse is exact for any
        // value a person would type.
        Usd::parse(&format!("{usd}"))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / PICO_PER_USD as f64
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    pub fn checked_add(self, other: Usd) -> Option<Usd> {
        self.0.checked_add(other.0).map(Usd)
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        *self = *self + rhs;
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Usd> for Usd {
    fn sum<I: Iterator<Item = &'a Usd>>(iter: I) -> Usd {
        iter.copied().sum()
    }
}

impl fmt::Display for Usd {
    /// `$0.000123` — all significant digits, no trailing zeros (at least two decimals).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / PICO_PER_USD;
        let frac = format!("{:012}", self.0 % PICO_PER_USD);
        let mut frac = frac.trim_end_matches('0').to_string();
        while frac.len() < 2 {
            frac.push('0');
        }
        write!(f, "${whole}.{frac}")
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        let v = DecimalInput::deserialize(d)?;
        v.to_scaled(12).map(Usd).map_err(serde::de::Error::custom)
    }
}

/// A price or amount that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid decimal amount {input:?}: {reason}")]
pub struct PriceError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a non-negative decimal (optionally with an exponent) into an integer scaled by
/// `10^scale`, failing rather than rounding when the value has more precision than that.
pub(crate) fn decimal_to_scaled(input: &str, scale: u32) -> Result<u64, PriceError> {
    let err = |reason| PriceError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => {
            let exp: i32 = s[i + 1..].parse().map_err(|_| err("bad exponent"))?;
            (&s[..i], exp)
        }
        None => (s, 0),
    };
    let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
    if mantissa.starts_with('-') {
        return Err(err("amounts cannot be negative"));
    }
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err("no digits"));
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(err("not a decimal number"));
    }
    let digits: String = format!("{int_part}{frac_part}");
    // value = digits × 10^(exp − len(frac)); scaled = digits × 10^(exp − len(frac) + scale)
    let shift = exp as i64 - frac_part.len() as i64 + i64::from(scale);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if shift >= 0 {
        let base: u64 = digits.parse().map_err(|_| err("too large"))?;
        let mul = 10u64
            .checked_pow(u32::try_from(shift).map_err(|_| err("too large"))?)
            .ok_or_else(|| err("too large"))?;
        base.checked_mul(mul).ok_or_else(|| err("too large"))
    } else {
        let drop = usize::try_from(-shift).map_err(|_| err("too small"))?;
        if drop >= digits.len() {
            return Err(err("more precision than the smallest unit"));
        }
        let (keep, dropped) = digits.split_at(digits.len() - drop);
        if dropped.bytes().any(|b| b != b'0') {
            return Err(err("more precision than the smallest unit"));
        }
        keep.parse().map_err(|_| err("too large"))
    }
}

/// A decimal given in a config file either as a TOML/JSON number or as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum DecimalInput {
    Str(String),
    Int(u64),
    Float(f64),
}

impl DecimalInput {
    fn to_scaled(&self, scale: u32) -> Result<u64, PriceError> {
        match self {
            DecimalInput::Str(s) => decimal_to_scaled(s, scale),
            DecimalInput::Int(i) => decimal_to_scaled(&i.to_string(), scale),
            // Shortest round-trip formatting gives back exactly what the file said.
            DecimalInput::Float(f) => decimal_to_scaled(&format!("{f}"), scale),
        }
    }
}

/// A model's price, exact, in pico-dollars per token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Price {
    pub input_pico_per_token: u64,
    pub output_pico_per_token: u64,
}

impl Price {
    pub const FREE: Price = Price {
        input_pico_per_token: 0,
        output_pico_per_token: 0,
    };

    /// From USD per million tokens, as providers quote them (`"0.15"`, `"0.60"`).
    pub fn per_million(input_usd: &str, output_usd: &str) -> Result<Price, PriceError> {
        Ok(Price {
            input_pico_per_token: decimal_to_scaled(input_usd, 6)?,
            output_pico_per_token: decimal_to_scaled(output_usd, 6)?,
        })
    }

    /// From USD per token, as OpenRouter's `/api/v1/models` quotes them (`"0.00000015"`).
    pub fn per_token(input_usd: &str, output_usd: &str) -> Result<Price, PriceError> {
        Ok(Price {
            input_pico_per_token: decimal_to_scaled(input_usd, 12)?,
            output_pico_per_token: decimal_to_scaled(output_usd, 12)?,
        })
    }

    /// USD per million input tokens (for display and for writing config files).
    pub fn input_per_million(&self) -> f64 {
        self.input_pico_per_token as f64 / 1e6
    }

    /// USD per million output tokens.
    pub fn output_per_million(&self) -> f64 {
        self.output_pico_per_token as f64 / 1e6
    }

    /// The exact cost of a call with this usage.
    pub fn cost(&self, usage: Usage) -> Usd {
        let pico = u128::from(usage.prompt_tokens) * u128::from(self.input_pico_per_token)
            + u128::from(usage.completion_tokens) * u128::from(self.output_pico_per_token);
        Usd(u64::try_from(pico).unwrap_or(u64::MAX))
    }
}

/// Reads a price given per million tokens from a config value (number or string).
pub(crate) fn deserialize_per_million<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let v = Option::<DecimalInput>::deserialize(d)?;
    v.map(|v| v.to_scaled(6).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prices_exactly() {
        let p = Price::per_million("0.05", "0.40").unwrap();
        assert_eq!(p.input_pico_per_token, 50_000);
        assert_eq!(p.output_pico_per_token, 400_000);
        assert_eq!(Price::per_token("0.00000005", "4e-7").unwrap(), p);
        assert_eq!(
            Price::per_million("0.035", "0")
                .unwrap()
                .input_pico_per_token,
            35_000
        );
    }

    #[test]
    fn rejects_bad_amounts() {
        assert!(decimal_to_scaled("-1", 6).is_err());
        assert!(decimal_to_scaled("abc", 6).is_err());
        assert!(decimal_to_scaled("", 6).is_err());
        assert!(decimal_to_scaled(".", 6).is_err());
        assert!(decimal_to_scaled("1e999", 6).is_err());
        // 1e-13 USD per token cannot be held in pico-dollars: refuse, don't round to 0.
        assert!(decimal_to_scaled("0.0000000000001", 12).is_err());
        assert_eq!(decimal_to_scaled("0.00000000000100", 12), Ok(1));
        assert_eq!(decimal_to_scaled("1.5e3", 0), Ok(1500));
        assert_eq!(decimal_to_scaled("000", 3), Ok(0));
    }

    #[test]
    fn cost_is_exact() {
        let p = Price::per_million("0.25", "2.00").unwrap();
        let c = p.cost(Usage {
            prompt_tokens: 1234,
            completion_tokens: 567,
        });
        // 1234 × 0.25e-6 + 567 × 2e-6 = 0.0003085 + 0.001134 = 0.0014425
        assert_eq!(c, Usd::parse("0.0014425").unwrap());
        assert_eq!(c.to_string(), "$0.0014425");
        assert_eq!(Usd::ZERO.to_string(), "$0.00");
        assert_eq!(Usd::parse("12.5").unwrap().to_string(), "$12.50");
    }

    #[test]
    fn usd_serde_round_trip() {
        let u = Usd::parse("0.0014425").unwrap();
        let s = serde_json::to_string(&u).unwrap();
        assert_eq!(s, "0.0014425");
        assert_eq!(serde_json::from_str::<Usd>(&s).unwrap(), u);
        assert_eq!(
            serde_json::from_str::<Usd>("\"1e-6\"").unwrap(),
            Usd::from_pico(1_000_000)
        );
    }

    proptest! {
        #[test]
        fn sum_of_costs_is_cost_of_sum(
            pi in 0u64..10_000_000, po in 0u64..100_000_000,
            calls in proptest::collection::vec((0u64..200_000, 0u64..50_000), 0..50)
        ) {
            let p = Price { input_pico_per_token: pi, output_pico_per_token: po };
            let total: Usd = calls.iter().map(|&(a, b)| p.cost(Usage { prompt_tokens: a, completion_tokens: b })).sum();
            let (ta, tb) = calls.iter().fold((0, 0), |(x, y), &(a, b)| (x + a, y + b));
            prop_assert_eq!(total, p.cost(Usage { prompt_tokens: ta, completion_tokens: tb }));
        }

        #[test]
        fn display_parses_back(pico in 0u64..u64::MAX / 2) {
            let u = Usd::from_pico(pico);
            let shown = u.to_string();
            prop_assert_eq!(Usd::parse(shown.trim_start_matches('$')).unwrap(), u);
        }

        #[test]
        fn per_million_decimal_strings(int in 0u64..1000, frac in 0u64..1_000_000) {
            let s = format!("{int}.{frac:06}");
            let scaled = decimal_to_scaled(&s, 6).unwrap();
            prop_assert_eq!(scaled, int * 1_000_000 + frac);
        }
    }
}
