//! One multi-agent system, ready to answer: the benchmark's role set, a topology (fixed) or the
//! trained HieraMAS planner (a topology and models chosen per query), the models at every
//! position, the decision node, sampling, the consensus override and the official switches.

use std::sync::Arc;

use hieramas_bench::MasSetup;
use hieramas_bench::query::Query;
use hieramas_llm::ChatModel;
use hieramas_supernode::{Members, Sampling};
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Extractor, run_query};
pub use hieramas_topology::schedule::{NodeEvent, Observer, Trace};
use hieramas_topology::{Topology, generate, shapes};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, bail};
use crate::models::Models;
use crate::official::Official;
use crate::stage2::Hieramas;

/// What defines a fixed multi-agent system besides its benchmark and pool (`hieramas run`,
/// `hieramas eval --method mas`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasConfig {
    /// full, chain, star, empty, random (seeded, density 0.3-0.7), or a .json/.dot file.
    pub topology: String,
    /// round-robin (pool models in turn over every position), random (seeded) or fixed:MODEL.
    pub assign: String,
    /// The decision node's model (default: the pool's first).
    pub decision: Option<String>,
    /// The official behaviours restored (method §10): `config_order` runs the supernodes in
    /// config order with backward edges unused, `whole_text_consensus` compares whole texts.
    #[serde(skip_serializing_if = "Official::is_fixed")]
    pub official: Official,
    /// Most tokens per call (default 256).
    pub max_tokens: Option<u32>,
    /// The consensus override (method §3.3): when every supernode's extracted prediction
    /// agrees, it is the answer, whatever the decision node says. Off in free-form answers.
    pub consensus: bool,
    /// The role set: a TOML file or a built-in name (math, mmlu, humaneval-plus, general);
    /// default: the benchmark's, or `general` for free-form answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    /// Proposers per supernode instead of the role set's W. 1 is one call per role, no
    /// synthesis: the paper's in-framework baselines (method §7.1), whose one call is the
    /// role's persona with the answer format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
}

/// What a system's final answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A benchmark's answer format ("The answer is N", a letter, a program), which the
    /// consensus override can extract.
    Benchmark(Benchmark),
    /// Whatever the decision node writes; nothing is extracted.
    FreeForm,
}

impl Answer {
    /// The benchmark, unless free-form.
    pub fn benchmark(self) -> Option<Benchmark> {
        match self {
            Answer::Benchmark(b) => Some(b),
            Answer::FreeForm => None,
        }
    }

    /// The built-in role set of this answer format.
    pub fn default_roles(self) -> &'static str {
        match self {
            Answer::Benchmark(b) => b.name(),
            Answer::FreeForm => "general",
        }
    }
}

/// A role set by file path, or by built-in name (`math`, `mmlu`, `humaneval-plus`,
/// `general`); `default` (a built-in name) when `spec` is `None`.
pub fn role_set(spec: Option<&std::path::Path>, default: &str) -> Result<RoleSet> {
    let Some(path) = spec else {
        return Ok(RoleSet::builtin(default)?);
    };
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("role set {}", path.display()))?;
        return RoleSet::from_toml(&text).with_context(|| format!("role set {}", path.display()));
    }
    match path.to_str().and_then(RoleSet::builtin_text) {
        Some(text) => Ok(RoleSet::from_toml(text)?),
        None => bail!(
            "role set {}: no such file, nor a built-in name (math, mmlu, humaneval-plus, general)",
            path.display()
        ),
    }
}

/// The consensus override's extractor for `benchmark` (method §3.3): the graded prediction,
/// or with `official.whole_text_consensus` the whole text for MATH and MMLU (the official
/// code's, which practically never agrees; HumanEval+ compares code blocks in both).
pub fn consensus_extractor(benchmark: Benchmark, official: Official) -> Extractor {
    if official.whole_text_consensus && benchmark != Benchmark::HumanevalPlus {
        whole_text
    } else {
        hieramas_bench::prediction_extractor(benchmark)
    }
}

fn whole_text(text: &str) -> Option<String> {
    Some(text.to_string())
}

impl Default for MasConfig {
    fn default() -> Self {
        MasConfig {
            topology: "full".into(),
            assign: "round-robin".into(),
            decision: None,
            official: Official::default(),
            max_tokens: None,
            consensus: true,
            roles: None,
            width: None,
        }
    }
}

impl MasConfig {
    /// Most tokens per call of a multi-agent system.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(256)
    }
}

