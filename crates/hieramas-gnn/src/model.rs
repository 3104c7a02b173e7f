//! The graph classifier (method §6.2) in candle, over batches of graphs with the same roles.
//!
//! ```text
//! H0 = [ X (N×R, learnable, role-sentence init) ‖ broadcast q (E) ]      N×(R+E)
//! H1 = ReLU( MeanAgg(H0) )   H2 = ReLU( MeanAgg(H1) )   parameter-free, self-loops
//! Z  = Linear(R+E → 128)(H2);  g = mean over nodes of Z
//! logit = Linear(128 → 64) → ReLU → Dropout → Linear(64 → 1)
//! ```
//!
//! `MeanAgg` averages each node over itself and its neighbours on one side: the official code
//! (the default, [`Direction::Successors`]) averages over successors, against the execution
//! direction; [`Direction::Predecessors`] follows it. A batch is one dense `B×N×N` row-normalised
//! aggregation matrix, so both layers are one batched matmul each.

use std::path::Path;

use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::GnnError;

pub use crate::report::Direction;

/// Shapes and settings of a classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub roles: Vec<String>,
    /// Width of a role feature (the role-sentence embedding).
    pub role_dim: usize,
    /// Width of the task embedding.
    pub task_dim: usize,
    /// Official: 128.
    pub gcn_out: usize,
    /// Official: 64.
    pub hidden: usize,
    /// Official: 0.5 (MATH, HumanEval), 0.05 (MMLU).
    pub dropout: f64,
    #[serde(default)]
    pub direction: Direction,
}

/// Graphs ready for the classifier.
pub struct Batch {
    /// `B×N×N`, row-normalised.
    pub agg: Tensor,
    /// `B×E`.
    pub task: Tensor,
}

impl Batch {
    /// A batch of `(edges, task embedding)` over `n` roles; edges are `[src, dst]`.
    pub fn new(
        graphs: &[(&[[usize; 2]], &[f32])],
        n: usize,
        direction: Direction,
        dev: &Device,
    ) -> Result<Batch> {
        let b = graphs.len();
        let e = graphs.first().map_or(0, |g| g.1.len());
        let mut agg = vec![0f32; b * n * n];
        let mut task = Vec::with_capacity(b * e);
        for (k, (edges, q)) in graphs.iter().enumerate() {
            if q.len() != e {
                candle_core::bail!("task embedding {k} has {} values, not {e}", q.len());
            }
            task.extend_from_slice(q);
            let m = &mut agg[k * n * n..(k + 1) * n * n];
            for i in 0..n {
                m[i * n + i] = 1.0;
            }
            for &[s, d] in *edges {
                if s >= n || d >= n {
                    candle_core::bail!("edge {s} -> {d} outside {n} roles");
                }
                let (row, col) = match direction {
                    Direction::Successors => (s, d),
                    Direction::Predecessors => (d, s),
                };
                m[row * n + col] = 1.0;
            }
            for row in m.chunks_mut(n) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
        Ok(Batch {
            agg: Tensor::from_vec(agg, (b, n, n), dev)?,
            task: Tensor::from_vec(task, (b, e), dev)?,
        })
    }
}

/// The classifier's layers.
pub struct Classifier {
    pub config: ClassifierConfig,
    role_features: Tensor,
    gcn: Linear,
    mlp1: Linear,
    mlp2: Linear,
}

impl Classifier {
    pub fn new(config: ClassifierConfig, vb: VarBuilder) -> Result<Classifier> {
        let n = config.roles.len();
        let width = config.role_dim + config.task_dim;
        Ok(Classifier {
            role_features: vb.get_with_hints(
                (n, config.role_dim),
                "role_features",
                candle_nn::Init::Const(0.0),
            )?,
            gcn: candle_nn::linear(width, config.gcn_out, vb.pp("gcn"))?,
            mlp1: candle_nn::linear(config.gcn_out, config.hidden, vb.pp("mlp1"))?,
            mlp2: candle_nn::linear(config.hidden, 1, vb.pp("mlp2"))?,
            config,
        })
    }

