//! hieramas-serve: an OpenAI-compatible HTTP server for hieramas.
//!
//! - **Trained systems as models.** Every [`ServedSystem`] (a HieraMAS bundle, or any
//!   [`hieramas::System`]) is the model `hieramas/<name>` on `/v1/models` and
//!   `/v1/chat/completions`: the conversation becomes one question, the system answers it with
//!   all its calls, `usage` is the sum over every call, and the exact cost, a trace id and the
//!   call count ride in the extension field `hieramas: {cost_usd, cost_pico, trace_id, calls,
//!   cached_calls, saved_usd}`. `stream: true` sends a comment per finished node
//!   (`: hieramas node …`), then the answer as content deltas. `GET /v1/traces/{id}` returns
//!   the trace (every call, the plan). Requests run concurrently; the pool's per-model caps
//!   hold across them (the models are shared).
//! - **The local models** (`LocalChatModel`) with streamed tokens, and an embedder on
//!   `/v1/embeddings` (`encoding_format` `float` or `base64`, as the official SDKs send by
//!   default), computed off the async workers.
//! - **Hardening** ([`Limits`]): a cap on requests in flight (429 with `Retry-After` beyond
//!   it), a body-size cap (413), an optional bearer token (401), and when bound to a loopback
//!   address a `Host` check (403) so a web page cannot reach it by DNS rebinding.
//!
//! Errors are OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hieramas::bundle::{Bundle, LoadOptions};
//! use hieramas_serve::{Limits, ServedSystem, State};
//!
//! let bundle = Bundle::open("results/run/local/math/system".as_ref())?;
//! let system = bundle.system(&LoadOptions::default(), &mut hieramas::progress::Silent).await?;
//! let mut state = State::new(Limits::default());
//! state.add_system(ServedSystem { id: bundle.model_id(), system: Arc::new(system) });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! hieramas_serve::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod api;
mod guard;
pub mod system;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use hieramas_llm::Embedder;
use hieramas_local::chat::LocalChatModel;

pub use api::ApiError;
pub use system::ServedSystem;

/// What a server refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once (streams count until they end); beyond it a 429 with
    /// `Retry-After`.
    pub max_in_flight: usize,
    /// The largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
    /// When set, every request must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Traces kept for `GET /v1/traces/{id}` (the oldest go first).
    pub traces_kept: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 256,
            max_body_bytes: 4 << 20,
            api_key: None,
            traces_kept: 1000,
        }
    }
}

/// Everything the server answers with.
pub struct State {
    pub limits: Limits,
    /// Local chat models by id.
    pub chat: BTreeMap<String, Arc<LocalChatModel>>,
    /// Trained systems by id (`hieramas/<name>`).
    pub systems: BTreeMap<String, Arc<hieramas::System>>,
    /// The embedder of `/v1/embeddings`, served under its id.
    pub embedder: Option<Arc<dyn Embedder>>,
    next_id: AtomicU64,
    traces: Mutex<VecDeque<Arc<system::StoredTrace>>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Host header values accepted (set by [`serve`] from the bound address; `None`: any).
    allowed_hosts: Option<Vec<String>>,
}

/// The state handlers share.
pub type Shared = Arc<State>;

impl State {
    pub fn new(limits: Limits) -> State {
        State {
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
            limits,
            chat: BTreeMap::new(),
            systems: BTreeMap::new(),
            embedder: None,
            next_id: AtomicU64::new(0),
            traces: Mutex::new(VecDeque::new()),
            allowed_hosts: None,
        }
    }

    /// Serves `s` as the model `s.id`.
    pub fn add_system(&mut self, s: ServedSystem) {
        self.systems.insert(s.id, s.system);
    }

    /// Every model id served: systems, local models, the embedder.
    pub fn model_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.systems.keys().cloned().collect();
        ids.extend(self.chat.keys().cloned());
        ids.extend(self.embedder.iter().map(|e| e.id().to_string()));
        ids
    }

    /// A new trace id, hard to guess (a counter, the time and the process, hashed).
    fn trace_id(&self) -> String {
        use sha2::Digest;
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{n}:{nanos}:{}:{:p}", std::process::id(), self);
        let h = sha2::Sha256::digest(seed.as_bytes());
        std::iter::once("trace-".to_string())
            .chain(h.iter().take(12).map(|b| format!("{b:02x}")))
            .collect()
    }

    /// Keeps `trace` (dropping the oldest beyond [`Limits::traces_kept`]).
    fn store_trace(&self, trace: Arc<system::StoredTrace>) {
        let mut traces = self
            .traces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        traces.push_back(trace);
        while traces.len() > self.limits.traces_kept.max(1) {
            traces.pop_front();
        }
    }

    fn trace(&self, id: &str) -> Option<Arc<system::StoredTrace>> {
        self.traces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|t| t.id == id)
            .cloned()
    }
}

/// A server that could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving on {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The routes, with the guards in front of them.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/models", get(api::models))
        .route("/v1/chat/completions", post(api::chat))
        .route("/v1/embeddings", post(api::embeddings))
        .route("/v1/traces/{id}", get(system::trace))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no such endpoint: the server has /v1/models, /v1/chat/completions, /v1/embeddings and /v1/traces/{id}",
            )
            .code("not_found")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves. Bound to a loopback address, only
/// `Host: localhost|127.0.0.1|[::1]` (with the bound port) is accepted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: State,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: "?".into(),
        source,
    })?;
    if addr.ip().is_loopback() {
        state.allowed_hosts = Some(guard::loopback_hosts(addr.port()));
    }
    tracing::info!(
        "serving {} system(s), {} local model(s) at http://{addr}/v1",
        state.systems.len(),
        state.chat.len()
    );
    axum::serve(listener, router(Arc::new(state)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io {
            addr: addr.to_string(),
            source,
        })
}
