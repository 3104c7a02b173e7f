//! Loaders for the benchmark files under a data directory (a path the caller names,
//! `HIERAMAS_DATA_DIR`, else the repository's own `datasets/`): MATH train and MATH-500,
//! MMLU-Redux 2.0, HumanEval+ v0.1.10. A file may be there as itself or gzipped (`<file>.gz`,
//! how the repository carries them); either reads the same, and its sha256 is the content's.
//!
//! A malformed line is an error that names the file, the line and the field.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::TasksError;

/// The environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "HIERAMAS_DATA_DIR";

/// Relative paths of the files inside the data directory.
pub const MATH_TRAIN: &str = "math/math_train.jsonl";
pub const MATH_500: &str = "math/math500_test.jsonl";
pub const MMLU_REDUX: &str = "mmlu_redux/mmlu_redux.jsonl";
pub const HUMANEVAL_PLUS: &str = "humaneval_plus/HumanEvalPlus.jsonl";

/// A directory holding the benchmark files in the layout above.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// `explicit` if given (e.g. a `--data-dir` flag), else `$HIERAMAS_DATA_DIR`, else the
    /// repository's `datasets/` (gzip copies of every file, committed with the code).
    pub fn resolve(explicit: Option<&Path>) -> Result<DataDir, TasksError> {
        if let Some(p) = explicit {
            return Ok(DataDir::new(p));
        }
        match std::env::var_os(DATA_DIR_ENV) {
            Some(p) if !p.is_empty() => Ok(DataDir::new(p)),
            _ => DataDir::repository().ok_or(TasksError::NoDataDir),
        }
    }

    /// The `datasets/` folder of the checkout this crate was built from, when it is there.
    pub fn repository() -> Option<DataDir> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        let d = DataDir::new(dir.canonicalize().ok()?);
        d.has(MATH_500).then_some(d)
    }

    /// Whether `file` is there, as itself or gzipped.
    pub fn has(&self, file: &str) -> bool {
        let p = self.path(file);
        p.is_file() || gz_path(&p).is_file()
    }

    /// For tests that need the real files: [`DataDir::resolve`] (the repository's copies when
    /// nothing else is named); `None` (the test skips, saying so) only when none is found,
    /// except under CI (`$CI` set), where the data is required and this panics.
    pub fn for_tests() -> Option<DataDir> {
        match DataDir::resolve(None) {
            Ok(d) => Some(d),
            Err(e) if std::env::var_os("CI").is_some() => panic!("CI needs the datasets: {e}"),
            Err(_) => {
                // Listed by `cargo xtask test` (HIERAMAS_SKIP_LOG), which fails CI on it.
                let why =
                    format!("no datasets ({DATA_DIR_ENV} unset, no datasets/ in the checkout)");
                eprintln!("skipped: {why}");
                if let Some(path) = std::env::var_os("HIERAMAS_SKIP_LOG") {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path);
                    let line = format!("{why}\n");
                    let _ =
                        file.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
                }
                None
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// The 7500 MATH training problems (upstream order), without the 2 whose gold is empty.
    pub fn math_train(&self) -> Result<Vec<MathProblem>, TasksError> {
        let rows: Vec<RawMathTrain> = read_jsonl(&self.path(MATH_TRAIN))?;
        Ok(rows
            .into_iter()
            .filter(|r| !r.answer.trim().is_empty())
            .map(|r| MathProblem {
                level: r.level.trim_start_matches("Level ").parse().ok(),
                id: r.unique_id,
                problem: r.problem,
                solution: r.solution,
                answer: r.answer,
                subject: r.r#type,
            })
            .collect())
    }

    /// The 500 MATH-500 test problems, in file order.
    pub fn math500(&self) -> Result<Vec<MathProblem>, TasksError> {
        let rows: Vec<RawMath500> = read_jsonl(&self.path(MATH_500))?;
        Ok(rows
            .into_iter()
            .map(|r| MathProblem {
                id: r.unique_id,
                problem: r.problem,
                solution: r.solution,
                answer: r.answer,
                subject: r.subject,
                level: Some(r.level),
            })
            .collect())
    }

    /// MMLU-Redux 2.0 (57 subjects × 100). With `drop_flagged`, rows whose annotation says the
    /// question or its label is wrong (anything but `ok` and `expert`) are left out.
    pub fn mmlu_redux(&self, drop_flagged: bool) -> Result<Vec<MmluQuestion>, TasksError> {
        let rows: Vec<RawMmlu> = read_jsonl(&self.path(MMLU_REDUX))?;

        let mut out = Vec::with_capacity(rows.len());
        let mut per_subject = std::collections::HashMap::<String, usize>::new();
        for r in rows {
            let n = per_subject.entry(r.subject.clone()).or_default();
            let id = format!("{}/{}", r.subject, n);
            *n += 1;
            let q = MmluQuestion {
                id,
                subject: r.subject,
                question: r.question,
                choices: r.choices,
                answer: r.answer,
                error_type: r.error_type_norm,
                correct_answer: r.correct_answer,
            };
            if drop_flagged && q.is_flagged() {
                continue;
            }
            out.push(q);
        }
        Ok(out)
    }

    /// The 164 HumanEval+ tasks with their base and plus inputs.
    pub fn humaneval_plus(&self) -> Result<Vec<HumanEvalTask>, TasksError> {
        read_jsonl(&self.path(HUMANEVAL_PLUS))
    }
}

/// A MATH problem; `answer` is the content of the last `\boxed{}` of the reference solution.
#[derive(Clone, Debug, PartialEq)]
pub struct MathProblem {
    /// `train/<subject>/<n>.json` or `test/<subject>/<n>.json`.
    pub id: String,
    pub problem: String,
    pub solution: String,
    pub answer: String,
    /// E.g. `Algebra`, `Counting & Probability`.
    pub subject: String,
    /// 1-5; `None` for the two training problems upstream marks `Level ?`.
    pub level: Option<u8>,
}

/// An MMLU-Redux question.
#[derive(Clone, Debug, PartialEq)]
pub struct MmluQuestion {
    /// `<subject>/<index within the subject>`.
    pub id: String,
    pub subject: String,
    pub question: String,
    pub choices: [String; 4],
    /// The original MMLU label, 0-3.
    pub answer: u8,
    /// The normalised Redux annotation: `ok`, `expert`, `wrong_groundtruth`, ….
    pub error_type: String,
    /// The annotators' free-text correction, often empty.
    pub correct_answer: String,
}

impl MmluQuestion {
    /// The gold letter, `A`-`D`.
    pub fn gold_letter(&self) -> char {
        char::from(b'A' + self.answer.min(3))
    }

    /// Whether the annotators found the question, its options or its label faulty.
    pub fn is_flagged(&self) -> bool {
        !matches!(self.error_type.as_str(), "ok" | "expert")
    }

    /// The question followed by `A. …` to `D. …` lines (method §8.1).
    pub fn render(&self) -> String {
        let mut s = self.question.trim_end().to_string();
        for (i, c) in self.choices.iter().enumerate() {
            s.push_str(&format!("\n{}. {}", char::from(b'A' + i as u8), c));
        }
        s
    }
}

/// A HumanEval+ task in the evalplus release format. Inputs stay raw JSON text: some hold
/// integers beyond 2^53, which only Python reads back exactly.
#[derive(Debug, Deserialize)]
pub struct HumanEvalTask {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub canonical_solution: String,
    pub test: String,
    #[serde(default)]
    pub contract: String,
    pub base_input: Box<RawValue>,
    pub plus_input: Box<RawValue>,
    pub atol: f64,
}

#[derive(Deserialize)]
struct RawMathTrain {
    problem: String,
    solution: String,
    answer: String,
    level: String,
    r#type: String,
    unique_id: String,
}

#[derive(Deserialize)]
struct RawMath500 {
    problem: String,
    solution: String,
    answer: String,
    subject: String,
    level: u8,
    unique_id: String,
}

#[derive(Deserialize)]
struct RawMmlu {
    subject: String,
    question: String,
    choices: [String; 4],
    #[serde(deserialize_with = "option_index")]
    answer: u8,
    error_type_norm: String,
    #[serde(default)]
    correct_answer: String,
}

fn option_index<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let i = u8::deserialize(d)?;
    if i > 3 {
        return Err(serde::de::Error::custom(format!(
            "{i} is not an option index 0-3"
        )));
    }
    Ok(i)
}

