//! A HieraMAS supernode (method §3): `W` proposer LLMs answer the task concurrently, then one
//! synthesiser reads their numbered proposals and writes the node's output.
//!
//! - A `None` proposer is a `skip`ped position; a `None` synthesiser skips the whole node (no
//!   calls, no output, method §3.1).
//! - `W = 1` degenerates to a single agent: the one proposer's answer is the output, with no
//!   synthesis call.
//! - Every call is returned as a [`Call`]: node, role, position, model, start and end since the
//!   query began, usage, exact cost, text. Nothing is counted globally.
//!
//! Prompts are data ([`RolePrompts`], usually read from a role-set TOML); the models are any
//! [`ChatModel`] — local, HTTP, cached, budgeted — in any mix.
//!
//! ```
//! use hieramas_supernode::{RolePrompts, fill};
//!
//! let role = RolePrompts {
//!     name: "Math Solver".into(),
//!     proposer_system: "You solve maths problems step by step.".into(),
//!     proposer_user: "Q: {task}".into(),
//!     synth_system: "You combine solutions into the most reliable one.".into(),
//!     synth_user: "{task}\n\n{count} {role}s answered:\n\n{proposals}\n\nGive the best answer.".into(),
//! };
//! let user = fill(&role.synth_user, "What is 7*8?", &role.name, &["56".into(), "54".into()]);
//! assert!(user.contains("2 Math Solvers answered"));
//! assert!(user.contains("Solution 1:\n56\n\nSolution 2:\n54"));
//! ```

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use hieramas_llm::{ChatModel, ChatRequest, LlmError, Message, Usage, Usd};
use serde::{Deserialize, Serialize};

/// How one role's proposers and synthesiser are prompted. Templates take `{task}` (the
/// enhanced task); the synthesiser's also `{role}`, `{count}` and `{proposals}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePrompts {
    pub name: String,
    pub proposer_system: String,
    pub proposer_user: String,
    pub synth_system: String,
    pub synth_user: String,
}

/// Sampling for every call of a node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub max_tokens: u32,
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: None,
            max_tokens: 1024,
            seed: None,
        }
    }
}

/// The models at a node's positions.
#[derive(Clone, Default)]
pub struct Members {
    /// Position `i` < W; `None` = skipped.
    pub proposers: Vec<Option<Arc<dyn ChatModel>>>,
    /// Position W; `None` skips the node.
    pub synthesizer: Option<Arc<dyn ChatModel>>,
}

impl Members {
    /// The same model at every position.
    pub fn fixed(model: Arc<dyn ChatModel>, width: usize) -> Members {
        Members {
            proposers: vec![Some(model.clone()); width],
            synthesizer: Some(model),
        }
    }
}

/// Which position made a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Proposer(usize),
    Synth,
    /// The decision node (used by the scheduler).
    Decision,
}

impl Serialize for Slot {
    /// A proposer index, or `"synth"` / `"decision"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Proposer(i) => s.serialize_u64(*i as u64),
            Slot::Synth => s.serialize_str("synth"),
            Slot::Decision => s.serialize_str("decision"),
        }
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Index(usize),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Index(i) => Ok(Slot::Proposer(i)),
            Raw::Name(n) if n == "synth" => Ok(Slot::Synth),
            Raw::Name(n) if n == "decision" => Ok(Slot::Decision),
            Raw::Name(n) => Err(serde::de::Error::custom(format!(
                "position {n:?} is neither an index, \"synth\" nor \"decision\""
            ))),
        }
    }
}

/// One LLM call of a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub node: String,
    pub role: String,
    pub position: Slot,
    pub model: String,
    /// Milliseconds since the query started.
    pub started_ms: u64,
    pub finished_ms: u64,
    pub usage: Usage,
    /// Exact, priced from this call's own usage.
    pub cost: Usd,
    pub cached: bool,
    /// What a cache hit saved (zero for a live call).
    #[serde(default)]
    pub saved: Usd,
    pub text: String,
}

/// What a node produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// `None` when the node was skipped.
    pub text: Option<String>,
    pub calls: Vec<Call>,
}

/// A node that could not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum SupernodeError {
    #[error("node {node}: every proposer position is skipped")]
    NoProposers { node: String },
    #[error("node {node} ({role}), position {position:?}: {source}")]
    Call {
        node: String,
        role: String,
        position: Slot,
        source: LlmError,
    },
}

