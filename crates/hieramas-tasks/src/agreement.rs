//! Labelled agreement sets: `{gold, response, correct}` pairs judged by meaning, and how often a
//! grader agrees with them.
//!
//! The sets live under `tests/fixtures/` of this crate (`math_pairs.jsonl`,
//! `mmlu_pairs.jsonl`; see the README beside them for how they were built). The crate's tests
//! hold our graders to them, and `cargo xtask bench graders` prints our agreement beside
//! math-verify's on the same pairs.
//!
//! ```
//! use hieramas_tasks::agreement::{MathPair, score_math};
//!
//! let pairs = vec![MathPair {
//!     id: "m1".into(),
//!     source: "hand".into(),
//!     problem_id: None,
//!     gold: "\\frac{1}{2}".into(),
//!     response: "So the probability is $\\boxed{0.5}$.".into(),
//!     correct: true,
//!     why: None,
//! }];
//! let a = score_math(&pairs);
//! assert_eq!((a.pairs, a.agree), (1, 1));
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{TasksError, math, mmlu};

/// One labelled MATH pair: a model's whole response to a MATH problem and whether its final
/// answer equals `gold` by meaning.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MathPair {
    pub id: String,
    /// Who wrote the response: a local model's id, or `hand` for the formats written by hand.
    pub source: String,
    #[serde(default)]
    pub problem_id: Option<String>,
    pub gold: String,
    pub response: String,
    /// The label: the response's final answer is right.
    pub correct: bool,
    /// A few words on the format or the transformation, for readers of the set.
    #[serde(default)]
    pub why: Option<String>,
}

/// One labelled MMLU pair: a response to a four-option question and whether the option it
/// finally commits to is the gold one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MmluPair {
    pub id: String,
    pub source: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub question: Option<String>,
    pub choices: Vec<String>,
    /// The gold letter, `A`–`D`.
    pub gold: String,
    pub response: String,
    pub correct: bool,
    #[serde(default)]
    pub why: Option<String>,
}

/// A pair on which a grader and the label differ.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Disagreement {
    pub id: String,
    pub label: bool,
    pub graded: bool,
    /// What the grader read as the final answer.
    pub extracted: Option<String>,
}

/// A grader's agreement with a labelled set, and its time per pair.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Agreement {
    pub pairs: usize,
    pub agree: usize,
    pub disagreements: Vec<Disagreement>,
    /// Mean and largest wall time of one `grade` call, microseconds.
    pub mean_micros: f64,
    pub max_micros: f64,
}

impl Agreement {
    /// Agreeing pairs over all pairs (1.0 for an empty set).
    pub fn rate(&self) -> f64 {
        if self.pairs == 0 {
            1.0
        } else {
            self.agree as f64 / self.pairs as f64
        }
    }

    fn score<T>(
        items: &[T],
        mut judge: impl FnMut(&T) -> (String, bool, bool, Option<String>),
    ) -> Agreement {
        let mut a = Agreement::default();
        let mut total = 0.0;
        for item in items {
            let t = Instant::now();
            let (id, label, graded, extracted) = judge(item);
            let us = t.elapsed().as_secs_f64() * 1e6;
            total += us;
            a.max_micros = a.max_micros.max(us);
            a.pairs += 1;
            if label == graded {
                a.agree += 1;
            } else {
                a.disagreements.push(Disagreement {
                    id,
                    label,
                    graded,
                    extracted,
                });
            }
        }
        a.mean_micros = if a.pairs == 0 {
            0.0
        } else {
            total / a.pairs as f64
        };
        a
    }
}

/// Our MATH grader ([`math::grade`]) on every pair.
pub fn score_math(pairs: &[MathPair]) -> Agreement {
    Agreement::score(pairs, |p| {
        let v = math::grade(&p.response, &p.gold);
        (p.id.clone(), p.correct, v.correct, v.extracted)
    })
}

/// Our MMLU grader ([`mmlu::grade`], with the choices) on every pair. A pair whose gold is not
/// a letter `A`–`D` counts as a disagreement (the set is malformed there).
pub fn score_mmlu(pairs: &[MmluPair]) -> Agreement {
    Agreement::score(pairs, |p| {
        let gold = mmlu::parse_gold(&serde_json::Value::String(p.gold.clone()));
        let v = gold.map(|g| mmlu::grade(&p.response, g, Some(&p.choices)));
        let graded = v.as_ref().is_some_and(|v| v.correct);
        let extracted = v.and_then(|v| v.extracted).map(String::from);
        (p.id.clone(), p.correct, graded, extracted)
    })
}

/// The committed sets: `tests/fixtures/` of this crate.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reads `math_pairs.jsonl` from `dir`.
pub fn load_math(dir: &Path) -> Result<Vec<MathPair>, TasksError> {
    crate::data::read_jsonl(&dir.join("math_pairs.jsonl"))
}

/// Reads `mmlu_pairs.jsonl` from `dir`.
pub fn load_mmlu(dir: &Path) -> Result<Vec<MmluPair>, TasksError> {
    crate::data::read_jsonl(&dir.join("mmlu_pairs.jsonl"))
}