/// `<path>.gz`.
fn gz_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Opens a data file: `path` itself, else its gzip copy `<path>.gz`, decompressed as it is read.
pub fn open_data(path: &Path) -> Result<Box<dyn std::io::Read>, TasksError> {
    let io = |p: &Path, e| TasksError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    match std::fs::File::open(path) {
        Ok(f) => Ok(Box::new(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let gz = gz_path(path);
            match std::fs::File::open(&gz) {
                Ok(f) => Ok(Box::new(flate2::read::GzDecoder::new(f))),
                // Neither: name the file asked for.
                Err(g) if g.kind() == std::io::ErrorKind::NotFound => Err(io(path, e)),
                Err(g) => Err(io(&gz, g)),
            }
        }
        Err(e) => Err(io(path, e)),
    }
}

/// A data file's content ([`open_data`]: the file, or its gzip copy decompressed).
pub fn read_data(path: &Path) -> Result<Vec<u8>, TasksError> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_data(path)?, &mut bytes).map_err(|e| TasksError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(bytes)
}

/// Reads one JSON object per line into `T`; blank lines are skipped. `path` may be there
/// gzipped ([`open_data`]).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, TasksError> {
    let file = open_data(path)?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TasksError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(path, i + 1, &line)?);
    }
    Ok(out)
}

/// Parses one JSONL line, naming the field that is missing or of the wrong type.
pub fn parse_line<T: DeserializeOwned>(
    path: &Path,
    line: usize,
    text: &str,
) -> Result<T, TasksError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let detail = inner.to_string();
        // serde names a missing field in its message rather than in the path.
        let field = match (field.as_str(), detail.strip_prefix("missing field `")) {
            ("." | "?", Some(rest)) => rest.split('`').next().unwrap_or("?").to_string(),
            ("." | "?", None) => "(whole line)".to_string(),
            _ => field,
        };
        TasksError::Malformed {
            file: path.to_path_buf(),
            line,
            field,
            detail,
        }
    })
}

/// The sha256 of a data file's content, hex (of the decompressed content for a gzip copy).
pub fn sha256_file(path: &Path) -> Result<String, TasksError> {
    Ok(hex::encode(Sha256::digest(read_data(path)?)))
}
