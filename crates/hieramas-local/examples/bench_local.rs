//! Throughput of one local chat model: load time, prefill and decode tokens/s with 1 and 4
//! concurrent requests, peak RSS. Run one model per process so RSS is that model's alone:
//!
//! `cargo run -p hieramas-local --example bench_local -- local/smollm2-135m [--reps 3]`
//!
//! (`cargo xtask bench local` runs it for every model of `pools/local.toml`.) Prefill rate is
//! prompt tokens over the time of a `max_tokens = 1` request; decode rate is the extra tokens of
//! a `max_tokens = 128` request over its extra time. With 1 request at a time, the four prompts
//! run one after another and their tokens and times are summed (so one prompt the model
//! answers briefly does not decide the figure); with 4, they run together. Each figure is the
//! median of `--reps` runs after one warm-up. Results are printed as a Markdown table row.
//!
//! `HIERAMAS_QMM=candle` runs the same with candle's quantized kernels instead of
//! `hieramas_local`'s own (see the crate's `qmm` module), for comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hieramas_llm::{ChatModel, ChatRequest};
use hieramas_local::chat::LocalChatModel;
use hieramas_local::engine::EngineOptions;
use hieramas_local::pool::{LocalModels, local_pool};

const PROMPTS: [&str; 4] = [
    "Count from one to two hundred in words, separated by commas, and do not stop early.",
    "Write a long story about a lighthouse keeper who finds a map inside a bottle on the beach.",
    "List as many animals as you can, one per line, with a short fact about each of them.",
    "Explain in detail, step by step, how a bicycle works, from the pedals to the wheels.",
];

/// A prompt of about 128 tokens for the prefill measurement.
fn long_prompt(i: usize) -> String {
    format!(
        "{} {}",
        PROMPTS[i],
        "Please be thorough and careful in your answer. ".repeat(11)
    )
}

struct Run {
    prompt_tokens: u64,
    completion_tokens: u64,
    wall: Duration,
}

/// `n` requests at once (prompts `first..first + n`).
async fn together(
    m: &Arc<LocalChatModel>,
    first: usize,
    n: usize,
    max_tokens: u32,
    long: bool,
) -> Run {
    let started = Instant::now();
    let handles: Vec<_> = (first..first + n)
        .map(|i| {
            let m = m.clone();
            let text = if long {
                long_prompt(i)
            } else {
                PROMPTS[i].to_string()
            };
            let req = ChatRequest::user(text)
                .temperature(0.0)
                .max_tokens(max_tokens);
            tokio::spawn(async move { m.chat(&req).await })
        })
        .collect();
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for h in handles {
        let r = h.await.expect("request task").expect("completion");
        prompt_tokens += r.usage.prompt_tokens;
        completion_tokens += r.usage.completion_tokens;
    }
    Run {
        prompt_tokens,
        completion_tokens,
        wall: started.elapsed(),
    }
}

/// The four prompts with `n` at a time (1: one after another, times and tokens summed).
async fn all_prompts(m: &Arc<LocalChatModel>, n: usize, max_tokens: u32, long: bool) -> Run {
    let mut total = Run {
        prompt_tokens: 0,
        completion_tokens: 0,
        wall: Duration::ZERO,
    };
    for first in (0..PROMPTS.len()).step_by(n) {
        let r = together(m, first, n, max_tokens, long).await;
        total.prompt_tokens += r.prompt_tokens;
        total.completion_tokens += r.completion_tokens;
        total.wall += r.wall;
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let id = args
        .first()
        .ok_or("usage: bench_local MODEL_ID [--reps N]")?;
    let reps: usize = match args.iter().position(|a| a == "--reps") {
        Some(i) => args.get(i + 1).ok_or("--reps needs a number")?.parse()?,
        None => 3,
    };
    let spec = local_pool()?
        .get(id)
        .ok_or("not a model of pools/local.toml")?
        .clone();
    let models = LocalModels::from_env()?;
    let started = Instant::now();
    let m = Arc::new(models.chat(&spec, EngineOptions::default())?);
    let load = started.elapsed();

    let mut row = vec![id.clone(), format!("{:.2}", load.as_secs_f64())];
    for n in [1, 4] {
        all_prompts(&m, n, 8, false).await; // warm-up
        let (mut prefill, mut decode, mut completion) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let p = all_prompts(&m, n, 1, true).await;
            prefill.push(p.prompt_tokens as f64 / p.wall.as_secs_f64());
            let first = all_prompts(&m, n, 1, false).await;
            let full = all_prompts(&m, n, 128, false).await;
            let extra = full
                .completion_tokens
                .saturating_sub(first.completion_tokens) as f64;
            decode.push(extra / (full.wall.saturating_sub(first.wall)).as_secs_f64());
            completion.push(full.completion_tokens as f64 / PROMPTS.len() as f64);
        }
        row.push(format!("{:.0}", median(prefill)));
        row.push(format!("{:.0}", median(decode)));
        row.push(format!("{:.0}", median(completion)));
    }
    row.push(format!("{:.0}", peak_rss_mb()));
    println!(
        "| model | load s | prefill tok/s @1 | decode tok/s @1 | tokens/req @1 | prefill tok/s @4 (agg) | decode tok/s @4 (agg) | tokens/req @4 | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!("| {} |", row.join(" | "));
    Ok(())
}