impl SupernodeError {
    /// The LLM error behind this one, if any.
    pub fn llm(&self) -> Option<&LlmError> {
        match self {
            SupernodeError::Call { source, .. } => Some(source),
            SupernodeError::NoProposers { .. } => None,
        }
    }
}

/// Fills a template in one pass: `{task}`, `{role}`, `{count}` and `{proposals}` (numbered
/// `Solution i:` blocks separated by blank lines). Braces in the substituted texts are never
/// read as placeholders; unknown `{...}` stays as written.
pub fn fill(template: &str, task: &str, role: &str, proposals: &[String]) -> String {
    let numbered: Vec<String> = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| format!("Solution {}:\n{}", i + 1, p.trim()))
        .collect();
    let count = proposals.len().to_string();
    let numbered = numbered.join("\n\n");
    let mut out = String::with_capacity(template.len() + task.len() + numbered.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let value = [
            ("{task}", task),
            ("{role}", role),
            ("{count}", count.as_str()),
            ("{proposals}", numbered.as_str()),
        ]
        .into_iter()
        .find(|(k, _)| after.starts_with(k));
        match value {
            Some((k, v)) => {
                out.push_str(v);
                rest = &after[k.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One supernode of one query.
pub struct Supernode<'a> {
    /// The node id in traces (usually the role name).
    pub id: &'a str,
    pub role: &'a RolePrompts,
    pub members: &'a Members,
    pub sampling: Sampling,
}

impl Supernode<'_> {
    /// Runs the node on `task` (the enhanced task); call times are measured from `clock`.
    pub async fn run(&self, task: &str, clock: Instant) -> Result<Output, SupernodeError> {
        let Some(synth) = &self.members.synthesizer else {
            return Ok(Output {
                text: None,
                calls: Vec::new(),
            });
        };
        let active: Vec<(usize, &Arc<dyn ChatModel>)> = self
            .members
            .proposers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
            .collect();
        if active.is_empty() {
            return Err(SupernodeError::NoProposers {
                node: self.id.to_string(),
            });
        }
        let user = fill(&self.role.proposer_user, task, &self.role.name, &[]);
        let proposals = join_all(active.iter().map(|(i, m)| {
            self.call(
                m.as_ref(),
                Slot::Proposer(*i),
                &self.role.proposer_system,
                &user,
                clock,
            )
        }))
        .await;
        let mut calls = Vec::with_capacity(active.len() + 1);
        for p in proposals {
            calls.push(p?);
        }
        if self.members.proposers.len() == 1 {
            let text = calls[0].text.clone();
            return Ok(Output {
                text: Some(text),
                calls,
            });
        }
        let texts: Vec<String> = calls.iter().map(|c| c.text.clone()).collect();
        let user = fill(&self.role.synth_user, task, &self.role.name, &texts);
        let c = self
            .call(
                synth.as_ref(),
                Slot::Synth,
                &self.role.synth_system,
                &user,
                clock,
            )
            .await?;
        let text = c.text.clone();
        calls.push(c);
        Ok(Output {
            text: Some(text),
            calls,
        })
    }

    async fn call(
        &self,
        model: &dyn ChatModel,
        position: Slot,
        system: &str,
        user: &str,
        clock: Instant,
    ) -> Result<Call, SupernodeError> {
        let mut messages = Vec::with_capacity(2);
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(user));
        let mut req = ChatRequest::new(messages).max_tokens(self.sampling.max_tokens);
        req.temperature = self.sampling.temperature;
        req.seed = self.sampling.seed;
        let started_ms = clock.elapsed().as_millis() as u64;
        let r = model
            .chat(&req)
            .await
            .map_err(|source| SupernodeError::Call {
                node: self.id.to_string(),
                role: self.role.name.clone(),
                position,
                source,
            })?;
        Ok(Call {
            node: self.id.to_string(),
            role: self.role.name.clone(),
            position,
            model: r.model,
            started_ms,
            finished_ms: clock.elapsed().as_millis() as u64,
            usage: r.usage,
            cost: r.cost,
            cached: r.cached,
            saved: r.saved,
            text: r.text,
        })
    }
}
