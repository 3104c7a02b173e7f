//! Generation with continuous batching: one worker thread owns a loaded network and decodes
//! every request submitted to it together — each step is one forward over all active
//! sequences (prompt chunks of new requests, one token of the others).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::LocalError;
use crate::gemma::Gemma;
use crate::llama::Llama;
use crate::nn::{KvCache, ce};
use crate::tokenizer::GgufTokenizer;

/// A loaded network of either supported architecture.
pub enum Net {
    Llama(Llama),
    Gemma(Gemma),
}

impl Net {
    /// Reads a GGUF file and loads the network its `general.architecture` names.
    pub fn load<R: std::io::Read + std::io::Seek>(
        c: &candle_core::quantized::gguf_file::Content,
        r: &mut R,
        max_context: Option<usize>,
    ) -> Result<Net, LocalError> {
        let arch = c
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        match arch.as_str() {
            "llama" => Ok(Net::Llama(Llama::load(c, r, max_context)?)),
            "gemma3" => Ok(Net::Gemma(Gemma::load(c, r, max_context)?)),
            other => Err(LocalError::Format(format!(
                "architecture {other:?} is not supported (llama and gemma3 are)"
            ))),
        }
    }

    /// Swaps quantized weights for f32 ones; see [`Llama::dequantize`].
    pub fn dequantize(&mut self) -> Result<(), LocalError> {
        match self {
            Net::Llama(m) => m.dequantize(),
            Net::Gemma(m) => m.dequantize(),
        }
    }

    /// One step over a batch of sequences; see [`Llama::forward`].
    pub fn forward(&self, batch: &mut [(&mut KvCache, &[u32])]) -> Result<Vec<Tensor>, LocalError> {
        match self {
            Net::Llama(m) => m.forward(batch),
            Net::Gemma(m) => m.forward(batch),
        }
    }

    /// Longest sequence (prompt + completion) the loaded network accepts.
    pub fn context(&self) -> usize {
        match self {
            Net::Llama(m) => m.config.context,
            Net::Gemma(m) => m.config.context,
        }
    }
}

/// How to generate one completion.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// Token ids that end the completion (not part of its text).
    pub stop_ids: Vec<u32>,
    /// Strings that end the completion; the text is cut before the first one.
    pub stop_strings: Vec<String>,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop id or stop string.
    Stop,
    /// `max_tokens`, or the end of the context.
    Length,
}

/// A finished completion.
#[derive(Clone, Debug)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Tokens the model produced, the stop token included.
    pub completion_tokens: usize,
    /// From submission to the first generated token.
    pub time_to_first_token: Duration,
    pub total: Duration,
}

struct Job {
    prompt: Vec<u32>,
    params: GenParams,
    reply: tokio::sync::oneshot::Sender<Result<Generation, LocalError>>,
    deltas: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    submitted: Instant,
}

/// Tuning of the batching worker.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Most sequences decoded together; more wait in the queue.
    pub max_batch: usize,
    /// Longest prompt chunk fed in one step (chunked prefill), so a long prompt does not stall
    /// the sequences already decoding for long.
    pub prefill_chunk: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_batch: 16,
            prefill_chunk: 256,
        }
    }
}

/// What the batching worker has done so far: how many forward steps it ran, over how many
/// sequences in all, and the widest batch it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub steps: u64,
    pub sequence_steps: u64,
    pub widest_batch: u64,
}

#[derive(Default)]
struct Counters {
    steps: AtomicU64,
    sequence_steps: AtomicU64,
    widest_batch: AtomicU64,
}

impl Counters {
    fn record(&self, batch: usize) {
        let batch = batch as u64;
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.sequence_steps.fetch_add(batch, Ordering::Relaxed);
        self.widest_batch.fetch_max(batch, Ordering::Relaxed);
    }
}

/// A handle on the batching worker of one loaded network. Cloning it is cheap; the worker stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Job>,
    context: usize,
    counters: Arc<Counters>,
}

impl Engine {
    /// Starts the worker thread that owns `net`.
    pub fn start(
        net: Net,
        tokenizer: std::sync::Arc<GgufTokenizer>,
        opts: EngineOptions,
    ) -> Engine {
        let (tx, rx) = mpsc::channel();
        let context = net.context();
        let counters = Arc::new(Counters::default());
        let for_worker = counters.clone();
        std::thread::Builder::new()
            .name("hieramas-local-engine".into())
            .spawn(move || worker(net, tokenizer, opts, rx, &for_worker))
            .map(drop)
            .unwrap_or_else(|e| tracing::error!("cannot start the inference thread: {e}"));
        Engine {
            tx,
            context,
            counters,
        }
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Counts of the work done so far (for tests, benchmarks and monitoring).
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            steps: c.steps.load(Ordering::Relaxed),
            sequence_steps: c.sequence_steps.load(Ordering::Relaxed),
            widest_batch: c.widest_batch.load(Ordering::Relaxed),
        }
    }

    /// Generates a completion of `prompt` (token ids, BOS included where the model wants one).
    /// With `deltas`, text is sent there as it is produced (never past a stop string).
    pub async fn generate(
        &self,
        prompt: Vec<u32>,
        params: GenParams,
        deltas: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Generation, LocalError> {
        if prompt.is_empty() {
            return Err(LocalError::Request("the prompt has no tokens".into()));
        }
        if prompt.len() >= self.context {
            return Err(LocalError::Request(format!(
                "the prompt has {} tokens; the context holds {} (prompt + completion)",
                prompt.len(),
                self.context
            )));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job {
                prompt,
                params,
                reply,
                deltas,
                submitted: Instant::now(),
            })
            .map_err(|_| LocalError::Request("the inference thread has stopped".into()))?;
        rx.await
            .map_err(|_| LocalError::Request("the inference thread has stopped".into()))?
    }
}

