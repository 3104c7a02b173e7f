//! The gold book: the tasks a simulated model can recognise in a prompt, with their answers.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::spec::Kind;

/// A task's gold answer, in the form the graders accept.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// MATH: the reference answer (as in `\boxed{}`).
    Math(String),
    /// MMLU: the correct letter.
    Letter(char),
    /// HumanEval+: the prompt and the canonical solution (the body that follows it).
    Code { prompt: String, solution: String },
}

/// One task as the pipeline sends it (`task` is the exact text given to `run_query`).
#[derive(Clone, Debug, PartialEq)]
pub struct GoldTask {
    pub kind: Kind,
    pub task: String,
    pub answer: Answer,
    /// How much harder its content makes it (standard-normal units, [`crate::fit::Hardness`];
    /// 0: average).
    pub hardness: f64,
}

/// Tasks by the text that identifies them in a prompt.
pub struct GoldBook {
    tasks: Vec<GoldTask>,
    /// Recently found tasks, newest first: nearly every call is about a query in flight.
    recent: Mutex<VecDeque<usize>>,
}

const RECENT: usize = 64;

impl GoldBook {
    pub fn new(tasks: Vec<GoldTask>) -> GoldBook {
        GoldBook {
            tasks,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn task(&self, i: usize) -> &GoldTask {
        &self.tasks[i]
    }

    /// The task whose text `prompt` contains (the longest, if several do).
    pub fn find(&self, prompt: &str) -> Option<usize> {
        let longest = |it: &mut dyn Iterator<Item = usize>| {
            it.filter(|&i| !self.tasks[i].task.is_empty() && prompt.contains(&self.tasks[i].task))
                .max_by_key(|&i| self.tasks[i].task.len())
        };
        let recent: Vec<usize> = match self.recent.lock() {
            Ok(r) => r.iter().copied().collect(),
            Err(p) => p.into_inner().iter().copied().collect(),
        };
        let found =
            longest(&mut recent.into_iter()).or_else(|| longest(&mut (0..self.tasks.len())))?;
        let mut r = match self.recent.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        r.retain(|&i| i != found);
        r.push_front(found);
        r.truncate(RECENT);
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> GoldTask {
        GoldTask {
            kind: Kind::Math,
            task: text.into(),
            answer: Answer::Math("1".into()),
            hardness: 0.0,
        }
    }

    #[test]
    fn finds_the_longest_task_in_a_prompt() {
        let book = GoldBook::new(vec![
            t("What is 2+2?"),
            t("What is 2+2? Then add 3."),
            t("Other"),
        ]);
        assert_eq!(
            book.find("Q: What is 2+2? Then add 3.\n\nOther agents"),
            Some(1)
        );
        // Found again through the recent list, and a shorter one still resolves.
        assert_eq!(book.find("Q: What is 2+2? Then add 3."), Some(1));
        assert_eq!(book.find("Q: What is 2+2?"), Some(0));
        assert_eq!(book.find("nothing here"), None);
    }
}
