//! Training the classifier (method §6.3): split by task (80/20, seeded), weighted BCE with
//! `pos_weight = #neg / #pos` of the training part, Adam with L2 weight decay (PyTorch's
//! `Adam(weight_decay)`: the decay is part of the gradient), ReduceLROnPlateau (max mode) on
//! the validation mean per-task ROC-AUC, the best epoch's weights kept on strict improvement,
//! early stopping after `patience` epochs without one. Seeded: data order and dropout masks
//! come from ChaCha8.

use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::GnnError;
use crate::config::Stage2Config;
use crate::metrics::{Group, Metrics, evaluate, split_tasks};
use crate::model::{Batch, Classifier};
use crate::record::TaskRecord;

/// A training sample: edges, task embedding, label.
type Sample<'a> = (&'a [[usize; 2]], &'a [f32], bool);

/// A copy of every parameter's value.
type Weights = Vec<(Var, Tensor)>;

pub use crate::report::{Epoch, FitReport};

/// ReduceLROnPlateau in max mode (PyTorch defaults: relative threshold 1e-4, no cooldown).
#[derive(Clone, Debug)]
pub struct Plateau {
    pub lr: f64,
    pub factor: f64,
    pub patience: usize,
    best: Option<f64>,
    bad: usize,
}

impl Plateau {
    pub fn new(lr: f64, factor: f64, patience: usize) -> Plateau {
        Plateau {
            lr,
            factor,
            patience,
            best: None,
            bad: 0,
        }
    }

    /// Records an epoch's metric; returns the learning rate for the next epoch.
    pub fn step(&mut self, metric: f64) -> f64 {
        match self.best {
            Some(b) if metric <= b * (1.0 + 1e-4) => {
                self.bad += 1;
                if self.bad > self.patience {
                    self.lr *= self.factor;
                    self.bad = 0;
                }
            }
            _ => {
                self.best = Some(metric);
                self.bad = 0;
            }
        }
        self.lr
    }
}

/// Scores every run of every task in `records`, grouped per task.
pub fn groups(cls: &Classifier, records: &[&TaskRecord]) -> Result<Vec<Group>, GnnError> {
    records
        .iter()
        .map(|t| {
            let graphs: Vec<Vec<[usize; 2]>> = t.runs.iter().map(|r| r.edges.clone()).collect();
            Ok(Group {
                scores: cls.score(&graphs, &t.embedding)?,
                labels: t.runs.iter().map(|r| r.label).collect(),
            })
        })
        .collect()
}

/// Metrics of the classifier on `records`.
pub fn assess(cls: &Classifier, records: &[&TaskRecord]) -> Result<Metrics, GnnError> {
    Ok(evaluate(&groups(cls, records)?))
}