/// The model id at every position: `[role][0..W]` proposers, then the synthesiser.
pub fn assignment(
    assign: &str,
    ids: &[String],
    roles: usize,
    width: usize,
    seed: u64,
) -> Result<Vec<Vec<String>>> {
    if ids.is_empty() {
        bail!("the pool has no selectable models");
    }
    let slots = width + 1;
    Ok(match assign {
        "round-robin" => (0..roles)
            .map(|r| {
                (0..slots)
                    .map(|p| ids[(r * slots + p) % ids.len()].clone())
                    .collect()
            })
            .collect(),
        "random" => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..roles)
                .map(|_| {
                    (0..slots)
                        .map(|_| ids[rng.random_range(0..ids.len())].clone())
                        .collect()
                })
                .collect()
        }
        other => match other.strip_prefix("fixed:") {
            Some(m) if ids.iter().any(|i| i == m) => vec![vec![m.to_string(); slots]; roles],
            Some(m) => bail!("assign fixed:{m}: not in the pool ({})", ids.join(", ")),
            None => bail!("assign {other:?}: use round-robin, random or fixed:MODEL"),
        },
    })
}

/// A topology over `names` by shape name, or from a .json/.dot file.
pub fn topology(spec: &str, names: Vec<String>, seed: u64) -> Result<Topology> {
    Ok(match spec {
        "full" => shapes::full(names)?,
        "chain" => shapes::chain(names)?,
        "star" => shapes::star(names)?,
        "empty" => shapes::empty(names)?,
        "random" => generate::random_dag(&names, 0.3, 0.7, seed)?,
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("topology {path}: not a shape (full, chain, star, empty, random) nor a readable file"))?;
            let t = if path.ends_with(".dot") || path.ends_with(".gv") {
                Topology::from_dot(&text)
            } else {
                Topology::from_json(&text)
            }
            .with_context(|| path.to_string())?;
            if t.roles() != names.as_slice() {
                bail!(
                    "{path}: its roles {:?} are not the role set's {:?} (same names, same order)",
                    t.roles(),
                    names
                );
            }
            t
        }
    })
}

/// How a system picks its topology and models.
pub enum Choice {
    /// The same topology and models for every query.
    Fixed(Box<MasSetup>),
    /// HieraMAS: the stage-2 classifier picks a topology and the stage-1 selector the models,
    /// per query (method §6.4).
    Learned(Box<Hieramas>),
}

/// What [`System::answer_with`] gives back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The final answer (trimmed).
    pub answer: String,
    /// Every call, the nodes and edges, tokens and exact cost.
    pub trace: Trace,
    /// A learned system's choice of topology and models for this query.
    pub plan: Option<crate::records::PlanRecord>,
    /// What a grader reads as the answer (MATH: the result, normalised; MMLU: the letter);
    /// `None` for free-form answers, programs, or when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
}

/// A multi-agent system ready to answer queries.
pub struct System {
    pub answer: Answer,
    pub roles: RoleSet,
    pub choice: Choice,
    pub decision: Arc<dyn ChatModel>,
    pub sampling: Sampling,
    /// The official execution: config order, backward edges unused.
    pub faithful: bool,
    /// The consensus override's extractor (method §3.3); `None`: off.
    pub consensus: Option<Extractor>,
    /// Everything that decides the answers (prompts, topology, who sits where, what each model
    /// is), for configuration hashes and reports.
    pub description: serde_json::Value,
}

impl System {
    /// The role set (`cfg.roles`, default the answer format's) on `cfg.topology`, pool models
    /// placed by `cfg.assign`, the decision model; `seed` seeds random topologies, assignments
    /// and sampling.
    pub fn fixed(
        answer: Answer,
        cfg: &MasConfig,
        models: &mut Models,
        seed: u64,
        temperature: f32,
    ) -> Result<System> {
        let mut roles = role_set(
            cfg.roles.as_deref().map(std::path::Path::new),
            answer.default_roles(),
        )?;
        match cfg.width {
            Some(0) => bail!("a supernode needs at least one proposer (width 0)"),
            Some(w) => roles.width = w,
            None => {}
        }
        let topology = topology(&cfg.topology, roles.names(), seed)?;
        let ids = models.ids();
        let slots = assignment(&cfg.assign, &ids, roles.roles.len(), roles.width, seed)?;
        let mut members = Vec::with_capacity(slots.len());
        for role_slots in &slots {
            let (synth, proposers) = role_slots.split_last().context("empty assignment")?;
            members.push(Members {
                proposers: proposers
                    .iter()
                    .map(|id| models.get(id).map(Some))
                    .collect::<Result<_>>()?,
                synthesizer: Some(models.get(synth)?),
            });
        }
        let decision_id = cfg.decision.clone().unwrap_or_else(|| ids[0].clone());
        // Everything that decides the answers: prompts, topology, who sits where, and what each
        // model id is (provider, model, price), so an edited role set or a repriced pool is a
        // new configuration.
        let specs = models.specs(slots.iter().flatten().chain([&decision_id]))?;
        let description = serde_json::json!({
            "benchmark": answer.benchmark().map_or("free-form", |b| b.name()),
            "roles": serde_json::to_value(&roles)?,
            "topology": serde_json::from_str::<serde_json::Value>(&topology.to_json())?,
            "assignment": slots,
            "decision": decision_id,
            "models": specs,
            "faithful": cfg.official.config_order,
            "max_tokens": cfg.max_tokens(),
            "consensus": cfg.consensus,
        });
        let mut description = description;
        if cfg.official.whole_text_consensus {
            description["whole_text_consensus"] = true.into();
        }
        let consensus = answer
            .benchmark()
            .filter(|_| cfg.consensus)
            .map(|b| consensus_extractor(b, cfg.official));
        let sampling = Sampling {
            temperature: Some(temperature),
            max_tokens: cfg.max_tokens(),
            seed: Some(seed),
        };
        let decision = models.get(&decision_id)?;
        Ok(System {
            answer,
            decision: decision.clone(),
            consensus,
            choice: Choice::Fixed(Box::new(MasSetup {
                topology,
                roles: roles.clone(),
                members,
                decision,
                sampling,
                faithful: cfg.official.config_order,
                consensus,
            })),
            roles,
            sampling,
            faithful: cfg.official.config_order,
            description,
        })
    }

