//! Price sync from OpenRouter's public catalogue (`GET /api/v1/models`), and rewriting a pool
//! file's prices in place (comments and layout kept).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cost::Price;
use crate::error::LlmError;
use crate::pool::{Pool, Provider};

/// Prices by OpenRouter model id, from `{base_url}/models` (base e.g. `https://openrouter.ai/api/v1`).
pub async fn fetch_openrouter_prices(
    http: &reqwest::Client,
    base_url: &str,
) -> Result<BTreeMap<String, Price>, LlmError> {
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let fail = |detail: String| LlmError::Backend {
        model: "openrouter-catalogue".into(),
        detail: format!("GET {url}: {detail}"),
    };
    let resp = http
        .get(&url)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| fail(crate::http::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| fail(format!("not JSON: {e}")))?;
    parse_catalogue(&v).map_err(fail)
}

/// Reads `{"data": [{"id", "pricing": {"prompt", "completion"}}]}` (USD per token, strings).
pub fn parse_catalogue(v: &Value) -> Result<BTreeMap<String, Price>, String> {
    let data = v["data"].as_array().ok_or("no data array")?;
    let mut out = BTreeMap::new();
    for (i, m) in data.iter().enumerate() {
        let Some(id) = m["id"].as_str() else {
            return Err(format!("data[{i}] has no id"));
        };
        let field = |name: &str| -> Result<String, String> {
            match &m["pricing"][name] {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(format!("{id}: no pricing.{name}")),
            }
        };
        // Negative prices ("-1") mark router pseudo-models with variable pricing: skip them.
        let (p, c) = (field("prompt")?, field("completion")?);
        if p.starts_with('-') || c.starts_with('-') {
            continue;
        }
        let price = Price::per_token(&p, &c).map_err(|e| format!("{id}: {e}"))?;
        out.insert(id.to_string(), price);
    }
    Ok(out)
}

/// One model's price before and after a sync.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceChange {
    pub id: String,
    pub model: String,
    pub old: Price,
    /// `None`: the catalogue does not list the model; its price is left as it was.
    pub new: Option<Price>,
}

/// Compares a pool's OpenRouter models with a catalogue.
pub fn diff_prices(pool: &Pool, catalogue: &BTreeMap<String, Price>) -> Vec<PriceChange> {
    pool.models
        .iter()
        .filter(|m| m.provider == Provider::Openrouter)
        .map(|m| PriceChange {
            id: m.id.clone(),
            model: m.model.clone(),
            old: m.price,
            new: catalogue.get(&m.model).copied(),
        })
        .collect()
}

/// Writes the new prices and `prices_date` into the pool file's text, keeping everything else.
pub fn rewrite_pool_prices(
    text: &str,
    changes: &[PriceChange],
    date: &str,
) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let models = doc
        .get_mut("models")
        .and_then(|m| m.as_array_of_tables_mut())
        .ok_or("no [[models]]")?;
    for t in models.iter_mut() {
        let Some(id) = t.get("id").and_then(|v| v.as_str()).map(String::from) else {
            continue;
        };
        if let Some(new) = changes.iter().find(|c| c.id == id).and_then(|c| c.new) {
            set_number_keep_comment(
                t,
                "input_per_mtok",
                per_million_string(new.input_pico_per_token),
            )?;
            set_number_keep_comment(
                t,
                "output_per_mtok",
                per_million_string(new.output_pico_per_token),
            )?;
        }
    }
    doc["pool"]["prices_date"] = toml_edit::value(date);
    doc["pool"]["prices_source"] = toml_edit::value("OpenRouter GET /api/v1/models");
    Ok(doc.to_string())
}

fn set_number_keep_comment(
    t: &mut toml_edit::Table,
    key: &str,
    decimal: String,
) -> Result<(), String> {
    let f: f64 = decimal.parse().map_err(|e| format!("{decimal}: {e}"))?;
    let decor = t
        .get(key)
        .and_then(|i| i.as_value())
        .map(|v| v.decor().clone());
    let mut v = toml_edit::Value::from(f);
    if let Some(d) = decor {
        *v.decor_mut() = d;
    }
    t[key] = toml_edit::Item::Value(v);
    Ok(())
}

/// Pico-dollars per token as an exact decimal of USD per million tokens.
fn per_million_string(pico_per_token: u64) -> String {
    let whole = pico_per_token / 1_000_000;
    let frac = format!("{:06}", pico_per_token % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{whole}.0")
    } else {
        format!("{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_catalogue_and_skips_variable_prices() {
        let v = json!({"data": [
            {"id": "a/b", "pricing": {"prompt": "0.00000015", "completion": "0.0000006"}},
            {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
        ]});
        let c = parse_catalogue(&v).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c["a/b"], Price::per_million("0.15", "0.60").unwrap());
        assert!(parse_catalogue(&json!({"data": [{"id": "x"}]})).is_err());
    }

    #[test]
    fn rewrites_prices_keeping_comments() {
        let pool = Pool::paper();
        let mut cat = BTreeMap::new();
        cat.insert(
            "openai/gpt-4o-mini".to_string(),
            Price::per_million("0.125", "0.5").unwrap(),
        );
        let changes = diff_prices(&pool, &cat);
        assert_eq!(changes.len(), 9);
        assert_eq!(changes.iter().filter(|c| c.new.is_some()).count(), 1);
        let text =
            rewrite_pool_prices(crate::pool::PAPER_POOL_TOML, &changes, "2030-01-02").unwrap();
        assert!(text.contains("# OpenAI list price"), "comments kept");
        let again = Pool::from_toml(&text, "rewritten").unwrap();
        assert_eq!(
            again.get("gpt-4o-mini").unwrap().price,
            Price::per_million("0.125", "0.5").unwrap()
        );
        assert_eq!(
            again.get("qwen3-8b").unwrap().price,
            pool.get("qwen3-8b").unwrap().price
        );
        assert_eq!(again.meta.prices_date.as_deref(), Some("2030-01-02"));
        assert_eq!(per_million_string(2_000_000), "2.0");
        assert_eq!(per_million_string(35_000), "0.035");
    }
}
