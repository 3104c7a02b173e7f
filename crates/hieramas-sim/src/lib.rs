//! SIMULATED model pools for fast, honest experiments on the HieraMAS optimiser.
//!
//! A simulated model is a [`ChatModel`](hieramas_llm::ChatModel) that answers through the real
//! pipeline (supernodes, scheduler, graders, rewards). It recognises the task in its prompt by
//! looking it up in a [`GoldBook`], then answers correctly with a calibrated probability, or
//! plausibly wrong: a perturbed number, another letter, a program that fails the tests.
//!
//! - Proposers succeed with the model's published accuracy on the benchmark
//!   (`models/paper.toml`, sources cited there) plus its fitness for the role; correctness is
//!   correlated across calls on the same task through a per-task difficulty (Gaussian copula,
//!   exact marginals at average content). A task's content shifts it: its *hardness* (MATH
//!   level, length, an MMLU subject held out of training; [`fit::Hardness`]).
//! - Synthesisers and the decision node read the candidate answers quoted in their prompt and
//!   keep a correct one with their judging skill, raised by the share of candidates that agree
//!   on it (`agreement`); with none they solve it themselves with probability
//!   `rescue × accuracy` (correlated and as hard as the task, like a proposer), else repeat the
//!   most common wrong candidate.
//! - Proposers read their predecessors' answers quoted in the prompt: a correct one is taken up
//!   (`p → p + uptake·(1 − p)`), only wrong ones mislead (`p → p·(1 − misled)`). This is what
//!   makes the topology matter.
//! - Per benchmark the settings come from `fit.toml` ([`fit::fitted`]): the correlation and the
//!   agreement fitted to the paper's system-level accuracies, the rest assumed
//!   (`benchmarks/simulator.md` has the fit and its residuals).
//! - Token counts: prompt tokens from the real prompt (4 bytes per token) plus, for every
//!   simulated output quoted in it, the tokens that output was billed for (its marker says
//!   how many); completion tokens from the model's typical length; costs with the pool's real
//!   per-token prices.
//! - Seeded and deterministic per (seed, model, prompt, sample index).
//!
//! Every output ends with `⟨SIMULATED family/id · N tokens⟩` and reports the provider model
//! `SIMULATED/family/id`: nothing simulated passes for a real result.
//!
//! ```
//! use std::sync::Arc;
//! use hieramas_llm::{ChatModel, ChatRequest, Message, Price};
//! use hieramas_sim::{Answer, Catalogue, GoldBook, GoldTask, Kind, Settings, SimModel};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let book = Arc::new(GoldBook::new(vec![GoldTask {
//!     kind: Kind::Math,
//!     task: "What is 7*8?".into(),
//!     answer: Answer::Math("56".into()),
//!     hardness: 0.0,
//! }]));
//! let catalogue = Catalogue::builtin().unwrap();
//! let spec = catalogue.get("paper/gpt-4o-mini").unwrap().clone();
//! let price = Price::per_million("0.15", "0.60").unwrap();
//! let m = SimModel::new("gpt-4o-mini", "paper/gpt-4o-mini", spec, price, book, Settings::default()).unwrap();
//! let r = m.chat(&ChatRequest::new(vec![Message::user("Q: What is 7*8?")])).await.unwrap();
//! assert!(r.text.contains("SIMULATED"));
//! assert_eq!(r.cost, price.cost(r.usage));
//! # });
//! ```

pub mod fit;
pub mod gold;
pub mod model;
pub mod spec;

pub use fit::{Features, Fitted, Hardness};
pub use gold::{Answer, GoldBook, GoldTask};
pub use model::{Settings, SimModel};
pub use spec::{Catalogue, Kind, SimSpec};

/// Starts the tag that ends every simulated output (`⟨SIMULATED family/id · N tokens⟩`).
pub const MARKER: &str = "⟨SIMULATED ";

/// What can go wrong building simulated models.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulated model catalogue {name}: {detail}")]
    Catalogue { name: String, detail: String },
    #[error("no simulated model {name:?} (known: {known})")]
    UnknownModel { name: String, known: String },
}

/// The shipped SIMULATED pools: `(file name, TOML)`, also linked as `pools/<file name>`.
pub const POOLS: [(&str, &str); 3] = [
    ("sim-paper.toml", include_str!("../pools/sim-paper.toml")),
    (
        "sim-paper-qwen.toml",
        include_str!("../pools/sim-paper-qwen.toml"),
    ),
    ("sim-credit.toml", include_str!("../pools/sim-credit.toml")),
];
