//! The append-only results log: one JSON line per finished query, flushed to disk before the
//! next, so a crash loses at most the queries in flight and a rerun resumes without duplicates.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// One graded query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub query_id: String,
    /// Hash of everything that decides the responses (see [`crate::EvalConfig::hash`]); a rerun
    /// skips the queries that already have a record with the same hash.
    pub config_hash: String,
    pub benchmark: String,
    pub split: String,
    pub method: String,
    pub model: String,
    /// sha256 of the first request's messages.
    pub prompt_hash: String,
    /// Every sample's text (one unless `sc`).
    pub responses: Vec<String>,
    /// The answer graded: MATH/MMLU the extracted answer (the vote winner for `sc`), HumanEval+
    /// the program run.
    pub extracted: Option<String>,
    pub correct: bool,
    /// HumanEval+ only: base tests passed (`correct` is base and plus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_pass: Option<bool>,
    /// HumanEval+ only: the first failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Exact cost in pico-dollars (10^-12 USD) of every call of this query.
    pub cost_pico: u64,
    /// Wall time from the first request to the last response, milliseconds.
    pub latency_ms: u64,
    /// Calls answered from a response cache.
    #[serde(default)]
    pub cached_calls: u32,
    /// What those cache hits saved (their recorded cost, counted in `cost_pico`: the method's
    /// cost does not depend on the cache), pico-dollars.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub saved_pico: u64,
    /// Seconds since the Unix epoch when the record was written.
    pub finished_at: u64,
    /// `mas`: the query's trace (every call, the nodes and edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
}

/// An open results log.
#[derive(Debug)]
pub struct ResultLog {
    path: PathBuf,
    file: File,
}

impl ResultLog {
    /// Opens (or creates) the log at `path` and returns the records already in it. A torn last
    /// line — a write cut short by a crash — is cut off; any other malformed line is an error
    /// naming it.
    pub fn open(path: &Path) -> Result<(ResultLog, Vec<Record>), BenchError> {
        let io = |e| BenchError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        if !text.is_empty() && !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            tracing::warn!(
                "{}: dropping a torn last line ({} bytes) left by an interrupted run",
                path.display(),
                text.len() - keep
            );
            file.set_len(keep as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
            text.truncate(keep);
        }
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = hieramas_tasks::data::parse_line(path, i + 1, line)?;
            records.push(r);
        }
        Ok((
            ResultLog {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&mut self, r: &Record) -> Result<(), BenchError> {
        let io = |e| BenchError::Io {
            path: self.path.clone(),
            source: e,
        };
        let mut line = serde_json::to_string(r).map_err(|e| BenchError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
