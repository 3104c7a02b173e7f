//! The per-edge comparator (GPTSwarm-style): one independent Bernoulli probability per ordered
//! pair of roles, trained with REINFORCE on the system reward, task-agnostic. It stands against
//! the classifier's holistic, per-task choice in the "holistic vs per-edge" comparison.
//!
//! Sampling visits the ordered pairs in a random order and keeps an edge with its probability
//! unless it would close a cycle; pairs that would close one are not decisions and carry no
//! gradient. The update is REINFORCE with the batch's mean reward as baseline, through Adam on
//! the edge logits. After training, [`EdgePolicy::best`] is the deterministic graph: every edge
//! with probability above one half, most probable first, skipping those that would close a
//! cycle.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Edge logits over `n` roles and their Adam state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EdgePolicy {
    pub n: usize,
    /// `logits[src * n + dst]`; the diagonal is unused.
    pub logits: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: u64,
}

/// One sampled graph and the decisions that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// `(src, dst)` edges.
    pub edges: Vec<(usize, usize)>,
    /// `(pair index, kept)` for every pair that was a decision.
    pub decisions: Vec<(usize, bool)>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Whether `to` reaches `from` already (so `from -> to` would close a cycle).
fn reaches(n: usize, edges: &[(usize, usize)], to: usize, from: usize) -> bool {
    let mut seen = vec![false; n];
    let mut stack = vec![to];
    while let Some(x) = stack.pop() {
        if x == from {
            return true;
        }
        if std::mem::replace(&mut seen[x], true) {
            continue;
        }
        stack.extend(edges.iter().filter(|e| e.0 == x).map(|e| e.1));
    }
    false
}

impl EdgePolicy {
    /// Every edge starts at probability `sigmoid(init_logit)` (0: one half).
    pub fn new(n: usize, init_logit: f64) -> EdgePolicy {
        EdgePolicy {
            n,
            logits: vec![init_logit; n * n],
            m: vec![0.0; n * n],
            v: vec![0.0; n * n],
            steps: 0,
        }
    }

    pub fn probability(&self, src: usize, dst: usize) -> f64 {
        sigmoid(self.logits[src * self.n + dst])
    }

    fn pairs(&self) -> Vec<usize> {
        (0..self.n * self.n)
            .filter(|i| i / self.n != i % self.n)
            .collect()
    }

    /// One graph drawn from the policy; always acyclic.
    pub fn sample(&self, rng: &mut impl Rng) -> Sampled {
        let mut pairs = self.pairs();
        pairs.shuffle(rng);
        let mut edges = Vec::new();
        let mut decisions = Vec::new();
        for p in pairs {
            let (s, d) = (p / self.n, p % self.n);
            if reaches(self.n, &edges, d, s) {
                continue;
            }
            let keep = rng.random::<f64>() < sigmoid(self.logits[p]);
            decisions.push((p, keep));
            if keep {
                edges.push((s, d));
            }
        }
        edges.sort_unstable();
        Sampled { edges, decisions }
    }

    /// One REINFORCE step on `(graph, reward)` pairs: the gradient of
    /// `−mean((R − mean R)·log p(graph))`, applied with Adam (β 0.9/0.999) at `lr`.
    /// Returns the mean reward.
    pub fn update(&mut self, batch: &[(Sampled, f64)], lr: f64) -> f64 {
        if batch.is_empty() {
            return 0.0;
        }
        let mean = batch.iter().map(|b| b.1).sum::<f64>() / batch.len() as f64;
        let mut grad = vec![0.0; self.logits.len()];
        for (s, r) in batch {
            let adv = r - mean;
            for &(p, keep) in &s.decisions {
                // d log Bernoulli(keep; σ(θ)) / dθ = keep − σ(θ); minimise the negative.
                grad[p] -= adv * (f64::from(u8::from(keep)) - sigmoid(self.logits[p]))
                    / batch.len() as f64;
            }
        }
        self.steps += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let t = self.steps as i32;
        for (i, g) in grad.iter().enumerate() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let mh = self.m[i] / (1.0 - b1.powi(t));
            let vh = self.v[i] / (1.0 - b2.powi(t));
            self.logits[i] -= lr * mh / (vh.sqrt() + eps);
        }
        mean
    }

    /// The deterministic graph: edges with probability above one half, most probable first,
    /// none that would close a cycle.
    pub fn best(&self) -> Vec<(usize, usize)> {
        let mut pairs: Vec<usize> = self
            .pairs()
            .into_iter()
            .filter(|&p| sigmoid(self.logits[p]) > 0.5)
            .collect();
        pairs.sort_by(|&a, &b| self.logits[b].total_cmp(&self.logits[a]).then(a.cmp(&b)));
        let mut edges = Vec::new();
        for p in pairs {
            let (s, d) = (p / self.n, p % self.n);
            if !reaches(self.n, &edges, d, s) {
                edges.push((s, d));
            }
        }
        edges.sort_unstable();
        edges
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn acyclic(n: usize, edges: &[(usize, usize)]) -> bool {
        // Kahn's algorithm.
        let mut indeg = vec![0; n];
        for e in edges {
            indeg[e.1] += 1;
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut seen = 0;
        while let Some(x) = ready.pop() {
            seen += 1;
            for e in edges.iter().filter(|e| e.0 == x) {
                indeg[e.1] -= 1;
                if indeg[e.1] == 0 {
                    ready.push(e.1);
                }
            }
        }
        seen == n
    }

    proptest! {
        #[test]
        fn samples_and_the_best_graph_are_acyclic(
            n in 2usize..9,
            seed in 0u64..1000,
            logits in prop::collection::vec(-3.0f64..3.0, 64),
        ) {
            let mut p = EdgePolicy::new(n, 0.0);
            for (i, l) in p.logits.iter_mut().enumerate() {
                *l = logits[i % logits.len()];
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let s = p.sample(&mut rng);
            prop_assert!(acyclic(n, &s.edges));
            prop_assert!(s.edges.iter().all(|e| e.0 != e.1 && e.0 < n && e.1 < n));
            let kept = s.decisions.iter().filter(|d| d.1).count();
            prop_assert_eq!(kept, s.edges.len());
            prop_assert!(acyclic(n, &p.best()));
        }
    }

    #[test]
    fn reinforce_learns_a_rewarded_edge_and_drops_a_punished_one() {
        // Reward: +1 for the edge 0 -> 1, −1 for the edge 2 -> 0.
        let mut p = EdgePolicy::new(3, 0.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let batch: Vec<(Sampled, f64)> = (0..8)
                .map(|_| {
                    let s = p.sample(&mut rng);
                    let r = f64::from(u8::from(s.edges.contains(&(0, 1))))
                        - f64::from(u8::from(s.edges.contains(&(2, 0))));
                    (s, r)
                })
                .collect();
            p.update(&batch, 0.05);
        }
        assert!(p.probability(0, 1) > 0.9, "{}", p.probability(0, 1));
        assert!(p.probability(2, 0) < 0.1, "{}", p.probability(2, 0));
        let best = p.best();
        assert!(
            best.contains(&(0, 1)) && !best.contains(&(2, 0)),
            "{best:?}"
        );
    }
}