fn snapshot(varmap: &VarMap) -> Result<Weights, GnnError> {
    let data = varmap.data().lock().map_err(|_| GnnError::Poisoned)?;
    data.values()
        .map(|v| Ok((v.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// `Σ softplus`-form weighted BCE with logits, averaged over the batch (PyTorch's
/// `BCEWithLogitsLoss(pos_weight)`): `pw·y·softplus(−z) + (1−y)·softplus(z)`.
pub fn weighted_bce(
    logits: &Tensor,
    labels: &Tensor,
    pos_weight: f64,
) -> candle_core::Result<Tensor> {
    let softplus = |x: &Tensor| -> candle_core::Result<Tensor> {
        // relu(x) + log(1 + exp(−|x|)), stable for large |x|.
        x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
    };
    let pos = (labels * pos_weight)?.mul(&softplus(&logits.neg()?)?)?;
    let neg = (labels.neg()? + 1.0)?.mul(&softplus(logits)?)?;
    (pos + neg)?.mean_all()
}

/// Trains `cls` (whose parameters are `varmap`) on `records`; at the end `cls` holds the best
/// epoch's weights. `on_epoch` sees every epoch as it finishes.
pub fn fit(
    cls: &Classifier,
    varmap: &VarMap,
    records: &[TaskRecord],
    cfg: &Stage2Config,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<FitReport, GnnError> {
    let ids: Vec<String> = records.iter().map(|r| r.task_id.clone()).collect();
    let (train_ids, valid_ids) = split_tasks(&ids, cfg.train_ratio, cfg.seed);
    let in_train: std::collections::HashSet<&String> = train_ids.iter().collect();
    let (train, valid): (Vec<&TaskRecord>, Vec<&TaskRecord>) =
        records.iter().partition(|r| in_train.contains(&r.task_id));
    let samples: Vec<Sample> = train
        .iter()
        .flat_map(|t| {
            t.runs
                .iter()
                .map(|r| (r.edges.as_slice(), t.embedding.as_slice(), r.label))
        })
        .collect();
    if samples.is_empty() {
        return Err(GnnError::NoData(
            "no training samples after the task split".into(),
        ));
    }
    let pos = samples.iter().filter(|s| s.2).count();
    let neg = samples.len() - pos;
    let pos_weight = if pos == 0 {
        1.0
    } else {
        neg as f64 / pos as f64
    };
    let vars = varmap.all_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let dev = cls.device().clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut plateau = Plateau::new(cfg.lr, cfg.plateau_factor, cfg.plateau_patience);
    let mut best: Option<(f64, usize, Weights)> = None;
    let mut since_best = 0usize;
    let mut epochs = Vec::new();
    let mut stopped_early = false;
    let n = cls.config.roles.len();
    for epoch in 1..=cfg.epochs.max(1) {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let items: Vec<(&[[usize; 2]], &[f32])> = chunk
                .iter()
                .map(|&i| (samples[i].0, samples[i].1))
                .collect();
            let labels: Vec<f32> = chunk
                .iter()
                .map(|&i| f32::from(u8::from(samples[i].2)))
                .collect();
            let batch = Batch::new(&items, n, cls.config.direction, &dev)?;
            let y = Tensor::from_vec(labels, chunk.len(), &dev)?;
            let logits = cls.logits(&batch, Some(&mut rng))?;
            let mut loss = weighted_bce(&logits, &y, pos_weight)?;
            let data_loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if cfg.weight_decay > 0.0 {
                let mut l2 = Tensor::zeros((), DType::F32, &dev)?;
                for v in &vars {
                    l2 = (l2 + v.as_tensor().sqr()?.sum_all()?)?;
                }
                loss = (loss + (l2 * (0.5 * cfg.weight_decay))?)?;
            }
            opt.backward_step(&loss)?;
            loss_sum += data_loss;
            batches += 1;
        }
        let valid_m = assess(cls, &valid)?;
        let selection = valid_m.task_auc.or(valid_m.pooled_auc).unwrap_or(0.5);
        let lr_used = opt.learning_rate();
        let e = Epoch {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            lr: lr_used,
            valid: valid_m,
            selection,
        };
        on_epoch(&e);
        epochs.push(e);
        opt.set_learning_rate(plateau.step(selection));
        if best.as_ref().is_none_or(|b| selection > b.0) {
            best = Some((selection, epoch, snapshot(varmap)?));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience {
                stopped_early = epoch < cfg.epochs;
                break;
            }
        }
    }
    let (best_selection, best_epoch) = match best {
        Some((s, e, weights)) => {
            for (var, t) in weights {
                var.set(&t)?;
            }
            (s, e)
        }
        None => (0.5, 0),
    };
    Ok(FitReport {
        train_tasks: train_ids,
        valid_tasks: valid_ids,
        train_samples: samples.len(),
        pos_weight,
        epochs,
        best_epoch,
        best_selection,
        stopped_early,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plateau_halves_after_patience_bad_epochs() {
        let mut p = Plateau::new(1.0, 0.5, 2);
        assert_eq!(p.step(0.5), 1.0);
        assert_eq!(p.step(0.5), 1.0);
        assert_eq!(p.step(0.4), 1.0);
        assert_eq!(p.step(0.5), 0.5);
        assert_eq!(p.step(0.6), 0.5);
    }

    #[test]
    fn weighted_bce_matches_the_formula() {
        let dev = candle_core::Device::Cpu;
        let z = Tensor::new(&[2.0f32, -1.0, 0.0], &dev).unwrap();
        let y = Tensor::new(&[1.0f32, 1.0, 0.0], &dev).unwrap();
        let got = weighted_bce(&z, &y, 3.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = (3.0 * sp(-2.0) + 3.0 * sp(1.0) + sp(0.0)) / 3.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // Large logits stay finite.
        let z = Tensor::new(&[80.0f32, -80.0], &dev).unwrap();
        let y = Tensor::new(&[0.0f32, 1.0], &dev).unwrap();
        let v = weighted_bce(&z, &y, 1.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((v - 80.0).abs() < 1e-3, "{v}");
    }
}
