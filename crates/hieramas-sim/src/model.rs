//! A simulated model answering through the real pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hieramas_llm::{
    ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, Price, Role, Usage,
};
use hieramas_topology::roleset::{BUILTIN as ROLESETS, RoleSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::gold::{Answer, GoldBook};
use crate::spec::{Kind, SimSpec};
use crate::{MARKER, SimError};

/// Behaviour shared by every simulated model of a run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Correlation of correctness between calls on the same task (a Gaussian copula on a
    /// per-task difficulty): models tend to fail the same hard tasks. Marginals stay exact.
    pub correlation: f64,
    /// When no candidate among a synthesiser's inputs is correct, the probability of solving
    /// the task anyway is `rescue × accuracy`.
    pub rescue: f64,
    /// A proposer whose prompt quotes a correct answer (a predecessor's output) takes it up:
    /// its accuracy `p` becomes `p + uptake·(1 − p)`. Assumed, not fitted.
    #[serde(default = "uptake")]
    pub uptake: f64,
    /// A proposer whose prompt quotes only wrong answers is misled: `p` becomes
    /// `p·(1 − misled)`. Assumed, not fitted.
    #[serde(default = "misled")]
    pub misled: f64,
    /// A synthesiser (or the decision node) keeps a correct candidate with probability
    /// `judge + agreement·(1 − judge)·share`, `share` the fraction of its candidates that are
    /// correct: unanimous correct candidates are rarely thrown away. 0: the judge alone.
    #[serde(default)]
    pub agreement: f64,
    /// The spread of task hardness on the set the accuracies were published on
    /// ([`crate::fit::Hardness::spread`]); 0 without content hardness.
    #[serde(default)]
    pub spread: f64,
    /// Seed of every random choice (with the model, the prompt and the sample index).
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            correlation: 0.3,
            rescue: 0.5,
            uptake: uptake(),
            misled: misled(),
            agreement: 0.0,
            spread: 0.0,
            seed: 0,
        }
    }
}

fn uptake() -> f64 {
    0.5
}

fn misled() -> f64 {
    0.3
}

/// What a call asks for, recognised from its system prompt.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    /// A proposer of the role (`answers`: the role's output is an answer).
    Propose { role: String, answers: bool },
    /// A synthesiser over proposals.
    Combine { answers: bool },
    /// The decision node.
    Decide,
}

/// System prompts of the shipped role sets -> the call they start.
fn calls() -> Result<HashMap<String, Call>, SimError> {
    let mut map = HashMap::new();
    for (name, _) in ROLESETS {
        let set = RoleSet::builtin(name).map_err(|e| SimError::Catalogue {
            name: name.into(),
            detail: e.to_string(),
        })?;
        for r in &set.roles {
            map.insert(
                r.proposer_system.clone(),
                Call::Propose {
                    role: r.name.clone(),
                    answers: r.answer,
                },
            );
            let answers = r.answer
                || matches!(
                    map.get(&r.synth_system),
                    Some(Call::Combine { answers: true })
                );
            map.insert(r.synth_system.clone(), Call::Combine { answers });
        }
        map.insert(set.decision.system.clone(), Call::Decide);
    }
    Ok(map)
}

/// A SIMULATED chat model: looks the task up in the gold book and answers correctly with its
/// calibrated probability, or plausibly wrong. Deterministic per (seed, model, prompt, sample).
pub struct SimModel {
    id: String,
    name: String,
    spec: SimSpec,
    price: Price,
    book: Arc<GoldBook>,
    settings: Settings,
    calls: Arc<HashMap<String, Call>>,
}

impl SimModel {
    /// `id` is the pool id calls are recorded under, `name` the catalogue name (`paper/qwen3-8b`).
    pub fn new(
        id: &str,
        name: &str,
        spec: SimSpec,
        price: Price,
        book: Arc<GoldBook>,
        settings: Settings,
    ) -> Result<SimModel, SimError> {
        Ok(SimModel {
            id: id.into(),
            name: name.into(),
            spec,
            price,
            book,
            settings,
            calls: Arc::new(calls()?),
        })
    }

    fn rng(&self, req: &ChatRequest) -> ChaCha8Rng {
        let mut h = Sha256::new();
        h.update(self.settings.seed.to_le_bytes());
        h.update(self.name.as_bytes());
        for m in &req.messages {
            h.update([0u8]);
            h.update(m.content.as_bytes());
        }
        h.update(req.sample_index.to_le_bytes());
        h.update(req.seed.unwrap_or(0).to_le_bytes());
        let d = h.finalize();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&d);
        ChaCha8Rng::from_seed(seed)
    }

    /// A standard normal per task: its difficulty, shared by every model and call.
    fn difficulty(&self, task: &str) -> f64 {
        let mut h = Sha256::new();
        h.update(self.settings.seed.to_le_bytes());
        h.update(b"difficulty");
        h.update(task.as_bytes());
        let d = h.finalize();
        let u1 = unit(u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8])));
        let u2 = unit(u64::from_le_bytes(d[8..16].try_into().unwrap_or([0; 8])));
        box_muller(u1, u2)
    }

    /// Whether a call with success probability `p` succeeds, correlated through the task;
    /// `hardness` (the task's content) lowers the chance.
    fn succeeds(&self, p: f64, task: &str, hardness: f64, rng: &mut ChaCha8Rng) -> bool {
        let rho = self.settings.correlation.clamp(0.0, 1.0);
        let own = box_muller(rng.random::<f64>(), rng.random::<f64>());
        let z = (rho.sqrt() * self.difficulty(task) + (1.0 - rho).sqrt() * own - hardness)
            / (1.0 + self.settings.spread.powi(2)).sqrt();
        // Low z (a hard task, a hard draw) fails first; over tasks whose hardness has sd
        // `spread`, z is standard normal, so the accuracy there is `p`.
        1.0 - phi(z) < p
    }
}

