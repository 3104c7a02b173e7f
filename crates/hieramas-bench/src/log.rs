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
    /// Opens (or creates) the log at `path` for appending and returns the records already in
    /// it. The log is locked (`flock`, exclusive) for as long as the [`ResultLog`] lives: a
    /// second writer — another process, or a second `open` in this one — is refused with
    /// [`BenchError::Locked`] instead of interleaving its lines. A torn last line — a write
    /// cut short by a crash, possibly inside a multi-byte character — is cut off; any other
    /// malformed line is an error naming it.
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
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BenchError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let keep = complete_len(&bytes);
        if keep < bytes.len() {
            tracing::warn!(
                "{}: dropping a torn last line ({} bytes) left by an interrupted run",
                path.display(),
                bytes.len() - keep
            );
            file.set_len(keep as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let records = parse(path, &bytes[..keep])?;
        Ok((
            ResultLog {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// The records of the log at `path` without opening it for writing (no lock, nothing
    /// truncated): what [`ResultLog::open`] would return, read while a writer may be
    /// appending. A missing file has no records.
    pub fn read(path: &Path) -> Result<Vec<Record>, BenchError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(BenchError::Io {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        };
        parse(path, &bytes[..complete_len(&bytes)])
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

/// The length of the log's complete lines: up to and including the last newline (a line is
/// written whole with its newline, so anything after the last one is a torn write).
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// The records of complete lines, each decoded on its own: a line that is not UTF-8 or not a
/// record is an error naming its line number.
fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Record>, BenchError> {
    let mut records = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| {
            BenchError::Tasks(hieramas_tasks::TasksError::Malformed {
                file: path.to_path_buf(),
                line: i + 1,
                field: "(whole line)".to_string(),
                detail: format!("not UTF-8: {e}"),
            })
        })?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(hieramas_tasks::data::parse_line(path, i + 1, line)?);
    }
    Ok(records)
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
