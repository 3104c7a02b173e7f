//! HieraMAS as a library: everything the `hieramas` command and `cargo xtask reproduce` do,
//! callable from Rust.
//!
//! - [`models`]: the pool → models factory (HTTP, local in-process, SIMULATED), one way to
//!   get an `Arc<dyn ChatModel>` from a pool file.
//! - [`system`]: one multi-agent [`System`] (role set, fixed topology or the trained planner,
//!   models per position, decision node) with [`System::answer`].
//! - [`stage1`]: trains the LLM selector ([`stage1::train`]).
//! - [`stage2`]: stage-2 data ([`stage2::generate_data`]), the classifier
//!   ([`stage2::fit`]) and the test-time planner ([`stage2::Hieramas`]).
//! - [`bundle`]: a trained system as one hash-verified directory ([`bundle::export`],
//!   [`bundle::Bundle::open`], [`bundle::Bundle::system`]).
//! - [`eval`]: a method over a benchmark split, resumable ([`eval::evaluate`]).
//! - [`credit`], [`topology_exp`]: the experiments on the optimiser.
//! - [`records`]: the typed records every step writes (built without the `engine` feature).
//! - [`official`]: the official code's behaviours that we fix, one named switch each
//!   (`--faithful` restores them all).
//!
//! Every step takes a plain config struct (serde; `Default` is the paper's settings) and a
//! [`Progress`] callback, and never prints.
//!
//! ```no_run
//! # #[cfg(feature = "engine")]
//! # async fn demo() -> hieramas::Result<()> {
//! use hieramas::progress::Silent;
//! use hieramas::stage1::{Stage1Config, SystemConfig};
//!
//! // Stage 1 on two MATH train tasks with the embedded local models, one iteration.
//! let cfg = Stage1Config {
//!     system: SystemConfig { max_tokens: 32, ..SystemConfig::default() },
//!     iterations: Some(1),
//!     batch_size: Some(2),
//!     train_limit: Some(2),
//!     val_limit: 0,
//!     ..Stage1Config::default()
//! };
//! let outcome = hieramas::stage1::train(&cfg, &mut Silent).await?;
//! println!("selector: {:?}", outcome.selector);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/local_pipeline.rs` runs the whole pipeline on the local pool;
//! `tests/facade` (a crate that depends on this one only) on a SIMULATED pool.

pub mod error;
pub mod official;
pub mod progress;
pub mod records;

#[cfg(feature = "engine")]
pub mod bundle;
#[cfg(feature = "engine")]
pub mod credit;
#[cfg(feature = "engine")]
pub mod eval;
#[cfg(feature = "engine")]
pub mod models;
#[cfg(feature = "engine")]
pub mod sim;
#[cfg(feature = "engine")]
pub mod simfit;
#[cfg(feature = "engine")]
pub mod stage1;
#[cfg(feature = "engine")]
pub mod stage2;
#[cfg(feature = "engine")]
pub mod system;
#[cfg(feature = "engine")]
pub mod topology_exp;

pub use error::{Error, Result};
pub use progress::Progress;
#[cfg(feature = "engine")]
pub use system::System;

/// The lower crates, for their types in this crate's signatures.
pub use hieramas_bench as bench;
#[cfg(feature = "engine")]
pub use hieramas_llm as llm;
pub use hieramas_tasks as tasks;
pub use hieramas_tasks::splits::Benchmark;

/// Runs `future` to completion on a new multi-threaded tokio runtime: the library's steps are
/// async; a synchronous program calls them through this.
#[cfg(feature = "engine")]
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(future))
}
