//! The LLM selector (method §5.2–§5.3) in candle: for each position of a supernode, a
//! distribution over the pool's options (the LLMs, then `skip`).
//!
//! ```text
//! row_p  = Linear([posemb(p) ‖ t_role ‖ t_meta])          (no activation)
//!          t_role = E(role ‖ task)        official (SelectorInput::Joint)
//!          t_role = E(task) ‖ E(role)     role-aware (SelectorInput::Separate)
//! col_k  = Linear(E_llm[k])
//! logit[p,k] = Linear(ReLU(Linear([row_p ‖ col_k])))
//! ```
//!
//! One selector is shared by every supernode. Checkpoints are safetensors plus a JSON sidecar
//! holding the configuration, the tensor names and the file's sha256; loading checks all three
//! and fails loudly (the official code silently skipped a missing checkpoint, method §10).

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Selector errors: candle's, or a checkpoint that is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("checkpoint {}: {detail}", path.display())]
    Checkpoint { path: PathBuf, detail: String },
    #[error("the selector has a head for each of {roles} roles; asked for role {role:?}")]
    Role { role: Option<usize>, roles: usize },
}

impl From<hieramas_checkpoint::CheckpointError> for SelectorError {
    fn from(e: hieramas_checkpoint::CheckpointError) -> Self {
        SelectorError::Checkpoint {
            path: e.path,
            detail: e.detail,
        }
    }
}

/// Results of the selector and training code.
pub type Result<T> = std::result::Result<T, SelectorError>;

/// What the selector reads for a (task, role) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectorInput {
    /// The official architecture: one embedding of the role and the task as one text. The task
    /// dominates it, so two roles on one task get nearly the same input (and policy).
    #[default]
    Joint,
    /// Role-aware: the task and the role description embedded apart and concatenated
    /// (`2 × embed_dim`), so the role is a separate, always-present part of the input. The
    /// task's embedding is shared by every role of a query (one embedding per task, not per
    /// role).
    Separate,
}

impl SelectorInput {
    /// How many embeddings wide the (task, role) input is.
    pub fn embeddings(self) -> usize {
        match self {
            SelectorInput::Joint => 1,
            SelectorInput::Separate => 2,
        }
    }

    /// The name used in configurations and reports (`joint`, `separate`).
    pub fn name(self) -> &'static str {
        match self {
            SelectorInput::Joint => "joint",
            SelectorInput::Separate => "separate",
        }
    }
}

/// Sizes of the selector (official: 1024-d gte embeddings, hidden 256, 20 × 128 positions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectorConfig {
    pub embed_dim: usize,
    pub hidden: usize,
    pub pos_dim: usize,
    pub max_positions: usize,
    /// The (task, role) input; checkpoints written before it existed hold `joint`.
    #[serde(default)]
    pub input: SelectorInput,
    /// One head (position embeddings, row, column and MLP layers) per role of the role set,
    /// for this many roles; 0: one head shared by every role (official). With one shared head
    /// the signal of the roles that agree reaches every role through the shared column and MLP
    /// layers: in the credit experiment the Inspector's proposers followed the other roles to
    /// `model-a` while its own credit favoured `model-b` (+0.2 per sample), whatever its input
    /// (its description embedded apart, a learned per-role embedding). A head per role learns
    /// from that role's credit only. Checkpoints written before it existed hold 0.
    #[serde(default)]
    pub roles: usize,
}

impl SelectorConfig {
    /// The official sizes for embeddings of `embed_dim` dimensions.
    pub fn official(embed_dim: usize) -> SelectorConfig {
        SelectorConfig {
            embed_dim,
            hidden: 256,
            pos_dim: 128,
            max_positions: 20,
            input: SelectorInput::Joint,
            roles: 0,
        }
    }

    /// These sizes with a head for each of `roles` roles (0: one shared head).
    pub fn with_roles(self, roles: usize) -> SelectorConfig {
        SelectorConfig { roles, ..self }
    }

