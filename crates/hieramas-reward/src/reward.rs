//! Rewards and their credit (method §5.4).

use hieramas_llm::Usd;
use serde::{Deserialize, Serialize};

/// The reward's shape: cost sensitivities, floors and the node/system mix.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardShape {
    /// Cost sensitivity of a success: `exp(−kappa·c)` (official: 300).
    pub kappa: f64,
    /// Cost sensitivity of a failure: `−exp(failure_kappa·c)` (official: 300, hard-coded).
    pub failure_kappa: f64,
    /// Least a success is worth (official: 0.5).
    pub success_floor: f64,
    /// Least a failure is worth (official: −2.5).
    pub failure_floor: f64,
    /// Weight of the node's own reward in its credit (official: 0.5).
    pub alpha: f64,
}

impl Default for RewardShape {
    fn default() -> Self {
        RewardShape {
            kappa: 300.0,
            failure_kappa: 300.0,
            success_floor: 0.5,
            failure_floor: -2.5,
            alpha: 0.5,
        }
    }
}

impl RewardShape {
    /// `reward_v2(solved, c)`: `max(exp(−κc), floor)` for a success, `max(−exp(κ_f c), floor)`
    /// for a failure.
    pub fn reward(&self, solved: bool, cost: Usd) -> f64 {
        let c = cost.as_f64();
        if solved {
            (-self.kappa * c).exp().max(self.success_floor)
        } else {
            (-(self.failure_kappa * c).exp()).max(self.failure_floor)
        }
    }
}

/// What one supernode did on one query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeResult {
    /// Its own (synthesiser) output, graded against the ground truth.
    pub solved: bool,
    /// Its proposers' and synthesiser's calls, exactly.
    pub cost: Usd,
    /// Skipped by its synthesiser: no calls, no output.
    pub skipped: bool,
    /// Whether the role gives an answer (HumanEval's analysis roles do not: credit from the
    /// system reward only).
    pub answers: bool,
}

/// The rewards of one query.
#[derive(Clone, Debug, PartialEq)]
pub struct Credit {
    /// `R_i` per supernode (0 when skipped).
    pub node: Vec<f64>,
    /// `R_F`: the final answer, at the decision call's cost.
    pub system: f64,
    /// `R̃_i = α·R_i + (1−α)·R_F` (`α = 0` for roles that give no answer).
    pub mixed: Vec<f64>,
}

/// The multi-level credit of one query: node rewards, the system reward from the final answer
/// at `decision_cost` (the decision call only, as the official code does), and their mix.
pub fn credit(
    shape: &RewardShape,
    nodes: &[NodeResult],
    final_solved: bool,
    decision_cost: Usd,
) -> Credit {
    let system = shape.reward(final_solved, decision_cost);
    let node: Vec<f64> = nodes
        .iter()
        .map(|n| {
            if n.skipped {
                0.0
            } else {
                shape.reward(n.solved, n.cost)
            }
        })
        .collect();
    let mixed = nodes
        .iter()
        .zip(&node)
        .map(|(n, r)| {
            let a = if n.answers { shape.alpha } else { 0.0 };
            a * r + (1.0 - a) * system
        })
        .collect();
    Credit {
        node,
        system,
        mixed,
    }
}

/// Credit from the system reward alone (the ablation multi-level attribution is compared with):
/// every supernode gets `R_F`.
pub fn system_only(
    shape: &RewardShape,
    nodes: usize,
    final_solved: bool,
    decision_cost: Usd,
) -> Credit {
    let system = shape.reward(final_solved, decision_cost);
    Credit {
        node: vec![0.0; nodes],
        system,
        mixed: vec![system; nodes],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    #[test]
    fn the_official_levels() {
        let r = RewardShape::default();
        assert_eq!(r.reward(true, Usd::ZERO), 1.0);
        assert_eq!(r.reward(false, Usd::ZERO), -1.0);
        // exp(−300c) = 0.5 at c = ln 2 / 300 ≈ $0.00231: just below, above the floor; above, at it.
        assert!(r.reward(true, usd("0.0023")) > 0.5);
        assert_eq!(r.reward(true, usd("0.0024")), 0.5);
        // −exp(300c) = −2.5 at c = ln 2.5 / 300 ≈ $0.003054.
        assert!(r.reward(false, usd("0.0030")) > -2.5);
        assert_eq!(r.reward(false, usd("0.0031")), -2.5);
        assert!((r.reward(true, usd("0.001")) - (-0.3f64).exp()).abs() < 1e-12);
        assert!((r.reward(false, usd("0.001")) + 0.3f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn failure_sensitivity_is_its_own_setting() {
        // The official code hard-codes 300 for failures; changing kappa leaves failures alone.
        let r = RewardShape {
            kappa: 500.0,
            ..RewardShape::default()
        };
        assert!((r.reward(false, usd("0.001")) + 0.3f64.exp()).abs() < 1e-12);
        assert!((r.reward(true, usd("0.001")) - (-0.5f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn credit_mixes_node_and_system() {
        let r = RewardShape::default();
        let nodes = [
            NodeResult {
                solved: true,
                cost: Usd::ZERO,
                skipped: false,
                answers: true,
            },
            NodeResult {
                solved: false,
                cost: Usd::ZERO,
                skipped: false,
                answers: true,
            },
            NodeResult {
                solved: true,
                cost: Usd::ZERO,
                skipped: true,
                answers: true,
            },
            NodeResult {
                solved: false,
                cost: Usd::ZERO,
                skipped: false,
                answers: false,
            },
        ];
        let c = credit(&r, &nodes, false, Usd::ZERO);
        assert_eq!(c.system, -1.0);
        assert_eq!(c.node, vec![1.0, -1.0, 0.0, -1.0]);
        // 0.5·1 + 0.5·(−1) = 0; 0.5·(−1) + 0.5·(−1) = −1; skipped: 0.5·0 + 0.5·(−1);
        // a role without answers takes the system reward alone.
        assert_eq!(c.mixed, vec![0.0, -1.0, -0.5, -1.0]);
        let s = system_only(&r, 4, false, Usd::ZERO);
        assert_eq!(s.mixed, vec![-1.0; 4]);
    }

    proptest! {
        #[test]
        fn rewards_are_bounded_and_fall_with_cost(pico_a in 0u64..20_000_000_000, pico_b in 0u64..20_000_000_000, solved: bool) {
            let r = RewardShape::default();
            let (lo, hi) = (pico_a.min(pico_b), pico_a.max(pico_b));
            let (a, b) = (r.reward(solved, Usd::from_pico(lo)), r.reward(solved, Usd::from_pico(hi)));
            prop_assert!(a >= b, "cheaper must not earn less: {a} < {b}");
            if solved {
                prop_assert!((0.5..=1.0).contains(&a));
            } else {
                prop_assert!((-2.5..=-1.0).contains(&a));
            }
        }

        #[test]
        fn mixed_credit_lies_between_node_and_system(solved: bool, final_solved: bool, pico in 0u64..10_000_000_000) {
            let r = RewardShape::default();
            let n = NodeResult { solved, cost: Usd::from_pico(pico), skipped: false, answers: true };
            let c = credit(&r, &[n], final_solved, Usd::from_pico(pico));
            let (lo, hi) = (c.node[0].min(c.system), c.node[0].max(c.system));
            prop_assert!(c.mixed[0] >= lo - 1e-12 && c.mixed[0] <= hi + 1e-12);
        }
    }
}
