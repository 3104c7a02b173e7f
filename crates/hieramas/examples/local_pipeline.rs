//! The pipeline on the embedded local pool (SmolLM2-135M + Gemma-3-270M on candle, MiniLM
//! embeddings), as small as it gets: stage 1 for one iteration on two MATH train tasks, then the
//! trained selector answers a question (the random-graph ablation: the learned model choice on
//! one seeded random DAG, so no stage-2 classifier is needed).
//!
//! ```text
//! cargo run -p hieramas --example local_pipeline
//! ```
//!
//! Models are fetched on first use (`cargo xtask models` fetches them ahead); the MATH files
//! come from `$HIERAMAS_DATA_DIR` or the repository's `datasets/`.

use std::path::PathBuf;

use hieramas::progress::Progress;
use hieramas::records::Ablation;
use hieramas::stage1::{Stage1Config, SystemConfig};
use hieramas::stage2::{Hieramas, HieramasConfig};
use hieramas::{Benchmark, System};

/// Prints notes and a line per finished query on stderr.
struct Stderr {
    done: u64,
    total: u64,
}

impl Progress for Stderr {
    fn start(&mut self, total: u64, done: u64, unit: &str) {
        (self.total, self.done) = (total, done);
        eprintln!("[{done}/{total} {unit}]");
    }
    fn advance(&mut self, n: u64) {
        self.done += n;
        eprintln!("[{}/{}]", self.done, self.total);
    }
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

fn main() -> hieramas::Result<()> {
    hieramas::block_on(pipeline())?
}

async fn pipeline() -> hieramas::Result<()> {
    let out = std::env::temp_dir().join(format!("hieramas-example-{}", std::process::id()));
    let system = SystemConfig {
        benchmark: Benchmark::Math,
        pool: PathBuf::from("pools/local.toml"),
        max_tokens: 32,
        embeddings: Some(out.join("embeddings")),
        ..SystemConfig::default()
    };
    let stage1 = Stage1Config {
        system: system.clone(),
        iterations: Some(1),
        batch_size: Some(2),
        width: Some(1),
        train_limit: Some(2),
        val_limit: 0,
        out: Some(out.join("stage1")),
        ..Stage1Config::default()
    };
    let mut progress = Stderr { done: 0, total: 0 };
    let trained = hieramas::stage1::train(&stage1, &mut progress).await?;
    let selector = trained
        .selector
        .ok_or_else(|| hieramas::Error::Invalid("stage 1 left no selector".into()))?;

    let cfg = HieramasConfig {
        system,
        stage1: selector,
        ablation: Some(Ablation::RandomGraph),
        width: Some(1),
        ..HieramasConfig::default()
    };
    let data = hieramas::tasks::data::DataDir::resolve(None)?;
    let loaded = Hieramas::load(&cfg, &data, &[], None, &mut progress).await?;
    let system = System::learned(loaded.planner, loaded.description);
    let question = "What is 7 times 8?";
    let (answer, trace) = system.answer(question).await?;
    println!("Q: {question}\nA: {answer}");
    eprintln!(
        "[{} calls, {} tokens, exact cost {} pico-USD]",
        trace.calls.len(),
        trace.total_tokens,
        trace.total_cost_pico
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