    /// These sizes with the (task, role) input `input`.
    pub fn with_input(self, input: SelectorInput) -> SelectorConfig {
        SelectorConfig { input, ..self }
    }

    /// The width of the (task, role) input [`Selector::logits`] takes.
    pub fn task_role_dim(&self) -> usize {
        self.input.embeddings() * self.embed_dim
    }
}

/// The selector's layers; its parameters live in the `VarMap` it was built from.
pub struct Selector {
    pub config: SelectorConfig,
    /// One head (official), or one per role ([`SelectorConfig::roles`]).
    heads: Vec<Head>,
}

/// The layers that score every (position, option) pair of a supernode.
struct Head {
    pos: Embedding,
    row: Linear,
    col: Linear,
    mlp1: Linear,
    mlp2: Linear,
}

impl Head {
    fn new(c: &SelectorConfig, vb: VarBuilder) -> Result<Head> {
        Ok(Head {
            pos: candle_nn::embedding(c.max_positions, c.pos_dim, vb.pp("pos"))?,
            row: candle_nn::linear(
                c.pos_dim + c.task_role_dim() + c.embed_dim,
                c.hidden,
                vb.pp("row"),
            )?,
            col: candle_nn::linear(c.embed_dim, c.hidden, vb.pp("col"))?,
            mlp1: candle_nn::linear(2 * c.hidden, c.hidden, vb.pp("mlp1"))?,
            mlp2: candle_nn::linear(c.hidden, 1, vb.pp("mlp2"))?,
        })
    }
}

impl Selector {
    /// New layers under `vb` (initialised by candle-nn's defaults when `vb` is a fresh
    /// `VarMap`).
    pub fn new(config: SelectorConfig, vb: VarBuilder) -> Result<Selector> {
        let heads = if config.roles == 0 {
            vec![Head::new(&config, vb)?]
        } else {
            (0..config.roles)
                .map(|r| Head::new(&config, vb.pp(format!("role{r}"))))
                .collect::<Result<_>>()?
        };
        Ok(Selector { heads, config })
    }

    /// Raw logits `[positions, options]`: `llm` holds one profile embedding per option
    /// (`[options, embed_dim]`, `skip` last), `task_role` is
    /// `[`[`SelectorConfig::task_role_dim`]`]` and `meta` is `[embed_dim]`.
    pub fn logits(
        &self,
        llm: &Tensor,
        task_role: &Tensor,
        meta: &Tensor,
        positions: usize,
    ) -> Result<Tensor> {
        self.role_logits(llm, task_role, meta, positions, None)
    }

    /// [`Selector::logits`] for the role at index `role` of the role set: with a head per role
    /// ([`SelectorConfig::roles`]) that role's head; a selector with one head ignores `role`.
    pub fn role_logits(
        &self,
        llm: &Tensor,
        task_role: &Tensor,
        meta: &Tensor,
        positions: usize,
        role: Option<usize>,
    ) -> Result<Tensor> {
        let head = match self.heads.as_slice() {
            [one] => one,
            heads => role.and_then(|r| heads.get(r)).ok_or(SelectorError::Role {
                role,
                roles: heads.len(),
            })?,
        };
        let (options, _) = llm.dims2()?;
        let dev = llm.device();
        let idx = Tensor::arange(0u32, positions as u32, dev)?;
        let pe = head.pos.forward(&idx)?;
        let width = self.config.task_role_dim() + self.config.embed_dim;
        let ctx = Tensor::cat(&[task_role, meta], 0)?
            .unsqueeze(0)?
            .broadcast_as((positions, width))?;
        let rows = head.row.forward(&Tensor::cat(&[&pe, &ctx], 1)?)?;
        let cols = head.col.forward(llm)?;
        let h = self.config.hidden;
        let r = rows.unsqueeze(1)?.broadcast_as((positions, options, h))?;
        let c = cols.unsqueeze(0)?.broadcast_as((positions, options, h))?;
        let pair = Tensor::cat(&[&r, &c], 2)?;
        let hidden = head.mlp1.forward(&pair)?.relu()?;
        Ok(head.mlp2.forward(&hidden)?.squeeze(2)?)
    }
}

