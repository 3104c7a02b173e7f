//! Deterministic, seeded train/valid/test splits, reproducible from (dataset sha256, seed).
//!
//! Items are cut into splits by one seeded key, `sha256("<source sha256>:<seed>:cut:<id>")`
//! (per stratum, lowest keys first), and each split lists its ids by another,
//! `sha256("<source sha256>:<seed>:order:<id>")`, so `--limit N` on a split is itself a seeded
//! random sample. (With one key for both, the first ids of a split would crowd into the strata
//! whose keys happen to run low.) The method's splits
//! are not published (method §8.1), so these are ours:
//!
//! | benchmark | split | from |
//! |---|---|---|
//! | `math` | `train`, `valid` | MATH train (7498 with a gold answer); `valid` = 10% of every (subject, level) stratum |
//! | `math` | `test` | MATH-500 |
//! | `mmlu` | `test_unseen` | every question of 8 subjects held out of training entirely |
//! | `mmlu` | `train`, `valid`, `test` | the other 49 subjects, 40% / 10% / 50% of each subject |
//! | `humaneval-plus` | `train`, `valid`, `test` | 80 / 20 / 64 tasks |
//!
//! MMLU splits hold all 5700 ids; whether rows flagged by the Redux annotators are evaluated is
//! a choice of the caller ([`crate::data::DataDir::mmlu_redux`]). The ids of every split are
//! committed under `datasets/splits/` with their sizes and sha256 in `datasets/splits.toml`
//! (`cargo xtask datasets` regenerates and checks them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TasksError;
use crate::data::{DataDir, HUMANEVAL_PLUS, MATH_500, MATH_TRAIN, MMLU_REDUX, sha256_file};

/// The seed of the committed splits.
pub const DEFAULT_SEED: u64 = 0;

/// How many MMLU subjects are held out of training (`test_unseen`).
pub const MMLU_UNSEEN_SUBJECTS: usize = 8;

/// A benchmark hieramas can load, split and grade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    Math,
    Mmlu,
    HumanevalPlus,
}

impl Benchmark {
    pub const ALL: [Benchmark; 3] = [Benchmark::Math, Benchmark::Mmlu, Benchmark::HumanevalPlus];

    /// `math`, `mmlu` or `humaneval-plus`.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Math => "math",
            Benchmark::Mmlu => "mmlu",
            Benchmark::HumanevalPlus => "humaneval-plus",
        }
    }

    /// The splits this benchmark has, in listing order.
    pub fn split_names(self) -> &'static [&'static str] {
        match self {
            Benchmark::Mmlu => &["train", "valid", "test", "test_unseen"],
            _ => &["train", "valid", "test"],
        }
    }

    /// The data files the splits are computed from.
    pub fn source_files(self) -> &'static [&'static str] {
        match self {
            Benchmark::Math => &[MATH_TRAIN, MATH_500],
            Benchmark::Mmlu => &[MMLU_REDUX],
            Benchmark::HumanevalPlus => &[HUMANEVAL_PLUS],
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Benchmark {
    type Err = TasksError;
    fn from_str(s: &str) -> Result<Benchmark, TasksError> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| TasksError::UnknownBenchmark(s.to_string()))
    }
}

/// The splits of one benchmark: ids in rank order, and what they were computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitSet {
    pub benchmark: Benchmark,
    pub seed: u64,
    /// `(file under the data directory, its sha256)`.
    pub sources: Vec<(String, String)>,
    /// `(split name, ids)` in [`Benchmark::split_names`] order.
    pub splits: Vec<(String, Vec<String>)>,
}

