//! HieraMAS stage 1: cost-shaped rewards, their multi-level credit, the training schedules, the
//! official hyperparameters as data, and the LLM selector.
//!
//! - [`reward`]: `reward_v2` of method §5.4 — a success is worth 1 at zero cost, falling
//!   to a floor of 0.5; a failure −1, falling to −2.5 — the node rewards (each supernode's own
//!   output graded, its own calls' cost; a skipped node earns 0), the system reward (the final
//!   answer, the decision call's cost) and the mixed per-node credit `α·R_i + (1−α)·R_F`
//!   (`α = 0` for roles that give no answer).
//! - [`schedule`]: the cosine temperature schedule and the learning-rate ramp of §5.3/§5.5.
//! - [`config`]: per-benchmark hyperparameters (`configs/stage1.toml`).
//! - [`texts`]: what the selector embeds — LLM profiles and role descriptions as data
//!   (`texts/*.toml`), task+role texts, task-metadata summaries — and an on-disk embedding
//!   cache keyed by content hash.
//! - `selector` (feature `selector`, on by default): the LLM selector in candle — layers,
//!   masking, Gumbel-max sampling, log-probabilities and entropy, verified checkpoints; and
//!   `train`: the REINFORCE loss (official, or fixed: consistent temperature and a baseline)
//!   and a clipped Adam step.
//!
//! Costs are exact ([`hieramas_llm::Usd`]) and always the calls' own, never a process-wide
//! counter (method §10).
//!
//! ```
//! use hieramas_llm::Usd;
//! use hieramas_reward::config::Stage1Config;
//! use hieramas_reward::reward::{NodeResult, credit};
//!
//! let cfg = Stage1Config::builtin("math").unwrap();
//! let r = cfg.reward();
//! assert_eq!(r.reward(true, Usd::ZERO), 1.0);
//! assert_eq!(r.reward(false, Usd::ZERO), -1.0);
//! assert_eq!(r.reward(true, Usd::parse("0.01").unwrap()), 0.5); // the success floor
//!
//! // Two supernodes: the first solved the task cheaply, the second was skipped; the final
//! // answer was right.
//! let nodes = [
//!     NodeResult { solved: true, cost: Usd::parse("0.0001").unwrap(), skipped: false, answers: true },
//!     NodeResult { solved: false, cost: Usd::ZERO, skipped: true, answers: true },
//! ];
//! let c = credit(&r, &nodes, true, Usd::parse("0.0002").unwrap());
//! assert_eq!(c.node[1], 0.0);
//! assert!((c.mixed[1] - 0.5 * c.system).abs() < 1e-12);
//! ```

pub mod config;
pub mod reward;
pub mod schedule;
#[cfg(feature = "selector")]
pub mod selector;
pub mod texts;
#[cfg(feature = "selector")]
pub mod train;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    #[error("{source_name}: {detail}")]
    Config { source_name: String, detail: String },
}