/// Re-initialises every parameter of `varmap` from `seed`, so a run is reproducible (candle's
/// CPU initialisers cannot be seeded). PyTorch's defaults: linear weights and biases uniform in
/// ±1/√fan_in, embeddings standard normal.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    use rand::SeedableRng;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("parameter map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let (prefix, kind) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let n = var.elem_count();
        let values: Vec<f64> = if prefix == "pos" || prefix.ends_with(".pos") {
            (0..n)
                .map(|_| {
                    // Box-Muller.
                    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
                    let u2: f64 = rng.random_range(0.0..1.0);
                    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                })
                .collect()
        } else {
            let weight = data.get(&format!("{prefix}.weight"));
            let fan_in = match (kind, weight) {
                (_, Some(w)) if w.rank() == 2 => w.dims()[1],
                _ => n,
            };
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Post-processing of the logits (method §5.2).
#[derive(Clone, Debug, PartialEq)]
pub struct Masks {
    /// Options nobody may choose (official: `deepseek-r1-14b`): set to −1e8 in every row.
    pub excluded: Vec<usize>,
    /// The `skip` option's column.
    pub skip: usize,
    /// Whether the synthesiser (the last row) may choose `skip`; if not, −1e10 there.
    pub synth_may_skip: bool,
    /// Training clamps the logits to ±this (official: 10).
    pub clamp: Option<f64>,
}

/// `logits` after clamping and masking; masked entries carry no gradient.
pub fn mask_logits(logits: &Tensor, m: &Masks) -> Result<Tensor> {
    let (rows, cols) = logits.dims2()?;
    let mut l = match m.clamp {
        Some(c) => logits.clamp(-c, c)?,
        None => logits.clone(),
    };
    let mut keep = vec![1u8; rows * cols];
    let mut value = vec![0f64; rows * cols];
    for r in 0..rows {
        for &k in m.excluded.iter().filter(|&&k| k < cols) {
            keep[r * cols + k] = 0;
            value[r * cols + k] = -1e8;
        }
    }
    if !m.synth_may_skip && m.skip < cols && rows > 0 {
        keep[(rows - 1) * cols + m.skip] = 0;
        value[(rows - 1) * cols + m.skip] = -1e10;
    }
    if keep.contains(&0) {
        let dev = logits.device();
        let keep = Tensor::from_vec(keep, (rows, cols), dev)?;
        let value = Tensor::from_vec(value, (rows, cols), dev)?.to_dtype(l.dtype())?;
        l = keep.where_cond(&l, &value)?;
    }
    Ok(l)
}

/// One option per row by the Gumbel-max trick on `logits / temperature` (the official
/// training samples at temperature 1 whatever the schedule says: pass 1.0 to reproduce it).
pub fn sample(logits: &Tensor, temperature: f64, rng: &mut impl Rng) -> Result<Vec<usize>> {
    let rows: Vec<Vec<f64>> = logits.to_dtype(DType::F64)?.to_vec2()?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut best = (f64::NEG_INFINITY, 0);
            for (k, &l) in row.iter().enumerate() {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                let g = -(-u.ln()).ln();
                let v = l / temperature + g;
                if v > best.0 {
                    best = (v, k);
                }
            }
            best.1
        })
        .collect())
}

/// The highest logit of each row (ties: the lowest index).
pub fn argmax(logits: &Tensor) -> Result<Vec<usize>> {
    let rows: Vec<Vec<f64>> = logits.to_dtype(DType::F64)?.to_vec2()?;
    Ok(rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (f64::NEG_INFINITY, 0),
                    |b, (k, &v)| if v > b.0 { (v, k) } else { b },
                )
                .1
        })
        .collect())
}

