//! The official code's behaviours that this implementation fixes (method §10), one named switch
//! each, so a run can restore any of them: all together (`--faithful`, [`Official::all`]) for a
//! reproduction of the official pipeline, or one at a time (`--official config-order`) as an
//! ablation of one fix. `Default` is every fix on (no official behaviour).
//!
//! ```
//! use hieramas::official::Official;
//!
//! let o: Official = "config-order,whole-text-consensus".parse()?;
//! assert!(o.config_order && o.whole_text_consensus && !o.loss);
//! assert_eq!(o.to_string(), "config-order,whole-text-consensus");
//! assert_eq!("all".parse::<Official>()?, Official::all());
//! assert!(Official::default().is_fixed());
//! # Ok::<(), hieramas::official::UnknownSwitch>(())
//! ```

use serde::{Deserialize, Serialize};

/// Which official behaviours to restore (method §10; `false` everywhere: the fixed pipeline).
/// Serialised only where set, so a fixed run's configuration (and its hash) has no trace of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Official {
    /// §10.2: supernodes run in config order and an edge pointing backwards in it is unused
    /// (fixed: the DAG's own topological order, independent nodes in parallel).
    #[serde(skip_serializing_if = "is_false")]
    pub config_order: bool,
    /// §10.16: the consensus override compares whole texts for MATH and MMLU, so it practically
    /// never fires (fixed: the extracted predictions; HumanEval+ compares code blocks in both).
    #[serde(skip_serializing_if = "is_false")]
    pub whole_text_consensus: bool,
    /// §10.5: stage 1 samples from `softmax(logits)` but credits `log softmax(logits/T)`, with no
    /// baseline, and clamps logits to ±10 (fixed: sample and credit at `T`, a per-batch
    /// baseline, no clamp).
    #[serde(skip_serializing_if = "is_false")]
    pub loss: bool,
    /// §10.6: the stage-2 labels' system reward prices the decision call only (fixed: every
    /// call of the query). Stage 1 prices the decision call in both modes (see the README).
    #[serde(skip_serializing_if = "is_false")]
    pub decision_cost: bool,
    /// §10.9: W per stage as the official scripts (stage-2 data at stage 1's W, e.g. MMLU 6;
    /// inference at the role set's, 2) (fixed: stage-2 data at the W the system runs with).
    #[serde(skip_serializing_if = "is_false")]
    pub width: bool,
    /// §6 / §10.17: the validation-best stage-1 checkpoint for stage-2 data and MMLU /
    /// HumanEval+ inference, iteration 10 for MATH inference (fixed: the final weights).
    /// A choice of files, made by whoever runs the steps (`cargo xtask reproduce`).
    #[serde(skip_serializing_if = "is_false")]
    pub checkpoints: bool,
    /// §10.10: the test-time role-skip decision reads the selector with a zero metadata vector
    /// (fixed: the task's metadata embedding, as in training).
    #[serde(skip_serializing_if = "is_false")]
    pub skip_metadata: bool,
    /// §5.2: the selector reads one embedding of the task and the role as one text, which the
    /// task dominates, so every role of a query gets nearly the same choice (fixed: the
    /// role-aware selector, the task and the role description embedded apart and concatenated;
    /// one embedding per task instead of one per task and role).
    #[serde(skip_serializing_if = "is_false")]
    pub joint_input: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A switch name [`Official`]'s parser does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown official switch {0:?}; known: all, {known}", known = Official::NAMES.join(", "))]
pub struct UnknownSwitch(pub String);

impl Official {
    /// The switch names, in the order [`Official`]'s `Display` writes them.
    pub const NAMES: [&'static str; 8] = [
        "config-order",
        "whole-text-consensus",
        "loss",
        "decision-cost",
        "width",
        "checkpoints",
        "skip-metadata",
        "joint-input",
    ];

    /// Every official behaviour (`--faithful`).
    pub fn all() -> Official {
        let mut o = Official::default();
        for name in Self::NAMES {
            *o.switch(name).unwrap_or(&mut false) = true;
        }
        o
    }

    /// No official behaviour: the fixed pipeline.
    pub fn is_fixed(&self) -> bool {
        *self == Official::default()
    }

    /// Every switch restored.
    pub fn is_faithful(&self) -> bool {
        *self == Official::all()
    }

    /// The switch called `name`.
    pub fn switch(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "config-order" => &mut self.config_order,
            "whole-text-consensus" => &mut self.whole_text_consensus,
            "loss" => &mut self.loss,
            "decision-cost" => &mut self.decision_cost,
            "width" => &mut self.width,
            "checkpoints" => &mut self.checkpoints,
            "skip-metadata" => &mut self.skip_metadata,
            "joint-input" => &mut self.joint_input,
            _ => return None,
        })
    }

    /// The switches that are on, by name.
    pub fn names(&self) -> Vec<&'static str> {
        let mut copy = *self;
        Self::NAMES
            .into_iter()
            .filter(|n| copy.switch(n).is_some_and(|b| *b))
            .collect()
    }

    /// Both sets of switches together.
    pub fn union(self, other: Official) -> Official {
        let mut o = self;
        let mut other = other;
        for name in Self::NAMES {
            let on = other.switch(name).is_some_and(|b| *b);
            if let Some(b) = o.switch(name) {
                *b |= on;
            }
        }
        o
    }
}

impl std::str::FromStr for Official {
    type Err = UnknownSwitch;

    /// A comma-separated list of switch names, `all`, or `none` / empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut o = Official::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => o = o.union(Official::all()),
                "none" => {}
                _ => *o.switch(name).ok_or_else(|| UnknownSwitch(name.into()))? = true,
            }
        }
        Ok(o)
    }
}

impl std::fmt::Display for Official {
    /// The switches that are on, comma-separated (`none` when fixed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_is_one_switch_and_all_sets_every_one() {
        let all = Official::all();
        assert!(all.config_order && all.whole_text_consensus && all.loss && all.decision_cost);
        assert!(all.width && all.checkpoints && all.skip_metadata && all.joint_input);
        for (i, name) in Official::NAMES.iter().enumerate() {
            let o: Official = name.parse().expect("a known name");
            assert_eq!(o.names(), [*name], "{name} turns on exactly itself");
            assert!(!o.is_fixed() && !o.is_faithful());
            for other in &Official::NAMES[i + 1..] {
                assert_ne!(o, other.parse::<Official>().expect("known"));
            }
        }
        assert_eq!(all.to_string(), Official::NAMES.join(","));
        assert_eq!(Official::default().to_string(), "none");
        assert_eq!(
            "none".parse::<Official>().expect("none"),
            Official::default()
        );
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let e = "config-order,clamp".parse::<Official>().unwrap_err();
        assert_eq!(e.0, "clamp");
        assert!(e.to_string().contains("skip-metadata"), "{e}");
    }

    #[test]
    fn a_fixed_configuration_serialises_to_nothing() {
        let v = serde_json::to_value(Official::default()).expect("json");
        assert_eq!(v, serde_json::json!({}));
        let v = serde_json::to_value("loss".parse::<Official>().expect("known")).expect("json");
        assert_eq!(v, serde_json::json!({"loss": true}));
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(bits in proptest::collection::vec(any::<bool>(), 7)) {
            let mut o = Official::default();
            for (name, on) in Official::NAMES.iter().zip(&bits) {
                *o.switch(name).expect("known") = *on;
            }
            let back: Official = o.to_string().parse().expect("its own text");
            prop_assert_eq!(back, o);
            let json = serde_json::to_string(&o).expect("json");
            prop_assert_eq!(serde_json::from_str::<Official>(&json).expect("json"), o);
        }
    }
}