fn unit(x: u64) -> f64 {
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn box_muller(u1: f64, u2: f64) -> f64 {
    let u1 = u1.clamp(1e-300, 1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The standard normal CDF (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub fn phi(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The `k`-th plausible wrong answer (0 is the most common one).
pub fn wrong_answer(answer: &Answer, task: &str, k: usize) -> String {
    let h = task.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    match answer {
        Answer::Math(gold) => {
            let offset = 1 + (h % 5) + 3 * k as u64;
            let start = gold.find(|c: char| c.is_ascii_digit());
            match start {
                Some(s) => {
                    let len = gold[s..]
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(gold.len() - s);
                    let digits = &gold[s..s + len];
                    let changed = match digits.parse::<u64>() {
                        Ok(n) => (n + offset).to_string(),
                        Err(_) => format!("{digits}{offset}"),
                    };
                    format!("{}{changed}{}", &gold[..s], &gold[s + len..])
                }
                None => format!("{gold}+{offset}"),
            }
        }
        Answer::Letter(gold) => {
            let others: Vec<char> = ['A', 'B', 'C', 'D']
                .into_iter()
                .filter(|c| c != gold)
                .collect();
            let first = (h % 3) as usize;
            others[(first + k) % others.len()].to_string()
        }
        Answer::Code { prompt, .. } => {
            let body = [
                "    return None\n",
                "    pass\n",
                "    raise NotImplementedError\n",
            ];
            format!("{}{}", with_newline(prompt), body[k % body.len()])
        }
    }
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// The correct answer as text (what a candidate is compared with).
pub fn right_answer(answer: &Answer) -> String {
    match answer {
        Answer::Math(gold) => gold.clone(),
        Answer::Letter(c) => c.to_string(),
        Answer::Code { prompt, solution } => format!("{}{}", with_newline(prompt), solution),
    }
}

/// A simulated output holding `answer` (or no answer), ending with the SIMULATED marker, which
/// records the `tokens` the output was billed for (`⟨SIMULATED family/id · N tokens⟩`).
pub fn render(kind: Kind, answer: Option<&str>, what: &str, model: &str, tokens: u64) -> String {
    let body = match (kind, answer) {
        (_, None) => format!("SIMULATED {what}: notes, no answer."),
        (Kind::Math, Some(a)) => format!("SIMULATED {what}.\nThe answer is \\boxed{{{a}}}"),
        (Kind::Mmlu, Some(a)) => format!("{a}\nThe answer is {a}"),
        (Kind::Humaneval, Some(a)) => format!("```python\n{}```", with_newline(a)),
    };
    format!("{body}\n{MARKER}{model} · {tokens} tokens⟩")
}

/// The tokens billed for every simulated output quoted in `text` (their markers say how many):
/// a prompt that quotes an output costs what the whole output would.
pub fn billed(text: &str) -> u64 {
    let mut total = 0;
    let mut from = 0;
    while let Some(pos) = text[from..].find(MARKER) {
        let start = from + pos + MARKER.len();
        let Some(end) = text[start..].find('⟩').map(|e| start + e) else {
            break;
        };
        total += text[start..end]
            .rsplit_once(" · ")
            .and_then(|(_, n)| n.strip_suffix(" tokens"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        from = end;
    }
    total
}

/// The answers of the simulated outputs quoted in `text`, in order.
pub fn candidates(kind: Kind, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(MARKER) {
        let seg = text[from..from + pos].trim_end();
        let found = match kind {
            Kind::Math | Kind::Mmlu => seg
                .rsplit('\n')
                .next()
                .and_then(|l| l.strip_prefix("The answer is "))
                .map(|a| {
                    a.strip_prefix("\\boxed{")
                        .and_then(|a| a.strip_suffix('}'))
                        .unwrap_or(a)
                        .to_string()
                }),
            Kind::Humaneval => seg.strip_suffix("```").and_then(|s| {
                s.rfind("```python\n")
                    .map(|b| s[b + "```python\n".len()..].to_string())
            }),
        };
        out.extend(found);
        let end = from + pos + MARKER.len();
        from = text[end..]
            .find('⟩')
            .map_or(text.len(), |e| end + e + '⟩'.len_utf8());
    }
    out
}

#[async_trait]
impl ChatModel for SimModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn price(&self) -> Price {
        self.price
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let system = req
            .messages
            .iter()
            .find(|m| m.role == Role::System)
            .map_or("", |m| m.content.as_str());
        let user: String = req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let i = self.book.find(&user).ok_or_else(|| LlmError::Backend {
            model: self.id.clone(),
            detail: format!(
                "SIMULATED model {}: the prompt holds none of the {} tasks it knows the answers to",
                self.name,
                self.book.len()
            ),
        })?;
        let gold = self.book.task(i);
        let kind = gold.kind;
        let mut rng = self.rng(req);
        let call = self.calls.get(system).cloned();
        let right = right_answer(&gold.answer);
        let wrong = |rng: &mut ChaCha8Rng| {
            let r: f64 = rng.random();
            let k = if r < 0.6 {
                0
            } else if r < 0.85 {
                1
            } else {
                2
            };
            wrong_answer(&gold.answer, &gold.task, k)
        };
        let (answer, what, scale) = match &call {
            Some(Call::Propose {
                role,
                answers: false,
            }) => (None, format!("{role} analysis"), 1.0),
            Some(Call::Combine { answers: false }) => (None, "synthesis".to_string(), 0.7),
            Some(Call::Propose { role, .. }) => {
                // Predecessors' answers quoted in the prompt (the enhanced task).
                let quoted = candidates(kind, &user);
                let p = self.spec.proposer_accuracy(kind, role);
                let p = if quoted.contains(&right) {
                    p + self.settings.uptake.clamp(0.0, 1.0) * (1.0 - p)
                } else if quoted.is_empty() {
                    p
                } else {
                    p * (1.0 - self.settings.misled.clamp(0.0, 1.0))
                };
                let a = if self.succeeds(p, &gold.task, gold.hardness, &mut rng) {
                    right.clone()
                } else {
                    wrong(&mut rng)
                };
                (Some(a), format!("{role} working"), 1.0)
            }
            None => {
                let p = self.spec.accuracy(kind);
                let a = if self.succeeds(p, &gold.task, gold.hardness, &mut rng) {
                    right.clone()
                } else {
                    wrong(&mut rng)
                };
                (Some(a), "working".to_string(), 1.0)
            }
            Some(c @ (Call::Combine { .. } | Call::Decide)) => {
                let seen = candidates(kind, &user);
                let right_count = seen.iter().filter(|c| *c == &right).count();
                let right_now = if right_count > 0 {
                    let judge = self.spec.judge(kind);
                    let share = right_count as f64 / seen.len() as f64;
                    let p = judge + self.settings.agreement.clamp(0.0, 1.0) * (1.0 - judge) * share;
                    rng.random::<f64>() < p
                } else {
                    // Solving it anew is a model's own attempt: as hard as the task is.
                    let p = self.settings.rescue * self.spec.accuracy(kind);
                    self.succeeds(p, &gold.task, gold.hardness, &mut rng)
                };
                let a = if right_now {
                    right.clone()
                } else {
                    // The most frequent wrong candidate, else a wrong answer of its own.
                    let mut counts: Vec<(&String, usize)> = Vec::new();
                    for s in seen.iter().filter(|s| *s != &right) {
                        match counts.iter_mut().find(|(x, _)| *x == s) {
                            Some((_, n)) => *n += 1,
                            None => counts.push((s, 1)),
                        }
                    }
                    counts
                        .iter()
                        .max_by_key(|(_, n)| *n)
                        .map_or_else(|| wrong(&mut rng), |(s, _)| (*s).clone())
                };
                let what = if *c == Call::Decide {
                    "decision"
                } else {
                    "synthesis"
                };
                (Some(a), what.to_string(), 0.7)
            }
        };
        let prompt_bytes: usize = req.messages.iter().map(|m| m.content.len()).sum();
        let jitter = 0.75 + 0.5 * rng.random::<f64>();
        let mut completion =
            ((self.spec.typical_completion(kind) as f64) * scale * jitter).round() as u64;
        let mut finish = FinishReason::Stop;
        if let Some(max) = req.max_tokens
            && completion > u64::from(max)
        {
            completion = u64::from(max);
            finish = FinishReason::Length;
        }
        let text = render(kind, answer.as_deref(), &what, &self.name, completion);
        // A quoted simulated output stands for the whole text its model was billed for.
        let quoted: u64 = req.messages.iter().map(|m| billed(&m.content)).sum();
        let usage = Usage {
            prompt_tokens: (prompt_bytes as u64).div_ceil(4)
                + 4 * req.messages.len() as u64
                + quoted,
            completion_tokens: completion,
        };
        Ok(ChatResponse {
            model: self.id.clone(),
            provider_model: format!("SIMULATED/{}", self.name),
            text,
            finish_reason: finish,
            usage,
            cost: self.price.cost(usage),
            latency: started.elapsed().max(Duration::from_micros(1)),
            attempts: 1,
            cached: false,
            saved: Default::default(),
        })
    }
}
