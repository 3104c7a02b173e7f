//! Runs one query over a topology: supernodes as soon as their predecessors finish, then the
//! decision node; returns the answer with a trace of every call.
//!
//! - Default: true topological order. Each node starts when all its predecessors have
//!   finished, so independent branches run in parallel; it receives every (non-skipped)
//!   predecessor's output appended to the task (method §2.1).
//! - `faithful`: the official behaviour (method §3.3, §10): nodes run one after another in
//!   configuration order, and a node receives only the predecessors that come before it in
//!   that order — edges pointing backwards are silently unused.
//!
//! - Consensus override (method §3.3, on when [`Plan::consensus`] is set): when every
//!   non-skipped supernode's extracted prediction (empty ones dropped) is the same, the first
//!   agreeing supernode's output is the answer instead of the decision node's. The decision
//!   node is still called and paid for, as in the official code. The official code compares
//!   whole texts for MATH and MMLU, so it practically never fires there; an extractor makes it
//!   mean what it says. Roles marked `answer = false` (HumanEval's analysis roles) do not vote.
//!
//! Nothing is shared between queries: every call returns its own usage and cost, and the trace
//! totals are their exact sums.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, join_all};
use hieramas_llm::{ChatModel, ChatRequest, Message, Usd};
use hieramas_supernode::{Call, Members, Output, Sampling, Slot, Supernode, SupernodeError};
use serde::{Deserialize, Serialize};

use crate::roleset::RoleSet;
use crate::{DECISION, Topology};

/// Everything one query needs.
pub struct Plan<'a> {
    pub topology: &'a Topology,
    pub roles: &'a RoleSet,
    /// The models of each role's positions, in role order.
    pub members: Vec<Members>,
    pub decision: Arc<dyn ChatModel>,
    pub sampling: Sampling,
    pub faithful: bool,
    /// The prediction extractor of the consensus override; `None` turns the override off.
    pub consensus: Option<Extractor>,
    /// Told of every node as it finishes (and of the decision call), for live progress.
    pub observer: Option<Observer>,
}

/// What [`Plan::observer`] is told when a node (or the decision node) has finished.
#[derive(Clone, Copy, Debug)]
pub struct NodeEvent<'a> {
    /// The node id (the role name, or `decision`).
    pub node: &'a str,
    /// Its calls (none for a skipped node).
    pub calls: &'a [Call],
    pub skipped: bool,
}

/// A callback for [`NodeEvent`]s; called from the tasks running the query, so keep it short.
pub type Observer = Arc<dyn Fn(NodeEvent<'_>) + Send + Sync>;

/// Extracts the prediction a grader would see from an output (`None`: no prediction).
pub type Extractor = fn(&str) -> Option<String>;

/// A query that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("the plan has {members} member sets for {roles} roles")]
    Members { members: usize, roles: usize },
    #[error("topology roles {topology:?} differ from the role set's {roles:?}")]
    Roles {
        topology: Vec<String>,
        roles: Vec<String>,
    },
    #[error(transparent)]
    Node(#[from] Arc<SupernodeError>),
    #[error("decision node: {0}")]
    Decision(hieramas_llm::LlmError),
}

/// A node of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceNode {
    pub id: String,
    pub role: String,
    pub skipped: bool,
}

/// A call of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceCall {
    pub node: String,
    /// A proposer index, `"synth"` or `"decision"`.
    pub position: Slot,
    pub model: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub usage: TraceUsage,
    /// Dollars as a JSON number (for reading); `cost_pico` is exact.
    pub cost_usd: f64,
    /// The cost in pico-dollars (10^-12 USD), exact.
    pub cost_pico: u64,
    /// Answered from the response cache (its cost is zero).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// What a cache hit saved, in pico-dollars.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub saved_pico: u64,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// What happened in one query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The final answer: the decision node's, or the agreeing supernodes' (`consensus`).
    pub answer: String,
    /// What the decision node answered.
    pub decision_answer: String,
    /// The prediction every non-skipped supernode agreed on, when the override replaced the
    /// decision node's answer.
    pub consensus: Option<String>,
    pub nodes: Vec<TraceNode>,
    /// `[from, to]` node ids, the decision node's incoming edges included.
    pub edges: Vec<[String; 2]>,
    /// In the order the calls finished.
    pub calls: Vec<TraceCall>,
    pub total_cost_usd: f64,
    /// Exactly the sum of the calls' `cost_pico`.
    pub total_cost_pico: u64,
    /// Exactly the sum of the calls' prompt and completion tokens.
    pub total_tokens: u64,
    /// Calls answered from the response cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_calls: usize,
    /// What those hits saved (their recorded cost, counted in `total_cost_pico`), in
    /// pico-dollars: what was paid is `total_cost_pico - saved_pico`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub saved_pico: u64,
    pub faithful: bool,
}

