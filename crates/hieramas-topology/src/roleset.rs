//! Role sets: the supernodes of a benchmark and its decision node, as data (`roles/*.toml`).

use serde::{Deserialize, Serialize};

use crate::TopologyError;
use hieramas_supernode::RolePrompts;

/// The shipped role sets: `(name, TOML)`: one per benchmark, and `general` for free-form
/// questions.
pub const BUILTIN: [(&str, &str); 4] = [
    ("math", include_str!("../roles/math.toml")),
    ("mmlu", include_str!("../roles/mmlu.toml")),
    ("humaneval-plus", include_str!("../roles/humaneval.toml")),
    ("general", include_str!("../roles/general.toml")),
];

/// The roles of one benchmark, in configuration order, and how the decision node is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSet {
    pub benchmark: String,
    /// Proposers per supernode (W).
    pub width: usize,
    pub decision_input: DecisionInput,
    pub decision: DecisionPrompts,
    pub roles: Vec<Role>,
}

/// The text around the supernode outputs the decision node reads (method §2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub intro: String,
    pub closing: String,
}

/// The decision node's prompts; `{task}` in `user` is the decision input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionPrompts {
    pub system: String,
    pub user: String,
}

/// One role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    /// Whether this role's output is an answer (HumanEval's analysis roles are not).
    #[serde(default = "yes")]
    pub answer: bool,
    pub proposer_system: String,
    pub proposer_user: String,
    pub synth_system: String,
    pub synth_user: String,
}

fn yes() -> bool {
    true
}

impl Role {
    pub fn prompts(&self) -> RolePrompts {
        RolePrompts {
            name: self.name.clone(),
            proposer_system: self.proposer_system.clone(),
            proposer_user: self.proposer_user.clone(),
            synth_system: self.synth_system.clone(),
            synth_user: self.synth_user.clone(),
        }
    }
}

impl RoleSet {
    /// The shipped role set `benchmark` (`math`, `mmlu`, `humaneval-plus`, `general`).
    pub fn builtin(benchmark: &str) -> Result<RoleSet, TopologyError> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(b, _)| *b == benchmark)
            .ok_or_else(|| TopologyError::Parse {
                format: "role set",
                detail: format!(
                    "no role set for {benchmark:?} (math, mmlu, humaneval-plus, general)"
                ),
            })?;
        RoleSet::from_toml(text)
    }

    /// The text of the shipped role set `name`, as [`RoleSet::builtin`] reads it.
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(b, _)| *b == name).map(|(_, t)| *t)
    }

    /// A role set from TOML text; templates must use `{task}`.
    pub fn from_toml(text: &str) -> Result<RoleSet, TopologyError> {
        let set: RoleSet = toml::from_str(text).map_err(|e| TopologyError::Parse {
            format: "role set",
            detail: e.to_string(),
        })?;
        let bad = |detail: String| TopologyError::Parse {
            format: "role set",
            detail,
        };
        if set.roles.is_empty() || set.width == 0 {
            return Err(bad("a role set needs roles and width >= 1".into()));
        }
        for r in &set.roles {
            for (field, t) in [
                ("proposer_user", &r.proposer_user),
                ("synth_user", &r.synth_user),
            ] {
                if !t.contains("{task}") {
                    return Err(bad(format!("role {:?}: {field} has no {{task}}", r.name)));
                }
            }
        }
        if !set.decision.user.contains("{task}") {
            return Err(bad("decision.user has no {task}".into()));
        }
        Ok(set)
    }

    /// The role names, in configuration order (the topology's node order).
    pub fn names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.clone()).collect()
    }
}