/// `Σ_rows log softmax(logits / T)[action]` and the entropy `−Σ_rows Σ_k p log p` of
/// `softmax(logits / T)` (summed over rows, as the official code does).
pub fn log_prob_and_entropy(
    logits: &Tensor,
    actions: &[usize],
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    let scaled = (logits / temperature)?;
    let lsm = candle_nn::ops::log_softmax(&scaled, D::Minus1)?;
    let idx: Vec<u32> = actions.iter().map(|&a| a as u32).collect();
    let idx = Tensor::from_vec(idx, (actions.len(), 1), logits.device())?;
    let logp = lsm.gather(&idx, 1)?.sum_all()?;
    let entropy = (lsm.exp()? * &lsm)?.sum_all()?.neg()?;
    Ok((logp, entropy))
}

/// Saves the selector's parameters to `path` (safetensors) and `<path>.json` (configuration,
/// tensor names, sha256 of the safetensors file), each crash-safe; returns that sha256.
pub fn save(varmap: &VarMap, config: &SelectorConfig, path: &Path) -> Result<String> {
    let sha256 = hieramas_checkpoint::save_weights(varmap, path)?;
    let tensors =
        hieramas_checkpoint::tensor_names(varmap).ok_or_else(|| SelectorError::Checkpoint {
            path: path.to_path_buf(),
            detail: "parameter map poisoned".into(),
        })?;
    let meta = CheckpointMeta {
        config: config.clone(),
        tensors,
        sha256,
    };
    hieramas_checkpoint::write_sidecar(path, &meta)?;
    Ok(meta.sha256)
}

/// What a checkpoint's JSON sidecar holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub config: SelectorConfig,
    pub tensors: Vec<String>,
    pub sha256: String,
}