impl SplitSet {
    /// Computes the splits of `benchmark` from the files under `data`.
    pub fn compute(
        data: &DataDir,
        benchmark: Benchmark,
        seed: u64,
    ) -> Result<SplitSet, TasksError> {
        let sources = benchmark
            .source_files()
            .iter()
            .map(|f| Ok((f.to_string(), sha256_file(&data.path(f))?)))
            .collect::<Result<Vec<_>, TasksError>>()?;
        let splits = match benchmark {
            Benchmark::Math => {
                let train: Vec<(String, String)> = data
                    .math_train()?
                    .into_iter()
                    .map(|p| {
                        let stratum = format!("{}/{:?}", p.subject, p.level);
                        (p.id, stratum)
                    })
                    .collect();
                // 10% of every (subject, level) stratum, rounded half up.
                let [valid, train] =
                    stratified_parts(&sources[0].1, seed, &train, |n| [(n + 5) / 10]);
                let test: Vec<String> = data.math500()?.into_iter().map(|p| p.id).collect();
                vec![
                    ("train".into(), train),
                    ("valid".into(), valid),
                    (
                        "test".into(),
                        ranked(&sources[1].1, seed, Purpose::Order, test),
                    ),
                ]
            }
            Benchmark::Mmlu => {
                let rows: Vec<(String, String)> = data
                    .mmlu_redux(false)?
                    .into_iter()
                    .map(|q| (q.id, q.subject))
                    .collect();
                let sha = &sources[0].1;
                let subjects: BTreeSet<String> = rows.iter().map(|(_, s)| s.clone()).collect();
                let unseen: BTreeSet<String> = ranked(
                    sha,
                    seed,
                    Purpose::Cut,
                    subjects.iter().map(|s| format!("subject:{s}")).collect(),
                )
                .into_iter()
                .take(MMLU_UNSEEN_SUBJECTS)
                .filter_map(|s| s.strip_prefix("subject:").map(String::from))
                .collect();
                let (held_out, seen): (Vec<_>, Vec<_>) = rows
                    .into_iter()
                    .partition(|(_, s)| unseen.contains(s.as_str()));
                let [train, valid, test] = stratified_parts(sha, seed, &seen, |n| {
                    // 40% / 10% / 50% of each subject, rounded half up.
                    [(2 * n + 2) / 5, (n + 5) / 10]
                });
                vec![
                    ("train".into(), train),
                    ("valid".into(), valid),
                    ("test".into(), test),
                    (
                        "test_unseen".into(),
                        ranked(
                            sha,
                            seed,
                            Purpose::Order,
                            held_out.into_iter().map(|(id, _)| id).collect(),
                        ),
                    ),
                ]
            }
            Benchmark::HumanevalPlus => {
                let ids: Vec<String> = data
                    .humaneval_plus()?
                    .into_iter()
                    .map(|t| t.task_id)
                    .collect();
                let all: Vec<(String, String)> =
                    ids.into_iter().map(|id| (id, String::new())).collect();
                let [train, valid, test] =
                    stratified_parts(&sources[0].1, seed, &all, |_| [80, 20]);
                vec![
                    ("train".into(), train),
                    ("valid".into(), valid),
                    ("test".into(), test),
                ]
            }
        };
        Ok(SplitSet {
            benchmark,
            seed,
            sources,
            splits,
        })
    }

    /// The ids of one split, in rank order.
    pub fn get(&self, split: &str) -> Result<&[String], TasksError> {
        self.splits
            .iter()
            .find(|(name, _)| name == split)
            .map(|(_, ids)| ids.as_slice())
            .ok_or_else(|| TasksError::UnknownSplit {
                benchmark: self.benchmark.name(),
                split: split.to_string(),
                known: self.benchmark.split_names().join(", "),
            })
    }

    /// A split as its committed file: one id per line.
    pub fn render(ids: &[String]) -> String {
        let mut s = String::with_capacity(ids.len() * 24);
        for id in ids {
            s.push_str(id);
            s.push('\n');
        }
        s
    }
}

/// What a rank key is for: cutting strata into splits, or ordering the ids of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Cut,
    Order,
}

/// The rank of an id: `sha256("<source sha256>:<seed>:<cut|order>:<id>")`.
pub fn rank_key(source_sha256: &str, seed: u64, purpose: Purpose, id: &str) -> [u8; 32] {
    let purpose = match purpose {
        Purpose::Cut => "cut",
        Purpose::Order => "order",
    };
    Sha256::digest(format!("{source_sha256}:{seed}:{purpose}:{id}").as_bytes()).into()
}

/// `ids` sorted by [`rank_key`] (ties, which need a sha256 collision, by id).
pub fn ranked(source_sha256: &str, seed: u64, purpose: Purpose, ids: Vec<String>) -> Vec<String> {
    let mut keyed: Vec<([u8; 32], String)> = ids
        .into_iter()
        .map(|id| (rank_key(source_sha256, seed, purpose, &id), id))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, id)| id).collect()
}

