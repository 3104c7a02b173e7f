//! The summary of a results log: accuracy, cost, tokens and latency percentiles.

use hieramas_llm::Usd;
use serde::Serialize;

use crate::log::Record;

/// Totals over the records of one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub benchmark: String,
    pub split: String,
    pub method: String,
    pub model: String,
    pub config_hash: String,
    pub queries: usize,
    pub correct: usize,
    /// Percent of `queries`.
    pub accuracy: f64,
    /// HumanEval+: percent passing the base tests only.
    pub base_accuracy: Option<f64>,
    pub cost_pico: u64,
    /// `cost_pico` as dollars, exact (`$0.000123`).
    pub cost: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms_p50: u64,
    pub latency_ms_p90: u64,
    pub latency_ms_p99: u64,
    /// Calls answered from a response cache, and what they saved (pico-dollars; counted in
    /// `cost_pico`, so what was paid is `cost_pico - saved_pico`).
    #[serde(default)]
    pub cached_calls: u64,
    #[serde(default)]
    pub saved_pico: u64,
}

impl Summary {
    /// Summarises `records` (which should share one config hash).
    pub fn of(records: &[&Record]) -> Summary {
        let first = records.first();
        let field = |f: fn(&Record) -> &String| first.map(|r| f(r).clone()).unwrap_or_default();
        let n = records.len();
        let correct = records.iter().filter(|r| r.correct).count();
        let pct = |k: usize| {
            if n == 0 {
                0.0
            } else {
                100.0 * k as f64 / n as f64
            }
        };
        let base: Vec<bool> = records.iter().filter_map(|r| r.base_pass).collect();
        let mut latencies: Vec<u64> = records.iter().map(|r| r.latency_ms).collect();
        latencies.sort_unstable();
        let cost_pico = records.iter().map(|r| r.cost_pico).sum();
        Summary {
            benchmark: field(|r| &r.benchmark),
            split: field(|r| &r.split),
            method: field(|r| &r.method),
            model: field(|r| &r.model),
            config_hash: field(|r| &r.config_hash),
            queries: n,
            correct,
            accuracy: pct(correct),
            base_accuracy: (!base.is_empty()).then(|| pct(base.iter().filter(|b| **b).count())),
            cost_pico,
            cost: Usd::from_pico(cost_pico).to_string(),
            prompt_tokens: records.iter().map(|r| r.prompt_tokens).sum(),
            completion_tokens: records.iter().map(|r| r.completion_tokens).sum(),
            latency_ms_p50: percentile(&latencies, 50),
            latency_ms_p90: percentile(&latencies, 90),
            latency_ms_p99: percentile(&latencies, 99),
            cached_calls: records.iter().map(|r| u64::from(r.cached_calls)).sum(),
            saved_pico: records.iter().map(|r| r.saved_pico).sum(),
        }
    }

    /// A two-line table: header and values.
    pub fn table(&self) -> String {
        let acc = match self.base_accuracy {
            Some(b) => format!("{:.1} (base {b:.1})", self.accuracy),
            None => format!("{:.1}", self.accuracy),
        };
        let head = [
            "benchmark",
            "split",
            "method",
            "model",
            "n",
            "correct",
            "accuracy %",
            "cost",
            "prompt tok",
            "compl tok",
            "p50 ms",
            "p90 ms",
            "p99 ms",
        ];
        let row = [
            self.benchmark.clone(),
            self.split.clone(),
            self.method.clone(),
            self.model.clone(),
            self.queries.to_string(),
            self.correct.to_string(),
            acc,
            self.cost.clone(),
            self.prompt_tokens.to_string(),
            self.completion_tokens.to_string(),
            self.latency_ms_p50.to_string(),
            self.latency_ms_p90.to_string(),
            self.latency_ms_p99.to_string(),
        ];
        let widths: Vec<usize> = head
            .iter()
            .zip(&row)
            .map(|(h, r)| h.len().max(r.len()))
            .collect();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = format!(
            "{}\n{}",
            line(head.to_vec()),
            line(row.iter().map(String::as_str).collect())
        );
        if self.cached_calls > 0 {
            out.push_str(&format!(
                "\nresponse cache: {} calls answered from it, {} saved; paid {}",
                self.cached_calls,
                Usd::from_pico(self.saved_pico),
                Usd::from_pico(self.cost_pico.saturating_sub(self.saved_pico))
            ));
        }
        out
    }
}

/// The nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
