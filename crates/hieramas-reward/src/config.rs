//! Stage-1 hyperparameters per benchmark, as data (`configs/stage1.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::RewardError;
use crate::reward::RewardShape;

const BUILTIN: &str = include_str!("../configs/stage1.toml");

/// One benchmark's stage-1 settings (method §5.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Config {
    /// Proposers per supernode during training.
    pub width: usize,
    pub batch_size: usize,
    pub iterations: usize,
    pub lr_start: f64,
    pub lr_end: f64,
    pub warmup_ratio: f64,
    pub temperature_start: f64,
    pub temperature_min: f64,
    pub entropy_coef: f64,
    pub alpha: f64,
    pub kappa: f64,
    pub failure_kappa: f64,
    pub success_floor: f64,
    pub failure_floor: f64,
    /// Density range of the stage-1 candidate graphs.
    pub density: [f64; 2],
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
}

impl Stage1Config {
    /// The shipped settings of `benchmark` (math, mmlu, humaneval-plus).
    pub fn builtin(benchmark: &str) -> Result<Stage1Config, RewardError> {
        Stage1Config::from_toml(BUILTIN, "configs/stage1.toml", benchmark)
    }

    /// `benchmark`'s table of a TOML text like `configs/stage1.toml`; `source` names it in
    /// errors.
    pub fn from_toml(
        text: &str,
        source: &str,
        benchmark: &str,
    ) -> Result<Stage1Config, RewardError> {
        let err = |detail: String| RewardError::Config {
            source_name: source.to_string(),
            detail,
        };
        let mut all: BTreeMap<String, Stage1Config> =
            toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let names: Vec<String> = all.keys().cloned().collect();
        let c = all
            .remove(benchmark)
            .ok_or_else(|| err(format!("no [{benchmark}] table (have {names:?})")))?;
        if c.width == 0 || c.batch_size == 0 || c.iterations == 0 {
            return Err(err(format!(
                "[{benchmark}] width, batch_size and iterations must be at least 1"
            )));
        }
        if !(0.0..=1.0).contains(&c.alpha) || !(0.0..=1.0).contains(&c.warmup_ratio) {
            return Err(err(format!(
                "[{benchmark}] alpha and warmup_ratio must be within [0, 1]"
            )));
        }
        if !(0.0 <= c.density[0] && c.density[0] <= c.density[1] && c.density[1] <= 1.0) {
            return Err(err(format!(
                "[{benchmark}] density {:?} is not a range within [0, 1]",
                c.density
            )));
        }
        Ok(c)
    }

    /// The reward shape these settings define.
    pub fn reward(&self) -> RewardShape {
        RewardShape {
            kappa: self.kappa,
            failure_kappa: self.failure_kappa,
            success_floor: self.success_floor,
            failure_floor: self.failure_floor,
            alpha: self.alpha,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_official_settings_load() {
        let m = Stage1Config::builtin("mmlu").unwrap();
        assert_eq!((m.width, m.batch_size, m.iterations), (6, 4, 12));
        assert_eq!((m.lr_start, m.lr_end), (5e-3, 2e-3));
        let h = Stage1Config::builtin("humaneval-plus").unwrap();
        assert_eq!(h.density, [0.3, 0.75]);
        assert_eq!(
            Stage1Config::builtin("math").unwrap().reward(),
            RewardShape::default()
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_place() {
        let e = Stage1Config::builtin("gsm8k").unwrap_err().to_string();
        assert!(
            e.contains("configs/stage1.toml") && e.contains("gsm8k"),
            "{e}"
        );
        let text = BUILTIN.replacen("alpha = 0.5", "alpha = 1.5", 1);
        let e = Stage1Config::from_toml(&text, "x.toml", "math")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("alpha"), "{e}");
    }
}
