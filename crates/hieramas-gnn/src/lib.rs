//! HieraMAS stage 2 (method §6): choosing the topology per task by graph classification.
//!
//! - [`record`]: the stage-2 dataset — per training task, several random DAGs each run once with
//!   the stage-1 selector's choices, graded, priced and labelled (top-2 by reward that solved it).
//! - [`model`] (feature `classifier`, candle): the official classifier — learnable role features
//!   ‖ task embedding, two parameter-free mean-aggregation layers with self-loops, a linear
//!   layer, mean pooling and an MLP with dropout — over batched graphs; safetensors checkpoints.
//! - [`fit`] (feature `classifier`): task-level split, weighted BCE, Adam, ReduceLROnPlateau on
//!   per-task ROC-AUC, early stopping, best weights.
//! - [`metrics`]: per-task ROC-AUC, accuracy, top-1 hit rate and its random expectation.
//! - [`select`]: test-time choice among scored candidates — the top-1 (official) or the
//!   cost-aware rule `score − λ·expected cost`.
//! - [`edgewise`]: the per-edge comparator, GPTSwarm-style REINFORCE over edge probabilities.
//!
//! The crate knows graphs as `[src, dst]` role indices and tasks as embeddings; it runs no model
//! and reads no benchmark (the `hieramas` CLI does, and hands it the records).
//!
//! ```
//! # #[cfg(feature = "classifier")]
//! # fn main() -> Result<(), candle_core::Error> {
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//! use hieramas_gnn::model::{Classifier, ClassifierConfig, Direction, init};
//!
//! let varmap = VarMap::new();
//! let config = ClassifierConfig {
//!     roles: vec!["Analyst".into(), "Solver".into(), "Inspector".into()],
//!     role_dim: 4,
//!     task_dim: 3,
//!     gcn_out: 128,
//!     hidden: 64,
//!     dropout: 0.5,
//!     direction: Direction::Successors,
//! };
//! let cls = Classifier::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! init(&varmap, 1, &[vec![0.1; 4], vec![0.2; 4], vec![0.3; 4]])?;
//! // Two candidate DAGs for one task: a chain and an out-fork.
//! let scores = cls.score(&[vec![[0, 1], [1, 2]], vec![[0, 1], [0, 2]]], &[0.5, -0.1, 0.2])?;
//! let best = hieramas_gnn::metrics::top1(&scores).unwrap();
//! assert!(best < 2 && scores.iter().all(|s| (0.0..=1.0).contains(s)));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "classifier"))]
//! # fn main() {}
//! ```

use std::path::{Path, PathBuf};

pub mod config;
pub mod edgewise;
#[cfg(feature = "classifier")]
pub mod fit;
pub mod metrics;
#[cfg(feature = "classifier")]
pub mod model;
pub mod record;
pub mod report;
pub mod select;

/// What can go wrong in stage 2.
#[derive(Debug, thiserror::Error)]
pub enum GnnError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {detail}", path.display(), line.map_or(String::new(), |l| format!(" line {l}")))]
    Format {
        path: PathBuf,
        line: Option<usize>,
        detail: String,
    },
    #[error("{source_name}: {detail}")]
    Config { source_name: String, detail: String },
    #[error("classifier checkpoint {}: {detail}", path.display())]
    Checkpoint { path: PathBuf, detail: String },
    #[error("stage 2 has no data: {0}")]
    NoData(String),
    #[error("parameter map poisoned")]
    Poisoned,
    #[cfg(feature = "classifier")]
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

#[cfg(feature = "classifier")]
impl From<hieramas_checkpoint::CheckpointError> for GnnError {
    fn from(e: hieramas_checkpoint::CheckpointError) -> Self {
        GnnError::Checkpoint {
            path: e.path,
            detail: e.detail,
        }
    }
}

impl GnnError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> GnnError {
        GnnError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
