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
//!   consistent and has less variance. Its training loop (`hieramas train stage1`) also leaves
//!   the logits unclamped: past the official ±10 clamp a logit gets no gradient, and the options
//!   that reach +10 tie there for good (`Masks::clamp`).

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
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

/// Adam as torch implements it — weight decay added to the gradient (L2), as the official
/// `Adam(weight_decay = 1e-5)` — with gradient-norm clipping, over named variables. Its state
/// (step count, first and second moments) can be saved and restored, so a resumed run continues
/// exactly.
pub struct Trainer {
    names: Vec<String>,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: u64,
    lr: f64,
    weight_decay: f64,
    clip: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Trainer {
    /// Every variable of `varmap`, in name order.
    pub fn new(varmap: &VarMap, lr: f64, weight_decay: f64, clip: f64) -> Result<Trainer> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter map poisoned".into()))?;
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let m = named
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        let (names, vars) = named.into_iter().unzip();
        Ok(Trainer {
            names,
            vars,
            m,
            v,
            steps: 0,
            lr,
            weight_decay,
            clip,
        })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Backpropagates `loss`, clips the gradient's global norm to `clip`, and steps; returns
    /// the norm before clipping.
    pub fn step(&mut self, loss: &Tensor) -> Result<f64> {
        let grads = loss.backward()?;
        let gs: Vec<Option<Tensor>> = self.vars.iter().map(|v| grads.get(v).cloned()).collect();
        let mut sq = 0.0;
        for g in gs.iter().flatten() {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        let scale = if norm > self.clip && norm > 0.0 {
            self.clip / norm
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = &gs[i] else { continue };
            let g = ((g * scale)? + (var.as_tensor() * self.weight_decay)?)?;
            self.m[i] = ((&self.m[i] * BETA1)? + (&g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&self.m[i] / bc1)? / ((&self.v[i] / bc2)?.sqrt()? + EPS)?)?;
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
        }
        Ok(norm)
    }

    /// Saves the moments to `path` (safetensors, crash-safe) with the step count as metadata
    /// tensor; returns the file's sha256, which [`Trainer::load`] checks.
    pub fn save(&self, path: &std::path::Path) -> Result<String> {
        let mut map = std::collections::HashMap::new();
        for (i, name) in self.names.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        map.insert(
            "steps".to_string(),
            Tensor::new(&[self.steps as f64], &candle_core::Device::Cpu)?,
        );
        Ok(hieramas_checkpoint::save_tensors(&map, path)?)
    }

    /// Restores what [`Trainer::save`] wrote (its bytes checked against the `sha256` it
    /// returned); the variables must be the same.
    pub fn load(&mut self, path: &std::path::Path, sha256: &str) -> Result<()> {
        let bad = |detail: String| crate::selector::SelectorError::Checkpoint {
            path: path.to_path_buf(),
            detail,
        };
        let map =
            hieramas_checkpoint::load_tensors_verified(path, sha256, &candle_core::Device::Cpu)?;
        for (i, name) in self.names.iter().enumerate() {
            let get = |k: String| {
                map.get(&k)
                    .cloned()
                    .ok_or_else(|| bad(format!("no tensor {k}")))
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        let steps = map
            .get("steps")
            .ok_or_else(|| bad("no step count".into()))?
            .to_vec1::<f64>()?;
        self.steps = steps.first().copied().unwrap_or(0.0) as u64;
        Ok(())
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
                input: crate::selector::SelectorInput::Joint,
                roles: 0,
            };
            let s = Selector::new(cfg, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
            // candle's own initialisers are unseeded: without this the test was flaky.
            crate::selector::init_seeded(&varmap, 0).unwrap();
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
            let mut trainer = Trainer::new(&varmap, 0.05, 1e-5, 1.0).unwrap();
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

    /// Adam matches the textbook update on a quadratic, and a saved-and-restored optimiser
    /// continues exactly like one that never stopped.
    #[test]
    fn adam_steps_and_resumes_exactly() {
        let dev = Device::Cpu;
        let make = || {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
            let w = vb
                .get_with_hints(3, "w", candle_nn::Init::Const(1.0))
                .unwrap();
            (varmap, w)
        };
        let loss = |w: &Tensor| (w * 2.0).unwrap().sqr().unwrap().sum_all().unwrap();
        // One step of Adam from w = 1 with lr 0.1: the first update is lr · sign(g) = 0.1.
        let (vm, w) = make();
        let mut a = Trainer::new(&vm, 0.1, 0.0, 1e9).unwrap();
        a.step(&loss(&w)).unwrap();
        let after: Vec<f64> = w.to_vec1().unwrap();
        assert!(after.iter().all(|x| (x - 0.9).abs() < 1e-9), "{after:?}");

        // Four steps straight vs two, save, restore into a fresh optimiser, two more.
        let (vm1, w1) = make();
        let mut straight = Trainer::new(&vm1, 0.1, 1e-5, 1.0).unwrap();
        for _ in 0..4 {
            straight.step(&loss(&w1)).unwrap();
        }
        let (vm2, w2) = make();
        let mut first = Trainer::new(&vm2, 0.1, 1e-5, 1.0).unwrap();
        for _ in 0..2 {
            first.step(&loss(&w2)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("adam.safetensors");
        let sha = first.save(&p).unwrap();
        let mut second = Trainer::new(&vm2, 0.1, 1e-5, 1.0).unwrap();
        let e = second.load(&p, &"0".repeat(64)).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        second.load(&p, &sha).unwrap();
        assert_eq!(second.steps(), 2);
        for _ in 0..2 {
            second.step(&loss(&w2)).unwrap();
        }
        let (a, b): (Vec<f64>, Vec<f64>) = (w1.to_vec1().unwrap(), w2.to_vec1().unwrap());
        assert_eq!(a, b);
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