struct Seq {
    job: Job,
    cache: KvCache,
    /// Prompt tokens already fed.
    fed: usize,
    out: Vec<u32>,
    /// Text already sent as deltas.
    sent: usize,
    rng: StdRng,
    first_token: Option<Duration>,
}

enum Step {
    Continue,
    Done(Finish, String),
}

fn worker(
    net: Net,
    tok: std::sync::Arc<GgufTokenizer>,
    opts: EngineOptions,
    rx: mpsc::Receiver<Job>,
    counters: &Counters,
) {
    let context = net.context();
    let mut active: Vec<Seq> = Vec::new();
    let admit = |job: Job| Seq {
        rng: StdRng::seed_from_u64(job.params.seed),
        job,
        cache: KvCache::default(),
        fed: 0,
        out: Vec::new(),
        sent: 0,
        first_token: None,
    };
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(job) => active.push(admit(job)),
                Err(_) => return,
            }
        }
        while active.len() < opts.max_batch.max(1) {
            match rx.try_recv() {
                Ok(job) => active.push(admit(job)),
                Err(_) => break,
            }
        }
        // Requests whose caller has gone away are dropped.
        active.retain(|s| !s.job.reply.is_closed());
        if active.is_empty() {
            continue;
        }
        let chunks: Vec<Vec<u32>> = active
            .iter()
            .map(|s| {
                if s.fed < s.job.prompt.len() {
                    let end = (s.fed + opts.prefill_chunk.max(1)).min(s.job.prompt.len());
                    s.job.prompt[s.fed..end].to_vec()
                } else {
                    s.out.last().copied().into_iter().collect()
                }
            })
            .collect();
        let result = {
            let mut batch: Vec<(&mut KvCache, &[u32])> = active
                .iter_mut()
                .zip(&chunks)
                .map(|(s, c)| (&mut s.cache, c.as_slice()))
                .collect();
            counters.record(batch.len());
            net.forward(&mut batch)
        };
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                for s in active.drain(..) {
                    let _ = s.job.reply.send(Err(LocalError::Format(msg.clone())));
                }
                continue;
            }
        };
        let mut i = 0;
        for (logits, chunk) in logits.into_iter().zip(&chunks) {
            let s = &mut active[i];
            let was_prefill = s.fed < s.job.prompt.len();
            if was_prefill {
                s.fed += chunk.len();
                if s.fed < s.job.prompt.len() {
                    i += 1;
                    continue;
                }
            }
            match advance(s, &logits, &tok, context) {
                Ok(Step::Continue) => i += 1,
                Ok(Step::Done(finish, text)) => {
                    let s = active.remove(i);
                    let generation = Generation {
                        prompt_tokens: s.job.prompt.len(),
                        completion_tokens: s.out.len(),
                        ids: s.out,
                        text,
                        finish,
                        time_to_first_token: s.first_token.unwrap_or_default(),
                        total: s.job.submitted.elapsed(),
                    };
                    let _ = s.job.reply.send(Ok(generation));
                }
                Err(e) => {
                    let s = active.remove(i);
                    let _ = s.job.reply.send(Err(e));
                }
            }
        }
    }
}

/// Samples the next token of `s`, streams new text, and says whether it is finished.
fn advance(
    s: &mut Seq,
    logits: &Tensor,
    tok: &GgufTokenizer,
    context: usize,
) -> Result<Step, LocalError> {
    let p = &s.job.params;
    let logits = logits.to_vec1::<f32>().map_err(ce)?;
    let next = sample(&logits, p.temperature, p.top_p, &mut s.rng);
    s.first_token
        .get_or_insert_with(|| s.job.submitted.elapsed());
    s.out.push(next);
    let is_stop_id = p.stop_ids.contains(&next);
    let ids = if is_stop_id {
        &s.out[..s.out.len() - 1]
    } else {
        &s.out[..]
    };
    let text = tok.decode(ids)?;
    if let Some(cut) = p
        .stop_strings
        .iter()
        .filter(|x| !x.is_empty())
        .filter_map(|x| text.find(x.as_str()))
        .min()
    {
        let text = text[..cut].to_string();
        send_delta(s, &text, true);
        return Ok(Step::Done(Finish::Stop, text));
    }
    if is_stop_id {
        send_delta(s, &text, true);
        return Ok(Step::Done(Finish::Stop, text));
    }
    if s.out.len() >= p.max_tokens || s.job.prompt.len() + s.out.len() >= context {
        send_delta(s, &text, true);
        return Ok(Step::Done(Finish::Length, text));
    }
    send_delta(s, &text, false);
    Ok(Step::Continue)
}

