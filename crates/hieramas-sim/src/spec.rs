//! Simulated model specifications as data (`models/*.toml`): accuracy per benchmark, judging
//! skill, per-role fitness and typical completion lengths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SimError;

/// The shipped catalogues: `(family, TOML)`. A pool entry names a model as `family/id`.
pub const BUILTIN: [(&str, &str); 2] = [
    ("paper", include_str!("../models/paper.toml")),
    ("credit", include_str!("../models/credit.toml")),
];

/// Which benchmark a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Math,
    Mmlu,
    Humaneval,
}

impl Kind {
    /// The key of the benchmark in the catalogue files.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Math => "math",
            Kind::Mmlu => "mmlu",
            Kind::Humaneval => "humaneval",
        }
    }

    /// The name of the benchmark's role set (`hieramas_topology::roleset::BUILTIN`).
    pub fn roleset(self) -> &'static str {
        match self {
            Kind::Math => "math",
            Kind::Mmlu => "mmlu",
            Kind::Humaneval => "humaneval-plus",
        }
    }
}

/// One simulated model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Probability of a correct answer as a proposer or solo model, per benchmark.
    pub math: f64,
    pub mmlu: f64,
    pub humaneval: f64,
    /// Probability of keeping a correct candidate when one is among a synthesiser's or the
    /// decision node's inputs, per benchmark key (default: the accuracy).
    #[serde(default)]
    pub judge: BTreeMap<String, f64>,
    /// Added to the accuracy when proposing for the named role (default 0).
    #[serde(default)]
    pub fitness: BTreeMap<String, f64>,
    /// Typical completion tokens per benchmark key.
    pub completion_tokens: BTreeMap<String, u64>,
    /// Which numbers are estimates rather than published, and why.
    #[serde(default)]
    pub assumed: Option<String>,
}

impl SimSpec {
    pub fn accuracy(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Math => self.math,
            Kind::Mmlu => self.mmlu,
            Kind::Humaneval => self.humaneval,
        }
    }

    /// Probability of a correct proposal for `role` (accuracy + fitness, within [0, 1]).
    pub fn proposer_accuracy(&self, kind: Kind, role: &str) -> f64 {
        (self.accuracy(kind) + self.fitness.get(role).copied().unwrap_or(0.0)).clamp(0.0, 1.0)
    }

    pub fn judge(&self, kind: Kind) -> f64 {
        self.judge
            .get(kind.key())
            .copied()
            .unwrap_or_else(|| self.accuracy(kind))
            .clamp(0.0, 1.0)
    }

    pub fn typical_completion(&self, kind: Kind) -> u64 {
        self.completion_tokens
            .get(kind.key())
            .copied()
            .unwrap_or(300)
    }

    fn check(&self, name: &str) -> Result<(), SimError> {
        let probs = [self.math, self.mmlu, self.humaneval]
            .into_iter()
            .chain(self.judge.values().copied());
        for p in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::Catalogue {
                    name: name.into(),
                    detail: format!("probability {p} outside [0, 1]"),
                });
            }
        }
        if let Some(f) = self.fitness.values().find(|f| !(-1.0..=1.0).contains(*f)) {
            return Err(SimError::Catalogue {
                name: name.into(),
                detail: format!("fitness {f} outside [-1, 1]"),
            });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    models: BTreeMap<String, SimSpec>,
}

/// Every simulated model by `family/id`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalogue {
    pub models: BTreeMap<String, SimSpec>,
}

impl Catalogue {
    /// The shipped catalogues.
    pub fn builtin() -> Result<Catalogue, SimError> {
        let mut c = Catalogue::default();
        for (family, text) in BUILTIN {
            c.add(family, text)?;
        }
        Ok(c)
    }

    /// Adds the models of one catalogue file as `family/id`.
    pub fn add(&mut self, family: &str, text: &str) -> Result<(), SimError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| SimError::Catalogue {
            name: family.into(),
            detail: e.to_string(),
        })?;
        for (id, spec) in file.models {
            let name = format!("{family}/{id}");
            spec.check(&name)?;
            self.models.insert(name, spec);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&SimSpec, SimError> {
        self.models.get(name).ok_or_else(|| SimError::UnknownModel {
            name: name.into(),
            known: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_loads_and_bounds_are_enforced() {
        let c = Catalogue::builtin().unwrap();
        assert_eq!(c.get("paper/llama-8b").unwrap().math, 0.548);
        assert!(
            c.get("credit/strong")
                .unwrap()
                .proposer_accuracy(Kind::Math, "Inspector")
                < 0.31
        );
        assert!(c.get("paper/nope").is_err());
        let mut bad = Catalogue::default();
        let text = "[models.x]\nmath = 1.2\nmmlu = 0.5\nhumaneval = 0.5\ncompletion_tokens = {}\n";
        assert!(bad.add("t", text).is_err());
    }
}
