//! How well scores rank a task's topologies (method §6.3): ROC-AUC (per task, then the mean over
//! tasks that have both labels), accuracy at 0.5, and the top-1 hit rate — the share of tasks
//! whose best-scored topology is a positive — with what a random choice would get.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// ROC-AUC of `scores` against `labels` (Mann-Whitney U; tied scores count one half); `None`
/// when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut wins = 0.0;
    for (s, _) in scores.iter().zip(labels).filter(|(_, l)| **l) {
        for (t, _) in scores.iter().zip(labels).filter(|(_, l)| !**l) {
            wins += match s.total_cmp(t) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    Some(wins / (pos * neg) as f64)
}

/// One task's candidates: their scores and labels.
#[derive(Clone, Debug)]
pub struct Group {
    pub scores: Vec<f64>,
    pub labels: Vec<bool>,
}

/// Ranking quality over many tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub tasks: usize,
    pub samples: usize,
    /// Mean per-task ROC-AUC over the tasks with both labels (the model-selection metric).
    pub task_auc: Option<f64>,
    /// Tasks with both labels.
    pub auc_tasks: usize,
    /// ROC-AUC over all samples pooled.
    pub pooled_auc: Option<f64>,
    /// Share of samples with `(score >= 0.5) == label`.
    pub accuracy: f64,
    /// Share of the tasks with a positive whose best-scored candidate is positive.
    pub top1_hit: Option<f64>,
    /// What a uniformly random pick would hit on the same tasks (mean share of positives).
    pub top1_random: Option<f64>,
    /// Tasks with at least one positive.
    pub hit_tasks: usize,
    /// Standard error of `task_auc` (the sd of the per-task ROC-AUCs over √tasks).
    #[serde(default)]
    pub task_auc_se: Option<f64>,
    /// Standard error of `top1_hit − top1_random`, paired per task (the sd of each task's hit
    /// minus its share of positives, over √tasks).
    #[serde(default)]
    pub top1_gain_se: Option<f64>,
}

/// The standard error of the mean of `v` (sample sd over √n); `None` below two values.
pub fn standard_error(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some((var / n as f64).sqrt())
}