/// Cuts every stratum (in rank order) into `N` parts, the first `N - 1` of the sizes `sizes(n)`
/// gives for a stratum of `n` (clamped), the last the remainder; each part in overall rank order.
fn stratified_parts<const N: usize, const M: usize>(
    sha: &str,
    seed: u64,
    items: &[(String, String)],
    sizes: impl Fn(usize) -> [usize; M],
) -> [Vec<String>; N] {
    debug_assert_eq!(M + 1, N);
    let mut strata: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (id, stratum) in items {
        strata.entry(stratum.as_str()).or_default().push(id.clone());
    }
    let mut parts: [Vec<String>; N] = std::array::from_fn(|_| Vec::new());
    for ids in strata.into_values() {
        let ids = ranked(sha, seed, Purpose::Cut, ids);
        let mut start = 0;
        for (part, size) in parts.iter_mut().zip(sizes(ids.len())) {
            let end = (start + size).min(ids.len());
            part.extend_from_slice(&ids[start..end]);
            start = end;
        }
        parts[N - 1].extend_from_slice(&ids[start..]);
    }
    parts.map(|p| ranked(sha, seed, Purpose::Order, p))
}

/// Writes every split of `sets` to `<dir>/splits/<benchmark>/<split>.txt` and the listing to
/// `<dir>/splits.toml`.
pub fn write_committed(dir: &std::path::Path, sets: &[SplitSet]) -> Result<(), TasksError> {
    let io = |path: &std::path::Path, e| TasksError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    for set in sets {
        let folder = dir.join("splits").join(set.benchmark.name());
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        for (name, ids) in &set.splits {
            let path = folder.join(format!("{name}.txt"));
            std::fs::write(&path, SplitSet::render(ids)).map_err(|e| io(&path, e))?;
        }
    }
    let path = dir.join("splits.toml");
    std::fs::write(&path, listing(sets)).map_err(|e| io(&path, e))
}

/// Checks the committed files under `dir` against `sets`; the error names every difference.
pub fn check_committed(dir: &std::path::Path, sets: &[SplitSet]) -> Result<(), TasksError> {
    let mut diffs = Vec::new();
    for set in sets {
        for (name, ids) in &set.splits {
            let path = dir
                .join("splits")
                .join(set.benchmark.name())
                .join(format!("{name}.txt"));
            match std::fs::read_to_string(&path) {
                Err(e) => diffs.push(format!("{}: {e}", path.display())),
                Ok(text) if text != SplitSet::render(ids) => {
                    let n = text.lines().count();
                    diffs.push(format!(
                        "{}: {n} ids committed, {} computed, contents differ",
                        path.display(),
                        ids.len()
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    let path = dir.join("splits.toml");
    match std::fs::read_to_string(&path) {
        Err(e) => diffs.push(format!("{}: {e}", path.display())),
        Ok(text) if text != listing(sets) => diffs.push(format!("{} is stale", path.display())),
        Ok(_) => {}
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(TasksError::SplitsDiffer {
            dir: dir.to_path_buf(),
            detail: diffs.join("; "),
        })
    }
}

/// The `splits.toml` listing: every split with its size, the sha256 of its file, the seed and
/// the sha256 of the data it came from.
pub fn listing(sets: &[SplitSet]) -> String {
    let mut s = String::from(
        "# Generated by `cargo xtask datasets --write-splits`; checked by `cargo xtask datasets`.\n\
         # Each split lists ids (one per line) in order of sha256(\"<source sha256>:<seed>:order:<id>\").\n\
         # See crates/hieramas-tasks/src/splits.rs for how each split is cut.\n",
    );
    for set in sets {
        for (name, ids) in &set.splits {
            let file = format!("splits/{}/{name}.txt", set.benchmark.name());
            let sha = hex::encode(Sha256::digest(SplitSet::render(ids).as_bytes()));
            s.push_str(&format!(
                "\n[[splits]]\nbenchmark = \"{}\"\nsplit = \"{name}\"\nfile = \"{file}\"\nrecords = {}\nsha256 = \"{sha}\"\nseed = {}\n",
                set.benchmark.name(),
                ids.len(),
                set.seed
            ));
            let sources: Vec<String> = set
                .sources
                .iter()
                .map(|(f, h)| format!("{{ file = \"{f}\", sha256 = \"{h}\" }}"))
                .collect();
            s.push_str(&format!("sources = [{}]\n", sources.join(", ")));
        }
    }
    s
}
