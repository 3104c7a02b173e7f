//! Splits on the real files (when `HIERAMAS_DATA_DIR` is set; required under CI): they
//! partition each benchmark, keep their proportions and held-out subjects, are reproducible
//! from (sha256, seed), and match the files committed under `datasets/`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::{self, Benchmark, DEFAULT_SEED, Purpose, SplitSet, ranked};

fn all_ids(d: &DataDir, b: Benchmark) -> BTreeSet<String> {
    match b {
        Benchmark::Math => d
            .math_train()
            .unwrap()
            .into_iter()
            .chain(d.math500().unwrap())
            .map(|p| p.id)
            .collect(),
        Benchmark::Mmlu => d
            .mmlu_redux(false)
            .unwrap()
            .into_iter()
            .map(|q| q.id)
            .collect(),
        Benchmark::HumanevalPlus => d
            .humaneval_plus()
            .unwrap()
            .into_iter()
            .map(|t| t.task_id)
            .collect(),
    }
}

#[test]
fn splits_partition_every_benchmark() {
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    for b in Benchmark::ALL {
        let set = SplitSet::compute(&d, b, DEFAULT_SEED).unwrap();
        let names: Vec<&str> = set.splits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, b.split_names());
        let mut seen = BTreeSet::new();
        for (name, ids) in &set.splits {
            assert!(!ids.is_empty(), "{b}/{name} is empty");
            for id in ids {
                assert!(seen.insert(id.clone()), "{b}: {id} is in two splits");
            }
        }
        assert_eq!(
            seen,
            all_ids(&d, b),
            "{b}: the splits do not cover the data"
        );
    }
}

#[test]
fn proportions_and_held_out_subjects() {
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    let math = SplitSet::compute(&d, Benchmark::Math, DEFAULT_SEED).unwrap();
    assert_eq!(math.get("test").unwrap().len(), 500);
    assert!(
        math.get("test")
            .unwrap()
            .iter()
            .all(|id| id.starts_with("test/"))
    );
    // valid is ~10% of every (subject, level) stratum of MATH train.
    let train = d.math_train().unwrap();
    let valid: BTreeSet<&String> = math.get("valid").unwrap().iter().collect();
    let mut per: BTreeMap<(String, Option<u8>), (usize, usize)> = BTreeMap::new();
    for p in &train {
        let e = per.entry((p.subject.clone(), p.level)).or_default();
        e.0 += 1;
        e.1 += usize::from(valid.contains(&p.id));
    }
    for ((subject, level), (n, v)) in per {
        assert_eq!(
            v,
            (n + 5) / 10,
            "{subject} level {level:?}: {v} of {n} in valid"
        );
    }

    let mmlu = SplitSet::compute(&d, Benchmark::Mmlu, DEFAULT_SEED).unwrap();
    let subject = |id: &String| id.split('/').next().unwrap().to_string();
    let unseen: BTreeSet<String> = mmlu
        .get("test_unseen")
        .unwrap()
        .iter()
        .map(subject)
        .collect();
    assert_eq!(unseen.len(), splits::MMLU_UNSEEN_SUBJECTS);
    for name in ["train", "valid", "test"] {
        let ids = mmlu.get(name).unwrap();
        let subjects: BTreeSet<String> = ids.iter().map(subject).collect();
        assert!(
            subjects.is_disjoint(&unseen),
            "{name} holds a held-out subject"
        );
        assert_eq!(subjects.len(), 57 - splits::MMLU_UNSEEN_SUBJECTS);
        let per_subject = ids.len() / subjects.len();
        assert_eq!(
            per_subject * subjects.len(),
            ids.len(),
            "{name}: uneven subjects"
        );
        assert_eq!(
            per_subject,
            [40, 10, 50][["train", "valid", "test"]
                .iter()
                .position(|n| *n == name)
                .unwrap()]
        );
    }

    let he = SplitSet::compute(&d, Benchmark::HumanevalPlus, DEFAULT_SEED).unwrap();
    let sizes: Vec<usize> = he.splits.iter().map(|(_, ids)| ids.len()).collect();
    assert_eq!(sizes, [80, 20, 64]);
    assert!(he.get("dev").is_err());
}

#[test]
fn reproducible_from_sha_and_seed() {
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    for b in Benchmark::ALL {
        let a = SplitSet::compute(&d, b, 7).unwrap();
        assert_eq!(
            a,
            SplitSet::compute(&d, b, 7).unwrap(),
            "{b}: not deterministic"
        );
        let other = SplitSet::compute(&d, b, 8).unwrap();
        assert_ne!(a.splits, other.splits, "{b}: the seed changes nothing");
    }
    // The order inside a split is the rank order.
    let set = SplitSet::compute(&d, Benchmark::HumanevalPlus, DEFAULT_SEED).unwrap();
    let test = set.get("test").unwrap().to_vec();
    assert_eq!(
        ranked(
            &set.sources[0].1,
            DEFAULT_SEED,
            Purpose::Order,
            test.clone()
        ),
        test
    );
}

#[test]
fn the_head_of_a_split_is_a_fair_sample() {
    // `--limit 100` must not crowd into a few subjects: 100 random draws from 49 subjects of
    // 50 questions each cover ~42 subjects; fewer than 30 has a probability far below 1e-9.
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    let mmlu = SplitSet::compute(&d, Benchmark::Mmlu, DEFAULT_SEED).unwrap();
    for name in ["train", "test"] {
        let head: BTreeSet<&str> = mmlu.get(name).unwrap()[..100]
            .iter()
            .map(|id| id.split('/').next().unwrap())
            .collect();
        assert!(
            head.len() >= 30,
            "{name}: the first 100 ids span {} subjects",
            head.len()
        );
    }
}

#[test]
fn committed_splits_match_the_data() {
    let Some(d) = DataDir::for_tests() else {
        return;
    };
    let sets: Vec<SplitSet> = Benchmark::ALL
        .into_iter()
        .map(|b| SplitSet::compute(&d, b, DEFAULT_SEED).unwrap())
        .collect();
    let datasets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    splits::check_committed(&datasets, &sets).unwrap();

    // And a changed split is caught, naming the file.
    let tmp = tempfile::tempdir().unwrap();
    splits::write_committed(tmp.path(), &sets).unwrap();
    splits::check_committed(tmp.path(), &sets).unwrap();
    let f = tmp.path().join("splits/humaneval-plus/test.txt");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replacen('\n', "\nHumanEval/999\n", 1)).unwrap();
    let err = splits::check_committed(tmp.path(), &sets)
        .unwrap_err()
        .to_string();
    assert!(err.contains("humaneval-plus/test.txt"), "{err}");
}

#[test]
fn benchmark_names_round_trip() {
    for b in Benchmark::ALL {
        assert_eq!(b.name().parse::<Benchmark>().unwrap(), b);
    }
    let err = "gsm8k".parse::<Benchmark>().unwrap_err().to_string();
    assert!(
        err.contains("gsm8k") && err.contains("humaneval-plus"),
        "{err}"
    );
}