    /// Where the parameters live.
    pub fn device(&self) -> &Device {
        self.role_features.device()
    }

    /// One logit per graph (`B`). With `dropout_rng` the dropout layer is on, its mask drawn
    /// from that generator (so training is reproducible).
    pub fn logits(
        &self,
        batch: &Batch,
        dropout_rng: Option<&mut dyn rand::RngCore>,
    ) -> Result<Tensor> {
        let (b, n, _) = batch.agg.dims3()?;
        let x = self
            .role_features
            .unsqueeze(0)?
            .broadcast_as((b, n, self.config.role_dim))?;
        let q = batch
            .task
            .unsqueeze(1)?
            .broadcast_as((b, n, self.config.task_dim))?;
        let h0 = Tensor::cat(&[&x, &q], 2)?.contiguous()?;
        let h1 = batch.agg.matmul(&h0)?.relu()?;
        let h2 = batch.agg.matmul(&h1)?.relu()?;
        let z = self.gcn.forward(&h2)?;
        let g = z.mean(1)?;
        let mut h = self.mlp1.forward(&g)?.relu()?;
        if let Some(rng) = dropout_rng {
            let p = self.config.dropout;
            if p > 0.0 {
                let keep = 1.0 / (1.0 - p);
                let mask: Vec<f32> = (0..h.elem_count())
                    .map(|_| {
                        if rng.random::<f64>() < p {
                            0.0
                        } else {
                            keep as f32
                        }
                    })
                    .collect();
                h = h.mul(&Tensor::from_vec(mask, h.shape(), h.device())?)?;
            }
        }
        self.mlp2.forward(&h)?.squeeze(D::Minus1)
    }

