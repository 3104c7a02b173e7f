//! Multi-model reference methods (method §7): MoA-style layered propose–aggregate and
//! multi-agent debate. Both start from the benchmark's `cot` prompt, so answers keep the
//! format the grader reads; their settings and follow-up templates are data (`[moa]` and
//! `[debate]` in `prompts.toml`).
//!
//! - **MoA** (Wang et al., 2024, "Mixture-of-Agents"): `layers` layers of `width` proposers;
//!   layer 1 answers the task, every later layer answers it again with the previous layer's
//!   answers in view, and one aggregator writes the final answer from the last layer's.
//! - **Debate** (Du et al., 2023; the official baseline: 3 agents × 2 rounds, T = 0.7): every
//!   agent answers; in each later round every agent sees all answers of the rounds before and
//!   answers again. The last round's answers are majority-voted by the grader.
//!
//! Models take the positions in turn (position `i` gets model `i mod n`); every call is kept
//! with its usage and exact cost.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use hieramas_llm::{ChatModel, ChatRequest, ChatResponse, LlmError, Message};
use serde::{Deserialize, Serialize};

use crate::prompts::Prompt;

/// MoA settings (`[moa]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoaSettings {
    pub layers: usize,
    pub width: usize,
    pub temperature: f32,
    /// Later layers and the aggregator: `{task}` (the rendered `cot` prompt) and
    /// `{responses}` (the previous layer's answers, numbered).
    pub aggregate: String,
}

/// Debate settings (`[debate]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebateSettings {
    pub agents: usize,
    pub rounds: usize,
    pub temperature: f32,
    /// Later rounds: `{task}` and `{responses}` (every earlier answer, by round and agent).
    pub refine: String,
}

/// Which reference method, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Ensemble {
    Moa(MoaSettings),
    Debate(DebateSettings),
}

/// A reference method ready to run: its settings, the benchmark's `cot` prompt, the models
/// taking positions in turn, and (MoA) the aggregator.
pub struct EnsembleSetup {
    pub ensemble: Ensemble,
    pub prompt: Prompt,
    pub models: Vec<Arc<dyn ChatModel>>,
    pub aggregator: Arc<dyn ChatModel>,
}

/// One call of a reference method.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnsembleCall {
    /// MoA layer or debate round, from 1; the MoA aggregator is layer `layers + 1`.
    pub step: usize,
    pub position: usize,
    pub model: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_pico: u64,
    /// Answered from a response cache (its cost is zero), and what that saved.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub saved_pico: u64,
    pub text: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a reference method answered: the texts to grade (MoA: the aggregator's; debate: the
/// last round's, voted), and every call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnsembleTrace {
    pub answers: Vec<String>,
    pub calls: Vec<EnsembleCall>,
}

impl EnsembleSetup {
    /// Calls per query.
    pub fn calls_per_query(&self) -> usize {
        match &self.ensemble {
            Ensemble::Moa(s) => s.layers * s.width + 1,
            Ensemble::Debate(s) => s.agents * s.rounds,
        }
    }

    /// Runs one task.
    pub async fn run(&self, task: &str) -> Result<EnsembleTrace, LlmError> {
        if self.models.is_empty() {
            return Err(LlmError::InvalidRequest {
                model: "ensemble".into(),
                detail: "no models".into(),
            });
        }
        let clock = Instant::now();
        let first = self.prompt.user.replace("{task}", task);
        let mut calls = Vec::new();
        let answers =
            match &self.ensemble {
                Ensemble::Moa(s) => {
                    let mut previous: Vec<String> = Vec::new();
                    for layer in 1..=s.layers {
                        let user = if layer == 1 {
                            first.clone()
                        } else {
                            follow_up(&s.aggregate, &first, &numbered(&previous))
                        };
                        let models = (0..s.width).map(|i| self.model_at(i));
                        previous = self
                            .step(layer, &user, s.temperature, models, clock, &mut calls)
                            .await?;
                    }
                    let user = if previous.is_empty() {
                        first.clone()
                    } else {
                        follow_up(&s.aggregate, &first, &numbered(&previous))
                    };
                    let models = std::iter::once(self.aggregator.clone());
                    self.step(
                        s.layers + 1,
                        &user,
                        s.temperature,
                        models,
                        clock,
                        &mut calls,
                    )
                    .await?
                }
                Ensemble::Debate(s) => {
                    let mut history: Vec<String> = Vec::new();
                    let mut last = Vec::new();
                    for round in 1..=s.rounds.max(1) {
                        let user = if round == 1 {
                            first.clone()
                        } else {
                            follow_up(&s.refine, &first, &history.join("\n\n"))
                        };
                        let models = (0..s.agents).map(|i| self.model_at(i));
                        last = self
                            .step(round, &user, s.temperature, models, clock, &mut calls)
                            .await?;
                        history.extend(last.iter().enumerate().map(|(i, t)| {
                            format!("Round {round}, agent {}:\n{}", i + 1, t.trim())
                        }));
                    }
                    last
                }
            };
        Ok(EnsembleTrace { answers, calls })
    }

    fn model_at(&self, i: usize) -> Arc<dyn ChatModel> {
        self.models[i % self.models.len()].clone()
    }

    /// One layer or round: the same user message to every model at once, each with its own
    /// seed (its position) so equal models still sample differently.
    async fn step(
        &self,
        step: usize,
        user: &str,
        temperature: f32,
        models: impl Iterator<Item = Arc<dyn ChatModel>>,
        clock: Instant,
        calls: &mut Vec<EnsembleCall>,
    ) -> Result<Vec<String>, LlmError> {
        let mut messages = Vec::with_capacity(2);
        if !self.prompt.system.is_empty() {
            messages.push(Message::system(self.prompt.system.clone()));
        }
        messages.push(Message::user(user.to_string()));
        let base = ChatRequest::new(messages)
            .temperature(temperature)
            .max_tokens(self.prompt.max_tokens);
        let runs = models.enumerate().map(|(i, m)| {
            let req = base.clone().seed((step * 1000 + i) as u64);
            async move {
                let started_ms = clock.elapsed().as_millis() as u64;
                let r: Result<ChatResponse, LlmError> = m.chat(&req).await;
                (i, started_ms, clock.elapsed().as_millis() as u64, r)
            }
        });
        let mut texts = Vec::new();
        for (position, started_ms, finished_ms, r) in join_all(runs).await {
            let r = r?;
            calls.push(EnsembleCall {
                step,
                position,
                model: r.model.clone(),
                started_ms,
                finished_ms,
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                cost_pico: r.cost.pico(),
                cached: r.cached,
                saved_pico: r.saved.pico(),
                text: r.text.clone(),
            });
            texts.push(r.text);
        }
        Ok(texts)
    }
}

fn follow_up(template: &str, task: &str, responses: &str) -> String {
    // One pass, so a task containing "{responses}" is not expanded.
    template
        .split("{task}")
        .map(|part| part.replace("{responses}", responses))
        .collect::<Vec<_>>()
        .join(task)
}

fn numbered(answers: &[String]) -> String {
    answers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}. {}", i + 1, a.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_fills_once() {
        assert_eq!(
            follow_up("T={task} R={responses}", "a {responses} b", "x"),
            "T=a {responses} b R=x"
        );
        assert_eq!(numbered(&["p ".into(), " q".into()]), "1. p\n\n2. q");
    }
}