    /// HieraMAS with its trained planner; `description` as [`System::description`].
    pub fn learned(planner: Hieramas, description: serde_json::Value) -> System {
        let stage = &planner.system.stage;
        System {
            answer: Answer::Benchmark(stage.benchmark),
            roles: stage.roles.clone(),
            decision: stage.decision.clone(),
            sampling: stage.sampling,
            faithful: stage.official.config_order,
            consensus: Some(consensus_extractor(stage.benchmark, stage.official)),
            description,
            choice: Choice::Learned(Box::new(planner)),
        }
    }

    /// The setup of a fixed system for the benchmark runner (none for a learned one: its
    /// setup is chosen per query by its [`Hieramas`] planner).
    pub fn setup(&self) -> Option<MasSetup> {
        match &self.choice {
            Choice::Fixed(setup) => Some(setup.as_ref().clone()),
            Choice::Learned(_) => None,
        }
    }

    /// The topology a fixed system runs.
    pub fn topology(&self) -> Option<&Topology> {
        match &self.choice {
            Choice::Fixed(setup) => Some(&setup.topology),
            Choice::Learned(_) => None,
        }
    }

    /// Answers `query` (the task as the models see it): the final answer and the trace of every
    /// call. A learned system chooses its topology and models first; the trace keeps nothing
    /// of that choice (see [`Hieramas::choose`]).
    pub async fn answer(&self, query: &str) -> Result<(String, Trace)> {
        let r = self.answer_with(query, None).await?;
        Ok((r.answer, r.trace))
    }

    /// [`System::answer`], telling `observer` of every node as it finishes; the reply also
    /// keeps a learned system's choice.
    pub async fn answer_with(&self, query: &str, observer: Option<Observer>) -> Result<Reply> {
        let chosen;
        let (setup, plan) = match &self.choice {
            Choice::Fixed(setup) => (setup.as_ref(), None),
            Choice::Learned(h) => {
                let q = Query {
                    id: query_id(query),
                    task: query.to_string(),
                    // Free-form: no gold. Nothing on this path reads it.
                    gold: hieramas_bench::query::Gold::Math(String::new()),
                };
                let (setup, plan) = h.choose(&q).await?;
                chosen = setup;
                (&chosen, Some(plan))
            }
        };
        let mut p = setup.plan();
        p.observer = observer;
        let trace = run_query(&p, query).await?;
        let prediction = match self.answer {
            Answer::Benchmark(b @ (Benchmark::Math | Benchmark::Mmlu)) => {
                hieramas_bench::prediction_extractor(b)(&trace.answer)
            }
            _ => None,
        };
        Ok(Reply {
            answer: trace.answer.trim().to_string(),
            trace,
            plan,
            prediction,
        })
    }
}

/// A free-form query's id: the sha256 of its text (what seeds a learned system's candidates).
fn query_id(query: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(query.as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_consensus_compares_whole_texts_except_for_code() {
        let a = "Adding them gives 56.\nThe answer is 56";
        let b = "7*8 is 56.\nThe answer is 56";
        let agree = |benchmark, official| {
            hieramas_topology::schedule::consensus(consensus_extractor(benchmark, official), [a, b])
                .map(|(p, _)| p)
        };
        let whole: Official = "whole-text-consensus".parse().expect("a switch");
        assert_eq!(
            agree(Benchmark::Math, Official::default()).as_deref(),
            Some("56")
        );
        assert_eq!(agree(Benchmark::Math, whole), None);
        assert_eq!(agree(Benchmark::Mmlu, whole), None);
        // HumanEval+ compares the extracted programs in both modes.
        let (p, q) = (
            "Here:\n```python\ndef f():\n    return 1\n```",
            "Sure.\n```python\ndef f():\n    return 1\n```",
        );
        for o in [Official::default(), whole] {
            let e = consensus_extractor(Benchmark::HumanevalPlus, o);
            assert!(hieramas_topology::schedule::consensus(e, [p, q]).is_some());
        }
    }
}