impl Trace {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

type NodeFuture<'a> = Shared<BoxFuture<'a, Result<Arc<Output>, Arc<SupernodeError>>>>;

/// Appends the predecessors' outputs to the task (method §2.1).
pub fn enhanced_task(task: &str, inputs: &[(&str, &str)]) -> String {
    if inputs.is_empty() {
        return task.to_string();
    }
    let mut s = format!("{task}\n\nOther agents' outputs follow.");
    for (role, text) in inputs {
        s.push_str(&format!("\n\nAgent {role}:\n{}", text.trim()));
    }
    s
}

/// The decision node's input: the task, the intro, one block per non-skipped node in role
/// order, the closing line (method §2.1).
pub fn decision_input(task: &str, roles: &RoleSet, outputs: &[(&str, &str)]) -> String {
    let mut s = format!("{task}\n\n{}", roles.decision_input.intro);
    for (role, text) in outputs {
        s.push_str(&format!("\n\n{role}:\n{}", text.trim()));
    }
    s.push_str(&format!("\n\n{}", roles.decision_input.closing));
    s
}

/// Runs `task` through `plan`.
pub async fn run_query(plan: &Plan<'_>, task: &str) -> Result<Trace, ScheduleError> {
    let n = plan.topology.len();
    if plan.members.len() != n {
        return Err(ScheduleError::Members {
            members: plan.members.len(),
            roles: n,
        });
    }
    if plan.topology.roles() != plan.roles.names().as_slice() {
        return Err(ScheduleError::Roles {
            topology: plan.topology.roles().to_vec(),
            roles: plan.roles.names(),
        });
    }
    let clock = Instant::now();
    let prompts: Vec<_> = plan.roles.roles.iter().map(|r| r.prompts()).collect();
    let names = plan.topology.roles();
    let node_at = |j: usize| Supernode {
        id: &names[j],
        role: &prompts[j],
        members: &plan.members[j],
        sampling: plan.sampling,
    };
    let outputs: Vec<Arc<Output>> = if plan.faithful {
        // Config order; only earlier predecessors are seen.
        let mut done: Vec<Arc<Output>> = Vec::with_capacity(n);
        for j in 0..n {
            let inputs: Vec<(&str, &str)> = plan
                .topology
                .predecessors(j)
                .into_iter()
                .filter(|&i| i < j)
                .filter_map(|i| Some((names[i].as_str(), done[i].text.as_deref()?)))
                .collect();
            let out = node_at(j)
                .run(&enhanced_task(task, &inputs), clock)
                .await
                .map_err(Arc::new)?;
            observe(plan, &names[j], &out);
            done.push(Arc::new(out));
        }
        done
    } else {
        let mut futs: Vec<Option<NodeFuture<'_>>> = vec![None; n];
        for j in plan.topology.topological_order() {
            let preds: Vec<(usize, NodeFuture<'_>)> = plan
                .topology
                .predecessors(j)
                .into_iter()
                .filter_map(|i| Some((i, futs[i].clone()?)))
                .collect();
            let node = node_at(j);
            let fut = async move {
                let mut inputs_owned = Vec::with_capacity(preds.len());
                for (i, f) in preds {
                    inputs_owned.push((i, f.await?));
                }
                let inputs: Vec<(&str, &str)> = inputs_owned
                    .iter()
                    .filter_map(|(i, o)| Some((names[*i].as_str(), o.text.as_deref()?)))
                    .collect();
                let out = node
                    .run(&enhanced_task(task, &inputs), clock)
                    .await
                    .map_err(Arc::new)?;
                observe(plan, node.id, &out);
                Ok(Arc::new(out))
            }
            .boxed()
            .shared();
            futs[j] = Some(fut);
        }
        // `futs` is indexed by role (filled in topological order): the outputs come back in
        // role order.
        join_all(futs.into_iter().flatten())
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
    };

    let finished: Vec<(&str, &str)> = outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((names[i].as_str(), o.text.as_deref()?)))
        .collect();
    let input = decision_input(task, plan.roles, &finished);
    let mut messages = vec![Message::user(
        plan.roles.decision.user.replace("{task}", &input),
    )];
    if !plan.roles.decision.system.is_empty() {
        messages.insert(0, Message::system(plan.roles.decision.system.clone()));
    }
    let mut req = ChatRequest::new(messages).max_tokens(plan.sampling.max_tokens);
    req.temperature = plan.sampling.temperature;
    req.seed = plan.sampling.seed;
    let started_ms = clock.elapsed().as_millis() as u64;
    let r = plan
        .decision
        .chat(&req)
        .await
        .map_err(ScheduleError::Decision)?;
    let decision_call = Call {
        node: DECISION.into(),
        role: DECISION.into(),
        position: Slot::Decision,
        model: r.model.clone(),
        started_ms,
        finished_ms: clock.elapsed().as_millis() as u64,
        usage: r.usage,
        cost: r.cost,
        cached: r.cached,
        saved: r.saved,
        text: r.text.clone(),
    };
    if let Some(obs) = &plan.observer {
        obs(NodeEvent {
            node: DECISION,
            calls: std::slice::from_ref(&decision_call),
            skipped: false,
        });
    }

    // Only roles that give answers vote (HumanEval's analysis roles do not).
    let voters = outputs
        .iter()
        .zip(&plan.roles.roles)
        .filter(|(_, role)| role.answer)
        .filter_map(|(o, _)| o.text.as_deref());
    let agreed = plan
        .consensus
        .and_then(|extract| consensus(extract, voters));
    let mut calls: Vec<&Call> = outputs.iter().flat_map(|o| o.calls.iter()).collect();
    calls.push(&decision_call);
    calls.sort_by_key(|c| (c.finished_ms, c.started_ms));
    let total_cost: Usd = calls.iter().map(|c| c.cost).sum();
    let saved: Usd = calls.iter().map(|c| c.saved).sum();
    let cached_calls = calls.iter().filter(|c| c.cached).count();
    let total_tokens = calls.iter().map(|c| c.usage.total()).sum();
    Ok(Trace {
        answer: agreed
            .as_ref()
            .map_or_else(|| r.text.clone(), |(_, text)| text.to_string()),
        decision_answer: r.text,
        consensus: agreed.map(|(p, _)| p),
        nodes: names
            .iter()
            .zip(&outputs)
            .map(|(name, o)| TraceNode {
                id: name.clone(),
                role: name.clone(),
                skipped: o.text.is_none(),
            })
            .collect(),
        edges: plan.topology.edges_with_decision(),
        calls: calls
            .into_iter()
            .map(|c| TraceCall {
                node: c.node.clone(),
                position: c.position,
                model: c.model.clone(),
                started_ms: c.started_ms,
                finished_ms: c.finished_ms,
                usage: TraceUsage {
                    prompt_tokens: c.usage.prompt_tokens,
                    completion_tokens: c.usage.completion_tokens,
                },
                cost_usd: c.cost.as_f64(),
                cost_pico: c.cost.pico(),
                cached: c.cached,
                saved_pico: c.saved.pico(),
                text: c.text.clone(),
            })
            .collect(),
        total_cost_usd: total_cost.as_f64(),
        total_cost_pico: total_cost.pico(),
        total_tokens,
        cached_calls,
        saved_pico: saved.pico(),
        faithful: plan.faithful,
    })
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn observe(plan: &Plan<'_>, node: &str, out: &Output) {
    if let Some(obs) = &plan.observer {
        obs(NodeEvent {
            node,
            calls: &out.calls,
            skipped: out.text.is_none(),
        });
    }
}

/// The prediction all `outputs` agree on (those without one left out) and the first output
/// that made it, or `None` when there is none or they differ.
pub fn consensus<'t>(
    extract: Extractor,
    outputs: impl IntoIterator<Item = &'t str>,
) -> Option<(String, &'t str)> {
    let mut agreed: Option<(String, &'t str)> = None;
    for text in outputs {
        let Some(p) = extract(text).filter(|p| !p.trim().is_empty()) else {
            continue;
        };
        match &agreed {
            None => agreed = Some((p, text)),
            Some((q, _)) if *q == p => {}
            Some(_) => return None,
        }
    }
    agreed
}
