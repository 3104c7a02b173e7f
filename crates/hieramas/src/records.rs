//! The typed records every step writes and every reader (the CLI's summaries, `cargo xtask
//! reproduce`'s report) reads back: one serde struct per file, shared by writer and reader, so a
//! renamed field is a compile error, not a silent 0 in a report. Built without the `engine`
//! feature too.
//!
//! | step | file | record |
//! |---|---|---|
//! | stage 1 | `curve.jsonl` (a line per iteration) | [`CurveRow`] |
//! | stage 1 | `validation.json` | [`Validation`] |
//! | stage-2 data | `meta.json`, `tasks.jsonl` | [`DatasetMeta`], [`TaskRecord`] |
//! | stage-2 fit | `report.json` | [`FitOutput`] |
//! | eval | `<log>.jsonl` (a line per query) | [`Record`], its `trace.plan`: [`PlanRecord`] |
//! | eval | `<log>.summary.json` | [`Summary`] |
//! | eval | `<log>.config.json` | [`EvalConfigRecord`] |

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use hieramas_bench::{Record, Summary};
pub use hieramas_gnn::config::Stage2Config;
pub use hieramas_gnn::metrics::Metrics;
pub use hieramas_gnn::record::{DatasetMeta, Run, TaskRecord};
pub use hieramas_gnn::report::{Direction, Epoch, FitReport};
pub use hieramas_gnn::select::{CostModel, Rule};

use crate::error::{Context, Result};

/// Which credit each supernode's choices get (method §5.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreditMode {
    /// `R̃_i = α·R_i + (1−α)·R_F`: the supernode's own reward mixed with the system's.
    #[default]
    Multi,
    /// Every supernode gets the system reward `R_F` (the ablation).
    System,
}

impl std::str::FromStr for CreditMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "multi" => Ok(CreditMode::Multi),
            "system" => Ok(CreditMode::System),
            other => Err(format!("{other:?}: use multi or system")),
        }
    }
}

/// Which stage-1 loss (method §5.3, §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// The official loss: temperature mismatch, no baseline.
    Faithful,
    /// Consistent temperature and a per-batch baseline.
    #[default]
    Fixed,
}

/// One line of stage 1's `curve.jsonl`: an iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// 1-based.
    pub iteration: usize,
    pub temperature: f64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    /// Mean system reward over the batch.
    pub system_reward: f64,
    /// Share of the batch's queries answered right.
    pub accuracy: f64,
    /// Share of the supernodes that ran and answer whose own output was right.
    pub node_accuracy: f64,
    /// What the batch's systems cost (pico-USD).
    pub cost_pico: u64,
    pub cost_usd: f64,
    /// Task-metadata calls, apart from the systems' cost (pico-USD).
    pub metadata_cost_pico: u64,
    pub variant: Loss,
    pub credit: CreditMode,
    pub simulated: bool,
    /// The validation after this iteration, if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Its mean cost per query (USD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cost_usd: Option<f64>,
}

/// How the selector chooses at one role, over the validation queries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolePolicy {
    pub role: String,
    /// Mean probability (softmax of the masked logits, T = 1) of each option at the proposer
    /// positions.
    pub proposer_prob: Vec<f64>,
    /// Share of proposer positions whose argmax is each option.
    pub proposer_argmax: Vec<f64>,
    /// Share of synthesiser positions whose argmax is each option.
    pub synth_argmax: Vec<f64>,
}

/// One validation of stage 1 (`validation.json`): argmax choices over the full graph (method
/// §5.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub simulated: bool,
    pub iteration: usize,
    pub queries: usize,
    pub accuracy: f64,
    /// Mean cost per query, USD.
    pub cost_usd: f64,
    /// The options in selector order (pool models, then `skip`).
    pub options: Vec<String>,
    pub policy: Vec<RolePolicy>,
}

/// How a choice rule fares on a dataset whose every candidate was run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub tasks: usize,
    pub accuracy: f64,
    /// The standard error of `accuracy` over the tasks (sd of the per-task solved share
    /// over √tasks).
    #[serde(default)]
    pub stderr: f64,
    /// Mean cost per query, USD.
    pub cost_usd: f64,
}

/// The classifier's results on a held-out dataset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldOut {
    pub metrics: Metrics,
    /// Task ROC-AUC of random scores (mean of 100 seeded draws), for reference.
    pub random_task_auc: Option<f64>,
    /// Running the classifier's top-1 candidate.
    pub classifier: Choice,
    /// A uniformly random candidate (expectation over the candidates).
    pub random: Choice,
    /// The best candidate by reward (what a perfect classifier would run).
    pub oracle: Choice,
    /// Classifier minus random candidate, accuracy paired per task: the mean difference and
    /// its standard error.
    #[serde(default)]
    pub classifier_vs_random: Option<(f64, f64)>,
}

