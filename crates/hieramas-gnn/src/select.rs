//! Test-time choice among scored candidate topologies (method §6.4): the official top-1, or the
//! cost-aware option `score − λ·expected cost` (the official code has no cost term; cost enters
//! only through the labels).

use serde::{Deserialize, Serialize};

use crate::metrics::top1;
use crate::record::TaskRecord;

/// Expected cost of one run of a topology, linear in its edge count (more edges, longer prompts),
/// fitted by least squares on the stage-2 runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub base_usd: f64,
    pub per_edge_usd: f64,
}

impl CostModel {
    /// The least-squares line through `(edges, cost)` of every run; with one edge count only, a
    /// flat line at its mean.
    pub fn fit(records: &[TaskRecord]) -> CostModel {
        let points: Vec<(f64, f64)> = records
            .iter()
            .flat_map(|t| {
                t.runs
                    .iter()
                    .map(|r| (r.edges.len() as f64, r.cost_pico as f64 / 1e12))
            })
            .collect();
        let n = points.len() as f64;
        if points.is_empty() {
            return CostModel::default();
        }
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        CostModel {
            base_usd: my - slope * mx,
            per_edge_usd: slope,
        }
    }

    pub fn expected_usd(&self, edges: usize) -> f64 {
        self.base_usd + self.per_edge_usd * edges as f64
    }
}

/// How the candidate to run is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Rule {
    /// The highest score (official).
    Top1,
    /// The highest `score − lambda · expected cost (USD)`.
    CostAware { lambda: f64 },
}

/// The index of the chosen candidate among `scores` (edge counts alongside); ties go to the
/// earlier candidate. `None` for no candidates.
pub fn choose(
    scores: &[f64],
    edge_counts: &[usize],
    rule: Rule,
    cost: &CostModel,
) -> Option<usize> {
    match rule {
        Rule::Top1 => top1(scores),
        Rule::CostAware { lambda } => {
            let adjusted: Vec<f64> = scores
                .iter()
                .zip(edge_counts)
                .map(|(s, &e)| s - lambda * cost.expected_usd(e))
                .collect();
            top1(&adjusted)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::Run;

    fn run(edges: usize, cost_pico: u64) -> Run {
        Run {
            edges: (0..edges).map(|i| [i, i + 1]).collect(),
            selected: vec![],
            reward: 0.0,
            solved: true,
            cost_pico,
            rank: 0,
            label: false,
        }
    }

    #[test]
    fn the_cost_line_and_the_cost_aware_rule() {
        let t = TaskRecord {
            task_id: "t".into(),
            embedding: vec![],
            runs: vec![run(2, 3_000_000), run(3, 4_000_000), run(4, 5_000_000)],
        };
        let c = CostModel::fit(&[t]);
        assert!((c.per_edge_usd - 1e-6).abs() < 1e-15 && (c.base_usd - 1e-6).abs() < 1e-15);
        let scores = [0.80, 0.79];
        let edges = [6, 2];
        assert_eq!(choose(&scores, &edges, Rule::Top1, &c), Some(0));
        // 0.80 − λ·7e-6 vs 0.79 − λ·3e-6: λ = 10 000 per USD prefers the cheaper one.
        assert_eq!(
            choose(&scores, &edges, Rule::CostAware { lambda: 10_000.0 }, &c),
            Some(1)
        );
        assert_eq!(choose(&[], &[], Rule::Top1, &c), None);
        assert_eq!(CostModel::fit(&[]), CostModel::default());
    }
}