/// Loads a checkpoint written by [`save`] into a new selector, after checking the file's
/// sha256 and that its tensors (and the sidecar's list of them) are exactly the selector's.
pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<(VarMap, Selector)> {
    let meta: CheckpointMeta = hieramas_checkpoint::read_sidecar(path)?;
    let mut varmap = VarMap::new();
    let selector = Selector::new(
        meta.config.clone(),
        VarBuilder::from_varmap(&varmap, dtype, device),
    )?;
    let expected = hieramas_checkpoint::load_verified(path, &meta.sha256, &mut varmap, device)?;
    if meta.tensors != expected {
        return Err(SelectorError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!(
                "its sidecar lists tensors {:?}, not the selector's {expected:?}",
                meta.tensors
            ),
        });
    }
    Ok((varmap, selector))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hieramas_checkpoint::sidecar;
    use rand::SeedableRng;
    use sha2::{Digest, Sha256};

    fn tiny() -> (VarMap, Selector, Tensor, Tensor, Tensor) {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let cfg = SelectorConfig {
            embed_dim: 4,
            hidden: 3,
            pos_dim: 2,
            max_positions: 5,
            input: SelectorInput::Joint,
            roles: 0,
        };
        let s = Selector::new(cfg, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
        let llm = Tensor::from_vec(
            (0..20)
                .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
                .collect::<Vec<_>>(),
            (5, 4),
            &dev,
        )
        .unwrap();
        let t = Tensor::new(&[0.3f64, -0.2, 0.9, 0.1], &dev).unwrap();
        let m = Tensor::new(&[-0.5f64, 0.4, 0.0, 0.7], &dev).unwrap();
        (varmap, s, llm, t, m)
    }

    #[test]
    fn seeded_initialisation_is_reproducible() {
        let weights = |seed: u64| -> Vec<f64> {
            let (varmap, s, llm, t, m) = tiny();
            init_seeded(&varmap, seed).unwrap();
            s.logits(&llm, &t, &m, 2)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(weights(3), weights(3));
        assert_ne!(weights(3), weights(4));
    }

    #[test]
    fn masks_set_excluded_columns_and_the_synthesisers_skip() {
        let (_, s, llm, t, m) = tiny();
        let l = s.logits(&llm, &t, &m, 3).unwrap();
        assert_eq!(l.dims(), &[3, 5]);
        let masks = Masks {
            excluded: vec![2],
            skip: 4,
            synth_may_skip: false,
            clamp: Some(10.0),
        };
        let v: Vec<Vec<f64>> = mask_logits(&l, &masks).unwrap().to_vec2().unwrap();
        let raw: Vec<Vec<f64>> = l.to_vec2().unwrap();
        for (r, row) in v.iter().enumerate() {
            assert_eq!(row[2], -1e8);
            for k in [0, 1, 3] {
                assert_eq!(row[k], raw[r][k].clamp(-10.0, 10.0));
            }
        }
        assert_eq!(v[2][4], -1e10, "the synthesiser may not skip");
        assert_eq!(v[0][4], raw[0][4], "proposers may");
        // Masked options are never sampled nor chosen.
        let masked = mask_logits(&l, &masks).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let a = sample(&masked, 1.0, &mut rng).unwrap();
            assert!(a.iter().all(|&k| k != 2) && a[2] != 4);
        }
        assert!(argmax(&masked).unwrap().iter().all(|&k| k != 2));
    }

    /// The loss −Σ logπ(a)·R − β·H backpropagates to the right gradient (finite differences).
    #[test]
    fn selector_loss_gradient_matches_finite_differences() {
        let (varmap, s, llm, t, m) = tiny();
        let actions = [1usize, 3, 0];
        let (credit, beta, temp) = (0.7, 0.3, 2.5);
        let masks = Masks {
            excluded: vec![2],
            skip: 4,
            synth_may_skip: false,
            clamp: Some(10.0),
        };
        let loss = || -> Tensor {
            let l = mask_logits(&s.logits(&llm, &t, &m, 3).unwrap(), &masks).unwrap();
            let (logp, h) = log_prob_and_entropy(&l, &actions, temp).unwrap();
            ((logp * -credit).unwrap() - (h * beta).unwrap()).unwrap()
        };
        let grads = loss().backward().unwrap();
        let vars = varmap.all_vars();
        let mut checked = 0;
        for var in &vars {
            let g: Vec<f64> = grads
                .get(var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
            for i in (0..base.len()).step_by(3).take(4) {
                let eps = 1e-6;
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss().to_scalar::<f64>().unwrap()
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                assert!(
                    (numeric - g[i]).abs() < 1e-6 * (1.0 + numeric.abs()),
                    "param {i}: analytic {} vs numeric {numeric}",
                    g[i]
                );
                checked += 1;
            }
        }
        assert!(checked >= 15);
    }

    #[test]
    fn checkpoints_round_trip_and_refuse_tampering() {
        let (varmap, s, llm, t, m) = tiny();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sel.safetensors");
        save(&varmap, &s.config, &path).unwrap();
        let (_, back) = load(&path, &Device::Cpu, DType::F64).unwrap();
        let a: Vec<Vec<f64>> = s.logits(&llm, &t, &m, 3).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f64>> = back.logits(&llm, &t, &m, 3).unwrap().to_vec2().unwrap();
        assert_eq!(a, b);

        // A changed byte: refused by the hash.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path, &Device::Cpu, DType::F64)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sha256"), "{e}");

        // No checkpoint at all: an error naming it, never a fresh selector.
        let e = load(
            &dir.path().join("none.safetensors"),
            &Device::Cpu,
            DType::F64,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("none.safetensors"), "{e}");

        // Another model's tensors under a valid hash: refused by name.
        let other = VarMap::new();
        let vb = VarBuilder::from_varmap(&other, DType::F64, &Device::Cpu);
        candle_nn::linear(4, 2, vb.pp("something_else")).unwrap();
        other.save(&path).unwrap();
        let sha = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
        let mut meta: CheckpointMeta =
            serde_json::from_str(&std::fs::read_to_string(sidecar(&path)).unwrap()).unwrap();
        meta.sha256 = sha;
        std::fs::write(sidecar(&path), serde_json::to_string(&meta).unwrap()).unwrap();
        let e = load(&path, &Device::Cpu, DType::F64)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("are not the model's"), "{e}");
    }

    /// The role-aware selector reads the task and the role apart: two roles on one task get
    /// different logits, its checkpoint says which input it reads, and a sidecar written before
    /// the field existed loads as the official (joint) selector.
    #[test]
    fn the_separate_input_tells_roles_apart_and_is_recorded() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let cfg = SelectorConfig {
            embed_dim: 4,
            hidden: 3,
            pos_dim: 2,
            max_positions: 5,
            input: SelectorInput::Separate,
            roles: 2,
        };
        assert_eq!(cfg.task_role_dim(), 8);
        let s = Selector::new(cfg, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
        init_seeded(&varmap, 7).unwrap();
        let (_, _, llm, task, m) = tiny();
        let role_a = Tensor::new(&[1.0f64, 0.0, 0.0, 0.0], &dev).unwrap();
        let role_b = Tensor::new(&[0.0f64, 0.0, 1.0, 0.0], &dev).unwrap();
        let input = |r: &Tensor| Tensor::cat(&[&task, r], 0).unwrap();
        let la: Vec<Vec<f64>> = s
            .role_logits(&llm, &input(&role_a), &m, 3, Some(0))
            .unwrap()
            .to_vec2()
            .unwrap();
        let lb: Vec<Vec<f64>> = s
            .role_logits(&llm, &input(&role_b), &m, 3, Some(0))
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_ne!(la, lb);
        // A head per role: the same input gives each role its own logits; a role index past
        // the heads, or none, is refused.
        let same = input(&role_a);
        let r0: Vec<Vec<f64>> = s
            .role_logits(&llm, &same, &m, 3, Some(0))
            .unwrap()
            .to_vec2()
            .unwrap();
        let r1: Vec<Vec<f64>> = s
            .role_logits(&llm, &same, &m, 3, Some(1))
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_ne!(r0, r1);
        assert!(s.role_logits(&llm, &same, &m, 3, Some(2)).is_err());
        // The joint input's width is refused by a separate selector.
        assert!(s.role_logits(&llm, &task, &m, 3, Some(0)).is_err());
        // A selector with a head per role needs the role.
        assert!(s.logits(&llm, &input(&role_a), &m, 3).is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sel.safetensors");
        save(&varmap, &s.config, &path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sidecar(&path)).unwrap()).unwrap();
        assert_eq!(json["config"]["input"], "separate", "{json}");
        let (_, back) = load(&path, &dev, DType::F64).unwrap();
        assert_eq!(
            (back.config.input, back.config.roles),
            (SelectorInput::Separate, 2)
        );
        let lc: Vec<Vec<f64>> = back
            .role_logits(&llm, &input(&role_a), &m, 3, Some(0))
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(la, lc);

        let old = r#"{"embed_dim":4,"hidden":3,"pos_dim":2,"max_positions":5}"#;
        let c: SelectorConfig = serde_json::from_str(old).unwrap();
        assert_eq!((c.input, c.roles), (SelectorInput::Joint, 0));
    }

    /// Why the fixed training variant drops the official clamp: a logit past +10 gets no
    /// gradient at all, so options that reach it tie there for good.
    #[test]
    fn the_official_clamp_freezes_logits_past_ten() {
        let dev = Device::Cpu;
        let grad_of_top = |clamp: Option<f64>| {
            let v = candle_core::Var::from_vec(vec![12f32, 11.0, 3.0], (1, 3), &dev).unwrap();
            let m = Masks {
                excluded: Vec::new(),
                skip: 2,
                synth_may_skip: true,
                clamp,
            };
            let l = mask_logits(v.as_tensor(), &m).unwrap();
            let lp = candle_nn::ops::log_softmax(&l, 1)
                .unwrap()
                .get(0)
                .unwrap()
                .get(0)
                .unwrap();
            let g = lp.backward().unwrap();
            g.get(&v).unwrap().to_vec2::<f32>().unwrap()[0].clone()
        };
        let clamped = grad_of_top(Some(10.0));
        assert_eq!(
            &clamped[..2],
            &[0.0, 0.0],
            "both top logits frozen: {clamped:?}"
        );
        let free = grad_of_top(None);
        assert!(free[0] > 0.0 && free[1] < 0.0, "{free:?}");
    }
}
