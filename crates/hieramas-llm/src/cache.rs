//! Response cache and record/replay in SQLite.
//!
//! The key is the SHA-256 of a canonical JSON of (model id, messages, sampling parameters,
//! sample index). Each answer is committed in its own transaction in WAL mode with
//! `synchronous=FULL`, so a crash (even `kill -9`) loses nothing already stored. One
//! connection per [`ResponseCache`], behind a mutex, used from blocking threads: any number of
//! tasks of one process may read and write at once; other processes wait on SQLite's lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cost::Price;
use crate::error::LlmError;
use crate::types::{ChatModel, ChatRequest, ChatResponse};

/// How a [`Cached`] model uses the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Always call the model; the cache is not touched.
    Off,
    /// Serve hits; call the model on a miss and record its answer.
    ReadWrite,
    /// Serve hits; a miss is an error ([`LlmError::CacheMiss`]). No HTTP call is ever made.
    ReplayOnly,
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<CacheMode, String> {
        match s {
            "off" => Ok(CacheMode::Off),
            "read-write" | "rw" => Ok(CacheMode::ReadWrite),
            "replay-only" | "replay" => Ok(CacheMode::ReplayOnly),
            other => Err(format!(
                "unknown cache mode {other:?} (off, read-write, replay-only)"
            )),
        }
    }
}

/// The cache key of `req` sent to the model `identity` names: for a pool model
/// [`identity`] (provider, provider model name, base URL, pool id), so the same id pointed at
/// another provider or server never replays the first one's answers.
pub fn cache_key(identity: &str, req: &ChatRequest) -> String {
    #[derive(Serialize)]
    struct KeyV2<'a> {
        v: u32,
        model: &'a str,
        req: &'a ChatRequest,
    }
    // ChatRequest serialises with a fixed field order (its `extra` is a sorted map), so this
    // JSON is canonical.
    let json = serde_json::to_vec(&KeyV2 {
        v: 2,
        model: identity,
        req,
    })
    .unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// What identifies a pool model in cache keys: provider, provider model name, base URL (the
/// provider's default when unset), pool id, and its provider parameters.
pub fn identity(spec: &crate::pool::ModelSpec) -> String {
    let params = serde_json::to_string(&spec.params).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{params}",
        spec.provider.as_str(),
        spec.model,
        spec.base_url
            .as_deref()
            .or(spec.provider.default_base_url().map(|d| d.0))
            .unwrap_or(""),
        spec.id
    )
}