/// Sends the text not yet sent, holding back (unless `last`) an incomplete UTF-8 character and
/// any tail that could be the start of a stop string.
fn send_delta(s: &mut Seq, text: &str, last: bool) {
    let Some(tx) = &s.job.deltas else { return };
    let mut end = text.len();
    if !last {
        end = text.trim_end_matches('\u{FFFD}').len();
        for stop in &s.job.params.stop_strings {
            for k in (1..stop.len()).rev() {
                if stop.is_char_boundary(k) && text[..end].ends_with(&stop[..k]) {
                    end = end.min(text.len() - k);
                    break;
                }
            }
        }
    }
    if end > s.sent && text.is_char_boundary(end) && text.is_char_boundary(s.sent) {
        let _ = tx.send(text[s.sent..end].to_string());
        s.sent = end;
    }
}

/// Greedy when `temperature` is 0; otherwise softmax at `temperature`, cut to the smallest set
/// of tokens whose probability reaches `top_p` (nucleus), and one draw from `rng`.
pub fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut impl Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0 as u32
    };
    if temperature <= 0.0 || !temperature.is_finite() {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax();
    }
    // Tokens below e^-30 of the best cannot matter at any top_p; skip them before sorting
    // (the vocabulary is 262k for Gemma).
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| {
            let z = (v - max) / temperature;
            (z > -30.0).then(|| (i as u32, z.exp()))
        })
        .collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f32 = cand.iter().map(|c| c.1).sum();
    let top_p = if top_p > 0.0 && top_p < 1.0 {
        top_p
    } else {
        1.0
    };
    let mut keep = cand.len();
    let mut acc = 0.0;
    for (k, c) in cand.iter().enumerate() {
        acc += c.1 / total;
        if acc >= top_p {
            keep = k + 1;
            break;
        }
    }
    cand.truncate(keep.max(1));
    let mass: f32 = cand.iter().map(|c| c.1).sum();
    let mut r = rng.random::<f32>() * mass;
    for c in &cand {
        r -= c.1;
        if r <= 0.0 {
            return c.0;
        }
    }
    cand.last().map_or_else(argmax, |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greedy_picks_the_largest() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(sample(&[0.1, 3.0, -1.0, 2.9], 0.0, 1.0, &mut rng), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(sample(&[1.0, 1.5, 0.2], 1.0, 0.01, &mut rng), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // logits ln(1), ln(3): token 1 should come ~75% of the time.
        let logits = [0.0f32, 3f32.ln()];
        let mut rng = StdRng::seed_from_u64(42);
        let ones = (0..4000)
            .filter(|_| sample(&logits, 1.0, 1.0, &mut rng) == 1)
            .count();
        assert!((2850..3150).contains(&ones), "{ones}");
    }

    proptest! {
        #[test]
        fn same_seed_same_draws(logits in proptest::collection::vec(-10.0f32..10.0, 1..50), seed: u64, t in 0.1f32..2.0, p in 0.05f32..1.0) {
            let a: Vec<u32> = { let mut r = StdRng::seed_from_u64(seed); (0..5).map(|_| sample(&logits, t, p, &mut r)).collect() };
            let b: Vec<u32> = { let mut r = StdRng::seed_from_u64(seed); (0..5).map(|_| sample(&logits, t, p, &mut r)).collect() };
            prop_assert_eq!(&a, &b);
            prop_assert!(a.iter().all(|&i| (i as usize) < logits.len()));
        }

        #[test]
        fn top_p_only_draws_from_the_nucleus(logits in proptest::collection::vec(-5.0f32..5.0, 2..30), seed: u64, p in 0.05f32..0.95) {
            let mut r = StdRng::seed_from_u64(seed);
            let tok = sample(&logits, 1.0, p, &mut r) as usize;
            // Every token strictly more probable than the drawn one is in the nucleus too, and the
            // mass strictly above it must be below p (else the drawn token was cut).
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f64> = logits.iter().map(|&v| f64::from(v - max).exp()).collect();
            let total: f64 = w.iter().sum();
            let above: f64 = w.iter().filter(|&&x| x > w[tok]).sum::<f64>() / total;
            prop_assert!(above < f64::from(p) + 1e-4, "above {above} p {p}");
        }
    }
}