/// What fitting the stage-2 classifier writes to `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitOutput {
    pub simulated: bool,
    pub benchmark: String,
    pub settings: Stage2Config,
    pub direction: Direction,
    pub fit: FitReport,
    pub cost_model: CostModel,
    pub test: Option<HeldOut>,
}

/// The ablations of method §7 that change one part of HieraMAS at test time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ablation {
    /// Every proposer and synthesiser is the decision model; the classifier still picks the
    /// topology (the official `--fixed_llm`).
    FixedLlm,
    /// The learned model choice on one seeded random DAG per query; no classifier (the
    /// official `--random_graph`).
    RandomGraph,
}

impl Ablation {
    pub fn name(self) -> &'static str {
        match self {
            Ablation::FixedLlm => "fixed-llm",
            Ablation::RandomGraph => "random-graph",
        }
    }
}

impl std::str::FromStr for Ablation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed-llm" => Ok(Ablation::FixedLlm),
            "random-graph" => Ok(Ablation::RandomGraph),
            other => Err(format!("{other:?}: use fixed-llm or random-graph")),
        }
    }
}

/// What HieraMAS chose for one query (the `plan` of its trace in an eval record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// Candidate DAGs scored.
    pub candidates: usize,
    /// The index of the one run.
    pub chosen: usize,
    /// Its classifier score (none for the random-graph ablation).
    pub score: Option<f64>,
    /// Its edges, `[from, to]` by role index.
    pub edges: Vec<[usize; 2]>,
    pub ablation: Option<Ablation>,
    pub rule: Rule,
    /// The model (or `skip`) at every position, per role.
    pub selected: Vec<Vec<String>>,
    pub skipped_roles: Vec<String>,
}

impl PlanRecord {
    /// The plan in an eval record's trace, if it has one.
    pub fn of(record: &Record) -> Option<PlanRecord> {
        let plan = record.trace.as_ref()?.get("plan")?;
        serde_json::from_value(plan.clone()).ok()
    }
}

/// What an eval writes beside its log (`<log>.config.json`): the configuration and its hash.
#[derive(Clone, Debug, Serialize)]
pub struct EvalConfigRecord<'a> {
    #[serde(flatten)]
    pub config: &'a hieramas_bench::EvalConfig,
    pub config_hash: String,
}

/// Reads a JSON file as `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not the expected record", path.display()))
}

/// Reads a JSONL file as `T` per line; a torn last line (a crash mid-write) is left out, any
/// other line that does not parse is an error.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(e).with_context(|| format!("{} line {}", path.display(), i + 1));
            }
        }
    }
    Ok(out)
}

/// Writes `value` as JSON through a temporary file beside `path` — synced, renamed into place,
/// the folder synced — so a crash leaves the old file or the new one, never half of one.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(
            &mut f,
            (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
        )?;
        f.sync_all()
    };
    write().with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_torn_last_line_is_left_out_and_a_bad_middle_line_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hieramas-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.jsonl");
        std::fs::write(
            &p,
            "{\"tasks\":1,\"accuracy\":0.5,\"cost_usd\":0.1}\n{\"tasks\":2,",
        )
        .unwrap();
        let rows: Vec<Choice> = read_jsonl(&p).unwrap();
        assert_eq!(rows.len(), 1);
        std::fs::write(
            &p,
            "{\"tasks\":1}\n{\"tasks\":2,\"accuracy\":0.5,\"cost_usd\":0.1}\n",
        )
        .unwrap();
        let e = read_jsonl::<Choice>(&p).unwrap_err();
        assert!(e.report().contains("line 1"), "{}", e.report());
        write_json_atomic(&dir.join("c.json"), &Choice::default()).unwrap();
        let c: Choice = read_json(&dir.join("c.json")).unwrap();
        assert_eq!(c, Choice::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_curve_row_without_validation_has_no_val_fields() {
        let row = CurveRow {
            iteration: 1,
            temperature: 10.0,
            lr: 2e-3,
            loss: 0.5,
            grad_norm: 1.0,
            system_reward: 0.2,
            accuracy: 0.5,
            node_accuracy: 0.25,
            cost_pico: 7,
            cost_usd: 7e-12,
            metadata_cost_pico: 0,
            variant: Loss::Fixed,
            credit: CreditMode::Multi,
            simulated: true,
            val_accuracy: None,
            val_cost_usd: None,
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(!text.contains("val_"), "{text}");
        assert!(text.contains("\"variant\":\"Fixed\""), "{text}");
        assert!(text.contains("\"credit\":\"multi\""), "{text}");
        assert_eq!(serde_json::from_str::<CurveRow>(&text).unwrap(), row);
    }
}