    /// σ(logit) of each graph for one task, in evaluation mode.
    pub fn score(&self, graphs: &[Vec<[usize; 2]>], task: &[f32]) -> Result<Vec<f64>> {
        if graphs.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<(&[[usize; 2]], &[f32])> =
            graphs.iter().map(|g| (g.as_slice(), task)).collect();
        let batch = Batch::new(
            &items,
            self.config.roles.len(),
            self.config.direction,
            self.role_features.device(),
        )?;
        candle_nn::ops::sigmoid(&self.logits(&batch, None)?)?
            .to_dtype(DType::F64)?
            .to_vec1()
    }
}

/// Sets every parameter from `seed` (PyTorch's defaults: linear weights and biases uniform in
/// ±1/√fan_in) and the role features from `role_features` (one row per role).
pub fn init(varmap: &VarMap, seed: u64, role_features: &[Vec<f32>]) -> Result<()> {
    use rand::SeedableRng;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("parameter map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var: &Var = &data[name];
        let t = if name == "role_features" {
            let (n, d) = var.dims2()?;
            if role_features.len() != n || role_features.iter().any(|r| r.len() != d) {
                candle_core::bail!("role features must be {n} rows of {d} values");
            }
            Tensor::from_vec(role_features.concat(), (n, d), var.device())?
        } else {
            let prefix = name.rsplit_once('.').map_or("", |p| p.0);
            let fan_in = data
                .get(&format!("{prefix}.weight"))
                .and_then(|w| w.dims().get(1).copied())
                .unwrap_or(1);
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let v: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect();
            Tensor::from_vec(v, var.shape(), var.device())?
        };
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// What a checkpoint's JSON sidecar holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub config: ClassifierConfig,
    pub sha256: String,
    /// Anything the trainer wants kept beside the weights (the embedder, the cost model, …).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Saves the weights (safetensors) and `<path>.json` (configuration, sha256, `extra`).
pub fn save(
    varmap: &VarMap,
    config: &ClassifierConfig,
    extra: serde_json::Value,
    path: &Path,
) -> std::result::Result<(), GnnError> {
    let meta = CheckpointMeta {
        config: config.clone(),
        sha256: hieramas_checkpoint::save_weights(varmap, path)?,
        extra,
    };
    Ok(hieramas_checkpoint::write_sidecar(path, &meta)?)
}

/// Loads a checkpoint written by [`save`], after checking its sha256 and tensor names.
pub fn load(
    path: &Path,
    dev: &Device,
) -> std::result::Result<(VarMap, Classifier, CheckpointMeta), GnnError> {
    let meta: CheckpointMeta = hieramas_checkpoint::read_sidecar(path)?;
    let mut varmap = VarMap::new();
    let cls = Classifier::new(
        meta.config.clone(),
        VarBuilder::from_varmap(&varmap, DType::F32, dev),
    )
    .map_err(|e| GnnError::Checkpoint {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    hieramas_checkpoint::load_verified(path, &meta.sha256, &mut varmap, dev)?;
    Ok((varmap, cls, meta))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn tiny(direction: Direction) -> (VarMap, Classifier) {
        let varmap = VarMap::new();
        let cfg = ClassifierConfig {
            roles: vec!["a".into(), "b".into(), "c".into()],
            role_dim: 4,
            task_dim: 2,
            gcn_out: 8,
            hidden: 4,
            dropout: 0.5,
            direction,
        };
        let cls = Classifier::new(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let feats: Vec<Vec<f32>> = (0..3)
            .map(|i| (0..4).map(|j| (i * 4 + j) as f32 / 10.0 - 0.5).collect())
            .collect();
        init(&varmap, 3, &feats).unwrap();
        (varmap, cls)
    }

    #[test]
    fn aggregation_rows_average_over_self_and_one_side() {
        let b = Batch::new(
            &[(&[[0, 1], [0, 2]], &[1.0])],
            3,
            Direction::Successors,
            &Device::Cpu,
        )
        .unwrap();
        let m: Vec<Vec<Vec<f32>>> = b.agg.to_vec3().unwrap();
        let third = 1.0 / 3.0;
        assert_eq!(m[0][0], [third, third, third]);
        assert_eq!(m[0][1], [0.0, 1.0, 0.0]);
        let b = Batch::new(
            &[(&[[0, 1], [0, 2]], &[1.0])],
            3,
            Direction::Predecessors,
            &Device::Cpu,
        )
        .unwrap();
        let m: Vec<Vec<Vec<f32>>> = b.agg.to_vec3().unwrap();
        assert_eq!(m[0][0], [1.0, 0.0, 0.0]);
        assert_eq!(m[0][1], [0.5, 0.5, 0.0]);
        assert!(
            Batch::new(
                &[(&[[0, 3]], &[1.0])],
                3,
                Direction::Successors,
                &Device::Cpu
            )
            .is_err()
        );
    }

    #[test]
    fn the_score_depends_on_the_topology_and_a_checkpoint_round_trips() {
        let (varmap, cls) = tiny(Direction::Successors);
        let graphs = vec![
            vec![[0, 1], [1, 2]],
            vec![[2, 1], [1, 0]],
            vec![[0, 1], [0, 2]],
        ];
        let s = cls.score(&graphs, &[0.3, -0.2]).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            (s[0] - s[1]).abs() > 1e-7 || (s[0] - s[2]).abs() > 1e-7,
            "{s:?}"
        );
        // Batched and one by one agree.
        let one = cls.score(&graphs[1..2], &[0.3, -0.2]).unwrap();
        assert!((one[0] - s[1]).abs() < 1e-6);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        save(&varmap, &cls.config, serde_json::json!({"k": 1}), &path).unwrap();
        let (_, back, meta) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(meta.extra["k"], 1);
        assert_eq!(back.score(&graphs, &[0.3, -0.2]).unwrap(), s);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let Err(err) = load(&path, &Device::Cpu) else {
            panic!("a changed file loaded");
        };
        assert!(err.to_string().contains("sha256"), "{err}");
    }
}
