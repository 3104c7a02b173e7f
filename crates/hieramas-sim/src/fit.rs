//! The simulator's behaviour per benchmark as data (`fit.toml`): the settings fitted to the
//! paper's system-level results, and how a task's content makes it harder.
//!
//! A task's *hardness* (standard-normal units, positive = harder) shifts every model's chance
//! on it: the MATH level, the length of the task text, and for MMLU whether its subject was
//! held out of training (`test_unseen`). Which coefficients were fitted and which assumed is
//! recorded in the file and in `benchmarks/simulator.md`.

use serde::{Deserialize, Serialize};

use crate::spec::Kind;
use crate::{SimError, model::Settings};

/// The shipped fit (`hieramas experiment fit-sim` wrote the numbers; see
/// `benchmarks/simulator.md`).
pub const FIT: &str = include_str!("../fit.toml");

/// How a task's content makes it harder (standard-normal units added to its difficulty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardness {
    /// Per MATH level above `center_level` (levels 1-5).
    pub level: f64,
    /// The centre of the level term: the mean level of the set the models' accuracies were
    /// published on (MATH-500: 3.44), so that average content keeps the published accuracy.
    pub center_level: f64,
    /// Per natural-log unit of the task's length in characters above `center_log_chars`.
    pub length: f64,
    /// The centre of the length term: the mean log length of the benchmark's tasks.
    pub center_log_chars: f64,
    /// Added for an MMLU question whose subject is held out of training.
    pub unseen: f64,
    /// The standard deviation of the hardness over the set the accuracies were published on
    /// (measured); a call's draw is divided by `√(1 + spread²)` so that a model's accuracy
    /// over that set stays the published one.
    pub spread: f64,
}

/// What is known of a task's content.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Features {
    /// The MATH level (1-5), if known.
    pub level: Option<u8>,
    /// The task's length in characters.
    pub chars: usize,
    /// An MMLU question of a subject held out of training.
    pub unseen: bool,
}

impl Hardness {
    /// The hardness of a task with `f` (0 at the centre level and length, seen).
    pub fn of(&self, f: &Features) -> f64 {
        let level = f.level.map_or(0.0, |l| f64::from(l) - self.center_level);
        let length = (f.chars.max(1) as f64).ln() - self.center_log_chars;
        let length = if self.center_log_chars > 0.0 {
            length
        } else {
            0.0
        };
        self.level * level + self.length * length + if f.unseen { self.unseen } else { 0.0 }
    }
}

/// One benchmark's fitted simulator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fitted {
    pub correlation: f64,
    pub rescue: f64,
    pub uptake: f64,
    pub misled: f64,
    pub agreement: f64,
    #[serde(default)]
    pub hardness: Hardness,
    /// The published system accuracy (%) the fit aims at, if any.
    #[serde(default)]
    pub target: Option<f64>,
    /// The published accuracy (%) on MMLU subjects held out of training, if any.
    #[serde(default)]
    pub unseen_target: Option<f64>,
}

impl Fitted {
    /// The run settings with `seed`.
    pub fn settings(&self, seed: u64) -> Settings {
        Settings {
            correlation: self.correlation,
            rescue: self.rescue,
            uptake: self.uptake,
            misled: self.misled,
            agreement: self.agreement,
            spread: self.hardness.spread,
            seed,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FitFile {
    math: Fitted,
    mmlu: Fitted,
    humaneval: Fitted,
}

/// The shipped fit for `kind`.
pub fn fitted(kind: Kind) -> Result<Fitted, SimError> {
    parse(FIT, kind)
}

/// The fit for `kind` in a `fit.toml`-shaped text.
pub fn parse(text: &str, kind: Kind) -> Result<Fitted, SimError> {
    let file: FitFile = toml::from_str(text).map_err(|e| SimError::Catalogue {
        name: "fit.toml".into(),
        detail: e.to_string(),
    })?;
    let f = match kind {
        Kind::Math => file.math,
        Kind::Mmlu => file.mmlu,
        Kind::Humaneval => file.humaneval,
    };
    let probs = [f.correlation, f.rescue, f.uptake, f.misled, f.agreement];
    if let Some(p) = probs.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(SimError::Catalogue {
            name: format!("fit.toml [{}]", kind.key()),
            detail: format!("{p} outside [0, 1]"),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_fit_loads_for_every_benchmark() {
        for kind in [Kind::Math, Kind::Mmlu, Kind::Humaneval] {
            let f = fitted(kind).unwrap();
            assert_eq!(f.settings(7).seed, 7);
        }
        let bad = FIT.replacen("correlation = ", "correlation = 1", 1);
        assert!(parse(&bad, Kind::Math).is_err());
    }

    #[test]
    fn harder_content_has_higher_hardness() {
        let h = Hardness {
            level: 0.4,
            center_level: 3.0,
            length: 0.2,
            center_log_chars: 5.0,
            unseen: 0.8,
            spread: 0.5,
        };
        let base = Features {
            level: Some(3),
            chars: 148, // e^5
            unseen: false,
        };
        assert!(h.of(&base).abs() < 0.01);
        assert!(
            h.of(&Features {
                level: Some(5),
                ..base
            }) > h.of(&base)
        );
        assert!(
            h.of(&Features {
                chars: 2000,
                ..base
            }) > h.of(&base)
        );
        assert!(
            (h.of(&Features {
                unseen: true,
                ..base
            }) - 0.8)
                .abs()
                < 0.01
        );
        assert_eq!(Hardness::default().of(&base), 0.0);
    }
}
