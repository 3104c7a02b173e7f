//! The REINFORCE objective of method §5.5 and one optimiser step.
//!
//! Per query, `L_q = Σ_i −(Σ_p log π(a_{i,p}))·A_i − β·H_q`, averaged over the batch, where
//! `H_q` sums the entropies of every supernode's rows. Two variants:
//!
//! - [`Variant::Faithful`] — the official code: actions drawn from `softmax(logits)` (the
//!   Gumbel-max argmax ignores the temperature), log-probabilities credited at
//!   `softmax(logits / T)`, and `A_i = R̃_i` raw (no baseline).
//! - [`Variant::Fixed`] (default) — actions drawn and credited at the same temperature, and
//!   `A_i = R̃_i − b` with `b` the mean credit of the batch, so the gradient estimate is
//!   consistent and has less variance.

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::Rng;

use crate::selector::{Result, log_prob_and_entropy, sample};

/// Which estimator to train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Variant {
    /// The official loss: temperature mismatch, no baseline.
    Faithful,
    /// Consistent temperature and a per-batch baseline.
    #[default]
    Fixed,
}

/// One supernode of one query: its masked logits, the options drawn, and its credit `R̃_i`.
pub struct NodeTerm {
    pub logits: Tensor,
    pub actions: Vec<usize>,
    pub credit: f64,
}

/// The options to try for `logits` at schedule temperature `temperature`.
pub fn draw(
    logits: &Tensor,
    temperature: f64,
    variant: Variant,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    match variant {
        Variant::Faithful => sample(logits, 1.0, rng),
        Variant::Fixed => sample(logits, temperature, rng),
    }
}

/// The batch loss: the mean over queries of `L_q` (see the module doc).
pub fn batch_loss(
    batch: &[Vec<NodeTerm>],
    temperature: f64,
    entropy_coef: f64,
    variant: Variant,
) -> Result<Tensor> {
    let credits: Vec<f64> = batch.iter().flatten().map(|n| n.credit).collect();
    let baseline = match variant {
        Variant::Faithful => 0.0,
        Variant::Fixed if credits.is_empty() => 0.0,
        Variant::Fixed => credits.iter().sum::<f64>() / credits.len() as f64,
    };
    let mut total: Option<Tensor> = None;
    for query in batch {
        for node in query {
            let (logp, h) = log_prob_and_entropy(&node.logits, &node.actions, temperature)?;
            let term = ((logp * -(node.credit - baseline))? - (h * entropy_coef)?)?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
    }
    let n = batch.len().max(1) as f64;
    match total {
        Some(t) => Ok((t / n)?),
        None => Err(candle_core::Error::Msg("an empty batch has no loss".into()).into()),
    }
}

/// Adam (decoupled weight decay) with gradient-norm clipping, over the selector's variables.
pub struct Trainer {
    vars: Vec<Var>,
    opt: AdamW,
    clip: f64,
}

impl Trainer {
    pub fn new(vars: Vec<Var>, lr: f64, weight_decay: f64, clip: f64) -> Result<Trainer> {
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr,
                weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Trainer { vars, opt, clip })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.opt.set_learning_rate(lr);
    }

    /// Backpropagates `loss`, clips the gradient's global norm to `clip`, and steps; returns
    /// the norm before clipping.
    pub fn step(&mut self, loss: &Tensor) -> Result<f64> {
        let mut grads = loss.backward()?;
        let mut sq = 0.0;
        for v in &self.vars {
            if let Some(g) = grads.get(v) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        if norm > self.clip && norm > 0.0 {
            let scale = self.clip / norm;
            for v in &self.vars {
                if let Some(g) = grads.remove(v) {
                    grads.insert(v, (g * scale)?);
                }
            }
        }
        self.opt.step(&grads)?;
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::selector::{Masks, Selector, SelectorConfig, argmax, mask_logits};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use rand::SeedableRng;

    /// A one-position bandit over 4 options (option 3 excluded): option 1 earns +1, the others
    /// −1. Both variants learn to pick option 1.
    #[test]
    fn reinforce_learns_a_bandit() {
        for variant in [Variant::Fixed, Variant::Faithful] {
            let dev = Device::Cpu;
            let varmap = VarMap::new();
            let cfg = SelectorConfig {
                embed_dim: 4,
                hidden: 8,
                pos_dim: 2,
                max_positions: 2,
            };
            let s = Selector::new(cfg, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
            let llm = Tensor::from_vec(
                (0..16)
                    .map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0)
                    .collect::<Vec<_>>(),
                (4, 4),
                &dev,
            )
            .unwrap();
            let t = Tensor::new(&[0.2f64, 0.1, -0.3, 0.5], &dev).unwrap();
            let masks = Masks {
                excluded: vec![3],
                skip: 2,
                synth_may_skip: true,
                clamp: Some(10.0),
            };
            let mut trainer = Trainer::new(varmap.all_vars(), 0.05, 1e-5, 1.0).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            for step in 0..60 {
                let temp = crate::schedule::temperature(step, 60, 2.0, 0.8);
                let mut batch = Vec::new();
                for _ in 0..8 {
                    let l = mask_logits(&s.logits(&llm, &t, &t, 1).unwrap(), &masks).unwrap();
                    let actions = draw(&l, temp, variant, &mut rng).unwrap();
                    let credit = if actions[0] == 1 { 1.0 } else { -1.0 };
                    batch.push(vec![NodeTerm {
                        logits: l,
                        actions,
                        credit,
                    }]);
                }
                let loss = batch_loss(&batch, temp, 0.01, variant).unwrap();
                let norm = trainer.step(&loss).unwrap();
                assert!(norm.is_finite());
            }
            let l = mask_logits(&s.logits(&llm, &t, &t, 1).unwrap(), &masks).unwrap();
            assert_eq!(argmax(&l).unwrap(), vec![1], "{variant:?}");
        }
    }

    #[test]
    fn the_fixed_variant_subtracts_the_batch_mean() {
        let dev = Device::Cpu;
        let l = Tensor::new(&[[0.0f64, 1.0]], &dev).unwrap();
        let node = |credit| NodeTerm {
            logits: l.clone(),
            actions: vec![0],
            credit,
        };
        // Equal credits: with the baseline, only the entropy term is left.
        let batch = vec![vec![node(2.0)], vec![node(2.0)]];
        let fixed = batch_loss(&batch, 1.0, 0.0, Variant::Fixed)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(fixed.abs() < 1e-12);
        let faithful = batch_loss(&batch, 1.0, 0.0, Variant::Faithful)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        // −log softmax([0, 1])[0] · 2 = 2·ln(1 + e)
        assert!((faithful - 2.0 * (1.0 + 1f64.exp()).ln()).abs() < 1e-9);
    }
}
