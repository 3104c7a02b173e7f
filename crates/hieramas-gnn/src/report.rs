//! What a classifier training reports and how it reads graphs: plain serde records, available
//! without the `classifier` feature (a report reader needs no candle).

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Which neighbours a node averages over (besides itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Official: itself and its successors (messages run against execution).
    #[default]
    Successors,
    /// Itself and its predecessors (messages follow execution).
    Predecessors,
}

/// One epoch of training.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub valid: Metrics,
    /// The value model selection compares (validation per-task ROC-AUC, else pooled, else ½).
    pub selection: f64,
}

/// What a finished training reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitReport {
    pub train_tasks: Vec<String>,
    pub valid_tasks: Vec<String>,
    pub train_samples: usize,
    pub pos_weight: f64,
    pub epochs: Vec<Epoch>,
    /// The epoch whose weights the classifier holds at the end (1-based; 0: none improved).
    pub best_epoch: usize,
    pub best_selection: f64,
    pub stopped_early: bool,
}
