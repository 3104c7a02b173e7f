//! The baselines' prompts and sampling settings: data in `prompts.toml`, read at start.

use std::collections::BTreeMap;

use hieramas_llm::{ChatRequest, Message};
use hieramas_tasks::splits::Benchmark;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::reference::{DebateSettings, Ensemble, MoaSettings};

/// The prompts shipped with this crate.
pub const DEFAULT_PROMPTS: &str = include_str!("prompts.toml");

/// A single-model baseline (method §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// One call asking for the answer only.
    Single,
    /// One call asking for step-by-step reasoning, then the answer.
    Cot,
    /// Several sampled `cot` calls and a majority vote over their answers.
    Sc,
    /// A HieraMAS multi-agent system (role set, topology, decision node).
    Mas,
    /// MoA-style layered propose–aggregate over pool models (reference, method §7).
    Moa,
    /// Multi-agent debate over pool models, majority vote of the last round (method §7.6).
    Debate,
    /// HieraMAS optimised: per query, the stage-2 classifier's topology and the stage-1
    /// selector's models (method §6.4).
    Hieramas,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Single => "single",
            Method::Cot => "cot",
            Method::Sc => "sc",
            Method::Mas => "mas",
            Method::Moa => "moa",
            Method::Debate => "debate",
            Method::Hieramas => "hieramas",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Method, BenchError> {
        match s {
            "single" => Ok(Method::Single),
            "cot" => Ok(Method::Cot),
            "sc" => Ok(Method::Sc),
            "mas" => Ok(Method::Mas),
            "moa" => Ok(Method::Moa),
            "debate" => Ok(Method::Debate),
            "hieramas" => Ok(Method::Hieramas),
            other => Err(BenchError::Config(format!(
                "unknown method {other:?} (single, cot, sc, mas, moa, debate, hieramas)"
            ))),
        }
    }
}

/// One prompt: a system message, a user template with `{task}`, and how to sample it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub system: String,
    pub user: String,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl Prompt {
    /// The request for `task`.
    pub fn request(&self, task: &str) -> ChatRequest {
        let mut messages = Vec::with_capacity(2);
        if !self.system.is_empty() {
            messages.push(Message::system(self.system.clone()));
        }
        messages.push(Message::user(self.user.replace("{task}", task)));
        ChatRequest::new(messages)
            .temperature(self.temperature)
            .max_tokens(self.max_tokens)
    }
}

/// Self-consistency settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScSettings {
    pub samples: u32,
    pub temperature: f32,
}

/// Every benchmark's `single` and `cot` prompts, and the `sc`, `moa` and `debate` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prompts {
    #[serde(flatten)]
    pub benchmarks: BTreeMap<String, BTreeMap<String, Prompt>>,
    pub sc: ScSettings,
    pub moa: MoaSettings,
    pub debate: DebateSettings,
}

impl Prompts {
    /// The shipped prompts.
    pub fn builtin() -> Result<Prompts, BenchError> {
        Prompts::from_toml(DEFAULT_PROMPTS, "prompts.toml")
    }

    /// Prompts from TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Prompts, BenchError> {
        let p: Prompts = toml::from_str(text).map_err(|e| BenchError::Prompts {
            source_name: source.to_string(),
            detail: e.to_string(),
        })?;
        for b in Benchmark::ALL {
            for m in ["single", "cot"] {
                let prompt = p.get_raw(b, m).ok_or_else(|| BenchError::Prompts {
                    source_name: source.to_string(),
                    detail: format!("no [{}.{m}] prompt", b.name()),
                })?;
                if !prompt.user.contains("{task}") {
                    return Err(BenchError::Prompts {
                        source_name: source.to_string(),
                        detail: format!("[{}.{m}] user template has no {{task}}", b.name()),
                    });
                }
            }
        }
        let bad = |detail: &str| BenchError::Prompts {
            source_name: source.to_string(),
            detail: detail.to_string(),
        };
        if p.moa.layers == 0 || p.moa.width == 0 {
            return Err(bad("[moa] layers and width must be at least 1"));
        }
        if p.debate.agents == 0 || p.debate.rounds == 0 {
            return Err(bad("[debate] agents and rounds must be at least 1"));
        }
        if !p.moa.aggregate.contains("{responses}") || !p.debate.refine.contains("{responses}") {
            return Err(bad(
                "[moa] aggregate and [debate] refine must use {responses}",
            ));
        }
        if p.sc.samples == 0 {
            return Err(BenchError::Prompts {
                source_name: source.to_string(),
                detail: "[sc] samples must be at least 1".into(),
            });
        }
        Ok(p)
    }

    fn get_raw(&self, b: Benchmark, key: &str) -> Option<&Prompt> {
        self.benchmarks.get(b.name())?.get(key)
    }

    /// The prompt `method` sends on `benchmark` (`sc` samples the `cot` prompt at the `sc`
    /// temperature).
    pub fn for_method(&self, benchmark: Benchmark, method: Method) -> Prompt {
        let key = if method == Method::Single {
            "single"
        } else {
            "cot"
        };
        // `from_toml` checked that both prompts exist for every benchmark.
        let mut p = self
            .get_raw(benchmark, key)
            .cloned()
            .unwrap_or_else(|| Prompt {
                system: String::new(),
                user: "{task}".into(),
                temperature: 0.0,
                max_tokens: 512,
            });
        if method == Method::Sc {
            p.temperature = self.sc.temperature;
        }
        p
    }

    /// The settings of a reference method (`moa` or `debate`).
    pub fn ensemble(&self, method: Method) -> Option<Ensemble> {
        match method {
            Method::Moa => Some(Ensemble::Moa(self.moa.clone())),
            Method::Debate => Some(Ensemble::Debate(self.debate.clone())),
            _ => None,
        }
    }

    /// How many calls `method` makes per query (per model for the baselines).
    pub fn samples(&self, method: Method) -> u32 {
        if method == Method::Sc {
            self.sc.samples
        } else {
            1
        }
    }
}