/// A SQLite file of recorded answers.
pub struct ResponseCache {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl ResponseCache {
    /// Opens (creating if needed) the cache at `path`, and its parent directory.
    pub fn open(path: impl AsRef<Path>) -> Result<ResponseCache, LlmError> {
        let path = path.as_ref().to_path_buf();
        let err = |detail: String| LlmError::Cache {
            path: path.display().to_string(),
            detail,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("cannot create directory: {e}")))?;
        }
        let conn = Connection::open(&path).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .and_then(|_| {
                conn.execute_batch(
                    "PRAGMA journal_mode=WAL;
                     PRAGMA synchronous=FULL;
                     CREATE TABLE IF NOT EXISTS responses (
                         key TEXT PRIMARY KEY,
                         model TEXT NOT NULL,
                         request TEXT NOT NULL,
                         response TEXT NOT NULL,
                         created_unix INTEGER NOT NULL
                     );",
                )
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(ResponseCache {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, detail: impl std::fmt::Display) -> LlmError {
        LlmError::Cache {
            path: self.path.display().to_string(),
            detail: detail.to_string(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LlmError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| self.error(format!("cache task failed: {e}")))?
        .map_err(|e| self.error(e))
    }

    /// The recorded answer for `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<ChatResponse>, LlmError> {
        let k = key.to_string();
        let row: Option<String> = self
            .blocking(move |c| {
                c.query_row(
                    "SELECT response FROM responses WHERE key = ?1",
                    params![k],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        row.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| self.error(format!("entry {key} is not a response: {e}")))
        })
        .transpose()
    }

    /// Records an answer. The first answer stored under a key is kept (replays stay stable).
    pub async fn put(
        &self,
        key: &str,
        req: &ChatRequest,
        resp: &ChatResponse,
    ) -> Result<(), LlmError> {
        let (k, model) = (key.to_string(), resp.model.clone());
        let request = serde_json::to_string(req).map_err(|e| self.error(e))?;
        let response = serde_json::to_string(resp).map_err(|e| self.error(e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.blocking(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO responses (key, model, request, response, created_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k, model, request, response, now],
            )
        })
        .await?;
        Ok(())
    }

    /// Number of recorded answers.
    pub async fn len(&self) -> Result<u64, LlmError> {
        self.blocking(|c| c.query_row("SELECT COUNT(*) FROM responses", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    pub async fn is_empty(&self) -> Result<bool, LlmError> {
        Ok(self.len().await? == 0)
    }
}

/// A model with a response cache in front of it. A hit is not paid for: `cached` is set and
/// `saved` holds what the recorded call cost. Its `cost` stays the recorded call's, so an
/// experiment replayed from the cache reports (and learns from) the same costs as the live one;
/// [`crate::Budgeted`] charges nothing for it.
pub struct Cached<M> {
    inner: M,
    cache: Arc<ResponseCache>,
    mode: CacheMode,
    identity: String,
}

impl<M: ChatModel> Cached<M> {
    /// Keys by the model's id alone; prefer [`Cached::for_spec`] for a pool model.
    pub fn new(inner: M, cache: Arc<ResponseCache>, mode: CacheMode) -> Cached<M> {
        let identity = inner.id().to_string();
        Cached {
            inner,
            cache,
            mode,
            identity,
        }
    }

    /// Keys by the pool entry's [`identity`] (provider, model, base URL, id, parameters).
    pub fn for_spec(
        inner: M,
        spec: &crate::pool::ModelSpec,
        cache: Arc<ResponseCache>,
        mode: CacheMode,
    ) -> Cached<M> {
        Cached {
            identity: identity(spec),
            ..Cached::new(inner, cache, mode)
        }
    }
}

#[async_trait]
impl<M: ChatModel> ChatModel for Cached<M> {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn price(&self) -> Price {
        self.inner.price()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if self.mode == CacheMode::Off {
            return self.inner.chat(req).await;
        }
        let key = cache_key(&self.identity, req);
        if let Some(mut hit) = self.cache.get(&key).await? {
            hit.cached = true;
            hit.attempts = 0;
            hit.saved = hit.cost;
            return Ok(hit);
        }
        if self.mode == CacheMode::ReplayOnly {
            return Err(LlmError::CacheMiss {
                model: self.inner.id().to_string(),
                key,
            });
        }
        let resp = self.inner.chat(req).await?;
        self.cache.put(&key, req, &resp).await?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let base = ChatRequest::user("q").temperature(0.2).max_tokens(10);
        let k = cache_key("m", &base);
        assert_eq!(k, cache_key("m", &base.clone()));
        assert_eq!(k.len(), 64);
        let variants = [
            cache_key("other", &base),
            cache_key(
                "m",
                &ChatRequest::user("q2").temperature(0.2).max_tokens(10),
            ),
            cache_key("m", &base.clone().temperature(0.3)),
            cache_key("m", &base.clone().max_tokens(11)),
            cache_key("m", &base.clone().seed(1)),
            cache_key("m", &base.clone().stop("x")),
            cache_key("m", &base.clone().top_p(0.9)),
            cache_key("m", &base.clone().sample_index(1)),
        ];
        for v in variants {
            assert_ne!(v, k);
        }
    }

    #[test]
    fn mode_parses() {
        assert_eq!(
            "replay-only".parse::<CacheMode>(),
            Ok(CacheMode::ReplayOnly)
        );
        assert!("sometimes".parse::<CacheMode>().is_err());
    }
}
