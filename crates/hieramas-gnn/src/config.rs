//! Stage-2 settings per benchmark, as data (`configs/stage2.toml`), and the role sentences that
//! initialise the classifier's role features (`texts/roles.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::GnnError;

const SETTINGS: &str = include_str!("../configs/stage2.toml");
const ROLES: &str = include_str!("../texts/roles.toml");

/// Data generation, training and test-time settings of one benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Config {
    pub graphs_per_task: usize,
    pub density: [f64; 2],
    pub candidates: usize,
    pub candidate_density: [f64; 2],
    pub top: usize,
    /// Data generation: whether a synthesiser's argmax may be `skip`.
    pub datagen_synth_skip: bool,
    /// Test time: proposers take the top-`rotation` models of one random proposer row.
    pub rotation: usize,
    /// Test time: at most this many answer roles are skipped.
    pub skip_roles: usize,
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub patience: usize,
    pub seed: u64,
    /// ReduceLROnPlateau on validation ROC-AUC.
    #[serde(default = "plateau_patience")]
    pub plateau_patience: usize,
    #[serde(default = "plateau_factor")]
    pub plateau_factor: f64,
    #[serde(default = "train_ratio")]
    pub train_ratio: f64,
}

fn plateau_patience() -> usize {
    5
}
fn plateau_factor() -> f64 {
    0.5
}
fn train_ratio() -> f64 {
    0.8
}

impl Stage2Config {
    /// The official settings of `benchmark` (`math`, `mmlu`, `humaneval-plus`).
    pub fn builtin(benchmark: &str) -> Result<Stage2Config, GnnError> {
        let mut all: BTreeMap<String, Stage2Config> =
            toml::from_str(SETTINGS).map_err(|e| GnnError::Config {
                source_name: "configs/stage2.toml".into(),
                detail: e.to_string(),
            })?;
        let known = all.keys().cloned().collect::<Vec<_>>().join(", ");
        all.remove(benchmark).ok_or_else(|| GnnError::Config {
            source_name: "configs/stage2.toml".into(),
            detail: format!("no settings for {benchmark:?} (known: {known})"),
        })
    }
}

/// The role sentence of each of `roles` for `benchmark`.
pub fn role_sentences(benchmark: &str, roles: &[String]) -> Result<Vec<String>, GnnError> {
    let bad = |detail: String| GnnError::Config {
        source_name: "texts/roles.toml".into(),
        detail,
    };
    let all: BTreeMap<String, BTreeMap<String, String>> =
        toml::from_str(ROLES).map_err(|e| bad(e.to_string()))?;
    let set = all
        .get(benchmark)
        .ok_or_else(|| bad(format!("no role sentences for {benchmark:?}")))?;
    roles
        .iter()
        .map(|r| {
            set.get(r)
                .cloned()
                .ok_or_else(|| bad(format!("{benchmark}: no sentence for the role {r:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_benchmark_has_settings_and_sentences() {
        for b in ["math", "mmlu", "humaneval-plus"] {
            let c = Stage2Config::builtin(b).unwrap();
            assert_eq!((c.graphs_per_task, c.top, c.epochs), (5, 2, 20));
            let all: BTreeMap<String, BTreeMap<String, String>> = toml::from_str(ROLES).unwrap();
            let roles: Vec<String> = all[b].keys().cloned().collect();
            let s = role_sentences(b, &roles).unwrap();
            assert!(
                s.iter()
                    .zip(&roles)
                    .all(|(s, r)| s.starts_with(&format!("{r}: ")))
            );
        }
        let mmlu = Stage2Config::builtin("mmlu").unwrap();
        assert_eq!(
            (mmlu.batch_size, mmlu.rotation, mmlu.skip_roles),
            (128, 3, 2)
        );
        assert!(
            mmlu.datagen_synth_skip && !Stage2Config::builtin("math").unwrap().datagen_synth_skip
        );
        assert!(
            Stage2Config::builtin("gsm8k")
                .unwrap_err()
                .to_string()
                .contains("known")
        );
        assert!(role_sentences("math", &["Poet".into()]).is_err());
    }
}