/// Metrics of `groups`; ties for the best score are broken by the earlier candidate.
pub fn evaluate(groups: &[Group]) -> Metrics {
    let mut aucs = Vec::new();
    let (mut all_s, mut all_l) = (Vec::new(), Vec::new());
    let (mut right, mut samples) = (0usize, 0usize);
    let (mut hits, mut random, mut hit_tasks) = (0.0, 0.0, 0usize);
    let mut gains = Vec::new();
    for g in groups {
        if let Some(a) = roc_auc(&g.scores, &g.labels) {
            aucs.push(a);
        }
        for (s, l) in g.scores.iter().zip(&g.labels) {
            right += usize::from((*s >= 0.5) == *l);
            samples += 1;
        }
        all_s.extend_from_slice(&g.scores);
        all_l.extend_from_slice(&g.labels);
        let pos = g.labels.iter().filter(|&&l| l).count();
        if pos > 0 {
            hit_tasks += 1;
            let share = pos as f64 / g.labels.len() as f64;
            random += share;
            let hit = top1(&g.scores).map_or(0.0, |best| f64::from(u8::from(g.labels[best])));
            hits += hit;
            gains.push(hit - share);
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Metrics {
        tasks: groups.len(),
        samples,
        task_auc: mean(&aucs),
        auc_tasks: aucs.len(),
        pooled_auc: roc_auc(&all_s, &all_l),
        accuracy: if samples == 0 {
            0.0
        } else {
            right as f64 / samples as f64
        },
        top1_hit: (hit_tasks > 0).then(|| hits / hit_tasks as f64),
        top1_random: (hit_tasks > 0).then(|| random / hit_tasks as f64),
        hit_tasks,
        task_auc_se: standard_error(&aucs),
        top1_gain_se: standard_error(&gains),
    }
}

/// The index of the highest score (the first among equals); `None` for no scores.
pub fn top1(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, s) in scores.iter().enumerate() {
        if best.is_none_or(|b| s.total_cmp(&scores[b]).is_gt()) {
            best = Some(i);
        }
    }
    best
}

/// Splits task ids by task (method §6.3): the distinct ids, sorted, shuffled with `seed`, the
/// first `ratio` of them in training. Returns `(train, valid)` id lists; each side keeps at
/// least one task when there are two or more.
pub fn split_tasks(ids: &[String], ratio: f64, seed: u64) -> (Vec<String>, Vec<String>) {
    let mut unique: Vec<String> = ids.to_vec();
    unique.sort();
    unique.dedup();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    unique.shuffle(&mut rng);
    let n = unique.len();
    let mut cut = ((n as f64) * ratio.clamp(0.0, 1.0)).floor() as usize;
    if n >= 2 {
        cut = cut.clamp(1, n - 1);
    }
    let valid = unique.split_off(cut.min(n));
    (unique, valid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn auc_of_known_rankings() {
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1], &[true, true, false]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.8, 0.9], &[true, true, false]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        // 0.7 beats 0.2 but loses to 0.9: one win of two.
        assert_eq!(roc_auc(&[0.7, 0.9, 0.2], &[true, false, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.7, 0.9], &[true, true]), None);
    }

    #[test]
    fn top1_hit_and_its_random_expectation() {
        let g = vec![
            Group {
                scores: vec![0.1, 0.9, 0.3, 0.2, 0.0],
                labels: vec![false, true, true, false, false],
            },
            Group {
                scores: vec![0.9, 0.1, 0.3, 0.2, 0.0],
                labels: vec![false, true, false, false, false],
            },
            Group {
                scores: vec![0.9, 0.1],
                labels: vec![false, false],
            },
        ];
        let m = evaluate(&g);
        assert_eq!(m.hit_tasks, 2);
        assert_eq!(m.top1_hit, Some(0.5));
        assert!((m.top1_random.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(m.auc_tasks, 2);
        // Task 1: positives 0.9 and 0.3 against 0.1, 0.2, 0.0: all six won.
        // Task 2: positive 0.1 against 0.9, 0.3, 0.2 (lost) and 0.0 (won): 1/4.
        assert!((m.task_auc.unwrap() - (1.0 + 0.25) / 2.0).abs() < 1e-12);
        // Standard errors: AUCs 1 and 0.25 (sd 0.530, /√2 = 0.375); gains 1 − 0.4 and
        // 0 − 0.2 (sd 0.566, /√2 = 0.4).
        assert!((m.task_auc_se.unwrap() - 0.375).abs() < 1e-12);
        assert!((m.top1_gain_se.unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(standard_error(&[1.0]), None);
    }

    proptest! {
        #[test]
        fn auc_is_a_probability_and_flips_with_the_scores(
            v in prop::collection::vec((-5.0f64..5.0, any::<bool>()), 2..40)
        ) {
            let s: Vec<f64> = v.iter().map(|p| p.0).collect();
            let l: Vec<bool> = v.iter().map(|p| p.1).collect();
            if let Some(a) = roc_auc(&s, &l) {
                prop_assert!((0.0..=1.0).contains(&a));
                let neg: Vec<f64> = s.iter().map(|x| -x).collect();
                let b = roc_auc(&neg, &l).unwrap();
                prop_assert!((a + b - 1.0).abs() < 1e-9);
            }
        }

        #[test]
        fn the_split_partitions_the_tasks(n in 0usize..50, seed in 0u64..100, ratio in 0.0f64..1.0) {
            let ids: Vec<String> = (0..n).flat_map(|i| [format!("t{i}"), format!("t{i}")]).collect();
            let (a, b) = split_tasks(&ids, ratio, seed);
            prop_assert_eq!(a.len() + b.len(), n);
            prop_assert!(a.iter().all(|x| !b.contains(x)));
            if n >= 2 {
                prop_assert!(!a.is_empty() && !b.is_empty());
            }
            prop_assert_eq!(split_tasks(&ids, ratio, seed), (a, b));
        }
    }
}
